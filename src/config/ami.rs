//! `[ami]`: the AMI security-event watcher.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Invalid, read_secret, socket_address};
use crate::ami::Limits;
/// Where and how the daemon reads Asterisk's security events.
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    pub address: SocketAddr,
    pub username: String,
    pub secret: String,
    /// How often to send `Action: Ping`; a connection silent for three times this is
    /// taken for dead and made again.
    pub ping_interval: Duration,
    pub limits: Limits,
}

/// The `[ami]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAmi {
    address: Spanned<String>,
    username: Spanned<String>,
    secret: Spanned<String>,
    secret_file: Spanned<String>,
    ping_interval_seconds: Spanned<f64>,
    window_seconds: Spanned<u64>,
    max_auth_failures: usize,
    max_unknown_accounts: Spanned<usize>,
    max_error_events: usize,
    max_unauthenticated_requests: usize,
}

impl Default for RawAmi {
    fn default() -> RawAmi {
        let limits = Limits::default();
        RawAmi {
            address: Spanned::new(0..0, "127.0.0.1:5038".into()),
            username: Spanned::new(0..0, String::new()),
            secret: Spanned::new(0..0, String::new()),
            secret_file: Spanned::new(0..0, String::new()),
            ping_interval_seconds: Spanned::new(0..0, 20.0),
            window_seconds: Spanned::new(0..0, limits.window.as_secs()),
            max_auth_failures: limits.auth_failures,
            max_unknown_accounts: Spanned::new(0..0, limits.unknown_accounts),
            max_error_events: limits.error_events,
            max_unauthenticated_requests: limits.unauthenticated_requests,
        }
    }
}

impl RawAmi {
    pub(super) fn validate(table: Spanned<RawAmi>) -> Result<AmiConfig, Invalid> {
        let span = table.span();
        let raw = table.into_inner();
        let address = socket_address(&raw.address, "ami.address", "127.0.0.1:5038")?;
        // Both go into the Login action as `Key: Value` lines: a CR or LF would add
        // lines of its own.
        let printable = |s: &str| !s.is_empty() && s.chars().all(|c| !c.is_control());
        if !printable(raw.username.get_ref()) {
            let at = if raw.username.get_ref().is_empty() {
                span.clone()
            } else {
                raw.username.span()
            };
            return Err((at, "ami.username is required and must be printable".into()));
        }
        let Some((secret, secret_span)) = read_secret(&raw.secret, &raw.secret_file, "ami.secret")?
        else {
            return Err((span, "ami.secret or ami.secret_file is required".into()));
        };
        if !printable(&secret) {
            return Err((
                secret_span,
                "the AMI secret must be printable and not empty".into(),
            ));
        }
        let ping = *raw.ping_interval_seconds.get_ref();
        if !(1.0..=3600.0).contains(&ping) {
            return Err((
                raw.ping_interval_seconds.span(),
                "ami.ping_interval_seconds must be between 1 and 3600".into(),
            ));
        }
        if *raw.window_seconds.get_ref() == 0 {
            return Err((
                raw.window_seconds.span(),
                "ami.window_seconds must be at least 1".into(),
            ));
        }
        if *raw.max_unknown_accounts.get_ref() > Limits::MAX_UNKNOWN_ACCOUNTS {
            // Each address keeps one more name than the limit: this bounds its memory.
            return Err((
                raw.max_unknown_accounts.span(),
                format!(
                    "ami.max_unknown_accounts must be at most {}",
                    Limits::MAX_UNKNOWN_ACCOUNTS
                ),
            ));
        }
        Ok(AmiConfig {
            address,
            username: raw.username.into_inner(),
            secret,
            ping_interval: Duration::from_secs_f64(ping),
            limits: Limits {
                window: Duration::from_secs(*raw.window_seconds.get_ref()),
                auth_failures: raw.max_auth_failures,
                unknown_accounts: raw.max_unknown_accounts.into_inner(),
                error_events: raw.max_error_events,
                unauthenticated_requests: raw.max_unauthenticated_requests,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use std::time::Duration;

    #[test]
    fn the_ami_table_is_off_unless_present_and_validated() {
        assert_eq!(parse("").unwrap().ami, None);
        let c = parse("[ami]\nusername = 'extsecurity'\nsecret = 'pw'\nmax_auth_failures = 3\n")
            .unwrap();
        let ami = c.ami.unwrap();
        assert_eq!(ami.address.to_string(), "127.0.0.1:5038");
        assert_eq!(
            (ami.username.as_str(), ami.secret.as_str()),
            ("extsecurity", "pw")
        );
        assert_eq!(ami.limits.auth_failures, 3);
        assert_eq!(ami.limits.unknown_accounts, 5);
        assert_eq!(ami.limits.unauthenticated_requests, 120);
        assert_eq!(ami.limits.window, Duration::from_secs(60));
        for (text, error) in [
            (
                "[ami]\nsecret = 'pw'\n",
                "t.toml:1:1: ami.username is required",
            ),
            (
                "[ami]\nusername = 'u'\n",
                "t.toml:1:1: ami.secret or ami.secret_file is required",
            ),
            (
                "[ami]\nusername = \"u\\r\\nAction: Originate\"\nsecret = 'pw'\n",
                "t.toml:2:12: ami.username is required and must be printable",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = \"p\\nw\"\n",
                "t.toml:3:10: the AMI secret must be printable",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\naddress = 'localhost'\n",
                "t.toml:4:11: ami.address \"localhost\" is not",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nsecret_file = '/x'\n",
                "t.toml:4:15: ami.secret and ami.secret_file exclude",
            ),
            (
                "[ami]\nusername = 'u'\nsecret_file = '/nonexistent/s'\n",
                "t.toml:3:15: ami.secret_file /nonexistent/s: No such file",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nwindow_seconds = 0\n",
                "t.toml:4:18: ami.window_seconds must be at least 1",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nping = 1\n",
                "t.toml:4:1: unknown field `ping`",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nmax_unknown_accounts = 51\n",
                "t.toml:4:24: ami.max_unknown_accounts must be at most 50",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
        assert!(!parse("[daemon]\nfastagi = false\n").unwrap().daemon.fastagi);
    }
}
