//! The outbound guard: every account's figures and quarantine, the numbers learned from
//! attackers, and the verdict on each outbound call. Pure: the daemon passes the time
//! and writes what comes out.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;

use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::call::Outbound;
use crate::clock::Now;
use crate::config::{FraudConfig, MAX_LEARNED};
use crate::fraud::account::{Account, LiveCall, Quarantine};
use crate::fraud::limits::{MAX_DISTINCT_LEVEL, Rule, Severity, reached};
use crate::fraud::number::{Class, Destination, Prefixes, classify};

/// What happens to an outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It goes on.
    Pass,
    /// It goes on; a figure reached its warning level.
    Warn { rule: Rule, figure: u32, limit: u32 },
    /// It is refused; the account is not quarantined by it.
    Refuse(Refusal),
    /// A figure reached its critical level, or the request was tampered with: refused,
    /// and the account quarantined now.
    TollFraud {
        rule: String,
        figure: u32,
        limit: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The class is refused (`premium_destination`, `malformed_number`).
    Destination(Class),
    /// Outside the class's `hours`.
    OutsideHours(Class),
    /// The account is quarantined, for this reason.
    Quarantined(String),
}

/// The verdict on one outbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub destination: Destination,
    pub decision: Decision,
    /// The cap on the call's length (`EXTSEC_MAX_SECONDS`), 0 for none.
    pub max_seconds: u32,
    /// The call came from an address the account had used for longer than
    /// `known_address_seconds`: its own (an office, a home), never banned.
    pub usual_address: bool,
    /// The account's live calls that counted toward this call's class, this one
    /// included.
    pub live: u32,
}

/// A limit a call reached: its warning level, or its critical one (toll fraud, the
/// account quarantined). What the line, the notification and the metrics say of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reached<'a> {
    pub rule: &'a str,
    pub figure: u32,
    pub limit: u32,
    pub critical: bool,
}

impl Judgement {
    /// The level the call reached, if any: computed here once for every adapter.
    pub fn reached(&self) -> Option<Reached<'_>> {
        let (rule, figure, limit, critical) = match &self.decision {
            Decision::Warn {
                rule,
                figure,
                limit,
            } => (rule.name(), *figure, *limit, false),
            Decision::TollFraud {
                rule,
                figure,
                limit,
            } => (rule.as_str(), *figure, *limit, true),
            Decision::Pass | Decision::Refuse(_) => return None,
        };
        Some(Reached {
            rule,
            figure,
            limit,
            critical,
        })
    }

    /// `EXTSEC_RESULT`: `ALERT` for a refused call (the dialplan hangs up), else `OK`.
    pub fn result(&self) -> &'static str {
        match self.is_refused() {
            true => "ALERT",
            false => "OK",
        }
    }

    pub fn is_refused(&self) -> bool {
        matches!(
            self.decision,
            Decision::Refuse(_) | Decision::TollFraud { .. }
        )
    }

    /// The `reason=` code: `ok`, `emergency`, `internal`, `warning(RULE)`,
    /// `CLASS_destination`, `malformed_number`, `outside_hours(CLASS)`,
    /// `quarantined(WHY)`, `toll_fraud(RULE)`.
    pub fn reason_code(&self) -> String {
        match &self.decision {
            Decision::Pass => match self.destination.class {
                Class::Emergency => "emergency".into(),
                Class::Internal => "internal".into(),
                _ => "ok".into(),
            },
            Decision::Warn { rule, .. } => format!("warning({rule})"),
            Decision::Refuse(Refusal::Destination(Class::Malformed)) => "malformed_number".into(),
            Decision::Refuse(Refusal::Destination(class)) => format!("{class}_destination"),
            Decision::Refuse(Refusal::OutsideHours(class)) => format!("outside_hours({class})"),
            Decision::Refuse(Refusal::Quarantined(why)) => format!("quarantined({why})"),
            Decision::TollFraud { rule, .. } => format!("toll_fraud({rule})"),
        }
    }
}

/// What a successful login (AMI `SuccessfulAuth`) meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// From an address the account used lately, or a trusted one.
    Known,
    /// From a new address, with no failed guesses before it: only noted.
    NewAddress,
    /// From a new address soon after failed guesses (or from an alerted address): the
    /// account is quarantined before its first call.
    Takeover { failed: u16 },
}

/// How a call's end (the hangup handler) changed the account's minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub severity: Severity,
    pub figure: u32,
    pub limit: u32,
    /// The address to blame (the account's last one), for a critical level.
    pub address: Option<IpAddr>,
    /// That address is the account's own (`known_address_seconds`): not banned.
    pub usual_address: bool,
}

/// What `fraud status` shows of one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub account: String,
    /// Per class dialled: calls in the last minute, hour and day, distinct numbers in
    /// the hour, minutes in the day.
    pub classes: Vec<ClassStatus>,
    pub quarantine: Option<Quarantine>,
    pub addresses: Vec<IpAddr>,
    /// The last numbers dialled, `+E164` with their class.
    pub last: Vec<(Class, String)>,
    pub active: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStatus {
    pub class: Class,
    pub calls_minute: u32,
    pub calls_hour: u32,
    pub calls_day: u32,
    pub distinct_hour: u32,
    pub minutes_day: u32,
}

/// The guard's whole state, as the state file keeps it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub accounts: Vec<(String, Account)>,
    /// Learned numbers (E.164 as an integer) and when each expires.
    pub learned: Vec<(u64, u64)>,
}

/// Every account's state, and the learned numbers.
pub struct Guard {
    accounts: LruCache<String, Account>,
    learned: HashMap<u64, u64>,
    hasher: RandomState,
    /// Accounts forgotten because of `max_accounts`.
    pub dropped: u64,
    /// Whether anything changed since the state was last taken for saving.
    dirty: bool,
}

/// Classifies a number with `[fraud]`'s dialling plan, but for the learned numbers,
/// which [`Guard::judge`] adds: the costly part of a judgement, done outside the
/// guard's lock.
pub fn classify_outbound(config: &FraudConfig, high_risk: &Prefixes, number: &[u8]) -> Destination {
    classify(&config.dial_plan, &config.blocked, high_risk, number)
}

impl Default for Guard {
    fn default() -> Guard {
        Guard {
            accounts: LruCache::unbounded(),
            learned: HashMap::new(),
            hasher: RandomState::new(),
            dropped: 0,
            dirty: false,
        }
    }
}

impl Guard {
    pub fn from_snapshot(snapshot: Snapshot) -> Guard {
        let mut guard = Guard::default();
        let mut accounts = snapshot.accounts;
        // Least recently active first, so that the cache's order is theirs.
        accounts.sort_by_key(|(_, a)| a.active);
        for (name, account) in accounts {
            guard.accounts.put(name, account);
        }
        guard.learned = snapshot.learned.into_iter().collect();
        guard
    }

    /// The state to save, and whether it changed since the last time it was taken.
    pub fn snapshot(&mut self) -> (Snapshot, bool) {
        let changed = std::mem::take(&mut self.dirty);
        let snapshot = Snapshot {
            accounts: self
                .accounts
                .iter()
                .map(|(n, a)| (n.clone(), a.clone()))
                .collect(),
            learned: self.learned.iter().map(|(&n, &t)| (n, t)).collect(),
        };
        (snapshot, changed)
    }

    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    /// The accounts in quarantine at `now`, with why, the earliest to end first.
    pub fn quarantines(&self, now: u64) -> Vec<(String, crate::fraud::account::Quarantine)> {
        let mut out: Vec<_> = self
            .accounts
            .iter()
            .filter_map(|(n, a)| {
                let q = a.quarantine.as_ref().filter(|q| q.until > now)?;
                Some((n.clone(), q.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.1.until.cmp(&b.1.until).then_with(|| a.0.cmp(&b.0)));
        out
    }

    pub fn quarantined(&self, now: u64) -> usize {
        self.accounts
            .iter()
            .filter(|(_, a)| a.quarantine.as_ref().is_some_and(|q| q.until > now))
            .count()
    }

    pub fn learned(&self) -> usize {
        self.learned.len()
    }

    fn is_learned(&self, number: u64, now: u64) -> bool {
        self.learned.get(&number).is_some_and(|&until| until > now)
    }

    /// An outside number that attackers probed is `learned`, whatever else it looks like
    /// (high-risk, premium, international …) but blocked: the administrator's own word
    /// comes first.
    fn with_learned(&self, destination: Destination, now: u64) -> Destination {
        let outside = destination.e164.is_some() && destination.class != Class::Blocked;
        match destination.key() {
            Some(key) if outside && self.is_learned(key, now) => Destination {
                class: Class::Learned,
                ..destination
            },
            _ => destination,
        }
    }

    /// The account's state, made if new; past `max_accounts` the least recently active
    /// account that is not quarantined is forgotten (a quarantine is never dropped).
    fn account(&mut self, config: &FraudConfig, name: &str, now: u64) -> &mut Account {
        if !self.accounts.contains(name) && self.accounts.len() >= config.max_accounts {
            let idle = self
                .accounts
                .iter()
                .rev()
                .find(|(_, a)| a.quarantine.as_ref().is_none_or(|q| q.until <= now))
                .map(|(n, _)| n.clone());
            if let Some(idle) = idle {
                self.accounts.pop(&idle);
                self.dropped += 1;
            }
        }
        self.dirty = true;
        let account = self.accounts.get_or_insert_mut_ref(name, Account::default);
        account.active = now;
        account
    }

    /// Judges one outbound call and counts it; `destination` is the call's number as
    /// [`classify_outbound`] put it, before the learned numbers are asked.
    pub fn judge(
        &mut self,
        config: &FraudConfig,
        destination: Destination,
        call: &Outbound,
        now: Now,
    ) -> Judgement {
        let t = now.unix;
        let destination = self.with_learned(destination, t);
        let class = destination.class;
        let number_hash = self.hasher.hash_one(&call.number) as u32;
        let limits = config.limits(&call.account, class);
        let quarantine = config.quarantine.as_secs();
        let account = self.account(config, &call.account, t);
        let usual_address = call
            .address
            .is_some_and(|ip| is_usual(config, account, ip, t));
        if let Some(ip) = call.address {
            account.seen_at(ip, t);
        }
        // Asterisk's group count bounds the records: what it no longer has ended.
        account.tidy_live(t, Some(call.live.saturating_sub(1)), &call.call_id);
        let live = account.live_toward(class, &call.call_id) + 1;
        let pass = |decision, max_seconds| Judgement {
            destination: destination.clone(),
            decision,
            max_seconds,
            usual_address,
            live,
        };
        if call.tampered {
            quarantine_for(
                account,
                "request_tampering",
                Some(class),
                call.address,
                t,
                quarantine,
            );
            return pass(
                Decision::TollFraud {
                    rule: "request_tampering".into(),
                    figure: 1,
                    limit: 1,
                },
                0,
            );
        }
        if !class.is_judged() {
            return pass(Decision::Pass, 0);
        }
        let keep = if limits.keeps_distinct() {
            limits
                .level(Rule::DistinctPerHour)
                .warning
                .max(limits.level(Rule::DistinctPerHour).critical)
                .min(MAX_DISTINCT_LEVEL) as usize
        } else {
            0
        };
        account.counts(class).add_call(t, Some(number_hash), keep);
        account.dialled(class, destination.key());
        if let Some(q) = account.quarantined(t)
            && class != Class::National
        {
            let why = q.why.clone();
            return pass(Decision::Refuse(Refusal::Quarantined(why)), 0);
        }
        let counts = account.counts(class);
        let reached = reached(limits, |rule| counts.figure(rule, t, live));
        if let Some((Severity::Critical, rule, figure, limit)) = reached {
            quarantine_for(
                account,
                rule.name(),
                Some(class),
                call.address,
                t,
                quarantine,
            );
            let rule = rule.name().to_string();
            return pass(
                Decision::TollFraud {
                    rule,
                    figure,
                    limit,
                },
                0,
            );
        }
        if limits
            .hours
            .as_ref()
            .is_some_and(|h| !h.allows(now.weekday, now.minute))
        {
            return pass(Decision::Refuse(Refusal::OutsideHours(class)), 0);
        }
        if limits.refuse {
            return pass(Decision::Refuse(Refusal::Destination(class)), 0);
        }
        // The call goes on: it is live until its hangup handler says it ended, or its
        // cap (or a day) has gone by.
        let cap = match limits.max_seconds {
            0 => 86_400,
            s => u64::from(s),
        };
        account.call_started(LiveCall {
            id: call.call_id.clone(),
            class,
            since: t,
            until: t + cap + 60,
        });
        match reached {
            Some((_, rule, figure, limit)) => pass(
                Decision::Warn {
                    rule,
                    figure,
                    limit,
                },
                limits.max_seconds,
            ),
            None => pass(Decision::Pass, limits.max_seconds),
        }
    }

    /// A call of `class` by `account` ended after `answered` seconds (the hangup
    /// handler): its minutes count, and may reach a level.
    pub fn call_ended(
        &mut self,
        config: &FraudConfig,
        account: &str,
        call_id: &str,
        class: Class,
        answered: u32,
        now: u64,
    ) -> Option<Ended> {
        if !self.accounts.contains(account) {
            return None;
        }
        let quarantine = config.quarantine.as_secs();
        let state = self.account(config, account, now);
        // The class the daemon judged, when it still has the call; else the channel's.
        let class = state.call_ended(call_id).unwrap_or(class);
        if !class.is_judged() {
            return None;
        }
        let limits = config.limits(account, class).clone();
        let counts = state.counts(class);
        counts.add_seconds(now, answered);
        let figure = counts.figure(Rule::MinutesPerDay, now, 0);
        let level = limits.level(Rule::MinutesPerDay);
        let address = state.addresses.last().map(|s| s.ip);
        let usual_address = address.is_some_and(|ip| is_usual(config, state, ip, now));
        let severity = if level.critical > 0 && figure >= level.critical {
            if state.quarantined(now).is_none() {
                quarantine_for(
                    state,
                    Rule::MinutesPerDay.name(),
                    Some(class),
                    address,
                    now,
                    quarantine,
                );
            }
            Severity::Critical
        } else if level.warning > 0 && figure >= level.warning {
            Severity::Warning
        } else {
            return None;
        };
        let limit = match severity {
            Severity::Critical => level.critical,
            Severity::Warning => level.warning,
        };
        Some(Ended {
            severity,
            figure,
            limit,
            address,
            usual_address,
        })
    }

    /// Forgets `call_id` as a live call of `account`, counting nothing: a verdict that
    /// was taken back before the call could start (its AGI answer did not hold).
    pub fn forget_live(&mut self, account: &str, call_id: &str) {
        if let Some(state) = self.accounts.peek_mut(account) {
            state.call_ended(call_id);
        }
    }

    /// The end of `call_id`, told by an AMI event whose content is not believed alone
    /// (`ami::codec::CallEnd`): only a live call this guard judged for `account` ends,
    /// with its own class, and its minutes run from the judgement to `now` (ringing
    /// included, never less than it was answered). `None` for any other.
    pub fn call_ended_by_clock(
        &mut self,
        config: &FraudConfig,
        account: &str,
        call_id: &str,
        now: u64,
    ) -> Option<(Class, Option<Ended>)> {
        let live = self
            .accounts
            .peek(account)?
            .live
            .iter()
            .find(|c| !c.id.is_empty() && c.id == call_id)?
            .clone();
        // Never past its cap: TIMEOUT(absolute) ended it there, whenever the event came.
        let elapsed = now.min(live.until).saturating_sub(live.since);
        let seconds = u32::try_from(elapsed).unwrap_or(u32::MAX);
        let ended = self.call_ended(config, account, call_id, live.class, seconds, now);
        Some((live.class, ended))
    }

    /// A failed login for an existing account (AMI `ChallengeResponseFailed`,
    /// `InvalidPassword` naming it).
    pub fn login_failed(&mut self, config: &FraudConfig, account: &str, now: u64) {
        let window = config.takeover_window.as_secs();
        let state = self.account(config, account, now);
        state.failed_logins = Some(match state.failed_logins {
            Some((at, n)) if now.saturating_sub(at) <= window => (now, n.saturating_add(1)),
            _ => (now, 1),
        });
    }

    /// A successful login (AMI `SuccessfulAuth`) of `account` from `ip`. `trusted`: the
    /// address is in `trusted_networks`; `alerted`: the watcher alerted on it lately.
    pub fn logged_in(
        &mut self,
        config: &FraudConfig,
        account: &str,
        ip: IpAddr,
        trusted: bool,
        alerted: bool,
        now: u64,
    ) -> Login {
        let days = config.new_address_days();
        let window = config.takeover_window.as_secs();
        let quarantine = config.quarantine.as_secs();
        let state = self.account(config, account, now);
        let known = state.knows(ip, now, days);
        state.seen_at(ip, now);
        if known || trusted {
            return Login::Known;
        }
        let failed = match state.failed_logins {
            Some((at, n)) if now.saturating_sub(at) <= window => n,
            _ => 0,
        };
        if failed == 0 && !alerted {
            return Login::NewAddress;
        }
        state.failed_logins = None;
        quarantine_for(state, "takeover", None, Some(ip), now, quarantine);
        Login::Takeover { failed }
    }

    /// Learns `number` (an alerted guest call's extension) if it is an international
    /// number: scanners probe the numbers they sell. Whether it was learned.
    pub fn learn(
        &mut self,
        config: &FraudConfig,
        high_risk: &Prefixes,
        number: &[u8],
        now: u64,
    ) -> bool {
        self.learn_key(config, high_risk, number, now).is_some()
    }

    /// [`Guard::learn`], giving the number learned (E.164 digits), to share with the
    /// fleet.
    pub fn learn_key(
        &mut self,
        config: &FraudConfig,
        high_risk: &Prefixes,
        number: &[u8],
        now: u64,
    ) -> Option<u64> {
        if config.learned.is_zero() {
            return None;
        }
        let d = classify_outbound(config, high_risk, number);
        let (Class::International | Class::HighRisk | Class::Premium, Some(key)) =
            (d.class, d.key())
        else {
            return None;
        };
        // A premium number of the PBX's own country is no attacker's sale.
        if d.class == Class::Premium
            && d.e164
                .as_deref()
                .is_some_and(|e| e.starts_with(config.dial_plan.country_code.as_str()))
        {
            return None;
        }
        self.learned.retain(|_, &mut until| until > now);
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&key) {
            let soonest = self
                .learned
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k);
            if let Some(k) = soonest {
                self.learned.remove(&k);
            }
        }
        self.learned.insert(key, now + config.learned.as_secs());
        self.dirty = true;
        Some(key)
    }

    /// A number another PBX of the fleet learned (a decision pulled from the LAPI),
    /// refused here until `until`. The cap holds as for our own.
    pub fn learn_from_fleet(&mut self, key: u64, until: u64, now: u64) {
        self.learned.retain(|_, &mut t| t > now);
        if self.learned.len() >= MAX_LEARNED && !self.learned.contains_key(&key) {
            return;
        }
        let t = self.learned.entry(key).or_insert(until);
        *t = (*t).max(until);
        self.dirty = true;
    }

    /// A fleet decision deleted: the number is no longer refused for it.
    pub fn unlearn(&mut self, key: u64) -> bool {
        let known = self.learned.remove(&key).is_some();
        self.dirty |= known;
        known
    }

    /// What `fraud status` shows: one account, or every account (quarantined first).
    pub fn status(&mut self, account: Option<&str>, now: u64) -> Vec<Status> {
        let names: Vec<String> = match account {
            Some(name) => self
                .accounts
                .contains(name)
                .then(|| name.to_string())
                .into_iter()
                .collect(),
            None => self.accounts.iter().map(|(n, _)| n.clone()).collect(),
        };
        let mut out: Vec<Status> = names
            .into_iter()
            .filter_map(|name| {
                let account = self.accounts.peek_mut(&name)?;
                Some(status_of(name, account, now))
            })
            .collect();
        out.sort_by(|a, b| {
            (b.quarantine.is_some(), b.active)
                .cmp(&(a.quarantine.is_some(), a.active))
                .then_with(|| a.account.cmp(&b.account))
        });
        out
    }

    /// Lifts `account`'s quarantine and resets its counters; what it was, if it was
    /// known.
    pub fn release(&mut self, account: &str, now: u64) -> Option<Option<Quarantine>> {
        let state = self.accounts.peek_mut(account)?;
        let was = state.quarantined(now).cloned();
        state.release();
        self.dirty = true;
        Some(was)
    }
}

/// Whether `ip` is the account's usual address: used for longer than
/// `known_address_seconds`, and within `new_address_days`.
fn is_usual(config: &FraudConfig, account: &Account, ip: IpAddr, now: u64) -> bool {
    let known = config.known_address.as_secs();
    account.has_long_used(ip, now, known, config.new_address_days())
}

fn quarantine_for(
    account: &mut Account,
    why: &str,
    class: Option<Class>,
    address: Option<IpAddr>,
    now: u64,
    seconds: u64,
) {
    account.quarantine = Some(Quarantine {
        why: why.to_string(),
        class,
        since: now,
        until: now + seconds,
        address,
    });
}

fn status_of(name: String, account: &mut Account, now: u64) -> Status {
    account.tidy(now);
    let quarantine = account.quarantined(now).cloned();
    let classes = account
        .counts
        .iter_mut()
        .filter_map(|c| {
            let class = c.class?;
            Some(ClassStatus {
                class,
                calls_minute: c.figure(Rule::CallsPerMinute, now, 0),
                calls_hour: c.figure(Rule::CallsPerHour, now, 0),
                calls_day: c.figure(Rule::CallsPerDay, now, 0),
                distinct_hour: c.figure(Rule::DistinctPerHour, now, 0),
                minutes_day: c.figure(Rule::MinutesPerDay, now, 0),
            })
        })
        .collect();
    Status {
        account: name,
        classes,
        quarantine,
        addresses: account.addresses.iter().map(|s| s.ip).collect(),
        last: account
            .last
            .iter()
            .map(|&(c, n)| (c, format!("+{n}")))
            .collect(),
        active: account.active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const T0: u64 = 1_800_000_000;

    fn config(extra: &str) -> FraudConfig {
        let text = format!("[fraud]\nenabled = true\ncountry_code = \"49\"\n{extra}");
        Config::from_toml(&text, std::path::Path::new("t.toml"))
            .unwrap()
            .fraud
            .unwrap()
    }

    fn high_risk() -> Prefixes {
        Prefixes::new(vec!["882".into(), "53".into()])
    }

    /// Tuesday 10:00, `secs` after T0.
    fn at(secs: u64) -> Now {
        Now {
            unix: T0 + secs,
            weekday: 1,
            minute: 600,
        }
    }

    /// A call with a channel id of its own, as Asterisk gives each channel.
    fn call(number: &str) -> Outbound {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Outbound {
            account: "1001".into(),
            number: number.as_bytes().to_vec(),
            address: Some("203.0.113.50".parse().unwrap()),
            live: 1,
            call_id: format!("1800000000.{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            tampered: false,
        }
    }

    fn judge(g: &mut Guard, c: &FraudConfig, call: &Outbound, now: Now) -> String {
        let destination = classify_outbound(c, &high_risk(), &call.number);
        g.judge(c, destination, call, now).reason_code()
    }

    #[test]
    fn six_international_calls_in_a_minute_quarantine_the_account() {
        let c = config("");
        let mut g = Guard::default();
        let codes: Vec<String> = (0..6)
            .map(|i| judge(&mut g, &c, &call(&format!("0044207946012{i}")), at(i * 5)))
            .collect();
        assert_eq!(
            codes,
            [
                "ok",
                "ok",
                "ok",
                "warning(calls_per_minute)",
                "warning(calls_per_minute)",
                "toll_fraud(calls_per_minute)"
            ]
        );
        // Quarantined: only national and emergency calls pass, whatever is dialled in
        // front of the number.
        for (number, code) in [
            ("00442079460123", "quarantined(calls_per_minute)"),
            ("015112345678", "quarantined(calls_per_minute)"),
            ("09001123456", "quarantined(calls_per_minute)"),
            ("*6700449098790000", "quarantined(calls_per_minute)"),
            ("#31#005378612345", "quarantined(calls_per_minute)"),
            ("030901820", "ok"),
            ("*67030901820", "ok"),
            ("112", "emergency"),
        ] {
            assert_eq!(judge(&mut g, &c, &call(number), at(120)), code, "{number}");
        }
        assert_eq!(g.quarantined(T0 + 120), 1);
        // It ends after quarantine_seconds.
        assert_eq!(
            judge(&mut g, &c, &call("00442079460123"), at(86_400 + 60)),
            "ok"
        );
    }

    #[test]
    fn the_international_cap_and_the_third_live_call() {
        let c = config("");
        let mut g = Guard::default();
        let first = call("00442079460123");
        let destination = classify_outbound(&c, &high_risk(), &first.number);
        let j = g.judge(&c, destination, &first, at(0));
        assert_eq!((j.reason_code().as_str(), j.max_seconds), ("ok", 3600));
        let live = |n| Outbound {
            live: n,
            ..call("00442079460124")
        };
        assert_eq!(judge(&mut g, &c, &live(2), at(60)), "warning(concurrent)");
        assert_eq!(
            judge(&mut g, &c, &live(3), at(120)),
            "toll_fraud(concurrent)"
        );
    }

    /// Issue 26, hole 1: an office user with two national calls up dials abroad. Only
    /// the international tier counts toward international's limit: it passes.
    #[test]
    fn national_calls_up_do_not_count_toward_international_concurrency() {
        let c = config("");
        let mut g = Guard::default();
        let national = [call("030901820"), call("030901821")];
        for (i, n) in national.iter().enumerate() {
            let n = Outbound {
                live: i as u32 + 1,
                ..n.clone()
            };
            assert_eq!(judge(&mut g, &c, &n, at(i as u64)), "ok");
        }
        let abroad = Outbound {
            live: 3,
            ..call("00442079460123")
        };
        let destination = classify_outbound(&c, &high_risk(), &abroad.number);
        let j = g.judge(&c, destination, &abroad, at(10));
        assert_eq!((j.reason_code().as_str(), j.live), ("ok", 1));
        // A third national call counts all three below it: national's limit is 4/8.
        let third = Outbound {
            live: 4,
            ..call("030901822")
        };
        let destination = classify_outbound(&c, &high_risk(), &third.number);
        let j = g.judge(&c, destination, &third, at(11));
        assert_eq!(
            (j.reason_code().as_str(), j.live),
            ("warning(concurrent)", 4)
        );
        // Two more international calls: the third international one is critical.
        let intl = |n: u32, number: &str| Outbound {
            live: n,
            ..call(number)
        };
        assert_eq!(
            judge(&mut g, &c, &intl(5, "00442079460124"), at(12)),
            "warning(concurrent)"
        );
        assert_eq!(
            judge(&mut g, &c, &intl(6, "00442079460125"), at(13)),
            "toll_fraud(concurrent)"
        );
    }

    /// A call's end (its hangup handler names the channel) frees its place; a call
    /// whose end never came is dropped once Asterisk's group no longer counts it.
    #[test]
    fn ended_and_vanished_calls_no_longer_count() {
        let c = config("");
        let mut g = Guard::default();
        let first = call("00442079460123");
        assert_eq!(judge(&mut g, &c, &first, at(0)), "ok");
        let second = Outbound {
            live: 2,
            ..call("00442079460124")
        };
        assert_eq!(judge(&mut g, &c, &second, at(1)), "warning(concurrent)");
        g.call_ended(
            &c,
            "1001",
            &first.call_id,
            Class::International,
            30,
            T0 + 31,
        );
        let third = Outbound {
            live: 2,
            ..call("00442079460125")
        };
        assert_eq!(judge(&mut g, &c, &third, at(32)), "warning(concurrent)");
        // The daemon missed both ends (it was restarted): Asterisk counts one call.
        let fourth = Outbound {
            live: 1,
            ..call("00442079460126")
        };
        assert_eq!(judge(&mut g, &c, &fourth, at(100)), "ok");
    }

    /// A verdict taken back (its AGI answer did not hold) leaves no live call behind.
    #[test]
    fn a_forgotten_call_no_longer_counts_as_up() {
        let c = config("");
        let mut g = Guard::default();
        let first = call("00442079460123");
        assert_eq!(judge(&mut g, &c, &first, at(0)), "ok");
        g.forget_live("1001", &first.call_id);
        g.forget_live("nobody", &first.call_id);
        let second = Outbound {
            live: 2,
            ..call("00442079460124")
        };
        assert_eq!(judge(&mut g, &c, &second, at(1)), "ok");
    }

    /// An end told over AMI is not believed alone: only a live call this guard judged
    /// for that account ends, with its own class, timed from the judgement to the end
    /// (at most its cap).
    #[test]
    fn an_end_over_ami_ends_only_a_judged_call_and_counts_by_the_clock() {
        let c = config("");
        let mut g = Guard::default();
        let abroad = call("00442079460123");
        assert_eq!(judge(&mut g, &c, &abroad, at(0)), "ok");
        assert_eq!(
            g.call_ended_by_clock(&c, "1001", "1800000000.0", T0 + 60),
            None
        );
        assert_eq!(
            g.call_ended_by_clock(&c, "2002", &abroad.call_id, T0 + 60),
            None
        );
        let second = Outbound {
            live: 2,
            ..call("00442079460124")
        };
        assert_eq!(judge(&mut g, &c, &second, at(10)), "warning(concurrent)");
        let (class, ended) = g
            .call_ended_by_clock(&c, "1001", &abroad.call_id, T0 + 3000)
            .unwrap();
        assert_eq!((class, ended), (Class::International, None));
        // The second told hours late: counted up to its cap (3,600 s + the slack).
        let (_, ended) = g
            .call_ended_by_clock(&c, "1001", &second.call_id, T0 + 20_000)
            .unwrap();
        assert_eq!(
            ended, None,
            "50 + 61 minutes: below international's warning (120)"
        );
        let status = &g.status(Some("1001"), T0 + 20_000)[0];
        let international = status
            .classes
            .iter()
            .find(|c| c.class == Class::International)
            .unwrap();
        assert_eq!(international.minutes_day, 111);
        assert_eq!(
            g.call_ended_by_clock(&c, "1001", &abroad.call_id, T0 + 7400),
            None,
            "ended once"
        );
    }

    /// Issue 26, hole 2: a toll-fraud verdict from an address the account has used for
    /// longer than `known_address_seconds` is the account's own: quarantined, not
    /// banned (the line is a WARNING); from a new address, banned.
    #[test]
    fn the_accounts_usual_address_is_quarantined_not_banned() {
        let c = config("");
        let mut g = Guard::default();
        let office: IpAddr = "198.51.100.20".parse().unwrap();
        let from_office = |number: &str| Outbound {
            address: Some(office),
            ..call(number)
        };
        assert_eq!(judge(&mut g, &c, &from_office("030901820"), at(0)), "ok");
        let later = 86_400 + 100;
        let mut last = None;
        for i in 0..6 {
            let c2 = from_office(&format!("004420794601{i:02}"));
            let d = classify_outbound(&c, &high_risk(), &c2.number);
            last = Some(g.judge(&c, d, &c2, at(later + i)));
        }
        let j = last.take().unwrap();
        assert_eq!(j.reason_code(), "toll_fraud(calls_per_minute)");
        assert!(j.usual_address);
        let line = crate::fraud::lines::outbound_line(&j, &from_office("00442079460105"), false);
        assert_eq!(line.level, crate::alert_log::Level::Warning);
        assert!(line.text().contains("address=usual"), "{}", line.text());
        // The same burst from an address first used an hour ago bans it.
        let mut g = Guard::default();
        let other = call("030901820");
        assert_eq!(judge(&mut g, &c, &other, at(later - 3600)), "ok");
        for i in 0..6 {
            let c2 = call(&format!("004420794601{i:02}"));
            let d = classify_outbound(&c, &high_risk(), &c2.number);
            last = Some(g.judge(&c, d, &c2, at(later + i)));
        }
        let j = last.unwrap();
        assert!(!j.usual_address);
        let line = crate::fraud::lines::outbound_line(&j, &call("00442079460105"), false);
        assert_eq!(line.level, crate::alert_log::Level::Error);
    }

    #[test]
    fn a_dialler_sweeping_numbers_is_stopped_at_the_eleventh_in_an_hour() {
        let c = config("");
        let mut g = Guard::default();
        let codes: Vec<String> = (0..11)
            .map(|i| {
                judge(
                    &mut g,
                    &c,
                    &call(&format!("004420794601{i:02}")),
                    at(i * 300),
                )
            })
            .collect();
        assert_eq!(codes[6], "ok");
        assert_eq!(codes[7], "warning(distinct_per_hour)");
        assert_eq!(codes[10], "toll_fraud(distinct_per_hour)");
    }

    #[test]
    fn refused_classes_and_their_third_try() {
        let c = config("");
        let mut g = Guard::default();
        assert_eq!(
            judge(&mut g, &c, &call("09001123456"), at(0)),
            "premium_destination"
        );
        assert_eq!(
            judge(&mut g, &c, &call("0088212345678"), at(10)),
            "high_risk_destination"
        );
        assert_eq!(
            judge(&mut g, &c, &call("0044 20"), at(20)),
            "malformed_number"
        );
        assert_eq!(
            judge(&mut g, &c, &call("09001123457"), at(30)),
            "premium_destination"
        );
        assert_eq!(
            judge(&mut g, &c, &call("09001123458"), at(40)),
            "toll_fraud(calls_per_hour)"
        );
    }

    #[test]
    fn a_number_an_attacker_probed_is_refused_to_every_account() {
        let c = config("");
        let mut g = Guard::default();
        assert!(
            !g.learn(&c, &high_risk(), b"100", T0),
            "an extension is not learned"
        );
        assert!(
            !g.learn(&c, &high_risk(), b"030901820", T0),
            "nor a national number"
        );
        assert!(g.learn(&c, &high_risk(), b"00972501234567", T0));
        let other = Outbound {
            account: "1002".into(),
            ..call("00972501234567")
        };
        assert_eq!(judge(&mut g, &c, &other, at(60)), "learned_destination");
        assert_eq!(
            judge(&mut g, &c, &other, at(70)),
            "toll_fraud(calls_per_hour)"
        );
        // Learned for learned_days (30), then forgotten.
        let later = Outbound {
            account: "1003".into(),
            ..call("00972501234567")
        };
        assert_eq!(judge(&mut g, &c, &later, at(31 * 86_400)), "ok");
    }

    /// What attackers probed is `learned` whatever else it is (here high-risk and
    /// premium abroad), but the administrator's blocked prefixes come first (a prefix
    /// blocked by a reload after the number was learned).
    #[test]
    fn a_learned_number_outranks_every_class_but_blocked() {
        let before_reload = config("");
        let c = config("blocked_prefixes = ['4420']\n");
        let mut g = Guard::default();
        let class_of = |g: &Guard, number: &str| {
            let destination = classify_outbound(&c, &high_risk(), number.as_bytes());
            g.with_learned(destination, T0).class
        };
        for (number, class, learned) in [
            ("0088212345678", Class::HighRisk, Class::Learned),
            ("00448712345678", Class::Premium, Class::Learned),
            ("00442079460123", Class::Blocked, Class::Blocked),
        ] {
            assert_eq!(class_of(&g, number), class, "{number}");
            assert!(g.learn(&before_reload, &high_risk(), number.as_bytes(), T0));
            assert_eq!(class_of(&g, number), learned, "{number}");
        }
    }

    #[test]
    fn a_number_the_fleet_learned_is_refused_here_until_its_decision_goes() {
        let c = config("");
        let mut g = Guard::default();
        let class_of = |g: &Guard, number: &str| {
            let destination = classify_outbound(&c, &high_risk(), number.as_bytes());
            g.with_learned(destination, T0).class
        };
        // Another PBX learned it: we pull +44 871 2345678 (premium) as digits.
        let key = g
            .learn_key(&c, &high_risk(), b"00448712345678", T0)
            .unwrap();
        assert!(g.unlearn(key));
        assert_eq!(class_of(&g, "00448712345678"), Class::Premium);
        g.learn_from_fleet(key, T0 + 60, T0);
        assert_eq!(class_of(&g, "00448712345678"), Class::Learned);
        assert!(g.unlearn(key), "the decision deleted");
        assert!(!g.unlearn(key));
        assert_eq!(class_of(&g, "00448712345678"), Class::Premium);
        g.learn_from_fleet(key, T0 - 1, T0);
        assert_eq!(
            class_of(&g, "00448712345678"),
            Class::Premium,
            "expired already"
        );
    }

    #[test]
    fn hours_and_per_account_limits() {
        let c = config(
            "[fraud.class.international]\nhours = \"Mo-Fr 07:00-20:00\"\n\
             [fraud.account.callcentre.international]\nhours = \"\"\n\
             calls_per_minute = { warning = 40, critical = 60 }\n",
        );
        let mut g = Guard::default();
        let night = Now {
            minute: 23 * 60,
            ..at(0)
        };
        assert_eq!(
            judge(&mut g, &c, &call("00442079460123"), night),
            "outside_hours(international)"
        );
        assert_eq!(judge(&mut g, &c, &call("00442079460123"), at(10)), "ok");
        let cc = |i| Outbound {
            account: "callcentre".into(),
            ..call(&format!("0044207946{i:04}"))
        };
        for i in 0..7 {
            assert_eq!(
                judge(
                    &mut g,
                    &c,
                    &cc(i),
                    Now {
                        minute: 23 * 60,
                        ..at(20 + i)
                    }
                ),
                "ok"
            );
        }
    }

    #[test]
    fn minutes_a_day_come_from_the_calls_ends() {
        let c = config("");
        let mut g = Guard::default();
        assert_eq!(judge(&mut g, &c, &call("00442079460123"), at(0)), "ok");
        assert_eq!(
            g.call_ended(&c, "1001", "", Class::International, 3600, T0 + 3600),
            None
        );
        let warn = g
            .call_ended(&c, "1001", "", Class::International, 3600, T0 + 7200)
            .unwrap();
        assert_eq!(
            (warn.severity, warn.figure, warn.limit),
            (Severity::Warning, 120, 120)
        );
        let crit = g
            .call_ended(&c, "1001", "", Class::International, 7200, T0 + 14_400)
            .unwrap();
        assert_eq!((crit.severity, crit.figure), (Severity::Critical, 240));
        assert_eq!(crit.address, Some("203.0.113.50".parse().unwrap()));
        assert_eq!(
            judge(&mut g, &c, &call("00442079460123"), at(14_500)),
            "quarantined(minutes_per_day)"
        );
        // An account never seen, or a class not judged, counts nothing.
        assert_eq!(
            g.call_ended(&c, "9999", "", Class::International, 99_999, T0),
            None
        );
        assert_eq!(
            g.call_ended(&c, "1001", "", Class::Emergency, 99_999, T0),
            None
        );
    }

    #[test]
    fn a_login_from_a_new_address_after_guesses_is_a_takeover() {
        let c = config("");
        let mut g = Guard::default();
        let office: IpAddr = "198.51.100.7".parse().unwrap();
        let attacker: IpAddr = "203.0.113.66".parse().unwrap();
        assert_eq!(
            g.logged_in(&c, "1001", office, false, false, T0),
            Login::NewAddress
        );
        assert_eq!(
            g.logged_in(&c, "1001", office, false, false, T0 + 60),
            Login::Known
        );
        for i in 0..31 {
            g.login_failed(&c, "1001", T0 + 100 + i);
        }
        assert_eq!(
            g.logged_in(&c, "1001", attacker, false, false, T0 + 140),
            Login::Takeover { failed: 31 }
        );
        assert_eq!(
            judge(&mut g, &c, &call("00442079460123"), at(150)),
            "quarantined(takeover)"
        );
        // A phone that moves without failed guesses is only noted; a trusted one, known.
        assert_eq!(
            g.logged_in(&c, "1002", attacker, false, false, T0),
            Login::NewAddress
        );
        g.login_failed(&c, "1003", T0);
        assert_eq!(
            g.logged_in(&c, "1003", attacker, true, false, T0 + 1),
            Login::Known
        );
        // Failures long before do not count; an address the watcher alerted on does.
        g.login_failed(&c, "1004", T0);
        assert_eq!(
            g.logged_in(&c, "1004", attacker, false, false, T0 + 7200),
            Login::NewAddress
        );
        assert_eq!(
            g.logged_in(&c, "1005", attacker, false, true, T0),
            Login::Takeover { failed: 0 }
        );
    }

    #[test]
    fn tampering_quarantines_and_release_lifts_it() {
        let c = config("");
        let mut g = Guard::default();
        let bad = Outbound {
            tampered: true,
            ..call("0044207946\n0123")
        };
        assert_eq!(
            judge(&mut g, &c, &bad, at(0)),
            "toll_fraud(request_tampering)"
        );
        let was = g.release("1001", T0 + 10).unwrap().unwrap();
        assert_eq!(was.why, "request_tampering");
        assert_eq!(judge(&mut g, &c, &call("00442079460123"), at(20)), "ok");
        assert_eq!(g.release("nobody", T0), None);
    }

    #[test]
    fn the_cap_forgets_idle_accounts_never_a_quarantine() {
        let c = config("max_accounts = 2\n");
        let mut g = Guard::default();
        let by = |name: &str, number: &str| Outbound {
            account: name.into(),
            ..call(number)
        };
        assert_eq!(
            judge(&mut g, &c, &by("a", "09001123456"), at(0)),
            "premium_destination"
        );
        judge(&mut g, &c, &by("a", "09001123456"), at(1));
        assert_eq!(
            judge(&mut g, &c, &by("a", "09001123456"), at(2)),
            "toll_fraud(calls_per_hour)"
        );
        judge(&mut g, &c, &by("b", "030901820"), at(3));
        judge(&mut g, &c, &by("c", "030901820"), at(4));
        assert_eq!(g.accounts(), 2);
        assert_eq!(g.dropped, 1);
        assert_eq!(
            judge(&mut g, &c, &by("a", "00442079460123"), at(5)),
            "quarantined(calls_per_hour)"
        );
    }

    #[test]
    fn the_state_survives_a_round_trip() {
        let c = config("");
        let mut g = Guard::default();
        for i in 0..5 {
            judge(&mut g, &c, &call(&format!("0044207946012{i}")), at(i));
        }
        g.learn(&c, &high_risk(), b"00972501234567", T0);
        let (snapshot, changed) = g.snapshot();
        assert!(changed);
        let json = serde_json::to_string(&snapshot).unwrap();
        let mut again = Guard::from_snapshot(serde_json::from_str(&json).unwrap());
        assert!(!again.snapshot().1, "nothing changed since it was loaded");
        assert_eq!(
            judge(&mut again, &c, &call("00442079460129"), at(10)),
            "toll_fraud(calls_per_minute)"
        );
        assert_eq!(again.learned(), 1);
        let status = again.status(Some("1001"), T0 + 10);
        assert_eq!(status[0].classes[0].calls_minute, 6);
        assert_eq!(status[0].last.last().unwrap().1, "+442079460129");
    }
}
