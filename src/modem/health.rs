//! The health tick's decisions, as pure functions over the parsed answers: which of CREG and
//! CEREG counts, whether registration was gained or lost, whether the signal changed enough
//! to say so, whether the storage is almost full, and whether the modem lost its indications
//! (and so needs a re-init). The driver asks the modem and applies what these return.

use crate::at::parse::{SignalQuality, StorageUsage};
use crate::at::{Registration, RegistrationStatus};

/// How much a registration answer says, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Informative {
    /// Unknown, or a value outside TS 27.007.
    Unknown,
    /// A definite state without service: not registered, searching, denied, emergency only.
    Definite,
    /// Registered (home, roaming, SMS only).
    Registered,
}

/// Ranks a registration status.
pub fn informative(status: RegistrationStatus) -> Informative {
    if status.is_registered() {
        Informative::Registered
    } else if matches!(
        status,
        RegistrationStatus::Unknown | RegistrationStatus::Other(_)
    ) {
        Informative::Unknown
    } else {
        Informative::Definite
    }
}

/// The better of the best so far and a new answer: the best of CREG and CEREG counts, since
/// LTE-only sticks register in CEREG only, and 2G/3G modems refuse CEREG or answer it
/// "unknown", so a CREG that says "searching" or "denied" is then the only word on a loss.
/// On a tie the first answer stays.
pub fn best_registration(best: Option<Registration>, answer: Registration) -> Registration {
    match best {
        Some(best) if informative(answer.status) <= informative(best.status) => best,
        _ => answer,
    }
}

/// A change of registration worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationChange {
    /// Registered now, not before (or nothing known before).
    Gained,
    /// Registered before, not now.
    Lost,
}

/// Compares the last registration with a new one.
pub fn registration_change(
    previous: Option<RegistrationStatus>,
    now: RegistrationStatus,
) -> Option<RegistrationChange> {
    let was = previous.is_some_and(RegistrationStatus::is_registered);
    match (was, now.is_registered()) {
        (true, false) => Some(RegistrationChange::Lost),
        (false, true) => Some(RegistrationChange::Gained),
        _ => None,
    }
}

/// Whether a signal reading is worth an event: the first one, a change of 3 rssi steps or
/// more, or the signal becoming known or unknown (99).
pub fn signal_changed(previous: Option<SignalQuality>, now: SignalQuality) -> bool {
    previous.is_none_or(|previous| {
        previous.rssi.abs_diff(now.rssi) >= 3 || (previous.rssi == 99) != (now.rssi == 99)
    })
}

/// Whether a storage is over 80 % full.
pub fn storage_crowded(usage: &StorageUsage) -> bool {
    usage.total > 0 && usage.used * 100 > usage.total * 80
}

/// Whether to warn about the storage now: crowded, and not crowded at the last tick (one
/// warning per crossing, not one per tick).
pub fn storage_warning(warned_last_tick: bool, usage: &StorageUsage) -> bool {
    storage_crowded(usage) && !warned_last_tick
}

/// Whether the modem lost the indications the init set: only mt (field 1) and ds (field 3)
/// matter, and only their loss. Firmware may echo the other fields differently, but mt or ds
/// back at 0 means a quiet reboot or the ME's reset after a missed `AT+CNMA`.
pub fn indications_lost(expected: &str, current: &[u8]) -> bool {
    let set = |slot: usize| expected.split(',').nth(slot).unwrap_or("0") != "0";
    (set(1) && current.get(1) == Some(&0)) || (set(3) && current.get(3) == Some(&0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::Domain;
    use RegistrationStatus::*;

    fn registration(domain: Domain, status: RegistrationStatus) -> Registration {
        Registration {
            domain,
            mode: Some(0),
            status,
            area: None,
            cell: None,
            access_technology: None,
        }
    }

    #[test]
    fn the_more_informative_of_creg_and_cereg_counts() {
        // (CREG, CEREG, which counts)
        let check = |creg, cereg, expected: (Domain, RegistrationStatus)| {
            let first = best_registration(None, registration(Domain::CircuitSwitched, creg));
            let best = best_registration(Some(first), registration(Domain::Eps, cereg));
            assert_eq!((best.domain, best.status), expected, "{creg:?} {cereg:?}");
        };
        let cs = Domain::CircuitSwitched;
        let eps = Domain::Eps;
        check(Home, Searching, (cs, Home));
        check(Searching, Home, (eps, Home));
        check(Unknown, Roaming, (eps, Roaming));
        check(Searching, Unknown, (cs, Searching));
        check(Denied, Other(9), (cs, Denied));
        check(Unknown, Denied, (eps, Denied));
        check(Unknown, Unknown, (cs, Unknown));
        check(NotRegistered, Searching, (cs, NotRegistered));
        check(Home, SmsOnlyRoaming, (cs, Home));
        check(EmergencyOnly, SmsOnlyHome, (eps, SmsOnlyHome));
    }

    #[test]
    fn registration_changes_are_gains_and_losses_only() {
        let check = |previous, now, expected| {
            assert_eq!(
                registration_change(previous, now),
                expected,
                "{previous:?} → {now:?}"
            );
        };
        check(None, Home, Some(RegistrationChange::Gained));
        check(None, Searching, None);
        check(Some(Searching), Roaming, Some(RegistrationChange::Gained));
        check(Some(Home), Denied, Some(RegistrationChange::Lost));
        check(Some(SmsOnlyHome), Unknown, Some(RegistrationChange::Lost));
        check(Some(Home), Roaming, None);
        check(Some(Searching), Denied, None);
    }

    #[test]
    fn a_signal_event_needs_three_steps_or_a_change_of_knowing() {
        let signal = |rssi| SignalQuality { rssi, ber: 99 };
        let check = |previous: Option<u8>, now, expected| {
            assert_eq!(
                signal_changed(previous.map(signal), signal(now)),
                expected,
                "{previous:?} → {now}"
            );
        };
        check(None, 20, true);
        check(Some(20), 20, false);
        check(Some(20), 22, false);
        check(Some(20), 18, false);
        check(Some(20), 23, true);
        check(Some(20), 17, true);
        check(Some(20), 99, true);
        check(Some(99), 31, true);
        check(Some(99), 99, false);
    }

    #[test]
    fn storage_warns_once_past_eighty_percent() {
        let usage = |used, total| StorageUsage {
            name: Some("SM".into()),
            used,
            total,
        };
        // (warned at the last tick, used, total, crowded, warn now)
        let check = |warned, used, total, crowded, warn| {
            let usage = usage(used, total);
            assert_eq!(storage_crowded(&usage), crowded, "{used}/{total}");
            assert_eq!(
                storage_warning(warned, &usage),
                warn,
                "{warned} {used}/{total}"
            );
        };
        check(false, 0, 0, false, false);
        check(false, 8, 10, false, false);
        check(false, 9, 10, true, true);
        check(true, 9, 10, true, false);
        check(true, 5, 10, false, false);
        check(false, 41, 50, true, true);
        check(false, 40, 50, false, false);
    }

    #[test]
    fn indications_are_lost_when_mt_or_ds_fall_back_to_zero() {
        let check = |expected: &str, current: &[u8], lost| {
            assert_eq!(
                indications_lost(expected, current),
                lost,
                "{expected} vs {current:?}"
            );
        };
        check("2,1,0,2,0", &[2, 1, 0, 2, 0], false);
        check("2,1,0,2,0", &[2, 0, 0, 2, 0], true);
        check("2,1,0,2,0", &[2, 1, 0, 0, 0], true);
        check("2,1,0,2,0", &[0, 1, 0, 2, 1], false); // other fields may differ
        check("2,1,0,0,0", &[2, 1, 0, 0, 0], false); // ds was never set
        check("2,0,0,2,0", &[2, 0, 0, 2, 0], false);
        check("2,1,0,2,0", &[2], false); // a short answer says nothing
        check("", &[0, 0, 0, 0, 0], false);
    }
}
