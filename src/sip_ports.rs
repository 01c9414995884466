//! The ports Asterisk takes SIP on, read from its configuration: the kernel bans drop a
//! banned source on these (`[nftables] ports` unset). A PBX on 5160, or FreePBX with
//! chan_sip on 5160 and PJSIP on 5060, is protected where it listens, not where a
//! default guessed.
//!
//! Read as Asterisk reads them (`main/config.c`): `[name]` sections, templates `(!)`
//! and inheritance `(a,b)`, `(+)` to add to a section, `=` and `=>`, `;` comments
//! (`\;` is a semicolon), `;-- … --;` block comments, `#include` and `#tryinclude`
//! relative to the folder. Only what gives a port is looked at:
//! - `pjsip.conf` (and what it includes, as FreePBX's `pjsip.transports.conf`): each
//!   `type = transport` section's `bind` (`0.0.0.0:5060`, `[::]`, no port: 5060, or
//!   5061 for `protocol = tls`); `ws`/`wss` transports ride on the HTTP server, not here;
//! - `sip.conf`'s `[general]`: `udpbindaddr` (or `bindport`), and `tcpbindaddr`,
//!   `tlsbindaddr` when `tcpenable`/`tlsenable` say yes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Ports when nothing can be read: SIP's own, UDP/TCP and TLS.
pub const DEFAULT: [u16; 2] = [5060, 5061];
/// Includes followed at most this deep (a file including itself stops here).
const MAX_DEPTH: usize = 8;

/// What was found, and where from, for `check-config` and the daemon's start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub ports: Vec<u16>,
    pub from: String,
}

/// The SIP ports of the Asterisk whose configuration is in `dir`.
pub fn discover(dir: &Path) -> Found {
    let mut ports = Vec::new();
    let mut read = Vec::new();
    if let Some(sections) = sections_of(dir, "pjsip.conf") {
        ports.extend(pjsip_ports(&sections));
        read.push("pjsip.conf transports");
    }
    if let Some(sections) = sections_of(dir, "sip.conf") {
        ports.extend(chan_sip_ports(&sections));
        read.push("sip.conf [general]");
    }
    ports.sort_unstable();
    ports.dedup();
    match ports.is_empty() {
        false => Found {
            ports,
            from: format!("{} in {}", read.join(" and "), dir.display()),
        },
        true => Found {
            ports: DEFAULT.to_vec(),
            from: format!(
                "SIP's defaults: no transport found in {}/pjsip.conf or sip.conf",
                dir.display()
            ),
        },
    }
}

/// One section: its keys in order (a key may repeat), and whether it is a template.
#[derive(Debug, Default, Clone)]
struct Section {
    template: bool,
    keys: Vec<(String, String)>,
}

impl Section {
    /// The last value of `key`, as Asterisk's later line wins for single settings.
    fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// The sections of `file` (its includes read in place), or `None` when it cannot be
/// read.
fn sections_of(dir: &Path, file: &str) -> Option<BTreeMap<String, Section>> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let mut lines = Vec::new();
    flatten(dir, &text, 0, &mut lines);
    Some(parse(&lines))
}

/// The file's lines with comments gone and includes replaced by their files' lines.
fn flatten(dir: &Path, text: &str, depth: usize, out: &mut Vec<String>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut in_block = false;
    for raw in text.lines() {
        let line = strip_comments(raw, &mut in_block);
        let line = line.trim();
        let include = line
            .strip_prefix("#include")
            .or_else(|| line.strip_prefix("#tryinclude"));
        match include {
            Some(name) if depth < MAX_DEPTH => {
                for path in included(dir, name.trim().trim_matches('"')) {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        flatten(dir, &text, depth + 1, out);
                    }
                }
            }
            Some(_) => {}
            None if !line.is_empty() => out.push(line.to_string()),
            None => {}
        }
    }
}

/// The files an `#include` names: relative to `dir`, a `*` matching any name part.
fn included(dir: &Path, name: &str) -> Vec<PathBuf> {
    let path = match Path::new(name).is_absolute() {
        true => PathBuf::from(name),
        false => dir.join(name),
    };
    let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
        return Vec::new();
    };
    if !file.contains('*') {
        return vec![path];
    }
    let (prefix, suffix) = file.split_once('*').unwrap_or((file, ""));
    let folder = path.parent().unwrap_or(dir);
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with(prefix) && f.ends_with(suffix))
        })
        .collect();
    found.sort();
    found
}

/// `raw` without its `;` comment (`\;` kept as `;`) and block comments.
fn strip_comments(raw: &str, in_block: &mut bool) -> String {
    let mut out = String::new();
    let mut rest = raw;
    loop {
        if *in_block {
            match rest.find("--;") {
                Some(end) => {
                    *in_block = false;
                    rest = &rest[end + 3..];
                }
                None => return out,
            }
        }
        let Some(at) = rest.find(';') else {
            out.push_str(rest);
            return out;
        };
        if rest[..at].ends_with('\\') {
            out.push_str(&rest[..at - 1]);
            out.push(';');
            rest = &rest[at + 1..];
        } else if rest[at..].starts_with(";--") {
            out.push_str(&rest[..at]);
            *in_block = true;
            rest = &rest[at + 3..];
        } else {
            out.push_str(&rest[..at]);
            return out;
        }
    }
}

/// Sections by name, templates' keys inherited (`[x](a,b)`) and `(+)` appended.
fn parse(lines: &[String]) -> BTreeMap<String, Section> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in lines {
        if let Some(header) = line.strip_prefix('[') {
            let Some((name, after)) = header.split_once(']') else {
                continue;
            };
            let options = after
                .trim()
                .strip_prefix('(')
                .and_then(|o| o.strip_suffix(')'))
                .unwrap_or("");
            let mut section = Section::default();
            let mut append = false;
            for option in options.split(',').map(str::trim) {
                match option {
                    "" => {}
                    "!" => section.template = true,
                    "+" => append = true,
                    parent => {
                        if let Some(p) = sections.get(parent) {
                            section.keys.extend(p.keys.iter().cloned());
                        }
                    }
                }
            }
            let name = name.trim().to_string();
            match append {
                true => {
                    sections.entry(name.clone()).or_default();
                }
                false => {
                    sections.insert(name.clone(), section);
                }
            }
            current = Some(name);
            continue;
        }
        let Some(section) = current.as_ref().and_then(|c| sections.get_mut(c)) else {
            continue;
        };
        if let Some((key, value)) = line.split_once('=') {
            let value = value.strip_prefix('>').unwrap_or(value);
            section
                .keys
                .push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    sections
}

/// The ports of PJSIP's transports (templates are not transports).
fn pjsip_ports(sections: &BTreeMap<String, Section>) -> Vec<u16> {
    sections
        .values()
        .filter(|s| !s.template && s.get("type") == Some("transport"))
        .filter_map(|s| {
            let protocol = s.get("protocol").unwrap_or("udp").to_ascii_lowercase();
            let default = match protocol.as_str() {
                "udp" | "tcp" => 5060,
                "tls" => 5061,
                _ => return None, // ws, wss: the HTTP server's port
            };
            port_of(s.get("bind")?, default)
        })
        .collect()
}

/// The ports of chan_sip's `[general]`.
fn chan_sip_ports(sections: &BTreeMap<String, Section>) -> Vec<u16> {
    let Some(general) = sections.get("general") else {
        return Vec::new();
    };
    let yes = |key: &str| general.get(key).is_some_and(is_yes);
    let bindport = general
        .get("bindport")
        .and_then(|p| p.parse().ok())
        .unwrap_or(5060);
    let mut ports = vec![port_of(
        general.get("udpbindaddr").unwrap_or("0.0.0.0"),
        bindport,
    )];
    if yes("tcpenable") {
        ports.push(port_of(
            general.get("tcpbindaddr").unwrap_or("0.0.0.0"),
            5060,
        ));
    }
    if yes("tlsenable") {
        ports.push(port_of(
            general.get("tlsbindaddr").unwrap_or("0.0.0.0"),
            5061,
        ));
    }
    ports.into_iter().flatten().collect()
}

/// Asterisk's truth values (`ast_true`).
fn is_yes(value: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|y| value.eq_ignore_ascii_case(y))
}

/// The port of a bind address (`0.0.0.0:5160`, `[::]:5061`, `::`, `0.0.0.0`), or
/// `default` when it names none; `None` when the port does not read.
fn port_of(bind: &str, default: u16) -> Option<u16> {
    let bind = bind.trim();
    if let Ok(addr) = bind.parse::<std::net::SocketAddr>() {
        return Some(addr.port());
    }
    if bind.parse::<std::net::IpAddr>().is_ok() {
        return Some(default);
    }
    if let Some(v6) = bind.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().ok().map(|_| default);
    }
    // A host name: `pbx.example.com:5080`, or none.
    match bind.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => Some(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn pjsip_transports_give_their_ports_templates_and_websockets_do_not() {
        let dir = dir_with(&[(
            "pjsip.conf",
            "\u{feff}; a comment [not-a-section]\n\
             [transport-tmpl](!)\ntype = transport\nbind = 0.0.0.0:7000\n\
             [udp](transport-tmpl)\nprotocol = udp\nbind = 0.0.0.0:5160 ; FreePBX's alternate port\n\
             [tls]\ntype=transport\nprotocol=tls\nbind=[::]\n\
             [ws]\ntype => transport\nprotocol = ws\nbind = 0.0.0.0:8088\n\
             ;-- [old]\ntype=transport\nbind=0.0.0.0:9999\n--;\n\
             [1001]\ntype = endpoint\n",
        )]);
        let found = discover(dir.path());
        assert_eq!(found.ports, [5061, 5160]);
        assert!(
            found.from.starts_with("pjsip.conf transports in "),
            "{}",
            found.from
        );
    }

    #[test]
    fn freepbx_transports_are_read_through_its_includes() {
        let dir = dir_with(&[
            (
                "pjsip.conf",
                "#include pjsip.transports.conf\n#tryinclude \"pjsip_custom*.conf\"\n#include missing.conf\n",
            ),
            (
                "pjsip.transports.conf",
                "[0.0.0.0-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\n",
            ),
            (
                "pjsip_custom_tcp.conf",
                "[tcp]\ntype=transport\nprotocol=tcp\nbind=0.0.0.0:5080\n[tcp](+)\nbind=0.0.0.0:5090\n",
            ),
        ]);
        assert_eq!(discover(dir.path()).ports, [5060, 5090]);
    }

    #[test]
    fn chan_sip_general_gives_udp_and_the_enabled_tcp_and_tls() {
        let dir = dir_with(&[(
            "sip.conf",
            "[general]\nudpbindaddr=0.0.0.0:5160\ntcpenable=yes\ntcpbindaddr=0.0.0.0\ntlsenable=no\ntlsbindaddr=0.0.0.0:5161\n",
        )]);
        let found = discover(dir.path());
        assert_eq!(found.ports, [5060, 5160]);
        assert!(found.from.starts_with("sip.conf [general] in "));
        let dir = dir_with(&[("sip.conf", "[general]\nbindport = 5070\n")]);
        assert_eq!(discover(dir.path()).ports, [5070]);
    }

    #[test]
    fn nothing_readable_falls_back_to_sips_own_ports_and_says_so() {
        let dir = dir_with(&[("pjsip.conf", "[1001]\ntype=endpoint\n")]);
        let found = discover(dir.path());
        assert_eq!(found.ports, DEFAULT);
        assert!(found.from.starts_with("SIP's defaults"), "{}", found.from);
        assert_eq!(discover(Path::new("/nonexistent")).ports, DEFAULT);
    }

    #[test]
    fn an_include_of_itself_stops() {
        let dir = dir_with(&[(
            "pjsip.conf",
            "#include pjsip.conf\n[t]\ntype=transport\nbind=0.0.0.0:5062\n",
        )]);
        assert_eq!(discover(dir.path()).ports, [5062]);
    }

    #[test]
    fn an_escaped_semicolon_is_part_of_the_value() {
        let mut block = false;
        assert_eq!(strip_comments(r"a = b\;c ; gone", &mut block), "a = b;c ");
        assert_eq!(strip_comments("x ;-- start", &mut block), "x ");
        assert!(block);
        assert_eq!(strip_comments("inside --; after", &mut block), " after");
    }
}
