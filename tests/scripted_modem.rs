//! The modem driver against an independent, scripted modem on a raw PTY.
//!
//! Why not `smsrelay::mock`: the simulated modem was written alongside the driver, by the same
//! reading of `docs/at-sms.md`, and its habits (how it frames a prompt, lays out a listing, words a
//! registration) are the ones the driver was tuned against; a misreading shared by both passes
//! every test in `modem_driver.rs`. The modem here is a few canned answers of a plain 27.005
//! modem (`plain_answer`), and each test scripts one quirk from `docs/at-sms.md` (§1–3, §6; bare `§N` below cite it)
//! on top: prompts in every form, echo that will not turn off, vendor noise before every
//! answer, damaged `AT+CMGL` listings, `+CMGR` variants, banners, registration forms. Tests of
//! what the mock already covers (plain sends and receipts, status-report routes, CMS 500 on a
//! send, reboots, stale indexes) live in `modem_driver.rs` and are not repeated here.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use smsrelay::at::RegistrationStatus;
use smsrelay::modem::ussd::RequestEncoding;
use smsrelay::modem::{
    Inbound, InitError, LinkState, Modem, ModemEvent, ModemSettings, Origin, UssdFailure,
};
use smsrelay::pdu::{Body, Tpdu};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

use crate::support::quick_modem_settings as settings;
use crate::support::{WAIT, until, wait_for};

/// docs/at-sms.md §5 E1: a SUBMIT without an SMSC field, as the gateway sends it.
const E1_SUBMIT: &str = "0031000C914477000910320000A711C8329BFD0699E5EF36888E2E83A069";
/// docs/at-sms.md §5 E6: a DELIVER from +447700900123.
const E6_DELIVER: &str = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";
const E6_TEXT: &str = "Meet at 10:30? Reply YES/NO";
/// docs/at-sms.md §5 E7: a DELIVER from the alphanumeric sender "InfoSMS".
const E7_DELIVER: &str =
    "0791447700090010040DD049B7F93D6D4E0100004221133295950013D9775D0E1ABFC965507A0EA2E164B9D80C";
const E7_TEXT: &str = "Your code is 482913";
/// docs/at-sms.md §5 E12: a STATUS-REPORT for TP-MR 7, delivered.
const E12_REPORT: &str = "079144770009001006070C91447700091032423051411320404230514113504000";

/// The TP-MR the scripted modem gives its first send (then 8, 9, …), unlike the mock's 0.
const FIRST_MR: u8 = 7;
/// Message slots in every memory of the scripted modem, as on a typical SIM.
const SLOTS: usize = 30;
/// How long the modem thread waits for input before it looks at injected bytes and the stop
/// flag again: the latency of `Fake::inject` and of `Drop`.
const POLL: Duration = Duration::from_millis(10);
/// The pause between bytes when answering one byte at a time, so that each byte reaches the
/// driver in its own read: a PTY hands over everything written back to back in one read.
const BYTE_PACE: Duration = Duration::from_millis(1);

// ---- the scripted modem ---------------------------------------------------------------------

/// What the modem received from the driver, in order.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    /// A command line without its CR.
    Command(String),
    /// The hex written after the prompt, ended by Ctrl-Z.
    Pdu(String),
    /// ESC: aborts a prompt; on a command line it only clears what was typed.
    Esc,
}

/// Whether the modem reads command lines or the PDU after a prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Command,
    /// After `AT+CMGS=<length>`: hex until Ctrl-Z (send) or ESC (abort).
    Pdu {
        length: usize,
    },
}

/// The modem's settings, storage and the quirks a test switches on.
struct State {
    /// On by default, as after every reset (§1.1).
    echo: bool,
    /// Nokia N900 style (docs/at-sms.md §6, echo): `ATE0` is answered OK and changes nothing.
    ignores_ate0: bool,
    /// A test starts the modem in `Mode::Pdu` to leave it at a prompt, as a crashed run does.
    mode: Mode,
    /// The answer to `AT+CMGS=<n>`; it holds the prompt (`>`), whatever surrounds it.
    prompt: Vec<u8>,
    /// The answer after the PDU, instead of `+CMGS: <mr>` and OK.
    cmgs_answer: Option<Vec<u8>>,
    /// The TP-MR of the next accepted PDU.
    next_mr: u8,
    /// Write answers one byte at a time.
    byte_by_byte: bool,
    /// The information line answering `AT+CREG?`, or `None` to refuse the command.
    creg: Option<String>,
    /// The same for `AT+CEREG?`.
    cereg: Option<String>,
    /// The last `AT+CNMI=` accepted, all zeros as after a reset until then.
    cnmi: String,
    /// The memory `AT+CMGR`, `AT+CMGL` and `AT+CMGD` work on.
    mem1: String,
    /// Memory → index → (stat, PDU hex).
    memories: BTreeMap<String, BTreeMap<u32, (u8, String)>>,
    /// Bytes to write unasked (URCs), taken by the modem thread.
    unsolicited: Vec<u8>,
    /// Everything received, for assertions and failure messages.
    log: Vec<Input>,
}

impl Default for State {
    fn default() -> Self {
        let memories = ["SM", "SR"]
            .into_iter()
            .map(|memory| (memory.to_string(), BTreeMap::new()))
            .collect();
        State {
            echo: true,
            ignores_ate0: false,
            mode: Mode::Command,
            prompt: b"\r\n> ".to_vec(),
            cmgs_answer: None,
            next_mr: FIRST_MR,
            byte_by_byte: false,
            creg: Some("+CREG: 0,1".into()),
            cereg: Some("+CEREG: 0,1".into()),
            cnmi: "0,0,0,0,0".into(),
            mem1: "SM".into(),
            memories,
            unsolicited: Vec::new(),
            log: Vec::new(),
        }
    }
}

/// A test's answers: `Some` replaces the plain modem's answer to that input, `None` keeps it.
type Script = Box<dyn FnMut(&Input, &mut State) -> Option<Vec<u8>> + Send>;

/// No quirks beyond those set in [`State`].
fn plain() -> Script {
    Box::new(|_, _| None)
}

/// Fixed answers to whole command lines.
fn answers(table: Vec<(&'static str, Vec<u8>)>) -> Script {
    Box::new(move |input, _| match input {
        Input::Command(command) => table
            .iter()
            .find(|(line, _)| line == command)
            .map(|(_, answer)| answer.clone()),
        _ => None,
    })
}

/// Information lines framed as a modem frames them, then OK.
fn ok(info: &[&str]) -> Vec<u8> {
    let mut out = String::new();
    for line in info {
        out.push_str(&format!("\r\n{line}\r\n"));
    }
    out.push_str("\r\nOK\r\n");
    out.into_bytes()
}

fn error() -> Vec<u8> {
    b"\r\nERROR\r\n".to_vec()
}

fn cms_error(code: u16) -> Vec<u8> {
    format!("\r\n+CMS ERROR: {code}\r\n").into_bytes()
}

/// The TPDU octets of a PDU in hex: all of it but the SMSC field (its length octet and the
/// address octets it counts), which is what `AT+CMGS=<n>`, `+CMGR` and `+CMGL` give (§3.1).
fn tpdu_octets(hex: &str) -> usize {
    let smsc = hex
        .get(..2)
        .and_then(|octet| usize::from_str_radix(octet, 16).ok());
    (hex.len() / 2).saturating_sub(1 + smsc.unwrap_or(0))
}

/// One `AT+CMGL` entry, framed as a modem frames it.
fn cmgl_entry(index: u32, stat: u8, hex: &str) -> String {
    format!(
        "\r\n+CMGL: {index},{stat},,{}\r\n{hex}\r\n",
        tpdu_octets(hex)
    )
}

/// The answer of a plain 27.005 modem in PDU mode to a command line.
fn plain_answer(command: &str, st: &mut State) -> Vec<u8> {
    let upper = command.to_ascii_uppercase();
    // The argument of a set command such as `AT+CMGR=3`.
    let argument = |prefix: &str| upper.strip_prefix(prefix).map(str::to_string);
    match upper.as_str() {
        "AT" | "AT+CMEE=1" | "AT+CMGF=0" => ok(&[]),
        "ATE0" => {
            if !st.ignores_ate0 {
                st.echo = false;
            }
            ok(&[])
        }
        "AT+CGMI" => ok(&["SCRIPTED"]),
        "AT+CGMM" => ok(&["S1"]),
        "AT+CGMR" => ok(&["1.0"]),
        "AT+CGSN" => ok(&["351234567890123"]),
        "AT+CPIN?" => ok(&["+CPIN: READY"]),
        "AT+CIMI" => ok(&["001010123456789"]),
        "AT+CCID" => ok(&["+CCID: 8901260123456789012"]),
        "AT+CREG?" => st.creg.as_deref().map_or_else(error, |line| ok(&[line])),
        "AT+CEREG?" => st.cereg.as_deref().map_or_else(error, |line| ok(&[line])),
        "AT+CSMS=0" => ok(&["+CSMS: 1,1,1"]),
        "AT+CSMS?" => ok(&["+CSMS: 0,1,1,1"]),
        "AT+CPMS=?" => ok(&[r#"+CPMS: ("SM","SR"),("SM"),("SM")"#]),
        "AT+CSCA?" => ok(&[r#"+CSCA: "+447700900001",145"#]),
        "AT+CSQ" => ok(&["+CSQ: 20,99"]),
        "AT+COPS?" => ok(&[r#"+COPS: 0,0,"Scripted",7"#]),
        "AT+CNMI?" => ok(&[&format!("+CNMI: {}", st.cnmi)]),
        "AT+CPMS?" => {
            let (used, sm) = (used(st, &st.mem1), used(st, "SM"));
            let line = format!(
                r#"+CPMS: "{}",{used},{SLOTS},"SM",{sm},{SLOTS},"SM",{sm},{SLOTS}"#,
                st.mem1
            );
            ok(&[&line])
        }
        "AT+CMGL=4" => {
            let mut out = String::new();
            for (index, (stat, hex)) in &st.memories[&st.mem1] {
                out.push_str(&cmgl_entry(*index, *stat, hex));
            }
            out.push_str("\r\nOK\r\n");
            out.into_bytes()
        }
        _ => {
            if let Some(cnmi) = argument("AT+CNMI=") {
                st.cnmi = cnmi;
                ok(&[])
            } else if let Some(memories) = argument("AT+CPMS=") {
                let mem1 = memories.split(',').next().unwrap_or("").trim_matches('"');
                if !st.memories.contains_key(mem1) {
                    return cms_error(302); // operation not allowed
                }
                st.mem1 = mem1.to_string();
                let (used, sm) = (used(st, &st.mem1), used(st, "SM"));
                ok(&[&format!("+CPMS: {used},{SLOTS},{sm},{SLOTS},{sm},{SLOTS}")])
            } else if let Some(index) = argument("AT+CMGR=") {
                let stored = index
                    .parse::<u32>()
                    .ok()
                    .and_then(|index| st.memories[&st.mem1].get(&index));
                match stored {
                    Some((stat, hex)) => {
                        let header = format!("+CMGR: {stat},,{}", tpdu_octets(hex));
                        ok(&[&header, hex])
                    }
                    None => cms_error(321), // invalid memory index
                }
            } else if let Some(arguments) = argument("AT+CMGD=") {
                let index = arguments.split(',').next().and_then(|i| i.parse().ok());
                let mem1 = st.mem1.clone();
                if let (Some(index), Some(memory)) = (index, st.memories.get_mut(&mem1)) {
                    memory.remove(&index);
                }
                ok(&[])
            } else if let Some(length) = argument("AT+CMGS=").and_then(|n| n.parse().ok()) {
                st.mode = Mode::Pdu { length };
                st.prompt.clone()
            } else {
                error()
            }
        }
    }
}

fn used(st: &State, memory: &str) -> usize {
    st.memories.get(memory).map_or(0, BTreeMap::len)
}

/// The answer of a plain modem to the PDU after a prompt: checks `<n>` as a real modem does
/// (§3.1: a wrong length gives CMS 304) and assigns the next TP-MR.
fn plain_send_answer(length: usize, hex: &str, st: &mut State) -> Vec<u8> {
    if tpdu_octets(hex) != length {
        return cms_error(304); // invalid PDU mode parameter
    }
    let mr = st.next_mr;
    st.next_mr = st.next_mr.wrapping_add(1);
    st.cmgs_answer
        .clone()
        .unwrap_or_else(|| ok(&[&format!("+CMGS: {mr}")]))
}

/// The scripted modem: a thread that owns the PTY master; the driver opens the slave by path.
/// Dropping it stops and joins the thread.
struct Fake {
    path: PathBuf,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(state: State, script: Script) -> Fake {
        let (master, slave) = TTYPort::pair().expect("a PTY pair");
        let path = PathBuf::from(slave.name().expect("the PTY slave has a name"));
        // The driver opens the slave itself; ours would only keep stale input around.
        drop(slave);
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            move || serve(master, &state, &stop, script)
        });
        Fake {
            path,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the scripted modem's state")
    }

    /// Writes `bytes` unasked, after any answer being written.
    fn inject(&self, bytes: &[u8]) {
        self.state().unsolicited.extend_from_slice(bytes);
    }

    /// Puts an unread message in a memory.
    fn store(&self, memory: &str, index: u32, hex: &str) {
        self.state()
            .memories
            .entry(memory.to_string())
            .or_default()
            .insert(index, (0, hex.to_string()));
    }

    fn stored(&self, memory: &str) -> Vec<u32> {
        self.state().memories[memory].keys().copied().collect()
    }

    /// How many times the driver sent this command line.
    fn received(&self, command: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|input| matches!(input, Input::Command(c) if c == command))
            .count()
    }

    fn log(&self) -> Vec<Input> {
        self.state().log.clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic in a script already printed its message; the test fails on its own.
            let _ = thread.join();
        }
    }
}

/// Ctrl-Z ends the PDU after a prompt; ESC aborts it (§1.2).
const CTRL_Z: u8 = 0x1a;
const ESC: u8 = 0x1b;

/// The modem thread: read what the driver writes, answer, write injected URCs.
fn serve(mut master: TTYPort, state: &Mutex<State>, stop: &AtomicBool, mut script: Script) {
    let _ = master.set_timeout(POLL);
    let mut line = Vec::new();
    let mut buffer = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let received = match master.read(&mut buffer) {
            Ok(count) => &buffer[..count],
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => &[][..],
            // EIO while no one has the slave open: nothing to serve, and no busy loop.
            Err(_) => {
                std::thread::sleep(POLL);
                &[][..]
            }
        };
        let mut st = state.lock().expect("the scripted modem's state");
        let mut out = Vec::new();
        for &byte in received {
            if st.echo {
                out.push(byte);
            }
            let input = match (st.mode, byte) {
                (Mode::Pdu { .. }, CTRL_Z) => {
                    Input::Pdu(String::from_utf8_lossy(&line).into_owned())
                }
                (_, ESC) => Input::Esc,
                (Mode::Command, b'\r') => {
                    let command = String::from_utf8_lossy(&line).trim().to_string();
                    if command.is_empty() {
                        continue;
                    }
                    Input::Command(command)
                }
                // The driver ends commands with CR only (§1.1); a LF would be ignored.
                (Mode::Command, b'\n') => continue,
                _ => {
                    line.push(byte);
                    continue;
                }
            };
            line.clear();
            st.log.push(input.clone());
            let mode = std::mem::replace(&mut st.mode, Mode::Command);
            let answer = script(&input, &mut st).unwrap_or_else(|| match (&input, mode) {
                (Input::Command(command), _) => plain_answer(command, &mut st),
                (Input::Pdu(hex), Mode::Pdu { length }) => plain_send_answer(length, hex, &mut st),
                // An aborted prompt answers OK; ESC on a command line only clears it.
                (Input::Esc, Mode::Pdu { .. }) => ok(&[]),
                _ => Vec::new(),
            });
            out.extend(answer);
        }
        out.append(&mut st.unsolicited);
        let byte_by_byte = st.byte_by_byte;
        drop(st);
        write(&mut master, &out, byte_by_byte);
    }
}

/// Writes an answer whole, or one byte at a time. A failed write (no one has the port open,
/// or a full buffer past the timeout) loses the answer, as on a real line.
fn write(master: &mut TTYPort, bytes: &[u8], byte_by_byte: bool) {
    if !byte_by_byte {
        let _ = master.write_all(bytes).and_then(|()| master.flush());
        return;
    }
    for byte in bytes {
        if master
            .write_all(&[*byte])
            .and_then(|()| master.flush())
            .is_err()
        {
            return;
        }
        std::thread::sleep(BYTE_PACE);
    }
}

// ---- the driver side ------------------------------------------------------------------------

/// The next `count` inbound messages, in arrival order.
async fn inbound(events: &mut Receiver<ModemEvent>, count: usize) -> Vec<Inbound> {
    let mut messages = Vec::new();
    while messages.len() < count {
        let what = format!("inbound message {} of {count}", messages.len() + 1);
        match wait_for(events, &what, |e| matches!(e, ModemEvent::Inbound(_))).await {
            ModemEvent::Inbound(message) => messages.push(message),
            _ => unreachable!(),
        }
    }
    messages
}

/// Starts the driver with `settings` and waits until it is connected and idle: the first
/// sweep is over and the health check has sent its last command (`AT+CNMI?`), so a message
/// stored after this is found only through its URC (the next sweep is minutes away).
async fn start_with(fake: &Fake, settings: ModemSettings) -> Modem {
    let mut modem = Modem::start(settings);
    wait_for(&mut modem.events, "Connected", |e| {
        matches!(e, ModemEvent::Connected(_))
    })
    .await;
    until("the first health check", || fake.received("AT+CNMI?") > 0).await;
    modem
}

async fn start(fake: &Fake) -> Modem {
    start_with(fake, settings(&fake.path)).await
}

/// Sends reference E1 and returns the outcome.
async fn send_e1(modem: &Modem) -> Result<u8, smsrelay::modem::SendFailure> {
    modem.handle.send(tpdu_octets(E1_SUBMIT), E1_SUBMIT).await
}

fn text_of(message: &Inbound) -> String {
    match message.pdu.as_ref().map(|pdu| &pdu.tpdu) {
        Ok(Tpdu::Deliver(deliver)) => match &deliver.user_data.body {
            Body::Text(text) => text.clone(),
            Body::Data(data) => panic!("binary body {data:?}"),
        },
        other => panic!("not a DELIVER: {other:?} (hex {})", message.hex),
    }
}

fn stored_at(index: u32) -> Origin {
    Origin::Stored {
        storage: "SM".into(),
        index,
    }
}

/// Where each message came from and what it says.
fn summary(messages: &[Inbound]) -> Vec<(Origin, String)> {
    messages
        .iter()
        .map(|message| (message.origin.clone(), text_of(message)))
        .collect()
}

// ---- sending: the prompt and the answer (§1.2, §3.1, §6 send timing) -------------------------

#[tokio::test]
async fn a_prompt_followed_by_a_urc_in_the_same_read_still_sends() {
    let state = State {
        prompt: b"\r\n> \r\n+CMTI: \"SM\",1\r\n".to_vec(),
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut modem = start(&fake).await;
    fake.store("SM", 1, E6_DELIVER);
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    // The URC that came with the prompt is not lost either.
    let messages = inbound(&mut modem.events, 1).await;
    assert_eq!(summary(&messages), [(stored_at(1), E6_TEXT.to_string())]);
}

#[tokio::test]
async fn a_prompt_ended_by_crlf_still_sends() {
    let state = State {
        prompt: b"\r\n> \r\n".to_vec(),
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let modem = start(&fake).await;
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
}

#[tokio::test]
async fn a_bare_prompt_or_one_without_a_line_break_before_it_still_sends() {
    // ModemManager matches `\r\n>\s*$`: some firmware sends `>` alone.
    for prompt in [&b"\r\n>"[..], b"> "] {
        let state = State {
            prompt: prompt.to_vec(),
            ..State::default()
        };
        let fake = Fake::start(state, plain());
        let modem = start(&fake).await;
        assert_eq!(
            send_e1(&modem).await,
            Ok(FIRST_MR),
            "prompt {:?}: {:?}",
            String::from_utf8_lossy(prompt),
            fake.log()
        );
    }
}

#[tokio::test]
async fn a_modem_left_at_the_prompt_by_a_crashed_run_is_freed_with_esc_and_starts() {
    // The previous run wrote `AT+CMGS=29` and died: until ESC, everything is taken for PDU hex.
    let state = State {
        mode: Mode::Pdu {
            length: tpdu_octets(E1_SUBMIT),
        },
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let modem = start(&fake).await;
    assert_eq!(fake.log().first(), Some(&Input::Esc));
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
}

#[tokio::test]
async fn urcs_between_cmgs_and_the_prompt_with_echo_on_are_handed_up_and_the_send_completes() {
    // Echo on (ATE0 ignored), so the command echo comes first; then a +CMTI, vendor noise and
    // a two-line +CDS before the prompt (§6 send timing).
    let state = State {
        ignores_ate0: true,
        prompt: format!("\r\n^RSSI:12\r\n\r\n+CDS: 25\r\n{E12_REPORT}\r\n\r\n> ").into_bytes(),
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut modem = start(&fake).await;
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    let report = inbound(&mut modem.events, 1).await.remove(0);
    assert_eq!(report.origin, Origin::Routed);
    assert_eq!(report.hex, E12_REPORT);
    assert!(
        matches!(
            report.pdu.as_ref().map(|pdu| &pdu.tpdu),
            Ok(Tpdu::StatusReport(_))
        ),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_cmgs_answer_after_a_urc_and_without_blank_lines_gives_the_right_reference() {
    // The +CMTI index (9) must not be taken for the reference (42); no blank line before OK.
    let state = State {
        cmgs_answer: Some(b"\r\n+CMTI: \"SM\",9\r\n\r\n+CMGS: 42\r\nOK\r\n".to_vec()),
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let modem = start(&fake).await;
    assert_eq!(send_e1(&modem).await, Ok(42), "{:?}", fake.log());
}

// ---- line discipline: echo, split reads, noise (§1.1, §1.3, §3.9, §6) -----------------------

#[tokio::test]
async fn a_modem_that_ignores_ate0_still_sends_receives_and_deletes() {
    let state = State {
        ignores_ate0: true,
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut modem = start(&fake).await;
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    fake.store("SM", 3, E6_DELIVER);
    fake.inject(b"\r\n+CMTI: \"SM\",3\r\n");
    let message = inbound(&mut modem.events, 1).await.remove(0);
    assert_eq!(text_of(&message), E6_TEXT);
    modem
        .handle
        .confirm(message.receipt)
        .await
        .expect("confirmed");
    until("the message deleted", || fake.stored("SM").is_empty()).await;
}

#[tokio::test]
async fn answers_written_one_byte_at_a_time_with_echo_on_still_work() {
    let state = State {
        ignores_ate0: true,
        byte_by_byte: true,
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut modem = start(&fake).await;
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    fake.inject(format!("\r\n+CDS: 25\r\n{E12_REPORT}\r\n").as_bytes());
    let report = inbound(&mut modem.events, 1).await.remove(0);
    assert_eq!(
        (report.origin, report.hex.as_str()),
        (Origin::Routed, E12_REPORT)
    );
}

#[tokio::test]
async fn vendor_noise_before_every_answer_is_ignored() {
    // Huawei and ZTE noise (§3.9) before every answer, including the prompt; indexes from 0.
    const NOISE: &[u8] = b"\r\n^RSSI:18\r\n\r\n^BOOT:27710117,0,0,0,75\r\n\r\n^MODE:3,3\r\n\r\n+ZUSIMR:2\r\n\r\n^HCSQ:\"LTE\",59,50,161,24\r\n";
    let script: Script = Box::new(|input, st| {
        let Input::Command(command) = input else {
            return None;
        };
        let mut answer = NOISE.to_vec();
        answer.extend(plain_answer(command, st));
        Some(answer)
    });
    let fake = Fake::start(State::default(), script);
    let mut modem = start(&fake).await;
    let identity = modem.handle.status().identity.expect("identity");
    assert_eq!(
        (identity.manufacturer.as_str(), identity.model.as_str()),
        ("SCRIPTED", "S1")
    );
    assert_eq!(identity.imei, "351234567890123");
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    fake.store("SM", 0, E6_DELIVER);
    fake.inject(b"\r\n+CMTI: \"SM\",0\r\n");
    let messages = inbound(&mut modem.events, 1).await;
    assert_eq!(summary(&messages), [(stored_at(0), E6_TEXT.to_string())]);
}

#[tokio::test]
async fn boot_banners_and_a_cpin_without_ok_during_start_up_are_not_taken_for_a_reboot() {
    // The modem finishes booting as the driver connects: SIM800 banners right after the first
    // OK (§6), and a Wavecom `+CPIN: READY` with no final OK.
    let mut booted = false;
    let script: Script = Box::new(move |input, _| match input {
        Input::Command(command) if command == "AT" && !booted => {
            booted = true;
            let mut answer = ok(&[]);
            answer.extend_from_slice(
                b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n",
            );
            Some(answer)
        }
        Input::Command(command) if command == "AT+CPIN?" => Some(b"\r\n+CPIN: READY\r\n".to_vec()),
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    let modem = start(&fake).await;
    // A request goes through the same loop as a leftover banner would.
    assert_eq!(send_e1(&modem).await, Ok(FIRST_MR), "{:?}", fake.log());
    assert_eq!(fake.received("AT+CMEE=1"), 1, "one init: {:?}", fake.log());
    assert_eq!(modem.handle.status().counters.reinits, 0);
}

// ---- reading: listings and reads (§3.2, §3.3, §6 storage) -----------------------------------

#[tokio::test]
async fn a_pdu_glued_to_the_next_cmgl_header_delivers_and_deletes_both_messages() {
    // gammu's report: the newline before the second `+CMGL:` is missing (§6).
    let script: Script = Box::new(|input, st| match input {
        Input::Command(command) if command == "AT+CMGL=4" && st.mem1 == "SM" => {
            let first = cmgl_entry(1, 0, E6_DELIVER);
            let second = cmgl_entry(2, 0, E7_DELIVER);
            let glued = format!("{}{}", first.trim_end(), second.trim_start());
            Some(format!("{glued}\r\nOK\r\n").into_bytes())
        }
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    fake.store("SM", 1, E6_DELIVER);
    fake.store("SM", 2, E7_DELIVER);
    let mut modem = start(&fake).await;
    let messages = inbound(&mut modem.events, 2).await;
    assert_eq!(
        summary(&messages),
        [
            (stored_at(1), E6_TEXT.to_string()),
            (stored_at(2), E7_TEXT.to_string())
        ]
    );
    for message in messages {
        modem
            .handle
            .confirm(message.receipt)
            .await
            .expect("confirmed");
    }
    until("both deleted", || fake.stored("SM").is_empty()).await;
}

#[tokio::test]
async fn a_cmgl_listing_with_a_trailing_comma_zero_and_ff_padding_decodes_both_messages() {
    let script: Script = Box::new(|input, st| match input {
        Input::Command(command) if command == "AT+CMGL=4" && st.mem1 == "SM" => {
            let first = cmgl_entry(1, 0, &format!("{E6_DELIVER},0"));
            let second = cmgl_entry(2, 0, &format!("{E7_DELIVER}FFFF"));
            Some(format!("{first}{second}\r\nOK\r\n").into_bytes())
        }
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    fake.store("SM", 1, E6_DELIVER);
    fake.store("SM", 2, E7_DELIVER);
    let mut modem = start(&fake).await;
    let messages = inbound(&mut modem.events, 2).await;
    assert_eq!(
        summary(&messages),
        [
            (stored_at(1), E6_TEXT.to_string()),
            (stored_at(2), E7_TEXT.to_string())
        ]
    );
}

#[tokio::test]
async fn a_routed_cmt_inside_a_cmgl_listing_is_handed_up_with_the_listed_messages() {
    // A two-line URC lands between two entries; its PDU must not be taken for an entry's.
    let script: Script = Box::new(|input, st| match input {
        Input::Command(command) if command == "AT+CMGL=4" && st.mem1 == "SM" => {
            let routed = format!("\r\n+CMT: ,{}\r\n{E7_DELIVER}\r\n", tpdu_octets(E7_DELIVER));
            let listing = format!(
                "{}{routed}{}\r\nOK\r\n",
                cmgl_entry(1, 0, E6_DELIVER),
                cmgl_entry(2, 1, E6_DELIVER)
            );
            Some(listing.into_bytes())
        }
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    fake.store("SM", 1, E6_DELIVER);
    fake.store("SM", 2, E6_DELIVER);
    let mut modem = start(&fake).await;
    let mut got = summary(&inbound(&mut modem.events, 3).await);
    got.sort_by_key(|(origin, _)| format!("{origin:?}"));
    assert_eq!(
        got,
        [
            (Origin::Routed, E7_TEXT.to_string()),
            (stored_at(1), E6_TEXT.to_string()),
            (stored_at(2), E6_TEXT.to_string())
        ]
    );
}

#[tokio::test]
async fn cmgr_answers_without_the_alpha_field_with_an_empty_one_and_with_urcs_inside_are_read() {
    // Index 1: `+CMGR: <stat>,<length>` (gammu dump 07) and a +CMTI between the PDU and OK.
    // Index 2: noise before the header, an empty quoted alpha, a stray `,0` after the PDU.
    let script: Script = Box::new(|input, _| match input {
        Input::Command(command) if command == "AT+CMGR=1" => Some(
            format!(
                "\r\n+CMGR: 0,{}\r\n{E6_DELIVER}\r\n\r\n+CMTI: \"SM\",2\r\n\r\nOK\r\n",
                tpdu_octets(E6_DELIVER)
            )
            .into_bytes(),
        ),
        Input::Command(command) if command == "AT+CMGR=2" => Some(
            format!(
                "\r\n^RSSI:12\r\n+CMGR: 1,\"\",{}\r\n{E7_DELIVER},0\r\n\r\nOK\r\n",
                tpdu_octets(E7_DELIVER)
            )
            .into_bytes(),
        ),
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    let mut modem = start(&fake).await;
    fake.store("SM", 1, E6_DELIVER);
    fake.store("SM", 2, E7_DELIVER);
    fake.inject(b"\r\n+CMTI: \"SM\",1\r\n");
    let messages = inbound(&mut modem.events, 2).await;
    assert_eq!(
        summary(&messages),
        [
            (stored_at(1), E6_TEXT.to_string()),
            (stored_at(2), E7_TEXT.to_string())
        ]
    );
}

#[tokio::test]
async fn a_message_whose_read_failed_is_picked_up_by_an_early_sweep() {
    // Some modems answer a read with the catch-all CMS 500 now and then (§6 errors). The
    // message stays on the modem; the sweep interval is 5 min, far past WAIT, so only the
    // early sweep after the failed read can bring it.
    let mut failed = false;
    let script: Script = Box::new(move |input, _| match input {
        Input::Command(command) if command.starts_with("AT+CMGR=") && !failed => {
            failed = true;
            Some(cms_error(500))
        }
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    let mut modem = start(&fake).await;
    fake.store("SM", 5, E6_DELIVER);
    fake.inject(b"\r\n+CMTI: \"SM\",5\r\n");
    let messages = inbound(&mut modem.events, 1).await;
    assert_eq!(summary(&messages), [(stored_at(5), E6_TEXT.to_string())]);
    assert_eq!(fake.received("AT+CMGR=5"), 1, "listed, not read again");
}

#[tokio::test]
async fn a_garbled_first_read_is_read_again_before_a_pdu_is_called_undecodable() {
    // Serial noise mangles one answer (§6); the SIM holds a good message, so the second read
    // decodes (issue #10).
    let mut garbled = false;
    let script: Script = Box::new(move |input, _| match input {
        Input::Command(command) if command == "AT+CMGR=5" && !garbled => {
            garbled = true;
            let damaged = E6_DELIVER.replacen("0C91", "0CFF", 1);
            Some(ok(&[
                &format!("+CMGR: 0,,{}", tpdu_octets(E6_DELIVER)),
                &damaged[..damaged.len() / 2],
            ]))
        }
        _ => None,
    });
    let fake = Fake::start(State::default(), script);
    let mut modem = start(&fake).await;
    fake.store("SM", 5, E6_DELIVER);
    fake.inject(b"\r\n+CMTI: \"SM\",5\r\n");
    let messages = inbound(&mut modem.events, 1).await;
    assert_eq!(summary(&messages), [(stored_at(5), E6_TEXT.to_string())]);
    assert_eq!(fake.received("AT+CMGR=5"), 2, "read once more");
}

#[tokio::test]
async fn a_pdu_that_does_not_decode_twice_is_handed_up_with_its_hex_and_error() {
    let broken = &E6_DELIVER[..40];
    let fake = Fake::start(State::default(), plain());
    let mut modem = start(&fake).await;
    fake.store("SM", 3, broken);
    fake.inject(b"\r\n+CMTI: \"SM\",3\r\n");
    let messages = inbound(&mut modem.events, 1).await;
    assert_eq!(messages[0].origin, stored_at(3));
    assert_eq!(messages[0].hex, broken);
    assert!(messages[0].pdu.is_err());
    assert_eq!(
        fake.received("AT+CMGR=3"),
        2,
        "read once more before giving up"
    );
    // Still on the SIM: only the gateway's confirm, after the event is stored, deletes it.
    assert_eq!(fake.stored("SM"), [3]);
}

// ---- start-up and health: network, identity, storage, SMSC (§2, §3.5, §3.8) -----------------

#[tokio::test]
async fn registration_loss_is_seen_on_a_modem_that_refuses_cereg() {
    // A 2G/3G modem: AT+CEREG? is an ERROR, so CREG is the only word on the network.
    let state = State {
        cereg: None,
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut settings = settings(&fake.path);
    // The health check reads the registration; make it come within the test.
    settings.health_interval = Duration::from_millis(200);
    let mut modem = start_with(&fake, settings).await;
    fake.state().creg = Some("+CREG: 0,2".into());
    let lost = wait_for(&mut modem.events, "RegistrationLost", |e| {
        matches!(e, ModemEvent::RegistrationLost(_))
    })
    .await;
    assert!(matches!(
        lost,
        ModemEvent::RegistrationLost(RegistrationStatus::Searching)
    ));
    assert_eq!(
        modem.handle.status().registration,
        Some(RegistrationStatus::Searching)
    );
}

#[tokio::test]
async fn a_cereg_that_says_unknown_does_not_hide_a_creg_that_says_denied() {
    // Some 2G/3G modems answer AT+CEREG? with "4, unknown" instead of an ERROR.
    let state = State {
        cereg: Some("+CEREG: 0,4".into()),
        ..State::default()
    };
    let fake = Fake::start(state, plain());
    let mut settings = settings(&fake.path);
    settings.health_interval = Duration::from_millis(200);
    let mut modem = start_with(&fake, settings).await;
    fake.state().creg = Some("+CREG: 0,3".into());
    let lost = wait_for(&mut modem.events, "RegistrationLost", |e| {
        matches!(e, ModemEvent::RegistrationLost(_))
    })
    .await;
    assert!(
        matches!(
            lost,
            ModemEvent::RegistrationLost(RegistrationStatus::Denied)
        ),
        "{lost:?}"
    );
}

#[tokio::test]
async fn registration_is_read_from_every_creg_and_cereg_form() {
    for (creg, cereg) in [
        // LAC, cell and access technology, quoted.
        (r#"+CREG: 2,1,"5E25","605F",7"#, "+CEREG: 0,4"),
        // Huawei: unquoted LAC and cell; roaming.
        ("+CREG: 2,5,4CA,81DE445", "+CEREG: 0,4"),
        // LTE-only sticks: registered in CEREG only.
        ("+CREG: 0,0", r#"+CEREG: 2,1,"1A2B","01A2B3C4",7"#),
        ("+CREG: 0,2", "+CEREG: 0,1"),
    ] {
        let state = State {
            creg: Some(creg.into()),
            cereg: Some(cereg.into()),
            ..State::default()
        };
        let fake = Fake::start(state, plain());
        let modem = start(&fake).await;
        let registration = modem.handle.status().registration;
        assert!(
            registration.is_some_and(RegistrationStatus::is_registered),
            "{creg} / {cereg}: {registration:?}"
        );
    }
}

#[tokio::test]
async fn the_iccid_is_read_from_every_vendor_command_and_form() {
    let not_supported = b"\r\nCOMMAND NOT SUPPORT\r\n".to_vec();
    for (table, iccid) in [
        (
            vec![
                ("AT+CCID", error()),
                ("AT^ICCID?", ok(&["^ICCID: 98684005010203040506"])),
            ],
            "98684005010203040506",
        ),
        (
            vec![
                ("AT+CCID", not_supported),
                ("AT^ICCID?", b"\r\n+CME ERROR: 4\r\n".to_vec()),
                ("AT+QCCID", ok(&["+QCCID: 89860117851014783481"])),
            ],
            "89860117851014783481",
        ),
        (
            vec![("AT+CCID", ok(&["89014103211118510720"]))],
            "89014103211118510720",
        ),
        (
            vec![("AT+CCID", ok(&[r#"+CCID: "89014103211118510720""#]))],
            "89014103211118510720",
        ),
    ] {
        let fake = Fake::start(State::default(), answers(table));
        let modem = start(&fake).await;
        let identity = modem.handle.status().identity.expect("identity");
        assert_eq!(identity.iccid.as_deref(), Some(iccid));
    }
}

#[tokio::test]
async fn cnmi_falls_back_until_the_modem_accepts_one() {
    // Both report routes refused (Qualcomm-like, §6): messages still come as +CMTI.
    let fake = Fake::start(
        State::default(),
        answers(vec![
            ("AT+CNMI=2,1,0,2,0", cms_error(303)),
            ("AT+CNMI=2,1,0,1,0", error()),
        ]),
    );
    let modem = start(&fake).await;
    assert_eq!(modem.handle.status().cnmi.as_deref(), Some("2,1,0,0,0"));
    assert_eq!(fake.state().cnmi, "2,1,0,0,0");
}

#[tokio::test]
async fn storage_usage_is_read_when_cpms_answers_the_set_form_with_a_bare_ok() {
    // Some phones answer `AT+CPMS="SM","SM","SM"` with OK alone (§3.5); the query tells the
    // usage: 28 of 30 is over the 80 % warning.
    let fake = Fake::start(
        State::default(),
        answers(vec![
            (r#"AT+CPMS="SM","SM","SM""#, ok(&[])),
            (
                "AT+CPMS?",
                ok(&[r#"+CPMS: "SM",28,30,"SM",28,30,"SM",28,30"#]),
            ),
        ]),
    );
    let mut modem = Modem::start(settings(&fake.path));
    let full = wait_for(&mut modem.events, "StorageAlmostFull", |e| {
        matches!(e, ModemEvent::StorageAlmostFull(_))
    })
    .await;
    let ModemEvent::StorageAlmostFull(usage) = full else {
        unreachable!()
    };
    assert_eq!((usage.used, usage.total), (28, 30), "{usage:?}");
}

#[tokio::test]
async fn a_modem_without_an_smsc_fails_start_up_with_an_error_naming_the_smsc() {
    // `+CSCA: "",129` and no `[modem] smsc`: sends could only fail with CMS 330, so start-up
    // stops with an error saying what to configure, and is retried.
    let fake = Fake::start(
        State::default(),
        answers(vec![("AT+CSCA?", ok(&[r#"+CSCA: "",129"#]))]),
    );
    let mut modem = Modem::start(settings(&fake.path));
    let failed = wait_for(&mut modem.events, "InitFailed", |e| {
        matches!(e, ModemEvent::InitFailed(_))
    })
    .await;
    assert!(
        matches!(failed, ModemEvent::InitFailed(InitError::NoSmsc)),
        "{failed:?}"
    );
    let mut status = modem.handle.watch_status();
    let status = timeout(
        WAIT,
        status.wait_for(|status| matches!(status.state, LinkState::Waiting(_))),
    )
    .await
    .expect("waiting to retry")
    .expect("the driver runs")
    .clone();
    let LinkState::Waiting(reason) = &status.state else {
        unreachable!()
    };
    assert!(reason.contains("SMSC"), "{reason}");
    assert!(reason.contains("[modem] smsc"), "{reason}");
    assert_eq!(status.last_error.as_ref(), Some(reason));
}

#[tokio::test]
async fn the_pin_attempts_are_read_in_every_vendor_form_and_the_last_one_is_kept() {
    // Reference-independent forms of "one attempt left" (issue #14): 27.007 §8.65 `+CPINR`,
    // Huawei `^CPIN`, Quectel `+QPINC` (one line per facility) and SIMCom `+SPIC`; each modem
    // refuses the forms before its own.
    let not_supported = b"\r\nCOMMAND NOT SUPPORT\r\n".to_vec();
    let sim_pin = || ok(&["+CPIN: SIM PIN"]);
    for table in [
        vec![
            ("AT+CPIN?", sim_pin()),
            ("AT+CPINR=\"SIM PIN\"", ok(&["+CPINR: SIM PIN,1,3"])),
        ],
        vec![
            ("AT+CPIN?", sim_pin()),
            ("AT+CPINR=\"SIM PIN\"", not_supported.clone()),
            ("AT^CPIN?", ok(&["^CPIN: SIM PIN,1,10,1,10,3"])),
        ],
        vec![
            ("AT+CPIN?", sim_pin()),
            (
                "AT+QPINC?",
                ok(&[r#"+QPINC: "SC",1,10"#, r#"+QPINC: "P2",3,10"#]),
            ),
        ],
        vec![
            ("AT+CPIN?", sim_pin()),
            ("AT+SPIC", ok(&["+SPIC: 1,10,3,10"])),
        ],
    ] {
        let form = table.last().map_or("", |(command, _)| *command);
        let fake = Fake::start(State::default(), answers(table));
        let mut settings = settings(&fake.path);
        settings.init.pin = Some("1234".into());
        let mut modem = Modem::start(settings);
        let event = wait_for(&mut modem.events, "InitFailed", |e| {
            matches!(e, ModemEvent::InitFailed(_))
        })
        .await;
        assert!(
            matches!(
                &event,
                ModemEvent::InitFailed(InitError::PinWithheld {
                    reason: smsrelay::modem::pin::Withheld::FewAttempts(1),
                    ..
                })
            ),
            "{form}: {event:?}"
        );
        assert_eq!(
            fake.received("AT+CPIN=\"1234\""),
            0,
            "{form}: {:?}",
            fake.log()
        );
    }
}

// ---- USSD: the vendor forms of +CUSD (docs/at-sms.md §8) --------------------------------------

#[tokio::test]
async fn a_ussd_answer_is_read_in_every_vendor_form() {
    // (request line the modem expects, what it answers, the driver's request encoding). The
    // hex here was worked out by hand from TS 23.038, not with our codec.
    const TEXT: &str = "Balance: 12.50 EUR";
    let text_request = r#"AT+CUSD=1,"*100#",15"#;
    let packed_request = r#"AT+CUSD=1,"AA180C3602",15"#;
    let cases: Vec<(&str, &str, String, RequestEncoding)> = vec![
        (
            "plain text",
            text_request,
            format!("\r\nOK\r\n\r\n+CUSD: 0,\"{TEXT}\",15\r\n"),
            RequestEncoding::Text,
        ),
        (
            "Huawei packed GSM 7-bit hex, the request packed too",
            packed_request,
            "\r\nOK\r\n\r\n+CUSD: 0,\"C2303BEC1E9775A098CC5583818A5529\",15\r\n".into(),
            RequestEncoding::PackedHex,
        ),
        (
            "Huawei unpacked GSM 7-bit hex",
            text_request,
            "\r\nOK\r\n\r\n+CUSD: 0,\"42616C616E63653A2031322E353020455552\",15\r\n".into(),
            RequestEncoding::Text,
        ),
        (
            "UCS-2 hex",
            text_request,
            "\r\nOK\r\n\r\n+CUSD: 0,\"00420061006C0061006E00630065003A002000310032002E003500300020004500550052\",72\r\n".into(),
            RequestEncoding::Text,
        ),
        (
            "the answer before the OK, without a space after the colon",
            text_request,
            format!("\r\n+CUSD:0,\"{TEXT}\",15\r\n\r\nOK\r\n"),
            RequestEncoding::Text,
        ),
    ];
    for (form, request, answer, encoding) in cases {
        let fake = Fake::start(
            State::default(),
            answers(vec![(request, answer.into_bytes())]),
        );
        let mut settings = settings(&fake.path);
        settings.ussd_request = encoding;
        let modem = start_with(&fake, settings).await;
        let answer = modem.handle.ussd("*100#", WAIT).await;
        assert_eq!(
            answer.as_ref().map(|answer| answer.text.as_str()),
            Ok(TEXT),
            "{form}: {:?}",
            fake.log()
        );
        assert_eq!(fake.received(request), 1, "{form}");
    }
}

#[tokio::test]
async fn a_ussd_request_without_an_answer_times_out_clearly_and_cancels_the_session() {
    // The modem says OK to the request and never sends +CUSD.
    let fake = Fake::start(
        State::default(),
        answers(vec![(r#"AT+CUSD=1,"*100#",15"#, ok(&[]))]),
    );
    let modem = start(&fake).await;
    // A second request while one waits is refused, not queued behind it.
    let handle = modem.handle.clone();
    let waiting = tokio::spawn(async move { handle.ussd("*100#", WAIT).await });
    until("the first request is sent", || {
        fake.received(r#"AT+CUSD=1,"*100#",15"#) == 1
    })
    .await;
    assert_eq!(
        modem.handle.ussd("*100#", WAIT).await,
        Err(UssdFailure::Busy)
    );
    modem.handle.ussd_cancel().await.expect("driver runs");
    assert_eq!(waiting.await.ok(), Some(Err(UssdFailure::Stopped)));
    let started = std::time::Instant::now();
    let outcome = modem.handle.ussd("*100#", Duration::from_millis(500)).await;
    let error = outcome.expect_err("no answer");
    assert!(
        matches!(error, UssdFailure::Timeout(_)),
        "{error:?}: {}",
        error
    );
    assert!(
        error.to_string().contains("no USSD answer within"),
        "{error}"
    );
    assert!(started.elapsed() < WAIT);
    until("AT+CUSD=2 after the timeout", || {
        fake.received("AT+CUSD=2") == 1
    })
    .await;
}
