//! Network namespaces for kernel-ban tests: `pbx`, `atk` (the attacker) and `inn` (an
//! innocent caller), each of the two joined to `pbx` by a veth pair.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Sandbox;

pub const PBX_A: &str = "203.0.113.1";
pub const ATTACKER: &str = "203.0.113.66";
pub const PBX_I: &str = "198.51.100.1";
pub const INNOCENT: &str = "198.51.100.44";
/// The attacker's link carries IPv6 too.
pub const PBX_A6: &str = "2001:db8:66::1";
pub const ATTACKER6: &str = "2001:db8:66::66";

pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A lab for a test that needs nft and namespaces; `None`, having said SKIP and why,
/// where either is missing (`.ci/run` installs iproute2 and nftables, runs as root).
pub fn lab_or_skip() -> Option<Lab> {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIP: nft is not installed (apt-get install nftables)");
        return None;
    }
    match Lab::new() {
        Ok(lab) => Some(lab),
        Err(e) => {
            eprintln!("SKIP: cannot make network namespaces here: {e}");
            None
        }
    }
}

/// The namespaces of one test run, deleted when dropped.
pub struct Lab {
    names: [String; 3],
}

impl Lab {
    pub fn new() -> Result<Lab, String> {
        // Unique per test process and per lab: tests of one binary run side by side.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Room for a hundred labs a process: with ten, the 11th took the 1st's names,
        // and a lab that failed to make them deleted a running one's on its way out.
        let id = (std::process::id() % 10_000) * 100 + n % 100;
        let names = ["pbx", "atk", "inn"].map(|n| format!("xs{n}{id}"));
        let lab = Lab { names };
        let [pbx, atk, inn] = &lab.names;
        for ns in &lab.names {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (peer, here, there, short) in [(atk, PBX_A, ATTACKER, "a"), (inn, PBX_I, INNOCENT, "i")]
        {
            let (outer, inner) = (format!("xs{short}{id}p"), format!("xs{short}{id}c"));
            ip(&[
                "-n", pbx, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns",
                peer,
            ])?;
            ip(&[
                "-n",
                pbx,
                "addr",
                "add",
                &format!("{here}/24"),
                "dev",
                &outer,
            ])?;
            ip(&["-n", pbx, "link", "set", &outer, "up"])?;
            ip(&[
                "-n",
                peer,
                "addr",
                "add",
                &format!("{there}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", peer, "link", "set", &inner, "up"])?;
            if short == "a" {
                for (ns, addr, dev) in [(pbx, PBX_A6, &outer), (peer, ATTACKER6, &inner)] {
                    let cidr = format!("{addr}/64");
                    ip(&["-n", ns, "-6", "addr", "add", &cidr, "dev", dev, "nodad"])?;
                }
            }
        }
        Ok(lab)
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A UDP listener on 5060 inside `pbx` that prints each datagram's source address.
pub struct Listener(Child);

impl Listener {
    pub fn start(ns: &str, out: &std::path::Path) -> Listener {
        let script = "import socket,sys\n\
                      s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                      s.bind(('0.0.0.0',5060))\n\
                      f=open(sys.argv[1],'a',buffering=1)\n\
                      while True:\n    d,a=s.recvfrom(2048); f.write(a[0]+' '+d.decode()+'\\n')\n";
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", script])
            .arg(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a thread of its own inside namespace `ns`: sockets it opens live there.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a namespace file we hold open.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

/// Sends `count` datagrams from `ns` to `to`:5060, one every `every_ms`.
pub fn sender(ns: &str, to: &str, count: u32, every_ms: f64) -> Child {
    let script = format!(
        "import socket,time\n\
         s=socket.socket(socket.AF_INET6 if ':' in '{to}' else socket.AF_INET,socket.SOCK_DGRAM)\n\
         t=time.monotonic()\n\
         for i in range({count}):\n    s.sendto(b'%d' % i, ('{to}', 5060))\n    \
         t+={every_ms}/1000\n    time.sleep(max(0, t-time.monotonic()))\n"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .spawn()
        .unwrap()
}

/// A listener that writes `source seq monotonic_ns` per datagram.
pub fn timed_listener(ns: &str, out: &std::path::Path) -> Child {
    let script = "import socket,sys,time\n\
                  s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
                  s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n\
                  s.bind(('::',5060))\n\
                  f=open(sys.argv[1],'a',buffering=1)\n\
                  while True:\n    d,a=s.recvfrom(2048); f.write('%s %s %d\\n' % (a[0].removeprefix('::ffff:'), d.decode(), time.monotonic_ns()))\n";
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", script])
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `(source, arrival ns)` of each datagram received.
pub fn arrivals(path: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (src, _, at) = (f.next()?, f.next()?, f.next()?);
            Some((src.to_string(), at.parse().ok()?))
        })
        .collect()
}

pub fn nft_list(ns: &str) -> String {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "list",
            "table",
            "inet",
            "extsecurity",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `extsecurity serve` inside `ns`, killed when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(ns: &str, sandbox: &Sandbox) -> Daemon {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(super::bin())
            .args(["--config"])
            .arg(&sandbox.config)
            .arg("serve")
            .stderr(std::fs::File::create(sandbox.dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon(child);
        let ns = ns.to_string();
        super::wait_for(
            "the daemon in the namespace",
            Duration::from_secs(10),
            || {
                let ns = ns.clone();
                in_netns(&ns, || {
                    std::net::TcpStream::connect("127.0.0.1:4573").is_ok()
                })
            },
        );
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one datagram at a time from `ns` to `to`:5060 until the listener writing `got`
/// has one from `source` (it may need a moment to bind).
pub fn until_one_arrives(ns: &str, to: &str, got: &std::path::Path, source: &str) {
    super::wait_for("a datagram through", Duration::from_secs(10), || {
        let _ = sender(ns, to, 1, 1.0).wait();
        arrivals(got).iter().any(|(src, _)| src == source)
    });
}

/// Gives `ns`'s link to `pbx` one more address (`/24` of the link's): a second source on
/// the same wire, as the edge's tests need one per list.
pub fn add_address(ns: &str, addr: &str) {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "type", "veth"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let dev = text
        .split(':')
        .nth(1)
        .map(|d| d.trim().split('@').next().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no veth in {ns}: {text}"));
    ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &dev]).unwrap();
}

/// Sends `count` datagrams from `ns`, source address `from`, to `to`:`port`, one every
/// `every_ms`.
pub fn send_from(ns: &str, from: &str, to: &str, port: u16, count: u32, every_ms: f64) -> Child {
    let script = format!(
        "import socket,time\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('{from}', 0))\n\
         t=time.monotonic()\n\
         for i in range({count}):\n    s.sendto(b'%d' % i, ('{to}', {port}))\n    \
         t+={every_ms}/1000\n    time.sleep(max(0, t-time.monotonic()))\n"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .spawn()
        .unwrap()
}

/// `extsecurity …` in namespace `ns` with `s`'s config: (status, stdout, stderr).
pub fn cli_in(ns: &str, s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(super::bin())
        .arg("--config")
        .arg(&s.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A socket on `port` in `ns` that writes the source of each datagram, a line each,
/// to `out`.
pub fn listen_on(ns: &str, port: u16, out: &std::path::Path) -> Child {
    let script = format!(
        "import socket,sys\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0',{port}))\n\
         f=open(sys.argv[1],'a',buffering=1)\n\
         while True:\n    d,a=s.recvfrom(2048); f.write(a[0]+'\\n')\n"
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &script])
        .arg(out)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
