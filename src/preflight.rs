//! What `check-config` checks of the host beside the configuration, as the users who
//! will run things: can Asterisk's user and the daemon's write the alert log, and will
//! fail2ban start at all. Each was a first install's silent failure: a log only root
//! could write (the call judged, no line, no ban), and a stock Debian 12 fail2ban that
//! refuses to start because its `sshd` jail finds no `/var/log/auth.log`.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Asterisk's user, which writes the alert log in System() and AGI modes.
pub const ASTERISK_USER: &str = "asterisk";
/// The daemon's user (the unit's `User=`).
pub const DAEMON_USER: &str = "extsecurity";

/// A user's ids: uid, and every group it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// `user`'s ids, `None` when there is no such user.
pub fn ids_of(user: &str) -> Option<Ids> {
    let name = CString::new(user).ok()?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return None;
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    let mut groups = vec![0 as libc::gid_t; 64];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if rc < 0 { 0 } else { n.max(0) as usize });
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Some(Ids { uid, groups })
}

/// Whether `ids` may write the file at `path`, or create it when it does not exist
/// (write and search on its folder). Root may always.
pub fn may_write(path: &Path, ids: &Ids) -> bool {
    if ids.uid == 0 {
        return true;
    }
    match std::fs::metadata(path) {
        Ok(meta) => allows(&meta, ids, 0o2),
        Err(_) => path
            .parent()
            .and_then(|folder| std::fs::metadata(folder).ok())
            .is_some_and(|meta| allows(&meta, ids, 0o3)),
    }
}

/// The mode's bits `want` (`0o2` write, `0o1` search) for the class `ids` falls in.
fn allows(meta: &std::fs::Metadata, ids: &Ids, want: u32) -> bool {
    let mode = meta.mode();
    let class = match () {
        _ if meta.uid() == ids.uid => mode >> 6,
        _ if ids.groups.contains(&meta.gid()) => mode >> 3,
        _ => mode,
    };
    class & want == want
}

/// What `check-config` says of the alert log for each user that exists: one line each.
pub fn log_writers(log: &Path) -> Vec<(String, bool)> {
    [ASTERISK_USER, DAEMON_USER]
        .into_iter()
        .filter_map(|user| Some((user.to_string(), may_write(log, &ids_of(user)?))))
        .collect()
}

/// Why fail2ban would not start, if it would not: its `sshd` jail enabled, reading
/// files (not the journal), and `auth_log` missing. `etc` is fail2ban's folder.
pub fn fail2ban_sshd_trap(etc: &Path, auth_log: &Path) -> Option<String> {
    if !etc.join("jail.conf").exists() || auth_log.exists() {
        return None;
    }
    let mut enabled = false;
    let mut backend = String::from("auto");
    for file in jail_files(etc) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with(['#', ';']) || line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match (section.as_str(), key) {
                ("sshd", "enabled") => enabled = matches!(value, "true" | "yes" | "1"),
                ("sshd" | "DEFAULT", "backend") if !value.contains("%(") => {
                    backend = value.to_string()
                }
                _ => {}
            }
        }
    }
    (enabled && !backend.starts_with("systemd")).then(|| {
        format!(
            "fail2ban will not start, not even the extsecurity jail: its sshd jail reads {} (no rsyslog here); add `[sshd]` and `backend = systemd` to {}/jail.d/extsecurity.local (or apt install rsyslog)",
            auth_log.display(),
            etc.display()
        )
    })
}

/// fail2ban's jail files in the order it reads them: `jail.conf`, `jail.d/*.conf`,
/// `jail.local`, `jail.d/*.local`.
fn jail_files(etc: &Path) -> Vec<std::path::PathBuf> {
    let in_d = |ext: &str| {
        let mut files: Vec<_> = std::fs::read_dir(etc.join("jail.d"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        files
    };
    let mut files = vec![etc.join("jail.conf")];
    files.extend(in_d("conf"));
    files.push(etc.join("jail.local"));
    files.extend(in_d("local"));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_group_member_writes_a_0660_log_and_a_stranger_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("alerts.log");
        std::fs::write(&log, "").unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o660)).unwrap();
        let meta = std::fs::metadata(&log).unwrap();
        let member = Ids {
            uid: 4242,
            groups: vec![meta.gid()],
        };
        let stranger = Ids {
            uid: 4243,
            groups: vec![4244],
        };
        assert!(may_write(&log, &member));
        assert!(!may_write(&log, &stranger));
        assert!(may_write(
            &log,
            &Ids {
                uid: 0,
                groups: vec![]
            }
        ));
        // Missing: made in the folder, which the member may write (2770).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o2770)).unwrap();
        let missing = dir.path().join("new.log");
        assert!(may_write(&missing, &member));
        assert!(!may_write(&missing, &stranger));
    }

    #[test]
    fn root_and_a_missing_user_are_told_apart() {
        assert_eq!(ids_of("root").map(|i| i.uid), Some(0));
        assert_eq!(ids_of("no-such-user-extsec"), None);
    }

    fn fail2ban_etc(local: Option<&str>) -> tempfile::TempDir {
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            etc.path().join("jail.conf"),
            "[DEFAULT]\nbackend = auto\n[sshd]\nport = ssh\nbackend = %(sshd_backend)s\n",
        )
        .unwrap();
        std::fs::create_dir(etc.path().join("jail.d")).unwrap();
        // Debian 12's own.
        std::fs::write(
            etc.path().join("jail.d/defaults-debian.conf"),
            "[sshd]\nenabled = true\n",
        )
        .unwrap();
        if let Some(local) = local {
            std::fs::write(etc.path().join("jail.d/extsecurity.local"), local).unwrap();
        }
        etc
    }

    #[test]
    fn a_stock_debian_fail2ban_without_auth_log_is_said_not_to_start() {
        let etc = fail2ban_etc(Some("[extsecurity]\nenabled = true\n"));
        let missing = etc.path().join("auth.log");
        let said = fail2ban_sshd_trap(etc.path(), &missing).unwrap();
        assert!(said.contains("backend = systemd"), "{said}");
        // The README's fix, or the sshd jail off, or an auth.log: no word.
        let fixed = fail2ban_etc(Some(
            "[extsecurity]\nenabled = true\n[sshd]\nbackend = systemd\n",
        ));
        assert_eq!(fail2ban_sshd_trap(fixed.path(), &missing), None);
        let off = fail2ban_etc(Some("[sshd]\nenabled = false\n"));
        assert_eq!(fail2ban_sshd_trap(off.path(), &missing), None);
        let log = etc.path().join("jail.conf");
        assert_eq!(fail2ban_sshd_trap(etc.path(), &log), None);
        // No fail2ban at all: nothing to say.
        assert_eq!(
            fail2ban_sshd_trap(Path::new("/nonexistent"), &missing),
            None
        );
    }
}
