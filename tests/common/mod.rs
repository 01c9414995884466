//! Helpers shared by the end-to-end tests: a sandbox with its own config and log, the
//! real binary, Asterisk's substitution of dialplan variables, and the real fail2ban.
#![allow(dead_code)]

pub mod agi_peer;
pub mod ami_peer;
pub mod asterisk;
pub mod crowdsec;
pub mod fail2ban_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, as cargo built it.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_extsecurity")
}

/// The repository root, where `dist/` lives.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary folder with a config whose log lives inside it and whose tarpit is off.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::with_config("tarpit_seconds = 0\n")
    }

    /// `extra` is appended to a config that sets only `log_file`.
    pub fn with_config(extra: &str) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("inbound_extsecurity.log");
        let config = dir.path().join("extsecurity.toml");
        std::fs::write(&config, format!("log_file = {:?}\n{extra}", log)).unwrap();
        Sandbox { dir, config, log }
    }

    /// The binary with this sandbox's config in the environment, as Asterisk would
    /// inherit it, and the sandbox as working directory.
    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("EXTSECURITY_CONFIG", &self.config)
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run extsecurity")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log_text().lines().map(str::to_string).collect()
    }
}

/// The shipped fail2ban filter.
pub fn filter() -> PathBuf {
    repo().join("dist/fail2ban/filter.d/extsecurity.conf")
}

/// Runs the real `fail2ban-regex` with the shipped filter over `log` and returns, in
/// order, each matched line with the address fail2ban took from it.
pub fn fail2ban_matches(log: &Path) -> Vec<(String, String)> {
    let run = |out: &str| {
        let o = Command::new("fail2ban-regex")
            .arg(log)
            .arg(filter())
            .args(["--out", out])
            .output()
            .expect("fail2ban-regex must be installed (.ci/run installs Debian's fail2ban)");
        assert!(
            o.status.success(),
            "fail2ban-regex: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let ips = run("ip");
    let lines = run("msg");
    assert_eq!(
        ips.len(),
        lines.len(),
        "fail2ban-regex --out ip/msg disagree"
    );
    lines.into_iter().zip(ips).collect()
}

/// The `ip=` field of a call line.
pub fn ip_field(line: &str) -> Option<&str> {
    line.split(' ').find_map(|w| w.strip_prefix("ip="))
}

/// The level word of a log line (`INFO`, `ERROR`, `CRITICAL`): the third word, after
/// the date and time. Never searched for: a value may contain " ERROR ".
pub fn level(line: &str) -> &str {
    line.split(' ').nth(2).unwrap_or("")
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `extsecurity serve` as its own process on a free loopback port; killed when dropped.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub port: u16,
}

impl ServeProcess {
    /// Starts the daemon with the sandbox's config and waits until it accepts.
    pub fn start(sandbox: &Sandbox) -> ServeProcess {
        let port = free_port();
        let child = sandbox
            .command()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 10, "the daemon did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        ServeProcess { child, port }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
