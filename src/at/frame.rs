//! Bytes → frames: complete lines and the `> ` prompt of `AT+CMGS`.
//!
//! CR and LF both end a line, so CRLF, CRCRLF (Huawei lists) and a bare LF (gammu accepts `OK\n`)
//! all frame alike, and the empty lines between them are dropped. A line split across any number
//! of reads gives the same frames as one read. Lines are capped at [`MAX_LINE`] bytes: a longer
//! one is reported once as [`Frame::Overflow`] and skipped up to its end, never buffered.

/// The longest line kept, in bytes. The longest real line is a `+CMGL`/`+CMGR` PDU line (at most
/// 2 × 176 hex characters); 4 KiB leaves room for vendor chatter and stays bounded.
pub const MAX_LINE: usize = 4096;

/// One unit of modem output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its terminator; invalid UTF-8 is replaced, never rejected.
    Line(String),
    /// The `> ` (or bare `>`) prompt, reported only while the caller expects one.
    Prompt,
    /// A line longer than [`MAX_LINE`] was skipped; `discarded` counts its bytes.
    Overflow {
        /// How many bytes of the line were dropped.
        discarded: usize,
    },
}

/// Cuts a byte stream into [`Frame`]s, holding at most [`MAX_LINE`] bytes of a partial line.
#[derive(Debug, Default)]
pub struct Framer {
    line: Vec<u8>,
    /// Set while skipping the rest of an over-long line: the bytes dropped so far.
    overflowing: Option<usize>,
    pending: Vec<u8>,
    pending_pos: usize,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the port.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pending_pos == self.pending.len() {
            self.pending.clear();
            self.pending_pos = 0;
        } else if self.pending_pos > 64 * 1024 {
            self.pending.drain(..self.pending_pos);
            self.pending_pos = 0;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Bytes of a line received so far but not yet ended.
    pub fn partial(&self) -> &[u8] {
        &self.line
    }

    /// The next complete frame, or `None` when more bytes are needed.
    ///
    /// `prompt_expected` says whether a prompt-taking command (`AT+CMGS`) waits for `> `: only
    /// then is an unterminated `> ` a frame, because it has no line end to wait for.
    pub fn next_frame(&mut self, prompt_expected: bool) -> Option<Frame> {
        while self.pending_pos < self.pending.len() {
            let start = self.pending_pos;
            let terminator = self.pending[start..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n');
            match terminator {
                Some(len) => {
                    self.pending_pos = start + len + 1;
                    self.append(start, start + len);
                    if let Some(frame) = self.finish_line(prompt_expected) {
                        return Some(frame);
                    }
                }
                None => {
                    self.pending_pos = self.pending.len();
                    self.append(start, self.pending.len());
                }
            }
        }
        if prompt_expected && self.overflowing.is_none() && is_prompt(&self.line) {
            self.line.clear();
            return Some(Frame::Prompt);
        }
        None
    }

    /// Adds `pending[start..end]` to the current line, or counts it as dropped past the cap.
    fn append(&mut self, start: usize, end: usize) {
        let len = end - start;
        if let Some(discarded) = self.overflowing.as_mut() {
            *discarded += len;
        } else if self.line.len() + len > MAX_LINE {
            self.overflowing = Some(self.line.len() + len);
            self.line.clear();
        } else {
            self.line.extend_from_slice(&self.pending[start..end]);
        }
    }

    /// Ends the current line at a terminator: a frame, or nothing for an empty line.
    ///
    /// Some modems end the prompt with CRLF, and a URC may follow it in the same read; either way
    /// the prompt arrives here as a whole line, and it is still the prompt.
    fn finish_line(&mut self, prompt_expected: bool) -> Option<Frame> {
        if let Some(discarded) = self.overflowing.take() {
            return Some(Frame::Overflow { discarded });
        }
        if self.line.is_empty() {
            return None;
        }
        if prompt_expected && is_prompt(&self.line) {
            self.line.clear();
            return Some(Frame::Prompt);
        }
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        Some(Frame::Line(text))
    }
}

/// `> ` as real modems send it: `>` alone or followed by spaces (ModemManager: `\r\n>\s*$`).
fn is_prompt(line: &[u8]) -> bool {
    line.first() == Some(&b'>') && line[1..].iter().all(|&b| b == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]], prompt_expected: bool) -> Vec<Frame> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame(prompt_expected) {
                out.push(frame);
            }
        }
        out
    }

    fn line(text: &str) -> Frame {
        Frame::Line(text.to_string())
    }

    #[test]
    fn line_endings_and_blank_lines() {
        let cases: &[(&[u8], Vec<Frame>)] = &[
            (b"\r\nOK\r\n", vec![line("OK")]),
            (b"OK\n", vec![line("OK")]),
            (b"OK\r", vec![line("OK")]),
            (
                b"\r\r\n+CMGL: 1,0,,23\r\r\nABCD\r\r\n",
                vec![line("+CMGL: 1,0,,23"), line("ABCD")],
            ),
            (b"\r\n\r\n\r\n", vec![]),
            (
                b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n",
                vec![line("+CSQ: 21,99"), line("OK")],
            ),
            (b"no end yet", vec![]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                &frames(&[input], false),
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn prompt_only_when_expected() {
        assert_eq!(frames(&[b"\r\n> "], true), vec![Frame::Prompt]);
        assert_eq!(frames(&[b"\r\n>"], true), vec![Frame::Prompt]);
        assert_eq!(frames(&[b"\r\n> "], false), vec![]);
        // A line that merely starts with `>` is not a prompt.
        assert_eq!(frames(&[b"\r\n> x"], true), vec![]);
        // A prompt ended by CRLF, or followed by a URC in the same read, is still the prompt.
        assert_eq!(frames(&[b"\r\n> \r\n"], true), vec![Frame::Prompt]);
        assert_eq!(
            frames(&[b"\r\n> \r\n+CMTI: \"SM\",1\r\n"], true),
            vec![Frame::Prompt, line("+CMTI: \"SM\",1")]
        );
        assert_eq!(frames(&[b"\r\n> \r\n"], false), vec![line("> ")]);
    }

    #[test]
    fn byte_by_byte_equals_one_read() {
        let input: &[u8] = b"AT+CMGR=1\r\r\n+CMGR: 0,,43\r\n0791\r\n\r\nOK\r\n";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(frames(&chunks, false), frames(&[input], false));
    }

    #[test]
    fn overlong_line_is_reported_and_skipped() {
        let long = vec![b'A'; 100 * 1024];
        let mut framer = Framer::new();
        for chunk in long.chunks(1000) {
            framer.push(chunk);
            assert_eq!(framer.next_frame(false), None);
            assert!(framer.partial().len() <= MAX_LINE);
        }
        framer.push(b"\r\nOK\r\n");
        assert_eq!(
            framer.next_frame(false),
            Some(Frame::Overflow {
                discarded: 100 * 1024
            })
        );
        assert_eq!(framer.next_frame(false), Some(line("OK")));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(
            frames(&[b"\xff\xfeRDY\r\n"], false),
            vec![line("\u{fffd}\u{fffd}RDY")]
        );
    }
}
