//! Which endpoints get an inbound SMS: `keywords` (the first word of the text), `senders`
//! (exact, or a prefix ending in `*`; letters in any case) and `unmatched` (what no routed
//! endpoint took). Pure:
//! the subscriptions and the event in, the endpoints and the matched keyword out. Every
//! event other than `sms.received` goes to every endpoint subscribed to its name.
//!
//! The rules, in config order:
//! - an endpoint with neither list and not `unmatched` gets every inbound SMS;
//! - an endpoint with lists gets the SMS only when each list it has matches (both lists:
//!   the keyword *and* the sender);
//! - an `unmatched` endpoint gets the SMS when no endpoint with a list (`keywords` or
//!   `senders`) took it: the "everything else" inbox beside keyword and sender endpoints.
//!   Endpoints without lists take every SMS and do not count as taking it.
//!
//! A keyword matches the first word in any case, as written or with the ASCII punctuation
//! people put around a word taken off (`STOP.`, `Info,`, `INFO:`, `#info`, `"stop"`), first
//! at its end, then at both ends: `keywords = ["#info"]` still takes `#info,`, and `INFO`
//! takes `#info`. Punctuation inside the word stays (`e-mail` is not `email`).
//!
//! The event is stored once for all endpoints, so its `keyword` is one value: the keyword,
//! as configured, of the first endpoint (config order) that took the SMS by its keywords;
//! absent when none did.

use serde_json::Value;

use super::Subscription;

/// The event routed by these rules.
pub const ROUTED_EVENT: &str = "sms.received";

/// An endpoint's inbound SMS routing, from `[[webhook]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// First words that select the SMS (any case, punctuation around the word ignored);
    /// empty: any.
    pub keywords: Vec<String>,
    /// Senders that select the SMS: exact, or a prefix ending in `*` (both ignoring the
    /// case of ASCII letters); empty: any.
    pub senders: Vec<String>,
    /// Gets the inbound SMS no endpoint with `keywords` or `senders` took.
    pub unmatched: bool,
}

impl Routing {
    /// Whether this endpoint receives every inbound SMS (no lists, not `unmatched`).
    pub fn takes_all(&self) -> bool {
        self.keywords.is_empty() && self.senders.is_empty() && !self.unmatched
    }

    /// The configured keyword `first_word` is, if any: equal in any case to the word as
    /// written, without its trailing punctuation, or without the punctuation at both ends.
    fn keyword_for(&self, first_word: &str) -> Option<&str> {
        let trailing = first_word.trim_end_matches(|c: char| c.is_ascii_punctuation());
        let both = trailing.trim_start_matches(|c: char| c.is_ascii_punctuation());
        let forms = [first_word, trailing, both];
        self.keywords
            .iter()
            .find(|keyword| {
                let keyword = keyword.to_lowercase();
                forms
                    .iter()
                    .any(|form| !form.is_empty() && form.to_lowercase() == keyword)
            })
            .map(String::as_str)
    }

    /// Whether `from` is one of the senders (or no senders are listed); letters match in
    /// any case, in a prefix too (`dhl*` takes `DHL Express`).
    fn sender_matches(&self, from: &str) -> bool {
        self.senders.is_empty()
            || self
                .senders
                .iter()
                .any(|sender| match sender.strip_suffix('*') {
                    Some(prefix) => from
                        .get(..prefix.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(prefix)),
                    None => sender.eq_ignore_ascii_case(from),
                })
    }
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// The subscriptions that get a job, in config order.
    pub endpoints: Vec<&'a Subscription>,
    /// The keyword to record in an inbound SMS's data, when one endpoint took it by keyword.
    pub keyword: Option<String>,
}

/// The first word of an SMS text (split at whitespace).
pub fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}

/// Routes event `name` with `data` over `subscriptions`.
pub fn route<'a>(subscriptions: &'a [Subscription], name: &str, data: &Value) -> Route<'a> {
    let wanting = subscriptions.iter().filter(|s| s.wants(name));
    if name != ROUTED_EVENT {
        return Route {
            endpoints: wanting.collect(),
            keyword: None,
        };
    }
    let word = first_word(data["text"].as_str().unwrap_or(""));
    let from = data["from"].as_str().unwrap_or("");
    let mut endpoints = Vec::new();
    let mut keyword: Option<String> = None;
    let mut unmatched = Vec::new();
    let mut taken = false;
    for subscription in wanting {
        let routing = &subscription.routing;
        if routing.unmatched {
            unmatched.push(subscription);
            continue;
        }
        let matched_keyword = routing.keyword_for(word);
        let keyword_ok = routing.keywords.is_empty() || matched_keyword.is_some();
        if keyword_ok && routing.sender_matches(from) {
            if keyword.is_none() {
                keyword = matched_keyword.map(str::to_string);
            }
            taken |= !routing.takes_all();
            endpoints.push(subscription);
        }
    }
    if !taken {
        endpoints.extend(unmatched);
        // Keep config order: the log and the tests read the endpoints in it.
        endpoints.sort_by_key(|s| subscriptions.iter().position(|o| std::ptr::eq(o, *s)));
    }
    Route { endpoints, keyword }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn endpoint(name: &str, keywords: &[&str], senders: &[&str], unmatched: bool) -> Subscription {
        Subscription {
            endpoint: name.into(),
            events: vec!["*".into()],
            routing: Routing {
                keywords: keywords.iter().map(|k| k.to_string()).collect(),
                senders: senders.iter().map(|s| s.to_string()).collect(),
                unmatched,
            },
        }
    }

    fn subscriptions() -> Vec<Subscription> {
        vec![
            endpoint("all", &[], &[], false),
            endpoint("info", &["INFO", "Hours"], &[], false),
            endpoint("stop", &["STOP", "#unsub"], &[], false),
            endpoint("dhl", &[], &["DHL", "+4917*", "ups*"], false),
            endpoint("stop-dhl", &["stop"], &["DHL"], false),
            endpoint("rest", &[], &[], true),
        ]
    }

    #[test]
    fn inbound_sms_are_routed_by_keyword_sender_and_unmatched() {
        // (from, text, endpoints, recorded keyword)
        let cases: &[(&str, &str, &[&str], Option<&str>)] = &[
            ("+441234", "info hours", &["all", "info"], Some("INFO")),
            ("+441234", "  HOURS please", &["all", "info"], Some("Hours")),
            ("+441234", "information", &["all", "rest"], None),
            ("+441234", "Stop", &["all", "stop"], Some("STOP")),
            (
                "DHL",
                "stop",
                &["all", "stop", "dhl", "stop-dhl"],
                Some("STOP"),
            ),
            ("dhl", "parcel", &["all", "dhl"], None),
            ("+4917012", "parcel", &["all", "dhl"], None),
            ("+4916012", "parcel", &["all", "rest"], None),
            ("+441234", "", &["all", "rest"], None),
            ("", "hello", &["all", "rest"], None),
            // Punctuation around the first word: at its end, then at both ends.
            ("+441234", "STOP.", &["all", "stop"], Some("STOP")),
            ("+441234", "stop!!", &["all", "stop"], Some("STOP")),
            (
                "+441234",
                "Info, when are you open?",
                &["all", "info"],
                Some("INFO"),
            ),
            ("+441234", "INFO: hours", &["all", "info"], Some("INFO")),
            ("+441234", "#info", &["all", "info"], Some("INFO")),
            ("+441234", "\"hours\"", &["all", "info"], Some("Hours")),
            ("+441234", "(Info)", &["all", "info"], Some("INFO")),
            // A keyword written with punctuation matches as written, and with more after it.
            ("+441234", "#UNSUB", &["all", "stop"], Some("#unsub")),
            ("+441234", "#unsub,", &["all", "stop"], Some("#unsub")),
            ("+441234", "unsub", &["all", "rest"], None),
            // Inside the word it stays; punctuation alone is no keyword.
            ("+441234", "info-line", &["all", "rest"], None),
            ("+441234", "in.fo", &["all", "rest"], None),
            ("+441234", "... info", &["all", "rest"], None),
            ("+441234", "?", &["all", "rest"], None),
            // Sender prefixes, like exact senders, match letters in any case.
            ("UPS Express", "parcel", &["all", "dhl"], None),
            ("Ups", "parcel", &["all", "dhl"], None),
            ("ups", "parcel", &["all", "dhl"], None),
            ("UP", "parcel", &["all", "rest"], None),
            (
                "Dhl",
                "STOP.",
                &["all", "stop", "dhl", "stop-dhl"],
                Some("STOP"),
            ),
        ];
        let subscriptions = subscriptions();
        for (from, text, endpoints, keyword) in cases {
            let data = json!({ "from": from, "text": text });
            let route = route(&subscriptions, ROUTED_EVENT, &data);
            let names: Vec<&str> = route
                .endpoints
                .iter()
                .map(|s| s.endpoint.as_str())
                .collect();
            assert_eq!(
                (names.as_slice(), route.keyword.as_deref()),
                (*endpoints, *keyword),
                "{from} {text:?}"
            );
        }
    }

    #[test]
    fn other_events_reach_every_subscriber() {
        let subscriptions = subscriptions();
        let data = json!({ "to": "+441234", "text": "info" });
        let route = route(&subscriptions, "sms.delivered", &data);
        assert_eq!(route.endpoints.len(), subscriptions.len());
        assert_eq!(route.keyword, None);
        let mut narrow = subscriptions.clone();
        narrow[1].events = vec!["sms.delivered".into()];
        let route = super::route(&narrow, ROUTED_EVENT, &json!({ "text": "info" }));
        let names: Vec<&str> = route
            .endpoints
            .iter()
            .map(|s| s.endpoint.as_str())
            .collect();
        // The INFO endpoint does not subscribe to inbound SMS: the catch-all takes it.
        assert_eq!(names, ["all", "rest"]);
    }
}
