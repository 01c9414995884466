//! `extsecurity audit`: the findings as text for a person or JSON for cron, and the
//! one-line summary `check-config` prints.

use std::path::Path;

use extsecurity::asterisk_conf::Disk;
use extsecurity::audit::{self, Places, Report, Severity};
use extsecurity::exits;

pub(crate) fn audit(asterisk: &Path, fail2ban: &Path, json: bool) -> u8 {
    if !asterisk.is_dir() {
        eprintln!(
            "extsecurity: {}: no such folder; give Asterisk's configuration folder with --asterisk-dir",
            asterisk.display()
        );
        return exits::CONFIG;
    }
    let places = Places {
        asterisk: asterisk.to_path_buf(),
        fail2ban: fail2ban.to_path_buf(),
    };
    let report = audit::run(&Disk, &places);
    for (file, error) in &report.unread {
        eprintln!(
            "extsecurity: could not read {}: {error} (run the audit as root or as Asterisk's user)",
            file.display()
        );
    }
    let printed = match json {
        true => serde_json::to_string_pretty(&as_json(&report)).map(|j| println!("{j}")),
        false => {
            print_text(&report);
            Ok(())
        }
    };
    if let Err(e) = printed {
        eprintln!("extsecurity: cannot write the report: {e}");
        return exits::INTERNAL;
    }
    match report.worst() {
        Some(Severity::High | Severity::Critical) => exits::AUDIT,
        // Nothing found in files it could not read is no clean bill: cron must hear it.
        _ if !report.unread.is_empty() => {
            let files = match report.unread.len() {
                1 => "1 file".to_string(),
                n => format!("{n} files"),
            };
            eprintln!("extsecurity: the audit is incomplete: {files} could not be read");
            exits::CONFIG
        }
        _ => exits::OK,
    }
}

fn as_json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "summary": report.summary(),
        "worst": report.worst(),
        "findings": report.findings,
        "files": report.files,
        "unread": report.unread.iter().map(|(f, e)| serde_json::json!({"file": f, "error": e})).collect::<Vec<_>>(),
    })
}

fn print_text(report: &Report) {
    for f in &report.findings {
        let place = f.place();
        let place = if place.is_empty() {
            String::new()
        } else {
            format!(" {place}:")
        };
        println!(
            "{} {}{place} {}",
            f.severity.to_string().to_uppercase(),
            f.id,
            f.what
        );
        if let Some(guess) = &f.guess {
            println!("    found by: {guess}");
        }
        println!("    why: {}", f.why);
        println!("    fix: {}", f.fix);
    }
    println!(
        "extsecurity audit: {} ({} files read{})",
        report.summary(),
        report.files.len(),
        match report.unread.len() {
            0 => String::new(),
            n => format!(", {n} could not be read"),
        }
    );
}

/// `# audit: …` for `check-config`, when Asterisk's folder is there to read.
pub(crate) fn audit_summary(asterisk: &Path) -> Option<String> {
    if !asterisk.is_dir() {
        return None;
    }
    let places = Places {
        asterisk: asterisk.to_path_buf(),
        ..Places::default()
    };
    let report = audit::run(&Disk, &places);
    let advice = match report.worst() {
        Some(Severity::High | Severity::Critical) => ": run extsecurity audit",
        _ => "",
    };
    Some(format!(
        "# audit of {}: {}{advice}",
        asterisk.display(),
        report.summary()
    ))
}
