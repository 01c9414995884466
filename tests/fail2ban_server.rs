//! A real `fail2ban-server` (Debian's fail2ban 1.0.2) in the foreground with its own
//! socket, pid file, database and log target under a temporary folder, loading the
//! shipped jail and filter unchanged. A `jail.d/zz-test.local` overrides what a test
//! must: `enabled` (the jail ships disabled), `logpath`, and the action (fail2ban's own
//! `dummy`, which records bans in a file instead of touching the firewall).
//! The log it reads is written by the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, repo};

const ATTACKER: &str = "203.0.113.66";
const TRUNK: &str = "198.51.100.7";
const CUSTOMER: &str = "192.0.2.44";

/// fail2ban-server running on a private configuration until dropped.
struct Fail2ban {
    dir: PathBuf,
    server: Child,
}

impl Fail2ban {
    fn start(dir: &Path, logpath: &Path) -> Fail2ban {
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
        std::fs::copy(
            "/etc/fail2ban/action.d/dummy.conf",
            conf.join("action.d/dummy.conf"),
        )
        .unwrap();
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
                "[extsecurity]\nenabled = true\nlogpath = {}\nbackend = polling\naction = dummy[target=\"{}\"]\n",
                logpath.display(),
                dir.join("bans").display()
            ),
        )
        .unwrap();
        let server = Command::new("fail2ban-server")
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

    fn client(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("fail2ban-client")
            .arg("-s")
            .arg(self.dir.join("fail2ban.sock"))
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn banned(&self) -> Vec<String> {
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

    fn wait_for(&self, done: impl Fn(&Fail2ban) -> bool, what: &str) {
        let start = Instant::now();
        while !done(self) {
            let log = std::fs::read_to_string(self.dir.join("fail2ban.log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "waited 20 s for {what}; fail2ban's log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.client(&["stop"]);
        let start = Instant::now();
        while self.server.try_wait().ok().flatten().is_none()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// One System()-mode call through the real binary.
fn call(sandbox: &Sandbox, ip: &str, exten: &str, user_agent: &str) {
    let out = sandbox
        .command()
        .arg("check")
        .arg(format!("--ip={ip}"))
        .arg(format!("--exten-b64={}", b64(exten)))
        .arg(format!("--callerid-num-b64={}", b64("5551234")))
        .arg(format!("--user-agent-b64={}", b64(user_agent)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exactly_the_attacker_is_banned_and_can_be_unbanned() {
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\ntrusted_networks = ['{TRUNK}/32']\n"
    ));
    std::fs::write(&s.log, "").unwrap();
    let f2b = Fail2ban::start(s.dir.path(), &s.log);
    assert!(f2b.banned().is_empty());
    // The shipped jail's settings are the ones in force.
    for (key, value) in [
        ("maxretry", "1"),
        ("findtime", "3600"),
        ("bantime", "86400"),
    ] {
        assert_eq!(
            f2b.client(&["get", "extsecurity", key])
                .map(|v| v.trim().to_string()),
            Some(value.into()),
            "{key}"
        );
    }

    // A trusted trunk sending scanner traffic; a customer whose accepted calls carry
    // forged alert text naming the trunk and a third party; then one scanner call.
    call(&s, TRUNK, "100", "friendly-scanner");
    call(
        &s,
        CUSTOMER,
        "4915112345678",
        &format!("ERROR ip={TRUNK} reason=x"),
    );
    call(
        &s,
        CUSTOMER,
        "4915112345678",
        "x\n2026-11-24 19:08:52.123 ERROR ip=192.0.2.99 reason=forged",
    );
    call(&s, ATTACKER, "100", "sipvicious");

    f2b.wait_for(|f| !f.banned().is_empty(), "the attacker's ban");
    // Give fail2ban time to read everything, then check nobody else was banned.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(f2b.banned(), [ATTACKER]);
    let bans = std::fs::read_to_string(s.dir.path().join("bans")).unwrap();
    assert!(bans.contains(&format!("+{ATTACKER}")), "{bans}");
    for innocent in [TRUNK, CUSTOMER, "192.0.2.99"] {
        assert!(!bans.contains(innocent), "{innocent} banned: {bans}");
    }

    assert_eq!(
        f2b.client(&["set", "extsecurity", "unbanip", ATTACKER])
            .map(|o| o.trim().to_string()),
        Some("1".into())
    );
    f2b.wait_for(|f| f.banned().is_empty(), "the unban");
    let bans = std::fs::read_to_string(s.dir.path().join("bans")).unwrap();
    assert!(bans.contains(&format!("-{ATTACKER}")), "{bans}");
}
