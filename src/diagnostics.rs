//! The daemon's own log (not the alert log): `tracing` events on stderr, which systemd
//! hands to the journal.
//!
//! Under journald (`$JOURNAL_STREAM` names our stderr) each line starts with its syslog
//! priority, `<3>` for an error, and carries no timestamp or level word of its own: the
//! journal adds both, and `journalctl -p warning` then filters on what we meant.
//! Elsewhere (a terminal, a file) a line has the local time and the level. An event
//! sent with [`critical!`] is priority 2 (`crit`) and says `CRITICAL`: the call path
//! itself is failing, not a part beside it.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The target [`critical!`] events carry.
pub const CRITICAL_TARGET: &str = "extsecurity::critical";

/// An error that stops the call path from doing its job (the alert log not taking
/// lines): syslog priority `crit`.
#[macro_export]
macro_rules! critical {
    ($($arg:tt)*) => {
        ::tracing::error!(target: $crate::diagnostics::CRITICAL_TARGET, $($arg)*)
    };
}

/// Sends `tracing` events to stderr, formatted for the journal when stderr is the
/// journal's stream. `EXTSECURITY_LOG` sets the filter (`info` by default).
pub fn init() {
    let format = Format {
        journal: stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref()),
        ansi: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EXTSECURITY_LOG")
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(format.ansi)
        .with_env_filter(filter)
        .event_format(format)
        .init();
}

/// Whether `$JOURNAL_STREAM` (`device:inode`) names the file our stderr is: systemd
/// sets it for the service's own stream, and a child whose stderr was redirected
/// inherits the variable but not the stream.
fn stderr_is_journal(stream: Option<&str>) -> bool {
    let Some((dev, ino)) = stream.and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the stat buffer for a valid descriptor, or fails.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the buffer is filled.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

/// The syslog priority of an event: `crit` 2, `err` 3, `warning` 4, `info` 6, `debug` 7.
pub fn priority(level: &Level, critical: bool) -> u8 {
    match *level {
        _ if critical => 2,
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

struct Format {
    journal: bool,
    ansi: bool,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let critical = meta.target() == CRITICAL_TARGET;
        if self.journal {
            write!(writer, "<{}>", priority(meta.level(), critical))?;
        } else {
            let now = crate::clock::timestamp_now();
            let word = match *meta.level() {
                _ if critical => "CRITICAL",
                Level::ERROR => "ERROR",
                Level::WARN => "WARN",
                Level::INFO => "INFO",
                Level::DEBUG => "DEBUG",
                Level::TRACE => "TRACE",
            };
            match self.ansi {
                true => write!(writer, "{now} \x1b[1m{word:>5}\x1b[0m ")?,
                false => write!(writer, "{now} {word:>5} ")?,
            }
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{}: ", fields)?;
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_syslogs() {
        assert_eq!(priority(&Level::ERROR, true), 2);
        assert_eq!(priority(&Level::ERROR, false), 3);
        assert_eq!(priority(&Level::WARN, false), 4);
        assert_eq!(priority(&Level::INFO, false), 6);
        assert_eq!(priority(&Level::DEBUG, false), 7);
    }

    #[test]
    fn the_journal_is_recognised_only_on_our_own_stderr() {
        assert!(!stderr_is_journal(None));
        assert!(!stderr_is_journal(Some("garbage")));
        assert!(!stderr_is_journal(Some("1:1")));
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: as in stderr_is_journal.
        assert_eq!(unsafe { libc::fstat(2, st.as_mut_ptr()) }, 0);
        let st = unsafe { st.assume_init() };
        assert!(stderr_is_journal(Some(&format!(
            "{}:{}",
            st.st_dev, st.st_ino
        ))));
    }
}
