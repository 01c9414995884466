//! The parts that run beside the call path — the AMI watcher, the CrowdSec pusher, the
//! kernel bans, the outbound guard's state file — started from the configuration at start and made to follow it at
//! each reload: a table added starts its part, one removed stops it, one changed
//! restarts what must be restarted. None of them can stop another or the call check:
//! a part that cannot start says so once (CRITICAL for the pusher, which means bans
//! not shared) and is tried again every [`RETRY_EVERY`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{AmiConfig, Config, CrowdsecConfig, FraudConfig, NftablesConfig};
use crate::daemon::{Shared, bans, crowdsec, edge, fraud, notify};

/// How often a part that could not start is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// What runs beside the call path. Owned by `serve`'s supervisor task.
#[derive(Default)]
pub struct Parts {
    watcher: Option<Watcher>,
    pusher: Pusher,
    bans: Option<Bans>,
    keeper: Option<Keeper>,
    /// The edge's feeds and country database, while the bans' table is up.
    lists: Option<edge::Lists>,
    /// The LAPI's decisions pulled, while `[crowdsec]` has a bouncer key.
    puller: Option<crate::daemon::pull::Puller>,
}

/// The task that keeps the outbound guard's state file, while `[fraud]` is on.
struct Keeper {
    path: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The AMI watcher's task, and how to stop it.
struct Watcher {
    /// The settings it connected with: a change restarts the connection now.
    connection: AmiConfig,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
enum Pusher {
    #[default]
    Off,
    Running {
        running: crowdsec::Running,
        state_file: std::path::PathBuf,
    },
    /// Could not start (its state file, say); tried again every [`RETRY_EVERY`], from
    /// where the log stood at the first try.
    Waiting {
        since: Instant,
        begin: crowdsec::Begin,
        /// Counts the alerts written meanwhile, for the backlog gauges.
        unsent: Option<Box<crowdsec::Unsent>>,
    },
}

/// The kernel bans while on: the sink every alert is offered to (shared) and its
/// thread, which ends when the sink is dropped.
struct Bans {
    sink: Arc<bans::Sink>,
    /// Held while the bans are on: another daemon then leaves the table alone.
    claim: Option<crate::nftables::Claim>,
}

impl Parts {
    /// Starts what `config` asks for. The pusher first: on a first start it begins at
    /// the end of the log as it is now, before anything can write an alert.
    pub fn start(shared: &Arc<Shared>) -> Parts {
        let config = shared.config();
        let mut parts = Parts::default();
        if let Some(cs) = &config.crowdsec {
            parts.start_pusher(shared, cs);
        }
        match &config.nftables {
            Some(nft) => parts.start_bans(shared, nft, bans::Never::of(&config)),
            None => remove_table(&config.nftables_table, "[nftables] is off"),
        }
        parts.follow_lists(shared, &config);
        parts.follow_puller(shared, &config);
        if let Some(fraud) = &config.fraud {
            parts.start_keeper(shared, fraud, true);
        }
        if let Some(ami) = &config.ami {
            parts.start_watcher(shared, ami);
        }
        follow_notifier(shared, &config);
        parts
    }

    /// Follows a reload from `old` to `new`.
    pub async fn follow(&mut self, shared: &Arc<Shared>, old: &Config, new: &Config) {
        self.follow_pusher(shared, old, new).await;
        self.follow_bans(shared, old, new);
        self.follow_lists(shared, new);
        self.follow_puller(shared, new);
        self.follow_keeper(shared, new).await;
        self.follow_watcher(shared, new).await;
        follow_notifier(shared, new);
    }

    /// Tries again what could not start.
    pub fn retry(&mut self, shared: &Arc<Shared>) {
        if let Pusher::Waiting { since, .. } = self.pusher
            && since.elapsed() >= RETRY_EVERY
            && let Some(cs) = shared.config().crowdsec.clone()
        {
            self.start_pusher(shared, &cs);
        }
        if let Pusher::Waiting {
            unsent: Some(unsent),
            ..
        } = &mut self.pusher
        {
            unsent.scan(
                &shared.config(),
                &shared.this_host,
                &shared.metrics.crowdsec,
            );
        }
    }

    /// At shutdown, once the calls in flight are done: the watcher, then the pusher
    /// (which delivers what the log still holds, briefly). The bans stay in the kernel.
    pub async fn stop(mut self, shared: &Arc<Shared>) {
        self.stop_watcher().await;
        self.stop_pusher(shared).await;
        self.stop_keeper().await;
        *shared.bans.write().unwrap_or_else(|e| e.into_inner()) = None;
        let notifier = shared
            .notifier
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(n) = notifier {
            let _ = tokio::task::spawn_blocking(move || n.stop()).await;
        }
    }

    /// Keeps the guard's state in its `state_file`; `load`: read it from there first (at
    /// start, or when `[fraud]` is switched on), else the state in memory is kept (a new
    /// `state_file` takes the state as it is).
    fn start_keeper(&mut self, shared: &Arc<Shared>, fraud: &FraudConfig, load: bool) {
        let path = fraud.state_file.as_path();
        if load {
            shared.fraud.load(path);
        }
        crate::fraud::number_types::warm_up(&fraud.dial_plan.country_code);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(fraud::keep(shared.clone(), path.to_path_buf(), stopping));
        self.keeper = Some(Keeper {
            path: path.to_path_buf(),
            stop,
            task,
        });
    }

    /// Stops the keeper, which saves once more.
    async fn stop_keeper(&mut self) {
        if let Some(k) = self.keeper.take() {
            let _ = k.stop.send(true);
            let _ = k.task.await;
        }
    }

    async fn follow_keeper(&mut self, shared: &Arc<Shared>, new: &Config) {
        match (&self.keeper, &new.fraud) {
            (None, None) => {}
            (Some(k), Some(f)) if k.path == f.state_file => {}
            (Some(_), None) => {
                self.stop_keeper().await;
                tracing::info!(
                    "fraud: the outbound check is off: [fraud] was switched off (its state file is kept)"
                );
            }
            (None, Some(f)) => self.start_keeper(shared, f, true),
            (Some(_), Some(f)) => {
                self.stop_keeper().await;
                self.start_keeper(shared, f, false);
            }
        }
    }

    fn start_watcher(&mut self, shared: &Arc<Shared>, ami: &AmiConfig) {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(crate::daemon::ami::run(shared.clone(), stopping));
        self.watcher = Some(Watcher {
            connection: ami.clone(),
            stop,
            task,
        });
    }

    async fn stop_watcher(&mut self) {
        if let Some(w) = self.watcher.take() {
            let _ = w.stop.send(true);
            let _ = w.task.await;
        }
    }

    /// A new address, user, secret, login, TLS or ping interval takes a new connection
    /// now; new limits apply to the next event without one (the counts are kept).
    async fn follow_watcher(&mut self, shared: &Arc<Shared>, new: &Config) {
        let same_connection = |w: &Watcher, ami: &AmiConfig| {
            let (a, b) = (&w.connection, ami);
            (
                &a.address,
                &a.username,
                &a.secret,
                a.auth,
                &a.tls,
                a.ping_interval,
            ) == (
                &b.address,
                &b.username,
                &b.secret,
                b.auth,
                &b.tls,
                b.ping_interval,
            )
        };
        match (&self.watcher, &new.ami) {
            (None, None) => {}
            (Some(w), Some(ami)) if same_connection(w, ami) => {}
            (Some(_), None) => {
                self.stop_watcher().await;
                tracing::info!("AMI watcher stopped: [ami] was removed");
            }
            (_, Some(ami)) => {
                self.stop_watcher().await;
                self.start_watcher(shared, ami);
            }
        }
    }

    fn start_pusher(&mut self, shared: &Arc<Shared>, cs: &CrowdsecConfig) {
        let (waited, begin, unsent) = match std::mem::take(&mut self.pusher) {
            Pusher::Waiting {
                since,
                begin,
                unsent,
            } => (Some(since), begin, unsent),
            _ => (None, crowdsec::Begin::End, None),
        };
        match crowdsec::spawn(shared.clone(), cs, &begin) {
            Ok(running) => {
                *shared.crowdsec.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(running.outbox.clone());
                shared.metrics.crowdsec.pusher_running(true);
                match waited {
                    Some(since) => tracing::info!(
                        lapi = cs.lapi_url,
                        "CrowdSec pusher started after {:.0} s; the alerts written meanwhile follow",
                        since.elapsed().as_secs_f64()
                    ),
                    None => tracing::info!(lapi = cs.lapi_url, "pushing alerts to CrowdSec"),
                }
                self.pusher = Pusher::Running {
                    running,
                    state_file: cs.state_file.clone(),
                };
            }
            Err(e) => {
                shared.metrics.crowdsec.pusher_running(false);
                if waited.is_none() {
                    crate::critical!(
                        "CrowdSec pusher cannot start: {:#}; calls are still judged and logged, bans are not shared until it starts (tried again every {} s)",
                        anyhow::Error::from(e),
                        RETRY_EVERY.as_secs()
                    );
                }
                let log = shared.config().log_file.clone();
                let begin = match waited {
                    Some(_) => begin,
                    None => crowdsec::Begin::here(&log),
                };
                let unsent =
                    unsent.or_else(|| crowdsec::Unsent::new(&log, &begin).ok().map(Box::new));
                self.pusher = Pusher::Waiting {
                    since: waited.unwrap_or_else(Instant::now),
                    begin,
                    unsent,
                };
            }
        }
    }

    async fn stop_pusher(&mut self, shared: &Arc<Shared>) {
        *shared.crowdsec.write().unwrap_or_else(|e| e.into_inner()) = None;
        if let Pusher::Running { running, .. } = std::mem::take(&mut self.pusher) {
            let _ = tokio::task::spawn_blocking(move || running.stop()).await;
        }
        shared.metrics.crowdsec.pusher_running(false);
        // No pusher, no count: the gauges say nothing rather than something stale.
        shared.metrics.crowdsec.restart_backlog();
    }

    async fn follow_pusher(&mut self, shared: &Arc<Shared>, old: &Config, new: &Config) {
        let restart = match (&new.crowdsec, &self.pusher) {
            (None, Pusher::Off) => return,
            (None, _) => {
                self.stop_pusher(shared).await;
                tracing::info!(
                    "CrowdSec pushing stopped: [crowdsec] was removed; alerts not yet accepted stay in the alert log for when it is back"
                );
                return;
            }
            (Some(_), Pusher::Off) => true,
            // Tried again on its own schedule, from where the log stood.
            (Some(_), Pusher::Waiting { .. }) => false,
            // Where it keeps its place, or which log it follows: a pusher of its own.
            (Some(cs), Pusher::Running { state_file, .. }) => {
                *state_file != cs.state_file || old.log_file != new.log_file
            }
        };
        if restart {
            self.stop_pusher(shared).await;
            self.pusher = Pusher::Off;
            let cs = new.crowdsec.clone().expect("matched");
            self.start_pusher(shared, &cs);
        }
    }

    fn start_bans(&mut self, shared: &Arc<Shared>, nft: &NftablesConfig, never: bans::Never) {
        if let Err(e) = crate::nftables::setup(nft.layout()) {
            tracing::warn!(
                "nftables bans off: {e} (the unit grants CAP_NET_ADMIN); serving with the alert log alone"
            );
            return;
        }
        let sink = Arc::new(bans::Sink::new(nft.clone(), never.clone()));
        let claim = crate::nftables::claim(&nft.table).ok().flatten();
        if claim.is_none() {
            tracing::info!(
                "nftables: another running extsecurity daemon uses table inet {} too",
                nft.table
            );
        }
        match bans::spawn(shared.clone(), &sink) {
            Ok(_) => {
                *shared.bans.write().unwrap_or_else(|e| e.into_inner()) = Some(sink.clone());
                self.bans = Some(Bans { sink, claim });
                tracing::info!(
                    table = nft.table,
                    "nftables bans on: ports {:?} (from {})",
                    nft.ports,
                    nft.ports_from
                );
                never.say(&shared.config().trusted_networks);
            }
            Err(e) => tracing::warn!("nftables bans off: cannot open netlink: {e}"),
        }
    }

    fn follow_bans(&mut self, shared: &Arc<Shared>, old: &Config, new: &Config) {
        let never = bans::Never::of(new);
        match (&old.nftables, &new.nftables, &self.bans) {
            (_, None, Some(_)) => {
                self.stop_bans(shared);
                remove_table(&new.nftables_table, "[nftables] was switched off");
            }
            (_, None, None) => {}
            (_, Some(nft), None) => self.start_bans(shared, nft, never),
            (Some(before), Some(nft), Some(bans)) if before == nft => {
                bans.sink.update(nft.clone(), never)
            }
            (_, Some(nft), Some(bans)) => match crate::nftables::setup(nft.layout()) {
                Ok(()) => {
                    let previous = bans.sink.config();
                    bans.sink.update(nft.clone(), never);
                    if previous.table != nft.table {
                        // Our claim moves with the name, or the old table would
                        // look in use by another daemon: ourselves.
                        let claim = crate::nftables::claim(&nft.table).ok().flatten();
                        if let Some(bans) = self.bans.as_mut() {
                            bans.claim = claim;
                        }
                        remove_table(&previous.table, "nftables.table was renamed");
                    }
                    tracing::info!(
                        table = nft.table,
                        "nftables: ruleset rewritten (ports {:?}); new bans last {} s, those made before keep theirs",
                        nft.ports,
                        nft.ban.as_secs()
                    );
                }
                Err(e) => tracing::warn!(
                    "nftables: the new settings were refused ({e}); the running ruleset is kept (a changed max_elements needs the table deleted: nft delete table inet {})",
                    bans.sink.config().table
                ),
            },
        }
    }

    /// Starts, restarts or stops the edge's lists as `[edge]` says; the same settings
    /// (a SIGHUP) read the database and ask the feeds again.
    fn follow_lists(&mut self, shared: &Arc<Shared>, config: &Config) {
        let wanted = match (&config.nftables, &self.bans) {
            (Some(nft), Some(_)) => nft.edge.as_ref().map(|e| (e, nft.table.as_str())),
            _ => None,
        };
        if let (Some((e, table)), Some(lists)) = (wanted, &self.lists)
            && lists.config == *e
            && lists.table == table
        {
            lists.again();
            return;
        }
        let before = self.lists.take();
        match wanted {
            Some((e, table)) => self.lists = edge::Lists::start(shared, e, table),
            None => *shared.edge.lock().unwrap_or_else(|e| e.into_inner()) = edge::Seen::default(),
        }
        if let Some(old) = before
            && self.lists.is_none()
        {
            // Lists no longer wanted: what they held no longer drops anything.
            let empty = crate::edge::Networks::default();
            for set in [
                crate::nftables::EdgeSet::Feed,
                crate::nftables::EdgeSet::Country,
            ] {
                let _ = crate::nftables::fill(&old.table, set, &empty);
            }
            *shared.edge.lock().unwrap_or_else(|e| e.into_inner()) = edge::Seen::default();
        }
    }

    /// Starts, restarts or stops pulling the LAPI's decisions as `[crowdsec]` says.
    fn follow_puller(&mut self, shared: &Arc<Shared>, config: &Config) {
        let wanted = config.crowdsec.as_ref().filter(|c| c.bouncer_key.is_some());
        if self.puller.as_ref().map(|p| &p.config) == wanted {
            return;
        }
        self.puller = None;
        *shared.pulled.lock().unwrap_or_else(|e| e.into_inner()) = Default::default();
        if let Some(cs) = wanted {
            self.puller = crate::daemon::pull::Puller::start(shared, cs);
        }
    }

    fn stop_bans(&mut self, shared: &Arc<Shared>) {
        *shared.bans.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.bans = None;
    }
}

/// Removes our table and the bans it holds, saying so when there was one.
/// Starts, restarts or stops the notifier as `[notify]` says. A change of its settings
/// starts a new one; what the old one still held is sent by it on the way out.
fn follow_notifier(shared: &Arc<Shared>, config: &Config) {
    let mut slot = shared.notifier.write().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().map(|n| &n.config) == config.notify.as_ref() {
        return;
    }
    let old = slot.take();
    if let Some(notify) = &config.notify {
        *slot = Some(notify::Notifier::start(
            notify.clone(),
            shared.metrics.notify.clone(),
            &config.log_file,
        ));
        tracing::info!(
            "notify: {}",
            [
                notify
                    .smtp
                    .as_ref()
                    .map(|s| format!("mail to {}", s.to.join(", "))),
                notify.webhook_url.as_ref().map(|_| "webhook".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        );
    }
    drop(slot);
    if let Some(old) = old {
        std::thread::spawn(move || old.stop());
    }
}

fn remove_table(table: &str, why: &str) {
    match crate::nftables::remove(table) {
        Ok(Some(bans)) => {
            tracing::info!("{why}: removed table inet {table} with its drop rule and {bans} bans")
        }
        Ok(None) => {}
        Err(e @ crate::nftables::NftError::InUse(_)) => tracing::info!("{why}: {e}"),
        Err(e) => tracing::debug!("{why}: table inet {table} not checked: {e}"),
    }
}
