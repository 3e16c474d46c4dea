//! `smsrelay pdu decode|encode`, run as a user runs it.

use std::process::Output;

use serde_json::Value;
use smsrelay::pdu::{Pdu, Tpdu};

fn smsrelay(args: &[&str]) -> Output {
    crate::support::run_smsrelay(args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn decode_prints_each_vector_as_json() {
    let vectors: Value =
        serde_json::from_str(include_str!("fixtures/pdu/vectors.json")).expect("json");
    for vector in vectors.as_array().expect("array") {
        let hex = vector["pdu_hex"].as_str().expect("hex");
        let mut args = vec!["pdu", "decode", hex];
        if vector["has_smsc"] == Value::Bool(false) {
            args.push("--no-smsc");
        }
        let output = smsrelay(&args);
        assert!(
            output.status.success(),
            "{}: {}",
            vector["id"],
            stderr(&output)
        );
        let json: Value = serde_json::from_str(&stdout(&output)).expect("stdout is JSON");
        assert_eq!(json["type"], vector["kind"], "{}", vector["id"]);
        for name in [
            "text",
            "sender",
            "recipient",
            "encoding",
            "timestamp",
            "concat",
            "status",
        ] {
            if let Some(want) = vector["expected"].get(name) {
                assert_eq!(&json[name], want, "{}: {name}", vector["id"]);
            }
        }
    }
}

#[test]
fn decode_errors_are_one_line_and_exit_2() {
    for (args, expected) in [
        (vec!["pdu", "decode", "0031000"], "hex"),
        (vec!["pdu", "decode", "00ZZ"], "hex"),
        (
            vec!["pdu", "decode", "0031000C91447700"],
            "destination address",
        ),
        (vec!["pdu", "decode", "0003"], "reserved"),
        (vec!["pdu", "decode", "--no-smsc", ""], "first octet"),
    ] {
        let output = smsrelay(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stdout(&output).is_empty(), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

#[test]
fn encode_prints_length_and_hex_per_part() {
    let output = smsrelay(&[
        "pdu",
        "encode",
        "--to",
        "+447700900123",
        "--text",
        "Hello from the Pi",
        "--status-report",
        "--validity",
        "1d",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Vector E1, byte for byte.
    assert_eq!(
        stdout(&output),
        "29 0031000C914477000910320000A711C8329BFD0699E5EF36888E2E83A069\n"
    );

    let long = "Grüße 😀 ".repeat(20);
    let output = smsrelay(&["pdu", "encode", "--to", "07700900123", "--text", &long]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "180 UTF-16 units in parts of 67");
    let mut text = String::new();
    for line in &lines {
        let (length, hex) = line.split_once(' ').expect("length and hex");
        let pdu = Pdu::from_hex(hex).expect("decodes");
        let tpdu_octets = Tpdu::encode(&pdu.tpdu).expect("encodes").len();
        assert_eq!(length.parse::<usize>().ok(), Some(tpdu_octets));
        let Tpdu::Submit(submit) = pdu.tpdu else {
            panic!("not a submit")
        };
        text.push_str(submit.user_data.text().expect("text"));
    }
    assert_eq!(text, long);
}

#[test]
fn encode_refuses_bad_input_with_exit_2() {
    for args in [
        vec!["pdu", "encode", "--to", "+44 7700", "--text", "hi"],
        vec![
            "pdu",
            "encode",
            "--to",
            "+447700900123",
            "--text",
            &"x".repeat(153 * 256),
        ],
        vec![
            "pdu",
            "encode",
            "--to",
            "+447700900123",
            "--text",
            "hi",
            "--smsc",
            "SMSC",
        ],
        vec![
            "pdu",
            "encode",
            "--to",
            "+447700900123",
            "--text",
            "hi",
            "--reference",
            "300",
        ],
    ] {
        let output = smsrelay(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(
            stderr(&output).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
