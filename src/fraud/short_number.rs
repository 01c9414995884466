//! Short numbers (`3617`, `118218` in France): typed as libphonenumber's
//! `ShortNumberInfo` types them, from its short-number metadata (the generated
//! [`SHORT_NUMBERS`] table). Before a trunk `Dial`, "four digits or fewer is an
//! extension" is wrong: a premium short number reaches the trunk like any other
//! (design §3g).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use regex_automata::meta::Regex;

use crate::fraud::short_numbers::{SHORT_NUMBERS, ShortRegion};

/// What a short number costs, as far as the classes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShortCost {
    /// libphonenumber's `PREMIUM_RATE`.
    Premium,
    /// A valid short number of another cost (standard, toll free, unknown).
    Other,
}

/// What `digits`, dialled in `region` (`FR`), is as a short number; `None` when it is
/// not one.
pub fn cost(region: &str, digits: &str) -> Option<ShortCost> {
    let compiled = compiled(region)?;
    compiled.cost(digits)
}

struct Compiled {
    general: Option<Regex>,
    lengths: &'static [u8],
    short_code: Option<Regex>,
    short_code_lengths: &'static [u8],
    premium: Option<Regex>,
    premium_lengths: &'static [u8],
}

impl Compiled {
    fn new(row: &'static ShortRegion) -> Compiled {
        let ShortRegion(_, general, lengths, short_code, sc_lengths, premium, p_lengths, _) = row;
        Compiled {
            general: whole(general),
            lengths,
            short_code: whole(short_code),
            short_code_lengths: sc_lengths,
            premium: whole(premium),
            premium_lengths: p_lengths,
        }
    }

    /// As `expected_cost_for_region` and `is_valid_short_number_for_region` decide: a
    /// length the region allows, then premium before anything else.
    fn cost(&self, digits: &str) -> Option<ShortCost> {
        let len = u8::try_from(digits.len()).ok()?;
        if !self.lengths.contains(&len) {
            return None;
        }
        if matches(&self.premium, self.premium_lengths, digits) {
            return Some(ShortCost::Premium);
        }
        let valid = self.general.as_ref().is_some_and(|r| r.is_match(digits))
            && matches(&self.short_code, self.short_code_lengths, digits);
        valid.then_some(ShortCost::Other)
    }
}

fn matches(regex: &Option<Regex>, lengths: &[u8], digits: &str) -> bool {
    let len = digits.len();
    (lengths.is_empty() || lengths.iter().any(|&l| usize::from(l) == len))
        && regex.as_ref().is_some_and(|r| r.is_match(digits))
}

/// The pattern anchored at both ends (libphonenumber matches whole numbers); `None`
/// for an empty one (the region lists no such numbers).
fn whole(pattern: &str) -> Option<Regex> {
    if pattern.is_empty() {
        return None;
    }
    Regex::new(&format!("^(?:{pattern})$")).ok()
}

type Cache = RwLock<HashMap<&'static str, Arc<Compiled>>>;

/// A region's patterns, compiled on its first number: a PBX asks for its own
/// country's only.
fn compiled(region: &str) -> Option<Arc<Compiled>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(c) = cache.read().unwrap_or_else(|e| e.into_inner()).get(region) {
        return Some(c.clone());
    }
    let i = SHORT_NUMBERS
        .binary_search_by(|row| row.0.cmp(region))
        .ok()?;
    let row = &SHORT_NUMBERS[i];
    let c = Arc::new(Compiled::new(row));
    cache
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(row.0, c.clone());
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked one by one with Python `phonenumbers` 9.0.33
    /// (`shortnumberinfo.expected_cost_for_region`, `is_valid_short_number_for_region`).
    #[test]
    fn french_premium_short_numbers_and_others() {
        assert_eq!(cost("FR", "3617"), Some(ShortCost::Premium));
        assert_eq!(cost("FR", "118218"), Some(ShortCost::Premium));
        assert_eq!(cost("FR", "3915"), Some(ShortCost::Premium));
        assert_eq!(cost("FR", "3010"), Some(ShortCost::Other));
        assert_eq!(cost("FR", "15"), Some(ShortCost::Other));
        assert_eq!(cost("FR", "100"), None);
        assert_eq!(cost("DE", "11880"), Some(ShortCost::Other));
        assert_eq!(cost("US", "611"), Some(ShortCost::Other));
        assert_eq!(cost("ZZ", "3617"), None);
        assert_eq!(cost("FR", "36170000000"), None);
    }

    #[test]
    fn the_table_is_sorted_by_region_and_every_pattern_compiles() {
        assert!(SHORT_NUMBERS.windows(2).all(|w| w[0].0 < w[1].0));
        for row in SHORT_NUMBERS {
            for pattern in [row.1, row.3, row.5] {
                assert!(
                    pattern.is_empty() || whole(pattern).is_some(),
                    "{}: {pattern}",
                    row.0
                );
            }
        }
    }
}
