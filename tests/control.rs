//! One daemon per control socket: a second `serve` refuses to start rather than take
//! the socket (after which `unban` would reach nothing once it exits), a stale socket
//! file is replaced, a missing folder is made 0700, and the file goes when the daemon
//! does.

mod common;

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
        said.contains("203.0.113.5: the daemon says: unknown 203.0.113.5"),
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
        String::from_utf8_lossy(&out.stdout).contains("the daemon says"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
