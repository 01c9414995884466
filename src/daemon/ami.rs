//! The AMI watcher: a client that logs in to Asterisk's manager interface, reads
//! security events, and alerts on addresses that cross a limit (design.md §3b).
//!
//! Two halves, so that Asterisk never waits for us (it drops a client whose reads
//! stall ~100 ms): the **reader** task only reads, frames and validates, and hands each
//! read's verdicts over a bounded channel; the **evaluator** thread counts them,
//! writes alert lines and updates the metrics. Disk writes happen on the evaluator's
//! own thread, never on the reader's.
//!
//! The connection is made again whenever it fails, with a doubling backoff (1 s to
//! 30 s, back to 1 s after a successful login), a log line each time. Asterisk does
//! not replay events missed while we were away; the counts kept by the evaluator
//! survive a reconnect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::alert_log::Line;
use crate::ami::codec::{self, Event, Framer, Message, Verdict};
use crate::ami::{Alert, Limits, Watch};
use crate::config::AmiConfig;
use crate::daemon::Shared;

/// Batches (one per read) the reader may run ahead of the evaluator.
const CHANNEL_BATCHES: usize = 1024;
/// How long connecting, the banner and the login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const LOGIN_ID: &str = "extsecurity-login";
/// The banner's start (`Asterisk Call Manager/9.0.0` on Asterisk 20).
const BANNER: &[u8] = b"Asterisk Call Manager/";

/// Runs the watcher until shutdown: the reader here, the evaluator on its own thread.
pub async fn run(shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let evaluator = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("ami-evaluator".into())
            .spawn(move || evaluate(&shared, rx))
    };
    let evaluator = match evaluator {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "AMI: cannot start the evaluator thread; AMI watcher off");
            return;
        }
    };
    tokio::select! {
        () = reconnect_forever(&shared, &tx) => {}
        () = shared.shutting_down() => {}
    }
    drop(tx);
    // The evaluator finishes what was read, then ends with the channel.
    let _ = tokio::task::spawn_blocking(move || evaluator.join()).await;
}

async fn reconnect_forever(shared: &Shared, tx: &mpsc::Sender<Vec<Verdict>>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Read afresh each time: a reload's new address or secret applies at the next
        // connection.
        let Some(config) = shared.config().ami.clone() else {
            tracing::warn!("AMI: [ami] was removed from the configuration; AMI watcher stopped");
            return;
        };
        let end = session(&config, shared, tx, &mut backoff).await;
        shared.metrics.ami.connected(false);
        match end {
            End::Refused(message) => {
                shared.metrics.ami.login_failed();
                tracing::error!(
                    address = %config.address, username = %config.username,
                    "AMI: login refused: {message}; retrying in {backoff:?}"
                );
            }
            End::Failed(why) => {
                tracing::warn!(address = %config.address, "AMI: {why}; reconnecting in {backoff:?}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        shared.metrics.ami.reconnecting();
    }
}

/// Why a session ended.
enum End {
    /// Asterisk answered our Login with an error.
    Refused(String),
    /// Connecting, the banner, or the stream failed.
    Failed(String),
}

/// One connection: connect, banner, login, then read until it fails.
async fn session(
    config: &AmiConfig,
    shared: &Shared,
    tx: &mpsc::Sender<Vec<Verdict>>,
    backoff: &mut Duration,
) -> End {
    let (mut stream, mut framer, pending) =
        match tokio::time::timeout(LOGIN_TIMEOUT, login(config)).await {
            Ok(Ok(logged_in)) => logged_in,
            Ok(Err(end)) => return end,
            Err(_) => return End::Failed(format!("no login answer within {LOGIN_TIMEOUT:?}")),
        };
    *backoff = FIRST_BACKOFF;
    shared.metrics.ami.connected(true);
    tracing::info!(address = %config.address, username = %config.username, "AMI: logged in; watching security events");
    if !pending.is_empty() && tx.send(pending).await.is_err() {
        return End::Failed("the evaluator stopped".into());
    }
    End::Failed(read_events(&mut stream, &mut framer, config, tx).await)
}

/// Connects, checks the banner and logs in with `Events: security`. Returns the
/// stream, its framer, and the verdicts on anything read after the login answer.
async fn login(config: &AmiConfig) -> Result<(TcpStream, Framer, Vec<Verdict>), End> {
    let failed = |what: &str, e: std::io::Error| End::Failed(format!("{what}: {e}"));
    let mut stream = TcpStream::connect(config.address)
        .await
        .map_err(|e| failed("cannot connect", e))?;
    let _ = stream.set_nodelay(true);
    let mut framer = Framer::default();
    let rest = read_banner(&mut stream).await?;
    let action = format!(
        "Action: Login\r\nActionID: {LOGIN_ID}\r\nUsername: {}\r\nSecret: {}\r\nEvents: security\r\n\r\n",
        config.username, config.secret
    );
    stream
        .write_all(action.as_bytes())
        .await
        .map_err(|e| failed("cannot send the login", e))?;
    let mut buf = rest;
    let mut answer = None;
    let mut after = Vec::new();
    loop {
        framer.feed(&buf, |m| match answer {
            None => answer = login_answer(m),
            Some(_) => after.push(codec::classify(m)),
        });
        match answer {
            Some(Ok(())) => return Ok((stream, framer, after)),
            Some(Err(message)) => return Err(End::Refused(message)),
            None => {}
        }
        buf.resize(4096, 0);
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| failed("reading the login answer failed", e))?;
        if n == 0 {
            return Err(End::Failed(
                "Asterisk closed the connection during login".into(),
            ));
        }
        buf.truncate(n);
    }
}

/// Reads up to the banner's `\r\n`; returns what came after it.
async fn read_banner(stream: &mut TcpStream) -> Result<Vec<u8>, End> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(i) = memchr::memmem::find(&got, b"\r\n") {
            if !got.starts_with(BANNER) {
                let shown = String::from_utf8_lossy(&got[..i.min(80)]).into_owned();
                return Err(End::Failed(format!(
                    "not an Asterisk manager interface (banner {shown:?})"
                )));
            }
            return Ok(got.split_off(i + 2));
        }
        if got.len() > 1024 {
            return Err(End::Failed("no AMI banner in the first 1 KiB".into()));
        }
        match stream.read(&mut buf).await {
            Ok(0) => {
                return Err(End::Failed(
                    "Asterisk closed the connection before its banner".into(),
                ));
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(End::Failed(format!("reading the banner failed: {e}"))),
        }
    }
}

/// `Some(Ok)` for `Response: Success` to our Login, `Some(Err(message))` for its
/// refusal, `None` for anything else.
fn login_answer(message: Message<'_>) -> Option<Result<(), String>> {
    let Message::Body(body) = message else {
        return None;
    };
    let fields = codec::Fields::parse(body)?;
    let get = |key: &[u8]| fields.get(key);
    if get(b"ActionID") != Some(LOGIN_ID.as_bytes()) {
        return None;
    }
    match get(b"Response") {
        Some(b"Success") => Some(Ok(())),
        Some(_) => {
            let message = get(b"Message").unwrap_or(b"no message");
            Some(Err(String::from_utf8_lossy(message).into_owned()))
        }
        None => None,
    }
}

/// Reads until the connection fails; returns why. Sends `Ping` every
/// `ping_interval` and gives up on a connection silent for three of them.
async fn read_events(
    stream: &mut TcpStream,
    framer: &mut Framer,
    config: &AmiConfig,
    tx: &mpsc::Sender<Vec<Verdict>>,
) -> String {
    let mut buf = vec![0u8; 256 * 1024];
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_read = tokio::time::Instant::now();
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return "Asterisk closed the connection".into(),
                    Ok(n) => n,
                    Err(e) => return format!("reading failed: {e}"),
                };
                last_read = tokio::time::Instant::now();
                let mut batch = Vec::with_capacity(n / 256);
                framer.feed(&buf[..n], |m| batch.push(codec::classify(m)));
                if !batch.is_empty() && tx.send(batch).await.is_err() {
                    return "the evaluator stopped".into();
                }
            }
            _ = ping.tick() => {
                let silent = last_read.elapsed();
                if silent > config.ping_interval * 3 {
                    return format!("Asterisk silent for {silent:?}, Ping unanswered");
                }
                let action = b"Action: Ping\r\nActionID: extsecurity-ping\r\n\r\n";
                if let Err(e) = stream.write_all(action).await {
                    return format!("sending Ping failed: {e}");
                }
            }
        }
    }
}

/// Counts what the reader hands over, alerts, and keeps the metrics. Runs on its own
/// thread until the reader drops the channel.
fn evaluate(shared: &Shared, mut rx: mpsc::Receiver<Vec<Verdict>>) {
    let mut watch = Watch::new(shared.config().memory.max_tracked_ips);
    let mut warnings = Throttle::default();
    while let Some(batch) = rx.blocking_recv() {
        let config = shared.config();
        watch.resize(config.memory.max_tracked_ips);
        let limits = config
            .ami
            .as_ref()
            .map(|a| a.limits.clone())
            .unwrap_or_default();
        let now = Instant::now();
        for ip in std::mem::take(&mut *shared.ami_forget.lock().unwrap_or_else(|e| e.into_inner()))
        {
            watch.forget(ip);
        }
        for verdict in batch {
            match verdict {
                Verdict::Event(event) => {
                    shared.metrics.ami.event(event.kind);
                    if config.is_trusted(event.remote_ip) {
                        continue;
                    }
                    for found in watch.record(&limits, &event, now) {
                        alert(shared, &config, &limits, &event, found, now);
                    }
                }
                Verdict::Tampering(why) => {
                    shared.metrics.ami.tampered();
                    warnings.warn(now, why);
                }
                Verdict::NotAnEvent => {}
            }
        }
        shared.metrics.ami.tracked(watch.len());
    }
}

/// Writes the alert line and marks the address in the per-call memory, so that a call
/// it places next is a repeat offender.
fn alert(
    shared: &Shared,
    config: &crate::config::Config,
    limits: &Limits,
    event: &Event,
    found: Alert,
    now: Instant,
) {
    let reason = found.rule.reason();
    let line = Line::for_security_alert(
        event.remote_ip,
        &reason,
        (found.rule.unit(), found.count),
        limits.window,
        (
            event.kind,
            event.service.as_bytes(),
            event.account_id.shown(),
            event.account_id.cut(),
        ),
    );
    shared.metrics.ami.alert(&reason);
    if let Err(e) = shared.write(config, &line) {
        shared.metrics.log_error();
        tracing::error!(error = %e, "alert log");
    }
    shared
        .memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .mark_alerted(event.remote_ip, now);
}

/// At most one tampering warning a second, with the count of those it held back: a
/// flood of forged events must not become a flood of diagnostics.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    fn warn(&mut self, now: Instant, why: &str) {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        self.last = Some(now);
        let held_back = std::mem::take(&mut self.held_back);
        tracing::warn!(
            why,
            held_back,
            "AMI: an event reshaped by a caller's bytes: counted, not acted on"
        );
    }
}
