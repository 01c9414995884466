//! The seed's JSON requests that still arrive: the dialplan line that sends them runs a
//! shell with the caller's text pasted in, so each one is a line to replace. Those
//! requests come from processes Asterisk starts, not through the daemon; each marks
//! its alert-log line (`via=legacy_json`), and this thread reads the log back, counts
//! them (`extsecurity_legacy_requests_total`) and says so at most once a day.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alert_log::is_legacy;
use crate::daemon::Shared;
use crate::follow::Follower;

/// How often the log is read for new lines.
const POLL: Duration = Duration::from_secs(1);
/// How often the WARNING is said while such requests keep coming.
pub const SAY_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Follows the alert log from its end until the daemon stops.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("legacy".into())
        .spawn(move || run(&shared))
}

fn run(shared: &Shared) {
    let mut log = shared.config().log_file.clone();
    let mut follower = Follower::at_end(&log).ok();
    let mut saying = Saying::default();
    let mut line = Vec::with_capacity(512);
    while !shared.is_shutting_down() {
        let now_log = shared.config().log_file.clone();
        if now_log != log {
            log = now_log;
            follower = Follower::at_end(&log).ok();
        }
        let mut found = 0;
        if let Some(f) = follower.as_mut() {
            while let Ok(true) = f.next_line(&mut line) {
                found += u64::from(is_legacy(&line));
            }
        }
        shared.metrics.legacy(found);
        if let Some(n) = saying.found(found, Instant::now()) {
            tracing::warn!(
                "{n} requests in the seed's JSON form since the last notice: their System() line runs a shell with the caller's text (a caller name can run commands); replace it, `extsecurity check-config` names it"
            );
        }
        std::thread::sleep(POLL);
    }
}

/// When to say it: at the first request, then at most once per [`SAY_EVERY`], with
/// the count since. Pure: the time is passed in.
#[derive(Debug, Default)]
struct Saying {
    last: Option<Instant>,
    pending: u64,
}

impl Saying {
    fn found(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.pending += n;
        let due = self.last.is_none_or(|t| now.duration_since(t) >= SAY_EVERY);
        if self.pending == 0 || !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_said_at_once_then_once_a_day_with_the_count() {
        let t0 = Instant::now();
        let mut s = Saying::default();
        assert_eq!(s.found(0, t0), None, "nothing, nothing said");
        assert_eq!(s.found(3, t0), Some(3));
        assert_eq!(s.found(5, t0 + Duration::from_secs(60)), None);
        assert_eq!(s.found(2, t0 + Duration::from_secs(3600)), None);
        assert_eq!(s.found(1, t0 + SAY_EVERY), Some(8));
        assert_eq!(s.found(0, t0 + SAY_EVERY * 3), None, "none since");
    }
}
