//! The limits of one destination class: what is refused, when, and the figures that
//! warn and that quarantine the account (doc/toll-fraud.md, "Toll fraud: the outbound check").

use std::fmt;

use crate::fraud::hours::Hours;
use crate::fraud::number::Class;

/// A figure watched per account and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Calls within a sliding minute (counted in 5 s slices).
    CallsPerMinute,
    /// Calls within a sliding hour (5 min slices).
    CallsPerHour,
    /// Calls within a sliding day (2 h slices).
    CallsPerDay,
    /// The account's live outbound calls, this one included (`GROUP_COUNT`).
    Concurrent,
    /// Distinct numbers within a sliding hour (a dialler sweeping numbers).
    DistinctPerHour,
    /// Minutes answered within a sliding day, from the calls' ends.
    MinutesPerDay,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::CallsPerMinute,
        Rule::CallsPerHour,
        Rule::CallsPerDay,
        Rule::Concurrent,
        Rule::DistinctPerHour,
        Rule::MinutesPerDay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::CallsPerMinute => "calls_per_minute",
            Rule::CallsPerHour => "calls_per_hour",
            Rule::CallsPerDay => "calls_per_day",
            Rule::Concurrent => "concurrent",
            Rule::DistinctPerHour => "distinct_per_hour",
            Rule::MinutesPerDay => "minutes_per_day",
        }
    }

    fn index(self) -> usize {
        Rule::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A warning and a critical level; 0 switches either off. A figure at or above a level
/// reaches it: `warning = 4` warns at the 4th call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Level {
    pub warning: u32,
    pub critical: u32,
}

impl Level {
    pub const OFF: Level = Level {
        warning: 0,
        critical: 0,
    };

    pub const fn new(warning: u32, critical: u32) -> Level {
        Level { warning, critical }
    }
}

/// The most distinct numbers per hour a critical level may name: the account keeps one
/// entry per number up to it, so it bounds the state.
pub const MAX_DISTINCT_LEVEL: u32 = 64;

/// What one class allows an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLimits {
    /// Every call of the class is refused (still counted toward the levels).
    pub refuse: bool,
    /// When calls of the class are allowed; `None`: always.
    pub hours: Option<Hours>,
    /// A cap on the call's length (`TIMEOUT(absolute)`), 0 for none.
    pub max_seconds: u32,
    levels: [Level; 6],
}

impl ClassLimits {
    pub fn new(refuse: bool, max_seconds: u32) -> ClassLimits {
        ClassLimits {
            refuse,
            hours: None,
            max_seconds,
            levels: [Level::OFF; 6],
        }
    }

    pub fn level(&self, rule: Rule) -> Level {
        self.levels[rule.index()]
    }

    pub fn set(&mut self, rule: Rule, level: Level) {
        self.levels[rule.index()] = level;
    }

    fn with(mut self, rule: Rule, level: Level) -> ClassLimits {
        self.set(rule, level);
        self
    }

    /// The shipped defaults: what an office can live with and a stolen account cannot.
    /// Premium, high-risk, learned and blocked numbers are refused, and three refused
    /// tries in an hour quarantine the account (two for a learned number); international
    /// calls warn at the 4th within a minute and quarantine at the 6th, at a 3rd live
    /// call, or at the 11th distinct number within an hour, and last an hour at most.
    pub fn default_for(class: Class) -> ClassLimits {
        use Rule::*;
        match class {
            Class::National => ClassLimits::new(false, 0)
                .with(CallsPerMinute, Level::new(10, 30))
                .with(Concurrent, Level::new(4, 8)),
            Class::Mobile => ClassLimits::new(false, 0)
                .with(CallsPerMinute, Level::new(6, 15))
                .with(Concurrent, Level::new(3, 6)),
            Class::International => ClassLimits::new(false, 3600)
                .with(CallsPerMinute, Level::new(4, 6))
                .with(Concurrent, Level::new(2, 3))
                .with(DistinctPerHour, Level::new(8, 11))
                .with(MinutesPerDay, Level::new(120, 240)),
            Class::Premium | Class::HighRisk => {
                ClassLimits::new(true, 0).with(CallsPerHour, Level::new(1, 3))
            }
            Class::Learned => ClassLimits::new(true, 0).with(CallsPerHour, Level::new(1, 2)),
            Class::Blocked | Class::Malformed => ClassLimits::new(true, 0),
            // Never judged; listed so that every class has limits.
            Class::Emergency | Class::Internal => ClassLimits::new(false, 0),
        }
    }

    /// These limits made at least as strict as the defaults for an account the audit
    /// finds weak (a secret svcrack guesses, no auth): international calls warn at the
    /// 2nd within a minute and quarantine at the 3rd, at the 5th distinct number
    /// within an hour or an hour's minutes in a day, and last half an hour. A level the
    /// administrator made stricter stays.
    pub fn tightened_for_weak(mut self, class: Class) -> ClassLimits {
        use Rule::*;
        if class != Class::International {
            return self;
        }
        for (rule, weak) in [
            (CallsPerMinute, Level::new(2, 3)),
            (DistinctPerHour, Level::new(3, 5)),
            (MinutesPerDay, Level::new(30, 60)),
        ] {
            let now = self.level(rule);
            let stricter = |a: u32, b: u32| match (a, b) {
                (0, b) => b,
                (a, b) => a.min(b),
            };
            self.set(
                rule,
                Level::new(
                    stricter(now.warning, weak.warning),
                    stricter(now.critical, weak.critical),
                ),
            );
        }
        self.max_seconds = match self.max_seconds {
            0 => 1800,
            s => s.min(1800),
        };
        self
    }

    /// Whether any level needs the distinct numbers kept.
    pub fn keeps_distinct(&self) -> bool {
        let l = self.level(Rule::DistinctPerHour);
        l.warning > 0 || l.critical > 0
    }
}

/// The first rule whose figure reaches its critical level, else the first that reaches
/// its warning level, with the figure and the level reached.
pub fn reached(
    limits: &ClassLimits,
    mut figure: impl FnMut(Rule) -> u32,
) -> Option<(Severity, Rule, u32, u32)> {
    let mut warning = None;
    for rule in Rule::ALL {
        let level = limits.level(rule);
        if level.warning == 0 && level.critical == 0 {
            continue;
        }
        let value = figure(rule);
        if level.critical > 0 && value >= level.critical {
            return Some((Severity::Critical, rule, value, level.critical));
        }
        if warning.is_none() && level.warning > 0 && value >= level.warning {
            warning = Some((Severity::Warning, rule, value, level.warning));
        }
    }
    warning
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Critical,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_wins_over_an_earlier_warning() {
        let limits = ClassLimits::default_for(Class::International);
        let figures = |m, c| {
            move |rule| match rule {
                Rule::CallsPerMinute => m,
                Rule::Concurrent => c,
                _ => 0,
            }
        };
        assert_eq!(reached(&limits, figures(3, 1)), None);
        assert_eq!(
            reached(&limits, figures(4, 1)),
            Some((Severity::Warning, Rule::CallsPerMinute, 4, 4))
        );
        assert_eq!(
            reached(&limits, figures(4, 3)),
            Some((Severity::Critical, Rule::Concurrent, 3, 3))
        );
        assert_eq!(
            reached(&limits, figures(6, 1)),
            Some((Severity::Critical, Rule::CallsPerMinute, 6, 6))
        );
    }

    #[test]
    fn the_shipped_defaults_refuse_what_a_stolen_account_dials() {
        for class in [
            Class::Premium,
            Class::HighRisk,
            Class::Learned,
            Class::Blocked,
        ] {
            assert!(ClassLimits::default_for(class).refuse, "{class}");
        }
        for class in [Class::National, Class::Mobile, Class::International] {
            assert!(!ClassLimits::default_for(class).refuse, "{class}");
        }
        assert_eq!(
            ClassLimits::default_for(Class::International).max_seconds,
            3600
        );
    }
}
