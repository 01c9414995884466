//! The manual pages and shell completions, generated from what they describe: the
//! command-line definition (clap) for `extsecurity(1)` and the completions, the shipped
//! annotated configuration for `extsecurity.toml(5)`. So they cannot drift from the
//! program: the generated files are kept under `dist/man/` and `dist/completions/` for
//! the package (`cargo deb` needs no extra step) and for installs by hand, and
//! `tests/it/manual.rs` fails when one is stale (`extsecurity generate` remakes them).
//! The manual's own tables (commands, exit statuses, settings) come from the same
//! sources, as Markdown ([`markdown`]).

pub mod markdown;

use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use crate::exits;

/// The annotated configuration the package ships, every key at its default.
pub const SHIPPED_CONFIG: &str = include_str!("../../dist/extsecurity.toml");

/// What `extsecurity generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generated {
    /// extsecurity(1)
    Man,
    /// extsecurity.toml(5)
    ConfigMan,
    Bash,
    Zsh,
    Fish,
    /// doc/commands.md: the table of commands
    DocCommands,
    /// doc/commands.md: the table of exit statuses
    DocExitStatus,
    /// doc/configuration.md: every setting with its default
    DocSettings,
    /// doc/audit.md: every rule of the audit
    DocAuditRules,
}

impl Generated {
    /// Where the file lives in the source tree, under `dist/` (a table of the manual:
    /// the chapter that holds it).
    pub fn path(self) -> &'static str {
        match self {
            Generated::Man => "man/extsecurity.1",
            Generated::ConfigMan => "man/extsecurity.toml.5",
            Generated::Bash => "completions/extsecurity.bash",
            Generated::Zsh => "completions/_extsecurity",
            Generated::Fish => "completions/extsecurity.fish",
            Generated::DocCommands | Generated::DocExitStatus => "../doc/commands.md",
            Generated::DocSettings => "../doc/configuration.md",
            Generated::DocAuditRules => "../doc/audit.md",
        }
    }

    /// The file's text, from the command-line definition `cmd`.
    pub fn render(self, cmd: clap::Command) -> Vec<u8> {
        use clap_complete::Shell;
        let shell = match self {
            Generated::Man => return command_page(cmd),
            Generated::ConfigMan => return config_page(SHIPPED_CONFIG).into_bytes(),
            Generated::Bash => Shell::Bash,
            Generated::Zsh => Shell::Zsh,
            Generated::Fish => Shell::Fish,
            Generated::DocCommands => return markdown::commands(&cmd).into_bytes(),
            Generated::DocExitStatus => return markdown::exit_statuses().into_bytes(),
            Generated::DocSettings => return markdown::settings().into_bytes(),
            Generated::DocAuditRules => return markdown::audit_rules().into_bytes(),
        };
        let mut cmd = cmd;
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "extsecurity", &mut out);
        out
    }
}

const MANUAL: &str = "extsecurity manual";

/// `extsecurity(1)`: clap_mangen's name, synopsis, description and global options, then
/// every command with its own options (one page, as an administrator looks things up),
/// the exit statuses, environment, files.
pub fn command_page(cmd: clap::Command) -> Vec<u8> {
    let cmd = cmd.disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone()).manual(MANUAL);
    let mut out = Vec::new();
    let rendered = man
        .render_title(&mut out)
        .and_then(|_| man.render_name_section(&mut out))
        .and_then(|_| man.render_synopsis_section(&mut out))
        .and_then(|_| man.render_description_section(&mut out))
        .and_then(|_| man.render_options_section(&mut out));
    rendered.expect("writing to a Vec cannot fail");
    // clap_mangen's synopsis names an option without the value it takes.
    let out = String::from_utf8_lossy(&out).replace(
        "[\\fB\\-\\-config\\fR]",
        "[\\fB\\-\\-config\\fR \\fIPATH\\fR]",
    );
    let mut out = out.into_bytes();
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_entry(&mut roff, "extsecurity", sub);
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        roff.text([roman(after.to_string())]);
    }
    trailer(&mut roff);
    out.extend_from_slice(roff.render().as_bytes());
    out
}

/// One command: its usage as a heading, what it does, its arguments; then its own
/// commands (`fraud status`).
fn command_entry(roff: &mut Roff, parent: &str, cmd: &clap::Command) {
    let path = format!("{parent} {}", cmd.get_name());
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            command_entry(roff, &path, sub);
        }
        return;
    }
    let usage = cmd
        .clone()
        .bin_name(&path)
        .render_usage()
        .to_string()
        .trim_start_matches("Usage:")
        .trim()
        .to_string();
    roff.control("SS", [usage.as_str()]);
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        roff.text([roman(about.to_string())]);
    }
    let args = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"));
    for arg in args {
        roff.control("TP", []);
        roff.text(arg_heading(arg));
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        if let Some(default) = arg.get_default_values().first() {
            help.push_str(&format!(" [default: {}]", default.to_string_lossy()));
        }
        roff.text([roman(help)]);
    }
}

/// `--top=N`, `-q, --quiet`, `ACCOUNT`: how the argument is written.
fn arg_heading(arg: &clap::Arg) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .map(|names| names.join(" "))
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    if arg.is_positional() {
        return vec![italic(value)];
    }
    let mut heading = Vec::new();
    if let Some(short) = arg.get_short() {
        heading.push(bold(format!("-{short}")));
        heading.push(roman(", "));
    }
    if let Some(long) = arg.get_long() {
        heading.push(bold(format!("--{long}")));
    }
    if arg.get_action().takes_values() {
        let joint = if arg.is_require_equals_set() {
            "="
        } else {
            " "
        };
        heading.push(roman(joint));
        heading.push(italic(value));
    }
    heading
}

/// EXIT STATUS, ENVIRONMENT, FILES, SEE ALSO.
fn trailer(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exits::MEANINGS {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff.text([roman(
        "check --on-error=continue turns 1, 3, 4 and 5 into 0, so that a check that could not run lets the call go on. No status is 127, which Asterisk reports as FAILURE.",
    )]);
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        (
            crate::config::ENV_VAR,
            "The configuration file when --config is not given.",
        ),
        (
            "EXTSECURITY_LOG",
            "What the program says on standard error (a tracing filter: info by default, debug, warn).",
        ),
        (
            "TZ",
            "The zone the alert log's times are written in, as libc reads it (else /etc/localtime).",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, meaning) in [
        (
            "/etc/asterisk/extsecurity.toml",
            "The configuration; see extsecurity.toml(5).",
        ),
        (
            "/var/log/asterisk/inbound_extsecurity.log",
            "The alert log the fail2ban jail reads.",
        ),
        (
            "/run/extsecurity/control.sock",
            "The running daemon's control socket (unban, fraud status and release).",
        ),
        (
            "/etc/asterisk/extsecurity-high-risk.conf",
            "The outbound check's high-risk prefixes ([fraud] high_risk_file).",
        ),
        (
            "/etc/asterisk/extsecurity-ami.secret, extsecurity-crowdsec.secret, extsecurity-smtp.secret",
            "Secrets read by the daemon's user only (ami.secret_file, crowdsec.password_file, notify.smtp_password_file, and daemon.secret_file wherever you put it), if you keep them in files as the shipped configuration suggests; the package neither makes nor removes them.",
        ),
        (
            "/var/lib/extsecurity/",
            "The daemon's state: crowdsec.position (the CrowdSec pusher's place in the log), fraud.state (the outbound check's accounts and quarantines), bans.state (the kernel bans' history).",
        ),
        (
            "/etc/fail2ban/filter.d/extsecurity.conf, /etc/fail2ban/jail.d/extsecurity.conf",
            "The fail2ban filter and jail (disabled; enable it in jail.d/extsecurity.local).",
        ),
        (
            "/etc/logrotate.d/extsecurity",
            "Weekly rotation of the alert log, as Asterisk's user; SIGUSR1 to the daemon after it.",
        ),
        (
            "/usr/lib/systemd/system/extsecurity.service",
            "The daemon's unit (not enabled by the package).",
        ),
        (
            "/usr/share/doc/extsecurity/",
            "The README, the manual (doc/: install, connecting Asterisk, each part, the FAQ, the configuration reference), the CHANGELOG, and the dialplan snippets for System(), AGI, FastAGI and the outbound check.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("extsecurity.toml"),
        roman("(5), "),
        bold("fail2ban-client"),
        roman("(1), "),
        bold("cscli"),
        roman("(1), "),
        bold("nft"),
        roman("(8)"),
    ]);
}

/// `extsecurity.toml(5)` from the shipped configuration: its opening comment is the
/// description, each key its default and the comment above it, each table (`[memory]`,
/// the commented-out `#[ami]` …) a subsection with its own comment.
pub fn config_page(shipped: &str) -> String {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "EXTSECURITY.TOML",
            "5",
            "",
            &format!("extsecurity {}", env!("CARGO_PKG_VERSION")),
            MANUAL,
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman("extsecurity.toml - the configuration of extsecurity")]);
    let (intro, entries) = shipped_entries(shipped);
    roff.control("SH", ["DESCRIPTION"]);
    paragraphs(&mut roff, &intro);
    roff.control("SH", ["SETTINGS"]);
    roff.control("SS", ["Top level"]);
    for entry in &entries {
        match entry {
            Entry::Table { name, comment } => {
                roff.control("SS", [*name]);
                paragraphs(&mut roff, comment);
            }
            Entry::Key {
                key,
                value,
                comment,
            } => {
                roff.control("TP", []);
                roff.text([bold(*key), roman(format!(" = {value}"))]);
                paragraphs(&mut roff, comment);
            }
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("extsecurity"), roman("(1)")]);
    roff.render()
}

/// One item of the shipped configuration, with the comment above it.
pub(crate) enum Entry<'a> {
    /// `[memory]`, or a commented-out `#[ami]`.
    Table {
        name: &'a str,
        comment: Vec<&'a str>,
    },
    /// A key and its default (a list spread over lines joined into one).
    Key {
        key: &'a str,
        value: String,
        comment: Vec<&'a str>,
    },
}

/// The shipped file's opening comment, then its tables and keys in order: what both the
/// manual page and the manual's settings table are made from.
pub(crate) fn shipped_entries(shipped: &str) -> (Vec<&str>, Vec<Entry<'_>>) {
    let mut lines = shipped.lines().peekable();
    let mut intro = Vec::new();
    while let Some(line) = lines.next_if(|l| l.starts_with('#')) {
        intro.push(comment_text(line));
    }
    let mut entries = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    while let Some(line) = lines.next() {
        let uncommented = line.strip_prefix('#').unwrap_or(line);
        if line.trim().is_empty() {
            comment.clear();
        } else if let Some(name) = table_name(uncommented) {
            entries.push(Entry::Table {
                name,
                comment: std::mem::take(&mut comment),
            });
        } else if let Some((key, value)) = key_value(uncommented) {
            let mut value = value.to_string();
            while value.starts_with('[') && !value.ends_with(']') {
                let Some(more) = lines.next() else { break };
                let item = more.trim_start_matches('#').trim();
                if item != "]" {
                    value.push(' ');
                }
                value.push_str(item);
            }
            entries.push(Entry::Key {
                key,
                value: value.replace(",]", "]"),
                comment: std::mem::take(&mut comment),
            });
        } else {
            comment.push(comment_text(line));
        }
    }
    (intro, entries)
}

/// `[memory]`, `[fraud.account."callcentre".international]`.
fn table_name(line: &str) -> Option<&str> {
    let line = line.trim();
    (line.starts_with('[') && line.ends_with(']') && !line.contains(" = ")).then_some(line)
}

/// `log_file = "/var/log/…"`: a key of lowercase letters and `_`.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(" = ")?;
    key.bytes()
        .all(|b| b.is_ascii_lowercase() || b == b'_')
        .then_some((key, value.trim()))
}

/// A comment line's text: `# text` and, in a commented-out table, `## text`; an
/// example (`#   trusted_networks = …`) keeps the spaces that mark it.
fn comment_text(line: &str) -> &str {
    let text = line.trim_start_matches('#');
    text.strip_prefix(' ').unwrap_or(text).trim_end()
}

/// Comment lines joined into paragraphs; an empty line starts a new one, and a line
/// indented by two spaces (an example) stands on its own, as written.
fn paragraphs(roff: &mut Roff, lines: &[&str]) {
    let mut paragraph = String::new();
    for line in lines {
        if line.trim().is_empty() {
            flush(roff, &mut paragraph);
            continue;
        }
        if let Some(example) = line.strip_prefix("  ") {
            flush(roff, &mut paragraph);
            roff.control("RS", []).control("nf", []);
            roff.text([roman(example.trim())]);
            roff.control("fi", []).control("RE", []);
            continue;
        }
        if !paragraph.is_empty() {
            paragraph.push(' ');
        }
        paragraph.push_str(line);
    }
    flush(roff, &mut paragraph);
}

fn flush(roff: &mut Roff, paragraph: &mut String) {
    if !paragraph.is_empty() {
        roff.text([roman(std::mem::take(paragraph))]);
        roff.control("PP", []);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text as the page writes it (quotes and backslashes escaped), without roff's
    /// preamble.
    fn roffed(inlines: Vec<Inline>) -> String {
        let text = Roff::new().text(inlines).render();
        text.lines()
            .filter(|l| !l.starts_with(".ie") && !l.starts_with(".el"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every key of the shipped configuration, commented-out tables included, once.
    fn shipped_keys() -> Vec<String> {
        SHIPPED_CONFIG
            .lines()
            .map(|l| l.strip_prefix('#').unwrap_or(l))
            .filter_map(key_value)
            .map(|(k, v)| format!("{k} = {v}"))
            .collect()
    }

    #[test]
    fn the_config_page_names_every_shipped_key_and_table_with_its_default() {
        let page = config_page(SHIPPED_CONFIG);
        let keys = shipped_keys();
        assert!(keys.len() > 60, "{}", keys.len());
        for key in &keys {
            let (name, value) = key.split_once(" = ").unwrap();
            let first = value.split(' ').next().unwrap();
            let entry = roffed(vec![bold(name), roman(format!(" = {first}"))]);
            assert!(page.contains(&entry), "{entry} missing");
        }
        for table in [
            "[memory]",
            "[daemon]",
            "[ami]",
            "[nftables]",
            "[crowdsec]",
            "[fraud]",
        ] {
            assert!(page.contains(&format!(".SS {table}\n")), "{table}");
        }
        assert!(page.contains("tarpit_seconds"));
        assert!(page.contains("Seconds to hold an attacker"));
    }

    #[test]
    fn comments_become_the_keys_text_and_a_value_spread_over_lines_is_one() {
        let page = config_page(
            "# Intro.\n#\n# More.\n\n# A list.\nlist = [\n    'a',\n    'b',\n]\n\n# The table.\n#[t]\n## Its key.\n#k = 1\n",
        );
        assert!(
            page.contains(".SH DESCRIPTION\nIntro.\n.PP\nMore.\n"),
            "{page}"
        );
        let list = roffed(vec![bold("list"), roman(" = [ 'a', 'b']")]);
        assert!(page.contains(&format!("{list}\nA list.\n")), "{page}");
        assert!(page.contains(".SS [t]\nThe table.\n"), "{page}");
        assert!(page.contains("\\fBk\\fR = 1\nIts key.\n"), "{page}");
    }

    /// Issue 27: the SYNOPSIS showed `--config` without its value, and FILES lacked
    /// the state files, the high-risk list, the secrets, fail2ban's and logrotate's.
    #[test]
    fn the_command_page_names_the_config_value_and_every_file() {
        let cmd = clap::Command::new("extsecurity")
            .arg(clap::Arg::new("config").long("config").value_name("PATH"));
        let page = String::from_utf8(command_page(cmd)).unwrap();
        assert!(
            page.contains("[\\fB\\-\\-config\\fR \\fIPATH\\fR]"),
            "{page}"
        );
        for file in [
            "bans.state",
            "fraud.state",
            "crowdsec.position",
            "/etc/asterisk/extsecurity\\-high\\-risk.conf",
            "extsecurity\\-ami.secret",
            "/etc/logrotate.d/extsecurity",
            "/etc/fail2ban/jail.d/extsecurity.conf",
        ] {
            assert!(page.contains(file), "{file} not in FILES");
        }
    }

    #[test]
    fn text_that_looks_like_a_roff_request_is_escaped() {
        let page = config_page("# .SH HACK\n'x\nk = '.so /etc/passwd'\n");
        assert!(
            !page
                .lines()
                .any(|l| l.starts_with(".SH HACK") || l.starts_with(".so"))
        );
        assert!(!page.contains("\n'x"));
    }
}
