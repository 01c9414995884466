//! Asterisk's extension patterns (`_1XX`, `_*X.`, `2000`), for `[fraud] internal`: the
//! numbers the administrator says never leave by the trunk. Written as the dialplan
//! writes them, so that the list can be copied from `extensions.conf`.

use regex_automata::meta::Regex;

/// A list of extension patterns, compiled into one regex; compared by their text.
#[derive(Debug, Clone, Default)]
pub struct ExtensionPatterns {
    sources: Vec<String>,
    regex: Option<Regex>,
}

impl PartialEq for ExtensionPatterns {
    fn eq(&self, other: &Self) -> bool {
        self.sources == other.sources
    }
}

impl Eq for ExtensionPatterns {}

impl ExtensionPatterns {
    /// Compiles `patterns`; the error names the first one that is not a pattern.
    pub fn new(patterns: &[String]) -> Result<ExtensionPatterns, String> {
        let regexes = patterns
            .iter()
            .map(|p| to_regex(p).map_err(|why| format!("{p:?}: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        let regex = match regexes.is_empty() {
            true => None,
            false => Some(Regex::new_many(&regexes).map_err(|e| e.to_string())?),
        };
        Ok(ExtensionPatterns {
            sources: patterns.to_vec(),
            regex,
        })
    }

    pub fn matches(&self, number: &str) -> bool {
        self.regex.as_ref().is_some_and(|r| r.is_match(number))
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}

/// One pattern as an anchored regex: `_` starts a pattern (`X` a digit, `Z` 1-9, `N`
/// 2-9, `[1-5#]` a set, `.` one or more characters, `!` zero or more); without it the
/// extension is matched as written.
fn to_regex(pattern: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, '*' | '#' | '+');
    let Some(body) = pattern.strip_prefix('_') else {
        if pattern.is_empty() || !pattern.chars().all(allowed) {
            return Err("an extension is digits, * and # (a pattern starts with _)".into());
        }
        return Ok(format!("^{}$", regex_syntax_escape(pattern)));
    };
    if body.is_empty() {
        return Err("a pattern needs something after _".into());
    }
    let mut out = String::from("^");
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c.to_ascii_uppercase() {
            'X' => out.push_str("[0-9]"),
            'Z' => out.push_str("[1-9]"),
            'N' => out.push_str("[2-9]"),
            '.' => out.push_str(".+"),
            '!' => out.push_str(".*"),
            '[' => {
                let set: String = chars.by_ref().take_while(|&c| c != ']').collect();
                if set.is_empty() || !set.chars().all(|c| allowed(c) || c == '-') {
                    return Err(format!("[{set}] is not a set of digits"));
                }
                out.push('[');
                out.push_str(&set.replace('*', "\\*").replace('+', "\\+"));
                out.push(']');
            }
            c if allowed(c) => out.push_str(&regex_syntax_escape(&c.to_string())),
            c => return Err(format!("{c:?} has no meaning in a pattern")),
        }
    }
    out.push('$');
    Ok(out)
}

fn regex_syntax_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '*' | '+' | '#' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(p: &[&str]) -> ExtensionPatterns {
        ExtensionPatterns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_match_as_the_dialplan_does() {
        let l = list(&["_1XX", "_*X.", "2000", "_[2-4]NZ", "_9!"]);
        for yes in ["100", "199", "*97", "*9712", "2000", "322", "9", "91234"] {
            assert!(l.matches(yes), "{yes}");
        }
        for no in ["10", "1000", "*", "20000", "312", "302", "0049"] {
            assert!(!l.matches(no), "{no}");
        }
        assert!(!ExtensionPatterns::default().matches("100"));
    }

    #[test]
    fn what_is_not_a_pattern_is_refused() {
        for bad in ["", "_", "_1(X)", "12a", "_[a-z]", "_1X|.*"] {
            let e = ExtensionPatterns::new(&[bad.to_string()]).unwrap_err();
            assert!(e.starts_with(&format!("{bad:?}")), "{e}");
        }
    }
}
