//! Load benchmark for `extsecurity serve` (issue: AGI and a FastAGI daemon).
//!
//!     cargo bench --bench fastagi_load            # both runs, figures on stdout
//!     CALLS=200000 CONCURRENCY=64 cargo bench --bench fastagi_load
//!     LOG_OK_CALLS=false cargo bench --bench fastagi_load   # no INFO lines
//!
//! Starts the release binary as its own process on a loopback port with a private
//! config (tarpit off, one INFO line per call), then:
//! 1. load: CONCURRENCY connections at a time, each a whole FastAGI call as Asterisk
//!    makes it (block, our query answered, the two SET VARIABLE acknowledged), from
//!    1,000 caller addresses; reports calls/s, p50/p99 latency, the daemon's peak RSS;
//! 2. flood: 1,000,000 calls from 1,000,000 distinct addresses; reports the daemon's
//!    peak RSS and how many addresses it remembers (`extsecurity_tracked_ips`), which
//!    the cap (`memory.max_tracked_ips`, 100,000 by default) must hold.
//!
//! The client speaks the wire format of design.md §3 (`agi_network: yes` first,
//! replies `200 result=1 (value)`), as tests/common/agi_peer.rs does.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[allow(dead_code)]
mod support;

use support::{Daemon, env_usize, metric, release_binary};

fn main() {
    let calls = env_usize("CALLS", 100_000);
    let concurrency = env_usize("CONCURRENCY", 32);
    let flood = env_usize("FLOOD", 1_000_000);
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("extsecurity.toml");
    std::fs::write(
        &config,
        format!(
            "log_file = {:?}\ntarpit_seconds = 0\nlog_ok_calls = {}\n[daemon]\nmax_connections = 4096\nmetrics_listen = '127.0.0.1:{metrics_port}'\n",
            dir.path().join("alerts.log"),
            std::env::var("LOG_OK_CALLS").map_or(true, |v| v != "false"),
        ),
    )
    .unwrap();
    let daemon = Daemon(
        Command::new(&binary)
            .args([
                "--config",
                config.to_str().unwrap(),
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("extsecurity serve, FastAGI on loopback, {concurrency} concurrent connections");
        let cpu_before = daemon.cpu_seconds();
        let (elapsed, mut latencies) = drive(addr, calls, concurrency, |i| format!("10.0.{}.{}", (i % 1000) / 250, i % 250 + 1)).await;
        let cpu = daemon.cpu_seconds() - cpu_before;
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!(
            "load:  {calls} calls in {:.2} s = {:.0} calls/s; latency p50 {:.2} ms, p99 {:.2} ms; \
             daemon CPU {:.0} µs per call ({:.0} calls per daemon CPU second); daemon peak RSS {} MiB",
            elapsed.as_secs_f64(),
            calls as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            cpu / calls as f64 * 1e6,
            calls as f64 / cpu,
            daemon.peak_rss_kib() / 1024
        );
        let (elapsed, _) = drive(addr, flood, concurrency, |i| {
            let n = 0x0b00_0000u32 + i as u32;
            std::net::Ipv4Addr::from(n).to_string()
        })
        .await;
        let tracked = metric(metrics_port, "extsecurity_tracked_ips ");
        println!(
            "flood: {flood} calls from {flood} distinct addresses in {:.1} s = {:.0} calls/s; tracked addresses {tracked}; daemon peak RSS {} MiB",
            elapsed.as_secs_f64(),
            flood as f64 / elapsed.as_secs_f64(),
            daemon.peak_rss_kib() / 1024
        );
    });
}

/// Runs `calls` FastAGI calls, `concurrency` at a time; the i-th call comes from `ip(i)`.
async fn drive(
    addr: SocketAddr,
    calls: usize,
    concurrency: usize,
    ip: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (Duration, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let ip = Arc::new(ip);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, ip) = (next.clone(), ip.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls {
                        return latencies;
                    }
                    let t = Instant::now();
                    one_call(addr, &ip(i)).await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(calls);
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (start.elapsed(), all)
}

/// One call as Asterisk makes it.
async fn one_call(addr: SocketAddr, ip: &str) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let block = "agi_network: yes\nagi_network_script: check\nagi_request: agi://127.0.0.1/check\nagi_channel: PJSIP/anonymous-00000002\n\
         agi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1795633497.2\nagi_version: 20.20.1\nagi_callerid: 5551234\n\
         agi_calleridname: Alice\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\n\
         agi_dnid: 4915112345678\nagi_rdnis: unknown\nagi_context: default\nagi_extension: 4915112345678\nagi_priority: 1\n\
         agi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 139665663317696\n\n";
    write.write_all(block.as_bytes()).await.unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.unwrap() == 0 {
            return;
        }
        let command = line.trim_end_matches('\n');
        let reply = if let Some(arg) = command
            .strip_prefix("GET FULL VARIABLE \"")
            .and_then(|a| a.strip_suffix('"'))
        {
            format!("200 result=1 ({})\n", substitute(arg, ip))
        } else {
            "200 result=1\n".to_string()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn substitute(arg: &str, ip: &str) -> String {
    arg.replace("${CHANNEL(pjsip,remote_addr)}", &format!("{ip}:5060"))
        .replace("${CALLERID(num)}", "5551234")
        .replace("${CALLERID(name)}", "Alice")
        .replace("${EXTEN}", "4915112345678")
        .replace("${PJSIP_HEADER(read,User-Agent)}", "Yealink SIP-T46S")
        .replace("${CHANNEL(endpoint)}", "guest")
}
