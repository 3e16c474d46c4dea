//! The simulated modem on a pseudo-terminal: what tests, `smsrelay demo` and `smsrelay
//! mock-modem` talk to instead of a USB stick.
//!
//! [`engine`] is the modem itself, pure and driven by the clock it is given. This module puts it
//! on a PTY: one thread owns the master side, feeds the engine what the host writes and writes
//! back what it answers, at the times it asks for. Control (inject an SMS, fail the next send,
//! hang, reboot, re-enumerate) goes through [`MockModem`], in process, or through [`control`]
//! as JSON lines over TCP. Uses `pdu`, never `modem`: it must not share our driver's mistakes.

pub mod control;
pub mod engine;
pub mod profile;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use serialport::{SerialPort, TTYPort};
use time::OffsetDateTime;

pub use engine::{
    Engine, MockConfig, ReportBehaviour, Submitted, UrcPoint, UssdEncoding, UssdScript,
};
pub use profile::Profile;

use crate::pdu::{
    self, Address, Alphabet, ConcatReference, Dcs, Deliver, MessageClass, Pdu, PduError, Timestamp,
    Tpdu,
};

/// How often the port thread looks at the control state when nothing else wakes it.
const TICK: Duration = Duration::from_millis(10);

/// An SMS for the simulated network to deliver to the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    /// The sender: `+…`, national digits, or an alphanumeric name such as "DHL".
    pub from: String,
    /// The text; split into concatenated parts when long.
    pub text: String,
    /// Send as UCS-2 even when the text fits GSM 7-bit.
    pub ucs2: bool,
    /// Class 0 (flash).
    pub flash: bool,
    /// The concatenation reference for a long text.
    pub reference: u8,
}

impl InboundSms {
    /// A plain text from a sender.
    pub fn new(from: &str, text: &str) -> InboundSms {
        InboundSms {
            from: from.into(),
            text: text.into(),
            ucs2: false,
            flash: false,
            reference: 1,
        }
    }

    /// The DELIVER PDUs (SMSC field first) that carry this message, one per part.
    pub fn pdus(&self, smsc: Option<&str>) -> Result<Vec<Vec<u8>>, PduError> {
        let sender = Address::parse(&self.from)?;
        let smsc = smsc.map(Address::from_number).transpose()?;
        let alphabet = if self.ucs2 {
            Alphabet::Ucs2
        } else {
            pdu::udh::choose_alphabet(&self.text)
        };
        let class = self.flash.then_some(MessageClass::Flash);
        let timestamp = Timestamp::from_datetime(OffsetDateTime::now_utc());
        pdu::udh::split(&self.text, alphabet, ConcatReference::Eight(self.reference))?
            .into_iter()
            .map(|user_data| {
                Pdu {
                    smsc: smsc.clone(),
                    tpdu: Tpdu::Deliver(Deliver {
                        no_more_messages: true,
                        loop_prevention: false,
                        status_report_indication: false,
                        reply_path: false,
                        sender: sender.clone(),
                        pid: 0,
                        dcs: Dcs::new(alphabet, class),
                        timestamp,
                        user_data,
                    }),
                }
                .encode()
            })
            .collect()
    }
}

/// A simulated modem serving a pseudo-terminal until dropped.
pub struct MockModem {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    engine: Mutex<Engine>,
    path: Mutex<PathBuf>,
    link: Option<PathBuf>,
    stop: AtomicBool,
    /// Close the PTY and open a new one after this pause (USB re-enumeration).
    reenumerate: Mutex<Option<Duration>>,
    /// Whether a reset (`AT+CFUN=1,1`) also re-enumerates.
    reenumerate_on_reset: AtomicBool,
    /// Write answers in pieces of this many bytes (split reads on the host side).
    chunk: Mutex<Option<usize>>,
}

impl MockModem {
    /// Opens a PTY and starts answering on it. With `link`, a symlink at that path always
    /// points at the current device, across re-enumerations.
    pub fn start(config: MockConfig, link: Option<PathBuf>) -> io::Result<MockModem> {
        let (master, path) = open_pty()?;
        if let Some(link) = &link {
            relink(link, &path)?;
        }
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(config, Instant::now())),
            path: Mutex::new(path),
            link,
            stop: AtomicBool::new(false),
            reenumerate: Mutex::new(None),
            reenumerate_on_reset: AtomicBool::new(false),
            chunk: Mutex::new(None),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("mock-modem".into())
            .spawn(move || serve(&thread_shared, master))?;
        Ok(MockModem {
            shared,
            thread: Some(thread),
        })
    }

    /// The device path to open (the PTY slave).
    pub fn path(&self) -> PathBuf {
        lock(&self.shared.path).clone()
    }

    /// Runs `f` on the modem, with the current time, for any control the helpers lack.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut Engine, Instant) -> R) -> R {
        f(&mut lock(&self.shared.engine), Instant::now())
    }

    /// Delivers an SMS (all its parts) to the modem, as the network would.
    pub fn inject_sms(&self, sms: &InboundSms) -> Result<usize, PduError> {
        self.with_engine(|engine, now| {
            let smsc = engine.smsc();
            let pdus = sms.pdus(smsc.as_deref())?;
            let count = pdus.len();
            for pdu in pdus {
                engine.deliver_pdu(pdu, now);
            }
            Ok(count)
        })
    }

    /// Delivers a raw DELIVER PDU (hex, SMSC field first), such as one of the vectors of docs/at-sms.md §5.
    pub fn inject_pdu(&self, hex: &str) -> Result<(), PduError> {
        let bytes = pdu::decode_hex(hex)?;
        match Pdu::decode(&bytes)?.tpdu {
            Tpdu::Deliver(_) => {}
            _ => return Err(PduError::BadHeader("only a DELIVER can be injected")),
        }
        self.with_engine(|engine, now| engine.deliver_pdu(bytes, now));
        Ok(())
    }

    /// Messages submitted so far.
    pub fn submitted(&self) -> Vec<Submitted> {
        self.with_engine(|engine, _| engine.submitted().to_vec())
    }

    /// Command lines received so far.
    pub fn commands(&self) -> Vec<String> {
        self.with_engine(|engine, _| engine.commands().to_vec())
    }

    /// An incoming call from `number` (`None`: withheld) that rings `rings` times, one ring
    /// per `interval`, then the caller hangs up (`NO CARRIER`).
    pub fn call(&self, number: Option<&str>, rings: u32, interval: Duration) {
        self.with_engine(|engine, now| {
            engine.incoming_call(number.map(str::to_string), rings, interval, now);
        });
    }

    /// The caller hangs up now.
    pub fn caller_hangs_up(&self) {
        self.with_engine(|engine, _| engine.caller_hangs_up());
    }

    /// Hang-ups (`AT+CHUP`, `ATH`) the host sent while a call rang.
    pub fn hang_ups(&self) -> u32 {
        self.with_engine(|engine, _| engine.hang_ups())
    }

    /// Replaces what the simulated network answers to USSD codes.
    pub fn set_ussd(&self, script: UssdScript) {
        self.with_engine(|engine, _| engine.set_ussd_script(script));
    }

    /// Closes the PTY now and opens a new one (a new path, the link updated) after `gap`, as
    /// a modem does when it re-enumerates on USB.
    pub fn disconnect(&self, gap: Duration) {
        *lock(&self.shared.reenumerate) = Some(gap);
    }

    /// Whether `AT+CFUN=1,1` also closes and reopens the PTY.
    pub fn set_reenumerate_on_reset(&self, on: bool) {
        self.shared
            .reenumerate_on_reset
            .store(on, Ordering::Relaxed);
    }

    /// Writes answers in pieces of `bytes` (at least 1), or whole with `None`.
    pub fn set_write_chunk(&self, bytes: Option<usize>) {
        *lock(&self.shared.chunk) = bytes.map(|b| b.max(1));
    }
}

impl Drop for MockModem {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(link) = &self.shared.link {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// A poisoned lock only means a control call panicked; the modem state is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_pty() -> io::Result<(TTYPort, PathBuf)> {
    let (master, slave) = TTYPort::pair().map_err(io::Error::other)?;
    let path = slave
        .name()
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("the PTY has no name"))?;
    // The slave is for the host to open; keeping it open here would hide when the host closes
    // the port (the master sees a hangup only when no slave is open).
    drop(slave);
    info!("mock modem on {}", path.display());
    Ok((master, path))
}

fn relink(link: &Path, target: &Path) -> io::Result<()> {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::os::unix::fs::symlink(target, link)
}

/// The port thread: read with a deadline, feed the engine, write what falls due.
fn serve(shared: &Shared, mut master: TTYPort) {
    let mut connected = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let gap = lock(&shared.reenumerate).take();
        let reset = lock(&shared.engine).take_reboot_request()
            && shared.reenumerate_on_reset.load(Ordering::Relaxed);
        if gap.is_some() || reset {
            let gap = gap.unwrap_or(Duration::from_millis(200));
            info!("mock modem: USB re-enumeration, back in {gap:?}");
            drop(master);
            connected = false;
            match reappear(shared, gap) {
                Ok(new_master) => master = new_master,
                Err(error) => {
                    warn!("mock modem: cannot open a new PTY: {error}");
                    return;
                }
            }
        }
        read_host(shared, &mut master, &mut connected);
        let output = lock(&shared.engine).poll(Instant::now());
        if output.is_empty() {
            continue;
        }
        if !connected {
            debug!(
                "mock modem: nobody listening, {} bytes dropped",
                output.len()
            );
            continue;
        }
        write_host(shared, &mut master, &output);
    }
}

/// The device is gone for `gap`, then comes back as a new PTY (the link follows it).
fn reappear(shared: &Shared, gap: Duration) -> io::Result<TTYPort> {
    lock(&shared.engine).port_closed();
    // udev removes the /dev/serial/by-id link while the device is gone.
    if let Some(link) = &shared.link {
        let _ = std::fs::remove_file(link);
    }
    // In ticks, so that dropping the modem does not wait out a long gap.
    let back_at = Instant::now() + gap;
    while Instant::now() < back_at && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK.min(back_at.saturating_duration_since(Instant::now())));
    }
    let (master, path) = open_pty()?;
    if let Some(link) = &shared.link {
        if let Err(error) = relink(link, &path) {
            warn!("mock modem: cannot update {}: {error}", link.display());
        }
    }
    *lock(&shared.path) = path;
    Ok(master)
}

/// Reads what the host wrote, waiting no longer than the engine's next event, and notes
/// whether a host has the port open.
fn read_host(shared: &Shared, master: &mut TTYPort, connected: &mut bool) {
    let mut buffer = [0u8; 1024];
    let now = Instant::now();
    let wait = lock(&shared.engine)
        .next_wakeup()
        .map_or(TICK, |due| due.saturating_duration_since(now).min(TICK))
        .max(Duration::from_millis(1));
    let _ = master.set_timeout(wait);
    match master.read(&mut buffer) {
        Ok(0) => {}
        Ok(count) => {
            *connected = true;
            lock(&shared.engine).receive(&buffer[..count], Instant::now());
        }
        Err(error) if error.kind() == io::ErrorKind::TimedOut => *connected = true,
        Err(_) => {
            // No host has the port open (hangup): a deaf modem recovers on the next open.
            if *connected {
                debug!("mock modem: the host closed the port");
                lock(&shared.engine).port_closed();
            }
            *connected = false;
            std::thread::sleep(TICK);
        }
    }
}

/// Writes the engine's output, in pieces of the configured size (a slow USB link).
fn write_host(shared: &Shared, master: &mut TTYPort, output: &[u8]) {
    let chunk = (*lock(&shared.chunk)).unwrap_or(output.len());
    for piece in output.chunks(chunk.max(1)) {
        if let Err(error) = master.write_all(piece).and_then(|()| master.flush()) {
            debug!("mock modem: write failed: {error}");
            break;
        }
    }
}
