//! An AGI peer that speaks as Asterisk 20.20.1 does (design.md §3, §3a; the bytes of
//! `../shared/captures/agi/`): the `agi_*` block in res_agi.c's order, values written
//! raw (an empty caller id as `unknown`), an empty line, then one reply per command,
//! `200 result=1 (` + the raw substituted value + `)`. `agi_block_matches_the_capture`
//! in tests/it/agi.rs checks this block against a real capture byte for byte.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{Child, ChildStdin, ChildStdout};

use super::asterisk::{Channel, Driver, substitute};

/// The non-caller parts of a block, defaulting to capture `A0-plain-pjsip.bin`'s.
#[derive(Debug, Clone)]
pub struct Block {
    /// `PJSIP` or `SIP`.
    pub tech: &'static str,
    pub request: String,
    pub channel_name: String,
    pub uniqueid: String,
    pub threadid: String,
    pub priority: String,
    pub args: Vec<String>,
    /// FastAGI: `agi_network: yes` and this `agi_network_script` come first.
    pub network_script: Option<String>,
}

impl Block {
    pub fn pjsip() -> Block {
        Block {
            tech: "PJSIP",
            request: "/usr/local/lib/agi-probe".into(),
            channel_name: "PJSIP/anonymous-00000002".into(),
            uniqueid: "1795633497.2".into(),
            threadid: "139665663317696".into(),
            priority: "2".into(),
            args: vec!["naive".into(), "pattern=_X.".into()],
            network_script: None,
        }
    }

    /// A chan_pjsip channel's block for `AGI(agi://127.0.0.1/check)`, as the daemon gets it.
    pub fn fastagi() -> Block {
        Block {
            request: "agi://127.0.0.1/check".into(),
            network_script: Some("check".into()),
            args: vec![],
            ..Block::pjsip()
        }
    }

    /// The block of `AGI(agi://127.0.0.1/outbound)` in an older `[extsec-outbound]`,
    /// which passed no values: the daemon asks them (design §3e).
    pub fn outbound() -> Block {
        Block {
            request: "agi://127.0.0.1/outbound".into(),
            network_script: Some("outbound".into()),
            args: vec![],
            ..Block::pjsip()
        }
    }

    /// The block of the shipped `[extsec-outbound]`'s `AGI()` for `channel`: the
    /// account, address and live count in the URL, the number (`ARG1`) as argument 1.
    pub fn outbound_given(channel: &Channel, key: &str) -> Block {
        // `__EXTSEC_ADDRESS`, as the subroutine set it from the driver's function.
        let sip = channel.driver == Some(Driver::Sip);
        let address = match substitute("${EXTSEC_ADDRESS}", channel) {
            set if !set.is_empty() => set,
            _ if sip => substitute("${CHANNEL(peerip)}", channel),
            _ => substitute("${CHANNEL(pjsip,remote_addr)}", channel),
        };
        let script = String::from_utf8(substitute(
            &format!("outbound?key={key}&address={}&account=${{GROUP(extsec-outbound)}}&live=${{GROUP_COUNT(@extsec-outbound)}}", String::from_utf8_lossy(&address)),
            channel,
        ))
        .unwrap();
        Block {
            request: format!("agi://127.0.0.1/{script}"),
            network_script: Some(script),
            args: vec![String::from_utf8_lossy(&substitute("${ARG1}", channel)).into_owned()],
            ..if sip {
                Block::chan_sip()
            } else {
                Block::pjsip()
            }
        }
    }

    pub fn chan_sip() -> Block {
        Block {
            tech: "SIP",
            channel_name: "SIP/127.0.0.2-00000000".into(),
            ..Block::pjsip()
        }
    }

    /// The block Asterisk writes for `channel`.
    pub fn bytes(&self, channel: &Channel) -> Vec<u8> {
        let or_unknown = |v: &[u8]| {
            if v.is_empty() {
                b"unknown".to_vec()
            } else {
                v.to_vec()
            }
        };
        let mut out = Vec::new();
        let mut put = |key: &str, value: &[u8]| {
            out.extend_from_slice(format!("agi_{key}: ").as_bytes());
            out.extend_from_slice(value);
            out.push(b'\n');
        };
        if let Some(script) = &self.network_script {
            put("network", b"yes");
            put("network_script", script.as_bytes());
        }
        put("request", self.request.as_bytes());
        put("channel", self.channel_name.as_bytes());
        put("language", b"en");
        put("type", self.tech.as_bytes());
        // Each channel has its own id (`${UNIQUEID}`), which its hangup handler's block
        // names again.
        let own_id = channel
            .variables
            .iter()
            .find(|(n, _)| n == "UNIQUEID")
            .map(|(_, v)| v.clone());
        put(
            "uniqueid",
            own_id.as_deref().unwrap_or(self.uniqueid.as_bytes()),
        );
        put("version", b"20.20.1");
        put("callerid", &or_unknown(&channel.callerid_num));
        put("calleridname", &or_unknown(&channel.callerid_name));
        put("callingpres", b"0");
        put("callingani2", b"0");
        put("callington", b"0");
        put("callingtns", b"0");
        put("dnid", &or_unknown(&channel.exten));
        put("rdnis", b"unknown");
        put("context", b"default");
        put("extension", &channel.exten);
        put("priority", self.priority.as_bytes());
        put("enhanced", b"0.0");
        put("accountcode", b"");
        put("threadid", self.threadid.as_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            put(&format!("arg_{}", i + 1), arg.as_bytes());
        }
        out.push(b'\n');
        out
    }
}

/// Asterisk's reply to one command line (without its LF).
pub fn reply_to(command: &[u8], channel: &Channel) -> Vec<u8> {
    let text = String::from_utf8_lossy(command);
    if let Some(arg) = text
        .strip_prefix("GET FULL VARIABLE \"")
        .and_then(|r| r.strip_suffix('"'))
    {
        let mut reply = b"200 result=1 (".to_vec();
        reply.extend_from_slice(&substitute(arg, channel));
        reply.extend_from_slice(b")\n");
        reply
    } else if text.starts_with("SET VARIABLE ") {
        b"200 result=1\n".to_vec()
    } else if text.starts_with("EXEC MSet ") {
        // handle_exec answers with the application's return value: MSet's is 0.
        b"200 result=0\n".to_vec()
    } else {
        b"510 Invalid or unknown command\n".to_vec()
    }
}

/// What a peer saw of one exchange.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Every command the program sent, in order.
    pub commands: Vec<Vec<u8>>,
    /// The commands (indices into `commands`) whose bytes had reached us before we had
    /// answered the command before them. res_agi would have left each of them unseen
    /// until the program wrote more or closed (design.md §3a, "One command, then wait
    /// for its answer").
    pub written_early: Vec<usize>,
}

impl Exchange {
    /// The value a `SET VARIABLE NAME "value"`, an `EXEC MSet NAME=value,…` or a
    /// `${SET(NAME=value)}` in a `GET FULL VARIABLE` gave `name`, the last one written.
    pub fn variable(&self, name: &str) -> Option<String> {
        self.commands.iter().rev().find_map(|c| {
            let c = String::from_utf8_lossy(c);
            if let Some(pairs) = c.strip_prefix("EXEC MSet ") {
                return mset_pairs(pairs)
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v);
            }
            if c.starts_with("GET FULL VARIABLE ") {
                return set_pairs(&c)
                    .into_iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v);
            }
            c.strip_prefix(&format!("SET VARIABLE {name} \""))?
                .strip_suffix('"')
                .map(str::to_string)
        })
    }
}

/// Each `${SET(NAME=value)}` of a command, as func_logic.c's `set()` splits it: at the
/// first `=`, the function's argument ending at the `)` that closes it.
fn set_pairs(command: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = command;
    while let Some(at) = rest.find("${SET(") {
        let body = &rest[at + 6..];
        let mut depth = 1;
        let end = body
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("a closed SET(");
        if let Some((n, v)) = body[..end].split_once('=') {
            pairs.push((n.to_string(), v.to_string()));
        }
        rest = &body[end..];
    }
    pairs
}

/// `NAME=value,NAME=value` as MSet splits it (main/pbx_variables.c: the arguments at
/// commas outside parentheses, each at its first `=`).
fn mset_pairs(args: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let bytes = args.as_bytes();
    for i in 0..=bytes.len() {
        match bytes.get(i) {
            Some(b'(') => depth += 1,
            Some(b')') => depth -= 1,
            Some(b',') if depth > 0 => {}
            Some(b',') | None => {
                if let Some((n, v)) = args[start..i].split_once('=') {
                    pairs.push((n.to_string(), v.to_string()));
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    pairs
}

/// Reads a program's commands the way res_agi's `run_agi` does (Asterisk 20.20.1,
/// design.md §3a): wait until the descriptor is readable, then take ONE line with
/// `fgets` through a stdio buffer, answer it, and wait again. A line that arrived in
/// the same read as the one before stays in the buffer, unseen, until the descriptor
/// wakes again: when the program writes more or closes.
pub struct ResAgiReader<R> {
    input: R,
    /// glibc's stdio buffer: what `read(2)` returned beyond the line `fgets` took.
    buffer: Vec<u8>,
    eof: bool,
}

/// How long the peer waits for a readable descriptor. Asterisk waits forever (only a
/// hangup ends it); a test must end.
const WAKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl<R: std::io::Read + AsFd> ResAgiReader<R> {
    pub fn new(input: R) -> Self {
        ResAgiReader {
            input,
            buffer: Vec::new(),
            eof: false,
        }
    }

    /// The next command line (without its LF), or `None` at EOF.
    pub fn next_command(&mut self) -> Option<Vec<u8>> {
        // ast_waitfor_nandfds: the descriptor, never the stdio buffer.
        if !self.eof && !wait_readable(self.input.as_fd(), WAKE_LIMIT) {
            return None;
        }
        // fgets: from the buffer, reading (blocking) only while it holds no whole line.
        loop {
            if let Some(at) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(line[..at].to_vec());
            }
            if self.eof {
                // A last line without LF is still a command; nothing at all is EOF.
                return (!self.buffer.is_empty()).then(|| std::mem::take(&mut self.buffer));
            }
            let mut chunk = [0u8; 4096];
            match self.input.read(&mut chunk) {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the program has already written more than the command we are about to
    /// answer: bytes in our buffer or waiting in the kernel.
    pub fn holds_more(&self) -> bool {
        !self.buffer.is_empty() || pending_bytes(self.input.as_fd()) > 0
    }
}

fn wait_readable(fd: BorrowedFd, limit: std::time::Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, ms) > 0 }
}

fn pending_bytes(fd: BorrowedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int; the descriptor is open (borrowed).
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 { n.max(0) as usize } else { 0 }
}

/// Plays Asterisk for a program: writes `prefix` (a block, perhaps a capture's), then
/// reads commands as res_agi does ([`ResAgiReader`]) and answers each with `answer`,
/// until the program closes its output.
pub fn serve(
    mut to_program: impl Write,
    from_program: impl std::io::Read + AsFd,
    prefix: &[u8],
    mut answer: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Exchange {
    let mut exchange = Exchange::default();
    // A program may close its input early; the tests judge what it wrote.
    let _ = to_program
        .write_all(prefix)
        .and_then(|()| to_program.flush());
    let mut reader = ResAgiReader::new(from_program);
    while let Some(command) = reader.next_command() {
        let index = exchange.commands.len();
        exchange.commands.push(command);
        if let Some(reply) = answer(&exchange.commands[index]) {
            if reader.holds_more() {
                exchange.written_early.push(index + 1);
            }
            let _ = to_program
                .write_all(&reply)
                .and_then(|()| to_program.flush());
        }
    }
    exchange
}

/// The stdin and stdout of a spawned `extsecurity agi`.
pub fn pipes(child: &mut Child) -> (ChildStdin, ChildStdout) {
    (child.stdin.take().unwrap(), child.stdout.take().unwrap())
}

/// One whole FastAGI call to a daemon on `127.0.0.1:port`, from `channel`, as Asterisk
/// makes it for `AGI(agi://127.0.0.1/check)`.
pub fn fastagi_call(port: u16, channel: &Channel) -> Exchange {
    fastagi_call_with(port, channel, |c| Some(reply_to(c, channel)))
}

/// [`fastagi_call`], each command answered by `answer`.
pub fn fastagi_call_with(
    port: u16,
    channel: &Channel,
    answer: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Exchange {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Long enough for any late answer of the tests, short enough not to hang them.
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    // As Asterisk: without it each answer waits ~40 ms for the daemon's delayed ACK.
    stream.set_nodelay(true).unwrap();
    let reader = stream.try_clone().unwrap();
    serve(stream, reader, &Block::fastagi().bytes(channel), answer)
}

/// One whole outbound check to a daemon on `127.0.0.1:port`, as `[extsec-outbound]`
/// makes it for `channel` (its group, `ARG1` and live count set: `Channel::outbound`).
pub fn outbound_call(port: u16, channel: &Channel) -> Exchange {
    outbound_call_with(port, channel, &Block::outbound_given(channel, ""))
}

/// [`outbound_call`] with the block `block` (an older subroutine's, a forged one).
pub fn outbound_call_with(port: u16, channel: &Channel, block: &Block) -> Exchange {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let reader = stream.try_clone().unwrap();
    serve(stream, reader, &block.bytes(channel), |c| {
        Some(reply_to(c, channel))
    })
}
