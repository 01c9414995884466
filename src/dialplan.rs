//! Reading an Asterisk dialplan for lines that hand caller-controlled values to a shell
//! unencoded: `System()`, `TrySystem()` and `${SHELL()}` run their text with `/bin/sh
//! -c` after Asterisk pasted the values in (design.md §3), so a caller name such as
//! `x'$(touch /tmp/PWNED)'` runs a command on the PBX — the seed's own line did this.
//! `check-config` names every such line, with its file and number, and the shipped
//! replacement.
//!
//! What counts as the caller's: `${EXTEN}`, `${CALLERID(...)}` and the connected and
//! redirecting ids, SIP and PJSIP headers, the user agent. Safe inside an encoder
//! whose output the shell cannot misread: `BASE64_ENCODE`, `URIENCODE`, `FILTER`, `LEN`.
//! The rest of the dialplan language is not judged: this is a lint, not Asterisk.

use std::io;
use std::path::{Path, PathBuf};

use crate::asterisk_conf;

/// Where Asterisk keeps its configuration, and `#include`s are relative to.
pub const CONFIG_DIR: &str = "/etc/asterisk";

/// One line that hands a caller's value to a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// One-based.
    pub line: usize,
    /// `System`, `TrySystem` or `SHELL`.
    pub runs: String,
    /// The first caller-controlled expression in it, as written: `${CALLERID(name)}`.
    pub value: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}() hands {} to /bin/sh unencoded: a caller's text runs as a command there (the seed's line does this); replace it with the shipped line (/usr/share/doc/extsecurity/asterisk/extensions-system.conf) or AGI",
            self.file.display(),
            self.line,
            self.runs,
            self.value
        )
    }
}

/// The findings of `roots` and every file they `#include`, and the files that could
/// not be read. `roots` empty: Asterisk's own `extensions*.conf` in [`CONFIG_DIR`].
pub fn scan(roots: &[PathBuf]) -> (Vec<Finding>, Vec<(PathBuf, io::Error)>) {
    let mut findings = Vec::new();
    let unread = walk(roots, |file, text| {
        let (found, _) = scan_text(text);
        findings.extend(found.into_iter().map(|(line, runs, value)| Finding {
            file: file.to_path_buf(),
            line,
            runs,
            value,
        }));
    });
    (findings, unread)
}

/// Calls `each` with every file of `roots` (as [`scan`] takes them) and of their
/// `#include`s as Asterisk follows them ([`asterisk_conf`]: relative to
/// [`CONFIG_DIR`], globs, at most 10 deep), once each; the files that could not be read.
fn walk(roots: &[PathBuf], mut each: impl FnMut(&Path, &str)) -> Vec<(PathBuf, io::Error)> {
    let roots = match roots {
        [] => default_files(Path::new(CONFIG_DIR)),
        given => given.to_vec(),
    };
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut unread = Vec::new();
    for root in roots {
        // A file named on the command line is relative to where it was typed.
        let root = std::path::absolute(&root).unwrap_or(root);
        let conf = asterisk_conf::read(
            &asterisk_conf::Disk,
            Path::new(CONFIG_DIR),
            &root.to_string_lossy(),
        );
        if conf.files.is_empty() && conf.unread.is_empty() {
            unread.push((root, io::Error::from(io::ErrorKind::NotFound)));
        }
        for (file, why) in conf.unread {
            unread.push((file, io::Error::other(why)));
        }
        for file in conf.files {
            if seen.contains(&file) {
                continue;
            }
            match std::fs::read(&file) {
                Ok(bytes) => each(&file, &String::from_utf8_lossy(&bytes)),
                Err(e) => unread.push((file.clone(), e)),
            }
            seen.push(file);
        }
    }
    unread
}

/// What is wrong with how the dialplan reaches the daemon, for `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wiring {
    /// An `AGI(agi://…)` whose URL carries no `key=` while `daemon.secret` is set: the
    /// daemon answers it ERROR, and the call goes on unchecked or is refused.
    AgiWithoutKey {
        file: PathBuf,
        line: usize,
        url: String,
    },
    /// The shipped subroutine reads `${EXTSEC_AGI_KEY}`, which no `[globals]` sets.
    KeyNeverSet { file: PathBuf, line: usize },
    /// The shipped subroutine reads `${EXTSEC_AGI}`, which no `[globals]` sets: every
    /// check is one that could not run.
    AgiNeverSet { file: PathBuf, line: usize },
}

impl std::fmt::Display for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wiring::AgiWithoutKey { file, line, url } => write!(
                f,
                "{}:{line}: AGI({url}) carries no ?key= while daemon.secret is set: the daemon answers it ERROR and EXTSEC_ON_ERROR decides the call; append ?key=${{EXTSEC_AGI_KEY}} and set EXTSEC_AGI_KEY in [globals]",
                file.display()
            ),
            Wiring::KeyNeverSet { file, line } => write!(
                f,
                "{}:{line}: the URL takes its key from ${{EXTSEC_AGI_KEY}}, which no [globals] sets while daemon.secret is set: set EXTSEC_AGI_KEY=<the secret> in [globals]",
                file.display()
            ),
            Wiring::AgiNeverSet { file, line } => write!(
                f,
                "{}:{line}: the URL starts with ${{EXTSEC_AGI}}, which no [globals] sets: every outbound check would be one that could not run; set EXTSEC_AGI=agi://127.0.0.1:4573 in [globals]",
                file.display()
            ),
        }
    }
}

/// The shipped URLs' `${EXTSEC_AGI}` when no `[globals]` sets it; with `daemon.secret`
/// set (`keyed`), every FastAGI URL of the dialplan that carries no key, and
/// `${EXTSEC_AGI_KEY}` when no `[globals]` sets it.
pub fn wiring(roots: &[PathBuf], keyed: bool) -> (Vec<Wiring>, Vec<(PathBuf, io::Error)>) {
    let mut found = Vec::new();
    let (mut key_used, mut agi_used) = (None, None);
    let (mut key_set, mut agi_set) = (false, false);
    let unread = walk(roots, |file, text| {
        // Lines before any [section] of a file can only be read inside the section that
        // #includes it: FreePBX includes globals_custom.conf from [globals].
        let mut in_globals = true;
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.starts_with('[') {
                in_globals = line.starts_with("[globals]");
                continue;
            }
            if let Some((k, v)) = line.split_once('=').filter(|_| in_globals) {
                let set = !v.trim().is_empty();
                key_set |= set && k.trim() == "EXTSEC_AGI_KEY";
                agi_set |= set && k.trim() == "EXTSEC_AGI";
            }
            let Some(app) = application(line) else {
                continue;
            };
            let Some(args) = app.trim().strip_prefix("AGI(") else {
                continue;
            };
            let url = args.trim_end_matches(')').split(',').next().unwrap_or("");
            let network = url.starts_with("agi://") || url.starts_with("${EXTSEC_AGI}");
            if !network {
                continue;
            }
            if url.starts_with("${EXTSEC_AGI}") {
                agi_used.get_or_insert((file.to_path_buf(), i + 1));
            }
            if url.contains("${EXTSEC_AGI_KEY}") {
                key_used.get_or_insert((file.to_path_buf(), i + 1));
            } else if keyed && !url.contains("key=") {
                found.push(Wiring::AgiWithoutKey {
                    file: file.to_path_buf(),
                    line: i + 1,
                    url: url.to_string(),
                });
            }
        }
    });
    if let Some((file, line)) = key_used.filter(|_| keyed && !key_set) {
        found.push(Wiring::KeyNeverSet { file, line });
    }
    if let Some((file, line)) = agi_used.filter(|_| !agi_set) {
        found.push(Wiring::AgiNeverSet { file, line });
    }
    (found, unread)
}

/// The modules `[extsec-outbound]` needs (extensions-outbound.conf names them).
pub const OUTBOUND_MODULES: &[&str] = &[
    "pbx_config",
    "app_stack",
    "func_groupcount",
    "func_channel",
    "func_dialplan",
    "func_timeout",
    "func_logic",
    "app_exec",
    "app_verbose",
    "res_speech",
    "res_agi",
];

/// The needed modules `modules.conf` keeps from loading, as Asterisk's loader decides
/// ([`asterisk_conf::loads`]): with `autoload = no` (or unset), those without a `load`
/// (or `require`) line; otherwise those with a `noload` line; all of them when Asterisk
/// refuses the file.
pub fn modules_not_loaded(modules_conf: &str) -> Vec<&'static str> {
    let dir = Path::new(CONFIG_DIR);
    let files = asterisk_conf::Memory::of(dir, &[("modules.conf", modules_conf)]);
    let conf = asterisk_conf::read(&files, dir, "modules.conf");
    OUTBOUND_MODULES
        .iter()
        .copied()
        .filter(|m| !asterisk_conf::loads(&conf, m))
        .collect()
}

/// `extensions*.conf` in `dir`, sorted.
fn default_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("extensions") && n.ends_with(".conf"))
        })
        .collect();
    files.sort();
    files
}

/// The lines of one file that run a shell with a caller's value — `(line, runs, value)`
/// — and the files it `#include`s. Pure.
pub fn scan_text(text: &str) -> (Vec<(usize, String, String)>, Vec<String>) {
    let mut findings = Vec::new();
    let mut includes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if let Some(include) = include_of(line) {
            includes.extend(include.map(str::to_string));
            continue;
        }
        let Some(app) = application(line) else {
            continue;
        };
        let (name, args) = match app.split_once('(') {
            Some((name, args)) => (name.trim(), args),
            None => (app.trim(), ""),
        };
        let runs_shell = ["System", "TrySystem"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name));
        if runs_shell && let Some(value) = first_caller_value(args) {
            findings.push((i + 1, name.to_string(), value));
            continue;
        }
        // ${SHELL(...)} in any application's data.
        let mut at = 0;
        while let Some(found) = app[at..].find("${SHELL(") {
            let start = at + found;
            let expr = braced(&app[start + 2..]).unwrap_or_default();
            if let Some(value) = first_caller_value(&expr["SHELL(".len().min(expr.len())..]) {
                findings.push((i + 1, "SHELL".to_string(), value));
                break;
            }
            at = start + 2;
        }
    }
    (findings, includes)
}

/// For an `#include` or `#tryinclude` line, the file it names (`None` when it names
/// none); `None` for any other line.
fn include_of(line: &str) -> Option<Option<&str>> {
    let rest = line
        .strip_prefix("#include")
        .or_else(|| line.strip_prefix("#tryinclude"))?;
    let name = rest
        .trim()
        .trim_matches(|c| c == '"' || c == '<' || c == '>');
    Some((!name.is_empty()).then_some(name))
}

/// A line without its `;` comment (`\;` is a literal semicolon).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b';' && (i == 0 || bytes[i - 1] != b'\\') {
            return &line[..i];
        }
    }
    line
}

/// The `App(args)` part of an `exten =>` or `same =>` line.
fn application(line: &str) -> Option<&str> {
    let (key, rest) = line.split_once("=>").or_else(|| line.split_once('='))?;
    let rest = rest.trim();
    match key.trim().to_ascii_lowercase().as_str() {
        // exten => NAME,PRIORITY,App(args): the name and priority hold no comma.
        "exten" => rest.splitn(3, ',').nth(2),
        // same => PRIORITY,App(args)
        "same" => rest.split_once(',').map(|(_, app)| app),
        _ => None,
    }
}

/// The text after a `${`, up to its matching `}` (nested braces counted), without it.
fn braced(after: &str) -> Option<String> {
    let mut depth = 1;
    for (i, c) in after.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(after[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The first `${...}` in `text` that substitutes a caller's value unencoded.
fn first_caller_value(text: &str) -> Option<String> {
    let mut at = 0;
    while let Some(found) = text[at..].find("${") {
        let start = at + found;
        let expr = braced(&text[start + 2..])?;
        let name = expr
            .split(['(', ':'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase();
        let encoded = ["BASE64_ENCODE", "URIENCODE", "FILTER", "LEN"].contains(&name.as_str());
        if !encoded {
            if is_callers(&name, &expr) {
                return Some(format!("${{{expr}}}"));
            }
            // Another function: its argument may hold one.
            if let Some(inner) = first_caller_value(&expr) {
                return Some(inner);
            }
        }
        at = start + 2 + expr.len() + 1;
    }
    None
}

/// Whether `${expr}` (function or variable `name`) is what a caller sends.
fn is_callers(name: &str, expr: &str) -> bool {
    const CALLERS: &[&str] = &[
        "EXTEN",
        "CALLERID",
        "CALLERIDNUM",
        "CALLERIDNAME",
        "CONNECTEDLINE",
        "REDIRECTING",
        "DNID",
        "RDNIS",
        "PJSIP_HEADER",
        "SIP_HEADER",
        "SIPCALLID",
        "SIPURI",
    ];
    if CALLERS.contains(&name) {
        return true;
    }
    let arg = expr.to_ascii_lowercase();
    name == "CHANNEL" && (arg.contains("useragent") || arg.contains("call-id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agi_urls_without_the_key_are_named_and_the_shipped_one_needs_its_global() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("extensions.conf");
        std::fs::write(
            &conf,
            "[globals]\nEXTSEC_ON_ERROR=hangup\n[from-phones]\n\
             exten => _X.,1,AGI(agi://127.0.0.1/check)\n\
             same => n,AGI(agi://127.0.0.1/check?key=abc)\n\
             same => n,AGI(/usr/bin/extsecurity,agi)\n\
             same => n,AGI(${EXTSEC_AGI}/outbound?key=${EXTSEC_AGI_KEY})\n",
        )
        .unwrap();
        let (found, unread) = wiring(std::slice::from_ref(&conf), true);
        assert!(unread.is_empty());
        assert_eq!(
            found,
            [
                Wiring::AgiWithoutKey {
                    file: conf.clone(),
                    line: 4,
                    url: "agi://127.0.0.1/check".into()
                },
                Wiring::KeyNeverSet {
                    file: conf.clone(),
                    line: 7
                },
                Wiring::AgiNeverSet {
                    file: conf.clone(),
                    line: 7
                }
            ]
        );
        assert_eq!(
            wiring(std::slice::from_ref(&conf), false).0.len(),
            1,
            "no key asked"
        );
        assert!(
            found[0]
                .to_string()
                .contains(":4: AGI(agi://127.0.0.1/check) carries no ?key=")
        );
        std::fs::write(&conf, "[globals]\nEXTSEC_AGI_KEY=s3cret\nEXTSEC_AGI=agi://127.0.0.1:4573\n[x]\nexten => s,1,AGI(${EXTSEC_AGI}/outbound?key=${EXTSEC_AGI_KEY})\n").unwrap();
        assert!(wiring(std::slice::from_ref(&conf), true).0.is_empty());
        // FreePBX: the globals in a file [globals] includes.
        let custom = dir.path().join("globals_custom.conf");
        std::fs::write(
            &custom,
            "EXTSEC_AGI_KEY=s3cret\nEXTSEC_AGI=agi://127.0.0.1:4573\n",
        )
        .unwrap();
        std::fs::write(&conf, format!("[globals]\n#include {}\n[x]\nexten => s,1,AGI(${{EXTSEC_AGI}}/outbound?key=${{EXTSEC_AGI_KEY}})\n", custom.display())).unwrap();
        assert!(wiring(std::slice::from_ref(&conf), true).0.is_empty());
    }

    #[test]
    fn modules_conf_with_autoload_off_must_load_each_module() {
        assert!(modules_not_loaded("[modules]\nautoload=yes\n").is_empty());
        assert_eq!(
            modules_not_loaded("[modules]\nautoload=yes\nnoload => res_speech.so\n"),
            ["res_speech"]
        );
        let mut all: String = "[modules]\nautoload = no\n".into();
        for m in OUTBOUND_MODULES {
            if *m != "res_speech" {
                all.push_str(&format!("load => {m}.so\n"));
            }
        }
        assert_eq!(modules_not_loaded(&all), ["res_speech"]);
        assert_eq!(
            modules_not_loaded("autoload=no\n").len(),
            OUTBOUND_MODULES.len()
        );
    }

    #[test]
    fn the_seeds_line_is_found_and_the_shipped_ones_are_not() {
        let seed = r#"exten => s,1,System(/var/lib/asterisk/security/extsecurity.py '{"ip": "${CHANNEL(peerip)}", "callerid_num": "${CALLERID(num)}", "callerid_num": "${CALLERID(name)}", "dest_exten": "${EXTEN}"}')"#;
        let (found, _) = scan_text(seed);
        assert_eq!(
            found,
            [(1, "System".to_string(), "${CALLERID(num)}".to_string())]
        );
        let shipped = "exten => _X.,1,TrySystem(/usr/bin/extsecurity check '--ip=${CHANNEL(pjsip,remote_addr)}' --exten-b64=${BASE64_ENCODE(${EXTEN})} --callerid-num-b64=${BASE64_ENCODE(${CALLERID(num)})})\n same => n,Gosub(extsec-system-verdict,s,1)\n";
        assert_eq!(scan_text(shipped).0, []);
    }

    #[test]
    fn every_way_of_writing_it_is_read() {
        let text = "\
; exten => s,1,System(echo ${CALLERID(name)})  a comment
exten=>_X.,n(check),TrySystem(logger ${EXTEN:1})
 same => n,Set(X=${SHELL(echo ${PJSIP_HEADER(read,User-Agent)})})
 same => n,System(echo ${TOUPPER(${CALLERID(name)})})
 same => n,System(echo ${LEN(${CALLERID(name)})} ${FILTER(0-9,${CALLERID(num)})})
 same => n,NoOp(${CALLERID(name)})
#include \"extensions-custom.conf\"
#tryinclude <more.conf>
";
        let (found, includes) = scan_text(text);
        let found: Vec<(usize, &str, &str)> = found
            .iter()
            .map(|(l, r, v)| (*l, r.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (2, "TrySystem", "${EXTEN:1}"),
                (3, "SHELL", "${PJSIP_HEADER(read,User-Agent)}"),
                (4, "System", "${CALLERID(name)}"),
            ]
        );
        assert_eq!(includes, ["extensions-custom.conf", "more.conf"]);
    }

    #[test]
    fn includes_are_followed_once_and_unreadable_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("extensions.conf");
        let other = dir.path().join("other.conf");
        std::fs::write(
            &main,
            format!(
                "#include \"{}\"\n#include \"{}\"\nexten => s,1,NoOp()\n",
                other.display(),
                main.display()
            ),
        )
        .unwrap();
        std::fs::write(
            &other,
            "[default]\nexten => s,1,System(echo ${CALLERID(all)})\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.conf");
        let (found, unread) = scan(&[main, missing.clone()]);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].file.clone(), found[0].line), (other, 2));
        assert!(
            found[0]
                .to_string()
                .contains(":2: System() hands ${CALLERID(all)} to /bin/sh")
        );
        assert_eq!(unread.len(), 1);
        assert_eq!(unread[0].0, missing);
    }
}
