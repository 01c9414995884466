//! Rotation without loss: the shipped `dist/logrotate/extsecurity`, run with the real
//! `logrotate -f` on a private state file (only the log's path is rewritten), while 50
//! writers append: System()-mode processes, and FastAGI calls to the daemon. Every
//! line written is found whole in the log or one of its rotations.

mod common;

use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::agi_peer::{Block, reply_to, serve};
use common::asterisk::Channel;
use common::{Sandbox, ServeProcess, level, repo};

const WRITERS: usize = 50;
/// Calls per writer.
const PER_WRITER: usize = 30;

/// The two tests run one at a time: together they put 100 writers on 2 cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The shipped logrotate file with the log's path pointed into the sandbox.
fn logrotate_conf(s: &Sandbox) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(repo().join("dist/logrotate/extsecurity")).unwrap();
    let default = "/var/log/asterisk/inbound_extsecurity.log";
    assert_eq!(shipped.matches(default).count(), 1);
    let path = s.dir.path().join("logrotate.conf");
    std::fs::write(&path, shipped.replace(default, s.log.to_str().unwrap())).unwrap();
    path
}

fn rotate(s: &Sandbox, conf: &std::path::Path) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(s.dir.path().join("logrotate.state"))
        .arg(conf)
        .output()
        .expect("logrotate must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every line in the log and its rotations, compressed ones included.
fn all_lines(s: &Sandbox) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("inbound_extsecurity.log") {
            continue;
        }
        let text = if name.ends_with(".gz") {
            let out = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        } else {
            std::fs::read_to_string(&path).unwrap()
        };
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// Each writer tags its lines with its number and a sequence in the extension.
fn check_every_line_is_there(s: &Sandbox, per_writer: usize, rotations: usize) {
    let lines = all_lines(s);
    let files = std::fs::read_dir(s.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("inbound_extsecurity.log.")
        })
        .count();
    assert!(
        files >= 1 && rotations >= 1,
        "the log was rotated ({files} rotated files)"
    );
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        assert_eq!(level(line), "INFO", "whole line: {line}");
        assert!(
            line.ends_with("user_agent='Yealink SIP-T46S'"),
            "whole line: {line}"
        );
        let exten = line
            .split("dest_exten='")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap();
        assert!(seen.insert(exten.to_string()), "line twice: {line}");
    }
    assert_eq!(lines.len(), WRITERS * per_writer, "no line lost");
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn exten(writer: usize, seq: usize) -> String {
    format!("49{writer:03}{seq:08}")
}

#[test]
fn system_mode_writers_lose_no_line_across_rotations() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Arc::new(Sandbox::new());
    let conf = logrotate_conf(&s);
    let per_writer = PER_WRITER;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                for seq in 0..per_writer {
                    let out = s
                        .command()
                        .args([
                            "check",
                            "--ip=203.0.113.5",
                            "--callerid-num-b64=NTU1MTIzNA==",
                        ])
                        .arg(format!("--exten-b64={}", b64(&exten(w, seq))))
                        .arg(format!("--user-agent-b64={}", b64("Yealink SIP-T46S")))
                        .output()
                        .unwrap();
                    assert!(out.status.success());
                }
            })
        })
        .collect();
    let rotations = rotate_while(&s, &conf, &done, writers);
    check_every_line_is_there(&s, per_writer, rotations);
}

#[test]
fn daemon_writers_lose_no_line_across_rotations() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Arc::new(Sandbox::new());
    let conf = logrotate_conf(&s);
    let daemon = ServeProcess::start(&s);
    let port = daemon.port;
    let per_writer = PER_WRITER;
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            std::thread::spawn(move || {
                for seq in 0..per_writer {
                    // Distinct callers, so that the rules with memory stay quiet.
                    let ip = format!("10.1.{w}.{}", seq + 1);
                    let channel = Channel {
                        exten: exten(w, seq).into_bytes(),
                        ..Channel::ordinary(&ip)
                    };
                    let block = Block {
                        network_script: Some("check".into()),
                        ..Block::pjsip()
                    };
                    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let reader = stream.try_clone().unwrap();
                    let ex = serve(stream, reader, &block.bytes(&channel), |c| {
                        Some(reply_to(c, &channel))
                    });
                    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("OK"));
                }
            })
        })
        .collect();
    let rotations = rotate_while(&s, &conf, &done, writers);
    drop(daemon);
    check_every_line_is_there(&s, per_writer, rotations);
}

/// Rotates every second until the writers are done, at most 6 times (the shipped file
/// keeps 8 rotations: more would delete lines on purpose); returns how many ran.
///
/// Real rotations are days apart. A line can only be lost if a writer holds the file
/// from before one rotation until after the next compresses it; with 50 processes on
/// 2 cores a writer can wait hundreds of milliseconds for the CPU (a run rotating every
/// 100 ms lost 11 of 1,000 lines, one every 300 ms 2 of 1,000), so rotations that fast
/// test a race no logrotate schedule produces.
fn rotate_while(
    s: &Sandbox,
    conf: &std::path::Path,
    done: &AtomicBool,
    writers: Vec<std::thread::JoinHandle<()>>,
) -> usize {
    let mut rotations = 0;
    let finished = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1000));
            if s.log.exists() && rotations < 6 {
                rotate(s, conf);
                rotations += 1;
            }
        }
        waiter.join().is_ok()
    });
    assert!(finished);
    let _ = std::io::stdout().flush();
    rotations
}
