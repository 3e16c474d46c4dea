//! `/healthz` (liveness: the process serves and the store writes) and `/readyz` (also a modem
//! ready, or not ready for less than `[api] ready_grace`), with no token; and `Readiness`, the
//! memory of since when the modem has not been ready.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::views::{describe_link_state, link_state_name};
use super::{AppState, Shared};
use crate::modem::ModemStatus;

/// Since when the modem has not been ready: `/readyz` tolerates a modem that is starting or
/// reconnecting for `ready_grace`, so a probe does not flap on every re-init.
#[derive(Debug)]
pub struct Readiness {
    not_ready_since: Mutex<Option<Instant>>,
}

impl Default for Readiness {
    fn default() -> Readiness {
        // The start is the moment it was last not ready.
        Readiness {
            not_ready_since: Mutex::new(Some(Instant::now())),
        }
    }
}

impl Readiness {
    /// Records whether the modem is ready now.
    pub fn observe(&self, ready: bool) {
        self.observe_at(ready, Instant::now());
    }

    /// How long the modem has not been ready; `None` while it is.
    pub fn not_ready_for(&self) -> Option<Duration> {
        self.not_ready_for_at(Instant::now())
    }

    /// Records whether the modem is ready at `now`: the first not-ready moment is kept.
    fn observe_at(&self, ready: bool, now: Instant) {
        let mut since = self.since();
        match (ready, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(now),
            (false, Some(_)) => {}
        }
    }

    /// How long the modem has not been ready at `now`; `None` while it is.
    fn not_ready_for_at(&self, now: Instant) -> Option<Duration> {
        self.since()
            .map(|since| now.saturating_duration_since(since))
    }

    fn since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A panic elsewhere while holding it leaves a valid `Option<Instant>`.
        self.not_ready_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `/healthz`: `status` is `ok` or `failing`.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    reasons: Vec<String>,
    store: &'static str,
    modem: &'static str,
}

/// `/readyz`: `status` is `ready` or `not_ready`.
#[derive(Debug, Serialize)]
struct Ready {
    status: &'static str,
    reasons: Vec<String>,
    modem: &'static str,
    modem_not_ready_seconds: Option<u64>,
}

/// Why the daemon is not alive: the store cannot write (a full disk, an I/O error).
fn liveness_problems(state: &AppState) -> Vec<String> {
    state
        .gateway
        .store()
        .failure()
        .map(|failure| {
            format!(
                "store: cannot write since {}: {}",
                crate::gateway::rfc3339(failure.since_ms),
                failure.error
            )
        })
        .into_iter()
        .collect()
}

/// Why the modem makes the daemon not ready: not ready for `grace` or longer, with the last
/// error, or else where the driver is.
fn modem_problem(
    not_ready_for: Option<Duration>,
    grace: Duration,
    modem: &ModemStatus,
) -> Option<String> {
    let waited = not_ready_for.filter(|waited| *waited >= grace)?;
    let why = modem
        .last_error
        .clone()
        .unwrap_or_else(|| describe_link_state(&modem.state));
    Some(format!(
        "modem: not ready for {} s ({why})",
        waited.as_secs()
    ))
}

/// 200 and `ok_word` with no reasons, else 503 and `failing_word`.
fn verdict(
    reasons: &[String],
    ok_word: &'static str,
    failing_word: &'static str,
) -> (StatusCode, &'static str) {
    if reasons.is_empty() {
        (StatusCode::OK, ok_word)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failing_word)
    }
}

/// `GET /healthz`: liveness, the process serves and the store writes.
pub async fn healthz(State(state): State<Shared>) -> Response {
    let modem = state.modem.status();
    let reasons = liveness_problems(&state);
    let (code, status) = verdict(&reasons, "ok", "failing");
    let store = if reasons.is_empty() { "ok" } else { "failing" };
    let body = Health {
        status,
        reasons,
        store,
        modem: link_state_name(&modem.state),
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /readyz`: alive, and a modem ready (or not ready for less than `ready_grace`).
pub async fn readyz(State(state): State<Shared>) -> Response {
    let modem = state.modem.status();
    let mut reasons = liveness_problems(&state);
    let not_ready_for = state.readiness.not_ready_for();
    reasons.extend(modem_problem(not_ready_for, state.ready_grace, &modem));
    let (code, status) = verdict(&reasons, "ready", "not_ready");
    let body = Ready {
        status,
        reasons,
        modem: link_state_name(&modem.state),
        modem_not_ready_seconds: not_ready_for.map(|waited| waited.as_secs()),
    };
    (code, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Readiness, modem_problem};
    use crate::modem::{LinkState, ModemStatus};

    #[test]
    fn readiness_remembers_the_first_moment_not_ready() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let readiness = Readiness::default();
        readiness.observe_at(true, at(0));
        assert_eq!(readiness.not_ready_for_at(at(1)), None);
        readiness.observe_at(false, at(2));
        readiness.observe_at(false, at(5));
        assert_eq!(
            readiness.not_ready_for_at(at(7)),
            Some(Duration::from_secs(5))
        );
        readiness.observe_at(true, at(8));
        assert_eq!(readiness.not_ready_for_at(at(9)), None);
    }

    fn status(state: LinkState, last_error: Option<&str>) -> ModemStatus {
        ModemStatus {
            state,
            last_error: last_error.map(str::to_string),
            ..ModemStatus::opening("/dev/ttyUSB0")
        }
    }

    fn check(not_ready_for: Option<u64>, modem: ModemStatus, expected: Option<&str>) {
        let grace = Duration::from_secs(30);
        let found = modem_problem(not_ready_for.map(Duration::from_secs), grace, &modem);
        assert_eq!(found.as_deref(), expected);
    }

    #[test]
    fn the_modem_is_a_problem_only_after_the_grace() {
        check(None, status(LinkState::Ready, None), None);
        check(Some(29), status(LinkState::Opening(1), None), None);
        check(
            Some(30),
            status(LinkState::Opening(1), None),
            Some("modem: not ready for 30 s (connecting)"),
        );
        check(
            Some(45),
            status(LinkState::Waiting("no SIM".into()), None),
            Some("modem: not ready for 45 s (waiting: no SIM)"),
        );
        check(
            Some(60),
            status(LinkState::Stopped, Some("port closed")),
            Some("modem: not ready for 60 s (port closed)"),
        );
    }
}
