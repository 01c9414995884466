//! The alert log's file: one `write(2)` a line on a file opened with `O_APPEND`
//! (any number of processes at once, no line torn), created 0660 with the folder's
//! group, and the daemon's [`ReopeningLog`], which follows logrotate.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::Line;

/// An open alert log.
#[derive(Debug)]
pub struct AlertLog {
    path: PathBuf,
    file: File,
}

/// What to do about a refused permission: who must be able to write the log.
fn permission_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::PermissionDenied => {
            " (the log must be group asterisk, mode 0660, its folder 2770, and this user in group asterisk: doc/install.md, \"The log folder\")"
        }
        _ => "",
    }
}

/// Why a line could not be written. The message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the alert log {}: the folder {} does not exist", path.display(), folder.display())]
    MissingFolder { path: PathBuf, folder: PathBuf },
    #[error(
        "cannot create the alert log {} in {}: {source}{}",
        path.display(),
        folder.display(),
        permission_hint(.source)
    )]
    CannotCreate {
        path: PathBuf,
        folder: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the alert log {}: {source}{}", path.display(), permission_hint(.source))]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to the alert log {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AlertLog {
    /// Opens `path` for appending, creating it when missing with mode 0660 and the
    /// folder's group, whatever the umask: Asterisk's checks (its own user) and the
    /// daemon (user `extsecurity`, in Asterisk's group) both create and append to it
    /// (doc/install.md, "The log folder"); a file one made that the other could not append to
    /// would lose the other's lines. Callers' data stays out of reach of everyone else.
    ///
    /// A refusal is tried again briefly (logrotate's `create` makes the new log root's
    /// for a moment): what the per-call checks, which open the log once per call, need.
    pub fn open(path: &Path) -> Result<AlertLog, LogError> {
        AlertLog::open_with(path, REFUSED_TRIES)
    }

    /// [`open`](Self::open) without waiting on a refusal: the daemon's log has the
    /// moved file to fall back on, and must not hold its writers up.
    fn open_now(path: &Path) -> Result<AlertLog, LogError> {
        AlertLog::open_with(path, 0)
    }

    fn open_with(path: &Path, refused_tries: u32) -> Result<AlertLog, LogError> {
        let file = open_or_create(path, refused_tries).map_err(|source| match path.parent() {
            Some(folder)
                if source.kind() == io::ErrorKind::NotFound
                    && !folder.as_os_str().is_empty()
                    && !folder.exists() =>
            {
                LogError::MissingFolder {
                    path: path.to_path_buf(),
                    folder: folder.to_path_buf(),
                }
            }
            _ => LogError::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Ok(AlertLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one line with the current time, in a single `write(2)`.
    pub fn write(&mut self, line: &Line) -> Result<(), LogError> {
        self.write_rendered(&line.render(&crate::clock::timestamp_now()))
    }

    /// A short write would leave half a line for the next writer to finish: report it
    /// rather than loop, so that another process's line can never land in the middle.
    pub fn write_rendered(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        let error = |source| LogError::Write {
            path: self.path.clone(),
            source,
        };
        match self.file.write(bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(error(io::Error::other(format!(
                "short write: {n} of {} bytes",
                bytes.len()
            )))),
            Err(e) => Err(error(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the log (or opens it, when another writer created it first), shared with
/// the folder's group as a setgid folder would, mode 0660 past the umask.
/// How often, and how far apart, a refused open is tried again: logrotate's `create`
/// makes the new log and gives it its owner and mode a moment later, and a per-call
/// check that opens it in between was refused and lost its line.
const REFUSED_TRIES: u32 = 20;
const REFUSED_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// Opens the log for appending, creating it when missing; a refusal is tried again up to
/// `refused_tries` times, [`REFUSED_PAUSE`] apart, before it counts.
fn open_or_create(path: &Path, refused_tries: u32) -> io::Result<File> {
    let mut tries = 0;
    loop {
        let opened = match OpenOptions::new().append(true).open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
            other => other,
        };
        match opened {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && tries < refused_tries => {
                tries += 1;
                std::thread::sleep(REFUSED_PAUSE);
            }
            other => return other,
        }
    }
}

fn create(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let file = match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o660)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return OpenOptions::new().append(true).open(path);
        }
        Err(e) => return Err(e),
    };
    let folder = path.parent().filter(|f| !f.as_os_str().is_empty());
    if let Some(gid) = folder.and_then(|f| f.metadata().ok()).map(|m| m.gid()) {
        // Refused unless we are in that group: then the file keeps ours.
        let _ = std::os::unix::fs::fchown(&file, None, Some(gid));
    }
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o660));
    Ok(file)
}

/// Whether the current user can append to `path` (or create it), without creating or
/// writing anything: what `check-config` says before a call finds out.
pub fn check_writable(path: &Path) -> Result<(), LogError> {
    let open_error = |source| LogError::Open {
        path: path.to_path_buf(),
        source,
    };
    match OpenOptions::new().append(true).open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(open_error(e)),
        Err(_) => {}
    }
    let folder = match path.parent() {
        Some(f) if !f.as_os_str().is_empty() => f,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(LogError::MissingFolder {
            path: path.to_path_buf(),
            folder: folder.to_path_buf(),
        });
    }
    can_create_in(folder).map_err(|source| LogError::CannotCreate {
        path: path.to_path_buf(),
        folder: folder.to_path_buf(),
        source,
    })
}

/// Whether the current user may create files in `folder` (write and search), asked
/// of the kernel with the effective ids, as `open(2)` would be.
pub(crate) fn can_create_in(folder: &Path) -> io::Result<()> {
    let c_folder =
        std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(folder.as_os_str()))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: faccessat reads a NUL-terminated path and writes nothing.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_folder.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The daemon's alert log: reopened when asked (SIGHUP, SIGUSR1) and whenever another
/// file is at the path, as after logrotate moved ours away and created the new one,
/// so that no line goes to a rotated or deleted file for long.
///
/// Between logrotate's move and its `create` the path is empty. Creating the log then
/// (logrotate runs at `Nice=19` and can be preempted there for long) made logrotate's
/// `create` fail and move our new file to `…-YYYYMMDDHH.backup`, outside the chain
/// every reader follows, where the next one in the hour replaced it. So while the path
/// is empty and our file was only moved (it still has a name), lines go on to the moved
/// file — the newest rotation, which every reader reads — until SIGUSR1 (logrotate's
/// postrotate), another file at the path, or [`ROTATION_GRACE`]; a file that was
/// deleted (no name left) is replaced at once.
#[derive(Debug, Default)]
pub struct ReopeningLog {
    open: Option<(AlertLog, FileId)>,
    /// Since when the path has been empty while our file lives on under another name.
    moved_since: Option<std::time::Instant>,
    /// Since when the new file at the path could not be opened while ours lives on
    /// under another name (logrotate creates it root's, then gives it its owner).
    refused_since: Option<std::time::Instant>,
    /// [`ROTATION_GRACE`], shorter in tests.
    grace: Option<std::time::Duration>,
}

/// How long lines follow a moved log whose path stays empty (a logrotate that died
/// between its move and its `create`) before the log is created again.
pub const ROTATION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Device and inode: what identifies the file behind a path.
pub type FileId = (u64, u64);

fn file_id(meta: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

impl ReopeningLog {
    /// A log that waits `grace` for a rotation to finish (tests).
    pub fn with_grace(grace: std::time::Duration) -> ReopeningLog {
        ReopeningLog {
            grace: Some(grace),
            ..ReopeningLog::default()
        }
    }

    /// Closes the file; the next write opens `path` afresh.
    pub fn reopen(&mut self) {
        self.open = None;
        self.moved_since = None;
        self.refused_since = None;
    }

    /// Writes one line to `path`, reopening first if the open file is not at `path`.
    pub fn write(&mut self, path: &Path, line: &Line) -> Result<(), LogError> {
        let rendered = line.render(&crate::clock::timestamp_now());
        self.write_rendered(path, &rendered, identify(path))
    }

    /// Writes a rendered line to `path`, whose file was `current` (from [`identify`])
    /// just before. The daemon renders and looks at the path before it takes the lock
    /// around this, so that its workers queue only for the `write(2)` itself.
    pub fn write_rendered(
        &mut self,
        path: &Path,
        rendered: &[u8],
        current: Option<FileId>,
    ) -> Result<(), LogError> {
        if self.stale(path, current) {
            match AlertLog::open_now(path) {
                Ok(log) => {
                    let id = log.file.metadata().map(|m| file_id(&m)).unwrap_or_default();
                    self.open = Some((log, id));
                    self.moved_since = None;
                    self.refused_since = None;
                }
                // logrotate's `create` makes the new log and then gives it its owner
                // and mode: for that moment only root may open it. The line goes on
                // to the moved file, which every reader reads, and the next one tries
                // the new file again — for the grace at most.
                Err(e) if self.may_stay_on_moved_file() => {
                    tracing::debug!(
                        "alert log: the new file is not ours yet ({e}): this line goes to the moved one"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let (log, _) = self.open.as_mut().expect("opened above");
        log.write_rendered(rendered)
    }

    /// Whether the open file, moved away by a rotation, may take a line while the new
    /// file at the path cannot be opened yet.
    fn may_stay_on_moved_file(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some((log, _)) = &self.open else {
            return false;
        };
        let moved = log.file.metadata().is_ok_and(|m| m.nlink() > 0);
        let since = *self
            .refused_since
            .get_or_insert_with(std::time::Instant::now);
        moved && since.elapsed() < self.grace.unwrap_or(ROTATION_GRACE)
    }

    /// Whether `path` must be opened before the next line.
    fn stale(&mut self, path: &Path, current: Option<FileId>) -> bool {
        let Some((log, id)) = &self.open else {
            return true;
        };
        if log.path() != path {
            return true;
        }
        match current {
            Some(now) => now != *id,
            // Empty path: a rotation under way if our file still has a name.
            None => {
                use std::os::unix::fs::MetadataExt;
                let moved = log.file.metadata().is_ok_and(|m| m.nlink() > 0);
                let since = *self.moved_since.get_or_insert_with(std::time::Instant::now);
                !moved || since.elapsed() >= self.grace.unwrap_or(ROTATION_GRACE)
            }
        }
    }
}

/// The file now at `path`, if any: what [`ReopeningLog::write_rendered`] compares with
/// the one it has open.
pub fn identify(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| file_id(&m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writability_is_checked_without_creating_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        check_writable(&path).unwrap();
        assert!(!path.exists(), "nothing created");
        std::fs::write(&path, "").unwrap();
        check_writable(&path).unwrap();
        let e = check_writable(&dir.path().join("no/a.log")).unwrap_err();
        assert!(matches!(e, LogError::MissingFolder { .. }), "{e}");
    }

    #[test]
    fn a_missing_folder_is_named() {
        let e = AlertLog::open(Path::new("/nonexistent-extsec/a.log")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot open the alert log /nonexistent-extsec/a.log: the folder /nonexistent-extsec does not exist"
        );
    }

    /// Issue 27: between logrotate's move and its `create`, a line used to create the
    /// log, which logrotate then moved to a `.backup` outside the chain. It goes to the
    /// moved file instead; a deleted log is made again at once; a rotation that never
    /// finishes is given up on after the grace.
    #[test]
    fn lines_follow_a_moved_log_until_the_rotation_makes_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let rotated = dir.path().join("a.log.1");
        let mut log = ReopeningLog::with_grace(Duration::from_millis(300));
        let line = |n: u32| format!("line {n}\n").into_bytes();
        log.write_rendered(&path, &line(1), identify(&path))
            .unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        log.write_rendered(&path, &line(2), identify(&path))
            .unwrap();
        assert!(
            !path.exists(),
            "not created while the rotation is under way"
        );
        // logrotate's create: the next line goes there.
        std::fs::write(&path, "").unwrap();
        log.write_rendered(&path, &line(3), identify(&path))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "line 1\nline 2\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 3\n");
        // Deleted, not moved: made again at once.
        std::fs::remove_file(&path).unwrap();
        log.write_rendered(&path, &line(4), identify(&path))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 4\n");
        // Moved and never replaced: after the grace, the log is made again.
        std::fs::rename(&path, dir.path().join("a.log.2")).unwrap();
        log.write_rendered(&path, &line(5), identify(&path))
            .unwrap();
        assert!(!path.exists());
        std::thread::sleep(Duration::from_millis(350));
        log.write_rendered(&path, &line(6), identify(&path))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 6\n");
        // SIGUSR1 after a move: the path is opened afresh (made when empty).
        std::fs::rename(&path, dir.path().join("a.log.3")).unwrap();
        log.reopen();
        log.write_rendered(&path, &line(7), identify(&path))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 7\n");
    }

    /// A new log at the path that cannot be opened yet (logrotate's `create` makes it
    /// root's and gives it its owner a moment later: the daemon's user was refused and
    /// a line lost, once in a run under load): the line goes to the moved file, the
    /// next one to the new file once it opens; refused past the grace, the error is
    /// said. (Tests run as root, whom no mode refuses: a folder stands in for the
    /// file that cannot be opened.)
    #[test]
    fn a_new_log_not_ours_yet_leaves_the_line_in_the_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let rotated = dir.path().join("a.log.1");
        let mut log = ReopeningLog::with_grace(Duration::from_millis(300));
        let line = |n: u32| format!("line {n}\n").into_bytes();
        log.write_rendered(&path, &line(1), identify(&path))
            .unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::create_dir(&path).unwrap();
        log.write_rendered(&path, &line(2), identify(&path))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "line 1\nline 2\n"
        );
        // The new file becomes what it should be: the next line goes there.
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        log.write_rendered(&path, &line(3), identify(&path))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 3\n");
        // Never fit to open: after the grace, the error is said, not hidden.
        std::fs::rename(&path, dir.path().join("a.log.2")).unwrap();
        std::fs::create_dir(&path).unwrap();
        log.write_rendered(&path, &line(4), identify(&path))
            .unwrap();
        std::thread::sleep(Duration::from_millis(350));
        assert!(
            log.write_rendered(&path, &line(5), identify(&path))
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.2")).unwrap(),
            "line 3\nline 4\n"
        );
    }

    /// Issue 27: a permission error names the group and modes that fix it.
    #[test]
    fn a_refused_permission_says_what_the_log_needs() {
        let denied = LogError::Open {
            path: "/var/log/asterisk/inbound_extsecurity.log".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let said = denied.to_string();
        assert!(
            said.contains("group asterisk, mode 0660, its folder 2770"),
            "{said}"
        );
        let other = LogError::Open {
            path: "/x.log".into(),
            source: io::Error::from(io::ErrorKind::IsADirectory),
        };
        assert!(!other.to_string().contains("group asterisk"));
    }

    #[test]
    fn the_reopening_log_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let line = Line::bad_request("x", b"");
        let mut log = ReopeningLog::default();
        log.write(&path, &line).unwrap();
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        // logrotate's create, then a line: it goes to the new file.
        std::fs::write(&path, "").unwrap();
        log.write(&path, &line).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.1"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        log.reopen();
        log.write(&path, &line).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn new_logs_are_created_0660_with_the_folders_group_and_appended() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = AlertLog::open(&path).unwrap();
        log.write_rendered(b"one\n").unwrap();
        AlertLog::open(&path)
            .unwrap()
            .write_rendered(b"two\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o660,
            "whatever the umask"
        );
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.gid(), dir.path().metadata().unwrap().gid());
    }
}
