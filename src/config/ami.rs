//! `[ami]`: the AMI security-event watcher.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Invalid, Secret, Shape, secret, socket_address};
use crate::ami::Limits;
/// Where and how the daemon reads Asterisk's security events.
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    pub address: SocketAddr,
    pub username: String,
    /// Read at each login, by `serve` alone.
    pub secret: Secret,
    /// How the secret proves itself: never sent in clear by default.
    pub auth: AmiAuth,
    /// TLS (manager.conf `tlsenable`), verified against these roots, for this name.
    pub tls: Option<AmiTls>,
    /// How often to send `Action: Ping`; a connection silent for three times this is
    /// taken for dead and made again.
    pub ping_interval: Duration,
    pub limits: Limits,
}

/// How the watcher logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmiAuth {
    /// `Action: Challenge` then `Login` with `Key: md5(challenge + secret)`: the secret
    /// never crosses the network (manager.c's `authenticate`).
    Md5,
    /// `Login` with `Secret:` in clear: only for a manager that refuses challenges.
    Plain,
}

/// TLS to the manager interface (manager.conf `tlsenable = yes`, port 5039 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiTls {
    /// PEM certificates to trust (Asterisk's own CA or its self-signed certificate);
    /// `None`: the Mozilla roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// The name the certificate must carry; `None`: the address's IP.
    pub server_name: Option<String>,
}

/// The `[ami]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAmi {
    address: Spanned<String>,
    username: Spanned<String>,
    secret: Spanned<String>,
    secret_file: Spanned<String>,
    auth: Spanned<String>,
    tls: bool,
    tls_ca_file: Spanned<String>,
    tls_server_name: Spanned<String>,
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
            auth: Spanned::new(0..0, "md5".into()),
            tls: false,
            tls_ca_file: Spanned::new(0..0, String::new()),
            tls_server_name: Spanned::new(0..0, String::new()),
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
        let Some((secret, _)) = secret(
            &raw.secret,
            &raw.secret_file,
            "ami.secret",
            Shape::Printable,
        )?
        else {
            return Err((span, "ami.secret or ami.secret_file is required".into()));
        };
        let auth = match raw.auth.get_ref().as_str() {
            "md5" => AmiAuth::Md5,
            "plain" => AmiAuth::Plain,
            other => {
                return Err((
                    raw.auth.span(),
                    format!("ami.auth must be \"md5\" (the default) or \"plain\", not {other:?}"),
                ));
            }
        };
        let tls = match raw.tls {
            false
                if !raw.tls_ca_file.get_ref().is_empty()
                    || !raw.tls_server_name.get_ref().is_empty() =>
            {
                return Err((
                    raw.tls_ca_file.span(),
                    "ami.tls_ca_file and ami.tls_server_name need ami.tls = true".into(),
                ));
            }
            false => None,
            true => {
                let ca = raw.tls_ca_file.get_ref();
                if !ca.is_empty() && !std::path::Path::new(ca).is_absolute() {
                    return Err((
                        raw.tls_ca_file.span(),
                        format!("ami.tls_ca_file {ca:?} must be an absolute path"),
                    ));
                }
                let name = raw.tls_server_name.get_ref();
                if !name.is_empty()
                    && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
                {
                    return Err((
                        raw.tls_server_name.span(),
                        format!("ami.tls_server_name {name:?} is not a host name or address"),
                    ));
                }
                Some(AmiTls {
                    ca_file: (!ca.is_empty()).then(|| ca.into()),
                    server_name: (!name.is_empty()).then(|| name.clone()),
                })
            }
        };
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
            auth,
            tls,
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
            (ami.username.as_str(), ami.secret.read().unwrap().as_str()),
            ("extsecurity", "pw")
        );
        assert_eq!(ami.limits.auth_failures, 3);
        assert_eq!(ami.limits.unknown_accounts, 5);
        assert_eq!(ami.limits.unauthenticated_requests, 120);
        assert_eq!(ami.limits.window, Duration::from_secs(60));
        assert_eq!(
            (ami.auth, ami.tls),
            (super::AmiAuth::Md5, None),
            "md5, no TLS by default"
        );
        let tls = parse("[ami]\nusername = 'u'\nsecret = 'pw'\nauth = 'plain'\ntls = true\ntls_server_name = 'pbx.example'\n")
            .unwrap()
            .ami
            .unwrap();
        assert_eq!(tls.auth, super::AmiAuth::Plain);
        assert_eq!(tls.tls.unwrap().server_name.as_deref(), Some("pbx.example"));
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
                "t.toml:3:10: ami.secret: the secret must be printable",
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
                "[ami]\nusername = 'u'\nsecret_file = 's'\n",
                "t.toml:3:15: ami.secret_file \"s\" must be an absolute path",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nauth = 'sha1'\n",
                "t.toml:4:8: ami.auth must be \"md5\" (the default) or \"plain\", not \"sha1\"",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\ntls_ca_file = '/etc/ca.pem'\n",
                "t.toml:4:15: ami.tls_ca_file and ami.tls_server_name need ami.tls = true",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nwindow_seconds = 0\n",
                "t.toml:4:18: ami.window_seconds must be at least 1",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nping = 1\n",
                "t.toml:4:1: unknown key `ping` in [ami] (did you mean `ping_interval_seconds`?)",
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
