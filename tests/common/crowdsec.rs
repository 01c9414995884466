//! A real CrowdSec from Debian's `crowdsec` package, started for one test as design.md
//! §3c describes running it offline: a private config dir and SQLite database, the LAPI
//! on a loopback port of the test's choosing, `-no-capi`, the package's grok patterns
//! and hub on disk, our `dist/crowdsec/` parsers and scenario copied in (CrowdSec
//! ignores symlinks that point outside its hub), and an acquisition of our log.
//!
//! A fleet's LAPI runs on PostgreSQL ([`Postgres`]: Debian's `postgresql` binaries,
//! `initdb`/`pg_ctl` on a scratch folder and a loopback port, never the system
//! cluster), and may run inside a network namespace so that a bouncer on another
//! "host" reaches it over a veth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{free_port, repo};

pub struct Lapi {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    /// A bouncer's API key, for `GET /v1/decisions`.
    pub bouncer_key: String,
    /// The address it listens on (`127.0.0.1` unless in a namespace).
    pub host: String,
    netns: Option<String>,
}

/// Where the LAPI keeps alerts and decisions.
#[derive(Clone, Copy)]
pub enum Db<'a> {
    Sqlite,
    Postgres(&'a Postgres),
    /// Over the cluster's Unix socket: a LAPI in a network namespace cannot reach the
    /// cluster's 127.0.0.1, but sees the same files.
    PostgresSocket(&'a Postgres),
}

/// How to start a LAPI: which log its agent reads, on which database, in which
/// network namespace and on which of its addresses.
pub struct Options<'a> {
    pub log: Option<&'a Path>,
    pub db: Db<'a>,
    pub netns: Option<(&'a str, &'a str)>,
}

impl Lapi {
    /// Starts the LAPI and the agent; the agent reads `log` (our alert log) if given.
    pub fn start(log: Option<&Path>) -> Lapi {
        Lapi::start_with(Options {
            log,
            db: Db::Sqlite,
            netns: None,
        })
    }

    /// A LAPI on PostgreSQL, as a fleet runs it.
    pub fn on_postgres(pg: &Postgres) -> Lapi {
        Lapi::start_with(Options {
            log: None,
            db: Db::Postgres(pg),
            netns: None,
        })
    }

    pub fn start_with(options: Options) -> Lapi {
        let log = options.log;
        assert!(
            Path::new("/usr/bin/crowdsec").exists(),
            "crowdsec must be installed (.ci/run installs Debian's package offline)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path();
        for sub in [
            "data",
            "parsers/s00-raw",
            "parsers/s01-parse",
            "parsers/s02-enrich",
            "scenarios",
            "notifications",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let host = options.netns.map_or("127.0.0.1", |(_, ip)| ip).to_string();
        let db = match options.db {
            Db::Sqlite => format!(
                "  type: sqlite\n  db_path: {}/data/crowdsec.db\n  use_wal: true\n",
                d.display()
            ),
            Db::Postgres(pg) => pg.db_config(),
            Db::PostgresSocket(pg) => pg.db_config().replace(
                "host: 127.0.0.1",
                &format!("host: {}", pg.socket_dir().display()),
            ),
        };
        std::fs::write(d.join("config.yaml"), config_yaml(d, &host, port, &db)).unwrap();
        std::fs::write(d.join("simulation.yaml"), "simulation: off\n").unwrap();
        std::fs::write(d.join("profiles.yaml"), PROFILES).unwrap();
        std::os::unix::fs::symlink("/etc/crowdsec/patterns", d.join("patterns")).unwrap();
        std::os::unix::fs::symlink(
            "/var/lib/crowdsec/hub/parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml",
            d.join("parsers/s02-enrich/dateparse-enrich.yaml"),
        )
        .unwrap();
        for item in [
            "parsers/s00-raw/extsecurity-raw.yaml",
            "parsers/s01-parse/extsecurity-logs.yaml",
            "scenarios/extsecurity-alert.yaml",
        ] {
            std::fs::copy(repo().join("dist/crowdsec").join(item), d.join(item)).unwrap();
        }
        // The shipped acquisition, pointed at this test's log.
        let acquis =
            std::fs::read_to_string(repo().join("dist/crowdsec/acquis.d/extsecurity.yaml"))
                .unwrap();
        let acquis = match log {
            Some(log) => acquis.replace(
                "/var/log/asterisk/inbound_extsecurity.log",
                log.to_str().unwrap(),
            ),
            None => acquis.replace(
                "/var/log/asterisk/inbound_extsecurity.log",
                d.join("none.log").to_str().unwrap(),
            ),
        };
        std::fs::write(d.join("acquis.yaml"), acquis).unwrap();
        let mut lapi = Lapi {
            dir,
            port,
            child: None,
            bouncer_key: String::new(),
            host,
            netns: options.netns.map(|(ns, _)| ns.to_string()),
        };
        let creds = lapi.path("local_api_credentials.yaml");
        lapi.cscli_ok(&[
            "machines",
            "add",
            "agent",
            "--auto",
            "-f",
            creds.to_str().unwrap(),
        ]);
        lapi.start_again();
        let key = lapi.cscli_ok(&["bouncers", "add", "firewall", "-o", "raw"]);
        lapi.bouncer_key = String::from_utf8_lossy(&key.stdout).trim().to_string();
        assert!(!lapi.bouncer_key.is_empty());
        lapi
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// `cscli` on this instance's config.
    /// `cscli` on the LAPI's host: in its namespace, if it has one, where its address is.
    pub fn cscli(&self, args: &[&str]) -> Output {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "cscli"]);
                c
            }
            None => Command::new("cscli"),
        };
        command
            .arg("-c")
            .arg(self.path("config.yaml"))
            .args(args)
            .output()
            .expect("cscli")
    }

    fn cscli_ok(&self, args: &[&str]) -> Output {
        let out = self.cscli(args);
        assert!(
            out.status.success(),
            "cscli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A machine for extsecurity to push as (`cscli machines add NAME --password P`).
    /// Its credentials file goes to the test's folder, not over the agent's.
    pub fn add_machine(&self, name: &str, password: &str) {
        let creds = self.path(&format!("{name}.yaml"));
        self.cscli_ok(&[
            "machines",
            "add",
            name,
            "--password",
            password,
            "-f",
            creds.to_str().unwrap(),
        ]);
    }

    /// Stops the LAPI and agent (SIGKILL: as abrupt as a crash or a network cut).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the LAPI and agent on the same config, port and database.
    pub fn start_again(&mut self) {
        let out = std::fs::File::options()
            .append(true)
            .create(true)
            .open(self.path("crowdsec.out"))
            .unwrap();
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "crowdsec"]);
                c
            }
            None => Command::new("crowdsec"),
        };
        let child = command
            .arg("-c")
            .arg(self.path("config.yaml"))
            .arg("-no-capi")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start crowdsec");
        self.child = Some(child);
        assert!(
            super::wait_until(Duration::from_secs(30), || self.answers()),
            "the LAPI did not start:\n{}",
            self.output()
        );
    }

    /// Whether the LAPI accepts a connection (from its own namespace).
    pub fn answers(&self) -> bool {
        let addr = format!("{}:{}", self.host, self.port);
        match &self.netns {
            Some(ns) => super::netns::in_netns(ns, move || {
                std::net::TcpStream::connect(addr.as_str()).is_ok()
            }),
            None => std::net::TcpStream::connect(addr.as_str()).is_ok(),
        }
    }

    /// What a bouncer reads: `GET /v1/decisions?ip=` (JSON `null` when there is none).
    pub fn decisions(&self, ip: &str) -> serde_json::Value {
        let mut response = ureq::get(format!("{}/v1/decisions?ip={ip}", self.url()))
            .header("X-Api-Key", &self.bouncer_key)
            .call()
            .expect("GET /v1/decisions");
        let text = response.body_mut().read_to_string().unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.path("crowdsec.out")).unwrap_or_default()
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(d: &Path, host: &str, port: u16, db: &str) -> String {
    let d = d.display();
    format!(
        "common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: {d}/
  data_dir: {d}/data/
  simulation_path: {d}/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: {d}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: {d}/acquis.yaml
  parser_routines: 1
cscli:
  output: human
db_config:
{db}  flush:
    max_items: 100000
    max_age: 7d
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
  server:
    listen_uri: {host}:{port}
    profiles_path: {d}/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
"
    )
}

/// Debian's default profile: a ban of 4 h for every alert that asks for remediation.
const PROFILES: &str = "name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == \"Ip\"
decisions:
 - type: ban
   duration: 4h
on_success: break
";

/// A private PostgreSQL cluster: Debian's binaries on a scratch folder, trust
/// authentication on loopback, one `crowdsec` database. Run as the `postgres` user
/// when the tests run as root (`initdb` refuses root). Stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("PostgreSQL must be installed (.ci/run installs Debian's postgresql)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let pg = Postgres { dir, port, bin };
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = pg.dir.path().join("data");
        pg.run_ok(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
        );
        pg.start_again();
        pg.sql("CREATE DATABASE crowdsec");
        pg
    }

    /// Starts the cluster (again, after [`Postgres::stop`]) on the same port.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.dir.path().join("postgres.log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the cluster at once, as a crash would: the LAPI's database is gone.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn as_postgres(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.as_postgres(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `sql` in the `crowdsec` database (`postgres` for CREATE DATABASE); the
    /// rows, `|`-separated.
    pub fn sql(&self, sql: &str) -> String {
        let db = if sql.starts_with("CREATE DATABASE") {
            "postgres"
        } else {
            "crowdsec"
        };
        let out = self
            .as_postgres("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-A", "-t", "-q", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many ban decisions of origin `extsecurity` each address has.
    pub fn bans_per_address(&self) -> std::collections::HashMap<String, usize> {
        self.sql(
            "SELECT value, count(*) FROM decisions WHERE origin = 'extsecurity' GROUP BY value",
        )
        .lines()
        .filter_map(|l| {
            let (ip, n) = l.split_once('|')?;
            Some((ip.to_string(), n.trim().parse().ok()?))
        })
        .collect()
    }

    /// Where the cluster's Unix socket lives (`-k`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn db_config(&self) -> String {
        format!(
            "  type: postgresql\n  user: postgres\n  password: unused-trust-auth\n  db_name: crowdsec\n  host: 127.0.0.1\n  port: {}\n  sslmode: disable\n",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
