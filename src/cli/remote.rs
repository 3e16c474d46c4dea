//! The commands that talk to a running daemon through its API (address and token from the
//! config file): send, status, messages, events, webhook, token.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{SUCCESS, UsageError, WebhookAction, load_config};
use crate::client::{Client, WaitEnd};

/// `send --wait` ended with the message failed.
pub const EXIT_FAILED: u8 = 3;
/// `send --wait` ended with the message expired (no status report in time).
pub const EXIT_EXPIRED: u8 = 4;
/// `send --wait` gave up while the message was still under way.
pub const EXIT_STILL_UNDER_WAY: u8 = 5;

/// What `smsrelay send` sends.
#[derive(Debug, Clone)]
pub struct SendArgs {
    /// The recipient.
    pub to: String,
    /// The text.
    pub text: String,
    /// Returned in every event of the message.
    pub callback_data: Option<String>,
    /// Makes a repeat within 24 h return the first answer.
    pub idempotency_key: Option<String>,
    /// Everything but the modem (`--dry-run`).
    pub dry_run: bool,
    /// `false` asks no status report for this message (`--no-status-report`).
    pub status_report: bool,
    /// Follow the message to its end for at most this long.
    pub wait: Option<Duration>,
    /// Send through this modem only (`--modem`).
    pub modem: Option<String>,
    /// Send through the modem with this SIM slot only (`--sim`).
    pub sim: Option<u32>,
}

fn client(config: &Path) -> anyhow::Result<Client> {
    let loaded = load_config(config)?;
    Ok(Client::from_config(&loaded)?)
}

fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{value}"),
    }
}

/// Sends an SMS; with `wait`, follows it and exits 0 delivered (or sent, no report asked),
/// 3 failed, 4 expired, 5 still under way when the wait ran out.
pub fn send(config: &Path, args: &SendArgs) -> anyhow::Result<u8> {
    let client = client(config)?;
    let mut request =
        json!({ "to": args.to, "text": args.text, "callback_data": args.callback_data });
    // Only when asked for: the request stays the one older daemons accept.
    if args.dry_run {
        request["dry_run"] = json!(true);
    }
    if !args.status_report {
        request["status_report"] = json!(false);
    }
    if let Some(modem) = &args.modem {
        request["modem"] = json!(modem);
    }
    if let Some(sim) = args.sim {
        request["sim"] = json!(sim);
    }
    let message = client.send(
        &request,
        args.idempotency_key.as_deref(),
        args.wait,
        |line| println!("{line}"),
    )?;
    if args.wait.is_none() {
        return Ok(SUCCESS);
    }
    Ok(match crate::client::wait_end(&message) {
        Some(WaitEnd::Delivered | WaitEnd::SentWithoutReport) => SUCCESS,
        Some(WaitEnd::Failed) => EXIT_FAILED,
        Some(WaitEnd::Expired) => EXIT_EXPIRED,
        None => EXIT_STILL_UNDER_WAY,
    })
}

/// Prints the daemon's status.
pub fn status(config: &Path) -> anyhow::Result<u8> {
    print_json(&client(config)?.get("/v1/status")?);
    Ok(SUCCESS)
}

/// Sends a USSD code (or a menu answer) and prints the answer; `cancel` ends the session.
pub fn ussd(
    config: &Path,
    code: Option<&str>,
    cancel: bool,
    modem: Option<&str>,
) -> anyhow::Result<u8> {
    let client = client(config)?;
    if cancel {
        client.post("/v1/ussd/cancel", &json!({"modem": modem}))?;
        println!("USSD session cancelled");
        return Ok(SUCCESS);
    }
    let code = code.ok_or_else(|| UsageError("a USSD code is needed, e.g. '*100#'".into()))?;
    let answer = client.post("/v1/ussd", &json!({"code": code, "modem": modem}))?;
    println!("{}", answer["text"].as_str().unwrap_or_default());
    if answer["session_open"].as_bool() == Some(true) {
        println!(
            "(the network waits for an answer: smsrelay ussd <choice>, or smsrelay ussd --cancel)"
        );
    }
    Ok(SUCCESS)
}

/// Lists recent messages, one line each.
pub fn messages(config: &Path, state: Option<&str>, limit: u16) -> anyhow::Result<u8> {
    let mut path = format!("/v1/messages?limit={limit}");
    if let Some(state) = state {
        path.push_str(&format!("&state={state}"));
    }
    let listed = client(config)?.get(&path)?;
    for message in listed["messages"].as_array().into_iter().flatten() {
        let text: String = message["text"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        println!(
            "{}  {:<9}  {:<16}  {text}",
            message["id"].as_str().unwrap_or(""),
            message["state"].as_str().unwrap_or(""),
            message["to"].as_str().unwrap_or(""),
        );
    }
    Ok(SUCCESS)
}

/// Prints events after `after`, oldest first; `follow` keeps polling for new ones.
pub fn events(config: &Path, mut after: u64, follow: bool) -> anyhow::Result<u8> {
    let client = client(config)?;
    loop {
        let page = client.get(&format!("/v1/events?after={after}&limit=100"))?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            println!("{event}");
            after = event["sequence"].as_u64().unwrap_or(after);
        }
        if !follow {
            return Ok(SUCCESS);
        }
        if events.is_empty() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Tests, enables, lists dead letters of, or replays a dead letter of one endpoint.
pub fn webhook(config: &Path, action: WebhookAction) -> anyhow::Result<u8> {
    let client = client(config)?;
    let answer = match action {
        WebhookAction::Test { name } => {
            client.post(&format!("/v1/webhooks/{name}/test"), &json!({}))?
        }
        WebhookAction::DeadLetters { name } => {
            client.get(&format!("/v1/webhooks/{name}/dead-letters"))?
        }
        WebhookAction::Replay { name, sequence } => client.post(
            &format!("/v1/webhooks/{name}/dead-letters/{sequence}/replay"),
            &json!({}),
        )?,
        WebhookAction::Enable { name } => {
            client.post(&format!("/v1/webhooks/{name}/enable"), &json!({}))?
        }
    };
    print_json(&answer);
    Ok(SUCCESS)
}

/// Prints the API token: the configured one, or the one generated into the data dir.
pub fn token(config: &Path) -> anyhow::Result<u8> {
    let loaded = load_config(config)?;
    let token =
        crate::client::read_token(&loaded).map_err(|error| UsageError(error.to_string()))?;
    println!("{token}");
    Ok(SUCCESS)
}
