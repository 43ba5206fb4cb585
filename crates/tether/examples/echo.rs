//! An echo server that ends each connection the way the client does.
//!
//! ```text
//! cargo run -p tether --example echo -- 127.0.0.1:7000
//! printf 'hello\n' | nc -N 127.0.0.1 7000
//! ```
//! `nc -N` half-closes after stdin; the server echoes everything, then answers
//! the client's FIN with its own, and the log shows `closed: by_peer`.

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser};

struct Listener;

impl SocketUser for Listener {
    fn on_bound(&mut self, _: &mut Cx, _: SocketId, local: &tether::SockAddr) {
        println!("listening on {local}");
    }
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, peer: &PeerInfo) -> Admission {
        println!("incoming from {:?}", peer.peer);
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        println!("listener closed: {} {:?}", closed.reason, closed.error);
    }
}

struct Echo;

impl SocketUser for Echo {
    fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx, s: SocketId, closed: &Closed) {
        println!(
            "{s} closed: {} (unsent {}, unread {})",
            closed.reason, closed.unsent, closed.unread
        );
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let mut mux = IoMux::new(()).expect("event loop");
    mux.listen_on(&addr, Listener);
    mux.run().expect("event loop");
}
