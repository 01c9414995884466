//! A state kept in a JSON file, replaced whole (write, fsync, rename) so that a crash
//! leaves the old state or the new one, never half of either: the CrowdSec pusher's
//! position in the log, the outbound guard's accounts.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        StateFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the state was last saved (the file's modification time).
    pub fn saved_at(&self) -> Option<jiff::Timestamp> {
        let modified = std::fs::metadata(&self.path).ok()?.modified().ok()?;
        jiff::Timestamp::try_from(modified).ok()
    }

    /// The saved state; `None` when there is no file yet. A file that does not parse
    /// is an error: better to say so than to start over silently.
    pub fn load<T: DeserializeOwned>(&self) -> io::Result<Option<T>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Proves the folder takes the file (before anything needs saving).
    pub fn probe(&self) -> io::Result<()> {
        File::create(self.tmp())?;
        std::fs::remove_file(self.tmp())
    }

    fn tmp(&self) -> PathBuf {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    }

    /// Replaces the file with `state`. Mode 0600, and the owner of the file it
    /// replaces: root editing the daemon's state (`fraud release` with the daemon
    /// down) must leave a file the daemon can still read.
    pub fn save<T: Serialize>(&self, state: &T) -> io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
        let tmp = self.tmp();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Ok(old) = std::fs::metadata(&self.path) {
            // Only root can give a file away; anyone else already owns what it writes.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
        }
        let mut text = serde_json::to_vec(state).map_err(io::Error::other)?;
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        // The rename is on disk only once its folder is: a crash right after must not
        // bring the old file back.
        let folder = match self.path.parent() {
            Some(f) if !f.as_os_str().is_empty() => f,
            _ => std::path::Path::new("."),
        };
        File::open(folder)?.sync_all()
    }
}
