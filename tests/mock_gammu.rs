//! The real `gammu` (Debian's 1.42) against the simulated modem: identify, security status with
//! and without a SIM PIN, plain, concatenated and UCS-2 sends, listing and deleting stored
//! messages. gammu is a widely used AT client written by other people, so if it works against
//! the mock, the mock speaks AT as modems do and not merely as our own driver expects.
//!
//! Every test checks both sides: what gammu printed, and what the mock logged (the commands it
//! received, the messages it was given, its storage afterwards).
//!
//! gammu must be installed (`apt-get install gammu`). Without it these tests print a note and
//! pass, except with `CI=true` (as `.ci/run` sets), where a missing gammu is a failure: in CI a
//! skipped interop test would be a silent hole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smsrelay::mock::{InboundSms, MockConfig, MockModem};
use smsrelay::pdu::{Alphabet, Submit};

/// A whole gammu run (its init alone paces commands some 400 ms apart) takes a few seconds; a
/// minute means it hangs, and CI must not wait for it forever.
const GAMMU_TIMEOUT: Duration = Duration::from_secs(60);

/// The recipient of every send.
const RECIPIENT: &str = "+447700900123";

/// A mock modem for one test, with its own temp dir holding the gammurc, the device symlink and
/// gammu's debug log.
struct Rig {
    // Declared before `dir`, so the modem (which removes its symlink) stops first.
    modem: MockModem,
    dir: tempfile::TempDir,
    gammurc: PathBuf,
}

/// What one gammu run produced.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams: gammu prints progress ("Sending SMS 1/1…") on one and results on the other,
    /// and which goes where is not what these tests are about.
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Rig {
    /// Starts a mock with `config`, or `None` when gammu is missing outside CI.
    fn start(config: MockConfig) -> Option<Rig> {
        if !gammu_installed() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("smsrelay-gammu-")
            .tempdir()
            .expect("create a temp dir for the gammu test");
        let link = dir.path().join("modem");
        let modem = MockModem::start(config, Some(link.clone())).expect("start the mock modem");
        let gammurc = dir.path().join("gammurc");
        // The debug log costs nothing and is the only way to see the exchange when a run fails
        // in CI; `failure` prints its tail.
        let log = dir.path().join("gammu.log");
        std::fs::write(
            &gammurc,
            format!(
                "[gammu]\ndevice = {}\nconnection = at\nlogfile = {}\nlogformat = textall\n",
                link.display(),
                log.display()
            ),
        )
        .expect("write the gammurc");
        Some(Rig {
            modem,
            dir,
            gammurc,
        })
    }

    /// Runs `gammu -c <gammurc> <args>` to completion, killing it after [`GAMMU_TIMEOUT`].
    fn gammu(&self, args: &[&str]) -> Run {
        let mut child = Command::new("gammu")
            .arg("-c")
            .arg(&self.gammurc)
            .args(args)
            // UTF-8 both ways: gammu converts `-text` from, and message texts to, the locale's
            // charset, and the emoji tests need them to survive.
            .env("LC_ALL", "C.UTF-8")
            // Without `-text`, `sendsms` would read the text from stdin and wait for it.
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gammu");
        // Read both pipes on threads so that a chatty gammu never blocks on a full pipe while
        // we wait for it to exit.
        let stdout = drain(child.stdout.take().expect("gammu's stdout is piped"));
        let stderr = drain(child.stderr.take().expect("gammu's stderr is piped"));
        let deadline = Instant::now() + GAMMU_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for gammu") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // Kill only our own child; the pipes then close and the readers finish.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = Run {
            status: status.unwrap_or_default(),
            stdout: stdout.join().expect("gammu's stdout reader"),
            stderr: stderr.join().expect("gammu's stderr reader"),
        };
        if status.is_none() {
            panic!(
                "gammu {args:?} still running after {GAMMU_TIMEOUT:?}, killed\n{}",
                self.failure(&run)
            );
        }
        run
    }

    /// Like [`Rig::gammu`], and the run must succeed.
    fn gammu_ok(&self, args: &[&str]) -> Run {
        let run = self.gammu(args);
        assert!(
            run.status.success(),
            "gammu {args:?} failed with {}\n{}",
            run.status,
            self.failure(&run)
        );
        run
    }

    /// Everything worth seeing when a run went wrong: gammu's output, the commands the mock
    /// received, and the end of gammu's debug log.
    fn failure(&self, run: &Run) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("gammu.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "--- stdout\n{}\n--- stderr\n{}\n--- commands the mock received\n{:#?}\n\
             --- end of gammu's log\n{tail}",
            run.stdout,
            run.stderr,
            self.modem.commands()
        )
    }

    /// Whether the mock received exactly this command line.
    fn received(&self, command: &str) -> bool {
        self.modem.commands().iter().any(|line| line == command)
    }

    /// The SUBMIT of every message sent, with its text.
    fn submits(&self) -> Vec<(Submit, String, String)> {
        self.modem
            .submitted()
            .into_iter()
            .map(|sent| {
                let submit = sent
                    .submit
                    .expect("gammu sends in PDU mode, so the mock decoded a SUBMIT");
                (submit, sent.recipient, sent.text)
            })
            .collect()
    }
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output early; the assertions then show what was read.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Whether gammu can run. Missing: a failure in CI, a note elsewhere.
fn gammu_installed() -> bool {
    match Command::new("gammu")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(_) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "gammu is not installed, and with CI=true the gammu interop tests are \
                     mandatory. Install it with `sudo apt-get install gammu` (Debian/Ubuntu), \
                     or run .ci/run, which installs it."
                );
            }
            eprintln!(
                "note: gammu is not installed; skipping the gammu interop test \
                 (apt-get install gammu to run it)"
            );
            false
        }
        Err(error) => panic!("cannot run gammu: {error}"),
    }
}

/// A config with a short network round trip, so that sends take milliseconds.
fn fast() -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(50),
        ..MockConfig::default()
    }
}

/// The values of gammu's `Name : value` lines called `name`, in order.
fn fields<'a>(output: &'a str, name: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
        .collect()
}

/// Whether `output` has a line that is exactly `line`.
fn has_line(output: &str, line: &str) -> bool {
    output.lines().any(|l| l.trim_end() == line)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn identify_shows_the_generic_profile() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    let run = rig.gammu_ok(&["identify"]);
    let text = run.text();
    assert_eq!(
        fields(&text, "Manufacturer"),
        ["smsrelay"],
        "{}",
        rig.failure(&run)
    );
    assert_eq!(
        fields(&text, "IMEI"),
        ["350000000000006"],
        "{}",
        rig.failure(&run)
    );
    assert_eq!(
        fields(&text, "SIM IMSI"),
        ["001010123456789"],
        "{}",
        rig.failure(&run)
    );
    // gammu got those from the commands the mock answered, not from anywhere else.
    for command in ["AT+CGMI", "AT+CGSN", "AT+CIMI"] {
        assert!(rig.received(command), "no {command}\n{}", rig.failure(&run));
    }
    assert_eq!(
        fields(&text, "Device"),
        [path_str(&rig.dir.path().join("modem"))],
        "gammu opened the device through the mock's symlink"
    );
}

#[test]
fn getsecuritystatus_without_a_pin_has_nothing_to_enter() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    let run = rig.gammu_ok(&["getsecuritystatus"]);
    assert!(
        has_line(&run.text(), "Nothing to enter."),
        "{}",
        rig.failure(&run)
    );
    assert!(rig.received("AT+CPIN?"), "{}", rig.failure(&run));
}

#[test]
fn getsecuritystatus_with_a_pin_says_it_waits_for_it() {
    let Some(rig) = Rig::start(MockConfig {
        pin: Some("1234".into()),
        ..fast()
    }) else {
        return;
    };
    let run = rig.gammu_ok(&["getsecuritystatus"]);
    assert!(
        has_line(&run.text(), "Waiting for PIN."),
        "{}",
        rig.failure(&run)
    );
    assert!(rig.received("AT+CPIN?"), "{}", rig.failure(&run));
    // Asking is all it does: the SIM must still be locked, so no PIN may have been entered.
    let entered: Vec<String> = rig
        .modem
        .commands()
        .into_iter()
        .filter(|line| line.starts_with("AT+CPIN=") && line != "AT+CPIN=?")
        .collect();
    assert!(entered.is_empty(), "gammu entered a PIN: {entered:?}");
}

#[test]
fn sendsms_text_submits_one_gsm_message() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    let text = "Hello from gammu";
    let run = rig.gammu_ok(&["sendsms", "TEXT", RECIPIENT, "-text", text]);
    assert!(
        run.text().contains("message reference=0"),
        "{}",
        rig.failure(&run)
    );

    let sent = rig.modem.submitted();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].reference, 0, "the first TP-MR the mock hands out");
    assert_eq!(sent[0].recipient, RECIPIENT);
    assert_eq!(sent[0].text, text);
    let submit = sent[0].submit.as_ref().expect("a PDU-mode SUBMIT");
    assert_eq!(submit.dcs.alphabet(), Alphabet::Gsm7);
    assert_eq!(submit.user_data.concat(), None, "a short text is one part");
    assert!(
        rig.modem
            .commands()
            .iter()
            .any(|line| line.starts_with("AT+CMGS=")),
        "{}",
        rig.failure(&run)
    );
}

#[test]
fn sendsms_with_len_400_submits_three_concatenated_parts() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    // 400 GSM characters: more than two parts of 153, and no two parts alike, so that a part
    // sent twice or out of order shows in the joined text.
    let text: String = (0..)
        .flat_map(|n| format!("Part of a long message, sentence {n}. ").into_bytes())
        .take(400)
        .map(char::from)
        .collect();
    assert_eq!(text.chars().count(), 400);
    let run = rig.gammu_ok(&["sendsms", "TEXT", RECIPIENT, "-len", "400", "-text", &text]);
    let output = run.text();
    for reference in 0..3 {
        assert!(
            output.contains(&format!("message reference={reference}")),
            "no reference {reference}\n{}",
            rig.failure(&run)
        );
    }

    let parts = rig.submits();
    assert_eq!(parts.len(), 3, "{}", rig.failure(&run));
    let concats: Vec<_> = parts
        .iter()
        .map(|(submit, _, _)| {
            submit
                .user_data
                .concat()
                .expect("every part has a concatenation header")
        })
        .collect();
    for (index, concat) in concats.iter().enumerate() {
        assert_eq!(concat.reference, concats[0].reference, "one reference");
        assert_eq!(concat.total, 3, "the total agrees in every part");
        assert_eq!(usize::from(concat.sequence), index + 1, "sent in order");
    }
    for (submit, recipient, _) in &parts {
        assert_eq!(recipient, RECIPIENT);
        assert_eq!(submit.dcs.alphabet(), Alphabet::Gsm7);
    }
    let joined: String = parts.iter().map(|(_, _, part)| part.as_str()).collect();
    assert_eq!(joined, text);
}

#[test]
fn sendsms_unicode_round_trips_an_emoji_in_ucs2() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    // "ü" and "ß" alone would fit other alphabets; the emoji needs a UTF-16 surrogate pair.
    let text = "Grüße 😀";
    let run = rig.gammu_ok(&["sendsms", "TEXT", RECIPIENT, "-unicode", "-text", text]);
    assert!(
        run.text().contains("message reference=0"),
        "{}",
        rig.failure(&run)
    );

    let parts = rig.submits();
    assert_eq!(parts.len(), 1, "{}", rig.failure(&run));
    let (submit, recipient, sent) = &parts[0];
    assert_eq!(recipient, RECIPIENT);
    assert_eq!(submit.dcs.alphabet(), Alphabet::Ucs2);
    assert_eq!(sent, text);
}

#[test]
fn getallsms_lists_a_gsm_and_a_ucs2_message() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    let plain = InboundSms::new("+447700900999", "Hello from the network");
    let parcel = InboundSms {
        ucs2: true,
        ..InboundSms::new("DHL", "Ihr Paket 📦 kommt heute")
    };
    for sms in [&plain, &parcel] {
        assert_eq!(rig.modem.inject_sms(sms).expect("inject an SMS"), 1);
    }
    let run = rig.gammu_ok(&["getallsms"]);
    let output = run.text();
    assert_eq!(
        fields(&output, "Remote number"),
        ["\"+447700900999\"", "\"DHL\""],
        "{}",
        rig.failure(&run)
    );
    for sms in [&plain, &parcel] {
        assert!(
            has_line(&output, &sms.text),
            "no {:?}\n{}",
            sms.text,
            rig.failure(&run)
        );
    }
    assert_eq!(
        fields(&output, "Coding"),
        [
            "Default GSM alphabet (no compression)",
            "Unicode (no compression)"
        ],
        "{}",
        rig.failure(&run)
    );
    assert!(
        output.contains("2 SMS parts in 2 SMS sequences"),
        "{}",
        rig.failure(&run)
    );
    // Reading marks the messages read, as on a SIM; neither is gone.
    let stored = rig.modem.with_engine(|engine, _| engine.stored("SM"));
    let slots: Vec<(usize, u8)> = stored
        .iter()
        .map(|(index, stat, _)| (*index, *stat))
        .collect();
    assert_eq!(slots, [(1, 1), (2, 1)]);
}

#[test]
fn deletesms_removes_the_message_from_the_sim() {
    let Some(rig) = Rig::start(fast()) else {
        return;
    };
    for text in ["first", "second"] {
        rig.modem
            .inject_sms(&InboundSms::new("+447700900999", text))
            .expect("inject an SMS");
    }
    let indexes = |rig: &Rig| -> Vec<usize> {
        rig.modem
            .with_engine(|engine, _| engine.stored("SM"))
            .into_iter()
            .map(|(index, _, _)| index)
            .collect()
    };
    assert_eq!(indexes(&rig), [1, 2]);

    // Folder 1 is gammu's inbox, location 1 the SIM's index 1.
    let run = rig.gammu_ok(&["deletesms", "1", "1"]);
    assert_eq!(indexes(&rig), [2], "{}", rig.failure(&run));
    assert!(rig.received("AT+CMGD=1"), "{}", rig.failure(&run));
}
