//! `smsrelay demo`: the whole gateway on one machine, no hardware, no config to write. A
//! simulated modem on a PTY, the daemon on a temporary data dir with a generated config, and
//! a built-in webhook receiver that prints each event and checks its signature. It injects an
//! inbound SMS, sends one, shows the delivery report, lets a caller ring and hang up, asks the
//! balance with USSD, then stays up for you to play with the API until Ctrl-C, which removes
//! everything it made.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::client::Client;
use crate::config::Config;
use crate::mock::{InboundSms, MockConfig, MockModem};
use crate::webhook::{Clock, Secret};

const SECRET: &str = "whsec_ZGVtby1zZWNyZXQtZm9yLXNtc3JlbGF5LWRlbW8=";

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulated modem, the temp dir or a socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The generated config was refused (a bug).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The daemon failed.
    #[error("{0}")]
    Daemon(#[from] crate::daemon::DaemonError),
}

/// The API's socket: port 8640 when free, else any free port. Bound here and handed to the
/// daemon, so that two demos started at once cannot both pick 8640.
async fn api_listener() -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 8640))).await {
        Ok(listener) => Ok(listener),
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await,
    }
}

async fn receive(secret: Arc<Secret>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let timestamp = header("webhook-timestamp").parse().unwrap_or(0);
    let verified = secret.verify(
        &header("webhook-id"),
        timestamp,
        &body,
        &header("webhook-signature"),
    );
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!(
        "\n  webhook ← {} (signature {})\n  {}",
        event["name"].as_str().unwrap_or("?"),
        if verified { "valid" } else { "INVALID" },
        serde_json::to_string(&event["data"]).unwrap_or_default()
    );
    StatusCode::OK
}

/// Runs the demo until Ctrl-C.
pub async fn run() -> Result<(), DemoError> {
    let work = std::env::temp_dir().join(format!("smsrelay-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run_in(work.clone()).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn run_in(work: PathBuf) -> Result<(), DemoError> {
    let link = work.join("modem");
    let modem = MockModem::start(
        MockConfig {
            submit_delay: Duration::from_millis(800),
            report_delay: Duration::from_secs(2),
            ..MockConfig::default()
        },
        Some(link.clone()),
    )?;
    let receiver_url = start_receiver().await?;
    let api = api_listener().await?;
    let listen = api.local_addr()?;
    let config_text = demo_config(&work, &link, listen, &receiver_url);
    let config_path = work.join("smsrelay.toml");
    std::fs::write(&config_path, &config_text)?;
    let config = Config::parse(&config_text)?;
    println!(
        "smsrelay demo: a simulated modem on {}, the daemon, and a webhook receiver.",
        link.display()
    );
    println!(
        "Config: {} (a copy lives only while the demo runs)\n",
        config_path.display()
    );
    let client = crate::client::Client::from_config(&config)
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    // Ctrl-C stops the daemon in order, then the demo cleans up.
    let stop = crate::service::stop_signal()?;
    let daemon = tokio::spawn(crate::daemon::run_on(config, api, stop));
    match wait_until_ready(client).await {
        Some(client) => {
            tour(&modem, client).await?;
            print_try_it(listen, &config_path, &link);
        }
        None => eprintln!("the daemon did not become ready; see the log above"),
    }
    Ok(daemon
        .await
        .map_err(|error| std::io::Error::other(error.to_string()))??)
}

/// The webhook receiver that prints each event and checks its signature; its URL.
async fn start_receiver() -> Result<String, DemoError> {
    let secret = Arc::new(
        Secret::parse(SECRET)
            .map_err(|error| std::io::Error::other(format!("demo secret: {error}")))?,
    );
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", receiver.local_addr()?);
    let app = axum::Router::new().route(
        "/events",
        post(move |headers, body| receive(Arc::clone(&secret), headers, body)),
    );
    tokio::spawn(async move {
        let _ = axum::serve(receiver, app).await;
    });
    Ok(url)
}

const TOKEN: &str = "demo-token-for-smsrelay-demo";

fn demo_config(work: &Path, link: &Path, listen: SocketAddr, receiver_url: &str) -> String {
    format!(
        r#"data_dir = "{data}"
webhook_clock_check = {clock_check}

[modem]
device = "{device}"

[api]
listen = "{listen}"
token = "{TOKEN}"

[[webhook]]
name = "demo"
url = "{receiver_url}"
secret = "{SECRET}"
"#,
        data = work.join("data").display(),
        device = link.display(),
        // The daemon's check, as in production, where it cannot hold the tour: on a machine
        // whose clock is not synchronised (a container, say) the demo goes without it.
        clock_check = crate::webhook::SystemClock.synchronised() == Some(true),
    )
}

/// Waits up to 30 s for the API, then for the modem (`/readyz` answers 200).
async fn wait_until_ready(client: Client) -> Option<Client> {
    tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            if is_ready(&client) {
                return Some(client);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// Ready means a modem is ready now, not merely within `/readyz`'s grace.
fn is_ready(client: &Client) -> bool {
    client
        .get("/readyz")
        .is_ok_and(|ready| ready["modem_not_ready_seconds"].is_null())
}

/// An SMS in, one out with its delivery report, a missed call and a USSD balance.
async fn tour(modem: &MockModem, client: Client) -> Result<(), DemoError> {
    println!("1. An SMS arrives from +447700900555 …");
    modem
        .inject_sms(&InboundSms::new(
            "+447700900555",
            "Hi! Is the gateway up? 👋",
        ))
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("\n2. Sending a reply through the API, and waiting for its delivery report …");
    let sent = tokio::task::spawn_blocking(move || {
        let request = serde_json::json!({ "to": "+447700900555", "text": "Yes: smsrelay here." });
        let sent = client.send(&request, None, Some(Duration::from_secs(30)), |line| {
            println!("   {line}")
        });
        (client, sent)
    })
    .await;
    let client = match sent {
        Ok((client, sent)) => {
            if let Err(error) = sent {
                eprintln!("   send failed: {error}");
            }
            client
        }
        Err(error) => return Err(std::io::Error::other(error.to_string()).into()),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("\n3. +447700900555 calls, rings twice and hangs up (call.ringing, call.missed) …");
    modem.call(Some("+447700900555"), 2, Duration::from_secs(1));
    let client = tokio::task::spawn_blocking(move || {
        // Until the missed call is stored (its webhook follows at once), for at most 15 s.
        for _ in 0..150 {
            let missed = client.get("/v1/events?name=call.missed");
            if missed.is_ok_and(|found| found["events"].as_array().is_some_and(|e| !e.is_empty())) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("\n4. Asking the balance with USSD (POST /v1/ussd {{\"code\": \"*100#\"}}) …");
        match client.post("/v1/ussd", &serde_json::json!({ "code": "*100#" })) {
            Ok(answer) => println!(
                "   the network says: {}",
                answer["text"].as_str().unwrap_or("?")
            ),
            Err(error) => eprintln!("   USSD failed: {error}"),
        }
        client
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))?;
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

fn print_try_it(listen: SocketAddr, config: &Path, device: &Path) {
    println!(
        r#"
The gateway stays up. Try it (Ctrl-C stops everything and removes the temp files):

  API      http://{listen}   token: {TOKEN}
  curl -s -H 'Authorization: Bearer {TOKEN}' -H 'Content-Type: application/json' \
       -d '{{"to": "+447700900123", "text": "Hello"}}' http://{listen}/v1/messages
  curl -s -H 'Authorization: Bearer {TOKEN}' http://{listen}/v1/events
  smsrelay send --config {config} --to +447700900123 --text "Hello" --wait
  smsrelay events --config {config} --follow
  smsrelay mock-modem is the simulated modem used here; {device} is its port.
"#,
        config = config.display(),
        device = device.display(),
    );
}
