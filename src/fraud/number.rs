//! What a dialled number is: normalised with the PBX's dialling plan, then put in one
//! [`Class`]. Pure, and without the guard's state: the numbers learned from attackers
//! are the guard's to apply (`Guard::judge`: an outside number it learned is `learned`
//! unless blocked), after this and outside its lock.
//!
//! The order decides: emergency numbers first (never refused, whatever else they look
//! like), then what is malformed, internal extensions, and for an outside number its
//! E.164 form checked against the administrator's blocked prefixes, the high-risk
//! list, and libphonenumber's types (premium rate, shared cost, UAN, personal numbers
//! are premium), before international, mobile and national.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fraud::emergency_numbers::EMERGENCY;
use crate::fraud::number_types::{self, Kind};

/// A destination class (README, "Toll fraud").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The country's emergency numbers and the configured ones: never refused, never
    /// counted, even in quarantine.
    Emergency,
    /// An extension or a feature code (`*97`): not judged.
    Internal,
    National,
    Mobile,
    International,
    /// Premium rate, shared cost, UAN and personal numbers, as libphonenumber types them.
    Premium,
    /// A prefix of the high-risk list (international revenue share fraud).
    HighRisk,
    /// A prefix the administrator blocked.
    Blocked,
    /// A number that an alerted guest call tried to dial: what attackers sell.
    Learned,
    /// Not a number: a byte other than digits and a leading `+`, or too long for E.164.
    Malformed,
}

impl Class {
    /// The classes an account's calls are judged and counted in.
    pub const JUDGED: [Class; 8] = [
        Class::National,
        Class::Mobile,
        Class::International,
        Class::Premium,
        Class::HighRisk,
        Class::Blocked,
        Class::Learned,
        Class::Malformed,
    ];

    /// Every class, for metrics' labels.
    pub const ALL: [Class; 10] = [
        Class::Emergency,
        Class::Internal,
        Class::National,
        Class::Mobile,
        Class::International,
        Class::Premium,
        Class::HighRisk,
        Class::Blocked,
        Class::Learned,
        Class::Malformed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Emergency => "emergency",
            Class::Internal => "internal",
            Class::National => "national",
            Class::Mobile => "mobile",
            Class::International => "international",
            Class::Premium => "premium",
            Class::HighRisk => "high_risk",
            Class::Blocked => "blocked",
            Class::Learned => "learned",
            Class::Malformed => "malformed",
        }
    }

    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether calls of this class are judged at all.
    pub fn is_judged(self) -> bool {
        !matches!(self, Class::Emergency | Class::Internal)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the PBX's users dial (`[fraud]`): what to strip and what to add to reach E.164.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    /// The PBX's own country calling code, digits (`49`, `1`).
    pub country_code: String,
    /// What precedes a country code (`00`; `011` in North America). `+` always does.
    pub international_prefix: String,
    /// What precedes an area code (`0`; `1` in North America); empty where numbers keep
    /// their leading digit (Italy).
    pub national_prefix: String,
    /// An outside-line prefix (`9`), stripped first; empty when none.
    pub outside_line_prefix: String,
    /// Emergency numbers besides the country's own.
    pub extra_emergency: Vec<String>,
    /// Numbers of at most this many digits that start with neither prefix are
    /// extensions.
    pub internal_max_digits: usize,
}

impl DialPlan {
    /// The country's emergency numbers (libphonenumber's short-number metadata) and the
    /// configured ones.
    pub fn emergency_numbers(&self) -> Vec<&str> {
        self.own_emergency_numbers()
            .iter()
            .copied()
            .chain(self.extra_emergency.iter().map(String::as_str))
            .collect()
    }

    fn own_emergency_numbers(&self) -> &'static [&'static str] {
        let code: u16 = self.country_code.parse().unwrap_or(0);
        EMERGENCY
            .binary_search_by_key(&code, |(c, _)| *c)
            .map_or(&[], |i| EMERGENCY[i].1)
    }

    fn is_emergency(&self, digits: &str) -> bool {
        self.own_emergency_numbers().contains(&digits)
            || self.extra_emergency.iter().any(|e| e == digits)
    }
}

/// A list of E.164 prefixes (digits, no `+`): `blocked_prefixes`, the high-risk list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes(Vec<String>);

impl Prefixes {
    pub fn new(mut prefixes: Vec<String>) -> Prefixes {
        prefixes.sort();
        prefixes.dedup();
        Prefixes(prefixes)
    }

    pub fn matches(&self, e164: &str) -> bool {
        self.0.iter().any(|p| e164.starts_with(p.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.clone()
    }
}

/// A dialled number, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub class: Class,
    /// The number in E.164 without `+` (`442079460123`), when it is an outside number.
    pub e164: Option<String>,
}

impl Destination {
    fn of(class: Class) -> Destination {
        Destination { class, e164: None }
    }

    /// The E.164 number as an integer (at most 15 digits): what the state keeps.
    pub fn key(&self) -> Option<u64> {
        self.e164.as_deref().and_then(|d| d.parse().ok())
    }
}

/// The longest E.164 number (ITU-T E.164: 15 digits with the country code).
const MAX_E164_DIGITS: usize = 15;

/// Classifies `number` as dialled.
pub fn classify(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    number: &[u8],
) -> Destination {
    let Some(text) = dialled_text(number) else {
        return Destination::of(Class::Malformed);
    };
    if text.starts_with(['*', '#']) {
        return Destination::of(Class::Internal);
    }
    let stripped = text
        .strip_prefix(plan.outside_line_prefix.as_str())
        .filter(|rest| !plan.outside_line_prefix.is_empty() && !rest.is_empty())
        .unwrap_or(text);
    if plan.is_emergency(text) || plan.is_emergency(stripped) {
        return Destination::of(Class::Emergency);
    }
    let Some((e164, local)) = e164(plan, stripped) else {
        return Destination::of(Class::Internal);
    };
    if e164.len() > MAX_E164_DIGITS || e164.len() <= plan.country_code.len() {
        return Destination::of(Class::Malformed);
    }
    let class = outside_class(plan, blocked, high_risk, &e164, local);
    Destination {
        class,
        e164: Some(e164),
    }
}

/// The number as text if it is digits with at most one leading `+`, or a feature code
/// (`*`, `#` and digits starting with `*` or `#`).
fn dialled_text(number: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(number).ok()?;
    let digits = text.strip_prefix('+').unwrap_or(text);
    let feature =
        text.starts_with(['*', '#']) && text.bytes().all(|b| b"0123456789*#".contains(&b));
    let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    (feature || plain).then_some(text)
}

/// The E.164 digits of an outside number, and whether it was dialled locally (without
/// the national prefix, so its area is unknown); `None` for an extension.
fn e164(plan: &DialPlan, text: &str) -> Option<(String, bool)> {
    if let Some(rest) = text.strip_prefix('+') {
        return Some((rest.to_string(), false));
    }
    let intl = &plan.international_prefix;
    if !intl.is_empty()
        && let Some(rest) = text.strip_prefix(intl.as_str())
    {
        return Some((rest.to_string(), false));
    }
    let national = &plan.national_prefix;
    if !national.is_empty()
        && let Some(rest) = text.strip_prefix(national.as_str())
    {
        return Some((format!("{}{rest}", plan.country_code), false));
    }
    if text.len() <= plan.internal_max_digits {
        return None;
    }
    // Italy keeps its leading 0 in the national number: no prefix to strip, the whole
    // number follows the country code. Elsewhere a number without the national prefix
    // is a local one.
    Some((format!("{}{text}", plan.country_code), !national.is_empty()))
}

fn outside_class(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    e164: &str,
    local: bool,
) -> Class {
    if blocked.matches(e164) {
        return Class::Blocked;
    }
    if high_risk.matches(e164) {
        return Class::HighRisk;
    }
    // A local number's area is not known, so its type cannot be looked up.
    let kind = (!local).then(|| number_types::kind(e164)).flatten();
    if kind == Some(Kind::Premium) {
        return Class::Premium;
    }
    if !e164.starts_with(plan.country_code.as_str()) {
        return Class::International;
    }
    if kind == Some(Kind::Mobile) {
        return Class::Mobile;
    }
    Class::National
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn germany() -> DialPlan {
        DialPlan {
            country_code: "49".into(),
            international_prefix: "00".into(),
            national_prefix: "0".into(),
            outside_line_prefix: String::new(),
            extra_emergency: Vec::new(),
            internal_max_digits: 4,
        }
    }

    fn class_in(plan: &DialPlan, number: &str) -> Class {
        let high_risk = Prefixes::new(vec!["882".into(), "53".into()]);
        let blocked = Prefixes::new(vec!["4919".into()]);
        classify(plan, &blocked, &high_risk, number.as_bytes()).class
    }

    /// The examples, each checked against Python's `phonenumbers` 9.0 (design
    /// §3e): from Germany.
    #[test]
    fn german_numbers_fall_in_their_classes() {
        let de = germany();
        for (number, class) in [
            ("09001123456", Class::Premium),
            ("00448712345678", Class::Premium),
            ("00442079460123", Class::International),
            ("+442079460123", Class::International),
            // Where the `phonenumber` crate alone says "unknown" (number_types.rs).
            ("0037080812345", Class::Premium),
            ("0078091234567", Class::Premium),
            ("00390212345678", Class::International),
            ("030901820", Class::National),
            ("004930901820", Class::National),
            ("015112345678", Class::Mobile),
            ("08001234567", Class::National),
            ("112", Class::Emergency),
            ("110", Class::Emergency),
            ("911", Class::Internal),
            ("100", Class::Internal),
            ("*97", Class::Internal),
            ("#31#", Class::Internal),
            ("0088212345678", Class::HighRisk),
            ("+5371234567", Class::HighRisk),
            ("00972501234567", Class::International),
            ("019123456", Class::Blocked),
            ("901820", Class::National),
        ] {
            assert_eq!(class_in(&de, number), class, "{number}");
        }
    }

    #[test]
    fn outside_line_and_north_american_plans() {
        let us = DialPlan {
            country_code: "1".into(),
            international_prefix: "011".into(),
            national_prefix: "1".into(),
            outside_line_prefix: "9".into(),
            extra_emergency: vec!["933".into()],
            internal_max_digits: 4,
        };
        for (number, class) in [
            ("9911", Class::Emergency),
            ("911", Class::Emergency),
            ("933", Class::Emergency),
            ("912125551234", Class::National),
            ("919005551234", Class::Premium),
            ("9011442079460123", Class::International),
            ("011972501234567", Class::International),
            ("201", Class::Internal),
        ] {
            assert_eq!(class_in(&us, number), class, "{number}");
        }
    }

    #[test]
    fn what_is_not_a_number_is_malformed_whatever_it_holds() {
        let de = germany();
        for number in [
            &b""[..],
            b"+",
            b"0049 30 901820",
            b"00442079460123\n",
            b"0044207946)0123",
            b"0049:30",
            b"++4930901820",
            b"\xff\xfe",
            b"0049300000000000000000",
        ] {
            assert_eq!(
                classify(&de, &Prefixes::default(), &Prefixes::default(), number).class,
                Class::Malformed,
                "{number:?}"
            );
        }
        let huge = vec![b'1'; 64 * 1024];
        assert_eq!(
            classify(&de, &Prefixes::default(), &Prefixes::default(), &huge).class,
            Class::Malformed
        );
    }

    #[test]
    fn every_emergency_table_entry_is_sorted_digits() {
        assert!(EMERGENCY.windows(2).all(|w| w[0].0 < w[1].0));
        for (code, numbers) in EMERGENCY {
            assert!(!numbers.is_empty(), "+{code}");
            assert!(
                numbers
                    .iter()
                    .all(|n| n.bytes().all(|b| b.is_ascii_digit()))
            );
        }
        assert_eq!(germany().emergency_numbers(), ["110", "112"]);
    }

    #[test]
    fn the_e164_key_is_the_number() {
        let d = classify(
            &germany(),
            &Prefixes::default(),
            &Prefixes::default(),
            b"00442079460123",
        );
        assert_eq!(d.key(), Some(442_079_460_123));
    }
}
