//! Bans that escalate (`[nftables]` `ban_increment`, as fail2ban's
//! `bantime.increment`): an address banned again within `ban_history_days` of its
//! last ban is banned `ban_factor` times longer each time, up to `ban_max_seconds`; an
//! alert for an address still banned extends its ban from now. Every ban is remembered
//! with its comment, increment or not: when the table is removed under us (`flush
//! ruleset`) the bans still running are put back from here ([`History::active`]).
//! Pure: the ban thread keeps one, saves it in `bans.state` (a restart remembers),
//! `unban` forgets an address.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How bans grow. `None` in the config: every ban lasts `ban_seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    pub factor: f64,
    pub max: Duration,
    /// An address whose last ban ended longer ago than this starts again at one.
    pub history: Duration,
}

/// What is known of one address's bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Bans so far, this one included.
    pub count: u32,
    /// When the current (or last) ban ends, Unix seconds.
    pub until: u64,
    /// The element's comment in the kernel (the alert's reason); empty in files
    /// written before it was kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// A ban running now, as it is put back into a rebuilt table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub ip: IpAddr,
    pub left: Duration,
    pub comment: String,
}

/// What to do for one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub timeout: Duration,
    /// Which ban this is for the address: 1 for the first.
    pub nth: u32,
    /// It is banned now: the element is replaced, its time starting again.
    pub extends: bool,
}

/// Addresses remembered at most; the longest-ended go first.
pub const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub struct History {
    records: std::collections::HashMap<IpAddr, Record>,
    /// Changed since it was last saved.
    pub dirty: bool,
}

impl History {
    pub fn from_records(records: Vec<(IpAddr, Record)>) -> History {
        History {
            records: records.into_iter().collect(),
            dirty: false,
        }
    }

    /// The ban an alert for `ip` at `now` makes, remembered with the comment
    /// `comment_of(nth)` gives it (the reason, and which ban it is).
    pub fn ban(
        &mut self,
        ip: IpAddr,
        now: u64,
        base: Duration,
        increment: Option<&Increment>,
        comment_of: impl FnOnce(u32) -> String,
    ) -> Ban {
        let known = self.records.get(&ip).cloned();
        let known = known.as_ref();
        let banned_now = known.is_some_and(|r| r.until > now);
        let (count, extends, timeout) = match increment {
            // Without increment an element already there keeps its time (a plain
            // add leaves it), and so does its record.
            None => (1, false, base),
            Some(inc) => {
                let count = match known {
                    Some(r) if r.until > now => r.count,
                    Some(r) if now - r.until <= inc.history.as_secs() => r.count.saturating_add(1),
                    _ => 1,
                };
                (count, banned_now, length(base, inc, count))
            }
        };
        let until = match (increment, known) {
            (None, Some(r)) if banned_now => r.until,
            _ => now + timeout.as_secs(),
        };
        if self.records.len() >= MAX_REMEMBERED && !self.records.contains_key(&ip) {
            self.drop_oldest();
        }
        let comment = match (increment, known) {
            (None, Some(r)) if banned_now => r.comment.clone(),
            _ => comment_of(count),
        };
        self.records.insert(
            ip,
            Record {
                count,
                until,
                comment,
            },
        );
        self.dirty = true;
        Ban {
            timeout,
            nth: count,
            extends,
        }
    }

    /// The comment `ip`'s element has (empty for an address never banned).
    pub fn comment(&self, ip: IpAddr) -> String {
        self.records
            .get(&ip)
            .map(|r| r.comment.clone())
            .unwrap_or_default()
    }

    /// The bans still running at `now`, with the time each has left: what a table
    /// rebuilt after its removal must hold again.
    pub fn active(&self, now: u64) -> Vec<Active> {
        let mut out: Vec<Active> = self
            .records
            .iter()
            .filter(|(_, r)| r.until > now)
            .map(|(ip, r)| Active {
                ip: *ip,
                left: Duration::from_secs(r.until - now),
                comment: r.comment.clone(),
            })
            .collect();
        out.sort_by_key(|a| a.ip);
        out
    }

    /// `extsecurity unban`: the address starts again at one.
    pub fn forget(&mut self, ip: IpAddr) -> bool {
        let known = self.records.remove(&ip).is_some();
        self.dirty |= known;
        known
    }

    /// The records worth keeping at `now`, for the state file.
    pub fn records(&self, now: u64, increment: Option<&Increment>) -> Vec<(IpAddr, Record)> {
        let keep = increment.map_or(0, |i| i.history.as_secs());
        let mut out: Vec<(IpAddr, Record)> = self
            .records
            .iter()
            .filter(|(_, r)| r.until + keep >= now)
            .map(|(ip, r)| (*ip, r.clone()))
            .collect();
        out.sort_by_key(|(ip, _)| *ip);
        out
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn drop_oldest(&mut self) {
        let mut ends: Vec<u64> = self.records.values().map(|r| r.until).collect();
        let cut = ends.len() / 10;
        let (_, &mut threshold, _) = ends.select_nth_unstable(cut);
        self.records.retain(|_, r| r.until > threshold);
    }
}

/// `base × factor^(count-1)`, at most `max` (and never below `base`).
pub fn length(base: Duration, inc: &Increment, count: u32) -> Duration {
    let seconds = base.as_secs_f64() * inc.factor.powi(count.saturating_sub(1).min(64) as i32);
    let capped = seconds.min(inc.max.as_secs_f64()).max(base.as_secs_f64());
    Duration::from_secs(capped.round() as u64)
}

/// `2nd`, `3rd`, `11th`, `21st`.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn nth(n: u32) -> String {
        format!("ban {n}")
    }

    fn inc() -> Increment {
        Increment {
            factor: 2.0,
            max: Duration::from_secs(7 * DAY),
            history: Duration::from_secs(30 * DAY),
        }
    }

    #[test]
    fn a_returning_address_is_banned_longer_each_time_up_to_the_maximum() {
        let mut h = History::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let base = Duration::from_secs(DAY);
        let mut now = 1_800_000_000;
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let ban = h.ban(ip, now, base, Some(&inc()), nth);
            assert!(!ban.extends);
            lengths.push((ban.nth, ban.timeout.as_secs() / DAY));
            now += ban.timeout.as_secs() + 3600; // back an hour after it ended
        }
        assert_eq!(lengths, [(1, 1), (2, 2), (3, 4), (4, 7), (5, 7)]);
    }

    #[test]
    fn an_alert_while_banned_extends_from_now_without_counting_a_new_ban() {
        let mut h = History::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let base = Duration::from_secs(DAY);
        let t = 1_800_000_000;
        h.ban(ip, t, base, Some(&inc()), nth);
        let again = h.ban(ip, t + 3600, base, Some(&inc()), nth);
        assert_eq!(
            again,
            Ban {
                timeout: base,
                nth: 1,
                extends: true
            }
        );
        assert_eq!(h.records(t, Some(&inc()))[0].1.until, t + 3600 + DAY);
    }

    #[test]
    fn an_address_back_after_the_history_starts_again_and_unban_forgets() {
        let mut h = History::default();
        let ip: IpAddr = "2001:db8::5".parse().unwrap();
        let base = Duration::from_secs(DAY);
        let t = 1_800_000_000;
        h.ban(ip, t, base, Some(&inc()), nth);
        assert_eq!(h.ban(ip, t + 32 * DAY, base, Some(&inc()), nth).nth, 1);
        h.ban(ip, t + 34 * DAY, base, Some(&inc()), nth);
        assert!(h.forget(ip));
        assert_eq!(h.ban(ip, t + 37 * DAY, base, Some(&inc()), nth).nth, 1);
        assert!(!h.forget("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn without_increment_every_ban_is_the_base() {
        let mut h = History::default();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let ban = h.ban(ip, 0, Duration::from_secs(60), None, nth);
        assert_eq!(
            (ban.timeout.as_secs(), ban.nth, ban.extends),
            (60, 1, false)
        );
        // Remembered all the same (a rebuilt table needs it), and a second alert
        // while banned keeps the element's time and comment, as the kernel does.
        let again = h.ban(ip, 30, Duration::from_secs(60), None, |_| "other".into());
        assert_eq!((again.nth, again.extends), (1, false));
        assert_eq!(
            h.active(30),
            [Active {
                ip,
                left: Duration::from_secs(30),
                comment: "ban 1".into()
            }]
        );
        assert!(h.active(60).is_empty());
        assert!(h.records(61, None).is_empty());
    }

    #[test]
    fn active_bans_keep_their_comment_and_time_left() {
        let mut h = History::default();
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "2001:db8::7".parse().unwrap();
        let base = Duration::from_secs(DAY);
        let t = 1_800_000_000;
        h.ban(a, t, base, Some(&inc()), nth);
        h.ban(a, t + 2 * DAY, base, Some(&inc()), nth);
        h.ban(b, t + 2 * DAY, base, Some(&inc()), nth);
        let got = h.active(t + 2 * DAY + 100);
        assert_eq!(
            got,
            [
                Active {
                    ip: a,
                    left: Duration::from_secs(2 * DAY - 100),
                    comment: "ban 2".into()
                },
                Active {
                    ip: b,
                    left: Duration::from_secs(DAY - 100),
                    comment: "ban 1".into()
                },
            ]
        );
        // A state file of the old shape (no comment) still reads.
        let old: Vec<(IpAddr, Record)> =
            serde_json::from_str(r#"[["203.0.113.5",{"count":2,"until":5}]]"#).unwrap();
        assert_eq!(old[0].1.comment, "");
    }

    #[test]
    fn memory_is_bounded_and_the_longest_ended_go_first() {
        let mut h = History::default();
        let base = Duration::from_secs(60);
        for i in 0..(MAX_REMEMBERED as u32 + 10) {
            h.ban(
                IpAddr::from(i.to_be_bytes()),
                u64::from(i),
                base,
                Some(&inc()),
                nth,
            );
        }
        assert!(h.len() <= MAX_REMEMBERED);
        assert!(
            h.records
                .contains_key(&IpAddr::from((MAX_REMEMBERED as u32 + 9).to_be_bytes()))
        );
        assert!(!h.records.contains_key(&IpAddr::from(0u32.to_be_bytes())));
    }

    #[test]
    fn ordinals_read_as_english() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal).to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }
}
