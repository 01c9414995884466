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

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
#[derive(Debug)]
pub struct Framer {
    /// Built once: a searcher made per message would cost more than the search.
    terminator: memmem::Finder<'static>,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the terminator.
    scanned: usize,
    /// Inside an oversized message: drop until its end.
    discarding: bool,
}

impl Default for Framer {
    fn default() -> Framer {
        Framer {
            terminator: memmem::Finder::new(b"\r\n\r\n"),
            buf: Vec::new(),
            scanned: 0,
            discarding: false,
        }
    }
}

impl Framer {
    /// Appends `bytes` and hands every message they complete to `each`, in order.
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(Message<'_>)) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            // The terminator may straddle the previous feed's end: look 3 bytes back.
            let from = start.max(self.scanned.saturating_sub(3));
            let Some(end) = self.terminator.find(&self.buf[from..]).map(|i| i + from) else {
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

/// The `Key: Value` pairs of a message, in order, held on the stack.
pub struct Fields<'a> {
    pairs: [(&'a [u8], &'a [u8]); MAX_FIELDS],
    len: usize,
}

impl<'a> Fields<'a> {
    /// `None` if a line has no `": "` or there are more than [`MAX_FIELDS`] lines.
    ///
    /// One vectorised pass finds every `:` and CR of the message; walking those
    /// positions splits each line at its first `": "` and ends it at `\r\n` (a lone
    /// CR, or a colon inside a value, is skipped over). At a million events a second
    /// this is most of the watcher's work.
    pub fn parse(body: &'a [u8]) -> Option<Fields<'a>> {
        let mut fields = Fields {
            pairs: [(&[][..], &[][..]); MAX_FIELDS],
            len: 0,
        };
        let next_is = |at: usize, byte: u8| body.get(at + 1) == Some(&byte);
        let mut line_start = 0;
        let mut key_end = None;
        for at in memchr::memchr2_iter(b':', b'\r', body) {
            match (body[at], key_end) {
                (b':', None) if next_is(at, b' ') => key_end = Some(at),
                (b'\r', Some(k)) if next_is(at, b'\n') => {
                    fields.push(&body[line_start..k], &body[k + 2..at])?;
                    line_start = at + 2;
                    key_end = None;
                }
                (b'\r', None) if next_is(at, b'\n') => return None,
                _ => {}
            }
        }
        let k = key_end?;
        fields.push(&body[line_start..k], &body[k + 2..])?;
        Some(fields)
    }

    fn push(&mut self, key: &'a [u8], value: &'a [u8]) -> Option<()> {
        *self.pairs.get_mut(self.len)? = (key, value);
        self.len += 1;
        Some(())
    }

    pub fn as_slice(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.pairs[..self.len]
    }

    /// The first value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.as_slice()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }
}

/// The slot of a required field in [`REQUIRED`].
fn required_slot(key: &[u8]) -> Option<usize> {
    Some(match key {
        b"EventTV" => 0,
        b"Severity" => 1,
        b"Service" => 2,
        b"EventVersion" => 3,
        b"AccountID" => 4,
        b"SessionID" => 5,
        b"LocalAddress" => 6,
        b"RemoteAddress" => 7,
        _ => return None,
    })
}

/// A security event that has Asterisk's exact shape: what the rules need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// One of [`EVENT_TYPES`].
    pub kind: &'static str,
    /// `Severity: Error` (the others are `Informational`).
    pub is_error: bool,
    /// `PJSIP`, `SIP`, `AMI`, `IAX2`… (borrowed when known: one allocation less per event).
    pub service: Cow<'static, str>,
    pub account_id: AccountId,
    pub remote_ip: IpAddr,
}

/// An `AccountID`, held inline: one allocation per event (and a free on the
/// evaluator's thread) cost a tenth of the watcher's throughput. chan_pjsip cuts
/// unknown users at 36 bytes; longer values (AMI user names, say) are cut here, and
/// how much was cut is kept for the alert line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountId {
    bytes: [u8; AccountId::MAX],
    len: u8,
    cut: usize,
}

impl AccountId {
    pub const MAX: usize = 64;

    pub fn new(value: &[u8]) -> AccountId {
        let len = value.len().min(AccountId::MAX);
        let mut bytes = [0; AccountId::MAX];
        bytes[..len].copy_from_slice(&value[..len]);
        AccountId {
            bytes,
            len: len as u8,
            cut: value.len() - len,
        }
    }

    /// The first [`AccountId::MAX`] bytes.
    pub fn shown(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Bytes cut off the end.
    pub fn cut(&self) -> usize {
        self.cut
    }
}

/// The end of an outbound call, as `[extsec-outbound-end-ami]` raises it
/// (`UserEvent(ExtsecCallEnd,Account: …)` in the call's hangup handler): the channel's
/// unique id and the account its group names.
///
/// Its fields are not the caller's, but the caller's own caller id travels unescaped
/// in the same event (design §3b): a CR LF in it can forge a whole event. So nothing
/// here is believed alone: the daemon ends only a live call it judged, of that account,
/// and counts its minutes by its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub call_id: String,
    pub account: String,
}

/// The keys of an `ExtsecCallEnd` event, in the order Asterisk 20.20.1 writes them
/// (captured from a real PBX: `tests/captures/ami/ami-callend.bin`).
const CALL_END_KEYS: [&[u8]; 18] = [
    b"Event",
    b"Privilege",
    b"Channel",
    b"ChannelState",
    b"ChannelStateDesc",
    b"CallerIDNum",
    b"CallerIDName",
    b"ConnectedLineNum",
    b"ConnectedLineName",
    b"Language",
    b"AccountCode",
    b"Context",
    b"Exten",
    b"Priority",
    b"Uniqueid",
    b"Linkedid",
    b"UserEvent",
    b"Account",
];

/// A `UserEvent`: ours (`ExtsecCallEnd`, from our hangup handler's context, in
/// Asterisk's exact shape) or another dialplan's, which is none of our business.
fn user_event(pairs: &[(&[u8], &[u8])]) -> Verdict {
    let value = |key: &[u8]| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    if value(b"UserEvent") != Some(b"ExtsecCallEnd") {
        return Verdict::NotAnEvent;
    }
    let shaped = pairs.len() == CALL_END_KEYS.len()
        && pairs
            .iter()
            .zip(CALL_END_KEYS)
            .all(|((k, _), want)| *k == want)
        && pairs[1].1 == b"user,all"
        && pairs[11].1 == b"extsec-outbound-end-ami";
    if !shaped {
        return Verdict::Tampering("an ExtsecCallEnd event not in Asterisk's shape");
    }
    let plain = |v: &[u8]| {
        (!v.is_empty() && v.len() <= 80 && v.iter().all(|b| (0x21..=0x7e).contains(b)))
            .then(|| String::from_utf8_lossy(v).into_owned())
    };
    match (plain(pairs[14].1), plain(pairs[17].1)) {
        (Some(call_id), Some(account)) => Verdict::CallEnd(CallEnd { call_id, account }),
        _ => Verdict::Tampering("an ExtsecCallEnd event without a call id or an account"),
    }
}

/// What a message is to the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Event(Event),
    /// An outbound call's end (`call_end = "ami"`).
    CallEnd(CallEnd),
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
    let Some(fields) = Fields::parse(body) else {
        return Verdict::Tampering("a line that is not Key: Value");
    };
    let pairs = fields.as_slice();
    let kind = match pairs.first() {
        Some((b"Event", b"UserEvent")) => return user_event(pairs),
        Some((b"Event", kind)) => *kind,
        Some((b"Response", _)) => return Verdict::NotAnEvent,
        _ => return Verdict::Tampering("a message that starts with neither Event nor Response"),
    };
    let Some(kind) = EVENT_TYPES.iter().find(|t| t.as_bytes() == kind) else {
        return Verdict::Tampering("an unknown event type");
    };
    if pairs.get(1) != Some(&(&b"Privilege"[..], &b"security,all"[..])) {
        return Verdict::Tampering("a Privilege other than security,all");
    }
    // One pass: each required field into its slot, a second sighting of any key is
    // tampering (the forged `RemoteAddress` comes first, the real one after it).
    let mut required: [Option<&[u8]>; REQUIRED.len()] = [None; REQUIRED.len()];
    let mut others: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
    let mut n_others = 0;
    for &(key, value) in &pairs[2..] {
        let duplicate = match required_slot(key) {
            Some(slot) => required[slot].replace(value).is_some(),
            None => {
                let seen =
                    key == b"Event" || key == b"Privilege" || others[..n_others].contains(&key);
                others[n_others] = key;
                n_others += 1;
                seen
            }
        };
        if duplicate {
            return Verdict::Tampering("a duplicated key");
        }
    }
    if required.contains(&None) {
        return Verdict::Tampering("a required field is missing");
    }
    let [_, severity, service, _, account, _, _, remote] = required.map(Option::unwrap_or_default);
    let Some(remote_ip) = parse_address(remote) else {
        return Verdict::Tampering("an unparseable RemoteAddress");
    };
    Verdict::Event(Event {
        kind,
        is_error: severity == b"Error",
        service: service_name(service),
        account_id: AccountId::new(account),
        remote_ip,
    })
}

fn service_name(value: &[u8]) -> Cow<'static, str> {
    const KNOWN: [&str; 5] = ["PJSIP", "SIP", "AMI", "IAX2", "TEST"];
    match KNOWN.iter().find(|k| k.as_bytes() == value) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(String::from_utf8_lossy(value).into_owned()),
    }
}

/// `IPV4/UDP/203.0.113.5/5060` or `IPV6/UDP/2001:db8::5/5060` (no brackets): split at
/// the first two and the last `/` (design.md §3b).
pub fn parse_address(text: &[u8]) -> Option<IpAddr> {
    let (family, rest) = text.split_at_checked(5)?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (transport, rest) = (&rest[..slash], &rest[slash + 1..]);
    let slash = rest.iter().rposition(|&b| b == b'/')?;
    let (addr, port) = (&rest[..slash], &rest[slash + 1..]);
    if transport.is_empty() || std::str::from_utf8(port).ok()?.parse::<u16>().is_err() {
        return None;
    }
    let addr = std::str::from_utf8(addr).ok()?;
    match family {
        b"IPV4/" => addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        b"IPV6/" => addr
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical()),
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

    /// The end of an outbound call as Asterisk 20.20.1 wrote it (issue 26): the
    /// captured `UserEvent` is a `CallEnd` naming the channel and the account; the
    /// other dialplans' user events are no business of ours; a caller's CR LF in the
    /// snapshot's caller id (design §3b) adds a key, and is tampering.
    #[test]
    fn the_captured_call_end_and_its_forgeries() {
        let verdicts = classify_capture("ami-callend.bin");
        let ends: Vec<&CallEnd> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::CallEnd(end) => Some(end),
                _ => None,
            })
            .collect();
        assert_eq!(ends.len(), 1, "{verdicts:?}");
        assert_eq!(ends[0].account, "1001");
        assert!(ends[0].call_id.starts_with("1796618"), "{:?}", ends[0]);
        assert!(!verdicts.iter().any(|v| matches!(v, Verdict::Tampering(_))));

        let bytes = capture("ami-callend.bin");
        let start = memmem::find(&bytes, b"Event: UserEvent").unwrap();
        let event = String::from_utf8_lossy(&bytes[start..]).into_owned();
        let event = event.trim_end_matches("\r\n").to_string() + "\r\n\r\n";
        let verdict = |text: &str| {
            let mut out = Vec::new();
            Framer::default().feed(text.as_bytes(), |m| out.push(classify(m)));
            out
        };
        let injected = event.replace(
            "CallerIDName: <unknown>",
            "CallerIDName: x\r\nAccount: 2002",
        );
        assert!(matches!(verdict(&injected)[..], [Verdict::Tampering(_)]));
        let elsewhere = event.replace("Context: extsec-outbound-end-ami", "Context: from-phones");
        assert!(matches!(verdict(&elsewhere)[..], [Verdict::Tampering(_)]));
        let theirs = event.replace("UserEvent: ExtsecCallEnd", "UserEvent: FreePBXSomething");
        assert_eq!(verdict(&theirs), [Verdict::NotAnEvent]);
        let no_account = event.replace("Account: 1001", "Account: ");
        assert!(matches!(verdict(&no_account)[..], [Verdict::Tampering(_)]));
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
    fn long_account_ids_are_cut_with_their_length_kept() {
        let short = AccountId::new(b"1001");
        assert_eq!((short.shown(), short.cut()), (&b"1001"[..], 0));
        let long = AccountId::new(&[b'a'; 100]);
        assert_eq!((long.shown(), long.cut()), (&[b'a'; 64][..], 36));
    }

    #[test]
    fn every_required_field_has_its_own_slot() {
        for (i, key) in REQUIRED.iter().enumerate() {
            assert_eq!(required_slot(key.as_bytes()), Some(i), "{key}");
        }
        assert_eq!(required_slot(b"Challenge"), None);
    }

    #[test]
    fn lone_cr_or_lf_stay_inside_a_line() {
        let f = Fields::parse(b"Event: A\nB\r\nX: y\rz\r\nK:V: w").unwrap();
        assert_eq!(
            f.as_slice(),
            [
                (&b"Event"[..], &b"A\nB"[..]),
                (b"X", b"y\rz"),
                (b"K:V", b"w")
            ]
        );
        assert!(Fields::parse(b"Event: A\r\nno separator").is_none());
        let many = "K: v\r\n".repeat(MAX_FIELDS) + "K: v";
        assert!(Fields::parse(many.as_bytes()).is_none());
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
