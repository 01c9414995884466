//! What the edge does with one address, as the kernel's chain decides it, in words: for
//! `extsecurity edge lookup` and `bans --explain`.

use std::net::IpAddr;

use super::never_dropped;
use crate::config::EdgeConfig;

/// The edge's answer for an address, in the chain's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A trusted network, an AMI or LAPI peer, the LAN: never dropped.
    Passes(String),
    /// Named by these feeds.
    Listed(Vec<String>),
    /// In a country the rule refuses.
    Refused(String),
    /// In no country at all (unallocated space), with `allow_countries`.
    Unplaced,
    /// Nothing drops it but its rate.
    Limited,
}

/// What is known of the address: the country the database places it in and the
/// feeds whose kept copies name it.
pub struct Facts<'a> {
    pub country: Option<&'a str>,
    /// Whether the database was read (so that no country means placed nowhere).
    pub db_read: bool,
    pub feeds: &'a [String],
}

pub fn verdict(config: &EdgeConfig, ip: IpAddr, facts: &Facts<'_>) -> Verdict {
    if let Some(net) = config.pass.iter().find(|n| n.contains(&ip)) {
        return Verdict::Passes(format!(
            "{net} is trusted (trusted_networks, or the AMI/LAPI peer)"
        ));
    }
    if let Some(net) = never_dropped().iter().find(|n| n.contains(&ip)) {
        return Verdict::Passes(format!(
            "{net} is a private, loopback or reserved range, never dropped"
        ));
    }
    if !facts.feeds.is_empty() {
        return Verdict::Listed(facts.feeds.to_vec());
    }
    match (&config.countries, facts.country) {
        (Some(c), Some(country)) if c.rule.refuses(country) => {
            Verdict::Refused(country.to_string())
        }
        (Some(c), None)
            if facts.db_read && matches!(c.rule, crate::config::CountryRule::Allow(_)) =>
        {
            Verdict::Unplaced
        }
        _ => Verdict::Limited,
    }
}

/// The verdict as `edge lookup` prints it.
pub fn said(config: &EdgeConfig, verdict: &Verdict) -> String {
    let action = if config.dry_run {
        "WOULD BE DROPPED (dry_run: counted only)"
    } else {
        "DROPPED"
    };
    match verdict {
        Verdict::Passes(why) => format!("passes: {why}"),
        Verdict::Listed(feeds) => format!("{action}: listed by {}", feeds.join(", ")),
        Verdict::Refused(country) => format!(
            "{action}: country {country} is refused ({})",
            match config.countries.as_ref().map(|c| &c.rule) {
                Some(crate::config::CountryRule::Allow(list)) =>
                    format!("allow_countries = {list:?}"),
                Some(crate::config::CountryRule::Deny(list)) =>
                    format!("deny_countries = {list:?}"),
                None => String::new(),
            }
        ),
        Verdict::Unplaced => format!(
            "{action}: placed in no country (unallocated space), and allow_countries lets in only {}",
            match config.countries.as_ref().map(|c| &c.rule) {
                Some(crate::config::CountryRule::Allow(list)) => list.join(", "),
                _ => String::new(),
            }
        ),
        Verdict::Limited => match config.rate_limit {
            0 => "passes".into(),
            rate => format!(
                "passes, held to {rate} packets a second (burst {})",
                config.rate_burst
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EdgeConfig {
        let text = "trusted_networks = ['198.51.100.0/24']\n[nftables]\nenabled = true\nports = [5060]\n\
                    [edge]\nenabled = true\nallow_countries = ['FR']\nfeeds = ['https://x.example/l']\n";
        crate::config::Config::from_toml(text, std::path::Path::new("t.toml"))
            .unwrap()
            .edge
            .unwrap()
    }

    #[test]
    fn the_chains_order_is_kept() {
        let c = config();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let listed = ["https://x.example/l".to_string()];
        let facts = |country, feeds| Facts {
            country,
            db_read: true,
            feeds,
        };
        // Trusted first, whatever the lists say.
        assert!(matches!(
            verdict(&c, ip("198.51.100.44"), &facts(Some("CN"), &listed)),
            Verdict::Passes(_)
        ));
        assert!(matches!(
            verdict(&c, ip("192.168.1.20"), &facts(Some("CN"), &[])),
            Verdict::Passes(_)
        ));
        assert_eq!(
            verdict(&c, ip("81.2.69.1"), &facts(Some("FR"), &listed)),
            Verdict::Listed(listed.to_vec())
        );
        assert_eq!(
            verdict(&c, ip("81.2.69.1"), &facts(Some("CN"), &[])),
            Verdict::Refused("CN".into())
        );
        assert_eq!(
            verdict(&c, ip("81.2.69.1"), &facts(Some("FR"), &[])),
            Verdict::Limited
        );
        // Placed nowhere: unallocated space, which an allow list keeps out too — unless
        // the database could not be read.
        assert_eq!(
            verdict(&c, ip("81.2.69.1"), &facts(None, &[])),
            Verdict::Unplaced
        );
        let unread = Facts {
            country: None,
            db_read: false,
            feeds: &[],
        };
        assert_eq!(verdict(&c, ip("81.2.69.1"), &unread), Verdict::Limited);
        assert_eq!(
            said(&c, &Verdict::Refused("CN".into())),
            "DROPPED: country CN is refused (allow_countries = [\"FR\"])"
        );
        let dry = EdgeConfig { dry_run: true, ..c };
        assert!(said(&dry, &Verdict::Listed(listed.to_vec())).starts_with("WOULD BE DROPPED"));
    }
}
