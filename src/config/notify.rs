//! `[notify]`: telling the administrator, by e-mail (SMTP) and a webhook.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Invalid, Secret, Shape, secret};

/// Where notifications go; at least one of the two.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    pub smtp: Option<SmtpConfig>,
    /// A JSON POST per message (doc/notifications.md, "Notifications": the payload). A secret: a
    /// Slack or Teams URL carries its token.
    pub webhook_url: Option<Secret>,
    /// Alerts (bans) are told in one digest at most this often.
    pub digest: Duration,
    /// Events waiting to be sent at most; past it the oldest are dropped and counted.
    pub queue_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    pub server: String,
    pub port: u16,
    pub security: Security,
    /// Empty: no AUTH.
    pub username: String,
    pub password: Option<Secret>,
    /// The CA that signed the server's certificate (PEM); None: the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: a relay on this host or a trusted network only.
    None,
}

impl Security {
    pub fn name(self) -> &'static str {
        match self {
            Security::Starttls => "starttls",
            Security::Tls => "tls",
            Security::None => "none",
        }
    }
}

/// The `[notify]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotify {
    smtp_server: Spanned<String>,
    smtp_port: u16,
    smtp_security: Spanned<String>,
    smtp_username: String,
    smtp_password: Spanned<String>,
    smtp_password_file: Spanned<String>,
    smtp_ca_file: String,
    mail_from: Spanned<String>,
    mail_to: Spanned<Vec<String>>,
    webhook_url: Spanned<String>,
    webhook_url_file: Spanned<String>,
    digest_seconds: Spanned<u64>,
    queue_size: Spanned<usize>,
}

impl Default for RawNotify {
    fn default() -> RawNotify {
        let text = |s: &str| Spanned::new(0..0, s.to_string());
        RawNotify {
            smtp_server: text(""),
            smtp_port: 587,
            smtp_security: text("starttls"),
            smtp_username: String::new(),
            smtp_password: text(""),
            smtp_password_file: text(""),
            smtp_ca_file: String::new(),
            mail_from: text(""),
            mail_to: Spanned::new(0..0, Vec::new()),
            webhook_url: text(""),
            webhook_url_file: text(""),
            digest_seconds: Spanned::new(0..0, 3600),
            queue_size: Spanned::new(0..0, 1000),
        }
    }
}

/// `http://…` or `https://…` with a host, nothing a request line could be split with.
pub fn is_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or("");
    !rest.is_empty() && !rest.starts_with('/') && url.bytes().all(|b| b.is_ascii_graphic())
}

/// `name@domain`, nothing a header could be split with.
fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && a.bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>,;\"()".contains(&b))
}

impl RawNotify {
    pub(super) fn validate(table: Spanned<RawNotify>) -> Result<NotifyConfig, Invalid> {
        let span = table.span();
        let raw = table.into_inner();
        let smtp = raw.smtp()?;
        let url = raw.webhook_url.get_ref();
        if !url.is_empty() && !is_url(url) {
            return Err((
                raw.webhook_url.span(),
                "notify.webhook_url is not an http:// or https:// URL".into(),
            ));
        }
        let webhook_url = secret(
            &raw.webhook_url,
            &raw.webhook_url_file,
            "notify.webhook_url",
            Shape::Printable,
        )?
        .map(|(s, _)| s);
        if smtp.is_none() && webhook_url.is_none() {
            return Err((
                span,
                "[notify] needs smtp_server (with mail_from and mail_to) or webhook_url".into(),
            ));
        }
        if !(10..=7 * 86_400).contains(raw.digest_seconds.get_ref()) {
            return Err((
                raw.digest_seconds.span(),
                "notify.digest_seconds must be between 10 and 604800 (a week)".into(),
            ));
        }
        if !(10..=100_000).contains(raw.queue_size.get_ref()) {
            return Err((
                raw.queue_size.span(),
                "notify.queue_size must be between 10 and 100000".into(),
            ));
        }
        Ok(NotifyConfig {
            smtp,
            webhook_url,
            digest: Duration::from_secs(raw.digest_seconds.into_inner()),
            queue_size: raw.queue_size.into_inner(),
        })
    }

    fn smtp(&self) -> Result<Option<SmtpConfig>, Invalid> {
        let server = self.smtp_server.get_ref();
        if server.is_empty() {
            return Ok(None);
        }
        if server.contains(['/', ':', ' ']) {
            return Err((
                self.smtp_server.span(),
                format!(
                    "notify.smtp_server {server:?} is a host name or address, without a port (smtp_port)"
                ),
            ));
        }
        let security = match self.smtp_security.get_ref().as_str() {
            "starttls" => Security::Starttls,
            "tls" => Security::Tls,
            "none" => Security::None,
            other => {
                return Err((
                    self.smtp_security.span(),
                    format!(
                        "notify.smtp_security {other:?} must be \"starttls\", \"tls\" or \"none\""
                    ),
                ));
            }
        };
        if !is_address(self.mail_from.get_ref()) {
            return Err((
                self.mail_from.span(),
                format!(
                    "notify.mail_from {:?} must be one address such as extsecurity@pbx.example.org",
                    self.mail_from.get_ref()
                ),
            ));
        }
        let to = self.mail_to.get_ref();
        if to.is_empty() || !to.iter().all(|a| is_address(a)) {
            return Err((
                self.mail_to.span(),
                "notify.mail_to must list addresses such as [\"admin@example.org\"]".into(),
            ));
        }
        let password = secret(
            &self.smtp_password,
            &self.smtp_password_file,
            "notify.smtp_password",
            Shape::Printable,
        )?
        .map(|(s, _)| s);
        Ok(Some(SmtpConfig {
            server: server.clone(),
            port: self.smtp_port,
            security,
            username: self.smtp_username.clone(),
            password,
            ca_file: (!self.smtp_ca_file.is_empty()).then(|| PathBuf::from(&self.smtp_ca_file)),
            from: self.mail_from.get_ref().clone(),
            to: to.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_split_a_header_are_refused() {
        assert!(is_address("admin@example.org"));
        assert!(!is_address("admin@localhost"));
        assert!(!is_address("a@b.org\r\nBcc: x@y.org"));
        assert!(!is_address("Admin <a@b.org>"));
        assert!(!is_address("a@b.org,c@d.org"));
        assert!(!is_address("@b.org"));
    }
}
