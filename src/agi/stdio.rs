//! `extsecurity agi`: the AGI program Asterisk starts with `AGI(/usr/bin/extsecurity,agi)`,
//! speaking over stdin and stdout.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::agi::lines::{Line, LineBuffer};
use crate::agi::session::{
    Answer, Request, Script, Session, Step, Tokens, outbound_needs_the_daemon,
};
use crate::agi::{BLOCK_TIMEOUT, MAX_LINE, verdict_command};
use crate::check;
use crate::config::Config;
use crate::exits;
use crate::request::BadRequest;

/// How long to wait for Asterisk to acknowledge the verdict variables (they are in its
/// pipe by then: it sets them whether or not we are still there to read the answer).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one AGI check on stdin/stdout and returns the exit status.
///
/// On hangup Asterisk sends a local AGI program `SIGHUP` (design.md §3a); scanners hang
/// up fast, so the default action would kill us before the alert is written. We ignore
/// it and finish: res_agi goes on answering a hung-up channel's commands ("dead" mode)
/// until we exit, or closes our pipes (`AGIEXITONHANGUP`), so the end of input, not the
/// signal, is where a call's exchange ends.
///
/// The outbound check (`agi outbound`) is refused at once: it needs the daemon's
/// memory of every account's calls. The dialplan gets `ERROR` and the log a
/// `CRITICAL` line saying so.
pub fn run(config: &Config, script: Script) -> u8 {
    ignore_sighup();
    let mut asterisk = Asterisk::new(std::io::stdin(), std::io::stdout().lock());
    let mut session = Session::new(Tokens::random());
    let result = match script {
        Script::Guest => exchange(&mut session, &mut asterisk).and_then(Request::into_guest),
        Script::Outbound | Script::OutboundEnd => Err(outbound_needs_the_daemon()),
    };
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
    // Asterisk may be gone (hangup): a failed command changes nothing we can act on.
    let _ = asterisk.command(&verdict_command(&plan), Instant::now() + ACK_TIMEOUT);
    status
}

/// Asterisk at the other end of a pipe pair: its lines in, our commands out.
pub struct Asterisk<W> {
    /// Chunks read on a thread of their own, so that reads time out.
    input: Receiver<Vec<u8>>,
    lines: LineBuffer,
    output: W,
}

impl<W: Write> Asterisk<W> {
    pub fn new(input: impl Read + Send + 'static, output: W) -> Asterisk<W> {
        Asterisk {
            input: spawn_reader(input),
            lines: LineBuffer::new(MAX_LINE),
            output,
        }
    }

    /// The next line, or why none came before `deadline`; with no deadline, whenever
    /// it comes, until the input ends.
    pub fn next_line(&mut self, deadline: Option<Instant>) -> Result<Line, &'static str> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return Ok(line);
            }
            let chunk = match deadline {
                None => self
                    .input
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .input
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match chunk {
                Ok(chunk) => self.lines.extend(&chunk),
                Err(RecvTimeoutError::Timeout) => return Err("timed out"),
                Err(RecvTimeoutError::Disconnected) => return Err("end of input"),
            }
        }
    }

    /// Writes one command (it ends with LF) and flushes it.
    pub fn send(&mut self, command: &[u8]) -> std::io::Result<()> {
        self.output.write_all(command)?;
        self.output.flush()
    }

    /// Sends one command and waits for its answer, the only way Asterisk reads: one
    /// line per wake-up, so a command written before the previous one was answered
    /// sits unseen in its buffer (design.md §3a). Call only after the query's reply.
    pub fn command(&mut self, command: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
        self.send(command)
            .map_err(|e| format!("writing to Asterisk failed ({e})"))?;
        let mut answer = Answer::default();
        loop {
            if let Some(status) = answer.on_line(self.next_line(Some(deadline))?) {
                return Ok(status);
            }
        }
    }
}

/// Feeds the session until it is done, sending its commands to Asterisk. The session
/// sends one command and reads until its reply: never two at once.
///
/// The block must come within [`BLOCK_TIMEOUT`]; the answer to our query is waited for
/// as long as Asterisk keeps our pipes open: an overloaded PBX answers seconds late,
/// and giving up first left calls unjudged (design.md §3a: res_agi answers or closes).
pub fn exchange<W: Write>(
    session: &mut Session,
    asterisk: &mut Asterisk<W>,
) -> Result<Request, BadRequest> {
    let block_by = Instant::now() + BLOCK_TIMEOUT;
    loop {
        let deadline = (!session.awaiting_reply()).then_some(block_by);
        let line = match asterisk.next_line(deadline) {
            Ok(line) => line,
            Err(why) => return session.on_eof(why),
        };
        match session.on_line(line) {
            Step::Read => {}
            Step::Send(command) => {
                if let Err(e) = asterisk.send(&command) {
                    return session.on_eof(&format!("writing to Asterisk failed ({e})"));
                }
            }
            Step::Done(result) => return result,
        }
    }
}

/// Reads `input` on a thread of its own, so that the exchange can time out.
fn spawn_reader(mut input: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
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

fn ignore_sighup() {
    // SAFETY: setting a signal's disposition to SIG_IGN runs no handler code and is
    // done before any other thread of ours exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}
