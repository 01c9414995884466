//! libphonenumber's number types, matched with regexes compiled once per country code.
//!
//! The `phonenumber` crate keeps its metadata's patterns in one regex cache of 100
//! entries behind one mutex: every number it types locks it, hashes pattern strings and,
//! since one country's descriptors and formats already outnumber the cache, compiles
//! some of them again. Measured in the daemon, that made the outbound check cost half as
//! much again as the guest check, its threads queueing on that lock. Here the patterns a
//! country code needs are compiled on its first number and kept (at most one entry per
//! country code: ~250), and matched as the crate matches them: the same region choice,
//! the same order of types. The test below holds the two to the same answers for every
//! example number in the metadata.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use phonenumber::metadata::{DATABASE, Descriptor, Descriptors, Metadata};
use regex_automata::meta::Regex;

/// What the destination classes need of a number's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Premium rate, shared cost, UAN, personal numbers.
    Premium,
    Mobile,
    /// Any other valid type (fixed line, toll free, VoIP …).
    Other,
}

/// The kind of an E.164 number (digits, no `+`); `None` when it is not a valid number of
/// any region.
pub fn kind(e164: &str) -> Option<Kind> {
    lookup(e164).map(|(kind, _)| kind)
}

/// The kind of an E.164 number and the region it belongs to (`JM` for +1 876): regions
/// that share a calling code are billed as different countries (design §3g).
pub fn lookup(e164: &str) -> Option<(Kind, &'static str)> {
    let (code, national) = split(e164)?;
    let types = types_of(code)?;
    types.kind(national)
}

/// The calling code an E.164 number starts with and the national number after it, if
/// it starts with one.
pub fn split_code(e164: &str) -> Option<(u16, &str)> {
    split(e164)
}

/// The regions that share a calling code (`US`, `CA`, `JM` … for 1), in the metadata's
/// order (the main region first).
pub fn regions(code: u16) -> Vec<&'static str> {
    DATABASE
        .region(&code)
        .map(|regions| regions.into_iter().filter(|r| *r != "001").collect())
        .unwrap_or_default()
}

/// Each number type of a region with what the classes make of it, in the order
/// `phonenumber::validator::number_type` tries them: the special types, then fixed line
/// and mobile (premium rate, shared cost, UAN and personal numbers are premium).
fn kinds(d: &Descriptors) -> [(Option<&Descriptor>, Kind); 10] {
    [
        (d.premium_rate(), Kind::Premium),
        (d.toll_free(), Kind::Other),
        (d.shared_cost(), Kind::Premium),
        (d.voip(), Kind::Other),
        (d.personal_number(), Kind::Premium),
        (d.pager(), Kind::Other),
        (d.uan(), Kind::Premium),
        (d.voicemail(), Kind::Other),
        (d.fixed_line(), Kind::Other),
        (d.mobile(), Kind::Mobile),
    ]
}

/// Every number type's descriptor a region has, with its [`Kind`].
pub fn typed_descriptors(d: &Descriptors) -> impl Iterator<Item = (&Descriptor, Kind)> {
    kinds(d)
        .into_iter()
        .filter_map(|(descriptor, kind)| Some((descriptor?, kind)))
}

/// Every number type's descriptor a region has.
pub fn type_descriptors(d: &Descriptors) -> impl Iterator<Item = &Descriptor> {
    typed_descriptors(d).map(|(descriptor, _)| descriptor)
}

/// The international and national prefixes of the main region of `country_code`
/// (`("00", "0")` for 49, `("011", "1")` for 1, `("00", "")` for 39); `("00", "0")`
/// where the metadata names no single prefix.
pub fn prefixes(country_code: &str) -> (String, String) {
    let main = country_code
        .parse()
        .ok()
        .and_then(|code| regions(code).into_iter().next())
        .and_then(|region| DATABASE.by_id(region));
    let Some(meta) = main else {
        return ("00".into(), "0".into());
    };
    let plain = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let international = meta
        .preferred_international_prefix()
        .filter(|p| plain(p))
        .map(str::to_string)
        .or_else(|| {
            let regex = meta.international_prefix()?.as_str().to_string();
            plain(&regex).then_some(regex)
        })
        .unwrap_or_else(|| "00".into());
    let national = meta.national_prefix().unwrap_or("").to_string();
    (international, national)
}

/// Whether `len` digits is a length only a local number (dialled without its area code)
/// has in `region`: 7 digits in the US, 2 or 3 in Germany.
pub fn is_local_only_length(region: &str, len: usize) -> bool {
    let Some(meta) = DATABASE.by_id(region) else {
        return false;
    };
    // As libphonenumber's build makes the general description's lengths: every type's
    // local-only lengths, but those a whole number of some type has.
    let d = meta.descriptors();
    let all = || std::iter::once(d.general()).chain(type_descriptors(d));
    let len = len as u16;
    let local = all().any(|d| d.possible_local_length().contains(&len));
    let whole = all().any(|d| d.possible_length().contains(&len));
    local && !whole
}

/// Compiles the patterns of the PBX's own country code now, so that its first call does not
/// wait for them (and libphonenumber's metadata is parsed at start, ~60 ms).
pub fn warm_up(country_code: &str) {
    if let Ok(code) = country_code.parse() {
        let _ = types_of(code);
    }
}

/// Splits off the country code: codes are prefix-free, so the first length that names
/// one is it.
fn split(e164: &str) -> Option<(u16, &str)> {
    // No calling code starts with 0 ("001" is no code 1).
    if e164.starts_with('0') {
        return None;
    }
    (1..=3.min(e164.len())).find_map(|len| {
        let code: u16 = e164[..len].parse().ok()?;
        DATABASE
            .region(&code)
            .is_some()
            .then(|| (code, &e164[len..]))
    })
}

type Cache = RwLock<HashMap<u16, Option<Arc<CodeTypes>>>>;

fn cache() -> &'static Cache {
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

fn types_of(code: u16) -> Option<Arc<CodeTypes>> {
    if let Some(types) = cache().read().unwrap_or_else(|e| e.into_inner()).get(&code) {
        return types.clone();
    }
    let types = CodeTypes::compile(code).map(Arc::new);
    cache()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(code, types.clone());
    types
}

/// The regions that share a country code, in the metadata's order.
struct CodeTypes(Vec<RegionTypes>);

impl CodeTypes {
    fn compile(code: u16) -> Option<CodeTypes> {
        let regions = DATABASE.region(&code)?;
        let metadata: Vec<&'static Metadata> = regions
            .iter()
            .filter_map(|&region| match region {
                "001" => DATABASE.by_code(&code)?.into_iter().next(),
                _ => DATABASE.by_id(region),
            })
            .collect();
        Some(CodeTypes(
            metadata.into_iter().map(RegionTypes::compile).collect(),
        ))
    }

    /// As `phonenumber` picks the region (`validator::source_for`): the only one; else
    /// the first whose leading digits start the number, or without leading digits, whose
    /// patterns give it a type.
    fn kind(&self, national: &str) -> Option<(Kind, &'static str)> {
        let typed = |region: &RegionTypes| region.kind(national).map(|k| (k, region.id));
        if let [only] = self.0.as_slice() {
            return typed(only);
        }
        for region in &self.0 {
            match &region.leading {
                Some(leading) if leading.find(national).is_some_and(|m| m.start() == 0) => {
                    return typed(region);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = typed(region) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }
}

/// One region's patterns, in the order `phonenumber::validator::number_type` tries them.
struct RegionTypes {
    id: &'static str,
    leading: Option<Regex>,
    general: Pattern,
    /// Types tried before fixed line and mobile, with what each means here.
    special: Vec<(Pattern, Kind)>,
    fixed_line: Option<Pattern>,
    mobile: Option<Pattern>,
}

impl RegionTypes {
    fn compile(meta: &'static Metadata) -> RegionTypes {
        let d = meta.descriptors();
        // The special types: all but the last two (fixed line, mobile).
        let special = kinds(d)[..8]
            .iter()
            .filter_map(|&(d, kind)| Some((Pattern::compile(d?), kind)))
            .collect();
        RegionTypes {
            id: meta.id(),
            leading: meta.leading_digits().and_then(|l| compile(l.as_str())),
            general: Pattern::compile(d.general()),
            special,
            fixed_line: d.fixed_line().map(Pattern::compile),
            mobile: d.mobile().map(Pattern::compile),
        }
    }

    /// `None` where `phonenumber` says `Unknown`. A fixed-line match comes first, as
    /// there: "fixed line or mobile" is not counted as mobile.
    fn kind(&self, national: &str) -> Option<Kind> {
        if !self.general.matches(national) {
            return None;
        }
        if let Some((_, kind)) = self.special.iter().find(|(p, _)| p.matches(national)) {
            return Some(*kind);
        }
        let matches = |p: &Option<Pattern>| p.as_ref().is_some_and(|p| p.matches(national));
        if matches(&self.fixed_line) {
            return Some(Kind::Other);
        }
        matches(&self.mobile).then_some(Kind::Mobile)
    }
}

/// A descriptor: its possible lengths and its pattern, matched against the whole number
/// as libphonenumber matches it (the crate's `Descriptor::is_match` only anchors the
/// start, so that `138` made a nine-digit German number premium).
struct Pattern {
    lengths: Vec<u16>,
    regex: Option<Regex>,
}

impl Pattern {
    fn compile(d: &Descriptor) -> Pattern {
        Pattern {
            lengths: d.possible_length().to_vec(),
            regex: compile(&format!("^(?:{})$", d.national_number().as_str())),
        }
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.as_ref().is_some_and(|r| r.is_match(national))
    }
}

/// A metadata pattern, compiled as the crate compiles it (whitespace in it ignored).
fn compile(pattern: &str) -> Option<Regex> {
    Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().ignore_whitespace(true))
        .build(pattern)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::Type;

    fn crate_kind(e164: &str) -> Option<Kind> {
        let number = phonenumber::parse(None, format!("+{e164}")).ok()?;
        match number.number_type(&DATABASE) {
            Type::PremiumRate | Type::SharedCost | Type::Uan | Type::PersonalNumber => {
                Some(Kind::Premium)
            }
            Type::Mobile => Some(Kind::Mobile),
            Type::Unknown => None,
            _ => Some(Kind::Other),
        }
    }

    /// Example numbers the crate calls `Unknown` (it strips a national prefix from the
    /// national number: Italy's fixed lines, Lithuania's and Russia's premium numbers),
    /// with the kind libphonenumber itself gives them (Python `phonenumbers` 9.0.43,
    /// `number_type`, checked one by one).
    const CRATE_SAYS_UNKNOWN: &[(&str, Kind)] = &[
        ("2250123456789", Kind::Mobile),
        ("22708123456", Kind::Other),
        ("22709123456", Kind::Premium),
        ("2290120211234", Kind::Other),
        ("2290195123456", Kind::Mobile),
        ("24101441234", Kind::Other),
        ("242061234567", Kind::Mobile),
        ("2670800012345", Kind::Other),
        ("26808001234", Kind::Other),
        ("37080012345", Kind::Other),
        ("37080123456", Kind::Other),
        ("37080812345", Kind::Premium),
        ("3758011234567", Kind::Other),
        ("3780549886377", Kind::Other),
        ("390212345678", Kind::Other),
        ("390669812345", Kind::Other),
        ("4702000", Kind::Premium),
        ("50108001234123", Kind::Other),
        ("6760800222", Kind::Other),
        ("67908001234567", Kind::Other),
        ("687050012", Kind::Other),
        ("78001234567", Kind::Other),
        ("78081234567", Kind::Premium),
        ("78091234567", Kind::Premium),
        ("8530800501", Kind::Other),
    ];

    /// Every example number of every type of every region, typed by both: the same kind,
    /// but where the crate departs from libphonenumber.
    #[test]
    fn the_same_answers_as_phonenumber_for_every_example_number() {
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let examples = type_descriptors(meta.descriptors()).filter_map(Descriptor::example);
            for example in examples {
                let e164 = format!("{}{example}", meta.country_code());
                let expected = match CRATE_SAYS_UNKNOWN.iter().find(|(n, _)| *n == e164) {
                    Some(&(_, kind)) => Some(kind),
                    None => crate_kind(&e164),
                };
                assert_eq!(kind(&e164), expected, "+{e164} ({})", meta.id());
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} examples");
    }

    #[test]
    fn each_country_dials_with_its_own_prefixes() {
        let p = |cc: &str| prefixes(cc);
        assert_eq!(p("49"), ("00".into(), "0".into()));
        assert_eq!(p("1"), ("011".into(), "1".into()));
        assert_eq!(p("39"), ("00".into(), String::new()));
        assert_eq!(p("44"), ("00".into(), "0".into()));
        assert_eq!(p("999"), ("00".into(), "0".into()));
        assert_eq!(lookup("18765551234").map(|(_, r)| r), Some("JM"));
        assert!(is_local_only_length("US", 7) && !is_local_only_length("US", 10));
    }

    #[test]
    fn numbers_of_no_region_have_no_kind() {
        for e164 in ["", "0", "999123456", "49", "4900", "28012345678"] {
            assert_eq!(kind(e164), None, "{e164}");
        }
        assert_eq!(kind("4915112345678"), Some(Kind::Mobile));
        assert_eq!(kind("499001123456"), Some(Kind::Premium));
        assert_eq!(kind("4930901820"), Some(Kind::Other));
        assert_eq!(kind("19005551234"), Some(Kind::Premium));
    }
}
