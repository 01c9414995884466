//! The shipped and the seed's System() lines, run the way Asterisk runs them: the
//! dialplan string with `${…}` substituted as Asterisk does (design.md §3, §3a;
//! `common/asterisk.rs`), then a real `/bin/sh -c` on it, with hostile values in every
//! caller field. Then the real `fail2ban-regex` reads the log the binary wrote.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

use common::asterisk::{Channel, SystemLine, substitute, system_lines};
use common::{Sandbox, bin, fail2ban_matches, ip_field, level, repo};

const CALLER: &str = "203.0.113.5";
const TRUNK: &str = "198.51.100.7";

/// What an attacker puts in a caller field. `MARK` is replaced by a path that must
/// never come to exist.
fn hostile_values() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "x'$(touch MARK)'",
        "x\"$(touch MARK)\"",
        "`touch MARK`",
        "; touch MARK ;",
        "$(touch MARK)",
        "' ; touch MARK ; '",
        "O'Brien",
        "a\"b",
        "back\\slash",
        "a\\nb",
        "a\nb",
        "a\rb",
        "a\r\n2026-11-24 19:08:52.123 ERROR ip=198.51.100.7 reason=forged",
        "ERROR ip=198.51.100.7 reason=x",
        "x\", \"ip\": \"198.51.100.7",
        "x\", \"dest_exten\": \"4915112345678",
        "--ip=198.51.100.7",
        " --ip=198.51.100.7 ",
        "a\0b",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(b"\xff\xfe\xc3(".to_vec());
    v.push(vec![b'9'; 64 * 1024]);
    v
}

/// A plain call that passes every rule, from `CALLER`.
fn ordinary() -> Channel {
    Channel::ordinary(CALLER)
}

/// Every call `ordinary()` becomes with one hostile value in one field.
fn hostile_calls(mark: &Path) -> Vec<Channel> {
    let mut calls = Vec::new();
    for value in hostile_values() {
        let value = replace_mark(&value, mark);
        for field in 0..5 {
            let mut c = ordinary();
            let slot = match field {
                0 => &mut c.callerid_num,
                1 => &mut c.callerid_name,
                // A digit first, so that `_X.` would route it (design.md §3a).
                2 => {
                    c.exten = b"100".to_vec();
                    &mut c.exten
                }
                3 => &mut c.user_agent,
                _ => &mut c.peer_name,
            };
            slot.extend_from_slice(&value);
            calls.push(c);
        }
    }
    calls
}

fn replace_mark(value: &[u8], mark: &Path) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    if text.contains("MARK") {
        text.replace("MARK", &mark.display().to_string())
            .into_bytes()
    } else {
        value.to_vec()
    }
}

fn sh(sandbox: &Sandbox, command: &[u8]) -> Output {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(OsStr::from_bytes(command))
        .env("EXTSECURITY_CONFIG", &sandbox.config)
        .current_dir(sandbox.dir.path())
        .output()
        .expect("run /bin/sh")
}

/// The shipped System() lines (`dist/asterisk/extensions-system.conf`): the check for
/// a PJSIP channel, then for a chan_sip one.
fn shipped() -> Vec<SystemLine> {
    let conf =
        std::fs::read_to_string(repo().join("dist/asterisk/extensions-system.conf")).unwrap();
    let lines = system_lines(&conf, bin());
    let extens: Vec<&str> = lines.iter().map(|l| l.exten.as_str()).collect();
    assert_eq!(extens, ["PJSIP", "SIP"], "one check per channel driver");
    lines
}

/// The shipped line for one driver.
fn shipped_for(driver: &str) -> SystemLine {
    shipped().into_iter().find(|l| l.exten == driver).unwrap()
}

/// The seed's own lines (`tests/fixtures/seed-dialplan.conf`: never shipped, still run
/// on PBXs), as the three extensions it covers.
fn seed_lines() -> Vec<SystemLine> {
    let conf = std::fs::read_to_string(repo().join("tests/fixtures/seed-dialplan.conf")).unwrap();
    let lines = system_lines(&conf, bin());
    assert_eq!(lines.len(), 3);
    lines
}

/// Runs every hostile call through every shipped line and checks the guarantees.
fn hostile_calls_through(lines: Vec<SystemLine>) {
    let file = "extensions-system.conf";
    let sandbox = Sandbox::with_config("tarpit_seconds = 0\n");
    let mark = sandbox.dir.path().join("PWNED");
    let mut runs = 0;
    let count = lines.len();
    for line in lines {
        for call in hostile_calls(&mark) {
            let before = sandbox.log_lines().len();
            let out = sh(&sandbox, &substitute(&line.data, &call));
            runs += 1;
            assert!(
                !mark.exists(),
                "{file} {}: a caller value ran a command: {call:?}",
                line.exten
            );
            let code = out.status.code();
            assert!(
                code == Some(0) || code == Some(10),
                "{file}: exit {code:?} for {call:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let lines = sandbox.log_lines();
            assert_eq!(
                lines.len(),
                before + 1,
                "{file}: one line per call, for {call:?}"
            );
            let last = lines.last().unwrap();
            assert_eq!(ip_field(last), Some(CALLER), "{last}");
            assert_eq!(code == Some(10), level(last) == "ERROR", "{last}");
        }
    }
    assert_eq!(runs, count * 5 * hostile_values().len());
    // fail2ban sees only the caller, on every ERROR line and nothing else.
    let matches = fail2ban_matches(&sandbox.log);
    let errors = sandbox
        .log_lines()
        .iter()
        .filter(|l| level(l) == "ERROR")
        .count();
    assert!(errors > 0);
    assert_eq!(matches.len(), errors);
    assert!(matches.iter().all(|(_, ip)| ip == CALLER), "{matches:?}");
}

#[test]
fn shipped_pjsip_lines_survive_every_hostile_value() {
    hostile_calls_through(vec![shipped_for("PJSIP")]);
}

#[test]
fn shipped_chan_sip_lines_survive_every_hostile_value() {
    hostile_calls_through(vec![shipped_for("SIP")]);
}

#[test]
fn shipped_lines_pass_values_losslessly() {
    let sandbox = Sandbox::new();
    let mut call = ordinary();
    call.callerid_name = b"O'Brien \"Bob\" $(x) `y` ; \\ \xff".to_vec();
    call.user_agent = b"Yealink\nSIP".to_vec();
    for line in shipped() {
        let out = sh(&sandbox, &substitute(&line.data, &call));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in sandbox.log_lines() {
        assert!(line.contains(
            r#" INFO ip=203.0.113.5 reason=ok callerid_num='5551234' callerid_name='O\x27Brien "Bob" $(x) `y` ; \x5c \xff' dest_exten='4915112345678' peer_name='guest' user_agent='Yealink\x0aSIP'"#
        ), "{line}");
    }
}

#[test]
fn pjsip_ipv6_peers_are_banned_by_address() {
    let sandbox = Sandbox::new();
    let mut call = ordinary();
    call.remote_addr = "[2001:db8::5]:5060".into();
    call.exten = b"100".to_vec();
    let out = sh(&sandbox, &substitute(&shipped_for("PJSIP").data, &call));
    assert_eq!(out.status.code(), Some(10));
    let matches = fail2ban_matches(&sandbox.log);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].1, "2001:db8::5");
}

#[test]
fn a_trusted_trunk_is_never_alerted_on() {
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\ntrusted_networks = ['{TRUNK}/32']\n"
    ));
    let mut call = ordinary();
    call.peerip = TRUNK.into();
    call.remote_addr = format!("{TRUNK}:5060");
    call.exten = b"s".to_vec();
    call.user_agent = b"friendly-scanner".to_vec();
    for line in shipped() {
        let out = sh(&sandbox, &substitute(&line.data, &call));
        assert_eq!(out.status.code(), Some(0));
    }
    assert!(fail2ban_matches(&sandbox.log).is_empty());
    assert!(
        sandbox
            .log_lines()
            .iter()
            .all(|l| l.contains(" INFO ip=198.51.100.7 reason=trusted "))
    );
}

#[test]
fn the_seed_lines_are_read_verbatim() {
    let sandbox = Sandbox::new();
    let lines = seed_lines();
    let mut scan = ordinary();
    scan.exten = b"100".to_vec();
    for (line, call) in lines.iter().zip([ordinary(), ordinary(), scan]) {
        let out = sh(&sandbox, &substitute(&line.data, &call));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = sandbox.log_lines();
    assert_eq!(log.len(), 3);
    // The second "callerid_num" is the name: the number rule tests the number.
    assert!(
        log[0].contains(
            " INFO ip=203.0.113.5 reason=ok callerid_num='5551234' callerid_name='Alice' "
        ),
        "{}",
        log[0]
    );
    assert!(
        log[2].contains(" ERROR ip=203.0.113.5 reason=wrong_exten_min_length(3) "),
        "{}",
        log[2]
    );
}

/// The seed's line cannot be made safe by any program: the shell runs a caller's
/// `'$(…)'` before extsecurity starts. This pins the README's warning; what reaches the
/// binary still never bans anyone but the caller.
#[test]
fn the_seed_lines_let_the_shell_run_caller_text_but_never_ban_another_address() {
    let sandbox = Sandbox::new();
    let mark = sandbox.dir.path().join("PWNED");
    let mut pwn = ordinary();
    pwn.callerid_name = replace_mark(b"x'$(touch MARK)'", &mark);
    sh(&sandbox, &substitute(&seed_lines()[1].data, &pwn));
    assert!(
        mark.exists(),
        "the seed's line is exploitable, as the README says"
    );

    for line in seed_lines() {
        for call in hostile_calls(&sandbox.dir.path().join("PWNED2")) {
            sh(&sandbox, &substitute(&line.data, &call));
        }
    }
    let matches = fail2ban_matches(&sandbox.log);
    assert!(!matches.is_empty());
    assert!(matches.iter().all(|(_, ip)| ip == CALLER), "{matches:?}");
    for line in sandbox.log_lines() {
        if let Some(ip) = ip_field(&line) {
            assert_eq!(ip, CALLER, "{line}");
        }
    }
}

#[test]
fn a_spoofed_second_ip_is_tampering_against_the_first() {
    let sandbox = Sandbox::new();
    let mut call = ordinary();
    call.callerid_name = format!("x\", \"ip\": \"{TRUNK}").into_bytes();
    let out = sh(&sandbox, &substitute(&seed_lines()[1].data, &call));
    assert_eq!(out.status.code(), Some(0));
    let log = sandbox.log_lines();
    assert_eq!(log.len(), 1);
    assert!(
        log[0].contains(" ERROR ip=203.0.113.5 reason=request_tampering "),
        "{}",
        log[0]
    );
    assert_eq!(fail2ban_matches(&sandbox.log)[0].1, CALLER);
}

#[test]
fn a_quote_that_breaks_the_seed_json_is_an_alert_not_an_escape() {
    let sandbox = Sandbox::new();
    let mut call = ordinary();
    call.callerid_name = b"a\"b".to_vec();
    let out = sh(&sandbox, &substitute(&seed_lines()[1].data, &call));
    assert_eq!(out.status.code(), Some(3));
    let log = sandbox.log_lines();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].contains(" CRITICAL reason=bad_request "),
        "{}",
        log[0]
    );
    assert!(
        log[1].contains(" ERROR ip=203.0.113.5 reason=malformed_request "),
        "{}",
        log[1]
    );
}

/// Issue 18: the seed's line is not shipped any more, but PBXs still run it. Each of
/// its requests marks its line, the daemon counts them from the log and says so once,
/// `report` counts them, and `check-config` names the dialplan lines to replace — the
/// seed's, never the shipped ones.
#[test]
fn the_seed_lines_are_counted_said_and_named() {
    let metrics = common::free_port();
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{}'\nmetrics_listen = '127.0.0.1:{metrics}'\n",
        common::free_port()
    ));
    let serve = common::LoggedServe::start(sandbox, metrics);
    let sandbox = &serve.sandbox;
    for line in seed_lines() {
        sh(sandbox, &substitute(&line.data, &ordinary()));
    }
    for line in shipped() {
        sh(sandbox, &substitute(&line.data, &ordinary()));
    }
    let log = sandbox.log_lines();
    assert_eq!(log.len(), 5);
    assert_eq!(
        log.iter()
            .filter(|l| l.ends_with(" via=legacy_json"))
            .count(),
        3,
        "{log:?}"
    );
    assert!(common::wait_until(
        std::time::Duration::from_secs(10),
        || { common::metric(metrics, "extsecurity_legacy_requests_total") == 3.0 }
    ));
    let said = serve.stderr();
    assert_eq!(
        said.matches("requests in the seed's JSON form").count(),
        1,
        "{said}"
    );

    let report = sandbox.run(&["report"]);
    assert!(String::from_utf8_lossy(&report.stdout).contains("legacy JSON   3 requests"));

    let fixture = repo().join("tests/fixtures/seed-dialplan.conf");
    let out = sandbox.run(&[
        "check-config",
        "--quiet",
        "--dialplan",
        fixture.to_str().unwrap(),
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    let named: Vec<&str> = warned
        .lines()
        .filter(|l| l.contains("TrySystem() hands ${CALLERID(num)} to /bin/sh unencoded"))
        .collect();
    assert_eq!(named.len(), 3, "{warned}");
    for n in [17, 19, 21] {
        assert!(
            warned.contains(&format!("{}:{n}: TrySystem()", fixture.display())),
            "line {n}: {warned}"
        );
    }
    for file in [
        "extensions-system.conf",
        "extensions-agi.conf",
        "extensions-fastagi.conf",
    ] {
        let path = repo().join("dist/asterisk").join(file);
        let out = sandbox.run(&[
            "check-config",
            "--quiet",
            "--dialplan",
            path.to_str().unwrap(),
        ]);
        assert!(
            out.stderr.is_empty(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
