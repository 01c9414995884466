//! `status`: the running daemon on one screen, asked over the control protocol.

use extsecurity::config::Config;
use extsecurity::control;
use extsecurity::exits;

/// `extsecurity status`: the running daemon's own account of itself.
pub(crate) fn daemon_status(config: &Config, json: bool) -> u8 {
    let Some(sock) = &config.daemon.control_socket else {
        eprintln!(
            "extsecurity: no daemon.control_socket configured: the running daemon cannot be asked"
        );
        return exits::NO_DAEMON;
    };
    let answer = match control::ask(sock, &control::Request::Status) {
        Ok(answer) => answer,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "extsecurity: {} is the daemon's alone ({e}): run this as root (sudo extsecurity status) or as its user (sudo -u extsecurity extsecurity status)",
                sock.display()
            );
            return exits::NO_DAEMON;
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("extsecurity: {e}");
            return exits::NO_DAEMON;
        }
        Err(e) => {
            eprintln!(
                "extsecurity: no daemon answers on {} ({e}): is it running? systemctl status extsecurity",
                sock.display()
            );
            return exits::NO_DAEMON;
        }
    };
    let control::Answer::Daemon(status) = answer else {
        eprintln!("extsecurity: the daemon answered {:?}", answer.encode());
        return exits::NO_DAEMON;
    };
    match json {
        true => println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        ),
        false => print!("{}", control::status::render(&status)),
    }
    exits::OK
}
