//! The control socket: how `extsecurity unban` makes the running daemon forget an
//! address. A Unix socket, mode 0600, owned by the daemon's user: only that user and
//! root can open it (FastAGI's port is open to every local user; this is not).
//!
//! One daemon per socket: [`bind`] takes a lock beside it, so a second `serve` refuses to
//! start instead of deleting the socket and leaving `unban` talking to nobody once it
//! exits.
//!
//! One request a connection, one line each way, in the control protocol
//! ([`crate::control`]): this is its server side.

use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::control::{Answer, MAX_REQUEST, Request};
use crate::daemon::Shared;

/// Why the control socket could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another `extsecurity serve` holds it: starting would take `unban` away from it.
    #[error(
        "another extsecurity serve{} runs with the control socket {}: stop it first (systemctl stop extsecurity), or give this one another daemon.control_socket",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path.display()
    )]
    Taken { path: PathBuf, pid: Option<u32> },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The control socket, held for the daemon's life: a lock file next to it says that
/// this daemon owns it, and the socket file is removed when it ends (if it is still
/// ours).
pub struct Control {
    /// Bound before the async runtime exists; [`serve`] takes it over.
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// Held, not read: the lock lives as long as the descriptor.
    _lock: std::fs::File,
    /// The socket file's inode, to remove only our own at the end.
    ino: u64,
}

impl Drop for Control {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Takes `path`: makes its folder (0700) when missing, locks `path.lock` so that a
/// second daemon cannot take the socket from the first, replaces a stale socket file,
/// and binds it with mode 0600.
pub fn bind(path: &Path) -> Result<Control, ControlError> {
    use std::io::{Read as _, Seek as _, Write as _};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(folder) = path
        .parent()
        .filter(|f| !f.as_os_str().is_empty() && !f.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(io)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let mut lock = match open_lock(&lock_path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            replace_foreign_lock(path, &lock_path, e)?
        }
        opened => opened.map_err(io)?,
    };
    // SAFETY: flock on a descriptor we own; it is released when the file is closed.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        let mut pid = String::new();
        let _ = lock.read_to_string(&mut pid);
        return Err(ControlError::Taken {
            path: path.to_path_buf(),
            pid: pid.trim().parse().ok(),
        });
    }
    // A daemon that holds no lock (an older one) but answers is alive too.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::Taken {
            path: path.to_path_buf(),
            pid: None,
        });
    }
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let ino = std::fs::symlink_metadata(path).map_err(io)?.ino();
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    let _ = writeln!(lock, "{}", std::process::id());
    Ok(Control {
        listener,
        path: path.to_path_buf(),
        _lock: lock,
        ino,
    })
}

fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// A lock we may not open was left by another user: a `serve` run once as root
/// leaves a root-owned `control.sock.lock` in the unit's runtime folder, which
/// disabled the service's control socket ("is it running?" while it ran). Unless a
/// daemon answers on the socket, the lock is stale: it is removed (the folder is
/// ours) and made again.
fn replace_foreign_lock(
    socket: &Path,
    lock: &Path,
    denied: std::io::Error,
) -> Result<std::fs::File, ControlError> {
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(ControlError::Taken {
            path: socket.to_path_buf(),
            pid: None,
        });
    }
    let cannot = |source: std::io::Error| ControlError::Io {
        path: socket.to_path_buf(),
        source: std::io::Error::new(
            source.kind(),
            format!(
                "{denied}; {} is another user's and cannot be replaced ({source}): remove it (rm {}) and restart",
                lock.display(),
                lock.display()
            ),
        ),
    };
    std::fs::remove_file(lock).map_err(cannot)?;
    let opened = open_lock(lock).map_err(cannot)?;
    tracing::info!(
        "control socket: replaced {}, a stale lock another user left (a serve run as root?)",
        lock.display()
    );
    Ok(opened)
}

/// Serves requests until the task is dropped.
pub async fn serve(control: Arc<Control>, shared: Arc<Shared>) {
    let listener = match control
        .listener
        .try_clone()
        .and_then(UnixListener::from_std)
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("control socket off ({e}): extsecurity unban cannot reach this daemon");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(MAX_REQUEST));
            let read = tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line));
            let answer = match read.await {
                Ok(Ok(_)) => answer(&shared, line.trim_end()),
                _ => Answer::Error("no request".into()),
            };
            let _ = write
                .write_all(format!("{}\n", answer.encode()).as_bytes())
                .await;
        });
    }
}

fn answer(shared: &Shared, line: &str) -> Answer {
    match Request::decode(line) {
        Ok(Request::Forget(ip)) => forget(shared, ip),
        Ok(Request::Status) => Answer::Daemon(Box::new(crate::daemon::status::collect(shared))),
        Ok(Request::FraudStatus(account)) => {
            let now = crate::clock::Now::current().unix;
            let status = shared
                .fraud
                .guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .status(account.as_deref(), now);
            Answer::FraudStatus(status)
        }
        Ok(Request::FraudRelease(account)) => release(shared, &account),
        Ok(Request::Version) => Answer::Version(crate::control::VERSION),
        Err(e) => Answer::Error(e),
    }
}

/// Lifts an account's quarantine (`extsecurity fraud release`): saved, notified, said.
fn release(shared: &Shared, account: &str) -> Answer {
    let now = crate::clock::Now::current().unix;
    let released = shared
        .fraud
        .guard
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .release(account, now);
    let Some(was) = released else {
        return Answer::Unknown(account.into());
    };
    if let Some(fraud) = &shared.config().fraud {
        shared.fraud.persist(&fraud.state_file, "a release");
    }
    shared.notify(crate::notify::Event::Released {
        account: account.to_string(),
        quarantined: was.is_some(),
    });
    tracing::info!(
        account,
        quarantined = was.is_some(),
        "fraud: released by extsecurity fraud release: its quarantine lifted, its counters reset"
    );
    Answer::Released(was)
}

fn forget(shared: &Shared, ip: IpAddr) -> Answer {
    let known = shared.forget(ip);
    tracing::info!(%ip, known, "unban: forgotten by the rules with memory");
    match known {
        true => Answer::Forgotten(ip),
        false => Answer::Unknown(ip.to_string()),
    }
}
