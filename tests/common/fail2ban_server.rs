//! A real `fail2ban-server` (Debian's fail2ban 1.0.2) in the foreground with its own
//! socket, pid file, database and log under a temporary folder, loading the shipped
//! jail and filter unchanged. A `jail.d/zz-test.local` overrides only what a test must:
//! `enabled` (the jail ships disabled), `logpath`, `backend = polling`, and the action.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo;

/// fail2ban-server running on a private configuration until dropped.
pub struct Fail2ban {
    dir: PathBuf,
    server: Child,
}

impl Fail2ban {
    /// Starts fail2ban on `dir` reading `logpath`. `action` is the override line, in which
    /// `{dir}` stands for `dir`; `netns` runs the server in that network namespace.
    pub fn start(dir: &Path, logpath: &Path, action: &str, netns: Option<&str>) -> Fail2ban {
        let conf = dir.join("conf");
        for sub in ["filter.d", "action.d", "jail.d"] {
            std::fs::create_dir_all(conf.join(sub)).unwrap();
        }
        // The distribution's base files, which the shipped jail builds on.
        for file in [
            "fail2ban.conf",
            "jail.conf",
            "paths-common.conf",
            "paths-debian.conf",
        ] {
            std::fs::copy(Path::new("/etc/fail2ban").join(file), conf.join(file)).unwrap();
        }
        std::fs::copy(
            "/etc/fail2ban/filter.d/common.conf",
            conf.join("filter.d/common.conf"),
        )
        .unwrap();
        for action in ["dummy.conf", "nftables.conf", "nftables-multiport.conf"] {
            std::fs::copy(
                Path::new("/etc/fail2ban/action.d").join(action),
                conf.join("action.d").join(action),
            )
            .unwrap();
        }
        // Ours, unchanged.
        std::fs::copy(
            repo().join("dist/fail2ban/filter.d/extsecurity.conf"),
            conf.join("filter.d/extsecurity.conf"),
        )
        .unwrap();
        std::fs::copy(
            repo().join("dist/fail2ban/jail.d/extsecurity.conf"),
            conf.join("jail.d/extsecurity.conf"),
        )
        .unwrap();
        std::fs::write(
            conf.join("fail2ban.local"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = {}\n",
                dir.join("fail2ban.log").display(),
                dir.join("fail2ban.sock").display(),
                dir.join("fail2ban.pid").display(),
                dir.join("fail2ban.sqlite3").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("jail.d/zz-test.local"),
            format!(
                "[extsecurity]\nenabled = true\nlogpath = {}\nbackend = polling\n{}\n",
                logpath.display(),
                action.replace("{dir}", &dir.display().to_string())
            ),
        )
        .unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "fail2ban-server"]);
                c
            }
            None => Command::new("fail2ban-server"),
        };
        let server = command
            .args(["-f", "-x", "-c"])
            .arg(&conf)
            .args(["-s"])
            .arg(dir.join("fail2ban.sock"))
            .arg("-p")
            .arg(dir.join("fail2ban.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fail2ban-server must be installed (.ci/run installs Debian's fail2ban)");
        let f = Fail2ban {
            dir: dir.to_path_buf(),
            server,
        };
        f.wait_for(
            |f| f.client(&["status", "extsecurity"]).is_some(),
            "the jail to start",
        );
        f
    }

    pub fn client(&self, args: &[&str]) -> Option<String> {
        client_at(&self.dir.join("fail2ban.sock"), args)
    }

    pub fn banned(&self) -> Vec<String> {
        let out = self
            .client(&["get", "extsecurity", "banned"])
            .unwrap_or_default();
        // A Python list: ['203.0.113.66'].
        out.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn wait_for(&self, done: impl Fn(&Fail2ban) -> bool, what: &str) {
        wait_while(what, &self.dir.join("fail2ban.log"), || done(self));
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        stop(&self.dir.join("fail2ban.sock"), &mut self.server);
    }
}

/// `fail2ban-client -s socket args…`: its output, if it succeeded.
fn client_at(socket: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("fail2ban-client")
        .arg("-s")
        .arg(socket)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits up to 30 s for `done`, or fails showing fail2ban's `log`.
fn wait_while(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}; fail2ban's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks the server on `socket` to stop, and kills it if it has not within 5 s.
fn stop(socket: &Path, server: &mut Child) {
    let _ = client_at(socket, &["stop"]);
    let start = Instant::now();
    while server.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// fail2ban as a stock Debian 12 runs it, with our package installed and the jail
/// enabled as the README says — nothing overridden. Debian's `/etc/fail2ban` whole,
/// with the package's filter and jail added and `jail.d/extsecurity.local` holding the
/// README's two lines; its default paths (`/var/log`, `/run/fail2ban`,
/// `/var/lib/fail2ban`) are folders of the test, bind-mounted over the real ones in a
/// private mount namespace of the server's own, inside network namespace `netns`.
///
/// One thing is not stock: an empty `/var/log/auth.log`. Debian 12 installs no syslog
/// daemon, and its fail2ban then refuses to start at all ("Have not found any log file
/// for sshd jail"), our jail or not; an administrator who runs fail2ban has rsyslog
/// (or set the sshd jail's backend to systemd), and so has this test.
pub struct StockFail2ban {
    pub root: PathBuf,
    server: Child,
}

impl StockFail2ban {
    /// Starts it in `netns`, the log it reads at `root/var-log/asterisk/...`.
    pub fn start(root: &Path, netns: &str) -> StockFail2ban {
        let etc = root.join("etc-fail2ban");
        std::fs::create_dir_all(root).unwrap();
        let status = Command::new("cp")
            .args(["-a", "/etc/fail2ban"])
            .arg(&etc)
            .status()
            .unwrap();
        assert!(status.success());
        // What the package installs, as the package installs it.
        std::fs::copy(
            repo().join("dist/fail2ban/filter.d/extsecurity.conf"),
            etc.join("filter.d/extsecurity.conf"),
        )
        .unwrap();
        std::fs::copy(
            repo().join("dist/fail2ban/jail.d/extsecurity.conf"),
            etc.join("jail.d/extsecurity.conf"),
        )
        .unwrap();
        // README, "fail2ban": enable it in jail.d/extsecurity.local.
        std::fs::write(
            etc.join("jail.d/extsecurity.local"),
            "[extsecurity]\nenabled = true\n",
        )
        .unwrap();
        let (log, run, lib) = (root.join("var-log"), root.join("run"), root.join("var-lib"));
        for dir in [log.join("asterisk"), run.clone(), lib.clone()] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(log.join("auth.log"), "").unwrap();
        // The empty alert log the package's postinst makes: fail2ban refuses to start
        // while a jail's log is missing.
        std::fs::write(log.join("asterisk/inbound_extsecurity.log"), "").unwrap();
        for target in ["/run/fail2ban", "/var/lib/fail2ban"] {
            std::fs::create_dir_all(target).unwrap();
        }
        let script = format!(
            "mount --bind {etc:?} /etc/fail2ban && mount --bind {log:?} /var/log && \
             mount --bind {run:?} /run/fail2ban && mount --bind {lib:?} /var/lib/fail2ban && \
             exec fail2ban-server -f -x"
        );
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fail2ban-server must be installed (.ci/run installs Debian's fail2ban)");
        let f = StockFail2ban {
            root: root.to_path_buf(),
            server,
        };
        f.wait_for(
            |f| f.client(&["status", "extsecurity"]).is_some(),
            "the jail to start",
        );
        f
    }

    /// Where the jail's `logpath` (`/var/log/asterisk/inbound_extsecurity.log`) is seen
    /// from outside the server's mount namespace.
    pub fn alert_log(&self) -> PathBuf {
        self.root.join("var-log/asterisk/inbound_extsecurity.log")
    }

    /// `fail2ban-client` on the stock socket, seen from outside.
    pub fn client(&self, args: &[&str]) -> Option<String> {
        client_at(&self.root.join("run/fail2ban.sock"), args)
    }

    /// What fail2ban logged (stock `logtarget = /var/log/fail2ban.log`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("var-log/fail2ban.log")).unwrap_or_default()
    }

    pub fn wait_for(&self, done: impl Fn(&StockFail2ban) -> bool, what: &str) {
        wait_while(what, &self.root.join("var-log/fail2ban.log"), || done(self));
    }
}

impl Drop for StockFail2ban {
    fn drop(&mut self) {
        stop(&self.root.join("run/fail2ban.sock"), &mut self.server);
    }
}
