//! Helpers shared by the end-to-end tests: a sandbox with its own config and log, the
//! real binary, Asterisk's substitution of dialplan variables, and the real fail2ban.
#![allow(dead_code)]

pub mod agi_peer;
pub mod ami_peer;
pub mod asterisk;
pub mod crowdsec;
pub mod fail2ban_server;
pub mod fleet;
pub mod lapi_proxy;
pub mod netns;
pub mod users;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

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
        // `@DIR@` stands for this folder, for paths that must be absolute
        // (`crowdsec.state_file`).
        let extra = extra.replace("@DIR@", dir.path().to_str().unwrap());
        let extra = with_own_control_socket(&extra, dir.path());
        // Each daemon's bans' history of its own: tests ban the same addresses.
        let extra = extra.replacen(
            "[nftables]\n",
            &format!(
                "[nftables]\nstate_file = {:?}\n",
                dir.path().join("bans.state")
            ),
            1,
        );
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

    /// `extsecurity agi` with its stdin and stdout piped, as Asterisk starts it.
    pub fn spawn_agi(&self) -> std::process::Child {
        self.command()
            .arg("agi")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start extsecurity agi")
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

/// `extra` with `daemon.control_socket` in `dir`, unless it sets one: one daemon per
/// control socket, and tests run many daemons at once.
pub fn with_own_control_socket(extra: &str, dir: &Path) -> String {
    if extra.contains("control_socket") {
        return extra.to_string();
    }
    let line = format!("control_socket = {:?}\n", dir.join("control.sock"));
    match extra.find("[daemon]\n") {
        Some(at) => {
            let at = at + "[daemon]\n".len();
            format!("{}{line}{}", &extra[..at], &extra[at..])
        }
        None => format!("{extra}\n[daemon]\n{line}"),
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
        wait_for("the daemon to start", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        ServeProcess { child, port }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `extsecurity serve` with the sandbox's config and its stderr kept in the sandbox;
/// killed when dropped.
pub struct LoggedServe {
    pub sandbox: Sandbox,
    pub child: Child,
}

impl LoggedServe {
    /// Starts it and waits until `127.0.0.1:ready` accepts: the FastAGI port, or the
    /// metrics port when FastAGI is off.
    pub fn start(sandbox: Sandbox, ready: u16) -> LoggedServe {
        let serve = LoggedServe::start_unready(sandbox);
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", ready)).is_ok()
            }),
            "the daemon did not start: {}",
            serve.stderr()
        );
        serve
    }

    /// Starts it without waiting for anything.
    pub fn start_unready(sandbox: Sandbox) -> LoggedServe {
        let stderr = std::fs::File::create(sandbox.dir.path().join("stderr")).unwrap();
        let child = sandbox
            .command()
            .arg("serve")
            .stderr(stderr)
            .spawn()
            .unwrap();
        LoggedServe { sandbox, child }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.sandbox.dir.path().join("stderr")).unwrap_or_default()
    }

    /// SIGTERM, and its exit status (at most 30 s later).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same sandbox (its stderr appended to), once it exited.
    pub fn restart(&mut self, ready: u16) {
        let stderr = std::fs::File::options()
            .append(true)
            .open(self.sandbox.dir.path().join("stderr"))
            .unwrap();
        self.child = self
            .sandbox
            .command()
            .arg("serve")
            .stderr(stderr)
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", ready)).is_ok()
            }),
            "the daemon did not start again: {}",
            self.stderr()
        );
    }
}

impl Drop for LoggedServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of the daemon's metric lines whose name starts with `name` (a whole name,
/// or `name{` for every label), from its endpoint on `127.0.0.1:port`.
pub fn metric(port: u16, name: &str) -> f64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Whether `done` became true within `limit`.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    true
}

/// Every file under `dir` (itself, when it is a file), recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        match at.is_dir() {
            true => stack.extend(std::fs::read_dir(&at).unwrap().map(|e| e.unwrap().path())),
            false => out.push(at),
        }
    }
    out.sort();
    out
}

/// One heavy test at a time across the whole suite (a PostgreSQL and a LAPI, a fleet,
/// 50 writers under logrotate): every test is in one binary, and two of these on two
/// cores would measure the machine, not the product.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits for `done`, up to `limit`, or fails the test naming `what`.
pub fn wait_for(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    assert!(wait_until(limit, done), "timed out waiting for {what}");
}

/// CLOCK_MONOTONIC in nanoseconds: what every network namespace shares and Python's
/// `time.monotonic_ns()` reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A CA and a certificate it signed for `pbx.example` (and 127.0.0.1), made with
/// Debian's openssl in `dir` as Asterisk's `contrib/scripts/ast_tls_cert` makes them:
/// `(ca.crt, asterisk.crt, asterisk.key)`.
pub fn ast_tls_cert(dir: &std::path::Path, name: &str) -> [std::path::PathBuf; 3] {
    let path = |file: &str| dir.join(format!("{name}-{file}"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed (.ci/run installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let [ca, ca_key, crt, key, csr, ext] = [
        "ca.crt",
        "ca.key",
        "asterisk.crt",
        "asterisk.key",
        "asterisk.csr",
        "ext",
    ]
    .map(|f| path(f).to_str().unwrap().to_string());
    std::fs::write(&ext, "subjectAltName=DNS:pbx.example,IP:127.0.0.1\n").unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=Asterisk CA",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new"][..],
            &ec,
            &["-subj", "/CN=pbx.example", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    [path("ca.crt"), path("asterisk.crt"), path("asterisk.key")]
}
