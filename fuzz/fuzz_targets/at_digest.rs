//! Framing + classification + URC parsing on arbitrary bytes, in arbitrary chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsrelay::at::{Digester, Pending, parse};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut digester = Digester::new();
    digester.set_pending(Some(Pending::new("AT+CMGS=5").with_pdu("0011")));
    for chunk in rest.chunks(usize::from(split).max(1)) {
        digester.push(chunk);
        while digester.next_item().is_some() {}
    }
    let text = String::from_utf8_lossy(rest);
    let _ = parse::final_result(&text);
    let _ = parse::urc(&text, Some(&text));
    let _ = parse::registration(&text);
    let _ = parse::cmgl(&text);
    let _ = parse::cpms(&text);
});
