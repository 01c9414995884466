//! `extsecurity agi` driven through its real stdin and stdout by an AGI peer that speaks
//! as Asterisk 20.20.1 does (design.md §3, §3a; `common/agi_peer.rs`), with the
//! recorded sessions of `../shared/captures/agi/` replayed as they were received.

use crate::common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use common::agi_peer::{Block, Exchange, pipes, reply_to, serve};
use common::asterisk::Channel;
use common::{Sandbox, fail2ban_matches, ip_field, level};

const CALLER: &str = "203.0.113.5";

/// The recorded sessions, copied from the team's shared captures (their README
/// describes each).
fn captures() -> PathBuf {
    common::repo().join("tests/captures/agi")
}

fn capture(name: &str) -> Vec<u8> {
    let path = captures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ordinary() -> Channel {
    Channel::ordinary(CALLER)
}

/// Runs `extsecurity agi` against a peer that writes `prefix` and then answers as
/// Asterisk would for `channel`.
fn run_agi(sandbox: &Sandbox, prefix: &[u8], channel: &Channel) -> Exchange {
    let mut child = sandbox.spawn_agi();
    let (stdin, stdout) = pipes(&mut child);
    let exchange = serve(stdin, stdout, prefix, |c| Some(reply_to(c, channel)));
    assert!(child.wait().unwrap().success());
    exchange
}

#[test]
fn agi_block_matches_the_capture() {
    let bytes = capture("A0-plain-pjsip.bin");
    let channel = Channel {
        callerid_num: b"5551234".to_vec(),
        callerid_name: b"Lab".to_vec(),
        exten: b"100".to_vec(),
        ..Channel::default()
    };
    let block = Block::pjsip().bytes(&channel);
    assert_eq!(
        String::from_utf8_lossy(&bytes[..block.len()]),
        String::from_utf8_lossy(&block)
    );
}

#[test]
fn an_ordinary_call_is_judged_and_the_verdict_set() {
    let s = Sandbox::new();
    for block in [Block::pjsip(), Block::chan_sip()] {
        let ex = run_agi(&s, &block.bytes(&ordinary()), &ordinary());
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("OK"));
        assert_eq!(ex.variable("EXTSEC_REASON").as_deref(), Some("ok"));
        // One query, then both variables in one command.
        assert_eq!(ex.commands.len(), 2, "{:?}", ex.commands);
    }
    let lines = s.log_lines();
    assert_eq!(lines.len(), 2);
    for line in lines {
        assert!(line.contains(
            " INFO ip=203.0.113.5 reason=ok callerid_num='5551234' callerid_name='Alice' dest_exten='4915112345678' peer_name='guest' user_agent='Yealink SIP-T46S'"
        ), "{line}");
    }
}

/// The peer reads as res_agi's `run_agi` does (design.md §3a): a command written in the
/// same burst as the one before is seen only when the program writes more or closes.
/// Both halves of that, so the driver tests below can trust it.
#[test]
fn the_peer_reads_one_line_per_wake_up_like_res_agi() {
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // Two commands in one write: the second waits for the program to close.
    let (program, asterisk) = UnixStream::pair().unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let program_closed = closed.clone();
    let program = std::thread::spawn(move || {
        let mut program = program;
        program
            .write_all(b"SET VARIABLE A \"1\"\nSET VARIABLE B \"2\"\n")
            .unwrap();
        let mut answer = [0u8; 13];
        std::io::Read::read_exact(&mut program, &mut answer).unwrap();
        assert_eq!(&answer, b"200 result=1\n");
        program_closed.store(true, Ordering::SeqCst);
    });
    let mut seen_after_close = Vec::new();
    let ex = serve(asterisk.try_clone().unwrap(), asterisk, b"", |c| {
        seen_after_close.push(closed.load(Ordering::SeqCst));
        Some(reply_to(c, &ordinary()))
    });
    program.join().unwrap();
    assert_eq!(ex.commands.len(), 2);
    assert_eq!(seen_after_close, [false, true], "B is read only at EOF");
    assert_eq!(ex.written_early, [1]);

    // One command, its answer, then the next: each seen as it comes.
    let (program, asterisk) = UnixStream::pair().unwrap();
    let program = std::thread::spawn(move || {
        let mut program = program;
        for command in [&b"SET VARIABLE A \"1\"\n"[..], b"SET VARIABLE B \"2\"\n"] {
            program.write_all(command).unwrap();
            let mut answer = [0u8; 13];
            std::io::Read::read_exact(&mut program, &mut answer).unwrap();
        }
    });
    let ex = serve(asterisk.try_clone().unwrap(), asterisk, b"", |c| {
        Some(reply_to(c, &ordinary()))
    });
    program.join().unwrap();
    assert_eq!(ex.commands.len(), 2);
    assert!(ex.written_early.is_empty(), "{:?}", ex.written_early);
}

/// Issue 11: with two `SET VARIABLE`s in one write, every call waited for the
/// program's 2 s ack timeout on a real Asterisk. Each command must be answered before
/// the next is written; the verdict is one `EXEC MSet`.
#[test]
fn commands_are_written_one_at_a_time() {
    let s = Sandbox::new();
    let mut scan = ordinary();
    scan.exten = b"100".to_vec();
    for (block, channel) in [
        (Block::pjsip(), ordinary()),
        (Block::chan_sip(), ordinary()),
        (Block::pjsip(), scan.clone()),
    ] {
        let ex = run_agi(&s, &block.bytes(&channel), &channel);
        assert!(ex.written_early.is_empty(), "{:?}", ex.commands);
        assert_eq!(ex.commands.len(), 2, "{:?}", ex.commands);
        assert!(ex.commands[0].starts_with(b"GET FULL VARIABLE \""));
        assert!(ex.commands[1].starts_with(b"EXEC MSet EXTSEC_RESULT="));
    }
}

#[test]
fn a_scan_is_alerted_with_its_reason() {
    let s = Sandbox::new();
    let mut scan = ordinary();
    scan.exten = b"100".to_vec();
    let ex = run_agi(&s, &Block::pjsip().bytes(&scan), &scan);
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
    assert_eq!(
        ex.variable("EXTSEC_REASON").as_deref(),
        Some("wrong_exten_min_length(3)")
    );
    assert_eq!(fail2ban_matches(&s.log)[0].1, CALLER);
}

/// Each capture's bytes up to the reply to the probe's first command, then our own
/// query answered as Asterisk would, from the capture's real caller 127.0.0.2.
/// `tampered`: the caller's bytes reshaped the stream (design.md §3a).
#[test]
fn recorded_sessions_are_judged_against_the_real_peer() {
    // (capture, where the probe's first reply starts, tampered on [pjsip, chan_sip],
    // the caller number and the extension the caller sent)
    type Case<'a> = (&'a str, &'a str, [bool; 2], &'a [u8], &'a [u8]);
    let cases: [Case; 9] = [
        (
            "A0-plain",
            "200 result=1 (127.0.0.2",
            [false; 2],
            b"5551234",
            b"100",
        ),
        (
            "A1-ruri",
            "200 result=1 (127.0.0.2",
            [true; 2],
            b"5551234",
            b"100\n\n200 result=1 (6.6.6.6)",
        ),
        (
            "A3-from",
            "200 result=1 (127.0.0.2",
            [true; 2],
            b"555\n\n200 result=1 (6.6.6.6)",
            b"100",
        ),
        (
            "A4-ruri-CRCR",
            "200 result=1 (127.0.0.2",
            [false; 2],
            b"5551234",
            b"100\r\r200 result=1 (6.6.6.6)",
        ),
        // chan_sip does not percent-decode Diversion (design.md §3a).
        (
            "A9-diversion",
            "200 result=1 (127.0.0.2",
            [true, false],
            b"5551234",
            b"100",
        ),
        (
            "DN1-qpair-quote",
            "200 result=1 (127.0.0.2",
            [false; 2],
            b"5551234",
            b"100",
        ),
        (
            "DN10-CRCR-display",
            "200 result=1 (127.0.0.2",
            [false; 2],
            b"5551234",
            b"100",
        ),
        (
            "DN13-TAB-VT-FF",
            "200 result=1 (127.0.0.2",
            [false; 2],
            b"5551234",
            b"100",
        ),
        (
            "B1-lf",
            "200 result=1 (n0nce",
            [true; 2],
            b"555\n200 result=1 (6.6.6.6)",
            b"100",
        ),
    ];
    let s = Sandbox::new();
    let mut runs = 0;
    for (name, cut, tampered_on, num, exten) in cases {
        for (stack, tampered) in ["pjsip", "chansip"].into_iter().zip(tampered_on) {
            if name.starts_with('B') && stack == "chansip" {
                continue; // The B sessions were recorded on chan_pjsip only.
            }
            let file = format!("{name}-{stack}.bin");
            let bytes = capture(&file);
            let at =
                find(&bytes, format!("\n{cut}").as_bytes()).expect("the probe's first reply") + 1;
            let channel = Channel {
                peerip: "127.0.0.2".into(),
                remote_addr: "127.0.0.2:5060".into(),
                callerid_num: num.to_vec(),
                exten: exten.to_vec(),
                ..ordinary()
            };
            let ex = run_agi(&s, &bytes[..at], &channel);
            runs += 1;
            let lines = s.log_lines();
            assert_eq!(lines.len(), runs, "{file}: one line per call");
            let last = lines.last().unwrap();
            assert_eq!(ip_field(last), Some("127.0.0.2"), "{file}: {last}");
            let is_tampering = last.contains(" reason=request_tampering ");
            assert_eq!(is_tampering, tampered, "{file}: {last}");
            if tampered {
                assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
            }
        }
    }
    assert_eq!(runs, 17);
    let matches = fail2ban_matches(&s.log);
    assert!(!matches.is_empty());
    assert!(
        matches.iter().all(|(_, ip)| ip == "127.0.0.2"),
        "never 6.6.6.6: {matches:?}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The same guarantees as the System() mode (design.md §5) with a hostile value in each
/// caller field in turn: one line, the caller's address, no forged match.
#[test]
fn hostile_values_in_every_field_never_change_the_address() {
    let hostile: Vec<Vec<u8>> = vec![
        b"a\n\n200 result=1 (6.6.6.6)".to_vec(),
        b"a\nHANGUP\n200 result=1 (198.51.100.7:5060)".to_vec(),
        b"x\" ; SET VARIABLE EXTSEC_RESULT \"OK".to_vec(),
        b"ERROR ip=198.51.100.7 reason=x".to_vec(),
        b"a)b (c) d)".to_vec(),
        b"\r\r200 result=1 (6.6.6.6)\r".to_vec(),
        b"\xff\xfe\xc3(".to_vec(),
        vec![b'9'; 64 * 1024],
    ];
    let s = Sandbox::new();
    let mut runs = 0;
    for value in &hostile {
        for field in 0..5 {
            let mut c = ordinary();
            match field {
                0 => c.callerid_num = value.clone(),
                1 => c.callerid_name = value.clone(),
                2 => c.exten = [b"100".as_slice(), value].concat(),
                3 => c.user_agent = value.clone(),
                _ => c.peer_name = value.clone(),
            }
            let ex = run_agi(&s, &Block::pjsip().bytes(&c), &c);
            runs += 1;
            let lines = s.log_lines();
            assert_eq!(lines.len(), runs, "one line per call");
            let last = lines.last().unwrap();
            assert_eq!(ip_field(last), Some(CALLER), "{last}");
            let result = ex.variable("EXTSEC_RESULT");
            assert_eq!(
                result.as_deref() == Some("ALERT"),
                level(last) == "ERROR",
                "{last}"
            );
        }
    }
    let matches = fail2ban_matches(&s.log);
    assert!(!matches.is_empty());
    assert!(matches.iter().all(|(_, ip)| ip == CALLER), "{matches:?}");
}

#[test]
fn a_peer_that_closes_mid_exchange_bans_no_one() {
    let s = Sandbox::new();
    let block = Block::pjsip().bytes(&ordinary());
    for cut in [0, 10, block.len() - 1, block.len()] {
        let mut child = s.spawn_agi();
        let (mut stdin, stdout) = pipes(&mut child);
        // Write part of the stream, then close: no reply will ever come.
        stdin.write_all(&block[..cut]).unwrap();
        drop(stdin);
        let ex = serve(std::io::sink(), stdout, b"", |_| None);
        assert!(child.wait().unwrap().success());
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ERROR"));
    }
    let lines = s.log_lines();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| level(l) == "CRITICAL"), "{lines:?}");
    assert!(fail2ban_matches(&s.log).is_empty());
}

#[test]
fn error_replies_to_our_query_ban_no_one() {
    let s = Sandbox::new();
    for reply in [
        &b"510 Invalid or unknown command\n"[..],
        b"511 Command Not Permitted on a dead channel or intercept routine\n",
    ] {
        let mut child = s.spawn_agi();
        let (stdin, stdout) = pipes(&mut child);
        let mut first = true;
        let ex = serve(stdin, stdout, &Block::pjsip().bytes(&ordinary()), |_| {
            std::mem::take(&mut first).then(|| reply.to_vec())
        });
        assert!(child.wait().unwrap().success());
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ERROR"));
    }
    assert!(s.log_lines().iter().all(|l| level(l) == "CRITICAL"));
}

/// Asterisk sends a local AGI program SIGHUP when the caller hangs up (design.md §3a,
/// capture D1): the check goes on and the alert is written.
#[test]
fn sighup_does_not_stop_the_check() {
    let s = Sandbox::new();
    let mut scan = ordinary();
    scan.exten = b"100".to_vec();
    let mut child = s.spawn_agi();
    let pid = child.id().to_string();
    let (stdin, stdout) = pipes(&mut child);
    let mut hung_up = false;
    let ex = serve(stdin, stdout, &Block::pjsip().bytes(&scan), |c| {
        if !std::mem::replace(&mut hung_up, true) {
            assert!(
                Command::new("kill")
                    .args(["-HUP", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(reply_to(c, &scan))
    });
    assert!(child.wait().unwrap().success());
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
    assert_eq!(level(&s.log_lines()[0]), "ERROR");
}
