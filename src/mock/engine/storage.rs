//! The message storages (`SM`, `ME`, `SR`, … as the profile has them): slots with a capacity
//! and the profile's index base, and the commands that choose, read, list and delete them
//! (`AT+CPMS`, `AT+CMGR`, `AT+CMGL`, `AT+CMGD`), in PDU and text mode.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::syntax::{Answer, Arg, Fail, number, unquote};
use super::{Engine, Scheduled};
use crate::mock::Profile;
use crate::pdu::{Pdu, Tpdu};

/// How long Huawei's `+CPMS?` counters lag behind a reception.
pub(super) const HUAWEI_CPMS_LAG: Duration = Duration::from_millis(500);

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stored {
    /// 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT.
    pub(super) stat: u8,
    /// SMSC field first.
    pub(super) pdu: Vec<u8>,
    /// When it arrived, for the Huawei counters that lag behind.
    pub(super) arrived: Option<Instant>,
}

/// One storage: its slots by index.
#[derive(Debug, Clone)]
pub(super) struct Memory {
    pub(super) capacity: usize,
    pub(super) slots: BTreeMap<usize, Stored>,
}

/// Every storage the profile has, by name.
#[derive(Debug, Clone)]
pub(super) struct Storages {
    pub(super) memories: BTreeMap<&'static str, Memory>,
}

impl Storages {
    /// The profile's storages, empty, with `capacity` slots each.
    pub(super) fn new(profile: Profile, capacity: usize) -> Storages {
        let memories = profile
            .memories()
            .into_iter()
            .map(|name| {
                let memory = Memory {
                    capacity,
                    slots: BTreeMap::new(),
                };
                (name, memory)
            })
            .collect();
        Storages { memories }
    }
}

impl Engine {
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
        self.storages
            .memories
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

    /// `AT+CPMS`, `AT+CMGR`, `AT+CMGL`, `AT+CMGD`.
    pub(super) fn storage_command(&mut self, name: &str, argument: Arg, now: Instant) -> Answer {
        match (name, argument) {
            ("+CPMS", Arg::Test) => {
                let names: Vec<String> = (self.storages.memories.keys())
                    .map(|name| format!("\"{name}\""))
                    .collect();
                let list = names.join(",");
                Ok(vec![format!("+CPMS: ({list}),({list}),({list})")])
            }
            ("+CPMS", Arg::Query) => {
                self.sms_ready(now)?;
                Ok(vec![self.cpms_query(now)])
            }
            ("+CPMS", Arg::Set(value)) => {
                self.sms_ready(now)?;
                self.set_cpms(&value, now)
            }
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
                self.cmgl(
                    if self.settings.cmgf == 0 {
                        "4"
                    } else {
                        "\"ALL\""
                    },
                    now,
                )
            }
            ("+CMGL", Arg::Test) => Ok(vec![if self.settings.cmgf == 0 {
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
                    .memory(&self.settings.cpms[0])
                    .map(|m| m.slots.keys().map(usize::to_string).collect())
                    .unwrap_or_default();
                Ok(vec![format!("+CMGD: ({}),(0-4)", used.join(","))])
            }
            _ => Err(self.unknown()),
        }
    }

    /// `+CPMS: "<mem1>",<used1>,<total1>,…` for the three memories in use.
    fn cpms_query(&self, now: Instant) -> String {
        let fields: Vec<String> = (self.settings.cpms.iter())
            .map(|name| {
                let (used, total) = self.usage(name, now);
                format!("\"{name}\",{used},{total}")
            })
            .collect();
        format!("+CPMS: {}", fields.join(","))
    }

    /// `AT+CPMS=<mem1>[,<mem2>[,<mem3>]]`: answers the counts of the three memories.
    fn set_cpms(&mut self, value: &str, now: Instant) -> Answer {
        let names: Vec<String> = value
            .split(',')
            .map(|v| unquote(v).to_ascii_uppercase())
            .collect();
        if names.is_empty()
            || names.len() > 3
            || names
                .iter()
                .any(|n| !self.storages.memories.contains_key(n.as_str()))
        {
            return Err(Fail::Cms(302));
        }
        for (slot, name) in names.into_iter().enumerate() {
            self.settings.cpms[slot] = name;
        }
        let counts: Vec<String> = self
            .settings
            .cpms
            .iter()
            .map(|name| {
                let (used, total) = self.usage(name, now);
                format!("{used},{total}")
            })
            .collect();
        Ok(vec![format!("+CPMS: {}", counts.join(","))])
    }

    /// Stores a PDU in the first free slot, or `None` when the memory is full.
    pub(super) fn store(
        &mut self,
        memory: &str,
        pdu: Vec<u8>,
        stat: u8,
        now: Instant,
    ) -> Option<usize> {
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

    /// Messages in storage `name` as `+CPMS` counts them, and its capacity.
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

    /// Storage `name`, if the profile has it.
    pub(super) fn memory(&self, name: &str) -> Option<&Memory> {
        self.storages.memories.get(name)
    }

    /// Storage `name` to change, if the profile has it.
    fn memory_mut(&mut self, name: &str) -> Option<&mut Memory> {
        self.storages.memories.get_mut(name)
    }

    /// The empty alpha field of `+CMGR`/`+CMGL` (`0,,43`), or nothing for modems that leave it
    /// out (`0,43`, gammu dump 07 and Pantech).
    fn alpha_field(&self) -> &'static str {
        if self.config.omit_alpha { "" } else { "," }
    }

    /// The `<index>` of `AT+CMGR`, or `+CMS ERROR: 321`.
    fn parse_index(&self, value: &str) -> Result<usize, Fail> {
        number(value.split(',').next().unwrap_or_default())
            .map(|n| n as usize)
            .ok_or(Fail::Cms(321))
    }

    /// `AT+CMGR=<index>`: one message of the read memory, which is then read.
    fn cmgr(&mut self, value: &str) -> Answer {
        let index = self.parse_index(value)?;
        let cmgf = self.settings.cmgf;
        let alpha = self.alpha_field();
        let memory = self.settings.cpms[0].clone();
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

    /// `AT+CMGL=<stat>`: the messages of the read memory with that status.
    fn cmgl(&mut self, value: &str, now: Instant) -> Answer {
        let wanted = list_status(self.settings.cmgf, value).ok_or(Fail::Cms(302))?;
        let cmgf = self.settings.cmgf;
        let alpha = self.alpha_field();
        let memory = self.settings.cpms[0].clone();
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
            self.answer_later(&lines, now + delay * listed);
            return Ok(vec![]);
        }
        Ok(lines)
    }

    /// The modem works on an answer until `when`, then writes `lines` and OK at once.
    fn answer_later(&mut self, lines: &[String], when: Instant) {
        let mut bytes = b"\r\n".to_vec();
        for line in lines {
            bytes.extend_from_slice(format!("{line}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\nOK\r\n");
        self.port.busy = true;
        let ends_busy = true;
        self.schedule
            .at(when, Scheduled::Write { bytes, ends_busy });
    }

    /// `AT+CMGD=<index>[,<delflag>]`.
    fn cmgd(&mut self, value: &str, now: Instant) -> Answer {
        let mut fields = value.split(',');
        let index = number(fields.next().unwrap_or_default()).map(|n| n as usize);
        let flag = fields.next().and_then(number).unwrap_or(0);
        let memory = self.settings.cpms[0].clone();
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
}

/// TPDU octets of a PDU that starts with the SMSC field: the `<length>` of `+CMGR`, `+CMT`.
pub(super) fn tpdu_length(pdu: &[u8]) -> usize {
    let smsc = pdu.first().map_or(0, |&len| usize::from(len) + 1);
    pdu.len().saturating_sub(smsc)
}

/// A stored message in text mode (`AT+CMGF=1`), far enough for common clients.
pub(super) fn text_mode_entry(index: Option<usize>, stored: &Stored) -> Vec<String> {
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

/// The `<stat>` of `AT+CMGL`: a number in PDU mode, a name in text mode; 4 is all.
fn list_status(cmgf: u8, value: &str) -> Option<u8> {
    if cmgf == 0 {
        return number(value).filter(|n| *n <= 4).map(|n| n as u8);
    }
    let names = ["REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL"];
    let wanted = unquote(value).to_ascii_uppercase();
    let position = names.iter().position(|name| *name == wanted)?;
    u8::try_from(position).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmgl_status_by_mode() {
        let check = |cmgf: u8, value: &str, expected: Option<u8>| {
            assert_eq!(list_status(cmgf, value), expected, "{cmgf} {value:?}");
        };
        check(0, "4", Some(4));
        check(0, " 0 ", Some(0));
        check(0, "5", None);
        check(0, "\"ALL\"", None);
        check(1, "\"REC UNREAD\"", Some(0));
        check(1, "\"rec read\"", Some(1));
        check(1, "\"STO UNSENT\"", Some(2));
        check(1, "STO SENT", Some(3));
        check(1, "\"ALL\"", Some(4));
        check(1, "4", None);
    }

    #[test]
    fn tpdu_length_leaves_out_the_smsc_field() {
        let check = |pdu: &[u8], expected: usize| assert_eq!(tpdu_length(pdu), expected);
        check(&[], 0);
        check(&[0x00, 0x11, 0x22], 2);
        check(&[0x02, 0x91, 0x44, 0x11], 1);
        check(&[0x07, 0x91], 0);
    }
}
