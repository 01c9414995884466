//! Configuration errors an administrator can act on: the file, line and column, the key
//! (`ami.ping_interval_seconds`), and what is wrong in words — "must be a number, not
//! the string "10"" rather than serde's "invalid type: string "10", expected f64".

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration that cannot be used, with the place to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Refused at a reload: a file with no settings at all is more likely half-written
    /// than meant.
    #[error(
        "{}: holds no settings (empty, or comments only); refused at a reload — restart to run on the built-in defaults",
        path.display()
    )]
    Empty { path: PathBuf },
    /// Refused at a reload: the file the daemon started with is gone.
    #[error("{}: the configuration file is gone ({source}); refused at a reload", path.display())]
    Gone {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    pub(crate) fn at(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_column(text.as_bytes(), span.start);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: message.trim().replace('\n', " "),
        }
    }

    /// Bytes that are not UTF-8: the line and column of the first bad byte.
    pub(crate) fn not_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> ConfigError {
        let at = error.valid_up_to();
        let (line, column) = line_column(bytes, at);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: format!(
                "the file is not UTF-8 text (byte 0x{:02x}); save it as UTF-8",
                bytes[at]
            ),
        }
    }

    /// An error of the TOML reader or of serde, reworded with the key it is about.
    pub(crate) fn from_toml(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let (span, message) = reword(text, span, e.message());
        ConfigError::at(path, text, span, message)
    }
}

/// One-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The seed's key names, as aliases of ours, for messages about either.
pub(crate) const ALIASES: &[(&str, &str)] = &[
    ("logfile_path", "log_file"),
    ("default_sleep_protection_time_sec", "tarpit_seconds"),
    (
        "alert_if_callerid_num_is_not_numeric",
        "callerid_num_must_be_numeric",
    ),
    (
        "alert_if_dialed_exten_is_not_numeric",
        "exten_must_be_numeric",
    ),
    (
        "alert_if_dialed_exten_lenghts_less_than",
        "exten_min_length",
    ),
    ("alert_if_dialed_exten_length_less_than", "exten_min_length"),
    (
        "alert_if_dialed_exten_lenghts_more_than",
        "exten_max_length",
    ),
    ("alert_if_dialed_exten_length_more_than", "exten_max_length"),
    (
        "automatic_block_attempts_to_extensions",
        "blocked_extensions",
    ),
];

/// The place and the words for one error of the TOML reader or serde.
fn reword(text: &str, span: Range<usize>, message: &str) -> (Range<usize>, String) {
    let key = key_at(text, span.start).unwrap_or_default();
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        && let Some((found, expected)) = rest.rsplit_once(", expected ")
    {
        return (span, wrong_type(&key, found, expected));
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, known) = rest.split_once('`').unwrap_or((rest, ""));
        return (span, unknown_key(&key, name, known));
    }
    if message == "duplicate key" {
        let name = text.get(span.clone()).unwrap_or_default().trim();
        return (
            span,
            format!("`{name}` is set twice in the same table: keep one"),
        );
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.trim_end_matches('`');
        return duplicate_alias(text, span, name);
    }
    let message = match key.is_empty() {
        true => message.to_string(),
        false => format!("{key}: {message}"),
    };
    (span, message)
}

/// `tarpit_seconds must be a number, not the string "10"`.
fn wrong_type(key: &str, found: &str, expected: &str) -> String {
    let expected = match expected {
        "f64" | "f32" => "a number".to_string(),
        "u8" | "u16" | "u32" | "u64" | "usize" => {
            let max = match expected {
                "u8" => u64::from(u8::MAX),
                "u16" => u64::from(u16::MAX),
                "u32" => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            match max {
                u64::MAX => "a whole number, 0 or more".to_string(),
                max => format!("a whole number from 0 to {max}"),
            }
        }
        "a boolean" => "true or false".to_string(),
        "a string" | "path string" => "a string in quotes".to_string(),
        "a sequence" => "a list in brackets, [ ]".to_string(),
        other if other.starts_with("struct ") => "a table".to_string(),
        other => other.to_string(),
    };
    let found = if let Some(s) = found.strip_prefix("string ") {
        format!("the string {s}")
    } else if let Some((_, value)) = found.split_once(" `") {
        value.trim_end_matches('`').to_string()
    } else {
        match found {
            "sequence" => "a list".to_string(),
            "map" => "a table".to_string(),
            other => other.to_string(),
        }
    };
    format!("{key} must be {expected}, not {found}")
}

/// `unknown key log_ok_call (did you mean log_ok_calls?)`.
fn unknown_key(path: &str, name: &str, known: &str) -> String {
    let table = path.rsplit_once('.').map(|(t, _)| t);
    let names: Vec<&str> = known
        .split('`')
        .skip(1)
        .step_by(2)
        .chain(match table {
            None => ALIASES.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            Some(_) => Vec::new(),
        })
        .collect();
    let nearest = names
        .iter()
        .map(|n| (strsim::damerau_levenshtein(name, n), *n))
        .filter(|(d, n)| *d <= (n.len() / 3).max(2) || n.starts_with(name) || name.starts_with(n))
        .min();
    let whose = match table {
        Some(t) => format!(" in [{t}]"),
        None => String::new(),
    };
    match nearest {
        Some((_, n)) => format!("unknown key `{name}`{whose} (did you mean `{n}`?)"),
        None => {
            let list: Vec<&str> = known.split('`').skip(1).step_by(2).collect();
            format!(
                "unknown key `{name}`{whose}; the keys here are: {}",
                list.join(", ")
            )
        }
    }
}

/// A key set both under its name and under its seed name.
fn duplicate_alias(text: &str, span: Range<usize>, name: &str) -> (Range<usize>, String) {
    let aliases: Vec<&str> = ALIASES
        .iter()
        .filter(|(_, n)| *n == name)
        .map(|(a, _)| *a)
        .collect();
    let spans = top_level_keys(text);
    let used: Vec<&(String, Range<usize>)> = spans
        .iter()
        .filter(|(k, _)| k == name || aliases.contains(&k.as_str()))
        .collect();
    let at = used.last().map_or(span, |(_, s)| s.clone());
    let names: Vec<String> = used.iter().map(|(k, _)| format!("`{k}`")).collect();
    (
        at,
        format!(
            "`{name}` is set twice: as {} (the seed's names are aliases of ours); keep one",
            names.join(" and ")
        ),
    )
}

/// The top-level keys and their spans, in the file's order.
fn top_level_keys(text: &str) -> Vec<(String, Range<usize>)> {
    let Ok(table) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut keys: Vec<(String, Range<usize>)> = table
        .get_ref()
        .iter()
        .map(|(k, _)| (k.get_ref().to_string(), k.span()))
        .collect();
    keys.sort_by_key(|(_, s)| s.start);
    keys
}

/// Where the value of the dotted key `path` is written, if it is.
pub(crate) fn span_of(text: &str, path: &str) -> Option<Range<usize>> {
    let table = DeTable::parse(text).ok()?;
    let mut table = table.into_inner();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.get(part)?.clone();
        if parts.peek().is_none() {
            return Some(value.span());
        }
        match value.into_inner() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

/// The dotted key (`ami.window_seconds`) whose key or value holds byte `offset`.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    find(table.get_ref(), offset, "")
}

fn find(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = match prefix {
            "" => key.get_ref().to_string(),
            p => format!("{p}.{}", key.get_ref()),
        };
        if let DeValue::Table(inner) = value.get_ref()
            && let Some(found) = find(inner, offset, &path)
        {
            return Some(found);
        }
        let holds = |s: Range<usize>| s.start <= offset && offset < s.end.max(s.start + 1);
        if holds(key.span()) || holds(value.span()) {
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str, serde_message: &str, at: &str) -> String {
        let start = text.find(at).unwrap();
        reword(text, start..start + at.len(), serde_message).1
    }

    #[test]
    fn types_are_said_in_words_with_the_key() {
        assert_eq!(
            message(
                "tarpit_seconds = \"10\"\n",
                "invalid type: string \"10\", expected f64",
                "\"10\""
            ),
            "tarpit_seconds must be a number, not the string \"10\""
        );
        assert_eq!(
            message(
                "[ami]\nmax_auth_failures = -1\n",
                "invalid value: integer `-1`, expected usize",
                "-1"
            ),
            "ami.max_auth_failures must be a whole number, 0 or more, not -1"
        );
        assert_eq!(
            message(
                "[nftables]\nports = [70000]\n",
                "invalid value: integer `70000`, expected u16",
                "70000"
            ),
            "nftables.ports must be a whole number from 0 to 65535, not 70000"
        );
        assert_eq!(
            message(
                "log_ok_calls = 1\n",
                "invalid type: integer `1`, expected a boolean",
                "1"
            ),
            "log_ok_calls must be true or false, not 1"
        );
        assert_eq!(
            message(
                "trusted_networks = '10.0.0.0/8'\n",
                "invalid type: string \"10.0.0.0/8\", expected a sequence",
                "'10.0.0.0/8'"
            ),
            "trusted_networks must be a list in brackets, [ ], not the string \"10.0.0.0/8\""
        );
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        assert_eq!(
            message(
                "log_ok_call = true\n",
                "unknown field `log_ok_call`, expected one of `log_file`, `log_ok_calls`",
                "log_ok_call"
            ),
            "unknown key `log_ok_call` (did you mean `log_ok_calls`?)"
        );
        assert_eq!(
            message(
                "[ami]\nping = 1\n",
                "unknown field `ping`, expected `address`, `ping_interval_seconds`",
                "ping"
            ),
            "unknown key `ping` in [ami] (did you mean `ping_interval_seconds`?)"
        );
        assert_eq!(
            message(
                "[ami]\ncolour = 1\n",
                "unknown field `colour`, expected `address`, `ping_interval_seconds`",
                "colour"
            ),
            "unknown key `colour` in [ami]; the keys here are: address, ping_interval_seconds"
        );
        assert_eq!(
            message(
                "logfile_pth = 'x'\n",
                "unknown field `logfile_pth`, expected `log_file`",
                "logfile_pth"
            ),
            "unknown key `logfile_pth` (did you mean `logfile_path`?)"
        );
    }

    #[test]
    fn the_key_is_found_in_nested_and_inline_tables() {
        let text = "a = 1\n[ami]\nx = 2\n[crowdsec]\ny = { z = 3 }\n";
        assert_eq!(key_at(text, text.find('1').unwrap()).as_deref(), Some("a"));
        assert_eq!(
            key_at(text, text.find('2').unwrap()).as_deref(),
            Some("ami.x")
        );
        assert_eq!(
            key_at(text, text.find('3').unwrap()).as_deref(),
            Some("crowdsec.y.z")
        );
        assert_eq!(key_at("a = [1, 2]\n", 8).as_deref(), Some("a"));
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_column(b"ab\ncd", 0), (1, 1));
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx".as_bytes(), 2), (1, 2));
    }
}
