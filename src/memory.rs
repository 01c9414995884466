//! Rules that need memory across calls, for the daemon: what one IP did in the last
//! window. No I/O; the caller passes the time.
//!
//! - enumeration: more distinct extensions than `max_extensions` within the window
//!   (SIPVicious `svwar` walks 100–999): `extension_scan`;
//! - rate: more calls than `max_calls` within the window: `call_rate`;
//! - repeat offenders: an IP alerted on within `repeat_offender` is alerted again at
//!   once: `repeat_offender`.
//!
//! Memory is bounded: at most `max_tracked_ips` addresses, the least recently seen
//! evicted first, and per address at most one more timestamp than a threshold needs.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::call::Call;
use crate::config::MemoryConfig;
use crate::rules::{Reason, Verdict};

/// What one address did lately.
#[derive(Debug, Default)]
struct History {
    calls: VecDeque<Instant>,
    /// Distinct extensions (hashed) with the last time each was dialed, oldest first.
    extens: VecDeque<(Instant, u64)>,
    alerted_at: Option<Instant>,
}

/// Per-IP histories with a hard cap.
pub struct Memory {
    ips: LruCache<IpAddr, History>,
    hasher: RandomState,
}

impl Memory {
    pub fn new(max_tracked_ips: NonZeroUsize) -> Memory {
        Memory {
            ips: LruCache::new(max_tracked_ips),
            hasher: RandomState::new(),
        }
    }

    /// Addresses currently remembered.
    pub fn len(&self) -> usize {
        self.ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty()
    }

    /// Applies the cap of a reloaded config (evicting the oldest if it shrank).
    pub fn resize(&mut self, max_tracked_ips: NonZeroUsize) {
        self.ips.resize(max_tracked_ips);
    }

    /// Forgets everything about `ip` (`extsecurity unban`): its windows and its
    /// repeat-offender mark. Whether it was remembered.
    pub fn forget(&mut self, ip: IpAddr) -> bool {
        self.ips.pop(&ip).is_some()
    }

    /// Remembers that `ip` was alerted on elsewhere (an AMI rule), so that a call it
    /// places within `repeat_offender` alerts at once: guessers succeed, then call.
    pub fn mark_alerted(&mut self, ip: IpAddr, now: Instant) {
        self.ips.get_or_insert_mut(ip, History::default).alerted_at = Some(now);
    }

    /// Whether `ip` was alerted on within `within` of `now` (by a call's rules or the
    /// AMI's): a login from it is no phone's.
    pub fn was_alerted(&self, ip: IpAddr, now: Instant, within: Duration) -> bool {
        self.ips
            .peek(&ip)
            .and_then(|h| h.alerted_at)
            .is_some_and(|t| now.saturating_duration_since(t) < within)
    }

    /// Records `call` and returns the verdict with the memory rules applied on top of
    /// the per-call `verdict`.
    pub fn judge(
        &mut self,
        config: &MemoryConfig,
        now: Instant,
        call: &Call,
        verdict: Verdict,
    ) -> Verdict {
        if !config.enabled || verdict == Verdict::Trusted {
            return verdict;
        }
        let exten = self.hasher.hash_one(&call.exten);
        let history = self.ips.get_or_insert_mut(call.peer_ip, History::default);
        history.forget_before(now.checked_sub(config.window));
        history.record(now, exten, config);
        let verdict = match verdict {
            Verdict::Alert(reason) => Verdict::Alert(reason),
            _ if history
                .alerted_at
                .is_some_and(|t| now.duration_since(t) < config.repeat_offender) =>
            {
                Verdict::Alert(Reason::RepeatOffender)
            }
            _ if history.extens.len() > config.max_extensions => {
                Verdict::Alert(Reason::ExtensionScan)
            }
            _ if history.calls.len() > config.max_calls => Verdict::Alert(Reason::CallRate),
            ok => ok,
        };
        if verdict.is_alert() {
            history.alerted_at = Some(now);
        }
        verdict
    }
}

impl History {
    fn forget_before(&mut self, cutoff: Option<Instant>) {
        let Some(cutoff) = cutoff else { return };
        while self.calls.front().is_some_and(|&t| t < cutoff) {
            self.calls.pop_front();
        }
        while self.extens.front().is_some_and(|&(t, _)| t < cutoff) {
            self.extens.pop_front();
        }
    }

    /// Keeps at most one entry more than each threshold: enough to see it crossed.
    fn record(&mut self, now: Instant, exten: u64, config: &MemoryConfig) {
        self.calls.push_back(now);
        if self.calls.len() > config.max_calls + 1 {
            self.calls.pop_front();
        }
        if let Some(i) = self.extens.iter().position(|&(_, h)| h == exten) {
            self.extens.remove(i);
        }
        self.extens.push_back((now, exten));
        if self.extens.len() > config.max_extensions + 1 {
            self.extens.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ip: &str, exten: &str) -> Call {
        Call {
            exten: exten.into(),
            ..Call::new(ip.parse().unwrap())
        }
    }

    fn memory() -> (Memory, MemoryConfig) {
        let config = MemoryConfig::default();
        (Memory::new(config.max_tracked_ips), config)
    }

    #[test]
    fn an_address_alerted_on_elsewhere_is_a_repeat_offender_when_it_calls() {
        let (mut m, c) = memory();
        let t0 = Instant::now();
        m.mark_alerted("203.0.113.5".parse().unwrap(), t0);
        let later = t0 + Duration::from_secs(600);
        let ok = Verdict::Ok;
        assert_eq!(
            m.judge(&c, later, &call("203.0.113.5", "4915100000001"), ok.clone()),
            Verdict::Alert(Reason::RepeatOffender)
        );
        assert_eq!(
            m.judge(&c, later, &call("203.0.113.6", "4915100000001"), ok.clone()),
            ok
        );
    }

    #[test]
    fn an_extension_scan_is_caught_at_the_eleventh_distinct_extension() {
        let (mut m, c) = memory();
        let t0 = Instant::now();
        for i in 0..10 {
            let v = m.judge(
                &c,
                t0 + Duration::from_secs(i),
                &call("192.0.2.1", &format!("49151000{i:05}")),
                Verdict::Ok,
            );
            assert_eq!(v, Verdict::Ok, "call {i}");
        }
        let v = m.judge(
            &c,
            t0 + Duration::from_secs(10),
            &call("192.0.2.1", "4915100099999"),
            Verdict::Ok,
        );
        assert_eq!(v, Verdict::Alert(Reason::ExtensionScan));
        // Once alerted, every further call is a repeat offence, even an ordinary one.
        let v = m.judge(
            &c,
            t0 + Duration::from_secs(600),
            &call("192.0.2.1", "4915100000000"),
            Verdict::Ok,
        );
        assert_eq!(v, Verdict::Alert(Reason::RepeatOffender));
        let v = m.judge(
            &c,
            t0 + Duration::from_secs(600 + 3600),
            &call("192.0.2.1", "4915100000000"),
            Verdict::Ok,
        );
        assert_eq!(v, Verdict::Ok, "the repeat window ends");
    }

    #[test]
    fn the_same_extension_again_is_not_enumeration_but_counts_for_rate() {
        let (mut m, c) = memory();
        let t0 = Instant::now();
        for i in 0..30 {
            assert_eq!(
                m.judge(
                    &c,
                    t0 + Duration::from_millis(i * 100),
                    &call("192.0.2.1", "4915112345678"),
                    Verdict::Ok
                ),
                Verdict::Ok
            );
        }
        let v = m.judge(
            &c,
            t0 + Duration::from_secs(4),
            &call("192.0.2.1", "4915112345678"),
            Verdict::Ok,
        );
        assert_eq!(v, Verdict::Alert(Reason::CallRate));
    }

    #[test]
    fn old_calls_leave_the_window() {
        let (mut m, c) = memory();
        let t0 = Instant::now();
        for i in 0..200u64 {
            // Ten distinct extensions a minute, forever: never more than ten in a window.
            let at = t0 + Duration::from_secs(i * 7);
            let v = m.judge(
                &c,
                at,
                &call("192.0.2.1", &format!("4915100{:06}", i)),
                Verdict::Ok,
            );
            assert_eq!(v, Verdict::Ok, "call {i}");
        }
    }

    #[test]
    fn per_call_alerts_mark_repeat_offenders_and_trusted_calls_are_not_tracked() {
        let (mut m, c) = memory();
        let t0 = Instant::now();
        let v = m.judge(
            &c,
            t0,
            &call("192.0.2.1", "100"),
            Verdict::Alert(Reason::ExtensionBanned),
        );
        assert_eq!(v, Verdict::Alert(Reason::ExtensionBanned));
        let v = m.judge(
            &c,
            t0 + Duration::from_secs(1),
            &call("192.0.2.1", "4915112345678"),
            Verdict::Ok,
        );
        assert_eq!(v, Verdict::Alert(Reason::RepeatOffender));
        assert_eq!(
            m.judge(&c, t0, &call("192.0.2.9", "1"), Verdict::Trusted),
            Verdict::Trusted
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn memory_is_capped_and_evicts_the_least_recently_seen() {
        let c = MemoryConfig {
            max_tracked_ips: NonZeroUsize::new(1000).unwrap(),
            ..MemoryConfig::default()
        };
        let mut m = Memory::new(c.max_tracked_ips);
        let t0 = Instant::now();
        m.judge(
            &c,
            t0,
            &call("192.0.2.1", "100"),
            Verdict::Alert(Reason::ExtensionBanned),
        );
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            m.judge(&c, t0, &call(&ip, "4915112345678"), Verdict::Ok);
            assert!(m.len() <= 1000);
        }
        assert_eq!(m.len(), 1000);
        // The flood pushed the offender out: the cap holds even against its history.
        let v = m.judge(&c, t0, &call("192.0.2.1", "4915112345678"), Verdict::Ok);
        assert_eq!(v, Verdict::Ok);
    }

    #[test]
    fn disabled_memory_changes_nothing() {
        let c = MemoryConfig {
            enabled: false,
            ..MemoryConfig::default()
        };
        let mut m = Memory::new(c.max_tracked_ips);
        for i in 0..100 {
            assert_eq!(
                m.judge(
                    &c,
                    Instant::now(),
                    &call("192.0.2.1", &i.to_string()),
                    Verdict::Ok
                ),
                Verdict::Ok
            );
        }
        assert!(m.is_empty());
    }
}
