//! The console's forms (POST): sign in and out, send, the part counter, and the webhook and
//! event buttons. The guard has checked the session and the CSRF token before any of these
//! run (except sign-in, which has no session yet); each does what the API's handler does.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::pages::modem_choices;
use super::session::{SESSION_LIFETIME, random_token, same};
use super::{PageError, Shared, SignedIn, cookie, cross_site, render, with_store};
use crate::gateway::NewMessage;
use crate::pdu::udh::{self, ConcatReference};
use crate::pdu::{Alphabet, gsm7};

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
}

/// `POST /console/signin`: the API token starts a session (cookie); a wrong one shows the
/// form again.
pub async fn sign_in(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    if cross_site(&headers) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "refused: this form was posted from another site",
        ));
    }
    if !same(form.token.trim().as_bytes(), console.app.token.as_bytes()) {
        log::warn!("console: a sign-in with a wrong token");
        return Ok(Redirect::to("/console/signin?failed=1").into_response());
    }
    let fresh = random_token().and_then(|id| Ok((id, random_token()?)));
    let (id, csrf) = fresh.map_err(|error| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no random source for a session: {error}"),
        )
    })?;
    console.sessions().create(id.clone(), csrf, Instant::now());
    let set_cookie = cookie(&id, SESSION_LIFETIME.as_secs());
    Ok(([(header::SET_COOKIE, set_cookie)], Redirect::to("/console")).into_response())
}

/// `POST /console/signout`: ends the session and clears the cookie.
pub async fn sign_out(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
) -> Response {
    console.sessions().remove(&signed_in.id);
    (
        [(header::SET_COOKIE, cookie("", 0))],
        Redirect::to("/console/signin"),
    )
        .into_response()
}

/// The send form.
#[derive(Debug, Deserialize)]
pub struct SendForm {
    to: String,
    text: String,
    /// The chosen modem's name; empty or absent (one modem: no choice shown) routes as the
    /// rules say.
    #[serde(default)]
    modem: String,
}

/// `POST /console/send`: `Gateway::enqueue` (through the chosen modem, if one was), then the
/// message's page; a refusal shows the form again with the reason, what was typed and the
/// modem chosen.
pub async fn send(
    State(console): State<Shared>,
    Extension(signed_in): Extension<SignedIn>,
    Form(form): Form<SendForm>,
) -> Result<Response, PageError> {
    let request = NewMessage {
        to: form.to.clone(),
        text: form.text.clone(),
        modem: Some(form.modem.clone()).filter(|modem| !modem.is_empty()),
        ..NewMessage::default()
    };
    match console.app.gateway.enqueue(request).await {
        Ok(accepted) => {
            let to = format!("/console/messages/{}?done=sent", accepted.id);
            Ok(Redirect::to(&to).into_response())
        }
        Err(error) => {
            let context = context! {
                page => "send",
                csrf => signed_in.session.csrf,
                error => error.to_string(),
                to => form.to,
                text => form.text.clone(),
                count => count_text(&form.text),
                modems => Value::from_serialize(modem_choices(&console.app.gateway)),
                modem => form.modem,
            };
            let page = render(&console, "send.html", context)?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// What the part counter says about a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// SMS parts it takes.
    pub parts: usize,
    /// `gsm7` or `ucs2`.
    pub encoding: &'static str,
    /// Septets (GSM 7-bit) or UTF-16 units (UCS-2) the text uses.
    pub units: usize,
    /// The sentence shown under the text box.
    pub summary: String,
}

/// Counts `text` with the daemon's own splitting (`pdu::udh`), as `Gateway::enqueue` would.
pub fn count_text(text: &str) -> Count {
    let alphabet = udh::choose_alphabet(text);
    let (encoding, units) = match alphabet {
        Alphabet::Gsm7 => (
            "gsm7",
            text.chars().filter_map(gsm7::char_len).sum::<usize>(),
        ),
        _ => ("ucs2", text.encode_utf16().count()),
    };
    let parts =
        udh::split(text, alphabet, ConcatReference::Eight(0)).map_or(0, |parts| parts.len());
    let unit_name = if encoding == "gsm7" {
        "GSM 7-bit characters"
    } else {
        "UCS-2 units"
    };
    let plural = if parts == 1 { "" } else { "s" };
    Count {
        parts,
        encoding,
        units,
        summary: format!("{units} {unit_name} · {parts} SMS part{plural}"),
    }
}

/// The counter's request.
#[derive(Debug, Deserialize)]
pub struct CountForm {
    text: String,
}

/// `POST /console/count`: the live counter's JSON, so the page counts by the daemon's rules.
pub async fn count(Form(form): Form<CountForm>) -> Json<Count> {
    Json(count_text(&form.text))
}

/// Whether `name` is a configured webhook.
async fn known_webhook(console: &Shared, name: &str) -> Result<(), PageError> {
    let dispatcher = Arc::clone(&console.app.dispatcher);
    let status = crate::store::blocking(move || dispatcher.status()).await?;
    if status.iter().any(|webhook| webhook.name == name) {
        Ok(())
    } else {
        Err(PageError::new(StatusCode::NOT_FOUND, "No such webhook."))
    }
}

/// `POST /console/webhooks/{name}/test`: queues a `webhook.test` event for it.
pub async fn test(
    State(console): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    known_webhook(&console, &name).await?;
    with_store(&console, move |store| {
        store.enqueue_test_event(&name, false)
    })
    .await?;
    Ok(Redirect::to("/console/webhooks?done=tested").into_response())
}

/// `POST /console/webhooks/{name}/enable`: re-enables it (the dispatcher sends a test).
pub async fn enable(
    State(console): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    known_webhook(&console, &name).await?;
    let dispatcher = Arc::clone(&console.app.dispatcher);
    crate::store::blocking(move || dispatcher.enable(&name)).await?;
    Ok(Redirect::to("/console/webhooks?done=enabled").into_response())
}

/// `POST /console/webhooks/{name}/dead-letters/{sequence}/replay`: queues it again.
pub async fn replay(
    State(console): State<Shared>,
    Path((name, sequence)): Path<(String, u64)>,
) -> Result<Response, PageError> {
    known_webhook(&console, &name).await?;
    let replayed = with_store(&console, move |store| {
        store.replay_dead_letter(&name, sequence)
    })
    .await?;
    if !replayed {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "No dead letter for this event on this webhook.",
        ));
    }
    Ok(Redirect::to("/console/webhooks?done=replayed").into_response())
}

/// `POST /console/events/{sequence}/redeliver`: queues the event again for its webhooks.
pub async fn redeliver(
    State(console): State<Shared>,
    Path(sequence): Path<u64>,
) -> Result<Response, PageError> {
    let jobs = with_store(&console, move |store| store.redeliver(sequence)).await?;
    match jobs {
        Some(_) => Ok(Redirect::to("/console/events?done=redelivered").into_response()),
        None => Err(PageError::new(StatusCode::NOT_FOUND, "No such event.")),
    }
}

#[cfg(test)]
mod tests {
    use super::count_text;

    fn check(text: &str, parts: usize, encoding: &str, units: usize) {
        let count = count_text(text);
        assert_eq!(
            (count.parts, count.encoding, count.units),
            (parts, encoding, units),
            "{text:?}"
        );
    }

    #[test]
    fn the_counter_counts_as_the_daemon_splits() {
        check("", 1, "gsm7", 0);
        check("hello", 1, "gsm7", 5);
        check(&"x".repeat(160), 1, "gsm7", 160);
        check(&"x".repeat(161), 2, "gsm7", 161);
        check(&"x".repeat(306), 2, "gsm7", 306);
        check(&"x".repeat(307), 3, "gsm7", 307);
        check("€", 1, "gsm7", 2);
        check(&"€".repeat(80), 1, "gsm7", 160);
        check(&"€".repeat(81), 2, "gsm7", 162);
        check("привет", 1, "ucs2", 6);
        check(&"я".repeat(70), 1, "ucs2", 70);
        check(&"я".repeat(71), 2, "ucs2", 71);
        check("😀", 1, "ucs2", 2);
    }
}
