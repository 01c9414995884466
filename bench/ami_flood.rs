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
//! stalled writes, reconnects, alert lines, addresses tracked, and the
//! daemon's peak RSS.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;

use support::{Daemon, metric, release_binary};

fn main() {
    let events = support::env_usize("EVENTS", 1_000_000);
    let binary = release_binary();
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
        run(&binary, name, events, &stream);
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

fn run(binary: &str, name: &str, events: usize, stream: &[u8]) {
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
    let daemon = Daemon::serve(binary, &config, None);
    let (mut conn, _) = listener.accept().unwrap();
    conn.write_all(b"Asterisk Call Manager/9.0.0\r\n").unwrap();
    // The MD5 challenge first, as manager.c answers it (the key is not checked here:
    // tests/it/ami.rs does that).
    let challenge = read_message(&mut conn);
    assert!(challenge.contains("Action: Challenge"), "{challenge}");
    conn.write_all(
        b"Response: Success\r\nActionID: extsecurity-challenge\r\nChallenge: 840128930\r\n\r\n",
    )
    .unwrap();
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
        "{name:>8}: {:>9.0} events/s ({events} in {:.3} s, written in {:.3} s), lost {lost}, stalled writes (Asterisk would drop us) {stalled}, reconnects {}, alert lines {alerts}, tracked addresses {}, peak RSS {:.1} MiB",
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
