//! The AMI wire format for security events, read so that a caller cannot steer it
//! (design.md §3b).
//!
//! Asterisk writes event fields unescaped: a From user of
//! `a%0D%0ARemoteAddress%3A%20IPV4/UDP/9.9.9.9/5` gives an event with two
//! `RemoteAddress` lines, the forged one first, and `%0D%0A%0D%0AEvent%3A…` splits one
//! event into two. So a message is an [`Event`] only if it has exactly Asterisk's
//! shape: `Event:` first, `Privilege: security,all` second, a known type, every key
//! once, every required field, and a parseable address. Anything else is
//! [`Verdict::Tampering`], which names no address to blame.
//!
//! The framer hands out messages as slices of its buffer: at a million events a
//! second, a copy or an allocation per line is what the watcher would spend its time on.

use std::net::IpAddr;

use memchr::memmem;

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

/// More lines than any security event has (ChallengeResponseFailed has 13).
const MAX_FIELDS: usize = 32;

/// One framed AMI message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// The message's bytes up to (not including) the empty line that ends it.
    Body(&'a [u8]),
    /// A message over [`MAX_MESSAGE`]; its bytes were dropped up to its end.
    Oversized,
}

/// Splits the byte stream into messages: `\r\n`-terminated lines, a message ending at
/// an empty line. A lone LF or CR inside a line is part of the line.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the terminator.
    scanned: usize,
    /// Inside an oversized message: drop until its end.
    discarding: bool,
}

impl Framer {
    /// Appends `bytes` and hands every message they complete to `each`, in order.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(Message<'_>)) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            // The terminator may straddle the previous feed's end: look 3 bytes back.
            let from = start.max(self.scanned.saturating_sub(3));
            let Some(end) = memmem::find(&self.buf[from..], b"\r\n\r\n").map(|i| i + from) else {
                break;
            };
            let body = &self.buf[start..end];
            if std::mem::take(&mut self.discarding) || body.len() > MAX_MESSAGE {
                each(Message::Oversized);
            } else {
                each(Message::Body(body));
            }
            start = end + 4;
        }
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.buf.len() > MAX_MESSAGE {
            // Keep the last 3 bytes: the terminator may straddle the cut.
            self.buf.drain(..self.buf.len() - 3);
            self.scanned = 0;
            self.discarding = true;
        }
    }

    /// Bytes held for a message not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// The `Key: Value` pairs of a message, in order; `None` if a line has no `": "` or
/// there are more than [`MAX_FIELDS`].
pub fn fields(body: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut out = Vec::with_capacity(16);
    for line in memmem::find_iter(body, b"\r\n")
        .chain(std::iter::once(body.len()))
        .scan(0, |start, end| {
            let line = &body[*start..end];
            *start = end + 2;
            Some(line)
        })
    {
        let i = memmem::find(line, b": ")?;
        if out.len() == MAX_FIELDS {
            return None;
        }
        out.push((&line[..i], &line[i + 2..]));
    }
    Some(out)
}

/// A security event that has Asterisk's exact shape: what the rules need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// One of [`EVENT_TYPES`].
    pub kind: &'static str,
    /// `Severity: Error` (the others are `Informational`).
    pub is_error: bool,
    pub service: String,
    pub account_id: Vec<u8>,
    pub remote_ip: IpAddr,
}

/// What a message is to the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Event(Event),
    /// Not an event at all: a reply to our action (`Response:`), say.
    NotAnEvent,
    /// Shaped like an event but not as Asterisk writes one: counted, never acted on.
    Tampering(&'static str),
}

/// Validates one framed message.
pub fn classify(message: Message<'_>) -> Verdict {
    let body = match message {
        Message::Body(body) => body,
        Message::Oversized => return Verdict::Tampering("an oversized message"),
    };
    let Some(fields) = fields(body) else {
        return Verdict::Tampering("a line that is not Key: Value");
    };
    for (i, (key, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(k, _)| k == key) {
            return Verdict::Tampering("a duplicated key");
        }
    }
    let kind = match fields.first() {
        Some((b"Event", kind)) => *kind,
        Some((b"Response", _)) => return Verdict::NotAnEvent,
        _ => return Verdict::Tampering("a message that starts with neither Event nor Response"),
    };
    let Some(kind) = EVENT_TYPES.iter().find(|t| t.as_bytes() == kind) else {
        return Verdict::Tampering("an unknown event type");
    };
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
    Verdict::Event(Event {
        kind,
        is_error: get("Severity") == Some(b"Error"),
        service: String::from_utf8_lossy(get("Service").unwrap_or_default()).into_owned(),
        account_id: get("AccountID").unwrap_or_default().to_vec(),
        remote_ip,
    })
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
        while let Some(start) = memmem::find(rest, b"<<SENT>>") {
            out.extend_from_slice(&rest[..start]);
            let end = memmem::find(rest, b"<</SENT>>").expect("closed marker");
            rest = &rest[end + b"<</SENT>>".len()..];
        }
        out.extend_from_slice(rest);
        out
    }

    /// Every message of a capture after the banner, classified, fed in small pieces.
    fn classify_capture(name: &str) -> Vec<Verdict> {
        let bytes = capture(name);
        let banner_end = memmem::find(&bytes, b"\r\n").unwrap() + 2;
        assert_eq!(&bytes[..banner_end], b"Asterisk Call Manager/9.0.0\r\n");
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for chunk in bytes[banner_end..].chunks(97) {
            framer.feed(chunk, |m| out.push(classify(m)));
        }
        out
    }

    fn events(verdicts: &[Verdict]) -> Vec<(String, String)> {
        verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Event(e) => Some((e.kind.to_string(), e.remote_ip.to_string())),
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
        let mut seen = Vec::new();
        framer.feed(b"Event: X\r\nAccountID: ", |m| seen.push(classify(m)));
        for _ in 0..5 {
            framer.feed(&[b'a'; 100_000], |m| seen.push(classify(m)));
            assert!(seen.is_empty());
            assert!(framer.buffered() <= MAX_MESSAGE, "the buffer stays bounded");
        }
        framer.feed(b"\r\n\r\nResponse: Success\r\n\r\n", |m| {
            seen.push(classify(m))
        });
        assert_eq!(
            seen,
            [
                Verdict::Tampering("an oversized message"),
                Verdict::NotAnEvent
            ]
        );
    }

    #[test]
    fn a_terminator_split_across_reads_is_found() {
        let stream = b"Response: Success\r\nActionID: 1\r\n\r\nResponse: Success\r\n\r\n";
        for cut in 0..stream.len() {
            let mut framer = Framer::default();
            let mut bodies = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                framer.feed(part, |m| match m {
                    Message::Body(b) => bodies.push(b.to_vec()),
                    Message::Oversized => panic!("oversized"),
                });
            }
            assert_eq!(
                bodies,
                [
                    &b"Response: Success\r\nActionID: 1"[..],
                    b"Response: Success"
                ],
                "cut at {cut}"
            );
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn lone_cr_or_lf_stay_inside_a_line() {
        let f = fields(b"Event: A\nB\r\nX: y\rz").unwrap();
        assert_eq!(f, [(&b"Event"[..], &b"A\nB"[..]), (b"X", b"y\rz")]);
        assert_eq!(fields(b"Event: A\r\nno separator"), None);
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
