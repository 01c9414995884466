//! A fleet (issue 14): several `extsecurity serve` daemons — one per PBX — pushing at
//! once into one CrowdSec LAPI (Debian's 1.4.6) on PostgreSQL (Debian's 15, a private
//! cluster from `common/crowdsec.rs`), through a LAPI outage and a daemon crash; and
//! Debian's `crowdsec-firewall-bouncer` on another host (a network namespace) dropping
//! the attacker one PBX alerted on.
//!
//! "Stored once" is read from the database itself: one ban decision per address, more
//! only where a POST failed after the LAPI had stored it and was retried (design.md
//! §3c) — so never more doubled addresses than retries times the batch size. Calls
//! reach the daemons as Asterisk makes them (`common/agi_peer.rs`).

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::agi_peer::fastagi_call;
use common::asterisk::Channel;
use common::crowdsec::{Lapi, Postgres};
use common::{LoggedServe, Sandbox, free_port, metric, wait_for};

const PASSWORD: &str = "fleet-test-password-0123456789";

/// One fleet at a time: each is a PostgreSQL, a LAPI and several daemons, and two
/// cores shared by two fleets would measure the machine, not the product.
fn one_fleet_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    common::heavy()
}

/// One PBX's daemon, pushing as machine `pbx{n}`.
struct Pbx {
    serve: LoggedServe,
    port: u16,
    metrics_port: u16,
}

impl Pbx {
    fn start(lapi: &Lapi, n: usize) -> Pbx {
        let machine = format!("pbx{n}");
        lapi.add_machine(&machine, PASSWORD);
        let (port, metrics_port) = (free_port(), free_port());
        let sandbox = Sandbox::with_config(&format!(
            "tarpit_seconds = 0\n\
             [crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"{machine}\"\npassword = \"{PASSWORD}\"\n\
             state_file = \"@DIR@/crowdsec.position\"\n\
             [daemon]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n",
            lapi.url()
        ));
        Pbx {
            serve: LoggedServe::start(sandbox, port),
            port,
            metrics_port,
        }
    }

    fn delivered(&self) -> f64 {
        metric(self.metrics_port, "extsecurity_crowdsec_delivered_total")
    }

    fn retries(&self) -> f64 {
        metric(self.metrics_port, "extsecurity_crowdsec_retries_total")
    }
}

/// Addresses PBX `n` sees attack: 10.n.x.y, distinct across the fleet.
fn attackers(n: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.{n}.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// Calls every rule objects to (a 3-digit extension), one per address, from a thread
/// of its own, `every` apart.
fn attack(port: u16, ips: Vec<String>, every: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for ip in ips {
            let scan = Channel {
                exten: b"123".to_vec(),
                ..Channel::ordinary(&ip)
            };
            // A daemon restarting mid-way refuses a few calls: Asterisk would go on.
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                let _ = std::panic::catch_unwind(|| fastagi_call(port, &scan));
            }
            std::thread::sleep(every);
        }
    })
}

/// `per` attacks on each PBX, each from its own addresses, all at once: the
/// addresses, and the threads to join.
fn attack_each(
    pbxs: &[Pbx],
    per: usize,
    every: Duration,
) -> (Vec<String>, Vec<std::thread::JoinHandle<()>>) {
    let mut expected = Vec::new();
    let attacks = pbxs
        .iter()
        .enumerate()
        .map(|(i, pbx)| {
            let ips = attackers(i + 1, per);
            expected.extend(ips.clone());
            attack(pbx.port, ips, every)
        })
        .collect();
    (expected, attacks)
}

/// Every address banned, and no more doubled than retried batches can explain.
fn assert_stored_once(pg: &Postgres, expected: &[String], retries: f64, batch: usize) {
    let bans: HashMap<String, usize> = pg.bans_per_address();
    let lost: Vec<&String> = expected
        .iter()
        .filter(|ip| !bans.contains_key(*ip))
        .collect();
    assert!(
        lost.is_empty(),
        "{} bans lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(bans.len(), expected.len(), "only the attackers are banned");
    let doubled = bans.values().filter(|&&n| n > 1).count();
    assert!(
        doubled as f64 <= retries * batch as f64,
        "{doubled} addresses banned more than once with {retries} retries"
    );
}

#[test]
fn four_pbxs_push_at_once_into_postgres_and_every_ban_is_stored_once() {
    let _one = one_fleet_at_a_time();
    let pg = Postgres::start();
    let lapi = Lapi::on_postgres(&pg);
    let pbxs: Vec<Pbx> = (1..=4).map(|n| Pbx::start(&lapi, n)).collect();
    let (expected, attacks) = attack_each(&pbxs, 300, Duration::ZERO);
    for a in attacks {
        a.join().unwrap();
    }
    for pbx in &pbxs {
        wait_for("300 delivered by each PBX", Duration::from_secs(60), || {
            pbx.delivered() >= 300.0
        });
    }
    let retries: f64 = pbxs.iter().map(Pbx::retries).sum();
    assert_stored_once(&pg, &expected, retries, 100);
    for pbx in &pbxs {
        assert_eq!(pbx.delivered(), 300.0);
    }
}

#[test]
fn the_lapi_stopped_and_started_again_loses_no_ban() {
    let _one = one_fleet_at_a_time();
    let pg = Postgres::start();
    let mut lapi = Lapi::on_postgres(&pg);
    let pbxs: Vec<Pbx> = (1..=4).map(|n| Pbx::start(&lapi, n)).collect();
    // Each PBX alerts ~200 times a second for 3 s; the LAPI is down from 0.5 s to 4 s.
    let (expected, attacks) = attack_each(&pbxs, 600, Duration::from_millis(4));
    std::thread::sleep(Duration::from_millis(500));
    lapi.stop();
    std::thread::sleep(Duration::from_millis(3500));
    let waiting: f64 = pbxs
        .iter()
        .map(|p| metric(p.metrics_port, "extsecurity_crowdsec_backlog_alerts"))
        .sum();
    assert!(waiting > 0.0, "alerts wait while the LAPI is down");
    let before: Vec<f64> = pbxs.iter().map(Pbx::delivered).collect();
    lapi.start_again();
    let back = Instant::now();
    for (pbx, before) in pbxs.iter().zip(&before) {
        wait_for(
            "a delivery after the outage",
            Duration::from_secs(10),
            || pbx.delivered() > *before,
        );
    }
    let first = back.elapsed();
    for a in attacks {
        a.join().unwrap();
    }
    for pbx in &pbxs {
        wait_for("every alert of each PBX", Duration::from_secs(60), || {
            pbx.delivered() >= 600.0
        });
        assert!(
            pbx.serve.stderr().contains("the LAPI takes alerts again"),
            "{}",
            pbx.serve.stderr()
        );
    }
    let retries: f64 = pbxs.iter().map(Pbx::retries).sum();
    assert_stored_once(&pg, &expected, retries, 100);
    assert!(
        first < Duration::from_secs(1),
        "the last of 4 PBXs delivered {first:?} after the LAPI accepted connections again"
    );
}

/// PBX 1's daemon is SIGKILLed (a crash, an OOM kill: nothing saved at exit) in the
/// middle of an attack and started again while the attack goes on; PBX 2 pushes all
/// along. Every alert either log holds reaches the database.
#[test]
fn a_daemon_killed_and_restarted_mid_way_loses_none() {
    let _one = one_fleet_at_a_time();
    let pg = Postgres::start();
    let lapi = Lapi::on_postgres(&pg);
    let mut pbx = Pbx::start(&lapi, 1);
    let other = Pbx::start(&lapi, 2);
    let a = attack(pbx.port, attackers(1, 600), Duration::from_millis(2));
    let b = attack(other.port, attackers(2, 400), Duration::from_millis(2));
    std::thread::sleep(Duration::from_millis(400));
    pbx.serve.child.kill().unwrap();
    pbx.serve.child.wait().unwrap();
    pbx.serve.restart(pbx.port);
    a.join().unwrap();
    b.join().unwrap();
    let alerted = |p: &Pbx| -> Vec<String> {
        p.serve
            .sandbox
            .log_lines()
            .iter()
            .filter(|l| l.contains(" ERROR "))
            .map(|l| {
                l.split("ip=")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let mut expected = alerted(&pbx);
    assert!(
        (200..600).contains(&expected.len()),
        "the kill fell in the middle of the attack: {} alerts",
        expected.len()
    );
    let banned_of_pbx1 = || {
        pg.bans_per_address()
            .keys()
            .filter(|ip| ip.starts_with("10.1."))
            .count()
    };
    wait_for("every alert PBX 1 logged", Duration::from_secs(60), || {
        banned_of_pbx1() >= expected.len()
    });
    wait_for("all 400 of PBX 2", Duration::from_secs(60), || {
        other.delivered() >= 400.0
    });
    expected.extend(alerted(&other));
    // A kill between the LAPI's answer and the position's save repeats one batch.
    assert_stored_once(&pg, &expected, pbx.retries() + other.retries() + 1.0, 100);
}

/// Namespaces from `common/netns.rs` with a fleet's roles (`common/fleet.rs`): PBX 1's
/// daemon and the LAPI on one host, Debian's firewall bouncer (nftables mode,
/// `update_frequency: 1s`) on PBX 2, the attacker probing PBX 2 every millisecond.
#[test]
fn the_firewall_bouncer_on_another_host_drops_the_attacker_within_1_5_s() {
    let _one = one_fleet_at_a_time();
    let drop = match common::fleet::time_to_drop_across_hosts("1s") {
        Ok(drop) => drop,
        Err(skip) => {
            eprintln!("SKIP: {skip}");
            return;
        }
    };
    eprintln!(
        "time to drop at PBX 2: {:?} ({} datagrams through after the alert)",
        drop.to_drop, drop.after
    );
    assert!(
        drop.before >= 50,
        "the attacker reached PBX 2 before the alert: {}",
        drop.before
    );
    assert!(
        drop.after < 3_000,
        "the bouncer never dropped the attacker: {} datagrams after the alert\n{}",
        drop.after,
        drop.bouncer_log
    );
    assert!(
        drop.to_drop < Duration::from_millis(1500),
        "PBX 2 dropped the attacker {:?} after PBX 1's alert",
        drop.to_drop
    );
}
