//! Scenarios of the whole engine, one command line at a time.

use super::*;

/// One command line in, everything the modem writes at once out.
fn exchange(engine: &mut Engine, line: &[u8], now: Instant) -> String {
    engine.receive(line, now);
    String::from_utf8_lossy(&engine.poll(now)).into_owned()
}

fn quiet_engine(config: MockConfig) -> (Engine, Instant) {
    let now = Instant::now();
    let mut engine = Engine::new(config, now);
    engine.poll(now);
    exchange(&mut engine, b"ATE0\r", now);
    (engine, now)
}

#[test]
fn non_ascii_command_lines_get_error_not_a_panic() {
    // Regression for issue #14: `split_commands` sliced inside a multi-byte character.
    let (mut engine, now) = quiet_engine(MockConfig::default());
    for line in [
        &b"AT\xFF\r"[..],
        "ATé\r".as_bytes(),
        "AT&é\r".as_bytes(),
        "ATE0é\r".as_bytes(),
        "AT+CMGF=é\r".as_bytes(),
        "é\r".as_bytes(),
        &b"\xC3\r"[..],
    ] {
        let answer = exchange(&mut engine, line, now);
        assert!(answer.contains("ERROR"), "{line:?} → {answer:?}");
    }
    assert!(exchange(&mut engine, b"AT\r", now).contains("OK"));
}

#[test]
fn cpinr_counts_wrong_pins_down_to_the_puk() {
    let (mut engine, now) = quiet_engine(MockConfig {
        pin: Some("1234".into()),
        ..MockConfig::default()
    });
    let cpinr = |engine: &mut Engine| exchange(engine, b"AT+CPINR=\"SIM PIN\"\r", now);
    assert_eq!(cpinr(&mut engine), "\r\n+CPINR: SIM PIN,3,3\r\n\r\nOK\r\n");
    assert_eq!(
        exchange(&mut engine, b"AT+CPINR\r", now),
        "\r\n+CPINR: SIM PIN,3,3\r\n+CPINR: SIM PUK,10,10\r\n\r\nOK\r\n"
    );
    // The ICCID is there before the PIN.
    assert!(exchange(&mut engine, b"AT+CCID\r", now).contains("+CCID: 89"));
    for left in [2, 1] {
        assert!(exchange(&mut engine, b"AT+CPIN=\"0000\"\r", now).contains("ERROR"));
        assert_eq!(engine.sim_state(), ("pin", left, 10));
        assert!(cpinr(&mut engine).contains(&format!("+CPINR: SIM PIN,{left},3")));
    }
    exchange(&mut engine, b"AT+CPIN=\"0000\"\r", now);
    assert_eq!(engine.sim_state(), ("puk", 0, 10));
    assert!(exchange(&mut engine, b"AT+CPIN?\r", now).contains("+CPIN: SIM PUK"));
    assert!(cpinr(&mut engine).contains("+CPINR: SIM PIN,0,3"));
}

#[test]
fn a_right_pin_resets_the_count_and_a_set_count_holds_across_a_reboot() {
    let (mut engine, now) = quiet_engine(MockConfig {
        pin: Some("1234".into()),
        ..MockConfig::default()
    });
    engine.set_pin_attempts(1);
    assert_eq!(engine.sim_state(), ("pin", 1, 10));
    engine.reboot(now);
    engine.poll(now);
    assert_eq!(engine.sim_state(), ("pin", 1, 10));
    exchange(&mut engine, b"ATE0\r", now);
    assert!(exchange(&mut engine, b"AT+CPIN=\"1234\"\r", now).contains("OK"));
    assert_eq!(engine.sim_state(), ("ready", 3, 10));
}

#[test]
fn huawei_gives_its_own_pin_counter() {
    let (mut engine, now) = quiet_engine(MockConfig {
        profile: Profile::Huawei,
        pin: Some("1234".into()),
        ..MockConfig::default()
    });
    assert!(exchange(&mut engine, b"AT+CPINR=\"SIM PIN\"\r", now).contains("NOT SUPPORT"));
    engine.set_pin_attempts(2);
    assert_eq!(
        exchange(&mut engine, b"AT^CPIN?\r", now),
        "\r\n^CPIN: SIM PIN,2,10,2,10,3\r\n\r\nOK\r\n"
    );
}
