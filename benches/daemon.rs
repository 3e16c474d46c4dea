//! `smsrelay run` as users run it, against the simulated modem: time from start to systemd
//! READY and to a ready modem, then RSS and CPU over an idle minute (`IDLE_SECS` overrides).
//! Run: `cargo bench --bench daemon`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smsrelay::mock::{MockConfig, MockModem};

#[path = "common/process.rs"]
mod process;

use process::{cpu_ticks, rss_mib};

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let idle: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("smsrelay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let link = dir.join("modem");
    let _modem = MockModem::start(MockConfig::default(), Some(link.clone())).expect("mock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a port");
    let config = dir.join("smsrelay.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[modem]\ndevice = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"bench-token-long-enough\"\n",
            dir.join("data").display(),
            link.display()
        ),
    )
    .expect("config");
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");

    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let pid = child.id();
    let mut buffer = [0u8; 512];
    let ready = loop {
        let n = notify.recv(&mut buffer).expect("a notification");
        if String::from_utf8_lossy(&buffer[..n]).contains("READY=1") {
            break started.elapsed();
        }
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let modem_ready = loop {
        let status = agent
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .header("authorization", "Bearer bench-token-long-enough")
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        if status.contains("\"state\":\"ready\"") {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "start → READY=1: {:.0} ms; start → modem ready (init over the PTY, no command gap by default): {:.0} ms",
        ready.as_secs_f64() * 1000.0,
        modem_ready.as_secs_f64() * 1000.0
    );
    // Let the start-up sweep and health read settle before measuring idle.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(idle));
    let used = cpu_ticks(pid).saturating_sub(before);
    println!(
        "idle {idle} s: CPU {} ms ({:.3} %), RSS {:.1} MiB",
        used * 10,
        used as f64 * 10.0 / (idle as f64 * 10.0),
        rss_mib(pid)
    );
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
