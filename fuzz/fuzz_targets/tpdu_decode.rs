//! `Tpdu::decode`: a TPDU without the SMSC field (`smsrelay pdu decode --no-smsc`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::pdu::{Tpdu, tpdu_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(tpdu) = Tpdu::decode(data) {
        let _ = tpdu_json(&tpdu).to_string();
        let _ = tpdu.encode();
    }
});
