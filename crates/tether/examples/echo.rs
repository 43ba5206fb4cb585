//! An echo server that ends each connection the way the client does, with
//! tether's logs on stderr.
//!
//! ```text
//! RUST_LOG=tether=debug cargo run -p tether --example echo -- 127.0.0.1:7000
//! printf 'hello\n' | nc -N 127.0.0.1 7000
//! ```
//! `nc -N` half-closes after stdin; the server echoes everything, then answers
//! the client's FIN with its own, and the log shows `closed: by_peer`.
//! `RUST_LOG` chooses what is logged (`tether::tcp=trace`, `tether=info`, ...);
//! unset, only errors are.
//!
//! If the listener ends — the port is in use, the address is not this
//! machine's — the server says why and exits with status 1.

use std::process::ExitCode;

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SocketId, SocketUser};
use tracing_subscriber::EnvFilter;

/// The loop's shared state: why the listener ended, once it has.
type Ended = Option<Reason>;

struct Listener;

impl SocketUser<Ended> for Listener {
    fn on_bound(&mut self, _: &mut Cx<Ended>, _: SocketId, local: &tether::SockAddr) {
        println!("listening on {local}");
    }
    fn on_incoming(&mut self, _: &mut Cx<Ended>, _: SocketId, peer: &PeerInfo) -> Admission<Ended> {
        println!("incoming from {:?}", peer.peer);
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, cx: &mut Cx<Ended>, _: SocketId, closed: &Closed) {
        match &closed.error {
            Some(e) => eprintln!("listener ended: {}: {e}", closed.reason),
            None => eprintln!("listener ended: {}", closed.reason),
        }
        *cx.shared_mut() = Some(closed.reason);
    }
}

struct Echo;

impl SocketUser<Ended> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<Ended>, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Ended>, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Ended>, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx<Ended>, s: SocketId, closed: &Closed) {
        println!(
            "{s} closed: {} (unsent {}, unread {})",
            closed.reason, closed.unsent, closed.unread
        );
    }
}

fn main() -> ExitCode {
    // tether logs through `tracing`; without a subscriber its lines go nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let mut mux = IoMux::new(None).expect("event loop");
    mux.listen_on(&addr, Listener);
    mux.run().expect("event loop");
    // `run` returns once nothing is left; a listener that ended without being
    // told to (`terminate` ends it as `Stopped`) means the server failed.
    match mux.shared() {
        Some(Reason::Stopped) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
