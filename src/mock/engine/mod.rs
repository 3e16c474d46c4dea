//! The simulated modem's brain: bytes from the host in, bytes to the host out, with time passed
//! in rather than read, so that it is pure and every behaviour can be driven step by step.
//!
//! What it simulates is the list of docs/at-sms.md §7: V1 framing, echo, CMEE modes, the SIM PIN/PUK
//! state, registration and signal, the SMS settings (CMGF, CSCS, CSMS, CNMI, CPMS, CSCA),
//! storages with capacity and an index base, `AT+CMGS` with its prompt, length check and ESC
//! abort, message references that wrap, status reports, inbound messages stored or routed, and
//! the quirks of the vendor profiles.
//!
//! This file owns the [`Engine`] itself: its state, grouped by concept, the input mode (command
//! line, or a message after the `> ` prompt) and the schedule of timed events. The rest is one
//! concept per file: `syntax` (how a command line is split, echoed and answered), `commands`
//! (which handler a command name goes to), `sim` (PIN/PUK and the busy windows), `storage`
//! (memories and the commands that read them) and `network` (registration, sending, status
//! reports and the routing of inbound messages).

mod commands;
mod network;
mod sim;
mod storage;
mod syntax;
#[cfg(test)]
mod tests;
mod voice;

use std::time::{Duration, Instant};

use log::debug;

use super::profile::Profile;
use crate::pdu::StatusReport;
use network::Network;
pub use network::{ReportBehaviour, Submitted};
use sim::{Sim, SimState};
use storage::Storages;
use syntax::{CTRL_Z, ESC, MAX_COMMAND};
use voice::Voice;
pub use voice::{UssdEncoding, UssdScript};

/// Where an armed URC comes out in the next exchange (docs/at-sms.md §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrcPoint {
    /// At once (or as soon as the modem is idle).
    Now,
    /// After the echo of the next command, before its answer.
    AfterEcho,
    /// After the information lines of the next answer, before its final result (for `+CMGR`,
    /// after the PDU line).
    BeforeFinal,
    /// Right after the next final result.
    AfterFinal,
    /// Between the next `AT+CMGS=<n>` and its `> `.
    BeforePrompt,
    /// Between the next Ctrl-Z and its `+CMGS:`.
    AfterSubmit,
}

/// How the simulated modem starts and behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Vendor behaviour.
    pub profile: Profile,
    /// The SIM PIN; `None` for a SIM without one.
    pub pin: Option<String>,
    /// The PUK that unblocks the SIM after three wrong PINs.
    pub puk: String,
    /// The SMSC stored in the modem (`AT+CSCA?`); `None` for an empty one.
    pub smsc: Option<String>,
    /// Time between Ctrl-Z and `+CMGS:` (the network round trip).
    pub submit_delay: Duration,
    /// What status reports say.
    pub report: ReportBehaviour,
    /// Time between `+CMGS:` and the (first) status report.
    pub report_delay: Duration,
    /// Slots per storage.
    pub capacity: usize,
    /// How long a routed `+CMT`/`+CDS` waits for `AT+CNMA` when `AT+CSMS=1`.
    pub cnma_timeout: Duration,
    /// How long SMS commands answer `+CME ERROR: 14` (SIM busy) after the PIN or a boot.
    pub sim_busy: Duration,
    /// Extra time `AT+CMGL` takes per listed message (a slow full SIM).
    pub list_delay_per_message: Duration,
    /// Interval of the profile's periodic noise (Huawei `^RSSI`); `None` for none.
    pub noise_interval: Option<Duration>,
    /// Firmware that ignores `ATE0` and keeps echoing (docs/at-sms.md §7.2).
    pub ignore_ate0: bool,
    /// Sends fail with `+CMS ERROR: 322` while the send/write storage is full.
    pub send_needs_free_slot: bool,
    /// `+CMGR: 0,43` and `+CMGL: 1,0,43`, without the alpha field.
    pub omit_alpha: bool,
    /// Firmware that offers only message service 1 (phase 2+): `AT+CSMS=0` is refused, so
    /// every routed `+CMT`/`+CDS` must be acknowledged with `AT+CNMA`.
    pub phase2plus_only: bool,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            profile: Profile::Generic,
            pin: None,
            puk: "12345678".into(),
            smsc: Some("+447700900001".into()),
            submit_delay: Duration::from_millis(200),
            report: ReportBehaviour::Delivered,
            report_delay: Duration::from_millis(300),
            capacity: 30,
            cnma_timeout: Duration::from_secs(17),
            sim_busy: Duration::ZERO,
            list_delay_per_message: Duration::ZERO,
            noise_interval: None,
            ignore_ate0: false,
            send_needs_free_slot: false,
            omit_alpha: false,
            phase2plus_only: false,
        }
    }
}

/// The settings the host changes with commands and a reboot forgets.
#[derive(Debug, Clone)]
struct Settings {
    /// `ATE`: echo command lines back.
    echo: bool,
    /// `AT+CMEE`: 0 bare ERROR, 1 numeric codes, 2 verbose.
    cmee: u8,
    /// `AT+CMGF`: 0 PDU mode, 1 text mode.
    cmgf: u8,
    /// `AT+CSCS`: the TE character set.
    cscs: String,
    /// `AT+CSMS`: 1 when routed messages need `AT+CNMA`.
    csms: u8,
    /// `AT+CNMI`: mode, mt, bm, ds, bfr.
    cnmi: [u8; 5],
    /// `AT+CPMS`: the read/delete, write/send and receive memories.
    cpms: [String; 3],
    /// `AT+CREG`, `AT+CGREG`, `AT+CEREG` reporting modes.
    creg_n: u8,
    cgreg_n: u8,
    cereg_n: u8,
    /// Huawei `AT^CURC=0`: no periodic noise.
    quiet: bool,
}

impl Settings {
    /// The values after power-on.
    fn power_on(config: &MockConfig) -> Settings {
        Settings {
            echo: true,
            cmee: 0,
            cmgf: config.profile.default_cmgf(),
            cscs: "IRA".into(),
            csms: u8::from(config.phase2plus_only),
            cnmi: [0; 5],
            cpms: ["SM".into(), "SM".into(), "SM".into()],
            creg_n: 0,
            cgreg_n: 0,
            cereg_n: 0,
            quiet: false,
        }
    }
}

/// What the host's bytes are read as.
#[derive(Debug)]
enum Input {
    Command,
    /// After `AT+CMGS=<n>` in PDU mode: hex until Ctrl-Z.
    Pdu {
        length: usize,
        hex: Vec<u8>,
    },
    /// After `AT+CMGS="<da>"` in text mode: text until Ctrl-Z.
    Text {
        recipient: String,
        text: Vec<u8>,
    },
}

/// The host side of the line: bytes not yet read, what they are read as, the answer in
/// progress, bytes to write, and URCs waiting for their point of the next exchange.
#[derive(Debug)]
struct Port {
    /// Received and not yet consumed.
    input: Vec<u8>,
    /// Command line, or a message after the prompt.
    mode: Input,
    /// An answer is being worked on (a send, a slow list): input waits.
    busy: bool,
    /// A command line is being answered: URCs it raises follow its answer.
    in_command: bool,
    /// Written and not yet polled.
    out: Vec<u8>,
    /// URCs armed for a point of the next exchange.
    armed: Vec<(UrcPoint, String)>,
}

/// A timed event of the [`Schedule`].
#[derive(Debug)]
enum Scheduled {
    /// Bytes to write; `ends_busy` when this is the answer the modem was working on.
    Write { bytes: Vec<u8>, ends_busy: bool },
    /// A status report for a sent message comes back from the network.
    Report(Box<StatusReport>),
    /// The `+CNMA` deadline of routed message `id`.
    CnmaDeadline(u64),
    /// The profile's periodic noise.
    Noise,
    /// Boot banners after a reset.
    Banners,
    /// `AT+CFUN=1,1` was answered: now the modem reboots.
    Reboot,
    /// The next ring of call `id` (ignored once that call ended).
    Ring(u64),
    /// A URC line, at once or after the answer in progress (a USSD answer).
    Urc(String),
}

/// Timed events, due in order of time and then of scheduling.
#[derive(Debug, Default)]
struct Schedule {
    events: Vec<(Instant, u64, Scheduled)>,
    sequence: u64,
}

impl Schedule {
    /// Schedules `event` for `when`.
    fn at(&mut self, when: Instant, event: Scheduled) {
        self.sequence += 1;
        self.events.push((when, self.sequence, event));
    }

    /// The earliest event due by `now`, taken off the schedule.
    fn take_due(&mut self, now: Instant) -> Option<Scheduled> {
        let index = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, (when, _, _))| *when <= now)
            .min_by_key(|(_, (when, sequence, _))| (*when, *sequence))
            .map(|(index, _)| index)?;
        let (_, _, event) = self.events.swap_remove(index);
        Some(event)
    }

    /// When the next event falls due.
    fn next_wakeup(&self) -> Option<Instant> {
        self.events.iter().map(|(when, _, _)| *when).min()
    }
}

/// The simulated modem. Feed it host bytes with [`Engine::receive`], collect what it writes
/// with [`Engine::poll`], and sleep until [`Engine::next_wakeup`].
#[derive(Debug)]
pub struct Engine {
    config: MockConfig,
    settings: Settings,
    sim: Sim,
    storages: Storages,
    network: Network,
    voice: Voice,
    port: Port,
    schedule: Schedule,
    /// Every command line the host sent, in order.
    commands: Vec<String>,
    /// Hung: nothing is read until the host closes the port.
    deaf: bool,
    /// Command lines still to ignore.
    drop_commands: usize,
    /// `AT+CFUN=1,1` rebooted the modem; the runner may mirror it on the port.
    reboot_requested: bool,
}

impl Engine {
    /// A modem that has just booted (its banners are due at once, as a real one prints them
    /// whether or not anybody listens).
    pub fn new(config: MockConfig, now: Instant) -> Engine {
        let mut engine = Engine {
            settings: Settings::power_on(&config),
            sim: Sim::new(config.pin.is_some()),
            storages: Storages::new(config.profile, config.capacity),
            network: Network::new(config.smsc.clone()),
            voice: Voice::default(),
            port: Port {
                input: Vec::new(),
                mode: Input::Command,
                busy: false,
                in_command: false,
                out: Vec::new(),
                armed: Vec::new(),
            },
            schedule: Schedule::default(),
            commands: Vec::new(),
            deaf: false,
            drop_commands: 0,
            reboot_requested: false,
            config,
        };
        engine.boot(now);
        engine
    }

    /// Settings back to power-on values, banners due, the SIM locked again if it has a PIN.
    fn boot(&mut self, now: Instant) {
        self.settings = Settings::power_on(&self.config);
        self.network.cfun = 1;
        self.port.mode = Input::Command;
        self.port.input.clear();
        self.port.busy = false;
        self.network.awaiting_ack = None;
        self.voice.reboot();
        if let (Some(_), SimState::Ready) = (&self.config.pin, self.sim.state) {
            self.sim.state = SimState::Pin { tries: 3 };
        }
        self.sim.busy_until = Some(now + self.config.sim_busy);
        self.schedule
            .events
            .retain(|(_, _, event)| matches!(event, Scheduled::Report(_)));
        self.schedule.at(now, Scheduled::Banners);
        if let Some(interval) = self.config.noise_interval {
            self.schedule.at(now + interval, Scheduled::Noise);
        }
    }

    /// Bytes from the host.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.deaf {
            debug!("mock: deaf, ignoring {} bytes", bytes.len());
            return;
        }
        self.port.input.extend_from_slice(bytes);
        self.process(now);
    }

    /// What the modem writes now: immediate answers plus whatever fell due.
    pub fn poll(&mut self, now: Instant) -> Vec<u8> {
        while let Some(event) = self.schedule.take_due(now) {
            self.fire(event, now);
        }
        self.process(now);
        std::mem::take(&mut self.port.out)
    }

    /// When [`Engine::poll`] next has something to do, if ever.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.schedule.next_wakeup()
    }

    /// Whether `AT+CFUN=1,1` asked for a reboot that the port should mirror (the runner may
    /// close and reopen the PTY as USB re-enumeration does). Reading it clears it.
    pub fn take_reboot_request(&mut self) -> bool {
        std::mem::take(&mut self.reboot_requested)
    }

    /// The host closed the port: a deaf modem recovers, a half-typed command is dropped.
    pub fn port_closed(&mut self) {
        self.deaf = false;
        self.port.input.clear();
        if !matches!(self.port.mode, Input::Command) {
            self.port.mode = Input::Command;
        }
    }

    // ---- control ------------------------------------------------------------------------

    /// Every command line the host sent, in order.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// Arms a URC to come out at `point` of the next exchange.
    pub fn inject_urc(&mut self, point: UrcPoint, text: &str) {
        if point == UrcPoint::Now {
            self.urc_or_arm(text.to_string());
        } else {
            self.port.armed.push((point, text.to_string()));
        }
    }

    /// Writes raw bytes at once (noise, garbage, half lines).
    pub fn inject_raw(&mut self, bytes: &[u8]) {
        self.port.out.extend_from_slice(bytes);
    }

    /// The modem stops answering until the port is closed and reopened.
    pub fn hang(&mut self) {
        self.deaf = true;
    }

    /// The next `count` command lines get no answer at all (the first AT after idle).
    pub fn drop_next_commands(&mut self, count: usize) {
        self.drop_commands += count;
    }

    /// A reboot now: banners, settings forgotten (as after a power dip).
    pub fn reboot(&mut self, now: Instant) {
        self.boot(now);
    }

    // ---- internals ------------------------------------------------------------------------

    /// Carries out an event that fell due.
    fn fire(&mut self, event: Scheduled, now: Instant) {
        match event {
            Scheduled::Write { bytes, ends_busy } => {
                self.port.out.extend_from_slice(&bytes);
                if ends_busy {
                    self.port.busy = false;
                    self.fire_armed(UrcPoint::AfterFinal);
                }
            }
            Scheduled::Report(report) => self.route_report(*report, now),
            Scheduled::CnmaDeadline(id) => self.cnma_deadline(id),
            Scheduled::Noise => {
                let noise = self.config.profile.noise(self.network.rssi);
                if !self.settings.quiet
                    && !self.port.busy
                    && matches!(self.port.mode, Input::Command)
                {
                    for line in noise {
                        self.write_line(&line);
                    }
                }
                if let Some(interval) = self.config.noise_interval {
                    self.schedule.at(now + interval, Scheduled::Noise);
                }
            }
            Scheduled::Reboot => {
                self.reboot_requested = true;
                self.boot(now);
            }
            Scheduled::Ring(id) => self.ring(id, now),
            Scheduled::Urc(line) => self.urc_or_arm(line),
            Scheduled::Banners => {
                for line in self.config.profile.banners() {
                    self.write_line(line);
                }
            }
        }
    }

    /// Runs whatever complete input there is, unless an answer is still being worked on.
    fn process(&mut self, now: Instant) {
        while !self.port.busy && !self.deaf {
            let more = match self.port.mode {
                Input::Command => self.take_command_line(now),
                Input::Pdu { .. } | Input::Text { .. } => self.take_message(now),
            };
            if !more {
                return;
            }
        }
    }

    /// Runs the next complete command line; `false` when there is none yet.
    fn take_command_line(&mut self, now: Instant) -> bool {
        let Some(end) = self
            .port
            .input
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
        else {
            if self.port.input.len() > MAX_COMMAND {
                self.port.input.clear();
            }
            // A stray ESC or Ctrl-Z outside a prompt is ignored, as modems do.
            self.port.input.retain(|&b| b != ESC && b != CTRL_Z);
            return false;
        };
        let line: Vec<u8> = self.port.input.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line[..line.len() - 1])
            .trim_matches(|c: char| c.is_whitespace() || c == ESC as char || c == CTRL_Z as char)
            .to_string();
        if !line.is_empty() {
            self.command_line(&line, now);
        }
        true
    }

    /// Collects the message after the prompt and submits it at Ctrl-Z (or drops it at ESC);
    /// `false` when the terminator has not come yet.
    fn take_message(&mut self, now: Instant) -> bool {
        let Some(end) = self
            .port
            .input
            .iter()
            .position(|&b| b == CTRL_Z || b == ESC)
        else {
            let pending: Vec<u8> = self.port.input.drain(..).collect();
            if self.settings.echo {
                self.port.out.extend_from_slice(&pending);
            }
            match &mut self.port.mode {
                Input::Pdu { hex, .. } => hex.extend(pending),
                Input::Text { text, .. } => text.extend(pending),
                Input::Command => {}
            }
            return false;
        };
        let mut chunk: Vec<u8> = self.port.input.drain(..=end).collect();
        let terminator = chunk.pop();
        if self.settings.echo {
            self.port.out.extend_from_slice(&chunk);
        }
        let mode = std::mem::replace(&mut self.port.mode, Input::Command);
        if terminator == Some(ESC) {
            debug!("mock ← ESC: send aborted");
            self.final_ok();
            return true;
        }
        match mode {
            Input::Pdu { length, mut hex } => {
                hex.extend(chunk);
                self.submit_pdu(length, &hex, now);
            }
            Input::Text {
                recipient,
                mut text,
            } => {
                text.extend(chunk);
                self.submit_text(&recipient, &text, now);
            }
            Input::Command => {}
        }
        true
    }
}
