//! Calls and USSD: an incoming call that rings (`RING`, or `+CRING: VOICE` after `AT+CRC=1`,
//! each followed by `+CLIP:` after `AT+CLIP=1`) until the caller hangs up (`NO CARRIER`) or
//! the host does (`AT+CHUP`, `ATH`; counted), and `AT+CUSD` with a scripted balance answer and
//! one menu (`+CUSD: 1`) that can be answered or cancelled (`AT+CUSD=2`). USSD answers come in
//! the encoding the control interface sets, by default the profile's: Huawei writes packed
//! GSM 7-bit hex and wants its requests that way, the others plain text.

use std::time::{Duration, Instant};

use super::syntax::{Answer, Arg, Fail, number, unquote};
use super::{Engine, Scheduled};
use crate::mock::profile::Profile;
use crate::pdu::gsm7;

/// How the mock writes a USSD answer's `<str>` and `<dcs>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UssdEncoding {
    /// Plain text, dcs 15.
    Text,
    /// Packed GSM 7-bit septets as hex, dcs 15 (Huawei sticks).
    PackedHex,
    /// One GSM 7-bit septet per octet as hex, dcs 15 (some Huawei and ZTE firmware).
    UnpackedHex,
    /// UTF-16BE as hex, dcs 72.
    Ucs2,
}

impl UssdEncoding {
    /// The control interface's word for an encoding.
    pub fn from_name(name: &str) -> Option<UssdEncoding> {
        match name {
            "text" => Some(UssdEncoding::Text),
            "packed_hex" => Some(UssdEncoding::PackedHex),
            "unpacked_hex" => Some(UssdEncoding::UnpackedHex),
            "ucs2" => Some(UssdEncoding::Ucs2),
            _ => None,
        }
    }
}

/// What the simulated network answers to USSD codes.
#[derive(Debug, Clone)]
pub struct UssdScript {
    /// The answer to any code but the menu's.
    pub balance: String,
    /// The code that opens the menu.
    pub menu_code: String,
    /// The menu's prompt (sent with `+CUSD: 1`).
    pub menu_prompt: String,
    /// (answer, final text) pairs of the menu.
    pub menu_options: Vec<(String, String)>,
    /// How answers are written; `None` for the profile's way.
    pub encoding: Option<UssdEncoding>,
    /// Time from `OK` to `+CUSD:`.
    pub delay: Duration,
    /// No answer at all (the network lost it): the host's timeout is tested with this.
    pub silent: bool,
}

impl Default for UssdScript {
    fn default() -> UssdScript {
        UssdScript {
            balance: "Your balance is 12.50 EUR, valid until 31.12.2026".into(),
            menu_code: "*123#".into(),
            menu_prompt: "1. Balance\n2. Bundles".into(),
            menu_options: vec![
                ("1".into(), "Balance: 12.50 EUR".into()),
                ("2".into(), "No bundles active".into()),
            ],
            encoding: None,
            delay: Duration::from_millis(300),
            silent: false,
        }
    }
}

/// The state of calls and USSD.
#[derive(Debug, Default)]
pub(super) struct Voice {
    /// `AT+CLIP=1`: caller id after each ring.
    clip: bool,
    /// `AT+CRC=1`: `+CRING: VOICE` instead of `RING`.
    crc: bool,
    /// The call ringing now.
    call: Option<IncomingCall>,
    /// Numbers calls so `Ring` events of an ended call are ignored.
    call_sequence: u64,
    /// Hang-ups the host sent while a call rang.
    pub(super) hang_ups: u32,
    /// The USSD answers.
    pub(super) script: UssdScript,
    /// A menu waits for the user's answer.
    menu_open: bool,
}

impl Voice {
    /// A reboot forgets the switches, the call and an open menu; the script stays.
    pub(super) fn reboot(&mut self) {
        self.clip = false;
        self.crc = false;
        self.call = None;
        self.menu_open = false;
    }
}

#[derive(Debug, Clone)]
struct IncomingCall {
    id: u64,
    number: Option<String>,
    rings_left: u32,
    interval: Duration,
}

impl Engine {
    /// `AT+CLIP`, `AT+CRC`, `AT+CHUP`, `ATH`, `ATA` and `AT+CUSD`.
    pub(super) fn voice_command(&mut self, name: &str, argument: Arg, now: Instant) -> Answer {
        match (name, argument) {
            ("+CLIP", Arg::Set(value)) => {
                self.voice.clip = number(&value).filter(|n| *n <= 1).ok_or(Fail::Error)? == 1;
                Ok(vec![])
            }
            ("+CLIP", Arg::Query) => Ok(vec![format!("+CLIP: {},1", u8::from(self.voice.clip))]),
            ("+CLIP", Arg::Test) => Ok(vec!["+CLIP: (0,1)".into()]),
            ("+CRC", Arg::Set(value)) => {
                self.voice.crc = number(&value).filter(|n| *n <= 1).ok_or(Fail::Error)? == 1;
                Ok(vec![])
            }
            ("+CRC", Arg::Query) => Ok(vec![format!("+CRC: {}", u8::from(self.voice.crc))]),
            ("+CRC", Arg::Test) => Ok(vec!["+CRC: (0,1)".into()]),
            ("+CHUP" | "H", _) => {
                // Every modem accepts a hang-up; only one during a call is counted.
                if self.voice.call.take().is_some() {
                    self.voice.hang_ups += 1;
                }
                Ok(vec![])
            }
            // Voice is not simulated: answering fails as if the caller had gone.
            ("A", _) => Err(Fail::Error),
            ("+CUSD", Arg::Set(value)) => self.cusd(&value, now),
            ("+CUSD", Arg::Query) => Ok(vec!["+CUSD: 1".into()]),
            ("+CUSD", Arg::Test) => Ok(vec!["+CUSD: (0-2)".into()]),
            _ => Err(self.unknown()),
        }
    }

    /// An incoming call from `number` (`None`: withheld) that rings `rings` times, one ring
    /// per `interval`, then the caller hangs up.
    pub fn incoming_call(
        &mut self,
        number: Option<String>,
        rings: u32,
        interval: Duration,
        now: Instant,
    ) {
        self.voice.call_sequence += 1;
        let id = self.voice.call_sequence;
        self.voice.call = Some(IncomingCall {
            id,
            number,
            rings_left: rings.max(1),
            interval,
        });
        self.schedule.at(now, Scheduled::Ring(id));
    }

    /// The caller hangs up now (`NO CARRIER`), if a call rings.
    pub fn caller_hangs_up(&mut self) {
        if self.voice.call.take().is_some() {
            self.urc_or_arm("NO CARRIER".into());
        }
    }

    /// Hang-ups (`AT+CHUP`, `ATH`) the host sent during a call.
    pub fn hang_ups(&self) -> u32 {
        self.voice.hang_ups
    }

    /// Whether a call rings now.
    pub fn call_ringing(&self) -> bool {
        self.voice.call.is_some()
    }

    /// Replaces the USSD script.
    pub fn set_ussd_script(&mut self, script: UssdScript) {
        self.voice.script = script;
    }

    /// The USSD script in force.
    pub fn ussd_script(&self) -> &UssdScript {
        &self.voice.script
    }

    /// A `Ring` event fell due: ring, and schedule the next ring or the caller's hang-up.
    pub(super) fn ring(&mut self, id: u64, now: Instant) {
        let Some(call) = self.voice.call.as_mut().filter(|call| call.id == id) else {
            return;
        };
        if call.rings_left == 0 {
            self.caller_hangs_up();
            return;
        }
        call.rings_left -= 1;
        let number = call.number.clone();
        let next = now + call.interval;
        self.urc_or_arm(
            if self.voice.crc {
                "+CRING: VOICE"
            } else {
                "RING"
            }
            .into(),
        );
        if self.voice.clip {
            self.urc_or_arm(match number {
                Some(number) if number.starts_with('+') => {
                    format!("+CLIP: \"{number}\",145,,,,0")
                }
                Some(number) => format!("+CLIP: \"{number}\",129,,,,0"),
                None => "+CLIP: \"\",128,,,,1".into(),
            });
        }
        // After the last ring the caller waits one more interval, then gives up.
        self.schedule.at(next, Scheduled::Ring(id));
    }

    /// `AT+CUSD=<n>[,<str>[,<dcs>]]`: OK now, the answer after the script's delay.
    fn cusd(&mut self, value: &str, now: Instant) -> Answer {
        let (mode, rest) = match value.split_once(',') {
            Some((mode, rest)) => (mode, Some(rest)),
            None => (value, None),
        };
        let mode = number(mode).filter(|n| *n <= 2).ok_or(Fail::Error)?;
        if mode == 2 {
            self.voice.menu_open = false;
            return Ok(vec![]);
        }
        let Some(rest) = rest else {
            return Ok(vec![]);
        };
        let request = match rest.rsplit_once(',') {
            Some((request, dcs)) if number(dcs).is_some() => request,
            _ => rest,
        };
        let request = unquote(request);
        let code = if self.config.profile == Profile::Huawei {
            // Huawei sticks take the request as packed GSM 7-bit hex only.
            packed_hex_text(request).ok_or(Fail::Error)?
        } else {
            request.to_string()
        };
        let script = &self.voice.script;
        let (status, text) = if self.voice.menu_open {
            self.voice.menu_open = false;
            let answer = script
                .menu_options
                .iter()
                .find(|(option, _)| *option == code)
                .map_or("Invalid choice", |(_, text)| text.as_str());
            (0, answer.to_string())
        } else if code == script.menu_code {
            self.voice.menu_open = true;
            (1, script.menu_prompt.clone())
        } else {
            (0, script.balance.clone())
        };
        if !script.silent {
            let encoding = script.encoding.unwrap_or(match self.config.profile {
                Profile::Huawei => UssdEncoding::PackedHex,
                _ => UssdEncoding::Text,
            });
            let (text, dcs) = encode_answer(&text, encoding);
            let line = format!("+CUSD: {status},\"{text}\",{dcs}");
            self.schedule.at(now + script.delay, Scheduled::Urc(line));
        }
        Ok(vec![])
    }
}

/// A request written as packed GSM 7-bit hex, read back as text (trailing CR padding dropped).
fn packed_hex_text(request: &str) -> Option<String> {
    let octets = hex::decode(request).ok()?;
    let septets = gsm7::unpack(&octets, 0, octets.len() * 8 / 7)?;
    let text = gsm7::decode(&septets);
    Some(text.trim_end_matches(['\r', '@']).to_string())
}

/// A USSD answer's `<str>` and `<dcs>` in `encoding`; text GSM 7-bit lacks goes as UCS-2.
fn encode_answer(text: &str, encoding: UssdEncoding) -> (String, u8) {
    let septets = gsm7::encode(text);
    match (encoding, septets) {
        (UssdEncoding::Text, Ok(_)) => (text.to_string(), 15),
        (UssdEncoding::PackedHex, Ok(septets)) => {
            let mut packed = gsm7::pack(&septets);
            gsm7::pad_with_cr(&mut packed, septets.len() * 7);
            (hex::encode_upper(packed), 15)
        }
        (UssdEncoding::UnpackedHex, Ok(septets)) => (hex::encode_upper(septets), 15),
        (UssdEncoding::Ucs2, _) | (_, Err(_)) => {
            let units: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
            (hex::encode_upper(units), 72)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_in_each_encoding() {
        assert_eq!(
            encode_answer("Hi 5", UssdEncoding::Text),
            ("Hi 5".into(), 15)
        );
        assert_eq!(
            encode_answer("Hi", UssdEncoding::Ucs2),
            ("00480069".into(), 72)
        );
        assert_eq!(
            encode_answer("Hi", UssdEncoding::UnpackedHex),
            ("4869".into(), 15)
        );
        assert_eq!(
            encode_answer("*100#", UssdEncoding::PackedHex),
            ("AA180C3602".into(), 15)
        );
        assert_eq!(encode_answer("п", UssdEncoding::Text), ("043F".into(), 72));
        assert_eq!(packed_hex_text("AA180C3602").as_deref(), Some("*100#"));
        assert_eq!(
            packed_hex_text("AA986CA68A8D1A").as_deref(),
            Some("*123*1#")
        );
        assert_eq!(packed_hex_text("*100#"), None);
    }
}
