//! The edge's lists (doc/edge.md): which addresses the kernel drops before Asterisk sees
//! them, because a blocklist feed names them ([`feed`]) or a country database places
//! them in a refused country ([`country`]). Pure: bytes in, networks out; the daemon
//! fetches, caches and writes them into the table's interval sets.

pub mod country;
pub mod feed;
pub mod fetch;
pub mod lookup;
pub mod what_if;

use ipnet::IpNet;

/// Networks no source on the internet can have, and a PBX's own LAN may: private,
/// shared (CGNAT), loopback, link-local, multicast, reserved, unique-local. A feed or a
/// database entry that touches one is never dropped: a broken list must not cut the
/// office's phones off. (Documentation ranges are not among them: nobody's LAN uses
/// them, and a list naming them harms nothing.)
pub const NEVER_DROPPED: [&str; 15] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/8",
    "64:ff9b::/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "2002::/16",
];

/// [`NEVER_DROPPED`] parsed, once: it is asked per address by lookups and the puller.
pub fn never_dropped() -> &'static [IpNet] {
    static PARSED: std::sync::LazyLock<Vec<IpNet>> = std::sync::LazyLock::new(|| {
        NEVER_DROPPED
            .iter()
            .map(|n| n.parse().expect("a valid network"))
            .collect()
    });
    &PARSED
}

/// Whether two networks share an address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Addresses by family as merged, sorted, inclusive ranges: what the edge's sets are
/// filled with (a range as an interval element, a single address in a hash set, which
/// the kernel loads several times faster), and what a lookup searches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    pub v4: Vec<(u32, u32)>,
    pub v6: Vec<(u128, u128)>,
}

impl Networks {
    pub fn of(nets: impl IntoIterator<Item = IpNet>) -> Networks {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Networks {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// Every address of both families that none of these holds.
    pub fn complement(&self) -> Networks {
        Networks {
            v4: gaps(&self.v4, u32::MAX),
            v6: gaps(&self.v6, u128::MAX),
        }
    }

    /// These and `other`'s, merged.
    pub fn union(&self, other: &Networks) -> Networks {
        Networks {
            v4: merged(self.v4.iter().chain(&other.v4).copied().collect()),
            v6: merged(self.v6.iter().chain(&other.v6).copied().collect()),
        }
    }

    /// How many ranges (a single address counts as one).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` is in one of them.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        match ip {
            std::net::IpAddr::V4(a) => within(&self.v4, u32::from(a)),
            std::net::IpAddr::V6(a) => within(&self.v6, u128::from(a)),
        }
    }
}

/// Sorted, with overlapping and adjacent ranges joined.
fn merged<T: Copy + Ord + num_step::Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if last.1 >= lo || last.1.next() == Some(lo) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The ranges between `ranges` (merged) from zero to `max`.
fn gaps<T: Copy + Ord + num_step::Step>(ranges: &[(T, T)], max: T) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut next = Some(T::ZERO);
    for &(lo, hi) in ranges {
        if let Some(from) = next
            && from < lo
        {
            out.push((from, lo.prev().expect("above from")));
        }
        next = hi.next();
    }
    if let Some(from) = next {
        out.push((from, max));
    }
    out
}

fn within<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.1 < x);
    ranges.get(i).is_some_and(|r| r.0 <= x)
}

/// The integer steps the ranges need, for both address widths.
mod num_step {
    pub trait Step: Sized {
        const ZERO: Self;
        fn next(self) -> Option<Self>;
        fn prev(self) -> Option<Self>;
    }
    macro_rules! step {
        ($t:ty) => {
            impl Step for $t {
                const ZERO: Self = 0;
                fn next(self) -> Option<Self> {
                    self.checked_add(1)
                }
                fn prev(self) -> Option<Self> {
                    self.checked_sub(1)
                }
            }
        };
    }
    step!(u32);
    step!(u128);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: &str) -> u32 {
        u32::from(a.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn networks_merge_and_say_what_they_hold() {
        let nets = Networks::of(
            [
                "192.0.2.0/25",
                "192.0.2.128/25",
                "192.0.2.7/32",
                "192.0.3.0/24",
                "2001:db8::1/128",
            ]
            .iter()
            .map(|n| n.parse().unwrap()),
        );
        assert_eq!(
            nets.v4,
            [(v4("192.0.2.0"), v4("192.0.3.255"))],
            "adjacent ranges join"
        );
        assert_eq!(nets.len(), 2);
        assert!(nets.contains("192.0.2.200".parse().unwrap()));
        assert!(!nets.contains("192.0.1.255".parse().unwrap()));
        assert!(!nets.contains("192.0.4.0".parse().unwrap()));
        assert!(nets.contains("2001:db8::1".parse().unwrap()));
        assert!(!nets.contains("2001:db8::2".parse().unwrap()));
    }

    #[test]
    fn the_complement_is_every_other_address() {
        let nets = Networks::of(
            ["0.0.0.0/8", "10.0.0.0/8", "255.255.255.255/32", "::/1"]
                .iter()
                .map(|n| n.parse().unwrap()),
        );
        let rest = nets.complement();
        assert_eq!(
            rest.v4,
            [
                (v4("1.0.0.0"), v4("9.255.255.255")),
                (v4("11.0.0.0"), v4("255.255.255.254"))
            ]
        );
        assert_eq!(rest.v6, [(1u128 << 127, u128::MAX)]);
        assert_eq!(Networks::default().complement().v4, [(0, u32::MAX)]);
        assert!(
            rest.union(&nets).complement().is_empty(),
            "together they are everything"
        );
        for a in [
            "0.1.2.3",
            "10.9.9.9",
            "255.255.255.255",
            "11.0.0.0",
            "9.255.255.255",
        ] {
            let ip = a.parse().unwrap();
            assert_ne!(nets.contains(ip), rest.contains(ip), "{a}");
        }
    }

    #[test]
    fn the_lan_is_never_dropped() {
        let never = never_dropped();
        for lan in ["192.168.1.0/24", "10.1.2.3/32", "fd00::/64", "0.0.0.0/0"] {
            let lan: IpNet = lan.parse().unwrap();
            assert!(never.iter().any(|n| overlap(n, &lan)), "{lan}");
        }
        let public: IpNet = "81.2.69.0/24".parse().unwrap();
        assert!(!never.iter().any(|n| overlap(n, &public)));
    }
}
