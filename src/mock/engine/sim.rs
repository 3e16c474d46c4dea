//! The SIM: its PIN/PUK state and the attempts left (`AT+CPIN`, `AT+CPINR`, Huawei `AT^CPIN`),
//! the identities it holds (ICCID, readable before the PIN; IMSI, after it), and the windows in
//! which commands are refused as busy (after the PIN or a boot, and Wavecom's after `AT+CFUN=1`).

use std::time::Instant;

use super::Engine;
use super::syntax::{Answer, Arg, Fail, unquote};

/// Where the SIM stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SimState {
    Ready,
    Pin { tries: u8 },
    Puk { tries: u8 },
    Blocked,
}

/// The SIM and the busy windows that gate the commands needing it.
#[derive(Debug, Clone)]
pub(super) struct Sim {
    /// PIN/PUK state.
    pub(super) state: SimState,
    /// SMS commands answer `+CME ERROR: 14` until then (after the PIN or a boot).
    pub(super) busy_until: Option<Instant>,
    /// Everything answers `+CME ERROR: 515` until then (Wavecom after `AT+CFUN=1`).
    pub(super) device_busy_until: Option<Instant>,
}

impl Sim {
    /// A SIM just inserted: locked when it has a PIN.
    pub(super) fn new(has_pin: bool) -> Sim {
        Sim {
            state: if has_pin {
                SimState::Pin { tries: 3 }
            } else {
                SimState::Ready
            },
            busy_until: None,
            device_busy_until: None,
        }
    }
}

impl Engine {
    /// The SIM's state (`ready`, `pin`, `puk`, `blocked`) and its PIN and PUK attempts left.
    pub fn sim_state(&self) -> (&'static str, u8, u8) {
        let (pin, puk) = self.sim_attempts();
        let state = match self.sim.state {
            SimState::Ready => "ready",
            SimState::Pin { .. } => "pin",
            SimState::Puk { .. } => "puk",
            SimState::Blocked => "blocked",
        };
        (state, pin, puk)
    }

    /// Sets the PIN attempts left of a SIM that asks for its PIN (as if wrong PINs had been
    /// tried elsewhere); 0 makes it ask for the PUK. A SIM without a PIN, or already past it,
    /// is left alone: a right PIN resets the count.
    pub fn set_pin_attempts(&mut self, left: u8) {
        if let SimState::Pin { .. } = self.sim.state {
            self.sim.state = match left.min(3) {
                0 => SimState::Puk { tries: 10 },
                left => SimState::Pin { tries: left },
            };
        }
    }

    /// `AT+CPIN`, `AT+CPINR`, `AT^CPIN`, `AT+CIMI` and the ICCID commands.
    pub(super) fn sim_command(&mut self, name: &str, argument: Arg, now: Instant) -> Answer {
        let profile = self.config.profile;
        match (name, argument) {
            ("+CIMI", Arg::Action) => {
                self.sim_ready(now)?;
                Ok(vec![profile.imsi().into()])
            }
            ("+CIMI", Arg::Test) => Ok(vec![]),
            ("+CNUM", Arg::Action) => {
                self.sim_ready(now)?;
                Ok(vec![format!(
                    "+CNUM: \"\",\"{}\",145",
                    profile.own_number()
                )])
            }
            ("+CCID" | "^ICCID" | "+QCCID" | "+ICCID", Arg::Action | Arg::Query) => {
                // EF_ICCID is readable without the PIN (3GPP TS 31.102 §4.1.1); a locked-up
                // SIM still gives it, a busy modem does not.
                if self.sim.device_busy_until.is_some_and(|until| now < until) {
                    return Err(Fail::Cme(515));
                }
                Ok(vec![format!("{}: {}", name, profile.iccid())])
            }
            ("+CPIN", Arg::Query) => Ok(vec![match self.sim.state {
                SimState::Ready => "+CPIN: READY".into(),
                SimState::Pin { .. } => "+CPIN: SIM PIN".into(),
                SimState::Puk { .. } => "+CPIN: SIM PUK".into(),
                SimState::Blocked => return Err(Fail::Cme(13)),
            }]),
            ("+CPIN", Arg::Set(value)) => self.enter_pin(&value, now),
            ("+CPIN", Arg::Test) => Ok(vec![]),
            ("+CPINR", _) if profile.huawei_pin_counter() => Err(Fail::NotSupported),
            ("+CPINR", Arg::Action) => Ok(self.cpinr("*")),
            ("+CPINR", Arg::Set(value)) => Ok(self.cpinr(unquote(&value))),
            ("+CPINR", Arg::Test) => Ok(vec![]),
            ("^CPIN", Arg::Query) if profile.huawei_pin_counter() => self.huawei_cpin(),
            _ => Err(self.unknown()),
        }
    }

    /// Commands that need the SIM: `Ok` when it is unlocked and not busy.
    pub(super) fn sim_ready(&self, now: Instant) -> Result<(), Fail> {
        if self.sim.device_busy_until.is_some_and(|until| now < until) {
            return Err(Fail::Cme(515));
        }
        match self.sim.state {
            SimState::Ready => {}
            SimState::Pin { .. } => return Err(Fail::Cme(11)),
            SimState::Puk { .. } => return Err(Fail::Cme(12)),
            SimState::Blocked => return Err(Fail::Cme(13)),
        }
        if self.sim.busy_until.is_some_and(|until| now < until) {
            return Err(Fail::Cme(14));
        }
        Ok(())
    }

    /// [`Engine::sim_ready`] in the `+CMS` codes SMS commands answer with.
    pub(super) fn sms_ready(&self, now: Instant) -> Result<(), Fail> {
        match self.sim_ready(now) {
            Ok(()) => Ok(()),
            Err(Fail::Cme(code @ (14 | 515))) => Err(Fail::Cme(code)),
            Err(Fail::Cme(11)) => Err(Fail::Cms(311)),
            Err(Fail::Cme(12)) => Err(Fail::Cms(316)),
            Err(_) => Err(Fail::Cms(310)),
        }
    }

    /// `AT+CPIN=<pin>`, or `AT+CPIN=<puk>,<new pin>` once the PIN is blocked.
    fn enter_pin(&mut self, value: &str, now: Instant) -> Answer {
        let fields: Vec<&str> = value.split(',').map(unquote).collect();
        match (self.sim.state, fields.as_slice()) {
            (SimState::Ready, _) => Err(Fail::Cme(3)),
            (SimState::Pin { tries }, [pin]) => {
                if Some(*pin) == self.config.pin.as_deref() {
                    self.sim.state = SimState::Ready;
                    self.sim.busy_until = Some(now + self.config.sim_busy);
                    Ok(vec![])
                } else {
                    self.sim.state = match tries.saturating_sub(1) {
                        0 => SimState::Puk { tries: 10 },
                        left => SimState::Pin { tries: left },
                    };
                    Err(Fail::Cme(16))
                }
            }
            (SimState::Puk { tries }, [puk, new_pin]) => {
                if *puk == self.config.puk {
                    self.config.pin = Some(new_pin.to_string());
                    self.sim.state = SimState::Ready;
                    self.sim.busy_until = Some(now + self.config.sim_busy);
                    Ok(vec![])
                } else {
                    self.sim.state = match tries.saturating_sub(1) {
                        0 => SimState::Blocked,
                        left => SimState::Puk { tries: left },
                    };
                    Err(Fail::Cme(16))
                }
            }
            (SimState::Puk { .. }, _) => Err(Fail::Cme(12)),
            _ => Err(Fail::Cme(13)),
        }
    }

    /// PIN and PUK attempts left: a right PIN resets the PIN count to 3, the PUK's is 10.
    fn sim_attempts(&self) -> (u8, u8) {
        match self.sim.state {
            SimState::Ready => (3, 10),
            SimState::Pin { tries } => (tries, 10),
            SimState::Puk { tries } => (0, tries),
            SimState::Blocked => (0, 0),
        }
    }

    /// `+CPINR: <code>,<retries>,<default_retries>` for the codes `selection` names (3GPP TS
    /// 27.007 §8.65; a trailing `*` is a wildcard).
    fn cpinr(&self, selection: &str) -> Vec<String> {
        let (pin, puk) = self.sim_attempts();
        let selection = selection.to_ascii_uppercase();
        let wanted = |code: &str| match selection.strip_suffix('*') {
            Some(prefix) => code.starts_with(prefix),
            None => code == selection,
        };
        [("SIM PIN", pin, 3), ("SIM PUK", puk, 10)]
            .into_iter()
            .filter(|(code, _, _)| wanted(code))
            .map(|(code, left, default)| format!("+CPINR: {code},{left},{default}"))
            .collect()
    }

    /// Huawei's `^CPIN: <code>,[<times>],<puk_times>,<pin_times>,<puk2_times>,<pin2_times>`.
    fn huawei_cpin(&self) -> Answer {
        let (pin, puk) = self.sim_attempts();
        let (code, times) = match self.sim.state {
            SimState::Ready => ("READY", String::new()),
            SimState::Pin { .. } => ("SIM PIN", pin.to_string()),
            SimState::Puk { .. } => ("SIM PUK", puk.to_string()),
            SimState::Blocked => return Err(Fail::Cme(13)),
        };
        Ok(vec![format!("^CPIN: {code},{times},{puk},{pin},10,3")])
    }
}
