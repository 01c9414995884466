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

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::alert_log::{Level, Line};
use crate::ami::codec::{self, Event, Framer, Verdict};
use crate::ami::login::{self, CHALLENGE_ID, LOGIN_ID};
use crate::ami::{Alert, Limits, Watch};
use crate::config::{AmiAuth, AmiConfig, AmiTls};
use crate::daemon::Shared;

/// Batches (one per read) the reader may run ahead of the evaluator.
const CHANNEL_BATCHES: usize = 1024;
/// How long connecting, the banner and the login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The banner's start (`Asterisk Call Manager/9.0.0` on Asterisk 20).
const BANNER: &[u8] = b"Asterisk Call Manager/";

/// Runs the watcher until shutdown or `stop` (a reload changed or removed `[ami]`):
/// the reader here, the evaluator on its own thread.
pub async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
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
        _ = stop.wait_for(|stop| *stop) => {}
    }
    shared.metrics.ami.connected(false);
    drop(tx);
    // The evaluator finishes what was read, then ends with the channel.
    let _ = tokio::task::spawn_blocking(move || evaluator.join()).await;
}

async fn reconnect_forever(shared: &Shared, tx: &mpsc::Sender<Vec<Verdict>>) {
    let mut backoff = FIRST_BACKOFF;
    let mut down = Down::default();
    loop {
        // Read afresh each time: the secret file may have been fixed meanwhile.
        let Some(config) = shared.config().ami.clone() else {
            return;
        };
        let end = session(&config, shared, tx, &mut backoff, &mut down).await;
        shared.metrics.ami.connected(false);
        if matches!(end, End::Refused(_)) {
            shared.metrics.ami.login_failed();
        }
        if down.failed(&config, &end, backoff) {
            shared.notify(crate::notify::Event::LinkDown {
                link: format!("AMI {}", config.address),
                why: end.why().to_string(),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        shared.metrics.ami.reconnecting();
    }
}

/// The AMI link being down, said once when it goes and once when it is back, however
/// many tries lie between (one every 1–30 s): a WARNING; and an ERROR, once, when
/// Asterisk refuses the login (a wrong secret will not fix itself).
#[derive(Default)]
struct Down {
    episode: Option<Episode>,
}

struct Episode {
    since: Instant,
    tries: u64,
    refusal_said: bool,
}

impl Down {
    /// Whether this failure began an episode (what the notifier tells).
    fn failed(&mut self, config: &AmiConfig, end: &End, backoff: Duration) -> bool {
        let first = self.episode.is_none();
        let episode = self.episode.get_or_insert(Episode {
            since: Instant::now(),
            tries: 0,
            refusal_said: false,
        });
        episode.tries += 1;
        match end {
            End::Refused(message) if !episode.refusal_said => {
                episode.refusal_said = true;
                tracing::error!(
                    address = %config.address, username = %config.username,
                    "AMI: login refused: {message}; trying again every 1-30 s, said again when it works"
                );
            }
            End::Failed(why) if first => tracing::warn!(
                address = %config.address,
                "AMI: {why}; reconnecting every 1-30 s, said again when it is back (security events are not seen meanwhile)"
            ),
            _ => tracing::debug!(
                address = %config.address,
                "AMI: still down ({}); next try in {backoff:?}",
                end.why()
            ),
        }
        first
    }

    /// Logged in: the end of an episode, if one was said (then true).
    fn up(&mut self, config: &AmiConfig) -> bool {
        let ended = self.episode.is_some();
        match self.episode.take() {
            Some(e) => tracing::info!(
                address = %config.address,
                "AMI: logged in again after {:.1} s and {} failed tries; watching security events (events meanwhile were not seen)",
                e.since.elapsed().as_secs_f64(),
                e.tries
            ),
            None => tracing::info!(
                address = %config.address, username = %config.username,
                "AMI: logged in; watching security events"
            ),
        }
        ended
    }
}

/// Why a session ended.
enum End {
    /// Asterisk answered our Login with an error (or our secret could not be read).
    Refused(String),
    /// Connecting, the banner, or the stream failed.
    Failed(String),
}

impl End {
    fn why(&self) -> &str {
        match self {
            End::Refused(why) | End::Failed(why) => why,
        }
    }
}

/// The classes to log in for (`login::events`), from the config in force.
fn events(shared: &Shared) -> &'static str {
    let call_ends = shared
        .config()
        .fraud
        .as_ref()
        .is_some_and(|f| f.call_end == crate::config::CallEnd::Ami);
    login::events(call_ends)
}

/// One connection: connect, banner, login, then read until it fails.
async fn session(
    config: &AmiConfig,
    shared: &Shared,
    tx: &mpsc::Sender<Vec<Verdict>>,
    backoff: &mut Duration,
    down: &mut Down,
) -> End {
    let (mut stream, mut framer, pending) =
        match tokio::time::timeout(LOGIN_TIMEOUT, login(config, events(shared))).await {
            Ok(Ok(logged_in)) => logged_in,
            Ok(Err(end)) => return end,
            Err(_) => return End::Failed(format!("no login answer within {LOGIN_TIMEOUT:?}")),
        };
    *backoff = FIRST_BACKOFF;
    shared.metrics.ami.connected(true);
    if down.up(config) {
        shared.notify(crate::notify::Event::LinkUp {
            link: format!("AMI {}", config.address),
        });
    }
    if !pending.is_empty() && tx.send(pending).await.is_err() {
        return End::Failed("the evaluator stopped".into());
    }
    End::Failed(read_events(shared, &mut stream, &mut framer, config, tx).await)
}

/// The connection to the manager: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
type Conn = Box<dyn Stream>;

/// Connects (TLS when configured), checks the banner and logs in with `Events:
/// security` (and `user`, for the calls' ends) — by MD5 challenge unless `auth = "plain"`. Returns the stream, its
/// framer, and the verdicts on anything read after the login answer.
async fn login(config: &AmiConfig, events: &str) -> Result<(Conn, Framer, Vec<Verdict>), End> {
    let failed = |what: &str, e: std::io::Error| End::Failed(format!("{what}: {e}"));
    let mut stream = connect(config).await?;
    let mut framer = Framer::default();
    let mut buf = read_banner(&mut stream).await?;
    let secret = config
        .secret
        .read()
        .map_err(|e| End::Refused(format!("cannot read the secret: {e}")))?;
    let mut after = Vec::new();
    let action = match config.auth {
        AmiAuth::Plain => login::plain_login_action(&config.username, &secret, events),
        AmiAuth::Md5 => {
            stream
                .write_all(login::challenge_action().as_bytes())
                .await
                .map_err(|e| failed("cannot send the challenge request", e))?;
            let answer =
                await_answer(&mut stream, &mut framer, &mut buf, CHALLENGE_ID, &mut after).await?;
            let challenge = match (answer.is_success(), answer.challenge) {
                (true, Some(c)) => c,
                _ => {
                    return Err(End::Refused(format!(
                        "Asterisk refused an MD5 challenge ({}: {}); set ami.auth = \"plain\" only if it cannot do one",
                        answer.response, answer.message
                    )));
                }
            };
            login::md5_login_action(&config.username, &challenge, &secret, events)
        }
    };
    stream
        .write_all(action.as_bytes())
        .await
        .map_err(|e| failed("cannot send the login", e))?;
    let answer = await_answer(&mut stream, &mut framer, &mut buf, LOGIN_ID, &mut after).await?;
    match answer.is_success() {
        true => Ok((stream, framer, after)),
        false => Err(End::Refused(answer.message)),
    }
}

/// TCP to the manager, with TLS over it when `[ami] tls` is set.
async fn connect(config: &AmiConfig) -> Result<Conn, End> {
    let tcp = TcpStream::connect(config.address)
        .await
        .map_err(|e| End::Failed(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &config.tls else {
        return Ok(Box::new(tcp));
    };
    let connector = tls_connector(tls).map_err(End::Refused)?;
    let name = match &tls.server_name {
        Some(name) => rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|e| End::Refused(format!("ami.tls_server_name: {e}")))?,
        None => rustls_pki_types::ServerName::IpAddress(config.address.ip().into()),
    };
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| End::Failed(format!("TLS handshake failed: {e}")))?;
    Ok(Box::new(stream))
}

/// A TLS client that trusts `tls.ca_file`'s certificates, or the Mozilla roots.
fn tls_connector(tls: &AmiTls) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ami.tls_ca_file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ami.tls_ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ami.tls_ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "ami.tls_ca_file {}: no certificate in it",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Reads until Asterisk answers the action `id`; messages after the answer in the
/// same read are classified into `after` (events that follow a login at once).
async fn await_answer(
    stream: &mut Conn,
    framer: &mut Framer,
    buf: &mut Vec<u8>,
    id: &str,
    after: &mut Vec<Verdict>,
) -> Result<login::Answer, End> {
    let mut answer = None;
    loop {
        framer.feed(buf, |m| match answer {
            None => answer = login::answer_to(m, id),
            Some(_) => after.push(codec::classify(m)),
        });
        buf.clear();
        if let Some(answer) = answer {
            return Ok(answer);
        }
        buf.resize(4096, 0);
        let n = stream
            .read(buf)
            .await
            .map_err(|e| End::Failed(format!("reading the answer to {id} failed: {e}")))?;
        if n == 0 {
            return Err(End::Failed(
                "Asterisk closed the connection during login".into(),
            ));
        }
        buf.truncate(n);
    }
}

/// Reads up to the banner's `\r\n`; returns what came after it.
async fn read_banner(stream: &mut Conn) -> Result<Vec<u8>, End> {
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

/// Reads until the connection fails; returns why. Sends `Ping` every
/// `ping_interval` and gives up on a connection silent for three of them.
async fn read_events(
    shared: &Shared,
    stream: &mut Conn,
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
                framer.feed(&buf[..n], |m| match codec::classify(m) {
                    // Here, not on the evaluator's thread: a call's end is a few
                    // microseconds under the guard's lock, and waking that thread for
                    // it cost more than the work (doc/performance.md).
                    Verdict::CallEnd(end) => crate::daemon::fraud::ended_by_ami(
                        shared,
                        &shared.config(),
                        &end.account,
                        &end.call_id,
                    ),
                    Verdict::NotAnEvent => {}
                    verdict => batch.push(verdict),
                });
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
                    if event.kind == "SuccessfulAuth" {
                        crate::daemon::edge::logged_in(shared, event.remote_ip);
                    }
                    if config.fraud.is_some() {
                        phone_login(shared, &config, &event, now);
                    }
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
                // The reader handles these itself.
                Verdict::CallEnd(_) | Verdict::NotAnEvent => {}
            }
        }
        shared.metrics.ami.tracked(watch.len());
    }
}

/// Writes the alert line and marks the address in the per-call memory, so that a call
/// it places next is a repeat offender — unless it is this host's, which stands for
/// every caller behind a local proxy (`this_host.rs`).
fn alert(
    shared: &Shared,
    config: &crate::config::Config,
    limits: &Limits,
    event: &Event,
    found: Alert,
    now: Instant,
) {
    let reason = found.rule.reason();
    let line = alert_line(
        event,
        &reason,
        (found.rule.unit(), found.count),
        limits.window,
    );
    shared.metrics.ami.alert(&reason);
    // A failed write is counted and said by `write`, once per outage.
    let _ = shared.write(config, &line);
    // A local proxy's address stands for every caller behind it (this_host.rs).
    if !shared.this_host.holds(event.remote_ip) {
        shared
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .mark_alerted(event.remote_ip, now);
    }
}

/// An AMI rule's alert line: `ip=ADDR reason=CODE names|tries|requests=N
/// window_seconds=N last_event=KIND service='…' account='…'`. The service and the
/// account come from the event (the account is a caller's SIP From user), so both are
/// quoted, with what the codec cut off the account.
pub fn alert_line(
    event: &Event,
    reason: &str,
    (unit, count): (&str, usize),
    window: Duration,
) -> Line {
    Line::new(Level::Error, Some(event.remote_ip), reason)
        .field(unit, count)
        .field("window_seconds", window.as_secs())
        .field("last_event", event.kind)
        .quoted("service", event.service.as_bytes())
        .quoted("account", event.account_id.shown())
        .cut(event.account_id.cut())
}

/// Hands a phone's login to the outbound guard (doc/toll-fraud.md, "Toll fraud: the outbound check"): a failed try
/// on an existing account (chan_pjsip's `ChallengeResponseFailed`, chan_sip's
/// `InvalidPassword`; an unknown user is `<unknown>` there, design §3b), or a
/// `SuccessfulAuth`, with whether its address was alerted on lately.
fn phone_login(shared: &Shared, config: &crate::config::Config, event: &Event, now: Instant) {
    use crate::daemon::fraud::LoginEvent;
    if !matches!(&*event.service, "PJSIP" | "SIP") {
        return;
    }
    let what = match event.kind {
        "ChallengeResponseFailed" | "InvalidPassword" => LoginEvent::Failed,
        "SuccessfulAuth" => LoginEvent::Succeeded {
            ip: event.remote_ip,
            alerted: shared
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .was_alerted(event.remote_ip, now, config.memory.repeat_offender),
        },
        _ => return,
    };
    crate::daemon::fraud::login(shared, config, event.account_id.shown(), what);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::codec::AccountId;

    #[test]
    fn an_ami_alert_bans_its_address_and_keeps_the_events_values_quoted() {
        let mut account = b"a'b\r\nip=9.9.9.9".to_vec();
        account.resize(AccountId::MAX + 12, b'x');
        let event = Event {
            kind: "InvalidAccountID",
            is_error: true,
            service: "PJSIP".into(),
            account_id: AccountId::new(&account),
            remote_ip: "203.0.113.5".parse().unwrap(),
        };
        let line = alert_line(
            &event,
            "account_scan",
            ("names", 6),
            Duration::from_secs(60),
        );
        assert_eq!(line.alert(), Some((event.remote_ip, "account_scan")));
        assert_eq!(
            line.text(),
            format!(
                r"ip=203.0.113.5 reason=account_scan names=6 window_seconds=60 last_event=InvalidAccountID service='PJSIP' account='a\x27b\x0d\x0aip\x3d9.9.9.9{}'[+12 bytes]",
                "x".repeat(AccountId::MAX - 15)
            )
        );
    }
}
