//! Throughput benchmark for the AMI watcher (issue: AMI security-event watcher).
//!
//!     cargo bench --bench ami_flood
//!     EVENTS=2000000 cargo bench --bench ami_flood
//!     FLOOD=burst cargo bench --bench ami_flood     # one flood only
//!
//! Starts the release binary (`serve`, FastAGI off, metrics on) against an AMI peer on
//! loopback that speaks as Asterisk 20.20.1 does (design.md §3b: banner, login answer,
//! events framed with `\r\n`, `Privilege: security,all`), then writes events as fast as
//! the socket takes them, in 64 KiB writes, each with Asterisk's own patience: a write
//! that cannot complete within 100 ms (manager.conf `writetimeout`) is where Asterisk
//! would drop us, and is counted. Two floods:
//!
//! 1. `distinct`: EVENTS InvalidAccountID events, each from its own address (1,000,000
//!    addresses by default): memory must stay within `memory.max_tracked_ips`;
//! 2. `burst`: EVENTS ChallengeResponseFailed events from 1,000 addresses, so every
//!    address crosses its limit: the alert path (log writes) under load.
//!
//! Reported per flood: events/s (first byte written to the last event counted by the
//! daemon's `extsecurity_ami_events_total`), events lost (written minus counted),
//! stalled writes, reconnects, alert lines, (address, category) pairs tracked, and the
//! daemon's peak RSS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "extsecurity"])
        .current_dir(root)
        .status()
        .expect("cargo build");
    assert!(status.success());
    println!(
        "AMI flood, {events} events per run, daemon on loopback (2 cores shared with the generator)"
    );
    for (name, addresses, kind) in [
        ("distinct", events, "InvalidAccountID"),
        ("burst", 1_000, "ChallengeResponseFailed"),
    ] {
        if std::env::var("FLOOD").is_ok_and(|only| only != name) {
            continue;
        }
        let stream = build(events, addresses, kind);
        run(root, name, events, &stream);
    }
}

/// `count` events of `kind` in Asterisk's format, round-robin over `addresses`.
fn build(count: usize, addresses: usize, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * 420);
    for i in 0..count {
        let n = (i % addresses) as u32;
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n);
        let (severity, account) = match kind {
            "InvalidAccountID" => ("Error", "9999"),
            _ => ("Error", "1001"),
        };
        let _ = write!(
            out,
            "Event: {kind}\r\nPrivilege: security,all\r\nEventTV: 2026-11-25T19:07:55.276+0000\r\n\
             Severity: {severity}\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: {account}\r\n\
             SessionID: {i}-16587@{ip}\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\n\
             RemoteAddress: IPV4/UDP/{ip}/5060\r\n"
        );
        if kind == "ChallengeResponseFailed" {
            out.extend_from_slice(b"Challenge: 1795633675/f475000677de4036ed01d7c026c0d0d4\r\nResponse: 9ca77a65fcb48168e564e4ccc3aff2b0\r\nExpectedResponse: \r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn run(root: &str, name: &str, events: usize, stream: &[u8]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ami = listener.local_addr().unwrap();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alerts.log");
    let config = dir.path().join("extsecurity.toml");
    std::fs::write(
        &config,
        format!(
            "log_file = {log:?}\ntarpit_seconds = 0\n[daemon]\nfastagi = false\n\
             metrics_listen = '127.0.0.1:{metrics_port}'\n\
             [ami]\naddress = '{ami}'\nusername = 'bench'\nsecret = 'bench'\n"
        ),
    )
    .unwrap();
    let daemon = Daemon(
        Command::new(format!("{root}/target/release/extsecurity"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("EXTSECURITY_LOG", "warn")
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the daemon"),
    );
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"Asterisk Call Manager/9.0.0\r\n").unwrap();
    let login = read_message(&mut conn);
    assert!(login.contains("Events: security"), "{login}");
    conn.write_all(b"Response: Success\r\nActionID: extsecurity-login\r\nMessage: Authentication accepted\r\n\r\n")
        .unwrap();
    // Drain our Pings so that the daemon's writes never block.
    let mut drain = conn.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
    });
    conn.set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut stalled = 0;
    for chunk in stream.chunks(64 * 1024) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match conn.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    stalled += 1
                }
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    let written = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut counted = 0.0;
    while Instant::now() < deadline {
        counted = metric(metrics_port, "extsecurity_ami_events_total{");
        if counted >= events as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = started.elapsed();
    let lost = events as f64 - counted;
    let alerts = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count();
    println!(
        "{name:>8}: {:>9.0} events/s ({events} in {:.3} s, written in {:.3} s), lost {lost}, stalled writes (Asterisk would drop us) {stalled}, reconnects {}, alert lines {alerts}, tracked pairs {}, peak RSS {:.1} MiB",
        counted / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        written.as_secs_f64(),
        metric(metrics_port, "extsecurity_ami_reconnects_total"),
        metric(metrics_port, "extsecurity_ami_tracked"),
        daemon.peak_rss_kib() as f64 / 1024.0,
    );
}

fn read_message(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn metric(port: u16, name: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Daemon(Child);

impl Daemon {
    /// The daemon's peak resident set (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
