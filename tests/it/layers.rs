//! The rules of ARCHITECTURE.md's layers, held against the code's imports: a rule
//! broken here is a room moved, not a style.

use crate::common;

use common::{files_under, repo};

/// The text of every `.rs` file under `dir`, with its path, without its `#[cfg(test)]`
/// module (tests may use what the code must not).
fn sources(dir: &str) -> Vec<(String, String)> {
    let out: Vec<(String, String)> = files_under(&repo().join(dir))
        .into_iter()
        .filter(|at| at.extension().is_some_and(|e| e == "rs"))
        .map(|at| {
            let text = std::fs::read_to_string(&at).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            (at.display().to_string(), code)
        })
        .collect();
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// Every `crate::NAME` a text names.
fn crate_paths(text: &str) -> Vec<&str> {
    text.match_indices("crate::")
        .map(|(i, _)| {
            let rest = &text[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn the_alert_log_imports_no_domain() {
    for (file, code) in sources("src/alert_log") {
        for name in crate_paths(&code) {
            assert!(
                matches!(name, "alert_log" | "clock"),
                "{file} imports crate::{name}: the alert line must not know a domain"
            );
        }
    }
}

#[test]
fn the_fraud_core_reads_no_clock() {
    for (file, code) in sources("src/fraud") {
        for clock in ["::now()", "Now::current", "unix_now", "timestamp_now"] {
            assert!(
                !code.contains(clock),
                "{file} reads the clock ({clock}): the daemon hands the guard the time"
            );
        }
    }
}

#[test]
fn the_cli_speaks_to_the_daemon_only_through_the_control_protocol() {
    let mut files = sources("src/cli");
    files.extend(sources("src/by_hand.rs"));
    for (file, code) in files {
        assert!(
            !code.contains("daemon::control") && !code.contains("daemon::status"),
            "{file} reaches into the daemon's control socket: use extsecurity::control"
        );
        for word in [
            "\"daemon \"",
            "\"released \"",
            "\"forgotten \"",
            "\"unknown \"",
        ] {
            assert!(
                !code.contains(word),
                "{file} parses the control socket's text ({word}): match a control::Answer"
            );
        }
    }
    for (file, code) in sources("src/by_hand.rs") {
        assert!(
            !crate_paths(&code).contains(&"daemon"),
            "{file}: the by-hand commands import nothing of daemon/"
        );
    }
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    assert_eq!(
        crate_paths("use crate::rules::Verdict; crate::clock::Now"),
        ["rules", "clock"]
    );
}

#[test]
fn the_audit_imports_only_the_configuration_reader() {
    let mut files = sources("src/audit");
    files.extend(sources("src/asterisk_conf.rs"));
    for (file, code) in files {
        for name in crate_paths(&code) {
            assert!(
                matches!(name, "audit" | "asterisk_conf" | "dialplan"),
                "{file} imports crate::{name}: the audit is a pure reading of Asterisk's files"
            );
        }
    }
}

#[test]
fn the_edges_lists_are_pure_but_for_their_fetching() {
    for (file, code) in sources("src/edge") {
        if file.ends_with("fetch.rs") {
            continue;
        }
        for name in crate_paths(&code) {
            assert!(
                matches!(name, "edge" | "config" | "alert_log"),
                "{file} imports crate::{name}: the edge's lists are data in, networks out"
            );
        }
        for io in ["std::fs", "ureq", "std::net::TcpStream", "Command::new"] {
            assert!(
                !code.contains(io),
                "{file} does I/O ({io}): put it in fetch.rs or the daemon"
            );
        }
    }
}
