//! Secrets (`ami.secret`, `crowdsec.password`, `daemon.secret`): written inline or kept
//! in a file only the daemon's user can read.
//!
//! A secret file is read by the one that needs it — `serve` when it logs in or starts,
//! `crowdsec-check` — never while the configuration is loaded. Asterisk runs `check`
//! and `agi` as its own user, which must not be able to read the daemon's secrets (the
//! README's `chown extsecurity; chmod 0400`): were they read at load, every guest call
//! would pass unjudged with "cannot read ami.secret_file".

use std::fmt;
use std::path::{Path, PathBuf};

/// What a secret must look like, checked when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Goes into a `Key: Value` line of AMI: printable, no CR or LF of its own.
    Printable,
    /// Goes into a FastAGI URL's query: at least 16 of `A-Z a-z 0-9 - . _ ~`.
    UrlSafe,
}

/// A secret as configured: the value itself, or the file that holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The key it was set under, without `_file`: `ami.secret`.
    pub key: &'static str,
    pub source: SecretSource,
    pub shape: Shape,
}

#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(String),
    /// The secret is this file's first line, trimmed.
    File(PathBuf),
}

/// Debug never shows the value.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            SecretSource::Inline(_) => write!(f, "{} (inline)", self.key),
            SecretSource::File(p) => write!(f, "{}_file {}", self.key, p.display()),
        }
    }
}

/// Why a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{key}_file {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{where_}: {why}")]
    Shape { where_: String, why: String },
}

impl SecretError {
    /// Whether only the permissions of the current user stood in the way.
    pub fn is_permission(&self) -> bool {
        matches!(self, SecretError::Read { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied)
    }
}

impl Secret {
    pub fn inline(key: &'static str, value: &str, shape: Shape) -> Secret {
        Secret {
            key,
            source: SecretSource::Inline(value.to_string()),
            shape,
        }
    }

    pub fn file(key: &'static str, path: &Path, shape: Shape) -> Secret {
        Secret {
            key,
            source: SecretSource::File(path.to_path_buf()),
            shape,
        }
    }

    /// The file it is read from, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            SecretSource::File(p) => Some(p),
            SecretSource::Inline(_) => None,
        }
    }

    /// The value when it is written inline (or was [`Secret::resolved`]): what a hot
    /// path may compare against without reading a file.
    pub fn inline_value(&self) -> Option<&str> {
        match &self.source {
            SecretSource::Inline(v) => Some(v),
            SecretSource::File(_) => None,
        }
    }

    /// The value: the inline text, or the file's first line read now (as the current
    /// user), checked against its shape.
    pub fn read(&self) -> Result<String, SecretError> {
        let value = match &self.source {
            SecretSource::Inline(v) => v.clone(),
            SecretSource::File(path) => {
                let text = std::fs::read(path).map_err(|source| SecretError::Read {
                    key: self.key,
                    path: path.clone(),
                    source,
                })?;
                let text = String::from_utf8_lossy(&text);
                text.lines().next().unwrap_or("").trim().to_string()
            }
        };
        self.shape.check(&value).map_err(|why| SecretError::Shape {
            where_: format!("{self:?}"),
            why,
        })?;
        Ok(value)
    }

    /// The same secret with a file's content read now: `serve` does this once for the
    /// FastAGI key, which every call compares against.
    pub fn resolved(&self) -> Result<Secret, SecretError> {
        Ok(Secret {
            source: SecretSource::Inline(self.read()?),
            ..self.clone()
        })
    }
}

impl Shape {
    /// Why `value` cannot be used, if it cannot.
    pub fn check(self, value: &str) -> Result<(), String> {
        match self {
            Shape::Printable if value.is_empty() || value.chars().any(char::is_control) => {
                Err("the secret must be printable and not empty".into())
            }
            Shape::UrlSafe
                if value.len() < 16
                    || !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) =>
            {
                Err("the secret must be at least 16 characters of A-Z a-z 0-9 - . _ ~".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_secret_is_read_when_asked_and_checked_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let secret = Secret::file("ami.secret", &path, Shape::Printable);
        let e = secret.read().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("ami.secret_file {}: No such file", path.display())),
            "{e}"
        );
        assert!(!e.is_permission());
        std::fs::write(&path, "  s3cret \nsecond line\n").unwrap();
        assert_eq!(secret.read().unwrap(), "s3cret");
        assert_eq!(secret.resolved().unwrap().inline_value(), Some("s3cret"));
        std::fs::write(&path, "short\n").unwrap();
        let key = Secret::file("daemon.secret", &path, Shape::UrlSafe);
        assert!(
            key.read()
                .unwrap_err()
                .to_string()
                .contains("at least 16 characters"),
        );
        assert!(!format!("{:?}", Secret::inline("x", "pw", Shape::Printable)).contains("pw"));
    }
}
