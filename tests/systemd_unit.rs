//! The shipped unit, `systemd/smsrelay.service`, checked by systemd's own tools: `verify`
//! accepts it, `security --offline` rates its exposure 2.0 or lower, and every system call the
//! real daemon makes (traced with strace through the demo's whole tour) is one its
//! `SystemCallFilter=` allows. Outside CI the checks skip when systemd-analyze or strace is
//! missing; with `CI=true` (as `.ci/run` sets) a missing tool is a failure.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const UNIT: &str = "smsrelay.service";
/// The bar for `systemd-analyze security`.
const MAX_EXPOSURE: f64 = 2.0;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(UNIT)
}

/// Whether `tool` runs; panics under `CI=true` when it does not.
fn have(tool: &str, install_hint: &str) -> bool {
    match Command::new(tool)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(_) => true,
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{tool} is needed for the unit checks and CI=true makes them mandatory \
                 ({error}); install it with `{install_hint}`, or run .ci/run, which does"
            );
            eprintln!("skipped: {tool} is not installed ({error})");
            false
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !have("systemd-analyze", "apt-get install systemd") {
        return;
    }
    // verify checks that ExecStart= exists and that the dependencies resolve, so it gets a
    // root of its own: our binary at /usr/bin, the unit, and the host's stock units.
    let root = tempfile::tempdir().expect("temp root");
    let bin = root.path().join("usr/bin");
    let local_units = root.path().join("etc/systemd/system");
    let stock_units = root.path().join("usr/lib/systemd/system");
    for dir in [&bin, &local_units, &stock_units] {
        std::fs::create_dir_all(dir).expect("create the root's directories");
    }
    std::fs::copy(env!("CARGO_BIN_EXE_smsrelay"), bin.join("smsrelay")).expect("copy binary");
    std::fs::copy(unit_path(), local_units.join(UNIT)).expect("copy the unit");
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("multi-user.target").exists())
        .expect("the host's stock units (multi-user.target)");
    for entry in std::fs::read_dir(host_units).expect("list the stock units") {
        let entry = entry.expect("a stock unit");
        let path = entry.path();
        if path.is_file() {
            std::fs::copy(&path, stock_units.join(entry.file_name())).expect("copy a unit");
        }
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg(UNIT)
        .output()
        .expect("systemd-analyze runs");
    // verify only warns about unknown keys, with exit status 0: any output is a finding.
    let said = text(&output);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{said}",
        output.status
    );
}

#[test]
fn systemd_analyze_security_rates_the_unit_2_0_or_lower() {
    if !have("systemd-analyze", "apt-get install systemd") {
        return;
    }
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_path())
        .output()
        .expect("systemd-analyze runs");
    let said = text(&output);
    let exposure: f64 = said
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for smsrelay.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{said}"));
    let findings: Vec<&str> = said.lines().filter(|line| line.starts_with('✗')).collect();
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} above {MAX_EXPOSURE}; open findings:\n{}",
        findings.join("\n")
    );
}

/// The unit's system call filter: the allow list (first line) minus the deny lines (`~`),
/// expanded through systemd's own group table.
fn allowed_system_calls(unit: &str) -> BTreeSet<String> {
    let table = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .expect("systemd-analyze syscall-filter runs");
    let groups = parse_groups(&String::from_utf8_lossy(&table.stdout));
    let mut allowed = BTreeSet::new();
    for line in unit.lines() {
        let Some(value) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        let (deny, names) = match value.strip_prefix('~') {
            Some(names) => (true, names),
            None => (false, value),
        };
        for name in names.split_whitespace() {
            let calls = expand(&groups, name);
            if deny {
                allowed.retain(|call| !calls.contains(call));
            } else {
                allowed.extend(calls);
            }
        }
    }
    allowed
}

/// `systemd-analyze syscall-filter` prints each `@group` followed by its indented members
/// (calls or other groups) and `#` comments.
fn parse_groups(table: &str) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for line in table.lines() {
        let member = line.trim();
        if line.starts_with('@') {
            let name = member.split_whitespace().next().unwrap_or_default();
            groups.push((name.to_string(), Vec::new()));
        } else if !member.is_empty() && !member.starts_with('#') {
            if let Some((_, members)) = groups.last_mut() {
                members.push(member.to_string());
            }
        }
    }
    groups
}

fn expand(groups: &[(String, Vec<String>)], name: &str) -> BTreeSet<String> {
    if !name.starts_with('@') {
        return BTreeSet::from([name.to_string()]);
    }
    let members = groups
        .iter()
        .find(|(group, _)| group == name)
        .map(|(_, members)| members.as_slice())
        .unwrap_or_else(|| panic!("systemd does not know the group {name}"));
    members
        .iter()
        .flat_map(|member| expand(groups, member))
        .collect()
}

#[test]
fn the_daemon_makes_only_system_calls_the_unit_allows() {
    if !have("systemd-analyze", "apt-get install systemd")
        || !have("strace", "apt-get install strace")
    {
        return;
    }
    let unit = std::fs::read_to_string(unit_path()).expect("read the unit");
    let allowed = allowed_system_calls(&unit);
    assert!(
        allowed.contains("read") && allowed.contains("clock_adjtime"),
        "{allowed:?}"
    );

    // The demo runs the daemon's whole stack (store, modem driver on a PTY, gateway, webhook
    // delivery, API) through an SMS in and one out with its delivery report.
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("trace");
    // strace's own complaints (ptrace forbidden, say) land here, for the failure message.
    let complaints = dir.path().join("strace-stderr");
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_smsrelay"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&complaints).expect("create a file for stderr"))
        .process_group(0)
        .spawn()
        .expect("strace starts");
    let stdout = child.stdout.take().expect("piped");
    let (toured, tour) = std::sync::mpsc::channel();
    // Reads to the end: a closed pipe would make the demo's next line fail, and it would then
    // exit without cleaning up.
    let reader = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader};
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("The gateway stays up") {
                let _ = toured.send(());
            }
        }
    });
    let finished = tour.recv_timeout(Duration::from_secs(120));
    // SAFETY: kill(2) on the process group we created for strace and the demo.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGINT);
    }
    let status = child.wait().expect("strace exits");
    reader.join().expect("the reader thread");
    let stderr = std::fs::read_to_string(&complaints).unwrap_or_default();
    let start = stderr.len().saturating_sub(2000);
    assert!(
        finished.is_ok(),
        "the traced demo did not finish its tour: {status:?}; its stderr ends:\n{}",
        stderr.get(start..).unwrap_or(&stderr)
    );
    assert!(
        status.success(),
        "the traced demo did not exit cleanly: {status:?}"
    );

    let log = std::fs::read_to_string(&trace).expect("read the trace");
    assert!(
        !log.contains("PTRACE_TRACEME") && log.lines().count() > 100,
        "strace could not trace here:\n{}",
        log.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    let used: BTreeSet<&str> = log
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, call)| call.trim_start()))
        .filter_map(|call| call.split_once('(').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .collect();
    // The demo reads the clock's sync state as the daemon's webhook check does.
    assert!(
        ["adjtimex", "clock_adjtime", "clock_adjtime64"]
            .iter()
            .any(|call| used.contains(call)),
        "the clock check was not exercised"
    );
    let refused: Vec<&&str> = used
        .iter()
        .filter(|call| !allowed.contains(**call))
        .collect();
    assert!(
        refused.is_empty(),
        "the daemon used {refused:?}, which the unit's SystemCallFilter= refuses (with EPERM)"
    );
}
