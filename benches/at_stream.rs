//! Framing + classification throughput over a 1 MB AT stream of responses, URCs and noise.
//!
//! Target (issue 2): ≥ 50 MB/s. The serial line brings ~11.5 KB/s at 115200 baud.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use smsrelay::at::{Digester, Item, Pending};

/// One round of realistic traffic: a CMGR read with a URC inside, a CMGL list, noise, +CMT.
const ROUND: &[u8] = b"AT+CMGR=1\r\r\n+CMGR: 0,,43\r\n0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713\r\n\r\n+CMTI: \"SM\",2\r\n\r\nOK\r\n\
\r\n^RSSI:18\r\n\r\n^HCSQ:\"LTE\",59,50,161,24\r\n\
\r\n+CMGL: 1,0,,43\r\n0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713\r\n\r\n+CMGL: 2,1,,43\r\n0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713\r\n\r\nOK\r\n\
\r\n+CDS: 25\r\n079144770009001006070C91447700091032423051411320404230514113504000\r\n\
\r\n+CSQ: 21,99\r\n\r\nOK\r\n\r\n+CREG: 1,\"5E25\",\"605F\"\r\n";

fn stream() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 << 20);
    while bytes.len() < 1 << 20 {
        bytes.extend_from_slice(ROUND);
    }
    bytes
}

fn digest_all(stream: &[u8], chunk: usize) -> usize {
    let mut digester = Digester::new();
    let mut items = 0;
    for piece in stream.chunks(chunk) {
        digester.push(piece);
        while let Some(item) = digester.next_item() {
            // Keep a command pending, as the session does while reading answers.
            if matches!(item, Item::Final(_)) || digester.pending().is_none() {
                digester.set_pending(Some(Pending::new("AT+CMGR=1")));
            }
            items += 1;
        }
    }
    items
}

fn bench(c: &mut Criterion) {
    let stream = stream();
    let mut group = c.benchmark_group("at_stream");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(20);
    // A serial driver hands over what the UART buffered: typically tens to a few hundred bytes.
    for chunk in [64, 4096] {
        group.bench_function(format!("digest_1MB_chunks_of_{chunk}"), |b| {
            b.iter(|| digest_all(std::hint::black_box(&stream), chunk))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
