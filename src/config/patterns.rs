//! Compiled pattern lists: `blocked_extensions`, `blocked_user_agents`.

use std::fmt;

use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use toml::Spanned;

use super::Invalid;
/// A compiled list of regular expressions, kept with their source for display.
///
/// `regex-automata` matches in linear time, so a 64 KiB extension cannot make a pattern
/// backtrack for seconds the way Python's `re` can. Semantics are ASCII: `\d` is
/// `[0-9]` as in an extension, case folding is ASCII's, and any byte can be matched.
#[derive(Clone)]
pub struct Patterns {
    sources: Vec<String>,
    regex: Regex,
}

impl Patterns {
    /// Each pattern must match the whole value.
    pub(super) fn whole(patterns: &[Spanned<String>]) -> Result<Patterns, Invalid> {
        Patterns::build(patterns, false, |p| format!(r"\A(?:{p})\z"))
    }

    /// Each pattern may match anywhere in the value, ignoring case.
    pub(super) fn anywhere_ignoring_case(
        patterns: &[Spanned<String>],
    ) -> Result<Patterns, Invalid> {
        Patterns::build(patterns, true, |p| format!("(?:{p})"))
    }

    fn build(
        patterns: &[Spanned<String>],
        ignore_case: bool,
        wrap: impl Fn(&str) -> String,
    ) -> Result<Patterns, Invalid> {
        // No prefilter and no explicit capture groups: building the literal prefilter for
        // case-insensitive patterns cost a millisecond on every System() call, and the
        // values we search are short.
        let compile = |sources: &[&Spanned<String>]| {
            meta::Builder::new()
                .configure(
                    meta::Config::new()
                        .auto_prefilter(false)
                        .which_captures(WhichCaptures::Implicit)
                        .utf8_empty(false),
                )
                .syntax(
                    syntax::Config::new()
                        .unicode(false)
                        .utf8(false)
                        .case_insensitive(ignore_case),
                )
                .build_many(
                    &sources
                        .iter()
                        .map(|p| wrap(p.get_ref()))
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| regex_reason(&e))
        };
        let all: Vec<&Spanned<String>> = patterns.iter().collect();
        let regex = compile(&all).map_err(|_| {
            // Find the culprit only on the error path, so that its position is named.
            let (p, e) = all
                .iter()
                .find_map(|p| compile(&[p]).err().map(|e| (p, e)))
                .expect("a list that fails to compile has a pattern that fails");
            (p.span(), format!("invalid pattern {:?}: {e}", p.get_ref()))
        })?;
        Ok(Patterns {
            sources: patterns.iter().map(|p| p.get_ref().clone()).collect(),
            regex,
        })
    }

    /// A pattern that matches `value` (the one whose match starts first), if any.
    pub fn matching(&self, value: &[u8]) -> Option<&str> {
        self.regex
            .find(value)
            .map(|m| self.sources[m.pattern().as_usize()].as_str())
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.sources).finish()
    }
}

/// Regex syntax errors draw a caret diagram over several lines; keep the gist.
fn regex_reason(e: &meta::BuildError) -> String {
    let text = match e.syntax_error() {
        Some(syntax) => syntax.to_string(),
        None => e.to_string(),
    };
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or("invalid regex"))
        .to_string()
}
