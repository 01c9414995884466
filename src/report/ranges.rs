//! Folds the addresses of one range into a row for the range, for the report's table
//! of offenders: a botnet or a cloud provider sweeping from thousands of addresses of
//! one /16 is a line to read, not a page, while a lone scanner keeps its own row.
//!
//! Two levels, narrow first: [`MIN_MEMBERS`] addresses of one /24 (IPv6: /64, one
//! host's prefix) become the /24's row; then [`MIN_MEMBERS`] rows left in one /16
//! (IPv6: /48, one site) — addresses and /24s alike — become the /16's row. A /16
//! with one busy /24 and a stray address shows both, not a /16 that hides which.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Offender;

/// Rows of one range that make a row for the range.
pub const MIN_MEMBERS: usize = 4;

/// The rows for `offenders` (one per address), with crowded ranges folded.
pub fn group(offenders: Vec<Offender>) -> Vec<Offender> {
    let rows = fold(offenders, Level::Narrow);
    fold(rows, Level::Wide)
}

#[derive(Clone, Copy)]
enum Level {
    /// IPv4 /24, IPv6 /64.
    Narrow,
    /// IPv4 /16, IPv6 /48.
    Wide,
}

impl Level {
    fn prefix(self, ip: IpAddr) -> u8 {
        match (self, ip) {
            (Level::Narrow, IpAddr::V4(_)) => 24,
            (Level::Wide, IpAddr::V4(_)) => 16,
            (Level::Narrow, IpAddr::V6(_)) => 64,
            (Level::Wide, IpAddr::V6(_)) => 48,
        }
    }
}

/// One pass: rows whose range at `level` holds [`MIN_MEMBERS`] or more become one.
fn fold(rows: Vec<Offender>, level: Level) -> Vec<Offender> {
    let mut by_range: BTreeMap<String, Vec<Offender>> = BTreeMap::new();
    let mut out = Vec::new();
    for row in rows {
        match range_of(&row.ip, level) {
            Some(range) => by_range.entry(range).or_default().push(row),
            // Not an address (a line from a foreign writer): shown as it is.
            None => out.push(row),
        }
    }
    for (range, members) in by_range {
        if members.len() < MIN_MEMBERS {
            out.extend(members);
            continue;
        }
        let mut row = Offender {
            ip: range,
            ..Offender::default()
        };
        for member in &members {
            row.absorb(member);
        }
        out.push(row);
    }
    out
}

/// `203.0.113.0/24` for `203.0.113.7` or `203.0.113.0/25` at [`Level::Narrow`].
fn range_of(ip: &str, level: Level) -> Option<String> {
    let (addr, _) = ip.split_once('/').unwrap_or((ip, ""));
    let addr: IpAddr = addr.parse().ok()?;
    let prefix = level.prefix(addr);
    let net = match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & mask).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::from((u128::from(v6) & mask).to_be_bytes())
        }
    };
    Some(format!("{net}/{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ip: &str, alerts: u64, rule: &str, seen: &str) -> Offender {
        Offender {
            ip: ip.into(),
            alerts,
            first_seen: seen.into(),
            last_seen: seen.into(),
            rules: [(rule.to_string(), alerts)].into(),
            addresses: 1,
        }
    }

    fn by_ip(rows: &[Offender]) -> BTreeMap<&str, &Offender> {
        rows.iter().map(|r| (r.ip.as_str(), r)).collect()
    }

    #[test]
    fn a_flood_across_a_16_is_one_row_and_a_lone_scanner_keeps_its_own() {
        let mut all: Vec<Offender> = (0..3000u32)
            .map(|i| {
                let ip = format!("198.18.{}.{}", i / 200, i % 200 + 1);
                one(&ip, 2, "extension_scan", "2026-12-01 10:00:00.000")
            })
            .collect();
        all.push(one("192.0.2.9", 50, "call_rate", "2026-12-01 09:00:00.000"));
        let rows = group(all);
        let rows = by_ip(&rows);
        assert_eq!(rows.len(), 2, "{:?}", rows.keys());
        let flood = rows["198.18.0.0/16"];
        assert_eq!((flood.addresses, flood.alerts), (3000, 6000));
        assert_eq!(flood.rules["extension_scan"], 6000);
        assert_eq!(rows["192.0.2.9"].addresses, 1);
    }

    #[test]
    fn a_busy_24_beside_a_stray_address_of_its_16_shows_both() {
        let mut all: Vec<Offender> = (1..=6)
            .map(|i| one(&format!("203.0.113.{i}"), 1, "r", "2026-12-01 10:00:00.000"))
            .collect();
        all.push(one("203.0.7.1", 1, "r", "2026-12-01 08:00:00.000"));
        let rows = group(all);
        let rows = by_ip(&rows);
        assert_eq!(
            rows.keys().copied().collect::<Vec<_>>(),
            ["203.0.113.0/24", "203.0.7.1"]
        );
        assert_eq!(rows["203.0.113.0/24"].addresses, 6);
    }

    #[test]
    fn fewer_than_the_minimum_stay_addresses() {
        let all: Vec<Offender> = (1..MIN_MEMBERS)
            .map(|i| one(&format!("203.0.113.{i}"), 1, "r", "t"))
            .collect();
        let rows = group(all);
        assert_eq!(rows.len(), MIN_MEMBERS - 1);
        assert!(rows.iter().all(|r| r.addresses == 1 && !r.ip.contains('/')));
    }

    #[test]
    fn ipv6_hosts_fold_by_64_then_48_and_first_last_seen_span_the_members() {
        let all = vec![
            one("2001:db8:1:2::1", 1, "a", "2026-12-01 10:00:00.000"),
            one("2001:db8:1:2::2", 1, "a", "2026-12-01 11:00:00.000"),
            one("2001:db8:1:2::3", 1, "b", "2026-12-01 09:00:00.000"),
            one("2001:db8:1:2:ffff::4", 1, "b", "2026-12-01 12:00:00.000"),
            one("2001:db8:1:3::1", 1, "a", "2026-12-01 13:00:00.000"),
            one("2001:db8:1:4::1", 1, "a", "2026-12-01 10:30:00.000"),
            one("2001:db8:1:5::1", 1, "a", "2026-12-01 10:30:00.000"),
        ];
        let rows = group(all);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let site = &rows[0];
        assert_eq!(site.ip, "2001:db8:1::/48");
        assert_eq!((site.addresses, site.alerts), (7, 7));
        assert_eq!(site.first_seen, "2026-12-01 09:00:00.000");
        assert_eq!(site.last_seen, "2026-12-01 13:00:00.000");
        assert_eq!((site.rules["a"], site.rules["b"]), (5, 2));
    }

    #[test]
    fn text_that_is_no_address_is_kept_as_it_is() {
        let rows = group(vec![one("not-an-ip", 1, "r", "t")]);
        assert_eq!(rows[0].ip, "not-an-ip");
    }
}
