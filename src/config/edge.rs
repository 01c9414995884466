//! `[edge]`: what the kernel drops before Asterisk sees it, in the daemon's own table on
//! the `[nftables]` ports (doc/edge.md). Today: a per-source rate limit, and a dry run
//! that counts what it would drop.

use serde::Deserialize;
use toml::Spanned;

use super::Invalid;
use super::nftables::NftablesConfig;

/// The validated `[edge]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Datagrams (and TCP segments) a second one source may send to the SIP ports;
    /// 0: no rate limit.
    pub rate_limit: u32,
    /// How many over the rate a source may send at once before the limit bites.
    pub rate_burst: u32,
    /// Count what each rule would drop; drop nothing.
    pub dry_run: bool,
    /// Sources the edge never drops: the trusted networks (this host always passes).
    pub pass: Vec<ipnet::IpNet>,
}

/// The `[edge]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEdge {
    enabled: Spanned<bool>,
    rate_limit: Spanned<u32>,
    rate_burst: Spanned<u32>,
    dry_run: bool,
}

impl Default for RawEdge {
    fn default() -> RawEdge {
        RawEdge {
            enabled: Spanned::new(0..0, false),
            rate_limit: Spanned::new(0..0, 50),
            rate_burst: Spanned::new(0..0, 100),
            dry_run: false,
        }
    }
}

/// The most a rate may be: nft's `limit rate` takes a 32-bit count, and a source sending
/// more than this a second is no phone.
const MAX_RATE: u32 = 1_000_000;

impl RawEdge {
    /// `None` when off. The edge lives in `[nftables]`'s table and drops only on its
    /// ports, so it needs both.
    pub(super) fn validate(
        self,
        nftables: Option<&NftablesConfig>,
        trusted: &[ipnet::IpNet],
    ) -> Result<Option<EdgeConfig>, Invalid> {
        if !*self.enabled.get_ref() {
            return Ok(None);
        }
        let Some(nft) = nftables else {
            return Err((
                self.enabled.span(),
                "edge.enabled needs [nftables] enabled = true: the edge drops in the daemon's own table".into(),
            ));
        };
        if nft.ports.is_empty() {
            return Err((
                self.enabled.span(),
                "edge.enabled needs nftables.ports (the SIP ports): a rate limit on every port would cut RTP and SSH".into(),
            ));
        }
        let (rate, burst) = (*self.rate_limit.get_ref(), *self.rate_burst.get_ref());
        if rate > MAX_RATE {
            return Err((
                self.rate_limit.span(),
                format!("edge.rate_limit must be at most {MAX_RATE} (0 turns it off)"),
            ));
        }
        if rate > 0 && !(1..=MAX_RATE).contains(&burst) {
            return Err((
                self.rate_burst.span(),
                format!("edge.rate_burst must be 1 to {MAX_RATE}"),
            ));
        }
        Ok(Some(EdgeConfig {
            rate_limit: rate,
            rate_burst: burst,
            dry_run: self.dry_run,
            pass: trusted.to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;

    const NFT: &str = "[nftables]\nenabled = true\nports = [5060]\n";

    #[test]
    fn the_edge_is_off_unless_enabled_and_then_limits_by_default() {
        assert_eq!(parse(NFT).unwrap().edge, None);
        let c = parse(&format!(
            "trusted_networks = [\"192.0.2.0/24\"]\n{NFT}[edge]\nenabled = true\n"
        ))
        .unwrap();
        let e = c.edge.unwrap();
        assert_eq!((e.rate_limit, e.rate_burst, e.dry_run), (50, 100, false));
        assert_eq!(e.pass, ["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]);
        assert_eq!(c.nftables.unwrap().edge, Some(e), "the table carries it");
    }

    #[test]
    fn the_edge_needs_the_table_and_its_ports() {
        let e = parse("[edge]\nenabled = true\n").unwrap_err();
        assert!(
            e.contains("edge.enabled needs [nftables] enabled = true"),
            "{e}"
        );
        let e =
            parse("[nftables]\nenabled = true\nports = []\n[edge]\nenabled = true\n").unwrap_err();
        assert!(e.contains("needs nftables.ports"), "{e}");
        let e = parse(&format!("{NFT}[edge]\nenabled = true\nrate_burst = 0\n")).unwrap_err();
        assert!(e.contains("edge.rate_burst must be 1 to"), "{e}");
        let e = parse(&format!("{NFT}[edge]\nenabled = true\nrate = 5\n")).unwrap_err();
        assert!(e.contains("rate"), "{e}");
    }
}
