//! A real `fail2ban-server` (Debian's fail2ban 1.0.2) in the foreground with its own
//! socket, pid file, database and log target under a temporary folder, loading the
//! shipped jail and filter unchanged. A `jail.d/zz-test.local` overrides what a test
//! must: `enabled` (the jail ships disabled), `logpath`, and the action (fail2ban's own
//! `dummy`, which records bans in a file instead of touching the firewall).
//! The log it reads is written by the real binary.

use crate::common;

use std::time::Duration;

use common::Sandbox;
use common::fail2ban_server::Fail2ban;

const ATTACKER: &str = "203.0.113.66";
const TRUNK: &str = "198.51.100.7";
const CUSTOMER: &str = "192.0.2.44";

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
    let f2b = Fail2ban::start(
        s.dir.path(),
        &s.log,
        "action = dummy[target=\"{dir}/bans\"]",
        None,
    );
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

/// Issue 21: `extsecurity ban ADDR` writes the line the jail bans on; `extsecurity
/// unban` lifts fail2ban's ban itself over its socket (before, fail2ban kept it and,
/// reading the log again, would ban again), for an address and for every banned
/// address in a range, and says so in each place.
#[test]
fn a_ban_by_hand_reaches_the_jail_and_unban_lifts_fail2bans_ban() {
    let s = Sandbox::new();
    std::fs::write(&s.log, "").unwrap();
    let f2b = Fail2ban::start(
        s.dir.path(),
        &s.log,
        "action = dummy[target=\"{dir}/bans\"]",
        None,
    );
    let socket = s.dir.path().join("fail2ban.sock");
    let run = |args: &[&str]| {
        let out = s.command().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for ip in ["203.0.113.91", "203.0.113.92", "203.0.113.200"] {
        let (code, out) = run(&["ban", ip, "--reason", "by hand"]);
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains("not banned in the kernel: [nftables] is off"),
            "{out}"
        );
    }
    f2b.wait_for(|f| f.banned().len() == 3, "the three bans by hand");

    let (code, out) = run(&[
        "unban",
        "203.0.113.91",
        "--fail2ban-socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("203.0.113.91: fail2ban's ban lifted (jail extsecurity)"),
        "{out}"
    );
    assert!(!f2b.banned().contains(&"203.0.113.91".to_string()));

    let (_, out) = run(&[
        "unban",
        "203.0.113.91",
        "--fail2ban-socket",
        socket.to_str().unwrap(),
    ]);
    assert!(
        out.contains("203.0.113.91: not banned by fail2ban (jail extsecurity)"),
        "{out}"
    );

    let (code, out) = run(&[
        "unban",
        "203.0.113.0/25",
        "--fail2ban-socket",
        socket.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("203.0.113.92: fail2ban's ban lifted"), "{out}");
    assert!(!out.contains("203.0.113.200"), "outside the range: {out}");
    assert_eq!(f2b.banned(), ["203.0.113.200"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        f2b.banned(),
        ["203.0.113.200"],
        "not banned again from the log"
    );
}
