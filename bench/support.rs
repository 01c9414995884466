//! What the benchmarks share: settings from the environment, the release build, the
//! daemon as its own process, and its metrics endpoint.

use std::io::{Read, Write};
use std::process::{Child, Command};

/// `name` from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the release binary and returns its path: benchmarks measure what ships.
/// `BINARY=path` measures another build instead (an older commit, a variant), side by
/// side with the same load.
pub fn release_binary() -> String {
    if let Ok(path) = std::env::var("BINARY") {
        return path;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "extsecurity"])
        .current_dir(root)
        .status()
        .expect("cargo build");
    assert!(status.success());
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{root}/target"));
    format!("{target}/release/extsecurity")
}

/// The sum of the metric lines whose name starts with `name`, from the daemon's
/// endpoint on `127.0.0.1:port`; 0 while it does not answer.
pub fn metric(port: u16, name: &str) -> f64 {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The daemon's process; killed when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// `binary serve --config config`, logging warnings and worse to the bench's
    /// stderr; with `ready`, returns once that loopback port accepts.
    pub fn serve(binary: &str, config: &std::path::Path, ready: Option<u16>) -> Daemon {
        let daemon = Daemon(
            Command::new(binary)
                .args(["serve", "--config"])
                .arg(config)
                .env("EXTSECURITY_LOG", "warn")
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .expect("start the daemon"),
        );
        if let Some(port) = ready {
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "the daemon did not listen on {port}"
                );
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        }
        daemon
    }

    /// User plus system CPU time the daemon used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let ticks = field(11) + field(12);
        if std::env::var_os("SHOW_CPU_SPLIT").is_some() {
            eprintln!(
                "daemon user {} ticks, system {} ticks",
                field(11),
                field(12)
            );
        }
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// The daemon's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
