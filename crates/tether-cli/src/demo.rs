//! `tether demo`: an echo exchange on loopback, told from both ends.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser};

/// Options of `tether demo`.
#[derive(Args, Debug)]
pub(crate) struct Options {
    /// How many clients connect at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// How many messages each client sends and waits to get back.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    messages: u32,
    /// Bytes per message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    size: u32,
    /// Use a Unix-domain socket instead of TCP.
    #[arg(long)]
    local: bool,
}

/// What the clients report back.
#[derive(Default)]
struct Tally {
    lines: Vec<String>,
    ok: u32,
    done: u32,
    clients: u32,
}

struct Server;

impl SocketUser<Tally> for Server {
    fn on_incoming(&mut self, _: &mut Cx<Tally>, _: SocketId, _: &PeerInfo) -> Admission<Tally> {
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx<Tally>, _: SocketId, _: &Closed) {}
}

/// The server side of one connection: echo until the client's FIN, then ours.
struct Echo;

impl SocketUser<Tally> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<Tally>, s: SocketId) {
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<Tally>, s: SocketId, data: &[u8]) {
        let _ = cx.send(s, data);
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Tally>, s: SocketId, _: Option<&[u8]>) {
        let _ = cx.shutdown(s);
    }
    fn on_closed(&mut self, _: &mut Cx<Tally>, _: SocketId, _: &Closed) {}
}

/// One client: send a message, wait for exactly it back, repeat; then
/// half-close and wait for the server's end.
struct Client {
    n: u32,
    size: usize,
    left: u32,
    echoed: u32,
    started: Instant,
    /// What this client saw, in order: states and the peer's end.
    path: Vec<&'static str>,
}

impl Client {
    fn message(&self) -> Vec<u8> {
        (0..self.size)
            .map(|i| (i as u32 + self.left) as u8)
            .collect()
    }

    fn next(&mut self, cx: &mut Cx<Tally>, s: SocketId) {
        if self.left == 0 {
            let _ = cx.shutdown(s);
            self.path.push(cx.state(s).as_str());
            return;
        }
        let _ = cx.send(s, &self.message());
        let _ = cx.recv(s, self.size, RecvMode::Exact);
    }
}

impl SocketUser<Tally> for Client {
    fn on_connected(&mut self, cx: &mut Cx<Tally>, s: SocketId) {
        self.path.push(cx.state(s).as_str());
        self.next(cx, s);
    }
    fn on_received(&mut self, cx: &mut Cx<Tally>, s: SocketId, data: &[u8]) {
        if data == self.message() {
            self.echoed += 1;
        }
        self.left -= 1;
        self.next(cx, s);
    }
    fn on_peer_shutdown(&mut self, _: &mut Cx<Tally>, _: SocketId, _: Option<&[u8]>) {
        self.path.push("peer_shutdown");
    }
    fn on_closed(&mut self, cx: &mut Cx<Tally>, s: SocketId, closed: &Closed) {
        let good = closed.reason.is_graceful() && self.echoed == self.n;
        let tally = cx.shared_mut();
        tally.lines.push(format!(
            "client {:>3} {s}: {}/{} echoed in {:>7.1} ms, {} -> closed: {} (unsent {}, unread {}){}",
            tally.done + 1,
            self.echoed,
            self.n,
            self.started.elapsed().as_secs_f64() * 1e3,
            self.path.join(" -> "),
            closed.reason,
            closed.unsent,
            closed.unread,
            closed.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default(),
        ));
        tally.ok += u32::from(good);
        tally.done += 1;
        if tally.done == tally.clients {
            cx.terminate();
        }
    }
}

pub(crate) fn run(opts: &Options) -> ExitCode {
    let mut mux = match IoMux::new(Tally {
        clients: opts.clients,
        ..Tally::default()
    }) {
        Ok(mux) => mux,
        Err(e) => {
            eprintln!("tether: cannot create the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dir = tempdir_path();
    let addr = if opts.local {
        format!("unix:{}", dir.join("demo.sock").display())
    } else {
        "127.0.0.1:0".to_string()
    };
    let listener = mux.listen_on(&addr, Server);
    let Some(local) = mux.local_addr(listener) else {
        eprintln!("tether: cannot listen on {addr}");
        return ExitCode::FAILURE;
    };
    println!("server listening on {local}");
    let started = Instant::now();
    for _ in 0..opts.clients {
        mux.connect_to(
            &local.to_string(),
            Client {
                n: opts.messages,
                size: opts.size as usize,
                left: opts.messages,
                echoed: 0,
                started,
                path: Vec::new(),
            },
        );
    }
    // A demo that hangs would teach nothing: give up after a generous bound.
    mux.set_timer(Duration::from_secs(60), |cx| {
        cx.shared_mut().lines.push("gave up after 60 s".into());
        cx.terminate();
    });
    let result = mux.run();
    let _ = std::fs::remove_dir_all(&dir);
    let tally = mux.shared();
    for line in &tally.lines {
        println!("{line}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let messages = u64::from(opts.clients) * u64::from(opts.messages);
    println!(
        "{}/{} clients ended gracefully with every message echoed; {} round trips in {:.3} s ({:.0}/s)",
        tally.ok,
        opts.clients,
        messages,
        elapsed,
        messages as f64 / elapsed
    );
    if let Err(e) = result {
        eprintln!("tether: event loop failed: {e}");
        return ExitCode::FAILURE;
    }
    if tally.ok == opts.clients {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A private directory for the demo's Unix socket.
fn tempdir_path() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-demo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
