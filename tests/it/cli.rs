//! The command line as an administrator and Asterisk use it: exit statuses, error
//! messages, `explain`, `check-config`, the tarpit, and many processes on one log.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command as AssertCommand;
use common::{Sandbox, bin, level, repo};
use predicates::prelude::*;
use predicates::str::contains;

const SCAN: &str =
    r#"{"ip": "203.0.113.5", "callerid_num": "5551234", "callerid_num": "A", "dest_exten": "100"}"#;
const GOOD: &str = r#"{"ip": "203.0.113.5", "callerid_num": "5551234", "callerid_num": "A", "dest_exten": "4915112345678"}"#;

fn cmd(sandbox: &Sandbox) -> AssertCommand {
    AssertCommand::from_std(sandbox.command())
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn legacy_json_exits_0_for_alerts_and_accepted_calls_as_the_seed() {
    let s = Sandbox::new();
    cmd(&s).arg(GOOD).assert().code(0);
    cmd(&s).arg(SCAN).assert().code(0);
    let lines = s.log_lines();
    assert_eq!(
        lines.iter().map(|l| level(l)).collect::<Vec<_>>(),
        ["INFO", "ERROR"]
    );
}

#[test]
fn legacy_json_split_into_words_by_the_shell_is_joined_by_one_space() {
    let s = Sandbox::new();
    let words: Vec<&str> = GOOD.split(' ').collect();
    cmd(&s).args(&words).assert().code(0);
    assert!(
        s.log_text()
            .contains(" reason=ok callerid_num='5551234' callerid_name='A' ")
    );
}

#[test]
fn check_exits_10_on_alert_only_when_asked() {
    let s = Sandbox::new();
    let scan = [
        "check",
        "--ip=203.0.113.5",
        "--callerid-num-b64=NTU1",
        "--exten-b64=MTAw",
    ];
    cmd(&s).args(scan).assert().code(0);
    cmd(&s).args(scan).arg("--fail-on-alert").assert().code(10);
    let good = format!("--exten-b64={}", b64("4915112345678"));
    cmd(&s)
        .args([
            "check",
            "--fail-on-alert",
            "--ip=203.0.113.5",
            "--callerid-num-b64=NTU1",
            &good,
        ])
        .assert()
        .code(0);
}

#[test]
fn a_missing_or_garbage_peer_ip_is_critical_and_bans_no_one() {
    let s = Sandbox::new();
    cmd(&s)
        .args(["check", "--exten-b64=MTAw"])
        .assert()
        .code(3)
        .stderr(contains("the peer IP is missing"));
    cmd(&s)
        .args(["check", "--ip=unknown", "--exten-b64=MTAw"])
        .assert()
        .code(3)
        .stderr(contains("not an IPv4 or IPv6 address"));
    cmd(&s)
        .arg(r#"{"ip": "", "dest_exten": "100"}"#)
        .assert()
        .code(3);
    let lines = s.log_lines();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| level(l) == "CRITICAL"), "{lines:?}");
}

#[test]
fn values_must_be_attached_with_equals() {
    let s = Sandbox::new();
    cmd(&s)
        .args(["check", "--ip", "203.0.113.5"])
        .assert()
        .code(2)
        .stderr(contains("equal sign is needed"));
    assert!(s.log_lines().is_empty());
}

#[test]
fn unknown_config_keys_are_named_with_file_and_line() {
    let s =
        Sandbox::with_config("tarpit_seconds = 0\nalert_if_dialed_exten_lenghts_les_than = 3\n");
    cmd(&s).arg(GOOD).assert().code(4).stderr(contains(format!(
        "extsecurity: {}:3:1: unknown key `alert_if_dialed_exten_lenghts_les_than` (did you mean `alert_if_dialed_exten_lenghts_less_than`?)",
        s.config.display()
    )));
    cmd(&s).arg("check-config").assert().code(4);
}

#[test]
fn an_explicit_config_that_does_not_exist_is_an_error() {
    let s = Sandbox::new();
    cmd(&s)
        .args(["--config", "/nonexistent/extsecurity.toml", "check-config"])
        .assert()
        .code(4)
        .stderr(contains(
            "/nonexistent/extsecurity.toml: cannot read the configuration",
        ));
}

#[test]
fn a_missing_log_folder_is_a_clear_error() {
    let s = Sandbox::with_config("");
    std::fs::write(
        &s.config,
        "log_file = '/nonexistent-extsec/x.log'\ntarpit_seconds = 5\n",
    )
    .unwrap();
    let started = Instant::now();
    cmd(&s).arg(SCAN).assert().code(5).stderr(contains(
        "extsecurity: cannot open the alert log /nonexistent-extsec/x.log: the folder /nonexistent-extsec does not exist",
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no tarpit when nothing was written"
    );
}

#[test]
fn an_unwritable_log_is_a_clear_error() {
    let s = Sandbox::new();
    std::fs::create_dir(&s.log).unwrap(); // a folder where the file should be
    cmd(&s)
        .arg(SCAN)
        .assert()
        .code(5)
        .stderr(contains("cannot open the alert log"));
}

#[test]
fn explain_writes_nothing_and_shows_the_line() {
    let s = Sandbox::with_config("tarpit_seconds = 30\n");
    let started = Instant::now();
    cmd(&s)
        .args([
            "explain",
            "--ip=[2001:db8::5]:5060",
            "--exten-text=100",
            "--callerid-num-text=555",
        ])
        .assert()
        .code(0)
        .stdout(contains("verdict: alert (wrong_exten_min_length(3))"))
        .stdout(contains(
            " ERROR ip=2001:db8::5 reason=wrong_exten_min_length(3) callerid_num='555' ",
        ))
        .stdout(contains("exit:    0 (10 with --fail-on-alert)"));
    cmd(&s)
        .args(["explain", SCAN])
        .assert()
        .code(0)
        .stdout(contains("ERROR ip=203.0.113.5"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "explain never sleeps"
    );
    assert!(!s.log.exists(), "explain never writes");
}

/// `check-config`'s lines but those of its `[nftables]` table.
fn outside_nftables(text: &str) -> impl Iterator<Item = &str> {
    let mut inside = false;
    text.lines().filter(move |l| {
        if l.starts_with('[') || l.starts_with("# [") {
            inside = *l == "[nftables]" || l.starts_with("# [nftables] absent");
        }
        !inside
    })
}

#[test]
fn check_config_prints_the_effective_settings_of_the_shipped_file() {
    let shipped = repo().join("dist/extsecurity.toml");
    let out = Command::new(bin())
        .args(["--config", shipped.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    // Its log is /var/log/asterisk's, which this machine may not have: then it says so
    // (exit 5) and prints the settings all the same.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || (out.status.code() == Some(5)
                && said.contains("alert log /var/log/asterisk/inbound_extsecurity.log")),
        "{said}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let builtin = Command::new(bin())
        .args(["check-config"])
        .env_remove("EXTSECURITY_CONFIG")
        .output()
        .unwrap();
    let builtin = String::from_utf8(builtin.stdout).unwrap();
    // The shipped file restates the built-in defaults (when /etc has no file), but
    // for the kernel bans, which it turns on (issue 27: a guesser found a password
    // between the alert and fail2ban's ban) while a config without [nftables] keeps
    // them off.
    if !std::path::Path::new("/etc/asterisk/extsecurity.toml").exists() {
        assert_eq!(
            outside_nftables(&text).skip(2).collect::<Vec<_>>(),
            outside_nftables(&builtin).skip(2).collect::<Vec<_>>()
        );
        assert!(text.contains("\n# [nftables]: kernel bans ON, table inet extsecurity, ports 5060, 5061 (from SIP's defaults: no transport found in /etc/asterisk/pjsip.conf or sip.conf)\n"), "{text}");
        assert!(
            builtin.contains("\n# [nftables]: kernel bans OFF"),
            "{builtin}"
        );
        assert!(
            text.contains("\n[nftables]\nenabled = true\nports = [5060, 5061]\n"),
            "{text}"
        );
    }
    assert!(text.contains("exten_min_length = 10\n"));
    assert!(text.contains("blocked_extensions = ['\\d{1,3}']\n"));
}

#[test]
fn the_tarpit_holds_after_an_alert_and_not_after_an_accepted_call() {
    let s = Sandbox::with_config("tarpit_seconds = 1.0\n");
    let started = Instant::now();
    cmd(&s).arg(GOOD).assert().code(0);
    let accepted = started.elapsed();
    let started = Instant::now();
    cmd(&s).arg(SCAN).assert().code(0);
    let alerted = started.elapsed();
    assert!(alerted >= Duration::from_millis(1000), "{alerted:?}");
    assert!(accepted < Duration::from_millis(1000), "{accepted:?}");
    // The line was there before the sleep ended: it was written first.
    assert_eq!(s.log_lines().len(), 2);
}

#[test]
fn version_and_help_work() {
    AssertCommand::new(bin())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("extsecurity "));
    AssertCommand::new(bin())
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("check-config"));
}

/// 200 processes started together, each writing one long line to the same log: every
/// line arrives whole (design.md §4: one `write(2)` on an `O_APPEND` file).
#[test]
fn two_hundred_concurrent_processes_write_two_hundred_intact_lines() {
    let s = Sandbox::new();
    let ua = b64(&"U".repeat(400));
    let children: Vec<Child> = (0..200)
        .map(|i| {
            s.command()
                .args(["check", "--ip=203.0.113.5", "--callerid-num-b64=NTU1"])
                .arg(format!("--exten-b64={}", b64(&format!("49151{i:08}"))))
                .arg(format!("--user-agent-b64={ua}"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let lines = s.log_lines();
    assert_eq!(lines.len(), 200);
    let mut extens: Vec<String> = lines
        .iter()
        .map(|l| {
            assert!(
                l.ends_with(&format!("user_agent='{}'", "U".repeat(400))),
                "torn line: {l}"
            );
            assert_eq!(l.matches(" ip=").count(), 1, "{l}");
            l.split("dest_exten='").nth(1).unwrap()[..13].to_string()
        })
        .collect();
    extens.sort();
    extens.dedup();
    assert_eq!(extens.len(), 200, "every process's line is there once");
}

/// `report` over a live log and a rotated, gzip-compressed one, as logrotate leaves them.
#[test]
fn report_reads_rotated_and_compressed_logs() {
    let s = Sandbox::new();
    let scan = |ip: &str| {
        cmd(&s)
            .args([
                "check",
                &format!("--ip={ip}"),
                "--callerid-num-b64=NTU1",
                "--exten-b64=MTAw",
            ])
            .assert()
            .code(0);
    };
    scan("203.0.113.5");
    scan("203.0.113.5");
    cmd(&s).arg(GOOD).assert().code(0);
    let rotated = s.dir.path().join("inbound_extsecurity.log.1");
    std::fs::rename(&s.log, &rotated).unwrap();
    assert!(
        Command::new("gzip")
            .arg(&rotated)
            .status()
            .unwrap()
            .success()
    );
    scan("198.51.100.9");
    scan("203.0.113.5");

    let out = cmd(&s)
        .args(["report", "--json"])
        .arg(&s.log)
        .arg(s.dir.path().join("inbound_extsecurity.log.1.gz"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["calls"], 5);
    assert_eq!(json["alerts"], 4);
    assert_eq!(json["alerts_by_reason"]["wrong_exten_min_length(3)"], 4);
    assert_eq!(json["top_offenders"][0]["ip"], "203.0.113.5");
    assert_eq!(json["top_offenders"][0]["alerts"], 3);
    assert_eq!(json["distinct_offenders"], 2);

    // The table, on the configured log and its rotations by default (issue 27: it
    // read the live log alone, one day of seven, though --help said otherwise): a
    // `.2` as logrotate's delaycompress leaves it besides the `.1.gz`.
    let older = s.dir.path().join("inbound_extsecurity.log.2");
    std::fs::write(
        &older,
        "2026-11-01 10:00:00.000 ERROR ip=192.0.2.77 reason=wrong_exten_min_length(3) callerid_num='555' exten='100'\n",
    )
    .unwrap();
    cmd(&s)
        .arg("report")
        .assert()
        .code(0)
        .stdout(contains("alerts        5\n"))
        .stdout(contains("198.51.100.9"))
        .stdout(contains("192.0.2.77"));
    cmd(&s)
        .args(["report", "/nonexistent/x.log"])
        .assert()
        .code(5)
        .stderr(contains(
            "extsecurity: /nonexistent/x.log: No such file or directory",
        ));
}

/// `--on-error` (doc/asterisk.md, "A check that could not run"): only a check that could not run
/// changes its status; without the option every status stays as listed.
#[test]
fn on_error_decides_only_for_a_check_that_could_not_run() {
    let s = Sandbox::new();
    std::fs::write(&s.config, "log_file = '/nonexistent-extsecurity/x.log'\n").unwrap();
    let ordinary = [
        "check",
        "--fail-on-alert",
        "--ip=203.0.113.5",
        "--callerid-num-b64=NTU1MTIzNA==",
        "--exten-b64=NDkxNTExMjM0NTY3OA==",
    ];
    for (on_error, status) in [
        (None, 5),
        (Some("--on-error="), 0),
        (Some("--on-error=continue"), 0),
        (Some("--on-error=hangup"), 5),
    ] {
        cmd(&s)
            .args(ordinary)
            .args(on_error)
            .assert()
            .code(status)
            .stderr(contains("cannot open the alert log"));
    }
    // An alert exits 10 whatever the switch, even when its line could not be written.
    for on_error in ["--on-error=", "--on-error=hangup"] {
        cmd(&s)
            .args(["check", "--fail-on-alert", on_error, "--ip=203.0.113.5"])
            .args(["--callerid-num-b64=NTU1MTIzNA==", "--exten-b64=MTAw"])
            .assert()
            .code(10);
    }
    cmd(&s)
        .args(ordinary)
        .arg("--on-error=Hangup")
        .assert()
        .code(2)
        .stderr(contains("neither continue nor hangup"));
}

/// `report --address` reads the configured log and what logrotate made of it, oldest
/// first, `.gz` too, and prints only the lines whose `ip=` field is the address (not
/// one that merely mentions it in a caller value).
#[test]
fn report_address_prints_every_line_of_one_address_across_rotations() {
    let s = Sandbox::new();
    let line = |t: &str, ip: &str, ua: &str| {
        format!(
            "2026-11-2{t} ERROR ip={ip} reason=extension_banned callerid_num='1' callerid_name='' dest_exten='100' peer_name='' user_agent='{ua}'\n"
        )
    };
    std::fs::write(
        s.dir.path().join("inbound_extsecurity.log.2"),
        line("1 10:00:00.000", "203.0.113.5", ""),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(
        &mut gz,
        line("2 10:00:00.000", "203.0.113.5", "").as_bytes(),
    )
    .unwrap();
    std::fs::write(
        s.dir.path().join("inbound_extsecurity.log.1.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        &s.log,
        line("3 10:00:00.000", "198.51.100.7", "ip=203.0.113.5")
            + &line("4 10:00:00.000", "203.0.113.5", ""),
    )
    .unwrap();
    let out = cmd(&s)
        .args(["report", "--address", "203.0.113.5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let days: Vec<&str> = text.lines().map(|l| &l[..10]).collect();
    assert_eq!(days, ["2026-11-21", "2026-11-22", "2026-11-24"], "{text}");
    cmd(&s)
        .args(["report", "--address", "192.0.2.99"])
        .assert()
        .success()
        .stderr(contains("no line names 192.0.2.99 in 3 log file(s)"));
}

/// Issue 27: `check-config` passed an empty file that a reload refuses; it refuses it
/// the same way (a half-written file must not look fine), and exits non-zero.
#[test]
fn check_config_refuses_what_a_reload_refuses() {
    let s = Sandbox::new();
    std::fs::write(&s.config, "# nothing yet\n").unwrap();
    let out = Command::new(bin())
        .args(["--config", s.config.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(said.contains("holds no settings"), "{said}");
}

/// Issue 27: the README promised that `check-config` says whether the alert log is
/// writable by Asterisk's user and the daemon's; as root it names each that can, and
/// warns, with the command that fixes it, for each that cannot.
#[test]
fn check_config_says_who_can_write_the_alert_log() {
    let Some(s) = common::users::pbx_sandbox("tarpit_seconds = 0\n") else {
        eprintln!("SKIP: not root: cannot make the users asterisk and extsecurity");
        return;
    };
    let run = || {
        Command::new(bin())
            .args(["--config", s.config.to_str().unwrap(), "check-config"])
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "# alert log {}: writable by asterisk and extsecurity",
            s.log.display()
        )),
        "{text}"
    );
    // The folder root's, 0755: neither can make the log.
    let folder = s.log.parent().unwrap();
    common::users::own(folder, "root:root", 0o755);
    let out = run();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("warning: user asterisk cannot write the alert log")
            && said.contains("chgrp asterisk")
            && said.contains("warning: user extsecurity cannot write the alert log"),
        "{said}"
    );
}

/// Issue 27: the README's first command, run as root, made the alert log root's and
/// said nothing; Asterisk's user could then not write it. It says what it made and
/// what fixes it, once: a second check finds the log there and says nothing.
#[test]
fn a_check_run_as_root_says_it_made_the_log() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: not root");
        return;
    }
    let s = Sandbox::new();
    assert!(!s.log.exists());
    let check = [
        "check",
        "--ip=203.0.113.5",
        "--exten-b64=NDkxNTExMjM0NTY3OA==",
        "--callerid-num-b64=NTU1MTIzNA==",
    ];
    let out = cmd(&s).args(check).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("made {} as root", s.log.display()))
            && said.contains("chgrp asterisk"),
        "{said}"
    );
    let again = cmd(&s).args(check).output().unwrap();
    assert!(
        again.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
