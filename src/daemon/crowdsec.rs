//! Pushing alerts to a CrowdSec LAPI (design.md §3c) with the alert log as the queue.
//!
//! The pusher reads the `ERROR` lines appended to the alert log — by this daemon or by
//! any `extsecurity` process writing the same log — following logrotate's moves
//! ([`crate::follow`]), and keeps its place in `crowdsec.state_file`, which advances
//! only past batches the LAPI accepted. So an outage of any length loses no alert (the
//! log holds them, a full disk aside), a restart resumes where the last accepted batch
//! ended, and memory holds one batch whatever the backlog. A retried batch may reach
//! the LAPI twice (a POST that failed may have been stored): a ban twice is harmless.
//!
//! It runs on a thread of its own: file reads and HTTP calls block, and none of it may
//! make a call wait. The daemon nudges it after writing an alert; lines other processes
//! write are seen within [`POLL`]. While the LAPI is down it is probed every
//! [`PROBE_EVERY`] with a bare TCP connect, so the first delivery comes within a
//! fraction of a second of its return instead of after a long backoff.
//!
//! Honest signals: the backlog (alerts in the log not yet accepted) and its age are
//! gauges a second fresh at most, and an outage is one WARNING when it has lasted
//! [`WARN_AFTER`] — a single `database is locked` answered right on the retry is not
//! one — and one INFO when it ends, each with the LAPI's reason in full.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, CrowdsecConfig};
use crate::crowdsec::{Alert, Client, LapiError};
use crate::daemon::Shared;
use crate::daemon::bans::Never;
use crate::daemon::metrics::CrowdsecMetrics;
use crate::daemon::this_host::ThisHost;
use crate::follow::{Follower, Position, Saved};
use crate::state_file::StateFile;

/// Lines written by other processes are seen within this.
const POLL: Duration = Duration::from_secs(1);
/// While the LAPI is unreachable, how often to try a TCP connect to it.
const PROBE_EVERY: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Backoff after an answered failure (5xx, refused login): from this, doubling...
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// ...up to this (a LAPI that answers but fails — its database down, say — is back
/// within this of its database); an unreachable LAPI is also tried this often
/// whatever the probe says.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Failures shorter than this are retried quietly (counted, logged at debug).
const WARN_AFTER: Duration = Duration::from_secs(2);
/// How often a position that only moved past non-alert lines is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// At shutdown, how long to go on delivering what the log still holds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's handle on the pusher thread: wake it, stop it.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<Wake>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Wake {
    nudged: bool,
    closing: bool,
}

impl Outbox {
    /// An alert line was written: read the log now rather than at the next poll.
    pub fn nudge(&self) {
        self.lock().nudged = true;
        self.cond.notify_one();
    }

    /// No more alerts will be written (the daemon has finished its calls): deliver
    /// what the log holds, for [`DRAIN_TIMEOUT`] at most, save the position and end.
    pub fn close(&self) {
        self.lock().closing = true;
        self.cond.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wake> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Waits up to `timeout`, or until nudged (if `nudges`) or closed. Whether closing.
    fn wait(&self, timeout: Duration, nudges: bool) -> bool {
        let mut wake = self.lock();
        let deadline = Instant::now() + timeout;
        loop {
            if wake.closing || (nudges && wake.nudged) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            wake = match self.cond.wait_timeout(wake, left) {
                Ok((w, _)) => w,
                Err(e) => e.into_inner().0,
            };
        }
        if nudges {
            wake.nudged = false;
        }
        wake.closing
    }
}

/// Why the pusher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "crowdsec.state_file {} cannot be used (its folder must exist and be writable by the daemon; the shipped unit's StateDirectory= makes /var/lib/extsecurity)",
        path.display()
    )]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "crowdsec.state_file {} does not hold a position this daemon wrote (remove it to start at the end of the alert log)",
        path.display()
    )]
    Garbled {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the alert log {} for the CrowdSec pusher", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the CrowdSec pusher thread")]
    Thread(#[source] std::io::Error),
}

/// A running pusher: its wake-up and its thread.
pub struct Running {
    pub outbox: Arc<Outbox>,
    pub thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Closes the outbox and waits for the thread (it delivers what it can for
    /// [`DRAIN_TIMEOUT`], saves its position and ends). Blocks.
    pub fn stop(self) {
        self.outbox.close();
        let _ = self.thread.join();
    }
}

/// Where a pusher with no saved position begins.
#[derive(Debug, Clone)]
pub enum Begin {
    /// At the end of the log as it is now: a first start.
    End,
    /// Where the log stood, and when, as an earlier attempt to start failed (`None`:
    /// it did not exist then), so that the alerts written while it could not run are
    /// pushed too.
    At(Option<Position>, jiff::Timestamp),
}

impl Begin {
    /// The log's end now, to begin from later.
    pub fn here(log: &Path) -> Begin {
        let at = Follower::at_end(log).ok().and_then(|f| f.position());
        Begin::At(at, jiff::Timestamp::now())
    }

    /// A reader of `log` from here.
    fn follower(&self, log: &Path) -> std::io::Result<Follower> {
        match self {
            Begin::End => Follower::at_end(log),
            Begin::At(Some(at), when) => Ok(Follower::resume(log, at, Some(*when))?.0),
            Begin::At(None, _) => Follower::from_start(log),
        }
    }
}

/// The alerts written since a pusher that cannot start (its state file, say) was to
/// begin: counted while it waits, so the backlog gauges and `status` go on saying what
/// it will push once it starts, instead of 0.
pub struct Unsent {
    backlog: Backlog,
}

/// Lines one [`Unsent::scan`] reads at most: a long backlog is counted over several
/// scans, and none holds up the task that calls it.
const UNSENT_LINES_PER_SCAN: usize = 200_000;

impl Unsent {
    pub fn new(log: &Path, begin: &Begin) -> std::io::Result<Unsent> {
        Ok(Unsent {
            backlog: Backlog::reading(begin.follower(log)?),
        })
    }

    /// Counts what was appended since the last scan; the first alert found dates the
    /// backlog's age.
    pub fn scan(&mut self, config: &Config, this_host: &ThisHost, metrics: &CrowdsecMetrics) {
        let mut found = 0;
        let mut first = None;
        let _ = self.backlog.count_some(
            config,
            this_host,
            &mut found,
            &mut first,
            UNSENT_LINES_PER_SCAN,
        );
        metrics.found(found);
        if metrics.backlog_age() == 0.0
            && let Some(at) = first
        {
            metrics.oldest(Some(at));
        }
    }
}

/// Finds where to resume (the saved position, else `begin`), proves the position file
/// writable, and starts the pusher thread.
pub fn spawn(
    shared: Arc<Shared>,
    cs: &CrowdsecConfig,
    begin: &Begin,
) -> Result<Running, StartError> {
    let log = shared.config().log_file.clone();
    let state = StateFile::new(&cs.state_file);
    let state_error = |source| StartError::State {
        path: cs.state_file.clone(),
        source,
    };
    let log_error = |source| StartError::Log {
        path: log.clone(),
        source,
    };
    // By hand, without the unit's StateDirectory=: make the last folder, as a daemon
    // does with its own state folder (its parent must exist).
    if let Some(folder) = cs.state_file.parent().filter(|f| !f.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(folder);
    }
    let saved = state
        .load::<Saved>()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::InvalidData => StartError::Garbled {
                path: cs.state_file.clone(),
                source,
            },
            _ => state_error(source),
        })?;
    state.probe().map_err(state_error)?;
    let follower = match saved.filter(|s| s.log == log) {
        Some(saved) => {
            let (follower, warning) =
                Follower::resume(&log, &saved.position, state.saved_at()).map_err(log_error)?;
            if let Some(why) = warning {
                tracing::warn!("CrowdSec: {why}");
            }
            follower
        }
        None => begin.follower(&log).map_err(log_error)?,
    };
    let scanner = Backlog::new(&log, &follower).map_err(log_error)?;
    shared.metrics.crowdsec.restart_backlog();
    let outbox = Arc::new(Outbox::default());
    let mut pusher = Pusher {
        shared: shared.clone(),
        outbox: outbox.clone(),
        file_head: None,
        log,
        follower,
        state,
        saved_at: Instant::now(),
        save_failing: false,
        saved_some: false,
        client: None,
        outage: Outage::default(),
        accepted: false,
        backlog: scanner,
    };
    pusher.save().map_err(state_error)?;
    let thread = std::thread::Builder::new()
        .name("crowdsec".into())
        .spawn(move || pusher.run())
        .map_err(StartError::Thread)?;
    Ok(Running { outbox, thread })
}

/// What would keep a pusher from starting with `cs`, found without changing anything:
/// `check-config` and `crowdsec-check` say what `serve` would meet. The second value:
/// only the current user's permissions stood in the way (another user may be fine).
pub fn state_problem(cs: &CrowdsecConfig) -> Option<(String, bool)> {
    let state = StateFile::new(&cs.state_file);
    let said = |e: StartError| {
        let permission = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
        (format!("{:#}", anyhow::Error::from(e)), permission)
    };
    if let Err(source) = state.load::<Saved>() {
        return Some(said(match source.kind() {
            std::io::ErrorKind::InvalidData => StartError::Garbled {
                path: cs.state_file.clone(),
                source,
            },
            _ => StartError::State {
                path: cs.state_file.clone(),
                source,
            },
        }));
    }
    let folder = cs.state_file.parent()?;
    // A missing last folder is made by serve, if its parent lets it (run by hand).
    let at = match folder.is_dir() {
        true => folder,
        false => folder.parent()?,
    };
    let checked = match at.is_dir() {
        true => crate::alert_log::can_create_in(at),
        false => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    checked.err().map(|source| {
        said(StartError::State {
            path: cs.state_file.clone(),
            source,
        })
    })
}

/// How many alerts the log holds after the saved position (what the next start
/// pushes first), for `crowdsec-check`; `None` before any position was saved. Reads
/// the log through without changing anything.
pub fn waiting(config: &Config, cs: &CrowdsecConfig) -> std::io::Result<Option<u64>> {
    let Some(saved) = StateFile::new(&cs.state_file).load::<Saved>()? else {
        return Ok(None);
    };
    if saved.log != config.log_file {
        return Ok(None);
    }
    let state = StateFile::new(&cs.state_file);
    let (follower, _) = Follower::resume(&config.log_file, &saved.position, state.saved_at())?;
    let mut backlog = Backlog::reading(follower.without_grace());
    let mut found = 0;
    backlog.count(config, &ThisHost::default(), &mut found)?;
    Ok(Some(found))
}

/// Alerts the log holds that the pusher has not settled yet: a second reader of the
/// same files that only counts, from where the pusher started.
struct Backlog {
    follower: Follower,
    line: Vec<u8>,
    /// The alerts it counted in each file, by the file's first line, oldest first: what
    /// the pusher has not read of a file deleted before it got there is lost, and this
    /// says how much. Files the pusher has gone past are dropped.
    files: std::collections::VecDeque<(String, u64)>,
}

impl Backlog {
    fn new(log: &Path, pusher: &Follower) -> std::io::Result<Backlog> {
        let follower = match pusher.position() {
            // Where the pusher stands now (a file still empty is the newest).
            Some(at) => Follower::resume(log, &at, Some(jiff::Timestamp::now()))?.0,
            None => Follower::at_end(log)?,
        };
        Ok(Backlog::reading(follower))
    }

    fn reading(follower: Follower) -> Backlog {
        Backlog {
            follower,
            line: Vec::with_capacity(512),
            files: std::collections::VecDeque::new(),
        }
    }

    /// The pusher moved from the file begun with `from` to the one begun with `to`:
    /// the alerts counted in files between them, which it never read (deleted before
    /// it got there).
    fn skipped(&mut self, from: &str, to: &str) -> u64 {
        let Some(start) = self.files.iter().position(|(h, _)| h == from) else {
            return 0;
        };
        let Some(end) = self.files.iter().position(|(h, _)| h == to) else {
            return 0;
        };
        let lost = self
            .files
            .range(start + 1..end.max(start + 1))
            .map(|(_, n)| n)
            .sum();
        self.files.drain(..end);
        lost
    }

    /// Counts the alerts appended since the last scan (a read error ends the scan;
    /// the next one goes on from there).
    fn scan(&mut self, config: &Config, this_host: &ThisHost, metrics: &CrowdsecMetrics) {
        let mut found = 0;
        let _ = self.count(config, this_host, &mut found);
        metrics.found(found);
    }

    /// Adds to `found` the alerts to push from here to the end of the log.
    fn count(
        &mut self,
        config: &Config,
        this_host: &ThisHost,
        found: &mut u64,
    ) -> std::io::Result<()> {
        self.count_some(config, this_host, found, &mut None, usize::MAX)
    }

    /// [`count`](Self::count) over `lines` lines at most; `first` gets the time of the
    /// first alert found, if it has none.
    fn count_some(
        &mut self,
        config: &Config,
        this_host: &ThisHost,
        found: &mut u64,
        first: &mut Option<jiff::Timestamp>,
        lines: usize,
    ) -> std::io::Result<()> {
        for _ in 0..lines {
            if !self.follower.next_line(&mut self.line)? {
                break;
            }
            let pushed = pushable(&self.line, config, this_host);
            if first.is_none() {
                *first = pushed.as_ref().map(|a| a.at);
            }
            let alert = u64::from(pushed.is_some());
            *found += alert;
            let head = self.follower.head().unwrap_or_default();
            match self.files.back_mut() {
                Some((h, n)) if h == head => *n += alert,
                _ => self.files.push_back((head.to_string(), alert)),
            }
        }
        Ok(())
    }
}

/// The alert a log line asks to push: an `ERROR` line whose address may be pushed
/// (the LAPI's own whitelist does not apply to pushed alerts, design.md §3c).
fn pushable(line: &[u8], config: &Config, this_host: &ThisHost) -> Option<Alert> {
    Alert::from_log_line(line).filter(|a| !never_pushed(config, this_host, a.ip))
}

/// Trusted networks, and what the kernel bans never ban (`bans::Never`): loopback,
/// this host, the AMI and LAPI hosts. A ban pushed for one of them would reach every
/// firewall bouncer of the fleet, this host's own among them: a local SIP proxy's
/// `127.0.0.1` alerted on would cut the PBX off from itself.
fn never_pushed(config: &Config, this_host: &ThisHost, ip: IpAddr) -> bool {
    config.is_trusted(ip)
        || ip.is_unspecified()
        || this_host.holds(ip)
        || Never::peers(config).contains(&ip)
}

struct Pusher {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    /// The first line of the file the pusher reads, to notice files skipped.
    file_head: Option<String>,
    log: PathBuf,
    follower: Follower,
    state: StateFile,
    saved_at: Instant,
    save_failing: bool,
    /// Whether the state file names a position yet.
    saved_some: bool,
    client: Option<Client>,
    outage: Outage,
    backlog: Backlog,
    /// The LAPI took the last batch: a 400 for a lone alert after it is that
    /// alert's fault, not the LAPI's.
    accepted: bool,
}

enum Sent {
    /// Accepted, rejected for good or expired: the position may move past it.
    Settled,
    /// The daemon is stopping while the batch could not be delivered.
    Stopped,
    /// Every alert of it answered 400 and none was taken: whose fault is for the
    /// caller to say ([`Pusher::deliver`]).
    Refused(Vec<Alert>),
}

/// Times a batch the LAPI refuses whole is tried again before its alerts are dropped
/// (with the backoff, about a minute and a half).
const MAX_REFUSED_TRIES: u32 = 20;

impl Pusher {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn metrics(&self) -> &CrowdsecMetrics {
        &self.shared.metrics.crowdsec
    }

    /// Reads, sends, saves, until the daemon closes the outbox and what the log holds
    /// is delivered (or [`DRAIN_TIMEOUT`] passed, or the LAPI is failing).
    fn run(mut self) {
        let mut drain_until: Option<Instant> = None;
        let stopped_with_batch = loop {
            self.scan();
            if drain_until.is_some_and(|t| Instant::now() >= t) {
                break false;
            }
            let config = self.shared.config();
            let Some(cs) = config.crowdsec.clone() else {
                self.metrics().oldest(None);
                if self.outbox().wait(POLL, true) {
                    break false;
                }
                continue;
            };
            self.save_a_new_log();
            match self.next_batch(&config, cs.batch_size) {
                Some(alerts) => match self.deliver(&cs, alerts) {
                    // The follower stands just after the batch: the new position.
                    Sent::Settled | Sent::Refused(_) => self.save_or_warn(),
                    // It stands past a batch not delivered: keep the saved one.
                    Sent::Stopped => break true,
                },
                None if drain_until.is_some() => break false,
                None => {
                    if self.outbox().wait(POLL, true) {
                        drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                    }
                }
            }
            if drain_until.is_none() && self.outbox().is_closing() {
                drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
            }
        };
        if !stopped_with_batch {
            self.save_or_warn();
        }
        self.scan();
        let left = self.metrics().backlog();
        if left > 0 {
            tracing::warn!(
                "CrowdSec: stopping with {left} alerts not yet accepted; they stay in the alert log and are pushed at the next start"
            );
        }
    }

    fn scan(&mut self) {
        let config = self.shared.config();
        self.backlog.scan(
            &config,
            &self.shared.this_host,
            &self.shared.metrics.crowdsec,
        );
    }

    /// A log that did not exist at start: its start is where a restart must resume,
    /// saved before any of its alerts is in hand.
    fn save_a_new_log(&mut self) {
        if self.saved_some {
            return;
        }
        if let Err(e) = self.follower.open_if_there() {
            tracing::debug!("CrowdSec: alert log not readable yet: {e}");
        }
        if self.follower.position().is_some() {
            self.save_or_warn();
        }
    }

    /// The next batch of alerts, or `None` when the log has none for now (the
    /// position past other lines is then saved now and then) or cannot be read.
    fn next_batch(&mut self, config: &Config, max: usize) -> Option<Vec<Alert>> {
        match self.read_batch(config, max) {
            Ok(alerts) if !alerts.is_empty() => {
                self.metrics().oldest(alerts.first().map(|a| a.at));
                Some(alerts)
            }
            Ok(_) => {
                self.metrics().oldest(None);
                if self.saved_at.elapsed() >= SAVE_EVERY {
                    self.save_or_warn();
                }
                None
            }
            Err(e) => {
                let why = format!("cannot read the alert log {}: {e}", self.log.display());
                self.failed(why);
                None
            }
        }
    }

    /// Up to `max` alerts from the log; lines that are not alerts are passed over.
    fn read_batch(&mut self, config: &Config, max: usize) -> std::io::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        let mut line = Vec::with_capacity(512);
        while alerts.len() < max && self.follower.next_line(&mut line)? {
            self.note_file();
            alerts.extend(pushable(&line, config, &self.shared.this_host));
        }
        Ok(alerts)
    }

    /// After each line read: a new file begun says whether files were skipped (deleted
    /// before the pusher got to them), and how many alerts they held are lost.
    fn note_file(&mut self) {
        let head = self.follower.head().unwrap_or_default();
        if self.file_head.as_deref() == Some(head) {
            return;
        }
        if let Some(previous) = self.file_head.replace(head.to_string()) {
            let lost = self.backlog.skipped(&previous, head);
            if lost > 0 {
                self.metrics().lost(lost);
                tracing::warn!(
                    "CrowdSec: {lost} alerts were in rotated files deleted before they could be pushed; they are lost (count them in the LAPI's absence: keep more rotations)"
                );
            }
        }
    }

    /// Sends a batch until it settles. A LAPI that answers 400 to every alert of a
    /// batch and takes none (a broken proxy, an incompatible LAPI) is failing, as an
    /// unreachable one is: the batch is kept and tried again, said once, counted in
    /// `failing`, rather than dropped alert by alert with an ERROR each. Only a 400
    /// isolated to some alerts (others taken, or the last batch taken) drops them.
    fn deliver(&mut self, cs: &CrowdsecConfig, alerts: Vec<Alert>) -> Sent {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            match self.send(cs, alerts.clone()) {
                Sent::Refused(refused)
                    if (alerts.len() == 1 && self.accepted) || tries >= MAX_REFUSED_TRIES =>
                {
                    self.drop_refused("the LAPI answered 400", &refused);
                    return Sent::Settled;
                }
                Sent::Refused(refused) => {
                    tries += 1;
                    self.accepted = false;
                    self.metrics().retried();
                    self.failed(format!(
                        "the LAPI refuses every alert (400 for each of the {} of a batch, none taken); kept and tried again",
                        refused.len()
                    ));
                    if !self.wait_to_retry(cs, false, backoff) {
                        return Sent::Stopped;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                done => return done,
            }
        }
    }

    /// Alerts the LAPI will never take: counted, named in one ERROR, not sent again.
    fn drop_refused(&mut self, why: &str, alerts: &[Alert]) {
        self.metrics().rejected(alerts.len());
        tracing::error!(
            "CrowdSec: {why}; {} alert(s) dropped, not sent again: {}",
            alerts.len(),
            alerts
                .iter()
                .map(|a| format!("{} {}", a.ip, a.reason))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// Sends `alerts` until the LAPI accepts or rejects them, or the daemon stops. A
    /// batch answered 400 (or 413, a proxy's "too large") is sent again in halves, so
    /// that one alert the LAPI cannot take costs that alert alone, and a 400 that was
    /// transient costs nothing; alerts refused while others were taken are dropped.
    fn send(&mut self, cs: &CrowdsecConfig, alerts: Vec<Alert>) -> Sent {
        let mut backoff = FIRST_BACKOFF;
        let mut cs = cs.clone();
        let mut refused_once = false;
        loop {
            let now = jiff::Timestamp::now();
            let (live, expired): (Vec<Alert>, Vec<Alert>) = alerts
                .iter()
                .cloned()
                .partition(|a| !a.remaining(cs.ban_length, now).is_zero());
            self.metrics().expired(expired.len());
            if live.is_empty() {
                return Sent::Settled;
            }
            let result = self.client_for(&cs).push(&live, now);
            match result {
                Ok(()) => {
                    self.metrics().delivered(live.len());
                    self.accepted = true;
                    self.recovered();
                    return Sent::Settled;
                }
                Err(LapiError::Rejected {
                    status: 400 | 413, ..
                }) if live.len() > 1 => {
                    let half = live.len() / 2;
                    let (first, second) = (live[..half].to_vec(), live[half..].to_vec());
                    let (mut refused, mut taken) = (Vec::new(), false);
                    for part in [first, second] {
                        match self.send(&cs, part) {
                            Sent::Stopped => return Sent::Stopped,
                            Sent::Settled => taken = true,
                            Sent::Refused(r) => refused.extend(r),
                        }
                    }
                    return match (refused.is_empty(), taken) {
                        (true, _) => Sent::Settled,
                        (false, true) => {
                            self.drop_refused("the LAPI answered 400 to these alone", &refused);
                            Sent::Settled
                        }
                        (false, false) => Sent::Refused(refused),
                    };
                }
                // One alert refused: once more after a pause (a 400 can be a proxy's
                // passing fault), then the caller says whose fault it is.
                Err(LapiError::Rejected { status: 400, .. }) if !refused_once => {
                    refused_once = true;
                    if !self.wait_to_retry(&cs, false, backoff) {
                        return Sent::Stopped;
                    }
                }
                Err(LapiError::Rejected { status: 400, .. }) => return Sent::Refused(live),
                Err(e @ LapiError::Rejected { .. }) => {
                    self.drop_refused(&e.to_string(), &live);
                    return Sent::Settled;
                }
                Err(e) => {
                    let unreachable = matches!(e, LapiError::Unreachable { .. });
                    self.metrics().retried();
                    self.failed(e.to_string());
                    if !self.wait_to_retry(&cs, unreachable, backoff) {
                        return Sent::Stopped;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // A SIGHUP may have changed the LAPI, the machine or the password.
                    match self.shared.config().crowdsec.clone() {
                        Some(now) => cs = now,
                        None => return Sent::Stopped,
                    }
                }
            }
        }
    }

    /// Waits before the next attempt: `backoff`, or for an unreachable LAPI until a
    /// probe connects. Keeps the backlog counted meanwhile. `false` when the daemon is
    /// stopping: the batch stays in the log for the next start.
    fn wait_to_retry(&mut self, cs: &CrowdsecConfig, unreachable: bool, backoff: Duration) -> bool {
        let until = Instant::now() + if unreachable { MAX_BACKOFF } else { backoff };
        loop {
            self.scan();
            self.say_outage();
            // A step before any probe: never two attempts without a pause between.
            let step = PROBE_EVERY.min(until.saturating_duration_since(Instant::now()));
            if self.outbox().wait(step, false) || self.outbox().is_closing() {
                return false;
            }
            if Instant::now() >= until {
                return true;
            }
            if unreachable && crate::crowdsec::probe(&cs.lapi_url, PROBE_TIMEOUT) {
                return true;
            }
        }
    }

    /// A client for `cs`, logged in again when the config changed.
    fn client_for(&mut self, cs: &CrowdsecConfig) -> &mut Client {
        if self.client.as_ref().is_none_or(|c| c.config() != cs) {
            self.client = Some(Client::new(cs.clone()));
        }
        self.client.as_mut().expect("set above")
    }

    fn failed(&mut self, why: String) {
        tracing::debug!("CrowdSec: push failed: {why}");
        self.outage.failed(why, Instant::now());
        self.say_outage();
    }

    /// One WARNING once an outage has lasted [`WARN_AFTER`].
    fn say_outage(&mut self) {
        let metrics = &self.shared.metrics.crowdsec;
        if let Some(why) = self.outage.news(Instant::now()) {
            metrics.failing(true);
            tracing::warn!(
                backlog = metrics.backlog(),
                "CrowdSec: pushing fails: {why}; alerts wait in the alert log and are retried"
            );
            self.shared.notify(crate::notify::Event::LinkDown {
                link: "CrowdSec LAPI".into(),
                why: why.to_string(),
            });
        }
    }

    /// One INFO when a said outage ends.
    fn recovered(&mut self) {
        let metrics = &self.shared.metrics.crowdsec;
        if let Some(episode) = self.outage.ended() {
            metrics.failing(false);
            self.shared.notify(crate::notify::Event::LinkUp {
                link: "CrowdSec LAPI".into(),
            });
            tracing::info!(
                backlog = metrics.backlog(),
                "CrowdSec: the LAPI takes alerts again after {:.1} s and {} failed attempts (last: {}); the backlog follows",
                episode.since.elapsed().as_secs_f64(),
                episode.failures,
                episode.last
            );
        }
    }

    /// Saves the follower's position: call it only when no batch is in hand.
    fn save(&mut self) -> std::io::Result<()> {
        self.saved_at = Instant::now();
        let Some(position) = self.follower.position() else {
            return Ok(());
        };
        self.state.save(&Saved {
            log: self.log.clone(),
            position,
        })?;
        self.saved_some = true;
        Ok(())
    }

    /// A position that cannot be saved costs only duplicates after a restart: said
    /// once until a save succeeds again.
    fn save_or_warn(&mut self) {
        match self.save() {
            Ok(()) => self.save_failing = false,
            Err(e) if !std::mem::replace(&mut self.save_failing, true) => tracing::warn!(
                path = %self.state.path().display(),
                "CrowdSec: cannot save the position in the alert log ({e}); a restart would push some alerts again"
            ),
            Err(_) => {}
        }
    }
}

/// An episode of failed pushes: said once when it has lasted [`WARN_AFTER`], and once
/// when it ends if it was said. Pure: the pusher passes the time and does the saying.
#[derive(Debug, Default)]
struct Outage {
    current: Option<Episode>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    failures: u64,
    last: String,
    warned: bool,
}

impl Outage {
    fn failed(&mut self, why: String, now: Instant) {
        let episode = self.current.get_or_insert_with(|| Episode {
            since: now,
            failures: 0,
            last: String::new(),
            warned: false,
        });
        episode.failures += 1;
        episode.last = why;
    }

    /// The news to say — its reason — once, when the outage has lasted [`WARN_AFTER`].
    fn news(&mut self, now: Instant) -> Option<&str> {
        let episode = self.current.as_mut()?;
        if episode.warned || now.duration_since(episode.since) < WARN_AFTER {
            return None;
        }
        episode.warned = true;
        Some(&episode.last)
    }

    /// The episode a success ends, if it was said.
    fn ended(&mut self) -> Option<Episode> {
        self.current.take().filter(|e| e.warned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_line_about_a_trusted_network_is_never_pushed() {
        let config =
            Config::from_toml("trusted_networks = ['192.0.2.0/24']\n", Path::new("t.toml"))
                .unwrap();
        let line = |ip: &str| {
            format!("2026-12-01 10:00:00.000 ERROR ip={ip} reason=auth_bruteforce tries=5")
        };
        let this_host = ThisHost::default();
        let pushed = |ip| pushable(line(ip).as_bytes(), &config, &this_host);
        assert_eq!(pushed("192.0.2.7"), None);
        assert_eq!(pushed("203.0.113.7").unwrap().ip.to_string(), "203.0.113.7");
    }

    /// A ban pushed reaches every bouncer of the fleet, this host's own firewall
    /// bouncer among them: never one for this host, loopback or a peer.
    #[test]
    fn an_alert_on_this_host_loopback_or_a_peer_is_never_pushed() {
        let config = Config::from_toml(
            "[ami]\naddress = '198.51.100.80:5038'\nusername = 'u'\nsecret = 's'\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let line =
            |ip: &str| format!("2026-12-01 10:00:00.000 ERROR ip={ip} reason=extension_banned");
        let this_host = ThisHost::default();
        let pushed = |ip: &str| pushable(line(ip).as_bytes(), &config, &this_host);
        let own = crate::nftables::own_addresses();
        assert!(
            own.iter().any(|ip| !ip.is_loopback()),
            "an interface's address besides loopback: {own:?}"
        );
        for ip in own.iter().map(ToString::to_string) {
            assert_eq!(pushed(&ip), None, "this host's {ip}");
        }
        for ip in ["127.0.0.1", "127.8.8.8", "::1", "0.0.0.0", "198.51.100.80"] {
            assert_eq!(pushed(ip), None, "{ip}");
        }
        assert_eq!(
            pushed("198.51.100.81").unwrap().ip.to_string(),
            "198.51.100.81"
        );
    }

    #[test]
    fn a_failure_answered_on_the_retry_is_not_an_outage() {
        let t0 = Instant::now();
        let mut outage = Outage::default();
        outage.failed("HTTP 500 database is locked".into(), t0);
        assert_eq!(outage.news(t0 + Duration::from_millis(250)), None);
        assert!(outage.ended().is_none(), "nothing said, nothing to end");
        assert!(outage.current.is_none());
    }

    #[test]
    fn an_outage_is_said_once_with_its_latest_reason_and_its_end_once() {
        let t0 = Instant::now();
        let mut outage = Outage::default();
        outage.failed("unreachable: connection refused".into(), t0);
        assert_eq!(outage.news(t0 + Duration::from_secs(1)), None);
        outage.failed("unreachable: timed out".into(), t0 + Duration::from_secs(1));
        assert_eq!(outage.news(t0 + WARN_AFTER), Some("unreachable: timed out"));
        for later in 3..60 {
            outage.failed("again".into(), t0 + Duration::from_secs(later));
            assert_eq!(outage.news(t0 + Duration::from_secs(later)), None);
        }
        let ended = outage.ended().expect("said, so its end is said");
        assert_eq!((ended.failures, ended.since), (59, t0));
        assert!(outage.ended().is_none());
    }
}
