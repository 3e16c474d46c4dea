//! The network side: the radio (`AT+CFUN`), registration and its URCs, signal, operator, the
//! SMSC, sending (`AT+CMGS`, its prompt, the submit after Ctrl-Z and the answer after the
//! round trip), the status reports a send schedules, and where inbound messages and reports go
//! (`AT+CNMI` routing, storage, or a routed `+CMT`/`+CDS` that `AT+CNMA` must acknowledge in
//! time).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::debug;
use time::OffsetDateTime;

use super::storage::tpdu_length;
use super::syntax::{Answer, Arg, Fail, number, unquote};
use super::{Engine, Input, Scheduled, UrcPoint};
use crate::mock::Profile;
use crate::pdu::{self, Address, Pdu, Status, StatusReport, Submit, Timestamp, Tpdu};

/// How long Wavecom answers `+CME ERROR: 515` after `AT+CFUN=1`.
pub(super) const WAVECOM_CFUN_BUSY: Duration = Duration::from_secs(2);

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

/// The radio, the cell and the SMS traffic in flight.
#[derive(Debug)]
pub(super) struct Network {
    /// The SMSC the modem holds (`AT+CSCA`); it survives a reboot.
    pub(super) smsc: Option<String>,
    /// The `+CREG` stat: 0 not registered, 1 home, 5 roaming, …
    pub(super) registration: u8,
    /// Location area code and cell id, for `+CREG` mode 2.
    pub(super) lac: u16,
    pub(super) cell: u32,
    /// `+CSQ` rssi.
    pub(super) rssi: u8,
    /// `AT+CFUN`: 1 full, 0 or 4 radio off.
    pub(super) cfun: u8,
    /// The TP-MR of the next send; it wraps.
    pub(super) next_reference: u8,
    /// Inbound messages the network still holds (store full, routing off, or waiting for the
    /// `+CNMA` of the one before).
    pub(super) held_inbound: VecDeque<Vec<u8>>,
    /// The routed message waiting for `AT+CNMA`: its id and PDU.
    pub(super) awaiting_ack: Option<(u64, Vec<u8>)>,
    /// Ids given to routed messages so far.
    pub(super) routed_ids: u64,
    /// `+CMS ERROR` codes the next sends fail with.
    pub(super) fail_sends: VecDeque<u16>,
    /// Messages the host submitted, in order.
    pub(super) submitted: Vec<Submitted>,
}

impl Network {
    /// Registered at home with a good signal, the radio on.
    pub(super) fn new(smsc: Option<String>) -> Network {
        Network {
            smsc,
            registration: 1,
            lac: 0x5E25,
            cell: 0x605F,
            rssi: 21,
            cfun: 1,
            next_reference: 0,
            held_inbound: VecDeque::new(),
            awaiting_ack: None,
            routed_ids: 0,
            fail_sends: VecDeque::new(),
            submitted: Vec::new(),
        }
    }
}

impl Engine {
    /// The SMSC number the modem holds (`AT+CSCA`).
    pub fn smsc(&self) -> Option<String> {
        self.network.smsc.clone()
    }

    /// Messages the host submitted, in order.
    pub fn submitted(&self) -> &[Submitted] {
        &self.network.submitted
    }

    /// A message arrives from the network: a DELIVER PDU, SMSC field first.
    pub fn deliver_pdu(&mut self, pdu: Vec<u8>, now: Instant) {
        self.route_inbound(pdu, now);
    }

    /// The next `count` sends fail with `+CMS ERROR: <code>`.
    pub fn fail_next_sends(&mut self, count: usize, code: u16) {
        self.network
            .fail_sends
            .extend(std::iter::repeat_n(code, count));
    }

    /// Sets the status-report behaviour for messages sent from now on.
    pub fn set_report(&mut self, report: ReportBehaviour) {
        self.config.report = report;
    }

    /// Sets the time between Ctrl-Z and `+CMGS:`.
    pub fn set_submit_delay(&mut self, delay: Duration) {
        self.config.submit_delay = delay;
    }

    /// Registration changes; a URC follows when `+CREG`/`+CEREG` reporting is on.
    pub fn set_registration(&mut self, stat: u8) {
        self.network.registration = stat;
        for name in ["+CREG", "+CGREG", "+CEREG"] {
            if self.registration_mode(name) > 0 {
                let urc = self.registration_line(name, false);
                self.urc_or_arm(urc);
            }
        }
    }

    /// Signal changes (`+CSQ` rssi, 0–31 or 99).
    pub fn set_signal(&mut self, rssi: u8) {
        self.network.rssi = rssi;
    }

    /// `AT+CFUN`, registration, signal, operator, SMSC, `AT+CNMA` and `AT+CMMS`.
    pub(super) fn network_command(&mut self, name: &str, argument: Arg, now: Instant) -> Answer {
        match (name, argument) {
            ("+CFUN", Arg::Query) => Ok(vec![format!("+CFUN: {}", self.network.cfun)]),
            ("+CFUN", Arg::Test) => Ok(vec!["+CFUN: (0,1,4),(0,1)".into()]),
            ("+CFUN", Arg::Set(value)) => self.cfun(&value, now),
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Set(value)) => {
                let n = number(&value).filter(|n| *n <= 2).ok_or(Fail::Error)? as u8;
                *self.registration_mode_mut(name) = n;
                Ok(vec![])
            }
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Query) => {
                Ok(vec![self.registration_line(name, true)])
            }
            ("+CREG" | "+CGREG" | "+CEREG", Arg::Test) => Ok(vec![format!("{name}: (0-2)")]),
            ("+CSQ", Arg::Action) => Ok(vec![format!("+CSQ: {},99", self.network.rssi)]),
            ("+CSQ", Arg::Test) => Ok(vec!["+CSQ: (0-31,99),(0-7,99)".into()]),
            ("+COPS", Arg::Query) => Ok(vec![match self.network.registration {
                1 | 5 => "+COPS: 0,0,\"Mock Mobile\",7".into(),
                _ => "+COPS: 0".into(),
            }]),
            ("+COPS", Arg::Set(_)) => Ok(vec![]),
            ("+CSCA", Arg::Query) => {
                self.sms_ready(now)?;
                Ok(vec![csca_line(self.network.smsc.as_deref())])
            }
            ("+CSCA", Arg::Set(value)) => {
                let number = unquote(value.split(',').next().unwrap_or_default());
                self.network.smsc = (!number.is_empty()).then(|| number.to_string());
                Ok(vec![])
            }
            ("+CNMA", Arg::Action | Arg::Set(_)) => match self.network.awaiting_ack.take() {
                Some(_) => {
                    self.deliver_held(now);
                    Ok(vec![])
                }
                None => Err(Fail::Cms(340)),
            },
            ("+CMMS", _) => Err(if self.config.profile == Profile::Huawei {
                Fail::Cms(500)
            } else {
                Fail::Error
            }),
            _ => Err(self.unknown()),
        }
    }

    /// `AT+CFUN=<fun>[,<rst>]`: the radio off or on, or a reboot.
    pub(super) fn cfun(&mut self, value: &str, now: Instant) -> Answer {
        let mut fields = value.split(',').map(number);
        let fun = fields.next().flatten().ok_or(Fail::Error)?;
        let reset = fields.next().flatten() == Some(1);
        match (fun, reset) {
            (1, true) => {
                // OK first, then the reboot: banners and forgotten settings.
                self.schedule.at(now, Scheduled::Reboot);
                Ok(vec![])
            }
            (0 | 4, _) => {
                self.network.cfun = fun as u8;
                self.network.registration = 0;
                Ok(vec![])
            }
            (1, false) => {
                self.network.cfun = 1;
                self.network.registration = 1;
                if self.config.profile == Profile::Wavecom {
                    // Wavecom answers +CME ERROR: 515 for a while after AT+CFUN=1.
                    self.sim.device_busy_until = Some(now + WAVECOM_CFUN_BUSY);
                }
                Ok(vec![])
            }
            _ => Err(Fail::Cme(4)),
        }
    }

    /// The `<n>` reporting mode of `+CREG`, `+CGREG` or `+CEREG`.
    fn registration_mode(&self, name: &str) -> u8 {
        match name {
            "+CREG" => self.settings.creg_n,
            "+CGREG" => self.settings.cgreg_n,
            _ => self.settings.cereg_n,
        }
    }

    /// The `<n>` of `+CREG`, `+CGREG` or `+CEREG`, to set.
    fn registration_mode_mut(&mut self, name: &str) -> &mut u8 {
        match name {
            "+CREG" => &mut self.settings.creg_n,
            "+CGREG" => &mut self.settings.cgreg_n,
            _ => &mut self.settings.cereg_n,
        }
    }

    /// `+CREG: <n>,<stat>[,<lac>,<ci>]` as an answer, `+CREG: <stat>[,…]` as a URC.
    pub(super) fn registration_line(&self, name: &str, answer: bool) -> String {
        let n = self.registration_mode(name);
        let mut line = if answer {
            format!("{name}: {n},{}", self.network.registration)
        } else {
            format!("{name}: {}", self.network.registration)
        };
        if n == 2 {
            line.push(',');
            line.push_str(&self.location());
        }
        line
    }

    /// LAC and cell id as `+CREG` mode 2 gives them.
    fn location(&self) -> String {
        if self.config.profile == Profile::Huawei {
            // Huawei leaves LAC and CI unquoted.
            format!("{:X},{:X}", self.network.lac, self.network.cell)
        } else {
            format!("\"{:04X}\",\"{:04X}\"", self.network.lac, self.network.cell)
        }
    }

    /// `AT+CMGS=<length>` (PDU mode) or `AT+CMGS="<da>"` (text mode): the prompt, then the
    /// message is read in [`Input::Pdu`] or [`Input::Text`].
    pub(super) fn cmgs(&mut self, value: &str, now: Instant) -> Result<(), Fail> {
        self.sms_ready(now)?;
        let mode = if self.settings.cmgf == 0 {
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
        self.port.out.extend_from_slice(b"\r\n> ");
        self.port.mode = mode;
        Ok(())
    }

    /// The answer to a send, after the network round trip.
    fn answer_send(&mut self, result: Result<u8, Fail>, now: Instant) {
        self.fire_armed(UrcPoint::AfterSubmit);
        let text = match result {
            Ok(reference) => format!("\r\n+CMGS: {reference}\r\n\r\nOK\r\n"),
            Err(fail) => format!("\r\n{}\r\n", self.fail_text(fail)),
        };
        self.port.busy = true;
        let delay = self.config.submit_delay;
        self.schedule.at(
            now + delay,
            Scheduled::Write {
                bytes: text.into_bytes(),
                ends_busy: true,
            },
        );
    }

    /// Why a send fails before it leaves, if it does: an injected failure, no SMSC, no
    /// network, or (on some modems) a full store.
    fn check_send(&mut self, has_smsc: bool) -> Result<(), Fail> {
        if let Some(code) = self.network.fail_sends.pop_front() {
            return Err(Fail::Cms(code));
        }
        if !has_smsc && self.network.smsc.is_none() {
            return Err(Fail::Cms(330));
        }
        if !matches!(self.network.registration, 1 | 5) || self.network.cfun != 1 {
            return Err(Fail::Cms(331));
        }
        if self.config.send_needs_free_slot {
            let memory = self.settings.cpms[1].clone();
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

    /// The PDU after the prompt, at Ctrl-Z: checked, recorded, its reports scheduled.
    pub(super) fn submit_pdu(&mut self, length: usize, hex: &[u8], now: Instant) {
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
                self.network.submitted.push(Submitted {
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

    /// The text after the prompt in text mode, at Ctrl-Z.
    pub(super) fn submit_text(&mut self, recipient: &str, text: &[u8], now: Instant) {
        let body = String::from_utf8_lossy(text).into_owned();
        debug!("mock ← text for {recipient}: {body:?}");
        let result = self.check_send(false).map(|()| {
            let reference = self.next_reference();
            self.network.submitted.push(Submitted {
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

    /// The TP-MR for the next send, wrapping after 255.
    fn next_reference(&mut self) -> u8 {
        let reference = self.network.next_reference;
        self.network.next_reference = self.network.next_reference.wrapping_add(1);
        reference
    }

    /// The status reports the network will send back for a message that asked for one.
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
            self.schedule.at(when, Scheduled::Report(Box::new(report)));
        }
    }

    /// The SMSC field for PDUs the modem builds itself.
    fn smsc_field(&self) -> Option<Address> {
        self.network
            .smsc
            .as_deref()
            .and_then(|n| Address::from_number(n).ok())
    }

    /// A status report arrives: routed (`+CDS`), stored (`+CDSI`) or dropped, as CNMI ds says.
    pub(super) fn route_report(&mut self, report: StatusReport, now: Instant) {
        let pdu = Pdu {
            smsc: self.smsc_field(),
            tpdu: Tpdu::StatusReport(report),
        };
        let Ok(bytes) = pdu.encode() else { return };
        match self.settings.cnmi[3] {
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

    /// A message arrives: routed (`+CMT`), stored (`+CMTI`) or held, as CNMI mt and the class
    /// say (27.005 §3.4.1).
    pub(super) fn route_inbound(&mut self, bytes: Vec<u8>, now: Instant) {
        let class = Pdu::decode(&bytes)
            .ok()
            .and_then(|pdu| match pdu.tpdu {
                Tpdu::Deliver(deliver) => deliver.dcs.class(),
                _ => None,
            })
            .map(|class| class.number());
        let direct = match (self.settings.cnmi[1], class) {
            (2, Some(2)) => false,
            (2, _) => true,
            (3, Some(3)) => true,
            _ => false,
        };
        if direct {
            if self.network.awaiting_ack.is_some() {
                // One routed message at a time until it is acknowledged.
                self.network.held_inbound.push_back(bytes);
            } else {
                self.route_direct("+CMT", bytes, now);
            }
            return;
        }
        let memory = self.settings.cpms[2].clone();
        match self.store(&memory, bytes.clone(), 0, now) {
            Some(index) if self.settings.cnmi[1] != 0 => {
                let urc = format!("+CMTI: \"{memory}\",{index}");
                self.urc_or_arm(urc);
            }
            Some(_) => {}
            // Full: the network keeps the message and tries again after a delete.
            None => self.network.held_inbound.push_back(bytes),
        }
    }

    /// `+CMT`/`+CDS` with the PDU; with `AT+CSMS=1` the `+CNMA` deadline starts.
    fn route_direct(&mut self, kind: &str, bytes: Vec<u8>, now: Instant) {
        let urc = if kind == "+CMT" {
            format!("+CMT: ,{}", tpdu_length(&bytes))
        } else {
            format!("+CDS: {}", tpdu_length(&bytes))
        };
        let hex = hex::encode_upper(&bytes);
        if self.settings.csms == 1 {
            self.network.routed_ids += 1;
            let id = self.network.routed_ids;
            self.network.awaiting_ack = Some((id, bytes));
            let deadline = now + self.config.cnma_timeout;
            self.schedule.at(deadline, Scheduled::CnmaDeadline(id));
        }
        self.urc_or_arm(format!("{urc}\r\n{hex}"));
    }

    /// The routed message `id` was not acknowledged in time (27.005 §3.4.4): the modem turns
    /// routing off and the network keeps the message.
    pub(super) fn cnma_deadline(&mut self, id: u64) {
        if let Some((awaited, pdu)) = self
            .network
            .awaiting_ack
            .take_if(|(awaited, _)| *awaited == id)
        {
            // 27.005 §3.4.4: no ack in time makes the ME send RP-ERROR and set mt and ds to 0;
            // the SC tries again later, when routing is back.
            debug!("mock: no AT+CNMA for routed message {awaited}; CNMI mt/ds reset to 0");
            self.settings.cnmi[1] = 0;
            self.settings.cnmi[3] = 0;
            self.network.held_inbound.push_back(pdu);
        }
    }

    /// The network delivers what it held, if routing is on.
    pub(super) fn deliver_held(&mut self, now: Instant) {
        if self.settings.cnmi[1] == 0 {
            return;
        }
        let held = std::mem::take(&mut self.network.held_inbound);
        for bytes in held {
            self.route_inbound(bytes, now);
        }
    }
}

/// `+CSCA: "<sca>",<tosca>`: 145 for an international number, 129 otherwise or when empty.
fn csca_line(smsc: Option<&str>) -> String {
    match smsc {
        Some(number) => {
            let type_of_address = if number.starts_with('+') { 145 } else { 129 };
            format!("+CSCA: \"{number}\",{type_of_address}")
        }
        None => "+CSCA: \"\",129".into(),
    }
}
