//! A real kernel ban from fail2ban as a stock Debian 12 runs it: Debian's own
//! `/etc/fail2ban`, the package's filter and jail, the jail enabled exactly as the
//! README says, **no action overridden** (`common/fail2ban_server.rs`, `StockFail2ban`;
//! Debian 12 has nftables and no iptables, design.md §3f). Three network namespaces
//! made here: `pbx` (that fail2ban, and a UDP listener on 5060), `atk` (the attacker,
//! 203.0.113.66) and `inn` (an innocent caller, 198.51.100.44), each joined to `pbx` by
//! a veth pair. After one alert line from the real binary, a datagram from the attacker
//! to 5060 is dropped while the innocent's still arrives.
//!
//! Skips, saying why, where namespaces or nftables are unavailable; `.ci/run` installs
//! iproute2 and nftables and runs it as root.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Sandbox;
use common::fail2ban_server::StockFail2ban;
use common::netns::{Listener, lab_or_skip};

use common::netns::{ATTACKER, INNOCENT, PBX_A, PBX_I};

/// Sends one datagram from namespace `ns` to `to`:5060.
fn send(ns: &str, to: &str, payload: &str) {
    let script = format!(
        "import socket; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'{payload}',('{to}',5060))"
    );
    let status = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
}

fn received(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_attackers_datagrams_are_dropped_and_the_innocents_arrive() {
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk, inn) = (lab.ns(0), lab.ns(1), lab.ns(2));
    let s = Sandbox::new();
    let got = s.dir.path().join("received");
    let _listener = Listener::start(pbx, &got);

    // Before any ban both get through (the listener may need a moment to bind).
    wait_until("the attacker's first datagram", || {
        send(atk, PBX_A, "before");
        received(&got).contains(&format!("{ATTACKER} before"))
    });

    let f2b = StockFail2ban::start(&s.dir.path().join("root"), pbx);
    // Our checks write where the jail reads: /var/log/asterisk/inbound_extsecurity.log.
    std::fs::write(
        &s.config,
        format!("log_file = {:?}\ntarpit_seconds = 0\n", f2b.alert_log()),
    )
    .unwrap();
    let out = s
        .command()
        .args([
            "check",
            &format!("--ip={ATTACKER}:5060"),
            "--exten-b64=MTAw",
            "--callerid-num-b64=NTU1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    f2b.wait_for(
        |f| {
            f.client(&["get", "extsecurity", "banned"])
                .is_some_and(|b| b.contains(ATTACKER))
        },
        "the ban",
    );

    // fail2ban lists the ban before its action has run `nft`: wait for the kernel.
    let ruleset = || {
        let out = Command::new("ip")
            .args(["netns", "exec", pbx, "nft", "list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("the ban in the kernel", || ruleset().contains(ATTACKER));

    // The kernel now drops the attacker's SIP datagrams; the innocent's still arrive.
    for round in 0..5 {
        send(atk, PBX_A, &format!("after{round}"));
        send(inn, PBX_I, &format!("after{round}"));
    }
    wait_until("the innocent's datagrams", || {
        received(&got).contains(&format!("{INNOCENT} after4"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let text = received(&got);
    assert!(
        !text.contains(&format!("{ATTACKER} after")),
        "the attacker got through:\n{text}"
    );
    let rules = ruleset();
    assert!(rules.contains(ATTACKER), "{rules}");
    let log = f2b.log();
    assert!(
        !log.contains("not found") && !log.contains("ERROR"),
        "{log}"
    );
    drop(f2b);
}
