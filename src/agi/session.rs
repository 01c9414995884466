//! One AGI exchange, without I/O: lines from Asterisk in, commands out, a [`Call`] (or a
//! refusal) at the end. The local `agi` mode and the FastAGI daemon drive the same code.
//!
//! Asterisk escapes nothing (design.md §3a): a caller's `%0A` in the Request-URI ends the
//! `agi_*` block early and puts the caller's text where a reply is due. So:
//! - the block is checked for shape: only `agi_key: value` lines, each key once, in
//!   Asterisk's order, none of the always-present keys missing;
//! - every value is read with one `GET FULL VARIABLE` whose values sit between random
//!   tokens (`<T0>${…}<T1>${…}…<T6>`): a reply is ours only if it starts with `T0` and
//!   ends with `T6`, which no caller can predict; LFs inside it are part of values;
//! - any line where the reply was due, and any value holding a LF, is tampering: the
//!   call is alerted on, against the transport's address read in that same reply.
//!
//! The shipped outbound subroutine saves a round trip: it writes the account, the
//! address and the live count into the URL (`agi_network_script`, the block's second
//! line, before any caller byte) and the number as `agi_arg_1`, and the verdict goes
//! back in one token-framed `GET FULL VARIABLE` whose `${SET(…)}`s write it
//! ([`Session::verdict`]). The number may then have been read from a block a caller
//! ended early, but the rest of the real block reaches us before the answer to that
//! command, which no caller can forge: the verdict holds only if nothing else came
//! first ([`Request::Answered`]); otherwise the daemon takes it back before it closes,
//! and the dialplan reads `EXTSEC_RESULT` only once the connection is closed.

use std::net::IpAddr;

use crate::agi::lines::Line;
use crate::call::{Anomaly, Call, Outbound};
use crate::peer::parse_peer_ip;
use crate::request::BadRequest;

/// The keys Asterisk 20 writes, in the order `res_agi.c` writes them. FastAGI adds
/// `agi_network` and `agi_network_script` first; `agi_arg_N` follow, N from 1.
const ORDER: [&str; 22] = [
    "network",
    "network_script",
    "request",
    "channel",
    "language",
    "type",
    "uniqueid",
    "version",
    "callerid",
    "calleridname",
    "callingpres",
    "callingani2",
    "callington",
    "callingtns",
    "dnid",
    "rdnis",
    "context",
    "extension",
    "priority",
    "enhanced",
    "accountcode",
    "threadid",
];
/// `request` to `threadid`: always written, whatever the channel.
const REQUIRED: std::ops::Range<usize> = 2..22;
/// A block longer than this is not from Asterisk.
const MAX_BLOCK_LINES: usize = 512;
/// Lines tolerated between the block and our reply before giving up.
const MAX_STRAY_LINES: usize = 512;

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read more lines.
    Read,
    /// Write this command (it ends with LF), then read more lines.
    Send(Vec<u8>),
    /// The exchange is over: judge this.
    Done(Result<Request, BadRequest>),
}

/// What the dialplan asked for, by the FastAGI URL's script (`agi://host/outbound`):
/// the guest check (any other script, and process AGI), the outbound check, or the
/// end of an outbound call (its hangup handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Guest,
    Outbound,
    OutboundEnd,
}

impl Script {
    /// The script of `agi_network_script` (`outbound?key=…`).
    pub fn of(network_script: Option<&[u8]>) -> Script {
        let path = network_script
            .map(|s| s.split(|&b| b == b'?').next().unwrap_or_default())
            .unwrap_or_default();
        match path {
            b"outbound" => Script::Outbound,
            b"outbound-end" => Script::OutboundEnd,
            _ => Script::Guest,
        }
    }
}

/// A request read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Guest(Call),
    Outbound(Outbound),
    /// An outbound call ended: its account, class (`EXTSEC_CLASS`, which the outbound
    /// check set) and answered seconds (`ANSWEREDTIME`, which Dial set; empty when
    /// Dial never bridged).
    OutboundEnd {
        account: String,
        call_id: String,
        class: Vec<u8>,
        answered: u32,
    },
    /// Asterisk's answer to [`Session::verdict`]; `tampered`: why a line that was not
    /// that answer came first (the block judged was a caller's), if one did and the
    /// verdict did not already judge tampering.
    Answered {
        tampered: Option<&'static str>,
    },
}

impl Request {
    /// The guest call, or why this is none (process AGI serves the guest check only).
    pub fn into_guest(self) -> Result<Call, BadRequest> {
        match self {
            Request::Guest(call) => Ok(call),
            _ => Err(outbound_needs_the_daemon()),
        }
    }
}

/// Why process AGI refuses the outbound scripts: they count every account's calls
/// across calls, which only the daemon remembers.
pub fn outbound_needs_the_daemon() -> BadRequest {
    BadRequest {
        error: "the outbound check needs the daemon (it counts each account's calls across calls): use AGI(agi://127.0.0.1/outbound) with extsecurity serve".into(),
        raw: Vec::new(),
        blame: None,
    }
}

/// The longest account name: Asterisk keeps group names in 80 bytes.
const MAX_ACCOUNT: usize = 80;

/// The random tokens that frame our query and its reply, with the reply's first bytes
/// precomputed (they are compared against every line). All in one string, so that a
/// call costs one allocation for them, not eight.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `200 result=1 (<T0><T1>…<T6>`
    text: String,
    /// Where each token ends in `text`; `ends[0]` is where `200 result=1 (` does.
    ends: [usize; 8],
}

impl Tokens {
    /// Seven 96-bit tokens from the operating system's CSPRNG.
    pub fn random() -> Tokens {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; 7 * 12];
        // Without randomness a token could be predicted: better to fail the check loudly.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let mut hex = [[0u8; 27]; 7];
        for (token, random) in hex.iter_mut().zip(bytes.chunks(12)) {
            token[..3].copy_from_slice(b"ext");
            for (pair, b) in token[3..].chunks_mut(2).zip(random) {
                pair[0] = HEX[usize::from(b >> 4)];
                pair[1] = HEX[usize::from(b & 15)];
            }
        }
        Tokens::fixed(
            hex.each_ref()
                .map(|t| std::str::from_utf8(t).expect("hex is ASCII")),
        )
    }

    /// Given tokens, for tests.
    pub fn fixed<S: AsRef<str>>(tokens: [S; 7]) -> Tokens {
        const START: &str = "200 result=1 (";
        let mut text = String::with_capacity(START.len() + 7 * 27);
        text.push_str(START);
        let mut ends = [START.len(); 8];
        for (i, token) in tokens.iter().enumerate() {
            text.push_str(token.as_ref());
            ends[i + 1] = text.len();
        }
        Tokens { text, ends }
    }

    /// Token `i` (0 to 6).
    fn get(&self, i: usize) -> &str {
        &self.text[self.ends[i]..self.ends[i + 1]]
    }

    /// `200 result=1 (<T0>`: how our reply starts.
    fn reply_start(&self) -> &[u8] {
        &self.text.as_bytes()[..self.ends[1]]
    }
}

/// The dialplan expressions a script reads, for a channel technology (design.md §3,
/// §3e). The outbound ones read the account from the group `[extsec-outbound]` set, so
/// that every driver names it alike, and its live calls from that group's count. A
/// Local channel (forwarding, follow-me, a queue, `Originate`: design §3g) has no
/// transport: its address is the one the call that started it carried down
/// (`__EXTSEC_ADDRESS`, inherited), if any.
fn expressions(script: Script, channel_type: &[u8]) -> &'static [&'static str] {
    let pjsip = channel_type == b"PJSIP";
    match script {
        Script::Guest => guest_expressions(channel_type),
        Script::Outbound if pjsip => &[
            "${GROUP(extsec-outbound)}",
            "${ARG1}",
            "${CHANNEL(pjsip,remote_addr)}",
            "${GROUP_COUNT(@extsec-outbound)}",
        ],
        Script::Outbound if channel_type == b"Local" => &[
            "${GROUP(extsec-outbound)}",
            "${ARG1}",
            "${EXTSEC_ADDRESS}",
            "${GROUP_COUNT(@extsec-outbound)}",
        ],
        Script::Outbound => &[
            "${GROUP(extsec-outbound)}",
            "${ARG1}",
            "${CHANNEL(peerip)}",
            "${GROUP_COUNT(@extsec-outbound)}",
        ],
        Script::OutboundEnd => &[
            "${GROUP(extsec-outbound)}",
            "${EXTSEC_CLASS}",
            "${ANSWEREDTIME}",
        ],
    }
}

fn guest_expressions(channel_type: &[u8]) -> &'static [&'static str] {
    match channel_type {
        b"PJSIP" => &[
            "${CHANNEL(pjsip,remote_addr)}",
            "${CALLERID(num)}",
            "${CALLERID(name)}",
            "${EXTEN}",
            "${PJSIP_HEADER(read,User-Agent)}",
            "${CHANNEL(endpoint)}",
        ],
        // chan_sip, and IAX2, which also knows CHANNEL(peerip).
        _ => &[
            "${CHANNEL(peerip)}",
            "${CALLERID(num)}",
            "${CALLERID(name)}",
            "${EXTEN}",
            "${CHANNEL(useragent)}",
            "${CHANNEL(peername)}",
        ],
    }
}

#[derive(Debug)]
enum Phase {
    Block,
    Reply,
    /// The outbound request was read from the URL and the block: the driver judges it
    /// and sends [`Session::verdict`].
    Judging,
    Done,
}

/// The state of one exchange.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    tokens: Tokens,
    /// Index in `ORDER` of the last known key seen.
    last_key: Option<usize>,
    /// The `ORDER` keys seen, a bit each.
    seen: u32,
    /// Keys a newer Asterisk may add, seen: few or none.
    seen_other: Vec<Vec<u8>>,
    next_arg: usize,
    /// `agi_arg_1`: the number, for an outbound check that passes it there.
    arg1: Option<Vec<u8>>,
    channel_type: Vec<u8>,
    /// `agi_uniqueid`: Asterisk's id of the channel, which the outbound check and the
    /// call's hangup handler both name.
    uniqueid: Vec<u8>,
    /// FastAGI: the path and query of the `agi://` URL, written before any caller value.
    network_script: Option<Vec<u8>>,
    block_lines: usize,
    stray_lines: usize,
    /// The reply so far (lines joined by LF), once its first line has arrived.
    reply: Option<Vec<u8>>,
    /// Evidence that a caller reshaped the stream.
    tampered: Option<&'static str>,
    /// Inside Asterisk's multi-line `520-` usage reply, which ends with `520 `.
    in_usage: bool,
    /// Asterisk said `HANGUP` (FastAGI): information, not the end of the check.
    pub hung_up: bool,
    /// What the block asked for; known once the block is in.
    script: Script,
    /// `<Tn>)`: the end of our reply, `n` the number of values asked.
    reply_end: Vec<u8>,
    /// The reply due answers [`Session::verdict`], not a query.
    answering: bool,
    /// The tampering known when the verdict was sent, which that verdict judged.
    judged_tampering: bool,
}

impl Session {
    pub fn new(tokens: Tokens) -> Session {
        Session {
            phase: Phase::Block,
            tokens,
            last_key: None,
            seen: 0,
            seen_other: Vec::new(),
            next_arg: 1,
            arg1: None,
            channel_type: Vec::new(),
            uniqueid: Vec::new(),
            network_script: None,
            block_lines: 0,
            stray_lines: 0,
            reply: None,
            tampered: None,
            in_usage: false,
            hung_up: false,
            script: Script::Guest,
            reply_end: Vec::new(),
            answering: false,
            judged_tampering: false,
        }
    }

    /// What the block asked for (the guest check until the block is in).
    pub fn script(&self) -> Script {
        self.script
    }

    /// The channel's `agi_uniqueid` (`1733580000.123`): Asterisk's, never a caller's;
    /// anything but digits and dots, or over 64 bytes, is read as none.
    fn call_id(&self) -> String {
        let id = &self.uniqueid;
        let plain = id.len() <= 64 && id.iter().all(|b| b.is_ascii_digit() || *b == b'.');
        match plain {
            true => String::from_utf8_lossy(id).into_owned(),
            false => String::new(),
        }
    }

    /// FastAGI: the URL's script and query (`check?key=…`), from the dialplan, never from
    /// a caller: it is the first line of the block.
    pub fn network_script(&self) -> Option<&[u8]> {
        self.network_script.as_deref()
    }

    /// Whether Asterisk sent anything at all: a connection that never did was no call.
    pub fn started(&self) -> bool {
        self.block_lines > 0
    }

    /// Whether the block is complete and our query sent: from here Asterisk may answer
    /// as late as it needs (an overloaded PBX answers seconds late), and it is Asterisk
    /// closing our end, not a timer, that ends the wait.
    pub fn awaiting_reply(&self) -> bool {
        matches!(self.phase, Phase::Reply)
    }

    /// Whether the request was read whole from the URL and the block, and waits for
    /// [`Session::verdict`].
    pub fn judging(&self) -> bool {
        matches!(self.phase, Phase::Judging)
    }

    /// Why the exchange looks tampered with, if it does.
    pub fn tampering(&self) -> Option<&'static str> {
        self.tampered
    }

    /// Feeds one line from Asterisk.
    pub fn on_line(&mut self, line: Line) -> Step {
        match self.phase {
            Phase::Block => self.on_block_line(line),
            Phase::Reply => self.on_reply_line(line),
            // Nothing is due before our verdict: whatever comes is the block's rest.
            Phase::Judging => {
                self.tamper("a line after the agi_* block, before our verdict");
                Step::Read
            }
            Phase::Done => Step::Read,
        }
    }

    /// Asterisk closed the stream, refused our query, or the driver gave up waiting before
    /// our reply came: without the reply there is no peer address, so no one is blamed.
    pub fn on_eof(&mut self, why: &str) -> Result<Request, BadRequest> {
        self.phase = Phase::Done;
        Err(BadRequest {
            error: format!("AGI: no answer to our query: {why}"),
            raw: Vec::new(),
            blame: None,
        })
    }

    fn tamper(&mut self, why: &'static str) {
        self.tampered.get_or_insert(why);
    }

    fn on_block_line(&mut self, line: Line) -> Step {
        self.block_lines += 1;
        if self.block_lines > MAX_BLOCK_LINES {
            return Step::Done(self.on_eof("the agi_* block never ended"));
        }
        let Line::Text(text) = line else {
            self.tamper("an over-long line in the agi_* block");
            return Step::Read;
        };
        if text.is_empty() {
            if !REQUIRED.clone().all(|i| self.seen & (1 << i) != 0) {
                self.tamper("the agi_* block ended early");
            }
            self.script = Script::of(self.network_script.as_deref());
            // Copied (the request borrows it while the session changes) for the
            // outbound check only: the guest check, the hot path, allocates nothing.
            if self.script == Script::Outbound
                && let Some(script) = self.network_script.clone()
                && let Some(given) = Given::read(&script)
            {
                self.phase = Phase::Judging;
                return Step::Done(self.given(given));
            }
            self.phase = Phase::Reply;
            return Step::Send(self.query());
        }
        self.on_block_entry(&text);
        Step::Read
    }

    fn on_block_entry(&mut self, text: &[u8]) {
        let Some((key, value)) = text
            .strip_prefix(b"agi_")
            .and_then(|rest| split_once(rest, b": "))
        else {
            return self.tamper("a line in the agi_* block that is not an agi_ variable");
        };
        if let Some(n) = key.strip_prefix(b"arg_") {
            if n == b"1" && self.next_arg == 1 {
                self.arg1 = Some(value.to_vec());
            }
            return self.on_arg(n);
        }
        let Some(index) = ORDER.iter().position(|k| k.as_bytes() == key) else {
            // A key a newer Asterisk may add: harmless, we read no block value; but
            // Asterisk writes the arguments last.
            if self.next_arg > 1 {
                return self.tamper("agi_ variables out of order");
            }
            if self.seen_other.iter().any(|k| k == key) {
                return self.tamper("a duplicated agi_ variable");
            }
            return self.seen_other.push(key.to_vec());
        };
        if self.seen & (1 << index) != 0 {
            return self.tamper("a duplicated agi_ variable");
        }
        self.seen |= 1 << index;
        if self.last_key.is_some_and(|last| index <= last) {
            return self.tamper("agi_ variables out of order");
        }
        self.last_key = Some(index);
        match key {
            b"type" => self.channel_type = value.to_vec(),
            b"uniqueid" => self.uniqueid = value.to_vec(),
            b"network_script" => self.network_script = Some(value.to_vec()),
            _ => {}
        }
    }

    /// `agi_arg_N`: numbered from 1, in order, each once, after every other key.
    fn on_arg(&mut self, n: &[u8]) {
        let canonical =
            !n.is_empty() && n.iter().all(u8::is_ascii_digit) && (n[0] != b'0' || n.len() == 1);
        let number = std::str::from_utf8(n)
            .ok()
            .and_then(|n| n.parse::<usize>().ok());
        match number.filter(|_| canonical) {
            Some(k) if k == self.next_arg => {
                self.next_arg += 1;
                self.last_key = Some(ORDER.len());
            }
            Some(k) if k < self.next_arg && k > 0 => self.tamper("a duplicated agi_ variable"),
            _ => self.tamper("agi_arg_N out of order"),
        }
    }

    /// The outbound request from the URL's values and `agi_arg_1`. The account, the
    /// address and the count came before any caller byte; the number did not, and is
    /// believed only once [`Session::verdict`]'s answer comes with nothing before it.
    fn given(&mut self, given: Given<'_>) -> Result<Request, BadRequest> {
        if self.next_arg != 2 {
            self.tamper("not one agi_arg_N after the block");
        }
        let number = self.arg1.clone().unwrap_or_default();
        self.outbound(given.account, &number, given.address, given.live)
            .map_err(|error| BadRequest {
                error,
                raw: self.network_script.clone().unwrap_or_default(),
                blame: None,
            })
    }

    /// An outbound request from its four values, however they came (the query's
    /// reply, or the URL and the block).
    fn outbound(
        &self,
        account_name: &[u8],
        number: &[u8],
        transport: &[u8],
        live: &[u8],
    ) -> Result<Request, String> {
        let account = account(account_name)?;
        // Only a Local channel may have none: every other has a transport.
        let address = match transport {
            b"" if self.channel_type == b"Local" => None,
            value => Some(address(value)?),
        };
        Ok(Request::Outbound(Outbound {
            account,
            number: number.to_vec(),
            address,
            live: count(live)?,
            call_id: self.call_id(),
            tampered: self.tampered.is_some(),
        }))
    }

    /// `GET FULL VARIABLE "<T0>${SET(NAME=value)}…<T1>"`: the verdict, written by
    /// Asterisk's `SET()` as it substitutes (func_logic.c splits at the first `=` only),
    /// answered between our tokens. Our own names and values only (`[A-Za-z0-9_(),-]`),
    /// never a caller's.
    pub fn verdict(&mut self, variables: &[(&str, String)]) -> Vec<u8> {
        let t = &self.tokens;
        let mut command = format!("GET FULL VARIABLE \"{}", t.get(0));
        for (name, value) in variables {
            debug_assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_(),-".contains(&b))
            );
            command.push_str(&format!("${{SET({name}={value})}}"));
        }
        command.push_str(t.get(1));
        command.push_str("\"\n");
        self.reply_end = format!("{})", t.get(1)).into_bytes();
        self.reply = None;
        self.answering = true;
        self.judged_tampering = self.tampered.is_some();
        self.phase = Phase::Reply;
        command.into_bytes()
    }

    /// `GET FULL VARIABLE "<T0>${peer}<T1>${num}<T2>${name}<T3>${exten}<T4>${ua}<T5>${peer name}<T6>"`
    /// for the guest check; the outbound scripts ask fewer values, ended by the token
    /// after their last.
    fn query(&mut self) -> Vec<u8> {
        let t = &self.tokens;
        let e = expressions(self.script, &self.channel_type);
        let mut q = format!("GET FULL VARIABLE \"{}", t.get(0));
        for (i, expr) in e.iter().enumerate() {
            q.push_str(expr);
            q.push_str(t.get(i + 1));
        }
        q.push_str("\"\n");
        self.reply_end = format!("{})", t.get(e.len())).into_bytes();
        q.into_bytes()
    }

    fn on_reply_line(&mut self, line: Line) -> Step {
        let Line::Text(text) = line else {
            self.tamper("an over-long line where Asterisk's reply was due");
            return self.stray();
        };
        let reply = match self.reply.take() {
            Some(mut so_far) => {
                so_far.push(b'\n');
                so_far.extend_from_slice(&text);
                so_far
            }
            None if text.starts_with(self.tokens.reply_start()) => text,
            None if text == b"HANGUP" => {
                self.hung_up = true;
                return Step::Read;
            }
            // After a clean block nothing a caller sent can stand here, so a status line
            // is Asterisk refusing our query (510 unknown, 511 dead channel, 520 usage).
            None if self.in_usage && !text.starts_with(b"520 ") => return Step::Read,
            None if self.in_usage || (self.tampered.is_none() && is_refusal(&text)) => {
                if text.starts_with(b"520-") {
                    self.in_usage = true; // The usage text follows; "520 " ends it.
                    return Step::Read;
                }
                let refusal = String::from_utf8_lossy(&text).into_owned();
                return Step::Done(self.on_eof(&format!("Asterisk refused our query ({refusal})")));
            }
            None => {
                self.tamper("a line where Asterisk's reply was due");
                return self.stray();
            }
        };
        if reply.ends_with(&self.reply_end) {
            self.phase = Phase::Done;
            if self.answering {
                return Step::Done(Ok(Request::Answered {
                    tampered: self.tampered.filter(|_| !self.judged_tampering),
                }));
            }
            return Step::Done(self.judge(&reply));
        }
        if reply.len() > 8 * 64 * 1024 {
            return Step::Done(self.on_eof("a reply over 512 KiB"));
        }
        self.reply = Some(reply);
        Step::Read
    }

    fn stray(&mut self) -> Step {
        self.stray_lines += 1;
        if self.stray_lines > MAX_STRAY_LINES {
            return Step::Done(self.on_eof("too many lines that were not our reply"));
        }
        Step::Read
    }

    /// Splits our reply at the tokens into the values asked, then reads them as the
    /// script's request.
    fn judge(&mut self, reply: &[u8]) -> Result<Request, BadRequest> {
        let t = &self.tokens;
        let asked = expressions(self.script, &self.channel_type).len();
        let body = &reply[t.reply_start().len()..reply.len() - self.reply_end.len()];
        let mut values: Vec<&[u8]> = Vec::with_capacity(asked);
        let mut rest = body;
        for i in 1..asked {
            let (value, after) =
                split_once(rest, t.get(i).as_bytes()).ok_or_else(|| BadRequest {
                    error: "AGI: a token of our query is missing from its reply".into(),
                    raw: reply.to_vec(),
                    blame: None,
                })?;
            values.push(value);
            rest = after;
        }
        values.push(rest);
        if values.iter().any(|v| v.contains(&b'\n')) {
            self.tamper("a value holding a line feed");
        }
        let bad = |error: String| BadRequest {
            error,
            raw: reply.to_vec(),
            blame: None,
        };
        match self.script {
            Script::Guest => {
                let peer_ip = address(values[0]).map_err(bad)?;
                Ok(Request::Guest(Call {
                    peer_ip,
                    callerid_num: values[1].to_vec(),
                    callerid_name: values[2].to_vec(),
                    exten: values[3].to_vec(),
                    user_agent: values[4].to_vec(),
                    peer_name: values[5].to_vec(),
                    anomaly: self.tampered.map(|_| Anomaly::RequestTampering),
                }))
            }
            Script::Outbound => self
                .outbound(values[0], values[1], values[2], values[3])
                .map_err(bad),
            Script::OutboundEnd => Ok(Request::OutboundEnd {
                account: account(values[0]).map_err(bad)?,
                call_id: self.call_id(),
                class: values[1].to_vec(),
                answered: std::str::from_utf8(values[2])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            }),
        }
    }
}

/// The transport's address, from `CHANNEL(pjsip,remote_addr)` or `CHANNEL(peerip)`.
fn address(value: &[u8]) -> Result<IpAddr, String> {
    let peer = String::from_utf8_lossy(value);
    parse_peer_ip(&peer).map_err(|e| format!("AGI: {e}: {peer:?}"))
}

/// `GROUP_COUNT(@extsec-outbound)`: the account's calls up, this one included.
fn count(value: &[u8]) -> Result<u32, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "AGI: GROUP_COUNT(@extsec-outbound) is not a count: {:?} (the dialplan must set GROUP(extsec-outbound) first: [extsec-outbound])",
                String::from_utf8_lossy(value)
            )
        })
}

/// What the shipped outbound subroutine writes into its URL, after the key:
/// `outbound?key=K&address=A&account=NAME&live=N`. The account is everything between
/// `account=` and the last `&live=`, whatever it holds: it is the administrator's
/// name, not a caller's, and the count, written last, comes after it (the dialplan
/// puts the channel in the account's group as it writes the name, then counts).
/// `None`: a URL without them (an older subroutine, which is asked the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Given<'a> {
    live: &'a [u8],
    address: &'a [u8],
    account: &'a [u8],
}

impl<'a> Given<'a> {
    fn read(network_script: &'a [u8]) -> Option<Given<'a>> {
        let query = network_script.splitn(2, |&b| b == b'?').nth(1)?;
        let starts = |i: usize, name: &[u8]| {
            query[i..].starts_with(name) && (i == 0 || query[i - 1] == b'&')
        };
        let account = (0..query.len()).find(|&i| starts(i, b"account="))?;
        let live = (account..query.len())
            .rev()
            .find(|&i| starts(i, b"live="))?;
        let address = query[..account]
            .split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(b"address="))
            .unwrap_or_default();
        Some(Given {
            live: &query[live + b"live=".len()..],
            address,
            // `live - 1` is the `&` before `live=`, after all of `account=`.
            account: &query[account + b"account=".len()..live - 1],
        })
    }
}

/// An account name as the dialplan set it: the PBX's own, but read as hostile all the
/// same (a SIP peer's name can hold anything): printable ASCII, 1 to 80 bytes.
fn account(value: &[u8]) -> Result<String, String> {
    if value.is_empty() {
        return Err("AGI: no account: GROUP(extsec-outbound) is empty (call the outbound check through [extsec-outbound], which sets it)".into());
    }
    if value.len() > MAX_ACCOUNT || !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(format!(
            "AGI: the account name {:?} is not 1-{MAX_ACCOUNT} printable ASCII characters",
            String::from_utf8_lossy(&value[..value.len().min(MAX_ACCOUNT)])
        ));
    }
    Ok(String::from_utf8_lossy(value).into_owned())
}

fn is_refusal(line: &[u8]) -> bool {
    [&b"510 "[..], b"511 ", b"520 ", b"520-"]
        .iter()
        .any(|p| line.starts_with(p))
}

fn split_once<'a>(haystack: &'a [u8], needle: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = haystack.windows(needle.len()).position(|w| w == needle)?;
    Some((&haystack[..at], &haystack[at + needle.len()..]))
}

/// Asterisk's answer to a command sent after our query's reply (the verdict).
///
/// Every caller byte came inside the token-framed reply, which is consumed whole, so
/// what follows is Asterisk's own: one status line per command (`200 result=0`, `510 …`,
/// `511 …`), or a `520-` usage text ended by `520 `. FastAGI's `HANGUP` is no answer, and
/// neither is anything that does not start with a status code.
#[derive(Debug, Default)]
pub struct Answer {
    in_usage: bool,
}

impl Answer {
    /// Feeds one line; the status line once the answer is complete.
    pub fn on_line(&mut self, line: Line) -> Option<Vec<u8>> {
        let Line::Text(text) = line else {
            return None;
        };
        let status = text.len() >= 4 && text[..3].iter().all(u8::is_ascii_digit);
        match (status, text.get(3)) {
            (true, Some(b'-')) if text.starts_with(b"520-") => {
                self.in_usage = true;
                None
            }
            (true, Some(b' ')) if !self.in_usage || text.starts_with(b"520 ") => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The session against hand-made streams in the shape of `../shared/captures/agi/`
    //! (design.md §3a); tests/it/agi.rs replays the captures themselves.
    use super::*;

    const T: [&str; 7] = ["<t0>", "<t1>", "<t2>", "<t3>", "<t4>", "<t5>", "<t6>"];

    fn block(dnid: &str) -> Vec<String> {
        let mut lines: Vec<String> = [
            "agi_request: /usr/bin/extsecurity",
            "agi_channel: PJSIP/anonymous-00000002",
            "agi_language: en",
            "agi_type: PJSIP",
            "agi_uniqueid: 1795633497.2",
            "agi_version: 20.20.1",
            "agi_callerid: 5551234",
            "agi_calleridname: Lab",
            "agi_callingpres: 0",
            "agi_callingani2: 0",
            "agi_callington: 0",
            "agi_callingtns: 0",
        ]
        .map(String::from)
        .to_vec();
        lines.extend(dnid.split('\n').map(|l| l.to_string()));
        lines.extend(
            [
                "agi_rdnis: unknown",
                "agi_context: default",
                "agi_extension: 100",
                "agi_priority: 2",
                "agi_enhanced: 0.0",
                "agi_accountcode: ",
                "agi_threadid: 139665663317696",
                "agi_arg_1: agi",
                "",
            ]
            .map(String::from),
        );
        lines
    }

    fn feed(session: &mut Session, lines: &[String]) -> Vec<Step> {
        lines
            .iter()
            .map(|l| session.on_line(Line::Text(l.clone().into_bytes())))
            .filter(|s| *s != Step::Read)
            .collect()
    }

    fn reply(values: [&str; 6]) -> String {
        let mut r = format!("200 result=1 ({}", T[0]);
        for (v, t) in values.iter().zip(&T[1..]) {
            r.push_str(v);
            r.push_str(t);
        }
        r + ")"
    }

    const VALUES: [&str; 6] = ["203.0.113.5:5060", "5551234", "Lab", "100", "UA", "ep"];

    fn done(steps: Vec<Step>) -> Result<Call, BadRequest> {
        match steps.into_iter().last() {
            Some(Step::Done(r)) => r.and_then(Request::into_guest),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn a_clean_block_gets_one_token_framed_query() {
        let mut s = Session::new(Tokens::fixed(T));
        let steps = feed(&mut s, &block("agi_dnid: 100"));
        assert_eq!(
            steps,
            [Step::Send(
                b"GET FULL VARIABLE \"<t0>${CHANNEL(pjsip,remote_addr)}<t1>${CALLERID(num)}<t2>${CALLERID(name)}<t3>${EXTEN}<t4>${PJSIP_HEADER(read,User-Agent)}<t5>${CHANNEL(endpoint)}<t6>\"\n".to_vec()
            )]
        );
        let call = done(feed(&mut s, &[reply(VALUES)])).unwrap();
        assert_eq!(call.peer_ip.to_string(), "203.0.113.5");
        assert_eq!(
            (call.exten.as_slice(), call.user_agent.as_slice()),
            (&b"100"[..], &b"UA"[..])
        );
        assert_eq!(call.anomaly, None);
        assert_eq!(s.tampering(), None);
    }

    #[test]
    fn a_block_ended_early_by_a_caller_is_tampering_and_its_stray_lines_are_skipped() {
        // Capture A1: Request-URI user `100%0A%0A200%20result=1%20(6.6.6.6)`.
        let mut s = Session::new(Tokens::fixed(T));
        let lines = block("agi_dnid: 100\n\n200 result=1 (6.6.6.6)");
        let steps = feed(&mut s, &lines);
        assert!(matches!(steps[..], [Step::Send(_)]), "{steps:?}");
        assert_eq!(s.tampering(), Some("the agi_* block ended early"));
        let call = done(feed(&mut s, &[reply(VALUES)])).unwrap();
        assert_eq!(call.peer_ip.to_string(), "203.0.113.5", "never 6.6.6.6");
        assert_eq!(call.anomaly, Some(Anomaly::RequestTampering));
    }

    #[test]
    fn a_value_split_by_a_line_feed_is_read_whole_and_is_tampering() {
        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100"));
        let r = reply([
            "203.0.113.5:5060",
            "555\n200 result=1 (6.6.6.6)",
            "a)b (c) d)",
            "100",
            "",
            "",
        ]);
        let lines: Vec<String> = r.split('\n').map(String::from).collect();
        let call = done(feed(&mut s, &lines)).unwrap();
        assert_eq!(call.callerid_num, b"555\n200 result=1 (6.6.6.6)");
        assert_eq!(call.callerid_name, b"a)b (c) d)");
        assert_eq!(call.anomaly, Some(Anomaly::RequestTampering));
    }

    #[test]
    fn hangup_is_information_and_refusals_after_a_clean_block_end_the_exchange() {
        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100"));
        assert_eq!(feed(&mut s, &["HANGUP".into()]), []);
        assert!(s.hung_up);
        assert!(done(feed(&mut s, &[reply(VALUES)])).is_ok());

        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100"));
        let e = done(feed(
            &mut s,
            &["511 Command Not Permitted on a dead channel".into()],
        ))
        .unwrap_err();
        assert!(e.error.contains("511"), "{}", e.error);
        assert_eq!(e.blame, None);

        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100"));
        let usage = [
            "520-Invalid command syntax.  Proper usage follows:",
            "Usage: ...",
            "520 End of proper usage.",
        ];
        let e = done(feed(&mut s, &usage.map(String::from))).unwrap_err();
        assert!(e.error.contains("520 End"), "{}", e.error);
    }

    #[test]
    fn after_tampering_a_forged_refusal_does_not_end_the_exchange() {
        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100\n\n511 Command Not Permitted"));
        let call = done(feed(&mut s, &[reply(VALUES)])).unwrap();
        assert_eq!(call.peer_ip.to_string(), "203.0.113.5");
        assert_eq!(call.anomaly, Some(Anomaly::RequestTampering));
    }

    #[test]
    fn block_shape_violations_are_tampering() {
        for (dnid, why) in [
            ("agi_dnid: 100\nagi_dnid: 200", "a duplicated agi_ variable"),
            (
                "agi_dnid: 100\n200 result=1 (6.6.6.6)",
                "a line in the agi_* block that is not an agi_ variable",
            ),
            (
                "agi_dnid: 100\nagi_callerid: 9",
                "a duplicated agi_ variable",
            ),
            (
                "agi_dnid: 100\nagi_language: xx",
                "a duplicated agi_ variable",
            ),
            ("agi_dnid: 100\nagi_arg_7: x", "agi_arg_N out of order"),
        ] {
            let mut s = Session::new(Tokens::fixed(T));
            feed(&mut s, &block(dnid));
            assert_eq!(s.tampering(), Some(why), "{dnid:?}");
        }
        for (args, why) in [
            (
                "agi_arg_1: agi\nagi_arg_1: x",
                Some("a duplicated agi_ variable"),
            ),
            (
                "agi_arg_1: agi\nagi_arg_01: x",
                Some("agi_arg_N out of order"),
            ),
            (
                "agi_arg_1: agi\nagi_arg_+2: x",
                Some("agi_arg_N out of order"),
            ),
            ("agi_arg_0: agi", Some("agi_arg_N out of order")),
            (
                "agi_arg_2: agi\nagi_arg_1: x",
                Some("agi_arg_N out of order"),
            ),
            ("agi_arg_1: agi\nagi_arg_2: x\nagi_arg_3: y", None),
            (
                "agi_newkey: a\nagi_newkey: b\nagi_arg_1: agi",
                Some("a duplicated agi_ variable"),
            ),
        ] {
            let mut lines = block("agi_dnid: 100");
            let at = lines.iter().position(|l| l == "agi_arg_1: agi").unwrap();
            lines.splice(at..=at, args.split('\n').map(String::from));
            let mut s = Session::new(Tokens::fixed(T));
            feed(&mut s, &lines);
            assert_eq!(s.tampering(), why, "{args:?}");
        }
        let mut s = Session::new(Tokens::fixed(T));
        s.on_line(Line::TooLong);
        assert_eq!(s.tampering(), Some("an over-long line in the agi_* block"));
        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100\nagi_newkey: harmless"));
        assert_eq!(
            s.tampering(),
            None,
            "keys a newer Asterisk adds are tolerated"
        );
    }

    #[test]
    fn a_reply_without_a_valid_peer_blames_no_one() {
        let mut s = Session::new(Tokens::fixed(T));
        feed(&mut s, &block("agi_dnid: 100"));
        let e = done(feed(&mut s, &[reply(["", "1", "", "100", "", ""])])).unwrap_err();
        assert_eq!(e.blame, None);
    }

    #[test]
    fn random_tokens_differ_and_are_hex() {
        let (a, b) = (Tokens::random(), Tokens::random());
        assert_ne!(a.text, b.text);
        assert!(a.text.starts_with("200 result=1 (ext"));
        for t in (0..7).map(|i| a.get(i)) {
            assert!(t.starts_with("ext"), "{t}");
            assert_eq!(t.len(), 3 + 24);
            assert!(t[3..].bytes().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn an_answer_is_a_status_line_and_hangup_is_none() {
        let mut a = Answer::default();
        assert_eq!(a.on_line(Line::Text(b"HANGUP".to_vec())), None);
        assert_eq!(a.on_line(Line::TooLong), None);
        assert_eq!(a.on_line(Line::Text(b"agi_x: y".to_vec())), None);
        assert_eq!(
            a.on_line(Line::Text(b"200 result=0".to_vec())),
            Some(b"200 result=0".to_vec())
        );
        let mut a = Answer::default();
        assert_eq!(
            a.on_line(Line::Text(b"520-Invalid command syntax.".to_vec())),
            None
        );
        assert_eq!(
            a.on_line(Line::Text(b"200 in the usage text".to_vec())),
            None
        );
        assert_eq!(
            a.on_line(Line::Text(b"520 End of proper usage.".to_vec())),
            Some(b"520 End of proper usage.".to_vec())
        );
    }

    /// The outbound block as design §3e recorded it: `agi_network_script: outbound`,
    /// context `extsec-outbound`, extension `s`.
    fn outbound_block(script: &str, tech: &str) -> Vec<String> {
        let mut lines = vec![
            "agi_network: yes".to_string(),
            format!("agi_network_script: {script}"),
        ];
        lines.extend(
            block("agi_dnid: 00442079460123")
                .into_iter()
                .map(|l| match l.as_str() {
                    "agi_type: PJSIP" => format!("agi_type: {tech}"),
                    "agi_arg_1: agi" => "agi_arg_1: 00442079460123".to_string(),
                    _ => l,
                }),
        );
        lines
    }

    fn outbound_reply(values: &[&str]) -> String {
        let mut r = format!("200 result=1 ({}", T[0]);
        for (v, t) in values.iter().zip(&T[1..]) {
            r.push_str(v);
            r.push_str(t);
        }
        r + ")"
    }

    #[test]
    fn the_outbound_query_reads_the_group_the_number_and_the_count() {
        let mut s = Session::new(Tokens::fixed(T));
        let steps = feed(&mut s, &outbound_block("outbound?key=abc", "PJSIP"));
        assert_eq!(s.script(), Script::Outbound);
        assert_eq!(
            steps,
            [Step::Send(
                b"GET FULL VARIABLE \"<t0>${GROUP(extsec-outbound)}<t1>${ARG1}<t2>${CHANNEL(pjsip,remote_addr)}<t3>${GROUP_COUNT(@extsec-outbound)}<t4>\"\n".to_vec()
            )]
        );
        // A `)` and `<t6>` in the number are only bytes of it: the reply ends at <t4>).
        let steps = feed(
            &mut s,
            &[outbound_reply(&[
                "1001",
                "0044) <t6>",
                "203.0.113.5:5060",
                "2",
            ])],
        );
        let Some(Step::Done(Ok(Request::Outbound(o)))) = steps.into_iter().last() else {
            panic!("not an outbound request")
        };
        assert_eq!(
            (
                o.account.as_str(),
                o.number.as_slice(),
                o.address.map(|a| a.to_string()),
                o.live,
                o.tampered
            ),
            (
                "1001",
                &b"0044) <t6>"[..],
                Some("203.0.113.5".to_string()),
                2,
                false
            )
        );
        let mut sip = Session::new(Tokens::fixed(T));
        let steps = feed(&mut sip, &outbound_block("outbound", "SIP"));
        let Step::Send(q) = &steps[0] else { panic!() };
        assert!(String::from_utf8_lossy(q).contains("<t2>${CHANNEL(peerip)}<t3>"));
    }

    #[test]
    fn an_outbound_request_without_a_group_or_with_a_hostile_account_is_refused() {
        for (values, error) in [
            (
                ["", "0044", "203.0.113.5:5060", ""],
                "no account: GROUP(extsec-outbound) is empty",
            ),
            (
                ["10 01", "0044", "203.0.113.5:5060", "1"],
                "is not 1-80 printable ASCII",
            ),
            (
                ["1001", "0044", "203.0.113.5:5060", ""],
                "GROUP_COUNT(@extsec-outbound) is not a count",
            ),
            (["1001", "0044", "not an address", "1"], "AGI:"),
        ] {
            let mut s = Session::new(Tokens::fixed(T));
            feed(&mut s, &outbound_block("outbound", "PJSIP"));
            let steps = feed(&mut s, &[outbound_reply(&values)]);
            let Some(Step::Done(Err(bad))) = steps.into_iter().last() else {
                panic!("{values:?}: not refused")
            };
            assert!(bad.error.contains(error), "{values:?}: {}", bad.error);
            assert_eq!(bad.blame, None, "an outbound request blames no one");
        }
    }

    #[test]
    fn the_end_of_an_outbound_call_reads_its_class_and_answered_seconds() {
        let mut s = Session::new(Tokens::fixed(T));
        let steps = feed(&mut s, &outbound_block("outbound-end", "PJSIP"));
        assert_eq!(
            steps,
            [Step::Send(
                b"GET FULL VARIABLE \"<t0>${GROUP(extsec-outbound)}<t1>${EXTSEC_CLASS}<t2>${ANSWEREDTIME}<t3>\"\n".to_vec()
            )]
        );
        let steps = feed(&mut s, &[outbound_reply(&["1001", "international", "185"])]);
        assert_eq!(
            steps.into_iter().last(),
            Some(Step::Done(Ok(Request::OutboundEnd {
                account: "1001".into(),
                call_id: "1795633497.2".into(),
                class: b"international".to_vec(),
                answered: 185,
            })))
        );
    }

    const GIVEN: &str = "outbound?key=abc&address=203.0.113.5:5060&account=1001&live=2";

    fn judged(steps: Vec<Step>) -> Outbound {
        match steps.into_iter().last() {
            Some(Step::Done(Ok(Request::Outbound(o)))) => o,
            other => panic!("not an outbound request: {other:?}"),
        }
    }

    #[test]
    fn values_in_the_url_are_judged_without_a_query_and_answered_in_one_command() {
        let mut s = Session::new(Tokens::fixed(T));
        let o = judged(feed(&mut s, &outbound_block(GIVEN, "PJSIP")));
        assert!(s.judging());
        assert_eq!(
            (o.account.as_str(), o.number.as_slice(), o.live, o.tampered),
            ("1001", &b"00442079460123"[..], 2, false)
        );
        assert_eq!(
            o.address.map(|a| a.to_string()).as_deref(),
            Some("203.0.113.5")
        );
        assert_eq!(o.call_id, "1795633497.2");
        let command = s.verdict(&[
            ("EXTSEC_RESULT", "OK".into()),
            ("EXTSEC_REASON", "toll_fraud(concurrent)".into()),
            ("TIMEOUT(absolute)", "3600".into()),
        ]);
        assert_eq!(
            String::from_utf8(command).unwrap(),
            "GET FULL VARIABLE \"<t0>${SET(EXTSEC_RESULT=OK)}${SET(EXTSEC_REASON=toll_fraud(concurrent))}${SET(TIMEOUT(absolute)=3600)}<t1>\"\n"
        );
        let steps = feed(
            &mut s,
            &[
                "HANGUP".into(),
                "200 result=1 (<t0>OKtoll_fraud(concurrent)3600<t1>)".into(),
            ],
        );
        assert_eq!(
            steps,
            [Step::Done(Ok(Request::Answered { tampered: None }))]
        );
    }

    #[test]
    fn a_block_a_caller_ended_early_is_found_before_the_verdict_is_answered() {
        // The caller's name ends the block with a national number of their own; the
        // real rest of the block, then Asterisk's answer, follow.
        let forged = "agi_calleridname: x\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\nagi_callingtns: 0\nagi_dnid: 030901820\nagi_rdnis: unknown\nagi_context: c\nagi_extension: s\nagi_priority: 2\nagi_enhanced: 0.0\nagi_accountcode: \nagi_threadid: 1\nagi_arg_1: 030901820\n";
        let mut lines = outbound_block(GIVEN, "SIP");
        let at = lines
            .iter()
            .position(|l| l.starts_with("agi_calleridname"))
            .unwrap();
        lines.splice(at..=at, forged.split('\n').map(String::from));
        let mut s = Session::new(Tokens::fixed(T));
        let o = judged(feed(&mut s, &lines[..at + 15]));
        assert_eq!(
            (o.number.as_slice(), o.tampered),
            (&b"030901820"[..], false)
        );
        s.verdict(&[("EXTSEC_RESULT", "OK".into())]);
        let mut rest: Vec<String> = lines[at + 15..].to_vec();
        // A forged refusal among them ends nothing: the answer is waited for.
        rest.insert(1, "510 Invalid or unknown command".into());
        rest.push("200 result=1 (<t0>OK<t1>)".into());
        let steps = feed(&mut s, &rest);
        assert!(
            matches!(
                steps.last(),
                Some(Step::Done(Ok(Request::Answered { tampered: Some(_) })))
            ),
            "{steps:?}"
        );
    }

    #[test]
    fn the_urls_values_are_checked_and_the_arguments_counted() {
        for (script, error) in [
            (
                "outbound?key=&address=203.0.113.5&account=&live=2",
                "no account",
            ),
            (
                "outbound?address=203.0.113.5&account=10 01&live=2",
                "printable ASCII",
            ),
            (
                "outbound?address=203.0.113.5&account=1001&live=",
                "is not a count",
            ),
            (
                "outbound?address=203.0.113.5&account=1001&live=2x",
                "is not a count",
            ),
            ("outbound?address=nowhere&account=1001&live=1", "AGI:"),
            ("outbound?account=1001&live=1", "AGI:"),
        ] {
            let mut s = Session::new(Tokens::fixed(T));
            let steps = feed(&mut s, &outbound_block(script, "PJSIP"));
            let Some(Step::Done(Err(bad))) = steps.into_iter().last() else {
                panic!("{script}: not refused")
            };
            assert!(bad.error.contains(error), "{script}: {}", bad.error);
        }
        // An account may hold anything printable, `&live=` included: the count is last.
        let mut s = Session::new(Tokens::fixed(T));
        let o = judged(feed(
            &mut s,
            &outbound_block("outbound?address=&account=a&live=9&live=1", "Local"),
        ));
        assert_eq!(
            (o.account.as_str(), o.live, o.address),
            ("a&live=9", 1, None)
        );
        // No `account=` or no `live=` after it: an older subroutine, asked the values.
        assert_eq!(Given::read(b"outbound?key=x&myaccount=1&live=1"), None);
        assert_eq!(Given::read(b"outbound?live=1&account=1001"), None);
        // Two arguments, or a key after the arguments: the block is not Asterisk's.
        let mut two = outbound_block(GIVEN, "PJSIP");
        two.insert(two.len() - 1, "agi_arg_2: x".into());
        let mut after = outbound_block(GIVEN, "PJSIP");
        after.insert(after.len() - 1, "agi_newkey: x".into());
        for lines in [two, after] {
            let mut s = Session::new(Tokens::fixed(T));
            assert!(judged(feed(&mut s, &lines)).tampered, "{lines:?}");
        }
    }
}
