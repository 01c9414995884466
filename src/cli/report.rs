//! `report`: the alert logs summed up (tables, JSON, HTML) or one address's lines.

use std::path::PathBuf;

use extsecurity::config::Config;
use extsecurity::exits;

pub(crate) fn report(
    config: &Config,
    logs: &[PathBuf],
    json: bool,
    top: usize,
    html: Option<PathBuf>,
    (since, until): (Option<String>, Option<String>),
) -> u8 {
    // As --help and the README say: the log and its rotations (.gz too), oldest first.
    let default = extsecurity::report::with_rotations_and_backups(&config.log_file);
    let logs = if logs.is_empty() { &default[..] } else { logs };
    let mut report = extsecurity::report::Report::between(since, until);
    for path in logs {
        if let Err(e) = report.add_file(path) {
            eprintln!("extsecurity: {}: {e}", path.display());
            return exits::LOG;
        }
    }
    if let Some(file) = html {
        return match std::fs::write(&file, extsecurity::report::html::page(&report, top)) {
            Ok(()) => {
                let days = match report.per_day.len() {
                    1 => "1 day".to_string(),
                    n => format!("{n} days"),
                };
                println!(
                    "{}: {} calls, {} alerts, {days}",
                    file.display(),
                    report.calls,
                    report.alerts,
                );
                exits::OK
            }
            Err(e) => {
                eprintln!("extsecurity: cannot write {}: {e}", file.display());
                exits::LOG
            }
        };
    }
    let text = if json {
        report.to_json(top)
    } else {
        report.to_table(top)
    };
    println!("{}", text.trim_end());
    exits::OK
}

/// Every line naming `ip`, oldest log first.
pub(crate) fn report_address(
    config: &Config,
    logs: &[PathBuf],
    ip: std::net::IpAddr,
    (since, until): (Option<String>, Option<String>),
) -> u8 {
    let within = |line: &[u8]| {
        let time = line.get(..23).and_then(|t| std::str::from_utf8(t).ok());
        time.is_some_and(|t| {
            since.as_deref().is_none_or(|s| t >= s) && until.as_deref().is_none_or(|u| t < u)
        })
    };
    let logs = match logs {
        [] => extsecurity::report::with_rotations_and_backups(&config.log_file),
        given => given.to_vec(),
    };
    let mut found = 0usize;
    let mut stdout = std::io::stdout().lock();
    for path in &logs {
        let printed = extsecurity::report::lines_about(path, ip, |line| {
            if !within(line) {
                return;
            }
            found += 1;
            let _ = std::io::Write::write_all(&mut stdout, line)
                .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"));
        });
        if let Err(e) = printed {
            eprintln!("extsecurity: {}: {e}", path.display());
            return exits::LOG;
        }
    }
    if found == 0 {
        eprintln!(
            "extsecurity: no line names {ip} in {} log file(s)",
            logs.len()
        );
    }
    exits::OK
}
