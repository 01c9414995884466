//! Asterisk's configuration files read as Asterisk reads them (`main/config.c`,
//! design.md §3h), so that what the audit says about a setting is what Asterisk does
//! with it — an `#include`d file, a template's secret, a `+=` — and where it was written.
//!
//! The grammar: `[name]` opens a section, `[name](!)` a template, `[name](a,b)` one that
//! inherits `a`'s then `b`'s settings (copied when the header is read, so the base must
//! come first), `[name](+)` adds to an existing one; `key = value`, `key => value`
//! (the same), `key += more` (appends to the key's last value); `;` comments, `\;` a
//! semicolon, `;-- … --;` block comments (nested; `;---` opens none); a BOM skipped;
//! `#include`/`#tryinclude` with `*`/`?` globs, relative to the configuration folder,
//! at most 10 files deep — a missing `#include` makes Asterisk refuse the whole file;
//! `#exec` is recorded and never run. Lines after an `#include` still belong to the
//! includer's section, as in Asterisk.
//!
//! Nothing here fails: what Asterisk would refuse or warn about is a [`Problem`] at its
//! file and line, and a file that cannot be read is listed, so the audit says what it
//! could not see.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// How deep Asterisk follows includes: the file itself is level 1.
pub const MAX_INCLUDE_LEVEL: usize = 10;

/// Where a section or a setting was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct At {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub at: At,
    /// The section (template or not) it was copied from by inheritance.
    pub inherited_from: Option<String>,
}

/// One `[name]` block, its inherited settings first, in the order Asterisk keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub at: At,
    /// `(!)`: a template, never an object of its own.
    pub template: bool,
    pub entries: Vec<Entry>,
}

impl Section {
    /// The last value of `key` (names compared without case): a later line wins.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The last entry of `key`, with where it was written.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// Every value of `key`, in order (`allow`, `permit`, `exten` repeat).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
    }
}

/// Something Asterisk would refuse (`fatal`: the whole file is not loaded) or warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: At,
    pub what: String,
    pub fatal: bool,
}

/// A file as read: its sections in order, and what could not be read or understood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conf {
    pub sections: Vec<Section>,
    pub problems: Vec<Problem>,
    /// Every file read, the top one first.
    pub files: Vec<PathBuf>,
    /// Files that exist but could not be read (permissions), with why.
    pub unread: Vec<(PathBuf, String)>,
    /// `#exec` lines: named, never run.
    pub execs: Vec<(At, String)>,
}

impl Conf {
    /// The sections that are objects (templates left out).
    pub fn objects(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| !s.template)
    }

    /// The objects named `name` (a name may be used twice; each is its own object).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.objects().filter(move |s| s.name == name)
    }

    /// The objects with `type = kind` (sorcery's files: pjsip.conf, ari.conf).
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.objects()
            .filter(move |s| s.get("type").is_some_and(|t| t.eq_ignore_ascii_case(kind)))
    }

    /// Whether the top file was found at all.
    pub fn exists(&self) -> bool {
        !self.files.is_empty()
    }
}

/// Asterisk's truth values (`ast_true`): `yes`, `true`, `y`, `t`, `1`, `on`.
pub fn yes(value: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|y| value.trim().eq_ignore_ascii_case(y))
}

/// Whether Asterisk loads `module` (`chan_sip`, with or without `.so`) by this
/// `modules.conf`, as `main/loader.c` decides: `noload` stops it; `autoload = yes`
/// loads the rest; otherwise only `load`, `require` or `preload` lines do — `autoload`
/// unset means no. A file Asterisk refuses loads nothing. No file at all: the audit
/// cannot know, and assumes the sample's `autoload = yes`.
pub fn loads(modules: &Conf, module: &str) -> bool {
    if !modules.exists() {
        return true;
    }
    if modules.problems.iter().any(|p| p.fatal) {
        return false;
    }
    let base = |name: &str| name.trim().trim_end_matches(".so").to_string();
    let module = base(module);
    let named = |keys: &[&str]| {
        modules.named("modules").any(|s| {
            s.entries.iter().any(|e| {
                keys.iter().any(|k| e.key.eq_ignore_ascii_case(k)) && base(&e.value) == module
            })
        })
    };
    if named(&["noload"]) {
        return false;
    }
    let autoload = modules
        .named("modules")
        .filter_map(|s| s.get("autoload"))
        .last()
        .is_some_and(yes);
    autoload || named(&["load", "require", "preload", "preload-require"])
}

/// Where the files come from: the disk, or (in tests) a map.
pub trait Files {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The files a name with `*`, `?` or `[…]` in its last part matches, sorted.
    fn matching(&self, pattern: &Path) -> Vec<PathBuf>;
}

/// The real filesystem.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn matching(&self, pattern: &Path) -> Vec<PathBuf> {
        let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
            return Vec::new();
        };
        let folder = pattern.parent().unwrap_or(Path::new("/"));
        let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|f| glob_match(name, f)))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }
}

/// Files in memory: the tests' configurations, and the benchmark's generated PBX.
#[derive(Debug, Default, Clone)]
pub struct Memory(pub BTreeMap<PathBuf, String>);

impl Memory {
    /// `(name, text)` pairs as files of `dir`.
    pub fn of(dir: &Path, files: &[(&str, &str)]) -> Self {
        Memory(
            files
                .iter()
                .map(|(n, t)| (dir.join(n), t.to_string()))
                .collect(),
        )
    }
}

impl Files for Memory {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn matching(&self, pattern: &Path) -> Vec<PathBuf> {
        let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.0
            .keys()
            .filter(|p| p.parent() == pattern.parent())
            .filter(|p| {
                p.file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| glob_match(name, f))
            })
            .cloned()
            .collect()
    }
}

/// Whether `name` matches a glob(3) pattern of `*`, `?` and `[…]` (a leading dot only
/// by a dot, as glob does).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    glob_from(&p, &n)
}

fn glob_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|skip| glob_from(&p[1..], &n[skip..])),
        Some('?') => !n.is_empty() && glob_from(&p[1..], &n[1..]),
        Some('[') => match (p.iter().position(|&c| c == ']'), n.first()) {
            (Some(end), Some(&c)) if end > 1 => {
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('!') | Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                in_class(class, c) != negate && glob_from(&p[end + 1..], &n[1..])
            }
            _ => n.first() == Some(&'[') && glob_from(&p[1..], &n[1..]),
        },
        Some(&c) => n.first() == Some(&c) && glob_from(&p[1..], &n[1..]),
    }
}

/// Whether `c` is in a `[…]` class's inside (`1-5#`: single characters and ranges), as
/// glob(3) and Asterisk's extension patterns both read it.
pub fn in_class(class: &[char], c: char) -> bool {
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            if class[i] <= c && c <= class[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if class[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// `file` (relative to `dir`, Asterisk's configuration folder) and everything it includes.
pub fn read(files: &impl Files, dir: &Path, file: &str) -> Conf {
    let mut reader = Reader {
        files,
        dir,
        conf: Conf::default(),
        current: None,
    };
    let top = reader.resolve(file);
    if !reader.load_all(&top, 1) {
        reader.conf.files.clear();
    }
    reader.conf
}

struct Reader<'a, F: Files> {
    files: &'a F,
    dir: &'a Path,
    conf: Conf,
    /// The section the last header opened, anywhere: an included file starts in it.
    current: Option<usize>,
}

/// How a line ended up after comments: what is left to read, and the block depth.
fn uncomment(raw: &str, depth: &mut usize) -> String {
    let mut out = String::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    // Asterisk keeps the text before a block comment that opens mid-line, and the text
    // after one that closes; inside a block only `;--` and `--;` count.
    let mut keep_from = if *depth == 0 { Some(0) } else { None };
    // `;--;` opens a block and does not close it: a close needs two characters of its own.
    let mut close_from = 0;
    while i < bytes.len() {
        if bytes[i] != b';' {
            i += 1;
            continue;
        }
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if escaped && *depth == 0 {
            if let Some(from) = keep_from {
                out.push_str(&raw[from..i - 1]);
                keep_from = Some(i);
            }
            i += 1;
            continue;
        }
        let opens = raw[i..].starts_with(";--") && !raw[i..].starts_with(";---");
        let closes = i >= close_from + 2 && &raw[i - 2..i] == "--";
        if opens && !escaped {
            if let Some(from) = keep_from.take() {
                out.push_str(&raw[from..i]);
            }
            *depth += 1;
            i += 3;
            close_from = i;
        } else if closes && *depth > 0 {
            *depth -= 1;
            i += 1;
            if *depth == 0 {
                keep_from = Some(i);
            }
        } else if *depth == 0 {
            if let Some(from) = keep_from.take() {
                out.push_str(&raw[from..i]);
            }
            return out;
        } else {
            i += 1;
        }
    }
    if let Some(from) = keep_from {
        out.push_str(&raw[from..]);
    }
    out
}

impl<F: Files> Reader<'_, F> {
    fn resolve(&self, name: &str) -> PathBuf {
        match Path::new(name).is_absolute() {
            true => PathBuf::from(name),
            false => self.dir.join(name),
        }
    }

    /// Every file `path` names (a glob may name several); false when none could be read.
    fn load_all(&mut self, path: &Path, level: usize) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let paths = match name.contains(['*', '?', '[']) {
            true => self.files.matching(path),
            false => vec![path.to_path_buf()],
        };
        let mut any = false;
        for path in paths {
            match self.files.read(&path) {
                Ok(text) => {
                    any = true;
                    self.conf.files.push(path.clone());
                    self.load_text(&path, &text, level);
                }
                // There but unreadable (permissions): Asterisk's user may read it, so
                // it is not a missing #include; the audit says it could not look.
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    any = true;
                    self.conf.unread.push((path, e.to_string()));
                }
                Err(_) => {}
            }
        }
        any
    }

    fn problem(&mut self, file: &Path, line: usize, fatal: bool, what: String) {
        self.conf.problems.push(Problem {
            at: At {
                file: file.to_path_buf(),
                line,
            },
            what,
            fatal,
        });
    }

    fn load_text(&mut self, file: &Path, text: &str, level: usize) {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut depth = 0;
        let mut current = self.current;
        for (i, raw) in text.lines().enumerate() {
            let line = uncomment(raw, &mut depth);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let at = At {
                file: file.to_path_buf(),
                line: i + 1,
            };
            match line.as_bytes()[0] {
                b'[' => current = self.header(line, at),
                b'#' => self.directive(line, at, level),
                _ => self.setting(line, at, current),
            }
        }
    }

    /// `[name]`, `[name](!)`, `[name](a,b)`, `[name](+)`: the section lines now go to.
    fn header(&mut self, line: &str, at: At) -> Option<usize> {
        let Some((name, rest)) = line[1..].split_once(']') else {
            self.problem(&at.file, at.line, true, "no closing ']'".into());
            return None;
        };
        let mut section = Section {
            name: name.to_string(),
            at: at.clone(),
            template: false,
            entries: Vec::new(),
        };
        let options = match rest.strip_prefix('(') {
            None => "",
            Some(o) => match o.split_once(')') {
                Some((o, _)) => o,
                None => {
                    self.problem(&at.file, at.line, true, "no closing ')'".into());
                    return None;
                }
            },
        };
        let mut append_to = None;
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let option = option.trim();
            if option == "!" {
                section.template = true;
            } else if option.starts_with('+') {
                match self.conf.sections.iter().rposition(|s| s.name == name) {
                    Some(i) => append_to = Some(i),
                    None => {
                        let what = format!("[{name}](+) adds to a section that does not exist");
                        self.problem(&at.file, at.line, true, what);
                        return None;
                    }
                }
            } else {
                let Some(base) = self.conf.sections.iter().find(|s| s.name == option) else {
                    let what = format!(
                        "[{name}] inherits from [{option}], which is not defined before it"
                    );
                    self.problem(&at.file, at.line, true, what);
                    return None;
                };
                let copied = base.entries.iter().map(|e| Entry {
                    inherited_from: Some(e.inherited_from.clone().unwrap_or(option.to_string())),
                    ..e.clone()
                });
                section.entries.extend(copied.collect::<Vec<_>>());
            }
        }
        let index = match append_to {
            Some(i) => {
                let target = &mut self.conf.sections[i];
                target.template |= section.template;
                target.entries.append(&mut section.entries);
                i
            }
            None => {
                self.conf.sections.push(section);
                self.conf.sections.len() - 1
            }
        };
        self.current = Some(index);
        Some(index)
    }

    /// `#include`, `#tryinclude`, `#exec`.
    fn directive(&mut self, line: &str, at: At, level: usize) {
        let (word, arg) = line[1..]
            .split_once(|c: char| c.is_ascii_whitespace())
            .map(|(w, a)| (w, a.trim()))
            .unwrap_or((&line[1..], ""));
        let arg = dequote(arg);
        match word.to_ascii_lowercase().as_str() {
            "exec" => self.conf.execs.push((at, arg.to_string())),
            kind @ ("include" | "tryinclude") if !arg.is_empty() => {
                if level >= MAX_INCLUDE_LEVEL {
                    let what = format!(
                        "#{kind} {arg}: more than {MAX_INCLUDE_LEVEL} files deep (a file including itself?)"
                    );
                    self.problem(&at.file, at.line, kind == "include", what);
                    return;
                }
                let path = self.resolve(arg);
                if !self.load_all(&path, level + 1) && kind == "include" {
                    let what = format!(
                        "#include {arg}: no such file, and Asterisk refuses the whole file for it"
                    );
                    self.problem(&at.file, at.line, true, what);
                }
            }
            other => {
                let what = format!("#{other}: not a directive Asterisk knows, or no file named");
                self.problem(&at.file, at.line, false, what);
            }
        }
    }

    /// `key = value`, `key => value`, `key += more`.
    fn setting(&mut self, line: &str, at: At, current: Option<usize>) {
        let Some(index) = current else {
            self.problem(
                &at.file,
                at.line,
                true,
                "a setting before any [section]".into(),
            );
            return;
        };
        let escaped = line.starts_with('\\');
        let body = if escaped { &line[1..] } else { line };
        let Some(eq) = body.find('=').filter(|&e| e > 0 || !escaped) else {
            self.problem(&at.file, at.line, false, "no '=' in the line".into());
            return;
        };
        let (key, value) = (&body[..eq], &body[eq + 1..]);
        let section = &mut self.conf.sections[index];
        if let Some(key) = key.strip_suffix('+') {
            let key = key.trim();
            if let Some(last) = section.entries.iter_mut().rev().find(|e| e.key == key) {
                last.value = format!("{}{}", last.value, value).trim().to_string();
                last.at = at;
                last.inherited_from = None;
                return;
            }
            return self.push(index, key, value, at);
        }
        let value = value.strip_prefix('>').unwrap_or(value);
        self.push(index, key.trim(), value, at);
    }

    fn push(&mut self, index: usize, key: &str, value: &str, at: At) {
        if key.is_empty() {
            self.problem(&at.file, at.line, false, "no name before '='".into());
            return;
        }
        self.conf.sections[index].entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            at,
            inherited_from: None,
        });
    }
}

/// An include's name without its `"…"` or `<…>`.
fn dequote(arg: &str) -> &str {
    for (open, close) in [('"', '"'), ('<', '>')] {
        if let Some(inner) = arg.strip_prefix(open).and_then(|a| a.strip_suffix(close)) {
            return inner;
        }
    }
    arg
}

#[cfg(test)]
mod tests {
    use super::*;
    fn conf(files: &[(&str, &str)]) -> Conf {
        let memory = Memory::of(Path::new("/etc/asterisk"), files);
        read(&memory, Path::new("/etc/asterisk"), files[0].0)
    }

    fn value<'a>(c: &'a Conf, section: &'a str, key: &str) -> Option<&'a str> {
        c.named(section).last()?.get(key)
    }

    #[test]
    fn templates_are_not_objects_and_inheritance_copies_in_order() {
        let c = conf(&[(
            "pjsip.conf",
            "[phone](!)\ntype=endpoint\ncontext=from-phones\n[other](!)\ncontext=other\n[1001](phone,other)\nauth=1001\n",
        )]);
        assert_eq!(c.objects().count(), 1);
        let s = c.named("1001").next().unwrap();
        assert_eq!(s.get("context"), Some("other"));
        assert_eq!(s.get("type"), Some("endpoint"));
        let ctx = s.entry("type").unwrap();
        assert_eq!(ctx.inherited_from.as_deref(), Some("phone"));
        assert_eq!(ctx.at.line, 2);
        assert_eq!(s.entry("auth").unwrap().inherited_from, None);
    }

    #[test]
    fn inheriting_from_what_is_not_yet_defined_is_refused() {
        let c = conf(&[("x.conf", "[a](later)\nk=v\n[later]\n")]);
        assert!(
            c.problems.iter().any(|p| p.fatal && p.at.line == 1),
            "{c:?}"
        );
    }

    #[test]
    fn a_plus_section_adds_to_the_existing_one_or_is_refused() {
        let c = conf(&[("x.conf", "[a]\nk=1\n[b]\n[a](+)\nj=2\n[none](+)\nz=1\n")]);
        assert_eq!(c.named("a").count(), 1);
        assert_eq!(value(&c, "a", "j"), Some("2"));
        assert!(
            c.problems
                .iter()
                .any(|p| p.fatal && p.what.contains("[none](+)"))
        );
    }

    #[test]
    fn plus_equals_appends_to_the_last_value_and_arrow_is_equals() {
        let c = conf(&[(
            "x.conf",
            "[a]\nallow=ulaw\nallow+=,alaw\nexten => 1,1,NoOp()\nnew+=x\n",
        )]);
        let a = c.named("a").next().unwrap();
        assert_eq!(a.get("allow"), Some("ulaw,alaw"));
        assert_eq!(a.get("exten"), Some("1,1,NoOp()"));
        assert_eq!(a.get("new"), Some("x"));
        assert_eq!(a.entry("allow").unwrap().at.line, 3);
    }

    #[test]
    fn comments_escapes_blocks_and_the_bom() {
        let c = conf(&[(
            "x.conf",
            "\u{feff}[a]\nk=v ; comment\nsecret=a\\;b\n;-- block\nhidden=1\n--; shown=2\nx=1 ;-- inline --; \n;--- not a block\nafter=3\n;-- outer ;-- inner --; still --;\nlast=4\n",
        )]);
        let a = c.named("a").next().unwrap();
        assert_eq!(a.get("k"), Some("v"));
        assert_eq!(a.get("secret"), Some("a;b"));
        assert_eq!(a.get("hidden"), None);
        assert_eq!(a.get("shown"), Some("2"));
        assert_eq!(a.get("x"), Some("1"));
        assert_eq!(a.get("after"), Some("3"));
        assert_eq!(a.get("still"), None);
        assert_eq!(a.get("last"), Some("4"));
        assert_eq!(a.entry("last").unwrap().at.line, 11);
    }

    #[test]
    fn includes_are_read_in_place_with_their_own_file_and_line() {
        let c = conf(&[
            (
                "pjsip.conf",
                "[global]\n#include \"pjsip_*.conf\"\nafter=1\n#tryinclude none.conf\n",
            ),
            ("pjsip_a.conf", "inside=1\n[a]\nk=1\n"),
            ("pjsip_b.conf", "[b]\nk=2\n"),
        ]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let global = c.named("global").next().unwrap();
        // The first lines of an included file, and the includer's after it, stay in
        // the includer's section: Asterisk's `cat` is the includer's own.
        assert_eq!(global.get("inside"), Some("1"));
        assert_eq!(global.get("after"), Some("1"));
        let a = c.named("a").next().unwrap();
        assert_eq!(
            a.entry("k").unwrap().at.file,
            Path::new("/etc/asterisk/pjsip_a.conf")
        );
        assert_eq!(a.entry("k").unwrap().at.line, 3);
        assert_eq!(value(&c, "b", "k"), Some("2"));
        assert_eq!(c.files.len(), 3);
    }

    #[test]
    fn a_missing_include_invalidates_and_a_self_include_stops() {
        let c = conf(&[("x.conf", "[a]\n#include missing.conf\n#include x.conf\n")]);
        assert!(
            c.problems
                .iter()
                .any(|p| p.fatal && p.what.contains("missing.conf"))
        );
        assert!(c.problems.iter().any(|p| p.what.contains("deep")));
        assert_eq!(c.files.len(), MAX_INCLUDE_LEVEL);
    }

    #[test]
    fn exec_is_named_never_run() {
        let c = conf(&[("x.conf", "[a]\n#exec /usr/bin/touch /tmp/x\n")]);
        assert_eq!(c.execs.len(), 1);
        assert_eq!(c.execs[0].1, "/usr/bin/touch /tmp/x");
    }

    #[test]
    fn globs_match_as_glob_does() {
        assert!(glob_match("pjsip_*.conf", "pjsip_custom.conf"));
        assert!(glob_match("a?[0-9].conf", "ab7.conf"));
        assert!(!glob_match("a?[!0-9].conf", "ab7.conf"));
        assert!(!glob_match("*.conf", ".hidden.conf"));
    }

    /// One line of a generated file.
    #[derive(Debug, Clone)]
    enum Item {
        Header {
            name: u8,
            template: bool,
            bases: Vec<u8>,
        },
        Set {
            key: u8,
            value: u8,
        },
        Include {
            file: usize,
        },
    }

    /// A forest: file `i` includes only files after it, each at most once.
    fn forest() -> impl proptest::strategy::Strategy<Value = Vec<Vec<Item>>> {
        use proptest::prelude::*;
        let item = prop_oneof![
            (
                0u8..6,
                any::<bool>(),
                proptest::collection::vec(0u8..6, 0..3)
            )
                .prop_map(|(name, template, bases)| Item::Header {
                    name,
                    template,
                    bases
                }),
            (0u8..4, 0u8..50).prop_map(|(key, value)| Item::Set { key, value }),
            (1usize..6).prop_map(|file| Item::Include { file }),
        ];
        proptest::collection::vec(proptest::collection::vec(item, 0..8), 6)
    }

    fn render(items: &[Item], me: usize, included: &mut [bool]) -> String {
        let mut text = String::new();
        for item in items {
            match item {
                Item::Header {
                    name,
                    template,
                    bases,
                } => {
                    let mut options: Vec<String> = bases.iter().map(|b| format!("s{b}")).collect();
                    if *template {
                        options.insert(0, "!".into());
                    }
                    text += &match options.is_empty() {
                        true => format!("[s{name}]\n"),
                        false => format!("[s{name}]({})\n", options.join(",")),
                    };
                }
                Item::Set { key, value } => text += &format!("k{key} = v{value}\n"),
                Item::Include { file } if *file > me && !included[*file] => {
                    included[*file] = true;
                    text += &format!("#include f{file}.conf\n");
                }
                Item::Include { .. } => text += "; no include here\n",
            }
        }
        text
    }

    /// A section as the reference sees it: name, template, `(key, value, line, from)`.
    type Flat = (String, bool, Vec<(String, String, usize, Option<String>)>);

    /// The reference: the naive expansion of the generated files' simple lines (no
    /// comments, no escapes), pasting each included file where it is named and
    /// copying bases when a header names them.
    fn expand(texts: &[String], me: usize, out: &mut Vec<Flat>, global: &mut Option<usize>) {
        let mut current = *global;
        let lines: Vec<&str> = texts[me].lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if let Some(file) = line.strip_prefix("#include f") {
                let child: usize = file.trim_end_matches(".conf").parse().unwrap();
                expand(texts, child, out, global);
            } else if let Some(header) = line.strip_prefix('[') {
                let (name, options) = header.split_once(']').unwrap();
                let options: Vec<&str> = options
                    .trim_matches(|c| c == '(' || c == ')')
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .collect();
                let mut entries = Vec::new();
                let mut ok = true;
                for base in options.iter().filter(|o| **o != "!") {
                    match out.iter().find(|s| s.0 == *base) {
                        Some(s) => entries.extend(s.2.iter().map(|e| {
                            (
                                e.0.clone(),
                                e.1.clone(),
                                e.2,
                                Some(e.3.clone().unwrap_or(base.to_string())),
                            )
                        })),
                        None => ok = false,
                    }
                }
                current = match ok {
                    true => {
                        out.push((name.to_string(), options.contains(&"!"), entries));
                        Some(out.len() - 1)
                    }
                    false => None,
                };
                *global = current.or(*global);
            } else if let Some((k, v)) = line.split_once(" = ") {
                if let Some(c) = current {
                    out[c].2.push((k.to_string(), v.to_string(), n + 1, None));
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_forest_of_includes_and_templates_reads_as_its_reference(files in forest()) {
            let mut included = vec![false; files.len()];
            let texts: Vec<String> =
                (0..files.len()).map(|i| render(&files[i], i, &mut included)).collect();
            let memory = Memory(
                texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (PathBuf::from(format!("/c/f{i}.conf")), t.clone()))
                    .collect(),
            );
            let got = read(&memory, Path::new("/c"), "f0.conf");
            let mut want = Vec::new();
            expand(&texts, 0, &mut want, &mut None);
            let got: Vec<_> = got
                .sections
                .iter()
                .map(|s| {
                    let entries = s
                        .entries
                        .iter()
                        .map(|e| (e.key.clone(), e.value.clone(), e.at.line, e.inherited_from.clone()))
                        .collect::<Vec<_>>();
                    (s.name.clone(), s.template, entries)
                })
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
