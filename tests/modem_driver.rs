//! The modem driver task against the simulated modem over a real PTY: start-up on every
//! profile and with a PIN, sends, inbound messages and status reports through each route,
//! stale indexes, a full store, and recovery from a deaf modem, a vanished device and a reboot.

use std::time::Duration;

use smsrelay::at::RegistrationStatus;
use smsrelay::mock::{InboundSms, MockConfig, MockModem, Profile, UrcPoint};
use smsrelay::modem::{
    Inbound, InitError, InitStage, LinkState, Modem, ModemEvent, Origin, Verdict,
};
use smsrelay::pdu::{self, Address, Body, StatusClass, SubmitOptions, Tpdu};
use tokio::sync::mpsc::Receiver;
use tokio::time::{Instant, timeout};

use crate::support::quick_modem_settings as settings;
use crate::support::{WAIT, until, wait_for};

fn mock(config: MockConfig) -> MockModem {
    MockModem::start(config, None).expect("mock starts")
}

fn fast() -> MockConfig {
    MockConfig {
        submit_delay: Duration::from_millis(10),
        report_delay: Duration::from_millis(10),
        ..MockConfig::default()
    }
}

async fn connected(events: &mut Receiver<ModemEvent>) {
    wait_for(events, "Connected", |e| {
        matches!(e, ModemEvent::Connected(_))
    })
    .await;
}

async fn inbound(events: &mut Receiver<ModemEvent>) -> Inbound {
    match wait_for(events, "Inbound", |e| matches!(e, ModemEvent::Inbound(_))).await {
        ModemEvent::Inbound(inbound) => inbound,
        _ => unreachable!(),
    }
}

fn text_of(inbound: &Inbound) -> String {
    match inbound.pdu.as_ref().map(|pdu| &pdu.tpdu) {
        Ok(Tpdu::Deliver(deliver)) => match &deliver.user_data.body {
            Body::Text(text) => text.clone(),
            Body::Data(data) => panic!("binary body {data:?}"),
        },
        other => panic!("not a DELIVER: {other:?}"),
    }
}

fn parts(text: &str, status_report: bool) -> Vec<(usize, String)> {
    let recipient = Address::from_number("+447700900123").expect("valid");
    let options = SubmitOptions {
        status_report,
        ..SubmitOptions::default()
    };
    pdu::submit_parts(&recipient, text, &options)
        .expect("encodes")
        .parts
        .into_iter()
        .map(|part| (part.cmgs_length, part.hex))
        .collect()
}

fn count(modem: &MockModem, command: &str) -> usize {
    modem.commands().iter().filter(|c| *c == command).count()
}

#[tokio::test(flavor = "current_thread")]
async fn starts_sends_and_receives_on_every_profile() {
    for profile in Profile::ALL {
        let modem = mock(MockConfig { profile, ..fast() });
        let mut driver = Modem::start(settings(modem.path()));
        let setup = match wait_for(&mut driver.events, "Connected", |e| {
            matches!(e, ModemEvent::Connected(_))
        })
        .await
        {
            ModemEvent::Connected(setup) => setup,
            _ => unreachable!(),
        };
        assert_eq!(
            setup.identity.manufacturer,
            profile.manufacturer(),
            "{profile}"
        );
        let mut status = driver.handle.watch_status();
        let status = timeout(WAIT, status.wait_for(|status| status.storage.is_some()))
            .await
            .expect("health read at start-up")
            .expect("driver alive")
            .clone();
        assert_eq!(status.state, LinkState::Ready, "{profile}");
        assert!(status.signal.is_some(), "{profile}: signal read");
        assert!(status.operator.is_some(), "{profile}: operator read");

        let (length, hex) = &parts("hello", false)[0];
        let reference = driver.handle.send(*length, hex).await.expect("sent");
        assert_eq!(modem.submitted()[0].reference, reference, "{profile}");

        modem
            .inject_sms(&InboundSms::new("+447700900555", "hi there"))
            .expect("injects");
        let message = inbound(&mut driver.events).await;
        assert_eq!(text_of(&message), "hi there", "{profile}");
        assert!(matches!(message.origin, Origin::Stored { .. }), "{profile}");
        driver
            .handle
            .confirm(message.receipt)
            .await
            .expect("queued");
        until(&format!("{profile}: deleted after confirm"), || {
            modem.with_engine(|engine, _| engine.stored("SM").is_empty())
        })
        .await;
        driver.handle.shutdown().await;
        timeout(WAIT, driver.task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_pin_locked_sim_is_unlocked_with_the_configured_pin() {
    let modem = mock(MockConfig {
        pin: Some("4321".into()),
        ..fast()
    });
    let mut settings = settings(modem.path());
    settings.init.pin = Some("4321".into());
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    assert_eq!(count(&modem, "AT+CPIN=\"4321\""), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_pin_is_entered_once_and_the_driver_stops_trying() {
    let modem = mock(MockConfig {
        pin: Some("4321".into()),
        ..fast()
    });
    let mut settings = settings(modem.path());
    settings.init.pin = Some("0000".into());
    settings.reopen_max = Duration::from_millis(10);
    let mut driver = Modem::start(settings);
    let event = wait_for(&mut driver.events, "InitFailed", |e| {
        matches!(e, ModemEvent::InitFailed(_))
    })
    .await;
    assert!(
        matches!(event, ModemEvent::InitFailed(InitError::WrongPin(_))),
        "{event:?}"
    );
    assert!(matches!(driver.handle.status().state, LinkState::Failed(_)));
    // Still serving, still refusing: a send is a temporary failure, not a second PIN.
    let (length, hex) = &parts("x", false)[0];
    let failure = driver
        .handle
        .send(*length, hex)
        .await
        .expect_err("not ready");
    assert_eq!(failure.verdict, Verdict::Temporary);
    assert_eq!(count(&modem, "AT+CPIN=\"0000\""), 1, "never a second try");
}

#[tokio::test(flavor = "current_thread")]
async fn registration_arriving_late_is_waited_for_and_shown() {
    let modem = mock(fast());
    modem.with_engine(|engine, _| engine.set_registration(2));
    let mut settings = settings(modem.path());
    settings.init.registration_timeout = Duration::from_secs(30);
    let mut driver = Modem::start(settings);
    let mut status = driver.handle.watch_status();
    timeout(
        WAIT,
        status.wait_for(|status| {
            status.state
                == LinkState::Initialising(InitStage::Registration(RegistrationStatus::Searching))
        }),
    )
    .await
    .expect("the status says it waits for the network")
    .expect("driver alive");
    modem.with_engine(|engine, _| engine.set_registration(5));
    let event = wait_for(&mut driver.events, "Registered", |e| {
        matches!(e, ModemEvent::Registered(_))
    })
    .await;
    assert_eq!(event, ModemEvent::Registered(RegistrationStatus::Roaming));
    assert_eq!(driver.handle.status().state, LinkState::Ready);
}

#[tokio::test(flavor = "current_thread")]
async fn a_multipart_text_goes_out_part_by_part() {
    let modem = mock(fast());
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let text = "A long message that needs three parts. ".repeat(10);
    let mut references = Vec::new();
    for (length, hex) in parts(&text, false) {
        references.push(driver.handle.send(length, &hex).await.expect("sent"));
    }
    assert_eq!(references.len(), 3);
    let submitted = modem.submitted();
    let joined: String = submitted.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined, text);
    assert_eq!(
        submitted.iter().map(|s| s.reference).collect::<Vec<_>>(),
        references
    );
    assert_eq!(driver.handle.status().counters.sent, 3);
}

#[tokio::test(flavor = "current_thread")]
async fn routed_messages_are_acknowledged_only_when_confirmed() {
    // A phase 2+ modem with direct routing: every +CMT waits for AT+CNMA.
    let modem = mock(MockConfig {
        phase2plus_only: true,
        ..fast()
    });
    let mut settings = settings(modem.path());
    settings.init.cnmi = Some("2,2,0,1,0".into());
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    modem
        .inject_sms(&InboundSms::new("+447700900555", "first"))
        .expect("injects");
    modem
        .inject_sms(&InboundSms::new("+447700900555", "second"))
        .expect("injects");
    let first = inbound(&mut driver.events).await;
    assert_eq!(text_of(&first), "first");
    assert_eq!(first.origin, Origin::Routed);
    assert_eq!(
        count(&modem, "AT+CNMA"),
        0,
        "no ack before the owner confirms"
    );
    driver.handle.confirm(first.receipt).await.expect("queued");
    // The modem holds the second until the first is acknowledged.
    let second = inbound(&mut driver.events).await;
    assert_eq!(text_of(&second), "second");
    assert_eq!(count(&modem, "AT+CNMA"), 1);
    assert!(modem.with_engine(|engine, _| engine.stored("SM").is_empty()));
}

async fn report_after_send(cnmi: Option<&str>, profile: Profile) -> Inbound {
    let modem = mock(MockConfig { profile, ..fast() });
    let mut settings = settings(modem.path());
    settings.init.cnmi = cnmi.map(str::to_string);
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    let (length, hex) = &parts("report me", true)[0];
    let reference = driver.handle.send(*length, hex).await.expect("sent");
    let report = inbound(&mut driver.events).await;
    match report.pdu.as_ref().map(|pdu| &pdu.tpdu) {
        Ok(Tpdu::StatusReport(report)) => {
            assert_eq!(report.message_reference, reference);
            assert_eq!(
                report.status.class(),
                StatusClass::Delivered,
                "{:?}",
                report.status
            );
        }
        other => panic!("not a status report: {other:?}"),
    }
    driver
        .handle
        .confirm(report.receipt.clone())
        .await
        .expect("queued");
    let memory = profile.report_memory();
    until("report deleted", || {
        modem.with_engine(|engine, _| engine.stored(memory).is_empty())
    })
    .await;
    report
}

#[tokio::test(flavor = "current_thread")]
async fn status_reports_arrive_stored_and_routed() {
    // Stored in the SR memory and announced with +CDSI (the default CNMI).
    let stored = report_after_send(None, Profile::Quectel).await;
    assert!(
        matches!(&stored.origin, Origin::Stored { storage, .. } if storage == "SR"),
        "{:?}",
        stored.origin
    );
    // Routed directly as +CDS.
    let routed = report_after_send(Some("2,1,0,1,0"), Profile::Generic).await;
    assert_eq!(routed.origin, Origin::Routed);
}

#[tokio::test(flavor = "current_thread")]
async fn a_urc_in_every_phase_of_a_send_is_handled() {
    let modem = mock(fast());
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let points = [
        UrcPoint::AfterEcho,
        UrcPoint::BeforePrompt,
        UrcPoint::AfterSubmit,
        UrcPoint::BeforeFinal,
        UrcPoint::AfterFinal,
    ];
    for (round, point) in points.into_iter().enumerate() {
        // A message lands in storage; its +CMTI comes at this point of the next send.
        let text = format!("phase {round}");
        let index = modem.with_engine(|engine, now| {
            let pdus = InboundSms::new("+447700900555", &text)
                .pdus(None)
                .expect("encodes");
            let index = engine
                .store_quietly("SM", pdus[0].clone(), now)
                .expect("room");
            engine.inject_urc(point, &format!("+CMTI: \"SM\",{index}"));
            index
        });
        let (length, hex) = &parts(&format!("send {round}"), false)[0];
        driver
            .handle
            .send(*length, hex)
            .await
            .unwrap_or_else(|failure| panic!("{point:?}: {failure}"));
        let message = inbound(&mut driver.events).await;
        assert_eq!(text_of(&message), text, "{point:?}");
        assert_eq!(
            message.origin,
            Origin::Stored {
                storage: "SM".into(),
                index: index as u32
            }
        );
        driver
            .handle
            .confirm(message.receipt)
            .await
            .expect("queued");
    }
    assert_eq!(modem.submitted().len(), points.len());
}

#[tokio::test(flavor = "current_thread")]
async fn transient_send_errors_fail_once_then_succeed() {
    let modem = mock(fast());
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let (length, hex) = &parts("again", false)[0];
    for code in [500, 512, 331] {
        modem.with_engine(|engine, _| engine.fail_next_sends(1, code));
        let failure = driver
            .handle
            .send(*length, hex)
            .await
            .expect_err("fails once");
        assert_eq!(failure.code, Some(code));
        assert_eq!(failure.verdict, Verdict::Temporary, "{code}");
        driver
            .handle
            .send(*length, hex)
            .await
            .expect("then succeeds");
    }
    assert_eq!(modem.submitted().len(), 3);
    assert_eq!(driver.handle.status().state, LinkState::Ready);
}

#[tokio::test(flavor = "current_thread")]
async fn a_stale_index_is_skipped_once_and_never_retried() {
    let modem = mock(fast());
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    modem.with_engine(|engine, _| engine.inject_urc(UrcPoint::Now, "+CMTI: \"SM\",17"));
    modem
        .inject_sms(&InboundSms::new("+447700900555", "after the stale one"))
        .expect("injects");
    let message = inbound(&mut driver.events).await;
    assert_eq!(text_of(&message), "after the stale one");
    until("the stale index is counted", || {
        driver.handle.status().counters.stale_indexes == 1
    })
    .await;
    assert_eq!(count(&modem, "AT+CMGR=17"), 1);
    // A sweep does not bring it back either.
    assert_eq!(driver.handle.sweep().await.expect("sweeps"), 0);
    assert_eq!(count(&modem, "AT+CMGR=17"), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_store_is_reported_swept_and_emptied_so_held_messages_arrive() {
    let modem = mock(MockConfig {
        capacity: 5,
        ..fast()
    });
    let old = InboundSms::new("+447700900555", "old")
        .pdus(None)
        .expect("encodes")
        .remove(0);
    modem.with_engine(|engine, _| engine.fill_storage("SM", &old));
    // The network holds this one until there is room.
    modem
        .inject_sms(&InboundSms::new("+447700900555", "held"))
        .expect("injects");
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let mut receipts = Vec::new();
    for _ in 0..5 {
        let message = inbound(&mut driver.events).await;
        assert_eq!(text_of(&message), "old");
        receipts.push(message.receipt);
    }
    wait_for(&mut driver.events, "StorageAlmostFull", |e| {
        matches!(e, ModemEvent::StorageAlmostFull(usage) if usage.used == 5 && usage.total == 5)
    })
    .await;
    for receipt in receipts {
        driver.handle.confirm(receipt).await.expect("queued");
    }
    let held = inbound(&mut driver.events).await;
    assert_eq!(text_of(&held), "held");
}

#[tokio::test(flavor = "current_thread")]
async fn a_deaf_modem_is_reopened_and_used_again() {
    let modem = mock(fast());
    let mut settings = settings(modem.path());
    settings.send_timeout = Duration::from_secs(1);
    settings.init.command_timeout = Duration::from_secs(1);
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    modem.with_engine(|engine, _| engine.hang());
    let (length, hex) = &parts("are you there", false)[0];
    let failure = driver.handle.send(*length, hex).await.expect_err("deaf");
    assert_ne!(failure.verdict, Verdict::Permanent);
    wait_for(&mut driver.events, "Disconnected", |e| {
        matches!(e, ModemEvent::Disconnected { .. })
    })
    .await;
    connected(&mut driver.events).await;
    driver.handle.send(*length, hex).await.expect("works again");
    let counters = driver.handle.status().counters;
    assert!(counters.timeouts >= 1);
    assert_eq!(counters.reconnects, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_vanished_device_is_reopened_when_it_reappears_and_swept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let modem = MockModem::start(fast(), Some(link.clone())).expect("mock starts");
    let mut driver = Modem::start(settings(&link));
    connected(&mut driver.events).await;
    modem.disconnect(Duration::from_millis(1500));
    until("the device goes", || !link.exists()).await;
    wait_for(&mut driver.events, "Disconnected", |e| {
        matches!(e, ModemEvent::Disconnected { .. })
    })
    .await;
    // Arrives while the device is gone: its +CMTI is lost, the sweep finds it.
    modem
        .inject_sms(&InboundSms::new("+447700900555", "while away"))
        .expect("injects");
    until("the device reappears", || link.exists()).await;
    let reappeared = Instant::now();
    connected(&mut driver.events).await;
    let took = reappeared.elapsed();
    assert!(took < Duration::from_secs(2), "reconnected after {took:?}");
    let message = inbound(&mut driver.events).await;
    assert_eq!(text_of(&message), "while away");
}

#[tokio::test(flavor = "current_thread")]
async fn boot_banners_mid_session_trigger_a_full_init() {
    let modem = mock(MockConfig {
        profile: Profile::Sim800,
        ..fast()
    });
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let inits = count(&modem, "AT+CMEE=1");
    modem.with_engine(|engine, now| engine.reboot(now));
    connected(&mut driver.events).await;
    assert_eq!(
        count(&modem, "AT+CMEE=1"),
        inits + 1,
        "one re-init, not one per banner"
    );
    assert!(driver.handle.status().counters.reinits >= 1);
    // The reboot forgot CNMI; the re-init restored it, so +CMTI works again.
    modem
        .inject_sms(&InboundSms::new("+447700900555", "after the reboot"))
        .expect("injects");
    let message = inbound(&mut driver.events).await;
    assert_eq!(text_of(&message), "after the reboot");
}

#[tokio::test(flavor = "current_thread")]
async fn an_unconfirmed_message_stays_and_is_read_again_after_a_restart() {
    let modem = mock(fast());
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    modem
        .inject_sms(&InboundSms::new("+447700900555", "keep me"))
        .expect("injects");
    let first = inbound(&mut driver.events).await;
    driver.handle.shutdown().await;
    timeout(WAIT, driver.task)
        .await
        .expect("stops")
        .expect("no panic");
    assert_eq!(modem.with_engine(|engine, _| engine.stored("SM").len()), 1);

    let mut restarted = Modem::start(settings(modem.path()));
    connected(&mut restarted.events).await;
    let again = inbound(&mut restarted.events).await;
    assert_eq!(again.hex, first.hex);
    assert_eq!(again.origin, first.origin);
    restarted
        .handle
        .confirm(again.receipt)
        .await
        .expect("queued");
    until("deleted after confirm", || {
        modem.with_engine(|engine, _| engine.stored("SM").is_empty())
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_reset_command_follows_repeated_failed_start_ups() {
    let modem = mock(fast());
    modem.with_engine(|engine, _| engine.set_registration(0));
    let mut settings = settings(modem.path());
    settings.init.registration_timeout = Duration::from_millis(200);
    settings.retry_max = Duration::from_millis(50);
    settings.reset_command = Some("AT+CFUN=1,1".into());
    settings.reset_after = 2;
    let mut driver = Modem::start(settings);
    for _ in 0..2 {
        let event = wait_for(&mut driver.events, "InitFailed", |e| {
            matches!(e, ModemEvent::InitFailed(_))
        })
        .await;
        assert!(
            matches!(
                event,
                ModemEvent::InitFailed(InitError::NotRegistered { .. })
            ),
            "{event:?}"
        );
    }
    until("the reset command is sent", || {
        count(&modem, "AT+CFUN=1,1") == 1
    })
    .await;
    assert_eq!(count(&modem, "AT+CFUN=1,1"), 1, "once per run of failures");
    // The network comes back; the driver gets there on its own.
    modem.with_engine(|engine, _| engine.set_registration(1));
    connected(&mut driver.events).await;
}

fn stored_count(modem: &MockModem, memory: &str) -> usize {
    modem.with_engine(|engine, _| engine.stored(memory).len())
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_lost_after_the_pdu_was_written_is_an_unknown_outcome() {
    let dir = tempfile::tempdir().expect("temp dir");
    let link = dir.path().join("modem");
    let config = MockConfig {
        submit_delay: Duration::from_secs(3),
        ..fast()
    };
    let modem = MockModem::start(config, Some(link.clone())).expect("mock starts");
    let mut driver = Modem::start(settings(&link));
    connected(&mut driver.events).await;
    let handle = driver.handle.clone();
    let (length, hex) = parts("only once", false).remove(0);
    let send = tokio::spawn(async move { handle.send(length, &hex).await });
    until("the PDU reached the network", || {
        modem.submitted().len() == 1
    })
    .await;
    modem.disconnect(Duration::from_millis(500));
    let failure = send.await.expect("no panic").expect_err("cut off");
    // Temporary would invite a second submission of an SMS that went out.
    assert_eq!(failure.verdict, Verdict::Unknown, "{failure:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_confirm_whose_memory_switch_fails_deletes_nothing() {
    let modem = mock(MockConfig {
        profile: Profile::Quectel,
        ..fast()
    });
    let mut driver = Modem::start(settings(modem.path()));
    connected(&mut driver.events).await;
    let (length, hex) = &parts("report me", true)[0];
    driver.handle.send(*length, hex).await.expect("sent");
    let report = inbound(&mut driver.events).await;
    assert!(matches!(&report.origin, Origin::Stored { storage, .. } if storage == "SR"));
    // A message at the same index number in SM; reading it makes SM mem1 again.
    modem
        .inject_sms(&InboundSms::new("+447700900555", "precious"))
        .expect("injects");
    inbound(&mut driver.events).await;
    // The AT+CPMS="SR" of the confirm goes unanswered.
    modem.with_engine(|engine, _| engine.drop_next_commands(1));
    driver.handle.confirm(report.receipt).await.expect("queued");
    // Requests run in order: once the sweep answers, the confirm is done.
    driver.handle.sweep().await.expect("sweeps");
    assert_eq!(
        stored_count(&modem, "SM"),
        1,
        "the unconfirmed SM message was deleted"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_receipt_for_a_reused_index_deletes_nothing() {
    let modem = mock(fast());
    let mut settings = settings(modem.path());
    settings.redeliver_after = Duration::ZERO;
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    modem
        .inject_sms(&InboundSms::new("+447700900555", "A"))
        .expect("injects");
    let first = inbound(&mut driver.events).await;
    // The owner is slow; a sweep hands A up again.
    assert_eq!(driver.handle.sweep().await.expect("sweeps"), 1);
    let again = inbound(&mut driver.events).await;
    assert_eq!(again.receipt, first.receipt);
    driver.handle.confirm(first.receipt).await.expect("queued");
    until("A deleted", || stored_count(&modem, "SM") == 0).await;
    // B lands in the freed slot before its +CMTI is handled.
    let b = InboundSms::new("+447700900555", "B")
        .pdus(None)
        .expect("encodes")
        .remove(0);
    modem.with_engine(|engine, now| engine.store_quietly("SM", b, now));
    driver.handle.confirm(again.receipt).await.expect("queued");
    driver.handle.sweep().await.expect("sweeps");
    assert_eq!(stored_count(&modem, "SM"), 1, "B was deleted unread");
}

#[tokio::test(flavor = "current_thread")]
async fn a_confirm_during_a_re_init_is_carried_out_after_it() {
    let modem = mock(MockConfig {
        profile: Profile::Sim800,
        ..fast()
    });
    let mut settings = settings(modem.path());
    settings.init.registration_timeout = Duration::from_secs(10);
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    modem
        .inject_sms(&InboundSms::new("+447700900555", "confirm me"))
        .expect("injects");
    let message = inbound(&mut driver.events).await;
    modem.with_engine(|engine, now| {
        engine.set_registration(2);
        engine.reboot(now);
    });
    let mut status = driver.handle.watch_status();
    timeout(
        WAIT,
        status.wait_for(|s| matches!(s.state, LinkState::Initialising(InitStage::Registration(_)))),
    )
    .await
    .expect("the re-init waits for the network")
    .expect("driver alive");
    driver
        .handle
        .confirm(message.receipt)
        .await
        .expect("queued");
    modem.with_engine(|engine, _| engine.set_registration(1));
    connected(&mut driver.events).await;
    driver.handle.sweep().await.expect("sweeps");
    assert_eq!(
        stored_count(&modem, "SM"),
        0,
        "the confirmed message is still there"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_routed_message_survives_a_full_urc_channel() {
    let modem = mock(MockConfig {
        submit_delay: Duration::from_secs(2),
        ..fast()
    });
    let mut settings = settings(modem.path());
    settings.init.cnmi = Some("2,2,0,1,0".into());
    // 8 stands for the 256 lines of vendor noise a long send can bring.
    settings.session.urc_capacity = 8;
    let mut driver = Modem::start(settings);
    connected(&mut driver.events).await;
    let handle = driver.handle.clone();
    let (length, hex) = parts("slow", false).remove(0);
    let send = tokio::spawn(async move { handle.send(length, &hex).await });
    until("submitted", || modem.submitted().len() == 1).await;
    let pdu = InboundSms::new("+447700900555", "routed")
        .pdus(Some("+447700900001"))
        .expect("encodes")
        .remove(0);
    let tpdu_length = pdu.len() - (usize::from(pdu[0]) + 1);
    let mut raw = "\r\n^RSSI: 12\r\n".repeat(10);
    raw.push_str(&format!(
        "\r\n+CMT: ,{tpdu_length}\r\n{}\r\n",
        hex::encode_upper(&pdu)
    ));
    modem.with_engine(|engine, _| engine.inject_raw(raw.as_bytes()));
    send.await.expect("no panic").expect("sent");
    // With +CSMS: 0 the ME has acknowledged it already: dropping it would lose it.
    let message = inbound(&mut driver.events).await;
    assert_eq!(text_of(&message), "routed");
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_larger_than_the_queues_stays_on_the_sim_until_the_owner_catches_up() {
    // Issue #10: the driver's queue of events for its owner is bounded. With the owner not
    // reading, the first sweep fills the channel (256) and the driver's own queue (64); the
    // rest stay on the modem, and every message still comes exactly once as the owner drains.
    const BURST: usize = 400;
    let modem = mock(MockConfig {
        capacity: 500,
        ..fast()
    });
    modem.with_engine(|engine, now| {
        for n in 0..BURST {
            let sms = InboundSms::new("+447700900555", &format!("burst {n}"));
            let pdu = sms.pdus(None).expect("encodes").remove(0);
            engine.store_quietly("SM", pdu, now).expect("room");
        }
    });
    let mut driver = Modem::start(settings(modem.path()));
    // The health check right after the first sweep marks the sweep's end.
    until("the first sweep is done", || {
        let commands = modem.commands();
        let listed = commands.iter().position(|c| c.starts_with("AT+CMGL"));
        listed.is_some_and(|at| commands[at..].iter().any(|c| c == "AT+CSQ"))
    })
    .await;
    let handed_up = driver.handle.status().counters.received as usize;
    // The channel also holds Connected and Registered.
    assert!(
        handed_up <= 256 + smsrelay::modem::INBOUND_QUEUE_CAP,
        "the channel and the driver's queue, no more: {handed_up} handed up"
    );
    let mut texts = std::collections::BTreeSet::new();
    while texts.len() < BURST {
        let message = inbound(&mut driver.events).await;
        assert!(texts.insert(text_of(&message)), "handed up twice");
        driver.handle.confirm(message.receipt).await.expect("alive");
    }
    until("the SIM is empty", || {
        modem.with_engine(|engine, _| engine.stored("SM").is_empty())
    })
    .await;
}
