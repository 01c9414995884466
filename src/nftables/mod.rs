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

/// Why the kernel side could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft ({0}); install nftables")]
    Spawn(std::io::Error),
    #[error("nft refused the ruleset: {0}")]
    Refused(String),
    #[error("nft cannot list the bans: {0}")]
    Listing(String),
    #[error("table inet {0} is in use by another running extsecurity daemon: left in place")]
    InUse(String),
}

/// What the table is made of (from `[nftables]`): its name, the ports its rules drop
/// on (none: every port) and each set's size. Handed in, so that this room reads no
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout<'a> {
    pub table: &'a str,
    pub ports: &'a [u16],
    pub max_elements: u32,
    /// `[edge]`'s rules, in a chain of their own that the input chain jumps to on the
    /// ports; `None`: the chain is empty.
    pub edge: Option<Edge<'a>>,
}

/// What the edge drops before Asterisk sees it (`[edge]`), handed in as the layout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<'a> {
    /// Packets a second one source may send to the ports; 0: no limit.
    pub rate_limit: u32,
    pub rate_burst: u32,
    /// Count, never drop.
    pub dry_run: bool,
    /// Sources never dropped (the trusted networks); this host always passes.
    pub pass: &'a [ipnet::IpNet],
    /// Whether the feed and country rules are written (their sets are filled apart,
    /// by [`fill`]).
    pub feeds: bool,
    pub countries: bool,
}

/// The interval sets the edge drops from, filled by [`fill`]: `<name>4`, `<name>6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeSet {
    /// Every feed's networks, merged.
    Feed,
    /// The networks of the refused countries.
    Country,
}

impl EdgeSet {
    pub fn name(self) -> &'static str {
        match self {
            EdgeSet::Feed => "feed",
            EdgeSet::Country => "country",
        }
    }
}

/// How long an address that logged in stays known (AMI `SuccessfulAuth`): the edge
/// lets it through whatever its country or a feed says, for a day after its last login.
pub const KNOWN_FOR: Duration = Duration::from_secs(86_400);

/// The comment that marks the rate limit's rules, whose counters `status` reads.
pub const RATE_RULE: &str = "rate";

/// The table, two sets and the input chain, as `nft -f -` reads them. The chain is
/// flushed and its rules written again, so a restart never duplicates them; the sets
/// are declared, not flushed, so bans survive it.
pub fn ruleset(layout: Layout<'_>) -> String {
    let t = layout.table;
    let size = layout.max_elements;
    let ports = match layout.ports {
        [] => String::new(),
        ports => {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!(
                " meta l4proto {{ tcp, udp }} th dport {{ {} }}",
                list.join(", ")
            )
        }
    };
    let mut out = format!(
        "table inet {t} {{\n\
         \x20 set v4 {{ type ipv4_addr; flags timeout; size {size}; }}\n\
         \x20 set v6 {{ type ipv6_addr; flags timeout; size {size}; }}\n\
         \x20 set n4 {{ type ipv4_addr; flags interval, timeout; size {size}; }}\n\
         \x20 set n6 {{ type ipv6_addr; flags interval, timeout; size {size}; }}\n\
         \x20 set pass4 {{ type ipv4_addr; flags interval; auto-merge; }}\n\
         \x20 set pass6 {{ type ipv6_addr; flags interval; auto-merge; }}\n\
         \x20 set rate4 {{ type ipv4_addr; flags dynamic, timeout; timeout 60s; size {size}; }}\n\
         \x20 set rate6 {{ type ipv6_addr; flags dynamic, timeout; timeout 60s; size {size}; }}\n\
         \x20 set known4 {{ type ipv4_addr; flags timeout; size {size}; }}\n\
         \x20 set known6 {{ type ipv6_addr; flags timeout; size {size}; }}\n\
         \x20 set feed4 {{ type ipv4_addr; flags interval; }}\n\
         \x20 set feed6 {{ type ipv6_addr; flags interval; }}\n\
         \x20 set feed4_one {{ type ipv4_addr; size {LIST_SIZE}; }}\n\
         \x20 set feed6_one {{ type ipv6_addr; size {LIST_SIZE}; }}\n\
         \x20 set country4 {{ type ipv4_addr; flags interval; }}\n\
         \x20 set country6 {{ type ipv6_addr; flags interval; }}\n\
         \x20 set country4_one {{ type ipv4_addr; size {LIST_SIZE}; }}\n\
         \x20 set country6_one {{ type ipv6_addr; size {LIST_SIZE}; }}\n\
         \x20 chain input {{ type filter hook input priority -10; policy accept; }}\n\
         \x20 chain edge {{ }}\n\
         }}\n\
         flush chain inet {t} input\n\
         flush chain inet {t} edge\n\
         flush set inet {t} pass4\n\
         flush set inet {t} pass6\n\
         add rule inet {t} input ip saddr @v4{ports} counter drop\n\
         add rule inet {t} input ip6 saddr @v6{ports} counter drop\n\
         add rule inet {t} input ip saddr @n4{ports} counter drop\n\
         add rule inet {t} input ip6 saddr @n6{ports} counter drop\n"
    );
    if let Some(edge) = layout.edge {
        out.push_str(&edge_rules(t, &ports, edge));
    }
    out
}

/// The edge chain's rules, after the bans: this host, the trusted networks and the
/// addresses that logged in pass; then feeds, countries, and each source held to the
/// rate drop (count only, in a dry run).
fn edge_rules(t: &str, ports: &str, edge: Edge<'_>) -> String {
    let mut out = String::new();
    for (set, family) in [("pass4", true), ("pass6", false)] {
        let nets: Vec<String> = edge
            .pass
            .iter()
            .filter(|n| matches!(n, ipnet::IpNet::V4(_)) == family)
            .map(|n| n.to_string())
            .collect();
        if !nets.is_empty() {
            out += &format!("add element inet {t} {set} {{ {} }}\n", nets.join(", "));
        }
    }
    out += &format!(
        "add rule inet {t} input{ports} jump edge\n\
         add rule inet {t} edge iif \"lo\" return\n\
         add rule inet {t} edge ip saddr @pass4 return\n\
         add rule inet {t} edge ip6 saddr @pass6 return\n\
         add rule inet {t} edge ip saddr @known4 return\n\
         add rule inet {t} edge ip6 saddr @known6 return\n"
    );
    let verdict = if edge.dry_run { "" } else { " drop" };
    for (on, set) in [
        (edge.feeds, EdgeSet::Feed),
        (edge.countries, EdgeSet::Country),
    ] {
        let name = set.name();
        if on {
            for (addr, family) in [("ip", "4"), ("ip6", "6")] {
                for kind in ["_one", ""] {
                    out += &format!(
                        "add rule inet {t} edge {addr} saddr @{name}{family}{kind} counter{verdict} comment \"{name}\"\n"
                    );
                }
            }
        }
    }
    if edge.rate_limit > 0 {
        let (rate, burst) = (edge.rate_limit, edge.rate_burst);
        for (set, addr) in [("rate4", "ip saddr"), ("rate6", "ip6 saddr")] {
            out += &format!(
                "add rule inet {t} edge update @{set} {{ {addr} limit rate over {rate}/second burst {burst} packets }} counter{verdict} comment \"{RATE_RULE}\"\n"
            );
        }
    }
    out
}

/// Replaces the elements of an edge set (both families) in one transaction: a packet
/// never meets the set half filled, and a list refused by the kernel leaves the old one.
pub fn fill(table: &str, set: EdgeSet, nets: &crate::edge::Networks) -> Result<(), NftError> {
    run_script(&fill_script(table, set, nets))
}

/// [`fill`]'s script: the flushes, then single addresses into the hash sets and ranges
/// into the interval sets, a few thousand to a line (a hash set of 100,000 addresses
/// loads in a quarter of a second, an interval set of them in four).
pub fn fill_script(table: &str, set: EdgeSet, nets: &crate::edge::Networks) -> String {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let name = set.name();
    let mut out = String::new();
    for suffix in ["4", "6", "4_one", "6_one"] {
        out += &format!("flush set inet {table} {name}{suffix}\n");
    }
    let v4 = nets.v4.iter().map(|&(a, b)| {
        (
            Ipv4Addr::from(a).to_string(),
            (a != b).then(|| Ipv4Addr::from(b).to_string()),
        )
    });
    let v6 = nets.v6.iter().map(|&(a, b)| {
        (
            Ipv6Addr::from(a).to_string(),
            (a != b).then(|| Ipv6Addr::from(b).to_string()),
        )
    });
    for (family, list) in [("4", v4.collect::<Vec<_>>()), ("6", v6.collect())] {
        let (ones, ranges): (Vec<_>, Vec<_>) = list.into_iter().partition(|(_, to)| to.is_none());
        let ones: Vec<String> = ones.into_iter().map(|(a, _)| a).collect();
        let ranges: Vec<String> = ranges
            .into_iter()
            .map(|(a, b)| format!("{a}-{}", b.unwrap_or_default()))
            .collect();
        for (suffix, elements) in [("_one", ones), ("", ranges)] {
            for chunk in elements.chunks(4096) {
                out += &format!(
                    "add element inet {table} {name}{family}{suffix} {{ {} }}\n",
                    chunk.join(", ")
                );
            }
        }
    }
    out
}

/// How many single addresses a list's hash set holds at most (a million: FireHOL's
/// biggest lists are a few hundred thousand).
pub const LIST_SIZE: u32 = 1 << 20;

/// What the edge's rules marked `comment` counted since the ruleset was written:
/// packets dropped (or in a dry run, let through).
pub fn edge_counted(table: &str) -> Result<Counted, NftError> {
    let out = Command::new("nft")
        .args(["-j", "list", "chain", "inet", table, "edge"])
        .output()
        .map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Listing(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(Counted {
        rate: counted(&out.stdout, RATE_RULE),
        feed: counted(&out.stdout, EdgeSet::Feed.name()),
        country: counted(&out.stdout, EdgeSet::Country.name()),
    })
}

/// Packets each edge rule counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub rate: u64,
    pub feed: u64,
    pub country: u64,
}

/// The packets of the counters of the rules commented `comment`, in `nft -j`'s listing.
fn counted(json: &[u8], comment: &str) -> u64 {
    let Ok(listing) = serde_json::from_slice::<serde_json::Value>(json) else {
        return 0;
    };
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["rule"]["comment"] == comment)
        .flat_map(|o| o["rule"]["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["counter"]["packets"].as_u64())
        .sum()
}

/// Puts the table in place (one `nft` process, at start). Without `CAP_NET_ADMIN` this
/// fails with nft's own "Operation not permitted".
pub fn setup(layout: Layout<'_>) -> Result<(), NftError> {
    run_script(&ruleset(layout))
}

/// One `nft -f -`: one transaction, all or nothing.
fn run_script(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(script.as_bytes())
        .map_err(NftError::Spawn)?;
    drop(stdin);
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    match out.status.success() {
        true => Ok(()),
        false => Err(refused(&out.stderr)),
    }
}

/// What `nft` said when it refused: its `Error:` line, else its first words.
fn refused(stderr: &[u8]) -> NftError {
    let why = String::from_utf8_lossy(stderr);
    let line = why
        .lines()
        .find(|l| l.contains("Error"))
        .unwrap_or(why.trim());
    NftError::Refused(line.trim().to_string())
}

/// The sets and the chain [`ruleset`] makes, by name.
const SETS: [&str; 4] = ["v4", "v6", "n4", "n6"];
/// Drop rules in the chain: one per set.
const RULES: usize = SETS.len();

/// Whether the table `layout` describes is whole: its four ban sets, its input chain
/// with the four drop rules (and the jump to the edge), and the edge's rules when
/// `[edge]` is on (`nft -t`: the sets' elements are not listed, whatever their number).
/// `Ok(false)` when the table is gone.
pub fn is_whole(layout: Layout<'_>) -> Result<bool, NftError> {
    let out = Command::new("nft")
        .args(["-t", "-j", "list", "table", "inet", layout.table])
        .output()
        .map_err(NftError::Spawn)?;
    match out.status.success() {
        true => Ok(listing_is_whole(&out.stdout, edge_rules_expected(layout))),
        false if String::from_utf8_lossy(&out.stderr).contains("No such file") => Ok(false),
        false => Err(refused(&out.stderr)),
    }
}

/// How many rules [`ruleset`] writes in the edge chain.
fn edge_rules_expected(layout: Layout<'_>) -> usize {
    let edge_rule = format!("add rule inet {} edge ", layout.table);
    ruleset(layout)
        .lines()
        .filter(|l| l.starts_with(&edge_rule))
        .count()
}

/// [`is_whole`] on `nft -j`'s listing of the table, with `edge` rules expected in the
/// edge chain (and then the input chain's jump to it).
fn listing_is_whole(json: &[u8], edge: usize) -> bool {
    let Ok(listing) = serde_json::from_slice::<serde_json::Value>(json) else {
        return false;
    };
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    let named = |kind: &str, name: &str| objects.iter().any(|o| o[kind]["name"] == name);
    let rules = |chain: &str| {
        objects
            .iter()
            .filter(|o| o["rule"]["chain"] == chain)
            .count()
    };
    let jump = usize::from(edge > 0);
    SETS.iter().all(|set| named("set", set))
        && named("chain", "input")
        && rules("input") >= RULES + jump
        && rules("edge") >= edge
}

/// A running daemon's claim on table `table`: an abstract socket named after it,
/// freed by the kernel however the daemon ends, and seen by every process of this
/// network namespace (where the table lives too). A daemon without `[nftables]`, or
/// `extsecurity bans --remove-table`, leaves a table another daemon claims.
#[derive(Debug)]
pub struct Claim(#[allow(dead_code)] std::os::unix::net::UnixListener);

/// Claims `table`; `Ok(None)` when another running daemon holds it.
pub fn claim(table: &str) -> std::io::Result<Option<Claim>> {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("extsecurity/nftables/{table}");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(listener) => Ok(Some(Claim(listener))),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes table `table` and the bans it holds: what `serve` does when `[nftables]` is
/// off, and the package's `prerm` on removal (no binary left afterwards to lift them).
/// `Some(bans)` it held, `None` when there was no such table. Refused while another
/// running daemon claims the table ([`claim`]).
pub fn remove(table: &str) -> Result<Option<usize>, NftError> {
    let _claim = match claim(table) {
        Ok(None) => return Err(NftError::InUse(table.to_string())),
        Ok(claim) => claim,
        // No abstract sockets here (never on Linux): nothing to respect.
        Err(_) => None,
    };
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

/// One banned address or range, as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banned {
    /// An address is a /32 or /128; a range (`extsecurity ban CIDR`) is wider.
    pub net: ipnet::IpNet,
    /// The alert's reason, from the element's comment.
    pub reason: String,
    pub expires: Duration,
}

/// Every element of the address sets and the range sets, read with `nft -j` (works
/// while the daemon is down).
pub fn list(table: &str) -> Result<Vec<Banned>, NftError> {
    let mut all = Vec::new();
    for set in SETS {
        let out = Command::new("nft")
            .args(["-j", "list", "set", "inet", table, set])
            .output()
            .map_err(NftError::Spawn)?;
        // A table an older daemon made has no range sets yet.
        if !out.status.success() && set.starts_with('n') {
            continue;
        }
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().next().unwrap_or_default().trim();
            let hint = match claim(table) {
                _ if why.contains("Operation not permitted") => {
                    "reading the kernel's sets needs root: sudo extsecurity bans"
                }
                // A daemon holds the table and it is gone: removed under it.
                Ok(None) => {
                    "removed under the running daemon (flush ruleset?), which puts it back within a second: run this again"
                }
                _ => "is [nftables] enabled and the daemon started once?",
            };
            return Err(NftError::Listing(format!("{why} ({hint})")));
        }
        all.extend(parse_listing(&out.stdout)?);
    }
    Ok(all)
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
            let prefix = &e["val"]["prefix"];
            let net = match e["val"].as_str() {
                Some(v) => v.parse::<IpAddr>().ok().map(ipnet::IpNet::from),
                None => prefix["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .zip(prefix["len"].as_u64())
                    .and_then(|(a, len)| ipnet::IpNet::new(a, len as u8).ok()),
            };
            let Some(net) = net else {
                continue;
            };
            out.push(Banned {
                net,
                reason: e["comment"].as_str().unwrap_or_default().to_string(),
                expires: Duration::from_secs(e["expires"].as_u64().unwrap_or(0)),
            });
        }
    }
    Ok(out)
}

/// `203.0.113.5` for a single address, `203.0.113.0/24` for a range.
pub fn shown(net: &ipnet::IpNet) -> String {
    match net.prefix_len() == net.max_prefix_len() {
        true => net.addr().to_string(),
        false => net.to_string(),
    }
}

/// A comment `nft` takes between quotes: printable ASCII but `"` and `\`, at most 100.
pub fn nft_comment(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .filter(|c| !matches!(c, '"' | '\\'))
        .take(100)
        .collect()
}

/// Bans the range `net` (`extsecurity ban CIDR`) in the interval set of its family for
/// `timeout`, through `nft` (ranges are rare, set by hand).
pub fn add_range(
    table: &str,
    net: ipnet::IpNet,
    timeout: Duration,
    comment: &str,
) -> Result<(), NftError> {
    let set = if net.addr().is_ipv4() { "n4" } else { "n6" };
    let element = format!(
        "{{ {} timeout {}s comment \"{}\" }}",
        net.trunc(),
        timeout.as_secs().max(1),
        nft_comment(comment)
    );
    run_nft(&["add", "element", "inet", table, set, &element]).map(drop)
}

/// Lifts the range `net`; `Ok(false)` when it was not banned as such.
pub fn delete_range(table: &str, net: ipnet::IpNet) -> Result<bool, NftError> {
    let set = if net.addr().is_ipv4() { "n4" } else { "n6" };
    let element = format!("{{ {} }}", net.trunc());
    match run_nft(&["delete", "element", "inet", table, set, &element]) {
        Ok(()) => Ok(true),
        Err(NftError::Refused(why))
            if why.contains("No such file") || why.contains("does not exist") =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn run_nft(args: &[&str]) -> Result<(), NftError> {
    let out = Command::new("nft")
        .args(args)
        .stdout(Stdio::null())
        .output()
        .map_err(NftError::Spawn)?;
    match out.status.success() {
        true => Ok(()),
        false => Err(refused(&out.stderr)),
    }
}

/// `90s`, `15m`, `4h`, `2d`, `1h30m`: a length given by hand.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 15m, 4h, 2d or 1h30m");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
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

    /// `nft -t -j list table inet extsecurity` of a table `ruleset` made (nft 1.0.6).
    fn listing(sets: &[&str], rules: usize) -> Vec<u8> {
        let mut objects = vec![
            r#"{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}"#.to_string(),
            r#"{"table": {"family": "inet", "name": "extsecurity", "handle": 1}}"#.to_string(),
        ];
        for set in sets {
            objects.push(format!(
                r#"{{"set": {{"family": "inet", "name": "{set}", "table": "extsecurity", "type": "ipv4_addr", "handle": 2, "flags": ["timeout"]}}}}"#
            ));
        }
        objects.push(r#"{"chain": {"family": "inet", "table": "extsecurity", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": -10, "policy": "accept"}}"#.to_string());
        for handle in 0..rules {
            objects.push(format!(
                r#"{{"rule": {{"family": "inet", "table": "extsecurity", "chain": "input", "handle": {handle}, "expr": [{{"drop": null}}]}}}}"#
            ));
        }
        format!(r#"{{"nftables": [{}]}}"#, objects.join(", ")).into_bytes()
    }

    #[test]
    fn a_table_is_whole_with_its_four_sets_its_chain_and_four_rules() {
        assert!(listing_is_whole(&listing(&SETS, 4), 0));
        // `nft flush chain inet extsecurity input`: the sets stay, nothing is dropped.
        assert!(!listing_is_whole(&listing(&SETS, 0), 0));
        assert!(!listing_is_whole(&listing(&["v4", "v6", "n4"], 4), 0));
        assert!(!listing_is_whole(b"not json", 0));
        // With the edge on: the jump and the edge chain's rules too.
        assert!(
            !listing_is_whole(&listing(&SETS, 4), 5),
            "no jump, no edge rules"
        );
        let mut with_edge = String::from_utf8(listing(&SETS, 5)).unwrap();
        let edge_rule = r#"{"rule": {"family": "inet", "table": "extsecurity", "chain": "edge", "handle": 9, "expr": []}}"#;
        with_edge = with_edge.replacen(
            r#"{"nftables": ["#,
            &format!(r#"{{"nftables": [{}, "#, [edge_rule; 5].join(", ")),
            1,
        );
        assert!(listing_is_whole(with_edge.as_bytes(), 5), "{with_edge}");
        assert!(!listing_is_whole(with_edge.as_bytes(), 6));
    }

    #[test]
    fn a_claimed_table_is_left_to_its_daemon() {
        let table = format!("claim-test-{}", std::process::id());
        let first = claim(&table).unwrap();
        assert!(first.is_some());
        assert!(claim(&table).unwrap().is_none(), "held by the first");
        assert!(matches!(remove(&table), Err(NftError::InUse(_))));
        drop(first);
        assert!(claim(&table).unwrap().is_some(), "free once dropped");
    }

    #[test]
    fn durations_by_hand() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("4h", 14_400),
            ("2d", 172_800),
            ("1h30m", 5400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for bad in ["", "4", "h", "4x", "0s", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_comment_cannot_break_out_of_nfts_quotes() {
        assert_eq!(
            nft_comment("x\" } ; flush ruleset \\ \n"),
            "x } ; flush ruleset  "
        );
        assert_eq!(shown(&"203.0.113.5/32".parse().unwrap()), "203.0.113.5");
        assert_eq!(shown(&"203.0.113.0/24".parse().unwrap()), "203.0.113.0/24");
    }

    fn layout(ports: &[u16]) -> Layout<'_> {
        Layout {
            table: "extsecurity",
            ports,
            max_elements: 65_536,
            edge: None,
        }
    }

    #[test]
    fn the_edge_jumps_on_the_ports_passes_trusted_and_limits_each_source() {
        let pass: Vec<ipnet::IpNet> = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let edge = Edge {
            rate_limit: 50,
            rate_burst: 100,
            dry_run: false,
            pass: &pass,
            feeds: false,
            countries: false,
        };
        let r = ruleset(Layout {
            edge: Some(edge),
            ..layout(&[5060])
        });
        for line in [
            "flush chain inet extsecurity edge\n",
            "flush set inet extsecurity pass4\n",
            "add element inet extsecurity pass4 { 192.0.2.0/24 }\n",
            "add element inet extsecurity pass6 { 2001:db8::/32 }\n",
            "add rule inet extsecurity input meta l4proto { tcp, udp } th dport { 5060 } jump edge\n",
            "add rule inet extsecurity edge iif \"lo\" return\n",
            "add rule inet extsecurity edge update @rate4 { ip saddr limit rate over 50/second burst 100 packets } counter drop comment \"rate\"\n",
            "add rule inet extsecurity edge update @rate6 { ip6 saddr limit rate over 50/second burst 100 packets } counter drop comment \"rate\"\n",
        ] {
            assert!(r.contains(line), "{line} not in {r}");
        }
        let jump = r.find("jump edge").unwrap();
        assert!(r.find("@n6").unwrap() < jump, "the bans come first");
        let dry = ruleset(Layout {
            edge: Some(Edge {
                dry_run: true,
                ..edge
            }),
            ..layout(&[5060])
        });
        assert!(
            dry.contains("packets } counter comment \"rate\"\n"),
            "{dry}"
        );
        assert!(!dry.contains("counter drop comment"), "{dry}");
        let off = ruleset(layout(&[5060]));
        assert!(off.contains("flush chain inet extsecurity edge\n") && !off.contains("jump edge"));
        assert!(!r.contains("@feed4") && !r.contains("@country4"), "{r}");
        assert_eq!(
            edge_rules_expected(Layout {
                edge: Some(edge),
                ..layout(&[5060])
            }),
            7
        );
    }

    #[test]
    fn feeds_and_countries_drop_after_the_known_and_before_the_rate() {
        let edge = Edge {
            rate_limit: 50,
            rate_burst: 100,
            dry_run: false,
            pass: &[],
            feeds: true,
            countries: true,
        };
        let with = Layout {
            edge: Some(edge),
            ..layout(&[5060])
        };
        let r = ruleset(with);
        let at = |text: &str| r.find(text).unwrap_or_else(|| panic!("{text} not in {r}"));
        assert!(
            at("ip saddr @known4 return") < at("ip saddr @feed4 counter drop comment \"feed\"")
        );
        assert!(
            at("ip6 saddr @feed6 counter drop")
                < at("ip saddr @country4 counter drop comment \"country\"")
        );
        assert!(at("ip6 saddr @country6 counter drop") < at("@rate4"));
        // Every set a rule names is declared (nft refuses the whole ruleset otherwise).
        for (i, _) in r.match_indices(" @") {
            let name: String = r[i + 2..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            assert!(
                r.contains(&format!("set {name} {{")),
                "@{name} is not declared: {r}"
            );
        }
        // Their contents are not the ruleset's: a reload keeps them.
        assert!(!r.contains("flush set inet extsecurity feed4"));
        assert_eq!(edge_rules_expected(with), 15);
        let dry = ruleset(Layout {
            edge: Some(Edge {
                dry_run: true,
                ..edge
            }),
            ..layout(&[5060])
        });
        assert!(
            dry.contains("@feed4 counter comment \"feed\"") && !dry.contains("drop comment"),
            "{dry}"
        );
    }

    #[test]
    fn a_fill_replaces_both_families_in_one_script() {
        let nets = crate::edge::Networks::of(
            ["81.2.69.0/24", "81.2.70.7/32", "2a0d:5600::/29"]
                .iter()
                .map(|n| n.parse().unwrap()),
        );
        assert_eq!(
            fill_script("t", EdgeSet::Feed, &nets),
            "flush set inet t feed4\nflush set inet t feed6\nflush set inet t feed4_one\nflush set inet t feed6_one\n\
             add element inet t feed4_one { 81.2.70.7 }\n\
             add element inet t feed4 { 81.2.69.0-81.2.69.255 }\n\
             add element inet t feed6 { 2a0d:5600::-2a0d:5607:ffff:ffff:ffff:ffff:ffff:ffff }\n"
        );
        let many = crate::edge::Networks::of((0..5000u32).map(|i| {
            ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0x5100_0000 + i * 2,
            )))
        }));
        let script = fill_script("t", EdgeSet::Country, &many);
        assert_eq!(
            script
                .lines()
                .filter(|l| l.starts_with("add element inet t country4_one"))
                .count(),
            2
        );
        assert_eq!(script.matches(", ").count(), 5000 - 2);
    }

    #[test]
    fn the_rate_rules_counters_are_summed() {
        let json = br#"{"nftables": [{"metainfo": {}}, {"chain": {"name": "edge"}},
            {"rule": {"chain": "edge", "expr": [{"match": {}}, {"counter": {"packets": 7, "bytes": 700}}, {"drop": null}], "comment": "rate"}},
            {"rule": {"chain": "edge", "expr": [{"counter": {"packets": 5, "bytes": 500}}], "comment": "rate"}},
            {"rule": {"chain": "edge", "expr": [{"counter": {"packets": 99, "bytes": 1}}]}}]}"#;
        assert_eq!(counted(json, RATE_RULE), 12);
        assert_eq!(counted(b"{", RATE_RULE), 0);
    }

    #[test]
    fn the_ruleset_drops_set_members_on_the_configured_ports_only() {
        let r = ruleset(layout(&[5060, 5061]));
        assert!(
            r.contains("set v4 { type ipv4_addr; flags timeout; size 65536; }"),
            "{r}"
        );
        assert!(r.contains("flush chain inet extsecurity input\n"));
        assert!(r.contains(
            "add rule inet extsecurity input ip saddr @v4 meta l4proto { tcp, udp } th dport { 5060, 5061 } counter drop"
        ), "{r}");
        for set in SETS {
            let flush = format!("flush set inet extsecurity {set}\n");
            assert!(!r.contains(&flush), "bans survive a restart: {r}");
        }
        let every = ruleset(layout(&[]));
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
                net: "203.0.113.5/32".parse().unwrap(),
                reason: "auth_bruteforce".into(),
                expires: Duration::from_secs(86_390),
            }]
        );
        // A range set (`ban CIDR`), as nft 1.0.6 lists an interval element.
        let json = br#"{"nftables": [{"set": {"name": "n4", "elem": [{"elem": {"val": {"prefix": {"addr": "203.0.113.0", "len": 24}}, "timeout": 3600, "expires": 3500, "comment": "manual: x"}}]}}]}"#;
        let banned = parse_listing(json).unwrap();
        assert_eq!(shown(&banned[0].net), "203.0.113.0/24");
        assert!(parse_listing(b"{").is_err());
        assert_eq!(parse_listing(br#"{"nftables": []}"#).unwrap(), []);
    }

    #[test]
    fn own_addresses_include_loopback() {
        assert!(own_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
