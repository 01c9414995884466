//! A blocklist feed's body read: plain text, one address or network a line, comments
//! after `#` or `;` — the formats of VoIPBL, Spamhaus DROP, blocklist.de and FireHOL's
//! netsets. A body that is no such list (an HTML error page, an empty or oversized
//! answer, lines of something else) is refused whole, so the last good copy stays in
//! force; entries that would drop the LAN, this host or a trusted network are left out.

use ipnet::IpNet;
use std::net::IpAddr;

use super::{Networks, overlap};

/// The most a feed may weigh: FireHOL's biggest netsets are a few MiB, and a body of
/// hundreds is a misdirected download.
pub const MAX_BYTES: usize = 32 << 20;

/// Why a body is not taken as a list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("an HTML page, not a list (an error or login page?)")]
    Html,
    #[error("empty: no address in it")]
    Empty,
    #[error("{0} bytes, more than the {MAX_BYTES} a list may be")]
    TooBig(usize),
    #[error("not text")]
    NotText,
    #[error("{bad} of {lines} lines are no address or network (line {first}: {text:?})")]
    NotAList {
        bad: usize,
        lines: usize,
        first: usize,
        text: String,
    },
}

/// A list taken: what goes into the sets, and what was left out and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub networks: Networks,
    /// Entries as read, before merging.
    pub entries: usize,
    /// Entries that touch the LAN, this host or a trusted network, left out.
    pub left_out: Vec<IpNet>,
}

/// Reads `body`; `never` are the networks no entry may touch (this host, trusted
/// networks, [`super::never_dropped`]).
pub fn read(body: &[u8], never: &[IpNet]) -> Result<List, Refused> {
    if body.len() > MAX_BYTES {
        return Err(Refused::TooBig(body.len()));
    }
    let text = std::str::from_utf8(body).map_err(|_| Refused::NotText)?;
    if text.trim_start().starts_with('<') {
        return Err(Refused::Html);
    }
    let (mut nets, mut left_out) = (Vec::new(), Vec::new());
    let (mut lines, mut bad, mut first_bad) = (0, 0, None);
    for (n, line) in text.lines().enumerate() {
        let entry = line.split(['#', ';']).next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        lines += 1;
        match entry.split_whitespace().next().and_then(network) {
            Some(net) if never.iter().any(|n| overlap(n, &net)) => left_out.push(net),
            Some(net) => nets.push(net),
            None => {
                bad += 1;
                first_bad.get_or_insert((n + 1, entry.to_string()));
            }
        }
    }
    // One odd line in a big list is a typo; more than one in a hundred is no list.
    if let Some((first, text)) = first_bad.filter(|_| bad * 100 > lines) {
        return Err(Refused::NotAList {
            bad,
            lines,
            first,
            text: text.chars().take(60).collect(),
        });
    }
    if nets.is_empty() && left_out.is_empty() {
        return Err(Refused::Empty);
    }
    Ok(List {
        entries: nets.len(),
        networks: Networks::of(nets),
        left_out,
    })
}

/// `1.2.3.4`, `1.2.3.0/24` (host bits dropped), `2001:db8::/32`.
fn network(text: &str) -> Option<IpNet> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    text.parse::<IpNet>().ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Vec<IpNet> {
        let mut never = super::super::never_dropped().to_vec();
        never.push("198.51.100.0/24".parse().unwrap()); // trusted
        never
    }

    #[test]
    fn the_formats_of_the_known_lists_are_read() {
        // Spamhaus DROP, FireHOL netset, blocklist.de, VoIPBL (with a /32).
        let body = b"; Spamhaus DROP List 2026/12/07\n; Expires: Mon\n\
            1.10.16.0/20 ; SBL256894\n\
            # FireHOL\n#\n2.57.122.0/24\n\
            5.188.10.179\n\
            45.95.147.0/32\n\
            2a0d:5600::/29 ; SBL1\n\
            \n   \n";
        let list = read(body, &never()).unwrap();
        assert_eq!(list.entries, 5);
        assert!(list.networks.contains("1.10.31.255".parse().unwrap()));
        assert!(list.networks.contains("5.188.10.179".parse().unwrap()));
        assert!(!list.networks.contains("5.188.10.178".parse().unwrap()));
        assert!(list.networks.contains("2a0d:5600::1".parse().unwrap()));
        assert!(list.left_out.is_empty());
    }

    #[test]
    fn what_is_no_list_is_refused_whole() {
        let html = b"\n  <!DOCTYPE html><html><body>503 Service Unavailable</body></html>";
        assert_eq!(read(html, &never()), Err(Refused::Html));
        assert_eq!(read(b"# nothing today\n\n", &never()), Err(Refused::Empty));
        assert_eq!(read(b"", &never()), Err(Refused::Empty));
        assert_eq!(read(&[0xff, 0xfe, 0x31], &never()), Err(Refused::NotText));
        let big = vec![b'#'; MAX_BYTES + 1];
        assert_eq!(read(&big, &never()), Err(Refused::TooBig(MAX_BYTES + 1)));
        let json = b"{\"ips\": [\n\"1.2.3.4\",\n\"5.6.7.8\"\n]}\n";
        match read(json, &never()) {
            Err(Refused::NotAList {
                bad: 4,
                lines: 4,
                first: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_typo_in_a_long_list_is_skipped() {
        let mut body: String = (0..200)
            .map(|i| format!("81.2.{}.{}\n", i / 250, i % 250))
            .collect();
        body.push_str("81.2.300.1\n");
        let list = read(body.as_bytes(), &never()).unwrap();
        assert_eq!(list.entries, 200);
        body.push_str("garbage\nmore garbage\n");
        assert!(matches!(
            read(body.as_bytes(), &never()),
            Err(Refused::NotAList { bad: 3, .. })
        ));
    }

    #[test]
    fn the_lan_this_host_and_trusted_networks_are_left_out() {
        let body = b"10.0.0.0/8\n192.168.1.20\n0.0.0.0/0\n198.51.100.44\n198.51.0.0/16\n81.2.69.160\nfe80::1\n";
        let list = read(body, &never()).unwrap();
        assert_eq!(list.entries, 1, "{list:?}");
        assert_eq!(list.left_out.len(), 6);
        assert!(list.networks.contains("81.2.69.160".parse().unwrap()));
        // A list of nothing but those is still a list, and drops nothing.
        let only = read(b"10.1.1.1\n", &never()).unwrap();
        assert!(only.networks.is_empty());
    }
}
