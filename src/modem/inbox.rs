//! The receipt ledger: which stored messages were handed up and not yet confirmed, which
//! indexes we deleted lately, the confirms waiting for a connection, and the rules built on
//! them (what a sweep hands up, how a receipt is confirmed, whether an empty index is stale).
//!
//! Pure, with time passed in: the driver does the `AT+CMGR`/`AT+CMGL`/`AT+CMGD` and asks the
//! [`Inbox`] what to do with the answers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::handle::{INBOUND_QUEUE_CAP, Origin, Receipt};
use super::init::Setup;
use super::storage::StoredMessage;

/// How many deleted indexes are remembered.
const RECENTLY_DELETED_CAP: usize = 64;
/// How long a deleted index counts as ours when a `+CMTI` for it finds it empty.
const RECENTLY_DELETED_FOR: Duration = Duration::from_secs(60);

/// The ledger of inbound messages between the modem and the owner.
#[derive(Debug)]
pub struct Inbox {
    redeliver_after: Duration,
    /// Stored messages handed up and not yet confirmed: (memory, index) → (hex, when).
    handed_up: HashMap<(String, u32), (String, Instant)>,
    /// Confirmations that came while the port was closed, or whose delete was cut short.
    deferred: Vec<Receipt>,
    /// Increases with every connection, so a receipt from an older one is checked first.
    connection: u64,
    /// Indexes we deleted lately: a `+CMTI` for one of them that raced the delete finds it
    /// empty, which is expected, not a stale index.
    recently_deleted: VecDeque<((String, u32), Instant)>,
    /// A read after `+CMTI`/`+CDSI` failed or was put off: the message is still on the modem,
    /// so the next sweep comes soon instead of after the sweep interval.
    early_sweep: bool,
}

/// How a receipt is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmPlan {
    /// A routed message the network waits for: `AT+CNMA`.
    Ack,
    /// A routed message nobody waits for (or from an older connection): only counted.
    Count,
    /// Handed up on this connection with this PDU: `AT+CMGD` at once.
    DeleteNow {
        /// The memory.
        memory: String,
        /// The index.
        index: u32,
    },
    /// Unknown to the ledger or from an older connection: the modem may have rebooted and
    /// reused the index, so read it and delete only if it still holds the receipt's PDU.
    ReadFirstThenDelete {
        /// The memory.
        memory: String,
        /// The index.
        index: u32,
    },
}

/// What an empty index (`+CMS ERROR: 321`) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyIndex {
    /// We deleted it lately; its `+CMTI` raced the delete. Nothing to say.
    Ours,
    /// Stale: counted and skipped, never read again.
    Stale,
}

impl Inbox {
    /// An empty ledger; unconfirmed messages are handed up again after `redeliver_after`.
    pub fn new(redeliver_after: Duration) -> Inbox {
        Inbox {
            redeliver_after,
            handed_up: HashMap::new(),
            deferred: Vec::new(),
            connection: 0,
            recently_deleted: VecDeque::new(),
            early_sweep: false,
        }
    }

    /// A new connection is ready: receipts from before it are checked before a delete.
    pub fn on_connected(&mut self) {
        self.connection += 1;
    }

    /// A new port was opened: the early sweep belonged to the old one.
    pub fn on_link_opened(&mut self) {
        self.early_sweep = false;
    }

    /// The receipt for a message handed up now.
    pub fn receipt(&self, origin: Origin, hex: String, needs_ack: bool) -> Receipt {
        Receipt {
            origin,
            hex,
            connection: self.connection,
            needs_ack,
        }
    }

    /// A sweep listed `memory`: forgets what is no longer there (deleted by us or by someone
    /// else) and returns, in order, the messages to hand up: received ones (stat 0 or 1) not
    /// handed up, or handed up with the same PDU at least `redeliver_after` ago.
    pub fn on_listed(
        &mut self,
        memory: &str,
        listing: Vec<StoredMessage>,
        now: Instant,
    ) -> Vec<StoredMessage> {
        self.handed_up.retain(|(stored_in, index), _| {
            stored_in != memory || listing.iter().any(|message| message.index == *index)
        });
        let mut picked: Vec<StoredMessage> = Vec::new();
        for message in listing {
            // 2 and 3 are outgoing messages someone stored; not ours to take.
            let ours = message.stat <= 1;
            // A listing that repeats an index with the same PDU hands it up once.
            let repeated = picked
                .iter()
                .any(|earlier| earlier.index == message.index && earlier.hex == message.hex);
            if ours && !repeated && !self.recently_handed_up(memory, &message, now) {
                picked.push(message);
            }
        }
        picked
    }

    fn recently_handed_up(&self, memory: &str, message: &StoredMessage, now: Instant) -> bool {
        let key = (memory.to_string(), message.index);
        self.handed_up.get(&key).is_some_and(|(hex, when)| {
            *hex == message.hex && now.saturating_duration_since(*when) < self.redeliver_after
        })
    }

    /// Whether a `+CMTI`/`+CDSI` index needs reading: one handed up and not yet confirmed
    /// still holds the same message (only we delete), so a `+CMTI` that raced the sweep
    /// needs no second read.
    pub fn needs_read(&self, memory: &str, index: u32) -> bool {
        !self.handed_up.contains_key(&(memory.to_string(), index))
    }

    /// A stored message was handed up.
    pub fn on_handed_up(&mut self, memory: &str, message: &StoredMessage, now: Instant) {
        let key = (memory.to_string(), message.index);
        self.handed_up.insert(key, (message.hex.clone(), now));
    }

    /// Decides how a receipt is confirmed, and takes it off the ledger.
    pub fn plan_confirm(&mut self, receipt: &Receipt) -> ConfirmPlan {
        let current = receipt.connection == self.connection;
        match &receipt.origin {
            Origin::Routed if receipt.needs_ack && current => ConfirmPlan::Ack,
            Origin::Routed => ConfirmPlan::Count,
            Origin::Stored { storage, index } => {
                let known = self
                    .handed_up
                    .remove(&(storage.clone(), *index))
                    .is_some_and(|(hex, _)| hex == receipt.hex);
                let (memory, index) = (storage.clone(), *index);
                if known && current {
                    ConfirmPlan::DeleteNow { memory, index }
                } else {
                    ConfirmPlan::ReadFirstThenDelete { memory, index }
                }
            }
        }
    }

    /// Keeps a receipt for when there is a connection again.
    pub fn defer(&mut self, receipt: Receipt) {
        self.deferred.push(receipt);
    }

    /// Whether confirms wait for the connection.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// The confirms that waited, to carry out now.
    pub fn take_deferred(&mut self) -> Vec<Receipt> {
        std::mem::take(&mut self.deferred)
    }

    /// An index was deleted (or found already gone) after its confirm.
    pub fn on_deleted(&mut self, memory: &str, index: u32, now: Instant) {
        if self.recently_deleted.len() >= RECENTLY_DELETED_CAP {
            self.recently_deleted.pop_front();
        }
        self.recently_deleted
            .push_back(((memory.to_string(), index), now));
    }

    /// Whether we deleted this index within the last minute.
    pub fn is_ours_recently_deleted(&self, memory: &str, index: u32, now: Instant) -> bool {
        self.recently_deleted
            .iter()
            .any(|((deleted_in, deleted), at)| {
                deleted_in == memory
                    && *deleted == index
                    && now.saturating_duration_since(*at) < RECENTLY_DELETED_FOR
            })
    }

    /// What an indicated index found empty means.
    pub fn stale_index(&self, memory: &str, index: u32, now: Instant) -> EmptyIndex {
        if self.is_ours_recently_deleted(memory, index, now) {
            EmptyIndex::Ours
        } else {
            EmptyIndex::Stale
        }
    }

    /// Brings the next sweep forward (a failed read, messages left on the modem).
    pub fn want_early_sweep(&mut self) {
        self.early_sweep = true;
    }

    /// Whether the next sweep should come early; clears the wish.
    pub fn take_early_sweep(&mut self) -> bool {
        std::mem::take(&mut self.early_sweep)
    }
}

/// Whether reading more stored messages would only grow the queue: they stay on the modem
/// until the owner catches up (a later sweep takes them).
pub fn backlog_full(queued_inbound: usize) -> bool {
    queued_inbound >= INBOUND_QUEUE_CAP
}

/// The memories a sweep lists: the receive storage, and `SR` when status reports are stored
/// (`AT+CNMI` ds = 2) and the modem has that memory.
pub fn sweep_memories(receive: &str, setup: Option<&Setup>) -> Vec<String> {
    let mut memories = vec![receive.to_string()];
    let reports_stored = setup.is_some_and(|setup| setup.cnmi.split(',').nth(3) == Some("2"));
    let has_sr = setup.is_some_and(|setup| setup.memories.iter().any(|m| m == "SR"));
    if reports_stored && has_sr && receive != "SR" {
        memories.push("SR".into());
    }
    memories
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDELIVER: Duration = Duration::from_secs(600);

    fn message(index: u32, stat: u8, hex: &str) -> StoredMessage {
        StoredMessage {
            index,
            stat,
            hex: hex.to_string(),
            pdu: crate::pdu::Pdu::from_hex(hex),
        }
    }

    fn stored(memory: &str, index: u32) -> Origin {
        Origin::Stored {
            storage: memory.to_string(),
            index,
        }
    }

    /// An inbox that handed up `SM` 1 ("AA") and `SR` 2 ("BB") at `start`.
    fn inbox_with_two(start: Instant) -> Inbox {
        let mut inbox = Inbox::new(REDELIVER);
        inbox.on_connected();
        inbox.on_handed_up("SM", &message(1, 0, "AA"), start);
        inbox.on_handed_up("SR", &message(2, 0, "BB"), start);
        inbox
    }

    #[test]
    fn a_sweep_hands_up_what_is_new_or_long_unconfirmed() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        // (memory, listing as (index, stat, hex), seconds after start, indexes handed up)
        let check = |memory: &str, listing: &[(u32, u8, &str)], after: u64, expected: &[u32]| {
            let mut inbox = inbox_with_two(start);
            let described = format!("{memory} {listing:?} +{after}s");
            let listing = listing.iter().map(|&(i, s, h)| message(i, s, h)).collect();
            let handed: Vec<u32> = inbox
                .on_listed(memory, listing, secs(after))
                .iter()
                .map(|m| m.index)
                .collect();
            assert_eq!(handed, expected, "{described}");
        };
        check("SM", &[(1, 0, "AA"), (3, 0, "CC")], 10, &[3]);
        check("SM", &[(1, 1, "AA")], 599, &[]);
        check("SM", &[(1, 1, "AA")], 600, &[1]);
        check("SM", &[(1, 0, "DD")], 10, &[1]); // the index holds another PDU now
        check("SM", &[(4, 2, "EE"), (5, 3, "FF"), (6, 1, "GG")], 10, &[6]);
        check("SR", &[(1, 0, "AA")], 10, &[1]); // same index, other memory
        check("SR", &[(2, 0, "BB")], 10, &[]);
        check("SM", &[], 10, &[]);
        check(
            "SM",
            &[(3, 0, "CC"), (3, 0, "CC"), (3, 0, "DD")],
            10,
            &[3, 3],
        );
    }

    #[test]
    fn a_sweep_forgets_indexes_no_longer_listed_in_that_memory_only() {
        let start = Instant::now();
        let mut inbox = inbox_with_two(start);
        inbox.on_listed("SM", Vec::new(), start);
        assert!(inbox.needs_read("SM", 1));
        assert!(!inbox.needs_read("SR", 2));
    }

    #[test]
    fn confirms_are_planned_from_the_ledger_and_the_connection() {
        let start = Instant::now();
        // (origin, hex, needs_ack, connection offset from the current one, expected)
        let check = |origin: Origin, hex: &str, needs_ack: bool, older: bool, expected| {
            let mut inbox = inbox_with_two(start);
            let mut receipt = inbox.receipt(origin, hex.to_string(), needs_ack);
            if older {
                receipt.connection -= 1;
            }
            assert_eq!(inbox.plan_confirm(&receipt), expected, "{receipt:?}");
        };
        let delete = |memory: &str, index| ConfirmPlan::DeleteNow {
            memory: memory.to_string(),
            index,
        };
        let read_first = |memory: &str, index| ConfirmPlan::ReadFirstThenDelete {
            memory: memory.to_string(),
            index,
        };
        check(Origin::Routed, "AA", true, false, ConfirmPlan::Ack);
        check(Origin::Routed, "AA", false, false, ConfirmPlan::Count);
        check(Origin::Routed, "AA", true, true, ConfirmPlan::Count);
        check(stored("SM", 1), "AA", false, false, delete("SM", 1));
        check(stored("SR", 2), "BB", false, false, delete("SR", 2));
        check(stored("SM", 1), "AA", false, true, read_first("SM", 1));
        check(stored("SM", 1), "DD", false, false, read_first("SM", 1));
        check(stored("SM", 9), "AA", false, false, read_first("SM", 9));
    }

    #[test]
    fn a_planned_confirm_takes_the_message_off_the_ledger() {
        let start = Instant::now();
        let mut inbox = inbox_with_two(start);
        let receipt = inbox.receipt(stored("SM", 1), "AA".into(), false);
        assert!(!inbox.needs_read("SM", 1));
        inbox.plan_confirm(&receipt);
        assert!(inbox.needs_read("SM", 1));
        assert_eq!(inbox.plan_confirm(&receipt), {
            ConfirmPlan::ReadFirstThenDelete {
                memory: "SM".into(),
                index: 1,
            }
        });
    }

    #[test]
    fn an_empty_index_is_ours_only_when_we_deleted_it_lately() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        let mut inbox = Inbox::new(REDELIVER);
        inbox.on_deleted("SM", 3, start);
        // (memory, index, seconds after the delete, expected)
        let check = |memory: &str, index, after, expected| {
            assert_eq!(
                inbox.stale_index(memory, index, secs(after)),
                expected,
                "{memory} {index} +{after}s"
            );
        };
        check("SM", 3, 0, EmptyIndex::Ours);
        check("SM", 3, 59, EmptyIndex::Ours);
        check("SM", 3, 60, EmptyIndex::Stale);
        check("SM", 4, 0, EmptyIndex::Stale);
        check("SR", 3, 0, EmptyIndex::Stale);
    }

    #[test]
    fn only_the_latest_deletes_are_remembered() {
        let now = Instant::now();
        let mut inbox = Inbox::new(REDELIVER);
        for index in 0..=RECENTLY_DELETED_CAP as u32 {
            inbox.on_deleted("SM", index, now);
        }
        assert!(!inbox.is_ours_recently_deleted("SM", 0, now));
        assert!(inbox.is_ours_recently_deleted("SM", 1, now));
        assert!(inbox.is_ours_recently_deleted("SM", RECENTLY_DELETED_CAP as u32, now));
    }

    #[test]
    fn deferred_confirms_wait_and_are_taken_once() {
        let mut inbox = Inbox::new(REDELIVER);
        assert!(!inbox.has_deferred());
        let receipt = inbox.receipt(Origin::Routed, "AA".into(), false);
        inbox.defer(receipt.clone());
        assert!(inbox.has_deferred());
        assert_eq!(inbox.take_deferred(), vec![receipt]);
        assert!(inbox.take_deferred().is_empty());
    }

    #[test]
    fn receipts_carry_the_connection_they_were_handed_up_on() {
        let mut inbox = Inbox::new(REDELIVER);
        inbox.on_connected();
        let first = inbox.receipt(Origin::Routed, "AA".into(), true);
        inbox.on_connected();
        let second = inbox.receipt(Origin::Routed, "AA".into(), true);
        assert_eq!((first.connection, second.connection), (1, 2));
        assert_eq!(inbox.plan_confirm(&first), ConfirmPlan::Count);
        assert_eq!(inbox.plan_confirm(&second), ConfirmPlan::Ack);
    }

    #[test]
    fn the_early_sweep_is_wished_once_and_forgotten_with_the_port() {
        let mut inbox = Inbox::new(REDELIVER);
        assert!(!inbox.take_early_sweep());
        inbox.want_early_sweep();
        assert!(inbox.take_early_sweep());
        assert!(!inbox.take_early_sweep());
        inbox.want_early_sweep();
        inbox.on_link_opened();
        assert!(!inbox.take_early_sweep());
    }

    #[test]
    fn a_sweep_lists_sr_too_when_reports_are_stored_there() {
        // (receive storage, CNMI, the modem's memories, memories listed)
        let check = |receive: &str, cnmi: &str, memories: &[&str], expected: &[&str]| {
            let setup = Setup {
                identity: Default::default(),
                registration: crate::at::RegistrationStatus::Home,
                cnmi: cnmi.to_string(),
                smsc: String::new(),
                csms: 0,
                memories: memories.iter().map(|m| m.to_string()).collect(),
            };
            assert_eq!(
                sweep_memories(receive, Some(&setup)),
                expected,
                "{receive} {cnmi} {memories:?}"
            );
        };
        check("SM", "2,1,0,2,0", &["SM", "SR"], &["SM", "SR"]);
        check("SM", "2,1,0,1,0", &["SM", "SR"], &["SM"]);
        check("SM", "2,1,0,2,0", &["SM", "ME"], &["SM"]);
        check("SR", "2,1,0,2,0", &["SM", "SR"], &["SR"]);
        check("ME", "2,1,0,2,0", &["ME", "SR"], &["ME", "SR"]);
        assert_eq!(sweep_memories("SM", None), ["SM"]);
    }

    #[test]
    fn the_inbound_queue_is_full_at_its_cap() {
        let check = |queued, expected| assert_eq!(backlog_full(queued), expected, "{queued}");
        check(0, false);
        check(INBOUND_QUEUE_CAP - 1, false);
        check(INBOUND_QUEUE_CAP, true);
        check(INBOUND_QUEUE_CAP + 1, true);
    }
}
