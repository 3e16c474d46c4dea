//! Septet unpacking at any offset and GSM 7-bit decoding of whatever comes out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::pdu::gsm7;

fuzz_target!(|data: &[u8]| {
    let Some((&skip, rest)) = data.split_first() else { return };
    let count = rest.len() * 8 / 7;
    if let Some(septets) = gsm7::unpack(rest, usize::from(skip % 8), count) {
        let _ = gsm7::decode(&septets);
    }
});
