//! AMI security events, read so that a caller cannot steer them (design.md §3b).
//!
//! Groundwork for the AMI watcher (issue 6): the framing, the validation and the rules
//! with memory, without I/O and not yet wired into the daemon.
//!
//! Asterisk writes event fields unescaped: a From user of
//! `a%0D%0ARemoteAddress%3A%20IPV4/UDP/9.9.9.9/5` gives an event with two
//! `RemoteAddress` lines, the forged one first, and `%0D%0A%0D%0AEvent%3A…` splits one
//! event into two. So a message is an [`Event`] only if it has exactly Asterisk's
//! shape: `Event:` first, `Privilege: security,all` second, a known type, every key
//! once, every required field, and a parseable address. Anything else is
//! [`Tampering`], which names no address to blame.

use std::net::IpAddr;

/// A message longer than this cannot come from one SIP request (UDP caps those at
/// 64 KiB, and Call-IDs of 65 KB were seen in `SessionID`); it is skipped whole.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The security event types of Asterisk 20 (`include/asterisk/security_events_defs.h`).
pub const EVENT_TYPES: [&str; 15] = [
    "FailedACL",
    "InvalidAccountID",
    "SessionLimit",
    "MemoryLimit",
    "LoadAverageLimit",
    "RequestNotSupported",
    "RequestNotAllowed",
    "AuthMethodNotAllowed",
    "RequestBadFormat",
    "SuccessfulAuth",
    "UnexpectedAddress",
    "ChallengeResponseFailed",
    "InvalidPassword",
    "ChallengeSent",
    "InvalidTransport",
];

/// The fields every security event carries, in this order, after `Privilege`.
const REQUIRED: [&str; 8] = [
    "EventTV",
    "Severity",
    "Service",
    "EventVersion",
    "AccountID",
    "SessionID",
    "LocalAddress",
    "RemoteAddress",
];

/// One framed AMI message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The message's `Key: Value` lines (without CR LF).
    Lines(Vec<Vec<u8>>),
    /// A message over [`MAX_MESSAGE`]; its bytes were dropped up to its end.
    Oversized,
}

/// Splits the byte stream into messages: `\r\n`-terminated lines, a message ending at
/// an empty line. A lone LF or CR inside a line is part of the line.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where to resume looking for `\r\n\r\n`.
    scanned: usize,
    /// Inside an oversized message: drop until its end.
    discarding: bool,
}

impl Framer {
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Option<Message> {
        loop {
            let from = self.scanned.saturating_sub(3);
            match find(&self.buf[from..], b"\r\n\r\n").map(|i| i + from) {
                Some(end) => {
                    let body: Vec<u8> = self.buf.drain(..end + 4).take(end).collect();
                    self.scanned = 0;
                    if std::mem::take(&mut self.discarding) || body.len() > MAX_MESSAGE {
                        return Some(Message::Oversized);
                    }
                    return Some(Message::Lines(split_crlf(&body)));
                }
                None if self.buf.len() > MAX_MESSAGE => {
                    // Keep the last 3 bytes: the terminator may straddle the cut.
                    let keep = self.buf.split_off(self.buf.len() - 3);
                    self.buf = keep;
                    self.scanned = 0;
                    self.discarding = true;
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split_crlf(body: &[u8]) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut rest = body;
    while let Some(i) = find(rest, b"\r\n") {
        lines.push(rest[..i].to_vec());
        rest = &rest[i + 2..];
    }
    lines.push(rest.to_vec());
    lines
}

/// A security event that has Asterisk's exact shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub severity: String,
    pub service: String,
    pub account_id: Vec<u8>,
    pub remote_ip: IpAddr,
}

/// Why a message is not an event we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Event(Event),
    /// Not an event at all: a reply to our action (`Response:`), say.
    NotAnEvent,
    /// Shaped like an event but not as Asterisk writes one: counted, never acted on.
    Tampering(&'static str),
}

/// Validates one framed message.
pub fn classify(message: &Message) -> Verdict {
    let lines = match message {
        Message::Lines(lines) => lines,
        Message::Oversized => return Verdict::Tampering("an oversized message"),
    };
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(lines.len());
    for line in lines {
        let Some(i) = find(line, b": ") else {
            return Verdict::Tampering("a line that is not Key: Value");
        };
        let key = &line[..i];
        if fields.iter().any(|(k, _)| *k == key) {
            return Verdict::Tampering("a duplicated key");
        }
        fields.push((key, &line[i + 2..]));
    }
    match fields.first() {
        Some((b"Event", _)) => {}
        Some((b"Response", _)) => return Verdict::NotAnEvent,
        _ => return Verdict::Tampering("a message that starts with neither Event nor Response"),
    }
    let kind = String::from_utf8_lossy(fields[0].1).into_owned();
    if !EVENT_TYPES.contains(&kind.as_str()) {
        return Verdict::Tampering("an unknown event type");
    }
    if fields.get(1) != Some(&(&b"Privilege"[..], &b"security,all"[..])) {
        return Verdict::Tampering("a Privilege other than security,all");
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| *v)
    };
    if REQUIRED.iter().any(|key| get(key).is_none()) {
        return Verdict::Tampering("a required field is missing");
    }
    let Some(remote_ip) = parse_address(get("RemoteAddress").unwrap_or_default()) else {
        return Verdict::Tampering("an unparseable RemoteAddress");
    };
    let text = |key| String::from_utf8_lossy(get(key).unwrap_or_default()).into_owned();
    Verdict::Event(Event {
        kind,
        severity: text("Severity"),
        service: text("Service"),
        account_id: get("AccountID").unwrap_or_default().to_vec(),
        remote_ip,
    })
}

/// What an event counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// A wrong password for an account that exists: `auth_bruteforce`.
    AuthFailure,
    /// An account that does not exist: `account_scan`.
    UnknownAccount,
    /// FailedACL: `acl_violation`.
    AclViolation,
    /// Another error-severity event (its index in [`EVENT_TYPES`]): a reason named for it.
    OtherError(usize),
}

impl Category {
    /// The alert's reason code.
    pub fn reason(self) -> String {
        match self {
            Category::AuthFailure => "auth_bruteforce".into(),
            Category::UnknownAccount => "account_scan".into(),
            Category::AclViolation => "acl_violation".into(),
            Category::OtherError(i) => snake_case(EVENT_TYPES[i]),
        }
    }
}

/// `RequestBadFormat` → `request_bad_format`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Which count an event adds to, if any (design.md §3b: what chan_pjsip raises).
/// `SuccessfulAuth` counts toward nothing and clears nothing: guessers succeed, then
/// abuse. A `ChallengeSent` to a known account is every client's normal first step.
pub fn categorise(event: &Event) -> Option<Category> {
    let unknown = event.account_id == b"<unknown>";
    match event.kind.as_str() {
        "SuccessfulAuth" => None,
        "InvalidAccountID" => Some(Category::UnknownAccount),
        "ChallengeSent" | "ChallengeResponseFailed" if unknown => Some(Category::UnknownAccount),
        "ChallengeResponseFailed" | "InvalidPassword" => Some(Category::AuthFailure),
        "FailedACL" => Some(Category::AclViolation),
        kind if event.severity == "Error" => EVENT_TYPES
            .iter()
            .position(|t| *t == kind)
            .map(Category::OtherError),
        _ => None,
    }
}

/// Per-address sliding windows, one per category, under a hard cap of addresses.
pub struct Watch {
    ips: lru::LruCache<(IpAddr, Category), Window>,
    window: std::time::Duration,
    threshold: usize,
}

#[derive(Debug, Default)]
struct Window {
    times: std::collections::VecDeque<std::time::Instant>,
    /// Alerted and not yet back under the threshold: count on, write no more lines.
    alerted: bool,
}

impl Watch {
    /// More than `threshold` events of one category from one address within `window`
    /// alert; at most `max_tracked` (address, category) pairs are remembered.
    pub fn new(
        threshold: usize,
        window: std::time::Duration,
        max_tracked: std::num::NonZeroUsize,
    ) -> Watch {
        Watch {
            ips: lru::LruCache::new(max_tracked),
            window,
            threshold,
        }
    }

    /// Counts `event`; returns the category if this event crossed its threshold (one
    /// alert per crossing, however many events follow while the count stays high).
    pub fn record(&mut self, event: &Event, now: std::time::Instant) -> Option<Category> {
        let category = categorise(event)?;
        let w = self
            .ips
            .get_or_insert_mut((event.remote_ip, category), Window::default);
        if let Some(cutoff) = now.checked_sub(self.window) {
            while w.times.front().is_some_and(|&t| t < cutoff) {
                w.times.pop_front();
            }
        }
        w.times.push_back(now);
        if w.times.len() > self.threshold + 1 {
            w.times.pop_front();
        }
        let over = w.times.len() > self.threshold;
        let crossed = over && !w.alerted;
        w.alerted = over;
        crossed.then_some(category)
    }

    /// (address, category) pairs remembered.
    pub fn len(&self) -> usize {
        self.ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }
}

/// `IPV4/UDP/203.0.113.5/5060` or `IPV6/UDP/2001:db8::5/5060` (no brackets): split at
/// the first two and the last `/` (design.md §3b).
pub fn parse_address(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    let (family, rest) = text.split_once('/')?;
    let (transport, rest) = rest.split_once('/')?;
    let (addr, port) = rest.rsplit_once('/')?;
    if transport.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    let ip: IpAddr = addr.parse().ok()?;
    match (family, ip) {
        ("IPV4", IpAddr::V4(_)) | ("IPV6", IpAddr::V6(_)) => Some(ip.to_canonical()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Asterisk wrote in a capture: the bytes between our `<<SENT>>` markers removed.
    fn capture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/captures/ami")
            .join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while let Some(start) = find(rest, b"<<SENT>>") {
            out.extend_from_slice(&rest[..start]);
            let end = find(rest, b"<</SENT>>").expect("closed marker");
            rest = &rest[end + b"<</SENT>>".len()..];
        }
        out.extend_from_slice(rest);
        out
    }

    /// Every message of a capture after the banner, classified, fed in small pieces.
    fn classify_capture(name: &str) -> Vec<Verdict> {
        let bytes = capture(name);
        let banner_end = find(&bytes, b"\r\n").unwrap() + 2;
        assert_eq!(&bytes[..banner_end], b"Asterisk Call Manager/9.0.0\r\n");
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for chunk in bytes[banner_end..].chunks(97) {
            framer.extend(chunk);
            while let Some(m) = framer.next_message() {
                out.push(classify(&m));
            }
        }
        out
    }

    fn events(verdicts: &[Verdict]) -> Vec<(String, String)> {
        verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Event(e) => Some((e.kind.clone(), e.remote_ip.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_wrong_password_gives_the_pjsip_sequence() {
        let v = classify_capture("ami-wrongpw.bin");
        assert_eq!(v[0], Verdict::NotAnEvent, "the login reply");
        let e = events(&v);
        assert!(
            e.contains(&("ChallengeResponseFailed".into(), "127.0.0.1".into())),
            "{e:?}"
        );
        assert!(
            v.iter().all(|v| !matches!(v, Verdict::Tampering(_))),
            "{v:?}"
        );
    }

    #[test]
    fn a_forged_remote_address_is_tampering_never_an_event_naming_it() {
        let v = classify_capture("ami-spoof.bin");
        assert!(v.contains(&Verdict::Tampering("a duplicated key")), "{v:?}");
        assert!(events(&v).iter().all(|(_, ip)| ip != "9.9.9.9"), "{v:?}");
    }

    #[test]
    fn an_event_split_in_two_is_tampering_twice() {
        let v = classify_capture("ami-crlf.bin");
        let t: Vec<&Verdict> = v
            .iter()
            .filter(|v| matches!(v, Verdict::Tampering(_)))
            .collect();
        // The first half lacks the fields after AccountID; the second starts with the
        // injected `Event: Injected…`.
        assert_eq!(
            t,
            [
                &Verdict::Tampering("a required field is missing"),
                &Verdict::Tampering("an unknown event type")
            ]
        );
        assert!(
            !events(&v).is_empty(),
            "the honest events around it still count"
        );
    }

    #[test]
    fn huge_session_ids_are_read_not_skipped() {
        // 20k, 60k and 65.2k Call-IDs: within MAX_MESSAGE, so a guesser cannot hide
        // failed logins behind long Call-IDs.
        for name in ["ami-bigcid.bin", "ami-maxcid.bin"] {
            let v = classify_capture(name);
            assert!(!events(&v).is_empty(), "{name}");
            assert!(
                !v.contains(&Verdict::Tampering("an oversized message")),
                "{name}"
            );
        }
    }

    #[test]
    fn oversized_messages_are_skipped_and_the_stream_goes_on() {
        let mut framer = Framer::default();
        framer.extend(b"Event: X\r\nAccountID: ");
        for _ in 0..5 {
            framer.extend(&[b'a'; 100_000]);
            assert_eq!(framer.next_message(), None);
        }
        framer.extend(b"\r\n\r\nResponse: Success\r\n\r\n");
        assert_eq!(framer.next_message(), Some(Message::Oversized));
        assert_eq!(
            classify(&framer.next_message().unwrap()),
            Verdict::NotAnEvent
        );
    }

    fn event(kind: &str, severity: &str, account: &str, ip: &str) -> Event {
        Event {
            kind: kind.into(),
            severity: severity.into(),
            service: "PJSIP".into(),
            account_id: account.as_bytes().to_vec(),
            remote_ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn events_count_toward_the_category_design_3b_describes() {
        let c = |k, s, a| categorise(&event(k, s, a, "192.0.2.1")).map(Category::reason);
        assert_eq!(
            c("ChallengeResponseFailed", "Error", "1001").as_deref(),
            Some("auth_bruteforce")
        );
        assert_eq!(
            c("InvalidPassword", "Error", "admin").as_deref(),
            Some("auth_bruteforce")
        );
        assert_eq!(
            c("InvalidAccountID", "Error", "9999").as_deref(),
            Some("account_scan")
        );
        assert_eq!(
            c("ChallengeSent", "Informational", "<unknown>").as_deref(),
            Some("account_scan")
        );
        assert_eq!(
            c("ChallengeResponseFailed", "Error", "<unknown>").as_deref(),
            Some("account_scan")
        );
        assert_eq!(
            c("FailedACL", "Error", "1002").as_deref(),
            Some("acl_violation")
        );
        assert_eq!(
            c("RequestBadFormat", "Error", "x").as_deref(),
            Some("request_bad_format")
        );
        assert_eq!(c("ChallengeSent", "Informational", "1001"), None);
        assert_eq!(c("SuccessfulAuth", "Informational", "1001"), None);
    }

    #[test]
    fn a_burst_alerts_once_per_crossing_and_success_clears_nothing() {
        let mut w = Watch::new(
            5,
            std::time::Duration::from_secs(60),
            std::num::NonZeroUsize::new(1000).unwrap(),
        );
        let t0 = std::time::Instant::now();
        let fail = event("ChallengeResponseFailed", "Error", "1001", "203.0.113.5");
        let ok = event("SuccessfulAuth", "Informational", "1001", "203.0.113.5");
        let mut alerts = Vec::new();
        for i in 0..20u64 {
            let at = t0 + std::time::Duration::from_millis(i * 100);
            assert_eq!(w.record(&ok, at), None);
            alerts.extend(w.record(&fail, at).map(|c| (i, c.reason())));
        }
        assert_eq!(
            alerts,
            [(5, "auth_bruteforce".to_string())],
            "the sixth failure, once"
        );
        // After the window slides below the threshold, a new burst alerts again.
        let later = t0 + std::time::Duration::from_secs(300);
        let again: Vec<_> = (0..6)
            .filter_map(|i| w.record(&fail, later + std::time::Duration::from_millis(i)))
            .collect();
        assert_eq!(again, [Category::AuthFailure]);
        // Another address is counted apart.
        assert_eq!(
            w.record(
                &event("InvalidAccountID", "Error", "x", "198.51.100.1"),
                later
            ),
            None
        );
    }

    #[test]
    fn the_watch_is_capped() {
        let mut w = Watch::new(
            5,
            std::time::Duration::from_secs(60),
            std::num::NonZeroUsize::new(100).unwrap(),
        );
        let now = std::time::Instant::now();
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            w.record(&event("InvalidAccountID", "Error", "x", &ip), now);
        }
        assert_eq!(w.len(), 100);
    }

    #[test]
    fn addresses_split_at_the_first_two_and_the_last_slash() {
        let ip = |s: &str| parse_address(s.as_bytes()).map(|ip| ip.to_string());
        assert_eq!(
            ip("IPV4/UDP/203.0.113.5/5060").as_deref(),
            Some("203.0.113.5")
        );
        assert_eq!(
            ip("IPV6/UDP/2001:db8::5/5060").as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(
            ip("IPV6/TCP/::ffff:192.0.2.1/5061").as_deref(),
            Some("192.0.2.1")
        );
        for bad in [
            "IPV4/UDP/9.9.9.9",
            "IPV4/UDP/host/5060",
            "IPV6/UDP/203.0.113.5/5060",
            "IPV4//1.2.3.4/5",
            "IPV4/UDP/1.2.3.4/x",
            "",
        ] {
            assert_eq!(ip(bad), None, "{bad}");
        }
    }
}
