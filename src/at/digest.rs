//! The line classifier: frames → echo, prompt, information, final result or URC.
//!
//! Order per line (docs/at-sms.md §1.3): echo of the last command, final result, URC from
//! [`URC_TABLE`](super::URC_TABLE) unless the pending command asked for that prefix,
//! information line of the pending command, and with nothing pending, unexpected input.
//! Two-line URCs (`+CMT`, `+CDS`, `+CBM`) take the next line as their PDU wherever they land.
//! A `+CUSD:` whose quoted text holds line breaks (USSD menus do) is read up to its closing
//! quote, at most [`MAX_USSD_LINES`] lines; a final result for the pending command ends it.

use super::frame::{Frame, Framer};
use super::parse;
use super::{FinalResult, Urc};

/// The most lines one `+CUSD:` answer may span (a menu is a few lines; USSD carries at most
/// 182 characters).
pub const MAX_USSD_LINES: usize = 16;

/// The command whose answer is being read, as the classifier needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    command: String,
    /// `+CMGR:` for `AT+CMGR=1`: lines with the command's own prefix are its answer.
    prefix: Option<String>,
    pdu: Option<String>,
    prompt_seen: bool,
}

impl Pending {
    /// A command as written, without the trailing CR, e.g. `AT+CPMS?`.
    pub fn new(command: &str) -> Self {
        Self {
            command: command.trim().to_string(),
            prefix: command_prefix(command),
            pdu: None,
            prompt_seen: false,
        }
    }

    /// A prompt-taking command (`AT+CMGS=<n>`) that will write `pdu` after `> `.
    pub fn with_pdu(mut self, pdu: &str) -> Self {
        self.pdu = Some(pdu.to_string());
        self
    }

    fn expects_prompt(&self) -> bool {
        self.pdu.is_some() && !self.prompt_seen
    }

    fn is_echo(&self, line: &str) -> bool {
        if line.eq_ignore_ascii_case(&self.command) {
            return true;
        }
        // With echo on, the PDU comes back after the prompt, sometimes on the prompt's own
        // line (`> 0791…`), with or without the Ctrl-Z.
        let echoed = line
            .trim_start_matches(['>', ' '])
            .trim_end_matches(['\x1a', ' ']);
        self.pdu
            .as_deref()
            .is_some_and(|pdu| echoed.eq_ignore_ascii_case(pdu))
    }

    fn owns_prefix(&self, line: &str) -> bool {
        self.prefix
            .as_deref()
            .is_some_and(|prefix| line.starts_with(prefix))
    }
}

/// `+CMGR:` from `AT+CMGR=1`, `^SYSCFG:` from `AT^SYSCFG?`: the prefix the answer carries.
fn command_prefix(command: &str) -> Option<String> {
    let body = command.trim().get(2..)?;
    if !command.get(..2)?.eq_ignore_ascii_case("AT") {
        return None;
    }
    let first = body.chars().next()?;
    if !matches!(first, '+' | '^' | '$' | '*' | '#' | '%') {
        return None;
    }
    let name_len = body[1..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .map_or(body.len(), |at| at + 1);
    Some(format!("{}:", &body[..name_len]).to_ascii_uppercase())
}

/// One classified unit of modem output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The modem echoed the command (or the PDU) back.
    Echo(String),
    /// The `> ` prompt of a prompt-taking command.
    Prompt,
    /// An information line of the pending command.
    Info(String),
    /// The pending command's final result.
    Final(FinalResult),
    /// An unsolicited result code.
    Urc(Urc),
    /// A line that belongs to no command (nothing pending, or a stray final result).
    Unexpected(String),
    /// An over-long line was skipped.
    Overflow {
        /// Bytes dropped.
        discarded: usize,
    },
}

/// Framer and classifier together: bytes in, [`Item`]s out. Pure and bounded.
#[derive(Debug, Default)]
pub struct Digester {
    framer: Framer,
    pending: Option<Pending>,
    /// The header of a two-line URC whose PDU line has not arrived yet.
    urc_header: Option<String>,
    /// A line read while completing a two-line URC that turned out not to be its PDU.
    deferred: Option<String>,
    /// A `+CUSD:` whose quoted text is still open, and its line count.
    open_ussd: Option<(String, usize)>,
}

impl Digester {
    /// A digester with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the port.
    pub fn push(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
    }

    /// Sets or clears the command whose answer is being read.
    pub fn set_pending(&mut self, pending: Option<Pending>) {
        self.pending = pending;
    }

    /// The command being answered, if any.
    pub fn pending(&self) -> Option<&Pending> {
        self.pending.as_ref()
    }

    /// The next item, or `None` when more bytes are needed.
    pub fn next_item(&mut self) -> Option<Item> {
        loop {
            let line = match self.deferred.take() {
                Some(line) => line,
                None => {
                    let prompt_expected =
                        self.pending.as_ref().is_some_and(Pending::expects_prompt);
                    match self.framer.next_frame(prompt_expected)? {
                        Frame::Line(line) => line,
                        Frame::Prompt => {
                            if let Some(pending) = self.pending.as_mut() {
                                pending.prompt_seen = true;
                            }
                            return Some(Item::Prompt);
                        }
                        Frame::Overflow { discarded } => return Some(Item::Overflow { discarded }),
                    }
                }
            };
            if let Some((mut text, lines)) = self.open_ussd.take() {
                let ends_command = self.pending.is_some() && parse::final_result(&line).is_some();
                if ends_command || lines >= MAX_USSD_LINES {
                    // The quote never closed: what came so far is kept for the log.
                    self.deferred = Some(line);
                    return Some(Item::Urc(Urc::Malformed(text)));
                }
                text.push('\n');
                text.push_str(line.trim_end());
                if open_quote(&text) {
                    self.open_ussd = Some((text, lines + 1));
                    continue;
                }
                return Some(Item::Urc(parse::urc(&text, None)));
            }
            if let Some(header) = self.urc_header.take() {
                if parse::is_hex(line.trim()) {
                    return Some(Item::Urc(parse::urc(&header, Some(line.trim()))));
                }
                self.deferred = Some(line);
                return Some(Item::Urc(parse::urc(&header, None)));
            }
            if let Some(item) = self.classify(line) {
                return Some(item);
            }
        }
    }

    /// Classifies one line; `None` when it opened a two-line URC or was blank.
    fn classify(&mut self, line: String) -> Option<Item> {
        let line = line.trim().to_string();
        // The space of a `> ` prompt that arrived in its own read is all that is left here.
        if line.is_empty() {
            return None;
        }
        if let Some(pending) = &self.pending {
            if pending.is_echo(&line) {
                return Some(Item::Echo(line));
            }
        }
        if let Some(result) = parse::final_result(&line) {
            return Some(match (&self.pending, result) {
                (Some(_), result) => Item::Final(result),
                (None, FinalResult::NoCarrier) => Item::Urc(Urc::CallEnded),
                (None, _) => Item::Unexpected(line),
            });
        }
        if let Some(spec) = super::urc_spec(&line) {
            let claimed = spec.also_answer
                && self
                    .pending
                    .as_ref()
                    .is_some_and(|pending| pending.owns_prefix(&line))
                && is_answer_shape(&line);
            if !claimed {
                if line.starts_with("+CUSD:") && open_quote(&line) {
                    self.open_ussd = Some((line, 1));
                    return None;
                }
                if spec.two_lines {
                    self.urc_header = Some(line);
                    return None;
                }
                return Some(Item::Urc(parse::urc(&line, None)));
            }
        }
        Some(match self.pending {
            Some(_) => Item::Info(line),
            None => Item::Unexpected(line),
        })
    }
}

/// Whether `text` has a quote still open (an odd number of them).
fn open_quote(text: &str) -> bool {
    text.bytes().filter(|&b| b == b'"').count() % 2 == 1
}

/// For a prefix that is both an answer and a URC: whether this line is the answer. Only the
/// registration family has two shapes; `+CPIN:`/`+CFUN:` during their query are answers.
fn is_answer_shape(line: &str) -> bool {
    let registration = ["+CREG:", "+CGREG:", "+CEREG:"];
    match registration
        .iter()
        .find(|prefix| line.starts_with(**prefix))
    {
        Some(prefix) => {
            parse::fields(prefix, line).is_ok_and(|fields| parse::is_registration_answer(&fields))
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::at::{CmsError, PinState, RegistrationStatus};

    fn digest(pending: Option<Pending>, input: &[u8]) -> Vec<Item> {
        let mut digester = Digester::new();
        digester.set_pending(pending);
        digester.push(input);
        std::iter::from_fn(|| digester.next_item()).collect()
    }

    fn info(text: &str) -> Item {
        Item::Info(text.to_string())
    }

    #[test]
    fn a_ussd_menu_over_several_lines_is_one_urc() {
        use crate::at::UssdReport;
        let menu = |text: &str| {
            Item::Urc(Urc::Ussd(UssdReport {
                status: 1,
                text: Some(text.into()),
                dcs: Some(15),
            }))
        };
        // CR LF inside the text, then the URC's end; nothing pending.
        assert_eq!(
            digest(
                None,
                b"\r\n+CUSD: 1,\"Menu\r\n1. Balance\r\n2. Bundles\",15\r\n"
            ),
            vec![menu("Menu\n1. Balance\n2. Bundles")]
        );
        // Bare LF inside, arriving while a command waits for its OK.
        assert_eq!(
            digest(
                Some(Pending::new("AT+CSQ")),
                b"\r\n+CUSD: 1,\"A\n1. B\",15\r\n\r\n+CSQ: 9,99\r\n\r\nOK\r\n"
            ),
            vec![
                menu("A\n1. B"),
                info("+CSQ: 9,99"),
                Item::Final(FinalResult::Ok)
            ]
        );
        // A quote that never closes gives up at the pending command's final result.
        assert_eq!(
            digest(
                Some(Pending::new("AT+CSQ")),
                b"\r\n+CUSD: 1,\"A\r\nB\r\nOK\r\n"
            ),
            vec![
                Item::Urc(Urc::Malformed("+CUSD: 1,\"A\nB".into())),
                Item::Final(FinalResult::Ok)
            ]
        );
        // … or after MAX_USSD_LINES lines with nothing pending.
        let mut flood = b"+CUSD: 1,\"A\r\n".to_vec();
        for _ in 0..MAX_USSD_LINES + 2 {
            flood.extend_from_slice(b"x\r\n");
        }
        let items = digest(None, &flood);
        assert!(
            matches!(items[0], Item::Urc(Urc::Malformed(_))),
            "{items:?}"
        );
        assert_eq!(items.len(), 4, "{items:?}");
    }

    #[test]
    fn command_prefixes() {
        assert_eq!(command_prefix("AT+CMGR=1").as_deref(), Some("+CMGR:"));
        assert_eq!(command_prefix("AT+CREG?").as_deref(), Some("+CREG:"));
        assert_eq!(command_prefix("at+cpms=?").as_deref(), Some("+CPMS:"));
        assert_eq!(command_prefix("AT^CURC=0").as_deref(), Some("^CURC:"));
        assert_eq!(command_prefix("ATE0"), None);
        assert_eq!(command_prefix("AT"), None);
        assert_eq!(command_prefix(""), None);
    }

    #[test]
    fn echo_then_answer() {
        let items = digest(
            Some(Pending::new("AT+CSQ")),
            b"AT+CSQ\r\r\n+CSQ: 21,99\r\n\r\nOK\r\n",
        );
        assert_eq!(
            items,
            vec![
                Item::Echo("AT+CSQ".into()),
                info("+CSQ: 21,99"),
                Item::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn urc_between_echo_and_answer() {
        let items = digest(Some(Pending::new("AT+CPMS?")), b"AT+CPMS?\r\r\n+CMTI: \"SM\",4\r\n\r\n+CPMS: \"SM\",4,30,\"SM\",4,30,\"SM\",4,30\r\n\r\nOK\r\n");
        assert_eq!(
            items[1],
            Item::Urc(Urc::MessageStored {
                storage: "SM".into(),
                index: 4
            })
        );
        assert_eq!(items[2], info("+CPMS: \"SM\",4,30,\"SM\",4,30,\"SM\",4,30"));
        assert_eq!(items[3], Item::Final(FinalResult::Ok));
    }

    #[test]
    fn two_line_urc_inside_a_response() {
        let items = digest(
            Some(Pending::new("AT+CMGR=1")),
            b"\r\n+CMGR: 0,,5\r\n0791AA\r\n\r\n+CDS: 25\r\n0006070C\r\n\r\nOK\r\n",
        );
        assert_eq!(
            items,
            vec![
                info("+CMGR: 0,,5"),
                info("0791AA"),
                Item::Urc(Urc::StatusReport {
                    length: 25,
                    pdu: "0006070C".into()
                }),
                Item::Final(FinalResult::Ok),
            ]
        );
    }

    #[test]
    fn two_line_urc_missing_its_pdu() {
        let items = digest(Some(Pending::new("AT")), b"\r\n+CMT: ,43\r\nOK\r\n");
        assert_eq!(
            items,
            vec![
                Item::Urc(Urc::Malformed("+CMT: ,43".into())),
                Item::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn registration_answer_versus_urc() {
        let items = digest(
            Some(Pending::new("AT+CREG?")),
            b"\r\n+CREG: 1,\"5E25\",\"605F\"\r\n\r\n+CREG: 2,1,\"5E25\",\"605F\"\r\n\r\nOK\r\n",
        );
        assert!(
            matches!(&items[0], Item::Urc(Urc::Registration(reg)) if reg.mode.is_none() && reg.status == RegistrationStatus::Home)
        );
        assert_eq!(items[1], info("+CREG: 2,1,\"5E25\",\"605F\""));
        // Without the query pending, the same prefix is always a URC.
        let items = digest(Some(Pending::new("AT+CSQ")), b"\r\n+CREG: 5\r\n");
        assert!(
            matches!(&items[0], Item::Urc(Urc::Registration(reg)) if reg.status == RegistrationStatus::Roaming)
        );
    }

    #[test]
    fn cpin_is_an_answer_only_when_asked() {
        assert_eq!(
            digest(Some(Pending::new("AT+CPIN?")), b"\r\n+CPIN: READY\r\n"),
            vec![info("+CPIN: READY")]
        );
        assert_eq!(
            digest(None, b"\r\n+CPIN: READY\r\n"),
            vec![Item::Urc(Urc::SimState(PinState::Ready))]
        );
    }

    #[test]
    fn prompt_and_pdu_echo() {
        let pending = Pending::new("AT+CMGS=5").with_pdu("0011AABB");
        let items = digest(
            Some(pending),
            b"AT+CMGS=5\r\r\n> 0011AABB\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n",
        );
        // The prompt and its echoed PDU share a line here, so it frames as one echo line.
        assert_eq!(
            items,
            vec![
                Item::Echo("AT+CMGS=5".into()),
                Item::Echo("> 0011AABB\x1a".into()),
                info("+CMGS: 7"),
                Item::Final(FinalResult::Ok)
            ]
        );
        let pending = Pending::new("AT+CMGS=5").with_pdu("0011AABB");
        assert_eq!(digest(Some(pending), b"\r\n> "), vec![Item::Prompt]);
    }

    #[test]
    fn error_during_send() {
        let pending = Pending::new("AT+CMGS=5").with_pdu("0011AABB");
        assert_eq!(
            digest(Some(pending), b"\r\n+CMS ERROR: 304\r\n"),
            vec![Item::Final(FinalResult::CmsError(
                CmsError::InvalidPduParameter
            ))]
        );
    }

    #[test]
    fn nothing_pending() {
        assert_eq!(
            digest(None, b"\r\nOK\r\n"),
            vec![Item::Unexpected("OK".into())]
        );
        assert_eq!(
            digest(None, b"\r\nNO CARRIER\r\n"),
            vec![Item::Urc(Urc::CallEnded)]
        );
        assert_eq!(
            digest(None, b"\r\nhello\r\n"),
            vec![Item::Unexpected("hello".into())]
        );
    }
}
