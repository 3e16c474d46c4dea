//! The simulated modem on arbitrary host bytes, in arbitrary chunks, with time moving on: it
//! must never panic (issue #14: a non-ASCII command line did).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smsrelay::mock::{Engine, MockConfig, Profile};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let profile = Profile::ALL
        .get(usize::from(head & 0x07) % Profile::ALL.len())
        .copied()
        .unwrap_or(Profile::Generic);
    let config = MockConfig {
        profile,
        pin: (head & 0x80 != 0).then(|| "1234".to_string()),
        ..MockConfig::default()
    };
    let mut now = Instant::now();
    let mut engine = Engine::new(config, now);
    let size = usize::from(head >> 3).max(1);
    for chunk in rest.chunks(size) {
        engine.receive(chunk, now);
        let _ = engine.poll(now);
        // The chunk's first byte moves the clock on, up to about 4 s.
        let step = chunk.first().copied().unwrap_or(0);
        now += Duration::from_millis(u64::from(step) * 16);
        let _ = engine.poll(now);
    }
    // Let whatever was scheduled (answers, reports, reboots) fall due.
    for _ in 0..64 {
        let Some(when) = engine.next_wakeup() else { break };
        now = now.max(when);
        let _ = engine.poll(now);
    }
});
