//! Calls and USSD as the gateway sees them: `call.ringing` and `call.missed` from the driver's
//! call events, USSD requests for the API with their timeout, and the scheduled balance check
//! that publishes `sim.balance` (the answer's text, its first number as `amount`, and
//! `low_balance` below the configured amount). The last call and the last balance are kept
//! for `/v1/status`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use log::{error, info, warn};
use serde_json::{Value, json};

use super::{Gateway, rfc3339};
use crate::modem::{CallEvent, UssdAnswer, UssdFailure};
use crate::store::{NewEvent, StoreError, blocking, now_ms};

/// `[ussd] balance`: a code checked on a schedule.
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
    /// The last `sim.balance` data.
    pub last_balance: Option<Value>,
}

/// The first number in `text` (`12.50` in "Balance: 12.50 EUR"; a decimal comma counts).
pub fn first_amount(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let start = bytes.iter().position(u8::is_ascii_digit)?;
    let mut end = start;
    let mut separator = false;
    while end < bytes.len() {
        let byte = bytes[end];
        let separator_here = (byte == b'.' || byte == b',')
            && !separator
            && bytes.get(end + 1).is_some_and(u8::is_ascii_digit);
        if byte.is_ascii_digit() {
            end += 1;
        } else if separator_here {
            separator = true;
            end += 1;
        } else {
            break;
        }
    }
    let number = text[start..end].replace(',', ".");
    let negative = start > 0 && bytes[start - 1] == b'-';
    let amount: f64 = number.parse().ok()?;
    Some(if negative { -amount } else { amount })
}

/// The data of `sim.balance`.
pub fn balance_data(modem: &str, code: &str, text: &str, low_below: Option<f64>, at: u64) -> Value {
    let amount = first_amount(text);
    let low = match (amount, low_below) {
        (Some(amount), Some(limit)) => amount < limit,
        _ => false,
    };
    json!({
        "modem": modem,
        "code": code,
        "text": text,
        "amount": amount,
        "low_balance": low,
        "low_balance_below": low_below,
        "checked_at": rfc3339(at),
    })
}

/// The event of a call event.
pub fn call_event(modem: &str, event: &CallEvent, at: u64) -> NewEvent {
    match event {
        CallEvent::Ringing { number } => NewEvent {
            name: "call.ringing".into(),
            data: json!({"modem": modem, "from": number, "at": rfc3339(at)}),
        },
        CallEvent::Missed {
            number,
            rings,
            rejected,
        } => NewEvent {
            name: "call.missed".into(),
            data: json!({
                "modem": modem,
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
        let stored = call_event(&inner.modems[modem].name, &event, now_ms());
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

    /// Checks the first modem's balance once: `sim.balance` on an answer.
    pub async fn check_balance(&self, check: &BalanceCheck) -> Result<Value, UssdFailure> {
        let answer = self.ussd(0, &check.code).await?;
        if answer.session_open {
            // A menu where a balance was expected: leave it, or the next request answers it.
            let _ = self.ussd_cancel(0).await;
        }
        let modem = &self.inner.modems[0].name;
        let data = balance_data(modem, &check.code, &answer.text, check.low_below, now_ms());
        info!("gateway: balance of {modem}: {}", answer.text);
        if let Ok(mut activity) = self.inner.activity.lock() {
            activity.last_balance = Some(data.clone());
        }
        let event = NewEvent {
            name: "sim.balance".into(),
            data: data.clone(),
        };
        if let Err(error) = self.record(vec![event]).await {
            if !error.is_storage_failure() {
                error!("gateway: cannot store the balance of {modem}: {error}");
            }
        }
        Ok(data)
    }

    /// Checks the first modem's balance on its schedule, while it is ready; a failure waits for the
    /// next turn (logged, and counted as a USSD failure).
    pub(super) async fn balance_loop(self, check: BalanceCheck) {
        let mut next = tokio::time::Instant::now() + check.interval.min(Duration::from_secs(60));
        loop {
            tokio::time::sleep_until(next).await;
            next = tokio::time::Instant::now() + check.interval;
            let mut status = self.inner.modems[0].handle.watch_status();
            if status.borrow().state != crate::modem::LinkState::Ready {
                // Said once per turn: the check waits for the modem rather than spend the
                // turn on a refusal.
                info!(
                    "gateway: balance check {:?} waits for {} to be ready",
                    check.code, self.inner.modems[0].name
                );
            }
            let ready = status
                .wait_for(|status| status.state == crate::modem::LinkState::Ready)
                .await
                .is_ok();
            if !ready {
                return;
            }
            if let Err(failure) = self.check_balance(&check).await {
                warn!(
                    "gateway: balance check {:?} on {} failed: {failure}",
                    check.code, self.inner.modems[0].name
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
        ];
        for (text, expected) in cases {
            assert_eq!(first_amount(text), expected, "{text:?}");
        }
    }

    #[test]
    fn low_balance_below_the_configured_amount() {
        let low =
            |text: &str, below| balance_data("m", "*100#", text, below, 0)["low_balance"].clone();
        assert_eq!(low("Balance 4.99", Some(5.0)), json!(true));
        assert_eq!(low("Balance 5.00", Some(5.0)), json!(false));
        assert_eq!(low("Balance 1", None), json!(false));
        assert_eq!(low("no number", Some(5.0)), json!(false));
    }
}
