//! `extsecurity audit`: the configuration read the way an attacker reads it — the
//! secret svcrack finds in 32 guesses, the guest call that walks to a trunk `Dial`, the
//! manager open to the internet — each finding at its file and line, with why and the
//! fix, before anyone tries it.
//!
//! The files are read as Asterisk reads them ([`crate::asterisk_conf`]); the rules are
//! pure functions of what was read, one file per subject:
//! - [`accounts`]: SIP and IAX2 accounts — weak, reused and missing secrets, guests;
//! - [`exposure`]: AMI, HTTP/ARI, the identifier order, the security log, fail2ban;
//! - [`reach`]: the dialplan as a graph, and every path from a guest context to a trunk.
//!
//! The audit never prints a secret: it says which guess of svcrack's run finds it.

pub mod accounts;
pub mod exposure;
pub mod reach;
pub mod secrets;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::asterisk_conf::{self, At, Conf, Files};

/// One rule of the audit: its id, how bad its findings can be, what it looks for.
/// doc/audit.md's table is generated from [`RULES`] and has a section for each id.
pub struct Rule {
    pub id: &'static str,
    pub severity: &'static str,
    pub checks: &'static str,
}

/// Every rule, in the order the manual explains them.
pub const RULES: [Rule; 18] = [
    Rule {
        id: "weak-secret",
        severity: "critical, high, medium",
        checks: "a SIP or IAX2 secret svcrack's default run finds (critical), its -D list finds (high), empty (critical), shorter than 8 characters (high), digits only (medium); MD5 credentials hashed with their realm",
    },
    Rule {
        id: "reused-secret",
        severity: "high",
        checks: "one secret on two or more accounts",
    },
    Rule {
        id: "endpoint-without-auth",
        severity: "high",
        checks: "a PJSIP endpoint with neither auth nor identify; a chan_sip peer with no secret and no fixed host",
    },
    Rule {
        id: "guest-calls",
        severity: "high",
        checks: "PJSIP's anonymous endpoint (with its identifier loaded and in the order), chan_sip's allowguest (on by default), an IAX2 guest user",
    },
    Rule {
        id: "guest-path-to-trunk",
        severity: "critical",
        checks: "every path from a guest context to a trunk Dial through include, Goto, GotoIf, Gosub, Macro and Local channels, printed as its chain",
    },
    Rule {
        id: "guest-without-check",
        severity: "medium",
        checks: "a guest context whose calls never reach extsecurity's check",
    },
    Rule {
        id: "insecure-invite-dynamic",
        severity: "high",
        checks: "insecure=invite on a chan_sip peer with host=dynamic",
    },
    Rule {
        id: "ami-exposed",
        severity: "medium",
        checks: "the manager enabled and bound off loopback (0.0.0.0 by default)",
    },
    Rule {
        id: "ami-user-open",
        severity: "high",
        checks: "an AMI user without permit or acl while AMI is off loopback",
    },
    Rule {
        id: "ami-weak-secret",
        severity: "critical, medium",
        checks: "an AMI secret that is a known default (amp111), in svcrack's list or short",
    },
    Rule {
        id: "ami-dangerous-write",
        severity: "high",
        checks: "an open AMI user with write=system, command, originate or all",
    },
    Rule {
        id: "http-exposed",
        severity: "high",
        checks: "Asterisk's HTTP server (ARI, AMI over HTTP) bound off loopback without TLS",
    },
    Rule {
        id: "ari-weak-password",
        severity: "high, medium",
        checks: "a plain ARI password that is a known default, in svcrack's list or short",
    },
    Rule {
        id: "identifier-order",
        severity: "medium",
        checks: "endpoint_identifier_order without auth_username, which turns off Asterisk's throttle for unknown users",
    },
    Rule {
        id: "security-log-off",
        severity: "medium",
        checks: "no logger.conf file takes the security level",
    },
    Rule {
        id: "jail-reads-nothing",
        severity: "high",
        checks: "fail2ban's enabled asterisk jail reads a file Asterisk does not write (messages vs messages.log)",
    },
    Rule {
        id: "config-refused",
        severity: "high",
        checks: "a line for which Asterisk refuses the whole file: a missing #include, a broken header, inheriting from what is not defined",
    },
    Rule {
        id: "exec-include",
        severity: "info",
        checks: "an #exec line: its output is configuration the audit cannot see and never runs",
    },
];

/// How bad a finding is; the exit status is non-zero from `High` up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Medium,
    High,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// One thing wrong, where it is written, why it matters and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable name of the rule (doc/audit.md has one section per id).
    pub id: &'static str,
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// What was found, naming the account, context or setting (never a secret).
    pub what: String,
    pub why: String,
    pub fix: String,
    /// For a secret: the svcrack guess that finds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guess: Option<String>,
    /// For a guest path: each step from the guest context to the trunk `Dial`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

impl Finding {
    pub fn new(id: &'static str, severity: Severity, at: Option<&At>, what: String) -> Self {
        debug_assert!(RULES.iter().any(|r| r.id == id), "{id} is not in RULES");
        Finding {
            id,
            severity,
            file: at.map(|a| a.file.clone()),
            line: at.map(|a| a.line),
            what,
            why: String::new(),
            fix: String::new(),
            guess: None,
            path: Vec::new(),
        }
    }

    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }

    /// `file:line: ` or nothing.
    pub fn place(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{}:{l}", f.display()),
            (Some(f), None) => f.display().to_string(),
            _ => String::new(),
        }
    }
}

/// Where to look: Asterisk's folder, and fail2ban's for the jail rule.
#[derive(Debug, Clone)]
pub struct Places {
    pub asterisk: PathBuf,
    pub fail2ban: PathBuf,
}

impl Default for Places {
    fn default() -> Self {
        Places {
            asterisk: PathBuf::from(crate::dialplan::CONFIG_DIR),
            fail2ban: PathBuf::from("/etc/fail2ban"),
        }
    }
}

/// pjsip's order when `endpoint_identifier_order` is not set.
const DEFAULT_IDENTIFIER_ORDER: [&str; 3] = ["ip", "username", "anonymous"];

/// Asterisk's files as the audit needs them, each read once.
pub struct Asterisk {
    pub pjsip: Conf,
    pub sip: Conf,
    pub iax: Conf,
    pub manager: Conf,
    pub http: Conf,
    pub ari: Conf,
    pub logger: Conf,
    pub modules: Conf,
    pub extensions: Conf,
}

impl Asterisk {
    pub fn read(files: &impl Files, dir: &Path) -> Self {
        let read = |name: &str| asterisk_conf::read(files, dir, name);
        Asterisk {
            manager: read("manager.conf"),
            http: read("http.conf"),
            ari: read("ari.conf"),
            logger: read("logger.conf"),
            extensions: read("extensions.conf"),
            ..Asterisk::read_accounts(files, dir)
        }
    }

    /// Only what the accounts are made of (pjsip.conf, sip.conf, iax.conf and what
    /// loads them): the daemon's weak-account check at start and reload, and
    /// check-config's list of them, need no dialplan, manager or logger.
    pub fn read_accounts(files: &impl Files, dir: &Path) -> Self {
        let read = |name: &str| asterisk_conf::read(files, dir, name);
        Asterisk {
            pjsip: read("pjsip.conf"),
            sip: read("sip.conf"),
            iax: read("iax.conf"),
            modules: read("modules.conf"),
            manager: Conf::default(),
            http: Conf::default(),
            ari: Conf::default(),
            logger: Conf::default(),
            extensions: Conf::default(),
        }
    }

    fn all(&self) -> [&Conf; 9] {
        [
            &self.pjsip,
            &self.sip,
            &self.iax,
            &self.manager,
            &self.http,
            &self.ari,
            &self.logger,
            &self.modules,
            &self.extensions,
        ]
    }

    /// pjsip's `endpoint_identifier_order`, as set or by default (`ip,username,anonymous`).
    pub fn identifier_order(&self) -> Vec<String> {
        self.pjsip
            .of_type("global")
            .find_map(|g| g.get("endpoint_identifier_order"))
            .map(|o| {
                o.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_else(|| DEFAULT_IDENTIFIER_ORDER.map(String::from).to_vec())
    }

    /// Whether Asterisk loads `module` (`chan_sip.so`) by its modules.conf.
    pub fn loads(&self, module: &str) -> bool {
        asterisk_conf::loads(&self.modules, module)
    }
}

pub use crate::asterisk_conf::yes;

/// What one run of the audit found, and what it could not read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Files that exist but could not be read, with why.
    pub unread: Vec<(PathBuf, String)>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

impl Report {
    /// The worst severity found.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// `3 critical, 1 high, 2 medium` — for `check-config` and the text output.
    pub fn summary(&self) -> String {
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        let parts: Vec<String> = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Info,
        ]
        .into_iter()
        .filter(|&s| count(s) > 0)
        .map(|s| format!("{} {s}", count(s)))
        .collect();
        match parts.is_empty() {
            true => "no findings".to_string(),
            false => parts.join(", "),
        }
    }
}

/// The whole audit of the configuration in `places`.
pub fn run(files: &impl Files, places: &Places) -> Report {
    let asterisk = Asterisk::read(files, &places.asterisk);
    let mut findings = Vec::new();
    findings.extend(refused(&asterisk));
    findings.extend(accounts::check(&asterisk));
    findings.extend(exposure::check(&asterisk, files, &places.fail2ban));
    findings.extend(reach::check(&asterisk));
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.file.cmp(&b.file))
            .then_with(|| a.line.cmp(&b.line))
    });
    let mut report = Report {
        findings,
        ..Report::default()
    };
    for conf in asterisk.all() {
        report.files.extend(conf.files.iter().cloned());
        report.unread.extend(conf.unread.iter().cloned());
    }
    report
}

/// What Asterisk itself would refuse: a missing `#include` (the whole file is not
/// loaded), a broken header, and `#exec` lines (named, never run).
fn refused(asterisk: &Asterisk) -> Vec<Finding> {
    let mut found = Vec::new();
    for conf in asterisk.all() {
        for p in conf.problems.iter().filter(|p| p.fatal) {
            found.push(
                Finding::new("config-refused", Severity::High, Some(&p.at), p.what.clone())
                    .why("Asterisk refuses the whole file for this line: the settings you read in it are not the ones running, and a reload keeps the old ones")
                    .fix("correct the line (or make the #include a #tryinclude) and reload"),
            );
        }
        for (at, command) in &conf.execs {
            found.push(
                Finding::new("exec-include", Severity::Info, Some(at), format!("#exec {command}"))
                    .why("what the program prints becomes configuration when execincludes=yes; the audit cannot see it and never runs it")
                    .fix("audit the program's output by hand, or write it to a file and #include that"),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asterisk_conf::Disk;

    fn fixture(name: &str) -> Places {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audit")
            .join(name);
        Places {
            asterisk: dir.join("asterisk"),
            fail2ban: dir.join("fail2ban"),
        }
    }

    #[test]
    fn the_weak_fixture_breaks_every_rule_but_the_refusals() {
        let report = run(&Disk, &fixture("weak"));
        let ids: std::collections::BTreeSet<&str> = report.findings.iter().map(|f| f.id).collect();
        let rules: std::collections::BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
        let untested: Vec<&&str> = rules.difference(&ids).collect();
        assert_eq!(untested, [&"config-refused", &"exec-include"]);
        assert_eq!(report.worst(), Some(Severity::Critical));
    }

    #[test]
    fn refusals_and_execs_are_findings() {
        let files = crate::asterisk_conf::Memory::of(
            Path::new("/etc/asterisk"),
            &[(
                "pjsip.conf",
                "[global]\ntype=global\n#include missing.conf\n#exec /bin/echo\n",
            )],
        );
        let places = Places {
            asterisk: PathBuf::from("/etc/asterisk"),
            fail2ban: PathBuf::from("/nonexistent"),
        };
        let report = run(&files, &places);
        let at = |id: &str| report.findings.iter().find(|f| f.id == id).map(|f| f.line);
        assert_eq!(at("config-refused"), Some(Some(3)));
        assert_eq!(at("exec-include"), Some(Some(4)));
    }

    #[test]
    fn modules_conf_decides_what_loads() {
        let with = |modules: &str| {
            let files =
                crate::asterisk_conf::Memory::of(Path::new("/a"), &[("modules.conf", modules)]);
            Asterisk::read(&files, Path::new("/a")).loads("chan_sip.so")
        };
        // loader.c: autoload only when said; a file Asterisk refuses loads nothing.
        assert!(!with(""));
        assert!(!with("[modules]\n"));
        assert!(with("[modules]\nautoload=yes\n"));
        assert!(!with("[modules]\nautoload=yes\nnoload => chan_sip.so\n"));
        assert!(!with("[modules]\nautoload=yes\nnoload => chan_sip\n"));
        assert!(!with("[modules]\nautoload=no\n"));
        assert!(with("[modules]\nautoload=no\nload => chan_sip.so\n"));
        assert!(!with("autoload=yes\n[modules]\n"));
        let none = crate::asterisk_conf::Memory::default();
        assert!(
            Asterisk::read(&none, Path::new("/a")).loads("chan_sip.so"),
            "no file: the sample's autoload"
        );
    }
}
