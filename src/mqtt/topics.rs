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

/// Every command topic, as a subscription filter. Nothing smsrelay publishes may match it, or
/// the daemon would read its own answers as commands: results live under `result/`.
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

/// The longest idempotency key or USSD request id: it names a topic level of its own.
pub const MAX_KEY: usize = 128;

/// Whether a client's idempotency key or request id can name its result topic: one plain
/// level (no `/`, `+`, `#`), 1 to [`MAX_KEY`] bytes.
pub fn is_key_level(key: &str) -> bool {
    is_plain_level(key) && key.len() <= MAX_KEY
}

/// Where the result of the command with this idempotency key (or request id) goes:
/// `result/<key>`, or `result` for a command without a usable key (not JSON, no key, a key
/// that is not one topic level). Outside `cmd/`, so the command subscription never sees it.
pub fn result(prefix: &str, key: Option<&str>) -> String {
    match key.filter(|key| is_key_level(key)) {
        Some(key) => format!("{prefix}/result/{key}"),
        None => format!("{prefix}/result"),
    }
}

/// Whether an MQTT topic `filter` (with `+` and `#`) matches the topic `name`: the tests'
/// stand-in for a broker's matching (the daemon itself never matches topics).
#[cfg(test)]
fn matches(filter: &str, name: &str) -> bool {
    let mut levels = name.split('/');
    for pattern in filter.split('/') {
        match (pattern, levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (pattern, Some(level)) if pattern == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
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
        assert_eq!(result("p", Some("k-1")), "p/result/k-1");
        assert_eq!(result("p", Some("a/b")), "p/result");
        assert_eq!(result("p", Some(&"k".repeat(MAX_KEY + 1))), "p/result");
        assert_eq!(result("p", None), "p/result");
    }

    #[test]
    fn no_result_topic_is_a_command() {
        // The command subscription must never match what the daemon answers on: a result it
        // read back would be answered again, forever.
        let prefix = "smsrelay/gw";
        let filter = commands(prefix);
        let keys = [
            None,
            Some("k-1"),
            Some("result"),
            Some("order/17"),
            Some("a+b"),
            Some("#"),
            Some(""),
        ];
        for key in keys {
            let topic = result(prefix, key);
            assert!(
                !matches(&filter, &topic),
                "{key:?}: {topic} matches {filter}"
            );
            assert_eq!(command_of(prefix, &topic), None, "{key:?}: {topic}");
        }
        assert!(
            matches(&filter, "smsrelay/gw/cmd/send"),
            "the filter itself"
        );
    }

    #[test]
    fn filters_match_as_mqtt_says() {
        let cases = [
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/+", "a", false),
            ("a/#", "a/b/c", true),
            ("a/#", "a", true),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
        ];
        for (filter, name, expect) in cases {
            assert_eq!(matches(filter, name), expect, "{filter} {name}");
        }
    }
}
