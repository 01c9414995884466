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
use crate::fraud::extension_pattern::ExtensionPatterns;
use crate::fraud::number_types::{self, Kind};
use crate::fraud::short_number::{self, ShortCost};

/// A destination class (doc/toll-fraud.md, "Toll fraud: the outbound check").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The country's emergency numbers and the configured ones: never refused, never
    /// counted, even in quarantine.
    Emergency,
    /// What the administrator listed as never leaving by the trunk (`[fraud] internal`):
    /// not judged.
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
    /// Not a number: a byte other than digits and a leading `+`, too long for E.164, a
    /// star or hash left after the feature codes, or no valid number of the home
    /// country (never national).
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

    /// Which live calls count toward this class's concurrency: a class's limit counts
    /// its own tier and those above. National, then mobile, then international, which
    /// the refused classes (premium, high-risk …) count as.
    pub fn concurrency_tier(self) -> u8 {
        match self {
            Class::Emergency | Class::Internal => 0,
            Class::National => 1,
            Class::Mobile => 2,
            _ => 3,
        }
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
    /// The regions of the calling code whose numbers are national (`US`; the other
    /// NANP countries inside +1 are billed as international). Never empty.
    pub home_regions: Vec<String>,
    /// What never leaves by the trunk, as the administrator lists it (`_1XX`): none
    /// by default, since the check runs before a trunk `Dial`.
    pub internal: ExtensionPatterns,
    /// Feature codes dialled in front of a number (`*67`, `#31#`), longest first: the
    /// carrier dials what follows, so that is what is judged.
    pub feature_prefixes: Vec<String>,
}

/// Feature codes that carriers act on and then dial what follows (design §3g), with the
/// calling code they belong to (`None`: every country). Star and hash codes cannot
/// start a number, so they are stripped everywhere; digit codes only at home.
pub const FEATURE_PREFIXES: &[(Option<&str>, &str)] = &[
    // GSM (3GPP TS 22.030): withhold and show the caller's number for one call.
    (None, "#31#"),
    (None, "*31#"),
    // NANP vertical service codes: block and unblock caller id, cancel call waiting,
    // and their rotary forms.
    (None, "*67"),
    (None, "*82"),
    (None, "*70"),
    (Some("1"), "1167"),
    (Some("1"), "1182"),
    (Some("1"), "1170"),
    // UK: withhold and release the number.
    (Some("44"), "141"),
    (Some("44"), "1470"),
    // Australia: withhold and release the number.
    (Some("61"), "1831"),
    (Some("61"), "1832"),
];

impl DialPlan {
    /// A plan for `country_code` with the prefixes its main region uses (libphonenumber:
    /// `00` and `0` in most of Europe, `011` and `1` in North America, no national
    /// prefix in Italy), its home regions
    /// and the built-in feature codes; for tests and as the config's start.
    pub fn for_country(country_code: &str) -> DialPlan {
        let (international_prefix, national_prefix) = number_types::prefixes(country_code);
        DialPlan {
            country_code: country_code.to_string(),
            international_prefix,
            national_prefix,
            outside_line_prefix: String::new(),
            extra_emergency: Vec::new(),
            home_regions: default_home_regions(country_code),
            internal: ExtensionPatterns::default(),
            feature_prefixes: feature_prefixes(country_code, &[]),
        }
    }

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

    fn is_home_region(&self, region: &str) -> bool {
        self.home_regions.iter().any(|r| r == region)
    }

    /// The number the carrier dials: feature codes and the outside-line prefix
    /// stripped, in whichever order they were dialled.
    fn strip<'a>(&self, mut text: &'a str) -> &'a str {
        let outside = self.outside_line_prefix.as_str();
        let mut outside_stripped = outside.is_empty();
        loop {
            let feature = self
                .feature_prefixes
                .iter()
                .find_map(|p| text.strip_prefix(p.as_str()).filter(|r| !r.is_empty()));
            if let Some(rest) = feature {
                text = rest;
                continue;
            }
            match text.strip_prefix(outside).filter(|r| !r.is_empty()) {
                Some(rest) if !outside_stripped => {
                    outside_stripped = true;
                    text = rest;
                }
                _ => return text,
            }
        }
    }
}

/// The regions whose numbers are national by default: for +1, the United States alone
/// (Canada and the Caribbean are other countries' bills); elsewhere every region of
/// the code (+44: GB, GG, IM, JE).
pub fn default_home_regions(country_code: &str) -> Vec<String> {
    match country_code.parse().unwrap_or(0) {
        1 => vec!["US".to_string()],
        code => number_types::regions(code)
            .into_iter()
            .map(String::from)
            .collect(),
    }
}

/// The built-in feature codes for `country_code` and the administrator's, longest
/// first (so that `*31#` is tried before a shorter code it starts with).
pub fn feature_prefixes(country_code: &str, extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = FEATURE_PREFIXES
        .iter()
        .filter(|(cc, _)| cc.is_none_or(|cc| cc == country_code))
        .map(|(_, p)| p.to_string())
        .chain(extra.iter().cloned())
        .collect();
    all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    all.dedup();
    all
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

/// Classifies `number` as dialled, before a trunk `Dial`: every number that leaves by
/// the trunk is judged by what it is (design §3g).
pub fn classify(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    number: &[u8],
) -> Destination {
    let Some(dialled) = dialled_text(number) else {
        return Destination::of(Class::Malformed);
    };
    if plan.is_emergency(dialled) {
        return Destination::of(Class::Emergency);
    }
    if plan.internal.matches(dialled) {
        return Destination::of(Class::Internal);
    }
    let text = plan.strip(dialled);
    if plan.is_emergency(text) {
        return Destination::of(Class::Emergency);
    }
    // A star or hash left after the known feature codes: no carrier dials it as a
    // number, and no one should be able to hide a number behind it.
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Destination::of(Class::Malformed);
    }
    match e164(plan, text) {
        Some(e164) => outside(plan, blocked, high_risk, e164),
        None => subscriber(plan, blocked, high_risk, text),
    }
}

/// The number as text if it is digits, `*` and `#`, with at most a leading `+`.
fn dialled_text(number: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(number).ok()?;
    let rest = text.strip_prefix('+').unwrap_or(text);
    let plain = !rest.is_empty() && rest.bytes().all(|b| b"0123456789*#".contains(&b));
    // A `+` is only ever followed by digits.
    let plus_ok = !text.starts_with('+') || rest.bytes().all(|b| b.is_ascii_digit());
    (plain && plus_ok).then_some(text)
}

/// The E.164 digits of a number dialled with `+`, the international prefix or the
/// national prefix; `None` for one dialled without a prefix.
fn e164(plan: &DialPlan, text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix('+') {
        return Some(rest.to_string());
    }
    let intl = &plan.international_prefix;
    if !intl.is_empty()
        && let Some(rest) = text.strip_prefix(intl.as_str())
    {
        return Some(rest.to_string());
    }
    let national = &plan.national_prefix;
    if !national.is_empty()
        && let Some(rest) = text.strip_prefix(national.as_str())
    {
        return Some(format!("{}{rest}", plan.country_code));
    }
    None
}

/// A number dialled without a prefix: a whole national number (Italy keeps its 0;
/// `2125551234` in North America), else a short number (`3617`), else a local number
/// without its area code; anything else is no number of the home country.
fn subscriber(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    text: &str,
) -> Destination {
    let e164 = format!("{}{text}", plan.country_code);
    if let found @ Some(_) = number_types::lookup(&e164) {
        return typed(plan, blocked, high_risk, e164, found);
    }
    let short = plan
        .home_regions
        .iter()
        .filter_map(|region| short_number::cost(region, text))
        .max_by_key(|cost| *cost == ShortCost::Premium);
    let local = || {
        plan.home_regions
            .iter()
            .any(|r| number_types::is_local_only_length(r, text.len()))
    };
    let class = match short {
        Some(ShortCost::Premium) => Class::Premium,
        Some(ShortCost::Other) => Class::National,
        None if local() => Class::National,
        None => return Destination::of(Class::Malformed),
    };
    Destination {
        class,
        e164: Some(e164),
    }
}

/// An E.164 number's class: the administrator's blocked prefixes and the high-risk
/// list first, then libphonenumber's type and region.
fn outside(plan: &DialPlan, blocked: &Prefixes, high_risk: &Prefixes, e164: String) -> Destination {
    let found = number_types::lookup(&e164);
    typed(plan, blocked, high_risk, e164, found)
}

/// [`outside`] with libphonenumber's type and region already looked up (`found`).
fn typed(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    e164: String,
    found: Option<(Kind, &str)>,
) -> Destination {
    let class = outside_class(plan, blocked, high_risk, &e164, found);
    Destination {
        class,
        e164: (class != Class::Malformed).then_some(e164),
    }
}

fn outside_class(
    plan: &DialPlan,
    blocked: &Prefixes,
    high_risk: &Prefixes,
    e164: &str,
    found: Option<(Kind, &str)>,
) -> Class {
    if e164.len() > MAX_E164_DIGITS || e164.len() <= plan.country_code.len() {
        return Class::Malformed;
    }
    if blocked.matches(e164) {
        return Class::Blocked;
    }
    if high_risk.matches(e164) {
        return Class::HighRisk;
    }
    let split = number_types::split_code(e164);
    // libphonenumber's shortest national number has two digits.
    if split.is_some_and(|(_, national)| national.len() < 2) {
        return Class::Malformed;
    }
    let home_code = split.is_some_and(|(code, _)| plan.country_code.parse() == Ok(code));
    match found {
        Some((Kind::Premium, _)) => Class::Premium,
        Some(_) if home_code && is_nanp_976(plan, e164) => Class::Premium,
        Some((Kind::Mobile, region)) if home_code && plan.is_home_region(region) => Class::Mobile,
        Some((_, region)) if home_code && plan.is_home_region(region) => Class::National,
        Some(_) => Class::International,
        // No valid number of the home country is national; a number with no country
        // code at all reaches no one.
        None if home_code => Class::Malformed,
        None if split.is_none() => Class::Malformed,
        None => Class::International,
    }
}

/// NANP exchange 976 (`NPA-976-XXXX`): pay-per-call lines inside ordinary area codes,
/// which libphonenumber types as fixed lines (design §3g).
fn is_nanp_976(plan: &DialPlan, e164: &str) -> bool {
    plan.country_code == "1" && e164.len() == 11 && &e164[4..7] == "976"
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn germany() -> DialPlan {
        DialPlan::for_country("49")
    }

    fn class_in(plan: &DialPlan, number: &str) -> Class {
        let high_risk = Prefixes::new(vec!["882".into(), "53".into()]);
        let blocked = Prefixes::new(vec!["4919".into()]);
        classify(plan, &blocked, &high_risk, number.as_bytes()).class
    }

    fn assert_classes(plan: &DialPlan, cases: &[(&str, Class)]) {
        for (number, class) in cases {
            assert_eq!(class_in(plan, number), *class, "{number}");
        }
    }

    /// The examples, each checked against Python's `phonenumbers` 9.0 (design
    /// §3e): from Germany.
    #[test]
    fn german_numbers_fall_in_their_classes() {
        assert_classes(
            &germany(),
            &[
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
                ("0088212345678", Class::HighRisk),
                ("+5371234567", Class::HighRisk),
                ("00972501234567", Class::International),
                ("019123456", Class::Blocked),
                // A short number of Germany's (directory enquiries): not premium in
                // libphonenumber, so national with its limits.
                ("11880", Class::National),
                // A local number without its area code: 2 or 3 digits are local-only
                // lengths; 901820 is no valid German number.
                ("123", Class::National),
                ("901820", Class::Malformed),
                // Before a trunk Dial nothing is an extension by its length: 100 is
                // a local number there, and a star code no number.
                ("100", Class::National),
                ("*97", Class::Malformed),
                ("#31#", Class::Malformed),
                ("0049", Class::Malformed),
                ("00999123456", Class::Malformed),
            ],
        );
    }

    /// France's premium short numbers (design §3g; `expected_cost_for_region` says
    /// PREMIUM_RATE for both), and its other short numbers.
    #[test]
    fn french_short_numbers_are_typed_by_their_cost() {
        let fr = DialPlan::for_country("33");
        assert_classes(
            &fr,
            &[
                ("3617", Class::Premium),
                ("118218", Class::Premium),
                ("3010", Class::National),
                ("15", Class::Emergency),
                ("17", Class::Emergency),
                ("0140000000", Class::National),
                ("0612345678", Class::Mobile),
                ("0899123456", Class::Premium),
                ("3617000", Class::Malformed),
            ],
        );
    }

    /// `*67` and `#31#` before a number (design §3g): the number after them is judged.
    #[test]
    fn feature_codes_in_front_of_a_number_are_stripped() {
        let de = germany();
        assert_classes(
            &de,
            &[
                ("*6700449098790000", Class::Premium),
                ("#31#005378612345", Class::HighRisk),
                ("*31#030901820", Class::National),
                ("*67*8200442079460123", Class::International),
                ("*67#31#09001123456", Class::Premium),
                ("*67", Class::Malformed),
                ("*67*97", Class::Malformed),
                ("*67112", Class::Emergency),
            ],
        );
        let mut own = germany();
        own.feature_prefixes = feature_prefixes("49", &["*99#".into()]);
        assert_eq!(class_in(&own, "*99#09001123456"), Class::Premium);
        assert_eq!(class_in(&de, "*99#09001123456"), Class::Malformed);
    }

    /// Inside +1 are other countries (design §3g): billed as international.
    #[test]
    fn north_america_is_one_country_of_many_inside_plus_one() {
        let mut us = DialPlan::for_country("1");
        us.outside_line_prefix = "9".into();
        us.extra_emergency = vec!["933".into()];
        assert_classes(
            &us,
            &[
                ("9911", Class::Emergency),
                ("911", Class::Emergency),
                ("933", Class::Emergency),
                ("912125551234", Class::National),
                ("12125551234", Class::National),
                ("2125551234", Class::National),
                ("5551234", Class::National),
                ("919005551234", Class::Premium),
                ("19005551234", Class::Premium),
                ("12129765555", Class::Premium),
                ("18765551234", Class::International),
                ("+18765551234", Class::International),
                ("8765551234", Class::International),
                ("18095551234", Class::International),
                ("+18295551234", Class::International),
                ("14165551234", Class::International),
                ("9011442079460123", Class::International),
                ("011972501234567", Class::International),
                ("00442079460123", Class::Malformed),
                ("*6719005551234", Class::Premium),
                ("*67011442079460123", Class::International),
                ("11675551234", Class::National),
                ("201", Class::Malformed),
                ("15551234567", Class::Malformed),
            ],
        );
        let mut canada_too = DialPlan::for_country("1");
        canada_too.home_regions = vec!["US".into(), "CA".into()];
        assert_eq!(class_in(&canada_too, "14165551234"), Class::National);
        assert_eq!(class_in(&canada_too, "18765551234"), Class::International);
    }

    #[test]
    fn internal_is_only_what_the_administrator_lists() {
        let mut de = germany();
        de.internal = ExtensionPatterns::new(&["_1XX".into(), "_*X.".into()]).unwrap();
        assert_classes(
            &de,
            &[
                ("100", Class::Internal),
                ("*97", Class::Internal),
                ("1000", Class::Malformed),
                ("*9", Class::Malformed),
                ("112", Class::Emergency),
                ("09001123456", Class::Premium),
            ],
        );
    }

    #[test]
    fn italy_keeps_its_leading_zero() {
        let it = DialPlan::for_country("39");
        assert_classes(
            &it,
            &[
                ("0212345678", Class::National),
                ("3123456789", Class::Mobile),
                ("00442079460123", Class::International),
                ("112", Class::Emergency),
            ],
        );
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
            b"+*67",
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

    #[test]
    fn home_regions_and_feature_codes_by_country() {
        assert_eq!(default_home_regions("1"), ["US"]);
        assert_eq!(default_home_regions("44"), ["GB", "GG", "IM", "JE"]);
        let us = feature_prefixes("1", &[]);
        assert!(us.contains(&"1167".to_string()) && !us.contains(&"141".to_string()));
        assert!(us.windows(2).all(|w| w[0].len() >= w[1].len()));
        assert!(feature_prefixes("44", &[]).contains(&"141".to_string()));
    }
}
