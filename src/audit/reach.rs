//! The dialplan as a graph, walked from every guest context: a guest chooses the number
//! it dials, so every extension of the context and of what it `include`s is reachable;
//! from there a priority leads to the next one, `Goto`/`GotoIf` (both branches, unless
//! `[globals]` make the condition constant), `Gosub`, `Macro`, `Dial(Local/…)` and the
//! applications of an `ExecIf` lead elsewhere, and `Hangup`/`Goto`/`Return` end a line
//! of execution. A `Dial` to a trunk reached this way is toll fraud without any
//! password: it is printed as the chain that gets there (design.md §3h; FreePBX's `from-sip-external`, `ALLOW_SIP_ANON` and its
//! `Dial(${OUT_${DIAL_TRUNK}}/…)` with `OUT_n` in `[globals]` understood).
//!
//! A `Local` channel is an edge, never a trunk; a cycle ends where it closes; a target
//! the audit cannot resolve (a context named by a channel variable) is not followed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::accounts::{self, Guest};
use super::{Asterisk, Finding, Severity};
use crate::asterisk_conf::{At, Conf};

/// One priority: `exten => name,prio(label),App(args)`.
#[derive(Debug, Clone)]
pub struct Priority {
    pub number: u32,
    pub label: Option<String>,
    pub app: String,
    /// With `[globals]` expanded, as the walk reads them.
    pub args: String,
    /// As written, as the chain prints them (Asterisk's `dialplan show` does too).
    pub written: String,
    pub at: At,
}

#[derive(Debug, Clone)]
pub struct Extension {
    pub name: String,
    pub priorities: Vec<Priority>,
}

#[derive(Debug, Clone, Default)]
pub struct Context {
    pub name: String,
    pub extensions: Vec<Extension>,
    pub includes: Vec<(String, At)>,
}

/// The dialplan of extensions.conf (and what it includes), contexts merged by name.
#[derive(Debug, Clone, Default)]
pub struct Dialplan {
    pub contexts: Vec<Context>,
    index: HashMap<String, usize>,
    pub globals: BTreeMap<String, String>,
}

impl Dialplan {
    pub fn from_conf(conf: &Conf) -> Self {
        let mut plan = Dialplan::default();
        for globals in conf.named("globals") {
            for e in &globals.entries {
                plan.globals.insert(e.key.clone(), e.value.clone());
            }
        }
        for section in conf.objects() {
            if matches!(section.name.as_str(), "general" | "globals") {
                continue;
            }
            let name = plan.expand(&section.name);
            let i = plan.context_index(&name);
            let mut last: Option<(String, u32)> = None;
            for e in &section.entries {
                match e.key.to_ascii_lowercase().as_str() {
                    "exten" => {
                        let (ext, rest) = split_field(&e.value);
                        let ext = plan.expand(ext.split('/').next().unwrap_or(ext).trim());
                        let previous = last.as_ref().filter(|(n, _)| *n == ext).map(|(_, p)| *p);
                        if let Some(p) = plan.add(i, &ext, rest, previous, &e.at) {
                            last = Some((ext, p));
                        }
                    }
                    "same" => {
                        if let Some((ext, previous)) = last.clone()
                            && let Some(p) = plan.add(i, &ext, &e.value, Some(previous), &e.at)
                        {
                            last = Some((ext, p));
                        }
                    }
                    "include" => {
                        let target = e.value.split([',', '|']).next().unwrap_or("").trim();
                        let target = plan.expand(target);
                        plan.contexts[i].includes.push((target, e.at.clone()));
                    }
                    _ => {}
                }
            }
        }
        for c in &mut plan.contexts {
            for x in &mut c.extensions {
                x.priorities.sort_by_key(|p| p.number);
            }
        }
        plan
    }

    fn context_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.contexts.push(Context {
            name: name.to_string(),
            ..Context::default()
        });
        self.index.insert(name.to_string(), self.contexts.len() - 1);
        self.contexts.len() - 1
    }

    pub fn context(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// `prio(label),App(args)` added to `ext`; the priority's number.
    fn add(
        &mut self,
        ctx: usize,
        ext: &str,
        rest: &str,
        previous: Option<u32>,
        at: &At,
    ) -> Option<u32> {
        let (prio, app) = split_field(rest);
        let (prio, label) = match prio.split_once('(') {
            Some((p, l)) => (p.trim(), Some(l.trim_end_matches(')').to_string())),
            None => (prio.trim(), None),
        };
        let number = match prio {
            "n" => previous.map_or(1, |p| p + 1),
            "hint" => return None,
            p => p.parse().ok().or_else(|| {
                let (base, plus) = p.split_once('+')?;
                let base = if base == "n" {
                    previous?
                } else {
                    base.parse().ok()?
                };
                Some(base + plus.parse::<u32>().ok()?)
            })?,
        };
        let app = app.trim();
        let (name, args) = match app.split_once('(') {
            Some((n, a)) => (n.trim(), a.strip_suffix(')').unwrap_or(a)),
            None => (
                app.split(',').next().unwrap_or(app).trim(),
                app.split_once(',').map_or("", |x| x.1),
            ),
        };
        let priority = Priority {
            number,
            label,
            app: name.to_string(),
            args: self.expand(args),
            written: args.to_string(),
            at: at.clone(),
        };
        let context = &mut self.contexts[ctx];
        match context.extensions.iter_mut().find(|x| x.name == ext) {
            Some(x) => x.priorities.push(priority),
            None => context.extensions.push(Extension {
                name: ext.to_string(),
                priorities: vec![priority],
            }),
        }
        Some(number)
    }

    /// `${NAME}` of `[globals]` replaced, inner ones first (`${OUT_${TRUNK}}`).
    pub fn expand(&self, text: &str) -> String {
        let mut text = text.to_string();
        for _ in 0..4 {
            let mut changed = false;
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}');
                let name = end
                    .map(|e| &after[..e])
                    .filter(|n| !n.contains(['$', '{', ':', '(']));
                match (name, name.and_then(|n| self.globals.get(n))) {
                    (Some(n), Some(value)) => {
                        out.push_str(value);
                        rest = &after[n.len() + 1..];
                        changed = true;
                    }
                    _ => {
                        out.push_str("${");
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            text = out;
            if !changed {
                break;
            }
        }
        text
    }
}

/// The text up to the first comma outside `[…]` and `(…)`, and the rest.
fn split_field(text: &str) -> (&str, &str) {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth <= 0 => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

/// Arguments split at commas outside `(…)`, `[…]` and `${…}`.
fn split_args(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' | '|' if depth <= 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out
}

/// Whether the dialled `number` matches extension `name` (`_` patterns: `X`, `Z`, `N`,
/// `[…]`, `.` one or more, `!` zero or more; `-` ignored). Not the fraud check's
/// `ExtensionPatterns`: that one refuses what is no dialled number (`s`, letters, `-`),
/// as a setting must, and compiles a regex; a dialplan has thousands of names of every
/// kind, each matched a few times.
pub fn matches(name: &str, number: &str) -> bool {
    let Some(pattern) = name.strip_prefix('_') else {
        return name.eq_ignore_ascii_case(number);
    };
    let mut in_class = false;
    let pattern: Vec<char> = pattern
        .chars()
        .filter(|&c| {
            in_class = (in_class || c == '[') && c != ']';
            c != '-' || in_class
        })
        .collect();
    let number: Vec<char> = number.chars().collect();
    match_from(&pattern, &number)
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let Some(&c) = p.first() else {
        return n.is_empty();
    };
    match c {
        '.' => !n.is_empty() && (1..=n.len()).any(|k| match_from(&p[1..], &n[k..])),
        '!' => (0..=n.len()).any(|k| match_from(&p[1..], &n[k..])),
        '[' => {
            let Some(end) = p.iter().position(|&x| x == ']') else {
                return false;
            };
            let Some(&d) = n.first() else { return false };
            crate::asterisk_conf::in_class(&p[1..end], d) && match_from(&p[end + 1..], &n[1..])
        }
        _ => {
            let Some(&d) = n.first() else { return false };
            let ok = match c.to_ascii_uppercase() {
                'X' => d.is_ascii_digit(),
                'Z' => ('1'..='9').contains(&d),
                'N' => ('2'..='9').contains(&d),
                _ => c.eq_ignore_ascii_case(&d),
            };
            ok && match_from(&p[1..], &n[1..])
        }
    }
}

/// A point of execution: a priority of an extension of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Node {
    ctx: usize,
    ext: usize,
    prio: usize,
}

/// Which extension a jump names: one number, or whatever the caller or a variable says.
#[derive(Debug, Clone)]
enum Exten {
    Any,
    Is(String),
}

/// Which priority a jump names.
#[derive(Debug, Clone)]
enum Prio {
    First,
    Number(u32),
    Label(String),
}

/// What a `Dial` device is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Device {
    /// Leaves the PBX: the string says which trunk.
    Trunk(String),
    /// `Local/exten@context`: the dialplan again.
    Local(String, String),
    Other,
}

/// The PBX's trunks, to tell a trunk `Dial` from a phone's.
struct Trunks<'a> {
    asterisk: &'a Asterisk,
    plan: &'a Dialplan,
}

impl Trunks<'_> {
    fn pjsip_endpoint(&self, name: &str) -> Option<bool> {
        let pjsip = &self.asterisk.pjsip;
        let endpoint = pjsip.of_type("endpoint").find(|e| e.name == name)?;
        let static_contact = endpoint.get("aors").is_some_and(|aors| {
            aors.split(',').any(|a| {
                pjsip
                    .of_type("aor")
                    .any(|s| s.name == a.trim() && s.get("contact").is_some())
            })
        });
        let registered = pjsip
            .of_type("registration")
            .any(|r| r.get("endpoint") == Some(name));
        Some(endpoint.get("outbound_auth").is_some() || static_contact || registered)
    }

    fn sip_peer(&self, conf: &Conf, name: &str) -> Option<bool> {
        let peer = conf.named(name).last()?;
        Some(
            peer.get("host")
                .is_some_and(|h| !h.eq_ignore_ascii_case("dynamic")),
        )
    }

    fn device(&self, device: &str) -> Device {
        let device = device.trim();
        if device.contains("${OUT_") {
            let mut outs: Vec<&str> = self
                .plan
                .globals
                .iter()
                .filter(|(k, _)| k.starts_with("OUT_"))
                .map(|(_, v)| v.as_str())
                .collect();
            outs.dedup();
            return Device::Trunk(match outs.is_empty() {
                true => "a FreePBX trunk (OUT_n)".to_string(),
                false => outs.join(" or "),
            });
        }
        let Some((tech, rest)) = device.split_once('/') else {
            return Device::Other;
        };
        let tech_lower = tech.to_ascii_lowercase();
        let (number, peer) = match rest.split_once('@') {
            Some((n, p)) => (Some(n), p.split('/').next().unwrap_or(p)),
            None => (
                rest.split_once('/').map(|x| x.1),
                rest.split('/').next().unwrap_or(rest),
            ),
        };
        let trunk = || Device::Trunk(format!("{tech}/{peer}"));
        match tech_lower.as_str() {
            "local" => {
                let target = rest.split('/').next().unwrap_or(rest);
                let (exten, context) = target.split_once('@').unwrap_or((target, "default"));
                Device::Local(exten.to_string(), context.to_string())
            }
            "dahdi" | "zap" | "misdn" | "ooh323" | "h323" | "capi" | "woomera" => trunk(),
            "pjsip" => {
                if rest.starts_with("sip:") || rest.starts_with("sips:") {
                    return Device::Trunk(format!("{tech}/{rest}"));
                }
                match (self.pjsip_endpoint(peer), rest.contains('@')) {
                    (Some(true), _) => trunk(),
                    (None, true) if !peer.contains("${") => {
                        Device::Trunk(format!("{tech}/{peer} (not an endpoint of pjsip.conf)"))
                    }
                    _ => Device::Other,
                }
            }
            "sip" | "iax2" => {
                let conf = if tech_lower == "sip" {
                    &self.asterisk.sip
                } else {
                    &self.asterisk.iax
                };
                match self.sip_peer(conf, peer) {
                    Some(true) => trunk(),
                    Some(false) if number.is_none() => Device::Other,
                    _ if peer.contains('.') || number.is_some() => trunk(),
                    _ => Device::Other,
                }
            }
            _ => Device::Other,
        }
    }
}

/// `$[ "a" = "b" ]` with nothing left to expand: its value; `None` when it depends on
/// the call.
fn constant(condition: &str) -> Option<bool> {
    let inner = condition.trim().strip_prefix("$[")?.strip_suffix(']')?;
    if inner.contains("${") {
        return None;
    }
    let (left, right, equal) = match inner.split_once("!=") {
        Some((l, r)) => (l, r, false),
        None => {
            let (l, r) = inner.split_once('=')?;
            (l, r, true)
        }
    };
    let clean = |s: &str| s.trim().trim_matches('"').to_string();
    Some((clean(left) == clean(right)) == equal)
}

/// The jumps in `Goto`'s syntax: `prio`, `exten,prio`, `context,exten,prio`.
fn target(here_ctx: &str, spec: &str) -> Option<(String, Option<Exten>, Prio)> {
    let parts = split_args(spec);
    let prio = |p: &str| {
        let p = p.split('(').next().unwrap_or(p).trim();
        match p.parse() {
            Ok(n) => Prio::Number(n),
            Err(_) if p.contains("${") || p.is_empty() => Prio::First,
            Err(_) => Prio::Label(p.to_string()),
        }
    };
    let exten = |e: &str| match e.contains("${") || e.is_empty() {
        true => Exten::Any,
        false => Exten::Is(e.to_string()),
    };
    match parts.as_slice() {
        [p] if !p.is_empty() => Some((here_ctx.to_string(), None, prio(p))),
        [e, p] => Some((here_ctx.to_string(), Some(exten(e)), prio(p))),
        [c, e, p, ..] if !c.contains("${") => Some((c.to_string(), Some(exten(e)), prio(p))),
        _ => None,
    }
}

/// A jump out of a priority, with whether execution also goes on to the next one.
struct Jumps {
    to: Vec<(String, Option<Exten>, Prio)>,
    falls_through: bool,
}

fn jumps(ctx: &str, app: &str, args: &str) -> Jumps {
    let app = app.to_ascii_lowercase();
    let mut to = Vec::new();
    let falls_through = match app.as_str() {
        "goto" => {
            to.extend(target(ctx, args));
            false
        }
        "gosub" => {
            to.extend(target(ctx, args));
            true
        }
        "gotoif" | "gosubif" | "gotoiftime" => {
            let (condition, branches) = args.split_once('?').unwrap_or((args, ""));
            let (yes, no) = branches.split_once(':').unwrap_or((branches, ""));
            let known = if app == "gotoiftime" {
                None
            } else {
                constant(condition)
            };
            let mut falls = false;
            for (branch, taken) in [(yes, known != Some(false)), (no, known != Some(true))] {
                if !taken {
                    continue;
                }
                match branch.trim().is_empty() {
                    true => falls = true,
                    false => to.extend(target(ctx, branch)),
                }
            }
            falls || app == "gosubif"
        }
        "macro" => {
            let name = split_args(args)[0].to_string();
            to.push((
                format!("macro-{name}"),
                Some(Exten::Is("s".into())),
                Prio::Number(1),
            ));
            true
        }
        "hangup" | "return" | "macroexit" | "congestion" | "busy" => false,
        _ => true,
    };
    Jumps { to, falls_through }
}

/// The applications a priority runs: itself, or for `ExecIf(cond?App(args):App(args))`
/// the branch apps (one, when `[globals]` make the condition constant).
fn runs_apps(app: &str, args: &str) -> Vec<(String, String)> {
    if !app.eq_ignore_ascii_case("execif") {
        return vec![(app.to_string(), args.to_string())];
    }
    let Some((condition, branches)) = args.split_once('?') else {
        return Vec::new();
    };
    let mut depth = 0i32;
    let split = branches.char_indices().find_map(|(i, c)| {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ':' if depth == 0 => return Some(i),
            _ => {}
        }
        None
    });
    let (yes, no) = match split {
        Some(i) => (&branches[..i], &branches[i + 1..]),
        None => (branches, ""),
    };
    let known = constant(condition);
    [(yes, known != Some(false)), (no, known != Some(true))]
        .into_iter()
        .filter(|(branch, taken)| *taken && !branch.trim().is_empty())
        .map(|(branch, _)| match branch.split_once('(') {
            Some((a, rest)) => (
                a.trim().to_string(),
                rest.strip_suffix(')').unwrap_or(rest).to_string(),
            ),
            None => (branch.trim().to_string(), String::new()),
        })
        .collect()
}

/// Whether a priority runs extsecurity's check (System, AGI or FastAGI).
fn runs_check(app: &str, args: &str) -> bool {
    let app = app.to_ascii_lowercase();
    let agi = matches!(app.as_str(), "agi" | "eagi");
    (agi || matches!(app.as_str(), "system" | "trysystem"))
        && (args.contains("extsecurity")
            || (agi && args.contains("agi://") && args.contains("/check")))
        || (app == "gosub" && args.contains("extsec-"))
}

/// One guest context's walk: the trunk dials it reaches, with their chains, and
/// whether extsecurity's check runs on the way.
pub struct Walk {
    pub trunk_dials: Vec<(At, String, Vec<String>)>,
    pub checked: bool,
}

struct Walker<'a> {
    plan: &'a Dialplan,
    trunks: Trunks<'a>,
    parent: HashMap<Node, (Option<Node>, Option<String>)>,
    queue: VecDeque<Node>,
}

impl Walker<'_> {
    /// The nodes a jump lands on, each with the `include` hops that led there.
    fn land(&self, ctx: &str, exten: &Exten, prio: &Prio) -> Vec<(Node, Option<String>)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(ctx.to_string(), None::<String>)];
        while let Some((name, via)) = stack.pop() {
            let Some(c) = self.plan.context(&name) else {
                continue;
            };
            if !seen.insert(c) {
                continue;
            }
            let context = &self.plan.contexts[c];
            for (x, ext) in context.extensions.iter().enumerate() {
                let hit = match exten {
                    Exten::Any => true,
                    Exten::Is(n) => matches(&ext.name, n),
                };
                let p = match prio {
                    Prio::First => (!ext.priorities.is_empty()).then_some(0),
                    Prio::Number(n) => ext.priorities.iter().position(|p| p.number == *n),
                    Prio::Label(l) => ext
                        .priorities
                        .iter()
                        .position(|p| p.label.as_deref() == Some(l)),
                };
                if let (true, Some(prio)) = (hit, p) {
                    out.push((
                        Node {
                            ctx: c,
                            ext: x,
                            prio,
                        },
                        via.clone(),
                    ));
                }
            }
            for (inc, _) in context.includes.iter().rev() {
                let hop = format!("{name} include => {inc}");
                let via = Some(match &via {
                    Some(v) => format!("{v} → {hop}"),
                    None => hop,
                });
                stack.push((inc.clone(), via));
            }
        }
        out
    }

    fn visit(&mut self, node: Node, from: Option<Node>, via: Option<String>) {
        if self.parent.contains_key(&node) {
            return;
        }
        self.parent.insert(node, (from, via));
        self.queue.push_back(node);
    }

    fn describe(&self, n: Node) -> String {
        let c = &self.plan.contexts[n.ctx];
        let x = &c.extensions[n.ext];
        let p = &x.priorities[n.prio];
        format!(
            "{},{},{} {}({})",
            c.name, x.name, p.number, p.app, p.written
        )
    }

    fn chain(&self, start: String, end: Node, trunk: &str) -> Vec<String> {
        let mut nodes = vec![end];
        while let Some((Some(prev), _)) = self.parent.get(nodes.last().unwrap()) {
            nodes.push(*prev);
        }
        nodes.reverse();
        let mut steps = vec![start];
        for (i, n) in nodes.iter().enumerate() {
            if let Some((_, Some(via))) = self.parent.get(n) {
                steps.push(via.clone());
            }
            let jumps_on = nodes
                .get(i + 1)
                .is_some_and(|next| (next.ctx, next.ext) != (n.ctx, n.ext));
            if i == 0 && nodes.len() > 1 && !jumps_on {
                continue;
            }
            if jumps_on || i + 1 == nodes.len() {
                steps.push(self.describe(*n));
            }
        }
        if let Some(last) = steps.last_mut() {
            last.push_str(&format!(" = {trunk}"));
        }
        steps
    }

    fn walk(mut self, guest: &Guest) -> Walk {
        let mut walk = Walk {
            trunk_dials: Vec::new(),
            checked: false,
        };
        for (node, via) in self.land(&guest.context, &Exten::Any, &Prio::First) {
            self.visit(node, None, via);
        }
        let start = format!("{} ({})", guest.context, guest.how);
        while let Some(n) = self.queue.pop_front() {
            let context = &self.plan.contexts[n.ctx];
            let ext = &context.extensions[n.ext];
            let p = &ext.priorities[n.prio];
            let mut next = Jumps {
                to: Vec::new(),
                falls_through: true,
            };
            let runs = runs_apps(&p.app, &p.args);
            let conditional = runs.len() != 1 || !p.app.eq_ignore_ascii_case(&runs[0].0);
            for (app, args) in &runs {
                walk.checked |= runs_check(app, args);
                let j = jumps(&context.name, app, args);
                next.to.extend(j.to);
                // ExecIf goes on to the next priority whatever its branch did not do.
                next.falls_through &= j.falls_through || conditional;
                if !app.eq_ignore_ascii_case("dial") {
                    continue;
                }
                let devices = split_args(args)[0];
                for device in devices.split('&') {
                    match self.trunks.device(device) {
                        Device::Trunk(t) => {
                            let chain = self.chain(start.clone(), n, &t);
                            walk.trunk_dials.push((p.at.clone(), t, chain));
                        }
                        Device::Local(e, c) => {
                            let exten = if e.contains("${") {
                                Exten::Any
                            } else {
                                Exten::Is(e)
                            };
                            next.to.push((c, Some(exten), Prio::First));
                        }
                        Device::Other => {}
                    }
                }
            }
            for (ctx, exten, prio) in next.to {
                let exten = exten.unwrap_or_else(|| Exten::Is(ext.name.clone()));
                let same = ctx == context.name && matches!(&exten, Exten::Is(e) if *e == ext.name);
                let landed = match same {
                    true => self.land_here(n, &prio),
                    false => self.land(&ctx, &exten, &prio),
                };
                for (to, via) in landed {
                    self.visit(to, Some(n), via);
                }
            }
            if next.falls_through && n.prio + 1 < ext.priorities.len() {
                self.visit(
                    Node {
                        prio: n.prio + 1,
                        ..n
                    },
                    Some(n),
                    None,
                );
            }
        }
        walk
    }

    /// A jump within the same extension.
    fn land_here(&self, n: Node, prio: &Prio) -> Vec<(Node, Option<String>)> {
        let ext = &self.plan.contexts[n.ctx].extensions[n.ext];
        let p = match prio {
            Prio::First => Some(0),
            Prio::Number(k) => ext.priorities.iter().position(|p| p.number == *k),
            Prio::Label(l) => ext
                .priorities
                .iter()
                .position(|p| p.label.as_deref() == Some(l)),
        };
        p.map(|prio| (Node { prio, ..n }, None))
            .into_iter()
            .collect()
    }
}

/// Walks the dialplan from `guest`.
pub fn walk(asterisk: &Asterisk, plan: &Dialplan, guest: &Guest) -> Walk {
    Walker {
        plan,
        trunks: Trunks { asterisk, plan },
        parent: HashMap::new(),
        queue: VecDeque::new(),
    }
    .walk(guest)
}

pub fn check(asterisk: &Asterisk) -> Vec<Finding> {
    let guests = accounts::guests(asterisk);
    if guests.is_empty() || !asterisk.extensions.exists() {
        return Vec::new();
    }
    let plan = Dialplan::from_conf(&asterisk.extensions);
    let mut found = Vec::new();
    for guest in &guests {
        let walk = walk(asterisk, &plan, guest);
        for (at, trunk, path) in walk.trunk_dials {
            let mut f = Finding::new(
                "guest-path-to-trunk",
                Severity::Critical,
                Some(&at),
                format!("a guest call into {} reaches {trunk}: {}", guest.context, path.join(" → ")),
            )
            .why("anyone on the internet dials your trunk through this path without any password: toll fraud at your cost")
            .fix("send guests to a context that reaches only your DIDs (no include of the outbound routes, no Goto to them), or turn guests off");
            f.path = path;
            found.push(f);
        }
        if !walk.checked {
            found.push(
                Finding::new("guest-without-check", Severity::Medium, Some(&guest.at), format!("guest calls into {} are not judged by extsecurity", guest.context))
                    .why("scanners and fraud calls that come in as guests are never alerted on, so fail2ban never bans them")
                    .fix("call extsecurity's check first in that context (doc/asterisk.md: the shipped extensions-fastagi.conf)"),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asterisk_conf::Memory;
    use std::path::Path;

    /// An anonymous endpoint into `guest`, a trunk `provider` (outbound auth and a
    /// static contact) and a phone `1001`.
    const PJSIP: &str = "\
[anonymous]
type=endpoint
context=guest
[provider]
type=endpoint
outbound_auth=provider-auth
aors=provider
[provider]
type=aor
contact=sip:sip.example.net
[1001]
type=endpoint
auth=1001
context=phones
";

    fn walk_of(extensions: &str) -> Walk {
        let files = Memory::of(
            Path::new("/etc/asterisk"),
            &[("pjsip.conf", PJSIP), ("extensions.conf", extensions)],
        );
        let asterisk = Asterisk::read(&files, Path::new("/etc/asterisk"));
        let guests = accounts::guests(&asterisk);
        assert_eq!(guests.len(), 1, "{guests:?}");
        walk(
            &asterisk,
            &Dialplan::from_conf(&asterisk.extensions),
            &guests[0],
        )
    }

    const OUTBOUND: &str =
        "[outbound]\nexten => _00X.,1,NoOp()\nsame => n,Dial(PJSIP/${EXTEN}@provider)\n";

    /// Small dialplans with known answers: does a guest reach the trunk?
    #[test]
    fn guest_paths_of_small_dialplans() {
        let table: &[(&str, String, bool)] = &[
            ("an include chain", format!("[guest]\ninclude => a\n[a]\ninclude => outbound\n{OUTBOUND}"), true),
            ("Goto(${EXTEN})", format!("[guest]\nexten => _X.,1,Goto(outbound,${{EXTEN}},1)\n{OUTBOUND}"), true),
            ("GotoIf, the call's branch", format!("[guest]\nexten => _X.,1,GotoIf($[${{CALLERID(num)}}=1]?bad)\nsame => n,Hangup()\nsame => n(bad),Goto(outbound,${{EXTEN}},1)\n{OUTBOUND}"), true),
            ("GotoIf, the other branch", format!("[guest]\nexten => _X.,1,GotoIf($[${{CALLERID(num)}}=1]?ok:outbound,${{EXTEN}},1)\nsame => n(ok),Hangup()\n{OUTBOUND}"), true),
            ("GotoIf made constant by [globals]", format!("[globals]\nOPEN=no\n[guest]\nexten => _X.,1,GotoIf($[\"${{OPEN}}\"=\"yes\"]?outbound,${{EXTEN}},1)\nsame => n,Hangup()\n{OUTBOUND}"), false),
            ("Gosub", "[guest]\nexten => _X.,1,Gosub(sub-dial,s,1(${EXTEN}))\n[sub-dial]\nexten => s,1,Dial(PJSIP/${ARG1}@provider)\nsame => n,Return()\n".to_string(), true),
            ("a Local channel is an edge", format!("[guest]\nexten => _X.,1,Dial(Local/${{EXTEN}}@outbound)\n{OUTBOUND}"), true),
            ("a cycle ends", "[guest]\nexten => _X.,1,Goto(b,s,1)\n[b]\nexten => s,1,Goto(guest,123,1)\n".to_string(), false),
            ("Hangup before the Dial", format!("[guest]\nexten => _X.,1,Hangup()\nsame => n,Goto(outbound,${{EXTEN}},1)\n{OUTBOUND}"), false),
            ("a phone is not a trunk", "[guest]\nexten => _X.,1,Dial(PJSIP/1001)\n".to_string(), false),
            ("a literal Goto that no pattern takes", format!("[guest]\nexten => _X.,1,Goto(outbound,123,1)\n{OUTBOUND}"), false),
            ("a literal Goto a pattern takes", format!("[guest]\nexten => _X.,1,Goto(outbound,0044123,1)\n{OUTBOUND}"), true),
            ("the trunk named in [globals]", "[globals]\nTRUNK=PJSIP/provider\n[guest]\nexten => _X.,1,Dial(${TRUNK}/${EXTEN})\n".to_string(), true),
            ("chan_dahdi is the PSTN", "[guest]\nexten => _X.,1,Dial(DAHDI/g0/${EXTEN})\n".to_string(), true),
            ("an unrelated context", format!("[guest]\nexten => s,1,Hangup()\n{OUTBOUND}"), false),
            ("a Dial inside ExecIf", "[guest]\nexten => _X.,1,ExecIf($[${LEN(${EXTEN})} > 5]?Dial(PJSIP/${EXTEN}@provider))\n".to_string(), true),
            ("a Goto in ExecIf's other branch", format!("[guest]\nexten => _X.,1,ExecIf($[${{CALLERID(num)}} = 1]?Hangup():Goto(outbound,${{EXTEN}},1))\nsame => n,Hangup()\n{OUTBOUND}"), true),
            ("ExecIf made constant by [globals]", format!("[globals]\nOPEN=no\n[guest]\nexten => _X.,1,ExecIf($[\"${{OPEN}}\" = \"yes\"]?Goto(outbound,${{EXTEN}},1))\nsame => n,Hangup()\n{OUTBOUND}"), false),
            ("ExecIf's Hangup does not end the line", format!("[guest]\nexten => _X.,1,ExecIf($[${{CALLERID(num)}} = 1]?Hangup())\nsame => n,Goto(outbound,${{EXTEN}},1)\n{OUTBOUND}"), true),
        ];
        for (name, plan, reaches) in table {
            let walk = walk_of(plan);
            assert_eq!(
                !walk.trunk_dials.is_empty(),
                *reaches,
                "{name}: {:?}",
                walk.trunk_dials
            );
        }
    }

    #[test]
    fn the_chain_names_every_hop() {
        let walk = walk_of(&format!(
            "[guest]\nexten => _X.,1,NoOp()\nsame => n,Goto(route,${{EXTEN}},1)\n[route]\ninclude => outbound\n{OUTBOUND}"
        ));
        let (at, trunk, path) = &walk.trunk_dials[0];
        assert_eq!(trunk, "PJSIP/provider");
        assert_eq!(at.line, 8);
        assert_eq!(
            path,
            &[
                "guest (PJSIP endpoint anonymous)",
                "guest,_X.,2 Goto(route,${EXTEN},1)",
                "route include => outbound",
                "outbound,_00X.,2 Dial(PJSIP/${EXTEN}@provider) = PJSIP/provider",
            ]
        );
    }

    /// FreePBX's guest path, as its core module writes it: `from-sip-external` goes on
    /// to `from-trunk` only when `ALLOW_SIP_ANON=yes`; the trunk is `${OUT_n}`.
    #[test]
    fn freepbx_guests_reach_the_trunk_only_with_allow_sip_anon() {
        let plan = |allow: &str| {
            format!(
                "[globals]\nALLOW_SIP_ANON={allow}\nOUT_1=PJSIP/provider\n\
[from-sip-external]\n\
exten => _.,1,NoOp(unknown peer)\n\
exten => _.,n,Set(DID=${{IF($[\"${{EXTEN:1:2}}\"=\"\"]?s:${{EXTEN}})}})\n\
exten => _.,n,Goto(s,1)\n\
exten => s,1,GotoIf($[\"${{ALLOW_SIP_ANON}}\"=\"yes\"]?checklang:noanonymous)\n\
exten => s,n(checklang),Goto(from-trunk,${{DID}},1)\n\
exten => s,n(noanonymous),Set(TIMEOUT(absolute)=15)\n\
exten => s,n,Answer\n\
exten => s,n,Hangup\n\
[from-trunk]\ninclude => ext-did\n\
[ext-did]\nexten => 5551234,1,Goto(disa,s,1)\n\
[disa]\nexten => s,1,Goto(outbound-allroutes,${{DIALED}},1)\n\
[outbound-allroutes]\ninclude => outrt-1\n\
[outrt-1]\nexten => _00.,1,Macro(dialout-trunk,1,${{EXTEN}},,off)\n\
[macro-dialout-trunk]\nexten => s,1,Set(DIAL_TRUNK=${{ARG1}})\nexten => s,n,Dial(${{OUT_${{DIAL_TRUNK}}}}/${{OUTNUM}})\n"
            )
        };
        let guest = "[anonymous]\ntype=endpoint\ncontext=from-sip-external\n";
        for (allow, reaches) in [("yes", true), ("no", false)] {
            let files = Memory::of(
                Path::new("/etc/asterisk"),
                &[("pjsip.conf", guest), ("extensions.conf", &plan(allow))],
            );
            let asterisk = Asterisk::read(&files, Path::new("/etc/asterisk"));
            let guests = accounts::guests(&asterisk);
            let w = walk(
                &asterisk,
                &Dialplan::from_conf(&asterisk.extensions),
                &guests[0],
            );
            assert_eq!(!w.trunk_dials.is_empty(), reaches, "ALLOW_SIP_ANON={allow}");
            if reaches {
                assert_eq!(w.trunk_dials[0].1, "PJSIP/provider");
                assert!(
                    w.trunk_dials[0]
                        .2
                        .iter()
                        .any(|s| s.starts_with("macro-dialout-trunk,s,2 Dial"))
                );
            }
        }
    }

    #[test]
    fn patterns_match_as_asterisk_does() {
        assert!(matches("_X.", "123"));
        assert!(!matches("_X.", "1"));
        assert!(matches("_X!", "1"));
        assert!(matches("_00[1-9]X.", "0044123"));
        assert!(!matches("_NXX", "123"));
        assert!(matches("_1-800-NXX", "1800222"));
        assert!(matches("s", "s"));
        assert!(matches("_.", "s"));
    }

    #[test]
    fn extsecurity_s_check_is_recognised() {
        assert!(runs_check("AGI", "agi://127.0.0.1/check"));
        assert!(runs_check("AGI", "/usr/bin/extsecurity,agi"));
        assert!(runs_check("System", "/usr/bin/extsecurity check x"));
        assert!(!runs_check("AGI", "agi://127.0.0.1/other"));
        let checked =
            walk_of("[guest]\nexten => _X.,1,AGI(agi://127.0.0.1/check)\nsame => n,Hangup()\n");
        assert!(checked.checked);
        assert!(!walk_of("[guest]\nexten => _X.,1,Hangup()\n").checked);
    }
}
