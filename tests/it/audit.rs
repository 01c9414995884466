//! `extsecurity audit` on hand-written configurations (tests/fixtures/audit/README.md):
//! a weak PBX with each finding at its file and line — one of them in an `#include`d
//! file — and the same PBX done right. Run as the real binary, as an administrator or
//! cron runs it: text, JSON, exit status, what it cannot read, and never a secret.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::bin;

fn fixture(name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/audit").join(name)
}

fn audit(dir: &Path, extra: &[&str]) -> Output {
    audit_by(Command::new(bin()), dir, extra)
}

/// `audit` of the PBX in `dir` (its `asterisk` and `fail2ban` folders), run by `command`:
/// the binary, or the binary as another user.
fn audit_by(mut command: Command, dir: &Path, extra: &[&str]) -> Output {
    command
        .arg("audit")
        .arg("--asterisk-dir")
        .arg(dir.join("asterisk"))
        .arg("--fail2ban-dir")
        .arg(dir.join("fail2ban"))
        .args(extra)
        // The audit reads no extsecurity.toml: a broken one must not stop it.
        .env("EXTSECURITY_CONFIG", "/nonexistent/extsecurity.toml")
        .output()
        .unwrap()
}

/// A copy of fixture `name` that every user may read but `file` (0600, root's), audited
/// by the `extsecurity` user; `None` (the test skips) when not root.
fn audit_with_one_file_hidden(
    name: &str,
    file: &str,
    extra: &[&str],
) -> Option<(tempfile::TempDir, PathBuf, Output)> {
    if !common::users::ensure() {
        eprintln!("SKIP: not root: cannot become another user");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pbx");
    let status = Command::new("cp")
        .arg("-r")
        .arg(fixture(name))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let hidden = copy.join("asterisk").join(file);
    std::fs::set_permissions(&hidden, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = audit_by(
        common::users::command_as("extsecurity", bin()),
        &copy,
        extra,
    );
    Some((dir, hidden, out))
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `(id, file name, line)` of every finding.
fn places(report: &serde_json::Value) -> BTreeSet<(String, String, u64)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = Path::new(f["file"].as_str().unwrap_or(""));
            (
                f["id"].as_str().unwrap().to_string(),
                file.file_name().unwrap().to_string_lossy().into_owned(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Every secret written in the weak fixture: none may appear in any output.
const SECRETS: [&str; 6] = [
    "Correct-Horse-77x",
    "amp111",
    "e5ce0f61fc374df2d2dc73ff3c034673",
    "Xq3-provider-secret-long",
    "Sip-long-secret-9z",
    "password=",
];

#[test]
fn the_weak_pbx_has_each_finding_at_its_file_and_line() {
    let out = audit(&fixture("weak"), &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let want: BTreeSet<(String, String, u64)> = [
        ("guest-path-to-trunk", "extensions.conf", 12),
        ("weak-secret", "pjsip.endpoint.conf", 12),
        ("weak-secret", "pjsip.endpoint.conf", 19),
        ("weak-secret", "pjsip.endpoint.conf", 27),
        ("reused-secret", "pjsip.endpoint.conf", 37),
        ("endpoint-without-auth", "pjsip.endpoint.conf", 29),
        ("endpoint-without-auth", "pjsip.endpoint.conf", 46),
        ("guest-calls", "pjsip.conf", 13),
        ("guest-calls", "sip.conf", 1),
        ("guest-without-check", "pjsip.conf", 13),
        ("guest-without-check", "sip.conf", 1),
        ("insecure-invite-dynamic", "sip.conf", 9),
        ("ami-exposed", "manager.conf", 4),
        ("ami-user-open", "manager.conf", 6),
        ("ami-weak-secret", "manager.conf", 7),
        ("ami-dangerous-write", "manager.conf", 9),
        ("http-exposed", "http.conf", 3),
        ("ari-weak-password", "ari.conf", 6),
        ("identifier-order", "pjsip.conf", 4),
        ("security-log-off", "logger.conf", 3),
        ("jail-reads-nothing", "jail.conf", 6),
    ]
    .into_iter()
    .map(|(id, file, line)| (id.to_string(), file.to_string(), line))
    .collect();
    assert_eq!(places(&report), want);
    let findings = report["findings"].as_array().unwrap();
    let by = |id: &str, line: u64| {
        findings
            .iter()
            .find(|f| f["id"] == id && f["line"] == line)
            .unwrap()
    };
    // The secret svcrack found on a real Asterisk at guess 32 (design.md §3h).
    assert_eq!(
        by("weak-secret", 12)["guess"],
        "guess 32 of svcrack's default run"
    );
    assert_eq!(by("weak-secret", 12)["severity"], "critical");
    assert_eq!(
        by("weak-secret", 19)["guess"],
        "guess 1 of svcrack's default run"
    );
    // An MD5 credential, found by hashing svcrack's -D guesses with the realm.
    assert_eq!(by("weak-secret", 27)["guess"], "guess 2947 of svcrack -D");
    assert_eq!(by("weak-secret", 27)["severity"], "high");
    let path: Vec<&str> = by("guest-path-to-trunk", 12)["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            "from-external (PJSIP endpoint anonymous)",
            "from-external,_X.,2 Goto(from-internal,${EXTEN},1)",
            "from-internal include => outbound",
            // As written, as `dialplan show` prints it; the trunk after `=` resolved.
            "outbound,_00X.,1 Dial(${TRUNK}/${EXTEN}) = PJSIP/provider",
        ]
    );
    assert_eq!(report["worst"], "critical");
    assert_eq!(report["summary"], "4 critical, 12 high, 5 medium");
}

#[test]
fn no_output_prints_a_secret() {
    for extra in [&[][..], &["--json"][..]] {
        let out = audit(&fixture("weak"), extra);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("weak-secret"), "{all}");
        for secret in SECRETS {
            assert!(!all.contains(secret), "{secret} printed: {all}");
        }
    }
}

#[test]
fn the_text_report_names_place_guess_why_and_fix() {
    let out = audit(&fixture("weak"), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(12));
    let line = text
        .lines()
        .find(|l| l.contains("pjsip.endpoint.conf:12:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("CRITICAL weak-secret "), "{line}");
    assert!(
        text.contains("    found by: guess 32 of svcrack's default run"),
        "{text}"
    );
    assert!(text.contains("    fix: "), "{text}");
    assert!(text.trim_end().ends_with("(9 files read)"), "{text}");
}

#[test]
fn the_sound_pbx_exits_zero_with_no_finding() {
    let out = audit(&fixture("sound"), &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report = json(&out);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["summary"], "no findings");
}

#[test]
fn check_config_prints_the_audits_summary() {
    let out = Command::new(bin())
        .args(["check-config", "--asterisk-dir"])
        .arg(fixture("weak").join("asterisk"))
        .env(
            "EXTSECURITY_CONFIG",
            common::repo().join("dist/extsecurity.toml"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        // fail2ban's folder is this machine's /etc/fail2ban here: the jail's finding
        // depends on it, the rest not.
        text.lines().any(|l| l.starts_with("# audit of ")
            && l.contains("weak/asterisk: 4 critical, ")
            && l.ends_with(" 5 medium: run extsecurity audit")),
        "{text}"
    );
}

#[test]
fn a_missing_folder_is_said_and_is_a_config_error() {
    let out = audit(Path::new("/nonexistent"), &[]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--asterisk-dir"));
}

/// Run as a user who may not read an `#include`d file: the audit says which file, still
/// audits the rest, and does not call the readable include "missing".
#[test]
fn a_file_this_user_cannot_read_is_named() {
    let Some((_dir, hidden, out)) =
        audit_with_one_file_hidden("weak", "pjsip.endpoint.conf", &["--json"])
    else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("could not read {}", hidden.display())),
        "{stderr}"
    );
    let report = json(&out);
    assert_eq!(report["unread"][0]["file"], hidden.display().to_string());
    let ids = places(&report);
    assert!(ids.iter().any(|(id, _, _)| id == "guest-calls"));
    assert!(
        !ids.iter().any(|(id, _, _)| id == "config-refused"),
        "{ids:?}"
    );
    assert!(!ids.iter().any(|(_, file, _)| file == "pjsip.endpoint.conf"));
}

/// doc/audit.md explains every rule under its own heading (the table links to it).
#[test]
fn the_audit_chapter_has_a_section_for_every_rule() {
    let chapter = std::fs::read_to_string(common::repo().join("doc/audit.md")).unwrap();
    for rule in extsecurity::audit::RULES {
        assert!(
            chapter.contains(&format!("\n### {}\n", rule.id)),
            "doc/audit.md has no section for {}",
            rule.id
        );
    }
}

/// `[fraud] audit_dir`: check-config names the accounts that get the stricter limits.
#[test]
fn check_config_names_the_weak_accounts_fraud_will_limit() {
    let dir = fixture("weak").join("asterisk");
    let list = common::repo().join("dist/extsecurity-high-risk.conf");
    let sandbox = common::Sandbox::with_config(&format!(
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {list:?}\n\
         state_file = \"@DIR@/fraud.state\"\naudit_dir = {dir:?}\n"
    ));
    let out = Command::new(bin())
        .args(["check-config", "--asterisk-dir", "/nonexistent"])
        .env("EXTSECURITY_CONFIG", &sandbox.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "# [fraud]: 7 accounts weak by the audit of {} get the [fraud.weak] limits: 1003, 1004, 1005, 1006, 1007, 1008, provider",
        dir.display()
    );
    assert!(text.lines().any(|l| l == want), "{text}");
}

/// A sound PBX whose pjsip.conf this user may not read: no finding is no clean bill,
/// so the exit status says the audit is incomplete (a cron job hears it).
#[test]
fn an_audit_that_could_not_read_a_file_is_not_a_clean_bill() {
    let Some((_dir, hidden, out)) = audit_with_one_file_hidden("sound", "pjsip.conf", &[]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("the audit is incomplete: 1 file could not be read"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("could not read {}", hidden.display())),
        "{stderr}"
    );
}
