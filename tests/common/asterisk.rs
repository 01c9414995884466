//! What Asterisk does to a dialplan `System()` line before `/bin/sh -c` runs it
//! (design.md §3, §3a): `${…}` is replaced by the channel's values as they are, with
//! no quoting; values are C strings, so a NUL (`%00`) cuts a value short.
//!
//! Not emulated: the re-parse of a value nested in `${FUNC(${…})}` (design.md §3a,
//! "Nested substitution re-parses"); tests that need it pass the shortened value.
//!
//! A channel of a known driver ([`Driver`]) reads as Asterisk 20's drivers read: a
//! function of the other driver gives an empty value (`CHANNEL(pjsip,remote_addr)` on a
//! chan_sip channel: "Cannot call CHANNEL on a non-PJSIP channel", chan_pjsip's
//! dialplan_functions.c; `CHANNEL(peerip)` on a PJSIP one: "Unknown or unavailable
//! item", func_channel.c). [`run_call`] runs the shipped dialplans' few applications
//! the way pbx.c does.

use base64::Engine as _;

/// The caller-controlled values of one call, plus the transport's address.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    /// chan_sip `CHANNEL(peerip)`, e.g. `203.0.113.5`.
    pub peerip: String,
    /// chan_pjsip `CHANNEL(pjsip,remote_addr)`, e.g. `203.0.113.5:5060`.
    pub remote_addr: String,
    pub callerid_num: Vec<u8>,
    pub callerid_name: Vec<u8>,
    pub exten: Vec<u8>,
    pub user_agent: Vec<u8>,
    pub peer_name: Vec<u8>,
    /// `EXTSEC_ON_ERROR`, the administrator's `[globals]` switch; empty when unset.
    pub on_error: String,
    /// The channel driver; `None`: every driver's functions answer (for tests of one
    /// line at a time).
    pub driver: Option<Driver>,
    /// Channel variables the dialplan set (`Set()`, `SYSTEMSTATUS`), and the
    /// functions it wrote (`GROUP(extsec-outbound)`), by name.
    pub variables: Vec<(String, Vec<u8>)>,
    /// What `${GROUP_COUNT(@extsec-outbound)}` answers once the channel is in the
    /// group: the test's own count of the account's live calls.
    pub live: u32,
}

/// A new channel's unique id, as Asterisk makes them: start time and a sequence.
pub fn next_uniqueid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("1795633497.{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A channel driver, as `CHANNEL(channeltype)` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Pjsip,
    Sip,
    /// Another driver (`IAX2`, `DAHDI`…): neither's functions answer.
    Other(&'static str),
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Pjsip => "PJSIP",
            Driver::Sip => "SIP",
            Driver::Other(name) => name,
        }
    }
}

impl Channel {
    /// A plain call from `ip` that passes every default rule.
    pub fn ordinary(ip: &str) -> Channel {
        Channel {
            peerip: ip.into(),
            // As chan_pjsip writes it: IPv6 in brackets (design §3).
            remote_addr: match ip.contains(':') {
                true => format!("[{ip}]:5060"),
                false => format!("{ip}:5060"),
            },
            callerid_num: b"5551234".to_vec(),
            callerid_name: b"Alice".to_vec(),
            exten: b"4915112345678".to_vec(),
            user_agent: b"Yealink SIP-T46S".to_vec(),
            peer_name: b"guest".to_vec(),
            on_error: String::new(),
            driver: None,
            variables: Vec::new(),
            live: 1,
        }
    }

    /// An authenticated phone's call to `number` from `ip`, in the group `account` as
    /// `[extsec-outbound]` sets it, with `${ARG1}` the number (as its Gosub passes it).
    pub fn outbound(account: &str, number: &[u8], ip: &str) -> Channel {
        let mut c = Channel {
            exten: b"s".to_vec(),
            ..Channel::ordinary(ip)
        };
        c.set("GROUP(extsec-outbound)", account.as_bytes().to_vec());
        c.set("ARG1", number.to_vec());
        c.set("UNIQUEID", next_uniqueid().into_bytes());
        c
    }

    /// The same call over `driver`.
    pub fn over(self, driver: Driver) -> Channel {
        Channel {
            driver: Some(driver),
            ..self
        }
    }

    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        self.variables.retain(|(n, _)| n != name);
        self.variables.push((name.to_string(), value));
    }

    /// Whether the channel's driver answers `name` (the other driver's functions read
    /// empty).
    fn answers(&self, name: &str) -> bool {
        const PJSIP: &[&str] = &[
            "CHANNEL(pjsip,remote_addr)",
            "CHANNEL(endpoint)",
            "PJSIP_HEADER(read,User-Agent)",
        ];
        const SIP: &[&str] = &["CHANNEL(peerip)", "CHANNEL(peername)", "CHANNEL(useragent)"];
        match self.driver {
            None => true,
            Some(Driver::Pjsip) => !SIP.contains(&name),
            Some(Driver::Sip) => !PJSIP.contains(&name),
            Some(Driver::Other(_)) => !SIP.contains(&name) && !PJSIP.contains(&name),
        }
    }

    fn value(&self, name: &str) -> Vec<u8> {
        if let Some((_, v)) = self.variables.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        // func_logic.c's SET(NAME=value) reads as its value; what it writes is the
        // reader's to apply (`agi_peer::Exchange::variable`).
        if let Some(pair) = name.strip_prefix("SET(").and_then(|p| p.strip_suffix(')')) {
            let (_, value) = pair.split_once('=').expect("SET(NAME=value)");
            return value.as_bytes().to_vec();
        }
        if !self.answers(name) {
            return Vec::new();
        }
        // Read as func_groupcount.c does: the count of the channel's own group in the
        // category, or nothing ("No group could be found") when it is in none.
        if name == "GROUP_COUNT(@extsec-outbound)" {
            let grouped = self
                .variables
                .iter()
                .any(|(n, _)| n == "GROUP(extsec-outbound)");
            return match grouped {
                true => self.live.to_string().into_bytes(),
                false => Vec::new(),
            };
        }
        let v: &[u8] = match name {
            "CHANNEL(channeltype)" => self.driver.map_or("PJSIP", Driver::name).as_bytes(),
            // Unset variables and functions of the outbound dialplan read empty.
            "ARG1"
            | "GROUP(extsec-outbound)"
            | "EXTSEC_CLASS"
            | "ANSWEREDTIME"
            | "EXTSEC_RESULT"
            | "EXTSEC_REASON"
            | "EXTSEC_MAX_SECONDS"
            | "EXTSEC_AGI"
            | "EXTSEC_AGI_KEY"
            | "EXTSEC_ACCOUNT"
            | "EXTSEC_ADDRESS"
            | "AMPUSER"
            | "EXTSEC_OUTAGE_INTERNATIONAL"
            | "EXTSEC_OUTAGE_PREMIUM"
            | "EXTSEC_OUTAGE_NATIONAL"
            | "EXTSEC_END"
            | "MACRO_DEPTH" => b"",
            // Unset channel variables read empty.
            "SYSTEMSTATUS" => b"",
            // What [default] sets before its Gosub (extensions-system.conf); a test of
            // one line at a time reads the dialed extension.
            "EXTSEC_EXTEN" => &self.exten,
            "CHANNEL(peerip)" => self.peerip.as_bytes(),
            "CHANNEL(pjsip,remote_addr)" => self.remote_addr.as_bytes(),
            "CALLERID(num)" => &self.callerid_num,
            "CALLERID(name)" => &self.callerid_name,
            "EXTEN" => &self.exten,
            "CHANNEL(useragent)" | "PJSIP_HEADER(read,User-Agent)" => &self.user_agent,
            "CHANNEL(peername)" | "CHANNEL(endpoint)" => &self.peer_name,
            "EXTSEC_ON_ERROR" => self.on_error.as_bytes(),
            other => panic!("the emulator does not know ${{{other}}}"),
        };
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        v[..end].to_vec()
    }
}

/// Substitutes every `${NAME}` and `${BASE64_ENCODE(${NAME})}` in `data`.
pub fn substitute(data: &str, channel: &Channel) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(start) = rest.find("${") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 2..];
        if let Some(inner) = after.strip_prefix("BASE64_ENCODE(${") {
            let end = inner.find("})}").expect("closed BASE64_ENCODE");
            let value = channel.value(&inner[..end]);
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .as_bytes(),
            );
            rest = &inner[end + 3..];
        } else {
            let end = matching_brace(after);
            out.extend_from_slice(&channel.value(&after[..end]));
            rest = &after[end + 1..];
        }
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// [`substitute`], where `${SET(NAME=value)}` also writes, as func_logic.c's `set()`
/// does while pbx_variables.c substitutes left to right: its argument substituted first
/// (nested `${…}` included), split at the first `=`, the value written (a leading `__`
/// only marks inheritance) and read in its place. An `AGI()` line of the shipped
/// subroutine sets the group and the inherited variables this way.
pub fn substitute_setting(data: &str, channel: &mut Channel) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(start) = rest.find("${") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 2..];
        let end = matching_brace(after);
        match after[..end]
            .strip_prefix("SET(")
            .and_then(|a| a.strip_suffix(')'))
        {
            Some(argument) => {
                let argument = substitute_setting(argument, channel);
                let argument = String::from_utf8(argument).expect("UTF-8 in the tests");
                let (name, value) = argument.split_once('=').expect("SET(NAME=value)");
                channel.set(name.trim_start_matches('_'), value.as_bytes().to_vec());
                out.extend_from_slice(value.as_bytes());
            }
            None => out.extend_from_slice(&substitute(&rest[start..start + end + 3], channel)),
        }
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// The index of the `}` closing a `${` whose body starts `body`.
fn matching_brace(body: &str) -> usize {
    let mut depth = 0;
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '}' if depth == 0 => return i,
            _ => {}
        }
    }
    panic!("unclosed ${{ in {body}")
}

/// One `exten => NAME,1,System(DATA)` (or `TrySystem`) line of a shipped `.conf` file.
#[derive(Debug, Clone)]
pub struct SystemLine {
    pub exten: String,
    pub data: String,
}

/// The `System()` lines of a dialplan file, with `/usr/bin/extsecurity` replaced by `bin`.
pub fn system_lines(conf: &str, bin: &str) -> Vec<SystemLine> {
    conf.lines()
        .filter_map(|l| l.strip_prefix("exten => "))
        .filter_map(|l| {
            let (exten, rest) = l
                .split_once(",1,System(")
                .or_else(|| l.split_once(",1,TrySystem("))?;
            let data = rest.strip_suffix(')')?;
            Some(SystemLine {
                exten: exten.to_string(),
                data: data.replace("/usr/bin/extsecurity", bin),
            })
        })
        .collect()
}

/// How a dialplan subroutine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `Return()`, or the end of the extension's lines: the call goes on.
    Continued,
    /// `Hangup()`.
    HungUp,
    /// `Congestion()`: the caller gets a fast busy (SIP 503), then the channel hangs up.
    Congested,
}

/// The applications that reach outside the dialplan: `TrySystem()` (its substituted
/// data, returning `SYSTEMSTATUS`) and `AGI()` (its substituted URL and the channel,
/// whose variables the AGI sets).
pub struct Apps<'a> {
    pub system: &'a mut dyn FnMut(&[u8], &Channel) -> &'static str,
    pub agi: &'a mut dyn FnMut(&str, &mut Channel),
}

/// [`run_call_with`] for dialplans that run no `AGI()`.
pub fn run_call(
    conf: &str,
    context: &str,
    exten: &str,
    call: &mut Channel,
    system: &mut dyn FnMut(&[u8], &Channel) -> &'static str,
) -> Outcome {
    let mut agi = |url: &str, _: &mut Channel| panic!("not emulated here: AGI({url})");
    run_call_with(
        conf,
        context,
        exten,
        call,
        &mut Apps {
            system,
            agi: &mut agi,
        },
    )
}

/// Runs extension `exten` of `[context]` for `call` the way pbx.c does, for the
/// applications the shipped dialplans use: `Set(NAME=value)` and `MSet(NAME=value,…)` (a
/// function's name too:
/// `GROUP(extsec-outbound)`, `CHANNEL(hangup_handler_push)`, `TIMEOUT(absolute)` are
/// kept by name), `Gosub(context,exten,1)` and `Gosub(context,exten,1(arg))` (`ARG1`
/// set for the subroutine's frame only, as app_stack.c does), `TrySystem(data)`,
/// `AGI(url)`, `GotoIf($["${VAR}" = "TEXT"]?label)`, `GotoIf($[0${VAR} > 0]?label)`,
/// `Goto(exten,1)` (the extension substituted: `${CHANNEL(channeltype)}`), `Log()`,
/// `Return()`, `Hangup()`, `Congestion()`. An extension is found by name, else by the
/// patterns ([`pattern_matches`]); `ExecIf(…?Return())` and
/// `GotoIf($[${DIALPLAN_EXISTS(context,${VAR},1)}]?label)` too; a Macro context runs off
/// its end when `MACRO_DEPTH` is set. Anything else is a test failure, so a dialplan
/// cannot grow past what is emulated.
pub fn run_call_with(
    conf: &str,
    context: &str,
    exten: &str,
    call: &mut Channel,
    apps: &mut Apps<'_>,
) -> Outcome {
    let extensions = context_extensions(conf, context);
    let mut steps = find_extension(&extensions, exten, context);
    let mut at = 0;
    loop {
        let Some((_, app)) = steps.get(at) else {
            // The end of a guest extension's lines: your routing goes on. A Macro
            // (app_macro: MACRO_DEPTH set) also ends there and hands back.
            let in_macro = context.starts_with("macro-") && !call.value("MACRO_DEPTH").is_empty();
            assert!(
                context == "default" || in_macro,
                "[{context}] {exten} ran off its end"
            );
            return Outcome::Continued;
        };
        at += 1;
        let (name, data) = app.split_once('(').expect("App(data)");
        let data = data.strip_suffix(')').expect("App(data)");
        match name {
            "Return" => return Outcome::Continued,
            "Hangup" => return Outcome::HungUp,
            "Congestion" => return Outcome::Congested,
            "AGI" => {
                let url = String::from_utf8(substitute_setting(data, call)).unwrap();
                (apps.agi)(&url, call);
            }
            "Log" | "NoOp" => {}
            "Set" => {
                let (var, value) = data.split_once('=').expect("Set(NAME=value)");
                let value = substitute(value, call);
                // `__NAME` is NAME, inherited by the channels this one creates: read
                // as NAME (pbx_builtin_setvar_helper strips the underscores).
                call.set(var.trim_start_matches('_'), value);
            }
            "MSet" => {
                // `MSet(NAME=value,…)`: each pair set as Set() would (pbx_variables.c
                // splits at commas raw: a value holds none).
                for pair in split_top_level(data) {
                    let (var, value) = pair.split_once('=').expect("MSet(NAME=value,…)");
                    let value = substitute(value, call);
                    call.set(var.trim_start_matches('_'), value);
                }
            }
            "TrySystem" => {
                let status = (apps.system)(&substitute(data, call), call);
                call.set("SYSTEMSTATUS", status.as_bytes().to_vec());
            }
            "Gosub" => {
                let (target, rest) = data.split_once(',').expect("Gosub(context,exten,1…)");
                let (ext, priority) = rest.split_once(',').expect("Gosub(context,exten,1…)");
                let arg = match priority {
                    "1" => None,
                    p => Some(
                        p.strip_prefix("1(")
                            .and_then(|a| a.strip_suffix(')'))
                            .unwrap_or_else(|| panic!("not emulated: {app}")),
                    ),
                };
                let ext = String::from_utf8(substitute(ext, call)).unwrap();
                // ARG1 is the subroutine frame's own: the caller's comes back on Return.
                let saved = call.variables.iter().find(|(n, _)| n == "ARG1").cloned();
                if let Some(arg) = arg {
                    let value = substitute(arg, call);
                    call.set("ARG1", value);
                }
                let outcome = run_call_with(conf, target, &ext, call, apps);
                call.variables.retain(|(n, _)| n != "ARG1");
                call.variables.extend(saved);
                if outcome != Outcome::Continued {
                    return outcome;
                }
            }
            "Goto" => {
                let (ext, prio) = data.split_once(',').expect("Goto(exten,1)");
                assert_eq!(prio, "1", "not emulated: {app}");
                let ext = String::from_utf8(substitute(ext, call)).unwrap();
                steps = find_extension(&extensions, &ext, context);
                at = 0;
            }
            "ExecIf" => {
                // `ExecIf($["${VAR}" = "TEXT"]?Return())`: the one form a shipped
                // snippet uses (FreePBX's hook, Gosub or Macro).
                let form = || {
                    let rest = app.strip_prefix("ExecIf($[\"${")?;
                    let (var, rest) = rest.split_once("}\" = \"")?;
                    let (text, rest) = rest.split_once("\"]?")?;
                    Some((var, text, rest.strip_suffix(')')?))
                };
                let (var, text, then) = form().unwrap_or_else(|| panic!("not emulated: {app}"));
                assert_eq!(then, "Return()", "not emulated: {app}");
                if call.value(var) == text.as_bytes() {
                    return Outcome::Continued;
                }
            }
            "GotoIf" => {
                let (taken, label) = goto_if(conf, app, data, call);
                // `?label:exten,1`: the other branch is another extension's first line.
                let (label, otherwise) = match label.split_once(':') {
                    Some((label, other)) => (label, Some(other)),
                    None => (label, None),
                };
                if taken {
                    at = steps
                        .iter()
                        .position(|(l, _)| l.as_deref() == Some(label))
                        .unwrap_or_else(|| panic!("[{context}] {exten}: no label {label}"));
                } else if let Some(other) = otherwise {
                    let ext = other
                        .strip_suffix(",1")
                        .unwrap_or_else(|| panic!("not emulated: {app}"));
                    let ext = String::from_utf8(substitute(ext, call)).unwrap();
                    steps = find_extension(&extensions, &ext, context);
                    at = 0;
                }
            }
            _ => panic!("not emulated: {app}"),
        }
    }
}

type Steps = Vec<(Option<String>, String)>;

/// Whether a `GotoIf(condition?label)` jumps, and its label.
fn goto_if<'a>(conf: &str, app: &'a str, data: &'a str, call: &Channel) -> (bool, &'a str) {
    if app.starts_with("GotoIf($[${DIALPLAN_EXISTS(") {
        return dialplan_exists_goto(conf, app, data, call);
    }
    let (var, expected, label) = parse_goto_if(app);
    let taken = match expected {
        // `$[0${VAR} > 0]`: the value read as a number, empty as 0.
        None => std::str::from_utf8(&call.value(var))
            .ok()
            .and_then(|v| format!("0{v}").parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        Some(text) => call.value(var) == text.as_bytes(),
    };
    (taken, label)
}

/// `$[${DIALPLAN_EXISTS(context,${VAR},1)} | …]?label`, as func_dialplan.c answers each:
/// 1 when the context has an extension matching the value (by name or pattern) at
/// priority 1; 0 when it does not, or when the context does not exist.
fn dialplan_exists_goto<'a>(
    conf: &str,
    app: &'a str,
    data: &'a str,
    call: &Channel,
) -> (bool, &'a str) {
    let (condition, label) = data
        .strip_prefix("$[")
        .and_then(|d| d.split_once("]?"))
        .expect("GotoIf($[…]?label)");
    let taken = condition.split(" | ").any(|term| {
        let rest = term
            .strip_prefix("${DIALPLAN_EXISTS(")
            .and_then(|r| r.strip_suffix(",1)}"))
            .unwrap_or_else(|| panic!("not emulated: {app}"));
        let (target, var) = rest.split_once(",").expect("DIALPLAN_EXISTS(ctx,${VAR},1)");
        let var = var
            .strip_prefix("${")
            .and_then(|v| v.strip_suffix('}'))
            .expect("${VAR}");
        let value = String::from_utf8(call.value(var)).unwrap_or_default();
        dialplan_exists(conf, target, &value)
    });
    (taken, label)
}

/// `data` split at the commas outside any `${…}` or `(…)`.
fn split_top_level(data: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in data.char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&data[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&data[start..]);
    out
}

/// Whether `[context]` exists in `conf` and has an extension `exten` matches.
fn dialplan_exists(conf: &str, context: &str, exten: &str) -> bool {
    if !conf.contains(&format!("\n[{context}]\n")) {
        return false;
    }
    context_extensions(conf, context)
        .iter()
        .any(|(name, _)| pattern_matches(name, exten))
}

/// Asterisk's extension matching (pbx.c `ast_extension_match`): a name matches itself;
/// `_` starts a pattern of `X` (0-9), `Z` (1-9), `N` (2-9), `[…]` sets with ranges,
/// `.` (one or more of anything) and `!` (zero or more), anything else itself.
pub fn pattern_matches(name: &str, exten: &str) -> bool {
    let Some(pattern) = name.strip_prefix('_') else {
        return name == exten;
    };
    fn go(p: &[u8], e: &[u8]) -> bool {
        let Some((&first, rest)) = p.split_first() else {
            return e.is_empty();
        };
        match first.to_ascii_uppercase() {
            b'.' => !e.is_empty(),
            b'!' => true,
            b'[' => {
                let end = rest.iter().position(|&b| b == b']').expect("a closed set");
                let set = &rest[..end];
                let Some((&c, e_rest)) = e.split_first() else {
                    return false;
                };
                let mut i = 0;
                let mut hit = false;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == b'-' {
                        hit |= (set[i]..=set[i + 2]).contains(&c);
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit && go(&rest[end + 1..], e_rest)
            }
            class => {
                let Some((&c, e_rest)) = e.split_first() else {
                    return false;
                };
                let ok = match class {
                    b'X' => c.is_ascii_digit(),
                    b'Z' => (b'1'..=b'9').contains(&c),
                    b'N' => (b'2'..=b'9').contains(&c),
                    _ => c == first,
                };
                ok && go(rest, e_rest)
            }
        }
    }
    go(pattern.as_bytes(), exten.as_bytes())
}

/// The extensions of `[context]`, each with its `(label, application)` priorities.
fn context_extensions(conf: &str, context: &str) -> Vec<(String, Steps)> {
    let header = format!("[{context}]");
    let body = conf
        .split_once(&format!("\n{header}\n"))
        .unwrap_or_else(|| panic!("no {header}"))
        .1;
    let mut extensions: Vec<(String, Steps)> = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            break;
        }
        if let Some(rest) = line.strip_prefix("exten => ") {
            let (name, app) = rest.split_once(",1,").expect("exten => NAME,1,App");
            assert!(
                extensions.iter().all(|(n, _)| n != name),
                "{header}: {name},1 twice"
            );
            extensions.push((name.to_string(), vec![(None, app.to_string())]));
        } else if let Some(rest) = line.strip_prefix("same => n") {
            let (label, app) = match rest.strip_prefix('(') {
                Some(r) => {
                    let (label, app) = r.split_once("),").expect("n(label),App");
                    (Some(label.to_string()), app)
                }
                None => (None, rest.strip_prefix(',').expect("n,App")),
            };
            let (_, steps) = extensions.last_mut().expect("same => after an exten");
            steps.push((label, app.to_string()));
        } else {
            assert!(line.is_empty() || line.starts_with(';'), "{header}: {line}");
        }
    }
    extensions
}

/// The extension `exten` dials into: its own name first, else a pattern
/// ([`pattern_matches`]).
fn find_extension(extensions: &[(String, Steps)], exten: &str, context: &str) -> Steps {
    extensions
        .iter()
        .find(|(name, _)| name == exten)
        .or_else(|| {
            extensions
                .iter()
                .find(|(name, _)| name.starts_with('_') && pattern_matches(name, exten))
        })
        .map(|(_, steps)| steps.clone())
        .unwrap_or_else(|| panic!("[{context}]: no extension for {exten}"))
}

/// Runs `s,1` of the verdict subroutine `[context]` with these variables set (the
/// check's result), as [`run_call`] does.
pub fn run_subroutine(conf: &str, context: &str, variables: &[(&str, &str)]) -> Outcome {
    let mut call = Channel::default();
    for (name, value) in variables {
        call.set(name, value.as_bytes().to_vec());
    }
    run_call(conf, context, "s", &mut call, &mut |_, _| {
        panic!("a verdict subroutine runs no System()")
    })
}

/// `GotoIf($["${VAR}" = "TEXT"]?label)` → `(VAR, Some(TEXT), label)`;
/// `GotoIf($[0${VAR} > 0]?label)` → `(VAR, None, label)`.
fn parse_goto_if(app: &str) -> (&str, Option<&str>, &str) {
    let equal = || {
        let rest = app.strip_prefix("GotoIf($[\"${")?;
        let (var, rest) = rest.split_once("}\" = \"")?;
        let (text, rest) = rest.split_once("\"]?")?;
        Some((var, Some(text), rest.strip_suffix(')')?))
    };
    let positive = || {
        let rest = app.strip_prefix("GotoIf($[0${")?;
        let (var, rest) = rest.split_once("} > 0]?")?;
        Some((var, None, rest.strip_suffix(')')?))
    };
    equal()
        .or_else(positive)
        .unwrap_or_else(|| panic!("not emulated: {app}"))
}
