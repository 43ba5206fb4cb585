//! idle-memory: bytes of resident memory per idle connection, server side
//! only. Each measurement runs the server in a fresh child process (so no
//! allocator state carries over from another server) and the clients in a
//! second child process (so their memory is not counted). The server's RSS
//! is read once a few warm-up connections are up, and again once all are up
//! (on TLS: handshake over), and the difference divided by their number.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Net, Service, Spec, Stats, Target};
use crate::report::Report;
use crate::scenarios::rss;
use crate::servers::{Kind, Server};
use crate::tlsio::{client_config_pem, Pki};
use crate::{sys, Opts};

/// Connections made before the first reading: one-time costs (the loop's
/// first buffers, TLS tables) are not any one connection's.
const WARM: usize = 16;

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(args: &[String]) -> Proc {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Proc {
            child,
            stdin,
            stdout,
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("child's stdin");
        stdin.flush().expect("child's stdin");
    }

    /// The next line, which must start with `word`; the rest of it.
    fn expect(&mut self, word: &str) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("child's stdout");
        let rest = line
            .trim()
            .strip_prefix(word)
            .unwrap_or_else(|| panic!("child said {line:?}, expected {word}"));
        rest.trim().to_string()
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

pub(crate) fn idle_memory(opts: &Opts) -> Report {
    let n = opts.idle_conns;
    let kinds = [Kind::Tether, Kind::Mio, Kind::Tokio];
    let mut report = Report::new(
        "idle-memory",
        format!(
            "{n} idle echo connections; server RSS growth per connection (clients in another process)"
        ),
        &kinds,
        opts.rounds,
    );
    let ca_path = std::env::temp_dir().join(format!("tether-bench-{}-ca.pem", std::process::id()));
    for r in 0..opts.rounds {
        for tls in [false, true] {
            for i in 0..kinds.len() {
                let kind = kinds[(i + r) % kinds.len()];
                if opts.only.as_ref().is_some_and(|only| !only.contains(&kind)) {
                    continue;
                }
                let per_conn = measure(kind, tls, n, &ca_path);
                let case = if tls { "TLS 1.3" } else { "plain TCP" };
                report.add(case, kind, "bytes/conn ↓", per_conn);
            }
        }
    }
    let _ = std::fs::remove_file(&ca_path);
    report
}

fn measure(kind: Kind, tls: bool, n: usize, ca_path: &std::path::Path) -> f64 {
    let mode = if tls { "tls" } else { "plain" };
    let ca = ca_path.display().to_string();
    let mut server = Proc::spawn(&[
        "__idle-server".into(),
        kind.name().into(),
        mode.into(),
        ca.clone(),
    ]);
    let addr = server.expect("addr");
    let mut clients = Proc::spawn(&[
        "__idle-clients".into(),
        addr,
        WARM.to_string(),
        n.to_string(),
        if tls { ca } else { "-".into() },
    ]);
    clients.expect("warm");
    server.say(&format!("measure {WARM}"));
    let before: f64 = server.expect("rss").parse().expect("rss");
    clients.say("go");
    clients.expect("ready");
    server.say(&format!("measure {}", WARM + n));
    let after: f64 = server.expect("rss").parse().expect("rss");
    clients.finish();
    server.finish();
    (after - before) / n as f64
}

/// The server child: `__idle-server KIND plain|tls CA_PATH`.
pub(crate) fn server_child(args: &[String]) {
    sys::raise_nofile_limit();
    let kind = Kind::parse(&args[0]).expect("server kind");
    let tls = args[1] == "tls";
    let pki = tls.then(|| {
        let pki = Arc::new(Pki::new());
        std::fs::write(&args[2], &pki.ca_pem).expect("write the CA");
        pki
    });
    let server = Server::start(
        kind,
        &Spec {
            net: Net::Tcp,
            service: Service::Echo,
            tls: pki,
            loops: 1,
        },
    );
    println!("addr {}", server.target.text());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Some(n) = line.strip_prefix("measure ") else {
            continue;
        };
        let n: u64 = n.trim().parse().expect("count");
        let deadline = Instant::now() + Duration::from_secs(120);
        while Stats::get(&server.stats.up) < n {
            assert!(Instant::now() < deadline, "connections did not come up");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Let the last ones settle (TLS session tickets written, ...).
        std::thread::sleep(Duration::from_millis(200));
        println!("rss {}", rss());
    }
    server.stop();
}

/// The client child: `__idle-clients ADDR WARM N CA_PATH|-`.
pub(crate) fn clients_child(args: &[String]) {
    sys::raise_nofile_limit();
    let target = Target::parse(&args[0], false).expect("address");
    let warm: usize = args[1].parse().expect("warm");
    let n: usize = args[2].parse().expect("count");
    let tls = (args[3] != "-").then(|| {
        let pem = std::fs::read_to_string(PathBuf::from(&args[3])).expect("CA");
        client_config_pem(&pem)
    });
    let mut keep = Vec::with_capacity(warm + n);
    crate::load::open_idle(&target, tls.as_ref(), warm, &mut keep);
    println!("warm");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    crate::load::open_idle(&target, tls.as_ref(), n, &mut keep);
    println!("ready");
    // Hold them until the parent closes our stdin.
    let _ = std::io::stdin().read_line(&mut line);
    drop(keep);
}
