//! The crash test: a child process (this test binary, re-run on `crash_child`) runs our modem
//! drivers and gateway on a sled store against two simulated modems that live in this
//! process (messages go round robin over both), enqueueing messages while the parent injects
//! inbound SMS into both. The parent kills it with SIGKILL
//! at random moments, 50 times, restarting it each time; then lets a last child drain the
//! work and checks the store against the modem's own logs:
//! - every message the child reported as accepted is in the store, delivered or failed;
//! - no text was submitted twice, on one modem or across both (the modems' submit logs are
//!   the witness);
//! - every injected inbound SMS produced exactly one `sms.received` event, naming the modem
//!   it was injected into.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smsrelay::at::SessionConfig;
use smsrelay::gateway::{Gateway, GatewaySettings, ModemSlot, NewMessage};
use smsrelay::mock::{InboundSms, MockConfig, MockModem};
use smsrelay::modem::{InitSettings, Modem, ModemSettings};
use smsrelay::store::{MessageState, Store, StoreSettings, Subscription};

const KILLS: usize = 50;
const DIR: &str = "SMSRELAY_CRASH_DIR";
const DEVICE: &str = "SMSRELAY_CRASH_DEVICE";
const RUN: &str = "SMSRELAY_CRASH_RUN";
const DRAIN: &str = "SMSRELAY_CRASH_DRAIN";

fn open_store(dir: &str) -> Store {
    let subscriptions = vec![Subscription {
        endpoint: "crm".into(),
        events: vec!["sms.*".into()],
        ..Subscription::default()
    }];
    Store::open(dir.as_ref(), &StoreSettings::default(), subscriptions).expect("store opens")
}

/// A small xorshift: enough to scatter the kills, with the seed printed to replay a run.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the crash test's child process: started by crash::nothing_is_lost_across_50_kills"]
async fn crash_child() {
    let (Ok(dir), Ok(device)) = (std::env::var(DIR), std::env::var(DEVICE)) else {
        return;
    };
    let run = std::env::var(RUN).unwrap_or_default();
    let drain = std::env::var(DRAIN).is_ok();
    // One driver per device (the parent passes them comma-separated), named modem1, modem2.
    let mut slots = Vec::new();
    let mut events = Vec::new();
    let mut drivers = Vec::new();
    for (index, device) in device.split(',').enumerate() {
        let mut driver_settings = ModemSettings::new(device);
        driver_settings.name = format!("modem{}", index + 1);
        driver_settings.init = InitSettings {
            poll_interval: Duration::from_millis(20),
            ..InitSettings::default()
        };
        driver_settings.session = SessionConfig {
            command_gap: Duration::from_millis(2),
            settle: Duration::from_millis(100),
            ..SessionConfig::default()
        };
        let mut driver = Modem::start(driver_settings);
        events.push(std::mem::replace(
            &mut driver.events,
            tokio::sync::mpsc::channel(1).1,
        ));
        slots.push(ModemSlot {
            name: format!("modem{}", index + 1),
            sim: index as u32,
            ..ModemSlot::single(driver.handle.clone(), None)
        });
        drivers.push(driver);
    }
    let settings = GatewaySettings {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        ..GatewaySettings::default()
    };
    let gateway = Gateway::with_modems(open_store(&dir), slots, settings);
    gateway.start_all(events).await.expect("gateway starts");
    println!("STARTED");
    if drain {
        loop {
            let store = gateway.store().clone();
            let settled = tokio::task::spawn_blocking(move || {
                store.outbox().expect("outbox").is_empty()
                    && store
                        .messages(None, usize::MAX)
                        .expect("messages")
                        .iter()
                        .all(|message| message.state.is_final())
            })
            .await
            .expect("no panic");
            if settled {
                println!("DRAINED");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        enqueue_forever(&gateway, &run).await;
    }
}

async fn enqueue_forever(gateway: &Gateway, run: &str) {
    for k in 0.. {
        let text = format!("out-{run}-{k}");
        let request = NewMessage {
            to: "+447700900123".into(),
            text: text.clone(),
            ..NewMessage::default()
        };
        let accepted = gateway.enqueue(request).await.expect("accepted");
        // Printed only after enqueue returned: the message is on disk.
        println!("ACCEPTED {} {text}", accepted.id);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn spawn_child(dir: &str, device: &str, run: usize, drain: bool) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR, dir)
        .env(DEVICE, device)
        .env(RUN, run.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if drain {
        command.env(DRAIN, "1");
    }
    let mut child = command.spawn().expect("child starts");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped");
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("not poisoned").push(line);
        }
    });
    Child {
        process: child,
        lines,
        reader,
    }
}

/// A child process and the lines it printed so far.
struct Child {
    process: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Child {
    fn printed(&self, expected: &str) -> bool {
        self.lines
            .lock()
            .expect("not poisoned")
            .iter()
            // libtest's "test crash::crash_child ... " has no newline: the first line the
            // child prints is glued to it.
            .any(|line| line.ends_with(expected))
    }

    /// SIGKILL, then every line it printed before dying.
    fn kill(mut self) -> Vec<String> {
        self.process.kill().expect("SIGKILL");
        self.process.wait().expect("reaped");
        // The pipe ends with the process: joining the reader collects the last lines.
        self.reader.join().expect("the reader thread");
        std::mem::take(&mut *self.lines.lock().expect("not poisoned"))
    }
}

#[test]
fn nothing_is_lost_across_50_kills() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        | 1;
    println!("crash test seed {seed}");
    let mut random = Random(seed);
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("data");
    let data = data.to_str().expect("utf-8 path").to_string();
    let links = [work.path().join("modem-a"), work.path().join("modem-b")];
    let modems: Vec<MockModem> = links
        .iter()
        .map(|link| {
            MockModem::start(
                MockConfig {
                    submit_delay: Duration::from_millis(5),
                    report_delay: Duration::from_millis(30),
                    capacity: 255,
                    ..MockConfig::default()
                },
                Some(link.clone()),
            )
            .expect("mock starts")
        })
        .collect();
    let device = links
        .iter()
        .map(|link| link.to_str().expect("utf-8 path"))
        .collect::<Vec<_>>()
        .join(",");

    let mut accepted: HashMap<String, String> = HashMap::new();
    let mut injected = Vec::new();
    for run in 0..KILLS {
        let child = spawn_child(&data, &device, run, false);
        // One kill in four lands anywhere, start-up included; the others in the traffic,
        // counted from the gateway's start so that a slow machine still sends some.
        let in_traffic = random.below(4) != 0;
        let life = Duration::from_millis(100 + random.below(700));
        let mut born = Instant::now();
        let mut started = !in_traffic;
        while !started || born.elapsed() < life {
            if !started && (child.printed("STARTED") || born.elapsed() > Duration::from_secs(30)) {
                started = true;
                born = Instant::now();
            }
            if random.below(4) == 0 {
                // Every third one is long: two parts, reassembled across kills.
                let mut text = format!("in-{}", injected.len());
                if injected.len() % 3 == 0 {
                    text.push_str(&" and a tail long enough for a second part".repeat(5));
                }
                // Alternately on each modem; both count references the same way, so the
                // two SIMs see the same sender and references at once.
                let on = injected.len() % 2;
                let sms = InboundSms {
                    reference: (injected.len() / 2 % 256) as u8,
                    ..InboundSms::new("+447700900555", &text)
                };
                modems[on].inject_sms(&sms).expect("injects");
                injected.push(text);
            }
            std::thread::sleep(Duration::from_millis(20 + random.below(60)));
        }
        for line in child.kill() {
            if let Some(rest) = line.strip_prefix("ACCEPTED ") {
                if let Some((id, text)) = rest.split_once(' ') {
                    accepted.insert(id.to_string(), text.to_string());
                }
            }
        }
    }

    // A last child drains the outbox and the modem's storage.
    let child = spawn_child(&data, &device, KILLS, true);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let drained = child.printed("DRAINED");
        let emptied = modems
            .iter()
            .all(|modem| modem.with_engine(|engine, _| engine.stored("SM").is_empty()));
        if drained && emptied {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: child says {drained}, modem storage empty {emptied}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill();

    let store = open_store(&data);
    assert!(
        accepted.len() >= KILLS,
        "too little load: {} accepted",
        accepted.len()
    );
    let mut states: HashMap<&'static str, usize> = HashMap::new();
    for (id, text) in &accepted {
        let message = store
            .message(id)
            .expect("reads")
            .unwrap_or_else(|| panic!("accepted message {id} ({text}) is lost"));
        assert_eq!(&message.text, text);
        assert!(
            message.state.is_final(),
            "{id} ({text}) is {:?} after the drain",
            message.state
        );
        *states.entry(message.state.name()).or_default() += 1;
    }
    let mut submissions: HashMap<String, usize> = HashMap::new();
    let mut per_modem = [0usize; 2];
    for (index, modem) in modems.iter().enumerate() {
        for submitted in modem.submitted() {
            *submissions.entry(submitted.text).or_default() += 1;
            per_modem[index] += 1;
        }
    }
    let twice: Vec<_> = submissions.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");

    let events = store.events_after(0, usize::MAX).expect("events");
    let mut received: HashMap<String, usize> = HashMap::new();
    let mut arrived_on: HashMap<String, String> = HashMap::new();
    for event in events.iter().filter(|e| e.name == "sms.received") {
        let text = event.data["text"].as_str().unwrap_or_default().to_string();
        *received.entry(text.clone()).or_default() += 1;
        let modem = event.data["modem"].as_str().unwrap_or_default().to_string();
        arrived_on.insert(text, modem);
    }
    for (index, text) in injected.iter().enumerate() {
        assert_eq!(
            received.get(text),
            Some(&1),
            "inbound {text:?}: {received:?}"
        );
        let expected = format!("modem{}", index % 2 + 1);
        assert_eq!(arrived_on.get(text), Some(&expected), "inbound {text:?}");
    }
    assert_eq!(received.len(), injected.len());
    // Each message has at most one event of each kind.
    let mut per_message: HashMap<(String, String), usize> = HashMap::new();
    // The outbound messages' events (the modems' own `modem.*` name no message).
    for event in events
        .iter()
        .filter(|e| e.name.starts_with("sms.") && e.name != "sms.received")
    {
        let id = event.data["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *per_message.entry((id, event.name.clone())).or_default() += 1;
    }
    assert!(per_message.values().all(|n| *n == 1), "duplicate events");
    let delivered = states.get("delivered").copied().unwrap_or(0);
    println!(
        "crash test: {KILLS} kills, {} accepted ({states:?}), {} submitted ({per_modem:?} per modem), {} inbound; seed {seed}",
        accepted.len(),
        submissions.len(),
        injected.len()
    );
    assert!(
        per_modem.iter().all(|&count| count > 0),
        "both modems sent: {per_modem:?}"
    );
    assert!(delivered > 0, "nothing was delivered: {states:?}");
    assert_eq!(
        store
            .messages(Some(MessageState::Queued), usize::MAX)
            .expect("reads")
            .len(),
        0
    );
}
