//! Load benchmark for `extsecurity serve` (issues: a FastAGI daemon; one AGI command at
//! a time).
//!
//!     cargo bench --bench fastagi_load            # figures on stdout
//!     CALLS=200000 CONCURRENCY=64 cargo bench --bench fastagi_load
//!     LOG_OK_CALLS=false cargo bench --bench fastagi_load   # no INFO lines
//!     FLOOD=0 cargo bench --bench fastagi_load               # skip the flood
//!     BINARY=/path/to/other/extsecurity cargo bench --bench fastagi_load  # another build
//!     SCRIPT=outbound cargo bench --bench fastagi_load   # the outbound check (toll fraud)
//!
//! With `SCRIPT=outbound` the calls are outbound checks as `[extsec-outbound]` makes
//! them (README, "Toll fraud"; `[fraud]` on for Germany with the shipped high-risk
//! list), national numbers from ACCOUNTS accounts (10,000 by default, a few calls each,
//! below every limit), and the daemon's RSS with that many accounts remembered is
//! printed beside a fresh one's.
//!
//! Starts the release binary as its own process on a loopback port with a private
//! config (tarpit off, memory rules off so that 1,000 addresses calling at full speed
//! stay innocent, one INFO line per call), then:
//! 1. side by side, two rounds, A-B then B-A: CONCURRENCY connections at a time, each
//!    a whole FastAGI call as Asterisk makes it, against (a) a null FastAGI server (this
//!    program started again as a process of its own) that asks one variable and sets
//!    one, no rules and no log, and (b) the daemon; calls/s, p50/p99 and the ratio;
//! 2. flood: FLOOD calls from as many distinct addresses (memory rules on); the
//!    daemon's peak RSS and how many addresses it remembers (`extsecurity_tracked_ips`),
//!    which the cap (`memory.max_tracked_ips`, 100,000 by default) must hold.
//!
//! The client reads as res_agi's `run_agi` does (design.md §3a): it waits until the
//! socket is readable, takes ONE line from its buffer, answers it, and waits for the
//! socket again, so a second command written in the same burst stalls as it does on a
//! real Asterisk. It counts such stalls: a server that writes two commands at once
//! shows up here as calls that end only when the server closes.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[allow(dead_code)]
mod support;

use support::{Daemon, env_usize, metric, release_binary};

fn main() {
    if let Ok(addr) = std::env::var("NULL_SERVER_LISTEN") {
        // This same program, started again by `main` below as the yardstick.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            null_server(TcpListener::bind(addr).await.expect("bind the null server")).await;
        });
        return;
    }
    let calls = env_usize("CALLS", 50_000);
    let concurrency = env_usize("CONCURRENCY", 32);
    let outbound = std::env::var("SCRIPT").is_ok_and(|s| s == "outbound");
    let accounts = env_usize("ACCOUNTS", 10_000);
    let flood = if outbound {
        0
    } else {
        env_usize("FLOOD", 1_000_000)
    };
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics_port, flood_port) = (free_port(), free_port(), free_port());
    let start = |port: u16, memory: bool| {
        let config = dir.path().join(format!("extsecurity-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "log_file = {:?}\ntarpit_seconds = 0\nlog_ok_calls = {}\n[memory]\nenabled = {memory}\n\
                 [daemon]\nmax_connections = 4096\nmetrics_listen = '127.0.0.1:{metrics_port}'\n{}",
                dir.path().join(format!("alerts-{port}.log")),
                std::env::var("LOG_OK_CALLS").map_or(true, |v| v != "false"),
                match outbound {
                    true => format!(
                        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {:?}\nstate_file = {:?}\n",
                        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/extsecurity-high-risk.conf"),
                        dir.path().join(format!("fraud-{port}.state"))
                    ),
                    false => String::new(),
                }
            ),
        )
        .unwrap();
        Daemon(
            Command::new(&binary)
                .args(["--config", config.to_str().unwrap(), "serve", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .stderr(Stdio::null())
                .spawn()
                .expect("start the daemon"),
        )
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The null server is a process of its own, as the daemon is: neither shares
        // the load generator's threads.
        let null_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let _null = Daemon(
            Command::new(std::env::current_exe().unwrap())
                .env("NULL_SERVER_LISTEN", null_addr.to_string())
                .spawn()
                .expect("start the null server"),
        );
        wait_listening(null_addr).await;
        let daemon = start(port, false);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(addr).await;
        let fresh_rss = daemon.peak_rss_kib();
        println!(
            "FastAGI on loopback, {concurrency} calls in flight, {calls} calls a run, a peer that reads like res_agi{}",
            match outbound {
                true => format!(", outbound checks of {accounts} accounts"),
                false => String::new(),
            }
        );
        let from_1000 = move |i: usize| Caller {
            ip: format!("10.0.{}.{}", (i % 1000) / 250, i % 250 + 1),
            outbound: outbound.then(|| (format!("acct{}", i % accounts), format!("0309018{:04}", i % 10_000))),
        };
        let mut rates = [Vec::new(), Vec::new()];
        for round in 1..=2 {
            // A-B, then B-A: every run leaves ~2 × CALLS sockets in TIME-WAIT, which
            // makes the next run's connects dearer; alternating cancels that out.
            let mut order = [(0, null_addr), (1, addr)];
            if round == 2 {
                order.reverse();
            }
            for (which, target) in order {
                let cpu_before = daemon.cpu_seconds();
                let run = drive(target, calls, concurrency, from_1000).await;
                let cpu = daemon.cpu_seconds() - cpu_before;
                let name = ["null server (GET + SET)", "extsecurity serve"][which];
                let cpu_note = match which {
                    1 => format!(
                        "; daemon CPU {:.0} µs per call, peak RSS {} MiB",
                        cpu / calls as f64 * 1e6,
                        daemon.peak_rss_kib() / 1024
                    ),
                    _ => String::new(),
                };
                println!("round {round}: {name:26} {}{cpu_note}", run.summary());
                rates[which].push(run.rate());
            }
        }
        let ratio: Vec<String> = rates[1]
            .iter()
            .zip(&rates[0])
            .map(|(ours, null)| format!("{:.0}%", 100.0 * ours / null))
            .collect();
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        println!(
            "extsecurity serve / null server: {:.0}% over both rounds (per round {})",
            100.0 * sum(&rates[1]) / sum(&rates[0]),
            ratio.join(", ")
        );
        if outbound {
            println!(
                "daemon RSS: {} MiB fresh, {} MiB peak with {} accounts remembered (fraud state file {} KiB)",
                fresh_rss / 1024,
                daemon.peak_rss_kib() / 1024,
                metric(metrics_port, "extsecurity_fraud_accounts "),
                std::fs::metadata(dir.path().join(format!("fraud-{port}.state"))).map_or(0, |m| m.len() / 1024)
            );
        }
        drop(daemon);
        if flood == 0 {
            return;
        }
        let daemon = start(flood_port, true);
        let addr: SocketAddr = format!("127.0.0.1:{flood_port}").parse().unwrap();
        wait_listening(addr).await;
        let run = drive(addr, flood, concurrency, |i| Caller {
            ip: std::net::Ipv4Addr::from(0x0b00_0000u32 + i as u32).to_string(),
            outbound: None,
        })
        .await;
        let tracked = metric(metrics_port, "extsecurity_tracked_ips ");
        println!(
            "flood: {flood} calls from {flood} distinct addresses: {}; tracked addresses {tracked}; daemon peak RSS {} MiB",
            run.summary(),
            daemon.peak_rss_kib() / 1024
        );
    });
}

async fn wait_listening(addr: SocketAddr) {
    while TcpStream::connect(addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one run measured.
struct Run {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Calls in which a command waited in our buffer for the socket to wake.
    stalled: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn summary(&self) -> String {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let pct = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
        format!(
            "{:>7.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, {} stalled calls",
            self.rate(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.stalled
        )
    }
}

/// Who makes a call: its address, and for an outbound check its account and number.
struct Caller {
    ip: String,
    outbound: Option<(String, String)>,
}

/// Runs `calls` FastAGI calls, `concurrency` at a time; the i-th call is `ip(i)`'s.
async fn drive(
    addr: SocketAddr,
    calls: usize,
    concurrency: usize,
    ip: impl Fn(usize) -> Caller + Send + Sync + 'static,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let ip = Arc::new(ip);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, ip) = (next.clone(), ip.clone());
            tokio::spawn(async move {
                let (mut latencies, mut stalled) = (Vec::new(), 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls {
                        return (latencies, stalled);
                    }
                    let t = Instant::now();
                    stalled += usize::from(one_call(addr, &ip(i)).await);
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut run = Run {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(calls),
        stalled: 0,
    };
    for w in workers {
        let (latencies, stalled) = w.await.unwrap();
        run.latencies.extend(latencies);
        run.stalled += stalled;
    }
    run.elapsed = start.elapsed();
    run
}

const CHECK_HEAD: &str =
    "agi_network: yes\nagi_network_script: check\nagi_request: agi://127.0.0.1/check\n";
const BLOCK: &str = "agi_channel: PJSIP/anonymous-00000002\n\
     agi_language: en\nagi_type: PJSIP\nagi_uniqueid: 1795633497.2\nagi_version: 20.20.1\nagi_callerid: 5551234\n\
     agi_calleridname: Alice\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\n\
     agi_dnid: 4915112345678\nagi_rdnis: unknown\nagi_context: default\nagi_extension: 4915112345678\nagi_priority: 1\n\
     agi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 139665663317696\n\n";

/// One call as Asterisk makes it and reads it; true when a command had to wait for the
/// socket to wake although it had already arrived (design.md §3a).
async fn one_call(addr: SocketAddr, caller: &Caller) -> bool {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    // The shipped `[extsec-outbound]`: its values in the URL, the number as argument 1.
    let request = match &caller.outbound {
        Some((account, number)) => {
            let script = format!(
                "outbound?key=&address={}:5060&account={account}&live=1",
                caller.ip
            );
            format!(
                "agi_network: yes\nagi_network_script: {script}\nagi_request: agi://127.0.0.1/{script}\n{}",
                BLOCK.replace("\n\n", &format!("\nagi_arg_1: {number}\n\n"))
            )
        }
        None => format!("{CHECK_HEAD}{BLOCK}"),
    };
    stream.write_all(request.as_bytes()).await.unwrap();
    let (mut buffer, mut eof, mut stalled) = (Vec::new(), false, false);
    let mut chunk = [0u8; 4096];
    loop {
        // ast_waitfor_nandfds: wake on the socket only, never on what is buffered.
        if !buffer.is_empty() && !eof {
            stalled = true;
        }
        if !eof {
            let _ = stream.readable().await;
        }
        // fgets: one line from the buffer, reading only while it has none.
        let line = loop {
            if let Some(at) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=at).collect();
                break Some(line);
            }
            if eof {
                break None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => eof = true,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let Some(line) = line else {
            return stalled;
        };
        let command = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if stream
            .write_all(reply(&command, caller).as_bytes())
            .await
            .is_err()
        {
            return stalled;
        }
    }
}

/// Asterisk's answer to one command (design.md §3: `200 result=1 (value)`, MSet's 0).
fn reply(command: &str, caller: &Caller) -> String {
    if let Some(arg) = command
        .strip_prefix("GET FULL VARIABLE \"")
        .and_then(|a| a.strip_suffix('"'))
    {
        format!("200 result=1 ({})\n", substitute(arg, caller))
    } else if command.starts_with("EXEC ") {
        "200 result=0\n".to_string()
    } else {
        "200 result=1\n".to_string()
    }
}

fn substitute(arg: &str, caller: &Caller) -> String {
    let (account, number) = caller.outbound.clone().unwrap_or_default();
    // `${SET(NAME=value)}` reads as its value.
    let mut arg = arg.to_string();
    while let Some(at) = arg.find("${SET(") {
        let Some(end) = arg[at..].find(")}").map(|e| at + e) else {
            break;
        };
        let value = arg[at + 6..end]
            .split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        arg.replace_range(at..end + 2, &value);
    }
    arg.replace(
        "${CHANNEL(pjsip,remote_addr)}",
        &format!("{}:5060", caller.ip),
    )
    .replace("${GROUP(extsec-outbound)}", &account)
    .replace("${ARG1}", &number)
    .replace("${GROUP_COUNT(@extsec-outbound)}", "1")
    .replace("${CALLERID(num)}", "5551234")
    .replace("${CALLERID(name)}", "Alice")
    .replace("${EXTEN}", "4915112345678")
    .replace("${PJSIP_HEADER(read,User-Agent)}", "Yealink SIP-T46S")
    .replace("${CHANNEL(endpoint)}", "guest")
}

/// The least a FastAGI checker can do: read the block, ask one variable, set one, one
/// command at a time. No rules, no log: the yardstick for the daemon's own cost.
async fn null_server(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\n" {
                    break;
                }
            }
            for command in [
                "GET FULL VARIABLE \"${CHANNEL(pjsip,remote_addr)}\"\n",
                "SET VARIABLE EXTSEC_RESULT \"OK\"\n",
            ] {
                line.clear();
                if write.write_all(command.as_bytes()).await.is_err()
                    || read.read_line(&mut line).await.unwrap_or(0) == 0
                {
                    return;
                }
            }
        });
    }
}
