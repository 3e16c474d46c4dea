//! `smsrelay run` as a child process, and a client for its API, for the tests that drive the
//! real binary.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemon, killed when dropped.
pub(crate) struct Daemon {
    pub(crate) child: Child,
}

impl Daemon {
    pub(crate) fn start(config: &std::path::Path) -> Daemon {
        Daemon::start_with_env(config, &[])
    }

    /// Starts the daemon with extra environment variables.
    pub(crate) fn start_with_env(config: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(config, env, Stdio::null())
    }

    /// Starts the daemon with its log (stderr) in the file `log`.
    pub(crate) fn start_logging_to(config: &std::path::Path, log: &std::path::Path) -> Daemon {
        let log = std::fs::File::create(log).expect("log file");
        // As from a user's shell: a terminal type, but the log goes to a file.
        Daemon::spawn(config, &[("TERM", "xterm-256color")], Stdio::from(log))
    }

    fn spawn(config: &std::path::Path, env: &[(&str, &str)], stderr: Stdio) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the daemon starts");
        Daemon { child }
    }

    /// SIGTERM, then the exit status within `limit`.
    pub(crate) fn terminate(mut self, limit: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API token every test config uses.
pub(crate) const TOKEN: &str = "a-test-token-long-enough";

/// A port that was free a moment ago (the daemon binds it itself).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A client for the daemon's API; statuses are answers, not errors.
pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub(crate) fn new(port: u16) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Api {
            base: format!("http://127.0.0.1:{port}"),
            agent,
        }
    }

    pub(crate) fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = self.agent.get(format!("{}/healthz", self.base)).call() {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the API did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &str,
        extra: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let mut response = request.send(body.as_bytes()).expect("a response");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A request with exactly these headers: the status, the `www-authenticate` header and
    /// the JSON body.
    pub(crate) fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (u16, Option<String>, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let outcome = match method {
            "GET" => {
                let mut request = self.agent.get(url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            _ => {
                let mut request = self.agent.post(url);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body.unwrap_or_default().as_bytes())
            }
        };
        let mut response = outcome.expect("a response");
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            challenge,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A GET with the token: the status and the body as text.
    pub(crate) fn text(&self, path: &str) -> (u16, String) {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"))
            .call()
            .expect("a response");
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    pub(crate) fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, text) = self.text(path);
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Polls `path` until `check` holds over its JSON, or panics after `limit`.
pub(crate) fn wait_for_json(
    api: &Api,
    path: &str,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = api.get(path);
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: not within {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
