//! Reading the alert log back: [`parse`] reads a line by its fixed layout —
//! `DATE TIME LEVEL [ip=ADDR] reason=CODE …` — and only the fields before the first
//! caller value, which the writer escapes, so a value can never pose as a field; and
//! the files of a log: its rotations, compressed or not, and logrotate's `.backup`s.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A line longer than this is not one of ours; it is counted and skipped.
const MAX_LINE: usize = 64 * 1024;

/// Calls `f` with each line of `input` (without its LF), or `None` for a line over
/// [`MAX_LINE`], which is skipped.
pub fn for_each_line(input: impl Read, mut f: impl FnMut(Option<&[u8]>)) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_LINE {
            f(None);
            skip_line(&mut reader)?;
            continue;
        }
        f(Some(line.strip_suffix(b"\n").unwrap_or(&line)));
    }
}

/// A log file, decompressed on the fly when it ends in `.gz`.
pub fn open_log(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

/// [`with_rotations`], and the [`backups`] before the live log: what the reports read.
pub fn with_rotations_and_backups(log_file: &Path) -> Vec<PathBuf> {
    let mut all = with_rotations(log_file);
    let live = all.pop();
    all.extend(backups(log_file));
    all.extend(live);
    all
}

/// The `NAME-YYYYMMDDHH.backup` files logrotate makes when it finds a log at the path
/// before its `create` (a per-call check wrote one there mid-rotation), by name.
pub fn backups(log_file: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log_file.parent(), log_file.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}-", name.to_string_lossy());
    let mut backups: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.starts_with(&prefix) && file.ends_with(".backup")
        })
        .map(|e| e.path())
        .collect();
    backups.sort();
    backups
}

/// `log_file` and what logrotate made of it (`NAME.1`, `NAME.2.gz`, …), oldest first.
pub fn with_rotations(log_file: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log_file.parent(), log_file.file_name()) else {
        return vec![log_file.to_path_buf()];
    };
    let name = name.to_string_lossy();
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(&*name)?.strip_prefix('.')?;
            let n = rest.strip_suffix(".gz").unwrap_or(rest).parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut all: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    all.push(log_file.to_path_buf());
    all
}

/// Skips to just after the next LF; `false` when the input ended first.
pub fn skip_line<R: BufRead + ?Sized>(reader: &mut R) -> io::Result<bool> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        if let Some(i) = memchr::memchr(b'\n', buf) {
            reader.consume(i + 1);
            return Ok(true);
        }
        let n = buf.len();
        reader.consume(n);
    }
}

pub enum Parsed<'a> {
    Call {
        time: &'a str,
        alert: bool,
        ip: &'a str,
        reason: &'a str,
        /// `dest_exten`'s value as written (escaped), without its quotes.
        exten: Option<&'a str>,
    },
    /// An alert that judged no call: an AMI rule's (`… reason=auth_bruteforce tries=6
    /// window_seconds=60 …`) or a ban by hand (`… reason=manual note='…'`).
    Ban {
        time: &'a str,
        ip: &'a str,
        reason: &'a str,
    },
    /// A line of the outbound check (doc/toll-fraud.md, "Toll fraud: the outbound check"): `account='…'` follows the
    /// reason, and `class=` the account for a call.
    Outbound {
        time: &'a str,
        level: &'a str,
        ip: Option<&'a str>,
        reason: &'a str,
        /// As written: quoted and escaped by our writer.
        account: &'a str,
        class: Option<&'a str>,
    },
    Critical {
        time: &'a str,
    },
    /// A line of ours that judged no call and bans no one: a range banned by hand
    /// (`WARNING reason=manual_range net=…`), for the record.
    Note {
        time: &'a str,
        reason: &'a str,
    },
}

impl Parsed<'_> {
    /// The line's local time, as written.
    pub fn time(&self) -> &str {
        match self {
            Parsed::Call { time, .. }
            | Parsed::Ban { time, .. }
            | Parsed::Outbound { time, .. }
            | Parsed::Critical { time }
            | Parsed::Note { time, .. } => time,
        }
    }
}

/// `2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_callerid_num …`, and the
/// outbound check's `LEVEL [ip=ADDR] reason=CODE account='…' [class=CLASS] …`.
pub fn parse(line: &[u8]) -> Option<Parsed<'_>> {
    const TIME: usize = "2026-11-24 19:08:52.123".len();
    let line = std::str::from_utf8(line).ok()?;
    let time = line.get(..TIME)?;
    let b = time.as_bytes();
    let shape = b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.';
    if !shape
        || !time
            .bytes()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19) || c.is_ascii_digit())
    {
        return None;
    }
    let rest = line[TIME..].strip_prefix(' ')?;
    let (level, rest) = rest.split_once(' ')?;
    if level == "CRITICAL" {
        return Some(Parsed::Critical { time });
    }
    if !matches!(level, "ERROR" | "INFO" | "WARNING") {
        return None;
    }
    let (ip, rest) = match rest.strip_prefix("ip=") {
        Some(after) => {
            let (ip, rest) = after.split_once(' ')?;
            (Some(ip), rest)
        }
        None => (None, rest),
    };
    let (reason, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let reason = reason.strip_prefix("reason=")?;
    if reason.is_empty() || ip.is_some_and(str::is_empty) {
        return None;
    }
    if let Some(after) = rest.strip_prefix("account='") {
        // Our writer escapes `'` in a value: the first one closes it.
        let end = after.find('\'')?;
        let class = after[end + 1..]
            .strip_prefix(" class=")
            .map(|c| c.split(' ').next().unwrap_or(c));
        return Some(Parsed::Outbound {
            time,
            level,
            ip,
            reason,
            account: &after[..end],
            class,
        });
    }
    let (Some(ip), "ERROR" | "INFO") = (ip, level) else {
        return match (ip, level) {
            (None, "WARNING") => Some(Parsed::Note { time, reason }),
            _ => None,
        };
    };
    // The AMI rules write what they counted right after the reason, a ban by hand its
    // note; a call's line goes on with its caller values.
    if level == "ERROR"
        && ["names=", "tries=", "requests=", "note="]
            .iter()
            .any(|u| rest.starts_with(u))
    {
        return Some(Parsed::Ban { time, ip, reason });
    }
    // Our writer escapes `'` in a value: the first one after the opening closes it.
    let exten = rest
        .split_once(" dest_exten='")
        .and_then(|(_, after)| after.split_once('\''))
        .map(|(value, _)| value);
    Some(Parsed::Call {
        time,
        alert: level == "ERROR",
        ip,
        reason,
        exten,
    })
}

/// The rule a reason code names: `call_rate(31)` → `call_rate`,
/// `toll_fraud(concurrent)` → `toll_fraud`.
pub fn rule_of(reason: &str) -> &str {
    reason.split('(').next().unwrap_or(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_names_its_rule_without_its_argument() {
        assert_eq!(rule_of("call_rate(31)"), "call_rate");
        assert_eq!(rule_of("toll_fraud(concurrent)"), "toll_fraud");
        assert_eq!(rule_of("user_agent"), "user_agent");
        assert_eq!(rule_of(""), "");
    }

    #[test]
    fn the_chain_is_the_rotations_oldest_first_then_backups_then_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        for name in [
            "a.log",
            "a.log.1",
            "a.log.2.gz",
            "a.log-2026120706.backup",
            "a.log-2026120705.backup",
            "a.log.old",
            "b.log.1",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(with_rotations(&log)),
            ["a.log.2.gz", "a.log.1", "a.log"]
        );
        assert_eq!(
            names(with_rotations_and_backups(&log)),
            [
                "a.log.2.gz",
                "a.log.1",
                "a.log-2026120705.backup",
                "a.log-2026120706.backup",
                "a.log"
            ]
        );
    }
}
