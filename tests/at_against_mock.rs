//! Our AT session against our simulated modem over a real pseudo-terminal, in every profile:
//! the driver's init sequence, a send through the prompt, and URCs kept apart from answers.
//! The two halves were each checked against other references (captured transcripts, gammu);
//! this is where they meet, as the modem driver will use them.

use std::time::Duration;

use smsrelay::at::{self, Command, FinalResult, SessionConfig, Urc};
use smsrelay::mock::{InboundSms, MockConfig, MockModem, Profile};
use smsrelay::pdu::{self, Address, SubmitOptions};

use crate::support::open_session;

#[tokio::test(flavor = "current_thread")]
async fn init_and_send_in_every_profile() {
    for profile in Profile::ALL {
        let config = MockConfig {
            profile,
            submit_delay: Duration::from_millis(20),
            ..MockConfig::default()
        };
        let modem = MockModem::start(config, None).expect("mock starts");
        // The default command gap: this is the session as the driver runs it.
        let (handle, mut urcs) = open_session(&modem, SessionConfig::default().command_gap);
        // docs/at-sms.md §2: the init table, in order. Failures of vendor commands are fine.
        for command in [
            "AT",
            "ATE0",
            "AT+CMEE=1",
            "AT+CMGF=0",
            "AT+CSMS=0",
            "AT+CPMS=\"SM\",\"SM\",\"SM\"",
        ] {
            let response = handle
                .execute(Command::new(command))
                .await
                .expect("an answer");
            assert_eq!(response.result, FinalResult::Ok, "{profile}: {command}");
        }
        let cnmi = handle
            .execute(Command::new("AT+CNMI=2,1,0,1,0"))
            .await
            .expect("an answer");
        // Qualcomm refuses ds=1; the driver falls back to ds=2.
        if profile == Profile::Qualcomm {
            assert!(!cnmi.result.is_ok(), "{profile}: ds=1 refused");
            let fallback = handle
                .execute(Command::new("AT+CNMI=2,1,0,2,0"))
                .await
                .expect("an answer");
            assert_eq!(fallback.result, FinalResult::Ok);
        } else {
            assert_eq!(cnmi.result, FinalResult::Ok, "{profile}");
        }
        // Wavecom answers +CPIN? without OK; the session implies it.
        let cpin = handle
            .execute(Command::new("AT+CPIN?"))
            .await
            .expect("an answer");
        assert_eq!(cpin.line("+CPIN:"), Some("+CPIN: READY"), "{profile}");

        let recipient = Address::from_number("+447700900123").expect("valid");
        let outgoing = pdu::submit_parts(
            &recipient,
            &"long text ".repeat(20),
            &SubmitOptions::default(),
        )
        .expect("encodes");
        let mut references = Vec::new();
        for part in &outgoing.parts {
            let response = handle
                .execute(Command::send_pdu(part.cmgs_length, part.hex.clone()))
                .await
                .expect("an answer");
            let line = response
                .line("+CMGS:")
                .unwrap_or_else(|| panic!("{profile}: {response:?}"));
            references.push(at::parse::cmgs(line).expect("a reference"));
        }
        assert_eq!(references, [0, 1], "{profile}");
        assert_eq!(modem.submitted().len(), 2);

        modem
            .inject_sms(&InboundSms::new("+447700900999", "hello"))
            .expect("injects");
        let base = profile.index_base() as u32;
        loop {
            let urc = tokio::time::timeout(Duration::from_secs(10), urcs.recv())
                .await
                .expect("a URC in time")
                .expect("the session is alive");
            match urc {
                Urc::MessageStored { storage, index } => {
                    assert_eq!((storage.as_str(), index), ("SM", base), "{profile}");
                    break;
                }
                // Banners and vendor noise may come first.
                _ => continue,
            }
        }
        let read = handle
            .execute(Command::new(format!("AT+CMGR={base}")))
            .await
            .expect("an answer");
        let hex = read.info.get(1).expect("a PDU line");
        let decoded = pdu::Pdu::from_hex(hex).expect("decodes");
        let pdu::Tpdu::Deliver(deliver) = decoded.tpdu else {
            panic!("{profile}: not a deliver")
        };
        assert_eq!(deliver.user_data.text(), Some("hello"), "{profile}");
    }
}
