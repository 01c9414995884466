//! The manual pages and shell completions the package ships (`dist/man`,
//! `dist/completions`) are what the command line and the shipped configuration say
//! today, read without a warning by `man` as lintian reads them, and complete in the
//! real shells.
//!
//! After changing the command line or `dist/extsecurity.toml`, remake them with
//! `UPDATE_GENERATED=1 cargo test --test it manual::`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{bin, repo};

const GENERATED: [(&str, &str); 5] = [
    ("man", "man/extsecurity.1"),
    ("config-man", "man/extsecurity.toml.5"),
    ("bash", "completions/extsecurity.bash"),
    ("zsh", "completions/_extsecurity"),
    ("fish", "completions/extsecurity.fish"),
];

fn generate(what: &str) -> Vec<u8> {
    let out = Command::new(bin())
        .args(["generate", what])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
    out.stdout
}

#[test]
fn the_shipped_pages_and_completions_are_current() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some();
    let mut stale = Vec::new();
    for (what, path) in GENERATED {
        let path = repo().join("dist").join(path);
        let fresh = generate(what);
        if std::fs::read(&path).ok().as_deref() == Some(&fresh[..]) {
            continue;
        }
        if update {
            std::fs::write(&path, &fresh).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; remake them with UPDATE_GENERATED=1 cargo test --test it manual::"
    );
}

/// The manual's tables the code can print, and the chapter that holds each between
/// `<!-- generated: extsecurity generate WHAT -->` and `<!-- end generated -->`.
const DOC_TABLES: [(&str, &str); 4] = [
    ("doc-commands", "doc/commands.md"),
    ("doc-exit-status", "doc/commands.md"),
    ("doc-settings", "doc/configuration.md"),
    ("doc-audit-rules", "doc/audit.md"),
];

#[test]
fn the_manuals_tables_are_current() {
    let update = std::env::var_os("UPDATE_GENERATED").is_some();
    let mut stale = Vec::new();
    for (what, file) in DOC_TABLES {
        let path = repo().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = format!("<!-- generated: extsecurity generate {what} -->\n");
        let from = text
            .find(&start)
            .unwrap_or_else(|| panic!("{file} has no {start:?}"))
            + start.len();
        let to = from
            + text[from..]
                .find("<!-- end generated -->")
                .unwrap_or_else(|| panic!("{file}: {what} has no end marker"));
        let fresh = String::from_utf8(generate(what)).unwrap();
        if text[from..to] == fresh {
            continue;
        }
        match update {
            true => {
                std::fs::write(&path, format!("{}{fresh}{}", &text[..from], &text[to..])).unwrap()
            }
            false => stale.push(format!("{file} ({what})")),
        }
    }
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; remake them with UPDATE_GENERATED=1 cargo test --test it manual::"
    );
}

/// What lintian runs on a manual page (its `manpage-has-errors-from-man` check).
fn man_warnings(page: &Path) -> String {
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .env("MANROFFSEQ", "")
        .env("MANWIDTH", "80")
        .output()
        .expect("man (man-db; scripts/test.sh installs it)");
    assert!(out.status.success(), "man failed on {}", page.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The page as an administrator reads it, formatted by man.
fn man_text(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_reads_both_pages_without_a_warning_and_they_say_what_matters() {
    let command = repo().join("dist/man/extsecurity.1");
    let config = repo().join("dist/man/extsecurity.toml.5");
    for page in [&command, &config] {
        assert_eq!(man_warnings(page), "", "{}", page.display());
    }
    let text = man_text(&command);
    for needle in [
        "extsecurity check [OPTIONS]",
        "extsecurity fraud release [OPTIONS] <ACCOUNT>",
        "extsecurity report [OPTIONS] [LOG]...",
        "--exten-b64=BASE64",
        "EXIT STATUS",
        "--fail-on-alert was given",
        "EXTSECURITY_CONFIG",
        "extsecurity.toml(5)",
    ] {
        assert!(text.contains(needle), "extsecurity(1) lacks {needle:?}");
    }
    assert!(
        !text.contains("generate"),
        "the maintainers' command is not offered"
    );
    let text = man_text(&config);
    for needle in [
        "log_file = \"/var/log/asterisk/inbound_extsecurity.log\"",
        "[fraud.account.\"callcentre\".international]",
        "trusted_networks = [\"192.0.2.0/24\"",
        "quarantine_seconds = 86400",
    ] {
        assert!(
            text.contains(needle),
            "extsecurity.toml(5) lacks {needle:?}"
        );
    }
}

/// Runs a bash completion as bash does on TAB: the words so far in `COMP_WORDS`, the
/// function the script registered for `extsecurity`, and prints what it offers.
fn bash_completes(words: &str) -> Vec<String> {
    let script = format!(
        "source {:?}\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         [[ \"{words}\" == *' ' ]] && {{ COMP_WORDS+=(''); COMP_CWORD=$((COMP_CWORD + 1)); }}\n\
         COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}\n\
         f=$(complete -p extsecurity | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         $f extsecurity \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        repo().join("dist/completions/extsecurity.bash")
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_and_their_options() {
    assert_eq!(bash_completes("extsecurity fr"), ["fraud"]);
    let fraud = bash_completes("extsecurity fraud ");
    assert!(fraud.contains(&"status".to_string()), "{fraud:?}");
    assert!(fraud.contains(&"release".to_string()), "{fraud:?}");
    let report = bash_completes("extsecurity report --");
    for option in ["--json", "--top", "--address"] {
        assert!(report.contains(&option.to_string()), "{report:?}");
    }
    assert!(!bash_completes("extsecurity ").contains(&"generate".to_string()));
}

#[test]
fn fish_completes_commands_and_their_options() {
    let script = repo().join("dist/completions/extsecurity.fish");
    let complete = |line: &str| -> Vec<String> {
        let out = Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!("source {script:?}; complete -C '{line}'"))
            .output()
            .expect("fish (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(complete("extsecurity fr"), ["fraud"]);
    let fraud = complete("extsecurity fraud ");
    assert!(fraud.contains(&"status".to_string()) && fraud.contains(&"release".to_string()));
    assert!(complete("extsecurity bans --").contains(&"--remove-table".to_string()));
}

#[test]
fn zsh_loads_the_completion_and_offers_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("dist/completions/_extsecurity"),
        dir.path().join("_extsecurity"),
    )
    .unwrap();
    // compinit finds the file in an fpath folder (the package's
    // /usr/share/zsh/vendor-completions is one) and binds it to the command; the
    // function then loads and parses. Completing itself needs a terminal (zpty).
    let script = format!(
        "fpath=({:?} $fpath)\n\
         autoload -Uz compinit && compinit -u -D\n\
         [[ $_comps[extsecurity] == _extsecurity ]] || {{ echo not-registered; exit 3; }}\n\
         autoload -Uz _extsecurity\n\
         functions _extsecurity >/dev/null || exit 4\n\
         echo ok",
        dir.path()
    );
    let out = Command::new("zsh")
        .args(["-f", "-c", &script])
        .output()
        .expect("zsh (scripts/test.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.path().join("_extsecurity")).unwrap();
    assert!(text.starts_with("#compdef extsecurity"));
    for command in ["'fraud:", "'report:", "'unban:"] {
        assert!(text.contains(command), "{command}");
    }
}
