//! Every relative link of the project's Markdown (README, ARCHITECTURE, CHANGELOG and
//! `doc/`) names a file that exists, and every `#anchor` a heading of its file, slugged
//! as GitHub slugs it: a renamed section breaks this test, not a reader's click.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{files_under, repo};

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped,
/// spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The lines of a Markdown text outside its fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut fenced = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return false;
        }
        !fenced
    })
}

/// The anchors of a Markdown file's headings (outside code blocks), with GitHub's
/// `-1`, `-2` for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose_lines(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let base = slug(heading.trim_start_matches('#'));
        let mut name = base.clone();
        let mut n = 0;
        while out.contains(&name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        out.insert(name);
    }
    out
}

/// The `](target)` links of a Markdown text, outside code blocks and inline code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        // Inline code is no link: drop what stands between backticks.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        for part in prose.split("](").skip(1) {
            if let Some(end) = part.find(')') {
                out.push(part[..end].to_string());
            }
        }
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "CHANGELOG.md"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    if let Ok(entries) = std::fs::read_dir(root.join("doc")) {
        files.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md")),
        );
    }
    files
}

fn broken_links_of(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut broken = Vec::new();
    for link in links(&text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = match path {
            "" => file.to_path_buf(),
            p => file.parent().unwrap().join(p),
        };
        if !target.exists() {
            broken.push(format!("{link}: no file {}", target.display()));
            continue;
        }
        if anchor.is_empty() {
            continue;
        }
        let target_text = std::fs::read_to_string(&target).unwrap_or_default();
        if !anchors(&target_text).contains(anchor) {
            broken.push(format!(
                "{link}: no heading #{anchor} in {}",
                target.display()
            ));
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        checked += links(&std::fs::read_to_string(&file).unwrap()).len();
        for b in broken_links_of(&file) {
            broken.push(format!("{}: {b}", file.display()));
        }
    }
    assert!(checked > 30, "the links were found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_a_broken_anchor_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("a.md");
    std::fs::write(
        &page,
        "# Kernel bans: nftables from the daemon\n## FAQ\n## FAQ\n\
         [ok](#kernel-bans-nftables-from-the-daemon) [ok](#faq-1) [bad](#faq-2) \
         [gone](b.md) `[code](#nowhere)`\n```\n[fenced](#nowhere)\n```\n",
    )
    .unwrap();
    let broken = broken_links_of(&page);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].starts_with("#faq-2: no heading"), "{broken:?}");
    assert!(broken[1].starts_with("b.md: no file"), "{broken:?}");
}

/// `(chapter, section)` for each `doc/NAME.md` a text names, with the `"Section"` (as
/// a Rust string writes it, `\"…\"`) that may follow it after `, `.
fn chapters_named(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("doc/") {
        let rest = &text[at + 4..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(rest.len());
        let Some(after) = rest[name_len..].strip_prefix(".md") else {
            continue;
        };
        if name_len == 0 {
            continue;
        }
        let section = after
            .strip_prefix(", \\\"")
            .and_then(|s| s.split_once("\\\""))
            .map(|(section, _)| section.to_string());
        out.push((format!("{}.md", &rest[..name_len]), section));
    }
    out
}

/// Every section an error message names (`doc/install.md, "The log folder"`) is a
/// heading of that chapter: a message never sends an administrator to nowhere.
#[test]
fn every_chapter_and_section_a_message_names_exists() {
    let mut named = 0;
    for at in files_under(&repo().join("src")) {
        let text = std::fs::read_to_string(&at).unwrap();
        for (chapter, section) in chapters_named(&text) {
            named += 1;
            let Ok(chapter_text) = std::fs::read_to_string(repo().join("doc").join(&chapter))
            else {
                panic!("{} names doc/{chapter}, which does not exist", at.display());
            };
            if let Some(section) = section {
                assert!(
                    chapter_text
                        .lines()
                        .any(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == section),
                    "{} names doc/{chapter}, \"{section}\", which is no heading there",
                    at.display()
                );
            }
        }
    }
    assert!(
        named >= 4,
        "the messages that name a chapter were found: {named}"
    );
}

#[test]
fn a_named_section_is_read_as_a_rust_string_writes_it() {
    assert_eq!(
        chapters_named(r#"x (doc/install.md, \"The log folder\") and doc/faq.md. doc/x"#),
        [
            ("install.md".to_string(), Some("The log folder".to_string())),
            ("faq.md".to_string(), None)
        ]
    );
}
