//! One daemon per control socket: a second `serve` refuses to start rather than take
//! the socket (after which `unban` would reach nothing once it exits), a stale socket
//! file is replaced, a missing folder is made 0700, and the file goes when the daemon
//! does.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{LoggedServe, Sandbox, free_port, wait_until};

fn daemon_config(port: u16, control: &str) -> Sandbox {
    Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\ncontrol_socket = '{control}'\n"
    ))
}

#[test]
fn a_second_daemon_refuses_the_socket_and_unban_reaches_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let port = free_port();
    let first = LoggedServe::start(daemon_config(port, control.to_str().unwrap()), port);

    // Another serve on another port, the same control socket.
    let second = daemon_config(free_port(), control.to_str().unwrap());
    let out = second.command().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "another extsecurity serve (pid {}) runs with the control socket {}",
            first.child.id(),
            control.display()
        )),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one clear line: {said}");

    // The first still answers on it.
    let out = first
        .sandbox
        .command()
        .args(["unban", "203.0.113.5"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("203.0.113.5: the daemon had counted nothing of it: nothing to forget there"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stale_socket_is_replaced_a_missing_folder_made_and_the_file_removed_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    // A crashed daemon's leftover: a socket file nobody listens on.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let port = free_port();
    let mut serve = LoggedServe::start(daemon_config(port, stale.to_str().unwrap()), port);
    assert!(std::os::unix::net::UnixStream::connect(&stale).is_ok());
    assert!(serve.terminate().success());
    assert!(!stale.exists(), "removed at the end: {}", serve.stderr());

    // Run by hand or under another init: no RuntimeDirectory= made the folder.
    let control = dir.path().join("run/extsecurity/control.sock");
    let port = free_port();
    let serve = LoggedServe::start(daemon_config(port, control.to_str().unwrap()), port);
    assert!(wait_until(Duration::from_secs(5), || control.exists()));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(control.parent().unwrap()), 0o700);
    assert_eq!(mode(&control), 0o600);
    let out = serve
        .sandbox
        .command()
        .args(["unban", "203.0.113.5"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the daemon had counted nothing of it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `extsecurity status` asks the running daemon: calls through the res_agi-faithful
/// peer (design §3a) count in its last minute, an alert's rule and line show, a refused
/// reload is shouted, and the metrics say the same (`build_info`,
/// `config_last_reload_successful`). With the daemon gone: one clear line, status 11.
#[test]
fn status_shows_the_running_daemon_and_says_when_there_is_none() {
    use common::agi_peer::fastagi_call;
    use common::asterisk::Channel;
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let (port, metrics_port) = (free_port(), free_port());
    let config = format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\ncontrol_socket = '{}'\nmetrics_listen = '127.0.0.1:{metrics_port}'\n",
        control.display()
    );
    let mut serve = LoggedServe::start(Sandbox::with_config(&config), port);
    fastagi_call(port, &Channel::ordinary("198.51.100.7"));
    let mut scanner = Channel::ordinary("203.0.113.66");
    scanner.exten = b"100".to_vec();
    scanner.user_agent = b"friendly-scanner".to_vec();
    fastagi_call(port, &scanner);

    let sandbox_config = serve.sandbox.config.clone();
    let status = |args: &[&str]| {
        std::process::Command::new(common::bin())
            .arg("--config")
            .arg(&sandbox_config)
            .args(args)
            .output()
            .unwrap()
    };
    let out = status(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        format!(
            "extsecurity {}, pid {}",
            env!("CARGO_PKG_VERSION"),
            serve.child.id()
        ),
        format!("listening on 127.0.0.1:{port}"),
        "AMI         off (no [ami])".into(),
        "calls       2 in the last minute, 2 in the last hour, 2 since start".into(),
        "alerts      1 in the last minute, 1 in the last hour, 1 since start".into(),
        "ERROR ip=203.0.113.66 reason=".into(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in\n{text}");
    }
    let out = status(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["calls"]["since_start"], 2);
    assert_eq!(json["top_rules"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["last_reload_ok"], true);
    assert_eq!(
        common::metric(metrics_port, "extsecurity_config_last_reload_successful"),
        1.0
    );
    assert_eq!(common::metric(metrics_port, "extsecurity_build_info{"), 1.0);

    // A reload with a broken file is refused: status and the gauge say so.
    std::fs::write(&sandbox_config, "tarpit_seconds = 'ten'\n").unwrap();
    let pid = serve.child.id() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    common::wait_for("the refused reload", Duration::from_secs(5), || {
        common::metric(metrics_port, "extsecurity_config_last_reload_successful") == 0.0
    });
    // The administrator mends the file but has not reloaded yet.
    std::fs::write(&sandbox_config, &config).unwrap();
    let text = String::from_utf8_lossy(&status(&["status"]).stdout).into_owned();
    assert!(text.contains("1 reloads, THE LAST WAS REFUSED"), "{text}");

    // Issue 27: a change that applies only at a restart (the listening address):
    // status shows the address in use and the file's pending one, and a second
    // reload says it is still pending rather than "no setting changed".
    let other = free_port();
    std::fs::write(
        &sandbox_config,
        config.replace(
            &format!("127.0.0.1:{port}'"),
            &format!("127.0.0.1:{other}'"),
        ),
    )
    .unwrap();
    for reloads in [1.0, 2.0] {
        unsafe { libc::kill(pid, libc::SIGHUP) };
        common::wait_for("the reload", Duration::from_secs(5), || {
            common::metric(metrics_port, "extsecurity_config_reloads_total") == reloads
        });
    }
    let text = String::from_utf8_lossy(&status(&["status"]).stdout).into_owned();
    assert!(
        text.contains(&format!("listening on 127.0.0.1:{port},")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "AT THE NEXT RESTART: daemon.listen (running \"127.0.0.1:{port}\", file \"127.0.0.1:{other}\")"
        )),
        "{text}"
    );
    let said = serve.stderr();
    assert_eq!(
        said.matches("these settings apply only at the next restart")
            .count(),
        2,
        "{said}"
    );

    assert!(serve.terminate().success());
    let out = status(&["status"]);
    assert_eq!(out.status.code(), Some(11));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with(&format!(
            "extsecurity: no daemon answers on {}",
            control.display()
        )),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
}
