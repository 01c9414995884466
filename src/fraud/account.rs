//! What one account did lately: per class, calls in sliding windows, distinct numbers,
//! answered seconds; its quarantine; the addresses it used; its recent failed logins.
//! A few hundred bytes an account (the state test keeps it under 1 KiB).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::fraud::limits::Rule;
use crate::fraud::number::Class;
use crate::fraud::window::Window;

/// Slice widths, seconds: 12 slices make a minute, an hour, a day.
const MINUTE: u64 = 5;
const HOUR: u64 = 300;
const DAY: u64 = 7200;
/// Addresses remembered per account (the most recently used kept).
pub const MAX_ADDRESSES: usize = 4;
/// Last destinations shown by `fraud status`.
pub const MAX_LAST: usize = 5;
/// Live calls remembered per account: beyond any sane concurrency limit.
pub const MAX_LIVE: usize = 64;

/// One class's figures for an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub class: Option<Class>,
    minute: Window<u16>,
    hour: Window<u16>,
    day: Window<u16>,
    /// Answered seconds, from the calls' ends.
    seconds: Window<u32>,
    /// Distinct numbers (hashed) and when each was last dialled, oldest first; kept only
    /// while a distinct level is set, and at most one more than it needs.
    distinct: Vec<(u32, u32)>,
}

impl Counts {
    fn new(class: Class) -> Counts {
        Counts {
            class: Some(class),
            ..Counts::default()
        }
    }

    /// Counts a call to `number` (hashed) at `now`; `keep` distinct numbers at most.
    pub fn add_call(&mut self, now: u64, number: Option<u32>, keep: usize) {
        self.minute.add(now, MINUTE);
        self.hour.add(now, HOUR);
        self.day.add(now, DAY);
        let Some(number) = number.filter(|_| keep > 0) else {
            return;
        };
        let now32 = u32::try_from(now).unwrap_or(u32::MAX);
        self.distinct.retain(|&(n, _)| n != number);
        self.forget_distinct(now);
        if self.distinct.len() >= keep {
            self.distinct.drain(..=self.distinct.len() - keep);
        }
        push_bounded(&mut self.distinct, (number, now32), keep);
    }

    pub fn add_seconds(&mut self, now: u64, seconds: u32) {
        self.seconds.add_amount(now, DAY, seconds);
    }

    fn forget_distinct(&mut self, now: u64) {
        let hour_ago = now.saturating_sub(3600);
        self.distinct.retain(|&(_, at)| u64::from(at) > hour_ago);
    }

    /// The figure `rule` watches at `now`; `live` is the account's live call count.
    pub fn figure(&mut self, rule: Rule, now: u64, live: u32) -> u32 {
        let n = match rule {
            Rule::CallsPerMinute => self.minute.sum(now, MINUTE),
            Rule::CallsPerHour => self.hour.sum(now, HOUR),
            Rule::CallsPerDay => self.day.sum(now, DAY),
            Rule::Concurrent => u64::from(live),
            Rule::DistinctPerHour => {
                self.forget_distinct(now);
                self.distinct.len() as u64
            }
            Rule::MinutesPerDay => self.seconds.sum(now, DAY) / 60,
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether nothing of this class is left in any window.
    fn is_idle(&mut self, now: u64) -> bool {
        self.forget_distinct(now);
        self.day.is_empty(now, DAY) && self.seconds.is_empty(now, DAY) && self.distinct.is_empty()
    }
}

/// Why and until when an account is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    /// The rule that put it there (`calls_per_minute`, `takeover`).
    pub why: String,
    /// The class dialled when it happened, if a call did it.
    pub class: Option<Class>,
    pub since: u64,
    pub until: u64,
    /// The address it was called from (or logged in from).
    pub address: Option<IpAddr>,
}

/// An address an account called or logged in from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SeenForm")]
pub struct Seen {
    pub ip: IpAddr,
    /// The day (Unix days) it was last used.
    pub day: u32,
    /// When it was first used (Unix seconds), while it stayed among the remembered.
    pub since: u64,
}

/// A `Seen` as the state file holds it: `[ip, day]` before `since` was kept (the
/// start of that day then stands for it).
#[derive(Deserialize)]
#[serde(untagged)]
enum SeenForm {
    Full { ip: IpAddr, day: u32, since: u64 },
    Old(IpAddr, u32),
}

impl From<SeenForm> for Seen {
    fn from(form: SeenForm) -> Seen {
        match form {
            SeenForm::Full { ip, day, since } => Seen { ip, day, since },
            SeenForm::Old(ip, day) => Seen {
                ip,
                day,
                since: u64::from(day) * 86_400,
            },
        }
    }
}

/// A call the account has up now (judged, its end not yet told), by its channel's
/// unique id: what concurrency by class counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveCall {
    pub id: String,
    pub class: Class,
    pub since: u64,
    /// When it is dropped if its end never comes: its cap, or a day.
    pub until: u64,
}

/// One account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub counts: Vec<Counts>,
    pub quarantine: Option<Quarantine>,
    /// Addresses it called or logged in from, the most recently used last.
    pub addresses: Vec<Seen>,
    /// Its calls up now, oldest first.
    #[serde(default)]
    pub live: Vec<LiveCall>,
    /// Recent failed logins for it (AMI): when the last was, and how many within the
    /// takeover window.
    pub failed_logins: Option<(u64, u16)>,
    /// The last numbers dialled (E.164) with their class, newest last.
    pub last: Vec<(Class, u64)>,
    /// When it last did anything: the least recently active go first past the cap.
    pub active: u64,
}

impl Account {
    pub fn counts(&mut self, class: Class) -> &mut Counts {
        match self.counts.iter().position(|c| c.class == Some(class)) {
            Some(i) => &mut self.counts[i],
            None => {
                // Exactly as many as the classes used: each is ~160 bytes.
                self.counts.reserve_exact(1);
                self.counts.push(Counts::new(class));
                self.counts.last_mut().expect("just pushed")
            }
        }
    }

    /// The quarantine in force at `now`; an expired one is dropped.
    pub fn quarantined(&mut self, now: u64) -> Option<&Quarantine> {
        if self.quarantine.as_ref().is_some_and(|q| q.until <= now) {
            self.quarantine = None;
        }
        self.quarantine.as_ref()
    }

    /// Remembers `number` as dialled.
    pub fn dialled(&mut self, class: Class, number: Option<u64>) {
        if let Some(number) = number {
            push_bounded(&mut self.last, (class, number), MAX_LAST);
        }
    }

    /// Whether `ip` was used within `days` of `now`.
    pub fn knows(&self, ip: IpAddr, now: u64, days: u32) -> bool {
        self.seen(ip)
            .is_some_and(|s| unix_day(now).saturating_sub(s.day) <= days)
    }

    /// Whether `ip` is the account's own: used for longer than `seconds` before `now`
    /// (an office, a home), and within `days`.
    pub fn has_long_used(&self, ip: IpAddr, now: u64, seconds: u64, days: u32) -> bool {
        self.knows(ip, now, days)
            && self
                .seen(ip)
                .is_some_and(|s| now.saturating_sub(s.since) > seconds)
    }

    /// What the account remembers of `ip` (each address once).
    fn seen(&self, ip: IpAddr) -> Option<&Seen> {
        self.addresses.iter().find(|s| s.ip == ip)
    }

    /// Records `ip` as used at `now`, keeping the most recent few.
    pub fn seen_at(&mut self, ip: IpAddr, now: u64) {
        let since = self.seen(ip).map_or(now, |s| s.since.min(now));
        self.addresses.retain(|s| s.ip != ip);
        let seen = Seen {
            ip,
            day: unix_day(now),
            since,
        };
        push_bounded(&mut self.addresses, seen, MAX_ADDRESSES);
    }

    /// The live calls whose class counts toward `class`'s concurrency: its own tier and
    /// those above (`national` < `mobile` < `international`, which premium, high-risk
    /// and the other refused classes count as). Not `except`, the call being judged.
    pub fn live_toward(&self, class: Class, except: &str) -> u32 {
        let tier = class.concurrency_tier();
        let n = self
            .live
            .iter()
            .filter(|c| !same_call(&c.id, except) && c.class.concurrency_tier() >= tier)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Drops the live calls past their `until`, and the oldest of those Asterisk no
    /// longer has: `others` is how many other calls the account's group counts now, so
    /// records beyond it are calls whose end was never told (the daemon was down).
    pub fn tidy_live(&mut self, now: u64, others: Option<u32>, except: &str) {
        self.live
            .retain(|c| c.until > now && !same_call(&c.id, except));
        if let Some(others) = others {
            let extra = self.live.len().saturating_sub(others as usize);
            self.live.drain(..extra);
        }
    }

    /// Records a call now up; an account keeps at most [`MAX_LIVE`].
    pub fn call_started(&mut self, call: LiveCall) {
        self.live.retain(|c| !same_call(&c.id, &call.id));
        if self.live.len() >= MAX_LIVE {
            self.live.remove(0);
        }
        self.live.push(call);
    }

    /// Forgets the call `id` (its end was told); its class, if it was up.
    pub fn call_ended(&mut self, id: &str) -> Option<Class> {
        let i = self.live.iter().position(|c| same_call(&c.id, id))?;
        Some(self.live.remove(i).class)
    }

    /// Drops classes with nothing left in their windows.
    pub fn tidy(&mut self, now: u64) {
        self.counts.retain_mut(|c| !c.is_idle(now));
    }

    /// Resets every figure (`fraud release`): the quarantine and the counters.
    pub fn release(&mut self) {
        self.quarantine = None;
        self.counts.clear();
        self.failed_logins = None;
    }

    /// An estimate of the memory it holds: the struct and its vectors' contents.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Account>()
            + self.counts.capacity() * std::mem::size_of::<Counts>()
            + self
                .counts
                .iter()
                .map(|c| c.distinct.capacity() * 8)
                .sum::<usize>()
            + self.addresses.capacity() * std::mem::size_of::<Seen>()
            + self.live.capacity() * std::mem::size_of::<LiveCall>()
            + self.live.iter().map(|c| c.id.capacity()).sum::<usize>()
            + self.last.capacity() * std::mem::size_of::<(Class, u64)>()
            + self.quarantine.as_ref().map_or(0, |q| q.why.capacity())
    }
}

/// Pushes `item`, dropping the oldest past `max`, with room for `max` and no more (a
/// growing vector would double its room).
fn push_bounded<T>(items: &mut Vec<T>, item: T, max: usize) {
    if items.len() >= max {
        items.drain(..=items.len() - max);
    } else if items.capacity() < max {
        items.reserve_exact(max - items.len());
    }
    items.push(item);
}

/// Two calls are the same by a channel id, never by a missing one.
fn same_call(a: &str, b: &str) -> bool {
    !a.is_empty() && a == b
}

fn unix_day(now: u64) -> u32 {
    u32::try_from(now / 86_400).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the shipped limits (distinct numbers kept for international calls only,
    /// 11 at most), an account that dials every class, logs in from many places and is
    /// quarantined.
    #[test]
    fn a_busy_account_stays_under_a_kibibyte() {
        let mut a = Account::default();
        let t0 = 1_800_000_000;
        for i in 0..10_000u64 {
            let class = [Class::National, Class::Mobile, Class::International][i as usize % 3];
            let keep = if class == Class::International { 11 } else { 0 };
            a.counts(class).add_call(t0 + i, Some(i as u32), keep);
            a.counts(class).add_seconds(t0 + i, 60);
            a.dialled(class, Some(442_079_460_000 + i));
            a.seen_at(IpAddr::from([10, 0, (i % 7) as u8, 1]), t0 + i * 3600);
        }
        a.quarantine = Some(Quarantine {
            why: "distinct_per_hour".into(),
            class: Some(Class::International),
            since: t0,
            until: t0 + 86_400,
            address: None,
        });
        assert!(a.footprint() < 1024, "{} bytes", a.footprint());
    }

    #[test]
    fn distinct_numbers_are_kept_an_hour_and_bounded() {
        let mut c = Counts::new(Class::International);
        let t0 = 1_800_000_000;
        for n in 0..20 {
            c.add_call(t0 + n, Some(n as u32), 11);
        }
        assert_eq!(c.figure(Rule::DistinctPerHour, t0 + 20, 0), 11);
        c.add_call(t0 + 30, Some(19), 11);
        assert_eq!(
            c.figure(Rule::DistinctPerHour, t0 + 30, 0),
            11,
            "the same number again"
        );
        assert_eq!(c.figure(Rule::DistinctPerHour, t0 + 3625, 0), 1);
        assert_eq!(c.figure(Rule::DistinctPerHour, t0 + 7200, 0), 0);
    }

    #[test]
    fn quarantine_expires_and_release_clears_everything() {
        let mut a = Account::default();
        a.counts(Class::International).add_call(100, Some(1), 11);
        a.quarantine = Some(Quarantine {
            why: "concurrent".into(),
            class: None,
            since: 100,
            until: 200,
            address: None,
        });
        assert!(a.quarantined(199).is_some());
        assert!(a.quarantined(200).is_none());
        a.failed_logins = Some((100, 3));
        a.release();
        assert!(a.counts.is_empty() && a.failed_logins.is_none());
    }

    #[test]
    fn addresses_are_known_for_a_number_of_days() {
        let mut a = Account::default();
        let ip = IpAddr::from([198, 51, 100, 7]);
        a.seen_at(ip, 0);
        assert!(a.knows(ip, 30 * 86_400, 30));
        assert!(!a.knows(ip, 31 * 86_400, 30));
        for i in 0..10u8 {
            a.seen_at(IpAddr::from([10, 0, 0, i]), 0);
        }
        assert_eq!(a.addresses.len(), MAX_ADDRESSES);
        assert!(!a.knows(ip, 0, 30), "pushed out by newer ones");
    }

    #[test]
    fn an_address_is_the_accounts_own_once_used_for_longer_than_the_setting() {
        let mut a = Account::default();
        let office = IpAddr::from([198, 51, 100, 7]);
        let t0 = 1_800_000_000;
        a.seen_at(office, t0);
        a.seen_at(office, t0 + 3600);
        assert!(!a.has_long_used(office, t0 + 3600, 86_400, 30));
        a.seen_at(office, t0 + 86_401);
        assert!(
            a.has_long_used(office, t0 + 86_401, 86_400, 30),
            "first use kept"
        );
        let new = IpAddr::from([203, 0, 113, 66]);
        a.seen_at(new, t0 + 86_401);
        assert!(!a.has_long_used(new, t0 + 86_401, 86_400, 30));
        // Unused for longer than new_address_days: no longer its own.
        assert!(!a.has_long_used(office, t0 + 40 * 86_400, 86_400, 30));
    }

    #[test]
    fn the_old_state_form_of_an_address_still_reads() {
        let old: Seen = serde_json::from_str(r#"["198.51.100.7", 20833]"#).unwrap();
        assert_eq!(old.since, 20_833 * 86_400);
        let new = Seen {
            ip: IpAddr::from([10, 0, 0, 1]),
            day: 1,
            since: 99,
        };
        let back: Seen = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }

    #[test]
    fn live_calls_count_toward_their_tier_and_above() {
        let mut a = Account::default();
        let call = |id: &str, class| LiveCall {
            id: id.into(),
            class,
            since: 0,
            until: 100,
        };
        a.call_started(call("n1", Class::National));
        a.call_started(call("n2", Class::National));
        a.call_started(call("m1", Class::Mobile));
        assert_eq!(a.live_toward(Class::International, "x"), 0);
        assert_eq!(a.live_toward(Class::Mobile, "x"), 1);
        assert_eq!(a.live_toward(Class::National, "x"), 3);
        a.call_started(call("p1", Class::Premium));
        assert_eq!(a.live_toward(Class::International, "x"), 1);
        assert_eq!(a.live_toward(Class::National, "n1"), 3);
        assert_eq!(a.call_ended("n1"), Some(Class::National));
        assert_eq!(a.call_ended("n1"), None);
        // Asterisk counts one other call: the two oldest records were never ended.
        a.tidy_live(50, Some(1), "new");
        assert_eq!(a.live.len(), 1);
        assert_eq!(a.live[0].id, "p1");
        a.tidy_live(100, None, "new");
        assert!(a.live.is_empty(), "dropped at its until");
    }
}
