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
        let mut since = self
            .not_ready_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (ready, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// How long the modem has not been ready; `None` while it is.
    pub fn not_ready_for(&self) -> Option<Duration> {
        self.not_ready_since
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .map(|since| since.elapsed())
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
    if let Some(waited) = not_ready_for.filter(|waited| *waited >= state.ready_grace) {
        let why = modem
            .last_error
            .clone()
            .unwrap_or_else(|| describe_link_state(&modem.state));
        reasons.push(format!(
            "modem: not ready for {} s ({why})",
            waited.as_secs()
        ));
    }
    let (code, status) = verdict(&reasons, "ready", "not_ready");
    let body = Ready {
        status,
        reasons,
        modem: link_state_name(&modem.state),
        modem_not_ready_seconds: not_ready_for.map(|waited| waited.as_secs()),
    };
    (code, axum::Json(body)).into_response()
}
