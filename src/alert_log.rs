//! The alert log: the seed's line format, which fail2ban reads, made impossible to forge.
//!
//! `2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_callerid_num callerid_num='abc' …`
//!
//! Two guarantees make it safe to ban on (design.md §5):
//! - every caller value is quoted and escaped to printable ASCII without `'`, `\` or
//!   `=`: no byte a caller sends can end the line, start another, or spell `ip=`;
//! - each line is one `write(2)` to a file opened with `O_APPEND`, so any number of
//!   processes can write at once and no line is torn or lost.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::call::Call;
use crate::rules::Verdict;

/// What ends a line of a request in the seed's JSON form.
pub const LEGACY_MARK: &str = "via=legacy_json";

/// Whether a log line is a request in the seed's JSON form.
pub fn is_legacy(line: &[u8]) -> bool {
    line.strip_suffix(LEGACY_MARK.as_bytes())
        .is_some_and(|rest| rest.ends_with(b" "))
}

/// A caller value longer than this is cut in the log, with its full length noted:
/// it keeps lines short enough to read and to write in one call.
pub const MAX_VALUE_BYTES: usize = 512;
/// The same for the raw request echoed in a `CRITICAL` line.
pub const MAX_REQUEST_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    /// Something the operator should see that bans no one: an outbound call refused by
    /// policy, a limit's warning level, a quarantined account. The fail2ban filter
    /// matches `ERROR` lines only.
    Warning,
    Error,
    Critical,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

/// One log line without its timestamp. Its text never holds a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    text: String,
    /// For an `ERROR` line: the address it bans and the reason code, for sinks other
    /// than the log (CrowdSec) that must not parse the text back.
    alert: Option<(IpAddr, String)>,
}

impl Line {
    /// The line for a judged call: `ERROR` for an alert, `INFO` otherwise.
    pub fn for_call(verdict: &Verdict, call: &Call) -> Line {
        let level = if verdict.is_alert() {
            Level::Error
        } else {
            Level::Info
        };
        let mut text = format!("ip={} reason={}", call.peer_ip, verdict.reason_code());
        for (key, value) in [
            ("callerid_num", &call.callerid_num),
            ("callerid_name", &call.callerid_name),
            ("dest_exten", &call.exten),
            ("peer_name", &call.peer_name),
            ("user_agent", &call.user_agent),
        ] {
            text.push(' ');
            text.push_str(key);
            text.push('=');
            quote(&mut text, value, MAX_VALUE_BYTES);
        }
        let alert = verdict
            .is_alert()
            .then(|| (call.peer_ip, verdict.reason_code()));
        Line { level, text, alert }
    }

    /// An address that crossed an AMI limit: `count` of the rule's `unit` (`names`,
    /// `tries`, `requests`) within `window`. `service` and `account` come from the event
    /// (the account is caller-chosen: a SIP From user), so both are quoted;
    /// `account_cut` bytes were cut off the account before it got here.
    pub fn for_security_alert(
        ip: IpAddr,
        reason: &str,
        (unit, count): (&str, usize),
        window: Duration,
        last: (&str, &[u8], &[u8], usize),
    ) -> Line {
        let (kind, service, account, account_cut) = last;
        let mut text = format!(
            "ip={ip} reason={reason} {unit}={count} window_seconds={} last_event={kind} service=",
            window.as_secs()
        );
        quote(&mut text, service, MAX_VALUE_BYTES);
        text.push_str(" account=");
        quote(&mut text, account, MAX_VALUE_BYTES);
        if account_cut > 0 {
            let _ = write!(text, "[+{account_cut} bytes]");
        }
        Line {
            level: Level::Error,
            text,
            alert: Some((ip, reason.to_string())),
        }
    }

    /// An outbound call's verdict (README, "Toll fraud"): `INFO` when it goes on,
    /// `WARNING` when refused by policy or past a warning level, `ERROR` (banned on) when
    /// it is toll fraud, unless the address is trusted: an office phone that dials too
    /// much is stopped, not banned.
    ///
    /// `ip=ADDR reason=CODE account='…' class=CLASS number='…' live=N [figure=N limit=N]`
    ///
    /// A toll-fraud verdict is an `ERROR` (banned) only against an address that is
    /// neither trusted nor the account's own (`usual_address`: an office whose phone
    /// dialled too much is stopped, not banned); a call with no address (a Local
    /// channel that carried none) names no `ip=`.
    pub fn for_outbound(
        judgement: &crate::fraud::Judgement,
        call: &crate::call::Outbound,
        trusted: bool,
    ) -> Line {
        use crate::fraud::Decision;
        let bans = !trusted && !judgement.usual_address;
        let (level, figures) = match &judgement.decision {
            Decision::Pass => (Level::Info, None),
            Decision::Warn { figure, limit, .. } => (Level::Warning, Some((*figure, *limit))),
            Decision::Refuse(_) => (Level::Warning, None),
            Decision::TollFraud { figure, limit, .. } => {
                let level = match (bans, call.address) {
                    (true, Some(_)) => Level::Error,
                    _ => Level::Warning,
                };
                (level, Some((*figure, *limit)))
            }
        };
        let reason = judgement.reason_code();
        let mut text = String::new();
        if let Some(ip) = call.address {
            let _ = write!(text, "ip={ip} ");
        }
        let _ = write!(text, "reason={reason} account=");
        quote(&mut text, call.account.as_bytes(), MAX_VALUE_BYTES);
        let _ = write!(text, " class={} number=", judgement.destination.class);
        quote(&mut text, &call.number, MAX_VALUE_BYTES);
        let _ = write!(text, " live={}", judgement.live);
        if let Some((figure, limit)) = figures {
            let _ = write!(text, " figure={figure} limit={limit}");
        }
        if judgement.usual_address && figures.is_some() && level == Level::Warning {
            text.push_str(" address=usual");
        }
        let alert = call
            .address
            .filter(|_| level == Level::Error)
            .map(|ip| (ip, reason));
        Line { level, text, alert }
    }

    /// An outbound account's answered minutes reached a level when a call ended:
    /// `ERROR` at the critical level against the address it last called from (unless
    /// trusted, or none is known), `WARNING` otherwise.
    pub fn for_outbound_minutes(
        account: &str,
        class: crate::fraud::Class,
        ended: &crate::fraud::guard::Ended,
        trusted: bool,
    ) -> Line {
        use crate::fraud::limits::Severity;
        let critical = ended.severity == Severity::Critical;
        let reason = match critical {
            true => "toll_fraud(minutes_per_day)",
            false => "warning(minutes_per_day)",
        };
        let mut text = String::new();
        if let Some(ip) = ended.address {
            let _ = write!(text, "ip={ip} ");
        }
        let _ = write!(text, "reason={reason} account=");
        quote(&mut text, account.as_bytes(), MAX_VALUE_BYTES);
        let _ = write!(
            text,
            " class={class} figure={} limit={}",
            ended.figure, ended.limit
        );
        let alert = ended
            .address
            .filter(|_| critical && !trusted && !ended.usual_address)
            .map(|ip| (ip, reason.to_string()));
        let level = match alert {
            Some(_) => Level::Error,
            None => Level::Warning,
        };
        Line { level, text, alert }
    }

    /// `extsecurity ban ADDR`: an `ERROR` line, so that fail2ban's jail and CrowdSec ban
    /// the address too (each for its own time). The note is the administrator's, quoted
    /// like any value.
    pub fn for_ban_by_hand(ip: IpAddr, note: &str) -> Line {
        let mut text = format!("ip={ip} reason=manual note=");
        quote(&mut text, note.as_bytes(), MAX_VALUE_BYTES);
        Line {
            level: Level::Error,
            text,
            alert: Some((ip, "manual".into())),
        }
    }

    /// `extsecurity ban CIDR`: a `WARNING` line (fail2ban bans addresses, not ranges; it
    /// names no `ip=`), for the record.
    pub fn for_range_ban_by_hand(net: ipnet::IpNet, note: &str) -> Line {
        let mut text = format!("reason=manual_range net={net} note=");
        quote(&mut text, note.as_bytes(), MAX_VALUE_BYTES);
        Line {
            level: Level::Warning,
            text,
            alert: None,
        }
    }

    /// A successful login that looks like a takeover: the account is quarantined before
    /// its first call. `WARNING`: the address is the one that logged in with the right
    /// password, which the AMI rules judge on their own.
    pub fn for_takeover(ip: IpAddr, account: &[u8], failed: u16) -> Line {
        let mut text = format!("ip={ip} reason=takeover account=");
        quote(&mut text, account, MAX_VALUE_BYTES);
        let _ = write!(text, " failed_logins={failed}");
        Line {
            level: Level::Warning,
            text,
            alert: None,
        }
    }

    /// A request that could not be judged. It names no `ip=`, so fail2ban never bans on it.
    pub fn bad_request(error: &str, request: &[u8]) -> Line {
        let mut text = String::from("reason=bad_request error=");
        quote(&mut text, error.as_bytes(), MAX_REQUEST_BYTES);
        text.push_str(" request=");
        quote(&mut text, request, MAX_REQUEST_BYTES);
        Line {
            level: Level::Critical,
            text,
            alert: None,
        }
    }

    /// Marks the line as coming from the seed's JSON request (`via=legacy_json` at its
    /// end, after every caller value: none can spell it, `=` is escaped in them), so
    /// that the daemon and `report` can count what still arrives that way.
    pub fn via_legacy(&mut self) {
        self.text.push(' ');
        self.text.push_str(LEGACY_MARK);
    }

    /// `<timestamp> <LEVEL> <text>\n`, ready for one `write(2)`.
    pub fn render(&self, timestamp: &str) -> Vec<u8> {
        format!("{timestamp} {} {}\n", self.level.as_str(), self.text).into_bytes()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The banned address and reason, for an `ERROR` line.
    pub fn alert(&self) -> Option<(IpAddr, &str)> {
        self.alert
            .as_ref()
            .map(|(ip, reason)| (*ip, reason.as_str()))
    }
}

/// The rule a reason code names: `call_rate(31)` → `call_rate`,
/// `toll_fraud(concurrent)` → `toll_fraud`.
pub fn rule_of(reason: &str) -> &str {
    reason.split('(').next().unwrap_or(reason)
}

/// Appends `'value'` with every byte outside printable ASCII, and `'`, `\` and `=`,
/// written as `\xNN`. Values over `max` bytes are cut and followed by `[+N bytes]`.
///
/// Only printable ASCII survives because fail2ban (Python) splits lines not only at LF
/// but, depending on how it decodes, at CR, VT, FF, `\x1c`–`\x1e`, U+0085 and U+2028.
/// `=` is escaped so that even the seed's unanchored filter cannot find `ip=` in a value.
pub fn quote(out: &mut String, value: &[u8], max: usize) {
    let shown = &value[..value.len().min(max)];
    out.push('\'');
    for &b in shown {
        match b {
            b'\'' | b'\\' | b'=' => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    if value.len() > shown.len() {
        let _ = write!(out, "[+{} bytes]", value.len() - shown.len());
    }
}

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
            " (the log must be group asterisk, mode 0660, its folder 2770, and this user in group asterisk: README, \"The log folder\")"
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
    /// (README, "The log folder"); a file one made that the other could not append to
    /// would lose the other's lines. Callers' data stays out of reach of everyone else.
    pub fn open(path: &Path) -> Result<AlertLog, LogError> {
        let file = match OpenOptions::new().append(true).open(path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
            Err(e) => Err(e),
        }
        .map_err(|source| match path.parent() {
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
            let log = AlertLog::open(path)?;
            let id = log.file.metadata().map(|m| file_id(&m)).unwrap_or_default();
            self.open = Some((log, id));
            self.moved_since = None;
        }
        let (log, _) = self.open.as_mut().expect("opened above");
        log.write_rendered(rendered)
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
    use crate::rules::Reason;

    fn quoted(value: &[u8]) -> String {
        let mut s = String::new();
        quote(&mut s, value, MAX_VALUE_BYTES);
        s
    }

    #[test]
    fn a_reason_names_its_rule_without_its_argument() {
        assert_eq!(rule_of("call_rate(31)"), "call_rate");
        assert_eq!(rule_of("toll_fraud(concurrent)"), "toll_fraud");
        assert_eq!(rule_of("user_agent"), "user_agent");
        assert_eq!(rule_of(""), "");
    }

    #[test]
    fn only_error_lines_name_an_address_for_other_sinks() {
        let call = Call::new("203.0.113.5".parse().unwrap());
        let alert = Line::for_call(&Verdict::Alert(Reason::CallRate), &call);
        assert_eq!(alert.alert(), Some((call.peer_ip, "call_rate")));
        assert_eq!(Line::for_call(&Verdict::Ok, &call).alert(), None);
        assert_eq!(Line::for_call(&Verdict::Trusted, &call).alert(), None);
        assert_eq!(Line::bad_request("x", b"ip=9.9.9.9").alert(), None);
        let ami = Line::for_security_alert(
            call.peer_ip,
            "account_scan",
            ("names", 6),
            Duration::from_secs(60),
            ("InvalidAccountID", b"PJSIP", b"a'b\r\nip=9.9.9.9", 12),
        );
        assert_eq!(ami.alert(), Some((call.peer_ip, "account_scan")));
        assert_eq!(
            ami.text(),
            r"ip=203.0.113.5 reason=account_scan names=6 window_seconds=60 last_event=InvalidAccountID service='PJSIP' account='a\x27b\x0d\x0aip\x3d9.9.9.9'[+12 bytes]"
        );
    }

    #[test]
    fn a_legacy_mark_cannot_come_from_a_caller() {
        let call = Call {
            user_agent: b"x via=legacy_json".to_vec(),
            ..Call::new("203.0.113.5".parse().unwrap())
        };
        let mut line = Line::for_call(&Verdict::Ok, &call);
        assert!(!is_legacy(&line.render("T")[..line.render("T").len() - 1]));
        line.via_legacy();
        let text = line.render("T");
        assert!(
            is_legacy(&text[..text.len() - 1]),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }

    #[test]
    fn plain_values_are_quoted_as_they_are() {
        assert_eq!(quoted(b"friendly-scanner"), "'friendly-scanner'");
        assert_eq!(quoted(b""), "''");
        assert_eq!(quoted(b"O Brien (x) :100"), "'O Brien (x) :100'");
    }

    #[test]
    fn line_breakers_quotes_and_equals_are_escaped() {
        assert_eq!(quoted(b"a\nb\rc"), r"'a\x0ab\x0dc'");
        assert_eq!(quoted(b"O'Brien \\ x=1"), r"'O\x27Brien \x5c x\x3d1'");
        assert_eq!(quoted(b"\x00\x0b\x0c\x1c\x7f"), r"'\x00\x0b\x0c\x1c\x7f'");
        assert_eq!(
            quoted("\u{2028}\u{85}é".as_bytes()),
            r"'\xe2\x80\xa8\xc2\x85\xc3\xa9'"
        );
        assert_eq!(quoted(b"\xff\xfe"), r"'\xff\xfe'");
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let s = quoted(&[b'9'; 600]);
        assert_eq!(s, format!("'{}'[+88 bytes]", "9".repeat(512)));
    }

    #[test]
    fn the_call_line_has_the_seed_layout() {
        let call = Call {
            callerid_num: b"abc".to_vec(),
            callerid_name: b"x".to_vec(),
            exten: b"123".to_vec(),
            user_agent: b"friendly-scanner".to_vec(),
            ..Call::new("192.0.2.10".parse().unwrap())
        };
        let line = Line::for_call(&Verdict::Alert(Reason::WrongCalleridNum), &call);
        assert_eq!(
            String::from_utf8(line.render("2026-11-24 19:08:52.123")).unwrap(),
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_callerid_num \
             callerid_num='abc' callerid_name='x' dest_exten='123' peer_name='' \
             user_agent='friendly-scanner'\n"
        );
        let ok = Line::for_call(&Verdict::Ok, &call);
        assert!(
            ok.render("T")
                .starts_with(b"T INFO ip=192.0.2.10 reason=ok ")
        );
    }

    #[test]
    fn forged_log_text_in_a_value_stays_inside_its_quotes() {
        let call = Call {
            user_agent: b"x\n2026-11-24 19:08:52.123 ERROR ip=198.51.100.7 reason=x".to_vec(),
            ..Call::new("192.0.2.10".parse().unwrap())
        };
        let rendered = Line::for_call(&Verdict::Ok, &call).render("T");
        let text = String::from_utf8(rendered).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches("ip=").count(), 1, "{text}");
    }

    #[test]
    fn bad_request_lines_name_no_ip() {
        let line = Line::bad_request("EOF while parsing", b"{\"ip\": \"1.2.3.4\n ip=5.6.7.8");
        let text = String::from_utf8(line.render("T")).unwrap();
        assert_eq!(
            text,
            "T CRITICAL reason=bad_request error='EOF while parsing' \
             request='{\"ip\": \"1.2.3.4\\x0a ip\\x3d5.6.7.8'\n"
        );
    }

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
