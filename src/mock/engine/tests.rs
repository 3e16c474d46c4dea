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

/// Command lines a quiet generic modem (echo off) answers, and their answers byte for byte.
const GENERIC_ANSWERS: &[(&str, &str)] = &[
    ("AT", "\r\nOK\r\n"),
    ("at", "\r\nOK\r\n"),
    ("ATE0V1&C1&D2", "\r\nOK\r\n"),
    ("hello", "\r\nERROR\r\n"),
    ("AT+NOPE", "\r\nERROR\r\n"),
    ("AT+CGMI", "\r\nQuectel\r\n\r\nOK\r\n"),
    (
        "ATI",
        "\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n",
    ),
    ("AT+CGMI=?", "\r\nOK\r\n"),
    ("AT+CGMI=1", "\r\nERROR\r\n"),
    ("AT+CMEE=?", "\r\n+CMEE: (0-2)\r\n\r\nOK\r\n"),
    ("AT+CMEE=3", "\r\nERROR\r\n"),
    ("AT+CPIN=\"1234\"", "\r\nERROR\r\n"),
    ("AT+CMEE=1;+CPIN=\"1234\"", "\r\n+CME ERROR: 3\r\n"),
    (
        "AT+CMEE=2;+CPIN=\"1234\"",
        "\r\n+CME ERROR: operation not allowed\r\n",
    ),
    ("AT+CPIN?", "\r\n+CPIN: READY\r\n\r\nOK\r\n"),
    ("AT+CMGF=1;+CMGF?", "\r\n+CMGF: 1\r\n\r\nOK\r\n"),
    ("AT+CMGF?;+CMGF=0", "\r\n+CMGF: 0\r\n\r\nOK\r\n"),
    (
        "AT+CSCS=\"ucs2\";+CSCS?",
        "\r\n+CSCS: \"UCS2\"\r\n\r\nOK\r\n",
    ),
    ("AT+CSCS=\"KOI8\"", "\r\nERROR\r\n"),
    ("AT+CSMS=1", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"),
    ("AT+CSMS?", "\r\n+CSMS: 0,1,1,1\r\n\r\nOK\r\n"),
    ("AT+CSMS=0", "\r\n+CSMS: 1,1,1\r\n\r\nOK\r\n"),
    (
        "AT+CNMI=2,1,0,2,0;+CNMI?",
        "\r\n+CNMI: 2,1,0,2,0\r\n\r\nOK\r\n",
    ),
    ("AT+CNMI=2,,,1", "\r\nOK\r\n"),
    ("AT+CNMI=4", "\r\nERROR\r\n"),
    (
        "AT+CPMS=?",
        "\r\n+CPMS: (\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\"),(\"ME\",\"MT\",\"SM\",\"SR\")\r\n\r\nOK\r\n",
    ),
    (
        "AT+CPMS?",
        "\r\n+CPMS: \"SM\",0,30,\"SM\",0,30,\"SM\",0,30\r\n\r\nOK\r\n",
    ),
    (
        "AT+CPMS=\"ME\",\"ME\"",
        "\r\n+CPMS: 0,30,0,30,0,30\r\n\r\nOK\r\n",
    ),
    ("AT+CPMS=\"XX\"", "\r\nERROR\r\n"),
    ("AT+CMGL=?", "\r\n+CMGL: (0-4)\r\n\r\nOK\r\n"),
    ("AT+CMGL=4", "\r\nOK\r\n"),
    ("AT+CMGR=1", "\r\nERROR\r\n"),
    ("AT+CMEE=1;+CMGR=1", "\r\n+CMS ERROR: 321\r\n"),
    ("AT+CMGD=?", "\r\n+CMGD: (),(0-4)\r\n\r\nOK\r\n"),
    ("AT+CMGD=1", "\r\nOK\r\n"),
    ("AT+CNMA", "\r\nERROR\r\n"),
    ("AT+CMMS=1", "\r\nERROR\r\n"),
    ("AT+CSCA?", "\r\n+CSCA: \"+447700900001\",145\r\n\r\nOK\r\n"),
    (
        "AT+CSCA=\"0770\",129;+CSCA?",
        "\r\n+CSCA: \"0770\",129\r\n\r\nOK\r\n",
    ),
    (
        "AT+CREG=2;+CREG?",
        "\r\n+CREG: 2,1,\"5E25\",\"605F\"\r\n\r\nOK\r\n",
    ),
    ("AT+CEREG?", "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"),
    ("AT+CGREG=?", "\r\n+CGREG: (0-2)\r\n\r\nOK\r\n"),
    ("AT+CSQ", "\r\n+CSQ: 21,99\r\n\r\nOK\r\n"),
    ("AT+COPS?", "\r\n+COPS: 0,0,\"Mock Mobile\",7\r\n\r\nOK\r\n"),
    ("AT+CFUN?", "\r\n+CFUN: 1\r\n\r\nOK\r\n"),
    ("AT+CFUN=7", "\r\nERROR\r\n"),
    ("AT+CIMI", "\r\n001010123456789\r\n\r\nOK\r\n"),
    ("AT+CCID", "\r\n+CCID: 8900101234567890123\r\n\r\nOK\r\n"),
    (
        "AT+CPINR=\"SIM PUK\"",
        "\r\n+CPINR: SIM PUK,10,10\r\n\r\nOK\r\n",
    ),
    ("AT^CPIN?", "\r\nERROR\r\n"),
    ("AT^CURC=0;+CSCB=1;+CHUP;H", "\r\nOK\r\n"),
    ("AT+CMGS=0", "\r\nERROR\r\n"),
    ("AT+CMGS=?", "\r\nERROR\r\n"),
    ("AT+CSQ;+NOPE;+CSQ", "\r\n+CSQ: 21,99\r\n\r\nERROR\r\n"),
    ("ATZ;E0", "\r\nOK\r\n"),
];

#[test]
fn a_generic_modem_answers_byte_for_byte() {
    let config = MockConfig {
        profile: Profile::Quectel,
        ..MockConfig::default()
    };
    let mut wrong = Vec::new();
    for &(line, expected) in GENERIC_ANSWERS {
        // A fresh modem per line, so that no case depends on the one before.
        let (mut engine, now) = quiet_engine(config.clone());
        let answer = exchange(&mut engine, format!("{line}\r").as_bytes(), now);
        if answer != expected {
            wrong.push(format!("{line:?} → {answer:?}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}

#[test]
fn a_call_rings_with_caller_id_until_the_caller_or_the_host_hangs_up() {
    let (mut engine, now) = quiet_engine(MockConfig::default());
    exchange(&mut engine, b"ATE0\r", now);
    exchange(&mut engine, b"AT+CLIP=1;+CRC=1\r", now);
    let second = Duration::from_secs(1);
    engine.incoming_call(Some("+447700900123".into()), 2, second, now);
    assert_eq!(
        String::from_utf8_lossy(&engine.poll(now)),
        "\r\n+CRING: VOICE\r\n\r\n+CLIP: \"+447700900123\",145,,,,0\r\n"
    );
    assert!(String::from_utf8_lossy(&engine.poll(now + second)).contains("+CRING: VOICE"));
    assert_eq!(
        String::from_utf8_lossy(&engine.poll(now + second * 2)),
        "\r\nNO CARRIER\r\n"
    );
    assert_eq!(engine.hang_ups(), 0);

    // A withheld number, hung up by the host: counted, and the rings stop.
    exchange(&mut engine, b"AT+CRC=0\r", now);
    engine.incoming_call(None, 5, second, now + second * 3);
    assert_eq!(
        String::from_utf8_lossy(&engine.poll(now + second * 3)),
        "\r\nRING\r\n\r\n+CLIP: \"\",128,,,,1\r\n"
    );
    assert_eq!(exchange(&mut engine, b"AT+CHUP\r", now), "\r\nOK\r\n");
    assert_eq!(engine.hang_ups(), 1);
    assert_eq!(String::from_utf8_lossy(&engine.poll(now + second * 9)), "");
    // A hang-up with no call is answered and not counted.
    assert_eq!(exchange(&mut engine, b"ATH\r", now), "\r\nOK\r\n");
    assert_eq!(engine.hang_ups(), 1);
}

#[test]
fn ussd_answers_a_balance_and_a_menu_in_the_profile_encoding() {
    let (mut engine, now) = quiet_engine(MockConfig::default());
    exchange(&mut engine, b"ATE0\r", now);
    let later = now + Duration::from_secs(1);
    assert_eq!(
        exchange(&mut engine, b"AT+CUSD=1,\"*100#\",15\r", now),
        "\r\nOK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&engine.poll(later)),
        "\r\n+CUSD: 0,\"Your balance is 12.50 EUR, valid until 31.12.2026\",15\r\n"
    );
    exchange(&mut engine, b"AT+CUSD=1,\"*123#\",15\r", now);
    assert!(String::from_utf8_lossy(&engine.poll(later)).starts_with("\r\n+CUSD: 1,\"1. Balance"));
    exchange(&mut engine, b"AT+CUSD=1,\"2\",15\r", now);
    assert_eq!(
        String::from_utf8_lossy(&engine.poll(later)),
        "\r\n+CUSD: 0,\"No bundles active\",15\r\n"
    );

    // Huawei wants packed hex and answers in it.
    let (mut huawei, now) = quiet_engine(MockConfig {
        profile: crate::mock::Profile::Huawei,
        ..MockConfig::default()
    });
    exchange(&mut huawei, b"ATE0\r", now);
    assert!(exchange(&mut huawei, b"AT+CUSD=1,\"*100#\",15\r", now).contains("ERROR"));
    huawei.set_ussd_script(super::UssdScript {
        balance: "*100#".into(),
        ..super::UssdScript::default()
    });
    assert_eq!(
        exchange(&mut huawei, b"AT+CUSD=1,\"AA180C3602\",15\r", now),
        "\r\nOK\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&huawei.poll(now + Duration::from_secs(1))),
        "\r\n+CUSD: 0,\"AA180C3602\",15\r\n"
    );
}
