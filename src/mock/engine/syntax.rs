//! The shape of the conversation, apart from what any command means: how a command line is
//! split into commands (`;`, basic commands one after the other, quotes), how a command splits
//! into a name and its form (`?`, `=?`, `=<value>`, action), the echo, V1 framing of answers,
//! the CMEE forms of an error, and where armed URCs come out.

use std::time::Instant;

use log::debug;

use super::{Engine, Input, UrcPoint};
use crate::at::{CmeError, CmsError};

/// Ctrl-Z ends a message after the prompt.
pub(super) const CTRL_Z: u8 = 0x1A;
/// ESC aborts a message after the prompt.
pub(super) const ESC: u8 = 0x1B;
/// A command line longer than this is junk: real modems cap their buffers too.
pub(super) const MAX_COMMAND: usize = 4096;

/// Failures a command can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fail {
    Error,
    Cme(u16),
    Cms(u16),
    /// The Huawei answer to commands it lacks.
    NotSupported,
}

/// Information lines, or the failure to answer with.
pub(super) type Answer = Result<Vec<String>, Fail>;

/// The form of a command: what follows its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    /// `AT+CSQ`
    Action,
    /// `AT+CPMS?`
    Query,
    /// `AT+CPMS=?`
    Test,
    /// `AT+CMGF=0`
    Set(String),
    /// `ATE0`
    Basic(u32),
    /// `AT`
    None,
}

impl Engine {
    /// Runs one command line (without its CR) and writes its echo and answer, or the URCs it
    /// raised after the answer.
    pub(super) fn command_line(&mut self, line: &str, now: Instant) {
        // URCs raised by the command itself (a delete that makes room, say) follow its answer.
        self.port.in_command = true;
        self.run_command_line(line, now);
        self.port.in_command = false;
        if !self.port.busy && matches!(self.port.mode, Input::Command) {
            self.fire_armed(UrcPoint::AfterFinal);
        }
    }

    /// Records the line, echoes it, and answers it unless it is dropped or not a command.
    fn run_command_line(&mut self, line: &str, now: Instant) {
        debug!("mock ← {line}");
        self.commands.push(line.to_string());
        if self.drop_commands > 0 {
            self.drop_commands -= 1;
            debug!("mock: dropping {line:?} unanswered");
            return;
        }
        if self.settings.echo {
            self.port.out.extend_from_slice(line.as_bytes());
            self.port.out.push(b'\r');
        }
        self.fire_armed(UrcPoint::AfterEcho);
        if !line.is_ascii() {
            // Command lines are IA5 (ITU-T V.250 §5.1): a real modem answers anything else with
            // ERROR, and our parsing of names and arguments may then count on ASCII (issue #14).
            self.write_line("ERROR");
            return;
        }
        match at_body(line) {
            Some(body) => self.answer_commands(body, now),
            // Not a command at all: real modems stay silent or say ERROR; ERROR is clearer.
            None => self.write_line("ERROR"),
        }
    }

    /// Runs the commands of a line after `AT` in order: their information lines are gathered
    /// and written before one final result; the first failure ends the line, and `AT+CMGS`
    /// ends it with its prompt.
    fn answer_commands(&mut self, body: &str, now: Instant) {
        let mut info: Vec<String> = Vec::new();
        for command in split_commands(body) {
            if let Some(rest) = strip_prefix_ignore_case(&command, "+CMGS") {
                // AT+CMGS ends the line: what follows the prompt is the message.
                match self.cmgs(rest.trim(), now) {
                    Ok(()) => self.write_info(info),
                    Err(fail) => {
                        let text = self.fail_text(fail);
                        self.write_line(&text);
                    }
                }
                return;
            }
            match self.command(&command, now) {
                Ok(lines) => info.extend(lines),
                Err(fail) => {
                    self.write_info(info);
                    self.fire_armed(UrcPoint::BeforeFinal);
                    let text = self.fail_text(fail);
                    self.write_line(&text);
                    self.fire_armed(UrcPoint::AfterFinal);
                    return;
                }
            }
            if self.port.busy {
                return;
            }
        }
        self.write_info(info);
        self.fire_armed(UrcPoint::BeforeFinal);
        if self.config.profile.cpin_without_ok() && body.eq_ignore_ascii_case("+CPIN?") {
            // Wavecom: `+CPIN: READY` comes with no final OK (gammu's CPINNoOK).
            return;
        }
        self.final_ok();
    }

    /// `OK`, then the URCs armed for after it.
    pub(super) fn final_ok(&mut self) {
        self.write_line("OK");
        self.fire_armed(UrcPoint::AfterFinal);
    }

    /// The final result line for `fail` in the current CMEE mode.
    pub(super) fn fail_text(&self, fail: Fail) -> String {
        match (fail, self.settings.cmee) {
            (Fail::NotSupported, _) => "COMMAND NOT SUPPORT".into(),
            (Fail::Error, _) | (_, 0) => "ERROR".into(),
            (Fail::Cme(code), 1) => format!("+CME ERROR: {code}"),
            (Fail::Cms(code), 1) => format!("+CMS ERROR: {code}"),
            (Fail::Cme(code), _) => {
                format!("+CME ERROR: {}", CmeError::from_code(code).description())
            }
            (Fail::Cms(code), _) => {
                format!("+CMS ERROR: {}", CmsError::from_code(code).description())
            }
        }
    }

    /// A line of its own: CR LF, the text, CR LF.
    pub(super) fn write_line(&mut self, line: &str) {
        debug!("mock → {line}");
        self.port.out.extend_from_slice(b"\r\n");
        self.port.out.extend_from_slice(line.as_bytes());
        self.port.out.extend_from_slice(b"\r\n");
    }

    /// Information lines as V1 framing has them: a CR LF before the first, one after each.
    fn write_info(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        self.port.out.extend_from_slice(b"\r\n");
        for line in lines {
            debug!("mock → {line}");
            self.port.out.extend_from_slice(line.as_bytes());
            self.port.out.extend_from_slice(b"\r\n");
        }
    }

    /// Writes the URCs armed for `point`, keeping the others.
    pub(super) fn fire_armed(&mut self, point: UrcPoint) {
        let (fire, keep): (Vec<_>, Vec<_>) =
            self.port.armed.drain(..).partition(|(at, _)| *at == point);
        self.port.armed = keep;
        for (_, text) in fire {
            self.write_line(&text);
        }
    }

    /// A URC now when the modem is idle; otherwise right after the current answer.
    pub(super) fn urc_or_arm(&mut self, urc: String) {
        if self.port.busy || self.port.in_command || !matches!(self.port.mode, Input::Command) {
            self.port.armed.push((UrcPoint::AfterFinal, urc));
        } else {
            self.write_line(&urc);
        }
    }
}

/// Splits a command into its upper-case name and argument, keeping the argument's case.
pub(super) fn split_name(upper: &str, original: &str) -> (String, Arg) {
    if upper.is_empty() {
        return (String::new(), Arg::None);
    }
    let extended = upper.starts_with(['+', '^', '$', '#', '*', '%']);
    if !extended {
        // Basic commands: a letter (or & and a letter), then digits.
        let name_len = if upper.starts_with('&') { 2 } else { 1 };
        let name = upper.get(..name_len).unwrap_or(upper).to_string();
        let value = upper
            .get(name_len..)
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        return (name, Arg::Basic(value));
    }
    let end = upper.find(['=', '?']).unwrap_or(upper.len());
    let name = upper[..end].to_string();
    let rest = &original[end..];
    let argument = if rest.is_empty() {
        Arg::Action
    } else if rest == "?" {
        Arg::Query
    } else if rest == "=?" {
        Arg::Test
    } else if let Some(value) = rest.strip_prefix('=') {
        Arg::Set(value.trim().to_string())
    } else {
        Arg::Action
    };
    (name, argument)
}

/// Splits `E0V1+CMEE=1;+CMGF=0` into its commands: `;` between extended commands, and basic
/// commands one after the other.
fn split_commands(body: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        if rest.starts_with(['+', '^', '$', '#', '*', '%']) {
            let mut in_quotes = false;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        in_quotes = !in_quotes;
                    }
                    c == ';' && !in_quotes
                })
                .map_or(rest.len(), |(at, _)| at);
            commands.push(rest[..end].trim().to_string());
            rest = rest[end..].trim_start_matches(';').trim_start();
        } else {
            // The name is one character, or `&` and one; counted in bytes of whole characters,
            // so a multi-byte character is never cut (issue #14).
            let name_chars = if rest.starts_with('&') { 2 } else { 1 };
            let name_len: usize = rest.chars().take(name_chars).map(char::len_utf8).sum();
            let digits = rest[name_len..]
                .char_indices()
                .find(|(_, c)| !c.is_ascii_digit())
                .map_or(rest.len() - name_len, |(at, _)| at);
            let end = name_len + digits;
            if !rest.is_char_boundary(end) {
                break;
            }
            commands.push(rest[..end].to_string());
            rest = rest[end..].trim_start_matches(';').trim_start();
        }
    }
    if commands.is_empty() {
        commands.push(String::new());
    }
    commands
}

/// The commands of a line after its `AT` (any case), or `None` when it does not start so.
fn at_body(line: &str) -> Option<&str> {
    let prefix = line.get(..2)?;
    prefix.eq_ignore_ascii_case("AT").then(|| &line[2..])
}

/// The rest of `text` after `prefix` (any case) and `=`: `AT+cmgs=23` gives `23`.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
        .and_then(|rest| rest.strip_prefix('='))
}

/// A decimal number, spaces around it allowed.
pub(super) fn number(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// `text` without the double quotes around it, if it has them.
pub(super) fn unquote(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(body: &str, expected: &[&str]) {
        assert_eq!(split_commands(body), expected, "{body:?}");
    }

    #[test]
    fn a_line_splits_into_its_commands() {
        check_split("", &[""]);
        check_split("  ", &[""]);
        check_split("+CSQ", &["+CSQ"]);
        check_split("E0V1+CMEE=1;+CMGF=0", &["E0", "V1", "+CMEE=1", "+CMGF=0"]);
        check_split("&FE0", &["&F", "E0"]);
        check_split("E0 Q0", &["E0", "Q0"]);
        check_split(" +CSQ ; +CREG? ", &["+CSQ", "+CREG?"]);
        check_split("+CMGF=0;", &["+CMGF=0"]);
        check_split(
            "+CSCA=\"+44;1\",145;+CMGF=0",
            &["+CSCA=\"+44;1\",145", "+CMGF=0"],
        );
        check_split("^CURC=0;$QCSIMSTAT?", &["^CURC=0", "$QCSIMSTAT?"]);
        check_split("I;+CGMI", &["I", "+CGMI"]);
        // Multi-byte characters are never cut (issue #14); such a line gets ERROR anyway.
        check_split("é", &["é"]);
    }

    fn check_name(original: &str, name: &str, argument: Arg) {
        let upper = original.to_ascii_uppercase();
        assert_eq!(
            split_name(&upper, original),
            (name.to_string(), argument),
            "{original:?}"
        );
    }

    #[test]
    fn a_command_splits_into_its_name_and_form() {
        check_name("", "", Arg::None);
        check_name("+CSQ", "+CSQ", Arg::Action);
        check_name("+cpms?", "+CPMS", Arg::Query);
        check_name("+CPMS=?", "+CPMS", Arg::Test);
        check_name("+CMGF=0", "+CMGF", Arg::Set("0".into()));
        check_name("+CMGF= 1 ", "+CMGF", Arg::Set("1".into()));
        check_name("+cscs=\"ucs2\"", "+CSCS", Arg::Set("\"ucs2\"".into()));
        check_name("^CPIN?", "^CPIN", Arg::Query);
        check_name("+CMGF!", "+CMGF!", Arg::Action);
        check_name("+CMGF=", "+CMGF", Arg::Set(String::new()));
        check_name("E0", "E", Arg::Basic(0));
        check_name("e1", "E", Arg::Basic(1));
        check_name("V", "V", Arg::Basic(0));
        check_name("&F", "&F", Arg::Basic(0));
        check_name("&D2", "&D", Arg::Basic(2));
        check_name("I", "I", Arg::Basic(0));
    }

    #[test]
    fn the_small_pieces_of_a_command() {
        assert_eq!(at_body("AT+CSQ"), Some("+CSQ"));
        assert_eq!(at_body("at"), Some(""));
        assert_eq!(at_body("aT&F"), Some("&F"));
        assert_eq!(at_body("A"), None);
        assert_eq!(at_body("+CSQ"), None);
        assert_eq!(strip_prefix_ignore_case("+cmgs=23", "+CMGS"), Some("23"));
        assert_eq!(strip_prefix_ignore_case("+CMGS=?", "+CMGS"), Some("?"));
        assert_eq!(strip_prefix_ignore_case("+CMGS", "+CMGS"), None);
        assert_eq!(strip_prefix_ignore_case("+CMGL=4", "+CMGS"), None);
        assert_eq!(number(" 17 "), Some(17));
        assert_eq!(number("x"), None);
        assert_eq!(number(""), None);
        assert_eq!(unquote(" \"SM\" "), "SM");
        assert_eq!(unquote("SM"), "SM");
        assert_eq!(unquote("\"SM"), "\"SM");
    }
}
