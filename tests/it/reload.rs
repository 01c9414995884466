//! SIGHUP as an administrator sends it (`systemctl reload extsecurity`), with the file
//! in the states editors and config managers leave it: empty mid-save, gone, restored.
//! A reload that cannot be trusted is refused and the running config kept; one that
//! can applies every setting it can live — the AMI watcher started and stopped with its
//! table — and names the ones that wait for a restart.

use crate::common;

use std::time::Duration;

use common::agi_peer::fastagi_call;
use common::ami_peer::{AmiPeer, Script, Then, capture_events, from_address};
use common::asterisk::Channel;
use common::{LoggedServe, Sandbox, free_port, metric, wait_until};

/// A daemon with FastAGI on `port` and metrics on `metrics`, config `extra`.
fn start(extra: &str) -> (LoggedServe, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let sandbox = Sandbox::with_config(&config(port, metrics, extra));
    (LoggedServe::start(sandbox, port), port, metrics)
}

fn config(port: u16, metrics: u16, extra: &str) -> String {
    format!(
        "tarpit_seconds = 0\n{extra}\n[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics}'\n"
    )
}

/// SIGHUP, then waits until the daemon has counted the attempt.
fn reload(serve: &LoggedServe, metrics: u16) {
    let before = metric(metrics, "extsecurity_config_reloads_total")
        + metric(metrics, "extsecurity_config_reload_failures_total");
    // SAFETY: kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(serve.child.id() as i32, libc::SIGHUP) },
        0
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(metrics, "extsecurity_config_reloads_total")
                + metric(metrics, "extsecurity_config_reload_failures_total")
                > before
        }),
        "{}",
        serve.stderr()
    );
}

/// The reason the daemon gives a scanner's call (extension `100`) from `ip`.
fn verdict(port: u16, ip: &str) -> String {
    let scan = Channel {
        exten: b"100".to_vec(),
        ..Channel::ordinary(ip)
    };
    fastagi_call(port, &scan)
        .variable("EXTSEC_REASON")
        .unwrap_or_default()
}

#[test]
fn an_empty_or_missing_file_is_refused_and_the_running_one_kept() {
    let office = "trusted_networks = ['198.51.100.0/24']";
    let (serve, port, metrics) = start(office);
    let text = std::fs::read_to_string(&serve.sandbox.config).unwrap();
    assert_eq!(verdict(port, "198.51.100.7"), "trusted");

    // An editor's save caught half-way, a config manager's empty template.
    for empty in ["", "\n# managed by puppet\n"] {
        std::fs::write(&serve.sandbox.config, empty).unwrap();
        reload(&serve, metrics);
        assert_eq!(verdict(port, "198.51.100.7"), "trusted", "{empty:?}");
    }
    std::fs::remove_file(&serve.sandbox.config).unwrap();
    reload(&serve, metrics);
    assert_eq!(verdict(port, "198.51.100.7"), "trusted", "file gone");
    let said = serve.stderr();
    assert_eq!(said.matches("reload refused").count(), 3, "{said}");
    assert!(
        said.contains("holds no settings (empty, or comments only)"),
        "{said}"
    );
    assert!(said.contains("the configuration file is gone"), "{said}");
    assert_eq!(
        metric(metrics, "extsecurity_config_reload_failures_total"),
        3.0
    );

    // Restored, with the office moved: applied, and said.
    std::fs::write(
        &serve.sandbox.config,
        text.replace("198.51.100.0/24", "192.0.2.0/24"),
    )
    .unwrap();
    reload(&serve, metrics);
    assert_eq!(verdict(port, "192.0.2.7"), "trusted");
    assert_eq!(verdict(port, "198.51.100.8"), "wrong_exten_min_length(3)");
    assert!(
        serve.stderr().contains("configuration reloaded from ")
            && serve.stderr().contains("; applied now: trusted_networks"),
        "{}",
        serve.stderr()
    );
}

#[test]
fn a_reload_names_what_waits_for_a_restart() {
    let (serve, port, metrics) = start("");
    let text = config(free_port(), metrics, "exten_min_length = 3")
        .replace("[daemon]\n", "[daemon]\nmax_connections = 5\n");
    let text = common::with_own_control_socket(&text, serve.sandbox.dir.path());
    std::fs::write(
        &serve.sandbox.config,
        format!("log_file = {:?}\n{text}", serve.sandbox.log),
    )
    .unwrap();
    reload(&serve, metrics);
    let said = serve.stderr();
    assert!(said.contains("; applied now: exten_min_length"), "{said}");
    let warned: Vec<&str> = said.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warned.len(), 1, "{said}");
    assert!(
        warned[0].contains("apply only at the next restart")
            && warned[0].contains(&format!("daemon.listen (running \"127.0.0.1:{port}\""))
            && warned[0].contains("daemon.max_connections (running 1024, file 5)"),
        "{said}"
    );
    // Still on the old port, with the new rule: 100 is long enough now, and blocked.
    assert_eq!(verdict(port, "203.0.113.5"), "extension_banned");
}

#[test]
fn the_ami_watcher_starts_and_stops_with_its_table() {
    let guesses = from_address(&capture_events("ami-wrongpw.bin"), "203.0.113.5").repeat(6);
    let peer = AmiPeer::start(vec![
        Script::accept(guesses, Then::Hold),
        Script::accept(Vec::new(), Then::Hold),
    ]);
    let (serve, port, metrics) = start("");
    let without = std::fs::read_to_string(&serve.sandbox.config).unwrap();
    std::fs::write(
        &serve.sandbox.config,
        format!(
            "{without}[ami]\naddress = '{}'\nusername = 'extsecurity'\nsecret = 's3cmon-test'\n",
            peer.addr
        ),
    )
    .unwrap();
    reload(&serve, metrics);
    assert!(
        wait_until(Duration::from_secs(10), || {
            serve.sandbox.log_text().contains("reason=auth_bruteforce")
        }),
        "added by a reload, the watcher logs in and counts: {}",
        serve.stderr()
    );
    assert_eq!(metric(metrics, "extsecurity_ami_connected"), 1.0);
    assert!(
        serve.stderr().contains("; applied now: [ami] added"),
        "{}",
        serve.stderr()
    );

    // A changed login makes a new connection at once, with it.
    let with = std::fs::read_to_string(&serve.sandbox.config).unwrap();
    std::fs::write(&serve.sandbox.config, format!("{with}auth = 'plain'\n")).unwrap();
    reload(&serve, metrics);
    assert!(
        wait_until(Duration::from_secs(10), || peer.connections() == 2
            && peer.received(1).contains("Secret: s3cmon-test\r\n")),
        "{}",
        serve.stderr()
    );

    std::fs::write(&serve.sandbox.config, &without).unwrap();
    reload(&serve, metrics);
    assert!(
        wait_until(Duration::from_secs(5), || {
            metric(metrics, "extsecurity_ami_connected") == 0.0
        }),
        "{}",
        serve.stderr()
    );
    // The metric drops as the link closes; the line follows once the task has ended.
    assert!(
        wait_until(Duration::from_secs(5), || serve
            .stderr()
            .contains("AMI watcher stopped: [ami] was removed")),
        "{}",
        serve.stderr()
    );
    // The calls go on meanwhile, and the guesser is remembered by FastAGI.
    let reason = fastagi_call(port, &Channel::ordinary("203.0.113.5")).variable("EXTSEC_REASON");
    assert_eq!(reason.as_deref(), Some("repeat_offender"));
}
