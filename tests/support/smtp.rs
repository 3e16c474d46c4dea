//! An SMTP server on 127.0.0.1 for the e-mail endpoint tests: Python's aiosmtpd running
//! `smtp_sink.py` (the recipient picks the answer at RCPT: `reject@` 554, `unknown…@` 550
//! naming it, `gone…@` 550 not naming it, `greylist…@` 451 once; `defer@` 451 once at DATA), and a CA plus a server certificate made with the `openssl` command for STARTTLS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for mail.
const WAIT: Duration = Duration::from_secs(20);

/// The running server, killed when dropped.
pub(crate) struct SmtpSink {
    child: Child,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    log: PathBuf,
}

impl SmtpSink {
    /// Starts the server, with STARTTLS required when `tls` gives a certificate and key.
    /// `None` when aiosmtpd is missing outside CI (a failure with `CI=true`).
    pub(crate) fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Option<SmtpSink> {
        SmtpSink::start_with_login(dir, tls, None)
    }

    /// As [`SmtpSink::start`]; with `login` (`user:password`) AUTH is required too.
    pub(crate) fn start_with_login(
        dir: &Path,
        tls: Option<(&Path, &Path)>,
        login: Option<&str>,
    ) -> Option<SmtpSink> {
        let python = python_with_aiosmtpd()?;
        let log = dir.join("smtp-log.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut command = Command::new(python);
        command.arg(script).arg("--log").arg(&log);
        if let Some((cert, key)) = tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(login) = login {
            command.arg("--auth").arg(login);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("piped");
        // A blocking read of one line: the script prints it as soon as it listens, and a
        // script that dies closes the pipe, so this cannot hang.
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP sink did not start: {line:?}"));
        Some(SmtpSink { child, port, log })
    }

    /// Every transaction so far: `mail_from`, `rcpt_tos`, `reply`, `headers` (lower-case
    /// names, decoded values), `body` (decoded).
    pub(crate) fn transactions(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// Waits until `check` holds for the transactions, and returns them.
    pub(crate) fn wait_until(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let transactions = self.transactions();
            if check(&transactions) {
                return transactions;
            }
            assert!(Instant::now() < deadline, "{what}: {transactions:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key).
pub(crate) fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let extensions = dir.join("server.ext");
    std::fs::write(
        &extensions,
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n",
    )
    .expect("written");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=smsrelay test CA"],
        ]
        .concat(),
        &[("-keyout", &ca_key), ("-out", &ca)],
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=127.0.0.1"]].concat(),
        &[("-keyout", &key), ("-out", &csr)],
    );
    openssl(
        &["x509", "-req", "-days", "2", "-set_serial", "2"],
        &[
            ("-in", &csr),
            ("-CA", &ca),
            ("-CAkey", &ca_key),
            ("-extfile", &extensions),
            ("-out", &cert),
        ],
    );
    (ca, cert, key)
}

fn openssl(args: &[&str], paths: &[(&str, &Path)]) {
    let mut command = Command::new("openssl");
    command.args(args);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let output = command.output().expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Python that can import aiosmtpd: Debian's (where `apt-get install python3-aiosmtpd`
/// puts it, even when another `python3` comes first on the PATH), else `python3`. None
/// outside CI when neither can (a note); a failure with `CI=true`.
fn python_with_aiosmtpd() -> Option<&'static str> {
    let found = ["/usr/bin/python3", "python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3-aiosmtpd is not installed, and with CI=true the e-mail tests are \
             mandatory. Install it with `apt-get install python3-aiosmtpd`, or run .ci/run."
        );
        eprintln!("note: python3-aiosmtpd is not installed; skipping the e-mail test");
    }
    found
}
