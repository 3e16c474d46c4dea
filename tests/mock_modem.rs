//! The simulated modem, driven over its pseudo-terminal by a plain serial client: every
//! behaviour of docs/at-sms.md §7 that a driver relies on, and each vendor profile.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serialport::TTYPort;
use smsrelay::mock::{InboundSms, MockConfig, MockModem, Profile, ReportBehaviour, UrcPoint};
use smsrelay::pdu::{self, Address, Pdu, StatusClass, SubmitOptions, Tpdu};

/// Long enough for a loaded CI machine, short enough that a hang fails quickly.
const DEADLINE: Duration = Duration::from_secs(10);

/// A serial client that keeps everything it read, so tests can wait for text to appear.
struct Port {
    port: TTYPort,
    seen: Vec<u8>,
}

impl Port {
    fn open(path: &Path) -> Port {
        let port = serialport::new(path.to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .expect("the mock's PTY opens");
        Port {
            port,
            seen: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.port.write_all(bytes).expect("write to the PTY");
    }

    fn send(&mut self, command: &str) {
        self.write(format!("{command}\r").as_bytes());
    }

    /// Reads until `needle` has been seen; returns everything up to and including it and keeps
    /// the rest for the next call.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(at) = text.find(needle) {
                let end = at + needle.len();
                let taken = text[..end].to_string();
                self.seen = text.as_bytes()[end..].to_vec();
                return taken;
            }
            assert!(
                Instant::now() < deadline,
                "waited {DEADLINE:?} for {needle:?}; got {text:?}"
            );
            self.read_more();
        }
    }

    /// Sends a command and returns its whole answer up to and including the final result.
    fn command(&mut self, command: &str) -> String {
        self.send(command);
        self.expect_final()
    }

    /// Reads up to and including the next final result line.
    fn expect_final(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = String::from_utf8_lossy(&self.seen).into_owned();
            let end = text.match_indices("\r\n").map(|(at, _)| at).find_map(|at| {
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line = &text[line_start..at];
                let is_final = line == "OK"
                    || line == "ERROR"
                    || line == "COMMAND NOT SUPPORT"
                    || line.starts_with("+CMS ERROR:")
                    || line.starts_with("+CME ERROR:");
                is_final.then_some(at + 2)
            });
            if let Some(end) = end {
                self.seen = text.as_bytes()[end..].to_vec();
                return text[..end].to_string();
            }
            assert!(Instant::now() < deadline, "no final result: {text:?}");
            self.read_more();
        }
    }

    /// One read of whatever the modem has written (up to the port's 20 ms timeout).
    fn read_more(&mut self) {
        let mut buffer = [0u8; 512];
        match self.port.read(&mut buffer) {
            Ok(count) => self.seen.extend_from_slice(&buffer[..count]),
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {}
            Err(error) => panic!("read from the PTY: {error}"),
        }
    }

    /// Reads for `quiet` and returns what came; for asserting that nothing does.
    fn drain(&mut self, quiet: Duration) -> String {
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            let mut buffer = [0u8; 512];
            if let Ok(count) = self.port.read(&mut buffer) {
                self.seen.extend_from_slice(&buffer[..count]);
            }
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.seen)).into_owned()
    }
}

fn fast() -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(20),
        report_delay: Duration::from_millis(20),
        ..MockConfig::default()
    }
}

fn start(config: MockConfig) -> (MockModem, Port) {
    let modem = MockModem::start(config, None).expect("mock starts");
    let port = Port::open(&modem.path());
    (modem, port)
}

/// Echo off, numeric errors, PDU mode: what a driver sets first.
fn init(port: &mut Port) {
    port.command("ATE0");
    assert!(port.command("AT+CMEE=1").ends_with("\r\nOK\r\n"));
    port.command("AT+CMGF=0");
}

/// Sends one SUBMIT through the prompt and returns the answer after Ctrl-Z.
fn send_pdu(port: &mut Port, to: &str, text: &str, status_report: bool) -> String {
    let options = SubmitOptions {
        status_report,
        ..SubmitOptions::default()
    };
    let recipient = Address::from_number(to).expect("valid number");
    let outgoing = pdu::submit_parts(&recipient, text, &options).expect("encodes");
    let part = &outgoing.parts[0];
    port.send(&format!("AT+CMGS={}", part.cmgs_length));
    port.expect("> ");
    port.write(format!("{}\x1a", part.hex).as_bytes());
    port.expect_final()
}

fn cmgs_reference(answer: &str) -> u8 {
    answer
        .split("+CMGS: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|mr| mr.parse().ok())
        .unwrap_or_else(|| panic!("no +CMGS in {answer:?}"))
}

/// Waits for a two-line routed URC (`+CMT: ,<len>` or `+CDS: <len>`, then the PDU line) and
/// decodes its PDU.
fn routed(port: &mut Port, header: &str) -> Pdu {
    port.expect(header);
    port.expect("\r\n");
    let line = port.expect("\r\n");
    Pdu::from_hex(line.trim()).expect("the routed PDU decodes")
}

/// The PDU line after a `+CMT:`/`+CDS:`/`+CMGR:` header.
fn pdu_after(text: &str, header: &str) -> Pdu {
    let after = text.split(header).nth(1).expect("header present");
    let line = after.lines().nth(1).expect("a PDU line");
    Pdu::from_hex(line.trim()).expect("the PDU decodes")
}

#[test]
fn echo_and_framing() {
    let (_modem, mut port) = start(fast());
    // Echo is on at power-up: the command comes back before its answer.
    assert_eq!(port.command("AT"), "AT\r\r\nOK\r\n");
    assert_eq!(port.command("ATE0"), "ATE0\r\r\nOK\r\n");
    assert_eq!(port.command("AT"), "\r\nOK\r\n");
    // Several commands on one line, lower case, a bare LF as line end.
    port.write(b"at+cmee=1;+cmgf=0\n");
    assert_eq!(port.expect("OK\r\n"), "\r\nOK\r\n");
    assert_eq!(port.command("AT+CMGF?"), "\r\n+CMGF: 0\r\n\r\nOK\r\n");
}

#[test]
fn answers_arrive_whole_even_one_byte_per_write() {
    let (modem, mut port) = start(fast());
    modem.set_write_chunk(Some(1));
    init(&mut port);
    assert_eq!(port.command("AT+CSQ"), "\r\n+CSQ: 21,99\r\n\r\nOK\r\n");
}

#[test]
fn error_reporting_follows_cmee() {
    let (_modem, mut port) = start(fast());
    port.command("ATE0");
    assert_eq!(port.command("AT+CMGR=9"), "\r\nERROR\r\n");
    port.command("AT+CMEE=1");
    assert_eq!(port.command("AT+CMGR=9"), "\r\n+CMS ERROR: 321\r\n");
    port.command("AT+CMEE=2");
    assert!(
        port.command("AT+CMGR=9")
            .contains("+CMS ERROR: invalid memory index")
    );
    assert_eq!(port.command("AT+NOSUCH"), "\r\nERROR\r\n");
}

#[test]
fn sim_pin_then_puk() {
    let config = MockConfig {
        pin: Some("1234".into()),
        ..fast()
    };
    let (_modem, mut port) = start(config);
    init(&mut port);
    assert!(port.command("AT+CPIN?").contains("+CPIN: SIM PIN"));
    // SMS commands need the SIM.
    assert!(port.command("AT+CPMS?").contains("+CMS ERROR: 311"));
    for _ in 0..3 {
        assert!(port.command("AT+CPIN=\"0000\"").contains("+CME ERROR: 16"));
    }
    assert!(port.command("AT+CPIN?").contains("+CPIN: SIM PUK"));
    assert!(
        port.command("AT+CPIN=\"12345678\",\"4321\"")
            .ends_with("\r\nOK\r\n")
    );
    assert!(port.command("AT+CPIN?").contains("+CPIN: READY"));
    assert!(port.command("AT+CIMI").contains("001010123456789"));
}

#[test]
fn sim_busy_after_the_pin() {
    let config = MockConfig {
        pin: Some("1234".into()),
        sim_busy: Duration::from_secs(1),
        ..fast()
    };
    let (_modem, mut port) = start(config);
    init(&mut port);
    port.command("AT+CPIN=\"1234\"");
    assert!(port.command("AT+CSCA?").contains("+CME ERROR: 14"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = port.command("AT+CSCA?");
        if answer.contains("+CSCA: \"+447700900001\",145") {
            break;
        }
        assert!(Instant::now() < deadline, "SIM still busy: {answer:?}");
        port.drain(Duration::from_millis(50));
    }
}

#[test]
fn registration_signal_and_their_urcs() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    assert_eq!(port.command("AT+CREG?"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
    port.command("AT+CREG=2");
    assert_eq!(
        port.command("AT+CREG?"),
        "\r\n+CREG: 2,1,\"5E25\",\"605F\"\r\n\r\nOK\r\n"
    );
    modem.with_engine(|engine, _| engine.set_registration(2));
    assert_eq!(
        port.expect("\"605F\"\r\n"),
        "\r\n+CREG: 2,\"5E25\",\"605F\"\r\n"
    );
    modem.with_engine(|engine, _| engine.set_signal(9));
    assert!(port.command("AT+CSQ").contains("+CSQ: 9,99"));
    assert!(port.command("AT+COPS?").contains("+COPS: 0\r\n"));
}

#[test]
fn send_returns_wrapping_references_and_logs_the_message() {
    let config = MockConfig {
        submit_delay: Duration::ZERO,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    let mut references = Vec::new();
    for n in 0..258 {
        references.push(cmgs_reference(&send_pdu(
            &mut port,
            "+447700900123",
            &format!("n{n}"),
            false,
        )));
    }
    assert_eq!(&references[..2], [0, 1]);
    assert_eq!(&references[255..], [255, 0, 1]);
    let submitted = modem.submitted();
    assert_eq!(submitted.len(), 258);
    assert_eq!(submitted[257].text, "n257");
    assert_eq!(submitted[257].recipient, "+447700900123");
}

#[test]
fn a_wrong_length_or_bad_hex_is_cms_304_and_esc_aborts() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    // E1 is 29 TPDU octets; claim 30.
    port.send("AT+CMGS=30");
    port.expect("> ");
    port.write(b"0031000C914477000910320000A711C8329BFD0699E5EF36888E2E83A069\x1a");
    assert!(port.expect("304\r\n").contains("+CMS ERROR: 304"));
    port.send("AT+CMGS=3");
    port.expect("> ");
    port.write(b"00ZZ11\x1a");
    assert!(port.expect("304\r\n").contains("+CMS ERROR: 304"));
    port.send("AT+CMGS=29");
    port.expect("> ");
    port.write(b"0031000C91\x1b");
    assert_eq!(port.expect("OK\r\n"), "\r\nOK\r\n");
    assert!(modem.submitted().is_empty(), "nothing was sent");
    // The modem is back in command mode.
    assert!(port.command("AT").ends_with("\r\nOK\r\n"));
}

#[test]
fn sends_fail_on_demand_and_without_network_or_smsc() {
    let config = MockConfig {
        smsc: None,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    // The PDU says 00 (use the stored SMSC) and the modem has none.
    assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMS ERROR: 330"));
    port.command("AT+CSCA=\"+447700900001\",145");
    modem.with_engine(|engine, _| engine.fail_next_sends(2, 500));
    for _ in 0..2 {
        assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMS ERROR: 500"));
    }
    assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMGS: 0"));
    modem.with_engine(|engine, _| engine.set_registration(0));
    assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMS ERROR: 331"));
    assert_eq!(
        modem.submitted().len(),
        1,
        "only the accepted send is logged"
    );
}

#[test]
fn status_reports_stored_or_routed_per_cnmi() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    let reference = cmgs_reference(&send_pdu(&mut port, "+447700900123", "report me", true));
    let urc = port.expect("\r\n+CDSI: \"SM\",");
    assert!(urc.ends_with("+CDSI: \"SM\","), "{urc:?}");
    let index: usize = port.expect("\r\n").trim().parse().expect("an index");
    let read = port.command(&format!("AT+CMGR={index}"));
    let Tpdu::StatusReport(report) = pdu_after(&read, "+CMGR: ").tpdu else {
        panic!("not a status report: {read:?}")
    };
    assert_eq!(report.message_reference, reference);
    assert_eq!(report.recipient.to_string(), "+447700900123");
    assert_eq!(report.status.class(), StatusClass::Delivered);

    // ds=1: the report comes as a two-line +CDS, first "still trying", then delivered.
    port.command("AT+CNMI=2,1,0,1,0");
    modem.with_engine(|engine, _| engine.set_report(ReportBehaviour::TemporaryThenDelivered));
    let reference = cmgs_reference(&send_pdu(&mut port, "+447700900124", "twice", true));
    let mut classes = Vec::new();
    for _ in 0..2 {
        let Tpdu::StatusReport(report) = routed(&mut port, "+CDS: ").tpdu else {
            panic!("not a report")
        };
        assert_eq!(report.message_reference, reference);
        classes.push(report.status.class());
    }
    assert_eq!(classes, [StatusClass::Pending, StatusClass::Delivered]);

    modem.with_engine(|engine, _| engine.set_report(ReportBehaviour::PermanentFailure));
    send_pdu(&mut port, "+447700900125", "fails", true);
    let Tpdu::StatusReport(report) = routed(&mut port, "+CDS: ").tpdu else {
        panic!("not a report")
    };
    assert_eq!(report.status.0, 0x46);

    // No report requested, or behaviour "none": nothing comes.
    modem.with_engine(|engine, _| engine.set_report(ReportBehaviour::None));
    send_pdu(&mut port, "+447700900126", "silence", true);
    send_pdu(&mut port, "+447700900127", "no request", false);
    assert!(!port.drain(Duration::from_millis(200)).contains("+CDS"));
}

#[test]
fn inbound_stored_with_cmti_read_listed_and_deleted() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "first"))
        .expect("injects");
    assert_eq!(
        port.expect("\r\n+CMTI: \"SM\",1\r\n"),
        "\r\n+CMTI: \"SM\",1\r\n"
    );
    modem
        .inject_sms(&InboundSms::new("DHL", "Ihr Paket 😀"))
        .expect("injects");
    port.expect("+CMTI: \"SM\",2\r\n");

    let read = port.command("AT+CMGR=1");
    assert!(read.starts_with("\r\n+CMGR: 0,,"), "{read:?}");
    let Tpdu::Deliver(deliver) = pdu_after(&read, "+CMGR: ").tpdu else {
        panic!("not a deliver")
    };
    assert_eq!(
        (
            deliver.sender.to_string().as_str(),
            deliver.user_data.text()
        ),
        ("+447700900999", Some("first"))
    );
    // Reading marks it read.
    assert!(port.command("AT+CMGR=1").starts_with("\r\n+CMGR: 1,,"));

    let list = port.command("AT+CMGL=4");
    let headers: Vec<&str> = list.lines().filter(|l| l.starts_with("+CMGL:")).collect();
    assert_eq!(headers.len(), 2, "{list:?}");
    assert!(headers[0].starts_with("+CMGL: 1,1,,"));
    assert!(headers[1].starts_with("+CMGL: 2,0,,"));
    let second = pdu_after(&list, "+CMGL: 2,");
    let Tpdu::Deliver(deliver) = second.tpdu else {
        panic!("not a deliver")
    };
    assert_eq!(deliver.user_data.text(), Some("Ihr Paket 😀"));
    assert_eq!(deliver.sender.to_string(), "DHL");

    assert!(
        port.command("AT+CPMS?")
            .contains("+CPMS: \"SM\",2,30,\"SM\",2,30,\"SM\",2,30")
    );
    port.command("AT+CMGD=1");
    assert!(port.command("AT+CMGR=1").contains("+CMS ERROR: 321"));
    port.command("AT+CMGD=1,4");
    assert_eq!(port.command("AT+CMGL=4"), "\r\nOK\r\n");
}

#[test]
fn long_inbound_messages_arrive_as_concatenated_parts() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    let text = "part ".repeat(70);
    let parts = modem
        .inject_sms(&InboundSms::new("+447700900999", &text))
        .expect("injects");
    assert_eq!(parts, 3);
    port.expect("+CMTI: \"SM\",3\r\n");
    let list = port.command("AT+CMGL=4");
    let mut joined = String::new();
    for index in 1..=3 {
        let Tpdu::Deliver(deliver) = pdu_after(&list, &format!("+CMGL: {index},")).tpdu else {
            panic!("not a deliver")
        };
        let concat = deliver.user_data.concat().expect("a concatenation header");
        assert_eq!((concat.sequence, concat.total), (index, 3));
        joined.push_str(deliver.user_data.text().expect("text"));
    }
    assert_eq!(joined, text);
}

#[test]
fn routed_messages_need_cnma_when_csms_is_1() {
    let config = MockConfig {
        // Long enough to ack on a busy machine; the no-ack half below waits it out once.
        cnma_timeout: Duration::from_secs(2),
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    port.command("AT+CSMS=1");
    port.command("AT+CNMI=2,2,0,1,0");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "direct"))
        .expect("injects");
    assert!(matches!(
        routed(&mut port, "+CMT: ,").tpdu,
        Tpdu::Deliver(_)
    ));
    assert!(port.command("AT+CNMA").ends_with("\r\nOK\r\n"));
    assert!(
        port.command("AT+CNMA").contains("+CMS ERROR: 340"),
        "nothing left to ack"
    );
    assert!(
        modem
            .with_engine(|engine, _| engine.stored("SM"))
            .is_empty(),
        "routed, not stored"
    );

    // No ack in time: the modem resets mt and ds to 0 and the network re-delivers later.
    modem
        .inject_sms(&InboundSms::new("+447700900999", "unacked"))
        .expect("injects");
    port.expect("+CMT: ,");
    let deadline = Instant::now() + DEADLINE;
    while !port.command("AT+CNMI?").contains("+CNMI: 2,0,0,0,0") {
        assert!(Instant::now() < deadline, "CNMI was not reset");
        port.drain(Duration::from_millis(50));
    }
    port.command("AT+CNMI=2,2,0,1,0");
    let redelivered = port.expect("\r\n") + &port.expect("+CMT: ,");
    assert!(redelivered.contains("+CMT: ,"));
}

#[test]
fn a_full_store_holds_messages_until_a_delete() {
    let config = MockConfig {
        capacity: 2,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    for n in 1..=2 {
        modem
            .inject_sms(&InboundSms::new("+447700900999", &format!("m{n}")))
            .expect("injects");
        port.expect(&format!("+CMTI: \"SM\",{n}\r\n"));
    }
    modem
        .inject_sms(&InboundSms::new("+447700900999", "m3"))
        .expect("injects");
    assert!(
        !port.drain(Duration::from_millis(200)).contains("+CMTI"),
        "no +CMTI while full"
    );
    assert!(port.command("AT+CPMS?").contains("\"SM\",2,2"));
    port.command("AT+CMGD=1");
    // Room again: the held message arrives.
    port.expect("+CMTI: \"SM\",1\r\n");
}

#[test]
fn urcs_come_out_at_every_injection_point() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    modem
        .inject_sms(&InboundSms::new("+447700900999", "x"))
        .expect("stored");
    let inject = |point, text: &str| modem.with_engine(|engine, _| engine.inject_urc(point, text));

    inject(UrcPoint::BeforeFinal, "+CMTI: \"SM\",7");
    let read = port.command("AT+CMGR=1");
    let lines: Vec<&str> = read.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{read:?}");
    assert!(lines[0].starts_with("+CMGR:"));
    assert_eq!(lines[2], "+CMTI: \"SM\",7", "between the PDU line and OK");
    assert_eq!(lines[3], "OK");

    port.command("ATE1");
    inject(UrcPoint::AfterEcho, "RING");
    assert_eq!(port.command("AT"), "AT\r\r\nRING\r\n\r\nOK\r\n");
    port.command("ATE0");

    inject(UrcPoint::BeforePrompt, "^RSSI:18");
    inject(UrcPoint::AfterSubmit, "+CREG: 1,\"5E25\",\"605F\"");
    let recipient = Address::from_number("+447700900123").expect("valid");
    let part = &pdu::submit_parts(&recipient, "x", &SubmitOptions::default())
        .expect("encodes")
        .parts[0];
    port.send(&format!("AT+CMGS={}", part.cmgs_length));
    assert_eq!(port.expect("> "), "\r\n^RSSI:18\r\n\r\n> ");
    port.write(format!("{}\x1a", part.hex).as_bytes());
    let answer = port.expect_final();
    assert!(
        answer.starts_with("\r\n+CREG: 1,\"5E25\",\"605F\"\r\n\r\n+CMGS: "),
        "{answer:?}"
    );

    inject(UrcPoint::AfterFinal, "+CDSI: \"SM\",2");
    port.command("AT");
    assert_eq!(
        port.expect("\r\n+CDSI: \"SM\",2\r\n"),
        "\r\n+CDSI: \"SM\",2\r\n"
    );
    inject(UrcPoint::Now, "+CMT: ,3\r\n00040000");
    assert!(port.expect("00040000\r\n").contains("+CMT: ,3"));
}

#[test]
fn a_reboot_brings_banners_and_forgets_settings() {
    let config = MockConfig {
        profile: Profile::Sim800,
        ..fast()
    };
    let (_modem, mut port) = start(config);
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    port.send("AT+CFUN=1,1");
    port.expect("OK\r\n");
    let banners = port.expect("SMS Ready\r\n");
    for banner in ["RDY", "Call Ready"] {
        assert!(banners.contains(banner), "{banners:?}");
    }
    // Echo is back on, CNMI back to 0, and SIM800 boots in text mode.
    assert_eq!(
        port.command("AT+CNMI?"),
        "AT+CNMI?\r\r\n+CNMI: 0,0,0,0,0\r\n\r\nOK\r\n"
    );
    assert!(port.command("AT+CMGF?").contains("+CMGF: 1"));
}

#[test]
fn a_deaf_modem_answers_again_after_the_port_is_reopened() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    modem.with_engine(|engine, _| engine.hang());
    port.send("AT");
    assert_eq!(port.drain(Duration::from_millis(300)), "");
    drop(port);
    let deadline = Instant::now() + DEADLINE;
    loop {
        // A driver's reopen leaves the port closed for a moment (its backoff); the mock sees
        // the hangup only if it gets to run in that window, which a busy CI machine may delay,
        // so the test keeps the port closed briefly and tries again until the deadline.
        std::thread::sleep(Duration::from_millis(50));
        let mut port = Port::open(&modem.path());
        port.send("AT");
        if port.drain(Duration::from_millis(200)).contains("OK") {
            break;
        }
        assert!(Instant::now() < deadline, "still deaf after reopening");
    }
}

#[test]
fn the_first_command_after_idle_can_be_dropped() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    modem.with_engine(|engine, _| engine.drop_next_commands(1));
    port.send("AT");
    assert_eq!(port.drain(Duration::from_millis(200)), "");
    assert_eq!(port.command("AT"), "\r\nOK\r\n");
}

#[test]
fn re_enumeration_moves_the_device_and_the_link_follows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(fast(), Some(link.clone())).expect("starts");
    let first = modem.path();
    assert_eq!(std::fs::read_link(&link).expect("a symlink"), first);
    {
        let mut port = Port::open(&link);
        assert!(port.command("AT").ends_with("OK\r\n"));
        modem.disconnect(Duration::from_millis(100));
        // The old device goes away under the host: reads fail or hang up.
        let deadline = Instant::now() + DEADLINE;
        while modem.path() == first {
            assert!(Instant::now() < deadline, "no new device");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let second = modem.path();
    assert_eq!(std::fs::read_link(&link).expect("a symlink"), second);
    let mut port = Port::open(&link);
    // A fresh boot: echo is on again.
    assert_eq!(port.command("AT"), "AT\r\r\nOK\r\n");
}

#[test]
fn profiles_have_their_quirks() {
    for profile in Profile::ALL {
        let config = MockConfig { profile, ..fast() };
        let (_modem, mut port) = start(config);
        port.command("ATE0");
        port.command("AT+CMEE=1");
        let manufacturer = port.command("AT+CGMI");
        assert!(
            manufacturer.contains(profile.manufacturer()),
            "{profile}: {manufacturer:?}"
        );
        match profile {
            Profile::Huawei => {
                assert_eq!(port.command("AT+NOSUCH"), "\r\nCOMMAND NOT SUPPORT\r\n");
                port.command("AT+CREG=2");
                assert!(
                    port.command("AT+CREG?")
                        .contains("+CREG: 2,1,5E25,605F\r\n")
                );
            }
            Profile::Wavecom => {
                port.send("AT+CPIN?");
                assert_eq!(port.expect("READY\r\n"), "\r\n+CPIN: READY\r\n");
                assert!(
                    !port.drain(Duration::from_millis(200)).contains("OK"),
                    "Wavecom sends no OK"
                );
                port.command("AT+CFUN=1");
                assert!(port.command("AT+CPMS?").contains("+CME ERROR: 515"));
            }
            Profile::Qualcomm => {
                assert!(port.command("AT+CNMI=?").contains("(0-2)"));
                assert!(
                    port.command("AT+CNMI=2,1,0,1,0")
                        .contains("+CMS ERROR: 303")
                );
                assert!(port.command("AT+CNMI=2,1,0,2,0").ends_with("OK\r\n"));
            }
            Profile::Quectel => {
                assert!(port.command("AT+CPMS=?").contains("\"SR\""));
            }
            Profile::Sim800 => {
                assert!(port.command("AT+CMGF?").contains("+CMGF: 1"));
            }
            Profile::Generic => {
                assert_eq!(port.command("AT+NOSUCH"), "\r\nERROR\r\n");
            }
        }
    }
}

#[test]
fn huawei_indexes_start_at_zero() {
    let config = MockConfig {
        profile: Profile::Huawei,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "zero"))
        .expect("injects");
    port.expect("+CMTI: \"SM\",0\r\n");
    assert!(port.command("AT+CMGR=0").contains("+CMGR: 0,,"));
}

#[test]
fn reference_vectors_can_be_served_as_stored_messages() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/pdu/vectors.json")).expect("json");
    let delivers: Vec<&str> = vectors
        .as_array()
        .expect("array")
        .iter()
        .filter(|v| v["kind"] == "deliver" && v["has_smsc"] == true)
        .filter_map(|v| v["pdu_hex"].as_str())
        .collect();
    for hex in &delivers {
        modem.inject_pdu(hex).expect("a DELIVER vector");
    }
    let list = port.command("AT+CMGL=4");
    for (n, hex) in delivers.iter().enumerate() {
        assert!(list.contains(&format!("+CMGL: {},0,,", n + 1)));
        assert!(list.contains(*hex), "vector {n} served as it is");
    }
}

#[test]
fn the_control_interface_speaks_json_lines() {
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    let modem = Arc::new(MockModem::start(fast(), None).expect("starts"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let server = Arc::clone(&modem);
    std::thread::spawn(move || smsrelay::mock::control::serve(server, listener));
    let mut port = Port::open(&modem.path());
    init(&mut port);
    port.command("AT+CNMI=2,1,0,2,0");

    let stream = TcpStream::connect(address).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut ask = |request: &str| -> serde_json::Value {
        writeln!(&stream, "{request}").expect("write");
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        serde_json::from_str(&line).expect("a JSON answer")
    };
    let answer = ask(r#"{"cmd":"inject_sms","from":"+447700900999","text":"via control"}"#);
    assert_eq!(answer["ok"], true, "{answer}");
    port.expect("+CMTI: \"SM\",1\r\n");
    send_pdu(&mut port, "+447700900123", "logged", false);
    let answer = ask(r#"{"cmd":"submitted"}"#);
    assert_eq!(answer["messages"][0]["text"], "logged");
    assert_eq!(answer["messages"][0]["to"], "+447700900123");
    let answer = ask(r#"{"cmd":"no_such_thing"}"#);
    assert_eq!(answer["ok"], false);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("bad request"))
    );
    let answer = ask("not json");
    assert_eq!(answer["ok"], false);
}

#[test]
fn huawei_noise_and_lagging_storage_counters() {
    let config = MockConfig {
        profile: Profile::Huawei,
        noise_interval: Some(Duration::from_millis(50)),
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    assert!(port.expect("\r\n^RSSI:21\r\n").ends_with("^RSSI:21\r\n"));
    // AT^CURC=0 silences it, as gammu and ModemManager expect.
    port.command("AT^CURC=0");
    port.drain(Duration::from_millis(20));
    assert!(!port.drain(Duration::from_millis(200)).contains("^RSSI"));
    port.command("AT+CNMI=2,1,0,2,0");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "lag"))
        .expect("injects");
    port.expect("+CMTI: \"SM\",0\r\n");
    // Right after the reception the counter still says 0; it catches up within a second.
    assert!(port.command("AT+CPMS?").contains("+CPMS: \"SM\",0,30"));
    let deadline = Instant::now() + DEADLINE;
    while !port.command("AT+CPMS?").contains("+CPMS: \"SM\",1,30") {
        assert!(Instant::now() < deadline, "the counter never caught up");
        port.drain(Duration::from_millis(100));
    }
}

#[test]
fn a_slow_list_and_a_store_too_full_to_send() {
    let config = MockConfig {
        capacity: 3,
        list_delay_per_message: Duration::from_millis(100),
        send_needs_free_slot: true,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    let filler = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";
    let filler = pdu::decode_hex(filler).expect("hex");
    modem.with_engine(|engine, _| engine.fill_storage("SM", &filler));
    let started = Instant::now();
    let list = port.command("AT+CMGL=4");
    assert_eq!(list.matches("+CMGL:").count(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "3 messages take 3 × 100 ms"
    );
    assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMS ERROR: 322"));
    port.command("AT+CMGD=1");
    assert!(send_pdu(&mut port, "+447700900123", "x", false).contains("+CMGS: 0"));
}

#[test]
fn firmware_that_ignores_ate0_keeps_echoing() {
    let config = MockConfig {
        ignore_ate0: true,
        ..fast()
    };
    let (_modem, mut port) = start(config);
    assert_eq!(port.command("ATE0"), "ATE0\r\r\nOK\r\n");
    assert_eq!(port.command("AT"), "AT\r\r\nOK\r\n");
}

#[test]
fn text_mode_is_enough_for_common_clients() {
    let (modem, mut port) = start(fast());
    port.command("ATE0");
    port.command("AT+CMGF=1");
    port.send("AT+CMGS=\"+447700900123\"");
    port.expect("> ");
    port.write(b"plain text\x1a");
    assert!(port.expect_final().contains("+CMGS: 0"));
    assert_eq!(modem.submitted()[0].text, "plain text");
    assert_eq!(modem.submitted()[0].recipient, "+447700900123");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "hello there"))
        .expect("injects");
    let list = port.command("AT+CMGL=\"ALL\"");
    assert!(
        list.contains("+CMGL: 1,\"REC UNREAD\",\"+447700900999\",,\""),
        "{list:?}"
    );
    assert!(list.contains("\r\nhello there\r\n"), "{list:?}");
    // PDU-mode stat numbers are refused in text mode, as 27.005 has it.
    assert!(port.command("AT+CMGL=4").contains("ERROR"));
}

#[test]
fn delete_flags_pick_what_goes() {
    let (modem, mut port) = start(fast());
    init(&mut port);
    for n in 1..=3 {
        modem
            .inject_sms(&InboundSms::new("+447700900999", &format!("m{n}")))
            .expect("injects");
    }
    // Read 1 and 2; 3 stays unread.
    port.command("AT+CMGR=1");
    port.command("AT+CMGR=2");
    port.command("AT+CMGD=1,1");
    let left: Vec<usize> = modem
        .with_engine(|engine, _| engine.stored("SM"))
        .iter()
        .map(|(index, _, _)| *index)
        .collect();
    assert_eq!(
        left,
        [3],
        "delflag 1 removes every read message, keeps unread ones"
    );
    port.command("AT+CMGD=0,4");
    assert!(
        modem
            .with_engine(|engine, _| engine.stored("SM"))
            .is_empty()
    );
    // Deleting an empty slot is not an error.
    assert!(port.command("AT+CMGD=5").ends_with("\r\nOK\r\n"));
}

#[test]
fn the_send_answer_waits_for_the_network() {
    let config = MockConfig {
        submit_delay: Duration::from_millis(300),
        ..fast()
    };
    let (_modem, mut port) = start(config);
    init(&mut port);
    let started = Instant::now();
    assert!(send_pdu(&mut port, "+447700900123", "slow network", false).contains("+CMGS: 0"));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn the_alpha_field_can_be_left_out() {
    let config = MockConfig {
        omit_alpha: true,
        ..fast()
    };
    let (modem, mut port) = start(config);
    init(&mut port);
    modem
        .inject_sms(&InboundSms::new("+447700900999", "no alpha"))
        .expect("injects");
    let read = port.command("AT+CMGR=1");
    assert!(read.starts_with("\r\n+CMGR: 0,"), "{read:?}");
    assert_eq!(
        read.lines().nth(1).map(|l| l.matches(',').count()),
        Some(1),
        "{read:?}"
    );
    assert!(port.command("AT+CMGL=4").contains("\r\n+CMGL: 1,1,"));
}

#[test]
fn the_control_interface_reports_and_sets_the_pin_attempts() {
    use smsrelay::mock::control::{Request, handle};

    let modem = MockModem::start(
        MockConfig {
            pin: Some("1234".into()),
            ..fast()
        },
        None,
    )
    .expect("starts");
    let ask = |request: &str| {
        let request: Request = serde_json::from_str(request).expect("a request");
        handle(&modem, request)
    };
    let answer = ask(r#"{"cmd":"sim"}"#);
    assert_eq!(
        answer,
        serde_json::json!({"ok": true, "state": "pin", "pin_attempts": 3, "puk_attempts": 10})
    );
    let mut port = Port::open(&modem.path());
    port.command("AT+CPIN=\"0000\"");
    assert_eq!(ask(r#"{"cmd":"sim"}"#)["pin_attempts"], 2);
    assert_eq!(ask(r#"{"cmd":"set_pin_attempts","count":1}"#)["ok"], true);
    let answer = port.command("AT+CPINR=\"SIM PIN\"");
    assert!(answer.contains("+CPINR: SIM PIN,1,3"), "{answer:?}");
    assert_eq!(ask(r#"{"cmd":"set_pin_attempts","count":0}"#)["ok"], true);
    assert_eq!(ask(r#"{"cmd":"sim"}"#)["state"], "puk");
}
