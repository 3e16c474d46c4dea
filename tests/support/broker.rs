//! A real MQTT broker (mosquitto, from Debian; `.ci/run` installs it) on 127.0.0.1, and a
//! subscriber that records everything it hears, for the MQTT tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// mosquitto with its own config, port and persistence directory; killed when dropped.
pub(crate) struct Broker {
    child: Option<Child>,
    config: PathBuf,
    /// The port it listens on.
    pub(crate) port: u16,
    /// The TLS listener's port, when started with a certificate.
    pub(crate) tls_port: Option<u16>,
}

impl Broker {
    /// Starts mosquitto in `dir` (its config and persistence file live there).
    pub(crate) fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, None)
    }

    /// Also a TLS listener with this certificate and key (and the plain one).
    pub(crate) fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Broker {
        let port = unprivileged_port_outside_the_ephemeral_range();
        let config = dir.join("mosquitto.conf");
        // Started as root, mosquitto becomes the `mosquitto` user unless told otherwise, and
        // that user cannot read the test's 0700 temp dir: no persistence file would be saved
        // (a restart would forget the subscriber's session) and no TLS key read. As any other
        // user the line has no effect.
        let mut text = format!(
            "user root\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
             log_dest stderr\nlistener {port} 127.0.0.1\n",
            dir.display()
        );
        let tls_port = tls.map(|(certificate, key)| {
            let tls_port = unprivileged_port_outside_the_ephemeral_range();
            text.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                certificate.display(),
                key.display()
            ));
            tls_port
        });
        std::fs::write(&config, text).expect("broker config");
        let mut broker = Broker {
            child: None,
            config,
            port,
            tls_port,
        };
        broker.resume();
        broker
    }

    /// The URL the daemon's `[mqtt] url` takes.
    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker with SIGTERM (it saves its persistence file) and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid with a valid signal number.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same persistence.
    pub(crate) fn resume(&mut self) {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect("mosquitto is not installed: apt-get install mosquitto (.ci/run does)");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.config.with_extension("log"))
            .expect("broker log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free port below Linux's ephemeral range (32768 and up), where the other tests' port-0
/// listeners never land: the port stays ours while a test has the broker stopped.
fn unprivileged_port_outside_the_ephemeral_range() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos())
        ^ std::process::id();
    (0..200u32)
        .map(|attempt| 20_000 + ((seed.wrapping_add(attempt.wrapping_mul(7919))) % 12_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 20000 and 32000")
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as the subscriber received it.
#[derive(Debug, Clone)]
pub(crate) struct Heard {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
}

impl Heard {
    /// The payload as JSON (Null when it is not).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }

    /// The payload as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber with a persistent session (QoS 1): what is published while it is away
/// (the broker restarting) waits for it at the broker. Records every message in order.
pub(crate) struct Subscriber {
    heard: Arc<Mutex<Vec<Heard>>>,
    client: Client,
}

impl Subscriber {
    /// Connects as `id` and subscribes to `filters` at QoS 1 (again on every connection).
    pub(crate) fn start(port: u16, id: &str, filters: &[&str]) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(options, 64);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let (recorded, resubscribe) = (Arc::clone(&heard), client.clone());
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for filter in &filters {
                            let _ = resubscribe.try_subscribe(filter, QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(message))) => {
                        recorded.lock().expect("not poisoned").push(Heard {
                            topic: message.topic.clone(),
                            payload: message.payload.to_vec(),
                            qos: message.qos,
                            retain: message.retain,
                        });
                    }
                    Ok(_) => {}
                    // The broker is away (a test stopped it): try again shortly.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscriber is subscribed");
        Subscriber { heard, client }
    }

    /// Everything heard so far.
    pub(crate) fn heard(&self) -> Vec<Heard> {
        self.heard.lock().expect("not poisoned").clone()
    }

    /// Waits until `check` holds over what was heard, or panics naming `what`.
    pub(crate) fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        check: impl Fn(&[Heard]) -> bool,
    ) -> Vec<Heard> {
        let deadline = Instant::now() + limit;
        loop {
            let heard = self.heard();
            if check(&heard) {
                return heard;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; heard {:#?}",
                heard
                    .iter()
                    .map(|h| format!("{} {}", h.topic, h.text()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Publishes at QoS 1 (as Home Assistant or a command client would).
    pub(crate) fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .expect("queued for the broker");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}
