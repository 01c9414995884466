//! The users of a PBX, for tests that must run as them rather than as root: `asterisk`
//! (what Asterisk's Debian package makes: a system user with a group of its own) and
//! `extsecurity`, made by running the package's own `debian/postinst configure`, which
//! also puts it in Asterisk's group. Root only; elsewhere `None`, and the test skips.

use std::path::Path;
use std::process::Command;
use std::sync::Once;

/// Whether we run as root (and so can make users and become them).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `asterisk` and `extsecurity` if missing; `false` when not root.
pub fn ensure() -> bool {
    static MADE: Once = Once::new();
    if !is_root() {
        return false;
    }
    MADE.call_once(|| {
        if !exists("asterisk") {
            // Debian's asterisk package: adduser --system --group --home /var/lib/asterisk.
            let status = Command::new("adduser")
                .args(["--quiet", "--system", "--group", "--no-create-home"])
                .args(["--home", "/var/lib/asterisk", "asterisk"])
                .status()
                .expect("adduser (Debian's adduser package)");
            assert!(status.success() || exists("asterisk"));
        }
        let postinst = super::repo().join("debian/postinst");
        let status = Command::new("sh")
            .arg(&postinst)
            .arg("configure")
            .status()
            .unwrap();
        assert!(status.success(), "debian/postinst configure");
    });
    true
}

fn exists(user: &str) -> bool {
    Command::new("getent")
        .args(["passwd", user])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `program` run as `user` with the user's own groups (primary and supplementary, as
/// systemd's `User=` and Asterisk's `runuser` give them): `setpriv --init-groups`.
pub fn command_as(user: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid",
        user,
        "--regid",
        &primary_group(user),
        "--init-groups",
    ])
    .arg("--")
    .arg(program);
    c
}

/// The name of `user`'s primary group.
pub fn primary_group(user: &str) -> String {
    let out = Command::new("id").args(["-gn", user]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Gives `path` to `owner:group` with `mode`, as an administrator would (`chown`,
/// `chmod`).
pub fn own(path: &Path, owner: &str, mode: u32) {
    let status = Command::new("chown").arg(owner).arg(path).status().unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A sandbox laid out as the README says a PBX's is: the alert log in a folder owned
/// by `asterisk:asterisk`, mode 2770 (README, "The log folder"); the sandbox itself
/// and its config readable by every user, as `/etc/asterisk` is; `run/` and `state/`
/// owned by `extsecurity`, mode 0700, as the unit's `RuntimeDirectory=` and
/// `StateDirectory=` make them (`@STATE@` in `extra` names `state/`). `None` when not
/// root.
pub fn pbx_sandbox(extra: &str) -> Option<super::Sandbox> {
    if !ensure() {
        return None;
    }
    let mut s = super::Sandbox::with_config(extra);
    let text = std::fs::read_to_string(&s.config).unwrap();
    let (run, state) = (s.dir.path().join("run"), s.dir.path().join("state"));
    for folder in [&run, &state] {
        std::fs::create_dir(folder).unwrap();
        own(folder, "extsecurity:extsecurity", 0o700);
    }
    let text = text
        .replace(
            &format!("{:?}", s.dir.path().join("control.sock")),
            &format!("{:?}", run.join("control.sock")),
        )
        .replace("@STATE@", state.to_str().unwrap());
    std::fs::write(&s.config, text).unwrap();
    let folder = s.dir.path().join("asterisk-log");
    std::fs::create_dir(&folder).unwrap();
    own(&folder, "asterisk:asterisk", 0o2770);
    own(s.dir.path(), "root:root", 0o755);
    let log = folder.join("inbound_extsecurity.log");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let old = format!("log_file = {:?}\n", s.log);
    assert!(text.starts_with(&old));
    std::fs::write(
        &s.config,
        text.replacen(&old, &format!("log_file = {log:?}\n"), 1),
    )
    .unwrap();
    own(&s.config, "root:root", 0o644);
    s.log = log;
    Some(s)
}
