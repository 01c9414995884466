//! Seeing FastAGI overload before it bites.
//!
//! When every `max_connections` slot is busy, new connections wait in the kernel's
//! accept queue; when that is full too, the kernel drops their SYNs, Asterisk's FastAGI
//! connect gives up after 2 s and the call runs on unchecked, with no line in our log
//! (measured on a real PBX at 800 calls/s, design.md §3a). The daemon cannot see those
//! calls, but it can see the queue filling: the kernel reports a listening socket's
//! queue length and limit in `TCP_INFO`, and the namespace's dropped connections in
//! `/proc/net/netstat`. [`watch`] samples both, keeps the metrics current, and says
//! so in one WARNING line when overload starts and one INFO line when it ends.
//!
//! An overload is an episode, not a sample ([`Episodes`]): under a flood the queue
//! drains for a quarter second now and then, and each such gap was a WARNING and an
//! INFO of its own (14 WARNINGs in 20 s on a real PBX at 1,200–1,600 calls/s). It
//! begins once overload has lasted [`BEGIN_AFTER`] and ends once it has been clear for
//! [`END_AFTER`].

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::daemon::Shared;

/// How often the queue is sampled.
pub const INTERVAL: Duration = Duration::from_millis(250);
/// While the queue is empty, `/proc/net/netstat` is read every this many samples.
const NETSTAT_EVERY: u64 = 16;
/// Overloaded this long in every sample before it is an overload.
pub const BEGIN_AFTER: Duration = Duration::from_millis(500);
/// Clear this long in every sample before the overload is over.
pub const END_AFTER: Duration = Duration::from_secs(5);

/// Overload episodes from samples, with hysteresis. Pure: the time is passed in.
#[derive(Debug, Default)]
pub struct Episodes {
    /// Since when the samples have said "overloaded" without a break.
    overloaded_since: Option<Instant>,
    /// Since when they have said "clear", while an episode lasts.
    clear_since: Option<Instant>,
    /// The episode going on: when it began.
    episode: Option<Instant>,
}

/// What a sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Began,
    /// The episode is over; it lasted this long, up to its last overloaded sample.
    Ended(Duration),
}

impl Episodes {
    pub fn sample(&mut self, overloaded: bool, now: Instant) -> Option<Change> {
        if overloaded {
            self.clear_since = None;
            let since = *self.overloaded_since.get_or_insert(now);
            if self.episode.is_none() && now.duration_since(since) >= BEGIN_AFTER {
                self.episode = Some(since);
                return Some(Change::Began);
            }
            return None;
        }
        self.overloaded_since = None;
        let began = self.episode?;
        let clear = *self.clear_since.get_or_insert(now);
        if now.duration_since(clear) < END_AFTER {
            return None;
        }
        self.episode = None;
        self.clear_since = None;
        Some(Change::Ended(clear.duration_since(began)))
    }

    /// Whether an overload is going on.
    pub fn is_on(&self) -> bool {
        self.episode.is_some()
    }
}

/// A listening socket's accept queue, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptQueue {
    /// Connections the kernel completed that we have not accepted yet.
    pub waiting: u32,
    /// The most it holds: `listen()`'s backlog, capped by `net.core.somaxconn`.
    pub limit: u32,
}

/// The accept queue of a listening TCP socket: for a socket in LISTEN state, Linux
/// reports the queue length in `tcpi_unacked` and its limit in `tcpi_sacked`.
pub fn accept_queue(listener: BorrowedFd<'_>) -> Option<AcceptQueue> {
    // SAFETY: tcp_info is plain old data; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of the sizes given; the descriptor
    // is open for the duration of the borrow.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(AcceptQueue {
        waiting: info.tcpi_unacked,
        limit: info.tcpi_sacked,
    })
}

/// `TcpExt: ListenOverflows` of this network namespace: connections dropped because a
/// listening socket's queue was full (every socket's, not only ours). Read through
/// `/proc/self`, which the unit's `ProcSubset=pid` leaves visible. Read into one
/// buffer large enough for the whole file: `read_to_string` sizes its reads from a
/// `stat` that says 0 for `/proc` and doubles from 32 bytes, a dozen system calls
/// four times a second.
pub fn listen_overflows() -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/self/net/netstat").ok()?;
    let mut text = Vec::with_capacity(16 * 1024);
    loop {
        let at = text.len();
        text.resize(at + 8 * 1024, 0);
        let n = file.read(&mut text[at..]).ok()?;
        text.truncate(at + n);
        if n == 0 {
            break;
        }
    }
    parse_listen_overflows(std::str::from_utf8(&text).ok()?)
}

/// `/proc/net/netstat` holds pairs of lines, names then values, per protocol.
fn parse_listen_overflows(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some(names), Some(values)) = (
            names.strip_prefix("TcpExt:"),
            values.strip_prefix("TcpExt:"),
        ) else {
            continue;
        };
        let at = names
            .split_whitespace()
            .position(|n| n == "ListenOverflows")?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

/// What one sample shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub queue: AcceptQueue,
    /// `max_connections` slots in use.
    pub busy: usize,
    pub max: usize,
}

impl Sample {
    /// Every slot busy with callers waiting behind them, or the queue full (the
    /// kernel drops what comes next).
    pub fn overloaded(&self) -> bool {
        let waiting = self.queue.waiting;
        (self.busy >= self.max && waiting > 0)
            || (self.queue.limit > 0 && waiting >= self.queue.limit)
    }
}

/// Samples the listener until the task is dropped (when `run` returns).
pub async fn watch(
    listener: std::os::fd::RawFd,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    max: usize,
) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = listen_overflows();
    let mut episodes = Episodes::default();
    let mut dropped = 0;
    for tick in 0u64.. {
        ticks.tick().await;
        // SAFETY: `run` owns the listener and drops this task before closing it.
        let fd = unsafe { BorrowedFd::borrow_raw(listener) };
        let Some(queue) = accept_queue(fd) else {
            continue;
        };
        let sample = Sample {
            queue,
            busy: max - slots.available_permits(),
            max,
        };
        // The kernel formats its ~120 counters at each read of the file: while the
        // queue is empty it is read every few seconds only (a drop needs a full queue,
        // and the count is kept: a short burst between samples is still counted).
        if queue.waiting > 0 || episodes.is_on() || tick % NETSTAT_EVERY == 0 {
            dropped = match (start, listen_overflows()) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => dropped,
            };
        }
        let change = episodes.sample(sample.overloaded(), Instant::now());
        shared
            .metrics
            .accept_queue(sample, dropped, episodes.is_on());
        match change {
            Some(Change::Began) => {
                tracing::warn!(
                    busy = sample.busy,
                    waiting = queue.waiting,
                    queue_limit = queue.limit,
                    dropped_since_start = dropped,
                    "FastAGI overloaded: every max_connections slot is busy and calls wait in \
                     the accept queue; once it is full the kernel drops them, and Asterisk \
                     runs a call unchecked when its FastAGI connect is not answered within 2 s"
                );
            }
            Some(Change::Ended(lasted)) => tracing::info!(
                lasted_ms = lasted.as_millis() as u64,
                "FastAGI no longer overloaded (clear for {} s)",
                END_AFTER.as_secs()
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_overflows_read_from_this_hosts_file() {
        // The file is ~3 KiB: read whole, its TcpExt pair is found.
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn listen_overflows_are_read_from_the_tcpext_pair() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                       TcpExt: 0 17 19\n\
                       IpExt: InNoRoutes\n\
                       IpExt: 0\n";
        assert_eq!(parse_listen_overflows(netstat), Some(17));
        assert_eq!(parse_listen_overflows("IpExt: A\nIpExt: 1\n"), None);
    }

    #[test]
    fn overload_is_every_slot_busy_with_callers_waiting_or_a_full_queue() {
        let sample = |busy, waiting| Sample {
            queue: AcceptQueue { waiting, limit: 8 },
            busy,
            max: 4,
        };
        assert!(
            !sample(3, 5).overloaded(),
            "a slot is free: the queue drains"
        );
        assert!(!sample(4, 0).overloaded(), "busy but no one waits");
        assert!(sample(4, 1).overloaded());
        assert!(sample(0, 8).overloaded(), "full: the next SYN is dropped");
    }

    #[test]
    fn a_flapping_overload_is_one_episode() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut e = Episodes::default();
        // A blip shorter than BEGIN_AFTER is no overload.
        assert_eq!(e.sample(true, at(0)), None);
        assert_eq!(e.sample(false, at(250)), None);
        // What a real PBX showed at 1,200-1,600 calls/s: overloaded a second, clear a
        // quarter second, for 20 s: one WARNING, then one INFO once it stays clear.
        let mut changes = Vec::new();
        let mut t = 1_000;
        while t < 21_000 {
            changes.extend(e.sample(t % 1_250 < 1_000, at(t)));
            t += 250;
        }
        assert_eq!(changes, [Change::Began], "no end while it flaps");
        assert!(e.is_on());
        changes.clear();
        while t < 30_000 {
            changes.extend(e.sample(false, at(t)));
            t += 250;
        }
        assert_eq!(changes.len(), 1);
        assert!(matches!(changes[0], Change::Ended(d) if d >= Duration::from_secs(19)));
        assert!(!e.is_on());
    }

    #[test]
    fn the_kernel_reports_a_listeners_queue_and_limit() {
        use std::os::fd::AsFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let queue = accept_queue(listener.as_fd()).unwrap();
        assert_eq!(queue.waiting, 3, "connected, never accepted");
        assert!(queue.limit >= 128, "{queue:?}");
        drop(clients);
    }
}
