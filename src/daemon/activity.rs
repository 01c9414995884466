//! What the daemon did lately, for `extsecurity status`: calls and alerts in the last
//! minute and hour, the rules that alerted in the hour, the last alert lines.
//!
//! Calls are counted on the answer path, at 30,000 a second in a flood, so their
//! counters take no lock: a slot per second (and per minute) holds its stamp and its
//! count in one atomic word, reset by whoever first counts in a new second. Alerts also
//! keep their rule and line, behind a mutex that only alerts take.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Alert lines kept for `status`.
pub const LAST_ALERTS: usize = 10;

/// Counts in the last 60 seconds and the last 60 minutes, lock-free.
#[derive(Debug)]
pub struct Recent {
    seconds: Slots,
    minutes: Slots,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            seconds: Slots::new(),
            minutes: Slots::new(),
        }
    }
}

impl Recent {
    /// One more at Unix second `now`.
    pub fn count(&self, now: u64) {
        self.seconds.add(now);
        self.minutes.add(now / 60);
    }

    /// In the 60 seconds up to `now`, and in the 60 minutes up to `now`'s minute.
    pub fn last_minute_and_hour(&self, now: u64) -> (u64, u64) {
        (self.seconds.sum(now, 60), self.minutes.sum(now / 60, 60))
    }
}

/// 64 slots, each `stamp << 24 | count`: a stamp (a second or a minute) of 40 bits, a
/// count of up to 16.7 million in one slot (a minute at 30,000 calls a second is 1.8
/// million).
#[derive(Debug)]
struct Slots([AtomicU64; 64]);

const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

impl Slots {
    fn new() -> Slots {
        Slots(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    fn add(&self, stamp: u64) {
        let slot = &self.0[(stamp % 64) as usize];
        let stamped = stamp << COUNT_BITS;
        let _ = slot.fetch_update(Relaxed, Relaxed, |word| {
            Some(match word >> COUNT_BITS == stamp {
                true if word & COUNT_MAX == COUNT_MAX => word,
                true => word + 1,
                false => stamped | 1,
            })
        });
    }

    /// The counts of the `span` stamps up to and including `now`.
    fn sum(&self, now: u64, span: u64) -> u64 {
        let oldest = now.saturating_sub(span - 1);
        self.0
            .iter()
            .map(|slot| slot.load(Relaxed))
            .filter(|word| (oldest..=now).contains(&(word >> COUNT_BITS)))
            .map(|word| word & COUNT_MAX)
            .sum()
    }
}

/// The alerts of the last hour by rule, per minute, and the last alert lines.
#[derive(Debug, Default)]
pub struct AlertBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// (minute, rule → alerts), oldest first, at most the last 60 minutes.
    minutes: VecDeque<(u64, BTreeMap<String, u64>)>,
    /// The last alert lines as written, oldest first.
    last: VecDeque<String>,
}

impl AlertBook {
    /// An alert for `rule` at Unix second `now`, written as `line` (timestamp and all).
    pub fn alert(&self, rule: &str, line: &str, now: u64) {
        let minute = now / 60;
        let mut book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if book.minutes.back().is_none_or(|(m, _)| *m != minute) {
            book.minutes.push_back((minute, BTreeMap::new()));
        }
        while book.minutes.front().is_some_and(|(m, _)| *m + 60 <= minute) {
            book.minutes.pop_front();
        }
        if let Some((_, rules)) = book.minutes.back_mut() {
            *rules.entry(rule.to_string()).or_default() += 1;
        }
        if book.last.len() == LAST_ALERTS {
            book.last.pop_front();
        }
        book.last.push_back(line.to_string());
    }

    /// The rules that alerted in the hour up to `now`, most alerts first.
    pub fn top_rules(&self, now: u64) -> Vec<(String, u64)> {
        let minute = now / 60;
        let book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut rules: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, counts) in book.minutes.iter().filter(|(m, _)| *m + 60 > minute) {
            for (rule, n) in counts {
                *rules.entry(rule).or_default() += n;
            }
        }
        let mut top: Vec<(String, u64)> = rules.into_iter().map(|(r, n)| (r.into(), n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top
    }

    /// The last alert lines, newest first.
    pub fn last(&self) -> Vec<String> {
        let book = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        book.last.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fall_out_of_the_minute_and_the_hour_as_time_passes() {
        let r = Recent::default();
        let t = 1_800_000_000; // a minute boundary
        for _ in 0..3 {
            r.count(t);
        }
        r.count(t + 30);
        assert_eq!(r.last_minute_and_hour(t + 30), (4, 4));
        assert_eq!(r.last_minute_and_hour(t + 59), (4, 4));
        assert_eq!(r.last_minute_and_hour(t + 60), (1, 4), "t left the minute");
        assert_eq!(r.last_minute_and_hour(t + 91), (0, 4));
        assert_eq!(r.last_minute_and_hour(t + 3599), (0, 4));
        assert_eq!(r.last_minute_and_hour(t + 3600), (0, 0), "the hour passed");
        // t's slot, reused 64 seconds later, starts again from one; t + 30 is still
        // within the minute up to t + 64.
        r.count(t + 64);
        assert_eq!(r.last_minute_and_hour(t + 64), (2, 5));
        assert_eq!(r.last_minute_and_hour(t + 90), (1, 5));
    }

    #[test]
    fn threads_counting_at_once_lose_nothing() {
        let r = std::sync::Arc::new(Recent::default());
        let t = 1_800_000_000;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| r.count(t)))
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(r.last_minute_and_hour(t), (40_000, 40_000));
    }

    #[test]
    fn the_book_keeps_the_hours_rules_and_the_last_ten_lines() {
        let b = AlertBook::default();
        let t = 1_800_000_000;
        b.alert("extension_scan", "line 0", t);
        for i in 1..=12 {
            b.alert("auth_bruteforce", &format!("line {i}"), t + 60 * i);
        }
        assert_eq!(
            b.top_rules(t + 720),
            [("auth_bruteforce".into(), 12), ("extension_scan".into(), 1)]
        );
        assert_eq!(b.top_rules(t + 3600), [("auth_bruteforce".into(), 12)]);
        let last = b.last();
        assert_eq!(last.len(), LAST_ALERTS);
        assert_eq!(last[0], "line 12");
        assert_eq!(last[9], "line 3");
    }
}
