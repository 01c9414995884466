//! Pushing the daemon's alerts to a CrowdSec LAPI (design.md §3c), without ever making
//! a call wait.
//!
//! Every `ERROR` line the daemon writes (FastAGI calls, rules with memory, AMI rules)
//! is offered to a bounded queue with `try_send`: a full queue drops the alert (counted,
//! logged once per episode), nothing blocks. One pusher task — one at a time per LAPI:
//! concurrent posts make SQLite answer `database is locked` — takes what is queued in
//! batches of up to `batch_size`, makes the blocking HTTP call on tokio's blocking
//! pool, and on failure keeps the batch and retries with a doubling backoff (1 s to
//! 30 s) while new alerts wait in the queue. A changed `[crowdsec]` table (SIGHUP)
//! applies from the next attempt.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;

use crate::crowdsec::{Alert, Client, LapiError};
use crate::daemon::Shared;
use crate::daemon::metrics::CrowdsecMetrics;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At shutdown, how long to try delivering what is still queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending side, held by `Shared`; the receiving side waits for [`run`].
pub struct Queue {
    tx: mpsc::Sender<Alert>,
    rx: Mutex<Option<mpsc::Receiver<Alert>>>,
    /// Set by [`Queue::close`] once nothing will write alerts any more.
    closing: watch::Sender<bool>,
    /// Set when an alert was dropped; cleared when a batch is delivered.
    overflowing: AtomicBool,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        let (tx, rx) = mpsc::channel(capacity);
        Queue {
            tx,
            rx: Mutex::new(Some(rx)),
            closing: watch::channel(false).0,
            overflowing: AtomicBool::new(false),
        }
    }

    /// Tells the pusher that no more alerts will come (the daemon has finished its calls
    /// in flight): it delivers what is queued, for a few seconds at most, and ends.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Queues `alert` for the LAPI, or drops it if the queue is full. Never waits.
    pub fn offer(&self, alert: Alert, metrics: &CrowdsecMetrics) {
        match self.tx.try_send(alert) {
            Ok(()) => metrics.queued(),
            Err(TrySendError::Closed(_)) => metrics.dropped(),
            Err(TrySendError::Full(alert)) => {
                metrics.dropped();
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        ip = %alert.ip,
                        capacity = self.tx.max_capacity(),
                        "CrowdSec: queue full, alerts are dropped (still written to the alert log) until the LAPI takes them again"
                    );
                }
            }
        }
    }
}

/// Delivers queued alerts until [`Queue::close`], then tries for a few seconds to
/// deliver what is left.
pub async fn run(shared: Arc<Shared>) {
    let Some(queue) = shared.crowdsec.as_ref() else {
        return;
    };
    let Some(mut rx) = queue.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let mut pusher = Pusher {
        client: None,
        backoff: FIRST_BACKOFF,
        failing: false,
    };
    let mut left = Vec::new();
    loop {
        let first = tokio::select! {
            alert = rx.recv() => alert,
            () = queue.closed() => None,
        };
        let Some(first) = first else { break };
        let batch = fill(first, &mut rx, &shared);
        if let Some(undelivered) = pusher.deliver(&shared, queue, batch).await {
            left = undelivered;
            break;
        }
    }
    rx.close();
    while let Ok(alert) = rx.try_recv() {
        left.push(alert);
    }
    if !left.is_empty() {
        let n = left.len();
        let flushed = tokio::time::timeout(FLUSH_TIMEOUT, pusher.deliver_once(&shared, left)).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!(
                "CrowdSec: {n} queued alerts not delivered at shutdown (they are in the alert log)"
            );
        }
    }
}

/// `first` and whatever else is queued, up to the batch size.
fn fill(first: Alert, rx: &mut mpsc::Receiver<Alert>, shared: &Shared) -> Vec<Alert> {
    let max = batch_size(shared);
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(alert) => batch.push(alert),
            Err(_) => break,
        }
    }
    shared.metrics.crowdsec.queue_len(rx.len());
    batch
}

/// The configured batch size (the running config's: a reload may have changed it).
fn batch_size(shared: &Shared) -> usize {
    shared
        .config()
        .crowdsec
        .as_ref()
        .map_or(100, |c| c.batch_size)
}

struct Pusher {
    client: Option<Client>,
    backoff: Duration,
    /// In an outage: logged once at its start, once at its end.
    failing: bool,
}

impl Pusher {
    /// Sends `batch` until it is delivered or rejected, backing off between attempts;
    /// gives it back if the queue is closed while it waits.
    async fn deliver(
        &mut self,
        shared: &Shared,
        queue: &Queue,
        batch: Vec<Alert>,
    ) -> Option<Vec<Alert>> {
        let mut batch = batch;
        loop {
            match self.attempt(shared, batch).await {
                Attempt::Done => return None,
                Attempt::Retry(back) => {
                    batch = back;
                    shared.metrics.crowdsec.retried();
                    tokio::select! {
                        () = tokio::time::sleep(self.backoff) => {}
                        () = queue.closed() => return Some(batch),
                    }
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One attempt per batch of `alerts`; whether all were delivered.
    async fn deliver_once(&mut self, shared: &Shared, alerts: Vec<Alert>) -> bool {
        for chunk in alerts.chunks(batch_size(shared)) {
            if let Attempt::Retry(_) = self.attempt(shared, chunk.to_vec()).await {
                return false;
            }
        }
        true
    }

    async fn attempt(&mut self, shared: &Shared, batch: Vec<Alert>) -> Attempt {
        let Some(config) = shared.config().crowdsec.clone() else {
            tracing::warn!(
                "CrowdSec: [crowdsec] was removed from the configuration; {} alerts not pushed",
                batch.len()
            );
            return Attempt::Done;
        };
        let mut client = match self.client.take() {
            Some(c) if c.config() == &config => c,
            _ => Client::new(config),
        };
        let (client, batch, result) = match tokio::task::spawn_blocking(move || {
            let result = client.push(&batch);
            (client, batch, result)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "CrowdSec: the push task failed");
                return Attempt::Done;
            }
        };
        self.client = Some(client);
        let metrics = &shared.metrics.crowdsec;
        match result {
            Ok(()) => {
                metrics.delivered(batch.len());
                if std::mem::take(&mut self.failing) {
                    tracing::info!("CrowdSec: the LAPI takes alerts again");
                }
                if let Some(queue) = &shared.crowdsec {
                    queue.overflowing.store(false, Ordering::Relaxed);
                }
                self.backoff = FIRST_BACKOFF;
                Attempt::Done
            }
            Err(e @ LapiError::Rejected { .. }) => {
                metrics.rejected(batch.len());
                tracing::error!("CrowdSec: {e}; {} alerts dropped", batch.len());
                Attempt::Done
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!("CrowdSec: {e}; alerts stay queued and are retried");
                } else {
                    tracing::debug!("CrowdSec: still failing: {e}");
                }
                Attempt::Retry(batch)
            }
        }
    }
}

enum Attempt {
    Done,
    Retry(Vec<Alert>),
}
