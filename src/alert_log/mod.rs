//! The alert log: the seed's line format, which fail2ban reads, made impossible to forge.
//! The bottom of the house: it knows lines, not rules, fraud or AMI — each domain
//! builds its own line from the pieces here (`Line::new`, `field`, `quoted`).
//!
//! `2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_callerid_num callerid_num='abc' …`
//!
//! Two guarantees make it safe to ban on (design.md §5):
//! - every caller value is quoted and escaped to printable ASCII without `'`, `\` or
//!   `=`: no byte a caller sends can end the line, start another, or spell `ip=`;
//! - each line is one `write(2)` to a file opened with `O_APPEND`, so any number of
//!   processes can write at once and no line is torn or lost.
//!
//! `file.rs` is the file (one `O_APPEND` write a line; the daemon's reopening log);
//! `read.rs` reads lines back (`parse`) and finds the files logrotate made of a log.

use std::fmt::Write as _;
use std::net::IpAddr;

mod file;
mod read;

pub use file::*;
pub use read::*;

/// What ends a line of a request in the seed's JSON form.
pub const LEGACY_MARK: &str = "via=legacy_json";

/// Whether a log line is a request in the seed's JSON form.
pub fn is_legacy(line: &[u8]) -> bool {
    line.strip_suffix(LEGACY_MARK.as_bytes())
        .is_some_and(|rest| rest.ends_with(b" "))
}

/// A caller value longer than this is cut in the log, with its full length noted:
/// it keeps lines short enough to read and to write in one call.
pub const MAX_VALUE_BYTES: usize = 512;
/// The same for the raw request echoed in a `CRITICAL` line.
pub const MAX_REQUEST_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    /// Something the operator should see that bans no one: an outbound call refused by
    /// policy, a limit's warning level, a quarantined account. The fail2ban filter
    /// matches `ERROR` lines only.
    Warning,
    Error,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

/// One log line without its timestamp: `[ip=ADDR ]reason=CODE` and the fields a domain
/// adds. Its text never holds a control character, and only an `ERROR` line with an
/// address bans (fail2ban's filter matches `ERROR` lines only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    text: String,
    ip: Option<IpAddr>,
    /// Where the reason stands in `text`: read from there, not kept twice (a line is
    /// built for every call).
    reason: std::ops::Range<usize>,
}

impl Line {
    /// `[ip=ADDR ]reason=CODE`. The reason is ours (a code); should it hold anything
    /// but a code's characters it is quoted like a caller's value.
    pub fn new(level: Level, ip: Option<IpAddr>, reason: &str) -> Line {
        let mut text = String::new();
        if let Some(ip) = ip {
            let _ = write!(text, "ip={ip} ");
        }
        text.push_str("reason=");
        let reason = push_code(&mut text, reason);
        Line {
            level,
            text,
            ip,
            reason,
        }
    }

    /// ` key=value` for a value of ours (a count, a class, an event's name). Anything
    /// but a code's characters is quoted instead: no value can pose as a field.
    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Line {
        let _ = write!(self.text, " {key}=");
        push_code(&mut self.text, value);
        self
    }

    /// ` key='value'`, quoted and escaped ([`quote`]), cut at [`MAX_VALUE_BYTES`]: any
    /// value a caller, an event or an administrator chose.
    pub fn quoted(self, key: &str, value: &[u8]) -> Line {
        self.quoted_up_to(key, value, MAX_VALUE_BYTES)
    }

    /// [`quoted`](Self::quoted), cut at `max` bytes.
    pub fn quoted_up_to(mut self, key: &str, value: &[u8], max: usize) -> Line {
        let _ = write!(self.text, " {key}=");
        quote(&mut self.text, value, max);
        self
    }

    /// `[+N bytes]` after the last value: bytes cut off it before it got here.
    pub fn cut(mut self, bytes: usize) -> Line {
        if bytes > 0 {
            let _ = write!(self.text, "[+{bytes} bytes]");
        }
        self
    }

    /// A request that could not be judged. It names no `ip=`, so fail2ban never bans on it.
    pub fn bad_request(error: &str, request: &[u8]) -> Line {
        Line::new(Level::Critical, None, "bad_request")
            .quoted_up_to("error", error.as_bytes(), MAX_REQUEST_BYTES)
            .quoted_up_to("request", request, MAX_REQUEST_BYTES)
    }

    /// Marks the line as coming from the seed's JSON request (`via=legacy_json` at its
    /// end, after every caller value: none can spell it, `=` is escaped in them), so
    /// that the daemon and `report` can count what still arrives that way.
    pub fn via_legacy(&mut self) {
        self.text.push(' ');
        self.text.push_str(LEGACY_MARK);
    }

    /// `<timestamp> <LEVEL> <text>\n`, ready for one `write(2)`.
    pub fn render(&self, timestamp: &str) -> Vec<u8> {
        format!("{timestamp} {} {}\n", self.level.as_str(), self.text).into_bytes()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The banned address and reason, for an `ERROR` line that names an address: for
    /// sinks other than the log (CrowdSec) that must not parse the text back.
    pub fn alert(&self) -> Option<(IpAddr, &str)> {
        match (self.level, self.ip) {
            (Level::Error, Some(ip)) => Some((ip, &self.text[self.reason.clone()])),
            _ => None,
        }
    }
}

/// Appends a code as it is when it holds only a code's characters (letters, digits,
/// `_ - . : / ( ) +`), else quoted; where it stands in `out`. Written in place, then
/// looked at: no copy for the codes every line carries.
fn push_code(out: &mut String, value: impl std::fmt::Display) -> std::ops::Range<usize> {
    let start = out.len();
    let _ = write!(out, "{value}");
    let written = &out[start..];
    let plain = !written.is_empty()
        && written
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/()+".contains(&b));
    if !plain {
        let raw = out.split_off(start);
        quote(out, raw.as_bytes(), MAX_VALUE_BYTES);
    }
    start..out.len()
}

/// Appends `'value'` with every byte outside printable ASCII, and `'`, `\` and `=`,
/// written as `\xNN`. Values over `max` bytes are cut and followed by `[+N bytes]`.
///
/// Only printable ASCII survives because fail2ban (Python) splits lines not only at LF
/// but, depending on how it decodes, at CR, VT, FF, `\x1c`–`\x1e`, U+0085 and U+2028.
/// `=` is escaped so that even the seed's unanchored filter cannot find `ip=` in a value.
pub fn quote(out: &mut String, value: &[u8], max: usize) {
    let shown = &value[..value.len().min(max)];
    out.push('\'');
    for &b in shown {
        match b {
            b'\'' | b'\\' | b'=' => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    if value.len() > shown.len() {
        let _ = write!(out, "[+{} bytes]", value.len() - shown.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &[u8]) -> String {
        let mut s = String::new();
        quote(&mut s, value, MAX_VALUE_BYTES);
        s
    }

    #[test]
    fn only_error_lines_with_an_address_ban_for_other_sinks() {
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let ban = Line::new(Level::Error, Some(ip), "call_rate(31)");
        assert_eq!(ban.alert(), Some((ip, "call_rate(31)")));
        assert_eq!(Line::new(Level::Info, Some(ip), "ok").alert(), None);
        assert_eq!(
            Line::new(Level::Warning, Some(ip), "takeover").alert(),
            None
        );
        assert_eq!(Line::new(Level::Error, None, "toll_fraud(x)").alert(), None);
        assert_eq!(Line::bad_request("x", b"ip=9.9.9.9").alert(), None);
    }

    #[test]
    fn fields_of_ours_stay_codes_and_anything_else_is_quoted() {
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let line = Line::new(Level::Error, Some(ip), "refused(premium)")
            .field("net", "2001:db8::/32")
            .field("live", 3)
            .field("last_event", "a b\nip=9.9.9.9")
            .quoted("account", b"a'b")
            .cut(12);
        assert_eq!(
            line.text(),
            r"ip=2001:db8::5 reason=refused(premium) net=2001:db8::/32 live=3 last_event='a b\x0aip\x3d9.9.9.9' account='a\x27b'[+12 bytes]"
        );
        let odd = Line::new(Level::Info, None, "no code");
        assert_eq!(odd.text(), "reason='no code'");
        assert_eq!(Line::new(Level::Info, None, "x").cut(0).text(), "reason=x");
    }

    #[test]
    fn a_legacy_mark_cannot_come_from_a_caller() {
        let ip = "203.0.113.5".parse().unwrap();
        let mut line =
            Line::new(Level::Info, Some(ip), "ok").quoted("user_agent", b"x via=legacy_json");
        assert!(!is_legacy(&line.render("T")[..line.render("T").len() - 1]));
        line.via_legacy();
        let text = line.render("T");
        assert!(
            is_legacy(&text[..text.len() - 1]),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }

    #[test]
    fn plain_values_are_quoted_as_they_are() {
        assert_eq!(quoted(b"friendly-scanner"), "'friendly-scanner'");
        assert_eq!(quoted(b""), "''");
        assert_eq!(quoted(b"O Brien (x) :100"), "'O Brien (x) :100'");
    }

    #[test]
    fn line_breakers_quotes_and_equals_are_escaped() {
        assert_eq!(quoted(b"a\nb\rc"), r"'a\x0ab\x0dc'");
        assert_eq!(quoted(b"O'Brien \\ x=1"), r"'O\x27Brien \x5c x\x3d1'");
        assert_eq!(quoted(b"\x00\x0b\x0c\x1c\x7f"), r"'\x00\x0b\x0c\x1c\x7f'");
        assert_eq!(
            quoted("\u{2028}\u{85}é".as_bytes()),
            r"'\xe2\x80\xa8\xc2\x85\xc3\xa9'"
        );
        assert_eq!(quoted(b"\xff\xfe"), r"'\xff\xfe'");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let s = quoted(&[b'9'; 600]);
        assert_eq!(s, format!("'{}'[+88 bytes]", "9".repeat(512)));
    }

    #[test]
    fn bad_request_lines_name_no_ip() {
        let line = Line::bad_request("EOF while parsing", b"{\"ip\": \"1.2.3.4\n ip=5.6.7.8");
        let text = String::from_utf8(line.render("T")).unwrap();
        assert_eq!(
            text,
            "T CRITICAL reason=bad_request error='EOF while parsing' \
             request='{\"ip\": \"1.2.3.4\\x0a ip\\x3d5.6.7.8'\n"
        );
    }
}
