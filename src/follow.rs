//! Following a log the way `tail -F`, fail2ban and CrowdSec's file acquisition do —
//! across logrotate's moves — from a position that survives a restart. The CrowdSec
//! pusher's durable queue is the alert log read this way (design.md §3c).
//!
//! A [`Position`] names a file by device, inode *and* the start of its first line (an
//! inode is reused once its file is deleted) plus a byte offset just after a complete
//! line. Only complete lines are returned: a line is read once its LF is there, so a
//! writer caught half-way (another process's `write(2)` in progress) is read later,
//! whole.
//!
//! Rotation: at the end of the open file, if the path now names another file, the old
//! one is still read for [`ROTATION_GRACE`] (a writer that opened it just before the
//! move appends its line there, which `dist/logrotate`'s delaycompress allows for),
//! then the follower moves to the file logrotate made next. The open descriptor keeps
//! a moved, even a deleted, file readable to its end.
//!
//! Compressed rotations are read too. A follower that lags — the LAPI down for days,
//! the daemon stopped through several rotations — finds the files that follow its own
//! already compressed (`NAME.2.gz`): a `.gz` file is known by its first line, since
//! compressing it gave it a new inode, and read decompressed from its start (or from a
//! saved offset, counted in decompressed bytes) to its end, then the next.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::alert_log::{backups, open_log, skip_line, with_rotations};

/// A longer line is not one of ours: skipped whole.
pub const MAX_LINE: usize = 64 * 1024;
/// How many bytes of a file's first line identify it (with its inode).
const HEAD_BYTES: usize = 64;
/// How long a moved file is still read after the path names a new one.
pub const ROTATION_GRACE: Duration = Duration::from_millis(500);

/// Where reading stopped: a file (device, inode, first bytes) and an offset in it
/// (in decompressed bytes for a `.gz` file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    /// The first line's first bytes (empty while the file was empty).
    pub head: String,
    pub offset: u64,
}

/// A reader of complete lines of `path` and the files logrotate moves it to.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    open: Option<Open>,
    /// When the path was first seen naming another file than the open one.
    moved_at: Option<Instant>,
    /// How long a moved file is still read ([`ROTATION_GRACE`] while writers run).
    grace: Duration,
}

#[derive(Debug)]
struct Open {
    reader: Reader,
    dev: u64,
    ino: u64,
    head: String,
    offset: u64,
}

/// How a file is read: as it is, or decompressed.
enum Reader {
    Plain(BufReader<File>),
    /// A rotation logrotate compressed: complete, never written again.
    Gz(BufReader<Box<dyn Read + Send>>),
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reader::Plain(_) => "Plain",
            Reader::Gz(_) => "Gz",
        })
    }
}

impl Reader {
    fn lines(&mut self) -> &mut dyn BufRead {
        match self {
            Reader::Plain(r) => r,
            Reader::Gz(r) => r,
        }
    }
}

impl Open {
    fn new(file: File, offset: u64) -> io::Result<Open> {
        let meta = file.metadata()?;
        let head = head_of(&file)?;
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(offset))?;
        Ok(Open {
            reader: Reader::Plain(reader),
            dev: meta.dev(),
            ino: meta.ino(),
            head,
            offset,
        })
    }

    /// A compressed rotation, read decompressed from `offset`.
    fn gz(path: &Path, offset: u64) -> io::Result<Open> {
        let meta = std::fs::metadata(path)?;
        let head = gz_head(path)?;
        let mut reader = BufReader::with_capacity(64 * 1024, open_log(path)?);
        let skipped = io::copy(&mut (&mut reader).take(offset), &mut io::sink())?;
        Ok(Open {
            reader: Reader::Gz(reader),
            dev: meta.dev(),
            ino: meta.ino(),
            head,
            offset: skipped,
        })
    }

    /// Opens `candidate` as what it is, from `offset`.
    fn of(candidate: &Candidate, offset: u64) -> io::Result<Open> {
        match candidate.compressed {
            true => Open::gz(&candidate.path, offset),
            false => Open::new(File::open(&candidate.path)?, offset),
        }
    }

    fn is_compressed(&self) -> bool {
        matches!(self.reader, Reader::Gz(_))
    }

    fn is(&self, meta: &std::fs::Metadata) -> bool {
        (meta.dev(), meta.ino()) == (self.dev, self.ino)
    }

    /// Back to `offset` of a file still being written (a line caught half-way).
    fn rewind_to(&mut self, offset: u64) -> io::Result<()> {
        if let Reader::Plain(r) = &mut self.reader {
            r.seek(SeekFrom::Start(offset))?;
            self.offset = offset;
        }
        Ok(())
    }
}

/// The first line's first [`HEAD_BYTES`] bytes, lossily as text.
fn head_of(file: &File) -> io::Result<String> {
    let mut buf = [0u8; HEAD_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            got => n += got,
        }
    }
    Ok(head_text(&buf[..n]))
}

/// The same of a compressed file's decompressed text.
fn gz_head(path: &Path) -> io::Result<String> {
    let mut buf = Vec::with_capacity(HEAD_BYTES);
    open_log(path)?
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut buf)?;
    Ok(head_text(&buf))
}

fn head_text(bytes: &[u8]) -> String {
    let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Follower {
    /// At the end of `path` as it is now: nothing written before is read. A file
    /// created later is read from its start.
    pub fn at_end(path: &Path) -> io::Result<Follower> {
        let open = match File::open(path) {
            Ok(file) => {
                let len = file.metadata()?.len();
                Some(Open::new(file, len)?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Follower {
            path: path.to_path_buf(),
            open,
            moved_at: None,
            grace: ROTATION_GRACE,
        })
    }

    /// At the start of `path` (or of the file created there later).
    pub fn from_start(path: &Path) -> io::Result<Follower> {
        let mut follower = Follower {
            path: path.to_path_buf(),
            open: None,
            moved_at: None,
            grace: ROTATION_GRACE,
        };
        follower.open_if_there()?;
        Ok(follower)
    }

    /// At `pos`, in whichever of `path` and its rotations — compressed ones included —
    /// holds that file. When none does (deleted since), at the start of the first file
    /// begun after it, and the second value says so: the lines written in the gone file
    /// after `pos` are lost, none is skipped that is still on disk.
    ///
    /// A position saved while its file was still empty (no first line to know it by)
    /// names the oldest file whose first line came after `saved_at`, the time it was
    /// saved, and never one by its inode alone: inodes are reused once a rotation is
    /// compressed and its file deleted.
    pub fn resume(
        path: &Path,
        pos: &Position,
        saved_at: Option<jiff::Timestamp>,
    ) -> io::Result<(Follower, Option<String>)> {
        let mut follower = Follower {
            path: path.to_path_buf(),
            open: None,
            moved_at: None,
            grace: ROTATION_GRACE,
        };
        let chain = chain(path);
        if pos.head.is_empty() {
            // Nothing was read of it: its first line, if it has one by now, is in the
            // oldest file begun after the save; still empty, it is the newest file.
            let first = chain
                .iter()
                .find(|c| c.head().is_ok_and(|h| begun_after(&h, saved_at)))
                .or(chain.last());
            if let Some(first) = first {
                follower.open = Some(Open::of(first, 0)?);
            }
            return Ok((follower, None));
        }
        for candidate in &chain {
            if !candidate.holds(pos)? {
                continue;
            }
            // Shorter than the position: truncated in place (copytruncate).
            let offset = match candidate.compressed || candidate.meta.len() >= pos.offset {
                true => pos.offset,
                false => 0,
            };
            follower.open = Some(Open::of(candidate, offset)?);
            return Ok((follower, None));
        }
        let later = chain.iter().find(|c| c.head().is_ok_and(|h| h > pos.head));
        let Some(next) = later.or(chain.last()) else {
            return Ok((follower, None));
        };
        follower.open = Some(Open::of(next, 0)?);
        let why = format!(
            "the file the saved position points into (first line {:?}) is no longer on \
             disk: the alerts written in it after that position are lost; reading on \
             from the start of {}",
            pos.head,
            next.path.display()
        );
        Ok((follower, Some(why)))
    }

    /// Moves on from a moved file as soon as its end is read: for reading what is on
    /// disk once, with no writer to wait for.
    pub fn without_grace(mut self) -> Follower {
        self.grace = Duration::ZERO;
        self
    }

    /// The position after the last line returned; `None` before any file existed.
    pub fn position(&self) -> Option<Position> {
        let open = self.open.as_ref()?;
        Some(Position {
            dev: open.dev,
            ino: open.ino,
            head: open.head.clone(),
            offset: open.offset,
        })
    }

    /// The first line's start of the file being read (empty before its first line).
    pub fn head(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.head.as_str())
    }

    /// Opens the file at the path if none is open yet (it is read from its start), so
    /// that [`Follower::position`] names it before any line is read.
    pub fn open_if_there(&mut self) -> io::Result<()> {
        if self.open.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.open = Some(Open::new(file, 0)?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Puts the next complete line (without its LF) in `line`; `false` when there is
    /// none yet.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        loop {
            self.open_if_there()?;
            let Some(open) = self.open.as_mut() else {
                return Ok(false);
            };
            line.clear();
            let n = open
                .reader
                .lines()
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', line)?;
            if line.last() == Some(&b'\n') {
                open.offset += n as u64;
                line.pop();
                if open.head.is_empty()
                    && let Reader::Plain(r) = &open.reader
                {
                    open.head = head_of(r.get_ref())?;
                }
                return Ok(true);
            }
            // An overlong line without its LF yet is read again, and skipped, later.
            if n > MAX_LINE && skip_line(open.reader.lines())? {
                open.offset += n as u64;
                if let Reader::Plain(r) = &mut open.reader {
                    open.offset = r.stream_position()?;
                }
                continue;
            }
            match (n, open.is_compressed()) {
                // The cut last line of a finished file: nothing will complete it.
                (n, true) => open.offset += n as u64,
                // A line still being written: read it whole next time.
                (0, false) => {}
                (_, false) => {
                    let at = open.offset;
                    open.rewind_to(at)?;
                }
            }
            if !self.moved_on()? {
                return Ok(false);
            }
        }
    }

    /// At the end of the open file: follows a truncation or a move. Whether there may
    /// be more to read now.
    fn moved_on(&mut self) -> io::Result<bool> {
        let Some(open) = self.open.as_mut() else {
            return Ok(false);
        };
        if !open.is_compressed() {
            if let Ok(meta) = std::fs::metadata(&self.path)
                && open.is(&meta)
            {
                self.moved_at = None;
                if meta.len() < open.offset {
                    // Truncated in place: a new first line will name the file.
                    open.rewind_to(0)?;
                    open.head.clear();
                    return Ok(true);
                }
                return Ok(false);
            }
            let since = *self.moved_at.get_or_insert_with(Instant::now);
            if since.elapsed() < self.grace {
                return Ok(false);
            }
        }
        match next_file(&self.path, open)? {
            Some(next) => {
                self.open = Some(next);
                self.moved_at = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A file of the chain: `path` and its rotations.
struct Candidate {
    path: PathBuf,
    meta: std::fs::Metadata,
    compressed: bool,
}

impl Candidate {
    /// The file at `path`, if it exists.
    fn at(path: PathBuf) -> Option<Candidate> {
        let meta = std::fs::metadata(&path).ok()?;
        let compressed = path.extension().is_some_and(|e| e == "gz");
        Some(Candidate {
            path,
            meta,
            compressed,
        })
    }

    /// Its first line's start (decompressed for a `.gz`).
    fn head(&self) -> io::Result<String> {
        match self.compressed {
            true => gz_head(&self.path),
            false => head_of(&File::open(&self.path)?),
        }
    }

    /// Whether it is the file `pos` (with a first line) names: the same inode and first
    /// line, or, for a compressed one (a new inode), the same first line.
    fn holds(&self, pos: &Position) -> io::Result<bool> {
        let same_inode = (self.meta.dev(), self.meta.ino()) == (pos.dev, pos.ino);
        if !same_inode && !self.compressed {
            return Ok(false);
        }
        Ok(self.head()?.starts_with(&pos.head))
    }

    /// Whether it is the file `open` reads: by inode, or by first line once compressed.
    fn is(&self, open: &Open) -> bool {
        if open.is(&self.meta) {
            return true;
        }
        self.compressed
            && !open.is_compressed()
            && !open.head.is_empty()
            && self.head().is_ok_and(|h| h == open.head)
    }
}

/// Whether a file whose first line starts with `head` was begun at or after `at` (a
/// second's slack for clocks), read from the line's local timestamp. Unknown `at`:
/// any file with a first line will do.
fn begun_after(head: &str, at: Option<jiff::Timestamp>) -> bool {
    let Some(at) = at else {
        return !head.is_empty();
    };
    let Some(civil) = head
        .get(..23)
        .and_then(|t| t.parse::<jiff::civil::DateTime>().ok())
    else {
        return false;
    };
    crate::clock::local_zone()
        .to_timestamp(civil)
        .is_ok_and(|t| t >= at - jiff::SignedDuration::from_secs(1))
}

/// `path` and its rotations that exist, compressed ones included, oldest first, with
/// logrotate's `.backup` files where their lines belong.
fn chain(path: &Path) -> Vec<Candidate> {
    let mut chain: Vec<Candidate> = with_rotations(path)
        .into_iter()
        .filter_map(Candidate::at)
        .collect();
    for backup in backups(path).into_iter().filter_map(Candidate::at) {
        insert_by_head(&mut chain, backup);
    }
    chain
}

/// Puts a `.backup` file before the first file of the chain begun after it — it was the
/// log for the moment between logrotate's move and its `create` — or else before the
/// live log. One without a line is left out: nothing to read.
fn insert_by_head(chain: &mut Vec<Candidate>, backup: Candidate) {
    let Ok(head) = backup.head() else { return };
    if head.is_empty() {
        return;
    }
    let live = chain.len().saturating_sub(1);
    let at = chain
        .iter()
        .position(|c| c.head().is_ok_and(|h| !h.is_empty() && h > head))
        .unwrap_or(live)
        .min(live);
    chain.insert(at, backup);
}

/// The file logrotate made after `open`: the next in the chain if `open` is still in
/// it (by inode, or compressed by its first line), else the oldest one written to since
/// `open` last was (its rotation after it).
fn next_file(path: &Path, open: &Open) -> io::Result<Option<Open>> {
    let chain = chain(path);
    let next = match chain.iter().position(|c| c.is(open)) {
        Some(i) => chain.get(i + 1),
        None => {
            let modified: SystemTime = match &open.reader {
                Reader::Plain(r) => r.get_ref().metadata()?.modified()?,
                Reader::Gz(_) => SystemTime::UNIX_EPOCH,
            };
            chain
                .iter()
                .filter(|c| !c.compressed)
                .find(|c| c.meta.modified().is_ok_and(|t| t >= modified))
        }
    };
    match next {
        Some(c) => match Open::of(c, 0) {
            Ok(open) => Ok(Some(open)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    }
}

/// What the file holds: the log it is about and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub log: PathBuf,
    #[serde(flatten)]
    pub position: Position,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn drain(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        let mut line = Vec::new();
        while f.next_line(&mut line).unwrap() {
            out.push(String::from_utf8(line.clone()).unwrap());
        }
        out
    }

    /// Reads until `n` lines came (a rotation is followed after its grace).
    fn drain_until(f: &mut Follower, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            out.extend(drain(f));
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    }

    #[test]
    fn only_complete_lines_are_read_and_a_new_follower_starts_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "old\n");
        let mut f = Follower::at_end(&log).unwrap();
        assert!(
            drain(&mut f).is_empty(),
            "what was there before is not read"
        );
        append(&log, "one\ntw");
        assert_eq!(drain(&mut f), ["one"]);
        assert_eq!(f.position().unwrap().offset, 8);
        append(&log, "o\n");
        assert_eq!(drain(&mut f), ["two"]);
        assert_eq!(f.position().unwrap().head, "old");
    }

    #[test]
    fn a_log_created_later_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut f = Follower::at_end(&log).unwrap();
        assert!(f.position().is_none());
        assert!(drain(&mut f).is_empty());
        append(&log, "first\n");
        assert_eq!(drain(&mut f), ["first"]);
    }

    #[test]
    fn a_rotation_is_followed_after_the_old_file_is_read_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "a\n");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, "b\n");
        std::fs::rename(&log, dir.path().join("a.log.1")).unwrap();
        append(&log, "d\n");
        // A writer that opened the old file before the move still appends to it.
        append(&dir.path().join("a.log.1"), "c\n");
        assert_eq!(drain_until(&mut f, 3), ["b", "c", "d"]);
    }

    /// logrotate preempted between its move and its `create` while a per-call check
    /// wrote: the check made the log, logrotate renamed that to `.backup` and created
    /// the next one (issue 27, point 6).
    fn rotate_with_backup(dir: &Path, backup_lines: &str, hour: &str) {
        let p = |s: &str| dir.join(s);
        std::fs::rename(p("a.log"), p("a.log.1")).unwrap();
        append(&p("a.log"), backup_lines);
        std::fs::rename(p("a.log"), p(&format!("a.log-{hour}.backup"))).unwrap();
        std::fs::write(p("a.log"), b"").unwrap();
    }

    #[test]
    fn a_backup_made_in_a_rotation_is_read_between_the_old_log_and_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "2026-12-07 09:00:00.000 a0\n");
        let mut f = Follower::at_end(&log).unwrap().without_grace();
        append(&log, "2026-12-07 09:59:59.000 a1\n");
        rotate_with_backup(dir.path(), "2026-12-07 10:00:00.001 b1\n", "2026120710");
        append(&log, "2026-12-07 10:00:00.050 c1\n");
        assert_eq!(
            drain(&mut f),
            [
                "2026-12-07 09:59:59.000 a1",
                "2026-12-07 10:00:00.001 b1",
                "2026-12-07 10:00:00.050 c1"
            ]
        );
        // A follower resumed inside the backup goes on from there.
        append(
            &dir.path().join("a.log-2026120710.backup"),
            "2026-12-07 10:00:00.002 b2\n",
        );
        let backup = std::fs::File::open(dir.path().join("a.log-2026120710.backup")).unwrap();
        let meta = backup.metadata().unwrap();
        let pos = Position {
            dev: meta.dev(),
            ino: meta.ino(),
            head: "2026-12-07 10:00:00.001 b1".into(),
            offset: 27,
        };
        let (g, lost) = Follower::resume(&log, &pos, None).unwrap();
        assert_eq!(lost, None);
        assert_eq!(
            drain(&mut g.without_grace()),
            ["2026-12-07 10:00:00.002 b2", "2026-12-07 10:00:00.050 c1"]
        );
    }

    #[test]
    fn an_old_backup_is_not_read_again_at_the_next_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "2026-12-06 09:00:00.000 a0\n");
        rotate_with_backup(dir.path(), "2026-12-06 10:00:00.001 old\n", "2026120610");
        append(&log, "2026-12-06 10:00:01.000 c0\n");
        let mut f = Follower::at_end(&log).unwrap().without_grace();
        append(&log, "2026-12-06 23:00:00.000 c1\n");
        // The next day's rotation, with a backup of its own.
        std::fs::rename(dir.path().join("a.log.1"), dir.path().join("a.log.2")).unwrap();
        rotate_with_backup(dir.path(), "2026-12-07 10:00:00.001 new\n", "2026120710");
        append(&log, "2026-12-07 10:00:00.300 d0\n");
        assert_eq!(
            drain(&mut f),
            [
                "2026-12-06 23:00:00.000 c1",
                "2026-12-07 10:00:00.001 new",
                "2026-12-07 10:00:00.300 d0"
            ]
        );
    }

    #[test]
    fn rotations_made_while_it_lagged_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "a\n");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, "b\n");
        // Two rotations before the follower reads again; the oldest was compressed
        // (its inode is gone but the follower holds it open).
        let p = |s: &str| dir.path().join(s);
        std::fs::rename(&log, p("a.log.1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        append(&log, "c\n");
        std::fs::rename(p("a.log.1"), p("a.log.2")).unwrap();
        std::fs::write(p("a.log.2.gz"), b"").unwrap();
        std::fs::remove_file(p("a.log.2")).unwrap();
        std::fs::rename(&log, p("a.log.1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        append(&log, "d\n");
        assert_eq!(drain_until(&mut f, 3), ["b", "c", "d"]);
    }

    #[test]
    fn a_copytruncate_starts_the_file_over() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, "aaaa\nbbbb\n");
        assert_eq!(drain(&mut f).len(), 2);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, "c\n");
        assert_eq!(drain(&mut f), ["c"]);
        assert_eq!(
            f.position().unwrap().head,
            "c",
            "the new first line names it"
        );
    }

    #[test]
    fn an_overlong_line_is_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, &format!("{}\nnext\n", "x".repeat(MAX_LINE + 10)));
        assert_eq!(drain(&mut f), ["next"]);
    }

    #[test]
    fn a_resumed_follower_finds_its_file_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, "one\ntwo\n");
        let mut line = Vec::new();
        assert!(f.next_line(&mut line).unwrap());
        let pos = f.position().unwrap();
        drop(f);
        std::fs::rename(&log, dir.path().join("a.log.1")).unwrap();
        append(&log, "three\n");
        let (mut f, warning) = Follower::resume(&log, &pos, None).unwrap();
        assert_eq!(warning, None);
        assert_eq!(drain_until(&mut f, 2), ["two", "three"]);
        let (f, _) = Follower::resume(&log, &pos, None).unwrap();
        assert_eq!(
            drain(&mut f.without_grace()),
            ["two", "three"],
            "read once, at once"
        );
    }

    #[test]
    fn a_reused_inode_is_not_taken_for_the_saved_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "one\ntwo\n");
        let meta = std::fs::metadata(&log).unwrap();
        let pos = Position {
            dev: meta.dev(),
            ino: meta.ino(),
            head: "zero".into(),
            offset: 4,
        };
        let (mut f, warning) = Follower::resume(&log, &pos, None).unwrap();
        assert!(warning.unwrap().contains("reading on from the start"));
        assert_eq!(drain(&mut f), ["one", "two"]);
    }

    /// What logrotate with `compress` and `delaycompress` does to `a.log` and its
    /// rotations: each `.N` moves up one, `.2` is compressed with the real gzip.
    fn logrotate(dir: &Path) {
        let p = |s: &str| dir.join(s);
        let mut rotations: Vec<u32> = (1..10)
            .filter(|n| p(&format!("a.log.{n}")).exists() || p(&format!("a.log.{n}.gz")).exists())
            .collect();
        rotations.reverse();
        for n in rotations {
            for ext in ["", ".gz"] {
                let from = p(&format!("a.log.{n}{ext}"));
                if from.exists() {
                    std::fs::rename(&from, p(&format!("a.log.{}{ext}", n + 1))).unwrap();
                }
            }
        }
        std::fs::rename(p("a.log"), p("a.log.1")).unwrap();
        if p("a.log.2").exists() {
            let status = std::process::Command::new("gzip")
                .arg(p("a.log.2"))
                .status()
                .unwrap();
            assert!(status.success());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    #[test]
    fn a_lagging_follower_reads_on_through_compressed_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "2026-12-01 00:00:00.000 a0\n");
        let mut f = Follower::at_end(&log).unwrap();
        append(&log, "2026-12-01 00:00:00.000 a1\n");
        // Three rotations before it reads again: the files after its own are
        // compressed by then (a.log.2.gz, a.log.3.gz), its own is open but deleted.
        for (i, name) in ["b", "c", "d"].iter().enumerate() {
            logrotate(dir.path());
            append(&log, &format!("2026-12-01 00:00:0{}.000 {name}0\n", i + 1));
            append(&log, &format!("2026-12-01 00:00:0{}.000 {name}1\n", i + 1));
        }
        assert!(dir.path().join("a.log.3.gz").exists() && dir.path().join("a.log.2.gz").exists());
        let lines: Vec<String> = drain_until(&mut f, 7)
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(lines, ["a1", "b0", "b1", "c0", "c1", "d0", "d1"]);
    }

    #[test]
    fn a_position_in_a_file_compressed_since_is_found_by_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(
            &log,
            "2026-12-01 00:00:00.000 one\n2026-12-01 00:00:00.500 two\n",
        );
        let mut f = Follower::from_start(&log).unwrap();
        let mut line = Vec::new();
        assert!(f.next_line(&mut line).unwrap());
        let pos = f.position().unwrap();
        drop(f);
        // The daemon stopped; two rotations compressed its file meanwhile.
        logrotate(dir.path());
        append(&log, "2026-12-01 00:00:01.000 three\n");
        logrotate(dir.path());
        append(&log, "2026-12-01 00:00:02.000 four\n");
        assert!(dir.path().join("a.log.2.gz").exists());
        let (f, warning) = Follower::resume(&log, &pos, None).unwrap();
        assert_eq!(warning, None);
        let lines: Vec<String> = drain(&mut f.without_grace())
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(lines, ["two", "three", "four"]);
        // Its saved position's file deleted for good: the next file on, and said.
        std::fs::remove_file(dir.path().join("a.log.2.gz")).unwrap();
        let (f, warning) = Follower::resume(&log, &pos, None).unwrap();
        assert!(warning.unwrap().contains("are lost"));
        assert_eq!(drain(&mut f.without_grace()).len(), 2, "three, four");
    }

    #[test]
    fn a_position_saved_while_its_file_was_empty_is_not_found_by_a_reused_inode() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        append(&log, "");
        let empty = Follower::at_end(&log).unwrap().position().unwrap();
        let saved_at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let line = |t: i64, what: &str| {
            let local = jiff::Timestamp::from_second(t)
                .unwrap()
                .to_zoned_datetime(crate::clock::local_zone());
            format!("{} {what}\n", local.strftime("%Y-%m-%d %H:%M:%S%.3f"))
        };
        // Written after the save, then rotated and compressed: a new file took the
        // path, and in this test the saved file's very inode.
        append(&log, &line(1_800_000_010, "one"));
        logrotate(dir.path());
        append(&log, &line(1_800_000_020, "two"));
        logrotate(dir.path());
        append(&log, &line(1_800_000_030, "three"));
        assert!(dir.path().join("a.log.2.gz").exists());
        let mut reused = empty.clone();
        reused.ino = std::fs::metadata(&log).unwrap().ino();
        let (f, _) = Follower::resume(&log, &reused, Some(saved_at)).unwrap();
        let lines = drain(&mut f.without_grace());
        assert_eq!(
            lines
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["one", "two", "three"],
            "from the oldest file begun after the save, not the one with the inode"
        );
    }

    #[test]
    fn the_position_file_is_replaced_whole() {
        use crate::state_file::StateFile;
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&dir.path().join("pos"));
        assert_eq!(file.load::<Saved>().unwrap(), None);
        file.probe().unwrap();
        assert!(
            StateFile::new(&dir.path().join("no/pos")).probe().is_err(),
            "a missing folder is found before anything needs saving"
        );
        let saved = Saved {
            log: "/var/log/a.log".into(),
            position: Position {
                dev: 1,
                ino: 2,
                head: "2026-12-01 10:00:00.000 ERROR ip=1".into(),
                offset: 99,
            },
        };
        file.save(&saved).unwrap();
        assert_eq!(file.load().unwrap(), Some(saved));
        std::fs::write(file.path(), "{").unwrap();
        assert_eq!(
            file.load::<Saved>().unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
