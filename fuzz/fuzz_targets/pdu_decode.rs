//! `Pdu::decode` (SMSC field first, as AT PDU mode reads) and the JSON view of what decodes;
//! whatever decodes must also re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::pdu::{Pdu, pdu_json};

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = Pdu::decode(data) {
        let _ = pdu_json(&pdu).to_string();
        let _ = pdu.encode();
    }
    let _ = Pdu::from_hex(&String::from_utf8_lossy(data));
});
