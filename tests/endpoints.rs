//! Endpoints beyond a plain webhook, through the real binary: e-mail (`mailto:` through a real
//! SMTP server on 127.0.0.1), inbound SMS routing (`keywords`, `senders`, `unmatched`) and body
//! templates, against the simulated modem and webhook receivers.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use smsrelay::mock::{InboundSms, MockConfig, MockModem};

use crate::support::daemon::{Api, Daemon, TOKEN, free_port};
use crate::support::receiver::{Received, Receiver, ok};
use crate::support::smtp::{SmtpSink, certificates};
use crate::support::{outcome, run_smsrelay};

const WAIT: Duration = Duration::from_secs(20);

/// Writes a config for the modem at `device` and the API on `port`, with `extra` appended.
fn write_config(dir: &Path, device: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("smsrelay.toml");
    let text = format!(
        "data_dir = \"{data}\"\nwebhook_clock_check = false\n\n[modem]\ndevice = \"{device}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n{extra}",
        data = dir.join("data").display(),
        device = device.display(),
    );
    std::fs::write(&path, text).expect("config written");
    path
}

/// Polls `check` until it gives a value, or fails with `what`.
fn until<T>(what: &str, check: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the daemon has set the modem up (it reads the storage use last).
fn wait_for_modem(modem: &MockModem) {
    until("the daemon did not initialise the modem", || {
        modem
            .commands()
            .iter()
            .any(|c| c == "AT+CPMS?")
            .then_some(())
    });
}

/// Waits until every endpoint's queue is empty, so what each receiver got is final.
fn wait_for_empty_queues(api: &Api) {
    until("deliveries are still queued", || {
        let (_, webhooks) = api.get("/v1/webhooks");
        let list = webhooks["webhooks"].as_array()?.clone();
        list.iter()
            .all(|endpoint| endpoint["queue_depth"] == 0)
            .then_some(())
    });
}

/// The first dead letter of endpoint `name`, once there is one.
fn dead_letter(api: &Api, name: &str) -> Value {
    until(&format!("no dead letter for {name}"), || {
        let (_, listed) = api.get(&format!("/v1/webhooks/{name}/dead-letters"));
        listed["dead_letters"].as_array()?.first().cloned()
    })
}

fn names(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn texts(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["data"]["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn inbound_sms_are_routed_by_keyword_and_sender_outbound_events_reach_everyone_and_templates_render()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let mock = MockConfig {
        submit_delay: Duration::from_millis(50),
        report_delay: Duration::from_millis(50),
        ..MockConfig::default()
    };
    let modem = MockModem::start(mock, Some(link.clone())).expect("mock starts");
    let info = Receiver::start(ok);
    let dhl = Receiver::start(ok);
    let rest = Receiver::start(ok);
    let telegram = Receiver::start(ok);
    let port = free_port();
    let template = r#"{"chat_id": 4242, "text": {{ ("SMS from " ~ data.from ~ " [" ~ data.keyword ~ "]: " ~ data.text) | tojson }}, "event": "{{ id }}"}"#;
    let extra = format!(
        r#"
[[webhook]]
name = "info"
url = "{info}"
events = ["sms.*"]
keywords = ["INFO"]

[[webhook]]
name = "dhl"
url = "{dhl}"
events = ["sms.*"]
senders = ["DHL", "+4917*"]

[[webhook]]
name = "rest"
url = "{rest}"
events = ["sms.*"]
unmatched = true

[[webhook]]
name = "telegram"
url = "{telegram}"
events = ["sms.received"]
keywords = ["info"]
template = '{template}'
content_type = "application/json"
headers = {{ X-Chat = "ops" }}

[[webhook]]
name = "broken"
url = "{telegram}"
events = ["webhook.test"]
template = "{{{{ data.missing.deeper }}}}"
retry_schedule = ["0s", "1s", "1s"]
"#,
        info = info.url,
        dhl = dhl.url,
        rest = rest.url,
        telegram = telegram.url,
    );
    let config = write_config(dir.path(), &link, port, &extra);

    // check-config shows each endpoint's transport, format, routing and template.
    let (code, stdout, stderr) = outcome(&run_smsrelay([
        OsStr::new("check-config"),
        config.as_os_str(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "transport = \"http\"",
        "routing = \"inbound SMS matching keywords [\\\"INFO\\\"]\"",
        "routing = \"inbound SMS matching senders [\\\"DHL\\\", \\\"+4917*\\\"]\"",
        "routing = \"inbound SMS no keywords or senders endpoint took\"",
        "format = \"template\"",
        "content_type = \"application/json\"",
        // Header values may be secrets (tokens): check-config masks them.
        "header = \"X-Chat: ********\"",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }

    let daemon = Daemon::start(&config);
    let api = Api::new(port);
    api.wait_up();
    wait_for_modem(&modem);
    for (from, text) in [
        ("+447700900555", "info hours"),
        ("+4917012345", "parcel waiting"),
        ("DHL", "Your parcel is here"),
        ("+447700900666", "hello there"),
    ] {
        modem
            .inject_sms(&InboundSms::new(from, text))
            .expect("injects");
    }
    let (status, accepted) = api.post(
        "/v1/messages",
        Some(TOKEN),
        r#"{"to": "+447700900123", "text": "out we go"}"#,
        &[],
    );
    assert_eq!(status, 202, "{accepted}");
    // Each routed endpoint gets its inbound SMS plus the three outbound events.
    for receiver in [&info, &dhl, &rest] {
        until("the outbound events to arrive", || {
            let got = receiver.got();
            (names(&got)
                .iter()
                .filter(|n| !n.starts_with("sms.received"))
                .count()
                == 3)
                .then_some(())
        });
    }
    wait_for_empty_queues(&api);
    let received = |receiver: &Receiver| {
        receiver
            .got()
            .into_iter()
            .filter(|r| r.json()["name"] == "sms.received")
            .collect::<Vec<_>>()
    };
    let info_got = received(&info);
    assert_eq!(texts(&info_got), ["info hours"]);
    assert_eq!(info_got[0].json()["data"]["keyword"], "INFO");
    let mut dhl_texts = texts(&received(&dhl));
    dhl_texts.sort();
    assert_eq!(dhl_texts, ["Your parcel is here", "parcel waiting"]);
    assert!(
        received(&dhl)
            .iter()
            .all(|r| r.json()["data"].get("keyword").is_none())
    );
    assert_eq!(texts(&received(&rest)), ["hello there"]);
    for receiver in [&info, &dhl, &rest] {
        let mut outbound: Vec<String> = names(&receiver.got())
            .into_iter()
            .filter(|n| n != "sms.received")
            .collect();
        outbound.sort();
        assert_eq!(outbound, ["sms.delivered", "sms.queued", "sms.sent"]);
    }

    // The template's body, byte for byte, with its content type and extra header.
    let got = telegram.got();
    assert_eq!(got.len(), 1, "only the INFO message");
    let id = info_got[0].json()["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let expected = format!(
        r#"{{"chat_id": 4242, "text": "SMS from +447700900555 [INFO]: info hours", "event": "{id}"}}"#
    );
    assert_eq!(String::from_utf8_lossy(&got[0].body), expected);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("x-chat"), Some("ops"));

    // A template that cannot render this event: a dead letter after one attempt, saying why.
    let (status, _) = api.post("/v1/webhooks/broken/test", Some(TOKEN), "", &[]);
    assert_eq!(status, 202);
    let dead = dead_letter(&api, "broken");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert_eq!(dead["last_attempt"]["error"], "template", "{dead}");
    let detail = dead["last_attempt"]["detail"].as_str().unwrap_or("");
    assert!(detail.starts_with("template line 1"), "{dead}");
    assert_eq!(telegram.got().len(), 1, "nothing was sent for it");
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn template_and_content_type_mistakes_are_config_errors_naming_key_and_line() {
    let smtp = "\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"sms@gateway.test\"\n";
    // (the endpoint's lines after `name`, [smtp] or not, the key, what the error says)
    let cases = [
        (
            "url = \"https://ntfy.example/sms\"\ntemplate = \"{{ data.text \"\n",
            "",
            "webhook[ntfy].template",
            "template line 1",
        ),
        // minijinja looks filters up when rendering: the check renders a sample of each
        // event, so a misspelt filter stops the start instead of dead-lettering every event.
        (
            "url = \"https://ntfy.example/sms\"\ntemplate = \"{{ data.text | tojsn }}\"\n",
            "",
            "webhook[ntfy].template",
            "filter tojsn is unknown",
        ),
        (
            "url = \"https://ntfy.example/sms\"\nevents = [\"sms.*\"]\n\
             template = \"{% if name == 'sms.failed' %}{{ data.error | lenght }}{% endif %}\"\n",
            "",
            "webhook[ntfy].template",
            "filter lenght is unknown (rendering a sample sms.failed)",
        ),
        // lettre parses an e-mail's content type: checked now, not at each send.
        (
            "url = \"mailto:ops@example.com\"\ncontent_type = \"text/plain; charset\"\n",
            smtp,
            "webhook[ntfy].content_type",
            "is not a media type",
        ),
    ];
    for (endpoint, smtp, key, message) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[modem]\ndevice = \"/dev/ttyUSB0\"\n{smtp}\n[[webhook]]\nname = \"ntfy\"\n{endpoint}"
        );
        let line = text
            .lines()
            .position(|l| l.starts_with(key.rsplit('.').next().unwrap_or("?")))
            .map(|index| format!("line {}", index + 1))
            .expect("the key is in the config");
        let path = dir.path().join("smsrelay.toml");
        std::fs::write(&path, &text).expect("written");
        let (code, _, stderr) = outcome(&run_smsrelay([
            OsStr::new("check-config"),
            path.as_os_str(),
        ]));
        assert_eq!(code, 2, "{text}: {stderr}");
        for expected in [key, line.as_str(), message] {
            assert!(stderr.contains(expected), "{expected} in {stderr}");
        }
    }
    // The same template spelt right passes.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("smsrelay.toml");
    let text = "[modem]\ndevice = \"/dev/ttyUSB0\"\n\n[[webhook]]\nname = \"ntfy\"\n\
                url = \"https://ntfy.example/sms\"\ntemplate = \"{{ data.text | tojson }}\"\n";
    std::fs::write(&path, text).expect("written");
    let (code, _, stderr) = outcome(&run_smsrelay([
        OsStr::new("check-config"),
        path.as_os_str(),
    ]));
    assert_eq!(code, 0, "{stderr}");
}

/// The `[smtp]` section for a sink on `port`.
fn smtp_section(port: u16, security: &str, ca_file: Option<&Path>) -> String {
    let ca = ca_file.map_or(String::new(), |path| {
        format!("ca_file = \"{}\"\n", path.display())
    });
    format!(
        "\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\n\
         from = \"SMS gateway <sms@gateway.test>\"\n{ca}"
    )
}

fn replies_to(transactions: &[Value], recipient: &str) -> Vec<String> {
    transactions
        .iter()
        .filter(|t| {
            t["rcpt_tos"]
                .as_array()
                .is_some_and(|r| r.iter().any(|a| a == recipient))
        })
        .map(|t| t["reply"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn e_mail_is_delivered_a_4xx_is_retried_a_5xx_is_a_dead_letter_and_one_unknown_user_stops_nobody() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(sink) = SmtpSink::start(dir.path(), None) else {
        return;
    };
    let link = dir.path().join("modem");
    let modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock starts");
    let port = free_port();
    let mut extra = smtp_section(sink.port, "none", None);
    for (name, to) in [
        ("mail", "ops@example.com,oncall@example.com"),
        ("deferred", "defer@example.com"),
        ("refused", "reject@example.com"),
        (
            "team",
            "first@example.com,unknown@example.com,second@example.com",
        ),
        ("nobody", "unknown2@example.com,unknown3@example.com"),
        ("unnamed", "third@example.com,gone@example.com"),
        ("greylisted", "grey-ok@example.com,greylist@example.com"),
    ] {
        extra.push_str(&format!(
            "\n[[webhook]]\nname = \"{name}\"\nurl = \"mailto:{to}\"\nevents = [\"sms.received\"]\n\
             retry_schedule = [\"0s\", \"1s\", \"1s\"]\n"
        ));
    }
    let config = write_config(dir.path(), &link, port, &extra);
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_logging_to(&config, &log);
    let api = Api::new(port);
    api.wait_up();
    wait_for_modem(&modem);
    let text = "Meeting moved to 3pm, room 4 – bring the Grüße";
    modem
        .inject_sms(&InboundSms::new("+447700900555", text))
        .expect("injects");

    let transactions = sink.wait_until("the e-mails and the retry", |all| {
        replies_to(all, "ops@example.com").len() == 1
            && replies_to(all, "defer@example.com").len() == 2
            && replies_to(all, "reject@example.com").len() == 1
            && replies_to(all, "second@example.com").len() == 1
            && replies_to(all, "unknown3@example.com").len() == 1
            && replies_to(all, "gone@example.com").len() == 2
            && replies_to(all, "greylist@example.com").len() == 2
    });
    let mail = transactions
        .iter()
        .find(|t| t["rcpt_tos"][0] == "ops@example.com")
        .expect("the e-mail");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(mail["mail_from"], "sms@gateway.test");
    let headers = &mail["headers"];
    assert_eq!(
        headers["subject"],
        "SMS from +447700900555: Meeting moved to 3pm, room 4 – bring …"
    );
    assert_eq!(headers["from"], "SMS gateway <sms@gateway.test>");
    assert_eq!(headers["to"], "ops@example.com, oncall@example.com");
    // RFC 3834: no vacation auto-reply comes back for it.
    assert_eq!(headers["auto-submitted"], "auto-generated");
    // The body is the event in the endpoint's format (our envelope, JSON).
    let body: Value = serde_json::from_str(mail["body"].as_str().unwrap_or("")).expect("JSON");
    assert_eq!(body["name"], "sms.received");
    assert_eq!(body["data"]["text"], text);
    assert_eq!(body["data"]["from"], "+447700900555");

    // 451 then 250: the same message (same Message-ID) twice.
    assert_eq!(
        replies_to(&transactions, "defer@example.com"),
        ["451 4.3.0 try again later", "250 2.0.0 accepted"]
    );
    let ids: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["rcpt_tos"][0] == "defer@example.com")
        .map(|t| &t["headers"]["message-id"])
        .collect();
    assert_eq!(ids[0], ids[1]);
    assert!(
        ids[0]
            .as_str()
            .is_some_and(|id| id.contains(body["id"].as_str().unwrap_or("?")))
    );

    // 554 at RCPT: permanent, a dead letter after one attempt of three.
    let dead = dead_letter(&api, "refused");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert_eq!(dead["last_attempt"]["error"], "mail_rejected", "{dead}");
    assert!(
        dead["last_attempt"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("554")),
        "{dead}"
    );

    // One unknown user among three, named in the server's 550: that transaction took it for
    // nobody, so it goes again to the other two in one transaction; each gets it once.
    let unknown = "550 5.1.1 <unknown@example.com>: user unknown";
    assert_eq!(
        replies_to(&transactions, "first@example.com"),
        [unknown, "250 2.0.0 accepted"]
    );
    assert_eq!(replies_to(&transactions, "unknown@example.com"), [unknown]);
    assert_eq!(
        replies_to(&transactions, "second@example.com"),
        ["250 2.0.0 accepted"]
    );
    let copy = transactions
        .iter()
        .find(|t| t["rcpt_tos"][0] == "first@example.com" && t["reply"] == "250 2.0.0 accepted")
        .expect("the e-mail to the other two");
    assert_eq!(
        copy["rcpt_tos"],
        serde_json::json!(["first@example.com", "second@example.com"])
    );
    assert_eq!(
        copy["headers"]["to"],
        "first@example.com, unknown@example.com, second@example.com"
    );
    assert_eq!(
        copy["headers"]["message-id"],
        ids[0]
            .as_str()
            .unwrap_or("?")
            .replace(".deferred@", ".team@")
    );
    // A 550 that names nobody (a 5.1.1 mailbox refusal): each is tried alone, the other one
    // gets it, and the warning names the refused one.
    let gone = "550 5.1.1 the account you tried to reach does not exist";
    assert_eq!(
        replies_to(&transactions, "third@example.com"),
        [gone, "250 2.0.0 accepted"]
    );
    assert_eq!(replies_to(&transactions, "gone@example.com"), [gone, gone]);
    // Greylisted at RCPT (451): no split, the whole delivery fails for now and is retried,
    // and then both get it in one transaction.
    let greylisted: Vec<&Value> = transactions
        .iter()
        .filter(|t| t["rcpt_tos"][0] == "grey-ok@example.com")
        .collect();
    let replies: Vec<&Value> = greylisted.iter().map(|t| &t["reply"]).collect();
    assert_eq!(replies, ["451 4.7.1 greylisted", "250 2.0.0 accepted"]);
    for transaction in greylisted {
        assert_eq!(
            transaction["rcpt_tos"],
            serde_json::json!(["grey-ok@example.com", "greylist@example.com"])
        );
    }
    until("the warning about the unnamed refusal", || {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        log.lines()
            .find(|line| {
                line.contains("webhook unnamed:")
                    && line.contains("not delivered to 1 of 2 recipients: gone@example.com")
            })
            .map(|_| ())
    });
    until("the warning about the unknown user", || {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        log.lines()
            .find(|line| {
                line.contains("webhook team:")
                    && line.contains("not delivered to 1 of 3 recipients: unknown@example.com")
            })
            .map(|_| ())
    });
    // Every recipient unknown: refused for good, a dead letter after one attempt.
    let dead = dead_letter(&api, "nobody");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert_eq!(dead["last_attempt"]["error"], "mail_rejected", "{dead}");
    assert!(
        dead["last_attempt"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not delivered to 2 of 2 recipients")),
        "{dead}"
    );

    wait_for_empty_queues(&api);
    for name in ["deferred", "team", "unnamed", "greylisted"] {
        let (_, dead) = api.get(&format!("/v1/webhooks/{name}/dead-letters"));
        assert_eq!(dead["dead_letters"], serde_json::json!([]), "{name}");
    }
    assert_eq!(
        replies_to(&sink.transactions(), "reject@example.com").len(),
        1
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}

#[test]
fn e_mail_goes_over_starttls_with_a_login_to_a_server_whose_certificate_the_config_trusts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(dir.path());
    let login = Some("relay-user:s3cret pass");
    let Some(sink) = SmtpSink::start_with_login(dir.path(), Some((&cert, &key)), login) else {
        return;
    };
    let credentials = "username = \"relay-user\"\npassword = \"s3cret pass\"\n";
    let link = dir.path().join("modem");
    let _modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock starts");
    let port = free_port();
    let endpoint = "\n[[webhook]]\nname = \"mail\"\nurl = \"mailto:ops@example.com\"\n\
                    events = [\"webhook.*\"]\nretry_schedule = [\"0s\"]\n";
    let trusted = format!(
        "{}{credentials}{endpoint}",
        smtp_section(sink.port, "starttls", Some(&ca))
    );
    let config = write_config(dir.path(), &link, port, &trusted);
    let daemon = Daemon::start(&config);
    let api = Api::new(port);
    api.wait_up();
    let (status, _) = api.post("/v1/webhooks/mail/test", Some(TOKEN), "", &[]);
    assert_eq!(status, 202);
    let transactions = sink.wait_until("the e-mail over STARTTLS", |all| !all.is_empty());
    assert_eq!(transactions[0]["reply"], "250 2.0.0 accepted");
    assert_eq!(
        transactions[0]["headers"]["subject"],
        "smsrelay: webhook.test"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));

    // Without the CA the certificate is not trusted: the attempt fails as a TLS error and
    // nothing is handed over.
    let untrusted = format!(
        "{}{credentials}{endpoint}",
        smtp_section(sink.port, "starttls", None)
    );
    let config = write_config(dir.path(), &link, port, &untrusted);
    let daemon = Daemon::start(&config);
    api.wait_up();
    let (status, _) = api.post("/v1/webhooks/mail/test", Some(TOKEN), "", &[]);
    assert_eq!(status, 202);
    let dead = dead_letter(&api, "mail");
    assert_eq!(dead["last_attempt"]["error"], "tls", "{dead}");
    assert_eq!(
        sink.transactions().len(),
        1,
        "only the first e-mail arrived"
    );
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
}
