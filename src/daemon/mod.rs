//! `extsecurity serve`: the FastAGI daemon. One process for any number of Asterisk
//! servers, with memory across calls (`memory`), an async tarpit, and the same checks
//! and channel variables as `extsecurity agi`.
//!
//! The shape follows mini-redis: [`run`] takes a bound listener and a shutdown future
//! (tests bind `127.0.0.1:0`); a semaphore permit is taken *before* `accept`, so at
//! most `max_connections` are served and the rest wait in the kernel's backlog; each
//! connection is one task ([`connection`]); on shutdown the accept loop stops and `run`
//! waits for the connections in flight to finish.

pub mod ami;
pub mod bans;
pub mod connection;
pub mod control;
pub mod crowdsec;
pub mod metrics;
pub mod overload;
pub mod serve;

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::alert_log::{Line, LogError, ReopeningLog};
use crate::config::{self, Config, ConfigError};
use crate::memory::Memory;
use metrics::Metrics;

/// How long shutdown waits for calls in flight before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// State shared by every connection.
pub struct Shared {
    /// Swapped whole on reload: a connection keeps the config it started with.
    config: RwLock<Arc<Config>>,
    /// Where the config came from, to read it again on SIGHUP.
    source: (Option<PathBuf>, Option<OsString>),
    /// Per-IP histories. A std mutex: held only for a map update, never across `.await`.
    pub memory: Mutex<Memory>,
    log: Mutex<ReopeningLog>,
    pub metrics: Metrics,
    /// Channels in the tarpit; beyond the cap an alert is answered at once.
    pub tarpits: Semaphore,
    /// Becomes true when the daemon is shutting down.
    shutdown: watch::Receiver<bool>,
    /// The CrowdSec pusher's wake-up, when `[crowdsec]` is set at start.
    pub crowdsec: Option<crowdsec::Outbox>,
    /// Addresses waiting for the kernel, once `[nftables]` was set up at start.
    pub bans: std::sync::OnceLock<bans::Sink>,
    /// Addresses `extsecurity unban` lifted, for the AMI evaluator to forget too.
    pub ami_forget: Mutex<Vec<std::net::IpAddr>>,
}

impl Shared {
    /// `source` is the `--config` flag and `$EXTSECURITY_CONFIG` the config came from.
    pub fn new(
        config: Config,
        source: (Option<PathBuf>, Option<OsString>),
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        Shared {
            crowdsec: config
                .crowdsec
                .as_ref()
                .map(|_| crowdsec::Outbox::default()),
            memory: Mutex::new(Memory::new(config.memory.max_tracked_ips)),
            tarpits: Semaphore::new(config.daemon.max_concurrent_tarpits),
            config: RwLock::new(Arc::new(config)),
            source,
            log: Mutex::new(ReopeningLog::default()),
            metrics: Metrics::default(),
            shutdown,
            bans: std::sync::OnceLock::new(),
            ami_forget: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the config again; a config that fails to load leaves the old one in place.
    /// The listen address and the tarpit cap take effect at the next start.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let (flag, env) = &self.source;
        let loaded = config::load(flag.as_deref(), env.clone());
        self.metrics.reloaded(loaded.is_ok());
        let (config, source) = loaded?;
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(config.memory.max_tracked_ips);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.reopen_log();
        tracing::info!(%source, "configuration reloaded");
        Ok(())
    }

    /// Closes the alert log; the next line opens it afresh (logrotate's postrotate).
    pub fn reopen_log(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).reopen();
    }

    /// Appends a line to the configured alert log and, for an alert, hands it to the
    /// kernel bans and wakes the CrowdSec pusher (never waiting; trusted networks never
    /// banned or pushed, whatever made the line).
    pub fn write(&self, config: &Config, line: &Line) -> Result<(), LogError> {
        let written = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(&config.log_file, line);
        let Some((ip, reason)) = line.alert().filter(|(ip, _)| !config.is_trusted(*ip)) else {
            return written;
        };
        if let Some(sink) = self.bans.get() {
            sink.offer(ip, reason, &self.metrics.bans);
        }
        if let Some(outbox) = &self.crowdsec {
            outbox.nudge();
        }
        written
    }

    /// Forgets `ip` in every rule with memory (`extsecurity unban`): the per-call
    /// windows and repeat-offender mark now, the AMI counts at the evaluator's next
    /// batch. Whether the per-call memory knew it.
    pub fn forget(&self, ip: std::net::IpAddr) -> bool {
        self.ami_forget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ip);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ip)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Binds the FastAGI listener with `backlog` (tokio's `bind` takes 1024): a burst
/// waits in the kernel's queue rather than being dropped.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves FastAGI on `listener` until `shutdown` resolves, then waits for the calls in
/// flight (at most [`DRAIN_TIMEOUT`]).
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future) {
    let max = shared.config().daemon.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let watcher = tokio::spawn(overload::watch(fd, shared.clone(), limit.clone(), max));
    tokio::select! {
        () = accept_loop(&listener, &shared, &limit) => {}
        _ = shutdown => tracing::info!("shutting down: finishing calls in flight"),
    }
    // The watcher borrows the listener's descriptor: stop it before closing that.
    watcher.abort();
    let _ = watcher.await;
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, limit.acquire_many(max as u32)).await;
    if drained.is_err() {
        tracing::warn!("shutdown: calls still in flight after {DRAIN_TIMEOUT:?}, leaving them");
    }
}

async fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, limit: &Arc<Semaphore>) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                // Commands are small writes that wait for an answer: Nagle's algorithm
                // would hold each behind the peer's delayed ACK (~40 ms a call).
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                tokio::spawn(async move {
                    connection::serve(stream, peer, &shared).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin; never stop serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
