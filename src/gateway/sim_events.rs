//! Calls and USSD as the gateway sees them: `call.ringing` and `call.missed` from the driver's
//! call events, USSD requests for the API with their timeout, and the scheduled balance checks
//! (one per modem that has one) that publish `sim.balance` (the answer's text, its first
//! number as `amount`, and `low_balance` below the configured amount). Every event names its
//! `modem` and `sim`. The last call and the last balances are kept for `/v1/status`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use log::{error, info, warn};
use serde_json::{Value, json};

use super::{Gateway, rfc3339};
use crate::modem::{CallEvent, UssdAnswer, UssdFailure};
use crate::store::{NewEvent, StoreError, blocking, now_ms};

/// A balance code checked on a schedule: `[ussd] balance` for the first modem, or a
/// `[[modem]]` table's own `balance`.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceCheck {
    /// The code, e.g. `*100#`.
    pub code: String,
    /// Time between checks (the first comes one minute after start, or sooner when the
    /// interval is shorter).
    pub interval: Duration,
    /// `low_balance` is true below this amount.
    pub low_below: Option<f64>,
}

/// What `/v1/status` shows of calls and USSD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimActivity {
    /// The last call event's data (`call.ringing` or `call.missed`), with its name.
    pub last_call: Option<Value>,
    /// The last `sim.balance` data of the first modem (in config order) that has answered a
    /// balance check: with one balance check, its last answer. Kept one SIM's so the
    /// unlabelled `smsrelay_sim_balance` gauge never jumps between two SIMs' amounts.
    pub last_balance: Option<Value>,
    /// The last `sim.balance` data of every modem that has answered one, in config order.
    pub balances: Vec<Value>,
}

/// The first number in `text`, read as an amount: `12.50` in "Balance: 12.50 EUR".
///
/// Digit groups are read the way operators write them: `1,234.50`, `1.234,50`, `1 234,56`,
/// `1'234.50`, `12345`, `0.50`, `5,00`. The rules, in order:
/// - a space (also a no-break one) or `'` between digits is a thousands separator when a
///   group of exactly three digits follows it (so "5 GB" is 5 and "2 500 SMS" 2500);
/// - with both `,` and `.`, the last of them is the decimal separator and the other one
///   separates thousands (`1,234.50` and `1.234,50` are both 1234.5);
/// - the same `,` or `.` twice or more between groups of three separates thousands
///   (`1,234,567`);
/// - a lone `,` or `.` is decimal, except when it follows one to three digits (not a lone
///   `0`) and exactly three digits follow it: then it separates thousands (`1,234` and
///   `1.234` are 1234, `0.500` is 0.5). Operators almost never show a balance with three
///   decimals (dinars of Kuwait, Bahrain, Tunisia do; their balances read 1000 times too
///   high), while four-digit balances with a thousands separator are common.
///
/// A `-` right before the first digit makes it negative. Nothing else is guessed: the first
/// number is the amount even when a word such as "SMS" follows it.
pub fn first_amount(text: &str) -> Option<f64> {
    let chars: Vec<char> = text.chars().collect();
    amount_with_span(&chars).map(|(amount, _)| amount)
}

/// The first amount of `chars`, read as [`first_amount`] says, and where its digits are (char
/// indices), for what is written beside it (the currency).
pub fn amount_with_span(chars: &[char]) -> Option<(f64, std::ops::Range<usize>)> {
    let start = chars.iter().position(char::is_ascii_digit)?;
    let negative = start > 0 && chars[start - 1] == '-';
    let first = digit_run(chars, start);
    let mut integer: String = first.iter().collect();
    let mut fraction = String::new();
    let mut thousands: Option<char> = None;
    let mut at = start + first.len();
    while let Some(&separator) = chars.get(at) {
        let group = digit_run(chars, at + 1);
        if group.is_empty() {
            break;
        }
        let after = at + 1 + group.len();
        // A group of three after a first group that may lead one (1 to 3 digits, not "0").
        let three =
            group.len() == 3 && (thousands.is_some() || (first.len() <= 3 && *first != ['0']));
        let decimal = match separator {
            ' ' | '\u{a0}' | '\u{202f}' | '\'' => {
                if three && thousands.is_none_or(|used| used == separator) {
                    false
                } else {
                    break;
                }
            }
            ',' | '.' => match thousands {
                Some(used) if used == separator => {
                    if group.len() == 3 {
                        false
                    } else {
                        break;
                    }
                }
                Some(_) => true,
                // A lone `,`/`.` before three digits: thousands (see above), as it surely is
                // when the same separator or the other one follows the group.
                None => !three,
            },
            _ => break,
        };
        let digits: String = group.iter().collect();
        if decimal {
            fraction = digits;
            at = after;
            break;
        }
        thousands = Some(separator);
        integer.push_str(&digits);
        at = after;
    }
    let number = if fraction.is_empty() {
        integer
    } else {
        format!("{integer}.{fraction}")
    };
    let amount: f64 = number
        .parse()
        .ok()
        .filter(|amount: &f64| amount.is_finite())?;
    Some((if negative { -amount } else { amount }, start..at))
}

/// The ASCII digits of `chars` from `from` on (none past the end).
fn digit_run(chars: &[char], from: usize) -> &[char] {
    let rest = chars.get(from..).unwrap_or_default();
    let length = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    &rest[..length]
}

/// The data of `sim.balance` from modem `modem` with SIM `sim`.
pub fn balance_data(
    modem: &str,
    sim: u32,
    code: &str,
    text: &str,
    low_below: Option<f64>,
    at: u64,
) -> Value {
    let amount = first_amount(text);
    let low = match (amount, low_below) {
        (Some(amount), Some(limit)) => amount < limit,
        _ => false,
    };
    json!({
        "modem": modem,
        "sim": sim,
        "code": code,
        "text": text,
        "amount": amount,
        "low_balance": low,
        "low_balance_below": low_below,
        "checked_at": rfc3339(at),
    })
}

/// The event of a call event on modem `modem` with SIM `sim`.
pub fn call_event(modem: &str, sim: u32, event: &CallEvent, at: u64) -> NewEvent {
    match event {
        CallEvent::Ringing { number } => NewEvent {
            name: "call.ringing".into(),
            data: json!({"modem": modem, "sim": sim, "from": number, "at": rfc3339(at)}),
        },
        CallEvent::Missed {
            number,
            rings,
            rejected,
        } => NewEvent {
            name: "call.missed".into(),
            data: json!({
                "modem": modem,
                "sim": sim,
                "from": number,
                "rings": rings,
                "rejected": rejected,
                "at": rfc3339(at),
            }),
        },
    }
}

impl Gateway {
    /// Stores a call event of modem `modem` (delivered to webhooks like any event).
    pub(super) async fn on_call(&self, modem: usize, event: CallEvent) {
        let inner = &self.inner;
        let slot = &inner.modems[modem];
        let stored = call_event(&slot.name, slot.sim, &event, now_ms());
        Self::count(match event {
            CallEvent::Ringing { .. } => &inner.counters.calls,
            CallEvent::Missed { .. } => &inner.counters.missed_calls,
        });
        if let Ok(mut activity) = inner.activity.lock() {
            let mut data = stored.data.clone();
            data["event"] = json!(stored.name);
            activity.last_call = Some(data);
        }
        if let Err(error) = self.record(vec![stored]).await {
            if !error.is_storage_failure() {
                error!(
                    "gateway: cannot store a call event of {}: {error}",
                    inner.modems[modem].name
                );
            }
        }
    }

    async fn record(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        blocking(move || store.record_events(&events))
            .await
            .map(|_| ())
    }

    /// Sends a USSD code (or a menu answer) through modem `modem` (an index of
    /// [`Gateway::modems`]) and waits for the answer, at most `[ussd] timeout`.
    pub async fn ussd(&self, modem: usize, code: &str) -> Result<UssdAnswer, UssdFailure> {
        let inner = &self.inner;
        let Some(slot) = inner.modems.get(modem) else {
            return Err(UssdFailure::Stopped);
        };
        Self::count(&inner.counters.ussd_requests);
        let result = slot.handle.ussd(code, inner.settings.ussd_timeout).await;
        if let Err(failure) = &result {
            Self::count(&inner.counters.ussd_failures);
            warn!("gateway: USSD {code:?} on {}: {failure}", slot.name);
        }
        result
    }

    /// Ends modem `modem`'s USSD menu session.
    pub async fn ussd_cancel(&self, modem: usize) -> Result<(), UssdFailure> {
        let Some(slot) = self.inner.modems.get(modem) else {
            return Err(UssdFailure::Stopped);
        };
        slot.handle
            .ussd_cancel()
            .await
            .map_err(|_| UssdFailure::Stopped)
    }

    /// What `/v1/status` shows of calls and balance.
    pub fn sim_activity(&self) -> SimActivity {
        self.inner
            .activity
            .lock()
            .map(|activity| activity.clone())
            .unwrap_or_default()
    }

    /// Checks modem `modem`'s balance once: `sim.balance` on an answer.
    pub async fn check_balance(
        &self,
        modem: usize,
        check: &BalanceCheck,
    ) -> Result<Value, UssdFailure> {
        let answer = self.ussd(modem, &check.code).await?;
        if answer.session_open {
            // A menu where a balance was expected: leave it, or the next request answers it.
            let _ = self.ussd_cancel(modem).await;
        }
        let slot = &self.inner.modems[modem];
        let name = &slot.name;
        let data = balance_data(
            name,
            slot.sim,
            &check.code,
            &answer.text,
            check.low_below,
            now_ms(),
        );
        info!("gateway: balance of {name}: {}", answer.text);
        if let Ok(mut activity) = self.inner.activity.lock() {
            self.keep_balance(&mut activity, &data);
        }
        let event = NewEvent {
            name: "sim.balance".into(),
            data: data.clone(),
        };
        if let Err(error) = self.record(vec![event]).await {
            if !error.is_storage_failure() {
                error!("gateway: cannot store the balance of {name}: {error}");
            }
        }
        Ok(data)
    }

    /// Keeps `data` as its modem's last balance, the others in config order.
    fn keep_balance(&self, activity: &mut SimActivity, data: &Value) {
        let index_of = |data: &Value| {
            data["modem"]
                .as_str()
                .and_then(|name| self.modem_index(Some(name)))
                .unwrap_or(usize::MAX)
        };
        activity
            .balances
            .retain(|kept| kept["modem"] != data["modem"]);
        activity.balances.push(data.clone());
        activity.balances.sort_by_key(index_of);
        activity.last_balance = activity.balances.first().cloned();
    }

    /// The scheduled balance checks: each modem's own (`[[modem]] balance`), else for the
    /// first modem `[ussd] balance`; by index in [`Gateway::modems`].
    pub fn balance_checks(&self) -> Vec<(usize, BalanceCheck)> {
        let settings = &self.inner.settings;
        self.inner
            .modems
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let own = settings
                    .modem_balances
                    .iter()
                    .find(|(name, _)| *name == slot.name)
                    .map(|(_, check)| check.clone());
                let fallback = settings.balance.clone().filter(|_| index == 0);
                own.or(fallback).map(|check| (index, check))
            })
            .collect()
    }

    /// Checks modem `modem`'s balance on its schedule, while it is ready; a failure waits for
    /// the next turn (logged, and counted as a USSD failure).
    pub(super) async fn balance_loop(self, modem: usize, check: BalanceCheck) {
        let name = self.inner.modems[modem].name.clone();
        let mut next = tokio::time::Instant::now() + check.interval.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep_until(next).await;
            next = tokio::time::Instant::now() + check.interval;
            let mut status = self.inner.modems[modem].handle.watch_status();
            if status.borrow().state != crate::modem::LinkState::Ready {
                // Said once per turn: the check waits for the modem rather than spend the
                // turn on a refusal.
                info!(
                    "gateway: balance check {:?} waits for {name} to be ready",
                    check.code
                );
            }
            let ready = status
                .wait_for(|status| status.state == crate::modem::LinkState::Ready)
                .await
                .is_ok();
            if !ready {
                return;
            }
            if let Err(failure) = self.check_balance(modem, &check).await {
                warn!(
                    "gateway: balance check {:?} on {name} failed: {failure}",
                    check.code
                );
            }
        }
    }

    /// The index in [`Gateway::modems`] of the modem called `name`; the first when `name`
    /// is none; none when no modem has that name.
    pub fn modem_index(&self, name: Option<&str>) -> Option<usize> {
        match name {
            None => Some(0),
            Some(name) => self.inner.modems.iter().position(|slot| slot.name == name),
        }
    }

    /// The name of modem `modem` (the first when out of range).
    pub fn modem_name(&self, modem: usize) -> &str {
        let slot = self
            .inner
            .modems
            .get(modem)
            .unwrap_or(&self.inner.modems[0]);
        &slot.name
    }

    /// Flaps of the modem's state that did not become events.
    pub fn modem_flaps_suppressed(&self) -> u64 {
        self.inner.flaps_suppressed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_number_is_the_amount() {
        let cases = [
            (
                "Your balance is 12.50 EUR, valid until 31.12.2026",
                Some(12.5),
            ),
            ("Guthaben: 3,20 EUR.", Some(3.2)),
            ("Balance -1.5", Some(-1.5)),
            ("5 GB left", Some(5.0)),
            ("Balance: 12. Thanks", Some(12.0)),
            ("no number", None),
            ("", None),
            // Thousands and decimals as operators write them.
            ("Balance 1,234.50 KES", Some(1234.5)),
            ("Your balance is KES 1,234.50", Some(1234.5)),
            ("Saldo: 1.234,50 EUR", Some(1234.5)),
            ("Guthaben: 12,34 EUR", Some(12.34)),
            ("Solde: 1 234,56 FCFA", Some(1234.56)),
            ("Solde: 1\u{a0}234,56 FCFA", Some(1234.56)),
            ("Solde: 1\u{202f}234\u{202f}567 FCFA", Some(1_234_567.0)),
            ("Guthaben: CHF 1'234.50", Some(1234.5)),
            ("Balance: Rs. 45.00", Some(45.0)),
            ("You have 0 credit", Some(0.0)),
            ("Balance 12345 UGX", Some(12345.0)),
            ("Balance 0.50", Some(0.5)),
            ("Balance 5,00 EUR", Some(5.0)),
            ("Balance: 10 000 UGX", Some(10_000.0)),
            ("Balance 1,234,567.89", Some(1_234_567.89)),
            ("Saldo 1.234.567,89", Some(1_234_567.89)),
            // A lone separator before exactly three digits separates thousands...
            ("Balance 1,234", Some(1234.0)),
            ("Saldo 1.234 EUR", Some(1234.0)),
            // ...except after a lone 0, or after more than three digits.
            ("Balance 0.500", Some(0.5)),
            ("Balance 1234.567", Some(1234.567)),
            // A space before a word or a longer group ends the number.
            ("2 500 SMS left", Some(2500.0)),
            ("12 345678", Some(12.0)),
            ("Balance -1,234.50", Some(-1234.5)),
            // A separator used for thousands cannot end a group of two.
            ("1,234,5", Some(1234.0)),
        ];
        for (text, expected) in cases {
            assert_eq!(first_amount(text), expected, "{text:?}");
        }
    }

    #[test]
    fn call_and_balance_events_name_their_modem_and_sim() {
        let events = [
            call_event(
                "spare",
                2,
                &CallEvent::Ringing {
                    number: Some("+447700900123".into()),
                },
                0,
            ),
            call_event(
                "spare",
                2,
                &CallEvent::Missed {
                    number: None,
                    rings: 3,
                    rejected: false,
                },
                0,
            ),
            NewEvent {
                name: "sim.balance".into(),
                data: balance_data("spare", 2, "*101#", "Balance 1,234.50", Some(5.0), 0),
            },
        ];
        for event in &events {
            assert_eq!(
                (&event.data["modem"], &event.data["sim"]),
                (&json!("spare"), &json!(2)),
                "{}: {}",
                event.name,
                event.data
            );
        }
        assert_eq!(events[2].data["amount"], json!(1234.5));
        assert_eq!(events[2].data["low_balance"], json!(false));
    }

    #[test]
    fn low_balance_below_the_configured_amount() {
        let low = |text: &str, below| {
            balance_data("m", 0, "*100#", text, below, 0)["low_balance"].clone()
        };
        assert_eq!(low("Balance 4.99", Some(5.0)), json!(true));
        assert_eq!(low("Balance 5.00", Some(5.0)), json!(false));
        assert_eq!(low("Balance 1", None), json!(false));
        assert_eq!(low("no number", Some(5.0)), json!(false));
    }
}
