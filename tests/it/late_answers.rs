//! Issue 19: on an overloaded PBX Asterisk answers our query seconds late (a real one,
//! forking process AGIs far past its ~55/s, answered more than 10 s late, and 543–680 of
//! 1,000 calls ended unjudged because we gave up first). A late answer is not a missing
//! one: the channel is still there. Here the res_agi-faithful peer
//! (`common/agi_peer.rs`: one line per wake-up) answers 12 s and 30 s late, over process
//! AGI and FastAGI at once, and every call gets OK or ALERT. Only Asterisk closing its
//! end ends the wait: after SIGHUP or `HANGUP` it still answers (res_agi's dead mode).

use crate::common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::agi_peer::{Block, Exchange, ResAgiReader, fastagi_call_with, pipes, reply_to, serve};
use common::asterisk::Channel;
use common::{Sandbox, ServeProcess, wait_for};

/// Answers every command as Asterisk would, the query `late`.
fn answering_late(call: Channel, late: Duration) -> impl FnMut(&[u8]) -> Option<Vec<u8>> {
    move |command| {
        if command.starts_with(b"GET FULL VARIABLE") {
            std::thread::sleep(late);
        }
        Some(reply_to(command, &call))
    }
}

/// One call over process AGI (`AGI(/usr/bin/extsecurity,agi)`), its query answered
/// `late`; the exchange and the program's exit status.
fn process_agi(s: &Sandbox, call: Channel, late: Duration) -> (Exchange, bool) {
    let mut child = s.spawn_agi();
    let (stdin, stdout) = pipes(&mut child);
    let block = Block::pjsip().bytes(&call);
    let ex = serve(stdin, stdout, &block, answering_late(call, late));
    (ex, child.wait().unwrap().success())
}

#[test]
fn answers_12_and_30_seconds_late_are_still_judged() {
    let s = std::sync::Arc::new(Sandbox::new());
    let daemon = ServeProcess::start(&s);
    let port = daemon.port;
    let ordinary = || Channel::ordinary("198.51.100.9");
    let scan = || Channel {
        exten: b"100".to_vec(),
        ..Channel::ordinary("203.0.113.9")
    };
    let started = Instant::now();
    let mut calls = Vec::new();
    for late in [12, 30].map(Duration::from_secs) {
        for (call, expected) in [(ordinary(), "OK"), (scan(), "ALERT")] {
            let s = s.clone();
            let c = call.clone();
            calls.push(std::thread::spawn(move || {
                let (ex, ok) = process_agi(&s, c, late);
                assert!(ok, "process AGI exited with an error");
                ("process AGI", late, expected, ex)
            }));
            calls.push(std::thread::spawn(move || {
                let ex = fastagi_call_with(port, &call.clone(), answering_late(call, late));
                ("FastAGI", late, expected, ex)
            }));
        }
    }
    for call in calls {
        let (how, late, expected, ex) = call.join().unwrap();
        assert_eq!(
            ex.variable("EXTSEC_RESULT").as_deref(),
            Some(expected),
            "{how}, answered {late:?} late: {:?}",
            ex.commands
        );
        assert!(ex.written_early.is_empty(), "one command at a time");
    }
    assert!(started.elapsed() >= Duration::from_secs(30));
    let lines = s.log_lines();
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("CRITICAL")), "{lines:?}");
}

/// A FastAGI connection as Asterisk opens it for `AGI(agi://127.0.0.1/check)`: the
/// stream to write on, one to read from, and the block.
fn fastagi_connection(port: u16, call: &Channel) -> (TcpStream, TcpStream, Vec<u8>) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let reader = stream.try_clone().unwrap();
    (stream, reader, Block::fastagi().bytes(call))
}

/// `extsecurity agi` with its stderr kept, to read what it said.
fn spawn_agi_said(s: &Sandbox) -> std::process::Child {
    s.command()
        .arg("agi")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A scanner hangs up at once; Asterisk, overloaded, answers our query 12 s later on the
/// hung-up channel. res_agi's `run_agi` does exactly that: on hangup it sends SIGHUP (or
/// `HANGUP` to a FastAGI server) and goes on answering in "dead" mode, where `GET FULL
/// VARIABLE` is allowed, until the program exits (design §3a: "Asterisk still answers
/// commands after it"). The hangup is no reason to give up: the scanner is alerted.
#[test]
fn a_caller_who_hangs_up_is_judged_on_the_late_answer() {
    let s = Sandbox::new();
    let daemon = ServeProcess::start(&s);
    let scan = Channel {
        exten: b"100".to_vec(),
        ..Channel::ordinary("203.0.113.9")
    };
    let late = Duration::from_secs(12);

    let mut child = s.spawn_agi();
    let pid = child.id() as i32;
    let (stdin, stdout) = pipes(&mut child);
    let block = Block::pjsip().bytes(&scan);
    let call = scan.clone();
    let process = std::thread::spawn(move || {
        serve(stdin, stdout, &block, move |command| {
            if command.starts_with(b"GET FULL VARIABLE") {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(pid, libc::SIGHUP) };
                std::thread::sleep(late);
            }
            Some(reply_to(command, &call))
        })
    });

    let (stream, reader, block) = fastagi_connection(daemon.port, &scan);
    let mut hangup = stream.try_clone().unwrap();
    let fast = serve(stream, reader, &block, |command| {
        if command.starts_with(b"GET FULL VARIABLE") {
            hangup.write_all(b"HANGUP\n").unwrap();
            std::thread::sleep(late);
        }
        Some(reply_to(command, &scan))
    });

    let ex = process.join().unwrap();
    let status = child.wait().unwrap();
    for (how, ex) in [("process AGI", ex), ("FastAGI", fast)] {
        assert_eq!(
            ex.variable("EXTSEC_RESULT").as_deref(),
            Some("ALERT"),
            "{how}: {:?}",
            ex.commands
        );
    }
    assert!(status.success(), "process AGI exited with {status}");
    let lines = s.log_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("203.0.113.9") && !l.contains("CRITICAL")),
        "{lines:?}"
    );
}

/// With `AGIEXITONHANGUP=yes` res_agi stops at the hangup: it sends SIGHUP (`HANGUP`
/// twice over FastAGI) and closes its end. That ends the wait at once — nothing more
/// will come — with the CRITICAL line of a call that could not be judged.
#[test]
fn asterisk_closing_its_end_ends_the_wait() {
    let s = Sandbox::new();
    let daemon = ServeProcess::start(&s);
    let call = Channel::ordinary("198.51.100.9");

    let started = Instant::now();
    let mut child = spawn_agi_said(&s);
    let (mut stdin, stdout) = pipes(&mut child);
    stdin.write_all(&Block::pjsip().bytes(&call)).unwrap();
    let mut commands = ResAgiReader::new(stdout);
    let query = commands.next_command().unwrap();
    assert!(query.starts_with(b"GET FULL VARIABLE"), "{query:?}");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    drop((stdin, commands));
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("end of input"), "{said}");

    let (mut stream, reader, block) = fastagi_connection(daemon.port, &call);
    stream.write_all(&block).unwrap();
    let mut commands = ResAgiReader::new(reader);
    let query = commands.next_command().unwrap();
    assert!(query.starts_with(b"GET FULL VARIABLE"), "{query:?}");
    stream.write_all(b"HANGUP\nHANGUP\n").unwrap();
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop((stream, commands));
    wait_for("the daemon's CRITICAL line", Duration::from_secs(3), || {
        s.log_lines()
            .iter()
            .any(|l| l.contains("CRITICAL") && l.contains("the connection was closed"))
    });
}

/// A connection waiting for an answer has no timer of its own, so TCP must notice an
/// Asterisk host that vanishes without closing: the daemon's socket carries keepalive.
#[test]
fn a_waiting_connection_is_kept_alive_by_tcp() {
    let s = Sandbox::new();
    let daemon = ServeProcess::start(&s);
    let (mut stream, reader, block) =
        fastagi_connection(daemon.port, &Channel::ordinary("198.51.100.9"));
    stream.write_all(&block).unwrap();
    let mut commands = ResAgiReader::new(reader);
    assert!(
        commands
            .next_command()
            .unwrap()
            .starts_with(b"GET FULL VARIABLE")
    );
    let filter = format!("( sport = :{} )", daemon.port);
    let ss = std::process::Command::new("ss")
        .args(["-tno", "state", "established", &filter])
        .output()
        .unwrap();
    let sockets = String::from_utf8_lossy(&ss.stdout);
    assert!(sockets.contains("timer:(keepalive,"), "{sockets}");
}
