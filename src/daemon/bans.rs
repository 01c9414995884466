//! The kernel-ban sink: every alert line (per-call rules, rules with memory, AMI rules)
//! for an address that is neither trusted nor this host's own is offered to a bounded
//! queue, and one thread adds what is queued to the nftables sets in one netlink batch.
//! Nothing on the path that answers Asterisk waits for it: a full queue or a failed
//! batch is counted and logged, the alert line is already written.

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::config::NftablesConfig;
use crate::daemon::Shared;
use crate::daemon::metrics::BanMetrics;
use crate::nftables::history::{History, Record, ordinal};
use crate::nftables::netlink::{Element, Socket};

/// Bans waiting for the thread; beyond this new ones are dropped (counted).
const QUEUE: usize = 200_000;
/// Elements in one netlink message at most.
const BATCH: usize = 1_000;
/// How often the sets' size is read for `extsecurity_ban_set_elements`.
const SIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How often the bans' history is saved when it changed (and when the sink goes).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One WARNING when the history cannot be saved, one INFO when it can again.
fn say_save(saved: std::io::Result<()>, failing: &mut bool, path: &std::path::Path) {
    match (saved, *failing) {
        (Ok(()), true) => {
            *failing = false;
            tracing::info!(
                "nftables: the bans' history {} is saved again",
                path.display()
            );
        }
        (Err(e), false) => {
            *failing = true;
            tracing::warn!(
                "nftables: cannot save the bans' history {} ({e}): a restart would forget returning addresses",
                path.display()
            );
        }
        _ => {}
    }
}

/// Each ban's element (its time from the history, `(3rd ban)` in its comment from the
/// second on) and the addresses banned now whose element is replaced.
fn plan(
    history: &mut History,
    batch: &[Ban],
    config: &NftablesConfig,
) -> (Vec<Element>, Vec<IpAddr>) {
    let now = crate::daemon::status::unix_now();
    let mut replaced = Vec::new();
    let elements = batch
        .iter()
        .map(|b| {
            let ban = history.ban(b.ip, now, config.ban, config.increment.as_ref());
            if ban.extends {
                replaced.push(b.ip);
            }
            let comment = match ban.nth {
                1 => b.reason.clone(),
                n => format!("{} ({} ban)", b.reason, ordinal(n)),
            };
            Element {
                ip: b.ip,
                timeout: ban.timeout,
                comment,
            }
        })
        .collect();
    (elements, replaced)
}

/// Reads both sets' size into the metrics; a failure leaves the last value.
fn count(socket: &mut Socket, sink: &Sink, metrics: &BanMetrics) {
    let table = &sink.config().table;
    if let (Ok(v4), Ok(v6)) = (socket.count(table, "v4"), socket.count(table, "v6")) {
        metrics.set_size(v4 + v6);
    }
}

/// The addresses an alert never bans, besides trusted networks (filtered before): a
/// ban on them would cut this host off from itself, Asterisk's manager or the LAPI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Never {
    /// This host's own addresses (every interface).
    pub own: Vec<IpAddr>,
    /// The AMI and LAPI hosts.
    pub peers: Vec<IpAddr>,
}

impl Never {
    /// Why `ip` is never banned, if it is not: a reason of
    /// [`crate::daemon::metrics::SKIP_REASONS`].
    pub fn skip(&self, ip: IpAddr) -> Option<&'static str> {
        if ip.is_loopback() {
            Some("loopback")
        } else if ip.is_unspecified() {
            Some("unspecified")
        } else if self.peers.contains(&ip) {
            Some("peer")
        } else if self.own.contains(&ip) {
            Some("this_host")
        } else {
            None
        }
    }

    /// One INFO line per reason, at start: which addresses an alert never bans.
    pub fn say(&self, trusted: &[ipnet::IpNet]) {
        tracing::info!("nftables: never banned, loopback: 127.0.0.0/8 and ::1");
        tracing::info!(
            "nftables: never banned, this host's own addresses: {}",
            joined(&self.own)
        );
        if !self.peers.is_empty() {
            tracing::info!(
                "nftables: never banned, the AMI and LAPI hosts: {}",
                joined(&self.peers)
            );
        }
        if !trusted.is_empty() {
            tracing::info!(
                "nftables: never banned, trusted_networks: {}",
                joined(trusted)
            );
        }
    }
}

fn joined<T: ToString>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

/// One address to ban, and when its alert line was written.
struct Ban {
    ip: IpAddr,
    reason: String,
    at: Instant,
}

/// Where alerts are offered; present while `[nftables]` bans are on and set up. A
/// reload changes its settings in place (the next batch uses them); switching the bans
/// off drops it, which ends the thread.
pub struct Sink {
    tx: SyncSender<Ban>,
    rx: Mutex<Option<Receiver<Ban>>>,
    /// Each address's bans, for bans that escalate; kept in `state_file`.
    history: Mutex<History>,
    /// This host's addresses and the AMI and LAPI peers: never banned.
    never: RwLock<Never>,
    config: RwLock<NftablesConfig>,
}

impl Sink {
    pub fn new(config: NftablesConfig, never: Never) -> Sink {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        Sink {
            tx,
            rx: Mutex::new(Some(rx)),
            history: Mutex::new(load_history(&config.state_file)),
            never: RwLock::new(never),
            config: RwLock::new(config),
        }
    }

    pub fn config(&self) -> NftablesConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// New settings (after a reload set the table up with them) and peers.
    pub fn update(&self, config: NftablesConfig, never: Never) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        *self.never.write().unwrap_or_else(|e| e.into_inner()) = never;
    }

    /// `extsecurity unban`: the address's next ban is a first one again.
    pub fn forget(&self, ip: IpAddr) -> bool {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ip)
    }

    /// Saves the history if it changed; a failure is said once per outage by the caller.
    fn save_history(&self) -> std::io::Result<()> {
        let config = self.config();
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if !history.dirty {
            return Ok(());
        }
        let now = crate::daemon::status::unix_now();
        let records = history.records(now, config.increment.as_ref());
        history.dirty = false;
        drop(history);
        // Run by hand, the folder may not exist yet (the unit's StateDirectory makes it).
        if let Some(folder) = config.state_file.parent().filter(|f| !f.exists()) {
            use std::os::unix::fs::DirBuilderExt as _;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(folder);
        }
        crate::state_file::StateFile::new(&config.state_file).save(&records)
    }

    /// Offers an alert's address without waiting; one never banned is counted by why.
    pub fn offer(&self, ip: IpAddr, reason: &str, metrics: &BanMetrics) {
        let never = self.never.read().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = never.skip(ip) {
            metrics.skipped(why);
            return;
        }
        drop(never);
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

impl Drop for Sink {
    /// The bans switched off, or the daemon ending: the history is kept for next time.
    fn drop(&mut self) {
        if let Err(e) = self.save_history() {
            tracing::warn!("nftables: cannot save the bans' history: {e}");
        }
    }
}

/// The history the state file holds; an unreadable one is said and set aside (the
/// bans in the kernel are not touched), and the history starts empty.
fn load_history(path: &std::path::Path) -> History {
    match crate::state_file::StateFile::new(path).load::<Vec<(IpAddr, Record)>>() {
        Ok(Some(records)) => History::from_records(records),
        Ok(None) => History::default(),
        Err(e) => {
            tracing::warn!(
                "nftables: cannot read the bans' history {} ({e}): returning addresses count from one again",
                path.display()
            );
            History::default()
        }
    }
}

/// Runs the ban thread for `sink` until the sink is dropped (the bans switched off, or
/// the daemon ending). Call once per sink.
pub fn spawn(
    shared: Arc<Shared>,
    sink: &Arc<Sink>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rx = sink.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let rx = rx.expect("spawned once");
    let mut socket = Socket::open()?;
    // The thread holds the sink weakly: once the daemon lets go of it, the queue's
    // sender goes with it and the thread ends.
    let weak = Arc::downgrade(sink);
    std::thread::Builder::new()
        .name("nftables".into())
        .spawn(move || apply(&shared, &mut socket, &weak, rx))
}

fn apply(shared: &Shared, socket: &mut Socket, weak: &std::sync::Weak<Sink>, rx: Receiver<Ban>) {
    let metrics = &shared.metrics.bans;
    let mut failing = false;
    // The sets' size for the metric: at start (a restart keeps the bans), then every
    // SIZE_EVERY, busy or idle.
    let mut counted: Option<Instant> = None;
    let mut saved = Instant::now();
    let mut save_failing = false;
    loop {
        let Some(sink) = weak.upgrade() else {
            return;
        };
        if counted.is_none_or(|t| t.elapsed() >= SIZE_EVERY) {
            count(socket, &sink, metrics);
            counted = Some(Instant::now());
        }
        if saved.elapsed() >= SAVE_EVERY {
            saved = Instant::now();
            say_save(
                sink.save_history(),
                &mut save_failing,
                &sink.config().state_file,
            );
        }
        drop(sink);
        let first = match rx.recv_timeout(SAVE_EVERY) {
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
        let Some(config) = weak.upgrade().map(|s| s.config()) else {
            return;
        };
        let (elements, replaced) = {
            let Some(sink) = weak.upgrade() else { return };
            let mut history = sink.history.lock().unwrap_or_else(|e| e.into_inner());
            plan(&mut history, &batch, &config)
        };
        match socket.add_replacing(&config.table, &replaced, &elements) {
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
