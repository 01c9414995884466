//! `extsecurity report` against `fail2ban-regex` with our filter, on the same log, side
//! by side in one run (issue: ship it).
//!
//!     cargo bench --bench report_vs_fail2ban            # a 1 GiB log
//!     SIZE_MB=100 cargo bench --bench report_vs_fail2ban
//!
//! The log is written by the real formatter (`alert_log::Line`): a mix of accepted
//! calls and alerts from 50,000 addresses over a day, 1 alert in 5. Each tool reads
//! the whole file once; lines/s is lines in the file over wall time.

use std::io::{BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use extsecurity::call::Call;
use extsecurity::check::call_line;
use extsecurity::rules::{Reason, Verdict};

fn main() {
    let size_mb: u64 = std::env::var("SIZE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "--bin", "extsecurity"])
            .current_dir(root)
            .status()
            .unwrap()
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("inbound_extsecurity.log");
    let lines = write_log(&log, size_mb * 1024 * 1024);
    println!(
        "log: {} MiB, {lines} lines, written by the real formatter",
        size_mb
    );

    let time = |name: &str, command: &mut Command| {
        let start = Instant::now();
        let status = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{name} failed");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name:<44} {secs:>8.2} s  {:>12.0} lines/s",
            lines as f64 / secs
        );
        lines as f64 / secs
    };
    let ours = time(
        "extsecurity report --json",
        Command::new(format!("{root}/target/release/extsecurity"))
            .arg("report")
            .arg("--json")
            .arg(&log),
    );
    let theirs = time(
        "fail2ban-regex (dist/fail2ban/filter.d)",
        Command::new("fail2ban-regex")
            .arg(&log)
            .arg(format!("{root}/dist/fail2ban/filter.d/extsecurity.conf"))
            .arg("--print-no-missed"),
    );
    println!(
        "ratio: extsecurity report reads {:.1}x the lines/s of fail2ban-regex",
        ours / theirs
    );
}

/// Writes about `bytes` of log; returns the number of lines.
fn write_log(path: &std::path::Path, bytes: u64) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let (mut written, mut lines) = (0u64, 0u64);
    let reasons = [
        Reason::ExtensionBanned,
        Reason::WrongCalleridNum,
        Reason::BlockedUserAgent,
        Reason::WrongExtenMinLength(10),
    ];
    while written < bytes {
        let n = lines;
        let ip = std::net::Ipv4Addr::from(0xcb00_7100u32 + (n % 50_000) as u32);
        let call = Call {
            callerid_num: format!("49{:09}", n % 1_000_000_000).into_bytes(),
            callerid_name: b"Alice Example".to_vec(),
            exten: format!("4915{:09}", n % 999_999_999).into_bytes(),
            user_agent: b"Yealink SIP-T46S 66.86.0.15".to_vec(),
            peer_name: b"guest".to_vec(),
            ..Call::new(ip.into())
        };
        let verdict = if n % 5 == 0 {
            Verdict::Alert(reasons[(n / 5 % 4) as usize].clone())
        } else {
            Verdict::Ok
        };
        let second = n * 86_400 / (bytes / 200).max(1);
        let stamp = format!(
            "2026-11-24 {:02}:{:02}:{:02}.{:03}",
            (second / 3600) % 24,
            (second / 60) % 60,
            second % 60,
            n % 1000
        );
        let rendered = call_line(&verdict, &call).render(&stamp);
        out.write_all(&rendered).unwrap();
        written += rendered.len() as u64;
        lines += 1;
    }
    out.flush().unwrap();
    lines
}
