//! `extsecurity agi`: the AGI program Asterisk starts with `AGI(/usr/bin/extsecurity,agi)`,
//! speaking over stdin and stdout.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::agi::lines::LineBuffer;
use crate::agi::session::{Session, Step, Tokens};
use crate::agi::{MAX_LINE, verdict_commands};
use crate::call::Call;
use crate::check;
use crate::config::Config;
use crate::exits;
use crate::request::BadRequest;

/// How long the whole exchange with Asterisk may take before we give up on it.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for Asterisk to acknowledge the verdict variables.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one AGI check on stdin/stdout and returns the exit status.
///
/// On hangup Asterisk sends a local AGI program `SIGHUP` (design.md §3a); scanners hang
/// up fast, so the default action would kill us before the alert is written. We ignore
/// it and finish.
pub fn run(config: &Config) -> u8 {
    ignore_sighup();
    let input = spawn_reader(std::io::stdin());
    let mut output = std::io::stdout().lock();
    let mut session = Session::new(Tokens::random());
    let result = exchange(
        &mut session,
        &input,
        &mut output,
        Instant::now() + EXCHANGE_TIMEOUT,
    );
    let plan = check::plan(config, result);
    if let Some(error) = &plan.error {
        eprintln!("extsecurity: {error}");
    }
    let status = match check::execute(config, &plan, std::thread::sleep) {
        Ok(()) => exits::OK,
        Err(e) => {
            eprintln!("extsecurity: {e}");
            exits::LOG
        }
    };
    // Asterisk may be gone (hangup): a failed write changes nothing we can act on.
    let _ = output
        .write_all(&verdict_commands(&plan))
        .and_then(|()| output.flush());
    await_acks(&input, 2, Instant::now() + ACK_TIMEOUT);
    status
}

/// Feeds the session until it is done, sending its commands to `output`.
pub fn exchange(
    session: &mut Session,
    input: &Receiver<Vec<u8>>,
    output: &mut impl Write,
    deadline: Instant,
) -> Result<Call, BadRequest> {
    let mut lines = LineBuffer::new(MAX_LINE);
    loop {
        while let Some(line) = lines.next_line() {
            match session.on_line(line) {
                Step::Read => {}
                Step::Send(command) => {
                    if let Err(e) = output.write_all(&command).and_then(|()| output.flush()) {
                        return session.on_eof(&format!("writing to Asterisk failed ({e})"));
                    }
                }
                Step::Done(result) => return result,
            }
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match input.recv_timeout(timeout) {
            Ok(chunk) => lines.extend(&chunk),
            Err(RecvTimeoutError::Timeout) => return session.on_eof("timed out"),
            Err(RecvTimeoutError::Disconnected) => return session.on_eof("end of input"),
        }
    }
}

/// Reads `input` on a thread of its own, so that the exchange can time out.
pub fn spawn_reader(mut input: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Waits until `count` lines arrived or the deadline passed, whichever is first.
fn await_acks(input: &Receiver<Vec<u8>>, count: usize, deadline: Instant) {
    let mut seen = 0;
    while seen < count {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match input.recv_timeout(timeout) {
            Ok(chunk) => seen += chunk.iter().filter(|&&b| b == b'\n').count(),
            Err(_) => return,
        }
    }
}

fn ignore_sighup() {
    // SAFETY: setting a signal's disposition to SIG_IGN runs no handler code and is
    // done before any other thread of ours exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}
