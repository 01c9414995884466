//! What `serve` and `check-config` say about themselves, as an administrator reads it:
//! a log folder that does not exist stops both at start with one line; a log that stops
//! taking lines at run time is one CRITICAL and one INFO, however many calls it spans,
//! and every call still gets its verdict; under journald each line carries its syslog
//! priority and no second timestamp; the unit's `ExecStartPre` check is quiet.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::agi_peer::fastagi_call;
use common::asterisk::Channel;
use common::{LoggedServe, Sandbox, free_port, metric, wait_until};

#[test]
fn a_log_folder_that_does_not_exist_stops_check_config_and_serve_at_start() {
    let s = Sandbox::with_config(&format!(
        "log_file = '/nonexistent-extsecurity/x.log'\n[daemon]\nlisten = '127.0.0.1:{}'\n",
        free_port()
    ));
    // The sandbox's own log_file comes first; point it at the missing folder instead.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text = text.replacen(&format!("log_file = {:?}\n", s.log), "", 1);
    std::fs::write(&s.config, text).unwrap();
    let why = "cannot open the alert log /nonexistent-extsecurity/x.log: the folder /nonexistent-extsecurity does not exist";
    let out = s.run(&["check-config", "--quiet"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("extsecurity: {why}\n")
    );
    let out = s.run(&["serve"]);
    assert_eq!(out.status.code(), Some(6));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("extsecurity: {why}\n")
    );
}

#[test]
fn a_log_that_stops_taking_lines_is_one_critical_and_calls_keep_their_verdict() {
    let (port, metrics) = (free_port(), free_port());
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics}'\n"
    ));
    // The log in a folder of its own, which then goes away (a disk unmounted, a
    // folder removed by hand).
    let folder = s.dir.path().join("logs");
    std::fs::create_dir(&folder).unwrap();
    let log = folder.join("alerts.log");
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replacen(&format!("{:?}", s.log), &format!("{log:?}"), 1),
    )
    .unwrap();
    let serve = LoggedServe::start(s, port);
    let scan = |ip: &str| {
        let call = Channel {
            exten: b"100".to_vec(),
            ..Channel::ordinary(ip)
        };
        fastagi_call(port, &call).variable("EXTSEC_RESULT")
    };
    assert_eq!(scan("203.0.113.1").as_deref(), Some("ALERT"));
    std::fs::remove_dir_all(&folder).unwrap();
    for n in 2..12 {
        assert_eq!(scan(&format!("203.0.113.{n}")).as_deref(), Some("ALERT"));
    }
    assert_eq!(metric(metrics, "extsecurity_log_errors_total"), 10.0);
    std::fs::create_dir(&folder).unwrap();
    assert_eq!(scan("203.0.113.20").as_deref(), Some("ALERT"));
    let said = serve.stderr();
    let critical: Vec<&str> = said.lines().filter(|l| l.contains("CRITICAL")).collect();
    assert_eq!(critical.len(), 1, "{said}");
    assert!(
        critical[0].contains(&format!(
            "cannot open the alert log {}: the folder {} does not exist",
            log.display(),
            folder.display()
        )),
        "{said}"
    );
    assert!(
        said.contains("alert log writable again after") && said.contains("10 lines were lost"),
        "{said}"
    );
    assert_eq!(said.matches("ERROR").count(), 0, "{said}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("ip=203.0.113.20 ")
    );
}

#[test]
fn under_journald_lines_carry_their_priority_and_no_timestamp() {
    let port = free_port();
    let s = Sandbox::with_config(&format!(
        "[daemon]\nlisten = '127.0.0.1:{port}'\n[ami]\naddress = '127.0.0.1:9'\nusername = 'u'\nsecret = 'pw'\n"
    ));
    // What systemd does: stderr is the journal's stream, JOURNAL_STREAM names it.
    let path = s.dir.path().join("journal");
    let stream = std::fs::File::create(&path).unwrap();
    let meta = stream.metadata().unwrap();
    let mut child = s
        .command()
        .arg("serve")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(stream)
        .spawn()
        .unwrap();
    let said = || std::fs::read_to_string(&path).unwrap_or_default();
    let warned = wait_until(Duration::from_secs(10), || said().contains("<4>AMI:"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "{}", said());
    let text = said();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "<6>extsecurity {} starting: configuration {} (from $EXTSECURITY_CONFIG)",
            env!("CARGO_PKG_VERSION"),
            s.config.display()
        )),
        "{first}"
    );
    assert!(first.contains(&format!(
        "FastAGI on 127.0.0.1:{port}, AMI watcher for 127.0.0.1:9"
    )));
    for line in text.lines() {
        assert!(
            line.starts_with('<') && !line.starts_with("<2026"),
            "{line}"
        );
        assert!(
            !line.contains(" INFO ") && !line.contains(" WARN "),
            "{line}"
        );
    }

    // The same daemon on a terminal or a file: its own timestamps and levels.
    let mut child = s
        .command()
        .arg("serve")
        .stderr(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(10), || {
        said().contains(" INFO extsecurity")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "{}", said());
}

#[test]
fn the_units_check_is_quiet_unless_something_is_wrong() {
    let s = Sandbox::new();
    let out = s.run(&["check-config", "--quiet"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let out = s.run(&["check-config"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# effective settings, from "));
    std::fs::write(&s.config, "exten_min_length = 'x'\n").unwrap();
    let out = s.run(&["check-config", "--quiet"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(":1:20: exten_min_length must be a whole number")
    );
}
