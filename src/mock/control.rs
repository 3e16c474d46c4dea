//! The mock modem's control interface for people and scripts: JSON lines over TCP.
//!
//! Each request is one JSON object on one line, `{"cmd": "...", ...}`; each answer is one line,
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Try it with
//! `echo '{"cmd":"inject_sms","from":"+447700900123","text":"hi"}' | nc 127.0.0.1 8641`.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{InboundSms, MockModem, ReportBehaviour, UrcPoint};

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

fn answer(modem: &MockModem, request: Request) -> Result<Value, String> {
    match request {
        Request::InjectSms {
            from,
            text,
            ucs2,
            flash,
            reference,
        } => {
            let sms = InboundSms {
                from,
                text,
                ucs2,
                flash,
                reference,
            };
            let parts = modem.inject_sms(&sms).map_err(|e| e.to_string())?;
            Ok(json!({"parts": parts}))
        }
        Request::InjectPdu { hex } => {
            modem.inject_pdu(&hex).map_err(|e| e.to_string())?;
            Ok(Value::Null)
        }
        Request::SetReport { mode } => {
            let behaviour: ReportBehaviour = mode.parse()?;
            modem.with_engine(|engine, _| engine.set_report(behaviour));
            Ok(Value::Null)
        }
        Request::FailNextSends { count, code } => {
            modem.with_engine(|engine, _| engine.fail_next_sends(count, code));
            Ok(Value::Null)
        }
        Request::SetSubmitDelay { ms } => {
            modem.with_engine(|engine, _| engine.set_submit_delay(Duration::from_millis(ms)));
            Ok(Value::Null)
        }
        Request::InjectUrc { text, at } => {
            let point = match at.as_deref().unwrap_or("now") {
                "now" => UrcPoint::Now,
                "after_echo" => UrcPoint::AfterEcho,
                "before_final" => UrcPoint::BeforeFinal,
                "after_final" => UrcPoint::AfterFinal,
                "before_prompt" => UrcPoint::BeforePrompt,
                "after_submit" => UrcPoint::AfterSubmit,
                other => return Err(format!("unknown point {other:?}")),
            };
            modem.with_engine(|engine, _| engine.inject_urc(point, &text));
            Ok(Value::Null)
        }
        Request::InjectRaw { text } => {
            modem.with_engine(|engine, _| engine.inject_raw(text.as_bytes()));
            Ok(Value::Null)
        }
        Request::SetRegistration { stat } => {
            modem.with_engine(|engine, _| engine.set_registration(stat));
            Ok(Value::Null)
        }
        Request::SetSignal { rssi } => {
            modem.with_engine(|engine, _| engine.set_signal(rssi));
            Ok(Value::Null)
        }
        Request::Hang => {
            modem.with_engine(|engine, _| engine.hang());
            Ok(Value::Null)
        }
        Request::DropNext { count } => {
            modem.with_engine(|engine, _| engine.drop_next_commands(count));
            Ok(Value::Null)
        }
        Request::FillStorage { memory } => {
            // A plain read DELIVER (vector E6) fills every slot.
            let filler = crate::pdu::decode_hex(FILLER).map_err(|e| e.to_string())?;
            modem.with_engine(|engine, _| engine.fill_storage(&memory, &filler));
            Ok(Value::Null)
        }
        Request::Reboot => {
            modem.with_engine(|engine, now| engine.reboot(now));
            Ok(Value::Null)
        }
        Request::Disconnect { gap_ms } => {
            modem.disconnect(Duration::from_millis(gap_ms));
            Ok(Value::Null)
        }
        Request::Submitted => {
            let messages: Vec<Value> = modem
                .submitted()
                .into_iter()
                .map(|message| {
                    json!({
                        "reference": message.reference,
                        "to": message.recipient,
                        "text": message.text,
                        "pdu": message.pdu_hex,
                        "concat": message.submit.as_ref().and_then(|s| s.user_data.concat()).map(|c| json!({
                            "ref": c.reference.value(), "part": c.sequence, "total": c.total,
                        })),
                        "status_report_requested": message.submit.as_ref().map(|s| s.status_report_request),
                    })
                })
                .collect();
            Ok(json!({"messages": messages}))
        }
        Request::Stored { memory } => {
            let stored: Vec<Value> = modem
                .with_engine(|engine, _| engine.stored(&memory))
                .into_iter()
                .map(|(index, stat, pdu)| json!({"index": index, "stat": stat, "pdu": pdu}))
                .collect();
            Ok(json!({"messages": stored}))
        }
        Request::Commands => Ok(json!({"commands": modem.commands()})),
        Request::Status => Ok(json!({"path": modem.path().display().to_string()})),
        Request::Sim => {
            let (state, pin, puk) = modem.with_engine(|engine, _| engine.sim_state());
            Ok(json!({"state": state, "pin_attempts": pin, "puk_attempts": puk}))
        }
        Request::SetPinAttempts { count } => {
            modem.with_engine(|engine, _| engine.set_pin_attempts(count));
            Ok(Value::Null)
        }
    }
}

/// Vector E6, a plain DELIVER, to fill storage with.
const FILLER: &str = "0791447700090010040C914477000910320000423051410354401BCD72990E0AD34131986E06FB81A465383B0FCA16A72FE713";
