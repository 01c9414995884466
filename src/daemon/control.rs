//! The control socket: how `extsecurity unban` makes the running daemon forget an
//! address. A Unix socket, mode 0600, owned by the daemon's user: only that user and
//! root can open it (FastAGI's port is open to every local user; this is not).
//!
//! One request a connection, one line each way: `forget ADDR` → `forgotten ADDR` (or
//! `unknown ADDR` when the per-call memory did not hold it), `error …` otherwise.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use crate::daemon::Shared;

/// A request longer than this is not ours.
const MAX_REQUEST: u64 = 256;

/// Binds `path` (a stale socket from a crashed run is replaced) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>) {
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
                _ => "error no request\n".to_string(),
            };
            let _ = write.write_all(answer.as_bytes()).await;
        });
    }
}

fn answer(shared: &Shared, request: &str) -> String {
    let Some(arg) = request.strip_prefix("forget ") else {
        return "error unknown request\n".into();
    };
    let Ok(ip) = arg.parse::<IpAddr>() else {
        return format!("error not an address: {arg:?}\n");
    };
    let ip = ip.to_canonical();
    let known = shared.forget(ip);
    tracing::info!(%ip, known, "unban: forgotten by the rules with memory");
    match known {
        true => format!("forgotten {ip}\n"),
        false => format!("unknown {ip}\n"),
    }
}
