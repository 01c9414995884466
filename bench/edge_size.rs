//! The edge's lists at full size (issue 29): a country database the size of DB-IP Lite
//! country (600,000 networks in 240 countries, written by MaxMind's own writer,
//! `tests/fixtures/edge/make-country-db.pl`) and a feed of 100,000 addresses, loaded by
//! `extsecurity serve` in a network namespace of its own. Reported from the daemon's
//! own log lines: the database read, each set filled; and its peak memory (VmHWM),
//! side by side with the same daemon without lists. Needs root, nft and
//! libmaxmind-db-writer-perl.
//!
//!     cargo bench --bench edge_size
//!     NETWORKS=300000 FEED=50000 ROUNDS=3 cargo bench --bench edge_size

#[allow(dead_code)]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{env_usize, release_binary};

/// A small deterministic generator: the same database every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn main() {
    let networks = env_usize("NETWORKS", 600_000);
    let feed_size = env_usize("FEED", 100_000);
    let rounds = env_usize("ROUNDS", 3);
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let started = Instant::now();
    write_db(d, networks);
    write_feed(d, feed_size);
    println!(
        "generated: {networks} networks ({} bytes of database), {feed_size} feed addresses, in {:.1} s",
        std::fs::metadata(d.join("country.mmdb")).unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    let ns = format!("xsbench{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success(),
        "needs root"
    );
    let _ = Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status();
    for (name, lists) in [
        ("no lists", ""),
        (
            "allow 3 countries + feed",
            "allow_countries = ['AA', 'BB', 'CC']\n",
        ),
        (
            "deny 3 countries + feed",
            "deny_countries = ['AA', 'BB', 'CC']\n",
        ),
    ] {
        for round in 0..rounds {
            let line = measure(&binary, d, &ns, lists);
            println!("{name:<26} round {round}: {line}");
        }
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
}

/// One daemon: started, given 15 s to load, its log lines and memory read, stopped.
fn measure(binary: &str, d: &Path, ns: &str, lists: &str) -> String {
    let with_lists = !lists.is_empty();
    let config = d.join("bench.toml");
    let feeds = d.join("feeds");
    let _ = std::fs::remove_dir_all(&feeds);
    std::fs::write(
        &config,
        format!(
            "tarpit_seconds = 0\nlog_file = '{d}/alerts.log'\n[daemon]\ncontrol_socket = '{d}/control.sock'\n\
             [nftables]\nenabled = true\nports = [5060]\nstate_file = '{d}/bans.state'\n\
             [edge]\nenabled = true\n{lists}{extra}",
            d = d.display(),
            extra = if with_lists {
                format!("country_file = '{d}/country.mmdb'\nfeeds = ['file://{d}/feed.txt']\nfeed_dir = '{d}/feeds'\n", d = d.display())
            } else {
                String::new()
            }
        ),
    )
    .unwrap();
    let err = d.join("serve.err");
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, binary, "--config"])
        .arg(&config)
        .arg("serve")
        .stderr(std::fs::File::create(&err).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |log: &str| {
        !with_lists
            || (log.contains("country sets filled") && log.matches("feed sets filled").count() >= 2)
    };
    while Instant::now() < deadline && !done(&std::fs::read_to_string(&err).unwrap_or_default()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(if with_lists { 200 } else { 2000 }));
    // `ip netns exec` execs the daemon: the child is it.
    let pid = child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "delete",
            "table",
            "inet",
            "extsecurity",
        ])
        .status();
    let log = std::fs::read_to_string(&err).unwrap_or_default();
    let mut line = format!(
        "peak memory {} MiB",
        hwm.parse::<f64>()
            .map(|k| format!("{:.1}", k / 1024.0))
            .unwrap_or(hwm)
    );
    for (what, marker) in [
        ("database read", "read in "),
        ("country sets filled", "country sets filled with "),
        ("feed sets filled", "feed sets filled with "),
    ] {
        if let Some(l) = log.lines().rfind(|l| l.contains(marker)) {
            let ms = l.rsplit(" in ").next().unwrap_or("").trim();
            let entries = l
                .split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("");
            let _ = write!(
                line,
                "; {what}: {ms}{}",
                if marker == "read in " {
                    String::new()
                } else {
                    format!(" ({entries} entries)")
                }
            );
        }
    }
    line
}

/// `networks` IPv4 and IPv6 networks of 240 made-up countries, neighbours often in
/// the same country as real allocations are, gaps between them (unallocated space).
fn write_db(d: &Path, networks: usize) {
    let mut rng = Lcg(7);
    let codes: Vec<String> = (b'A'..=b'Z')
        .flat_map(|a| (b'A'..=b'J').map(move |b| format!("{}{}", a as char, b as char)))
        .take(240)
        .collect();
    let mut text = String::new();
    let (v4, v6) = (networks * 3 / 4, networks / 4);
    let mut at: u64 = 1 << 24;
    let mut cc = 0;
    let (mut written, mut i) = (0, 0);
    while written < v4 && i < 4 * v4 {
        i += 1;
        let bits = 8 + rng.next(5) as u32; // /24 to /20
        let size = 1u64 << bits;
        at = at.div_ceil(size) * size;
        let (start, end) = (at, at + size - 1);
        at += size * (1 + rng.next(2));
        if end >= 0xE000_0000 {
            break;
        }
        let a = start as u32;
        let private = [
            (0x0A00_0000u32, 8),
            (0x6440_0000, 10),
            (0x7F00_0000, 8),
            (0xA9FE_0000, 16),
            (0xAC10_0000, 12),
            (0xC0A8_0000, 16),
        ]
        .iter()
        .any(|&(n, p)| {
            (a >> (32 - p)) == (n >> (32 - p))
                || ((n >> bits) == (a >> bits) && p as u32 >= 32 - bits)
        });
        if private {
            continue;
        }
        if rng.next(10) >= 3 {
            cc = rng.next(240) as usize;
        }
        let _ = writeln!(
            text,
            "{}/{} {}",
            std::net::Ipv4Addr::from(a),
            32 - bits,
            codes[cc]
        );
        written += 1;
    }
    for j in 0..v6 as u128 {
        let net = std::net::Ipv6Addr::from((0x2a00u128 << 112) | (j << 80));
        let _ = writeln!(text, "{net}/48 {}", codes[rng.next(240) as usize]);
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edge/make-country-db.pl");
    let mut child = Command::new("perl")
        .arg(script)
        .arg(d.join("country.mmdb"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("perl");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "libmaxmind-db-writer-perl is needed"
    );
}

fn write_feed(d: &Path, size: usize) {
    let mut rng = Lcg(5);
    let mut text = String::from("# a feed of single addresses, as blocklist.de's\n");
    for _ in 0..size {
        let a = (1u64 << 24) + rng.next(0xDF00_0000 - (1 << 24));
        let _ = writeln!(text, "{}", std::net::Ipv4Addr::from(a as u32));
    }
    std::fs::write(d.join("feed.txt"), text).unwrap();
}
