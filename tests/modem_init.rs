//! The driver's start-up sequence against the simulated modem over a real PTY: every profile,
//! the SIM PIN (right, wrong, missing), a late network, a missing SMSC, a busy SIM, a dropped
//! first command. Then reading, listing and deleting stored messages, and sends, as the driver will make them, with their classified failures.

use std::time::Duration;

use smsrelay::at::SessionHandle;
use smsrelay::mock::InboundSms;
use smsrelay::mock::{MockConfig, MockModem, Profile};
use smsrelay::modem::{
    InitError, InitSettings, StorageError, Verdict, delete, init, list, read, send,
};
use smsrelay::pdu::{self, Address, SubmitOptions};

use crate::support::open_session;

fn settings() -> InitSettings {
    InitSettings {
        poll_interval: Duration::from_millis(50),
        registration_timeout: Duration::from_secs(5),
        sim_ready_timeout: Duration::from_secs(5),
        ..InitSettings::default()
    }
}

fn open(modem: &MockModem) -> SessionHandle {
    open_session(modem, Duration::from_millis(5)).0
}

fn pin_attempts(modem: &MockModem) -> usize {
    modem
        .commands()
        .iter()
        .filter(|command| command.starts_with("AT+CPIN=") && command != &"AT+CPIN=?")
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn init_succeeds_on_every_profile() {
    for profile in Profile::ALL {
        let modem = MockModem::start(
            MockConfig {
                profile,
                ..MockConfig::default()
            },
            None,
        )
        .expect("mock starts");
        let setup = init(&open(&modem), &settings())
            .await
            .unwrap_or_else(|error| panic!("{profile}: {error}"));
        assert_eq!(
            setup.identity.manufacturer,
            profile.manufacturer(),
            "{profile}"
        );
        assert_eq!(setup.identity.imei, "350000000000006");
        assert_eq!(setup.identity.imsi.as_deref(), Some("001010123456789"));
        assert_eq!(
            setup.identity.iccid.as_deref(),
            Some("8900101234567890123"),
            "{profile}"
        );
        assert_eq!(setup.cnmi, "2,1,0,2,0", "{profile}");
        assert_eq!(setup.smsc, "+447700900001");
        assert!(setup.registration.is_registered());
        let commands = modem.commands();
        for expected in [
            "ATE0",
            "AT+CMEE=1",
            "AT+CMGF=0",
            "AT+CPMS=\"SM\",\"SM\",\"SM\"",
        ] {
            assert!(
                commands.iter().any(|c| c == expected),
                "{profile}: {expected} missing"
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_configured_pin_is_entered_once() {
    let config = MockConfig {
        pin: Some("1234".into()),
        sim_busy: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let modem = MockModem::start(config, None).expect("mock starts");
    let settings = InitSettings {
        pin: Some("1234".into()),
        ..settings()
    };
    init(&open(&modem), &settings)
        .await
        .expect("init succeeds after the SIM settles");
    assert_eq!(pin_attempts(&modem), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_pin_is_never_tried_twice() {
    let config = MockConfig {
        pin: Some("1234".into()),
        ..MockConfig::default()
    };
    let modem = MockModem::start(config, None).expect("mock starts");
    let settings = InitSettings {
        pin: Some("0000".into()),
        ..settings()
    };
    let handle = open(&modem);
    let error = init(&handle, &settings)
        .await
        .expect_err("a wrong PIN stops the init");
    assert!(matches!(error, InitError::WrongPin(_)), "{error}");
    assert_eq!(pin_attempts(&modem), 1, "one init, one try");
    let no_pin = init(
        &handle,
        &InitSettings {
            pin: None,
            ..settings
        },
    )
    .await;
    assert_eq!(no_pin, Err(InitError::PinRequired));
    assert_eq!(pin_attempts(&modem), 1, "without a PIN nothing is tried");
}

#[tokio::test(flavor = "current_thread")]
async fn registration_arriving_late_is_waited_for() {
    let modem = MockModem::start(MockConfig::default(), None).expect("mock starts");
    modem.with_engine(|engine, _| engine.set_registration(2));
    let handle = open(&modem);
    let init = tokio::spawn(async move { init(&handle, &settings()).await });
    // The init is waiting once it has asked twice and heard "searching".
    crate::support::until("the init polls the registration", || {
        modem.commands().iter().filter(|c| *c == "AT+CREG?").count() >= 2
    })
    .await;
    modem.with_engine(|engine, _| engine.set_registration(5));
    let setup = init
        .await
        .expect("joins")
        .expect("init succeeds once registered");
    assert!(setup.registration.is_registered());
}

#[tokio::test(flavor = "current_thread")]
async fn no_network_and_no_smsc_are_clear_errors() {
    let modem = MockModem::start(MockConfig::default(), None).expect("mock starts");
    modem.with_engine(|engine, _| engine.set_registration(3));
    let settings_short = InitSettings {
        registration_timeout: Duration::from_millis(200),
        ..settings()
    };
    let error = init(&open(&modem), &settings_short)
        .await
        .expect_err("no network");
    assert!(matches!(error, InitError::NotRegistered { .. }), "{error}");

    let config = MockConfig {
        smsc: None,
        ..MockConfig::default()
    };
    let modem = MockModem::start(config, None).expect("mock starts");
    let handle = open(&modem);
    assert_eq!(init(&handle, &settings()).await, Err(InitError::NoSmsc));
    let with_smsc = InitSettings {
        smsc: Some("+447700900002".into()),
        ..settings()
    };
    let setup = init(&handle, &with_smsc)
        .await
        .expect("the configured SMSC is set");
    assert_eq!(setup.smsc, "+447700900002");
    assert_eq!(
        modem.with_engine(|engine, _| engine.smsc()).as_deref(),
        Some("+447700900002")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_first_command_is_resynced() {
    let modem = MockModem::start(MockConfig::default(), None).expect("mock starts");
    modem.with_engine(|engine, _| engine.drop_next_commands(1));
    init(&open(&modem), &settings())
        .await
        .expect("the second AT gets through");
}

#[tokio::test(flavor = "current_thread")]
async fn sends_return_references_or_classified_failures() {
    let config = MockConfig {
        submit_delay: Duration::from_millis(10),
        ..MockConfig::default()
    };
    let modem = MockModem::start(config, None).expect("mock starts");
    let handle = open(&modem);
    init(&handle, &settings()).await.expect("init");
    let recipient = Address::from_number("+447700900123").expect("valid");
    let outgoing = pdu::submit_parts(
        &recipient,
        &"multipart ".repeat(20),
        &SubmitOptions::default(),
    )
    .expect("encodes");
    let mut references = Vec::new();
    for part in &outgoing.parts {
        references.push(
            send(&handle, part.cmgs_length, &part.hex)
                .await
                .expect("sent"),
        );
    }
    assert_eq!(references, [0, 1]);

    let part = &outgoing.parts[0];
    modem.with_engine(|engine, _| engine.fail_next_sends(1, 500));
    let failure = send(&handle, part.cmgs_length, &part.hex)
        .await
        .expect_err("500");
    assert_eq!(
        (failure.verdict, failure.code),
        (Verdict::Temporary, Some(500))
    );
    // The next try goes through: 500 was transient.
    assert_eq!(send(&handle, part.cmgs_length, &part.hex).await, Ok(2));

    modem.with_engine(|engine, _| engine.fail_next_sends(1, 21));
    let failure = send(&handle, part.cmgs_length, &part.hex)
        .await
        .expect_err("rejected");
    assert_eq!(
        (failure.verdict, failure.code),
        (Verdict::Permanent, Some(21))
    );
    // A wrong length is our bug: permanent, never retried.
    let failure = send(&handle, part.cmgs_length + 1, &part.hex)
        .await
        .expect_err("304");
    assert_eq!(
        (failure.verdict, failure.code),
        (Verdict::Permanent, Some(304))
    );

    modem.with_engine(|engine, _| engine.set_registration(0));
    let failure = send(&handle, part.cmgs_length, &part.hex)
        .await
        .expect_err("331");
    assert_eq!(
        (failure.verdict, failure.code),
        (Verdict::Temporary, Some(331))
    );
    assert_eq!(
        modem.submitted().len(),
        3,
        "only accepted parts reached the network"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn stored_messages_are_read_listed_and_deleted_only_when_asked() {
    let modem = MockModem::start(MockConfig::default(), None).expect("mock starts");
    let handle = open(&modem);
    init(&handle, &settings()).await.expect("init");
    modem
        .inject_sms(&InboundSms::new("+447700900999", "first"))
        .expect("injects");
    modem
        .inject_sms(&InboundSms::new("DHL", "second 😀"))
        .expect("injects");

    let message = read(&handle, 1, "modem1").await.expect("index 1");
    let pdu = message.pdu.expect("decodes");
    let smsrelay::pdu::Tpdu::Deliver(deliver) = pdu.tpdu else {
        panic!("not a deliver")
    };
    assert_eq!(deliver.user_data.text(), Some("first"));
    // Reading does not delete: a driver restart finds it again.
    assert_eq!(list(&handle, "modem1").await.expect("list").len(), 2);
    let again = read(&handle, 1, "modem1").await.expect("still there");
    assert_eq!(again.stat, 1, "now marked read");

    delete(&handle, 1).await.expect("deleted");
    assert_eq!(
        read(&handle, 1, "modem1").await,
        Err(StorageError::StaleIndex(1))
    );
    let left = list(&handle, "modem1").await.expect("list");
    assert_eq!(left.iter().map(|m| m.index).collect::<Vec<_>>(), [2]);
    assert!(left[0].pdu.is_ok());
    assert_eq!(
        read(&handle, 9, "modem1").await,
        Err(StorageError::StaleIndex(9))
    );
}
