//! `Udh::parse` and the concatenation element it may hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::pdu::Udh;

fuzz_target!(|data: &[u8]| {
    if let Ok(udh) = Udh::parse(data) {
        let _ = udh.concat();
        assert_eq!(&udh.to_octets()[1..], data, "a parsed header re-encodes as it came");
    }
});
