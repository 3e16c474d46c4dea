//! Replays `tests/fixtures/at/*.txt` (format in that folder's README) against `at::Session`.

use std::path::Path;
use std::time::Duration;

use smsrelay::at::{self, Command, Session, SessionConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

enum Step {
    HostWrites(Vec<u8>),
    ModemSends(Vec<u8>),
}

struct Script {
    modem: Vec<Step>,
    commands: Vec<(Command, String)>,
    urcs: Vec<String>,
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("fixture escape"));
            }
            other => panic!("bad escape \\{other:?} in fixture"),
        }
    }
    out
}

fn load(path: &Path) -> Script {
    let text = std::fs::read_to_string(path).expect("fixture readable");
    let mut script = Script {
        modem: Vec::new(),
        commands: Vec::new(),
        urcs: Vec::new(),
    };
    for line in text.lines() {
        if let Some(command) = line.strip_prefix(">> ") {
            let mut bytes = command.as_bytes().to_vec();
            bytes.push(0x1a);
            script.modem.push(Step::HostWrites(bytes));
            let (last, _) = script.commands.last_mut().expect(">> follows a command");
            let length: usize = last
                .text()
                .trim_start_matches("AT+CMGS=")
                .parse()
                .expect("AT+CMGS=<n>");
            *last = Command::send_pdu(length, command);
        } else if let Some(command) = line.strip_prefix("> ") {
            script
                .modem
                .push(Step::HostWrites(format!("{command}\r").into_bytes()));
            script.commands.push((Command::new(command), String::new()));
        } else if let Some(bytes) = line.strip_prefix("< ") {
            script.modem.push(Step::ModemSends(unescape(bytes)));
        } else if let Some(expected) = line.strip_prefix("= ") {
            script.commands.last_mut().expect("= follows a command").1 = expected.to_string();
        } else if let Some(urc) = line.strip_prefix("! ") {
            script.urcs.push(urc.to_string());
        }
    }
    script
}

async fn play_modem<M: AsyncRead + AsyncWrite + Unpin>(
    mut port: M,
    steps: Vec<Step>,
    chunk: usize,
) {
    for step in steps {
        match step {
            Step::HostWrites(expected) => {
                let mut got = vec![0u8; expected.len()];
                port.read_exact(&mut got).await.expect("host wrote");
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expected)
                );
            }
            Step::ModemSends(bytes) => {
                for piece in bytes.chunks(chunk) {
                    port.write_all(piece).await.expect("modem writes");
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    // Keep the port open until the host is done reading.
    let mut rest = Vec::new();
    let _ = port.read_to_end(&mut rest).await;
}

fn describe(response: &at::Response) -> String {
    std::iter::once(response.result.to_string())
        .chain(response.info.iter().cloned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn expected_urc(text: &str) -> at::Urc {
    match text.split_once(" / ") {
        Some((header, pdu)) => at::parse::urc(header, Some(pdu)),
        None => at::parse::urc(text, None),
    }
}

async fn replay<H, M>(path: &Path, chunk: usize, host: H, modem: M)
where
    H: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    M: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let script = load(path);
    let config = SessionConfig {
        command_gap: Duration::from_millis(1),
        settle: Duration::from_millis(20),
        // A late OK after +CPIN: must still count as the answer when replay is slow.
        cpin_grace: Duration::from_secs(1),
        ..SessionConfig::default()
    };
    let (session, handle, mut urcs) = Session::new(host, config);
    let session = tokio::spawn(session.run());
    let modem = tokio::spawn(play_modem(modem, script.modem, chunk));
    for (command, expected) in script.commands {
        let text = command.text().to_string();
        let response = tokio::time::timeout(Duration::from_secs(5), handle.execute(command))
            .await
            .unwrap_or_else(|_| panic!("{}: {text} hung", path.display()))
            .unwrap_or_else(|error| panic!("{}: {text}: {error}", path.display()));
        assert_eq!(
            describe(&response),
            expected,
            "{} (chunk {chunk}): {text}",
            path.display()
        );
    }
    for expected in &script.urcs {
        let urc = tokio::time::timeout(Duration::from_secs(5), urcs.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: URC {expected} never came", path.display()));
        assert_eq!(
            urc,
            Some(expected_urc(expected)),
            "{} (chunk {chunk})",
            path.display()
        );
    }
    assert!(
        urcs.try_recv().is_err(),
        "{}: an unexpected extra URC",
        path.display()
    );
    drop(handle);
    modem.abort();
    let _ = session.await;
}

fn transcripts() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/at");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 8,
        "transcripts missing from {}",
        dir.display()
    );
    paths
}

#[tokio::test]
async fn every_transcript_whole_and_byte_by_byte() {
    for path in &transcripts() {
        let (host, modem) = tokio::io::duplex(1 << 16);
        replay(path, usize::MAX, host, modem).await;
        let (host, modem) = tokio::io::duplex(1 << 16);
        replay(path, 1, host, modem).await;
    }
}

#[tokio::test]
async fn every_transcript_over_a_real_pseudo_terminal() {
    for path in &transcripts() {
        let (host, modem) = tokio_serial::SerialStream::pair().expect("a pseudo-terminal pair");
        replay(path, 7, host, modem).await;
    }
}
