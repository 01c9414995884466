//! `[nftables]`: bans the daemon puts into the kernel itself.

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

use super::Invalid;

/// Where and how long the daemon bans (doc/kernel-bans.md, "Kernel bans: nftables from the daemon").
#[derive(Debug, Clone, PartialEq)]
pub struct NftablesConfig {
    /// Destination ports dropped for a banned source, UDP and TCP; empty: every port.
    pub ports: Vec<u16>,
    /// Where `ports` come from: the setting, or Asterisk's transports when it is unset
    /// ([`crate::sip_ports`]).
    pub ports_from: String,
    /// How long a ban lasts (the jail's bantime).
    pub ban: Duration,
    /// The `inet` table of our own; nothing else is touched.
    pub table: String,
    /// The most addresses each set (IPv4, IPv6) holds; past it new bans fail, counted.
    pub max_elements: u32,
    /// Returning addresses banned longer each time; `None`: every ban is `ban`.
    pub increment: Option<crate::nftables::history::Increment>,
    /// Where the bans' history is kept across restarts.
    pub state_file: std::path::PathBuf,
    /// `[edge]`, whose rules live in this table.
    pub edge: Option<super::EdgeConfig>,
}

impl NftablesConfig {
    /// What the table is made of, for `nftables::setup`.
    pub fn layout(&self) -> crate::nftables::Layout<'_> {
        crate::nftables::Layout {
            table: &self.table,
            ports: &self.ports,
            max_elements: self.max_elements,
            edge: self.edge.as_ref().map(|e| crate::nftables::Edge {
                rate_limit: e.rate_limit,
                rate_burst: e.rate_burst,
                dry_run: e.dry_run,
                pass: &e.pass,
                feeds: !e.feeds.is_empty(),
                countries: e.countries.is_some(),
            }),
        }
    }
}

/// The `[nftables]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNftables {
    enabled: bool,
    ports: Option<Vec<u16>>,
    ban_seconds: Spanned<u64>,
    table: Spanned<String>,
    max_elements: Spanned<u32>,
    ban_increment: bool,
    ban_factor: Spanned<f64>,
    ban_max_seconds: Spanned<u64>,
    ban_history_days: Spanned<u64>,
    state_file: Spanned<String>,
}

impl Default for RawNftables {
    fn default() -> RawNftables {
        RawNftables {
            enabled: false,
            ports: None,
            ban_seconds: Spanned::new(0..0, 86_400),
            table: Spanned::new(0..0, "extsecurity".into()),
            max_elements: Spanned::new(0..0, 65_536),
            ban_increment: true,
            ban_factor: Spanned::new(0..0, 2.0),
            ban_max_seconds: Spanned::new(0..0, 7 * 86_400),
            ban_history_days: Spanned::new(0..0, 30),
            state_file: Spanned::new(0..0, "/var/lib/extsecurity/bans.state".into()),
        }
    }
}

impl RawNftables {
    /// The table's name, whether the bans are on or not: `serve` removes it at start
    /// when they are off.
    pub(super) fn table(&self) -> String {
        self.table.get_ref().clone()
    }

    /// `None` when off.
    pub(super) fn validate(self) -> Result<Option<NftablesConfig>, Invalid> {
        if !self.enabled {
            return Ok(None);
        }
        let ban = *self.ban_seconds.get_ref();
        if ban == 0 {
            return Err((
                self.ban_seconds.span(),
                "nftables.ban_seconds must be at least 1".into(),
            ));
        }
        let table = self.table.get_ref();
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if table.is_empty() || table.len() > 64 || !table.chars().all(name_ok) {
            return Err((
                self.table.span(),
                "nftables.table must be 1-64 characters of A-Z a-z 0-9 _ -".into(),
            ));
        }
        if *self.max_elements.get_ref() == 0 {
            return Err((
                self.max_elements.span(),
                "nftables.max_elements must be at least 1".into(),
            ));
        }
        let factor = *self.ban_factor.get_ref();
        if !(1.0..=100.0).contains(&factor) {
            return Err((
                self.ban_factor.span(),
                "nftables.ban_factor must be between 1 and 100 (1: every ban as long as ban_seconds)".into(),
            ));
        }
        let mut max = *self.ban_max_seconds.get_ref();
        if self.ban_max_seconds.span().is_empty() {
            max = max.max(ban); // Not set: a week, or ban_seconds if longer.
        }
        if max < ban {
            return Err((
                self.ban_max_seconds.span(),
                format!("nftables.ban_max_seconds ({max}) must be at least ban_seconds ({ban})"),
            ));
        }
        let state_file = std::path::PathBuf::from(self.state_file.get_ref());
        if !state_file.is_absolute() || state_file.file_name().is_none() {
            return Err((
                self.state_file.span(),
                "nftables.state_file must be an absolute file path such as /var/lib/extsecurity/bans.state".into(),
            ));
        }
        let increment = self
            .ban_increment
            .then(|| crate::nftables::history::Increment {
                factor,
                max: Duration::from_secs(max),
                history: Duration::from_secs(
                    self.ban_history_days.get_ref().saturating_mul(86_400),
                ),
            });
        let (mut ports, ports_from) = match self.ports {
            Some(ports) => (ports, "nftables.ports".to_string()),
            None => {
                let found =
                    crate::sip_ports::discover(std::path::Path::new(crate::dialplan::CONFIG_DIR));
                (found.ports, found.from)
            }
        };
        ports.sort_unstable();
        ports.dedup();
        Ok(Some(NftablesConfig {
            ports,
            ports_from,
            ban: Duration::from_secs(ban),
            table: self.table.into_inner(),
            max_elements: self.max_elements.into_inner(),
            increment,
            state_file,
            edge: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;

    #[test]
    fn the_nftables_table_is_off_unless_enabled_and_validated() {
        assert_eq!(parse("").unwrap().nftables, None);
        assert_eq!(
            parse("[nftables]\nports = [5060]\n").unwrap().nftables,
            None
        );
        let n = parse("[nftables]\nenabled = true\nports = [5061, 5060, 5060]\n")
            .unwrap()
            .nftables
            .unwrap();
        assert_eq!(n.ports, [5060, 5061]);
        assert_eq!((n.table.as_str(), n.ban.as_secs()), ("extsecurity", 86_400));
        for (text, error) in [
            (
                "[nftables]\nenabled = true\nban_seconds = 0\n",
                "t.toml:3:15: nftables.ban_seconds must be at least 1",
            ),
            (
                "[nftables]\nenabled = true\ntable = 'a b'\n",
                "t.toml:3:9: nftables.table must be 1-64 characters",
            ),
            ("[nftables]\nenabled = true\nports = [70000]\n", "t.toml:3:"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
    }
}
