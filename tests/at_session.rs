//! `at::Session` edge cases over `tokio::io::duplex`, on paused time where deadlines matter.

use std::time::Duration;

use smsrelay::at::{Command, Session, SessionConfig, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn read_some(port: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let n = port.read(&mut buf).await.expect("read");
    buf.truncate(n);
    buf
}

#[tokio::test(start_paused = true)]
async fn a_deaf_modem_times_out_and_a_late_ok_is_not_taken_for_the_next_answer() {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    let modem_side = tokio::spawn(async move {
        assert_eq!(read_some(&mut modem).await, b"AT+CSQ\r");
        // The answer arrives after the 2 s deadline but within the settle time that follows it,
        // so it must not be taken as the next command's answer.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        modem.write_all(b"\r\nOK\r\n").await.expect("write");
        assert_eq!(read_some(&mut modem).await, b"AT+CMGF=0\r");
        modem.write_all(b"\r\nERROR\r\n").await.expect("write");
        modem
    });
    let first = handle
        .execute(Command::new("AT+CSQ").with_timeout(Duration::from_secs(2)))
        .await;
    assert!(
        matches!(
            first,
            Err(SessionError::Timeout {
                pdu_written: false,
                ..
            })
        ),
        "{first:?}"
    );
    let second = handle
        .execute(Command::new("AT+CMGF=0"))
        .await
        .expect("answered");
    assert_eq!(second.result, smsrelay::at::FinalResult::Error);
    let _modem = modem_side.await.expect("modem side");
}

#[tokio::test(start_paused = true)]
async fn no_prompt_writes_esc() {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    let send = handle.execute(Command::send_pdu(1, "00AA"));
    let modem_side = async {
        assert_eq!(read_some(&mut modem).await, b"AT+CMGS=1\r");
        assert_eq!(read_some(&mut modem).await, b"\x1b");
    };
    let (send, ()) = tokio::join!(send, modem_side);
    assert!(
        matches!(send, Err(SessionError::NoPrompt { .. })),
        "{send:?}"
    );
}

/// Sends one PDU to a modem that answers `AT+CMGS` with `prompt`, written in one piece.
async fn send_with_prompt(prompt: &'static [u8]) -> Result<Vec<String>, SessionError> {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    tokio::spawn(async move {
        assert_eq!(read_some(&mut modem).await, b"AT+CMGS=1\r");
        modem.write_all(prompt).await.expect("write");
        if read_some(&mut modem).await == b"00AA\x1a" {
            modem
                .write_all(b"\r\n+CMGS: 7\r\n\r\nOK\r\n")
                .await
                .expect("write");
        }
        let _ = read_some(&mut modem).await;
    });
    handle
        .execute(Command::send_pdu(1, "00AA"))
        .await
        .map(|response| response.info)
}

#[tokio::test(start_paused = true)]
async fn a_prompt_ended_by_crlf_or_followed_by_a_urc_in_the_same_read_is_still_the_prompt() {
    for prompt in [
        &b"\r\n> \r\n"[..],
        b"\r\n> \r\n+CMTI: \"SM\",1\r\n",
        b"\r\n>\r\n",
    ] {
        assert_eq!(
            send_with_prompt(prompt).await,
            Ok(vec!["+CMGS: 7".to_string()]),
            "prompt {:?}",
            String::from_utf8_lossy(prompt)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_send_that_times_out_after_the_pdu_reports_an_unknown_outcome() {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    let send = handle.execute(Command::send_pdu(1, "00AA").with_timeout(Duration::from_secs(60)));
    let modem_side = async {
        assert_eq!(read_some(&mut modem).await, b"AT+CMGS=1\r");
        modem.write_all(b"\r\n> ").await.expect("write");
        assert_eq!(read_some(&mut modem).await, b"00AA\x1a");
        modem
    };
    let (send, _modem) = tokio::join!(send, modem_side);
    assert!(
        matches!(
            send,
            Err(SessionError::Timeout {
                pdu_written: true,
                ..
            })
        ),
        "{send:?}"
    );
}

#[tokio::test]
async fn a_closed_port_fails_the_command_in_flight_and_ends_the_session() {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, mut urcs) = Session::new(host, SessionConfig::default());
    let task = tokio::spawn(session.run());
    let command = handle.execute(Command::new("AT"));
    let modem_side = async move {
        assert_eq!(read_some(&mut modem).await, b"AT\r");
        drop(modem);
    };
    let (result, ()) = tokio::join!(command, modem_side);
    assert_eq!(result, Err(SessionError::Closed));
    assert_eq!(task.await.expect("task"), SessionError::Closed);
    assert_eq!(urcs.recv().await, None, "the URC stream ends with the port");
    assert_eq!(
        handle.execute(Command::new("AT")).await,
        Err(SessionError::Stopped)
    );
}

#[tokio::test]
async fn garbage_and_an_endless_line_do_not_stop_the_session() {
    let (host, mut modem) = tokio::io::duplex(1 << 16);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    // 100 KB with no line end, binary garbage, then a normal exchange.
    modem
        .write_all(&vec![b'Z'; 100 * 1024])
        .await
        .expect("write");
    modem
        .write_all(b"\xff\x00\xfe\r\n\x1b\x1a\r\n")
        .await
        .expect("write");
    let command = handle.execute(Command::new("AT"));
    let modem_side = async {
        assert_eq!(read_some(&mut modem).await, b"AT\r");
        modem.write_all(b"\r\nOK\r\n").await.expect("write");
    };
    let (result, ()) = tokio::join!(command, modem_side);
    assert_eq!(
        result.expect("answered").result,
        smsrelay::at::FinalResult::Ok
    );
}

#[tokio::test]
async fn a_cmgl_listing_with_a_pdu_glued_to_the_next_header_lists_both_messages() {
    const FIRST: &str = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";
    const SECOND: &str = "0791447700090010040DD049B7F93D6D4E0100004221133295950013D9775D0E1ABFC965507A0EA2E164B9D80C";
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, _urcs) = Session::new(host, SessionConfig::default());
    tokio::spawn(session.run());
    tokio::spawn(async move {
        assert_eq!(read_some(&mut modem).await, b"AT+CMGL=4\r");
        let listing =
            format!("\r\n+CMGL: 1,0,,51\r\n{FIRST}+CMGL: 2,0,,37\r\n{SECOND}\r\n\r\nOK\r\n");
        modem.write_all(listing.as_bytes()).await.expect("write");
        let _ = read_some(&mut modem).await;
    });
    let listed = smsrelay::modem::list(&handle, "modem1")
        .await
        .expect("listed");
    let summary: Vec<_> = listed
        .iter()
        .map(|message| (message.index, message.hex.as_str(), message.pdu.is_ok()))
        .collect();
    assert_eq!(summary, vec![(1, FIRST, true), (2, SECOND, true)]);
}

/// Two commands: the modem answers the first with OK and, right behind it, a `+CMTI` it held
/// back. Returns how long after that OK the second command came, and the URCs seen.
async fn two_commands_with_a_held_urc(config: SessionConfig) -> (Duration, Vec<smsrelay::at::Urc>) {
    let (host, mut modem) = tokio::io::duplex(4096);
    let (session, handle, mut urcs) = Session::new(host, config);
    tokio::spawn(session.run());
    let modem_side = tokio::spawn(async move {
        assert_eq!(read_some(&mut modem).await, b"AT+CSQ\r");
        modem
            .write_all(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n\r\n+CMTI: \"SM\",3\r\n")
            .await
            .expect("write");
        let answered = tokio::time::Instant::now();
        assert_eq!(read_some(&mut modem).await, b"AT+CPMS?\r");
        let waited = answered.elapsed();
        modem
            .write_all(b"\r\n+CPMS: \"SM\",1,30,\"SM\",1,30,\"SM\",1,30\r\n\r\nOK\r\n")
            .await
            .expect("write");
        (waited, modem)
    });
    let first = handle.execute(Command::new("AT+CSQ")).await.expect("first");
    assert_eq!(first.info, ["+CSQ: 20,99"]);
    let second = handle
        .execute(Command::new("AT+CPMS?"))
        .await
        .expect("second");
    assert_eq!(second.info.len(), 1, "{second:?}");
    let (waited, _modem) = modem_side.await.expect("modem side");
    let mut seen = Vec::new();
    while let Ok(urc) = urcs.try_recv() {
        seen.push(urc);
    }
    (waited, seen)
}

#[tokio::test(start_paused = true)]
async fn no_command_gap_by_default_and_a_urc_after_the_ok_is_still_a_urc() {
    let (waited, urcs) = two_commands_with_a_held_urc(SessionConfig::default()).await;
    assert_eq!(waited, Duration::ZERO);
    assert!(
        matches!(
            urcs.as_slice(),
            [smsrelay::at::Urc::MessageStored { index: 3, .. }]
        ),
        "{urcs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_configured_command_gap_holds_the_next_command_back() {
    let config = SessionConfig {
        command_gap: Duration::from_millis(100),
        ..SessionConfig::default()
    };
    let (waited, urcs) = two_commands_with_a_held_urc(config).await;
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert_eq!(urcs.len(), 1, "{urcs:?}");
}
