//! `smsrelay check-config`, run as users run it.

use std::ffi::OsStr;

use crate::support::{outcome, run_smsrelay};

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("smsrelay.toml");
    std::fs::write(&path, text).expect("written");
    outcome(&run_smsrelay([
        OsStr::new("check-config"),
        path.as_os_str(),
    ]))
}

#[test]
fn a_valid_config_is_shown_with_its_secrets_masked() {
    let text = format!(
        "{}\n[[webhook]]\nname = \"crm\"\nurl = \"https://example.com/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        include_str!("../config/smsrelay.toml").replace("# pin = \"1234\"", "pin = \"4321\"")
    );
    let (code, stdout, stderr) = check(&text);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("device = \"/dev/serial/by-id/"), "{stdout}");
    assert!(stdout.contains("name = \"crm\""), "{stdout}");
    assert!(!stdout.contains("4321"), "the PIN leaked: {stdout}");
    assert!(!stdout.contains("MfKQ9r8"), "the secret leaked: {stdout}");
}

#[test]
fn a_bad_config_names_the_key_and_line_and_exits_2() {
    let (code, stdout, stderr) =
        check("[modem]\ndevice = \"/dev/ttyUSB2\"\nsweep_interval = \"sometimes\"\n");
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("modem.sweep_interval"), "{stderr}");
    let (code, _, stderr) = check("[modem]\ndevice = \"/dev/ttyUSB2\"\nbaudrate = 9600\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("baudrate"), "{stderr}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let (code, _, stderr) = outcome(&run_smsrelay([
        "check-config",
        "/nonexistent/smsrelay.toml",
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read the config file"), "{stderr}");
}

#[test]
fn the_example_config_of_the_design_loads_as_written() {
    // Copied verbatim from DESIGN.md's Config section: users start from it.
    let (code, stdout, stderr) = check(include_str!("fixtures/config/design-example.toml"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("usb-HUAWEI_Mobile-if00-port0"), "{stdout}");
    assert!(stdout.contains("name = \"crm\""), "{stdout}");
    assert!(!stdout.contains("change-me"), "the token leaked: {stdout}");
    assert!(!stdout.contains("1234"), "the PIN leaked: {stdout}");
}

#[test]
fn the_config_comes_from_one_global_option_or_smsrelay_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("elsewhere.toml");
    std::fs::write(&path, "[modem]\ndevice = \"/dev/ttyUSB7\"\n").expect("written");
    let smsrelay = || std::process::Command::new(env!("CARGO_BIN_EXE_smsrelay"));
    // Before the subcommand, after it, and from the environment (systemd drop-ins, scripts).
    let before = smsrelay()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .output()
        .expect("runs");
    let after = smsrelay()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs");
    let from_env = smsrelay()
        .arg("check-config")
        .env("SMSRELAY_CONFIG", &path)
        .output()
        .expect("runs");
    for output in [before, after, from_env] {
        let (code, stdout, stderr) = outcome(&output);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("/dev/ttyUSB7"), "{stdout}");
    }
    // A missing file is a usage error naming the path, on one line.
    let (code, _, stderr) = outcome(
        &smsrelay()
            .args(["status", "--config", "/nonexistent/smsrelay.toml"])
            .output()
            .expect("runs"),
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/smsrelay.toml"), "{stderr}");
}

#[test]
fn tokens_in_an_endpoint_url_and_header_values_are_masked() {
    let (code, stdout, stderr) = check(
        "[modem]\ndevice = \"/dev/ttyUSB2\"\n[[webhook]]\nname = \"crm\"\n\
         url = \"https://crm:hunter2@example.com/hook?api_key=k-98765\"\n\
         headers = { Authorization = \"Bearer tok-55555\" }\n",
    );
    assert_eq!(code, 0, "{stderr}");
    for secret in ["hunter2", "k-98765", "tok-55555"] {
        assert!(!stdout.contains(secret), "{secret} leaked: {stdout}");
    }
    assert!(
        stdout.contains("url = \"https://crm:********@example.com/hook?api_key=********\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("header = \"Authorization: ********\""),
        "{stdout}"
    );
}

#[test]
fn a_relative_template_file_is_read_beside_the_config_whatever_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("templates")).expect("made");
    std::fs::write(
        dir.path().join("templates/body.j2"),
        "{{ data.text }} from {{ data.from }}",
    )
    .expect("written");
    let config = dir.path().join("smsrelay.toml");
    std::fs::write(
        &config,
        "[modem]\ndevice = \"/dev/ttyUSB2\"\n[[webhook]]\nname = \"chat\"\n\
         url = \"https://example.com/hook\"\ntemplate_file = \"templates/body.j2\"\n",
    )
    .expect("written");
    // Run from / as systemd does: the path is the config directory's, not the working one's.
    let check_from_root = || {
        outcome(
            &std::process::Command::new(env!("CARGO_BIN_EXE_smsrelay"))
                .arg("check-config")
                .arg(&config)
                .current_dir("/")
                .output()
                .expect("runs"),
        )
    };
    let (code, stdout, stderr) = check_from_root();
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("from {{ data.from }}"), "{stdout}");
    // A missing one names the path it looked at.
    std::fs::remove_file(dir.path().join("templates/body.j2")).expect("removed");
    let (code, _, stderr) = check_from_root();
    assert_eq!(code, 2, "{stderr}");
    let expected = dir.path().join("templates/body.j2").display().to_string();
    assert!(stderr.contains(&expected), "{stderr}");
}
