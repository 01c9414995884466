//! A reverse proxy in front of the real LAPI, as a fleet puts nginx or HAProxy there,
//! that can answer for it: a rate limit's `429 Too Many Requests`, a `503`, a `400`
//! for a request it dislikes. Everything else is passed to the LAPI and its answer
//! passed back. One request per connection (`Connection: close` both ways), which
//! ureq follows by connecting again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the proxy answers to a `POST /v1/alerts` instead of the LAPI, if anything.
pub type Rule = Box<dyn Fn(usize, &str) -> Option<(u16, &'static str)> + Send + Sync>;

pub struct LapiProxy {
    pub addr: SocketAddr,
    /// `POST /v1/alerts` requests seen, and how many the proxy answered itself.
    pub posts: Arc<AtomicUsize>,
    pub faked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl LapiProxy {
    /// Proxies to `upstream`; `rule(n, body)` (n counts alert posts from 0) may answer
    /// the nth post itself.
    pub fn start(upstream: SocketAddr, rule: Rule) -> LapiProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = Arc::new(AtomicUsize::new(0));
        let faked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, f, s) = (posts.clone(), faked.clone(), stop.clone());
        let rule = Arc::new(Mutex::new(rule));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (p, f, rule) = (p.clone(), f.clone(), rule.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &p, &f, &rule);
                });
            }
        });
        LapiProxy {
            addr,
            posts,
            faked,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LapiProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: TcpStream,
    upstream: SocketAddr,
    posts: &AtomicUsize,
    faked: &AtomicUsize,
    rule: &Mutex<Rule>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        let end = line == "\r\n";
        // Our own: one request per connection.
        if !line.to_ascii_lowercase().starts_with("connection:") && !end {
            head.push(line);
        }
        if end {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let request_line = head.first().cloned().unwrap_or_default();
    let mut conn = conn;
    if request_line.starts_with("POST /v1/alerts") {
        let n = posts.fetch_add(1, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&body);
        if let Some((status, reason)) = (rule.lock().unwrap())(n, &text) {
            faked.fetch_add(1, Ordering::SeqCst);
            let answer = format!("{{\"message\":\"{reason}\"}}");
            write!(
                conn,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )?;
            return Ok(());
        }
    }
    let mut up = TcpStream::connect(upstream)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    conn.write_all(&answer)
}
