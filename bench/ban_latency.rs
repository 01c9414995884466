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
//!
//! Then a flood: 100,000 distinct addresses alerted over AMI within a second, and
//! FastAGI calls (8 at a time) answered meanwhile: their p50/p99 beside the same calls
//! without the flood, and how long the 100,000 bans took to land.

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
    for (flood, bans) in [(false, true), (true, false), (true, true)] {
        let (p50, p99, landed) = calls_during(flood, bans);
        let what = match (flood, bans) {
            (false, _) => "without a flood",
            (true, false) => "during the AMI flood, no [nftables]",
            (true, true) => "during the flood, banning",
        };
        let landed = landed.map_or(String::new(), |d| {
            format!(
                "; 100,000 bans landed {:.2} s after the first",
                d.as_secs_f64()
            )
        });
        println!("FastAGI calls {what:36} p50 {p50:.2} ms, p99 {p99:.2} ms{landed}");
    }
}

/// FastAGI call latencies (p50, p99 in ms) for 4 s, 8 calls at a time, with or without
/// 100,000 addresses alerted over AMI meanwhile, with or without kernel bans; how long
/// the bans took to land.
fn calls_during(flood: bool, bans: bool) -> (f64, f64, Option<Duration>) {
    use common::agi_peer::fastagi_call;
    use common::asterisk::Channel;
    let lab = Lab::new().expect("network namespaces (run as root)");
    let pbx = lab.ns(0).to_string();
    let failure = split_events(&capture_events("ami-wrongpw.bin"))
        .into_iter()
        .find(|e| String::from_utf8_lossy(e).contains("ChallengeResponseFailed"))
        .unwrap();
    let mut events = Vec::new();
    for i in 0..if flood { 100_000u32 } else { 0 } {
        let two = from_address(
            &failure,
            &std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(),
        );
        events.extend_from_slice(&two);
        events.extend_from_slice(&two);
    }
    let peer = in_netns(&pbx, move || {
        AmiPeer::start(vec![Script::paced(
            vec![(Duration::from_millis(1000), events)],
            Then::Hold,
        )])
    });
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[memory]\nenabled = false\n[daemon]\nmetrics_listen = '127.0.0.1:9847'\n\
         [ami]\naddress = '{}'\nusername = 'extsecurity'\nsecret = 's3cmon-test'\nmax_auth_failures = 1\n\
         [nftables]\nenabled = {bans}\nmax_elements = 200000\n",
        peer.addr
    ));
    let _daemon = Daemon::start(&pbx, &s);
    let start = std::time::Instant::now();
    // The bans are counted while the calls run.
    let landing = (flood && bans).then(|| {
        let pbx = pbx.clone();
        std::thread::spawn(move || {
            in_netns(&pbx, move || {
                while std::net::TcpStream::connect("127.0.0.1:9847").is_err() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut first = None;
                loop {
                    let added = common::metric(9847, "extsecurity_bans_added_total ");
                    if added > 0.0 && first.is_none() {
                        first = Some(std::time::Instant::now());
                    }
                    if added >= 100_000.0 || start.elapsed() > Duration::from_secs(60) {
                        return first.map(|f: std::time::Instant| f.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
    });
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let pbx = pbx.clone();
            std::thread::spawn(move || {
                in_netns(&pbx, move || {
                    let mut times = Vec::new();
                    let begin = std::time::Instant::now();
                    let mut i = 0u32;
                    while begin.elapsed() < Duration::from_secs(4) {
                        let ip = format!("192.0.{}.{}", w, i % 250 + 1);
                        let t = std::time::Instant::now();
                        fastagi_call(4573, &Channel::ordinary(&ip));
                        times.push(t.elapsed());
                        i += 1;
                    }
                    times
                })
            })
        })
        .collect();
    let mut times: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    times.sort_unstable();
    let pct = |p: f64| {
        times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1e3
    };
    let landed = landing.and_then(|t| t.join().unwrap());
    (pct(0.50), pct(0.99), landed)
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
