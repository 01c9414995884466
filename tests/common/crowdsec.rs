//! A real CrowdSec from Debian's `crowdsec` package, started for one test as design.md
//! §3c describes running it offline: a private config dir and SQLite database, the LAPI
//! on a loopback port of the test's choosing, `-no-capi`, the package's grok patterns
//! and hub on disk, our `dist/crowdsec/` parsers and scenario copied in (CrowdSec
//! ignores symlinks that point outside its hub), and an acquisition of our log.

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
}

impl Lapi {
    /// Starts the LAPI and the agent; the agent reads `log` (our alert log) if given.
    pub fn start(log: Option<&Path>) -> Lapi {
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
        std::fs::write(d.join("config.yaml"), config_yaml(d, port)).unwrap();
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
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `cscli` on this instance's config.
    pub fn cscli(&self, args: &[&str]) -> Output {
        Command::new("cscli")
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
        let out = std::fs::File::create(self.path("crowdsec.out")).unwrap();
        let child = Command::new("crowdsec")
            .arg("-c")
            .arg(self.path("config.yaml"))
            .arg("-no-capi")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start crowdsec");
        self.child = Some(child);
        let port = self.port;
        assert!(
            super::wait_until(Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "the LAPI did not start:\n{}",
            self.output()
        );
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

fn config_yaml(d: &Path, port: u16) -> String {
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
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 100000
    max_age: 7d
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:{port}
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
