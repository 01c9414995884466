//! One FastAGI connection: the AGI session over TCP, then the verdict.
//!
//! Every read is bounded in time (`idle_timeout`) and the whole exchange too
//! ([`EXCHANGE_TIMEOUT`]); lines are bounded by the AGI line buffer. A connection that
//! sends nothing, sends garbage or vanishes ends with a `CRITICAL` line at worst: the
//! TCP peer is Asterisk, never the caller, so nothing is ever blamed on it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::agi::lines::LineBuffer;
use crate::agi::session::{Session, Step, Tokens};
use crate::agi::{MAX_LINE, verdict_commands};
use crate::call::Call;
use crate::check::{self, Plan};
use crate::daemon::Shared;
use crate::request::BadRequest;
use crate::rules;

/// How long the exchange with Asterisk may take, however chatty the peer.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
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
    let mut lines = LineBuffer::new(MAX_LINE);
    let result = exchange(
        &mut stream,
        &mut session,
        &mut lines,
        config.daemon.idle_timeout,
    )
    .await;
    if !session.started() {
        // Not a call (a port probe, a health check): nothing to judge or to log.
        tracing::debug!(%peer, "connection closed before any AGI line");
        shared.metrics.connection_closed();
        return;
    }
    if let Some(secret) = &config.daemon.secret
        && !carries_key(session.network_script().unwrap_or_default(), secret)
    {
        // Anyone who can reach the port could otherwise name any address to ban.
        shared.metrics.refused();
        tracing::warn!(%peer, "FastAGI request without the right ?key=: ignored");
        shared.metrics.connection_closed();
        return;
    }
    if let Some(why) = session.tampering() {
        shared.metrics.tampering();
        tracing::warn!(%peer, why, "AGI stream reshaped by a caller's bytes");
    }
    let now = Instant::now();
    let plan = check::plan_with(&config, result, |call| {
        let verdict = rules::evaluate(&config, call);
        let mut memory = shared.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.judge(&config.memory, now, call, verdict)
    });
    record(shared, &config, &plan, peer);
    if plan.is_alert() && !config.tarpit.is_zero() {
        tarpit(shared, config.tarpit).await;
    }
    if stream.write_all(&verdict_commands(&plan)).await.is_ok() {
        await_acks(&mut stream, &mut lines, 2).await;
    }
    shared.metrics.connection_closed();
}

/// Drives the AGI session until it yields a call or a refusal.
async fn exchange(
    stream: &mut TcpStream,
    session: &mut Session,
    lines: &mut LineBuffer,
    idle: Duration,
) -> Result<Call, BadRequest> {
    let deadline = tokio::time::Instant::now() + EXCHANGE_TIMEOUT;
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(line) = lines.next_line() {
            match session.on_line(line) {
                Step::Read => {}
                Step::Send(command) => {
                    if let Err(e) = stream.write_all(&command).await {
                        return session.on_eof(&format!("writing to Asterisk failed ({e})"));
                    }
                }
                Step::Done(result) => return result,
            }
        }
        let wait = idle.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return session.on_eof("the connection was closed"),
            Ok(Ok(n)) => lines.extend(&buf[..n]),
            Ok(Err(e)) => return session.on_eof(&format!("reading failed ({e})")),
            Err(_) => return session.on_eof("the connection was idle too long"),
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
fn record(shared: &Shared, config: &crate::config::Config, plan: &Plan, peer: SocketAddr) {
    if let Some(error) = &plan.error {
        tracing::warn!(%peer, error, "call could not be judged");
    }
    if let Some(verdict) = &plan.verdict {
        shared.metrics.checked(verdict);
    }
    for line in &plan.lines {
        if let Err(e) = shared.write(config, line) {
            shared.metrics.log_error();
            tracing::error!(error = %e, "alert log");
        }
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

/// Reads until `count` lines arrived, the peer closed, or [`ACK_TIMEOUT`] passed.
async fn await_acks(stream: &mut TcpStream, lines: &mut LineBuffer, count: usize) {
    let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
    let mut seen = 0;
    let mut buf = [0u8; 1024];
    while seen < count {
        while lines.next_line().is_some() {
            seen += 1;
        }
        if seen >= count {
            return;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => lines.extend(&buf[..n]),
            _ => return,
        }
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
