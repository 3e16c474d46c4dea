//! The start-up sequence of docs/at-sms.md §2, run after every (re)open of the port: resync, echo
//! off, numeric errors, identity, SIM and PIN, registration, PDU mode, storage, indications,
//! SMSC. Each step tolerates what real modems do (banners, vendor errors, a SIM busy for a
//! while) and stops with a clear [`InitError`] where going on would be wrong: above all, a
//! wrong PIN is never tried twice, as three tries lock the SIM (across restarts too: the SIM's
//! ICCID is read before the PIN, the attempts left are checked, and a refusal is remembered in
//! the data dir, see [`super::pin`]).

use std::path::PathBuf;
use std::time::Duration;

use log::{debug, error, info, warn};
use tokio::time::{Instant, sleep};

use super::command::{AtCommand, ReadRegistration};
use super::pin::{self, PinDecision, RefusedPins, Withheld};
use crate::at::{
    CmeError, CmsError, Command, FinalResult, PinState, RegistrationStatus, Response, SessionError,
    SessionHandle, parse,
};

/// What the init needs from the `[modem]` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSettings {
    /// The modem's name, which starts every log line of the init; [`super::Modem::start`]
    /// sets it to [`super::ModemSettings::name`], so only a direct caller of [`init`] sets it.
    pub name: String,
    /// The SIM PIN, entered once when the SIM asks for it.
    pub pin: Option<String>,
    /// Where refused PINs are remembered across restarts (`data_dir/refused-pin.json`); `None`
    /// keeps no record (then only the attempts counter guards a restart).
    pub refused_pins: Option<PathBuf>,
    /// The storage to read, write and receive into (`SM`, `ME`, `MT`).
    pub storage: String,
    /// An SMSC to set when the modem has none (`+CSCA` empty).
    pub smsc: Option<String>,
    /// How long to wait for network registration before giving up on this attempt.
    pub registration_timeout: Duration,
    /// How long to wait for the SIM to become ready after the PIN (`+CME ERROR: 14`).
    pub sim_ready_timeout: Duration,
    /// The pause between polls of `AT+CPIN?` and `AT+CREG?` while waiting.
    pub poll_interval: Duration,
    /// How long an ordinary command may take.
    pub command_timeout: Duration,
    /// `AT+CNMI` parameters to use instead of [`CNMI_CHOICES`] (e.g. `2,2,0,1,0` to route
    /// messages directly on a modem whose storage misbehaves).
    pub cnmi: Option<String>,
}

impl Default for InitSettings {
    fn default() -> InitSettings {
        InitSettings {
            name: "modem1".into(),
            pin: None,
            refused_pins: None,
            storage: "SM".into(),
            smsc: None,
            registration_timeout: Duration::from_secs(60),
            sim_ready_timeout: Duration::from_secs(20),
            poll_interval: Duration::from_secs(1),
            command_timeout: Command::DEFAULT_TIMEOUT,
            cnmi: None,
        }
    }
}

/// Who the modem says it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `AT+CGMI`
    pub manufacturer: String,
    /// `AT+CGMM`
    pub model: String,
    /// `AT+CGMR`
    pub revision: String,
    /// `AT+CGSN`
    pub imei: String,
    /// `AT+CIMI`, when the SIM gives it.
    pub imsi: Option<String>,
    /// `AT+CCID` or a vendor form, when supported.
    pub iccid: Option<String>,
    /// The SIM's own number (`AT+CNUM`), when the SIM holds one; many do not.
    pub number: Option<String>,
}

/// The state the init left the modem in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The identity read at start-up.
    pub identity: Identity,
    /// The registration when the init finished.
    pub registration: RegistrationStatus,
    /// The `AT+CNMI` parameters in force, e.g. `2,1,0,2,0`.
    pub cnmi: String,
    /// The SMSC in the modem.
    pub smsc: String,
    /// The message service in force (`AT+CSMS?`): 1 means routed `+CMT`/`+CDS` need `AT+CNMA`.
    pub csms: u8,
    /// The storages the modem offers for reading (`AT+CPMS=?`, first group), e.g. `SM`, `SR`.
    pub memories: Vec<String>,
}

/// Where the init is, for a status line while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStage {
    /// Getting the modem to answer `AT`.
    Resync,
    /// Reading the identity.
    Identity,
    /// Waiting for the SIM (PIN, busy SIM).
    Sim,
    /// Waiting for network registration; the last status seen.
    Registration(RegistrationStatus),
    /// Setting PDU mode, storage, indications and the SMSC.
    Messaging,
}

/// Why the init stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    /// Nothing answered `AT`.
    #[error("the modem does not answer AT")]
    NoResponse,
    /// The session failed under us (port closed, I/O error).
    #[error("serial session: {0}")]
    Session(#[from] SessionError),
    /// The SIM wants a PIN and none is configured.
    #[error("the SIM asks for a PIN and [modem] pin is not set")]
    PinRequired,
    /// The configured PIN was refused (the SIM and the modem's answer). It is not tried again,
    /// at this start or any later one while the config holds the same PIN.
    #[error(
        "the SIM refused the configured PIN ({0}); not entering it again: set the right \
         [modem] pin, or run `smsrelay forget-refused-pin` if the SIM's PIN now matches the config"
    )]
    WrongPin(String),
    /// The configured PIN was not entered, to keep the SIM from its PUK.
    #[error("not entering the configured PIN ({sim}): {reason}")]
    PinWithheld {
        /// The SIM, as [`pin::sim_key`] names it.
        sim: String,
        /// Why, and what to do.
        reason: Withheld,
    },
    /// The SIM is locked and needs its PUK, which only a person should enter.
    #[error("the SIM is locked and needs its PUK (enter it with AT+CPIN=\"<puk>\",\"<new pin>\")")]
    PukRequired,
    /// The SIM is missing, failed, or in a state we do not handle.
    #[error("the SIM is not usable: {0}")]
    Sim(String),
    /// No registration before the deadline.
    #[error("not registered with a network after {waited:?} (last status {status:?})")]
    NotRegistered {
        /// How long we waited.
        waited: Duration,
        /// The last status seen.
        status: RegistrationStatus,
    },
    /// The modem has no SMSC and none is configured.
    #[error("the modem has no SMSC (AT+CSCA? is empty) and [modem] smsc is not set")]
    NoSmsc,
    /// A command every SMS modem supports was refused.
    #[error("{command} failed: {result}")]
    Refused {
        /// The command.
        command: String,
        /// Its final result.
        result: FinalResult,
    },
}

/// The CNMI settings to try, best first (docs/at-sms.md §2): messages and reports stored and
/// indicated; then reports routed directly; then no reports.
pub const CNMI_CHOICES: [&str; 3] = ["2,1,0,2,0", "2,1,0,1,0", "2,1,0,0,0"];

/// Runs the whole init sequence.
pub async fn init(handle: &SessionHandle, settings: &InitSettings) -> Result<Setup, InitError> {
    init_with_progress(handle, settings, &|_| {}).await
}

/// Runs the whole init sequence, telling `progress` each stage it enters.
pub async fn init_with_progress(
    handle: &SessionHandle,
    settings: &InitSettings,
    progress: &(dyn Fn(InitStage) + Sync),
) -> Result<Setup, InitError> {
    progress(InitStage::Resync);
    resync(handle, settings).await?;
    must(handle, "ATE0", settings).await?;
    must(handle, "AT+CMEE=1", settings).await?;
    progress(InitStage::Identity);
    let mut identity = identify(handle, settings).await?;
    progress(InitStage::Sim);
    let early_iccid = unlock_sim(handle, settings).await?;
    identity.imsi = first_line(handle, "AT+CIMI", settings).await?;
    identity.iccid = match early_iccid {
        Some(iccid) => Some(iccid),
        None => iccid(handle, settings).await?,
    };
    identity.number = own_number(handle, settings).await?;
    info!(
        "{}: {} {} ({}), IMEI {}",
        settings.name, identity.manufacturer, identity.model, identity.revision, identity.imei
    );
    let registration = wait_for_registration(handle, settings, progress).await?;
    progress(InitStage::Messaging);
    must(handle, "AT+CMGF=0", settings).await?;
    // Phase 2 (the ME acknowledges deliveries itself); modems without +CSMS keep their default.
    optional(handle, "AT+CSMS=0", settings).await?;
    let csms = execute(handle, Command::new("AT+CSMS?"), settings)
        .await?
        .line("+CSMS:")
        .and_then(|line| parse::csms(line).ok().flatten())
        .unwrap_or(0);
    let memories = memories(handle, settings).await?;
    let storage = &settings.storage;
    must(
        handle,
        &format!("AT+CPMS=\"{storage}\",\"{storage}\",\"{storage}\""),
        settings,
    )
    .await?;
    let cnmi = indications(handle, settings).await?;
    let smsc = smsc(handle, settings).await?;
    Ok(Setup {
        identity,
        registration,
        cnmi,
        smsc,
        csms,
        memories,
    })
}

/// The first group of `AT+CPMS=?`: `("SM","ME","SR"),(…),(…)` → `SM`, `ME`, `SR`.
async fn memories(
    handle: &SessionHandle,
    settings: &InitSettings,
) -> Result<Vec<String>, InitError> {
    let response = execute(handle, Command::new("AT+CPMS=?"), settings).await?;
    let Some(line) = response.line("+CPMS:") else {
        return Ok(Vec::new());
    };
    let body = line.trim_start_matches("+CPMS:").trim();
    let first = body
        .strip_prefix('(')
        .and_then(|rest| rest.split(')').next())
        .unwrap_or(body);
    Ok(first
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_string())
        .filter(|name| !name.is_empty())
        .collect())
}

/// ESC (cancels a prompt left open by a crashed run) and AT, until OK: up to 5 tries, as some
/// modems drop the first command after idle and banners may be in the way.
async fn resync(handle: &SessionHandle, settings: &InitSettings) -> Result<(), InitError> {
    for attempt in 1..=5 {
        let text = if attempt == 1 { "\u{1b}AT" } else { "AT" };
        match handle
            .execute(Command::new(text).with_timeout(Duration::from_secs(2)))
            .await
        {
            Ok(response) if response.result.is_ok() => return Ok(()),
            Ok(response) => debug!("{}: resync got {}", settings.name, response.result),
            Err(SessionError::Timeout { .. }) => {
                debug!("{}: no answer to AT ({attempt}/5)", settings.name)
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(InitError::NoResponse)
}

async fn identify(handle: &SessionHandle, settings: &InitSettings) -> Result<Identity, InitError> {
    Ok(Identity {
        manufacturer: first_line(handle, "AT+CGMI", settings)
            .await?
            .unwrap_or_default(),
        model: first_line(handle, "AT+CGMM", settings)
            .await?
            .unwrap_or_default(),
        revision: first_line(handle, "AT+CGMR", settings)
            .await?
            .unwrap_or_default(),
        imei: first_line(handle, "AT+CGSN", settings)
            .await?
            .unwrap_or_default(),
        imsi: None,
        iccid: None,
        number: None,
    })
}

/// `AT+CNUM`: the SIM's own number (LOX24's `to`, GatewayAPI's `receiver`), when it has one.
async fn own_number(
    handle: &SessionHandle,
    settings: &InitSettings,
) -> Result<Option<String>, InitError> {
    let response = execute(handle, Command::new("AT+CNUM"), settings).await?;
    Ok(response
        .info
        .iter()
        .filter(|line| line.trim_start().starts_with("+CNUM:"))
        .find_map(|line| parse::cnum(line).ok().flatten()))
}

/// `AT+CCID`, else the Huawei and Quectel forms.
async fn iccid(
    handle: &SessionHandle,
    settings: &InitSettings,
) -> Result<Option<String>, InitError> {
    for command in ["AT+CCID", "AT^ICCID?", "AT+QCCID"] {
        if let Some(line) = first_line(handle, command, settings).await? {
            return Ok(Some(line));
        }
    }
    Ok(None)
}

/// Waits for a ready SIM, entering the configured PIN when it asks: at most once, and not at all
/// when the SIM refused this PIN before or has fewer than [`pin::MIN_ATTEMPTS`] attempts left.
/// Returns the ICCID when it was read before the PIN.
async fn unlock_sim(
    handle: &SessionHandle,
    settings: &InitSettings,
) -> Result<Option<String>, InitError> {
    let deadline = Instant::now() + settings.sim_ready_timeout;
    let mut early_iccid = None;
    // The SIM the PIN was entered for, once it was.
    let mut entered_for: Option<String> = None;
    loop {
        let response = handle.execute(Command::new("AT+CPIN?")).await?;
        let state = response.line("+CPIN:").map(parse::cpin);
        match (state, &response.result) {
            (Some(Ok(PinState::Ready)), _) => return Ok(early_iccid),
            (Some(Ok(PinState::SimPin)), _) if entered_for.is_some() => {
                // The PIN was taken but the SIM still asks: treat as refused, never resend.
                let sim = entered_for.unwrap_or_default();
                remember_refusal(settings, &sim).await;
                return Err(InitError::WrongPin(format!(
                    "{sim}: still asking after the PIN"
                )));
            }
            (Some(Ok(PinState::SimPin)), _) => {
                let Some(pin) = &settings.pin else {
                    return Err(InitError::PinRequired);
                };
                let (iccid, sim) = enter_pin(handle, settings, pin).await?;
                early_iccid = iccid;
                entered_for = Some(sim);
            }
            (Some(Ok(PinState::SimPuk)), _) => return Err(InitError::PukRequired),
            (Some(Ok(other)), _) => return Err(InitError::Sim(format!("{other:?}"))),
            // SIM busy right after boot or the PIN: normal for a few seconds.
            (_, FinalResult::CmeError(CmeError::SimBusy)) => {}
            (_, FinalResult::CmeError(error)) => {
                return Err(InitError::Sim(error.description().to_string()));
            }
            (_, result) => debug!("{}: AT+CPIN? gave {result}", settings.name),
        }
        if Instant::now() >= deadline {
            return Err(InitError::Sim("the SIM did not become ready".into()));
        }
        sleep(settings.poll_interval).await;
    }
}

/// The SIM asks for its PIN: reads the ICCID and the attempts left, and enters the PIN once
/// unless [`pin::decide`] withholds it. Returns the ICCID (when read) and the SIM's key.
async fn enter_pin(
    handle: &SessionHandle,
    settings: &InitSettings,
    pin: &str,
) -> Result<(Option<String>, String), InitError> {
    // The ICCID names the SIM the record is about; most modems give it without
    // the PIN (it is on the card, outside the PIN's protection).
    let early_iccid = iccid(handle, settings).await?;
    let sim = pin::sim_key(early_iccid.as_deref());
    let attempts = pin_attempts(handle, settings).await?;
    let marks = match settings.refused_pins.clone() {
        Some(path) => off_the_runtime(move || RefusedPins::load(&path))
            .await
            .unwrap_or_else(Err),
        None => Ok(RefusedPins::default()),
    };
    if let PinDecision::Withhold(reason) = pin::decide(attempts, &marks, &sim, pin) {
        return Err(InitError::PinWithheld { sim, reason });
    }
    info!(
        "{}: entering the SIM PIN ({sim}, {} attempts left)",
        settings.name,
        attempts.map_or("unknown".into(), |left| left.to_string())
    );
    // Exactly once, never through the busy retry: a second wrong try is a step
    // closer to the PUK.
    let answer = handle
        .execute(Command::new(format!("AT+CPIN=\"{pin}\"")))
        .await?;
    match answer.result {
        FinalResult::Ok => {}
        FinalResult::CmeError(CmeError::SimBusy) => {
            return Err(InitError::Sim(
                "SIM busy while entering the PIN; not retrying it".into(),
            ));
        }
        other => {
            remember_refusal(settings, &sim).await;
            return Err(InitError::WrongPin(format!("{sim}: {other}")));
        }
    }
    info!("{}: SIM PIN accepted", settings.name);
    forget_refusal(settings, &sim, marks).await;
    Ok((early_iccid, sim))
}

/// The SIM PIN attempts left: `AT+CPINR="SIM PIN"` (3GPP TS 27.007 §8.65), else the Huawei,
/// Quectel and SIMCom forms; `None` when no form is answered.
async fn pin_attempts(
    handle: &SessionHandle,
    settings: &InitSettings,
) -> Result<Option<u8>, InitError> {
    /// One way of asking: the command, and what its answer lines say.
    type Form = (&'static str, fn(&str) -> Option<u8>);
    let forms: [Form; 4] = [
        ("AT+CPINR=\"SIM PIN\"", |line| {
            parse::cpinr(line).ok().flatten()
        }),
        ("AT^CPIN?", |line| parse::huawei_cpin(line).ok()),
        ("AT+QPINC?", |line| parse::qpinc(line).ok().flatten()),
        ("AT+SPIC", |line| parse::spic(line).ok()),
    ];
    for (command, attempts) in forms {
        let response = execute(handle, Command::new(command), settings).await?;
        if !response.result.is_ok() {
            continue;
        }
        if let Some(left) = response.info.iter().find_map(|line| attempts(line.trim())) {
            return Ok(Some(left));
        }
    }
    warn!(
        "{}: the SIM does not say how many PIN attempts are left",
        settings.name
    );
    Ok(None)
}

/// Runs file work (the record is synced to disk, a slow SD card can take a while) on a
/// blocking thread, so the driver's runtime never waits on it.
async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| format!("file task failed: {error}"))
}

/// Records that `sim` refused the configured PIN.
async fn remember_refusal(settings: &InitSettings, sim: &str) {
    let (Some(path), Some(pin)) = (settings.refused_pins.clone(), settings.pin.clone()) else {
        return;
    };
    let key = sim.to_string();
    let saved = off_the_runtime(move || {
        let _only_us = RECORD_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // An unreadable record is replaced: the refusal just seen is what matters now.
        let mut marks = RefusedPins::load(&path).unwrap_or_default();
        marks.mark(&key, &pin);
        marks
            .save(&path)
            .map_err(|why| format!("{}: {why}", path.display()))
    })
    .await
    .and_then(|saved| saved);
    match saved {
        Ok(()) => info!(
            "{}: remembered that {sim} refused the configured PIN",
            settings.name
        ),
        Err(why) => {
            error!(
                "{}: cannot record the refused PIN ({why}); a restart may enter it again",
                settings.name
            )
        }
    }
}

/// The refused-PIN record is one file for every modem's driver: each read-change-write of it
/// holds this lock, so two drivers (several modems start together) never lose each other's
/// change or interleave their writes of the temporary file.
static RECORD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Drops `sim`'s mark once its PIN was accepted (an older, different PIN's mark).
async fn forget_refusal(settings: &InitSettings, sim: &str, marks: Result<RefusedPins, String>) {
    let (Some(path), Ok(marks)) = (settings.refused_pins.clone(), marks) else {
        return;
    };
    if !marks.is_marked(sim) {
        return;
    }
    let key = sim.to_string();
    let saved = off_the_runtime(move || {
        let _only_us = RECORD_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Read again under the lock: another driver may have changed it since.
        let mut marks =
            RefusedPins::load(&path).map_err(|why| format!("{}: {why}", path.display()))?;
        if !marks.clear(&key) {
            return Ok(());
        }
        marks
            .save(&path)
            .map_err(|why| format!("{}: {why}", path.display()))
    })
    .await
    .and_then(|saved| saved);
    if let Err(why) = saved {
        warn!(
            "{}: cannot update the refused-PIN record ({why})",
            settings.name
        );
    }
}

/// Polls CREG and CEREG until either says registered (LTE-only sticks show it in CEREG only).
async fn wait_for_registration(
    handle: &SessionHandle,
    settings: &InitSettings,
    progress: &(dyn Fn(InitStage) + Sync),
) -> Result<RegistrationStatus, InitError> {
    let started = Instant::now();
    let mut last = RegistrationStatus::Unknown;
    loop {
        for eps in [false, true] {
            let command = ReadRegistration { eps };
            let response = execute(handle, command.command(), settings).await?;
            let status = command
                .parse(&response)
                .map(|registration| registration.status);
            if let Some(status) = status {
                if status.is_registered() {
                    return Ok(status);
                }
                last = status;
            }
        }
        let waited = started.elapsed();
        if waited >= settings.registration_timeout {
            return Err(InitError::NotRegistered {
                waited,
                status: last,
            });
        }
        info!("{}: waiting for the network ({last:?})", settings.name);
        progress(InitStage::Registration(last));
        sleep(settings.poll_interval).await;
    }
}

/// The configured CNMI, else the best one the modem accepts.
async fn indications(handle: &SessionHandle, settings: &InitSettings) -> Result<String, InitError> {
    let mut last = FinalResult::Error;
    let choices = match &settings.cnmi {
        Some(configured) => vec![configured.as_str()],
        None => CNMI_CHOICES.to_vec(),
    };
    for choice in choices {
        let response = execute(handle, Command::new(format!("AT+CNMI={choice}")), settings).await?;
        if response.result.is_ok() {
            return Ok(choice.to_string());
        }
        warn!(
            "{}: AT+CNMI={choice} refused ({}), trying the next",
            settings.name, response.result
        );
        last = response.result;
    }
    Err(InitError::Refused {
        command: "AT+CNMI".into(),
        result: last,
    })
}

async fn smsc(handle: &SessionHandle, settings: &InitSettings) -> Result<String, InitError> {
    let response = execute(handle, Command::new("AT+CSCA?"), settings).await?;
    let current = response
        .line("+CSCA:")
        .and_then(|line| parse::csca(line).ok())
        .flatten();
    match (current, &settings.smsc) {
        (Some(number), _) => Ok(number),
        (None, Some(number)) => {
            let kind = if number.starts_with('+') { 145 } else { 129 };
            must(handle, &format!("AT+CSCA=\"{number}\",{kind}"), settings).await?;
            Ok(number.clone())
        }
        (None, None) => Err(InitError::NoSmsc),
    }
}

/// Runs a command, and again while the SIM or the modem says it is busy: right after the PIN
/// or a boot, SMS commands answer `+CME ERROR: 14` for seconds (python-gsmmodem issue 11;
/// smstools `pinsleeptime`), and Wavecom answers 515 after `AT+CFUN=1`.
async fn execute(
    handle: &SessionHandle,
    command: Command,
    settings: &InitSettings,
) -> Result<Response, SessionError> {
    let deadline = Instant::now() + settings.sim_ready_timeout;
    let command = command.with_timeout(settings.command_timeout);
    loop {
        let response = handle.execute(command.clone()).await?;
        let busy = matches!(
            response.result,
            FinalResult::CmeError(CmeError::SimBusy | CmeError::DeviceBusy)
                | FinalResult::CmsError(CmsError::SimBusy | CmsError::InitInProgress)
        );
        if !busy || Instant::now() >= deadline {
            return Ok(response);
        }
        debug!(
            "{}: {} answered {}, waiting",
            settings.name,
            command.text(),
            response.result
        );
        sleep(settings.poll_interval).await;
    }
}

/// A command that must succeed.
async fn must(
    handle: &SessionHandle,
    command: &str,
    settings: &InitSettings,
) -> Result<Vec<String>, InitError> {
    let response = execute(handle, Command::new(command), settings).await?;
    response.into_ok().map_err(|result| InitError::Refused {
        command: command.to_string(),
        result,
    })
}

/// A command whose refusal is fine.
async fn optional(
    handle: &SessionHandle,
    command: &str,
    settings: &InitSettings,
) -> Result<(), InitError> {
    let response = execute(handle, Command::new(command), settings).await?;
    if !response.result.is_ok() {
        debug!(
            "{}: {command} refused ({}), carrying on",
            settings.name, response.result
        );
    }
    Ok(())
}

/// The first information line of a command, without a `+XXX:` prefix; `None` when refused.
async fn first_line(
    handle: &SessionHandle,
    command: &str,
    settings: &InitSettings,
) -> Result<Option<String>, InitError> {
    let response = execute(handle, Command::new(command), settings).await?;
    if !response.result.is_ok() {
        return Ok(None);
    }
    Ok(response
        .info
        .first()
        .map(|line| strip_prefix(line).to_string()))
}

/// `+CGMI: huawei` → `huawei`; Wavecom's leading spaces go too.
fn strip_prefix(line: &str) -> &str {
    let line = line.trim();
    match line.split_once(':') {
        Some((prefix, value)) if prefix.starts_with(['+', '^']) && !prefix.contains(' ') => {
            value.trim().trim_matches('"')
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn identity_lines_lose_their_prefix() {
        for (line, value) in [
            ("huawei", "huawei"),
            ("+CGMI: SIMCOM_Ltd", "SIMCOM_Ltd"),
            ("  WAVECOM MODEM", "WAVECOM MODEM"),
            ("+CCID: 8900101234567890123", "8900101234567890123"),
            ("^ICCID: \"8900101234567890123\"", "8900101234567890123"),
            ("Revision: 1.0", "Revision: 1.0"),
        ] {
            assert_eq!(strip_prefix(line), value, "{line:?}");
        }
    }
}
