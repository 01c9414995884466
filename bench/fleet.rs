//! Fleet benchmark (issue 14): several release daemons pushing into one LAPI on
//! PostgreSQL, the catch-up after an outage, and the time a firewall bouncer on
//! another host takes to drop an attacker.
//!
//!     cargo bench --bench fleet                      (the bouncer part needs root)
//!     PBXS=4 ALERTS=5000 OUTAGE=20000 DROP_RUNS=5 DEFAULT_RUNS=2 cargo bench --bench fleet
//!     DB=sqlite DROP_RUNS=0 DEFAULT_RUNS=0 cargo bench --bench fleet   (the same on SQLite)
//!
//! 1. Throughput: PBXS daemons (machines pbx1…), a LAPI (Debian's crowdsec 1.4.6) on a
//!    private PostgreSQL 15. ALERTS alert lines are appended to each daemon's alert log
//!    at once, one `write(2)` each, exactly as `extsecurity check` processes append
//!    theirs; the daemons push them. Fleet alerts/s = all alerts / time to the last one
//!    accepted (`extsecurity_crowdsec_delivered_total`); the database is then counted.
//! 2. Catch-up: the LAPI stopped, OUTAGE more lines per daemon while it is down, the
//!    LAPI started: the first delivery after it accepts connections, the time to empty
//!    every backlog, and each daemon's peak RSS (memory must not grow with the backlog).
//! 3. Time to drop on another host: `common/fleet.rs`'s namespaces, the bouncer at
//!    `update_frequency: 1s` (DROP_RUNS runs) and at Debian's default `10s`
//!    (DEFAULT_RUNS runs).
//!
//! Everything shares the machine's cores: the LAPI, PostgreSQL, the daemons and the
//! load. The figures are a floor for a LAPI on a host of its own.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::crowdsec::{Lapi, Postgres};
use common::{free_port, wait_for};

#[allow(dead_code)]
mod support;

use support::{Daemon, env_usize as env, metric, release_binary};

const PASSWORD: &str = "bench-password-0123456789";

struct Pbx {
    daemon: Daemon,
    dir: tempfile::TempDir,
    metrics_port: u16,
}

impl Pbx {
    fn start(binary: &str, lapi: &Lapi, n: usize) -> Pbx {
        lapi.add_machine(&format!("pbx{n}"), PASSWORD);
        let dir = tempfile::tempdir().unwrap();
        let (port, metrics_port) = (free_port(), free_port());
        let config = dir.path().join("extsecurity.toml");
        std::fs::write(
            &config,
            format!(
                "log_file = {:?}\n[crowdsec]\nlapi_url = '{}'\nmachine_id = 'pbx{n}'\npassword = '{PASSWORD}'\nstate_file = {:?}\n\
                 [daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics_port}'\ncontrol_socket = ''\n",
                dir.path().join("alerts.log"),
                lapi.url(),
                dir.path().join("crowdsec.position"),
            ),
        )
        .unwrap();
        let daemon = Daemon::serve(binary, &config, Some(port));
        Pbx {
            daemon,
            dir,
            metrics_port,
        }
    }

    fn delivered(&self) -> f64 {
        metric(self.metrics_port, "extsecurity_crowdsec_delivered_total")
    }

    fn backlog(&self) -> f64 {
        metric(self.metrics_port, "extsecurity_crowdsec_backlog_alerts")
    }

    /// Appends `count` alert lines from addresses 10.n.x.y starting at `from`.
    fn append_alerts(&self, n: usize, from: usize, count: usize) {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.path().join("alerts.log"))
            .unwrap();
        for i in from..from + count {
            let line = format!(
                "{} ERROR ip=10.{n}.{}.{} reason=wrong_exten_min_length(3) callerid_num='100' \
                 callerid_name='' dest_exten='123' peer_name='' user_agent='friendly-scanner'\n",
                extsecurity::clock::timestamp_now(),
                (i >> 8) & 0xff,
                i & 0xff
            );
            log.write_all(line.as_bytes()).unwrap();
        }
    }
}

fn main() {
    let pbxs = env("PBXS", 4);
    let alerts = env("ALERTS", 5_000);
    let outage = env("OUTAGE", 20_000);
    let binary = release_binary();
    let sqlite = std::env::var("DB").is_ok_and(|d| d == "sqlite");
    let pg = (!sqlite).then(Postgres::start);
    let mut lapi = match &pg {
        Some(pg) => Lapi::on_postgres(pg),
        None => Lapi::start(None),
    };
    let fleet: Vec<Pbx> = (1..=pbxs).map(|n| Pbx::start(&binary, &lapi, n)).collect();
    let engine = if sqlite {
        "SQLite (WAL)"
    } else {
        "PostgreSQL 15"
    };
    println!("Fleet: {pbxs} daemons → one LAPI (crowdsec 1.4.6) on {engine}, all on this machine");
    let banned = || match &pg {
        Some(pg) => {
            let stored = pg.bans_per_address();
            let twice = stored.values().filter(|&&n| n > 1).count();
            format!("addresses banned {}, banned twice {twice}", stored.len())
        }
        None => "(bans counted on PostgreSQL only)".to_string(),
    };
    let retries = |fleet: &[Pbx]| -> f64 {
        fleet
            .iter()
            .map(|p| metric(p.metrics_port, "extsecurity_crowdsec_retries_total"))
            .sum()
    };

    // 1. Throughput.
    let started = Instant::now();
    std::thread::scope(|s| {
        for (i, pbx) in fleet.iter().enumerate() {
            s.spawn(move || pbx.append_alerts(i + 1, 0, alerts));
        }
    });
    let all = (pbxs * alerts) as f64;
    wait_until_delivered(&fleet, all);
    let took = started.elapsed();
    println!(
        "  throughput: {all} alerts from {pbxs} daemons in {:.2} s: {:.0} alerts/s; failed POSTs retried {}; {}",
        took.as_secs_f64(),
        all / took.as_secs_f64(),
        retries(&fleet),
        banned()
    );

    // 2. Catch-up after an outage.
    lapi.stop();
    std::thread::scope(|s| {
        for (i, pbx) in fleet.iter().enumerate() {
            s.spawn(move || pbx.append_alerts(i + 1, alerts, outage));
        }
    });
    wait_for("the backlog counted", Duration::from_secs(30), || {
        fleet.iter().map(Pbx::backlog).sum::<f64>() >= (pbxs * outage) as f64
    });
    let rss_down: Vec<u64> = fleet.iter().map(|p| p.daemon.peak_rss_kib()).collect();
    let before: Vec<f64> = fleet.iter().map(Pbx::delivered).collect();
    lapi.start_again();
    let back = Instant::now();
    let mut first = Duration::ZERO;
    for (pbx, before) in fleet.iter().zip(&before) {
        wait_for("a delivery", Duration::from_secs(30), || {
            pbx.delivered() > *before
        });
        first = back.elapsed();
    }
    wait_until_delivered(&fleet, ((alerts + outage) * pbxs) as f64);
    let drained = back.elapsed();
    let rss_after: Vec<u64> = fleet.iter().map(|p| p.daemon.peak_rss_kib()).collect();
    println!(
        "  catch-up: {} alerts waiting in {pbxs} logs; first delivery of every daemon {:.0} ms after the LAPI accepted connections; all delivered in {:.2} s: {:.0} alerts/s",
        pbxs * outage,
        first.as_secs_f64() * 1000.0,
        drained.as_secs_f64(),
        (pbxs * outage) as f64 / drained.as_secs_f64()
    );
    println!(
        "  peak RSS per daemon: {} KiB with {outage} alerts waiting, {} KiB after the catch-up",
        rss_down.iter().max().unwrap(),
        rss_after.iter().max().unwrap()
    );
    println!("  of {} alerts: {}", (alerts + outage) * pbxs, banned());
    drop(fleet);
    drop(lapi);

    // 3. Time to drop on another host.
    for (every, runs) in [("1s", env("DROP_RUNS", 5)), ("10s", env("DEFAULT_RUNS", 2))] {
        if runs == 0 {
            continue;
        }
        let mut figures = Vec::new();
        for _ in 0..runs {
            match common::fleet::time_to_drop_across_hosts(every) {
                Ok(d) => figures.push(d.to_drop.as_secs_f64() * 1000.0),
                Err(skip) => {
                    println!("  time to drop: skipped ({skip})");
                    return;
                }
            }
        }
        figures.sort_by(f64::total_cmp);
        let mean = figures.iter().sum::<f64>() / figures.len().max(1) as f64;
        println!(
            "  time to drop at PBX 2, bouncer update_frequency {every}: {} ms (mean {mean:.0} ms)",
            figures
                .iter()
                .map(|f| format!("{f:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn wait_until_delivered(fleet: &[Pbx], total: f64) {
    wait_for("every alert delivered", Duration::from_secs(600), || {
        fleet.iter().map(Pbx::delivered).sum::<f64>() >= total
    });
}
