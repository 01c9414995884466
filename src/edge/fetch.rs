//! A feed fetched and kept: a conditional GET (ETag, Last-Modified) so an unchanged list
//! costs its server nothing, and the last good copy on disk beside what we knew of it,
//! so a restart or an outage of the feed's server keeps the list in force.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::feed::MAX_BYTES;

/// How long one fetch may take, all of it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What we know of a feed's last good copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the copy on disk arrived, Unix seconds.
    pub fetched: u64,
}

/// What the server said.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the copy we have is current.
    Unchanged,
    /// A new body, with what to send next time.
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Asks for `url`, conditionally on `known`. A status other than 200 and 304 is an
/// error, body unread. `file:///` reads a file kept by hand.
pub fn fetch(url: &str, known: Option<&Meta>) -> Result<Fetched, String> {
    if let Some(path) = url.strip_prefix("file://") {
        let body = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        return Ok(Fetched::Body {
            body,
            etag: None,
            last_modified: None,
        });
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("extsecurity/", env!("CARGO_PKG_VERSION")))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(known) = known {
        if let Some(etag) = &known.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &known.last_modified {
            request = request.header("If-Modified-Since", date);
        }
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (etag, last_modified) = (header("etag"), header("last-modified"));
    match response.status().as_u16() {
        304 => Ok(Fetched::Unchanged),
        200 => {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_BYTES as u64 + 1)
                .read_to_vec()
                .map_err(|e| format!("reading the body: {e}"))?;
            Ok(Fetched::Body {
                body,
                etag,
                last_modified,
            })
        }
        status => Err(format!("HTTP {status}")),
    }
}

/// The country database in `path`, read whole (a few MiB) and checked.
pub fn open_db(path: &Path) -> Result<super::country::Db, super::country::DbError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| super::country::DbError::Read(name.clone(), e))?;
    super::country::Db::from_bytes(bytes, name)
}

/// Where a feed's copy and its [`Meta`] live in `dir`: a name readable by whoever
/// lists the folder, and a hash that keeps two feeds of one host apart.
pub fn paths(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    let readable: String = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("file://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let hash = fnv(url.as_bytes());
    let stem = format!("{readable}-{hash:08x}");
    (
        dir.join(format!("{stem}.list")),
        dir.join(format!("{stem}.json")),
    )
}

/// FNV-1a, 32 bits: a stable file name, not a secret.
fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The last good copy of `url` and what we knew of it, if one was kept.
pub fn load(dir: &Path, url: &str) -> Option<(Meta, Vec<u8>)> {
    let (list, meta) = paths(dir, url);
    let meta: Meta = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    let body = std::fs::read(list).ok()?;
    (meta.url == url).then_some((meta, body))
}

/// Keeps a good copy: the body first, then its meta, each written whole and renamed.
pub fn store(dir: &Path, meta: &Meta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (list, meta_path) = paths(dir, &meta.url);
    write_whole(&list, body)?;
    write_whole(
        &meta_path,
        &serde_json::to_vec_pretty(meta).expect("plain data"),
    )
}

/// Keeps what we know of a copy whose body did not change (a 304).
pub fn store_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    let (_, meta_path) = paths(dir, &meta.url);
    write_whole(
        &meta_path,
        &serde_json::to_vec_pretty(meta).expect("plain data"),
    )
}

fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_kept_and_found_by_its_url_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://www.spamhaus.org/drop/drop.txt";
        let meta = Meta {
            url: url.into(),
            etag: Some("\"abc\"".into()),
            last_modified: None,
            fetched: 1_700_000_000,
        };
        store(dir.path(), &meta, b"1.10.16.0/20 ; SBL256894\n").unwrap();
        let (read, body) = load(dir.path(), url).unwrap();
        assert_eq!(read, meta);
        // A 304 moves the date on and keeps the body.
        let later = Meta {
            fetched: 1_700_003_600,
            ..meta.clone()
        };
        store_meta(dir.path(), &later).unwrap();
        assert_eq!(load(dir.path(), url).unwrap().0.fetched, 1_700_003_600);
        assert_eq!(body, b"1.10.16.0/20 ; SBL256894\n");
        assert!(load(dir.path(), "https://www.spamhaus.org/drop/edrop.txt").is_none());
        let (list, _) = paths(dir.path(), url);
        let name = list.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("www.spamhaus.org_drop_drop.txt-") && name.ends_with(".list"),
            "{name}"
        );
        assert_ne!(
            paths(dir.path(), "http://a/b?x=1").0,
            paths(dir.path(), "http://a/b?x=2").0
        );
    }

    #[test]
    fn a_file_url_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.txt");
        std::fs::write(&path, "81.2.69.160\n").unwrap();
        match fetch(&format!("file://{}", path.display()), None).unwrap() {
            Fetched::Body { body, .. } => assert_eq!(body, b"81.2.69.160\n"),
            other => panic!("{other:?}"),
        }
        assert!(
            fetch("file:///nonexistent/x", None)
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
