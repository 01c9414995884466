//! This host's own addresses: the rules with memory never count them, the CrowdSec
//! pusher never pushes them.
//!
//! A call whose peer is this host came through a SIP proxy or SBC running beside
//! Asterisk (Kamailio, OpenSIPS, a local B2BUA) — or from the PBX itself. That address
//! stands for every caller behind the proxy: counting its calls as one caller's would
//! call a busy office an extension scan, and marking it a repeat offender after one
//! scanner's call would refuse every call that follows. So such a call is judged on
//! its own by the per-call rules, never counted or remembered; it can be banned by no
//! one anyway (fail2ban ignores its own host, the kernel bans and the CrowdSec pusher
//! skip it).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the addresses, once read, stand before they are read again (a DHCP lease
/// renewed, an address added).
const READ_AGAIN_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct ThisHost {
    read: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

impl ThisHost {
    /// Whether `ip` is loopback or one of this host's addresses.
    pub fn holds(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() {
            return true;
        }
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if read
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= READ_AGAIN_AFTER)
        {
            *read = Some((Instant::now(), crate::nftables::own_addresses()));
        }
        read.as_ref().is_some_and(|(_, own)| own.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_every_address_of_this_host_are_held_others_not() {
        let this = ThisHost::default();
        for ip in ["127.0.0.1", "127.3.4.5", "::1"] {
            assert!(this.holds(ip.parse().unwrap()), "{ip}");
        }
        let own = crate::nftables::own_addresses();
        assert!(own.iter().any(|ip| !ip.is_loopback()), "{own:?}");
        assert!(own.iter().all(|ip| this.holds(*ip)), "{own:?}");
        assert!(!this.holds("203.0.113.5".parse().unwrap()));
    }
}
