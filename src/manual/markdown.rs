//! The manual's tables that the code can print, as Markdown: every command (from the
//! command line's definition), every exit status (from [`crate::exits`]) and every
//! setting with its default (from the shipped configuration). `tests/it/manual.rs` holds
//! them in `doc/` between `<!-- generated: … -->` markers, as it holds the man pages.

use std::fmt::Write as _;

use super::{Entry, SHIPPED_CONFIG, shipped_entries};
use crate::exits;

/// `| command | what it does |`, one row for each command and subcommand the
/// administrator sees, with the first sentence of its help.
pub fn commands(cmd: &clap::Command) -> String {
    let mut out = String::from("| command | what it does |\n|---|---|\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        rows(&mut out, "extsecurity", sub);
    }
    out
}

fn rows(out: &mut String, parent: &str, cmd: &clap::Command) {
    let name = format!("{parent} {}", cmd.get_name());
    let nested: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if nested.is_empty() {
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        let _ = writeln!(out, "| `{name}` | {} |", cell(&about));
    }
    for sub in nested {
        rows(out, &name, sub);
    }
}

/// `| status | meaning | SYSTEMSTATUS |`: how Asterisk's `System()` reports each status
/// of the per-call check; the other commands' statuses are no call's.
pub fn exit_statuses() -> String {
    let mut out = String::from(
        "| status | meaning | `SYSTEMSTATUS` (`check` under `System()`) |\n|---|---|---|\n",
    );
    for (code, meaning) in exits::MEANINGS {
        let system = match exits::system_status(code) {
            Some(status) => format!("`{status}`"),
            None => "—".to_string(),
        };
        let _ = writeln!(out, "| {code} | {} | {system} |", cell(meaning));
    }
    out
}

/// `| rule | severity | what it finds |`, from [`crate::audit::RULES`].
pub fn audit_rules() -> String {
    let mut out = String::from("| rule | severity | what it finds |\n|---|---|---|\n");
    for rule in crate::audit::RULES {
        let _ = writeln!(
            out,
            "| [`{}`](#{}) | {} | {} |",
            rule.id,
            rule.id,
            rule.severity,
            cell(rule.checks)
        );
    }
    out
}

/// Every table and key of the shipped configuration with its default and the comment
/// above it, one Markdown table per TOML table.
pub fn settings() -> String {
    let (_, entries) = shipped_entries(SHIPPED_CONFIG);
    let mut out = String::from("### Top level\n\n");
    let mut header = true;
    for entry in &entries {
        match entry {
            Entry::Table { name, comment } => {
                let _ = write!(out, "\n### `{name}`\n\n");
                if !comment.is_empty() {
                    let _ = write!(out, "{}\n\n", prose(comment));
                }
                header = true;
            }
            Entry::Key {
                key,
                value,
                comment,
            } => {
                if header {
                    out.push_str("| key | default | what it does |\n|---|---|---|\n");
                    header = false;
                }
                let _ = writeln!(
                    out,
                    "| `{key}` | `{}` | {} |",
                    value.replace('|', "\\|").replace('`', "'"),
                    cell(&prose(comment))
                );
            }
        }
    }
    out
}

/// Comment lines as one paragraph; an example line (indented two spaces) as code.
fn prose(lines: &[&str]) -> String {
    let parts: Vec<String> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.strip_prefix("  ") {
            Some(example) => format!("`{}`", example.trim().replace('`', "'")),
            None => l.trim().to_string(),
        })
        .collect();
    parts.join(" ")
}

/// Text fit for one table cell: one line, `|` escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_status_is_a_row_and_the_checks_say_their_systemstatus() {
        let table = exit_statuses();
        assert_eq!(table.lines().count(), 2 + exits::MEANINGS.len());
        assert!(table.contains("| 0 | The call was accepted"), "{table}");
        assert!(table.contains("| `SUCCESS` |"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("| 10 |") && l.ends_with("| `APPERROR` |"))
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("| 11 |") && l.ends_with("| — |"))
        );
    }

    #[test]
    fn every_shipped_key_is_a_row_with_its_default() {
        let table = settings();
        assert!(
            table.contains("| `log_file` | `\"/var/log/asterisk/inbound_extsecurity.log\"` |"),
            "{table}"
        );
        assert!(table.contains("### `[memory]`"), "{table}");
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            assert_eq!(line.matches(" | ").count(), 2, "three cells: {line}");
        }
    }

    #[test]
    fn a_pipe_in_a_cell_cannot_open_a_column() {
        assert_eq!(cell("a | b\n  c"), "a \\| b c");
    }
}
