//! The kernel-ban sink: every alert line (per-call rules, rules with memory, AMI rules)
//! for an address that is neither trusted nor this host's own is offered to a bounded
//! queue, and one thread adds what is queued to the nftables sets in one netlink batch.
//! Nothing on the path that answers Asterisk waits for it: a full queue or a failed
//! batch is counted and logged, the alert line is already written.

use std::net::IpAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, NftablesConfig};
use crate::daemon::Shared;
use crate::daemon::metrics::BanMetrics;
use crate::nftables::history::{History, Record, ordinal};
use crate::nftables::netlink::{Element, Socket, Watch};

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
    let now = crate::clock::unix_now();
    let mut replaced = Vec::new();
    let elements = batch
        .iter()
        .map(|b| {
            let comment = |nth| match nth {
                1 => b.reason.clone(),
                n => format!("{} ({} ban)", b.reason, ordinal(n)),
            };
            let ban = history.ban(b.ip, now, config.ban, config.increment.as_ref(), comment);
            if ban.extends {
                replaced.push(b.ip);
            }
            Element {
                ip: b.ip,
                timeout: ban.timeout,
                comment: history.comment(b.ip),
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
    /// This host's addresses and the peers it talks to: banning them would cut the
    /// daemon off from Asterisk or CrowdSec.
    pub fn of(config: &Config) -> Never {
        Never {
            own: crate::nftables::own_addresses(),
            peers: Never::peers(config),
        }
    }

    /// The AMI and LAPI hosts `config` names (by address; a name is not looked up).
    pub fn peers(config: &Config) -> Vec<IpAddr> {
        let lapi_host: Option<IpAddr> = config.crowdsec.as_ref().and_then(|c| {
            let (host, _) = crate::crowdsec::host_port(&c.lapi_url)?;
            host.parse().ok()
        });
        config
            .ami
            .as_ref()
            .map(|a| a.address.ip())
            .into_iter()
            .chain(lapi_host)
            .collect()
    }

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
        let now = crate::clock::unix_now();
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

    /// Why `ip` is never banned here (this host, a peer), if it is not to be.
    pub fn never_bans(&self, ip: IpAddr) -> Option<&'static str> {
        self.never
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .skip(ip)
    }

    /// This host's addresses and the peers: what a range must not hold.
    pub fn protected(&self) -> Vec<IpAddr> {
        let never = self.never.read().unwrap_or_else(|e| e.into_inner());
        never.own.iter().chain(&never.peers).copied().collect()
    }

    /// Whether one of our own alerts banned `ip` and the ban runs still: a decision
    /// lifted on the LAPI does not lift it.
    pub fn bans_itself(&self, ip: IpAddr) -> bool {
        let now = crate::clock::unix_now();
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active(now)
            .iter()
            .any(|a| a.ip == ip)
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

/// Runs the ban thread for `sink`, and the thread that rebuilds its table when it is
/// removed, until the sink is dropped (the bans switched off, or the daemon ending).
/// Call once per sink.
pub fn spawn(
    shared: Arc<Shared>,
    sink: &Arc<Sink>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rx = sink.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let rx = rx.expect("spawned once");
    let mut socket = Socket::open()?;
    // The threads hold the sink weakly: once the daemon lets go of it, the queue's
    // sender goes with it and they end.
    let weak = Arc::downgrade(sink);
    match Watch::open(TICK).and_then(|watch| {
        let (shared, weak) = (shared.clone(), weak.clone());
        std::thread::Builder::new()
            .name("nftables-heal".into())
            .spawn(move || heal(&shared, watch, &weak))
    }) {
        Ok(_) => {}
        Err(e) => tracing::warn!(
            "nftables: cannot watch the table for its removal ({e}): after a `flush ruleset` bans fail until a restart"
        ),
    }
    std::thread::Builder::new()
        .name("nftables".into())
        .spawn(move || apply(&shared, &mut socket, &weak, rx))
}

/// How often the ban thread wakes with nothing queued (a batch to try again, the
/// history to save, the sets to count), and how long a watch waits.
const TICK: Duration = Duration::from_secs(1);
/// How long a batch the kernel refused is tried again, once a [`TICK`], before its
/// bans count as failed.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// After a removal is heard, the time the rest of its transaction gets to finish (a
/// `flush ruleset` removes rules, sets, chains, then the table) before we look.
const SETTLE: Duration = Duration::from_millis(20);

/// Bans the kernel has not taken yet: tried again every [`TICK`].
#[derive(Default)]
struct Pending {
    elements: Vec<Element>,
    replaced: Vec<IpAddr>,
    /// When each element's alert line was written, for the latency and the give-up.
    at: Vec<Instant>,
}

fn apply(shared: &Shared, socket: &mut Socket, weak: &std::sync::Weak<Sink>, rx: Receiver<Ban>) {
    let metrics = &shared.metrics.bans;
    // The sets' size for the metric: at start (a restart keeps the bans), then every
    // SIZE_EVERY, busy or idle.
    let mut counted: Option<Instant> = None;
    let mut saved = Instant::now();
    let mut save_failing = false;
    let mut pending = Pending::default();
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
        let batch = match next_batch(&rx) {
            Ok(batch) => batch,
            Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if batch.is_empty() && pending.elements.is_empty() {
            continue;
        }
        let Some(sink) = weak.upgrade() else { return };
        let config = sink.config();
        let (elements, replaced) = {
            let mut history = sink.history.lock().unwrap_or_else(|e| e.into_inner());
            plan(&mut history, &batch, &config)
        };
        drop(sink);
        pending.elements.extend(elements);
        pending.replaced.extend(replaced);
        pending.at.extend(batch.iter().map(|b| b.at));
        send(socket, &config.table, &mut pending, metrics);
    }
}

/// What is queued, waiting at most a [`TICK`] for the first (bans that wait to be
/// tried again are, once a tick or with the next new ones), at most [`BATCH`], one
/// ban per address.
fn next_batch(rx: &Receiver<Ban>) -> Result<Vec<Ban>, mpsc::RecvTimeoutError> {
    let mut batch = vec![rx.recv_timeout(TICK)?];
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(ban) => batch.push(ban),
            Err(_) => break,
        }
    }
    batch.sort_by_key(|b| b.ip);
    batch.dedup_by_key(|b| b.ip);
    Ok(batch)
}

/// Sends what is pending; what the kernel refuses stays pending (said once, the
/// cause shown by `status`) until it lands or [`RETRY_FOR`] has passed.
fn send(socket: &mut Socket, table: &str, pending: &mut Pending, metrics: &BanMetrics) {
    match socket.add_replacing(table, &pending.replaced, &pending.elements) {
        Ok(()) => {
            let now = Instant::now();
            for at in &pending.at {
                metrics.added(now.duration_since(*at));
            }
            if metrics.failing().is_some() {
                metrics.set_failing(None);
                tracing::info!(
                    bans = pending.elements.len(),
                    "nftables: bans are added again, those that waited included"
                );
            }
            *pending = Pending::default();
        }
        Err(e) => {
            if metrics.failing().is_none() {
                tracing::warn!(
                    error = %e,
                    bans = pending.elements.len(),
                    "nftables: bans could not be added (the alert lines are written; fail2ban \
                     and CrowdSec still act on them); tried again every second for a minute"
                );
            }
            metrics.set_failing(Some(e.to_string()));
            let expired = pending
                .at
                .iter()
                .take_while(|at| at.elapsed() > RETRY_FOR)
                .count();
            if expired > 0 {
                metrics.failed(expired);
                pending.elements.drain(..expired);
                pending.at.drain(..expired);
                let kept: std::collections::HashSet<IpAddr> =
                    pending.elements.iter().map(|e| e.ip).collect();
                pending.replaced.retain(|ip| kept.contains(ip));
            }
        }
    }
}

/// Watches for the table's removal and rebuilds it with every running ban: Debian's
/// `nftables.service` (re)starts with `flush ruleset`, and a hand-run `nft` can
/// remove it too. Looks again every [`TICK`] while a rebuild fails.
fn heal(shared: &Shared, mut watch: Watch, weak: &std::sync::Weak<Sink>) {
    let mut broken = false;
    loop {
        let Some(table) = weak.upgrade().map(|s| s.config().table) else {
            return;
        };
        let heard = match watch.removed(&table) {
            Ok(heard) => heard,
            Err(e) => {
                tracing::warn!(
                    "nftables: the watch on table inet {table} failed ({e}); looking every second"
                );
                std::thread::sleep(TICK);
                true
            }
        };
        if !heard && !broken {
            continue;
        }
        std::thread::sleep(SETTLE);
        let _ = watch.removed_now(&table);
        let Some(sink) = weak.upgrade() else { return };
        broken = match rebuild_if_cut(shared, &sink) {
            Ok(()) => false,
            Err(e) => {
                if !broken {
                    tracing::warn!(
                        "nftables: table inet {table} was removed and cannot be rebuilt yet ({e}); trying every second"
                    );
                }
                true
            }
        };
    }
}

/// Rebuilds the table if it is not whole, with every ban the history says is running.
fn rebuild_if_cut(shared: &Shared, sink: &Sink) -> Result<(), String> {
    let config = sink.config();
    if crate::nftables::is_whole(config.layout()).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let started = Instant::now();
    crate::nftables::setup(config.layout()).map_err(|e| e.to_string())?;
    let now = crate::clock::unix_now();
    let active = sink
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .active(now);
    let elements: Vec<Element> = active
        .into_iter()
        .map(|a| Element {
            ip: a.ip,
            timeout: a.left,
            comment: a.comment,
        })
        .collect();
    let mut socket = Socket::open().map_err(|e| e.to_string())?;
    for chunk in elements.chunks(BATCH) {
        socket
            .add(&config.table, chunk)
            .map_err(|e| e.to_string())?;
    }
    shared.metrics.bans.rebuilt();
    tracing::warn!(
        "nftables: table inet {} was removed or cut (flush ruleset? a restart of nftables.service?); rebuilt with {} bans in {} ms",
        config.table,
        elements.len(),
        started.elapsed().as_millis()
    );
    Ok(())
}
