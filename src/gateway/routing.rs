//! Which modem sends a message: pure decisions, table-tested.
//!
//! At enqueue a message is assigned a modem ([`assign`]): the one the client named (pinned:
//! it never moves), else one whose `prefixes` match the destination (the longest match, with
//! a leading `00` read as `+` on both sides: [`international`]), else
//! by the policy: round robin over the modems that may send, or the first of them. At send
//! time a modem's sender takes its own messages and, for failover, any unpinned message whose
//! modem is not ready or may not send ([`may_take`]). After a temporary submit failure the
//! message is handed to another ready modem ([`failover_target`]); a submit with an unknown
//! outcome never is (the lifecycle fails it as `interrupted`).

/// `[sms] routing`: how a message that names no modem and matches no prefix is assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Prefix match first, then the modems that may send in turn.
    #[default]
    PrefixThenRoundRobin,
    /// Prefix match first, then the first modem that may send; the others only for failover.
    First,
}

impl Routing {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Routing::PrefixThenRoundRobin => "prefix_then_round_robin",
            Routing::First => "first",
        }
    }

    /// The policy a config name means.
    pub fn from_name(name: &str) -> Option<Routing> {
        match name {
            "prefix_then_round_robin" => Some(Routing::PrefixThenRoundRobin),
            "first" => Some(Routing::First),
            _ => None,
        }
    }
}

/// What routing needs to know of one modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its SIM slot number.
    pub sim: u32,
    /// Whether it may send at all (`send = false`: receive-only).
    pub send: bool,
    /// Destination prefixes it prefers.
    pub prefixes: &'a [String],
    /// Whether its driver is ready now.
    pub ready: bool,
}

/// A client's choice of modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// By name.
    Name(String),
    /// By SIM slot number.
    Sim(u32),
}

/// Why a message cannot be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The client named a modem that does not exist.
    #[error("no modem is named {0:?}")]
    UnknownModem(String),
    /// The client named a SIM slot that no modem has.
    #[error("no modem has SIM {0}")]
    UnknownSim(u32),
    /// The modem the client named is receive-only.
    #[error("modem {0:?} is receive-only (send = false)")]
    ReceiveOnly(String),
    /// No modem may send.
    #[error("no modem may send (every one has send = false)")]
    NoSender,
}

/// `number` as prefixes are compared: a leading `00` (the international call prefix in most
/// of Europe, Africa and Asia) reads as `+`, so `0043664…` matches the prefix `+43`. Only for
/// matching: the number goes to the modem as the client wrote it (`00…` as dialled digits,
/// TON unknown, which networks resolve as their subscribers' phones do). A bare `00` stays
/// as written: as a prefix it means "numbers dialled with 00", and as `+` it would take every
/// number in international form, the domestic ones too.
pub fn international(number: &str) -> std::borrow::Cow<'_, str> {
    match number.strip_prefix("00") {
        Some(rest) if !rest.is_empty() => std::borrow::Cow::Owned(format!("+{rest}")),
        _ => std::borrow::Cow::Borrowed(number),
    }
}

/// The modem a new message to `to` goes to, and whether it is pinned there: `turn` is the
/// round-robin counter (the caller increments it per message).
pub fn assign(
    modems: &[Candidate<'_>],
    to: &str,
    requested: Option<&Requested>,
    routing: Routing,
    turn: usize,
) -> Result<(usize, bool), RouteError> {
    if let Some(requested) = requested {
        let found = modems.iter().position(|modem| match requested {
            Requested::Name(name) => modem.name == name,
            Requested::Sim(sim) => modem.sim == *sim,
        });
        let Some(index) = found else {
            return Err(match requested {
                Requested::Name(name) => RouteError::UnknownModem(name.clone()),
                Requested::Sim(sim) => RouteError::UnknownSim(*sim),
            });
        };
        if !modems[index].send {
            return Err(RouteError::ReceiveOnly(modems[index].name.to_string()));
        }
        return Ok((index, true));
    }
    let senders: Vec<usize> = (0..modems.len()).filter(|&i| modems[i].send).collect();
    if senders.is_empty() {
        return Err(RouteError::NoSender);
    }
    let written = to;
    let to = international(to);
    let longest_prefix = senders
        .iter()
        .filter_map(|&index| {
            let matched = modems[index]
                .prefixes
                .iter()
                .map(|prefix| international(prefix))
                .filter(|prefix| {
                    // A bare "00" (kept as written) takes the numbers dialled with 00.
                    to.starts_with(prefix.as_ref())
                        || (prefix.as_ref() == "00" && written.starts_with("00"))
                })
                .map(|prefix| prefix.len())
                .max()?;
            Some((matched, index))
        })
        // The longest prefix wins; among equals, the first modem.
        .max_by_key(|&(length, index)| (length, std::cmp::Reverse(index)));
    if let Some((_, index)) = longest_prefix {
        return Ok((index, false));
    }
    let index = match routing {
        Routing::PrefixThenRoundRobin => senders[turn % senders.len()],
        Routing::First => senders[0],
    };
    Ok((index, false))
}

/// Whether modem `taker` may submit a message assigned to `assigned` (`None`: a record from
/// before modems were named, or a modem since removed from the config: anyone may).
pub fn may_take(
    modems: &[Candidate<'_>],
    taker: usize,
    assigned: Option<usize>,
    pinned: bool,
) -> bool {
    let Some(me) = modems.get(taker) else {
        return false;
    };
    if !me.send || !me.ready {
        return false;
    }
    match assigned {
        Some(owner) if owner == taker => true,
        Some(_) if pinned => false,
        Some(owner) => modems
            .get(owner)
            .is_none_or(|owner| !owner.ready || !owner.send),
        None => true,
    }
}

/// Where a message goes after a temporary failure on modem `failed`: the next ready modem
/// that may send, after it in order; `None` when there is none (it retries where it was).
pub fn failover_target(modems: &[Candidate<'_>], failed: usize, pinned: bool) -> Option<usize> {
    if pinned || modems.is_empty() {
        return None;
    }
    (1..modems.len())
        .map(|step| (failed + step) % modems.len())
        .find(|&index| modems[index].send && modems[index].ready)
}

/// Whether a message handed to another modem after a temporary refusal is tried there at
/// once: while it has failed (`attempts`, counted only while its modem stayed ready) fewer
/// times than there are modems that may send, so each gets one quick try; after that it waits
/// its retry pause as with one modem, so a fault every SIM shares does not use up the
/// attempts in seconds.
pub fn retry_at_once(attempts: u32, senders: usize) -> bool {
    usize::try_from(attempts).is_ok_and(|attempts| attempts < senders)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modems, destination, request, policy, turn → the assignment.
    type AssignCase<'c, 'n> = (
        &'c [Candidate<'n>],
        &'static str,
        Option<Requested>,
        Routing,
        usize,
        Result<(usize, bool), RouteError>,
    );
    /// Modems, taker, assigned, pinned → whether it may take.
    type TakeCase<'c, 'n> = (&'c [Candidate<'n>], usize, Option<usize>, bool, bool);

    fn modem<'a>(name: &'a str, prefixes: &'a [String], send: bool, ready: bool) -> Candidate<'a> {
        Candidate {
            name,
            sim: name
                .trim_start_matches(char::is_alphabetic)
                .parse()
                .unwrap_or(0),
            send,
            prefixes,
            ready,
        }
    }

    #[test]
    fn assignment() {
        let none: Vec<String> = Vec::new();
        let austria = vec!["+43".to_string()];
        let vienna = vec!["+431".to_string()];
        let two = [
            modem("m0", &none, true, true),
            modem("m1", &austria, true, true),
        ];
        let rr = Routing::PrefixThenRoundRobin;
        let named = |name: &str| Requested::Name(name.into());
        let cases: Vec<AssignCase<'_, '_>> = vec![
            // Round robin over both, by turn.
            (&two, "+447700900123", None, rr, 0, Ok((0, false))),
            (&two, "+447700900123", None, rr, 1, Ok((1, false))),
            (&two, "+447700900123", None, rr, 2, Ok((0, false))),
            // A prefix wins over the turn.
            (&two, "+436641234567", None, rr, 0, Ok((1, false))),
            (
                &two,
                "+436641234567",
                None,
                Routing::First,
                0,
                Ok((1, false)),
            ),
            // First: always the first that may send.
            (
                &two,
                "+447700900123",
                None,
                Routing::First,
                1,
                Ok((0, false)),
            ),
            // Named, by name or SIM: pinned.
            (
                &two,
                "+436641234567",
                Some(named("m0")),
                rr,
                1,
                Ok((0, true)),
            ),
            (&two, "+44", Some(Requested::Sim(1)), rr, 0, Ok((1, true))),
            (
                &two,
                "+44",
                Some(named("nope")),
                rr,
                0,
                Err(RouteError::UnknownModem("nope".into())),
            ),
            (
                &two,
                "+44",
                Some(Requested::Sim(7)),
                rr,
                0,
                Err(RouteError::UnknownSim(7)),
            ),
        ];
        for (modems, to, requested, routing, turn, expected) in cases {
            assert_eq!(
                assign(modems, to, requested.as_ref(), routing, turn),
                expected,
                "{to} {requested:?} {routing:?} {turn}"
            );
        }
        // The longest prefix wins.
        let three = [
            modem("m0", &austria, true, true),
            modem("m1", &vienna, true, true),
            modem("m2", &none, true, true),
        ];
        assert_eq!(assign(&three, "+4315551234", None, rr, 2), Ok((1, false)));
        assert_eq!(assign(&three, "+4365551234", None, rr, 2), Ok((0, false)));
        // A leading 00 is the international form: it matches + prefixes, and a prefix
        // written with 00 matches + numbers; a national 0 prefix no longer takes 00 numbers.
        let national = vec!["0".to_string()];
        let written_00 = vec!["0043".to_string()];
        let mixed = [
            modem("m0", &national, true, true),
            modem("m1", &austria, true, true),
            modem("m2", &none, true, true),
        ];
        let other = [
            modem("m0", &none, true, true),
            modem("m1", &written_00, true, true),
        ];
        let bare_00 = vec!["00".to_string()];
        let dialled_00 = [
            modem("m0", &none, true, true),
            modem("m1", &bare_00, true, true),
        ];
        let international_cases: Vec<AssignCase<'_, '_>> = vec![
            (&three, "00436641234567", None, rr, 2, Ok((0, false))),
            (&three, "004315551234", None, rr, 2, Ok((1, false))),
            (&mixed, "00436641234567", None, rr, 2, Ok((1, false))),
            (&mixed, "06641234567", None, rr, 2, Ok((0, false))),
            // 00 to a country no prefix names: round robin, not the national 0 modem.
            (&mixed, "00447700900123", None, rr, 2, Ok((2, false))),
            (&other, "+436641234567", None, rr, 0, Ok((1, false))),
            (&other, "00436641234567", None, rr, 0, Ok((1, false))),
            // A bare "00" prefix takes numbers dialled with 00, not every + number.
            (&dialled_00, "00436641234567", None, rr, 0, Ok((1, false))),
            (&dialled_00, "+4915551234567", None, rr, 0, Ok((0, false))),
        ];
        for (modems, to, requested, routing, turn, expected) in international_cases {
            assert_eq!(
                assign(modems, to, requested.as_ref(), routing, turn),
                expected,
                "{to}"
            );
        }
        // Receive-only modems take no turn and cannot be named.
        let receive_only = [
            modem("m0", &austria, false, true),
            modem("m1", &none, true, true),
        ];
        for turn in 0..3 {
            assert_eq!(
                assign(&receive_only, "+4315551234", None, rr, turn),
                Ok((1, false))
            );
        }
        assert_eq!(
            assign(&receive_only, "+44", Some(&named("m0")), rr, 0),
            Err(RouteError::ReceiveOnly("m0".into()))
        );
        let mute = [modem("m0", &none, false, true)];
        assert_eq!(assign(&mute, "+44", None, rr, 0), Err(RouteError::NoSender));
    }

    #[test]
    fn who_may_take_a_message() {
        let none: Vec<String> = Vec::new();
        let both = [
            modem("m0", &none, true, true),
            modem("m1", &none, true, true),
        ];
        let first_down = [
            modem("m0", &none, true, false),
            modem("m1", &none, true, true),
        ];
        let first_mute = [
            modem("m0", &none, false, true),
            modem("m1", &none, true, true),
        ];
        let cases: Vec<TakeCase<'_, '_>> = vec![
            (&both, 0, Some(0), false, true),
            (&both, 1, Some(0), false, false),
            // Failover: the owner is not ready.
            (&first_down, 1, Some(0), false, true),
            (&first_down, 0, Some(0), false, false),
            // ...unless the client pinned it there.
            (&first_down, 1, Some(0), true, false),
            // The owner may not send (its config changed).
            (&first_mute, 1, Some(0), false, true),
            // No owner (older records) or an owner gone from the config: anyone ready.
            (&both, 1, None, false, true),
            (&both, 1, Some(9), false, true),
            (&first_down, 0, None, false, false),
        ];
        for (modems, taker, assigned, pinned, expected) in cases {
            assert_eq!(
                may_take(modems, taker, assigned, pinned),
                expected,
                "{taker} {assigned:?} {pinned}"
            );
        }
    }

    #[test]
    fn each_modem_gets_one_quick_try_then_the_pause_applies() {
        let cases = [
            // (attempts, senders, at once)
            (0, 2, true), // the modem went away: not counted
            (1, 2, true),
            (2, 2, false),
            (2, 3, true),
            (3, 3, false),
            (1, 1, false),
            (u32::MAX, 2, false),
        ];
        for (attempts, senders, expected) in cases {
            assert_eq!(
                retry_at_once(attempts, senders),
                expected,
                "{attempts} {senders}"
            );
        }
    }

    #[test]
    fn failover_goes_to_the_next_ready_sender() {
        let none: Vec<String> = Vec::new();
        let three = [
            modem("m0", &none, true, true),
            modem("m1", &none, true, false),
            modem("m2", &none, true, true),
        ];
        assert_eq!(failover_target(&three, 0, false), Some(2));
        assert_eq!(failover_target(&three, 2, false), Some(0));
        assert_eq!(failover_target(&three, 0, true), None);
        let alone = [modem("m0", &none, true, true)];
        assert_eq!(failover_target(&alone, 0, false), None);
        let other_mute = [
            modem("m0", &none, true, true),
            modem("m1", &none, false, true),
        ];
        assert_eq!(failover_target(&other_mute, 0, false), None);
    }
}
