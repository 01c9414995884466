//! Faults of the CrowdSec path (issue 18), against the private PostgreSQL LAPI of
//! `tests/it/fleet.rs` (Debian's crowdsec 1.4.6 on Debian's PostgreSQL 15): three
//! rotations of the alert log — the shipped logrotate file, compress and delaycompress
//! — during one outage, across a daemon restart; a reverse proxy in front of the LAPI
//! answering 429, 503 and a 400 for one alert; an `https://` URL to the LAPI's plain
//! http port; the LAPI's database down under a login. Nothing is lost that the log
//! still holds, compressed or not; nothing fails without a pause; nothing is blamed on
//! the password that is not the password's fault.

use crate::common;

use std::time::{Duration, Instant};

use common::agi_peer::fastagi_call;
use common::asterisk::Channel;
use common::crowdsec::{Lapi, Postgres};
use common::lapi_proxy::LapiProxy;
use common::users::pbx_sandbox;
use common::{LoggedServe, Sandbox, free_port, metric, repo, wait_for, wait_until};

const MACHINE: &str = "pbx1";
const PASSWORD: &str = "faults-test-password-0123456789";

/// One LAPI at a time: each is a PostgreSQL, a LAPI and a daemon on two cores.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    common::heavy()
}

/// `[crowdsec]` for the LAPI at `url`, `extra` added to the table.
fn crowdsec(url: &str, extra: &str) -> String {
    format!(
        "[crowdsec]\nlapi_url = \"{url}\"\nmachine_id = \"{MACHINE}\"\npassword = \"{PASSWORD}\"\nstate_file = \"@DIR@/crowdsec.position\"\n{extra}"
    )
}

/// The daemon on free ports with `config`; `(serve, fastagi, metrics)`.
fn daemon(sandbox: Sandbox) -> (LoggedServe, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let text = std::fs::read_to_string(&sandbox.config).unwrap();
    std::fs::write(
        &sandbox.config,
        text.replacen(
            "[daemon]\n",
            &format!(
                "[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics}'\n"
            ),
            1,
        ),
    )
    .unwrap();
    (LoggedServe::start(sandbox, port), port, metrics)
}

/// One call every rule objects to, from `ip`.
fn alert(port: u16, ip: &str) {
    let scan = Channel {
        exten: b"123".to_vec(),
        ..Channel::ordinary(ip)
    };
    let reason = fastagi_call(port, &scan).variable("EXTSEC_REASON");
    assert_eq!(reason.as_deref(), Some("wrong_exten_min_length(3)"));
}

#[test]
fn three_rotations_during_an_outage_and_a_restart_lose_nothing() {
    let _one = one_at_a_time();
    let pg = Postgres::start();
    let mut lapi = Lapi::on_postgres(&pg);
    lapi.add_machine(MACHINE, PASSWORD);
    lapi.stop();
    // The log where the README puts it, rotated by the shipped file as logrotate.timer
    // runs it (as root; it rotates as asterisk).
    let Some(sandbox) = pbx_sandbox(&format!(
        "tarpit_seconds = 0\n{}",
        crowdsec(&lapi.url(), "")
    )) else {
        eprintln!("SKIP: not root: cannot make the users asterisk and extsecurity");
        return;
    };
    let shipped = std::fs::read_to_string(repo().join("dist/logrotate/extsecurity")).unwrap();
    let conf = sandbox.dir.path().join("logrotate.conf");
    std::fs::write(
        &conf,
        shipped.replace(
            "/var/log/asterisk/inbound_extsecurity.log",
            sandbox.log.to_str().unwrap(),
        ),
    )
    .unwrap();
    let state = sandbox.dir.path().join("logrotate.state");
    let rotate = || {
        let out = std::process::Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(&state)
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (mut serve, port, metrics) = daemon(sandbox);
    let mut expected = Vec::new();
    let mut round = |port: u16, r: usize| {
        for i in 0..30 {
            let ip = format!("10.9.{r}.{}", i + 1);
            alert(port, &ip);
            expected.push(ip);
        }
    };
    // Two rotations while the daemon runs (the pusher holds the first file open).
    for r in 0..2 {
        round(port, r);
        std::thread::sleep(Duration::from_millis(700));
        rotate();
    }
    round(port, 2);
    wait_for("the backlog to show 90", Duration::from_secs(10), || {
        metric(metrics, "extsecurity_crowdsec_backlog_alerts") == 90.0
    });
    assert!(serve.terminate().success());
    let said = serve.stderr();
    assert!(
        said.contains("stopping with 90 alerts not yet accepted"),
        "{said}"
    );
    // The third while it is stopped: by now the first two files are compressed.
    rotate();
    let folder = serve.sandbox.log.parent().unwrap();
    assert!(folder.join("inbound_extsecurity.log.2.gz").exists());
    assert!(folder.join("inbound_extsecurity.log.3.gz").exists());
    // crowdsec-check counts them all, .gz included, as the stop promised.
    let check = serve.sandbox.run(&["crowdsec-check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("90 alerts in "),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The same config, so the same ports.
    serve.restart(port);
    round(port, 3);
    lapi.start_again();
    wait_for("every ban stored", Duration::from_secs(60), || {
        let bans = pg.bans_per_address();
        expected.iter().all(|ip| bans.contains_key(ip))
    });
    wait_for("the backlog to drain", Duration::from_secs(10), || {
        metric(metrics, "extsecurity_crowdsec_backlog_alerts") == 0.0
    });
    assert_eq!(metric(metrics, "extsecurity_crowdsec_lost_total"), 0.0);
}

#[test]
fn rate_limits_errors_tls_mistakes_and_a_database_down_are_each_handled() {
    let _one = one_at_a_time();
    let pg = Postgres::start();
    let lapi = Lapi::on_postgres(&pg);
    lapi.add_machine(MACHINE, PASSWORD);
    let upstream = format!("127.0.0.1:{}", lapi.port).parse().unwrap();

    // A proxy that rate-limits the first four posts, fails the fifth, and cannot
    // take any request holding 203.0.113.99.
    let proxy = LapiProxy::start(
        upstream,
        Box::new(|n, body| match n {
            0..=3 => Some((429, "Too Many Requests")),
            4 => Some((503, "Service Unavailable")),
            _ if body.contains("203.0.113.99") => Some((400, "Bad Request")),
            _ => None,
        }),
    );
    let (serve, port, metrics) = daemon(Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n{}[daemon]\n",
        crowdsec(&proxy.url(), "batch_size = 100\n")
    )));
    let mut ips: Vec<String> = (1..=19).map(|i| format!("203.0.113.{i}")).collect();
    ips.insert(7, "203.0.113.99".into());
    for ip in &ips {
        alert(port, ip);
    }
    wait_for("19 delivered, 1 rejected", Duration::from_secs(60), || {
        metric(metrics, "extsecurity_crowdsec_delivered_total") == 19.0
            && metric(metrics, "extsecurity_crowdsec_rejected_total") == 1.0
    });
    let bans = pg.bans_per_address();
    for ip in &ips {
        assert_eq!(
            bans.contains_key(ip),
            ip != "203.0.113.99",
            "{ip}: {bans:?}"
        );
    }
    assert!(
        serve
            .stderr()
            .contains("203.0.113.99 wrong_exten_min_length(3)")
    );
    drop(serve);

    // https:// to the LAPI's plain http port: failures with pauses, said once.
    let (serve, port, metrics) = daemon(Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n{}[daemon]\n",
        crowdsec(&format!("https://127.0.0.1:{}", lapi.port), "")
    )));
    alert(port, "203.0.113.120");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let retries = metric(metrics, "extsecurity_crowdsec_retries_total");
    assert!(
        (1.0..=12.0).contains(&retries),
        "{retries} retries in {:?}: a busy loop",
        started.elapsed()
    );
    let said = serve.stderr();
    assert_eq!(said.matches("CrowdSec: pushing fails").count(), 1, "{said}");
    assert!(said.contains("TLS failed"), "{said}");
    drop(serve);

    // The LAPI's database down: its 401 is not a wrong password.
    let (serve, port, metrics) = daemon(Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n{}[daemon]\n",
        crowdsec(&lapi.url(), "")
    )));
    pg.stop();
    let check = serve.sandbox.run(&["crowdsec-check"]);
    assert_eq!(check.status.code(), Some(7));
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!said.contains("password right"), "{said}");
    assert!(
        said.contains("database may be down") || said.contains("is failing"),
        "{said}"
    );
    alert(port, "203.0.113.130");
    pg.start_again();
    wait_for(
        "the alert after the database is back",
        Duration::from_secs(60),
        || metric(metrics, "extsecurity_crowdsec_delivered_total") >= 1.0,
    );
    assert!(pg.bans_per_address().contains_key("203.0.113.130"));
    assert!(
        !serve.stderr().contains("password right"),
        "{}",
        serve.stderr()
    );
}

/// Issue 27: a LAPI (or a proxy before it) that answers 400 to every batch dropped the
/// alerts one by one, an ERROR each (58 in 20 s), `failing` staying 0. It is an outage:
/// the alerts are kept and retried, said once, `failing` 1; when the LAPI takes them
/// again every one is delivered and none was dropped.
#[test]
fn a_lapi_that_refuses_every_batch_is_failing_and_loses_nothing() {
    let _one = one_at_a_time();
    let pg = Postgres::start();
    let lapi = Lapi::on_postgres(&pg);
    lapi.add_machine(MACHINE, PASSWORD);
    let upstream = format!("127.0.0.1:{}", lapi.port).parse().unwrap();
    let refusing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = LapiProxy::start(upstream, {
        let refusing = refusing.clone();
        Box::new(move |_, _| {
            refusing
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some((400, "Bad Request"))
        })
    });
    let (serve, port, metrics) = daemon(Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n{}[daemon]\n",
        crowdsec(&proxy.url(), "batch_size = 100\n")
    )));
    let ips: Vec<String> = (1..=12).map(|i| format!("203.0.113.{i}")).collect();
    for ip in &ips[..6] {
        alert(port, ip);
    }
    wait_for("failing", Duration::from_secs(30), || {
        metric(metrics, "extsecurity_crowdsec_failing") == 1.0
    });
    for ip in &ips[6..] {
        alert(port, ip);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(metrics, "extsecurity_crowdsec_rejected_total"), 0.0);
    let said = serve.stderr();
    assert_eq!(said.matches("CrowdSec: pushing fails").count(), 1, "{said}");
    assert!(said.contains("the LAPI refuses every alert"), "{said}");
    assert!(!said.contains("dropped"), "{said}");

    refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(60), || {
            metric(metrics, "extsecurity_crowdsec_delivered_total") == 12.0
        }),
        "all twelve delivered: {} so far, {} rejected; {}",
        metric(metrics, "extsecurity_crowdsec_delivered_total"),
        metric(metrics, "extsecurity_crowdsec_rejected_total"),
        serve.stderr()
    );
    assert_eq!(metric(metrics, "extsecurity_crowdsec_rejected_total"), 0.0);
    assert_eq!(metric(metrics, "extsecurity_crowdsec_failing"), 0.0);
    let bans = pg.bans_per_address();
    for ip in &ips {
        assert!(bans.contains_key(ip), "{ip}: {bans:?}");
    }
}
