//! CrowdSec push benchmark (issue: fleets through CrowdSec).
//!
//!     cargo bench --bench crowdsec_push
//!     CALLS=40000 CONCURRENCY=16 BATCH=100 cargo bench --bench crowdsec_push
//!
//! Starts a real LAPI from Debian's `crowdsec` package (SQLite with WAL, as
//! tests/common/crowdsec.rs does) and the release daemon, then makes CALLS FastAGI
//! calls, CONCURRENCY at a time, each from its own address and each an alert (a
//! 3-digit extension), twice: without `[crowdsec]`, and pushing every alert to the
//! LAPI. Reports calls/s and latency percentiles for both runs, and for the second the
//! alerts delivered per second (first call to the last alert accepted by the LAPI,
//! from `extsecurity_crowdsec_delivered_total`), alerts lost, and how many decisions
//! the LAPI holds afterwards.

#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agi_peer::fastagi_call;
use common::asterisk::Channel;
use common::crowdsec::Lapi;
use common::free_port;

#[allow(dead_code)]
mod support;

use support::{Daemon, env_usize as env, metric, release_binary};

fn main() {
    let calls = env("CALLS", 20_000);
    let concurrency = env("CONCURRENCY", 16);
    let batch = env("BATCH", 100);
    let binary = release_binary();
    let lapi = Lapi::start(None);
    lapi.add_machine("bench", "bench-password-0123456789");
    println!(
        "CrowdSec push: {calls} alert calls, {concurrency} at a time, each from its own address; LAPI and daemon on the same 2 cores"
    );
    let plain = run(&binary, "", calls, concurrency, 0);
    plain.print("without CrowdSec", None);
    let push = format!(
        "[crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"bench\"\npassword = \"bench-password-0123456789\"\nbatch_size = {batch}\nstate_file = \"@STATE@\"\n",
        lapi.url(),
    );
    // A different address range, so that the LAPI holds exactly this run's bans.
    let pushed = run(&binary, &push, calls, concurrency, 1);
    pushed.print("pushing to the LAPI", Some(&lapi));
}

struct Outcome {
    calls: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    delivered: Option<(f64, Duration)>,
    first_octet: u8,
}

impl Outcome {
    fn print(&self, name: &str, lapi: Option<&Lapi>) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct =
            |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "{name:>20}: {:>6.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.calls as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
        if let (Some((delivered, took)), Some(lapi)) = (self.delivered, lapi) {
            let sample: Vec<String> = (0..20)
                .map(|i| address(self.first_octet, i * (self.calls / 20)))
                .collect();
            let banned = sample
                .iter()
                .filter(|ip| !lapi.decisions(ip).is_null())
                .count();
            println!(
                "{:>20}  {delivered} alerts delivered in {:.2} s: {:.0} alerts/s; lost {}; sampled bans present {banned}/20",
                "",
                took.as_secs_f64(),
                delivered / took.as_secs_f64(),
                self.calls as f64 - delivered,
            );
        }
    }
}

/// The i-th caller address of a run: 10.N.x.y.
fn address(first: u8, i: usize) -> String {
    format!("10.{}.{}.{}", first, (i >> 8) & 0xff, i & 0xff)
}

fn run(binary: &str, extra: &str, calls: usize, concurrency: usize, first_octet: u8) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let config = dir.path().join("extsecurity.toml");
    std::fs::write(
        &config,
        format!(
            "log_file = {:?}\ntarpit_seconds = 0\n{}\n[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics_port}'\nmax_connections = 4096\n[memory]\nenabled = false\n",
            dir.path().join("alerts.log"),
            extra.replace("@STATE@", dir.path().join("crowdsec.position").to_str().unwrap())
        ),
    )
    .unwrap();
    let daemon = Daemon::serve(binary, &config, Some(port));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(calls)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (latencies, next) = (latencies.clone(), next.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= calls {
                        break;
                    }
                    let channel = Channel {
                        exten: b"123".to_vec(),
                        ..Channel::ordinary(&address(first_octet, i))
                    };
                    let t = Instant::now();
                    let reason = fastagi_call(port, &channel).variable("EXTSEC_REASON");
                    mine.push(t.elapsed());
                    assert_eq!(reason.as_deref(), Some("wrong_exten_min_length(3)"));
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = started.elapsed();
    let delivered = (!extra.is_empty()).then(|| {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut n = 0.0;
        while Instant::now() < deadline {
            n = metric(metrics_port, "extsecurity_crowdsec_delivered_total");
            if n >= calls as f64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (n, started.elapsed())
    });
    drop(daemon);
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    Outcome {
        calls,
        elapsed,
        latencies,
        delivered,
        first_octet,
    }
}
