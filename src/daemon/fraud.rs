//! The outbound guard in the daemon (doc/toll-fraud.md, "Toll fraud: the outbound check"): the guard behind a mutex,
//! the high-risk list in force, the state file kept, and what each outbound request,
//! call end and login writes.
//!
//! The state file is saved every [`SAVE_EVERY`] when something changed and once more
//! when the guard stops, replaced whole; a quarantine, a takeover and a release are
//! saved (written and synced) before the verdict is answered, so that a crash right
//! after one loses nothing of it. A crash loses at most the last few seconds of
//! counting.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::call::{Call, Outbound};
use crate::clock::Now;
use crate::config::Config;
use crate::daemon::Shared;
use crate::fraud::guard::{Ended, Snapshot, classify_outbound};
use crate::fraud::{Class, Guard, Judgement, Login, Prefixes};
use crate::request::BadRequest;
use crate::state_file::StateFile;

/// Reads Asterisk's accounts in `audit_dir` and marks those the audit finds weak (a
/// secret svcrack guesses, reused, none at all): `[fraud.weak]`'s stricter limits apply
/// to them. Said once, with each account and why; a folder it cannot read is said, and
/// nothing is marked.
pub fn mark_weak_accounts(fraud: &mut crate::config::FraudConfig) {
    let Some(dir) = fraud.audit_dir.clone() else {
        return;
    };
    if !dir.is_dir() {
        tracing::info!(
            "fraud: no {} to audit for weak accounts ([fraud] audit_dir): every account has the class limits",
            dir.display()
        );
        return;
    }
    let asterisk = crate::audit::Asterisk::read_accounts(&crate::asterisk_conf::Disk, &dir);
    for conf in [&asterisk.pjsip, &asterisk.sip, &asterisk.iax] {
        for (file, why) in &conf.unread {
            tracing::warn!(
                "fraud: cannot read {} ({why}) to find weak accounts: give the daemon's user read access (group asterisk)",
                file.display()
            );
        }
    }
    fraud.weak_accounts = crate::audit::accounts::weak_accounts(&asterisk);
    if !fraud.weak_accounts.is_empty() {
        let list: Vec<String> = fraud
            .weak_accounts
            .iter()
            .map(|(name, why)| format!("{name} ({why})"))
            .collect();
        tracing::warn!(
            "fraud: {} accounts are weak by the audit of {} and get the [fraud.weak] limits: {}",
            list.len(),
            dir.display(),
            list.join(", ")
        );
    }
}

/// How often a changed state is saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The guard and the high-risk list it judges with.
#[derive(Default)]
pub struct Fraud {
    pub guard: Mutex<Guard>,
    /// `None` while the configured list cannot be read: the outbound check answers
    /// ERROR (the dialplan's outage rules decide) rather than judge without it, and
    /// nothing else stops.
    high_risk: RwLock<Option<Arc<Prefixes>>>,
    /// Held from taking a snapshot until it is on disk: two savers never write the
    /// same temporary file, and an older snapshot never replaces a newer one.
    saving: Mutex<()>,
}

/// Reads the high-risk list `config` names: empty when `[fraud]` is off or names none.
pub fn read_high_risk(config: &Config) -> Result<Prefixes, String> {
    match config
        .fraud
        .as_ref()
        .and_then(|f| f.high_risk_file.as_deref())
    {
        Some(path) => crate::config::read_high_risk(path),
        None => Ok(Prefixes::default()),
    }
}

impl Fraud {
    pub fn high_risk(&self) -> Option<Arc<Prefixes>> {
        self.high_risk
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_high_risk(&self, list: Prefixes) {
        *self.high_risk.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(list));
    }

    /// Takes the list `config` names (at start and at each reload). One that cannot be
    /// read is CRITICAL: at start the outbound check answers ERROR until a reload
    /// reads it; at a reload the list in force is kept. The guest check never waits
    /// for it.
    pub fn take_high_risk(&self, config: &Config, starting: bool) {
        match read_high_risk(config) {
            Ok(list) => self.set_high_risk(list),
            Err(e) if starting || self.high_risk().is_none() => crate::critical!(
                "fraud: {e}: the outbound check answers ERROR (EXTSEC_ON_ERROR and the dialplan's outage rules decide each outbound call) until the list reads and the daemon is reloaded; the guest check runs"
            ),
            Err(e) => crate::critical!(
                "fraud: {e}: the list read before stays in force until this one reads and the daemon is reloaded"
            ),
        }
    }

    pub fn guard(&self) -> std::sync::MutexGuard<'_, Guard> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the state with the file's. A file that cannot be read or parsed is
    /// moved aside (`.bad`) and said, and the guard starts empty: the outbound check
    /// must not stop, and the file must not be overwritten unseen.
    pub fn load(&self, path: &Path) {
        match StateFile::new(path).load::<Snapshot>() {
            Ok(Some(snapshot)) => {
                let guard = Guard::from_snapshot(snapshot);
                tracing::info!(
                    accounts = guard.accounts(),
                    learned = guard.learned(),
                    "fraud: state read from {}",
                    path.display()
                );
                *self.guard() = guard;
            }
            Ok(None) => {}
            Err(e) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(".bad");
                let moved = std::fs::rename(path, &aside).is_ok();
                crate::critical!(
                    "fraud: the state file {} cannot be used ({e}){}; quarantines and counters start empty",
                    path.display(),
                    match moved {
                        true => format!(", moved to {}", PathBuf::from(aside).display()),
                        false => String::new(),
                    }
                );
            }
        }
    }

    /// Samples the guard's size into the metrics.
    pub fn sample(&self, metrics: &crate::daemon::metrics::OutboundMetrics) {
        let guard = self.guard();
        let now = Now::current().unix;
        metrics.sample(
            guard.accounts(),
            guard.quarantined(now),
            guard.learned(),
            guard.dropped,
        );
    }

    /// Saves the state if it changed since it was last taken.
    pub fn save_if_changed(&self, path: &Path) -> std::io::Result<bool> {
        let _saving = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        let (snapshot, changed) = self.guard().snapshot();
        if changed {
            StateFile::new(path).save(&snapshot)?;
        }
        Ok(changed)
    }

    /// Saves the state now, for what must survive a crash right after it (`what`: a
    /// quarantine, a release); a failure is CRITICAL, and the regular save tries again.
    pub fn persist(&self, path: &Path, what: &str) {
        if let Err(e) = self.save_if_changed(path) {
            crate::critical!(
                "fraud: cannot save {what} to the state file {} ({e}): a restart now would forget it",
                path.display()
            );
        }
    }
}

/// Keeps the state file until `stop` says so, then saves once more. A file that cannot
/// be written is one CRITICAL until it can again.
pub async fn keep(
    shared: Arc<Shared>,
    path: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Run by hand, the folder may not exist yet (the unit's StateDirectory makes it).
    if let Some(folder) = path
        .parent()
        .filter(|f| !f.as_os_str().is_empty() && !f.exists())
    {
        use std::os::unix::fs::DirBuilderExt as _;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder);
    }
    let mut failing = false;
    let mut ticks = tokio::time::interval(SAVE_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = ticks.tick() => false,
            _ = stop.changed() => true,
        };
        shared.fraud.sample(&shared.metrics.outbound);
        let (s, p) = (shared.clone(), path.clone());
        let saved = tokio::task::spawn_blocking(move || s.fraud.save_if_changed(&p))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match (saved, failing) {
            (Ok(_), true) => {
                failing = false;
                tracing::info!("fraud: the state file {} is saved again", path.display());
            }
            (Err(e), false) => {
                failing = true;
                crate::critical!(
                    "fraud: cannot save the state file {} ({e}): quarantines would not survive a restart (tried again every {} s)",
                    path.display(),
                    SAVE_EVERY.as_secs()
                );
            }
            _ => {}
        }
        if stopping {
            return;
        }
    }
}

/// What is wrong with the state file for `check-config`, if anything: it does not
/// parse, or its folder would not take it; and whether that is only a matter of the
/// user asking (the daemon's own user may do better).
pub fn state_problem(path: &Path) -> Option<(String, bool)> {
    let permission = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    if let Err(e) = StateFile::new(path).load::<Snapshot>() {
        return Some((
            format!("fraud.state_file {}: {e}", path.display()),
            permission(&e),
        ));
    }
    let folder = path.parent()?;
    let at = if folder.is_dir() {
        folder
    } else {
        folder.parent()?
    };
    let checked = match at.is_dir() {
        true => crate::alert_log::can_create_in(at),
        false => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
    };
    checked.err().map(|e| {
        (
            format!("fraud.state_file {}: {e}", path.display()),
            permission(&e),
        )
    })
}

/// Judges an outbound call, writes its line and counts it; why it could not be judged
/// otherwise.
pub fn judge(shared: &Shared, config: &Config, call: &Outbound) -> Result<Judgement, BadRequest> {
    let fraud = config.fraud.as_ref().ok_or_else(|| BadRequest {
        error: "the outbound check is off: set enabled = true and country_code in [fraud] (doc/toll-fraud.md, \"Turning it on\")".into(),
        raw: Vec::new(),
        blame: None,
    })?;
    let high_risk = shared.fraud.high_risk().ok_or_else(|| BadRequest {
        error: "the high-risk list could not be read: the outbound check is stopped until it is fixed and the daemon reloaded (see the CRITICAL line at start)".into(),
        raw: Vec::new(),
        blame: None,
    })?;
    let destination = classify_outbound(fraud, &high_risk, &call.number);
    let now = Now::current();
    let judgement = shared.fraud.guard().judge(fraud, destination, call, now);
    if judgement.reached().is_some_and(|r| r.critical) {
        shared.fraud.persist(&fraud.state_file, "a quarantine");
    }
    let trusted = call.address.is_some_and(|ip| config.is_trusted(ip));
    let line = crate::fraud::lines::outbound_line(&judgement, call, trusted);
    if line.level != crate::alert_log::Level::Info || config.log_ok_calls {
        let _ = shared.write(config, &line);
    }
    shared.metrics.outbound.judged(&judgement);
    if let Some(event) = fraud_event(&judgement, call) {
        shared.notify(event);
    }
    shared.metrics.activity.calls.count(now.unix);
    Ok(judgement)
}

/// What the administrator hears of an outbound verdict: a warning level or a
/// quarantine, never an ordinary call or a plain refusal.
fn fraud_event(judgement: &Judgement, call: &Outbound) -> Option<crate::notify::Event> {
    // An ordinary call or a plain refusal returns here, before anything is built.
    let reached = judgement.reached()?;
    let level = crate::notify::Level {
        account: call.account.clone(),
        class: judgement.destination.class.to_string(),
        rule: reached.rule.to_string(),
        figure: reached.figure,
        limit: reached.limit,
        address: call.address,
        usual_address: judgement.usual_address,
    };
    Some(match reached.critical {
        false => crate::notify::Event::TollFraudWarning(level),
        true => crate::notify::Event::TollFraud(level),
    })
}

/// A verdict that let `call` go on was taken back before Asterisk acted on it: the
/// call is no longer counted as up.
pub fn forget(shared: &Shared, call: &Outbound) {
    shared
        .fraud
        .guard()
        .forget_live(&call.account, &call.call_id);
}

/// An outbound call ended (its hangup handler's AGI): its answered seconds count.
pub fn ended(
    shared: &Shared,
    config: &Config,
    account: &str,
    call_id: &str,
    class: &[u8],
    answered: u32,
) {
    let (Some(fraud), Some(class)) = (
        &config.fraud,
        std::str::from_utf8(class).ok().and_then(Class::from_name),
    ) else {
        return;
    };
    let now = Now::current().unix;
    let ended = shared
        .fraud
        .guard()
        .call_ended(fraud, account, call_id, class, answered, now);
    if let Some(ended) = ended {
        minutes_reached(shared, config, account, class, &ended);
    }
}

/// An outbound call ended, told over AMI (`call_end = "ami"`): a live call the guard
/// judged for that account, timed by the daemon's clock; anything else is ignored and
/// said at debug level (another PBX's event, a forged one).
pub fn ended_by_ami(shared: &Shared, config: &Config, account: &str, call_id: &str) {
    let Some(fraud) = &config.fraud else { return };
    let now = Now::current().unix;
    let ended = shared
        .fraud
        .guard()
        .call_ended_by_clock(fraud, account, call_id, now);
    match ended {
        Some((class, Some(ended))) => minutes_reached(shared, config, account, class, &ended),
        Some((_, None)) => {}
        None => tracing::debug!(
            account,
            call_id,
            "AMI: the end of a call the guard does not have"
        ),
    }
}

/// A call's minutes reached a level: the line, the metric, and at the critical level
/// the quarantine saved before anything else.
fn minutes_reached(shared: &Shared, config: &Config, account: &str, class: Class, ended: &Ended) {
    if let Some(fraud) = &config.fraud
        && ended.severity == crate::fraud::limits::Severity::Critical
    {
        shared.fraud.persist(&fraud.state_file, "a quarantine");
    }
    let trusted = ended.address.is_some_and(|ip| config.is_trusted(ip));
    let _ = shared.write(
        config,
        &crate::fraud::lines::minutes_line(account, class, ended, trusted),
    );
    shared.metrics.outbound.minutes(ended);
}

/// A guest call was alerted on: the number it tried is learned when it is an
/// international one (what attackers probe is what they sell).
pub fn learn(shared: &Shared, config: &Config, call: &Call) {
    if let Some(fraud) = &config.fraud {
        let Some(high_risk) = shared.fraud.high_risk() else {
            return;
        };
        let now = Now::current().unix;
        let learned = shared
            .fraud
            .guard()
            .learn_key(fraud, &high_risk, &call.exten, now);
        if let Some(number) = learned {
            tracing::debug!("fraud: learned a number an alerted guest call dialled");
            // Shared with the fleet when the puller runs (a bouncer key is set).
            if config
                .crowdsec
                .as_ref()
                .is_some_and(|c| c.bouncer_key.is_some())
            {
                shared.to_share.push(number, fraud.learned);
            }
        }
    }
}

/// What the AMI watcher saw of an existing account's login.
pub enum LoginEvent {
    Failed,
    Succeeded { ip: std::net::IpAddr, alerted: bool },
}

/// A login of `account` (AMI security events): failures are remembered, and a success
/// from a new address soon after them quarantines the account before its first call.
pub fn login(shared: &Shared, config: &Config, account: &[u8], event: LoginEvent) {
    let Some(fraud) = &config.fraud else { return };
    let Ok(name) = std::str::from_utf8(account) else {
        return;
    };
    if name.is_empty() || name == "<unknown>" {
        return;
    }
    let now = Now::current().unix;
    match event {
        LoginEvent::Failed => shared.fraud.guard().login_failed(fraud, name, now),
        LoginEvent::Succeeded { ip, alerted } => {
            let trusted = config.is_trusted(ip);
            let login = shared
                .fraud
                .guard()
                .logged_in(fraud, name, ip, trusted, alerted, now);
            match login {
                Login::Known => {}
                Login::NewAddress => {
                    tracing::info!(account = name, %ip, "fraud: an account logged in from a new address")
                }
                Login::Takeover { failed } => {
                    shared.fraud.persist(&fraud.state_file, "a quarantine");
                    let _ = shared.write(
                        config,
                        &crate::fraud::lines::takeover_line(ip, account, failed),
                    );
                    shared.metrics.outbound.takeover();
                    shared.notify(crate::notify::Event::Takeover {
                        account: name.to_string(),
                        address: ip,
                        failed_logins: failed,
                    });
                }
            }
        }
    }
}
