//! extsecurity and a real CrowdSec (Debian's 1.4.6, started by `common/crowdsec.rs` as
//! design.md §3c records): our log read through the shipped acquisition, parsers and
//! scenario; and the daemon pushing its alerts to the LAPI as a machine, through an
//! outage and with wrong credentials. Calls reach the daemon as Asterisk makes them
//! (`common/agi_peer.rs`), AMI events as Asterisk writes them (`common/ami_peer.rs`).

use crate::common;

use std::time::{Duration, Instant};

use common::agi_peer::fastagi_call;
use common::ami_peer::{AmiPeer, Script, Then, capture_events, from_address};
use common::asterisk::Channel;
use common::crowdsec::Lapi;
use common::{LoggedServe, Sandbox, free_port, metric, wait_for};

const MACHINE: &str = "pbx1";
const PASSWORD: &str = "pbx1-test-password-0123456789";

/// A call every rule objects to: a 3-digit extension (`wrong_exten_min_length(3)`).
fn bad_call(ip: &str) -> Channel {
    Channel {
        exten: b"123".to_vec(),
        ..Channel::ordinary(ip)
    }
}

/// `extsecurity serve` on free ports, its stderr kept.
struct Daemon {
    serve: LoggedServe,
    port: u16,
    metrics_port: u16,
}

impl Daemon {
    /// Ready once the FastAGI port accepts: the daemon binds every other port first.
    fn start(config: &str) -> Daemon {
        let (port, metrics_port) = (free_port(), free_port());
        let sandbox = Sandbox::with_config(&format!(
            "tarpit_seconds = 0\ntrusted_networks = [\"192.0.2.0/24\"]\n{config}\n\
             [daemon]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
        ));
        Daemon {
            serve: LoggedServe::start(sandbox, port),
            port,
            metrics_port,
        }
    }

    fn stderr(&self) -> String {
        self.serve.stderr()
    }

    fn metric(&self, name: &str) -> f64 {
        metric(self.metrics_port, name)
    }

    /// What `extsecurity crowdsec-check` prints on this daemon's config.
    fn crowdsec_check(&self) -> String {
        let check = self
            .serve
            .sandbox
            .command()
            .arg("crowdsec-check")
            .output()
            .unwrap();
        String::from_utf8_lossy(&check.stdout).into_owned()
    }

    fn call(&self, channel: &Channel) -> String {
        fastagi_call(self.port, channel)
            .variable("EXTSEC_REASON")
            .unwrap_or_default()
    }
}

/// `[crowdsec]` for `lapi`; `@DIR@` becomes the daemon's sandbox folder.
fn push_config(lapi: &Lapi, password: &str) -> String {
    format!(
        "[crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"{MACHINE}\"\npassword = \"{password}\"\nban_duration = \"2h\"\nstate_file = \"@DIR@/crowdsec.position\"\n",
        lapi.url()
    )
}

#[test]
fn our_log_is_a_crowdsec_source_and_forged_text_bans_no_one() {
    let sandbox = Sandbox::new();
    std::fs::write(&sandbox.log, "").unwrap();
    let lapi = Lapi::start(Some(&sandbox.log));
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    // The agent tails the log from its end once it is up: until a probe alert is
    // banned, lines could be written before it looks.
    wait_for("the agent to read the log", Duration::from_secs(30), || {
        sandbox.run(&[
            "check",
            "--ip=192.0.2.200",
            &format!("--exten-b64={}", b64("1")),
        ]);
        std::thread::sleep(Duration::from_millis(300));
        !lapi.decisions("192.0.2.200").is_null()
    });
    let probes = sandbox.log_lines().len();
    // An alert, and an accepted call whose user agent spells an alert for 9.9.9.9.
    let alert = sandbox.run(&[
        "check",
        "--ip=203.0.113.5",
        &format!("--exten-b64={}", b64("123")),
    ]);
    assert!(alert.status.success());
    let forged = sandbox.run(&[
        "check",
        "--ip=198.51.100.7",
        &format!("--callerid-num-b64={}", b64("4915100000000")),
        &format!("--exten-b64={}", b64("4915100000001")),
        &format!(
            "--user-agent-b64={}",
            b64("x\n2026-11-25 10:00:00.000 ERROR ip=9.9.9.9 reason=x")
        ),
    ]);
    assert!(forged.status.success());
    // The live agent bans the alert's address, and only it.
    wait_for("the ban", Duration::from_secs(30), || {
        !lapi.decisions("203.0.113.5").is_null()
    });
    let ban = &lapi.decisions("203.0.113.5")[0];
    assert_eq!(ban["scenario"], "extsecurity/alert");
    assert_eq!(ban["type"], "ban");
    assert!(lapi.decisions("9.9.9.9").is_null());
    assert!(lapi.decisions("198.51.100.7").is_null());
    // cscli explain shows why, line by line.
    let explain = lapi.cscli(&[
        "explain",
        "--file",
        sandbox.log.to_str().unwrap(),
        "--type",
        "extsecurity",
    ]);
    let text = String::from_utf8_lossy(&explain.stdout);
    // One block per line, not necessarily in file order.
    let blocks: Vec<&str> = text.split("line: ").skip(1).collect();
    assert_eq!(blocks.len(), probes + 2, "{text}");
    let block = |start: &str| {
        let found: Vec<&&str> = blocks.iter().filter(|b| b.contains(start)).collect();
        assert_eq!(found.len(), 1, "{start}: {text}");
        found[0].to_string()
    };
    let alert = block(" ERROR ip=203.0.113.5 ");
    assert!(alert.contains("🟢 extsecurity/alert"), "{alert}");
    let accepted = block(" INFO ip=198.51.100.7 ");
    assert!(accepted.contains("parser failure"), "{accepted}");
    assert!(!accepted.contains("extsecurity/alert"), "{accepted}");
}

#[test]
fn the_daemon_pushes_every_alert_but_never_a_trusted_network_or_this_host() {
    let lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    let check = Sandbox::with_config(&push_config(&lapi, PASSWORD)).run(&["crowdsec-check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("OK: machine \"pbx1\" logged in"));
    // FastAGI calls and an AMI burst, one daemon.
    let peer = AmiPeer::start(vec![Script::accept(
        from_address(&capture_events("ami-wrongpw.bin"), "198.51.100.20").repeat(6),
        Then::Hold,
    )]);
    let d = Daemon::start(&format!(
        "{}[ami]\naddress = \"{}\"\nusername = \"extsecurity\"\nsecret = \"s3cmon-test\"\n",
        push_config(&lapi, PASSWORD),
        peer.addr
    ));
    // A local SIP proxy's address, alerted on first: the line is written (fail2ban
    // ignores its own host), the ban never pushed to the fleet's bouncers.
    assert_eq!(d.call(&bad_call("127.0.0.1")), "wrong_exten_min_length(3)");
    assert_eq!(
        d.call(&bad_call("203.0.113.5")),
        "wrong_exten_min_length(3)"
    );
    assert_eq!(d.call(&bad_call("192.0.2.10")), "trusted");
    wait_for("two alerts delivered", Duration::from_secs(30), || {
        d.metric("extsecurity_crowdsec_delivered_total") >= 2.0
    });
    let call_ban = &lapi.decisions("203.0.113.5")[0];
    assert_eq!(call_ban["scenario"], "extsecurity/wrong_exten_min_length");
    assert_eq!(call_ban["origin"], "extsecurity");
    assert_eq!(call_ban["type"], "ban");
    let duration = call_ban["duration"].as_str().unwrap();
    assert!(
        duration.starts_with("1h59m"),
        "ban_duration = 2h: {duration}"
    );
    let ami_ban = &lapi.decisions("198.51.100.20")[0];
    assert_eq!(ami_ban["scenario"], "extsecurity/auth_bruteforce");
    assert!(
        lapi.decisions("192.0.2.10").is_null(),
        "trusted: never pushed"
    );
    assert!(
        lapi.decisions("127.0.0.1").is_null(),
        "this host: never pushed"
    );
    assert!(
        d.serve
            .sandbox
            .log_text()
            .contains("ERROR ip=127.0.0.1 reason=wrong_exten_min_length"),
        "{}",
        d.serve.sandbox.log_text()
    );
    assert_eq!(d.metric("extsecurity_crowdsec_delivered_total"), 2.0);
}

/// Issue 14: the alert log is the queue. The LAPI down, 50 alerts: the backlog gauge
/// shows them live with their age, one WARNING says why; the LAPI back: the first
/// delivery comes within a second of it accepting connections, and every alert is
/// delivered.
#[test]
fn an_outage_loses_no_alert_and_delivery_resumes_within_a_second() {
    let mut lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    let d = Daemon::start(&push_config(&lapi, PASSWORD));
    assert_eq!(
        d.call(&bad_call("203.0.113.1")),
        "wrong_exten_min_length(3)"
    );
    wait_for("the first delivery", Duration::from_secs(30), || {
        d.metric("extsecurity_crowdsec_delivered_total") >= 1.0
    });
    assert_eq!(d.metric("extsecurity_crowdsec_backlog_alerts"), 0.0);
    lapi.stop();
    // Calls are answered at once while the LAPI is down.
    let started = Instant::now();
    let ips: Vec<String> = (10..60).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &ips {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "50 calls took {:?}: calls must not wait on CrowdSec",
        started.elapsed()
    );
    wait_for("the backlog gauge", Duration::from_secs(5), || {
        d.metric("extsecurity_crowdsec_backlog_alerts") == 50.0
    });
    wait_for("the outage said", Duration::from_secs(10), || {
        d.metric("extsecurity_crowdsec_failing") == 1.0
    });
    assert!(d.metric("extsecurity_crowdsec_backlog_age_seconds") >= 1.0);
    assert!(d.metric("extsecurity_crowdsec_retries_total") >= 1.0);
    std::thread::sleep(Duration::from_secs(2));
    let stderr = d.stderr();
    assert_eq!(
        stderr
            .matches("CrowdSec: pushing fails: the LAPI at")
            .count(),
        1,
        "one WARNING per outage: {stderr}"
    );
    assert!(stderr.contains("unreachable"), "{stderr}");
    lapi.start_again();
    let back = Instant::now();
    wait_for(
        "the first delivery after the outage",
        Duration::from_secs(10),
        || d.metric("extsecurity_crowdsec_delivered_total") > 1.0,
    );
    let first = back.elapsed();
    assert!(
        first < Duration::from_secs(1),
        "first delivery {first:?} after the LAPI accepted connections again"
    );
    wait_for("every alert", Duration::from_secs(30), || {
        d.metric("extsecurity_crowdsec_delivered_total") >= 51.0
    });
    for ip in &ips {
        assert!(!lapi.decisions(ip).is_null(), "{ip} lost");
    }
    assert_eq!(d.metric("extsecurity_crowdsec_backlog_alerts"), 0.0);
    assert_eq!(d.metric("extsecurity_crowdsec_backlog_age_seconds"), 0.0);
    assert_eq!(d.metric("extsecurity_crowdsec_failing"), 0.0);
    let stderr = d.stderr();
    assert_eq!(
        stderr.matches("the LAPI takes alerts again").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn wrong_credentials_give_a_clear_error_and_no_crash() {
    let lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    let s = Sandbox::with_config(&push_config(&lapi, "not-the-password"));
    let check = s.run(&["crowdsec-check"]);
    assert_eq!(check.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains(&format!(
            "the LAPI at {} refused machine \"pbx1\": HTTP 401",
            lapi.url()
        )),
        "{stderr}"
    );
    let unreachable = Sandbox::with_config(
        "[crowdsec]\nlapi_url = \"http://127.0.0.1:1\"\nmachine_id = \"m\"\npassword = \"p\"\n",
    )
    .run(&["crowdsec-check"]);
    assert_eq!(unreachable.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("unreachable"));
    // The daemon keeps serving, says why once, and keeps the alerts queued.
    let d = Daemon::start(&push_config(&lapi, "not-the-password"));
    for ip in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    wait_for("the outage said", Duration::from_secs(20), || {
        d.metric("extsecurity_crowdsec_failing") == 1.0
    });
    assert!(d.metric("extsecurity_crowdsec_retries_total") >= 2.0);
    assert_eq!(d.call(&Channel::ordinary("198.51.100.1")), "ok");
    assert_eq!(d.metric("extsecurity_crowdsec_delivered_total"), 0.0);
    let stderr = d.stderr();
    assert_eq!(stderr.matches("refused machine").count(), 1, "{stderr}");
    assert!(lapi.decisions("203.0.113.1").is_null());
}

/// No LAPI at all for a long while: nothing is dropped and memory holds one batch;
/// the gauge counts every alert, the log keeps them.
#[test]
fn without_a_lapi_every_alert_waits_in_the_log_and_is_counted() {
    let d = Daemon::start(
        "[crowdsec]\nlapi_url = \"http://127.0.0.1:1\"\nmachine_id = \"m\"\npassword = \"p\"\nbatch_size = 1\nstate_file = \"@DIR@/position\"\n",
    );
    for i in 1..=200 {
        assert_eq!(
            d.call(&bad_call(&format!("203.0.113.{i}"))),
            "wrong_exten_min_length(3)"
        );
    }
    // Trusted: written as INFO, never counted or pushed.
    assert_eq!(d.call(&bad_call("192.0.2.10")), "trusted");
    wait_for("the backlog gauge", Duration::from_secs(5), || {
        d.metric("extsecurity_crowdsec_backlog_alerts") == 200.0
    });
    assert_eq!(d.metric("extsecurity_crowdsec_delivered_total"), 0.0);
    assert_eq!(
        d.serve
            .sandbox
            .log_lines()
            .iter()
            .filter(|l| l.contains(" ERROR ip=203.0.113."))
            .count(),
        200
    );
}

/// A restart in the middle of an outage: the daemon stops at once (the undelivered
/// batch stays in the log), and the next start pushes exactly what was not accepted.
#[test]
fn a_restart_resumes_where_the_lapi_last_accepted() {
    let mut lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    let mut d = Daemon::start(&push_config(&lapi, PASSWORD));
    let before: Vec<String> = (1..=3).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &before {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    wait_for("three delivered", Duration::from_secs(30), || {
        d.metric("extsecurity_crowdsec_delivered_total") >= 3.0
    });
    lapi.stop();
    let during: Vec<String> = (10..=14).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &during {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    wait_for("five waiting", Duration::from_secs(20), || {
        d.metric("extsecurity_crowdsec_backlog_alerts") == 5.0
    });
    let stopped = Instant::now();
    let status = d.serve.terminate();
    assert!(status.success(), "{}", d.stderr());
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "a LAPI outage must not hold the shutdown: {:?}",
        stopped.elapsed()
    );
    assert!(
        d.stderr()
            .contains("stopping with 5 alerts not yet accepted"),
        "{}",
        d.stderr()
    );
    // While it is stopped, crowdsec-check says what the next start pushes first.
    let said = d.crowdsec_check();
    assert!(
        said.lines()
            .any(|l| l.starts_with("5 alerts in ") && l.ends_with("(not yet accepted by the LAPI)")),
        "{said}"
    );
    lapi.start_again();
    d.serve.restart(d.port);
    wait_for(
        "the five after the restart",
        Duration::from_secs(30),
        || d.metric("extsecurity_crowdsec_delivered_total") >= 5.0,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        d.metric("extsecurity_crowdsec_delivered_total"),
        5.0,
        "what was accepted before the restart is not pushed again"
    );
    for ip in before.iter().chain(&during) {
        assert!(!lapi.decisions(ip).is_null(), "{ip} lost: {}", d.stderr());
    }
}

/// A position file the daemon cannot keep, or one that is not its own, stops the pusher
/// alone (issue 18): calls are judged and logged as ever, one CRITICAL says why, the
/// metric shows it, `check-config` and `crowdsec-check` say the same; once it is fixed
/// the pusher starts on its own and pushes what was written meanwhile.
#[test]
fn a_state_file_it_cannot_use_stops_the_pusher_alone_and_is_said_everywhere() {
    let lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    for (state, garbled, expected) in [
        (
            "@DIR@/no/such/folder/position",
            false,
            "its folder must exist and be writable",
        ),
        (
            "@DIR@/position",
            true,
            "does not hold a position this daemon wrote",
        ),
    ] {
        let (port, metrics_port) = (free_port(), free_port());
        let s = Sandbox::with_config(&format!(
            "tarpit_seconds = 0\n[crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"{MACHINE}\"\npassword = \"{PASSWORD}\"\nstate_file = \"{state}\"\n\
             [daemon]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n",
            lapi.url()
        ));
        let position = s.dir.path().join("position");
        if garbled {
            std::fs::write(&position, "{\"not\": \"a position\"}").unwrap();
        }
        let d = Daemon {
            serve: LoggedServe::start(s, port),
            port,
            metrics_port,
        };
        assert_eq!(
            d.call(&bad_call("203.0.113.40")),
            "wrong_exten_min_length(3)"
        );
        assert!(d.serve.sandbox.log_text().contains("ip=203.0.113.40 "));
        let said = d.stderr();
        let critical: Vec<&str> = said.lines().filter(|l| l.contains("CRITICAL")).collect();
        assert_eq!(critical.len(), 1, "{said}");
        assert!(critical[0].contains(expected), "{said}");
        assert_eq!(d.metric("extsecurity_crowdsec_pusher_running"), 0.0);
        // The backlog gauges go on counting while it waits (issue 27: they read 0).
        wait_for("the waiting alert counted", Duration::from_secs(15), || {
            d.metric("extsecurity_crowdsec_backlog_alerts") == 1.0
        });
        assert!(d.metric("extsecurity_crowdsec_backlog_age_seconds") > 0.0);
        let check = d.serve.sandbox.run(&["check-config", "--quiet"]);
        assert_eq!(check.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&check.stderr).contains(expected));
        let check = d.serve.sandbox.run(&["crowdsec-check"]);
        assert_eq!(check.status.code(), Some(7));
        assert!(String::from_utf8_lossy(&check.stderr).contains(expected));

        // Fixed: the pusher starts within its retry and pushes the alert of meanwhile.
        match garbled {
            true => std::fs::remove_file(&position).unwrap(),
            false => {
                std::fs::create_dir_all(d.serve.sandbox.dir.path().join("no/such/folder")).unwrap()
            }
        }
        wait_for("the alert of meanwhile", Duration::from_secs(30), || {
            d.metric("extsecurity_crowdsec_delivered_total") >= 1.0
        });
        assert!(!lapi.decisions("203.0.113.40").is_null());
        assert_eq!(d.metric("extsecurity_crowdsec_pusher_running"), 1.0);
        wait_for("the backlog settled", Duration::from_secs(5), || {
            d.metric("extsecurity_crowdsec_backlog_alerts") == 0.0
        });
        assert!(
            d.stderr().contains("CrowdSec pusher started after"),
            "{}",
            d.stderr()
        );
    }
}

/// A reload without `[crowdsec]` while the LAPI is down stops the pusher; one with it
/// again starts it, and every alert of the while is delivered (issue 18: it never came
/// back).
#[test]
fn crowdsec_removed_and_restored_by_reloads_loses_no_alert() {
    let mut lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    lapi.stop();
    let d = Daemon::start(&push_config(&lapi, PASSWORD));
    let with = std::fs::read_to_string(&d.serve.sandbox.config).unwrap();
    assert_eq!(
        d.call(&bad_call("203.0.113.51")),
        "wrong_exten_min_length(3)"
    );
    let hup = || {
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(d.serve.child.id() as i32, libc::SIGHUP) },
            0
        );
    };
    let without = with.replace("[crowdsec]", "[crowdsec_off]");
    let without: String = without.split("[crowdsec_off]").next().unwrap().to_string()
        + &with[with.find("[daemon]").unwrap()..];
    std::fs::write(&d.serve.sandbox.config, without).unwrap();
    hup();
    wait_for("the pusher to stop", Duration::from_secs(15), || {
        d.stderr()
            .contains("CrowdSec pushing stopped: [crowdsec] was removed")
    });
    assert_eq!(
        d.call(&bad_call("203.0.113.52")),
        "wrong_exten_min_length(3)"
    );
    std::fs::write(&d.serve.sandbox.config, &with).unwrap();
    hup();
    lapi.start_again();
    wait_for("both alerts", Duration::from_secs(30), || {
        !lapi.decisions("203.0.113.51").is_null() && !lapi.decisions("203.0.113.52").is_null()
    });
}

/// The log is rotated while the LAPI is down — once while the daemon runs (as the
/// shipped logrotate file does: move, then SIGUSR1), once while it is stopped — and
/// every alert in the moved files is still delivered, once.
#[test]
fn alerts_in_rotated_logs_are_delivered_after_an_outage_and_a_restart() {
    let mut lapi = Lapi::start(None);
    lapi.add_machine(MACHINE, PASSWORD);
    lapi.stop();
    let mut d = Daemon::start(&push_config(&lapi, PASSWORD));
    let log = d.serve.sandbox.log.clone();
    let rotated = |n: u32| log.with_extension(format!("log.{n}"));
    let ips: Vec<String> = (1..=9).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &ips[..3] {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    std::fs::rename(&log, rotated(1)).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(d.serve.child.id() as i32, libc::SIGUSR1) },
        0
    );
    for ip in &ips[3..6] {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    assert!(d.serve.terminate().success());
    std::fs::rename(rotated(1), rotated(2)).unwrap();
    std::fs::rename(&log, rotated(1)).unwrap();
    // Counted across both moved files while the daemon is stopped.
    let said = d.crowdsec_check();
    assert!(
        said.lines().any(|l| l.starts_with("6 alerts in ")),
        "{said}"
    );
    d.serve.restart(d.port);
    for ip in &ips[6..] {
        assert_eq!(d.call(&bad_call(ip)), "wrong_exten_min_length(3)");
    }
    wait_for("nine waiting", Duration::from_secs(10), || {
        d.metric("extsecurity_crowdsec_backlog_alerts") == 9.0
    });
    lapi.start_again();
    wait_for("nine delivered", Duration::from_secs(30), || {
        d.metric("extsecurity_crowdsec_delivered_total") >= 9.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.metric("extsecurity_crowdsec_delivered_total"), 9.0);
    for ip in &ips {
        assert!(!lapi.decisions(ip).is_null(), "{ip} lost: {}", d.stderr());
    }
    assert!(!d.stderr().contains("no longer on disk"), "{}", d.stderr());
}

/// Issue 20: a toll-fraud line (the outbound check's ERROR, its reason with a word in
/// parentheses) is an alert for Debian's CrowdSec through the shipped parser; the
/// outbound check's WARNING lines (refusals by policy, quarantined calls) are not.
/// The lines are the daemon's own, written by a real outbound check.
#[test]
fn a_toll_fraud_line_is_an_alert_and_a_refusal_is_not() {
    let port = common::free_port();
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"\"\n\
         state_file = \"@DIR@/fraud.state\"\n"
    ));
    let serve = common::LoggedServe::start(sandbox, port);
    for i in 0..6 {
        let call = Channel::outbound(
            "1001",
            format!("0044207946012{i}").as_bytes(),
            "203.0.113.66",
        );
        common::agi_peer::outbound_call(port, &call);
    }
    let refused = Channel::outbound("1001", b"09001123456", "203.0.113.66");
    common::agi_peer::outbound_call(port, &refused);
    let log = serve.sandbox.log_text();
    assert!(
        log.contains(" ERROR ip=203.0.113.66 reason=toll_fraud(calls_per_minute) "),
        "{log}"
    );
    assert!(
        log.contains(" WARNING ip=203.0.113.66 reason=quarantined(calls_per_minute) "),
        "{log}"
    );
    let lapi = Lapi::start(None);
    let explain = lapi.cscli(&[
        "explain",
        "--file",
        serve.sandbox.log.to_str().unwrap(),
        "--type",
        "extsecurity",
    ]);
    let text = String::from_utf8_lossy(&explain.stdout);
    let blocks: Vec<&str> = text.split("line: ").skip(1).collect();
    assert_eq!(blocks.len(), 7, "{text}");
    let alerts: Vec<&&str> = blocks
        .iter()
        .filter(|b| b.contains("🟢 extsecurity/alert"))
        .collect();
    assert_eq!(alerts.len(), 1, "{text}");
    assert!(
        alerts[0].contains("reason=toll_fraud(calls_per_minute)"),
        "{}",
        alerts[0]
    );
}
