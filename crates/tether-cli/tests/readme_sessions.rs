//! The README's "Five sessions" are run as written and must print what the
//! README shows: README.md is the only copy of the commands and their output.
//!
//! Each session is a bold title (`**Plain TCP**`) and the ```` ```console ````
//! blocks after it. A `$ ` line is a command, run by bash in a fresh directory
//! with the built `tether` first on PATH; the lines up to the next command or
//! the block's end are what it prints (stdout and stderr together). Every
//! command but those of the session's last block, and any command ending in
//! ` &`, is started in the background, in order, each once its port listens;
//! then the last block's commands run, and the background ones are waited for
//! (or, serving until killed, stopped once they printed as many lines as
//! shown). The port in the commands is replaced by a free one, and back in
//! what they print. `cert.pem` and `key.pem` are there for the TLS session.
//!
//! Compared with snapbox, the README's lines become patterns where a run
//! differs from the next: times (`"t"`, bash's `time`), the system-chosen
//! ports of clients and the TLS fingerprint become `[..]`. `--events` lines
//! (stderr) and the other lines are checked in order, each kind on its own:
//! how the two streams interleave on a terminal is a matter of timing.
//!
//! To refresh the README after the command's output changed: run the
//! session's commands in two terminals, as shown, and paste what they print
//! over the old lines (`cargo test -p tether-cli --test readme_sessions`
//! shows the difference).

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snapbox::assert_data_eq;

/// How long one command may take, and a server to start listening.
const LIMIT: Duration = Duration::from_secs(20);

struct Step {
    command: String,
    expected: Vec<String>,
    background: bool,
}

struct Session {
    title: String,
    steps: Vec<Step>,
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(path).unwrap()
}

/// The sessions of README.md's "Five sessions".
fn sessions(readme: &str) -> Vec<Session> {
    let start = readme
        .find("### Five sessions")
        .expect("README.md has a \"Five sessions\" section");
    let rest = &readme[start..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut sessions: Vec<Session> = Vec::new();
    let mut blocks: Vec<Vec<Step>> = Vec::new();
    let mut block: Option<Vec<Step>> = None;
    let finish = |sessions: &mut Vec<Session>, blocks: &mut Vec<Vec<Step>>| {
        if let Some(session) = sessions.last_mut() {
            let last = blocks.len().saturating_sub(1);
            for (i, steps) in blocks.drain(..).enumerate() {
                for mut step in steps {
                    step.background |= i < last;
                    session.steps.push(step);
                }
            }
        }
    };
    for line in section.lines() {
        if let Some(steps) = block.as_mut() {
            if line == "```" {
                blocks.push(block.take().unwrap());
            } else if let Some(command) = line.strip_prefix("$ ") {
                let background = command.ends_with(" &");
                steps.push(Step {
                    command: command.trim_end_matches(" &").to_string(),
                    expected: Vec::new(),
                    background,
                });
            } else {
                let step = steps.last_mut().expect("a console block begins with `$ `");
                step.expected.push(line.to_string());
            }
        } else if line == "```console" {
            block = Some(Vec::new());
        } else if let Some(title) = line.strip_prefix("**") {
            finish(&mut sessions, &mut blocks);
            sessions.push(Session {
                title: title[..title.find("**").unwrap()].to_string(),
                steps: Vec::new(),
            });
        }
    }
    finish(&mut sessions, &mut blocks);
    sessions.retain(|s| !s.steps.is_empty());
    sessions
}

/// The session's server port: the one in `127.0.0.1:PORT` in its commands.
fn server_port(session: &Session) -> String {
    let command = &session
        .steps
        .iter()
        .find(|s| s.command.contains("127.0.0.1:"))
        .expect("a command names 127.0.0.1:PORT")
        .command;
    let at = command.find("127.0.0.1:").unwrap() + 10;
    command[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Whether something listens on (TCP) or is bound to (UDP) the port, from
/// /proc/net.
fn listening(port: u16, udp: bool) -> bool {
    let table = if udp {
        "/proc/net/udp"
    } else {
        "/proc/net/tcp"
    };
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string(table).unwrap().lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3 && fields[1] == local && (udp || fields[3] == "0A")
    })
}

/// The README's line as a pattern: what differs from run to run is `[..]`.
fn pattern(line: &str, port: &str) -> String {
    for head in ["real\t", "user\t", "sys\t"] {
        if line.starts_with(head) {
            // Only "real" says something: a quiet second, and a bit.
            return if head == "real\t" {
                "real\t0m1.[..]s".to_string()
            } else {
                format!("{head}[..]")
            };
        }
    }
    let mut out = String::new();
    let mut rest = line;
    loop {
        let next = [
            ("\"t\":", "0123456789."),
            ("127.0.0.1:", "0123456789"),
            ("\"peer_fingerprint\":\"", "0123456789abcdef"),
        ]
        .into_iter()
        .filter_map(|(key, chars)| rest.find(key).map(|at| (at, key, chars)))
        .min();
        let Some((at, key, chars)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + key.len()]);
        rest = &rest[at + key.len()..];
        let len = rest.find(|c| !chars.contains(c)).unwrap_or(rest.len());
        if (key == "127.0.0.1:" && &rest[..len] == port) || len == 0 {
            out.push_str(&rest[..len]);
        } else {
            out.push_str("[..]");
        }
        rest = &rest[len..];
    }
}

/// `--events` lines, then the others, each in order.
fn split(lines: &[String]) -> String {
    // Whether the peer's end arrives before ours is acknowledged decides if
    // a connection passes through no_send_recv on its way out: both count.
    let lines: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("\"to\":\"no_send_recv\""))
        .map(|l| l.replace("\"from\":\"no_send_recv\"", "\"from\":\"no_send\""))
        .collect();
    let (events, other): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| l.starts_with("{\"t\":"));
    let mut text = String::from("--events:\n");
    events.iter().for_each(|l| text += &format!("{l}\n"));
    text += "the rest:\n";
    other.iter().for_each(|l| text += &format!("{l}\n"));
    text
}

fn start(command: &str, dir: &Path, out: &Path) -> Child {
    let bin = Path::new(env!("CARGO_BIN_EXE_tether")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let file = File::create(out).unwrap();
    Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        // Its own process group, so that stopping it stops what bash started.
        .process_group(0)
        .spawn()
        .unwrap()
}

fn lines(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines().map(str::to_string).collect()
}

fn stop(child: &mut Child) {
    if child.try_wait().unwrap().is_some() {
        return;
    }
    // SIGKILL: a session shows what a server printed while it served; a
    // Ctrl-C would add the graceful end's own lines (see the README's
    // paragraph on signals), which the sessions do not show.
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{}", child.id()))
        .status();
    let _ = child.wait();
}

fn certificate(dir: &Path) {
    use rcgen::{CertificateParams, DnType, IsCa, KeyPair};
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn run(session: &Session) {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let readme_port = server_port(session);
    let udp = session.steps.iter().any(|s| s.command.contains("--udp"));
    let port = free_port(udp).to_string();
    let address = |text: &str, from: &str, to: &str| {
        // Python's form too, ("127.0.0.1", PORT).
        text.replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"))
            .replace(
                &format!("\"127.0.0.1\", {from})"),
                &format!("\"127.0.0.1\", {to})"),
            )
    };
    let mut background: Vec<(Child, &Step, PathBuf)> = Vec::new();
    let mut results: Vec<(&Step, Vec<String>)> = Vec::new();
    for (i, step) in session.steps.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let command = address(&step.command, &readme_port, &port);
        let mut child = start(&command, dir.path(), &out);
        if step.background {
            let began = Instant::now();
            while !listening(port.parse().unwrap(), udp) {
                assert!(
                    began.elapsed() < LIMIT,
                    "{}: `{command}` does not listen",
                    session.title
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            background.push((child, step, out));
        } else {
            let began = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if began.elapsed() > LIMIT {
                    stop(&mut child);
                    panic!("{}: `{command}` did not finish", session.title);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            results.push((step, lines(&out)));
        }
    }
    for (mut child, step, out) in background {
        let began = Instant::now();
        while child.try_wait().unwrap().is_none()
            && lines(&out).len() < step.expected.len()
            && began.elapsed() < LIMIT
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A server that serves until killed has said all it will.
        std::thread::sleep(Duration::from_millis(100));
        stop(&mut child);
        results.push((step, lines(&out)));
    }
    for (step, actual) in results {
        let actual: Vec<String> = actual
            .iter()
            .map(|l| address(l, &port, &readme_port))
            .collect();
        let expected: Vec<String> = step
            .expected
            .iter()
            .map(|l| pattern(l, &readme_port))
            .collect();
        eprintln!("{}: $ {}", session.title, step.command);
        assert_data_eq!(split(&actual), split(&expected));
    }
}

#[test]
fn readme_has_the_five_sessions() {
    let titles: Vec<String> = sessions(&readme()).into_iter().map(|s| s.title).collect();
    assert_eq!(
        titles,
        [
            "Plain TCP",
            "Half-close",
            "TLS with ALPN",
            "Framed, with connect and disconnect data",
            "UDP"
        ]
    );
}

#[test]
fn readme_sessions_print_what_readme_shows() {
    for session in sessions(&readme()) {
        run(&session);
    }
}
