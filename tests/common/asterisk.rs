//! What Asterisk does to a dialplan `System()` line before `/bin/sh -c` runs it
//! (design.md §3, §3a): `${…}` is replaced by the channel's values as they are, with
//! no quoting; values are C strings, so a NUL (`%00`) cuts a value short.
//!
//! Not emulated: the re-parse of a value nested in `${FUNC(${…})}` (design.md §3a,
//! "Nested substitution re-parses"); tests that need it pass the shortened value.

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
}

impl Channel {
    /// A plain call from `ip` that passes every default rule.
    pub fn ordinary(ip: &str) -> Channel {
        Channel {
            peerip: ip.into(),
            remote_addr: format!("{ip}:5060"),
            callerid_num: b"5551234".to_vec(),
            callerid_name: b"Alice".to_vec(),
            exten: b"4915112345678".to_vec(),
            user_agent: b"Yealink SIP-T46S".to_vec(),
            peer_name: b"guest".to_vec(),
            on_error: String::new(),
        }
    }

    fn value(&self, name: &str) -> Vec<u8> {
        let v: &[u8] = match name {
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
    /// `Return()`: the call goes on.
    Continued,
    /// `Hangup()`.
    HungUp,
}

/// Runs `s,1` of `[context]` in a dialplan file the way pbx.c does, for the few
/// applications the shipped verdict subroutines use: `GotoIf($["${VAR}" = "TEXT"]?label)`
/// (an unset variable is empty; `=` compares the strings), `Return()` and `Hangup(N)`.
/// Anything else is a test failure, so a subroutine cannot grow past what is emulated.
pub fn run_subroutine(conf: &str, context: &str, variables: &[(&str, &str)]) -> Outcome {
    let steps = context_steps(conf, context);
    let mut at = 0;
    while let Some((_, app)) = steps.get(at) {
        if app.starts_with("Return(") {
            return Outcome::Continued;
        }
        if app.starts_with("Hangup(") {
            return Outcome::HungUp;
        }
        let (var, expected, label) = parse_goto_if(app);
        let value = variables
            .iter()
            .find(|(name, _)| *name == var)
            .map_or("", |(_, v)| *v);
        at = if value == expected {
            steps
                .iter()
                .position(|(l, _)| l.as_deref() == Some(label))
                .unwrap_or_else(|| panic!("[{context}]: no label {label}"))
        } else {
            at + 1
        };
    }
    panic!("[{context}] ran off its end")
}

/// `(label, application)` for each priority of `s` in `[context]`.
fn context_steps(conf: &str, context: &str) -> Vec<(Option<String>, String)> {
    let header = format!("[{context}]");
    let body = conf
        .split_once(&format!("\n{header}\n"))
        .unwrap_or_else(|| panic!("no {header}"))
        .1;
    let mut steps = Vec::new();
    for line in body.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            break;
        }
        if let Some(app) = line.strip_prefix("exten => s,1,") {
            assert!(steps.is_empty(), "{header}: s,1 twice");
            steps.push((None, app.to_string()));
        } else if let Some(rest) = line.strip_prefix("same => n") {
            let (label, app) = match rest.strip_prefix('(') {
                Some(r) => {
                    let (label, app) = r.split_once("),").expect("n(label),App");
                    (Some(label.to_string()), app)
                }
                None => (None, rest.strip_prefix(',').expect("n,App")),
            };
            steps.push((label, app.to_string()));
        } else {
            assert!(line.is_empty() || line.starts_with(';'), "{header}: {line}");
        }
    }
    steps
}

/// `GotoIf($["${VAR}" = "TEXT"]?label)` → `(VAR, TEXT, label)`.
fn parse_goto_if(app: &str) -> (&str, &str, &str) {
    let parse = || {
        let rest = app.strip_prefix("GotoIf($[\"${")?;
        let (var, rest) = rest.split_once("}\" = \"")?;
        let (text, rest) = rest.split_once("\"]?")?;
        Some((var, text, rest.strip_suffix(')')?))
    };
    parse().unwrap_or_else(|| panic!("not emulated: {app}"))
}
