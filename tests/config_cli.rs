//! `smsrelay check-config`, run as users run it.

use std::process::Command;

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("smsrelay.toml");
    std::fs::write(&path, text).expect("written");
    let output = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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
    let output = Command::new(env!("CARGO_BIN_EXE_smsrelay"))
        .args(["check-config", "/nonexistent/smsrelay.toml"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the config file"));
}
