//! Properties of the simulated modem's engine: no host bytes panic it, multi-byte UTF-8 and
//! invalid bytes included (issue #14), and whatever came before, ESC and `AT` get an `OK`.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use smsrelay::mock::{Engine, MockConfig, Profile};

/// Fragments of host traffic: real commands, prompts, ESC and Ctrl-Z, non-ASCII text in
/// commands and arguments, invalid UTF-8, and plain random bytes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"AT\r".to_vec()),
        Just(b"ATE0\r".to_vec()),
        Just(b"AT+CMEE=2\r".to_vec()),
        Just(b"AT+CPIN?\r".to_vec()),
        Just(b"AT+CPIN=\"0000\"\r".to_vec()),
        Just(b"AT+CPINR=\"SIM PIN\"\r".to_vec()),
        Just(b"AT+CMGF=1\r".to_vec()),
        Just(b"AT+CMGS=17\r".to_vec()),
        Just(b"AT+CMGS=\"+447700900123\"\r".to_vec()),
        Just(b"AT+CMGL=4\r".to_vec()),
        Just(b"AT+CFUN=1,1\r".to_vec()),
        Just(b"\x1b".to_vec()),
        Just(b"\x1a".to_vec()),
        Just(b"\r\n".to_vec()),
        Just("ATé\r".as_bytes().to_vec()),
        Just("AT+CSCA=\"ü\"\r".as_bytes().to_vec()),
        Just("AT&€;+CMGF=é\r".as_bytes().to_vec()),
        Just(b"AT\xFF\xC3\r".to_vec()),
        "\\PC{0,12}".prop_map(|text| format!("AT{text}\r").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn host_bytes_never_panic_the_engine(
        fragments in prop::collection::vec(fragment(), 0..40),
        chunk in 1usize..32,
        steps in prop::collection::vec(0u64..3000, 1..16),
        profile in 0..Profile::ALL.len(),
        pin in any::<bool>(),
    ) {
        let config = MockConfig {
            profile: Profile::ALL.get(profile).copied().unwrap_or(Profile::Generic),
            pin: pin.then(|| "1234".to_string()),
            ..MockConfig::default()
        };
        let mut now = Instant::now();
        let mut engine = Engine::new(config, now);
        let stream = fragments.concat();
        for (bytes, step) in stream.chunks(chunk).zip(steps.iter().cycle()) {
            engine.receive(bytes, now);
            engine.poll(now);
            now += Duration::from_millis(*step);
            engine.poll(now);
        }
        // Whatever is pending (a send's answer, a reboot) falls due; then ESC ends any prompt
        // and the modem answers a plain AT.
        now += Duration::from_secs(120);
        engine.poll(now);
        engine.receive(b"\x1b\r\nAT\r", now);
        let answer = String::from_utf8_lossy(&engine.poll(now)).into_owned();
        prop_assert!(answer.ends_with("OK\r\n"), "{:?}", answer);
    }
}
