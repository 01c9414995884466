//! The peer IP: the one value in a request that the caller does not control.
//!
//! Asterisk reports the transport address in several shapes depending on the channel
//! driver: chan_sip's `CHANNEL(peerip)` gives `192.0.2.1`, chan_pjsip's
//! `CHANNEL(pjsip,remote_addr)` gives `192.0.2.1:5060` or `[2001:db8::1]:5060`
//! (design.md §3). All of them normalise to one [`IpAddr`], with IPv4-mapped IPv6
//! addresses turned back into IPv4 so that fail2ban bans the address the kernel sees.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Why a peer address was refused. We never alert on an address we cannot parse:
/// banning garbage would at best do nothing and at worst ban the wrong host.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerIpError {
    #[error("the peer IP is missing")]
    Missing,
    #[error("the peer IP is not an IPv4 or IPv6 address")]
    Unparseable,
    #[error("the peer IP {0} is not a unicast host address")]
    NotAHost(IpAddr),
}

/// Parses `addr`, `addr:port`, `[v6]` or `[v6]:port` into a normalised IP address.
pub fn parse_peer_ip(text: &str) -> Result<IpAddr, PeerIpError> {
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(PeerIpError::Missing);
    }
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| bracketed(text).ok_or(PeerIpError::Unparseable))?
        .to_canonical();
    if ip.is_unspecified() || ip.is_multicast() || is_v4_broadcast(ip) {
        return Err(PeerIpError::NotAHost(ip));
    }
    Ok(ip)
}

/// `[2001:db8::1]` without a port, which `SocketAddr` does not accept.
fn bracketed(text: &str) -> Option<IpAddr> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

fn is_v4_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        parse_peer_ip(text).unwrap().to_string()
    }

    #[test]
    fn chan_sip_peerip_is_a_bare_address() {
        assert_eq!(ok("192.0.2.10"), "192.0.2.10");
        assert_eq!(ok("2001:db8::5"), "2001:db8::5");
    }

    #[test]
    fn pjsip_remote_addr_carries_a_port() {
        assert_eq!(ok("127.0.0.1:5071"), "127.0.0.1");
        assert_eq!(ok("[2001:db8::5]:5060"), "2001:db8::5");
        assert_eq!(ok("[2001:db8::5]"), "2001:db8::5");
    }

    #[test]
    fn v4_mapped_v6_becomes_v4() {
        assert_eq!(ok("::ffff:198.51.100.7"), "198.51.100.7");
        assert_eq!(ok("[::ffff:198.51.100.7]:5060"), "198.51.100.7");
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        assert_eq!(parse_peer_ip(""), Err(PeerIpError::Missing));
        assert_eq!(parse_peer_ip("  "), Err(PeerIpError::Missing));
        for bad in [
            "unknown",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4 5.6.7.8",
            "1.2.3.4\n9.9.9.9",
            "[1.2.3.4]",
            "1.2.3.4:99999",
            "host.example:5060",
            "2001:db8::5:5060:1:2:3:4",
        ] {
            assert_eq!(parse_peer_ip(bad), Err(PeerIpError::Unparseable), "{bad:?}");
        }
    }

    #[test]
    fn addresses_that_name_no_single_host_are_refused() {
        for bad in ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1"] {
            assert!(
                matches!(parse_peer_ip(bad), Err(PeerIpError::NotAHost(_))),
                "{bad}"
            );
        }
    }
}
