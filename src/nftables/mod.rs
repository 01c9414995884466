//! Kernel bans: an `inet` table of our own whose input chain drops sources found in two
//! sets with `flags timeout` (design.md §3d). The table, sets and rules are put in place
//! once at start by `nft -f -` ([`setup`]); every ban after that is a set element added
//! over netlink ([`netlink`]), many to a batch, each with its own timeout and the
//! alert's reason as comment. A restart keeps the elements: they expire on their own.

pub mod history;
pub mod netlink;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::NftablesConfig;

/// Why the kernel side could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft ({0}); install nftables")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Refused(String),
    #[error("nft cannot list the bans: {0}")]
    Listing(String),
}

/// The table, two sets and the input chain, as `nft -f -` reads them. The chain is
/// flushed and its rules written again, so a restart never duplicates them; the sets
/// are declared, not flushed, so bans survive it.
pub fn ruleset(config: &NftablesConfig) -> String {
    let t = &config.table;
    let size = config.max_elements;
    let ports = match config.ports.as_slice() {
        [] => String::new(),
        ports => {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!(
                " meta l4proto {{ tcp, udp }} th dport {{ {} }}",
                list.join(", ")
            )
        }
    };
    format!(
        "table inet {t} {{\n\
         \x20 set v4 {{ type ipv4_addr; flags timeout; size {size}; }}\n\
         \x20 set v6 {{ type ipv6_addr; flags timeout; size {size}; }}\n\
         \x20 chain input {{ type filter hook input priority -10; policy accept; }}\n\
         }}\n\
         flush chain inet {t} input\n\
         add rule inet {t} input ip saddr @v4{ports} counter drop\n\
         add rule inet {t} input ip6 saddr @v6{ports} counter drop\n"
    )
}

/// Puts the table in place (one `nft` process, at start). Without `CAP_NET_ADMIN` this
/// fails with nft's own "Operation not permitted".
pub fn setup(config: &NftablesConfig) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(ruleset(config).as_bytes())
        .map_err(NftError::Spawn)?;
    drop(stdin);
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let line = why
        .lines()
        .find(|l| l.contains("Error"))
        .unwrap_or(why.trim());
    Err(NftError::Refused(line.trim().to_string()))
}

/// Removes table `table` and the bans it holds: what `serve` does when `[nftables]` is
/// off, and the package's `prerm` on removal (no binary left afterwards to lift them).
/// `Some(bans)` it held, `None` when there was no such table.
pub fn remove(table: &str) -> Result<Option<usize>, NftError> {
    let mut socket = netlink::Socket::open().map_err(NftError::Spawn)?;
    let mut held = 0;
    for set in ["v4", "v6"] {
        match socket.count(table, set) {
            Ok(n) => held += n,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if set == "v4" {
                    return Ok(None);
                }
            }
            Err(e) => return Err(NftError::Refused(e.to_string())),
        }
    }
    let out = Command::new("nft")
        .args(["delete", "table", "inet", table])
        .stdout(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(NftError::Refused(
            why.lines().next().unwrap_or_default().trim().to_string(),
        ));
    }
    Ok(Some(held))
}

/// One banned address, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned {
    pub ip: IpAddr,
    /// The alert's reason, from the element's comment.
    pub reason: String,
    pub expires: Duration,
}

/// Every element of both sets, read with `nft -j` (works while the daemon is down).
pub fn list(table: &str) -> Result<Vec<Banned>, NftError> {
    let mut all = Vec::new();
    for set in ["v4", "v6"] {
        let out = Command::new("nft")
            .args(["-j", "list", "set", "inet", table, set])
            .output()
            .map_err(NftError::Spawn)?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or_default().trim();
            return Err(NftError::Listing(format!(
                "{why} (is [nftables] enabled and the daemon started once?)"
            )));
        }
        all.extend(parse_listing(&out.stdout)?);
    }
    Ok(all)
}

/// Time left as an administrator reads it: `23h 59m 12s`, `2d 0h 0m 5s`, `42s`.
pub fn time_left(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m {sec}s"),
        _ => format!("{days}d {h}h {m}m {sec}s"),
    }
}

/// The elements of `nft -j list set …`: `{"elem": {"val", "expires", "comment"}}`.
pub fn parse_listing(json: &[u8]) -> Result<Vec<Banned>, NftError> {
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| NftError::Listing(e.to_string()))?;
    let sets = value["nftables"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for entry in sets {
        let elems = entry["set"]["elem"].as_array().cloned().unwrap_or_default();
        for e in elems {
            let e = &e["elem"];
            let Some(ip) = e["val"].as_str().and_then(|v| v.parse().ok()) else {
                continue;
            };
            out.push(Banned {
                ip,
                reason: e["comment"].as_str().unwrap_or_default().to_string(),
                expires: Duration::from_secs(e["expires"].as_u64().unwrap_or(0)),
            });
        }
    }
    Ok(out)
}

/// This host's own addresses (every interface), which are never banned.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getifaddrs returned; each addr is valid or null.
        let (addr, next) = unsafe { ((*cur).ifa_addr, (*cur).ifa_next) };
        if !addr.is_null() {
            // SAFETY: the family tells which sockaddr type the pointer holds.
            match i32::from(unsafe { (*addr).sa_family }) {
                libc::AF_INET => {
                    let a = unsafe { &*(addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                }
                libc::AF_INET6 => {
                    let a = unsafe { &*(addr as *const libc::sockaddr_in6) };
                    out.push(IpAddr::from(a.sin6_addr.s6_addr));
                }
                _ => {}
            }
        }
        cur = next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ports: Vec<u16>) -> NftablesConfig {
        NftablesConfig {
            ports,
            ban: Duration::from_secs(86_400),
            table: "extsecurity".into(),
            max_elements: 65_536,
            increment: None,
            state_file: "/var/lib/extsecurity/bans.state".into(),
        }
    }

    #[test]
    fn the_ruleset_drops_set_members_on_the_configured_ports_only() {
        let r = ruleset(&config(vec![5060, 5061]));
        assert!(
            r.contains("set v4 { type ipv4_addr; flags timeout; size 65536; }"),
            "{r}"
        );
        assert!(r.contains("flush chain inet extsecurity input\n"));
        assert!(r.contains(
            "add rule inet extsecurity input ip saddr @v4 meta l4proto { tcp, udp } th dport { 5060, 5061 } counter drop"
        ), "{r}");
        assert!(!r.contains("flush set"), "bans survive a restart");
        let every = ruleset(&config(vec![]));
        assert!(
            every.contains("input ip6 saddr @v6 counter drop"),
            "{every}"
        );
    }

    #[test]
    fn a_listing_gives_address_reason_and_time_left() {
        let json = br#"{"nftables": [{"metainfo": {}}, {"set": {"family": "inet", "name": "v4", "table": "extsecurity", "type": "ipv4_addr", "flags": ["timeout"], "elem": [{"elem": {"val": "203.0.113.5", "timeout": 86400, "expires": 86390, "comment": "auth_bruteforce"}}]}}]}"#;
        let banned = parse_listing(json).unwrap();
        assert_eq!(
            banned,
            [Banned {
                ip: "203.0.113.5".parse().unwrap(),
                reason: "auth_bruteforce".into(),
                expires: Duration::from_secs(86_390),
            }]
        );
        assert!(parse_listing(b"{").is_err());
        assert_eq!(parse_listing(br#"{"nftables": []}"#).unwrap(), []);
    }

    #[test]
    fn time_left_reads_as_the_readme_shows_it() {
        assert_eq!(time_left(Duration::from_secs(86_399 - 47)), "23h 59m 12s");
        assert_eq!(time_left(Duration::from_secs(59 * 60 + 37)), "59m 37s");
        assert_eq!(time_left(Duration::from_secs(42)), "42s");
        assert_eq!(
            time_left(Duration::from_secs(2 * 86_400 + 5)),
            "2d 0h 0m 5s"
        );
    }

    #[test]
    fn own_addresses_include_loopback() {
        assert!(own_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
