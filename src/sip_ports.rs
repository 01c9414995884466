//! The ports Asterisk takes SIP on, read from its configuration: the kernel bans drop a
//! banned source on these (`[nftables] ports` unset). A PBX on 5160, or FreePBX with
//! chan_sip on 5160 and PJSIP on 5060, is protected where it listens, not where a
//! default guessed.
//!
//! Read as Asterisk reads them ([`crate::asterisk_conf`]: includes, templates,
//! inheritance, comments). Only what gives a port is looked at:
//! - `pjsip.conf` (and what it includes, as FreePBX's `pjsip.transports.conf`): each
//!   `type = transport` section's `bind` (`0.0.0.0:5060`, `[::]`, no port: 5060, or
//!   5061 for `protocol = tls`); `ws`/`wss` transports ride on the HTTP server, not here;
//! - `sip.conf`'s `[general]`: `udpbindaddr` (or `bindport`), and `tcpbindaddr`,
//!   `tlsbindaddr` when `tcpenable`/`tlsenable` say yes.

use std::path::Path;

use crate::asterisk_conf::{self, Conf, Disk, yes};

/// Ports when nothing can be read: SIP's own, UDP/TCP and TLS.
pub const DEFAULT: [u16; 2] = [5060, 5061];

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
    let pjsip = asterisk_conf::read(&Disk, dir, "pjsip.conf");
    if pjsip.exists() {
        ports.extend(pjsip_ports(&pjsip));
        read.push("pjsip.conf transports");
    }
    let sip = asterisk_conf::read(&Disk, dir, "sip.conf");
    if sip.exists() {
        ports.extend(chan_sip_ports(&sip));
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

/// The ports of PJSIP's transports (templates are not transports).
fn pjsip_ports(conf: &Conf) -> Vec<u16> {
    conf.objects()
        .filter(|s| s.get("type") == Some("transport"))
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
fn chan_sip_ports(conf: &Conf) -> Vec<u16> {
    let Some(general) = conf.named("general").last() else {
        return Vec::new();
    };
    let yes = |key: &str| general.get(key).is_some_and(yes);
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
}
