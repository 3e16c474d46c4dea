//! The web console: server-rendered pages on the API's listener (`/` and `/console/…`) to
//! see the gateway, send from it and fix webhooks from a phone.
//!
//! This file owns the router, the session guard (a cookie set by signing in with the API
//! token; every POST carries the session's CSRF token) and page rendering. The pages are in
//! `pages`, the forms they post to in `actions`, the sessions in `session`, the templates and
//! assets under `templates/` and `assets/`, all compiled in. The console owns no SMS rules:
//! it reads what the API reads (`api::views`) and sends with `gateway::Gateway::enqueue`.

mod actions;
mod live;
mod pages;
mod session;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::Environment;

use crate::api::AppState;
use crate::store::{Store, StoreError, blocking};

pub use session::{MAX_SESSIONS, SESSION_LIFETIME, Session, Sessions};

/// The session cookie's name.
pub const COOKIE: &str = "smsrelay_console";

/// The form field (or `X-CSRF-Token` header) carrying the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// The largest form body the guard reads to find the CSRF token.
const FORM_LIMIT: usize = 64 * 1024;

/// What the console's handlers share.
pub struct Console {
    /// The API's state: gateway, store, modem, dispatcher, token.
    pub app: Arc<AppState>,
    /// Who is signed in.
    pub sessions: Mutex<Sessions>,
    /// The templates, compiled in.
    pub templates: Environment<'static>,
}

type Shared = Arc<Console>;

/// The console's routes, ready to merge into the API's router.
pub fn router<S>(app: &Arc<AppState>) -> Router<S> {
    let console = Arc::new(Console {
        app: Arc::clone(app),
        sessions: Mutex::new(Sessions::default()),
        templates: templates(),
    });
    let guarded = Router::new()
        .route("/console", get(pages::overview))
        .route("/console/messages", get(pages::messages))
        .route("/console/messages/{id}", get(pages::message))
        .route("/console/send", get(pages::send).post(actions::send))
        .route("/console/count", post(actions::count))
        .route("/console/webhooks", get(pages::webhooks))
        .route("/console/webhooks/{name}/test", post(actions::test))
        .route("/console/webhooks/{name}/enable", post(actions::enable))
        .route(
            "/console/webhooks/{name}/dead-letters/{sequence}/replay",
            post(actions::replay),
        )
        .route("/console/events", get(pages::events))
        .route(
            "/console/events/{sequence}/redeliver",
            post(actions::redeliver),
        )
        .route("/console/events/stream", get(live::stream))
        .route("/console/signout", post(actions::sign_out))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&console), guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route(
            "/console/signin",
            get(pages::sign_in).post(actions::sign_in),
        )
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .merge(guarded)
        .with_state(console)
}

/// Every template, by file name; `.html` ones auto-escape.
fn templates() -> Environment<'static> {
    let mut env = Environment::new();
    let files = [
        ("base.html", include_str!("templates/base.html")),
        ("signin.html", include_str!("templates/signin.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("messages.html", include_str!("templates/messages.html")),
        ("message.html", include_str!("templates/message.html")),
        ("send.html", include_str!("templates/send.html")),
        ("webhooks.html", include_str!("templates/webhooks.html")),
        ("events.html", include_str!("templates/events.html")),
        ("error.html", include_str!("templates/error.html")),
    ];
    for (name, source) in files {
        // The templates are ours and compiled in; a syntax error fails the console's tests.
        if let Err(error) = env.add_template(name, source) {
            log::error!("console template {name}: {error}");
        }
    }
    env
}

async fn css() -> Response {
    let css = include_str!("assets/console.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], css).into_response()
}

async fn js() -> Response {
    let js = include_str!("assets/console.js");
    let content_type = "text/javascript; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], js).into_response()
}

/// A page that could not be built: its status and a sentence for the person.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// A failure with this status and sentence.
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> PageError {
        PageError::new(StatusCode::SERVICE_UNAVAILABLE, format!("store: {error}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let env = templates();
        let body = env
            .get_template("error.html")
            .and_then(|page| page.render(minijinja::context! { message => self.message }))
            .unwrap_or_else(|_| "error".to_string());
        (self.status, no_store(), Html(body)).into_response()
    }
}

/// Headers every console answer carries: never cached, never framed, no outside resources.
fn no_store() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    ]
}

/// Renders `name` with `context`.
fn render(console: &Console, name: &str, context: minijinja::Value) -> Result<Response, PageError> {
    let page = console
        .templates
        .get_template(name)
        .and_then(|template| template.render(context))
        .map_err(|error| {
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("template {name}: {error}"),
            )
        })?;
    Ok((no_store(), Html(page)).into_response())
}

/// Runs store work off the async runtime.
async fn with_store<T: Send + 'static>(
    console: &Console,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PageError> {
    let store = console.app.gateway.store().clone();
    Ok(blocking(move || work(&store)).await?)
}

impl Console {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave the map half-written.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session cookie's value in a request, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// A POST from another site: a cross-site `Sec-Fetch-Site`, or an `Origin` whose host is not
/// the `Host` asked for. Absent headers pass (old browsers, scripts): the CSRF token and the
/// SameSite cookie still hold.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return true;
    }
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match (origin, host) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin_host != host
        }
        _ => false,
    }
}

/// The guard on every page and form: a live session, and on a POST the session's CSRF token
/// (form field or header) from this site. The session goes on in the request's extensions.
async fn guard(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let session = session_id(request.headers())
        .and_then(|id| console.sessions().get(&id, Instant::now()).map(|s| (id, s)));
    let Some((id, session)) = session else {
        return Redirect::to("/console/signin").into_response();
    };
    let request = if request.method() == Method::POST {
        match checked_post(request, &session).await {
            Ok(request) => request,
            Err(refused) => return refused,
        }
    } else {
        request
    };
    let mut request = request;
    request.extensions_mut().insert(SignedIn { id, session });
    next.run(request).await
}

/// The request again if its CSRF token is the session's and it comes from this site; else
/// the 403 answer.
async fn checked_post(request: Request, session: &Session) -> Result<Request, Response> {
    let forbidden = |why: &str| PageError::new(StatusCode::FORBIDDEN, why).into_response();
    if cross_site(request.headers()) {
        return Err(forbidden("refused: this form was posted from another site"));
    }
    let from_header = request
        .headers()
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| forbidden("refused: the form is too large"))?;
    let presented = from_header.or_else(|| form_field(&bytes, CSRF_FIELD));
    match presented {
        Some(token) if session::same(token.as_bytes(), session.csrf.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(forbidden(
            "refused: the form's security token is missing or stale; reload the page",
        )),
    }
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs
        .into_iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value)
}

/// The signed-in session of a guarded request.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Its id (the cookie's value).
    pub id: String,
    /// The session.
    pub session: Session,
}

/// The `Set-Cookie` value for session `id`; an empty id and no age sign out.
fn cookie(id: &str, max_age: u64) -> HeaderValue {
    let value = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    // Our ids are hex; a value that is not a valid header cannot happen.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}
