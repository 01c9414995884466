//! A stand-in for Asterisk 20.20.1's manager interface, speaking its wire format as
//! design.md §3b records it and `tests/captures/ami/` shows it: the banner
//! `Asterisk Call Manager/9.0.0\r\n`, a `Response:` to `Action: Login` echoing its
//! ActionID, then events framed with `\r\n` and an empty line, `Ping: Pong` to
//! `Action: Ping`. The events it sends are the captures' own bytes, hostile ones
//! included.
//!
//! Logins are checked as manager.c's `authenticate` does: `Action: Challenge` with
//! `AuthType: MD5` is answered `Response: Success`, the ActionID, `Challenge: <a
//! random number>` (`action_challenge`); a `Login` with `AuthType: MD5` must carry
//! `Key: md5(challenge + secret)` in lower-case hex, one without it `Secret:` in
//! clear. With [`AmiPeer::start_tls`] it speaks TLS first, as `tlsenable = yes` does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one connection does.
pub struct Script {
    pub accept_login: bool,
    /// Written after a successful login: each chunk after waiting its pause (from the
    /// previous write, so that a descheduled peer spreads chunks out, never bunches them).
    pub events: Vec<(Duration, Vec<u8>)>,
    pub then: Then,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Close the connection, as Asterisk does when it restarts.
    Close,
    /// Stay connected and answer Pings until the client leaves or the peer is dropped.
    Hold,
    /// Stay connected and answer nothing: a hung Asterisk.
    HoldSilent,
}

impl Script {
    pub fn accept(events: Vec<u8>, then: Then) -> Script {
        Script::paced(vec![(Duration::ZERO, events)], then)
    }

    /// Events as a client's tries raise them, one chunk after another.
    pub fn paced(events: Vec<(Duration, Vec<u8>)>, then: Then) -> Script {
        Script {
            accept_login: true,
            events,
            then,
        }
    }

    pub fn refuse() -> Script {
        Script {
            accept_login: false,
            events: Vec::new(),
            then: Then::Close,
        }
    }
}

/// The secret of the user every test configures (`secret = "s3cmon-test"`).
pub const SECRET: &str = "s3cmon-test";

/// Serves its scripts one connection after another, recording what each client wrote.
pub struct AmiPeer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    /// CLOCK_MONOTONIC (ns) at which each event chunk was written, in order.
    written: Arc<Mutex<Vec<u64>>>,
}

impl AmiPeer {
    pub fn start(scripts: Vec<Script>) -> AmiPeer {
        AmiPeer::start_with(scripts, None)
    }

    /// The same over TLS with this certificate chain and key (PEM files).
    pub fn start_tls(
        scripts: Vec<Script>,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> AmiPeer {
        use rustls_pki_types::pem::PemObject as _;
        let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        AmiPeer::start_with(scripts, Some(Arc::new(config)))
    }

    fn start_with(scripts: Vec<Script>, tls: Option<Arc<rustls::ServerConfig>>) -> AmiPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let (r, s, w) = (received.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            for script in scripts {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                r.lock().unwrap().push(Vec::new());
                stream
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                match &tls {
                    None => serve(stream, &script, &r, &s, &w),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &script, &r, &s, &w);
                    }
                }
            }
        });
        AmiPeer {
            addr,
            received,
            stop,
            written,
        }
    }

    /// When each event chunk was about to be written (CLOCK_MONOTONIC ns, as the kernel and
    /// Python's `time.monotonic_ns()` count).
    pub fn written_at(&self) -> Vec<u64> {
        self.written.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// What the client wrote on connection `i`.
    pub fn received(&self, i: usize) -> String {
        let r = self.received.lock().unwrap();
        String::from_utf8_lossy(r.get(i).map(Vec::as_slice).unwrap_or_default()).into_owned()
    }
}

impl Drop for AmiPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    mut stream: impl Read + Write,
    script: &Script,
    log: &Mutex<Vec<Vec<u8>>>,
    stop: &AtomicBool,
    written: &Mutex<Vec<u64>>,
) {
    let _ = stream.write_all(b"Asterisk Call Manager/9.0.0\r\n");
    let _ = stream.flush();
    let mut pending = Vec::new();
    let mut challenge = String::new();
    let login = loop {
        let Some(action) = next_action(&mut stream, &mut pending, log, stop) else {
            return;
        };
        let id = field(&action, "ActionID").unwrap_or_default();
        match field(&action, "Action").as_deref() {
            Some("Challenge") if field(&action, "AuthType").as_deref() == Some("MD5") => {
                // manager.c: snprintf("%ld", ast_random()), kept for the session.
                if challenge.is_empty() {
                    challenge = (super::monotonic_ns() % 2_147_483_647).to_string();
                }
                let _ = write!(
                    stream,
                    "Response: Success\r\nActionID: {id}\r\nChallenge: {challenge}\r\n\r\n"
                );
            }
            Some("Login") => break action,
            _ => {
                let _ = write!(
                    stream,
                    "Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n"
                );
            }
        }
    };
    let id = field(&login, "ActionID").unwrap_or_default();
    let proved = match field(&login, "AuthType").as_deref() {
        Some("MD5") => {
            !challenge.is_empty()
                && field(&login, "Key") == Some(md5_hex(&format!("{challenge}{SECRET}")))
        }
        _ => field(&login, "Secret").as_deref() == Some(SECRET),
    };
    if !script.accept_login || !proved {
        let _ = write!(
            stream,
            "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n"
        );
        return;
    }
    let _ = write!(
        stream,
        "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
    );
    for (pause, chunk) in &script.events {
        std::thread::sleep(*pause);
        // Taken before the write: the reader may act on it before write_all returns.
        written.lock().unwrap().push(super::monotonic_ns());
        let _ = stream.write_all(chunk);
    }
    if script.then == Then::Close {
        return;
    }
    while let Some(action) = next_action(&mut stream, &mut pending, log, stop) {
        if script.then == Then::Hold && field(&action, "Action").as_deref() == Some("Ping") {
            let id = field(&action, "ActionID").unwrap_or_default();
            let _ = write!(
                stream,
                "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1795633727.503868\r\n\r\n"
            );
        }
    }
}

/// The next action the client sent (up to its empty line), or `None` once it left
/// or the peer was dropped.
fn next_action(
    stream: &mut impl Read,
    pending: &mut Vec<u8>,
    log: &Mutex<Vec<Vec<u8>>>,
    stop: &AtomicBool,
) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let action: Vec<u8> = pending.drain(..i + 4).collect();
            return Some(String::from_utf8_lossy(&action).into_owned());
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(last) = log.lock().unwrap().last_mut() {
                    last.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
}

/// MD5 in lower-case hex, as manager.c prints it (`%02hhx` per byte).
fn md5_hex(text: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn field(message: &str, key: &str) -> Option<String> {
    message
        .split("\r\n")
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
        .map(str::to_string)
}

/// What Asterisk wrote in a capture: the bytes between our `<<SENT>>` markers removed.
pub fn capture(name: &str) -> Vec<u8> {
    let path = super::repo().join("tests/captures/ami").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = bytes.as_slice();
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, b"<<SENT>>") {
        out.extend_from_slice(&rest[..start]);
        let end = find(rest, b"<</SENT>>").expect("closed marker");
        rest = &rest[end + b"<</SENT>>".len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A capture's events: what followed the banner and the login answer.
pub fn capture_events(name: &str) -> Vec<u8> {
    let bytes = capture(name);
    let banner = find(&bytes, b"\r\n").unwrap() + 2;
    let login_answer = banner + find(&bytes[banner..], b"\r\n\r\n").unwrap() + 4;
    bytes[login_answer..].to_vec()
}

/// The events of a message stream, each with its empty line.
pub fn split_events(events: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = events;
    while let Some(i) = find(rest, b"\r\n\r\n") {
        out.push(rest[..i + 4].to_vec());
        rest = &rest[i + 4..];
    }
    out
}

/// `events` with every `AccountID: from` line naming `to` instead.
pub fn with_account(events: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (
        format!("AccountID: {from}\r\n"),
        format!("AccountID: {to}\r\n"),
    );
    let mut out = Vec::with_capacity(events.len());
    let mut rest = events;
    while let Some(i) = find(rest, from.as_bytes()) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to.as_bytes());
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The capture as if its SIP requests had come from `ip`: the honest
/// `RemoteAddress: IPV4/UDP/127.0.0.1/…` lines rewritten, forged ones left alone.
pub fn from_address(events: &[u8], ip: &str) -> Vec<u8> {
    let from = b"RemoteAddress: IPV4/UDP/127.0.0.1/";
    let to = format!("RemoteAddress: IPV4/UDP/{ip}/");
    let mut out = Vec::with_capacity(events.len());
    let mut rest = events;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to.as_bytes());
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
