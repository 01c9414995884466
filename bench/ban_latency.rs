//! Time to drop (issue 13): from the AMI event that decides (svcrack's 6th wrong
//! password) to the kernel dropping the attacker's next packet, with the daemon's own
//! nftables bans and, for comparison, with the shipped fail2ban jail on the same log.
//!
//!     sudo cargo bench --bench ban_latency      # root: network namespaces, nftables
//!     RUNS=5 cargo bench --bench ban_latency
//!
//! Per run, namespaces made afresh (`tests/common/netns.rs`): the daemon (the bench
//! build) in `pbx`, logged in to an AMI peer there that replays svcrack on endpoint
//! 1001 at 150 guesses/s from the attacker's address (design.md §3b: a ChallengeSent,
//! then one ChallengeResponseFailed a guess); the attacker in `atk` sends a SIP
//! datagram to `pbx` every millisecond throughout. Reported: how long after the 6th
//! guess was written the attacker's last datagram arrived, and how many arrived after
//! it. Times are CLOCK_MONOTONIC, shared by every namespace.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::time::Duration;

use common::Sandbox;
use common::ami_peer::{AmiPeer, Script, Then, capture_events, from_address, split_events};
use common::fail2ban_server::Fail2ban;
use common::netns::{ATTACKER, Daemon, Lab, PBX_A, arrivals, in_netns, sender, timed_listener};

#[allow(dead_code)]
mod support;

/// The guess that crosses `max_auth_failures` (5): events are numbered from the
/// ChallengeSent at 0.
const DECIDING: usize = 6;

fn main() {
    let runs = support::env_usize("RUNS", 3);
    let guess = Duration::from_micros(6_667);
    println!(
        "time to drop: svcrack at 150 guesses/s over AMI, the attacker sending a datagram every 1 ms"
    );
    for mode in [
        "extsecurity [nftables]",
        "fail2ban, shipped jail (nftables-multiport)",
    ] {
        let mut figures = Vec::new();
        for _ in 0..runs {
            figures.push(one_run(mode.starts_with("extsecurity"), guess));
        }
        let shown: Vec<String> = figures
            .iter()
            .map(|(ms, after)| format!("{ms:.3} ms ({after} datagrams through)"))
            .collect();
        println!("{mode:44} {}", shown.join(", "));
    }
}

/// One run; (ms from the deciding event to the attacker's last datagram, datagrams
/// that arrived after the deciding event).
fn one_run(own_bans: bool, guess: Duration) -> (f64, usize) {
    let lab = Lab::new().expect("network namespaces (run as root)");
    let (pbx, atk) = (lab.ns(0), lab.ns(1));
    let events = split_events(&from_address(&capture_events("ami-wrongpw.bin"), ATTACKER));
    let pick = |kind: &str| {
        events
            .iter()
            .find(|e| String::from_utf8_lossy(e).contains(kind))
            .unwrap()
            .clone()
    };
    let mut steps = vec![(Duration::from_millis(1500), pick("ChallengeSent"))];
    steps.extend((0..20).map(|_| (guess, pick("ChallengeResponseFailed"))));
    let peer = in_netns(pbx, move || {
        AmiPeer::start(vec![Script::paced(steps, Then::Hold)])
    });
    let nft = if own_bans {
        "[nftables]\nenabled = true\n"
    } else {
        ""
    };
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n\
         [ami]\naddress = '{}'\nusername = 'extsecurity'\nsecret = 's3cmon-test'\n{nft}",
        peer.addr
    ));
    std::fs::write(&s.log, "").unwrap();
    let f2b = (!own_bans).then(|| {
        Fail2ban::start(
            s.dir.path(),
            &s.log,
            "banaction = nftables-multiport",
            Some(pbx),
        )
    });
    let got = s.dir.path().join("received");
    let mut listener = timed_listener(pbx, &got);
    let mut attacker = sender(atk, PBX_A, 3_500, 1.0);
    // The daemon logs in, then the peer waits 1.5 s and replays the burst.
    let _daemon = Daemon::start(pbx, &s);
    attacker.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = listener.kill();
    let _ = listener.wait();
    drop(f2b);
    let decided = peer.written_at()[DECIDING];
    let attacker_at: Vec<u64> = arrivals(&got)
        .into_iter()
        .filter(|(src, _)| src == ATTACKER)
        .map(|(_, at)| at)
        .collect();
    let last = attacker_at.iter().copied().max().unwrap_or(decided);
    let after = attacker_at.iter().filter(|&&at| at > decided).count();
    (last.saturating_sub(decided) as f64 / 1e6, after)
}
