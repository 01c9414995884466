//! One rule for a check that could not run, in every shipped dialplan (issue 11,
//! doc/asterisk.md, "A check that could not run"): OK goes on, an alert hangs up, and a call that
//! could not be judged follows the administrator's `EXTSEC_ON_ERROR` — unset or
//! `continue` goes on, `hangup` hangs up.
//!
//! The System() lines run as Asterisk runs them (design.md §3: `${…}` substituted,
//! `/bin/sh -c`, exit status 0 → `SYSTEMSTATUS=SUCCESS`, 127 → `FAILURE`, other →
//! `APPERROR`, per app_system.c); the verdict subroutines run in the dialplan emulator
//! of `common/asterisk.rs`.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use common::asterisk::{
    Channel, Driver, Outcome, run_call, run_subroutine, substitute, system_lines,
};
use common::{Sandbox, bin, repo};

use Outcome::{Continued, HungUp};

/// The three settings an administrator can have.
const SWITCH: [&str; 3] = ["", "continue", "hangup"];

/// A shipped dialplan (`dist/asterisk/FILE`), or a fixture by its path in the repo.
fn read(file: &str) -> String {
    let path = match file.contains('/') {
        true => repo().join(file),
        false => repo().join("dist/asterisk").join(file),
    };
    std::fs::read_to_string(path).unwrap()
}

/// What a call that could not be judged does under `switch`.
fn unjudged(switch: &str) -> Outcome {
    if switch == "hangup" {
        HungUp
    } else {
        Continued
    }
}

/// Every guest extension's priority 2 hands the result to `subroutine`.
fn assert_every_extension_calls(conf: &str, file: &str, subroutine: &str) {
    let lines: Vec<&str> = conf.lines().collect();
    let mut extensions = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("exten => ") else {
            continue;
        };
        let (exten, _) = rest.split_once(",1,").unwrap();
        if exten == "s" && extensions.len() == 3 {
            break; // The subroutine's own `s`.
        }
        assert_eq!(
            lines.get(i + 1).copied(),
            Some(format!(" same => n,Gosub({subroutine},s,1)").as_str()),
            "{file}: {exten}"
        );
        extensions.push(exten.to_string());
    }
    assert_eq!(extensions, ["s", "_X.", "_+X."], "{file}");
}

#[test]
fn agi_and_fastagi_dialplans_follow_the_rule() {
    for file in ["extensions-agi.conf", "extensions-fastagi.conf"] {
        let conf = read(file);
        assert_every_extension_calls(&conf, file, "extsec-verdict");
        for switch in SWITCH {
            // ERROR: the daemon or program could not judge; empty: it never ran.
            for (result, expected) in [
                ("OK", Continued),
                ("ALERT", HungUp),
                ("ERROR", unjudged(switch)),
                ("", unjudged(switch)),
            ] {
                let vars = [("EXTSEC_RESULT", result), ("EXTSEC_ON_ERROR", switch)];
                assert_eq!(
                    run_subroutine(&conf, "extsec-verdict", &vars),
                    expected,
                    "{file}: EXTSEC_RESULT={result:?} EXTSEC_ON_ERROR={switch:?}"
                );
            }
        }
    }
}

/// `SYSTEMSTATUS` for the `TrySystem()` data of `line`, run by a real shell.
fn system_status(sandbox: &Sandbox, data: &str, call: &Channel) -> &'static str {
    system_status_of(sandbox, &substitute(data, call))
}

/// `SYSTEMSTATUS` for substituted `TrySystem()` data, run by a real shell (app_system.c:
/// 0 SUCCESS, 127 FAILURE, anything else APPERROR).
fn system_status_of(sandbox: &Sandbox, command: &[u8]) -> &'static str {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(OsStr::from_bytes(command))
        .env("EXTSECURITY_CONFIG", &sandbox.config)
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => "SUCCESS",
        Some(127) | None => "FAILURE",
        Some(_) => "APPERROR",
    }
}

/// The calls and set-ups a System() dialplan meets, and what each must lead to:
/// `(what, call, log folder exists, binary exists, expected)`.
fn system_cases(
    switch: &str,
    alert_hangs_up: bool,
) -> Vec<(&'static str, Channel, bool, bool, Outcome)> {
    let ordinary = Channel::ordinary("203.0.113.5");
    let scan = Channel {
        exten: b"100".to_vec(),
        ..ordinary.clone()
    };
    let alerted = if alert_hangs_up { HungUp } else { Continued };
    vec![
        ("an ordinary call", ordinary.clone(), true, true, Continued),
        ("a scan", scan.clone(), true, true, alerted),
        (
            "unwritable log",
            ordinary.clone(),
            false,
            true,
            unjudged(switch),
        ),
        // With --fail-on-alert the rules have spoken, only the line is missing; the
        // legacy lines have nothing but the line, so the check did not run.
        (
            "a scan, unwritable log",
            scan,
            false,
            true,
            if alert_hangs_up {
                HungUp
            } else {
                unjudged(switch)
            },
        ),
        ("no binary", ordinary, true, false, unjudged(switch)),
    ]
}

fn system_dialplan_follows_the_rule(file: &str, subroutine: &str, alert_hangs_up: bool) {
    let conf = read(file);
    assert_every_extension_calls(&conf, file, subroutine);
    let lines = system_lines(&conf, bin());
    assert_eq!(lines.len(), 3, "{file}");
    for switch in SWITCH {
        for (what, mut call, log_ok, bin_ok, expected) in system_cases(switch, alert_hangs_up) {
            call.on_error = switch.to_string();
            let sandbox = case_sandbox(log_ok);
            for line in &lines {
                let data = match bin_ok {
                    true => line.data.clone(),
                    false => line.data.replace(bin(), "/nonexistent/extsecurity"),
                };
                let status = system_status(&sandbox, &data, &call);
                let vars = [("SYSTEMSTATUS", status), ("EXTSEC_ON_ERROR", switch)];
                assert_eq!(
                    run_subroutine(&conf, subroutine, &vars),
                    expected,
                    "{file} {}: {what}, EXTSEC_ON_ERROR={switch:?}, SYSTEMSTATUS={status}",
                    line.exten
                );
            }
        }
    }
}

/// Issue 19: one System() dialplan for both channel drivers, run end to end as Asterisk
/// runs it — `[default]` keeps the extension and dials `[extsec-system-check]` by
/// `CHANNEL(channeltype)`, whose line for that driver runs in a real shell, then the
/// verdict — with each driver's functions reading as Asterisk 20's do (the other
/// driver's read empty). A chan_sip call through PJSIP-only lines read an empty
/// address and went on unchecked; here every call of either driver gets its verdict,
/// and one of a driver the lines do not read follows the switch.
#[test]
fn the_system_dialplan_follows_the_rule_on_either_driver() {
    let file = "extensions-system.conf";
    let conf = read(file);
    // TrySystem(), never System(): System() hangs up by itself when it cannot start
    // the program.
    assert!(!conf.contains(",System("), "{file}");
    assert_eq!(
        conf.matches(",1,TrySystem(").count(),
        2,
        "{file}: one per driver"
    );
    for switch in SWITCH {
        for driver in [Driver::Pjsip, Driver::Sip] {
            for (what, call, log_ok, bin_ok, expected) in system_cases(switch, true) {
                let mut call = call.over(driver);
                call.on_error = switch.to_string();
                let sandbox = case_sandbox(log_ok);
                for entry in ["s", "_X.", "_+X."] {
                    let mut call = call.clone();
                    let mut system = |data: &[u8], _: &Channel| {
                        // The shipped path, to the binary under test (or none).
                        let program = if bin_ok {
                            bin()
                        } else {
                            "/nonexistent/extsecurity"
                        };
                        let data =
                            String::from_utf8_lossy(data).replace("/usr/bin/extsecurity", program);
                        system_status_of(&sandbox, data.as_bytes())
                    };
                    let outcome = run_call(&conf, "default", entry, &mut call, &mut system);
                    assert_eq!(
                        outcome, expected,
                        "{file} {entry} over {driver:?}: {what}, EXTSEC_ON_ERROR={switch:?}"
                    );
                }
            }
        }
        // A driver these lines do not read: a check that could not run.
        let mut call = Channel::ordinary("203.0.113.5").over(Driver::Other("IAX2"));
        call.on_error = switch.to_string();
        let outcome = run_call(&conf, "default", "_X.", &mut call, &mut |_, _| {
            panic!("no System() for an IAX2 channel")
        });
        assert_eq!(
            outcome,
            unjudged(switch),
            "IAX2, EXTSEC_ON_ERROR={switch:?}"
        );
    }
}

/// A sandbox for a case: its log writable or not.
fn case_sandbox(log_ok: bool) -> Sandbox {
    let sandbox = Sandbox::with_config("tarpit_seconds = 0\n");
    if !log_ok {
        std::fs::write(
            &sandbox.config,
            "log_file = '/nonexistent-extsecurity/x.log'\ntarpit_seconds = 0\n",
        )
        .unwrap();
    }
    sandbox
}

/// The seed's lines log and ban but never hung up on an alert; a check that could not
/// run follows the switch all the same.
#[test]
fn the_legacy_dialplan_follows_the_rule() {
    system_dialplan_follows_the_rule(
        "tests/fixtures/seed-dialplan.conf",
        "extsec-legacy-verdict",
        false,
    );
}

/// The switch is the administrator's: a caller's value cannot reach `--on-error`.
#[test]
fn a_caller_cannot_set_the_switch() {
    let conf = read("extensions-system.conf");
    let sandbox = Sandbox::new();
    std::fs::write(
        &sandbox.config,
        "log_file = '/nonexistent-extsecurity/x.log'\n",
    )
    .unwrap();
    let mut call = Channel::ordinary("203.0.113.5");
    call.callerid_name = b"x --on-error=hangup".to_vec();
    call.user_agent = b"--on-error=continue".to_vec();
    call.on_error = "hangup".into();
    for line in system_lines(&conf, bin()) {
        assert_eq!(system_status(&sandbox, &line.data, &call), "APPERROR");
    }
}
