//! The kernel-ban sink: every alert line (per-call rules, rules with memory, AMI rules)
//! for an address that is neither trusted nor this host's own is offered to a bounded
//! queue, and one thread adds what is queued to the nftables sets in one netlink batch.
//! Nothing on the path that answers Asterisk waits for it: a full queue or a failed
//! batch is counted and logged, the alert line is already written.

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::NftablesConfig;
use crate::daemon::Shared;
use crate::daemon::metrics::BanMetrics;
use crate::nftables::netlink::{Element, Socket};

/// Bans waiting for the thread; beyond this new ones are dropped (counted).
const QUEUE: usize = 200_000;
/// Elements in one netlink message at most.
const BATCH: usize = 1_000;
/// How often the sets' size is read for `extsecurity_ban_set_elements`.
const SIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads both sets' size into the metrics; a failure leaves the last value.
fn count(socket: &mut Socket, sink: &Sink, metrics: &BanMetrics) {
    let table = &sink.config.table;
    if let (Ok(v4), Ok(v6)) = (socket.count(table, "v4"), socket.count(table, "v6")) {
        metrics.set_size(v4 + v6);
    }
}

/// One address to ban, and when its alert line was written.
struct Ban {
    ip: IpAddr,
    reason: String,
    at: Instant,
}

/// Where alerts are offered; present when `[nftables]` is enabled and set up.
pub struct Sink {
    tx: SyncSender<Ban>,
    rx: Mutex<Option<Receiver<Ban>>>,
    /// This host's addresses and the AMI and LAPI peers: never banned.
    never: Vec<IpAddr>,
    pub config: NftablesConfig,
}

impl Sink {
    pub fn new(config: NftablesConfig, never: Vec<IpAddr>) -> Sink {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Sink {
            tx,
            rx: Mutex::new(Some(rx)),
            never,
            config,
        }
    }

    /// Offers an alert's address without waiting.
    pub fn offer(&self, ip: IpAddr, reason: &str, metrics: &BanMetrics) {
        if self.never.contains(&ip) || ip.is_loopback() || ip.is_unspecified() {
            return;
        }
        let ban = Ban {
            ip,
            reason: reason.to_string(),
            at: Instant::now(),
        };
        match self.tx.try_send(ban) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => metrics.dropped(),
        }
    }
}

/// Runs the ban thread until the daemon's queue is dropped. Call once.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let sink = shared
        .bans
        .get()
        .expect("the sink is set before the thread starts");
    let rx = sink.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let rx = rx.expect("spawned once");
    let mut socket = Socket::open()?;
    std::thread::Builder::new()
        .name("nftables".into())
        .spawn(move || apply(&shared, &mut socket, rx))
}

fn apply(shared: &Shared, socket: &mut Socket, rx: Receiver<Ban>) {
    let Some(sink) = shared.bans.get() else {
        return;
    };
    let metrics = &shared.metrics.bans;
    let mut failing = false;
    // The sets' size for the metric: at start (a restart keeps the bans), then every
    // SIZE_EVERY, busy or idle.
    let mut counted: Option<Instant> = None;
    loop {
        if counted.is_none_or(|t| t.elapsed() >= SIZE_EVERY) {
            count(socket, sink, metrics);
            counted = Some(Instant::now());
        }
        let first = match rx.recv_timeout(SIZE_EVERY) {
            Ok(ban) => ban,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(ban) => batch.push(ban),
                Err(_) => break,
            }
        }
        batch.sort_by_key(|b| b.ip);
        batch.dedup_by_key(|b| b.ip);
        let elements: Vec<Element> = batch
            .iter()
            .map(|b| Element {
                ip: b.ip,
                timeout: sink.config.ban,
                comment: b.reason.clone(),
            })
            .collect();
        match socket.add(&sink.config.table, &elements) {
            Ok(()) => {
                let now = Instant::now();
                for b in &batch {
                    metrics.added(now.duration_since(b.at));
                }
                if std::mem::take(&mut failing) {
                    tracing::info!("nftables: bans are added again");
                }
            }
            Err(e) => {
                metrics.failed(batch.len());
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        error = %e,
                        bans = batch.len(),
                        "nftables: bans could not be added (the alert lines are written; fail2ban \
                         and CrowdSec still act on them); counting until it works again"
                    );
                }
            }
        }
    }
}
