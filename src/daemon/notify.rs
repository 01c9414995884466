//! The notifier (`[notify]`): a thread of its own that sends what [`crate::notify`]
//! words, by e-mail (lettre, SMTP with STARTTLS or TLS) and to a webhook (a JSON POST).
//!
//! Off the answer path: an event is handed over with `try_send` into a bounded queue
//! (full: dropped and counted). Alerts only add to a digest count, read from the alert
//! log as the CrowdSec pusher reads it: every alert line, whoever wrote it (the daemon,
//! Asterisk's System() and AGI checks, bans by hand). Events that come
//! within [`GATHER`] of each other go in one message; a channel that fails keeps its
//! events (at most `queue_size`, the oldest dropped and counted) and is tried again
//! with a backoff from 1 s to [`MAX_BACKOFF`], said once when it starts failing and
//! once when it works again. The digest goes out at most once per `digest_seconds`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{NotifyConfig, Security, SmtpConfig};
use crate::notify::{DigestCounter, Event, Message, message};

/// How long the first event of a message waits for others.
pub const GATHER: Duration = Duration::from_secs(2);
/// The longest wait between two tries of a failing channel.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Events in one message at most; more go in the next.
const PER_MESSAGE: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(15);

/// The notifier's counters, per channel (`mail`, `webhook`).
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// [mail, webhook]
    sent: [AtomicU64; 2],
    failures: [AtomicU64; 2],
    dropped: AtomicU64,
}

impl NotifyMetrics {
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, help, counters) in [
            (
                "extsecurity_notify_sent_total",
                "Notification messages delivered, by channel.",
                &self.sent,
            ),
            (
                "extsecurity_notify_failures_total",
                "Notification messages that failed to go (tried again with backoff), by channel.",
                &self.failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (channel, c) in ["mail", "webhook"].iter().zip(counters) {
                let _ = writeln!(out, "{name}{{channel=\"{channel}\"}} {}", c.load(Relaxed));
            }
        }
        let _ = writeln!(
            out,
            "# HELP extsecurity_notify_dropped_total Notification events dropped: the queue was full.\n# TYPE extsecurity_notify_dropped_total counter\nextsecurity_notify_dropped_total {}",
            self.dropped.load(Relaxed)
        );
    }
}

enum Msg {
    Event(Event),
    Stop,
}

/// The running notifier: where events go in.
pub struct Notifier {
    tx: SyncSender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The thread that counts the log's alert lines, and how to stop it.
    counter: Option<std::thread::JoinHandle<()>>,
    stop_counting: Arc<std::sync::atomic::AtomicBool>,
    /// The settings it runs with: a reload that changes them starts a new one.
    pub config: NotifyConfig,
    metrics: Arc<NotifyMetrics>,
}

impl Notifier {
    /// Starts the sender, and the counter that follows `log` from its end.
    pub fn start(config: NotifyConfig, metrics: Arc<NotifyMetrics>, log: &Path) -> Notifier {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_size);
        let digest = Arc::new(Mutex::new(DigestCounter::default()));
        let stop_counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counter = {
            let (log, digest, stop) = (log.to_path_buf(), digest.clone(), stop_counting.clone());
            std::thread::Builder::new()
                .name("notify-count".into())
                .spawn(move || count_alerts(&log, &digest, &stop))
                .ok()
        };
        let worker = Worker {
            channels: channels(&config),
            digest: digest.clone(),
            every: config.digest,
            queue_size: config.queue_size,
            metrics: metrics.clone(),
            host: host_name(),
        };
        let thread = std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || worker.run(rx))
            .ok();
        Notifier {
            tx,
            thread,
            counter,
            stop_counting,
            config,
            metrics,
        }
    }

    /// Hands `event` over without waiting.
    pub fn event(&self, event: Event) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Event(event)) {
            self.metrics.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Sends what is pending once more (a few seconds at most), then ends the thread.
    pub fn stop(mut self) {
        self.stop_counting.store(true, Relaxed);
        if let Some(counter) = self.counter.take() {
            let _ = counter.join();
        }
        let _ = self.tx.try_send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How often the counter looks for new lines when it found none.
const COUNT_POLL: Duration = Duration::from_millis(250);

/// Counts every alert line written to `log` from now on into `digest`, across
/// rotations ([`crate::follow::Follower`]), until `stop`.
fn count_alerts(log: &Path, digest: &Mutex<DigestCounter>, stop: &std::sync::atomic::AtomicBool) {
    let mut follower = None;
    let mut line = Vec::new();
    while !stop.load(Relaxed) {
        let Some(f) = follower.as_mut() else {
            follower = crate::follow::Follower::at_end(log).ok();
            if follower.is_none() {
                std::thread::sleep(COUNT_POLL);
            }
            continue;
        };
        match f.next_line(&mut line) {
            Ok(true) => {
                if let Some(alert) = crate::crowdsec::Alert::from_log_line(&line) {
                    digest
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .alert(alert.ip, &alert.reason);
                }
            }
            Ok(false) | Err(_) => std::thread::sleep(COUNT_POLL),
        }
    }
}

/// The host's name, for the subject ("[extsecurity] pbx1: …").
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// One way out, with what waits for it.
struct Channel {
    name: &'static str,
    index: usize,
    sink: Sink,
    queue: VecDeque<Event>,
    /// When its oldest waiting event came.
    since: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    failing: bool,
}

enum Sink {
    Mail(SmtpConfig),
    Webhook(crate::config::Secret, ureq::Agent),
}

fn channels(config: &NotifyConfig) -> Vec<Channel> {
    let channel = |name, index, sink| Channel {
        name,
        index,
        sink,
        queue: VecDeque::new(),
        since: None,
        retry_at: None,
        backoff: Duration::from_secs(1),
        failing: false,
    };
    let mut out = Vec::new();
    if let Some(smtp) = &config.smtp {
        out.push(channel("mail", 0, Sink::Mail(smtp.clone())));
    }
    if let Some(url) = &config.webhook_url {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("extsecurity/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        out.push(channel("webhook", 1, Sink::Webhook(url.clone(), agent)));
    }
    out
}

struct Worker {
    channels: Vec<Channel>,
    digest: Arc<Mutex<DigestCounter>>,
    every: Duration,
    queue_size: usize,
    metrics: Arc<NotifyMetrics>,
    host: String,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut next_digest = Instant::now() + self.every;
        loop {
            let wait = self
                .next_due(next_digest)
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Msg::Event(event)) => self.queue(event),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.flush(true);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_digest {
                next_digest += self.every;
                let digest = self
                    .digest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(self.every.as_secs());
                if let Some(digest) = digest {
                    self.queue(Event::Digest(digest));
                }
            }
            self.flush(false);
        }
    }

    /// When something is next due: a message gathered, a retry, the digest.
    fn next_due(&self, next_digest: Instant) -> Instant {
        self.channels
            .iter()
            .filter_map(|c| {
                let gathered = c.since? + GATHER;
                Some(c.retry_at.map_or(gathered, |r| r.max(gathered)))
            })
            .fold(next_digest, Instant::min)
    }

    fn queue(&mut self, event: Event) {
        for c in &mut self.channels {
            if c.queue.len() >= self.queue_size {
                c.queue.pop_front();
                self.metrics.dropped.fetch_add(1, Relaxed);
            }
            c.queue.push_back(event.clone());
            c.since.get_or_insert_with(Instant::now);
        }
    }

    /// Sends what is due (everything waiting, once, when `last`).
    fn flush(&mut self, last: bool) {
        let now = Instant::now();
        for c in &mut self.channels {
            let due =
                c.since.is_some_and(|s| now >= s + GATHER) && c.retry_at.is_none_or(|r| now >= r);
            if c.queue.is_empty() || !(due || last) {
                continue;
            }
            while !c.queue.is_empty() {
                let n = c.queue.len().min(PER_MESSAGE);
                let batch: Vec<Event> = c.queue.iter().take(n).cloned().collect();
                let time = jiff::Timestamp::now().to_string();
                let m = message(&self.host, &time, &batch);
                match send(&c.sink, &m) {
                    Ok(()) => {
                        c.queue.drain(..n);
                        self.metrics.sent[c.index].fetch_add(1, Relaxed);
                        c.retry_at = None;
                        c.backoff = Duration::from_secs(1);
                        if std::mem::replace(&mut c.failing, false) {
                            tracing::info!("notify: the {} works again", c.name);
                        }
                    }
                    Err(why) => {
                        self.metrics.failures[c.index].fetch_add(1, Relaxed);
                        if !std::mem::replace(&mut c.failing, true) {
                            tracing::warn!(
                                "notify: the {} fails ({why}); {} events kept and tried again, said again when it works",
                                c.name,
                                c.queue.len()
                            );
                        }
                        c.retry_at = Some(now + c.backoff);
                        c.backoff = (c.backoff * 2).min(MAX_BACKOFF);
                        break;
                    }
                }
            }
            if c.queue.is_empty() {
                c.since = None;
            }
        }
    }
}

fn send(sink: &Sink, m: &Message) -> Result<(), String> {
    match sink {
        Sink::Mail(smtp) => mail(smtp, m),
        Sink::Webhook(url, agent) => {
            let url = url.read().map_err(|e| e.to_string())?;
            agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(m.json.to_string())
                .map(drop)
                .map_err(|e| match e {
                    ureq::Error::StatusCode(code) => format!("the webhook answered HTTP {code}"),
                    e => e.to_string(),
                })
        }
    }
}

fn mail(smtp: &SmtpConfig, m: &Message) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::{SmtpTransport, Transport};
    let mut email = lettre::Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("mail_from: {e}"))?)
        .subject(&m.subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        email = email.to(to.parse().map_err(|e| format!("mail_to {to}: {e}"))?);
    }
    let email = email.body(m.text.clone()).map_err(|e| e.to_string())?;
    let tls = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(smtp.server.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("smtp_ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp_ca_file {}: {e}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().map_err(|e| e.to_string())
    };
    let tls = match smtp.security {
        Security::Starttls => Tls::Required(tls()?),
        Security::Tls => Tls::Wrapper(tls()?),
        Security::None => Tls::None,
    };
    let mut transport = SmtpTransport::builder_dangerous(&smtp.server)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(TIMEOUT));
    if !smtp.username.is_empty() {
        let password = match &smtp.password {
            Some(p) => p.read().map_err(|e| e.to_string())?,
            None => String::new(),
        };
        transport = transport.credentials(Credentials::new(smtp.username.clone(), password));
    }
    transport
        .build()
        .send(&email)
        .map(drop)
        .map_err(|e| format!("SMTP {}:{}: {e}", smtp.server, smtp.port))
}
