//! The mock modem's control interface for people and scripts: JSON lines over TCP.
//!
//! Each request is one JSON object on one line, `{"cmd": "...", ...}`; each answer is one line,
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Try it with
//! `echo '{"cmd":"inject_sms","from":"+447700900123","text":"hi"}' | nc 127.0.0.1 8641`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Engine, InboundSms, MockModem, ReportBehaviour, Submitted, UrcPoint, UssdEncoding, UssdScript,
};

/// A longer request line is refused: requests are small.
const MAX_REQUEST: usize = 64 * 1024;

/// One control request.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// An SMS from the network: split into parts when long.
    InjectSms {
        /// Sender: `+…`, digits, or a name such as "DHL".
        from: String,
        /// The text.
        text: String,
        /// Force UCS-2.
        #[serde(default)]
        ucs2: bool,
        /// Class 0.
        #[serde(default)]
        flash: bool,
        /// Concatenation reference.
        #[serde(default)]
        reference: u8,
    },
    /// A raw DELIVER PDU in hex, SMSC field first.
    InjectPdu {
        /// The PDU.
        hex: String,
    },
    /// What status reports say: `delivered`, `temporary_then_delivered`, `permanent_failure`,
    /// `none`.
    SetReport {
        /// The behaviour.
        mode: String,
    },
    /// The next `count` sends fail with `+CMS ERROR: code`.
    FailNextSends {
        /// How many.
        count: usize,
        /// The CMS code, e.g. 500.
        code: u16,
    },
    /// Time from Ctrl-Z to `+CMGS:`.
    SetSubmitDelay {
        /// Milliseconds.
        ms: u64,
    },
    /// A URC line, at once or at a point of the next exchange: `now`, `after_echo`,
    /// `before_final`, `after_final`, `before_prompt`, `after_submit`.
    InjectUrc {
        /// The line, e.g. `+CMTI: "SM",3` or `RING`.
        text: String,
        /// Where it goes; `now` by default.
        #[serde(default)]
        at: Option<String>,
    },
    /// Raw bytes at once (noise, half lines); `\r\n` in the JSON string are real line ends.
    InjectRaw {
        /// The bytes, as text.
        text: String,
    },
    /// Registration state (`+CREG` stat: 0, 1, 2, 3, 5).
    SetRegistration {
        /// The stat.
        stat: u8,
    },
    /// Signal (`+CSQ` rssi 0–31, 99).
    SetSignal {
        /// The rssi.
        rssi: u8,
    },
    /// Stop answering until the port is reopened.
    Hang,
    /// Ignore the next `count` command lines.
    DropNext {
        /// How many.
        count: usize,
    },
    /// Fill a storage to capacity.
    FillStorage {
        /// `SM`, `ME`, …
        memory: String,
    },
    /// Reboot: banners, settings forgotten.
    Reboot,
    /// Close the PTY and reappear under a new path after `gap_ms`.
    Disconnect {
        /// Milliseconds before the new device appears.
        #[serde(default)]
        gap_ms: u64,
    },
    /// The messages submitted so far, decoded.
    Submitted,
    /// The messages in a storage.
    Stored {
        /// `SM`, `ME`, `SR`, …
        memory: String,
    },
    /// The command lines received so far.
    Commands,
    /// The device path.
    Status,
    /// The SIM: `state` (`ready`, `pin`, `puk`, `blocked`), `pin_attempts`, `puk_attempts`.
    Sim,
    /// The PIN attempts left of a SIM that asks for its PIN (0 locks it: PUK).
    SetPinAttempts {
        /// Attempts left, 0 to 3.
        count: u8,
    },
    /// An incoming call: `RING` (`+CRING: VOICE` after `AT+CRC=1`) and `+CLIP` (after
    /// `AT+CLIP=1`) every `interval_ms`, `rings` times, then `NO CARRIER`.
    Call {
        /// The caller; absent or null for a withheld number.
        #[serde(default)]
        from: Option<String>,
        /// Rings before the caller gives up (default 3).
        #[serde(default)]
        rings: Option<u32>,
        /// Time between rings (default 3000).
        #[serde(default)]
        interval_ms: Option<u64>,
    },
    /// The caller hangs up now.
    EndCall,
    /// Whether a call rings, and the hang-ups (`AT+CHUP`, `ATH`) the host sent during calls.
    Calls,
    /// What USSD codes get: fields left out keep their value.
    SetUssd {
        /// The answer to any code but the menu's (the balance).
        #[serde(default)]
        balance: Option<String>,
        /// `text`, `packed_hex`, `unpacked_hex`, `ucs2`, or `profile` (Huawei: packed hex).
        #[serde(default)]
        encoding: Option<String>,
        /// Time from `OK` to `+CUSD:`.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// No answer at all.
        #[serde(default)]
        silent: Option<bool>,
        /// The code that opens the menu (`+CUSD: 1`).
        #[serde(default)]
        menu_code: Option<String>,
        /// The menu's prompt.
        #[serde(default)]
        menu_prompt: Option<String>,
    },
}

/// Accepts control connections until the listener fails; one thread per connection.
pub fn serve(modem: Arc<MockModem>, listener: TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let modem = Arc::clone(&modem);
                let spawned = std::thread::Builder::new()
                    .name("mock-control".into())
                    .spawn(move || {
                        if let Err(error) = connection(&modem, stream) {
                            debug!("mock control: connection ended: {error}");
                        }
                    });
                if let Err(error) = spawned {
                    warn!("mock control: cannot start a thread: {error}");
                }
            }
            Err(error) => warn!("mock control: accept failed: {error}"),
        }
    }
}

fn connection(modem: &MockModem, stream: TcpStream) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = io::Read::take(BufReader::new(stream), u64::MAX);
    let mut line = String::new();
    loop {
        line.clear();
        reader.set_limit(MAX_REQUEST as u64);
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(request) => handle(modem, request),
            Err(error) => json!({"ok": false, "error": format!("bad request: {error}")}),
        };
        writeln!(writer, "{answer}")?;
    }
}

/// Carries out one request.
pub fn handle(modem: &MockModem, request: Request) -> Value {
    match answer(modem, request) {
        Ok(Value::Null) => json!({"ok": true}),
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(other) => json!({"ok": true, "result": other}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// One small function per request; most are a single call on the engine.
fn answer(modem: &MockModem, request: Request) -> Result<Value, String> {
    match request {
        Request::InjectSms {
            from,
            text,
            ucs2,
            flash,
            reference,
        } => inject_sms(
            modem,
            InboundSms {
                from,
                text,
                ucs2,
                flash,
                reference,
            },
        ),
        Request::InjectPdu { hex } => inject_pdu(modem, &hex),
        Request::SetReport { mode } => set_report(modem, &mode),
        Request::FailNextSends { count, code } => {
            on_engine(modem, |engine, _| engine.fail_next_sends(count, code))
        }
        Request::SetSubmitDelay { ms } => on_engine(modem, |engine, _| {
            engine.set_submit_delay(Duration::from_millis(ms));
        }),
        Request::InjectUrc { text, at } => inject_urc(modem, &text, at.as_deref()),
        Request::InjectRaw { text } => {
            on_engine(modem, |engine, _| engine.inject_raw(text.as_bytes()))
        }
        Request::SetRegistration { stat } => {
            on_engine(modem, |engine, _| engine.set_registration(stat))
        }
        Request::SetSignal { rssi } => on_engine(modem, |engine, _| engine.set_signal(rssi)),
        Request::Hang => on_engine(modem, |engine, _| engine.hang()),
        Request::DropNext { count } => {
            on_engine(modem, |engine, _| engine.drop_next_commands(count))
        }
        Request::FillStorage { memory } => fill_storage(modem, &memory),
        Request::Reboot => on_engine(modem, |engine, now| engine.reboot(now)),
        Request::Disconnect { gap_ms } => {
            modem.disconnect(Duration::from_millis(gap_ms));
            Ok(Value::Null)
        }
        Request::Submitted => Ok(submitted(modem)),
        Request::Stored { memory } => Ok(stored(modem, &memory)),
        Request::Commands => Ok(json!({"commands": modem.commands()})),
        Request::Status => Ok(json!({"path": modem.path().display().to_string()})),
        Request::Sim => Ok(sim(modem)),
        Request::SetPinAttempts { count } => {
            on_engine(modem, |engine, _| engine.set_pin_attempts(count))
        }
        Request::Call {
            from,
            rings,
            interval_ms,
        } => {
            let from = from.filter(|number| !number.is_empty());
            modem.call(
                from.as_deref(),
                rings.unwrap_or(3),
                Duration::from_millis(interval_ms.unwrap_or(3000)),
            );
            Ok(Value::Null)
        }
        Request::EndCall => on_engine(modem, |engine, _| engine.caller_hangs_up()),
        Request::Calls => Ok(modem.with_engine(
            |engine, _| json!({"ringing": engine.call_ringing(), "hang_ups": engine.hang_ups()}),
        )),
        Request::SetUssd {
            balance,
            encoding,
            delay_ms,
            silent,
            menu_code,
            menu_prompt,
        } => {
            let encoding = match encoding.as_deref() {
                None => None,
                Some("profile") => Some(None),
                Some(name) => Some(Some(
                    UssdEncoding::from_name(name)
                        .ok_or_else(|| format!("unknown USSD encoding {name:?}"))?,
                )),
            };
            let mut script: UssdScript =
                modem.with_engine(|engine, _| engine.ussd_script().clone());
            if let Some(balance) = balance {
                script.balance = balance;
            }
            if let Some(encoding) = encoding {
                script.encoding = encoding;
            }
            if let Some(ms) = delay_ms {
                script.delay = Duration::from_millis(ms);
            }
            if let Some(silent) = silent {
                script.silent = silent;
            }
            if let Some(code) = menu_code {
                script.menu_code = code;
            }
            if let Some(prompt) = menu_prompt {
                script.menu_prompt = prompt;
            }
            modem.set_ussd(script);
            Ok(Value::Null)
        }
    }
}

/// A request that is one call on the engine and answers a bare `{"ok": true}`.
fn on_engine(modem: &MockModem, call: impl FnOnce(&mut Engine, Instant)) -> Result<Value, String> {
    modem.with_engine(call);
    Ok(Value::Null)
}

/// `inject_sms`: the number of parts the text became.
fn inject_sms(modem: &MockModem, sms: InboundSms) -> Result<Value, String> {
    let parts = modem.inject_sms(&sms).map_err(|e| e.to_string())?;
    Ok(json!({"parts": parts}))
}

/// `inject_pdu`: refused when the hex is not a PDU.
fn inject_pdu(modem: &MockModem, hex: &str) -> Result<Value, String> {
    modem.inject_pdu(hex).map_err(|e| e.to_string())?;
    Ok(Value::Null)
}

/// `set_report`: refused for a behaviour it does not know.
fn set_report(modem: &MockModem, mode: &str) -> Result<Value, String> {
    let behaviour: ReportBehaviour = mode.parse()?;
    on_engine(modem, |engine, _| engine.set_report(behaviour))
}

/// `inject_urc`: at once, or armed for a point of the next exchange.
fn inject_urc(modem: &MockModem, text: &str, at: Option<&str>) -> Result<Value, String> {
    let point = urc_point(at.unwrap_or("now"))?;
    on_engine(modem, |engine, _| engine.inject_urc(point, text))
}

/// The `at` of `inject_urc`.
fn urc_point(name: &str) -> Result<UrcPoint, String> {
    match name {
        "now" => Ok(UrcPoint::Now),
        "after_echo" => Ok(UrcPoint::AfterEcho),
        "before_final" => Ok(UrcPoint::BeforeFinal),
        "after_final" => Ok(UrcPoint::AfterFinal),
        "before_prompt" => Ok(UrcPoint::BeforePrompt),
        "after_submit" => Ok(UrcPoint::AfterSubmit),
        other => Err(format!("unknown point {other:?}")),
    }
}

/// `fill_storage`: every free slot gets a plain read DELIVER (vector E6).
fn fill_storage(modem: &MockModem, memory: &str) -> Result<Value, String> {
    let filler = crate::pdu::decode_hex(FILLER).map_err(|e| e.to_string())?;
    on_engine(modem, |engine, _| engine.fill_storage(memory, &filler))
}

/// `submitted`: the messages sent so far, decoded.
fn submitted(modem: &MockModem) -> Value {
    let messages: Vec<Value> = modem.submitted().iter().map(submitted_json).collect();
    json!({"messages": messages})
}

/// One sent message as `submitted` lists it.
fn submitted_json(message: &Submitted) -> Value {
    let submit = message.submit.as_ref();
    let concat = submit.and_then(|s| s.user_data.concat()).map(|c| {
        json!({
            "ref": c.reference.value(), "part": c.sequence, "total": c.total,
        })
    });
    json!({
        "reference": message.reference,
        "to": message.recipient,
        "text": message.text,
        "pdu": message.pdu_hex,
        "concat": concat,
        "status_report_requested": submit.map(|s| s.status_report_request),
    })
}

/// `stored`: the messages in one storage.
fn stored(modem: &MockModem, memory: &str) -> Value {
    let stored: Vec<Value> = modem
        .with_engine(|engine, _| engine.stored(memory))
        .into_iter()
        .map(|(index, stat, pdu)| json!({"index": index, "stat": stat, "pdu": pdu}))
        .collect();
    json!({"messages": stored})
}

/// `sim`: the SIM's state and the attempts left.
fn sim(modem: &MockModem) -> Value {
    let (state, pin, puk) = modem.with_engine(|engine, _| engine.sim_state());
    json!({"state": state, "pin_attempts": pin, "puk_attempts": puk})
}

/// Vector E6, a plain DELIVER, to fill storage with.
const FILLER: &str = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urc_points_by_name() {
        let check = |name: &str, expected: Result<UrcPoint, String>| {
            assert_eq!(urc_point(name), expected, "{name:?}");
        };
        check("now", Ok(UrcPoint::Now));
        check("after_echo", Ok(UrcPoint::AfterEcho));
        check("before_final", Ok(UrcPoint::BeforeFinal));
        check("after_final", Ok(UrcPoint::AfterFinal));
        check("before_prompt", Ok(UrcPoint::BeforePrompt));
        check("after_submit", Ok(UrcPoint::AfterSubmit));
        check("Now", Err("unknown point \"Now\"".into()));
        check("", Err("unknown point \"\"".into()));
    }

    #[test]
    fn a_sent_message_as_submitted_lists_it() {
        let message = Submitted {
            reference: 7,
            pdu_hex: String::new(),
            submit: None,
            recipient: "+447700900123".into(),
            text: "hi".into(),
        };
        assert_eq!(
            submitted_json(&message).to_string(),
            r#"{"reference":7,"to":"+447700900123","text":"hi","pdu":"","concat":null,"status_report_requested":null}"#
        );
    }
}
