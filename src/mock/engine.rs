//! The simulated modem's brain: bytes from the host in, bytes to the host out, with time passed
//! in rather than read, so that it is pure and every behaviour can be driven step by step.
//!
//! What it simulates is the reference's §7 list: V1 framing, echo, CMEE modes, the SIM PIN/PUK
//! state, registration and signal, the SMS settings (CMGF, CSCS, CSMS, CNMI, CPMS, CSCA),
//! storages with capacity and an index base, `AT+CMGS` with its prompt, length check and ESC
//! abort, message references that wrap, status reports, inbound messages stored or routed, and
//! the quirks of the vendor profiles.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use log::debug;
use time::OffsetDateTime;

use super::profile::Profile;
use crate::at::{CmeError, CmsError};
use crate::pdu::{self, Address, Pdu, Status, StatusReport, Submit, Timestamp, Tpdu};

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;
/// A command line longer than this is junk: real modems cap their buffers too.
const MAX_COMMAND: usize = 4096;
/// How long Huawei's `+CPMS?` counters lag behind a reception.
const HUAWEI_CPMS_LAG: Duration = Duration::from_millis(500);
/// How long Wavecom answers `+CME ERROR: 515` after `AT+CFUN=1`.
const WAVECOM_CFUN_BUSY: Duration = Duration::from_secs(2);

/// What happens after a message that asked for a status report is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportBehaviour {
    /// One report: delivered (TP-ST 00).
    Delivered,
    /// A report "no response from SME, still trying" (22), then "delivered" (00).
    TemporaryThenDelivered,
    /// One report: validity period expired (46).
    PermanentFailure,
    /// No report at all: the network never answers.
    None,
}

impl std::str::FromStr for ReportBehaviour {
    type Err = String;

    /// `delivered`, `temporary_then_delivered`, `permanent_failure`, `none`.
    fn from_str(text: &str) -> Result<ReportBehaviour, String> {
        match text {
            "delivered" => Ok(ReportBehaviour::Delivered),
            "temporary_then_delivered" => Ok(ReportBehaviour::TemporaryThenDelivered),
            "permanent_failure" => Ok(ReportBehaviour::PermanentFailure),
            "none" => Ok(ReportBehaviour::None),
            other => Err(format!(
                "unknown report behaviour {other:?}; one of delivered, \
                 temporary_then_delivered, permanent_failure, none"
            )),
        }
    }
}

/// Where an armed URC comes out in the next exchange (reference §7.7).
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
    /// Firmware that ignores `ATE0` and keeps echoing (reference §7.2).
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

/// A message the host submitted, as the network saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The TP-MR the modem assigned and returned in `+CMGS:`.
    pub reference: u8,
    /// The PDU as written after the prompt (SMSC field first), or the text in text mode.
    pub pdu_hex: String,
    /// The decoded SUBMIT (PDU mode).
    pub submit: Option<Submit>,
    /// The recipient.
    pub recipient: String,
    /// The text of this part.
    pub text: String,
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    /// 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT.
    stat: u8,
    /// SMSC field first.
    pdu: Vec<u8>,
    /// When it arrived, for the Huawei counters that lag behind.
    arrived: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Memory {
    capacity: usize,
    slots: BTreeMap<usize, Stored>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sim {
    Ready,
    Pin { tries: u8 },
    Puk { tries: u8 },
    Blocked,
}

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
}

/// Failures a command can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Error,
    Cme(u16),
    Cms(u16),
    /// The Huawei answer to commands it lacks.
    NotSupported,
}

type Answer = Result<Vec<String>, Fail>;

/// The simulated modem. Feed it host bytes with [`Engine::receive`], collect what it writes
/// with [`Engine::poll`], and sleep until [`Engine::next_wakeup`].
#[derive(Debug)]
pub struct Engine {
    config: MockConfig,
    echo: bool,
    cmee: u8,
    cmgf: u8,
    cscs: String,
    csms: u8,
    cnmi: [u8; 5],
    cpms: [String; 3],
    csca: Option<String>,
    sim: Sim,
    creg_n: u8,
    cgreg_n: u8,
    cereg_n: u8,
    registration: u8,
    lac: u16,
    cell: u32,
    rssi: u8,
    cfun: u8,
    next_reference: u8,
    memories: BTreeMap<&'static str, Memory>,
    held_inbound: VecDeque<Vec<u8>>,
    awaiting_ack: Option<(u64, Vec<u8>)>,
    routed_ids: u64,
    sim_busy_until: Option<Instant>,
    fail_sends: VecDeque<u16>,
    armed: Vec<(UrcPoint, String)>,
    deaf: bool,
    drop_commands: usize,
    submitted: Vec<Submitted>,
    commands: Vec<String>,
    input: Vec<u8>,
    mode: Input,
    busy: bool,
    out: Vec<u8>,
    schedule: Vec<(Instant, u64, Scheduled)>,
    sequence: u64,
    reboot_requested: bool,
    in_command: bool,
    quiet: bool,
    device_busy_until: Option<Instant>,
}

impl Engine {
    /// A modem that has just booted (its banners are due at once, as a real one prints them
    /// whether or not anybody listens).
    pub fn new(config: MockConfig, now: Instant) -> Engine {
        let mut engine = Engine {
            echo: true,
            cmee: 0,
            cmgf: 0,
            cscs: "IRA".into(),
            csms: u8::from(config.phase2plus_only),
            cnmi: [0; 5],
            cpms: ["SM".into(), "SM".into(), "SM".into()],
            csca: config.smsc.clone(),
            sim: Sim::Ready,
            creg_n: 0,
            cgreg_n: 0,
            cereg_n: 0,
            registration: 1,
            lac: 0x5E25,
            cell: 0x605F,
            rssi: 21,
            cfun: 1,
            next_reference: 0,
            memories: BTreeMap::new(),
            held_inbound: VecDeque::new(),
            awaiting_ack: None,
            routed_ids: 0,
            sim_busy_until: None,
            fail_sends: VecDeque::new(),
            armed: Vec::new(),
            deaf: false,
            drop_commands: 0,
            submitted: Vec::new(),
            commands: Vec::new(),
            input: Vec::new(),
            mode: Input::Command,
            busy: false,
            out: Vec::new(),
            schedule: Vec::new(),
            sequence: 0,
            reboot_requested: false,
            in_command: false,
            quiet: false,
            device_busy_until: None,
            config,
        };
        for name in engine.config.profile.memories() {
            engine.memories.insert(
                name,
                Memory {
                    capacity: engine.config.capacity,
                    slots: BTreeMap::new(),
                },
            );
        }
        engine.sim = match engine.config.pin {
            Some(_) => Sim::Pin { tries: 3 },
            None => Sim::Ready,
        };
        engine.boot(now);
        engine
    }

    /// Settings back to power-on values, banners due, the SIM locked again if it has a PIN.
    fn boot(&mut self, now: Instant) {
        self.echo = true;
        self.cmee = 0;
        self.cmgf = self.config.profile.default_cmgf();
        self.cscs = "IRA".into();
        self.csms = u8::from(self.config.phase2plus_only);
        self.cnmi = [0; 5];
        self.cpms = ["SM".into(), "SM".into(), "SM".into()];
        self.creg_n = 0;
        self.cgreg_n = 0;
        self.cereg_n = 0;
        self.cfun = 1;
        self.quiet = false;
        self.mode = Input::Command;
        self.input.clear();
        self.busy = false;
        self.awaiting_ack = None;
        if let (Some(_), Sim::Ready) = (&self.config.pin, self.sim) {
            self.sim = Sim::Pin { tries: 3 };
        }
        self.sim_busy_until = Some(now + self.config.sim_busy);
        self.schedule
            .retain(|(_, _, event)| matches!(event, Scheduled::Report(_)));
        self.at(now, Scheduled::Banners);
        if let Some(interval) = self.config.noise_interval {
            self.at(now + interval, Scheduled::Noise);
        }
    }

    /// Bytes from the host.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.deaf {
            debug!("mock: deaf, ignoring {} bytes", bytes.len());
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process(now);
    }

    /// What the modem writes now: immediate answers plus whatever fell due.
    pub fn poll(&mut self, now: Instant) -> Vec<u8> {
        loop {
            let due = self
                .schedule
                .iter()
                .enumerate()
                .filter(|(_, (when, _, _))| *when <= now)
                .min_by_key(|(_, (when, sequence, _))| (*when, *sequence))
                .map(|(index, _)| index);
            let Some(index) = due else { break };
            let (_, _, event) = self.schedule.swap_remove(index);
            self.fire(event, now);
        }
        self.process(now);
        std::mem::take(&mut self.out)
    }

    /// When [`Engine::poll`] next has something to do, if ever.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.schedule.iter().map(|(when, _, _)| *when).min()
    }

    /// Whether `AT+CFUN=1,1` asked for a reboot that the port should mirror (the runner may
    /// close and reopen the PTY as USB re-enumeration does). Reading it clears it.
    pub fn take_reboot_request(&mut self) -> bool {
        std::mem::take(&mut self.reboot_requested)
    }

    /// The host closed the port: a deaf modem recovers, a half-typed command is dropped.
    pub fn port_closed(&mut self) {
        self.deaf = false;
        self.input.clear();
        if !matches!(self.mode, Input::Command) {
            self.mode = Input::Command;
        }
    }

    // ---- control ------------------------------------------------------------------------

    /// The SMSC number the modem holds (`AT+CSCA`).
    pub fn smsc(&self) -> Option<String> {
        self.csca.clone()
    }

    /// Messages the host submitted, in order.
    pub fn submitted(&self) -> &[Submitted] {
        &self.submitted
    }

    /// Every command line the host sent, in order.
    pub fn commands(&self) -> &[String] {
        &self.commands
    }

    /// A message arrives from the network: a DELIVER PDU, SMSC field first.
    pub fn deliver_pdu(&mut self, pdu: Vec<u8>, now: Instant) {
        self.route_inbound(pdu, now);
    }

    /// The next `count` sends fail with `+CMS ERROR: <code>`.
    pub fn fail_next_sends(&mut self, count: usize, code: u16) {
        self.fail_sends.extend(std::iter::repeat_n(code, count));
    }

    /// Sets the status-report behaviour for messages sent from now on.
    pub fn set_report(&mut self, report: ReportBehaviour) {
        self.config.report = report;
    }

    /// Sets the time between Ctrl-Z and `+CMGS:`.
    pub fn set_submit_delay(&mut self, delay: Duration) {
        self.config.submit_delay = delay;
    }

    /// Arms a URC to come out at `point` of the next exchange.
    pub fn inject_urc(&mut self, point: UrcPoint, text: &str) {
        if point == UrcPoint::Now {
            self.urc_or_arm(text.to_string());
        } else {
            self.armed.push((point, text.to_string()));
        }
    }

    /// Writes raw bytes at once (noise, garbage, half lines).
    pub fn inject_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Registration changes; a URC follows when `+CREG`/`+CEREG` reporting is on.
    pub fn set_registration(&mut self, stat: u8) {
        self.registration = stat;
        for name in ["+CREG", "+CGREG", "+CEREG"] {
            if self.registration_mode(name) > 0 {
                let urc = self.registration_line(name, false);
                self.urc_or_arm(urc);
            }
        }
    }

    /// Signal changes (`+CSQ` rssi, 0–31 or 99).
    pub fn set_signal(&mut self, rssi: u8) {
        self.rssi = rssi;
    }

    /// The modem stops answering until the port is closed and reopened.
    pub fn hang(&mut self) {
        self.deaf = true;
    }

    /// The next `count` command lines get no answer at all (the first AT after idle).
    pub fn drop_next_commands(&mut self, count: usize) {
        self.drop_commands += count;
    }

    /// Stores a received message without any indication (as when the `+CMTI` was lost);
    /// returns its index, or `None` when the memory is full.
    pub fn store_quietly(&mut self, memory: &str, pdu: Vec<u8>, now: Instant) -> Option<usize> {
        self.store(memory, pdu, 0, now)
    }

    /// Fills storage `memory` with read messages up to its capacity.
    pub fn fill_storage(&mut self, memory: &str, pdu: &[u8]) {
        let base = self.config.profile.index_base();
        if let Some(store) = self.memory_mut(memory) {
            let mut index = base;
            while store.slots.len() < store.capacity {
                store.slots.entry(index).or_insert_with(|| Stored {
                    arrived: None,
                    stat: 1,
                    pdu: pdu.to_vec(),
                });
                index += 1;
            }
        }
    }

    /// Messages stored in `memory`: (index, stat, PDU hex).
    pub fn stored(&self, memory: &str) -> Vec<(usize, u8, String)> {
        self.memories
            .get(memory)
            .map(|store| {
                store
                    .slots
                    .iter()
                    .map(|(&index, stored)| (index, stored.stat, hex::encode_upper(&stored.pdu)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A reboot now: banners, settings forgotten (as after a power dip).
    pub fn reboot(&mut self, now: Instant) {
        self.boot(now);
    }

    /// The SIM's state (`ready`, `pin`, `puk`, `blocked`) and its PIN and PUK attempts left.
    pub fn sim_state(&self) -> (&'static str, u8, u8) {
        let (pin, puk) = self.sim_attempts();
        let state = match self.sim {
            Sim::Ready => "ready",
            Sim::Pin { .. } => "pin",
            Sim::Puk { .. } => "puk",
            Sim::Blocked => "blocked",
        };
        (state, pin, puk)
    }

    /// Sets the PIN attempts left of a SIM that asks for its PIN (as if wrong PINs had been
    /// tried elsewhere); 0 makes it ask for the PUK. A SIM without a PIN, or already past it,
    /// is left alone: a right PIN resets the count.
    pub fn set_pin_attempts(&mut self, left: u8) {
        if let Sim::Pin { .. } = self.sim {
            self.sim = match left.min(3) {
                0 => Sim::Puk { tries: 10 },
                left => Sim::Pin { tries: left },
            };
        }
    }

    // ---- internals ------------------------------------------------------------------------

    fn at(&mut self, when: Instant, event: Scheduled) {
        self.sequence += 1;
        self.schedule.push((when, self.sequence, event));
    }

    fn write_line(&mut self, line: &str) {
        debug!("mock → {line}");
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Information lines as V1 framing has them: a CR LF before the first, one after each.
    fn write_info(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        self.out.extend_from_slice(b"\r\n");
        for line in lines {
            debug!("mock → {line}");
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn fire_armed(&mut self, point: UrcPoint) {
        let (fire, keep): (Vec<_>, Vec<_>) = self.armed.drain(..).partition(|(at, _)| *at == point);
        self.armed = keep;
        for (_, text) in fire {
            self.write_line(&text);
        }
    }

    fn fire(&mut self, event: Scheduled, now: Instant) {
        match event {
            Scheduled::Write { bytes, ends_busy } => {
                self.out.extend_from_slice(&bytes);
                if ends_busy {
                    self.busy = false;
                    self.fire_armed(UrcPoint::AfterFinal);
                }
            }
            Scheduled::Report(report) => self.route_report(*report, now),
            Scheduled::CnmaDeadline(id) => {
                if let Some((awaited, pdu)) =
                    self.awaiting_ack.take_if(|(awaited, _)| *awaited == id)
                {
                    // 27.005 §3.4.4: no ack in time makes the ME send RP-ERROR and set mt and
                    // ds to 0; the SC tries again later, when routing is back.
                    debug!("mock: no AT+CNMA for routed message {awaited}; CNMI mt/ds reset to 0");
                    self.cnmi[1] = 0;
                    self.cnmi[3] = 0;
                    self.held_inbound.push_back(pdu);
                }
            }
            Scheduled::Noise => {
                let noise = self.config.profile.noise(self.rssi);
                if !self.quiet && !self.busy && matches!(self.mode, Input::Command) {
                    for line in noise {
                        self.write_line(&line);
                    }
                }
                if let Some(interval) = self.config.noise_interval {
                    self.at(now + interval, Scheduled::Noise);
                }
            }
            Scheduled::Reboot => {
                self.reboot_requested = true;
                self.boot(now);
            }
            Scheduled::Banners => {
                for line in self.config.profile.banners() {
                    self.write_line(line);
                }
            }
        }
    }

    /// Runs whatever complete input there is, unless an answer is still being worked on.
    fn process(&mut self, now: Instant) {
        while !self.busy && !self.deaf {
            match self.mode {
                Input::Command => {
                    let Some(end) = self.input.iter().position(|&b| b == b'\r' || b == b'\n')
                    else {
                        if self.input.len() > MAX_COMMAND {
                            self.input.clear();
                        }
                        // A stray ESC or Ctrl-Z outside a prompt is ignored, as modems do.
                        self.input.retain(|&b| b != ESC && b != CTRL_Z);
                        return;
                    };
                    let line: Vec<u8> = self.input.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1])
                        .trim_matches(|c: char| {
                            c.is_whitespace() || c == ESC as char || c == CTRL_Z as char
                        })
                        .to_string();
                    if line.is_empty() {
                        continue;
                    }
                    self.command_line(&line, now);
                }
                Input::Pdu { .. } | Input::Text { .. } => {
                    let Some(end) = self.input.iter().position(|&b| b == CTRL_Z || b == ESC) else {
                        let pending: Vec<u8> = self.input.drain(..).collect();
                        if self.echo {
                            self.out.extend_from_slice(&pending);
                        }
                        match &mut self.mode {
                            Input::Pdu { hex, .. } => hex.extend(pending),
                            Input::Text { text, .. } => text.extend(pending),
                            Input::Command => {}
                        }
                        return;
                    };
                    let mut chunk: Vec<u8> = self.input.drain(..=end).collect();
                    let terminator = chunk.pop();
                    if self.echo {
                        self.out.extend_from_slice(&chunk);
                    }
                    let mode = std::mem::replace(&mut self.mode, Input::Command);
                    if terminator == Some(ESC) {
                        debug!("mock ← ESC: send aborted");
                        self.final_ok();
                        continue;
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
                }
            }
        }
    }

    fn final_ok(&mut self) {
        self.write_line("OK");
        self.fire_armed(UrcPoint::AfterFinal);
    }

    fn fail_text(&self, fail: Fail) -> String {
        match (fail, self.cmee) {
            (Fail::NotSupported, _) => "COMMAND NOT SUPPORT".into(),
            (Fail::Error, _) | (_, 0) => "ERROR".into(),
            (Fail::Cme(code), 1) => format!("+CME ERROR: {code}"),
            (Fail::Cms(code), 1) => format!("+CMS ERROR: {code}"),
            (Fail::Cme(code), _) => {
                format!("+CME ERROR: {}", CmeError::from_code(code).description())
            }
            (Fail::Cms(code), _) => {
                format!("+CMS ERROR: {}", CmsError::from_code(code).description())
            }
        }
    }

    fn command_line(&mut self, line: &str, now: Instant) {
        // URCs raised by the command itself (a delete that makes room, say) follow its answer.
        self.in_command = true;
        self.run_command_line(line, now);
        self.in_command = false;
        if !self.busy && matches!(self.mode, Input::Command) {
            self.fire_armed(UrcPoint::AfterFinal);
        }
    }

    fn run_command_line(&mut self, line: &str, now: Instant) {
        debug!("mock ← {line}");
        self.commands.push(line.to_string());
        if self.drop_commands > 0 {
            self.drop_commands -= 1;
            debug!("mock: dropping {line:?} unanswered");
            return;
        }
        if self.echo {
            self.out.extend_from_slice(line.as_bytes());
            self.out.push(b'\r');
        }
        self.fire_armed(UrcPoint::AfterEcho);
        if !line.is_ascii() {
            // Command lines are IA5 (ITU-T V.250 §5.1): a real modem answers anything else with
            // ERROR, and our parsing of names and arguments may then count on ASCII (issue #14).
            self.write_line("ERROR");
            return;
        }
        let Some(body) = line
            .get(..2)
            .filter(|at| at.eq_ignore_ascii_case("AT"))
            .map(|_| &line[2..])
        else {
            // Not a command at all: real modems stay silent or say ERROR; ERROR is clearer.
            self.write_line("ERROR");
            return;
        };
        let mut info: Vec<String> = Vec::new();
        for command in split_commands(body) {
            if let Some(rest) = strip_prefix_ignore_case(&command, "+CMGS") {
                // AT+CMGS ends the line: what follows the prompt is the message.
                match self.cmgs(rest.trim(), now) {
                    Ok(()) => self.write_info(info),
                    Err(fail) => {
                        let text = self.fail_text(fail);
                        self.write_line(&text);
                    }
                }
                return;
            }
            match self.command(&command, now) {
                Ok(lines) => info.extend(lines),
                Err(fail) => {
                    self.write_info(info);
                    self.fire_armed(UrcPoint::BeforeFinal);
                    let text = self.fail_text(fail);
                    self.write_line(&text);
                    self.fire_armed(UrcPoint::AfterFinal);
                    return;
                }
            }
            if self.busy {
                return;
            }
        }
        self.write_info(info);
        self.fire_armed(UrcPoint::BeforeFinal);
        if self.config.profile.cpin_without_ok() && body.eq_ignore_ascii_case("+CPIN?") {
            // Wavecom: `+CPIN: READY` comes with no final OK (gammu's CPINNoOK).
            return;
        }
        self.final_ok();
    }

    fn sim_ready(&self, now: Instant) -> Result<(), Fail> {
        if self.device_busy_until.is_some_and(|until| now < until) {
            return Err(Fail::Cme(515));
        }
        match self.sim {
            Sim::Ready => {}
            Sim::Pin { .. } => return Err(Fail::Cme(11)),
            Sim::Puk { .. } => return Err(Fail::Cme(12)),
            Sim::Blocked => return Err(Fail::Cme(13)),
        }
        if self.sim_busy_until.is_some_and(|until| now < until) {
            return Err(Fail::Cme(14));
        }
        Ok(())
    }

    fn sms_ready(&self, now: Instant) -> Result<(), Fail> {
        match self.sim_ready(now) {
            Ok(()) => Ok(()),
            Err(Fail::Cme(code @ (14 | 515))) => Err(Fail::Cme(code)),
            Err(Fail::Cme(11)) => Err(Fail::Cms(311)),
            Err(Fail::Cme(12)) => Err(Fail::Cms(316)),
            Err(_) => Err(Fail::Cms(310)),
        }
    }

    /// One command of a line, without `AT`: `+CMGF=0`, `E0`, `+CPMS?`.
    fn command(&mut self, command: &str, now: Instant) -> Answer {
        let upper = command.to_ascii_uppercase();
        let (name, argument) = split_name(&upper, command);
        let profile = self.config.profile;
        match (name.as_str(), argument) {
            ("", Arg::None) => Ok(vec![]),
            ("E", Arg::Basic(value)) => {
                if !self.config.ignore_ate0 {
                    self.echo = value != 0;
                }
                Ok(vec![])
            }
            ("V" | "Q" | "&C" | "&D" | "&K" | "S0" | "X", _) => Ok(vec![]),
            ("Z" | "&F", _) => {
                let (sim, busy) = (self.sim, self.sim_busy_until);
                self.echo = true;
                self.cmee = 0;
                self.cnmi = [0; 5];
                self.cmgf = profile.default_cmgf();
                self.sim = sim;
                self.sim_busy_until = busy;
                Ok(vec![])
            }
            ("I", _) => Ok(vec![
                profile.manufacturer().into(),
                profile.model().into(),
                format!("Revision: {}", profile.revision()),
            ]),
            ("+CGMI" | "+GMI", Arg::Action) => Ok(vec![profile.manufacturer().into()]),
            ("+CGMM" | "+GMM", Arg::Action) => Ok(vec![profile.model().into()]),
            ("+CGMR" | "+GMR", Arg::Action) => Ok(vec![profile.revision().into()]),
            ("+CGSN" | "+GSN", Arg::Action) => Ok(vec![profile.imei().into()]),
            ("+CGMI" | "+CGMM" | "+CGMR" | "+CGSN" | "+CIMI", Arg::Test) => Ok(vec![]),
            ("+CIMI", Arg::Action) => {
                self.sim_ready(now)?;
                Ok(vec![profile.imsi().into()])
            }
            ("+CCID" | "^ICCID" | "+QCCID" | "+ICCID", Arg::Action | Arg::Query) => {
                // EF_ICCID is readable without the PIN (3GPP TS 31.102 §4.1.1); a locked-up
                // SIM still gives it, a busy modem does not.
                if self.device_busy_until.is_some_and(|until| now < until) {
                    return Err(Fail::Cme(515));
                }
                Ok(vec![format!("{}: {}", &name, profile.iccid())])
            }
            ("+CMEE", Arg::Set(value)) => {
                self.cmee = number(&value).filter(|n| *n <= 2).ok_or(Fail::Error)? as u8;
                Ok(vec![])
            }
            ("+CMEE", Arg::Query) => Ok(vec![format!("+CMEE: {}", self.cmee)]),
            ("+CMEE", Arg::Test) => Ok(vec!["+CMEE: (0-2)".into()]),
            ("+CPIN", Arg::Query) => Ok(vec![match self.sim {
                Sim::Ready => "+CPIN: READY".into(),
                Sim::Pin { .. } => "+CPIN: SIM PIN".into(),
                Sim::Puk { .. } => "+CPIN: SIM PUK".into(),
                Sim::Blocked => return Err(Fail::Cme(13)),
            }]),
            ("+CPIN", Arg::Set(value)) => self.enter_pin(&value, now),
            ("+CPIN", Arg::Test) => Ok(vec![]),
            ("+CPINR", _) if profile.huawei_pin_counter() => Err(Fail::NotSupported),
            ("+CPINR", Arg::Action) => Ok(self.cpinr("*")),
            ("+CPINR", Arg::Set(value)) => Ok(self.cpinr(unquote(&value))),
            ("+CPINR", Arg::Test) => Ok(vec![]),
            ("^CPIN", Arg::Query) if profile.huawei_pin_counter() => {
                let (pin, puk) = self.sim_attempts();
                let (code, times) = match self.sim {
                    Sim::Ready => ("READY", String::new()),
                    Sim::Pin { .. } => ("SIM PIN", pin.to_string()),
                    Sim::Puk { .. } => ("SIM PUK", puk.to_string()),
                    Sim::Blocked => return Err(Fail::Cme(13)),
                };
                Ok(vec![format!("^CPIN: {code},{times},{puk},{pin},10,3")])
            }
            ("+CFUN", Arg::Query) => Ok(vec![format!("+CFUN: {}", self.cfun)]),
            ("+CFUN", Arg::Test) => Ok(vec!["+CFUN: (0,1,4),(0,1)".into()]),
            ("+CFUN", Arg::Set(value)) => self.cfun(&value, now),
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Set(value)) => {
                let n = number(&value).filter(|n| *n <= 2).ok_or(Fail::Error)? as u8;
                match name.as_str() {
                    "+CREG" => self.creg_n = n,
                    "+CGREG" => self.cgreg_n = n,
                    _ => self.cereg_n = n,
                }
                Ok(vec![])
            }
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Query) => {
                Ok(vec![self.registration_line(&name, true)])
            }
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Test) => Ok(vec![format!("{name}: (0-2)")]),
            ("+CSQ", Arg::Action) => Ok(vec![format!("+CSQ: {},99", self.rssi)]),
            ("+CSQ", Arg::Test) => Ok(vec!["+CSQ: (0-31,99),(0-7,99)".into()]),
            ("+COPS", Arg::Query) => Ok(vec![match self.registration {
                1 | 5 => "+COPS: 0,0,\"Mock Mobile\",7".into(),
                _ => "+COPS: 0".into(),
            }]),
            ("+COPS", Arg::Set(_)) => Ok(vec![]),
            ("+CMGF", Arg::Set(value)) => {
                self.cmgf = number(&value).filter(|n| *n <= 1).ok_or(Fail::Error)? as u8;
                Ok(vec![])
            }
            ("+CMGF", Arg::Query) => Ok(vec![format!("+CMGF: {}", self.cmgf)]),
            ("+CMGF", Arg::Test) => Ok(vec!["+CMGF: (0,1)".into()]),
            ("+CSCS", Arg::Set(value)) => {
                let charset = unquote(&value).to_ascii_uppercase();
                if !["GSM", "IRA", "UCS2", "HEX", "8859-1", "PCCP437"].contains(&charset.as_str()) {
                    return Err(Fail::Cme(4));
                }
                self.cscs = charset;
                Ok(vec![])
            }
            ("+CSCS", Arg::Query) => Ok(vec![format!("+CSCS: \"{}\"", self.cscs)]),
            ("+CSCS", Arg::Test) => Ok(vec!["+CSCS: (\"IRA\",\"GSM\",\"UCS2\")".into()]),
            ("+CSMS", Arg::Set(value)) => {
                let lowest = u32::from(self.config.phase2plus_only);
                self.csms = number(&value)
                    .filter(|n| (lowest..=1).contains(n))
                    .ok_or(Fail::Cms(303))? as u8;
                Ok(vec![format!("+CSMS: 1,1,1")])
            }
            ("+CSMS", Arg::Query) => Ok(vec![format!("+CSMS: {},1,1,1", self.csms)]),
            ("+CSMS", Arg::Test) => Ok(vec!["+CSMS: (0,1)".into()]),
            ("+CNMI", Arg::Set(value)) => self.set_cnmi(&value, now),
            ("+CNMI", Arg::Query) => {
                let [mode, mt, bm, ds, bfr] = self.cnmi;
                Ok(vec![format!("+CNMI: {mode},{mt},{bm},{ds},{bfr}")])
            }
            ("+CNMI", Arg::Test) => Ok(vec!["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)".into()]),
            ("+CPMS", Arg::Test) => {
                let list = self
                    .memories
                    .keys()
                    .map(|name| format!("\"{name}\""))
                    .collect::<Vec<_>>()
                    .join(",");
                Ok(vec![format!("+CPMS: ({list}),({list}),({list})")])
            }
            ("+CPMS", Arg::Query) => {
                self.sms_ready(now)?;
                let fields: Vec<String> = self
                    .cpms
                    .iter()
                    .map(|name| {
                        let (used, total) = self.usage(name, now);
                        format!("\"{name}\",{used},{total}")
                    })
                    .collect();
                Ok(vec![format!("+CPMS: {}", fields.join(","))])
            }
            ("+CPMS", Arg::Set(value)) => {
                self.sms_ready(now)?;
                let names: Vec<String> = value
                    .split(',')
                    .map(|v| unquote(v).to_ascii_uppercase())
                    .collect();
                if names.is_empty()
                    || names.len() > 3
                    || names
                        .iter()
                        .any(|n| !self.memories.contains_key(n.as_str()))
                {
                    return Err(Fail::Cms(302));
                }
                for (slot, name) in names.into_iter().enumerate() {
                    self.cpms[slot] = name;
                }
                let counts: Vec<String> = self
                    .cpms
                    .iter()
                    .map(|name| {
                        let (used, total) = self.usage(name, now);
                        format!("{used},{total}")
                    })
                    .collect();
                Ok(vec![format!("+CPMS: {}", counts.join(","))])
            }
            ("+CSCA", Arg::Query) => {
                self.sms_ready(now)?;
                Ok(vec![match &self.csca {
                    Some(number) => format!(
                        "+CSCA: \"{number}\",{}",
                        if number.starts_with('+') { 145 } else { 129 }
                    ),
                    None => "+CSCA: \"\",129".into(),
                }])
            }
            ("+CSCA", Arg::Set(value)) => {
                let number = unquote(value.split(',').next().unwrap_or_default());
                self.csca = (!number.is_empty()).then(|| number.to_string());
                Ok(vec![])
            }
            ("+CSMP", Arg::Set(_)) => Ok(vec![]),
            ("+CSMP", Arg::Query) => Ok(vec!["+CSMP: 17,167,0,0".into()]),
            ("+CSDH", Arg::Set(_)) => Ok(vec![]),
            ("+CSDH", Arg::Query) => Ok(vec!["+CSDH: 0".into()]),
            ("+CMGR", Arg::Set(value)) => {
                self.sms_ready(now)?;
                self.cmgr(&value)
            }
            ("+CMGL", Arg::Set(value)) => {
                self.sms_ready(now)?;
                self.cmgl(&value, now)
            }
            ("+CMGL", Arg::Action) => {
                self.sms_ready(now)?;
                self.cmgl(if self.cmgf == 0 { "4" } else { "\"ALL\"" }, now)
            }
            ("+CMGL", Arg::Test) => Ok(vec![if self.cmgf == 0 {
                "+CMGL: (0-4)".into()
            } else {
                "+CMGL: (\"REC UNREAD\",\"REC READ\",\"STO UNSENT\",\"STO SENT\",\"ALL\")".into()
            }]),
            ("+CMGD", Arg::Set(value)) => {
                self.sms_ready(now)?;
                self.cmgd(&value, now)
            }
            ("+CMGD", Arg::Test) => {
                let used: Vec<String> = self
                    .memory(&self.cpms[0])
                    .map(|m| m.slots.keys().map(usize::to_string).collect())
                    .unwrap_or_default();
                Ok(vec![format!("+CMGD: ({}),(0-4)", used.join(","))])
            }
            ("+CNMA", Arg::Action | Arg::Set(_)) => match self.awaiting_ack.take() {
                Some(_) => {
                    self.deliver_held(now);
                    Ok(vec![])
                }
                None => Err(Fail::Cms(340)),
            },
            ("+CMMS", _) => Err(if profile == Profile::Huawei {
                Fail::Cms(500)
            } else {
                Fail::Error
            }),
            ("^CURC", Arg::Set(value)) => {
                // Huawei's switch for its periodic ^RSSI/^HCSQ noise (gammu and ModemManager
                // send AT^CURC=0).
                self.quiet = number(&value) == Some(0);
                Ok(vec![])
            }
            ("^CURC" | "+CIURC" | "+QURCCFG" | "+CSCB", _) => Ok(vec![]),
            // No calls here, but hanging up is a standard command every modem accepts.
            ("+CHUP" | "H", _) => Ok(vec![]),
            _ if profile.says_not_supported() => Err(Fail::NotSupported),
            _ => Err(Fail::Error),
        }
    }

    fn enter_pin(&mut self, value: &str, now: Instant) -> Answer {
        let fields: Vec<&str> = value.split(',').map(unquote).collect();
        match (self.sim, fields.as_slice()) {
            (Sim::Ready, _) => Err(Fail::Cme(3)),
            (Sim::Pin { tries }, [pin]) => {
                if Some(*pin) == self.config.pin.as_deref() {
                    self.sim = Sim::Ready;
                    self.sim_busy_until = Some(now + self.config.sim_busy);
                    Ok(vec![])
                } else {
                    self.sim = match tries.saturating_sub(1) {
                        0 => Sim::Puk { tries: 10 },
                        left => Sim::Pin { tries: left },
                    };
                    Err(Fail::Cme(16))
                }
            }
            (Sim::Puk { tries }, [puk, new_pin]) => {
                if *puk == self.config.puk {
                    self.config.pin = Some(new_pin.to_string());
                    self.sim = Sim::Ready;
                    self.sim_busy_until = Some(now + self.config.sim_busy);
                    Ok(vec![])
                } else {
                    self.sim = match tries.saturating_sub(1) {
                        0 => Sim::Blocked,
                        left => Sim::Puk { tries: left },
                    };
                    Err(Fail::Cme(16))
                }
            }
            (Sim::Puk { .. }, _) => Err(Fail::Cme(12)),
            _ => Err(Fail::Cme(13)),
        }
    }

    /// PIN and PUK attempts left: a right PIN resets the PIN count to 3, the PUK's is 10.
    fn sim_attempts(&self) -> (u8, u8) {
        match self.sim {
            Sim::Ready => (3, 10),
            Sim::Pin { tries } => (tries, 10),
            Sim::Puk { tries } => (0, tries),
            Sim::Blocked => (0, 0),
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

    fn cfun(&mut self, value: &str, now: Instant) -> Answer {
        let mut fields = value.split(',').map(number);
        let fun = fields.next().flatten().ok_or(Fail::Error)?;
        let reset = fields.next().flatten() == Some(1);
        match (fun, reset) {
            (1, true) => {
                // OK first, then the reboot: banners and forgotten settings.
                self.at(now, Scheduled::Reboot);
                Ok(vec![])
            }
            (0 | 4, _) => {
                self.cfun = fun as u8;
                self.registration = 0;
                Ok(vec![])
            }
            (1, false) => {
                self.cfun = 1;
                self.registration = 1;
                if self.config.profile == Profile::Wavecom {
                    // Wavecom answers +CME ERROR: 515 for a while after AT+CFUN=1.
                    self.device_busy_until = Some(now + WAVECOM_CFUN_BUSY);
                }
                Ok(vec![])
            }
            _ => Err(Fail::Cme(4)),
        }
    }

    fn set_cnmi(&mut self, value: &str, now: Instant) -> Answer {
        let mut cnmi = self.cnmi;
        for (slot, field) in value.split(',').enumerate() {
            if slot >= 5 {
                return Err(Fail::Cms(303));
            }
            if field.trim().is_empty() {
                continue;
            }
            cnmi[slot] = number(field).filter(|n| *n <= 3).ok_or(Fail::Cms(303))? as u8;
        }
        if cnmi[3] == 1 && self.config.profile.rejects_cnmi_ds1() {
            // Qualcomm-based devices advertise ds=1 and then reject it (ModemManager).
            return Err(Fail::Cms(303));
        }
        self.cnmi = cnmi;
        self.deliver_held(now);
        Ok(vec![])
    }

    fn usage(&self, name: &str, now: Instant) -> (usize, usize) {
        let lagging = self.config.profile == Profile::Huawei;
        self.memory(name)
            .map(|m| {
                // Huawei's +CPMS counters lag a reception by a moment (gammu retries after
                // 500 ms on an E3531).
                let used = m
                    .slots
                    .values()
                    .filter(|stored| {
                        !lagging || stored.arrived.is_none_or(|at| now >= at + HUAWEI_CPMS_LAG)
                    })
                    .count();
                (used, m.capacity)
            })
            .unwrap_or((0, 0))
    }

    fn memory(&self, name: &str) -> Option<&Memory> {
        self.memories.get(name)
    }

    fn memory_mut(&mut self, name: &str) -> Option<&mut Memory> {
        self.memories.get_mut(name)
    }

    /// The `<n>` reporting mode of `+CREG`, `+CGREG` or `+CEREG`.
    fn registration_mode(&self, name: &str) -> u8 {
        match name {
            "+CREG" => self.creg_n,
            "+CGREG" => self.cgreg_n,
            _ => self.cereg_n,
        }
    }

    /// `+CREG: <n>,<stat>[,<lac>,<ci>]` as an answer, `+CREG: <stat>[,…]` as a URC.
    fn registration_line(&self, name: &str, answer: bool) -> String {
        let n = self.registration_mode(name);
        let mut line = if answer {
            format!("{name}: {n},{}", self.registration)
        } else {
            format!("{name}: {}", self.registration)
        };
        if n == 2 {
            line.push(',');
            line.push_str(&self.location());
        }
        line
    }

    fn location(&self) -> String {
        if self.config.profile == Profile::Huawei {
            // Huawei leaves LAC and CI unquoted.
            format!("{:X},{:X}", self.lac, self.cell)
        } else {
            format!("\"{:04X}\",\"{:04X}\"", self.lac, self.cell)
        }
    }

    /// The empty alpha field of `+CMGR`/`+CMGL` (`0,,43`), or nothing for modems that leave it
    /// out (`0,43`, gammu dump 07 and Pantech).
    fn alpha_field(&self) -> &'static str {
        if self.config.omit_alpha { "" } else { "," }
    }

    fn parse_index(&self, value: &str) -> Result<usize, Fail> {
        number(value.split(',').next().unwrap_or_default())
            .map(|n| n as usize)
            .ok_or(Fail::Cms(321))
    }

    fn cmgr(&mut self, value: &str) -> Answer {
        let index = self.parse_index(value)?;
        let cmgf = self.cmgf;
        let alpha = self.alpha_field();
        let memory = self.cpms[0].clone();
        let store = self.memory_mut(&memory).ok_or(Fail::Cms(302))?;
        let stored = store.slots.get_mut(&index).ok_or(Fail::Cms(321))?;
        let answer = if cmgf == 0 {
            vec![
                format!("+CMGR: {},{alpha}{}", stored.stat, tpdu_length(&stored.pdu)),
                hex::encode_upper(&stored.pdu),
            ]
        } else {
            text_mode_entry(None, stored)
        };
        if stored.stat == 0 {
            stored.stat = 1;
        }
        Ok(answer)
    }

    fn cmgl(&mut self, value: &str, now: Instant) -> Answer {
        let wanted = if self.cmgf == 0 {
            number(value).filter(|n| *n <= 4).ok_or(Fail::Cms(302))? as u8
        } else {
            match unquote(value).to_ascii_uppercase().as_str() {
                "REC UNREAD" => 0,
                "REC READ" => 1,
                "STO UNSENT" => 2,
                "STO SENT" => 3,
                "ALL" => 4,
                _ => return Err(Fail::Cms(302)),
            }
        };
        let cmgf = self.cmgf;
        let alpha = self.alpha_field();
        let memory = self.cpms[0].clone();
        let delay = self.config.list_delay_per_message;
        let store = self.memory_mut(&memory).ok_or(Fail::Cms(302))?;
        let mut lines = Vec::new();
        let mut listed = 0u32;
        for (&index, stored) in store.slots.iter_mut() {
            if wanted != 4 && stored.stat != wanted {
                continue;
            }
            listed += 1;
            if cmgf == 0 {
                lines.push(format!(
                    "+CMGL: {index},{},{alpha}{}",
                    stored.stat,
                    tpdu_length(&stored.pdu)
                ));
                lines.push(hex::encode_upper(&stored.pdu));
            } else {
                lines.extend(text_mode_entry(Some(index), stored));
            }
            if stored.stat == 0 {
                stored.stat = 1;
            }
        }
        if !delay.is_zero() && listed > 0 {
            // A slow SIM: the whole answer comes after the delay.
            let mut bytes = b"\r\n".to_vec();
            for line in &lines {
                bytes.extend_from_slice(format!("{line}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\nOK\r\n");
            self.busy = true;
            self.at(
                now + delay * listed,
                Scheduled::Write {
                    bytes,
                    ends_busy: true,
                },
            );
            return Ok(vec![]);
        }
        Ok(lines)
    }

    fn cmgd(&mut self, value: &str, now: Instant) -> Answer {
        let mut fields = value.split(',');
        let index = number(fields.next().unwrap_or_default()).map(|n| n as usize);
        let flag = fields.next().and_then(number).unwrap_or(0);
        let memory = self.cpms[0].clone();
        let store = self.memory_mut(&memory).ok_or(Fail::Cms(302))?;
        match flag {
            0 => {
                let index = index.ok_or(Fail::Cms(321))?;
                store.slots.remove(&index);
            }
            1..=4 => {
                let doomed: &[u8] = match flag {
                    1 => &[1],
                    2 => &[1, 3],
                    3 => &[1, 2, 3],
                    _ => &[0, 1, 2, 3],
                };
                store
                    .slots
                    .retain(|_, stored| !doomed.contains(&stored.stat));
            }
            _ => return Err(Fail::Cms(302)),
        }
        // Room again: the network delivers what it held while the store was full.
        self.deliver_held(now);
        Ok(vec![])
    }

    fn cmgs(&mut self, value: &str, now: Instant) -> Result<(), Fail> {
        self.sms_ready(now)?;
        let mode = if self.cmgf == 0 {
            let length = number(value)
                .filter(|n| (1..=176).contains(n))
                .ok_or(Fail::Cms(304))?;
            Input::Pdu {
                length: length as usize,
                hex: Vec::new(),
            }
        } else {
            let recipient = unquote(value.split(',').next().unwrap_or_default()).to_string();
            if recipient.is_empty() {
                return Err(Fail::Cms(304));
            }
            Input::Text {
                recipient,
                text: Vec::new(),
            }
        };
        self.fire_armed(UrcPoint::BeforePrompt);
        self.out.extend_from_slice(b"\r\n> ");
        self.mode = mode;
        Ok(())
    }

    /// The answer to a send, after the network round trip.
    fn answer_send(&mut self, result: Result<u8, Fail>, now: Instant) {
        self.fire_armed(UrcPoint::AfterSubmit);
        let text = match result {
            Ok(reference) => format!("\r\n+CMGS: {reference}\r\n\r\nOK\r\n"),
            Err(fail) => format!("\r\n{}\r\n", self.fail_text(fail)),
        };
        self.busy = true;
        let delay = self.config.submit_delay;
        self.at(
            now + delay,
            Scheduled::Write {
                bytes: text.into_bytes(),
                ends_busy: true,
            },
        );
    }

    fn check_send(&mut self, has_smsc: bool) -> Result<(), Fail> {
        if let Some(code) = self.fail_sends.pop_front() {
            return Err(Fail::Cms(code));
        }
        if !has_smsc && self.csca.is_none() {
            return Err(Fail::Cms(330));
        }
        if !matches!(self.registration, 1 | 5) || self.cfun != 1 {
            return Err(Fail::Cms(331));
        }
        if self.config.send_needs_free_slot {
            let memory = self.cpms[1].clone();
            if self
                .memory(&memory)
                .is_some_and(|m| m.slots.len() >= m.capacity)
            {
                // Some modems cannot even send with a full store (smstools receive_before_send).
                return Err(Fail::Cms(322));
            }
        }
        Ok(())
    }

    fn submit_pdu(&mut self, length: usize, hex: &[u8], now: Instant) {
        let text = String::from_utf8_lossy(hex).trim().to_string();
        debug!("mock ← PDU {text}");
        let decoded = pdu::decode_hex(&text)
            .ok()
            .and_then(|bytes| Some((Pdu::decode(&bytes).ok()?, tpdu_length(&bytes))));
        let result = match decoded {
            // 27.005: a length that is not the TPDU's is "invalid PDU mode parameter".
            Some((_, tpdu_octets)) if tpdu_octets != length => Err(Fail::Cms(304)),
            Some((
                Pdu {
                    smsc,
                    tpdu: Tpdu::Submit(submit),
                },
                _,
            )) => self.check_send(smsc.is_some()).map(|()| {
                let reference = self.next_reference();
                let recipient = submit.recipient.to_string();
                let body = submit.user_data.text().unwrap_or_default().to_string();
                if submit.status_report_request {
                    self.schedule_reports(&submit.recipient, reference, now);
                }
                self.submitted.push(Submitted {
                    reference,
                    pdu_hex: text.clone(),
                    submit: Some(submit),
                    recipient,
                    text: body,
                });
                reference
            }),
            _ => Err(Fail::Cms(304)),
        };
        self.answer_send(result, now);
    }

    fn submit_text(&mut self, recipient: &str, text: &[u8], now: Instant) {
        let body = String::from_utf8_lossy(text).into_owned();
        debug!("mock ← text for {recipient}: {body:?}");
        let result = self.check_send(false).map(|()| {
            let reference = self.next_reference();
            self.submitted.push(Submitted {
                reference,
                pdu_hex: String::new(),
                submit: None,
                recipient: recipient.to_string(),
                text: body,
            });
            reference
        });
        self.answer_send(result, now);
    }

    fn next_reference(&mut self) -> u8 {
        let reference = self.next_reference;
        self.next_reference = self.next_reference.wrapping_add(1);
        reference
    }

    fn schedule_reports(&mut self, recipient: &Address, reference: u8, now: Instant) {
        let statuses: &[u8] = match self.config.report {
            ReportBehaviour::Delivered => &[0x00],
            ReportBehaviour::TemporaryThenDelivered => &[0x22, 0x00],
            ReportBehaviour::PermanentFailure => &[0x46],
            ReportBehaviour::None => &[],
        };
        // As an SC stamps them: the SUBMIT when it arrives (after the submit delay), each
        // report when it is discharged, so a delivery never predates its send.
        let wall = OffsetDateTime::now_utc();
        let stamp_at = |at: Instant| Timestamp::from_datetime(wall + (at - now));
        let mut when = now + self.config.submit_delay;
        let stamp = stamp_at(when);
        for &status in statuses {
            when += self.config.report_delay;
            let report = StatusReport {
                no_more_messages: true,
                loop_prevention: false,
                reports_command: false,
                message_reference: reference,
                recipient: recipient.clone(),
                timestamp: stamp,
                discharge_time: stamp_at(when),
                status: Status(status),
                pid: None,
                dcs: None,
                user_data: None,
            };
            self.at(when, Scheduled::Report(Box::new(report)));
        }
    }

    fn smsc_field(&self) -> Option<Address> {
        self.csca
            .as_deref()
            .and_then(|n| Address::from_number(n).ok())
    }

    fn route_report(&mut self, report: StatusReport, now: Instant) {
        let pdu = Pdu {
            smsc: self.smsc_field(),
            tpdu: Tpdu::StatusReport(report),
        };
        let Ok(bytes) = pdu.encode() else { return };
        match self.cnmi[3] {
            1 => self.route_direct("+CDS", bytes, now),
            2 => {
                let memory = self.config.profile.report_memory();
                if let Some(index) = self.store(memory, bytes, 0, now) {
                    let urc = format!("+CDSI: \"{memory}\",{index}");
                    self.urc_or_arm(urc);
                }
            }
            // ds=0: the report is not routed to the TE at all.
            _ => {}
        }
    }

    fn route_inbound(&mut self, bytes: Vec<u8>, now: Instant) {
        let class = Pdu::decode(&bytes)
            .ok()
            .and_then(|pdu| match pdu.tpdu {
                Tpdu::Deliver(deliver) => deliver.dcs.class(),
                _ => None,
            })
            .map(|class| class.number());
        let direct = match (self.cnmi[1], class) {
            (2, Some(2)) => false,
            (2, _) => true,
            (3, Some(3)) => true,
            _ => false,
        };
        if direct {
            if self.awaiting_ack.is_some() {
                // One routed message at a time until it is acknowledged.
                self.held_inbound.push_back(bytes);
            } else {
                self.route_direct("+CMT", bytes, now);
            }
            return;
        }
        let memory = self.cpms[2].clone();
        match self.store(&memory, bytes.clone(), 0, now) {
            Some(index) if self.cnmi[1] != 0 => {
                let urc = format!("+CMTI: \"{memory}\",{index}");
                self.urc_or_arm(urc);
            }
            Some(_) => {}
            // Full: the network keeps the message and tries again after a delete.
            None => self.held_inbound.push_back(bytes),
        }
    }

    fn route_direct(&mut self, kind: &str, bytes: Vec<u8>, now: Instant) {
        let urc = if kind == "+CMT" {
            format!("+CMT: ,{}", tpdu_length(&bytes))
        } else {
            format!("+CDS: {}", tpdu_length(&bytes))
        };
        let hex = hex::encode_upper(&bytes);
        if self.csms == 1 {
            self.routed_ids += 1;
            let id = self.routed_ids;
            self.awaiting_ack = Some((id, bytes));
            let deadline = now + self.config.cnma_timeout;
            self.at(deadline, Scheduled::CnmaDeadline(id));
        }
        self.urc_or_arm(format!("{urc}\r\n{hex}"));
    }

    /// A URC now when the modem is idle; otherwise right after the current answer.
    fn urc_or_arm(&mut self, urc: String) {
        if self.busy || self.in_command || !matches!(self.mode, Input::Command) {
            self.armed.push((UrcPoint::AfterFinal, urc));
        } else {
            self.write_line(&urc);
        }
    }

    fn deliver_held(&mut self, now: Instant) {
        if self.cnmi[1] == 0 {
            return;
        }
        let held = std::mem::take(&mut self.held_inbound);
        for bytes in held {
            self.route_inbound(bytes, now);
        }
    }

    /// Stores a PDU in the first free slot, or `None` when the memory is full.
    fn store(&mut self, memory: &str, pdu: Vec<u8>, stat: u8, now: Instant) -> Option<usize> {
        let base = self.config.profile.index_base();
        let store = self.memory_mut(memory)?;
        if store.slots.len() >= store.capacity {
            return None;
        }
        let index = (base..).find(|index| !store.slots.contains_key(index))?;
        store.slots.insert(
            index,
            Stored {
                stat,
                pdu,
                arrived: Some(now),
            },
        );
        Some(index)
    }
}

/// TPDU octets of a PDU that starts with the SMSC field: the `<length>` of `+CMGR`, `+CMT`.
fn tpdu_length(pdu: &[u8]) -> usize {
    let smsc = pdu.first().map_or(0, |&len| usize::from(len) + 1);
    pdu.len().saturating_sub(smsc)
}

/// A stored message in text mode (`AT+CMGF=1`), far enough for common clients.
fn text_mode_entry(index: Option<usize>, stored: &Stored) -> Vec<String> {
    let stat = ["REC UNREAD", "REC READ", "STO UNSENT", "STO SENT"]
        .get(usize::from(stored.stat))
        .copied()
        .unwrap_or("REC READ");
    let (address, stamp, text) = match Pdu::decode(&stored.pdu).map(|pdu| pdu.tpdu) {
        Ok(Tpdu::Deliver(deliver)) => {
            let stamp = deliver.timestamp.to_datetime().map(|t| {
                let quarters = t.offset().whole_minutes() / 15;
                format!(
                    "{:02}/{:02}/{:02},{:02}:{:02}:{:02}{:+03}",
                    t.year() % 100,
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    quarters
                )
            });
            let text = deliver.user_data.text().unwrap_or_default().to_string();
            (deliver.sender.to_string(), stamp.unwrap_or_default(), text)
        }
        Ok(Tpdu::Submit(submit)) => (
            submit.recipient.to_string(),
            String::new(),
            submit.user_data.text().unwrap_or_default().to_string(),
        ),
        _ => (String::new(), String::new(), String::new()),
    };
    let header = match index {
        Some(index) => format!("+CMGL: {index},\"{stat}\",\"{address}\",,\"{stamp}\""),
        None => format!("+CMGR: \"{stat}\",\"{address}\",,\"{stamp}\""),
    };
    vec![header, text]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// `AT+CSQ`
    Action,
    /// `AT+CPMS?`
    Query,
    /// `AT+CPMS=?`
    Test,
    /// `AT+CMGF=0`
    Set(String),
    /// `ATE0`
    Basic(u32),
    /// `AT`
    None,
}

/// Splits a command into its upper-case name and argument, keeping the argument's case.
fn split_name(upper: &str, original: &str) -> (String, Arg) {
    if upper.is_empty() {
        return (String::new(), Arg::None);
    }
    let extended = upper.starts_with(['+', '^', '$', '#', '*', '%']);
    if !extended {
        // Basic commands: a letter (or & and a letter), then digits.
        let name_len = if upper.starts_with('&') { 2 } else { 1 };
        let name = upper.get(..name_len).unwrap_or(upper).to_string();
        let value = upper
            .get(name_len..)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        return (name, Arg::Basic(value));
    }
    let end = upper.find(['=', '?']).unwrap_or(upper.len());
    let name = upper[..end].to_string();
    let rest = &original[end..];
    let argument = if rest.is_empty() {
        Arg::Action
    } else if rest == "?" {
        Arg::Query
    } else if rest == "=?" {
        Arg::Test
    } else if let Some(value) = rest.strip_prefix('=') {
        Arg::Set(value.trim().to_string())
    } else {
        Arg::Action
    };
    (name, argument)
}

/// Splits `E0V1+CMEE=1;+CMGF=0` into its commands: `;` between extended commands, and basic
/// commands one after the other.
fn split_commands(body: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        if rest.starts_with(['+', '^', '$', '#', '*', '%']) {
            let mut in_quotes = false;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        in_quotes = !in_quotes;
                    }
                    c == ';' && !in_quotes
                })
                .map_or(rest.len(), |(at, _)| at);
            commands.push(rest[..end].trim().to_string());
            rest = rest[end..].trim_start_matches(';').trim_start();
        } else {
            // The name is one character, or `&` and one; counted in bytes of whole characters,
            // so a multi-byte character is never cut (issue #14).
            let name_chars = if rest.starts_with('&') { 2 } else { 1 };
            let name_len: usize = rest.chars().take(name_chars).map(char::len_utf8).sum();
            let digits = rest[name_len..]
                .char_indices()
                .find(|(_, c)| !c.is_ascii_digit())
                .map_or(rest.len() - name_len, |(at, _)| at);
            let end = name_len + digits;
            if !rest.is_char_boundary(end) {
                break;
            }
            commands.push(rest[..end].to_string());
            rest = rest[end..].trim_start_matches(';').trim_start();
        }
    }
    if commands.is_empty() {
        commands.push(String::new());
    }
    commands
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
        .and_then(|rest| rest.strip_prefix('='))
}

fn number(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

fn unquote(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One command line in, everything the modem writes at once out.
    fn exchange(engine: &mut Engine, line: &[u8], now: Instant) -> String {
        engine.receive(line, now);
        String::from_utf8_lossy(&engine.poll(now)).into_owned()
    }

    fn quiet_engine(config: MockConfig) -> (Engine, Instant) {
        let now = Instant::now();
        let mut engine = Engine::new(config, now);
        engine.poll(now);
        exchange(&mut engine, b"ATE0\r", now);
        (engine, now)
    }

    #[test]
    fn non_ascii_command_lines_get_error_not_a_panic() {
        // Regression for issue #14: `split_commands` sliced inside a multi-byte character.
        let (mut engine, now) = quiet_engine(MockConfig::default());
        for line in [
            &b"AT\xFF\r"[..],
            "ATé\r".as_bytes(),
            "AT&é\r".as_bytes(),
            "ATE0é\r".as_bytes(),
            "AT+CMGF=é\r".as_bytes(),
            "é\r".as_bytes(),
            &b"\xC3\r"[..],
        ] {
            let answer = exchange(&mut engine, line, now);
            assert!(answer.contains("ERROR"), "{line:?} → {answer:?}");
        }
        assert!(exchange(&mut engine, b"AT\r", now).contains("OK"));
    }

    #[test]
    fn cpinr_counts_wrong_pins_down_to_the_puk() {
        let (mut engine, now) = quiet_engine(MockConfig {
            pin: Some("1234".into()),
            ..MockConfig::default()
        });
        let cpinr = |engine: &mut Engine| exchange(engine, b"AT+CPINR=\"SIM PIN\"\r", now);
        assert_eq!(cpinr(&mut engine), "\r\n+CPINR: SIM PIN,3,3\r\n\r\nOK\r\n");
        assert_eq!(
            exchange(&mut engine, b"AT+CPINR\r", now),
            "\r\n+CPINR: SIM PIN,3,3\r\n+CPINR: SIM PUK,10,10\r\n\r\nOK\r\n"
        );
        // The ICCID is there before the PIN.
        assert!(exchange(&mut engine, b"AT+CCID\r", now).contains("+CCID: 89"));
        for left in [2, 1] {
            assert!(exchange(&mut engine, b"AT+CPIN=\"0000\"\r", now).contains("ERROR"));
            assert_eq!(engine.sim_state(), ("pin", left, 10));
            assert!(cpinr(&mut engine).contains(&format!("+CPINR: SIM PIN,{left},3")));
        }
        exchange(&mut engine, b"AT+CPIN=\"0000\"\r", now);
        assert_eq!(engine.sim_state(), ("puk", 0, 10));
        assert!(exchange(&mut engine, b"AT+CPIN?\r", now).contains("+CPIN: SIM PUK"));
        assert!(cpinr(&mut engine).contains("+CPINR: SIM PIN,0,3"));
    }

    #[test]
    fn a_right_pin_resets_the_count_and_a_set_count_holds_across_a_reboot() {
        let (mut engine, now) = quiet_engine(MockConfig {
            pin: Some("1234".into()),
            ..MockConfig::default()
        });
        engine.set_pin_attempts(1);
        assert_eq!(engine.sim_state(), ("pin", 1, 10));
        engine.reboot(now);
        engine.poll(now);
        assert_eq!(engine.sim_state(), ("pin", 1, 10));
        exchange(&mut engine, b"ATE0\r", now);
        assert!(exchange(&mut engine, b"AT+CPIN=\"1234\"\r", now).contains("OK"));
        assert_eq!(engine.sim_state(), ("ready", 3, 10));
    }

    #[test]
    fn huawei_gives_its_own_pin_counter() {
        let (mut engine, now) = quiet_engine(MockConfig {
            profile: Profile::Huawei,
            pin: Some("1234".into()),
            ..MockConfig::default()
        });
        assert!(exchange(&mut engine, b"AT+CPINR=\"SIM PIN\"\r", now).contains("NOT SUPPORT"));
        engine.set_pin_attempts(2);
        assert_eq!(
            exchange(&mut engine, b"AT^CPIN?\r", now),
            "\r\n^CPIN: SIM PIN,2,10,2,10,3\r\n\r\nOK\r\n"
        );
    }
}
