//! PDU decode and encode throughput.
//!
//! Targets (issue 3): decode ≥ 1 M PDUs/s, encode ≥ 500 k single-part messages/s. A modem
//! moves one SMS every few seconds; these figures say the codec is never the bottleneck, even
//! on a Pi, and that a sweep of a full SIM decodes in microseconds.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smsrelay::pdu::{self, Address, Pdu, SubmitOptions, Validity};

/// A mix of what a gateway reads: plain, alphanumeric, UCS-2 with emoji, 16-bit concatenated,
/// and the three status reports (vectors E6, E7, E8, E10, E12, E13, E14).
const INBOUND: [&str; 7] = [
    "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713",
    "0791447700090010040DD049B7F93D6D4E0100004221133295950013D9775D0E1ABFC965507A0EA2E164B9D80C",
    "07915155550501F0040B915155550521F300084270409051000A1A041F0440043804320435044200210020D83DDC4B0020006F006B",
    "0791447700090010440C914477000910320000423051412301402B060804BEEF0302ED3499CC2E83E061391DF43683C2203A5A5E2EB7E061391DD42ECFE7E17319",
    "079144770009001006070C91447700091032423051411320404230514113504000",
    "079144770009001006080C91447700091032423051411320404230814113004046",
    "079144770009001006090C91447700091032423051411320404230514114004022",
];

fn bench(c: &mut Criterion) {
    let inbound: Vec<Vec<u8>> = INBOUND
        .iter()
        .map(|hex| pdu::decode_hex(hex).expect("valid vector"))
        .collect();
    let mut group = c.benchmark_group("pdu");
    group.throughput(Throughput::Elements(inbound.len() as u64));
    group.bench_function("decode_bytes", |b| {
        b.iter(|| {
            for bytes in &inbound {
                std::hint::black_box(Pdu::decode(std::hint::black_box(bytes)).is_ok());
            }
        })
    });
    // From hex, as the modem layer gets it off a +CMGR line.
    group.bench_function("decode_hex", |b| {
        b.iter(|| {
            for hex in INBOUND {
                std::hint::black_box(Pdu::from_hex(std::hint::black_box(hex)).is_ok());
            }
        })
    });
    group.finish();

    let recipient = Address::from_number("+447700900123").expect("valid number");
    let options = SubmitOptions {
        status_report: true,
        validity: Some(Validity::Relative(0xA7)),
        ..SubmitOptions::default()
    };
    let mut group = c.benchmark_group("pdu");
    group.throughput(Throughput::Elements(1));
    for (name, text) in [
        (
            "encode_gsm7_single_part",
            "Your parcel 4711 arrives today between 10:00 and 12:00 [track: ok]",
        ),
        ("encode_ucs2_single_part", "Grüße aus Köln 😀, bis morgen!"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| pdu::submit_parts(&recipient, std::hint::black_box(text), &options))
        });
    }
    let long = "This is a long message that needs several parts. ".repeat(20);
    group.bench_function("encode_gsm7_7_parts", |b| {
        b.iter(|| pdu::submit_parts(&recipient, std::hint::black_box(&long), &options))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
