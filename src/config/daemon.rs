//! `[daemon]`: where and how `extsecurity serve` listens for FastAGI.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{DEFAULT_LISTEN, Invalid, Secret, Shape, parse_network, secret, socket_address};

/// Where `extsecurity unban` finds the daemon: the unit's `RuntimeDirectory`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/extsecurity/control.sock";
/// The FastAGI daemon's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Whether to serve FastAGI at all (`false`: the AMI watcher alone).
    pub fastagi: bool,
    pub listen: SocketAddr,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// The listen backlog: connections the kernel completes and holds for us while
    /// every `max_connections` slot is busy (capped by `net.core.somaxconn`). Beyond it
    /// the kernel drops the SYN, and Asterisk's 2 s FastAGI connect gives up.
    pub listen_backlog: u32,
    /// A connection silent for this long before its `agi_*` block is in is closed;
    /// after it no timer runs (a late answer is still judged).
    pub idle_timeout: Duration,
    /// Channels held in the tarpit at once; beyond it alerts are answered at once.
    pub max_concurrent_tarpits: usize,
    /// Where to serve Prometheus metrics (loopback only), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// TCP peers allowed to connect: the Asterisk servers. Others are closed at once.
    pub allowed_clients: Vec<IpNet>,
    /// Where `extsecurity unban` reaches the running daemon (mode 0600); `None`: off.
    pub control_socket: Option<std::path::PathBuf>,
    /// When set, a FastAGI request counts only if its URL carries `?key=<secret>`
    /// (`AGI(agi://127.0.0.1/check?key=…)`): other local users cannot submit calls.
    /// `serve` reads a secret file once, at start and at each reload.
    pub secret: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    fastagi: bool,
    listen: Spanned<String>,
    max_connections: Spanned<usize>,
    listen_backlog: Spanned<u32>,
    idle_timeout_seconds: Spanned<f64>,
    max_concurrent_tarpits: usize,
    metrics_listen: Spanned<String>,
    allowed_clients: Vec<Spanned<String>>,
    secret: Spanned<String>,
    secret_file: Spanned<String>,
    control_socket: std::path::PathBuf,
}

impl Default for RawDaemon {
    fn default() -> RawDaemon {
        RawDaemon {
            fastagi: true,
            listen: Spanned::new(0..0, DEFAULT_LISTEN.to_string()),
            max_connections: Spanned::new(0..0, 1024),
            listen_backlog: Spanned::new(0..0, 4096),
            idle_timeout_seconds: Spanned::new(0..0, 10.0),
            max_concurrent_tarpits: 256,
            metrics_listen: Spanned::new(0..0, String::new()),
            allowed_clients: ["127.0.0.0/8", "::1/128"]
                .map(|n| Spanned::new(0..0, n.to_string()))
                .to_vec(),
            secret: Spanned::new(0..0, String::new()),
            secret_file: Spanned::new(0..0, String::new()),
            control_socket: DEFAULT_CONTROL_SOCKET.into(),
        }
    }
}

impl RawDaemon {
    pub(super) fn validate(self) -> Result<DaemonConfig, Invalid> {
        let address = |s: &Spanned<String>, key: &str| {
            socket_address(s, &format!("daemon.{key}"), "127.0.0.1:4573 or [::1]:4573")
        };
        let listen = address(&self.listen, "listen")?;
        let metrics_listen = match self.metrics_listen.get_ref().as_str() {
            "" => None,
            _ => {
                let addr = address(&self.metrics_listen, "metrics_listen")?;
                if !addr.ip().is_loopback() {
                    return Err((
                        self.metrics_listen.span(),
                        "daemon.metrics_listen must be a loopback address".into(),
                    ));
                }
                Some(addr)
            }
        };
        if *self.max_connections.get_ref() == 0 {
            return Err((
                self.max_connections.span(),
                "daemon.max_connections must be at least 1".into(),
            ));
        }
        if *self.listen_backlog.get_ref() == 0 {
            return Err((
                self.listen_backlog.span(),
                "daemon.listen_backlog must be at least 1".into(),
            ));
        }
        let idle = *self.idle_timeout_seconds.get_ref();
        if !(0.1..=3600.0).contains(&idle) {
            return Err((
                self.idle_timeout_seconds.span(),
                "daemon.idle_timeout_seconds must be between 0.1 and 3600".into(),
            ));
        }
        let allowed_clients = self
            .allowed_clients
            .iter()
            .map(|n| parse_network(n, "daemon.allowed_clients entry"))
            .collect::<Result<_, _>>()?;
        let control_socket =
            (!self.control_socket.as_os_str().is_empty()).then(|| self.control_socket.clone());
        Ok(DaemonConfig {
            control_socket,
            fastagi: self.fastagi,
            secret: secret(
                &self.secret,
                &self.secret_file,
                "daemon.secret",
                Shape::UrlSafe,
            )?
            .map(|(s, _)| s),
            allowed_clients,
            listen,
            max_connections: *self.max_connections.get_ref(),
            listen_backlog: *self.listen_backlog.get_ref(),
            idle_timeout: Duration::from_secs_f64(idle),
            max_concurrent_tarpits: self.max_concurrent_tarpits,
            metrics_listen,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use crate::config::Config;
    use std::net::IpAddr;

    #[test]
    fn daemon_and_memory_tables_have_defaults_and_are_validated() {
        let c = Config::default();
        assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:4573");
        assert_eq!(c.daemon.metrics_listen, None);
        assert_eq!(c.memory.max_extensions, 10);
        let c = parse("[daemon]\nlisten = '[::1]:4600'\nmetrics_listen = '127.0.0.1:9100'\n[memory]\nmax_calls = 5\n").unwrap();
        assert_eq!(c.daemon.listen.to_string(), "[::1]:4600");
        assert_eq!(c.daemon.metrics_listen.unwrap().port(), 9100);
        assert_eq!(c.memory.max_calls, 5);
        let e = parse("[daemon]\nmetrics_listen = '0.0.0.0:9100'\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:18: daemon.metrics_listen must be a loopback address"),
            "{e}"
        );
        let e = parse("[memory]\nmax_tracked_ips = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:19: memory.max_tracked_ips must be at least 1"),
            "{e}"
        );
        assert_eq!(c.daemon.allowed_clients.len(), 2);
        assert_eq!(c.daemon.secret, None);
        let c = parse("[daemon]\nsecret = 'abcdefghijklmnop'\nallowed_clients = ['192.0.2.10']\n")
            .unwrap();
        assert_eq!(c.daemon.secret.unwrap().read().unwrap(), "abcdefghijklmnop");
        assert!(c.daemon.allowed_clients[0].contains(&"192.0.2.10".parse::<IpAddr>().unwrap()));
        let e = parse("[daemon]\nsecret = 'short'\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:10: daemon.secret: the secret must be at least 16"),
            "{e}"
        );
        let e = parse("[daemon]\nsecret = 'a&b=c&aaaaaaaaaaaaaaa'\n").unwrap_err();
        assert!(e.contains("must be at least 16 characters of"), "{e}");
        let e = parse("[memory]\nwindow = 5\n").unwrap_err();
        assert!(
            e.starts_with(
                "t.toml:2:1: unknown key `window` in [memory] (did you mean `window_seconds`?)"
            ),
            "{e}"
        );
        assert_eq!(Config::default().daemon.listen_backlog, 4096);
        let e = parse("[daemon]\nlisten_backlog = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:18: daemon.listen_backlog must be at least 1"),
            "{e}"
        );
    }
}
