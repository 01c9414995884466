//! The time, in one place: the alert log's timestamps and zone, the guard's `Now`, Unix
//! seconds and how a span reads. Everything that reads the clock or the local zone
//! comes here, so the cores the daemon feeds (the rules, the fraud guard) are given the
//! time and read none.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use jiff::tz::TimeZone;

/// Local time as the seed's Python `logging` wrote it: `2026-11-24 19:08:52.123`.
pub fn timestamp_now() -> String {
    jiff::Timestamp::now()
        .to_zoned_datetime(local_zone())
        .strftime("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// The zone the alert log's times are written in (and read back in).
pub fn local_zone() -> TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| local_time_zone(std::env::var("TZ").ok().as_deref()))
        .clone()
}

/// The local time zone as libc (and so Python's `logging`) finds it: `$TZ` (a zoneinfo
/// name or a POSIX rule), else `/etc/localtime`, else UTC.
///
/// Read directly rather than through jiff's time zone database, whose first use walks
/// all of `/usr/share/zoneinfo`: that walk was 40% of a System()-mode check.
fn local_time_zone(tz: Option<&str>) -> TimeZone {
    let tzif = |name: &str, path: &Path| {
        std::fs::read(path)
            .ok()
            .and_then(|data| TimeZone::tzif(name, &data).ok())
    };
    match tz {
        Some(tz) if !tz.is_empty() => {
            let name = tz.strip_prefix(':').unwrap_or(tz);
            let path = if name.starts_with('/') {
                PathBuf::from(name)
            } else {
                Path::new("/usr/share/zoneinfo").join(name)
            };
            let from_file = if name.contains("..") {
                None
            } else {
                tzif(name, &path)
            };
            from_file
                .or_else(|| TimeZone::posix(name).ok())
                .unwrap_or(TimeZone::UTC)
        }
        _ => tzif("Local", Path::new("/etc/localtime")).unwrap_or(TimeZone::UTC),
    }
}

/// The time as the guard needs it: Unix seconds for the windows, and the PBX's local
/// weekday (Monday = 0) and minute of the day for `hours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub unix: u64,
    pub weekday: u8,
    pub minute: u16,
}

impl Now {
    /// The current time in the alert log's zone.
    pub fn current() -> Now {
        let zoned = jiff::Timestamp::now().to_zoned_datetime(local_zone());
        Now {
            unix: u64::try_from(zoned.timestamp().as_second()).unwrap_or(0),
            weekday: zoned.weekday().to_monday_zero_offset() as u8,
            minute: zoned.hour() as u16 * 60 + zoned.minute() as u16,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    jiff::Timestamp::now().as_second().max(0) as u64
}

/// Time left as an administrator reads it: `23h 59m 12s`, `2d 0h 0m 5s`, `42s`.
pub fn time_left(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m {sec}s"),
        _ => format!("{days}d {h}h {m}m {sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_zone_follows_tz_like_libc() {
        let zone = |tz: &str| local_time_zone(Some(tz));
        let at = jiff::Timestamp::from_second(1_780_000_000).unwrap();
        let offset = |z: TimeZone| z.to_offset(at).seconds();
        assert_eq!(offset(zone("UTC0")), 0);
        assert_eq!(offset(zone("EST5")), -5 * 3600);
        assert_eq!(offset(zone("../../etc/passwd")), 0);
        if Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists() {
            assert_eq!(offset(zone("Asia/Kolkata")), 19800);
            assert_eq!(offset(zone(":Asia/Kolkata")), 19800);
        }
    }

    #[test]
    fn timestamps_have_milliseconds() {
        let t = timestamp_now();
        assert_eq!(t.len(), "2026-11-24 19:08:52.123".len(), "{t}");
        assert_eq!(&t[10..11], " ");
        assert_eq!(&t[19..20], ".");
    }

    #[test]
    fn time_left_reads_as_the_readme_shows_it() {
        assert_eq!(time_left(Duration::from_secs(86_399 - 47)), "23h 59m 12s");
        assert_eq!(time_left(Duration::from_secs(59 * 60 + 37)), "59m 37s");
        assert_eq!(time_left(Duration::from_secs(42)), "42s");
        assert_eq!(
            time_left(Duration::from_secs(2 * 86_400 + 5)),
            "2d 0h 0m 5s"
        );
    }
}
