//! A webhook receiver on 127.0.0.1 (port 0) that records every request and answers as the
//! test says.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for requests to arrive.
const WAIT: Duration = Duration::from_secs(15);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// When it arrived.
    pub(crate) at: Instant,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the receiver answers: status, extra headers, and a pause before answering.
type Behaviour = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync;

pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start(
        behaviour: impl Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration)
        + Send
        + Sync
        + 'static,
    ) -> Receiver {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("binds");
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let headers = request
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                let index = {
                    let mut got = sink.lock().expect("not poisoned");
                    got.push(Received {
                        headers,
                        body,
                        at: Instant::now(),
                    });
                    got.len() - 1
                };
                let behaviour = Arc::clone(&behaviour);
                // Answer on a thread of its own: a slow answer must not hold the next request.
                std::thread::spawn(move || {
                    let (status, headers, pause) = behaviour(index);
                    std::thread::sleep(pause);
                    let mut response =
                        tiny_http::Response::from_string("ok").with_status_code(status);
                    for (name, value) in headers {
                        if let Ok(header) =
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                        {
                            response = response.with_header(header);
                        }
                    }
                    let _ = request.respond(response);
                });
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
        }
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.got.lock().expect("not poisoned").clone()
    }

    pub(crate) fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.got();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} requests arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `count` requests carry the event `name` (others, such as a modem's
    /// `modem.connected`, may arrive in between); returns those.
    pub(crate) fn wait_for_event(&self, name: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let named: Vec<Received> = self
                .got()
                .into_iter()
                .filter(|request| request.json()["name"] == name)
                .collect();
            if named.len() >= count {
                return named;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} {name} requests arrived; all: {:?}",
                named.len(),
                self.got()
                    .iter()
                    .map(|request| request.json()["name"].to_string())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub(crate) fn ok(_: usize) -> (u16, Vec<(&'static str, String)>, Duration) {
    (200, Vec::new(), Duration::ZERO)
}
