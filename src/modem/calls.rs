//! Incoming calls as a pure state machine, time passed in: `RING`/`+CRING`, `+CLIP` and
//! `NO CARRIER` in, at most one "ringing" and one "missed" out per call.
//!
//! A modem rings every few seconds with `RING` (or `+CRING: VOICE` after `AT+CRC=1`), each
//! followed by `+CLIP:` when `AT+CLIP=1` is set. "Ringing" is said once the caller is known:
//! at the first `+CLIP`, or at the second ring without one (a modem without caller id), or
//! when the call ends first. The call ends with `NO CARRIER` (the caller hung up), when we
//! hang up (reject), or when no ring came for [`RING_SILENCE`]: many modems say nothing when
//! the caller gives up.

use std::time::{Duration, Instant};

/// No ring for this long means the caller gave up (rings come every 3–6 s).
pub const RING_SILENCE: Duration = Duration::from_secs(10);

/// What a call did, for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// An incoming call rings (once per call).
    Ringing {
        /// The caller, `None` when withheld or unknown.
        number: Option<String>,
    },
    /// The call stopped ringing without being answered.
    Missed {
        /// The caller, `None` when withheld or unknown.
        number: Option<String>,
        /// Rings counted.
        rings: u32,
        /// Whether smsrelay hung up (`[calls] reject`) rather than the caller.
        rejected: bool,
    },
}

/// What the driver should do after an input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallEffects {
    /// Events to hand up, in order.
    pub events: Vec<CallEvent>,
    /// Hang up now (`AT+CHUP`, `ATH` as fallback).
    pub hang_up: bool,
}

#[derive(Debug, Clone)]
struct Call {
    number: Option<String>,
    rings: u32,
    announced: bool,
    last_ring: Instant,
}

/// The call in progress, if any.
#[derive(Debug, Clone, Default)]
pub struct CallTracker {
    call: Option<Call>,
    reject: bool,
}

impl CallTracker {
    /// A tracker; with `reject`, every call is hung up once its caller is known.
    pub fn new(reject: bool) -> CallTracker {
        CallTracker { call: None, reject }
    }

    /// `RING` or `+CRING:`.
    pub fn on_ring(&mut self, now: Instant) -> CallEffects {
        let Some(call) = &mut self.call else {
            self.call = Some(Call {
                number: None,
                rings: 1,
                announced: false,
                last_ring: now,
            });
            return CallEffects::default();
        };
        call.rings += 1;
        call.last_ring = now;
        if call.announced {
            return CallEffects::default();
        }
        // A second ring without caller id: the modem does not send one.
        self.announce()
    }

    /// `+CLIP:` with the caller (`None`: withheld).
    pub fn on_caller(&mut self, number: Option<String>, now: Instant) -> CallEffects {
        if self.call.is_none() {
            // Some modems put +CLIP before the first RING.
            self.call = Some(Call {
                number: None,
                rings: 0,
                announced: false,
                last_ring: now,
            });
        }
        let Some(call) = &mut self.call else {
            return CallEffects::default();
        };
        if call.number.is_none() {
            call.number = number;
        }
        if call.announced {
            return CallEffects::default();
        }
        self.announce()
    }

    /// `NO CARRIER`: the caller hung up (or our hang-up took effect).
    pub fn on_ended(&mut self) -> CallEffects {
        self.finish(false)
    }

    /// We hung up the call (after [`CallEffects::hang_up`]).
    pub fn on_hung_up(&mut self) -> CallEffects {
        self.finish(true)
    }

    /// When [`CallTracker::on_tick`] next has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        self.call.as_ref().map(|call| call.last_ring + RING_SILENCE)
    }

    /// Time passes: a call whose rings stopped is missed.
    pub fn on_tick(&mut self, now: Instant) -> CallEffects {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.finish(false),
            _ => CallEffects::default(),
        }
    }

    fn announce(&mut self) -> CallEffects {
        let Some(call) = &mut self.call else {
            return CallEffects::default();
        };
        call.announced = true;
        CallEffects {
            events: vec![CallEvent::Ringing {
                number: call.number.clone(),
            }],
            hang_up: self.reject,
        }
    }

    fn finish(&mut self, rejected: bool) -> CallEffects {
        let Some(call) = self.call.take() else {
            return CallEffects::default();
        };
        let mut events = Vec::new();
        if !call.announced {
            events.push(CallEvent::Ringing {
                number: call.number.clone(),
            });
        }
        events.push(CallEvent::Missed {
            number: call.number,
            rings: call.rings,
            rejected,
        });
        CallEffects {
            events,
            hang_up: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Input {
        Ring,
        Clip(Option<&'static str>),
        Ended,
        HungUp,
        Tick,
    }
    use Input::*;

    fn ringing(number: Option<&str>) -> CallEvent {
        CallEvent::Ringing {
            number: number.map(str::to_string),
        }
    }

    fn missed(number: Option<&str>, rings: u32, rejected: bool) -> CallEvent {
        CallEvent::Missed {
            number: number.map(str::to_string),
            rings,
            rejected,
        }
    }

    /// Runs inputs at (seconds, input) and collects every event and hang-up.
    fn run(reject: bool, inputs: &[(u64, Input)]) -> (Vec<CallEvent>, usize) {
        let start = Instant::now();
        let mut tracker = CallTracker::new(reject);
        let mut events = Vec::new();
        let mut hang_ups = 0;
        for (at, input) in inputs {
            let now = start + Duration::from_secs(*at);
            let effects = match input {
                Ring => tracker.on_ring(now),
                Clip(number) => tracker.on_caller(number.map(str::to_string), now),
                Ended => tracker.on_ended(),
                HungUp => tracker.on_hung_up(),
                Tick => tracker.on_tick(now),
            };
            events.extend(effects.events);
            hang_ups += usize::from(effects.hang_up);
        }
        (events, hang_ups)
    }

    /// (name, reject, timed inputs, events expected, hang-ups expected)
    type Case = (&'static str, bool, Vec<(u64, Input)>, Vec<CallEvent>, usize);

    #[test]
    fn one_ringing_and_one_missed_per_call() {
        let n = Some("+447700900123");
        let cases: Vec<Case> = vec![
            (
                "caller hangs up after three rings",
                false,
                vec![
                    (0, Ring),
                    (0, Clip(n)),
                    (4, Ring),
                    (4, Clip(n)),
                    (8, Ring),
                    (9, Ended),
                ],
                vec![ringing(n), missed(n, 3, false)],
                0,
            ),
            (
                "withheld number",
                false,
                vec![(0, Ring), (0, Clip(None)), (4, Ended)],
                vec![ringing(None), missed(None, 1, false)],
                0,
            ),
            (
                "no caller id: ringing at the second ring",
                false,
                vec![(0, Ring), (4, Ring), (8, Ring), (9, Ended)],
                vec![ringing(None), missed(None, 3, false)],
                0,
            ),
            (
                "one ring and gone",
                false,
                vec![(0, Ring), (2, Ended)],
                vec![ringing(None), missed(None, 1, false)],
                0,
            ),
            (
                "rings stop without NO CARRIER",
                false,
                vec![(0, Ring), (0, Clip(n)), (5, Tick), (10, Tick), (11, Ended)],
                vec![ringing(n), missed(n, 1, false)],
                0,
            ),
            (
                "reject hangs up once the caller is known",
                true,
                vec![(0, Ring), (0, Clip(n)), (0, HungUp), (1, Ended)],
                vec![ringing(n), missed(n, 1, true)],
                1,
            ),
            (
                "two calls",
                false,
                vec![
                    (0, Ring),
                    (0, Clip(n)),
                    (1, Ended),
                    (20, Ring),
                    (20, Clip(None)),
                    (21, Ended),
                ],
                vec![
                    ringing(n),
                    missed(n, 1, false),
                    ringing(None),
                    missed(None, 1, false),
                ],
                0,
            ),
            (
                "NO CARRIER without a call",
                false,
                vec![(0, Ended)],
                vec![],
                0,
            ),
        ];
        for (name, reject, inputs, expected, hang_ups) in cases {
            assert_eq!(run(reject, &inputs), (expected, hang_ups), "{name}");
        }
    }
}
