//! `[crowdsec]`: pushing alerts to a CrowdSec Local API.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Invalid, Secret, Shape, secret};
/// Where and as whom the daemon pushes its alerts to CrowdSec.
#[derive(Debug, Clone, PartialEq)]
pub struct CrowdsecConfig {
    /// The LAPI's base URL, without a trailing slash: `http://127.0.0.1:8080`.
    pub lapi_url: String,
    pub machine_id: String,
    /// Read at each login, by `serve` and `crowdsec-check` alone.
    pub password: Secret,
    /// How long the pushed ban lasts, as CrowdSec writes durations: `4h`, `90m`, `1h30m`.
    pub ban_duration: String,
    /// `ban_duration` as a length, to ban for what is left when an alert goes late.
    pub ban_length: Duration,
    /// Alerts sent in one POST at most.
    pub batch_size: usize,
    /// Where the pusher keeps its place in the alert log (the last alert the LAPI
    /// accepted), so that a restart resumes there.
    pub state_file: PathBuf,
    /// A bouncer's key (`cscli bouncers add`): with it, the daemon also pulls the
    /// LAPI's decisions into its own table, and shares the numbers toll fraud learns.
    pub bouncer_key: Option<Secret>,
    /// How often the decisions are pulled.
    pub pull: Duration,
}

/// The `[crowdsec]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCrowdsec {
    lapi_url: Spanned<String>,
    machine_id: Spanned<String>,
    password: Spanned<String>,
    password_file: Spanned<String>,
    ban_duration: Spanned<String>,
    /// Accepted and ignored: the alert log is the queue now, with no size to set.
    #[allow(dead_code)]
    queue_size: Option<usize>,
    batch_size: Spanned<usize>,
    state_file: Spanned<String>,
    bouncer_key: Spanned<String>,
    bouncer_key_file: Spanned<String>,
    pull_seconds: Spanned<u64>,
}

impl Default for RawCrowdsec {
    fn default() -> RawCrowdsec {
        let text = |s: &str| Spanned::new(0..0, s.to_string());
        RawCrowdsec {
            lapi_url: text("http://127.0.0.1:8080"),
            machine_id: text(""),
            password: text(""),
            password_file: text(""),
            ban_duration: text("4h"),
            queue_size: None,
            batch_size: Spanned::new(0..0, 100),
            state_file: text("/var/lib/extsecurity/crowdsec.position"),
            bouncer_key: text(""),
            bouncer_key_file: text(""),
            pull_seconds: Spanned::new(0..0, 10),
        }
    }
}

impl RawCrowdsec {
    pub(super) fn validate(table: Spanned<RawCrowdsec>) -> Result<CrowdsecConfig, Invalid> {
        let span = table.span();
        let raw = table.into_inner();
        let url = raw.lapi_url.get_ref().trim_end_matches('/');
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err((
                raw.lapi_url.span(),
                format!(
                    "crowdsec.lapi_url {:?} is not an http:// or https:// base URL such as http://127.0.0.1:8080",
                    raw.lapi_url.get_ref()
                ),
            ));
        }
        let machine = raw.machine_id.get_ref();
        if machine.is_empty() || machine.chars().any(|c| c.is_control() || c == '"') {
            let at = if machine.is_empty() {
                span.clone()
            } else {
                raw.machine_id.span()
            };
            return Err((
                at,
                "crowdsec.machine_id is required (the name given to cscli machines add)".into(),
            ));
        }
        let Some((password, _)) = secret(
            &raw.password,
            &raw.password_file,
            "crowdsec.password",
            Shape::Printable,
        )?
        else {
            return Err((
                span,
                "crowdsec.password or crowdsec.password_file is required".into(),
            ));
        };
        let Some(ban_seconds) = go_duration_seconds(raw.ban_duration.get_ref()) else {
            return Err((
                raw.ban_duration.span(),
                format!(
                    "crowdsec.ban_duration {:?} is not a duration such as 4h, 90m or 1h30m",
                    raw.ban_duration.get_ref()
                ),
            ));
        };
        if !(1..=1000).contains(raw.batch_size.get_ref()) {
            return Err((
                raw.batch_size.span(),
                "crowdsec.batch_size must be between 1 and 1000".into(),
            ));
        }
        let state_file = PathBuf::from(raw.state_file.get_ref());
        if !state_file.is_absolute() || state_file.file_name().is_none() {
            return Err((
                raw.state_file.span(),
                format!(
                    "crowdsec.state_file {:?} must be an absolute file path such as /var/lib/extsecurity/crowdsec.position",
                    raw.state_file.get_ref()
                ),
            ));
        }
        let bouncer_key = secret(
            &raw.bouncer_key,
            &raw.bouncer_key_file,
            "crowdsec.bouncer_key",
            Shape::Printable,
        )?
        .map(|(key, _)| key);
        if !(1..=3600).contains(raw.pull_seconds.get_ref()) {
            return Err((
                raw.pull_seconds.span(),
                "crowdsec.pull_seconds must be between 1 and 3600".into(),
            ));
        }
        Ok(CrowdsecConfig {
            lapi_url: url.to_string(),
            machine_id: machine.clone(),
            password,
            ban_duration: raw.ban_duration.into_inner(),
            ban_length: Duration::from_secs(ban_seconds),
            batch_size: raw.batch_size.into_inner(),
            state_file,
            bouncer_key,
            pull: Duration::from_secs(*raw.pull_seconds.get_ref()),
        })
    }
}

/// `host` (brackets of an IPv6 literal removed) and port of an `http(s)://` base URL.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default = if scheme == "https" { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
        _ => (authority, default),
    };
    Some((host.trim_matches(['[', ']']).to_string(), port))
}

/// `4h`, `90m`, `1h30m`, `45s`: what CrowdSec (Go's `time.ParseDuration`) takes for a
/// decision, whole numbers of hours, minutes and seconds, not zero; in seconds.
fn go_duration_seconds(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n = rest[..digits].parse::<u64>().ok()?;
        let unit = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return None,
        };
        total = total.saturating_add(n.saturating_mul(unit));
        rest = &rest[digits + 1..];
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::go_duration_seconds;

    #[test]
    fn the_crowdsec_table_is_off_unless_present_and_validated() {
        assert_eq!(parse("").unwrap().crowdsec, None);
        let c = parse("[crowdsec]\nmachine_id = 'pbx1'\npassword = 'pw'\nlapi_url = 'https://lapi.example.net:8080/'\n")
            .unwrap()
            .crowdsec
            .unwrap();
        assert_eq!(c.lapi_url, "https://lapi.example.net:8080");
        assert_eq!(
            (c.machine_id.as_str(), c.password.read().unwrap().as_str()),
            ("pbx1", "pw")
        );
        assert_eq!(
            (
                c.ban_duration.as_str(),
                c.ban_length.as_secs(),
                c.batch_size
            ),
            ("4h", 4 * 3600, 100)
        );
        assert_eq!(
            c.state_file.to_str(),
            Some("/var/lib/extsecurity/crowdsec.position")
        );
        for (text, error) in [
            (
                "[crowdsec]\npassword = 'pw'\n",
                "t.toml:1:1: crowdsec.machine_id is required",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\n",
                "t.toml:1:1: crowdsec.password or crowdsec.password_file is required",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nlapi_url = '127.0.0.1:8080'\n",
                "t.toml:4:12: crowdsec.lapi_url \"127.0.0.1:8080\" is not",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nban_duration = '4 hours'\n",
                "t.toml:4:16: crowdsec.ban_duration \"4 hours\" is not",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword_file = 'p'\n",
                "t.toml:3:17: crowdsec.password_file \"p\" must be an absolute path",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nbatch_size = 0\n",
                "t.toml:4:14: crowdsec.batch_size must be between 1 and 1000",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nstate_file = 'pos'\n",
                "t.toml:4:14: crowdsec.state_file \"pos\" must be an absolute file path",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
        for (ok, seconds) in [
            ("4h", 14_400),
            ("90m", 5_400),
            ("1h30m", 5_400),
            ("45s", 45),
            ("168h", 604_800),
        ] {
            assert_eq!(go_duration_seconds(ok), Some(seconds), "{ok}");
        }
        for bad in ["", "0h", "4", "h", "4d", "-4h", "4h "] {
            assert_eq!(go_duration_seconds(bad), None, "{bad:?}");
        }
        // A queue_size from an older config is still accepted (and has no effect).
        assert!(parse("[crowdsec]\nmachine_id = 'm'\npassword = 'p'\nqueue_size = 5\n").is_ok());
    }
}
