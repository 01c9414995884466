//! `[edge]`: what the kernel drops before Asterisk sees it, in the daemon's own table on
//! the `[nftables]` ports (doc/edge.md): countries, blocklist feeds, a per-source rate
//! limit, and a dry run that counts what it would drop.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
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
    /// Sources the edge never drops: the trusted networks, the AMI and LAPI peers (this
    /// host always passes).
    pub pass: Vec<ipnet::IpNet>,
    /// Which countries' addresses are dropped, and from which database.
    pub countries: Option<Countries>,
    /// Where `edge update` fetches the country database (`{year}`, `{month}` filled in).
    pub country_url: String,
    /// Blocklists: plain text, one address or network a line.
    pub feeds: Vec<String>,
    pub feed_refresh: Duration,
    /// Where the last good copy of each feed is kept, for restarts and outages.
    pub feed_dir: PathBuf,
}

/// `country_file` with `allow_countries` or `deny_countries`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countries {
    pub file: PathBuf,
    pub rule: CountryRule,
}

/// Either list, never both: an allow list says everything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountryRule {
    Allow(Vec<String>),
    Deny(Vec<String>),
}

impl CountryRule {
    /// Whether the edge drops an address the database puts in `country` (ISO 3166
    /// alpha-2, upper case).
    pub fn refuses(&self, country: &str) -> bool {
        match self {
            CountryRule::Allow(list) => !list.iter().any(|c| c == country),
            CountryRule::Deny(list) => list.iter().any(|c| c == country),
        }
    }
}

/// DB-IP's free country database (CC BY 4.0), published monthly.
pub const DEFAULT_COUNTRY_URL: &str =
    "https://download.db-ip.com/free/dbip-country-lite-{year}-{month}.mmdb.gz";
/// Where `edge update` writes it and the shipped file points.
pub const DEFAULT_COUNTRY_FILE: &str = "/var/lib/extsecurity/country.mmdb";

/// The `[edge]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEdge {
    enabled: Spanned<bool>,
    rate_limit: Spanned<u32>,
    rate_burst: Spanned<u32>,
    dry_run: bool,
    country_file: Option<Spanned<String>>,
    allow_countries: Option<Spanned<Vec<String>>>,
    deny_countries: Option<Spanned<Vec<String>>>,
    country_url: Spanned<String>,
    feeds: Spanned<Vec<String>>,
    feed_refresh_seconds: Spanned<u64>,
    feed_dir: Spanned<String>,
}

impl Default for RawEdge {
    fn default() -> RawEdge {
        RawEdge {
            enabled: Spanned::new(0..0, false),
            rate_limit: Spanned::new(0..0, 50),
            rate_burst: Spanned::new(0..0, 100),
            dry_run: false,
            country_file: None,
            allow_countries: None,
            deny_countries: None,
            country_url: Spanned::new(0..0, DEFAULT_COUNTRY_URL.into()),
            feeds: Spanned::new(0..0, Vec::new()),
            feed_refresh_seconds: Spanned::new(0..0, 3600),
            feed_dir: Spanned::new(0..0, "/var/lib/extsecurity/feeds".into()),
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
        let countries = self.countries()?;
        let feeds = self.feeds()?;
        let refresh = *self.feed_refresh_seconds.get_ref();
        if !(60..=7 * 86_400).contains(&refresh) {
            return Err((
                self.feed_refresh_seconds.span(),
                "edge.feed_refresh_seconds must be 60 to 604800 (feeds are published hourly at most)".into(),
            ));
        }
        let feed_dir = PathBuf::from(self.feed_dir.get_ref());
        if !feed_dir.is_absolute() {
            return Err((
                self.feed_dir.span(),
                format!(
                    "edge.feed_dir {:?} must be an absolute path",
                    self.feed_dir.get_ref()
                ),
            ));
        }
        Ok(Some(EdgeConfig {
            rate_limit: rate,
            rate_burst: burst,
            dry_run: self.dry_run,
            pass: trusted.to_vec(),
            countries,
            country_url: self.country_url.into_inner(),
            feeds,
            feed_refresh: Duration::from_secs(refresh),
            feed_dir,
        }))
    }

    /// The country rule: a file and exactly one list, codes of two letters.
    fn countries(&self) -> Result<Option<Countries>, Invalid> {
        let rule = match (&self.allow_countries, &self.deny_countries) {
            (Some(_), Some(deny)) => {
                return Err((
                    deny.span(),
                    "edge: allow_countries or deny_countries, not both (an allow list refuses every other country)".into(),
                ));
            }
            (Some(list), None) => CountryRule::Allow(country_codes(list, "allow_countries")?),
            (None, Some(list)) => CountryRule::Deny(country_codes(list, "deny_countries")?),
            (None, None) => return Ok(None),
        };
        let file = self
            .country_file
            .as_ref()
            .map(|f| f.get_ref().clone())
            .unwrap_or_else(|| DEFAULT_COUNTRY_FILE.into());
        let file = PathBuf::from(file);
        if !file.is_absolute() {
            let span = self.country_file.as_ref().map(|f| f.span()).unwrap_or(0..0);
            return Err((
                span,
                format!("edge.country_file {file:?} must be an absolute path"),
            ));
        }
        Ok(Some(Countries { file, rule }))
    }

    /// The feeds' addresses: `https://`, `http://` or `file://` (a list kept by hand).
    fn feeds(&self) -> Result<Vec<String>, Invalid> {
        let mut seen = std::collections::HashSet::new();
        for url in self.feeds.get_ref() {
            if !["https://", "http://", "file:///"]
                .iter()
                .any(|p| url.starts_with(p))
            {
                return Err((
                    self.feeds.span(),
                    format!("edge.feeds: {url:?} must start with https://, http:// or file:///"),
                ));
            }
            if !seen.insert(url) {
                return Err((
                    self.feeds.span(),
                    format!("edge.feeds: {url:?} is listed twice"),
                ));
            }
        }
        Ok(self.feeds.get_ref().clone())
    }
}

/// ISO 3166 alpha-2 codes as the databases write them; `uk` is `GB` there.
fn country_codes(list: &Spanned<Vec<String>>, key: &str) -> Result<Vec<String>, Invalid> {
    let mut codes = Vec::new();
    for code in list.get_ref() {
        let upper = code.to_ascii_uppercase();
        if upper.len() != 2 || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err((
                list.span(),
                format!(
                    "edge.{key}: {code:?} is not a two-letter country code (ISO 3166, such as \"FR\")"
                ),
            ));
        }
        if upper == "UK" {
            return Err((
                list.span(),
                format!("edge.{key}: the United Kingdom is \"GB\" in the databases, not \"UK\""),
            ));
        }
        codes.push(upper);
    }
    if codes.is_empty() {
        return Err((
            list.span(),
            format!("edge.{key} is empty: list at least one country, or leave it out"),
        ));
    }
    Ok(codes)
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

    #[test]
    fn countries_are_one_list_of_codes_and_feeds_are_urls() {
        let c = parse(&format!(
            "{NFT}[edge]\nenabled = true\nallow_countries = [\"fr\", \"BE\"]\nfeeds = [\"https://x.example/drop.txt\"]\n"
        ))
        .unwrap();
        let e = c.edge.unwrap();
        let countries = e.countries.unwrap();
        assert_eq!(countries.file.to_str(), Some(super::DEFAULT_COUNTRY_FILE));
        assert!(!countries.rule.refuses("FR") && countries.rule.refuses("CN"));
        assert_eq!(e.feeds, ["https://x.example/drop.txt"]);
        assert_eq!(e.feed_refresh.as_secs(), 3600);
        let deny = super::CountryRule::Deny(vec!["CN".into()]);
        assert!(deny.refuses("CN") && !deny.refuses("FR"));
        for (bad, says) in [
            (
                "allow_countries = [\"FR\"]\ndeny_countries = [\"CN\"]",
                "not both",
            ),
            (
                "deny_countries = [\"France\"]",
                "not a two-letter country code",
            ),
            ("deny_countries = [\"uk\"]", "\"GB\""),
            ("deny_countries = []", "is empty"),
            (
                "allow_countries = [\"FR\"]\ncountry_file = \"c.mmdb\"",
                "absolute",
            ),
            ("feeds = [\"ftp://x/y\"]", "must start with https://"),
            ("feeds = [\"https://x/y\", \"https://x/y\"]", "listed twice"),
            ("feed_refresh_seconds = 5", "60 to 604800"),
        ] {
            let e = parse(&format!("{NFT}[edge]\nenabled = true\n{bad}\n")).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
