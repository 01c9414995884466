//! The AMI rules with memory, counted in the units their names promise: distinct user
//! names, failed tries, unauthenticated requests. No I/O; the caller passes the time.
//!
//! Events are not attempts (design.md §3b): one REGISTER try of a phone with a mistyped
//! user name raises four events, an OPTIONS ping two. Asterisk raises an event for a
//! request and then one for how it answered it — a challenge (`ChallengeSent`) or a
//! failed response (`ChallengeResponseFailed`) — so a [`Source`] keeps the request it
//! has seen the start of until the answer tells what it was:
//!
//! | a try | events (AccountID) | counts |
//! |---|---|---|
//! | wrong password on 1001 | ChallengeSent(1001), ChallengeResponseFailed(1001) | 1 failed try |
//! | unknown user 9999 | InvalidAccountID(9999), ChallengeSent(`<unknown>`), InvalidAccountID(9999), ChallengeResponseFailed(`<unknown>`) | name 9999, 1 request, 1 failed try |
//! | ACL denial on 1002 | FailedACL(1002), ChallengeSent(`<unknown>`), FailedACL(1002), ChallengeResponseFailed(`<unknown>`) | 1 ACL try, 1 request, 1 failed try |
//! | OPTIONS from an unknown address | InvalidAccountID(From user), ChallengeSent(`<unknown>`) | the name, 1 request |
//! | REGISTER without credentials for 1001, never answered | ChallengeSent(1001) | 1 request |
//! | a phone registering to 1001 | ChallengeSent(1001), SuccessfulAuth(1001) | nothing |
//!
//! A challenge to a known account is every phone's first step, and answered at once: it
//! is counted as a request when sent and taken back when its answer comes
//! (`SuccessfulAuth`, or a failed response, which counts as a failed try), so only the
//! challenges a client leaves unanswered — hundreds of REGISTERs without credentials for
//! a real account — add up to a `request_flood`.
//!
//! Call-IDs are no try boundary (svcrack reuses one for every guess; a phone reuses its
//! own across re-registrations), so none is read.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use super::codec::{EVENT_TYPES, Event};

/// What an address is alerted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Failed responses to a challenge, on existing accounts or unknown ones.
    AuthBruteforce,
    /// Distinct user names that matched no endpoint.
    AccountScan,
    /// Requests refused by an ACL.
    AclViolation,
    /// Requests refused with another error event (its index in [`EVENT_TYPES`]).
    OtherError(usize),
    /// Requests challenged or refused without any credentials.
    RequestFlood,
}

impl Rule {
    /// The alert's reason code (no whitespace: the fail2ban filter's `\S+` holds).
    pub fn reason(self) -> String {
        match self {
            Rule::AuthBruteforce => "auth_bruteforce".into(),
            Rule::AccountScan => "account_scan".into(),
            Rule::AclViolation => "acl_violation".into(),
            Rule::OtherError(i) => snake_case(EVENT_TYPES[i]),
            Rule::RequestFlood => "request_flood".into(),
        }
    }

    /// What the rule counts, as the alert line names it (`names=6`).
    pub fn unit(self) -> &'static str {
        match self {
            Rule::AccountScan => "names",
            Rule::RequestFlood => "requests",
            _ => "tries",
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

/// How many of each unit one address may cause within `window`; more alert. A limit of
/// 0 switches its rule off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub window: Duration,
    /// Failed tries (`auth_bruteforce`).
    pub auth_failures: usize,
    /// Distinct unknown user names (`account_scan`).
    pub unknown_accounts: usize,
    /// Tries refused by an ACL, and by each other error event.
    pub error_events: usize,
    /// Requests without credentials (`request_flood`).
    pub unauthenticated_requests: usize,
}

impl Default for Limits {
    /// More than 5 tries or names in 60 s, more than 120 requests (two a second).
    fn default() -> Limits {
        Limits {
            window: Duration::from_secs(60),
            auth_failures: 5,
            unknown_accounts: 5,
            error_events: 5,
            unauthenticated_requests: 120,
        }
    }
}

impl Limits {
    /// The largest `max_unknown_accounts`: an address keeps one more name than the
    /// limit, so this bounds the names held per address.
    pub const MAX_UNKNOWN_ACCOUNTS: usize = 50;

    /// The limit for `rule`, `None` when it is off.
    pub fn of(&self, rule: Rule) -> Option<usize> {
        let limit = match rule {
            Rule::AuthBruteforce => self.auth_failures,
            Rule::AccountScan => self.unknown_accounts,
            Rule::AclViolation | Rule::OtherError(_) => self.error_events,
            Rule::RequestFlood => self.unauthenticated_requests,
        };
        (limit > 0).then_some(limit)
    }
}

/// A crossing: the rule and its count in the rule's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub rule: Rule,
    pub count: usize,
}

/// The window is kept in this many slices: a count is exact to a slice (5 s of 60), and
/// never includes what is older than the window.
const SLICES: u32 = 12;

/// Counts in a sliding window of [`SLICES`] slices: 28 bytes whatever the limit.
#[derive(Debug, Clone, Default)]
struct Tally {
    counts: [u16; SLICES as usize],
    /// The slice last added to.
    newest: u32,
    /// The slice of the last alert: at most one per window.
    alerted: Option<u32>,
}

impl Tally {
    /// Takes back the latest one still in the window (a request answered after all).
    fn remove(&mut self, slice: u32) {
        self.advance(slice);
        for back in 0..SLICES.min(slice + 1) {
            let at = ((slice - back) % SLICES) as usize;
            if self.counts[at] > 0 {
                self.counts[at] -= 1;
                return;
            }
        }
    }

    /// Adds one at `slice` and returns the count within the window.
    fn add(&mut self, slice: u32) -> usize {
        self.advance(slice);
        let at = (slice % SLICES) as usize;
        self.counts[at] = self.counts[at].saturating_add(1);
        self.counts.iter().map(|&c| usize::from(c)).sum()
    }

    /// Empties the slices that fell out of the window since `newest`.
    fn advance(&mut self, slice: u32) {
        if slice <= self.newest {
            return;
        }
        if slice - self.newest >= SLICES {
            self.counts = [0; SLICES as usize];
        } else {
            for s in self.newest + 1..=slice {
                self.counts[(s % SLICES) as usize] = 0;
            }
        }
        self.newest = slice;
    }
}

/// Whether a count over `limit` at `slice` is to be alerted: once per window.
fn crossing(count: usize, limit: usize, alerted: &mut Option<u32>, slice: u32) -> bool {
    let due = alerted.is_none_or(|at| slice.saturating_sub(at) >= SLICES);
    if count > limit && due {
        *alerted = Some(slice);
        return true;
    }
    false
}

/// Distinct names seen lately: a keyed hash of each (an attacker cannot aim for
/// collisions) and its last slice, at most one more than the limit.
#[derive(Debug, Default)]
struct Names {
    seen: Vec<(u64, u32)>,
    alerted: Option<u32>,
}

impl Names {
    /// Notes `name` at `slice`; the number of distinct names within the window.
    fn add(&mut self, name: u64, slice: u32, keep: usize) -> usize {
        self.seen
            .retain(|&(_, at)| slice.saturating_sub(at) < SLICES);
        match self.seen.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = slice,
            None => {
                if self.seen.len() >= keep {
                    // The oldest goes: enough are left to know the limit is passed.
                    let oldest = (0..self.seen.len()).min_by_key(|&i| self.seen[i].1);
                    oldest.map(|i| self.seen.swap_remove(i));
                }
                self.seen.push((name, slice));
            }
        }
        self.seen.len()
    }
}

/// The start of a request whose answer has not been seen yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// `InvalidAccountID`: a user name that matched no endpoint.
    UnknownAccount,
    /// `FailedACL` or another error event: a request refused for that reason.
    Refused(Rule),
}

/// What one source address did lately.
#[derive(Debug, Default)]
struct Source {
    open: Option<Open>,
    /// Challenges to known accounts not answered yet, each counted as a request.
    challenged: u16,
    auth: Tally,
    acl: Tally,
    requests: Tally,
    names: Names,
    /// Other error events, by rule: rare, so not held inline.
    others: Vec<(Rule, Tally)>,
}

/// Per-address state under a hard cap.
pub struct Watch {
    sources: LruCache<IpAddr, Source>,
    /// Slices are counted from here, in `window / SLICES`.
    epoch: Instant,
    window: Duration,
    hasher: RandomState,
}

impl Watch {
    /// At most `max_tracked` addresses are remembered, the least recently seen
    /// forgotten first.
    pub fn new(max_tracked: NonZeroUsize) -> Watch {
        Watch {
            sources: LruCache::new(max_tracked),
            epoch: Instant::now(),
            window: Limits::default().window,
            hasher: RandomState::new(),
        }
    }

    /// Counts `event`; the alerts it raised (one per rule per window at most).
    pub fn record(&mut self, limits: &Limits, event: &Event, now: Instant) -> Vec<Alert> {
        if limits.window != self.window {
            // Slices of another width cannot be compared: start the counts afresh.
            self.window = limits.window;
            self.epoch = now;
            self.sources.clear();
        }
        let slice = self.slice(now);
        let name = (event.kind == "InvalidAccountID")
            .then(|| self.hasher.hash_one(event.account_id.shown()));
        let source = self
            .sources
            .get_or_insert_mut(event.remote_ip, Source::default);
        let mut counted = Vec::new();
        source.on_event(event, name, slice, limits, &mut counted);
        counted
    }

    fn slice(&self, now: Instant) -> u32 {
        let width = (self.window / SLICES).max(Duration::from_millis(1));
        let n = now.saturating_duration_since(self.epoch).as_nanos() / width.as_nanos();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Follows a reload of `memory.max_tracked_ips`.
    pub fn resize(&mut self, max_tracked: NonZeroUsize) {
        self.sources.resize(max_tracked);
    }

    /// Forgets everything counted for `ip` (`extsecurity unban`).
    pub fn forget(&mut self, ip: IpAddr) -> bool {
        self.sources.pop(&ip).is_some()
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

impl Source {
    fn on_event(
        &mut self,
        event: &Event,
        name: Option<u64>,
        slice: u32,
        limits: &Limits,
        alerts: &mut Vec<Alert>,
    ) {
        let unknown = event.account_id.shown() == b"<unknown>";
        let challenge = unknown && event.kind == "ChallengeSent";
        let failed_response = unknown && event.kind == "ChallengeResponseFailed";
        // The open request is answered now, or was refused without an answer.
        let mut answered = false;
        if let Some(open) = self.open.take()
            && !failed_response
        {
            // Challenged or refused: a request without credentials, and a try of the
            // rule that refused it. A failed response is the credentialed retry of a
            // try counted when it was challenged.
            self.count(Rule::RequestFlood, slice, limits, alerts);
            if let Open::Refused(rule) = open {
                self.count(rule, slice, limits, alerts);
            }
            answered = challenge;
        }
        match event.kind {
            // A request that raised nothing before its challenge (an INVITE from an
            // unknown address, say).
            "ChallengeSent" if challenge && !answered => {
                self.count(Rule::RequestFlood, slice, limits, alerts);
            }
            // A known account challenged: a request without credentials until it is
            // answered.
            "ChallengeSent" if !unknown => {
                self.count(Rule::RequestFlood, slice, limits, alerts);
                self.challenged = self.challenged.saturating_add(1);
            }
            "ChallengeResponseFailed" | "InvalidPassword" => {
                self.answered(unknown, slice);
                self.count(Rule::AuthBruteforce, slice, limits, alerts);
            }
            "SuccessfulAuth" => self.answered(unknown, slice),
            "InvalidAccountID" => {
                if let Some(name) = name {
                    self.name(name, slice, limits, alerts);
                }
                self.open = Some(Open::UnknownAccount);
            }
            "FailedACL" => self.open = Some(Open::Refused(Rule::AclViolation)),
            kind if event.is_error => {
                self.open = EVENT_TYPES
                    .iter()
                    .position(|t| *t == kind)
                    .map(|i| Open::Refused(Rule::OtherError(i)));
            }
            // SuccessfulAuth clears nothing else (guessers succeed, then abuse).
            _ => {}
        }
    }

    /// A known account's challenge answered: it was no request without credentials.
    fn answered(&mut self, unknown: bool, slice: u32) {
        if !unknown && self.challenged > 0 {
            self.challenged -= 1;
            self.requests.remove(slice);
        }
    }

    /// Adds one of `rule`'s unit.
    fn count(&mut self, rule: Rule, slice: u32, limits: &Limits, alerts: &mut Vec<Alert>) {
        let Some(limit) = limits.of(rule) else {
            return;
        };
        let tally = match rule {
            Rule::AuthBruteforce => &mut self.auth,
            Rule::AclViolation => &mut self.acl,
            Rule::RequestFlood => &mut self.requests,
            Rule::OtherError(_) | Rule::AccountScan => {
                let at = match self.others.iter().position(|(r, _)| *r == rule) {
                    Some(at) => at,
                    None => {
                        self.others.push((rule, Tally::default()));
                        self.others.len() - 1
                    }
                };
                &mut self.others[at].1
            }
        };
        let count = tally.add(slice);
        if crossing(count, limit, &mut tally.alerted, slice) {
            alerts.push(Alert { rule, count });
        }
    }

    /// Notes a user name that matched no endpoint.
    fn name(&mut self, name: u64, slice: u32, limits: &Limits, alerts: &mut Vec<Alert>) {
        let Some(limit) = limits.of(Rule::AccountScan) else {
            return;
        };
        let count = self.names.add(name, slice, limit + 1);
        if crossing(count, limit, &mut self.names.alerted, slice) {
            alerts.push(Alert {
                rule: Rule::AccountScan,
                count,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! Sequences of events as one try raises them (design.md §3b's table, from the
    //! captures of `tests/captures/ami/` and SIPVicious runs on a real Asterisk), played
    //! on a simulated clock.
    use super::*;
    use crate::ami::codec::AccountId;

    const PHONE: &str = "192.0.2.20";

    fn event(kind: &'static str, account: &str, ip: &str) -> Event {
        let informational = ["ChallengeSent", "SuccessfulAuth"].contains(&kind);
        Event {
            kind,
            is_error: !informational,
            service: "PJSIP".into(),
            account_id: AccountId::new(account.as_bytes()),
            remote_ip: ip.parse().unwrap(),
        }
    }

    /// REGISTER, 401, REGISTER with a wrong password, 401.
    fn wrong_password(account: &str) -> Vec<(&'static str, String)> {
        vec![
            ("ChallengeSent", account.into()),
            ("ChallengeResponseFailed", account.into()),
        ]
    }

    /// The same try with a user name that matches no endpoint.
    fn unknown_user(name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("InvalidAccountID", name.into()),
            ("ChallengeSent", "<unknown>".into()),
            ("InvalidAccountID", name.into()),
            ("ChallengeResponseFailed", "<unknown>".into()),
        ]
    }

    /// The same try from an address an ACL denies.
    fn acl_denied(account: &str) -> Vec<(&'static str, String)> {
        vec![
            ("FailedACL", account.into()),
            ("ChallengeSent", "<unknown>".into()),
            ("FailedACL", account.into()),
            ("ChallengeResponseFailed", "<unknown>".into()),
        ]
    }

    /// An OPTIONS (svmap, or a monitor's keep-alive) from an unknown address; a REGISTER
    /// that svwar never answers looks the same.
    fn unanswered(from_user: &str) -> Vec<(&'static str, String)> {
        vec![
            ("InvalidAccountID", from_user.into()),
            ("ChallengeSent", "<unknown>".into()),
        ]
    }

    /// Plays `tries`, the i-th at `every * i`, from `ip`; the alerts with the number of
    /// the try that raised each (1-based).
    fn play(
        limits: &Limits,
        ip: &str,
        every: Duration,
        tries: impl IntoIterator<Item = Vec<(&'static str, String)>>,
    ) -> Vec<(usize, String, usize)> {
        let mut watch = Watch::new(NonZeroUsize::new(100).unwrap());
        let t0 = Instant::now();
        let mut alerts = Vec::new();
        for (i, events) in tries.into_iter().enumerate() {
            for (kind, account) in events {
                let now = t0 + every * i as u32;
                for a in watch.record(limits, &event(kind, &account, ip), now) {
                    alerts.push((i + 1, a.rule.reason(), a.count));
                }
            }
        }
        alerts
    }

    const TEN_MINUTES_OF_20_S: usize = 30;

    #[test]
    fn a_phone_that_gets_it_wrong_every_20_s_is_never_alerted() {
        let every = Duration::from_secs(20);
        let limits = Limits::default();
        let n = TEN_MINUTES_OF_20_S;
        assert_eq!(
            play(
                &limits,
                PHONE,
                every,
                (0..n).map(|_| wrong_password("1001"))
            ),
            []
        );
        assert_eq!(
            play(&limits, PHONE, every, (0..n).map(|_| unknown_user("1O01"))),
            []
        );
        assert_eq!(
            play(&limits, PHONE, every, (0..n).map(|_| acl_denied("1002"))),
            []
        );
    }

    #[test]
    fn an_options_monitor_every_20_s_is_never_alerted() {
        let tries = (0..TEN_MINUTES_OF_20_S).map(|_| unanswered("nagios"));
        let alerts = play(&Limits::default(), PHONE, Duration::from_secs(20), tries);
        assert_eq!(alerts, []);
    }

    #[test]
    fn a_walk_over_user_names_is_an_account_scan_at_the_sixth_name() {
        let tries = (1000..1100).map(|n| unanswered(&n.to_string()));
        let alerts = play(
            &Limits::default(),
            "203.0.113.5",
            Duration::from_millis(20),
            tries,
        );
        assert_eq!(alerts, [(6, "account_scan".to_string(), 6)]);
    }

    #[test]
    fn guesses_at_150_per_second_are_auth_bruteforce_at_the_sixth() {
        // svcrack: the first REGISTER is challenged, then one failed response a guess,
        // one Call-ID and CSeq for all of them.
        let every = Duration::from_micros(6_667);
        let existing = std::iter::once(vec![("ChallengeSent", "1001".to_string())])
            .chain((0..20).map(|_| vec![("ChallengeResponseFailed", "1001".to_string())]));
        let alerts = play(&Limits::default(), "203.0.113.5", every, existing);
        assert_eq!(
            alerts,
            [(7, "auth_bruteforce".to_string(), 6)],
            "the 6th guess"
        );

        let unknown = std::iter::once(unanswered("9999")).chain((0..20).map(|_| {
            vec![
                ("InvalidAccountID", "9999".to_string()),
                ("ChallengeResponseFailed", "<unknown>".to_string()),
            ]
        }));
        let alerts = play(&Limits::default(), "203.0.113.6", every, unknown);
        assert_eq!(
            alerts,
            [(7, "auth_bruteforce".to_string(), 6)],
            "the 6th guess"
        );
    }

    #[test]
    fn acl_denials_count_once_per_try() {
        // Each try raises FailedACL twice: counting events would alert at the 3rd try.
        let tries = (0..10).map(|_| acl_denied("1002"));
        let alerts = play(&Limits::default(), PHONE, Duration::from_millis(100), tries);
        assert!(
            alerts.contains(&(6, "acl_violation".to_string(), 6)),
            "{alerts:?}"
        );
        assert!(alerts.iter().all(|(try_, ..)| *try_ >= 6), "{alerts:?}");
    }

    #[test]
    fn hundreds_of_unauthenticated_requests_under_one_name_are_a_request_flood() {
        let tries = (0..500).map(|_| unanswered("100"));
        let alerts = play(
            &Limits::default(),
            "203.0.113.7",
            Duration::from_millis(10),
            tries,
        );
        assert_eq!(alerts, [(121, "request_flood".to_string(), 121)]);
    }

    /// Issue 19: 300 REGISTERs without credentials for an existing account raise only
    /// `ChallengeSent(1001)`, never answered: a flood all the same.
    #[test]
    fn unanswered_challenges_to_a_known_account_are_a_request_flood() {
        let tries = (0..300).map(|_| vec![("ChallengeSent", "1001".to_string())]);
        let alerts = play(
            &Limits::default(),
            "203.0.113.8",
            Duration::from_millis(10),
            tries,
        );
        assert_eq!(alerts, [(121, "request_flood".to_string(), 121)]);
    }

    /// ...while phones that answer their challenges are never near it: registering
    /// every second with the right password, or with a wrong one every 20 s.
    #[test]
    fn answered_challenges_are_no_requests_without_credentials() {
        let right = |account: &str| {
            vec![
                ("ChallengeSent", account.to_string()),
                ("SuccessfulAuth", account.to_string()),
            ]
        };
        let alerts = play(
            &Limits::default(),
            PHONE,
            Duration::from_secs(1),
            (0..600).map(|_| right("1001")),
        );
        assert_eq!(alerts, []);
        let alerts = play(
            &Limits::default(),
            PHONE,
            Duration::from_secs(20),
            (0..TEN_MINUTES_OF_20_S).map(|_| wrong_password("1001")),
        );
        assert_eq!(alerts, []);
        // 200 phones behind one address registering within a second (after a power
        // cut): their answers interleave with the others' challenges.
        let burst: Vec<_> = (0..200)
            .flat_map(|i: u32| {
                let phone = format!("1{i:03}");
                let answer = format!("1{:03}", i.saturating_sub(5));
                let mut events = vec![("ChallengeSent", phone)];
                if i >= 5 {
                    events.push(("SuccessfulAuth", answer));
                }
                events
            })
            .collect();
        let alerts = play(&Limits::default(), PHONE, Duration::from_secs(1), [burst]);
        assert_eq!(alerts, [], "never more than a few outstanding at once");
    }

    #[test]
    fn a_source_hovering_above_a_limit_gets_one_line_per_window_at_most() {
        // Six failed tries a minute, one every 10 s, for ten minutes: always at or just
        // over the limit.
        let tries = (0..60).map(|_| wrong_password("1001"));
        let alerts = play(
            &Limits::default(),
            "203.0.113.8",
            Duration::from_secs(10),
            tries,
        );
        assert!(!alerts.is_empty());
        assert!(alerts.len() <= 10, "{alerts:?}");
        for pair in alerts.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 6, "a window apart: {alerts:?}");
        }
        assert!(
            alerts
                .iter()
                .all(|(_, reason, count)| reason == "auth_bruteforce" && *count == 6)
        );
    }

    #[test]
    fn a_limit_of_zero_switches_its_rule_off() {
        let limits = Limits {
            auth_failures: 0,
            unauthenticated_requests: 0,
            ..Limits::default()
        };
        let tries = (0..50).map(|_| unknown_user("9999"));
        assert_eq!(play(&limits, PHONE, Duration::from_millis(1), tries), []);
    }

    #[test]
    fn success_clears_nothing() {
        let mut tries: Vec<_> = (0..5).map(|_| wrong_password("1001")).collect();
        tries.push(vec![("SuccessfulAuth", "1001".to_string())]);
        tries.push(wrong_password("1001"));
        let alerts = play(&Limits::default(), PHONE, Duration::from_millis(1), tries);
        assert_eq!(alerts, [(7, "auth_bruteforce".to_string(), 6)]);
    }

    #[test]
    fn memory_is_bounded_per_address_and_in_all() {
        let limits = Limits::default();
        let mut watch = Watch::new(NonZeroUsize::new(100).unwrap());
        let now = Instant::now();
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            watch.record(&limits, &event("InvalidAccountID", "x", &ip), now);
        }
        assert_eq!(watch.len(), 100);
        for n in 0..10_000 {
            watch.record(
                &limits,
                &event("InvalidAccountID", &n.to_string(), PHONE),
                now,
            );
        }
        let source = watch.sources.peek(&PHONE.parse().unwrap()).unwrap();
        assert_eq!(source.names.seen.len(), limits.unknown_accounts + 1);
    }

    #[test]
    fn every_other_error_event_is_its_own_rule_and_unit() {
        assert_eq!(
            Rule::OtherError(
                EVENT_TYPES
                    .iter()
                    .position(|t| *t == "RequestBadFormat")
                    .unwrap()
            )
            .reason(),
            "request_bad_format"
        );
        assert_eq!(Rule::AccountScan.unit(), "names");
        assert_eq!(Rule::RequestFlood.unit(), "requests");
        assert_eq!(Rule::AclViolation.unit(), "tries");
    }

    #[test]
    fn a_tally_forgets_what_left_the_window_and_counts_nothing_older() {
        let mut t = Tally::default();
        assert_eq!(t.add(0), 1);
        assert_eq!(t.add(11), 2);
        assert_eq!(t.add(12), 2, "slice 0 left the window");
        assert_eq!(t.add(100), 1);
        assert_eq!(t.add(u32::MAX), 1);
        assert_eq!(t.add(u32::MAX), 2);
    }
}
