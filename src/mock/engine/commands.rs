//! Which handler a command goes to: [`Engine::command`] splits a command into its name and
//! form and hands it to the handler of its area. The basic V.250 commands, the identity of the
//! device and the SMS settings are answered here; the SIM's commands in `sim`, the storages'
//! in `storage`, the network's in `network`.

use std::time::Instant;

use super::syntax::{Answer, Arg, Fail, number, split_name, unquote};
use super::{Engine, Settings};

impl Engine {
    /// One command of a line, without `AT`: `+CMGF=0`, `E0`, `+CPMS?`.
    pub(super) fn command(&mut self, command: &str, now: Instant) -> Answer {
        let upper = command.to_ascii_uppercase();
        let (name, argument) = split_name(&upper, command);
        match name.as_str() {
            "" | "E" | "V" | "Q" | "&C" | "&D" | "&K" | "S0" | "X" | "Z" | "&F" => {
                self.basic_command(&name, argument)
            }
            "+CHUP" | "H" | "A" | "+CLIP" | "+CRC" | "+CUSD" => {
                self.voice_command(&name, argument, now)
            }
            "I" | "+CGMI" | "+GMI" | "+CGMM" | "+GMM" | "+CGMR" | "+GMR" | "+CGSN" | "+GSN" => {
                self.identity_command(&name, argument)
            }
            "+CIMI" | "+CNUM" | "+CCID" | "^ICCID" | "+QCCID" | "+ICCID" | "+CPIN" | "+CPINR"
            | "^CPIN" => self.sim_command(&name, argument, now),
            "+CMEE" | "+CMGF" | "+CSCS" | "+CSMS" | "+CNMI" | "+CSMP" | "+CSDH" | "^CURC"
            | "+CIURC" | "+QURCCFG" | "+CSCB" => self.settings_command(&name, argument, now),
            "+CPMS" | "+CMGR" | "+CMGL" | "+CMGD" => self.storage_command(&name, argument, now),
            "+CFUN" | "+CREG" | "+CGREG" | "+CEREG" | "+CSQ" | "+COPS" | "+CSCA" | "+CNMA"
            | "+CMMS" => self.network_command(&name, argument, now),
            _ => Err(self.unknown()),
        }
    }

    /// The answer to a command (or a form of one) this modem does not have.
    pub(super) fn unknown(&self) -> Fail {
        if self.config.profile.says_not_supported() {
            Fail::NotSupported
        } else {
            Fail::Error
        }
    }

    /// V.250 basics: echo, the switches everyone sends and this modem ignores, and resets.
    fn basic_command(&mut self, name: &str, argument: Arg) -> Answer {
        match (name, argument) {
            ("", Arg::None) => Ok(vec![]),
            ("E", Arg::Basic(value)) => {
                if !self.config.ignore_ate0 {
                    self.settings.echo = value != 0;
                }
                Ok(vec![])
            }
            ("V" | "Q" | "&C" | "&D" | "&K" | "S0" | "X", _) => Ok(vec![]),
            ("Z" | "&F", _) => {
                // The profile's settings, not the SIM: the PIN stays entered.
                self.settings.echo = true;
                self.settings.cmee = 0;
                self.settings.cnmi = [0; 5];
                self.settings.cmgf = self.config.profile.default_cmgf();
                Ok(vec![])
            }
            _ => Err(self.unknown()),
        }
    }

    /// Who made the device, which model, firmware and IMEI.
    fn identity_command(&self, name: &str, argument: Arg) -> Answer {
        let profile = self.config.profile;
        match (name, argument) {
            ("I", _) => Ok(vec![
                profile.manufacturer().into(),
                profile.model().into(),
                format!("Revision: {}", profile.revision()),
            ]),
            ("+CGMI" | "+GMI", Arg::Action) => Ok(vec![profile.manufacturer().into()]),
            ("+CGMM" | "+GMM", Arg::Action) => Ok(vec![profile.model().into()]),
            ("+CGMR" | "+GMR", Arg::Action) => Ok(vec![profile.revision().into()]),
            ("+CGSN" | "+GSN", Arg::Action) => Ok(vec![profile.imei().into()]),
            ("+CGMI" | "+CGMM" | "+CGMR" | "+CGSN", Arg::Test) => Ok(vec![]),
            _ => Err(self.unknown()),
        }
    }

    /// The SMS settings (27.005 §3.1, §3.3) and the error and URC switches.
    fn settings_command(&mut self, name: &str, argument: Arg, now: Instant) -> Answer {
        let settings = &mut self.settings;
        match (name, argument) {
            ("+CMEE", Arg::Set(value)) => {
                settings.cmee = number(&value).filter(|n| *n <= 2).ok_or(Fail::Error)? as u8;
                Ok(vec![])
            }
            ("+CMEE", Arg::Query) => Ok(vec![format!("+CMEE: {}", settings.cmee)]),
            ("+CMEE", Arg::Test) => Ok(vec!["+CMEE: (0-2)".into()]),
            ("+CMGF", Arg::Set(value)) => {
                settings.cmgf = number(&value).filter(|n| *n <= 1).ok_or(Fail::Error)? as u8;
                Ok(vec![])
            }
            ("+CMGF", Arg::Query) => Ok(vec![format!("+CMGF: {}", settings.cmgf)]),
            ("+CMGF", Arg::Test) => Ok(vec!["+CMGF: (0,1)".into()]),
            ("+CSCS", Arg::Set(value)) => set_charset(settings, &value),
            ("+CSCS", Arg::Query) => Ok(vec![format!("+CSCS: \"{}\"", settings.cscs)]),
            ("+CSCS", Arg::Test) => Ok(vec!["+CSCS: (\"IRA\",\"GSM\",\"UCS2\")".into()]),
            ("+CSMS", Arg::Set(value)) => {
                let lowest = u32::from(self.config.phase2plus_only);
                settings.csms = number(&value)
                    .filter(|n| (lowest..=1).contains(n))
                    .ok_or(Fail::Cms(303))? as u8;
                Ok(vec![format!("+CSMS: 1,1,1")])
            }
            ("+CSMS", Arg::Query) => Ok(vec![format!("+CSMS: {},1,1,1", settings.csms)]),
            ("+CSMS", Arg::Test) => Ok(vec!["+CSMS: (0,1)".into()]),
            ("+CNMI", Arg::Set(value)) => self.set_cnmi(&value, now),
            ("+CNMI", Arg::Query) => {
                let [mode, mt, bm, ds, bfr] = settings.cnmi;
                Ok(vec![format!("+CNMI: {mode},{mt},{bm},{ds},{bfr}")])
            }
            ("+CNMI", Arg::Test) => Ok(vec!["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)".into()]),
            ("+CSMP", Arg::Set(_)) => Ok(vec![]),
            ("+CSMP", Arg::Query) => Ok(vec!["+CSMP: 17,167,0,0".into()]),
            ("+CSDH", Arg::Set(_)) => Ok(vec![]),
            ("+CSDH", Arg::Query) => Ok(vec!["+CSDH: 0".into()]),
            ("^CURC", Arg::Set(value)) => {
                // Huawei's switch for its periodic ^RSSI/^HCSQ noise (gammu and ModemManager
                // send AT^CURC=0).
                settings.quiet = number(&value) == Some(0);
                Ok(vec![])
            }
            ("^CURC" | "+CIURC" | "+QURCCFG" | "+CSCB", _) => Ok(vec![]),
            _ => Err(self.unknown()),
        }
    }

    /// `AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>` (empty fields kept); held messages follow.
    pub(super) fn set_cnmi(&mut self, value: &str, now: Instant) -> Answer {
        let mut cnmi = self.settings.cnmi;
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
        self.settings.cnmi = cnmi;
        self.deliver_held(now);
        Ok(vec![])
    }
}

/// `AT+CSCS=<chset>`: one of the character sets 27.007 §5.5 names.
fn set_charset(settings: &mut Settings, value: &str) -> Answer {
    let charset = unquote(value).to_ascii_uppercase();
    if !["GSM", "IRA", "UCS2", "HEX", "8859-1", "PCCP437"].contains(&charset.as_str()) {
        return Err(Fail::Cme(4));
    }
    settings.cscs = charset;
    Ok(vec![])
}
