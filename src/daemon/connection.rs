//! One FastAGI connection: the AGI session over TCP, then the verdict.
//!
//! Until the `agi_*` block is in, every read is bounded (`idle_timeout`) and the block
//! too ([`BLOCK_TIMEOUT`]); lines are bounded by the AGI line buffer. Once it is in and
//! our query sent, the answer is waited for until it comes or the connection closes:
//! an overloaded PBX answers seconds late, giving up first left calls unjudged, and
//! Asterisk answers after `HANGUP` too. What bounds those waits is `max_connections`,
//! and TCP keepalive for an Asterisk host that vanishes without closing. A connection that
//! sends nothing, sends garbage or vanishes ends with a `CRITICAL` line at worst: the
//! TCP peer is Asterisk, never the caller, so nothing is ever blamed on it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::agi::lines::{Line, LineBuffer};
use crate::agi::session::{Answer, Request, Script, Session, Step, Tokens};
use crate::agi::{BLOCK_TIMEOUT, MAX_LINE, outbound_answer, outbound_command, verdict_command};
use crate::alert_log::Line as LogLine;
use crate::call::Call;
use crate::check::{self, Plan};
use crate::config::Config;
use crate::daemon::{Shared, fraud};
use crate::request::BadRequest;
use crate::rules;

/// How long to wait for Asterisk to acknowledge the verdict variables.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one connection to the end. Never panics on input; errors are logged.
pub async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let config = shared.config();
    let client = peer.ip().to_canonical();
    if !config
        .daemon
        .allowed_clients
        .iter()
        .any(|net| net.contains(&client))
    {
        shared.metrics.refused();
        tracing::warn!(%peer, "connection refused: not in daemon.allowed_clients");
        return;
    }
    shared.metrics.connection_opened();
    let mut session = Session::new(Tokens::random());
    let mut asterisk = Asterisk::new(&mut stream, config.daemon.idle_timeout);
    let result = exchange(&mut asterisk, &mut session).await;
    if !session.started() {
        // Not a call (a port probe, a health check): nothing to judge or to log.
        tracing::debug!(%peer, "connection closed before any AGI line");
        shared.metrics.connection_closed();
        return;
    }
    // `serve` resolved a secret file into the value at start and at each reload.
    if let Some(secret) = &config.daemon.secret
        && !secret
            .inline_value()
            .is_some_and(|key| carries_key(session.network_script().unwrap_or_default(), key))
    {
        // Anyone who can reach the port could otherwise name any address to ban: the
        // request is not judged. It is answered ERROR, so that the dialplan's
        // EXTSEC_ON_ERROR decides and the channel shows why, and said loudly: a wrong
        // key in the dialplan otherwise opens the door in silence.
        shared.metrics.refused();
        say_wrong_key(peer, session.script());
        if session.script() != Script::OutboundEnd {
            let answer = crate::agi::error_command("wrong_key");
            let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
            let _ = asterisk.command(&answer, deadline).await;
        }
        shared.metrics.connection_closed();
        return;
    }
    if let Some(why) = session.tampering() {
        shared.metrics.tampering();
        tracing::warn!(%peer, why, "AGI stream reshaped by a caller's bytes");
    }
    let deadline = || tokio::time::Instant::now() + ACK_TIMEOUT;
    match (session.script(), result) {
        // The shipped subroutine's request: values in the URL, the verdict in one command.
        (Script::Outbound, Ok(Request::Outbound(call))) if session.judging() => {
            outbound_in_one(shared, &config, &mut asterisk, &mut session, &call, peer).await;
        }
        (Script::Outbound, Ok(Request::Outbound(call))) => {
            let judged = fraud::judge(shared, &config, &call);
            let command = outbound_command(judged.as_ref().ok(), call_end(shared, &config));
            if let Err(bad) = judged {
                unjudged(shared, &config, &bad, peer);
            }
            // Asterisk may have hung up: a failed command changes nothing we can act on.
            let _ = asterisk.command(&command, deadline()).await;
        }
        (Script::Outbound, Err(bad)) => {
            unjudged(shared, &config, &bad, peer);
            let _ = asterisk
                .command(&outbound_command(None, ""), deadline())
                .await;
        }
        // The hangup handler of a call that passed: the channel is gone ("dead" AGI),
        // so nothing is set; a request that went wrong only costs its minutes.
        (
            _,
            Ok(Request::OutboundEnd {
                account,
                call_id,
                class,
                answered,
            }),
        ) => fraud::ended(shared, &config, &account, &call_id, &class, answered),
        (Script::OutboundEnd, Err(bad)) => {
            tracing::warn!(%peer, error = bad.error, "the end of an outbound call could not be read: its minutes are not counted")
        }
        (_, result) => {
            let plan = guest(shared, &config, result.and_then(Request::into_guest));
            record(shared, &config, &plan, peer);
            if plan.is_alert() && !config.tarpit.is_zero() {
                tarpit(shared, config.tarpit).await;
            }
            let _ = asterisk.command(&verdict_command(&plan), deadline()).await;
        }
    }
    shared.metrics.connection_closed();
}

/// The outbound check in one command: the verdict goes back as a token-framed `GET
/// FULL VARIABLE` whose `SET()`s write it. It holds only if Asterisk's answer comes
/// with nothing before it; a line before it means a caller ended the block early and
/// the number judged may be theirs: the call is judged again as tampering. An answer
/// that never comes (a refusal, a closed connection) takes the verdict back too.
/// Either way Asterisk is told before the connection closes, and the dialplan reads
/// `EXTSEC_RESULT` only once it is closed (session.rs, the module's doc).
async fn outbound_in_one(
    shared: &Shared,
    config: &Config,
    asterisk: &mut Asterisk<'_>,
    session: &mut Session,
    call: &crate::call::Outbound,
    peer: SocketAddr,
) {
    let judged = fraud::judge(shared, config, call);
    if let Err(bad) = &judged {
        unjudged(shared, config, bad, peer);
    }
    let verdict = session.verdict(&outbound_answer(
        judged.as_ref().ok(),
        call_end(shared, config),
    ));
    let answer = match asterisk.send(&verdict).await {
        Ok(()) => exchange(asterisk, session).await,
        Err(e) => session.on_eof(&format!("writing to Asterisk failed ({e})")),
    };
    let tampered = match answer {
        Ok(Request::Answered { tampered: None }) => return,
        Ok(Request::Answered { tampered }) => tampered,
        Ok(_) => None,
        // The call was judged and its line written; Asterisk hung up or refused the
        // answer: said here, not as a call that could not be judged.
        Err(bad) => {
            tracing::warn!(%peer, error = bad.error, "the outbound verdict was not confirmed by Asterisk: taken back (EXTSEC_RESULT=ERROR)");
            None
        }
    };
    if judged.as_ref().is_ok_and(|j| !j.is_refused()) {
        fraud::forget(shared, call);
    }
    let correction = match tampered {
        Some(why) => {
            shared.metrics.tampering();
            tracing::warn!(%peer, why, "AGI stream reshaped by a caller's bytes");
            let again = crate::call::Outbound {
                tampered: true,
                ..call.clone()
            };
            outbound_command(fraud::judge(shared, config, &again).as_ref().ok(), "")
        }
        _ => outbound_command(None, ""),
    };
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    let _ = asterisk.command(&correction, deadline).await;
}

/// Judges a guest call with the per-call rules and those with memory; a number an
/// alerted call tried is learned for the outbound check.
fn guest(shared: &Shared, config: &Config, request: Result<Call, BadRequest>) -> Plan {
    let now = Instant::now();
    check::plan_with(config, request, |call| {
        let verdict = rules::evaluate(config, call);
        // A local proxy's address stands for every caller behind it (this_host.rs).
        let verdict = match shared.this_host.holds(call.peer_ip) {
            true => verdict,
            false => shared
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .judge(&config.memory, now, call, verdict),
        };
        if verdict.is_alert() {
            fraud::learn(shared, config, call);
        }
        verdict
    })
}

/// Which hangup handler a call that goes on gets (`EXTSEC_END`): the AMI one when
/// `call_end = "ami"` and the link is up now, else the AGI one, so that no call's end
/// is lost to an AMI outage.
fn call_end(shared: &Shared, config: &Config) -> &'static str {
    let ami = config
        .fraud
        .as_ref()
        .is_some_and(|f| f.call_end == crate::config::CallEnd::Ami);
    match ami && shared.metrics.ami.is_connected() {
        true => "-ami",
        false => "",
    }
}

/// One CRITICAL line a minute at most for requests without the right key: the dialplan
/// is wrong for every call until someone fixes it.
fn say_wrong_key(peer: SocketAddr, script: Script) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_SAID: AtomicU64 = AtomicU64::new(0);
    let now = crate::clock::unix_now();
    let last = LAST_SAID.load(Ordering::Relaxed);
    if now >= last + 60
        && LAST_SAID
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let what = match script {
            Script::Guest => "a guest check",
            Script::Outbound => "an outbound check",
            Script::OutboundEnd => "an outbound call's end (its minutes are not counted)",
        };
        crate::critical!(
            %peer,
            "FastAGI: {what} without the right ?key= (daemon.secret) was answered ERROR, and EXTSEC_ON_ERROR decided the call: put the key in the dialplan's EXTSEC_AGI_KEY (check-config --dialplan names every agi:// URL without it); said once a minute, counted in extsecurity_refused_total"
        );
    }
}

/// An outbound call that could not be judged: a `CRITICAL` line, counted.
fn unjudged(shared: &Shared, config: &Config, bad: &BadRequest, peer: SocketAddr) {
    tracing::warn!(%peer, error = bad.error, "outbound call could not be judged");
    shared.metrics.unjudged();
    let _ = shared.write(config, &LogLine::bad_request(&bad.error, &bad.raw));
}

/// Asterisk at the other end of a FastAGI connection: its lines in, our commands out.
struct Asterisk<'a> {
    stream: &'a mut TcpStream,
    lines: LineBuffer,
    /// The longest wait for any one read before the block is in (`idle_timeout`).
    idle: Duration,
}

impl<'a> Asterisk<'a> {
    fn new(stream: &'a mut TcpStream, idle: Duration) -> Asterisk<'a> {
        Asterisk {
            stream,
            lines: LineBuffer::new(MAX_LINE),
            idle,
        }
    }

    /// The next line, or why none came before `deadline` (and within `idle` of the
    /// last read); with no deadline, whenever it comes.
    async fn next_line(&mut self, deadline: Option<tokio::time::Instant>) -> Result<Line, String> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(line) = self.lines.next_line() {
                return Ok(line);
            }
            let read = match deadline {
                None => Ok(self.stream.read(&mut buf).await),
                Some(deadline) => {
                    let now = tokio::time::Instant::now();
                    let wait = self.idle.min(deadline.saturating_duration_since(now));
                    tokio::time::timeout(wait, self.stream.read(&mut buf)).await
                }
            };
            match read {
                Ok(Ok(0)) => return Err("the connection was closed".into()),
                Ok(Ok(n)) => self.lines.extend(&buf[..n]),
                Ok(Err(e)) => return Err(format!("reading failed ({e})")),
                Err(_) => return Err("the connection was idle too long".into()),
            }
        }
    }

    async fn send(&mut self, command: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(command).await
    }

    /// Sends one command and waits for its answer, the only way Asterisk reads: one
    /// line per wake-up, so a command written before the previous one was answered
    /// sits unseen in its buffer (design.md §3a). Call only after the query's reply.
    async fn command(
        &mut self,
        command: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<u8>, String> {
        self.send(command)
            .await
            .map_err(|e| format!("writing to Asterisk failed ({e})"))?;
        let mut answer = Answer::default();
        loop {
            if let Some(status) = answer.on_line(self.next_line(Some(deadline)).await?) {
                return Ok(status);
            }
        }
    }
}

/// Drives the AGI session until it yields a call or a refusal. The session sends one
/// command and reads until its reply: never two at once.
async fn exchange(
    asterisk: &mut Asterisk<'_>,
    session: &mut Session,
) -> Result<Request, BadRequest> {
    let block_by = tokio::time::Instant::now() + BLOCK_TIMEOUT;
    loop {
        let deadline = (!session.awaiting_reply()).then_some(block_by);
        let line = match asterisk.next_line(deadline).await {
            Ok(line) => line,
            Err(why) => return session.on_eof(&why),
        };
        match session.on_line(line) {
            Step::Read => {}
            Step::Send(command) => {
                if let Err(e) = asterisk.send(&command).await {
                    return session.on_eof(&format!("writing to Asterisk failed ({e})"));
                }
            }
            Step::Done(result) => return result,
        }
    }
}

/// Whether the URL's query (`check?key=SECRET&…`) carries `key=secret`.
fn carries_key(script: &[u8], secret: &str) -> bool {
    let Some(query) = script.splitn(2, |&b| b == b'?').nth(1) else {
        return false;
    };
    query
        .split(|&b| b == b'&')
        .filter_map(|pair| pair.strip_prefix(b"key="))
        .any(|value| value == secret.as_bytes())
}

/// Writes the plan's lines and counts them.
fn record(shared: &Shared, config: &Config, plan: &Plan, peer: SocketAddr) {
    if let Some(error) = &plan.error {
        tracing::warn!(%peer, error, "call could not be judged");
    }
    match &plan.verdict {
        Some(verdict) => shared.metrics.checked(verdict),
        None => shared.metrics.unjudged(),
    }
    for line in &plan.lines {
        // A failed write is counted and said by `write`, once per outage.
        let _ = shared.write(config, line);
    }
}

/// Holds the channel without holding a thread. At most `max_concurrent_tarpits` at
/// once; beyond that the verdict is returned at once (the alert is already written).
/// Shutdown cuts a tarpit short.
async fn tarpit(shared: &Shared, duration: Duration) {
    match shared.tarpits.try_acquire() {
        Ok(_permit) => {
            tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = shared.shutting_down() => {}
            }
        }
        Err(_) => shared.metrics.tarpit_full(),
    }
}

#[cfg(test)]
mod tests {
    use super::carries_key;

    #[test]
    fn the_key_must_be_a_whole_query_parameter() {
        let secret = "0123456789abcdef";
        assert!(carries_key(b"check?key=0123456789abcdef", secret));
        assert!(carries_key(b"check?x=1&key=0123456789abcdef", secret));
        assert!(!carries_key(b"check", secret));
        assert!(!carries_key(b"check?key=0123456789abcde", secret));
        assert!(!carries_key(b"check?key=0123456789abcdefX", secret));
        assert!(!carries_key(b"check?xkey=0123456789abcdef", secret));
    }
}
