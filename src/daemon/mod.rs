//! `extsecurity serve`: the FastAGI daemon. One process for any number of Asterisk
//! servers, with memory across calls (`memory`), an async tarpit, and the same checks
//! and channel variables as `extsecurity agi`.
//!
//! The shape follows mini-redis: [`run`] takes a bound listener and a shutdown future
//! (tests bind `127.0.0.1:0`); a semaphore permit is taken *before* `accept`, so at
//! most `max_connections` are served and the rest wait in the kernel's backlog; each
//! connection is one task ([`connection`]); on shutdown the accept loop stops and `run`
//! waits for the connections in flight to finish.

pub mod activity;
pub mod ami;
pub mod bans;
pub mod connection;
pub mod control;
pub mod crowdsec;
pub mod edge;
pub mod fraud;
pub mod legacy;
pub mod metrics;
pub mod notify;
pub mod overload;
pub mod parts;
pub mod pull;
pub mod reload;
pub mod serve;
pub mod status;
pub mod this_host;

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::alert_log::{Line, LogError, ReopeningLog};
use crate::config::{Config, ConfigError, Source};
use crate::memory::Memory;
use metrics::Metrics;

/// How long shutdown waits for calls in flight before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// State shared by every connection.
pub struct Shared {
    /// Swapped whole on reload: a connection keeps the config it started with.
    config: RwLock<Arc<Config>>,
    /// Where the config came from, to read it again on SIGHUP.
    source: RwLock<Source>,
    /// Per-IP histories. A std mutex: held only for a map update, never across `.await`.
    pub memory: Mutex<Memory>,
    log: Mutex<ReopeningLog>,
    pub metrics: Metrics,
    /// Channels in the tarpit; beyond the cap an alert is answered at once.
    pub tarpits: Semaphore,
    /// Becomes true when the daemon is shutting down.
    shutdown: watch::Receiver<bool>,
    /// The running CrowdSec pusher's wake-up, while one runs.
    pub crowdsec: RwLock<Option<Arc<crowdsec::Outbox>>>,
    /// Addresses waiting for the kernel, while `[nftables]` bans are on.
    pub bans: RwLock<Option<Arc<bans::Sink>>>,
    /// Addresses `extsecurity unban` lifted, for the AMI evaluator to forget too.
    pub ami_forget: Mutex<Vec<std::net::IpAddr>>,
    /// Whether the alert log is failing to take lines, and since when.
    log_outage: Mutex<Option<LogOutage>>,
    /// The outbound guard (`[fraud]`): accounts, quarantines, learned numbers.
    pub fraud: fraud::Fraud,
    /// When the daemon started, Unix seconds.
    pub started: u64,
    /// The notifier, while `[notify]` is on.
    pub notifier: RwLock<Option<notify::Notifier>>,
    /// Settings the file changed that apply at the next restart: (key, running, file).
    pub pending_restart: Mutex<Vec<(String, String, String)>>,
    /// What the secret files read at the last (re)load ([`reload::secret_prints`]).
    secret_prints: Mutex<Vec<(String, u64)>>,
    /// What the edge's feeds and country database hold now ([`edge::Lists`]).
    pub edge: Mutex<edge::Seen>,
    /// Addresses that logged in lately, let through the edge ([`edge::logged_in`]).
    pub known: edge::Known,
    /// Learned numbers for the puller to share with the fleet ([`pull::Puller`]).
    pub to_share: pull::ToShare,
    /// What the LAPI's decisions hold here now.
    pub pulled: Mutex<pull::Pulled>,
    /// This host's addresses, which the rules with memory never count.
    pub this_host: this_host::ThisHost,
}

/// An episode of failed alert-log writes: one CRITICAL when it starts, one INFO when
/// it ends, however many calls it spans.
struct LogOutage {
    since: Instant,
    lost: u64,
}

impl Shared {
    /// `source` is where the config came from: a reload reads it again.
    pub fn new(config: Config, source: Source, shutdown: watch::Receiver<bool>) -> Shared {
        Shared {
            secret_prints: Mutex::new(reload::secret_prints(&config)),
            crowdsec: RwLock::new(None),
            memory: Mutex::new(Memory::new(config.memory.max_tracked_ips)),
            tarpits: Semaphore::new(config.daemon.max_concurrent_tarpits),
            config: RwLock::new(Arc::new(config)),
            source: RwLock::new(source),
            log: Mutex::new(ReopeningLog::default()),
            metrics: Metrics::default(),
            shutdown,
            bans: RwLock::new(None),
            ami_forget: Mutex::new(Vec::new()),
            log_outage: Mutex::new(None),
            fraud: fraud::Fraud::default(),
            started: crate::clock::unix_now(),
            notifier: RwLock::new(None),
            pending_restart: Mutex::new(Vec::new()),
            edge: Mutex::new(edge::Seen::default()),
            known: edge::Known::default(),
            to_share: pull::ToShare::default(),
            pulled: Mutex::new(pull::Pulled::default()),
            this_host: this_host::ThisHost::default(),
        }
    }

    pub fn source(&self) -> Source {
        self.source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the config again and swaps it in whole; one that fails to load (or is
    /// gone, or empty: [`crate::config::reload`]) leaves the running one in place.
    /// Returns the config it replaced and the new one, for the parts beside the call
    /// path to follow ([`parts`]), and what changed.
    /// The settings that apply only at a restart keep their running values
    /// ([`reload::keep_restart_only`]); the returned diff says what the file changed.
    pub fn reload(&self) -> Result<(Arc<Config>, Arc<Config>, reload::Diff), ConfigError> {
        let loaded = crate::config::reload(&self.source())
            .and_then(|(config, source)| Ok((serve::resolve_key(config)?, source)));
        self.metrics.reloaded(loaded.is_ok());
        let (mut config, source) = loaded?;
        let running = self.config();
        let mut diff = reload::diff(&running, &config);
        let prints = reload::secret_prints(&config);
        let mut before = self.secret_prints.lock().unwrap_or_else(|e| e.into_inner());
        diff.live.extend(reload::changed_secrets(&before, &prints));
        *before = prints;
        drop(before);
        reload::keep_restart_only(&mut config, &running);
        *self
            .pending_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = diff.at_restart.clone();
        self.fraud.take_high_risk(&config, false);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(config.memory.max_tracked_ips);
        let new = Arc::new(config);
        let old = std::mem::replace(
            &mut *self.config.write().unwrap_or_else(|e| e.into_inner()),
            new.clone(),
        );
        *self.source.write().unwrap_or_else(|e| e.into_inner()) = source;
        self.reopen_log();
        Ok((old, new, diff))
    }

    /// Closes the alert log; the next line opens it afresh (logrotate's postrotate).
    pub fn reopen_log(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).reopen();
    }

    /// Appends a line to the configured alert log and, for an alert, hands it to the
    /// kernel bans and wakes the CrowdSec pusher (never waiting; trusted networks never
    /// banned or pushed, whatever made the line).
    ///
    /// A failed write is counted and said once per outage (one CRITICAL when the log
    /// stops taking lines, one INFO when it takes them again): the verdict is given
    /// whatever the log does.
    pub fn write(&self, config: &Config, line: &Line) -> Result<(), LogError> {
        let rendered = line.render(&crate::clock::timestamp_now());
        let current = crate::alert_log::identify(&config.log_file);
        let written = self
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_rendered(&config.log_file, &rendered, current);
        self.log_health(&written);
        let Some((ip, reason)) = line.alert() else {
            return written;
        };
        let text = String::from_utf8_lossy(&rendered);
        self.metrics.activity.alert(reason, text.trim_end());
        let bans = self.bans.read().unwrap_or_else(|e| e.into_inner());
        if config.is_trusted(ip) {
            if bans.is_some() {
                self.metrics.bans.skipped("trusted");
            }
            return written;
        }
        if let Some(sink) = &*bans {
            sink.offer(ip, reason, &self.metrics.bans);
        }
        drop(bans);
        if let Some(outbox) = &*self.crowdsec.read().unwrap_or_else(|e| e.into_inner()) {
            outbox.nudge();
        }
        written
    }

    /// Tells the administrator (`[notify]`), if a notifier runs; never waits.
    pub fn notify(&self, event: crate::notify::Event) {
        if let Some(notifier) = &*self.notifier.read().unwrap_or_else(|e| e.into_inner()) {
            notifier.event(event);
        }
    }

    /// Counts a failed write and says an outage of the alert log once, and its end.
    fn log_health(&self, written: &Result<(), LogError>) {
        let mut outage = self.log_outage.lock().unwrap_or_else(|e| e.into_inner());
        match (written, outage.as_mut()) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                let ended = outage.take().expect("matched");
                self.notify(crate::notify::Event::LogBack { lost: ended.lost });
                tracing::info!(
                    lost = ended.lost,
                    "alert log writable again after {:.1} s; {} lines were lost meanwhile (the calls were judged; fail2ban and CrowdSec did not see them)",
                    ended.since.elapsed().as_secs_f64(),
                    ended.lost
                );
            }
            (Err(e), current) => {
                self.metrics.log_error();
                match current {
                    Some(o) => o.lost += 1,
                    None => {
                        crate::critical!(
                            "{e}: lines are lost until it is fixed (calls are still judged and answered; fail2ban and CrowdSec see nothing meanwhile)"
                        );
                        self.notify(crate::notify::Event::LogFailing { why: e.to_string() });
                        *outage = Some(LogOutage {
                            since: Instant::now(),
                            lost: 1,
                        });
                    }
                }
            }
        }
    }

    /// Forgets `ip` in every rule with memory (`extsecurity unban`): the per-call
    /// windows and repeat-offender mark now, the AMI counts at the evaluator's next
    /// batch. Whether the per-call memory knew it.
    pub fn forget(&self, ip: std::net::IpAddr) -> bool {
        self.ami_forget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ip);
        if let Some(sink) = &*self.bans.read().unwrap_or_else(|e| e.into_inner()) {
            sink.forget(ip); // Its next ban is a first one again.
        }
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
/// waits in the kernel's queue rather than being dropped. The per-connection options
/// ([`connection_options`]) are set here once: Linux copies them to every accepted
/// socket, which spares six `setsockopt` calls a call.
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = reusable_socket(addr)?;
    connection_options(socket2::SockRef::from(&socket));
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A socket for a listener on `addr`, with `SO_REUSEADDR` as tokio's own `bind` sets
/// it: the daemon closes connections itself (each scrape's, each call's), and a
/// restart within a minute would otherwise find its port held by their `TIME_WAIT`.
pub fn reusable_socket(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

/// What every FastAGI connection needs:
/// - no Nagle: commands are small writes that wait for an answer, and Nagle's
///   algorithm would hold each behind the peer's delayed ACK (~40 ms a call);
/// - a connection waits for Asterisk's answer with no timer (a late answer is not a
///   missing one), so an Asterisk host that vanishes without closing (power, a cable)
///   must be noticed by TCP itself: keepalive probes after 30 s of silence, and a user
///   timeout for data left unacknowledged, end such a connection within about a
///   minute instead of the kernel's quarter of an hour.
fn connection_options(socket: socket2::SockRef<'_>) {
    let probes = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket.set_tcp_nodelay(true);
    let _ = socket.set_tcp_keepalive(&probes);
    let _ = socket.set_tcp_user_timeout(Some(Duration::from_secs(60)));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The options are set on the listener only: an accepted connection must carry
    /// them all, or a call waits on Nagle and a vanished Asterisk holds a slot.
    #[tokio::test]
    async fn accepted_connections_inherit_the_listener_options() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(60))
        );
    }
}
