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

/// [`NEVER_DROPPED`] parsed.
pub fn never_dropped() -> Vec<IpNet> {
    NEVER_DROPPED
        .iter()
        .map(|n| n.parse().expect("a valid network"))
        .collect()
}

/// Whether two networks share an address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Networks by family, each list merged to the fewest CIDR blocks: what an interval
/// set is filled with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    pub v4: Vec<ipnet::Ipv4Net>,
    pub v6: Vec<ipnet::Ipv6Net>,
}

impl Networks {
    pub fn of(nets: impl IntoIterator<Item = IpNet>) -> Networks {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => v4.push(n),
                IpNet::V6(n) => v6.push(n),
            }
        }
        Networks {
            v4: ipnet::Ipv4Net::aggregate(&v4),
            v6: ipnet::Ipv6Net::aggregate(&v6),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` is in one of them.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        match ip {
            std::net::IpAddr::V4(a) => self.v4.iter().any(|n| n.contains(&a)),
            std::net::IpAddr::V6(a) => self.v6.iter().any(|n| n.contains(&a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_merge_and_say_what_they_hold() {
        let nets = Networks::of(
            [
                "192.0.2.0/25",
                "192.0.2.128/25",
                "192.0.2.7/32",
                "2001:db8::1/128",
            ]
            .iter()
            .map(|n| n.parse().unwrap()),
        );
        assert_eq!(nets.v4, ["192.0.2.0/24".parse().unwrap()]);
        assert_eq!(nets.len(), 2);
        assert!(nets.contains("192.0.2.200".parse().unwrap()));
        assert!(!nets.contains("192.0.3.1".parse().unwrap()));
        assert!(nets.contains("2001:db8::1".parse().unwrap()));
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
