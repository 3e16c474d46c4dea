//! Any text becomes SUBMIT parts that decode back to it, or a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::pdu::{Address, Pdu, SubmitOptions, Tpdu, submit_parts};

fuzz_target!(|text: &str| {
    let Ok(recipient) = Address::from_number("+447700900123") else { return };
    let Ok(outgoing) = submit_parts(&recipient, text, &SubmitOptions::default()) else { return };
    let mut back = String::new();
    for part in outgoing.parts {
        let Ok(Pdu { tpdu: Tpdu::Submit(submit), .. }) = Pdu::from_hex(&part.hex) else {
            panic!("our own PDU does not decode: {}", part.hex);
        };
        back.push_str(submit.user_data.text().unwrap_or_default());
    }
    assert_eq!(back, text);
});
