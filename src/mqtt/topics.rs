//! Topic names: the prefix rules and every topic smsrelay publishes or subscribes to.

/// The longest prefix accepted; topics must stay well under MQTT's 65535 bytes.
const MAX_PREFIX: usize = 200;

/// `name` as one topic level: letters, digits, `-` and `_`, lower case; anything else `_`.
pub fn segment(name: &str) -> String {
    let level: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if level.is_empty() {
        "gateway".to_string()
    } else {
        level
    }
}

/// Whether `level` can stand as one topic level as it is (no wildcard, separator or NUL).
pub fn is_plain_level(level: &str) -> bool {
    !level.is_empty() && level.len() <= 255 && !level.contains(['/', '+', '#', '\0'])
}

/// A topic prefix as written: no wildcard, no empty level, no leading or trailing `/`.
pub fn check_prefix(prefix: &str) -> Result<String, String> {
    let prefix = prefix.trim();
    if prefix.is_empty() || prefix.len() > MAX_PREFIX {
        return Err(format!("1 to {MAX_PREFIX} characters"));
    }
    if prefix.split('/').any(|level| !is_plain_level(level)) {
        return Err(format!(
            "{prefix:?}: levels separated by single '/', without '+', '#', or a leading or \
             trailing '/'"
        ));
    }
    Ok(prefix.to_string())
}

/// Where events of `name` are published.
pub fn event(prefix: &str, name: &str) -> String {
    format!("{prefix}/event/{name}")
}

/// The retained `online`/`offline` topic (the will).
pub fn status(prefix: &str) -> String {
    format!("{prefix}/status")
}

/// The retained state document.
pub fn state(prefix: &str) -> String {
    format!("{prefix}/state")
}

/// Every command topic, as a subscription filter.
pub fn commands(prefix: &str) -> String {
    format!("{prefix}/cmd/+")
}

/// The command `kind` (`send`) under `prefix`, when `topic` is one.
pub fn command_of<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(prefix)?
        .strip_prefix("/cmd/")
        .filter(|kind| is_plain_level(kind))
}

/// Where the result of the command with this idempotency key goes; `cmd/result` for a
/// command whose key cannot be a topic level.
pub fn result(prefix: &str, key: Option<&str>) -> String {
    match key.filter(|key| is_plain_level(key)) {
        Some(key) => format!("{prefix}/cmd/result/{key}"),
        None => format!("{prefix}/cmd/result"),
    }
}

/// Home Assistant's birth and will topic.
pub fn home_assistant_status(discovery_prefix: &str) -> String {
    format!("{discovery_prefix}/status")
}

/// The device-based discovery topic of the gateway `id`.
pub fn discovery(discovery_prefix: &str, id: &str) -> String {
    format!("{discovery_prefix}/device/{id}/config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_prefixes() {
        assert_eq!(segment("Pi in the shed"), "pi_in_the_shed");
        assert_eq!(segment("gw-1/a+b#"), "gw-1_a_b_");
        assert_eq!(segment("  "), "gateway");
        assert_eq!(check_prefix(" site/gw1 ").as_deref(), Ok("site/gw1"));
        for bad in ["", "/a", "a/", "a//b", "a/+", "#", "a/b#"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn command_topics() {
        assert_eq!(
            command_of("smsrelay/gw", "smsrelay/gw/cmd/send"),
            Some("send")
        );
        assert_eq!(command_of("smsrelay/gw", "smsrelay/gw2/cmd/send"), None);
        assert_eq!(command_of("smsrelay/gw", "smsrelay/gw/cmd/"), None);
        assert_eq!(command_of("smsrelay/gw", "smsrelay/gw/state"), None);
        assert_eq!(result("p", Some("k-1")), "p/cmd/result/k-1");
        assert_eq!(result("p", Some("a/b")), "p/cmd/result");
        assert_eq!(result("p", None), "p/cmd/result");
    }
}
