//! `[edge]` (issue 29, its rate limit): in network namespaces made here
//! (`common/netns.rs`), `serve` with `[nftables]` and `[edge]` in `pbx`; the attacker in
//! `atk` floods the SIP port at 400 datagrams a second, the innocent in `inn` sends as a
//! phone does or, trusted, floods too. What arrives is counted by a real socket.
//!
//! Skips, saying why, where namespaces or nftables are unavailable; `.ci/run` installs
//! iproute2 and nftables and runs it as root.

use crate::common;

use std::process::{Child, Command};
use std::time::Duration;

use common::netns::{
    ATTACKER, Daemon, INNOCENT, PBX_A, PBX_I, arrivals, in_netns, lab_or_skip, nft_list,
    timed_listener, until_one_arrives,
};
use common::{Sandbox, wait_for};

/// `count` datagrams from `ns` to `to`:`port`, one every `every_ms`.
fn send(ns: &str, to: &str, port: u16, count: u32, every_ms: f64) -> Child {
    common::netns::send_from(ns, "0.0.0.0", to, port, count, every_ms)
}

/// A socket on `port` in `ns` that writes one line per datagram to `out`.
fn listen(ns: &str, port: u16, out: &std::path::Path) -> Child {
    common::netns::listen_on(ns, port, out)
}

fn from(path: &std::path::Path, source: &str) -> usize {
    arrivals(path).iter().filter(|(s, _)| s == source).count()
}

fn status(ns: &str, s: &Sandbox) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(common::bin())
        .arg("--config")
        .arg(&s.config)
        .arg("status")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number in `edge       N packets over …` of `status`.
fn over_rate(text: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("edge "))
        .unwrap_or_else(|| panic!("no edge line: {text}"));
    line.split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count: {line}"))
}

/// The metrics endpoint inside the namespace.
const METRICS: u16 = 9851;

fn config(dry_run: bool) -> String {
    format!(
        "tarpit_seconds = 0\ntrusted_networks = ['{INNOCENT}/32']\n\
         [daemon]\ncontrol_socket = '@DIR@/control.sock'\nmetrics_listen = '127.0.0.1:{METRICS}'\n\
         [nftables]\nenabled = true\nports = [5060]\n\
         [edge]\nenabled = true\nrate_limit = 50\nrate_burst = 50\ndry_run = {dry_run}\n"
    )
}

/// A source flooding the SIP port at 400/s with `rate_limit = 50`, `rate_burst = 50`
/// gets about 50 a second through (plus the burst); the same source on another port
/// is untouched; a trusted source flooding is untouched; and the flooder, back to a
/// phone's pace, gets every datagram through. `status` counts what was dropped, and a
/// flushed ruleset comes back with the edge.
#[test]
fn a_flood_is_held_to_its_rate_and_a_phones_pace_never_is() {
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk, inn) = (lab.ns(0), lab.ns(1), lab.ns(2));
    let s = Sandbox::with_config(&config(false));
    let _daemon = Daemon::start(pbx, &s);
    let sip = s.dir.path().join("sip");
    let other = s.dir.path().join("other");
    let mut listeners = [timed_listener(pbx, &sip), listen(pbx, 9999, &other)];
    until_one_arrives(atk, PBX_A, &sip, ATTACKER);
    wait_for("the other port's listener", Duration::from_secs(10), || {
        let _ = send(atk, PBX_A, 9999, 1, 1.0).wait();
        count_lines(&other) > 0
    });
    std::thread::sleep(Duration::from_secs(2)); // the probes' tokens back
    let (sip_before, other_before) = (from(&sip, ATTACKER), count_lines(&other));

    // Two seconds at 400/s, to the SIP port and to another, and a trusted flood.
    let mut senders = [
        send(atk, PBX_A, 5060, 800, 2.5),
        send(atk, PBX_A, 9999, 800, 2.5),
        send(inn, PBX_I, 5060, 800, 2.5),
    ];
    for sender in &mut senders {
        sender.wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let through = from(&sip, ATTACKER) - sip_before;
    eprintln!("a 400/s flood, limit 50/s burst 50: {through} of 800 through in 2 s");
    assert!(
        (80..=260).contains(&through),
        "{through} of 800 came through"
    );
    assert!(
        count_lines(&other) - other_before >= 790,
        "another port is untouched"
    );
    assert_eq!(
        from(&sip, INNOCENT),
        800,
        "a trusted source is never limited"
    );
    let dropped = over_rate(&status(pbx, &s));
    assert!(dropped >= 500, "status counts what was dropped: {dropped}");
    let served = in_netns(pbx, || {
        common::metric(
            METRICS,
            "extsecurity_edge_over_rate_packets_total{dry_run=\"false\"}",
        )
    });
    assert!(
        served >= dropped as f64,
        "the metric counts it too: {served}"
    );

    // Back to a phone's pace: 5 a second, every one arrives.
    let before = from(&sip, ATTACKER);
    send(atk, PBX_A, 5060, 10, 200.0).wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(from(&sip, ATTACKER) - before, 10);

    // Something flushes the ruleset: the edge comes back with the table.
    let flush = Command::new("ip")
        .args(["netns", "exec", pbx, "nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(flush.success());
    wait_for("the edge rebuilt", Duration::from_secs(5), || {
        nft_list(pbx).contains("limit rate over 50/second burst 50 packets")
    });
    for l in &mut listeners {
        let _ = l.kill();
        let _ = l.wait();
    }
}

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// `dry_run = true`: the same flood all arrives, and `status` counts what the limit
/// would have dropped.
#[test]
fn a_dry_run_counts_and_drops_nothing() {
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk) = (lab.ns(0), lab.ns(1));
    let s = Sandbox::with_config(&config(true));
    let _daemon = Daemon::start(pbx, &s);
    let sip = s.dir.path().join("sip");
    let mut listener = timed_listener(pbx, &sip);
    until_one_arrives(atk, PBX_A, &sip, ATTACKER);
    let before = from(&sip, ATTACKER);
    send(atk, PBX_A, 5060, 800, 2.5).wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(from(&sip, ATTACKER) - before, 800, "nothing dropped");
    let text = status(pbx, &s);
    assert!(text.contains("DRY RUN:"), "{text}");
    assert!(over_rate(&text) >= 500, "{text}");
    let _ = listener.kill();
    let _ = listener.wait();
}
