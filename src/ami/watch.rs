//! The AMI rules with memory: per source address, how many events of each category
//! arrived lately, and when that crosses a limit. No I/O; the caller passes the time.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::codec::{EVENT_TYPES, Event};

/// What an event counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// A wrong password for an account that exists: `auth_bruteforce`.
    AuthFailure,
    /// An account that does not exist: `account_scan`.
    UnknownAccount,
    /// FailedACL: `acl_violation`.
    AclViolation,
    /// Another error-severity event (its index in [`EVENT_TYPES`]): a reason named for it.
    OtherError(usize),
}

impl Category {
    /// The alert's reason code (no whitespace: the fail2ban filter's `\S+` holds).
    pub fn reason(self) -> String {
        match self {
            Category::AuthFailure => "auth_bruteforce".into(),
            Category::UnknownAccount => "account_scan".into(),
            Category::AclViolation => "acl_violation".into(),
            Category::OtherError(i) => snake_case(EVENT_TYPES[i]),
        }
    }
}

/// `RequestBadFormat` → `request_bad_format`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Which count an event adds to, if any (design.md §3b: what chan_pjsip raises).
/// `SuccessfulAuth` counts toward nothing and clears nothing: guessers succeed, then
/// abuse. A `ChallengeSent` to a known account is every client's normal first step.
/// Failed AMI logins (`InvalidPassword`, `InvalidAccountID` with `Service: AMI`) count
/// like any other service's.
pub fn categorise(event: &Event) -> Option<Category> {
    let unknown = event.account_id.shown() == b"<unknown>";
    match event.kind {
        "SuccessfulAuth" => None,
        "InvalidAccountID" => Some(Category::UnknownAccount),
        "ChallengeSent" | "ChallengeResponseFailed" if unknown => Some(Category::UnknownAccount),
        "ChallengeResponseFailed" | "InvalidPassword" => Some(Category::AuthFailure),
        "FailedACL" => Some(Category::AclViolation),
        kind if event.is_error => EVENT_TYPES
            .iter()
            .position(|t| *t == kind)
            .map(Category::OtherError),
        _ => None,
    }
}

/// How many events of a category one address may cause within `window`; more alert.
/// A limit of 0 switches its rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub window: Duration,
    pub auth_failures: usize,
    pub unknown_accounts: usize,
    /// FailedACL and every other error-severity event.
    pub error_events: usize,
}

impl Default for Limits {
    /// More than 5 in 60 s, for every category.
    fn default() -> Limits {
        Limits {
            window: Duration::from_secs(60),
            auth_failures: 5,
            unknown_accounts: 5,
            error_events: 5,
        }
    }
}

impl Limits {
    /// The limit for `category`, `None` when its rule is off.
    pub fn of(&self, category: Category) -> Option<usize> {
        let limit = match category {
            Category::AuthFailure => self.auth_failures,
            Category::UnknownAccount => self.unknown_accounts,
            Category::AclViolation | Category::OtherError(_) => self.error_events,
        };
        (limit > 0).then_some(limit)
    }
}

/// Per-address sliding windows, one per category, under a hard cap.
pub struct Watch {
    windows: LruCache<(IpAddr, Category), Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// At most one more timestamp than the limit: enough to know it was exceeded.
    times: VecDeque<Instant>,
    /// Alerted and not yet back under the limit: count on, write no more lines.
    alerted: bool,
}

impl Watch {
    /// At most `max_tracked` (address, category) pairs are remembered, the least
    /// recently seen forgotten first.
    pub fn new(max_tracked: NonZeroUsize) -> Watch {
        Watch {
            windows: LruCache::new(max_tracked),
        }
    }

    /// Counts `event`; returns its category if this event crossed the limit (one alert
    /// per crossing, however many events follow while the count stays high).
    pub fn record(&mut self, limits: &Limits, event: &Event, now: Instant) -> Option<Category> {
        let category = categorise(event)?;
        let limit = limits.of(category)?;
        let w = self
            .windows
            .get_or_insert_mut((event.remote_ip, category), Window::default);
        if let Some(cutoff) = now.checked_sub(limits.window) {
            while w.times.front().is_some_and(|&t| t < cutoff) {
                w.times.pop_front();
            }
        }
        w.times.push_back(now);
        while w.times.len() > limit + 1 {
            w.times.pop_front();
        }
        let over = w.times.len() > limit;
        let crossed = over && !w.alerted;
        w.alerted = over;
        crossed.then_some(category)
    }

    /// Follows a reload of `memory.max_tracked_ips`.
    pub fn resize(&mut self, max_tracked: NonZeroUsize) {
        self.windows.resize(max_tracked);
    }

    /// (address, category) pairs remembered.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::codec::AccountId;

    fn event(kind: &'static str, error: bool, account: &str, ip: &str) -> Event {
        Event {
            kind,
            is_error: error,
            service: "PJSIP".into(),
            account_id: AccountId::new(account.as_bytes()),
            remote_ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn events_count_toward_the_category_design_3b_describes() {
        let c = |k, e, a| categorise(&event(k, e, a, "192.0.2.1")).map(Category::reason);
        let cases = [
            (
                "ChallengeResponseFailed",
                true,
                "1001",
                Some("auth_bruteforce"),
            ),
            ("InvalidPassword", true, "admin", Some("auth_bruteforce")),
            ("InvalidAccountID", true, "9999", Some("account_scan")),
            ("ChallengeSent", false, "<unknown>", Some("account_scan")),
            (
                "ChallengeResponseFailed",
                true,
                "<unknown>",
                Some("account_scan"),
            ),
            ("FailedACL", true, "1002", Some("acl_violation")),
            ("RequestBadFormat", true, "x", Some("request_bad_format")),
            ("ChallengeSent", false, "1001", None),
            ("SuccessfulAuth", false, "1001", None),
            ("UnexpectedAddress", false, "1001", None),
        ];
        for (kind, error, account, reason) in cases {
            assert_eq!(
                c(kind, error, account).as_deref(),
                reason,
                "{kind} {account}"
            );
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_alerts_once_per_crossing_and_success_clears_nothing() {
        let limits = Limits::default();
        let mut w = Watch::new(NonZeroUsize::new(1000).unwrap());
        let t0 = Instant::now();
        let fail = event("ChallengeResponseFailed", true, "1001", "203.0.113.5");
        let ok = event("SuccessfulAuth", false, "1001", "203.0.113.5");
        let mut alerts = Vec::new();
        for i in 0..20u64 {
            assert_eq!(w.record(&limits, &ok, at(t0, i * 100)), None);
            alerts.extend(
                w.record(&limits, &fail, at(t0, i * 100))
                    .map(|c| (i, c.reason())),
            );
        }
        assert_eq!(
            alerts,
            [(5, "auth_bruteforce".to_string())],
            "the sixth failure, once"
        );
        // After the window slides below the limit, a new burst alerts again.
        let again: Vec<_> = (0..6)
            .filter_map(|i| w.record(&limits, &fail, at(t0, 300_000 + i)))
            .collect();
        assert_eq!(again, [Category::AuthFailure]);
        // Another address is counted apart.
        let other = event("InvalidAccountID", true, "x", "198.51.100.1");
        assert_eq!(w.record(&limits, &other, at(t0, 300_000)), None);
    }

    #[test]
    fn five_within_the_window_is_not_more_than_five() {
        let limits = Limits::default();
        let mut w = Watch::new(NonZeroUsize::new(10).unwrap());
        let t0 = Instant::now();
        let scan = event("InvalidAccountID", true, "x", "203.0.113.9");
        // Six events, but never more than five inside any 60 s: no alert.
        let alerts: Vec<_> = (0..12u64)
            .filter_map(|i| w.record(&limits, &scan, at(t0, i * 13_000)))
            .collect();
        assert_eq!(alerts, []);
    }

    #[test]
    fn a_limit_of_zero_switches_its_rule_off_and_limits_are_per_category() {
        let limits = Limits {
            auth_failures: 0,
            unknown_accounts: 2,
            ..Limits::default()
        };
        let mut w = Watch::new(NonZeroUsize::new(10).unwrap());
        let now = Instant::now();
        let fail = event("ChallengeResponseFailed", true, "1001", "203.0.113.5");
        assert!((0..50).all(|_| w.record(&limits, &fail, now).is_none()));
        let scan = event("InvalidAccountID", true, "x", "203.0.113.5");
        let alerts: Vec<_> = (0..3)
            .map(|_| w.record(&limits, &scan, now).is_some())
            .collect();
        assert_eq!(alerts, [false, false, true]);
    }

    #[test]
    fn the_watch_is_capped() {
        let limits = Limits::default();
        let mut w = Watch::new(NonZeroUsize::new(100).unwrap());
        let now = Instant::now();
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            w.record(&limits, &event("InvalidAccountID", true, "x", &ip), now);
        }
        assert_eq!(w.len(), 100);
    }
}
