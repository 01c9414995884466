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
            pjsip: read("pjsip.conf"),
            sip: read("sip.conf"),
            iax: read("iax.conf"),
            manager: read("manager.conf"),
            http: read("http.conf"),
            ari: read("ari.conf"),
            logger: read("logger.conf"),
            modules: read("modules.conf"),
            extensions: read("extensions.conf"),
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

    /// Whether Asterisk loads `module` (`chan_sip.so`): `noload` stops it, and with
    /// `autoload = no` only a `load` starts it. No modules.conf: autoload.
    pub fn loads(&self, module: &str) -> bool {
        let Some(modules) = self.modules.named("modules").last() else {
            return true;
        };
        let named = |key: &str| modules.all(key).any(|e| e.value == module);
        if named("noload") {
            return false;
        }
        let autoload = modules.get("autoload").is_none_or(crate::audit::yes);
        autoload || named("load") || named("require") || named("preload")
    }
}

/// Asterisk's `ast_true`.
pub fn yes(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "yes" | "true" | "y" | "t" | "1" | "on"
    )
}

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
