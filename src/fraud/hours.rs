//! When a class may be dialled: `Mo-Fr 07:00-20:00, Sa 09:00-13:00`, in the PBX's local
//! time. A range that ends before it starts runs past midnight into the next day.

use std::fmt;

const DAYS: [&str; 7] = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];

/// A parsed `hours` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    source: String,
    /// (days as bits, Monday = bit 0; start and end in minutes of the day).
    spans: Vec<(u8, u16, u16)>,
}

impl Hours {
    /// Parses `Mo-Fr 07:00-20:00, Sa 09:00-13:00`.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let spans = text
            .split(',')
            .map(|part| span(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| {
                format!("{why} in {text:?} (write e.g. \"Mo-Fr 07:00-20:00, Sa 09:00-13:00\")")
            })?;
        Ok(Hours {
            source: text.to_string(),
            spans,
        })
    }

    /// Whether a call on `weekday` (Monday = 0) at `minute` of the day is allowed.
    pub fn allows(&self, weekday: u8, minute: u16) -> bool {
        let day = |d: u8| 1u8 << (d % 7);
        let yesterday = (weekday + 6) % 7;
        self.spans.iter().any(|&(days, start, end)| {
            if start < end {
                days & day(weekday) != 0 && (start..end).contains(&minute)
            } else {
                (days & day(weekday) != 0 && minute >= start)
                    || (days & day(yesterday) != 0 && minute < end)
            }
        })
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn span(part: &str) -> Result<(u8, u16, u16), String> {
    let (days, times) = part
        .split_once(' ')
        .ok_or_else(|| format!("{part:?} is not \"DAYS HH:MM-HH:MM\""))?;
    let (start, end) = times
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{times:?} is not HH:MM-HH:MM"))?;
    let (start, end) = (minute(start)?, minute(end)?);
    if start == end || start == 24 * 60 {
        return Err(format!("{times:?} is an empty range"));
    }
    Ok((day_bits(days)?, start, end % (24 * 60)))
}

fn day_bits(text: &str) -> Result<u8, String> {
    let index = |d: &str| {
        DAYS.iter()
            .position(|n| *n == d)
            .ok_or_else(|| format!("{d:?} is not a day (Mo Tu We Th Fr Sa Su)"))
    };
    match text.split_once('-') {
        Some((from, to)) => {
            let (from, to) = (index(from)?, index(to)?);
            let mut bits = 0u8;
            let mut d = from;
            loop {
                bits |= 1 << d;
                if d == to {
                    return Ok(bits);
                }
                d = (d + 1) % 7;
            }
        }
        None => Ok(1 << index(text)?),
    }
}

fn minute(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time HH:MM (00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m > 0) || text.len() != 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MO: u8 = 0;
    const FR: u8 = 4;
    const SA: u8 = 5;
    const SU: u8 = 6;

    fn at(h: u16, m: u16) -> u16 {
        h * 60 + m
    }

    #[test]
    fn office_hours() {
        let h = Hours::parse("Mo-Fr 07:00-20:00, Sa 09:00-13:00").unwrap();
        assert!(h.allows(MO, at(7, 0)));
        assert!(h.allows(FR, at(19, 59)));
        assert!(!h.allows(FR, at(20, 0)));
        assert!(!h.allows(MO, at(6, 59)));
        assert!(h.allows(SA, at(12, 0)));
        assert!(!h.allows(SA, at(13, 0)));
        assert!(!h.allows(SU, at(12, 0)));
        assert_eq!(h.to_string(), "Mo-Fr 07:00-20:00, Sa 09:00-13:00");
    }

    #[test]
    fn a_night_shift_runs_past_midnight_and_a_week_wraps() {
        let h = Hours::parse("Fr-Mo 22:00-06:00").unwrap();
        assert!(h.allows(FR, at(23, 0)));
        assert!(h.allows(SA, at(5, 59)), "Friday's night");
        assert!(h.allows(1, at(5, 0)), "Monday's night ends on Tuesday");
        assert!(!h.allows(1, at(6, 0)));
        assert!(!h.allows(2, at(23, 0)));
        let all = Hours::parse("Mo-Su 00:00-24:00").unwrap();
        assert!((0..7).all(|d| all.allows(d, 0) && all.allows(d, at(23, 59))));
    }

    #[test]
    fn bad_hours_say_why() {
        for (text, why) in [
            ("Mo-Fr", "is not \"DAYS HH:MM-HH:MM\""),
            ("Mx 07:00-20:00", "\"Mx\" is not a day"),
            ("Mo 7:00-20:00", "\"7:00\" is not a time"),
            ("Mo 07:00-25:00", "\"25:00\" is not a time"),
            ("Mo 07:00-07:00", "an empty range"),
            ("Mo 07:00", "is not HH:MM-HH:MM"),
        ] {
            let e = Hours::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
