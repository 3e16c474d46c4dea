//! The guard that keeps a wrong SIM PIN from being entered twice, across restarts too.
//!
//! A SIM allows three wrong PINs, then wants its PUK. The init enters the configured PIN at most
//! once per start, but a daemon restarted twice with a wrong PIN would still lock the SIM. So a
//! refusal is remembered in the data dir (`refused-pin.json`), per SIM (by ICCID, read before the
//! PIN) and per PIN (a salted SHA-256 of it, never the PIN itself, so that changing `[modem] pin`
//! clears the mark by itself). Before entering a PIN the init also reads the attempts left
//! (`AT+CPINR` and vendor forms) and never uses the last one. [`decide`] is the policy, pure;
//! [`RefusedPins`] is the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file in the data dir that remembers refused PINs.
pub const REFUSED_PIN_FILE: &str = "refused-pin.json";

/// The fewest attempts left with which the daemon still enters a PIN by itself: the last one is
/// for a person, as a wrong try then means the PUK.
pub const MIN_ATTEMPTS: u8 = 2;

/// What the init does with the configured PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinDecision {
    /// Enter it (once).
    Enter,
    /// Do not enter it, for this reason.
    Withhold(Withheld),
}

/// Why the configured PIN is not entered. The text says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Withheld {
    /// This SIM refused this very PIN at an earlier start.
    #[error(
        "the SIM refused this PIN at an earlier start; set the right [modem] pin (a new one is \
         tried once), or run `smsrelay forget-refused-pin` if the SIM's PIN now matches the config"
    )]
    RefusedBefore,
    /// Fewer than [`MIN_ATTEMPTS`] attempts are left.
    #[error(
        "only {0} PIN attempt(s) left before the SIM wants its PUK; unlock it by hand once you are \
         sure of the PIN (in a phone, or AT+CPIN=\"<pin>\"), which resets the count"
    )]
    FewAttempts(u8),
    /// The record of refused PINs could not be read, so this PIN may have been refused before.
    #[error(
        "the record of refused PINs is unreadable ({0}), so this PIN may have been refused before; \
         check [modem] pin, then run `smsrelay forget-refused-pin`"
    )]
    MarksUnreadable(String),
}

/// The policy: given the SIM PIN attempts left (`None` when the modem does not say), the record
/// of refused PINs (or why it could not be read), the SIM and the configured PIN, whether to
/// enter it.
///
/// An unreadable record counts as a mark: entering a PIN that may have failed before risks the
/// PUK, which needs a person with the SIM's papers, while withholding it only stops the daemon
/// with a message saying how to go on (and the file is written atomically, so it is rarely
/// unreadable).
pub fn decide(
    attempts: Option<u8>,
    marks: &Result<RefusedPins, String>,
    sim: &str,
    pin: &str,
) -> PinDecision {
    if let Some(left) = attempts.filter(|left| *left < MIN_ATTEMPTS) {
        return PinDecision::Withhold(Withheld::FewAttempts(left));
    }
    match marks {
        Err(why) => PinDecision::Withhold(Withheld::MarksUnreadable(why.clone())),
        Ok(marks) if marks.is_refused(sim, pin) => PinDecision::Withhold(Withheld::RefusedBefore),
        Ok(_) => PinDecision::Enter,
    }
}

/// How a SIM is named in the record and in messages: `ICCID <digits>`, or `unknown SIM` when
/// the modem would not give the ICCID before the PIN.
pub fn sim_key(iccid: Option<&str>) -> String {
    match iccid.map(str::trim).filter(|iccid| !iccid.is_empty()) {
        Some(iccid) => format!("ICCID {iccid}"),
        None => "unknown SIM".into(),
    }
}

/// The refused PINs: SIM → hash of the PIN it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedPins {
    refused: BTreeMap<String, String>,
}

impl RefusedPins {
    /// Reads the record; a missing file is an empty record. The error names the file.
    pub fn load(path: &Path) -> Result<RefusedPins, String> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RefusedPins::default());
            }
            Err(error) => return Err(format!("{}: {error}", path.display())),
        };
        serde_json::from_slice(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Writes the record atomically (a temporary file beside it, synced, then renamed), mode
    /// 0600, so a crash leaves the old record or the new one, never half of one.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = std::path::PathBuf::from(temporary);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself lasts only once the directory is synced.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether `sim` refused `pin`.
    pub fn is_refused(&self, sim: &str, pin: &str) -> bool {
        self.refused.get(sim) == Some(&pin_hash(sim, pin))
    }

    /// Remembers that `sim` refused `pin` (replacing what it refused before).
    pub fn mark(&mut self, sim: &str, pin: &str) {
        self.refused.insert(sim.to_string(), pin_hash(sim, pin));
    }

    /// Whether `sim` has a refused PIN on record.
    pub fn is_marked(&self, sim: &str) -> bool {
        self.refused.contains_key(sim)
    }

    /// Forgets `sim`'s refused PIN; whether there was one.
    pub fn clear(&mut self, sim: &str) -> bool {
        self.refused.remove(sim).is_some()
    }

    /// The SIMs with a refused PIN.
    pub fn sims(&self) -> impl Iterator<Item = &str> {
        self.refused.keys().map(String::as_str)
    }
}

/// What [`forget`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgotten {
    /// There was no record.
    Nothing,
    /// The record, naming these SIMs.
    Sims(Vec<String>),
    /// A record that could not be read, and why.
    Unreadable(String),
}

/// Removes the record (`smsrelay forget-refused-pin`), readable or not.
pub fn forget(path: &Path) -> std::io::Result<Forgotten> {
    let forgotten = match std::fs::symlink_metadata(path) {
        Ok(_) => match RefusedPins::load(path) {
            Ok(marks) => Forgotten::Sims(marks.sims().map(str::to_string).collect()),
            Err(why) => Forgotten::Unreadable(why),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Forgotten::Nothing);
        }
        Err(error) => return Err(error),
    };
    std::fs::remove_file(path)?;
    Ok(forgotten)
}

/// SHA-256 of the PIN salted with the SIM, hex. A PIN has 4 to 8 digits, so the hash hides it
/// from a glance, not from a search; the file is 0600 in the service's own state directory, and
/// what it holds is a PIN that was wrong.
fn pin_hash(sim: &str, pin: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"smsrelay refused SIM PIN\0");
    hash.update(sim.as_bytes());
    hash.update(b"\0");
    hash.update(pin.as_bytes());
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIM: &str = "ICCID 8900101234567890123";

    fn marked(pin: &str) -> Result<RefusedPins, String> {
        let mut marks = RefusedPins::default();
        marks.mark(SIM, pin);
        Ok(marks)
    }

    #[test]
    fn the_decision() {
        use PinDecision::{Enter, Withhold};
        let clean = Ok(RefusedPins::default());
        let unreadable = Err("refused-pin.json: expected value".to_string());
        type Case<'a> = (
            Option<u8>,
            &'a Result<RefusedPins, String>,
            &'a str,
            PinDecision,
        );
        let cases: &[Case] = &[
            (None, &clean, "1234", Enter),
            (Some(3), &clean, "1234", Enter),
            (Some(2), &clean, "1234", Enter),
            (Some(1), &clean, "1234", Withhold(Withheld::FewAttempts(1))),
            (Some(0), &clean, "1234", Withhold(Withheld::FewAttempts(0))),
            (
                None,
                &marked("0000"),
                "0000",
                Withhold(Withheld::RefusedBefore),
            ),
            (
                Some(3),
                &marked("0000"),
                "0000",
                Withhold(Withheld::RefusedBefore),
            ),
            // A changed PIN clears the mark by itself.
            (Some(2), &marked("0000"), "1234", Enter),
            (None, &marked("0000"), "1234", Enter),
            (
                Some(1),
                &marked("0000"),
                "1234",
                Withhold(Withheld::FewAttempts(1)),
            ),
            (
                Some(3),
                &unreadable,
                "1234",
                Withhold(Withheld::MarksUnreadable(
                    "refused-pin.json: expected value".into(),
                )),
            ),
        ];
        for (attempts, marks, pin, expected) in cases {
            assert_eq!(
                &decide(*attempts, marks, SIM, pin),
                expected,
                "{attempts:?} {marks:?} {pin}"
            );
        }
    }

    #[test]
    fn a_mark_is_per_sim_and_holds_no_pin() {
        let mut marks = RefusedPins::default();
        marks.mark(SIM, "0000");
        assert!(marks.is_refused(SIM, "0000"));
        assert!(!marks.is_refused("ICCID 8900109999999999999", "0000"));
        assert!(!marks.is_refused("unknown SIM", "0000"));
        let text = serde_json::to_string(&marks).expect("serialises");
        assert!(!text.contains("0000\""), "{text}");
        assert!(marks.clear(SIM));
        assert!(!marks.is_refused(SIM, "0000"));
        assert!(!marks.clear(SIM));
    }

    #[test]
    fn sims_are_named_by_iccid() {
        assert_eq!(sim_key(Some(" 8900101234567890123 ")), SIM);
        assert_eq!(sim_key(Some("")), "unknown SIM");
        assert_eq!(sim_key(None), "unknown SIM");
    }

    #[test]
    fn the_record_survives_a_round_trip_and_a_missing_or_corrupt_file_is_told_apart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data").join(REFUSED_PIN_FILE);
        assert_eq!(RefusedPins::load(&path), Ok(RefusedPins::default()));
        assert_eq!(
            forget(&path).expect("nothing to remove"),
            Forgotten::Nothing
        );
        let mut marks = RefusedPins::default();
        marks.mark(SIM, "0000");
        marks.save(&path).expect("saved");
        assert_eq!(RefusedPins::load(&path), Ok(marks.clone()));
        assert!(!dir.path().join("data/refused-pin.json.tmp").exists());
        assert_eq!(
            forget(&path).expect("removed"),
            Forgotten::Sims(vec![SIM.to_string()])
        );
        assert!(!path.exists());
        std::fs::write(&path, b"{\"refused\": {\"ICCID 89").expect("written");
        let error = RefusedPins::load(&path).expect_err("corrupt");
        assert!(error.contains("refused-pin.json"), "{error}");
        assert!(matches!(forget(&path), Ok(Forgotten::Unreadable(_))));
        assert!(!path.exists());
    }
}
