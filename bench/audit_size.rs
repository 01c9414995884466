//! `extsecurity audit` on a FreePBX-sized configuration (issue 30: 1,000 endpoints and
//! 50,000 dialplan lines audited in ≤ 1 s), the whole process timed as cron runs it,
//! side by side in one run with the small hand-written fixture.
//!
//!     cargo bench --bench audit_size
//!     ENDPOINTS=5000 LINES=200000 cargo bench --bench audit_size
//!
//! The configuration is laid out as FreePBX writes it: `pjsip.conf` a chain of
//! `#include`s, `extensions_additional.conf` with `[globals]` (`OUT_n`,
//! `ALLOW_SIP_ANON=yes`, so that the guest walk goes all the way), `from-sip-external`,
//! inbound routes to every extension, outbound routes through `macro-dialout-trunk`,
//! and filler contexts up to the line count.

// The daemon's helpers are for the other benchmarks.
#[allow(dead_code)]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{env_usize, release_binary};

fn main() {
    let endpoints = env_usize("ENDPOINTS", 1000);
    let lines = env_usize("LINES", 50_000);
    let rounds = env_usize("ROUNDS", 10);
    let binary = release_binary();
    let dir = tempfile::tempdir().unwrap();
    let written = write_pbx(dir.path(), endpoints, lines);
    println!("generated: {endpoints} endpoints, {written} dialplan lines");
    let report = audit_json(
        &binary,
        &dir.path().join("asterisk"),
        &dir.path().join("fail2ban"),
    );
    let paths = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "guest-path-to-trunk")
        .count();
    println!(
        "its audit: {} ({paths} guest paths to a trunk)",
        report["summary"]
    );
    assert!(
        paths > 0,
        "the guest walk must reach the trunks through the DISA"
    );
    let small = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/weak");
    let mut big = Vec::new();
    let mut fixture = Vec::new();
    for _ in 0..rounds {
        big.push(run(
            &binary,
            &dir.path().join("asterisk"),
            &dir.path().join("fail2ban"),
        ));
        fixture.push(run(
            &binary,
            &small.join("asterisk"),
            &small.join("fail2ban"),
        ));
    }
    let (big, fixture) = (median(big), median(fixture));
    println!("| configuration | audit, median of {rounds} (whole process) |");
    println!("|---|---:|");
    println!(
        "| FreePBX-sized ({endpoints} endpoints, {written} lines) | {:.1} ms |",
        ms(big)
    );
    println!("| the weak fixture (9 files) | {:.1} ms |", ms(fixture));
    println!("ratio: {:.1}×", big.as_secs_f64() / fixture.as_secs_f64());
}

/// One whole-process audit, timed; it must have found something.
fn run(binary: &str, asterisk: &Path, fail2ban: &Path) -> Duration {
    let start = Instant::now();
    let report = audit_json(binary, asterisk, fail2ban);
    let took = start.elapsed();
    assert!(report["findings"].as_array().is_some_and(|f| !f.is_empty()));
    took
}

fn audit_json(binary: &str, asterisk: &Path, fail2ban: &Path) -> serde_json::Value {
    let out = Command::new(binary)
        .arg("audit")
        .arg("--asterisk-dir")
        .arg(asterisk)
        .arg("--fail2ban-dir")
        .arg(fail2ban)
        .arg("--json")
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 12)), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes the PBX; returns the dialplan's line count.
fn write_pbx(root: &Path, endpoints: usize, lines: usize) -> usize {
    let ast = root.join("asterisk");
    std::fs::create_dir_all(&ast).unwrap();
    std::fs::create_dir_all(root.join("fail2ban")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(ast.join(name), text).unwrap();
    write(
        "pjsip.conf",
        "[global]\ntype=global\n#include pjsip.transports.conf\n#include pjsip.endpoint.conf\n\
         #include pjsip.auth.conf\n#include pjsip.aor.conf\n#include pjsip.identify.conf\n\
         #tryinclude pjsip_custom.conf\n",
    );
    write(
        "pjsip.transports.conf",
        "[0.0.0.0-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\n",
    );
    let (mut endpoint, mut auth, mut aor) = (String::new(), String::new(), String::new());
    for i in 0..endpoints {
        let n = 1000 + i;
        let _ = write!(
            endpoint,
            "[{n}]\ntype=endpoint\naors={n}\nauth={n}-auth\ncontext=from-internal\n\
             disallow=all\nallow=ulaw,alaw\ndirect_media=no\ncallerid=Ext {n} <{n}>\n\n"
        );
        // One in a hundred is weak, as a real PBX's stragglers.
        let secret = match i % 100 {
            0 => format!("{}", 100 + i % 900),
            _ => format!("k{i:05}Xq-{:08x}", i.wrapping_mul(2654435761)),
        };
        let _ = write!(
            auth,
            "[{n}-auth]\ntype=auth\nauth_type=userpass\nusername={n}\npassword={secret}\n\n"
        );
        let _ = write!(
            aor,
            "[{n}]\ntype=aor\nmax_contacts=1\nremove_existing=yes\n\n"
        );
    }
    for t in 1..=5 {
        let _ = write!(
            endpoint,
            "[trunk{t}]\ntype=endpoint\naors=trunk{t}\noutbound_auth=trunk{t}-auth\ncontext=from-pstn\n\n"
        );
        let _ = write!(
            aor,
            "[trunk{t}]\ntype=aor\ncontact=sip:sip{t}.example.net\n\n"
        );
        let _ = write!(
            auth,
            "[trunk{t}-auth]\ntype=auth\nusername=acct{t}\npassword=T{t}-long-provider-secret\n\n"
        );
    }
    endpoint += "[anonymous]\ntype=endpoint\ncontext=from-sip-external\n";
    write("pjsip.endpoint.conf", &endpoint);
    write("pjsip.auth.conf", &auth);
    write("pjsip.aor.conf", &aor);
    write(
        "pjsip.identify.conf",
        &(1..=5)
            .map(|t| {
                format!("[trunk{t}]\ntype=identify\nendpoint=trunk{t}\nmatch=sip{t}.example.net\n")
            })
            .collect::<String>(),
    );
    write(
        "extensions.conf",
        "#include extensions_additional.conf\n#tryinclude extensions_custom.conf\n",
    );
    let plan = dialplan(endpoints, lines);
    let count = plan.lines().count();
    write("extensions_additional.conf", &plan);
    count
}

fn dialplan(endpoints: usize, lines: usize) -> String {
    let mut p = String::from("[globals]\nALLOW_SIP_ANON=yes\n");
    for t in 1..=5 {
        let _ = writeln!(p, "OUT_{t}=PJSIP/trunk{t}");
    }
    p += "[from-sip-external]\nexten => _.,1,NoOp(unknown peer)\n\
          exten => _.,n,Set(DID=${IF($[\"${EXTEN:1:2}\"=\"\"]?s:${EXTEN})})\nexten => _.,n,Goto(s,1)\n\
          exten => s,1,GotoIf($[\"${ALLOW_SIP_ANON}\"=\"yes\"]?checklang:noanonymous)\n\
          exten => s,n(checklang),Goto(from-trunk,${DID},1)\nexten => s,n(noanonymous),Hangup\n\
          [from-trunk]\ninclude => from-pstn\n[from-pstn]\ninclude => ext-did\n[ext-did]\n";
    for i in 0..endpoints {
        let _ = writeln!(
            p,
            "exten => 5550{i:04},1,Set(__FROM_DID=${{EXTEN}})\nexten => 5550{i:04},n,Goto(ext-local,{},1)",
            1000 + i
        );
    }
    p += "exten => 5559999,1,Goto(disa,s,1)\n[disa]\nexten => s,1,Goto(outbound-allroutes,${DIALED},1)\n";
    p += "[ext-local]\n";
    for i in 0..endpoints {
        let n = 1000 + i;
        for step in [
            "Set(__RINGTIMER=${IF($[${DB(AMPUSER/${EXTEN}/ringtimer)} > 0]?${DB(AMPUSER/${EXTEN}/ringtimer)}:${RINGTIMER_DEFAULT})})",
            "Macro(exten-vm,novm,${EXTEN},0,0,0)",
            "Set(__PICKUPMARK=)",
            "Dial(PJSIP/${EXTEN},20)",
            "Goto(vmret,1)",
        ] {
            let _ = writeln!(p, "exten => {n},n,{step}");
        }
        let _ = writeln!(p, "exten => {n},hint,PJSIP/{n}");
    }
    p += "exten => vmret,1,Hangup\n[macro-exten-vm]\nexten => s,1,NoOp(vm)\nexten => s,n,MacroExit()\n";
    p += "[from-internal]\ninclude => from-internal-additional\n[from-internal-additional]\ninclude => outbound-allroutes\ninclude => ext-local\n";
    p += "[outbound-allroutes]\n";
    for t in 1..=5 {
        let _ = writeln!(p, "include => outrt-{t}");
    }
    for t in 1..=5 {
        let _ = writeln!(
            p,
            "[outrt-{t}]\nexten => _0{t}X.,1,Macro(user-callerid,LIMIT,EXTERNAL,)\nexten => _0{t}X.,n,Macro(dialout-trunk,{t},${{EXTEN}},,off)\nexten => _0{t}X.,n,Macro(outisbusy,)"
        );
    }
    p += "[macro-dialout-trunk]\nexten => s,1,Set(DIAL_TRUNK=${ARG1})\nexten => s,n,GotoIf($[\"${OUTDISABLE_${DIAL_TRUNK}}\" = \"on\"]?disabletrunk,1)\n\
          exten => s,n,Dial(${OUT_${DIAL_TRUNK}}/${OUTNUM},300)\nexten => s,n,Return()\n";
    let mut filler = 0;
    while p.lines().count() < lines {
        let _ = writeln!(p, "[app-filler-{filler}]");
        for k in 0..20 {
            let _ = writeln!(
                p,
                "exten => *{filler}{k},1,Answer\nexten => *{filler}{k},n,Playback(feature-{k})\nexten => *{filler}{k},n,Hangup"
            );
        }
        filler += 1;
    }
    p
}
