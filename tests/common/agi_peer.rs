//! An AGI peer that speaks as Asterisk 20.20.1 does (design.md §3, §3a; the bytes of
//! `../shared/captures/agi/`): the `agi_*` block in res_agi.c's order, values written
//! raw (an empty caller id as `unknown`), an empty line, then one reply per command,
//! `200 result=1 (` + the raw substituted value + `)`. `agi_block_matches_the_capture`
//! in tests/agi.rs checks this block against a real capture byte for byte.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};

use super::asterisk::{Channel, substitute};

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
        put("uniqueid", self.uniqueid.as_bytes());
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
    } else {
        b"510 Invalid or unknown command\n".to_vec()
    }
}

/// What a peer saw of one exchange.
#[derive(Debug, Default)]
pub struct Exchange {
    /// Every command the program sent, in order.
    pub commands: Vec<Vec<u8>>,
}

impl Exchange {
    /// The value a `SET VARIABLE NAME "value"` gave `name`.
    pub fn variable(&self, name: &str) -> Option<String> {
        let prefix = format!("SET VARIABLE {name} \"");
        self.commands.iter().find_map(|c| {
            let c = String::from_utf8_lossy(c);
            c.strip_prefix(&prefix)?
                .strip_suffix('"')
                .map(str::to_string)
        })
    }
}

/// Plays Asterisk for a program: writes `prefix` (a block, perhaps a capture's), then
/// answers each command line with `answer`, until the program closes its output.
pub fn serve(
    mut to_program: impl Write,
    from_program: impl std::io::Read,
    prefix: &[u8],
    mut answer: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> Exchange {
    let mut exchange = Exchange::default();
    // A program may close its input early; the tests judge what it wrote.
    let _ = to_program
        .write_all(prefix)
        .and_then(|()| to_program.flush());
    let mut reader = BufReader::new(from_program);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let command = line.strip_suffix(b"\n").unwrap_or(&line).to_vec();
        if let Some(reply) = answer(&command) {
            let _ = to_program
                .write_all(&reply)
                .and_then(|()| to_program.flush());
        }
        exchange.commands.push(command);
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
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // As Asterisk: without it each answer waits ~40 ms for the daemon's delayed ACK.
    stream.set_nodelay(true).unwrap();
    let reader = stream.try_clone().unwrap();
    let block = Block {
        request: "agi://127.0.0.1/check".into(),
        network_script: Some("check".into()),
        args: vec![],
        ..Block::pjsip()
    };
    serve(stream, reader, &block.bytes(channel), |c| {
        Some(reply_to(c, channel))
    })
}
