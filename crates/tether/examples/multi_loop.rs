//! One port, many loops: an echo server with one event loop per core.
//!
//! ```text
//! cargo run -p tether --example multi_loop -- 127.0.0.1:7000
//! printf 'hello\n' | nc -N 127.0.0.1 7000
//! ```
//!
//! An [`IoMux`] runs on one thread; a server scales across cores by running
//! one loop per core, each on its own thread with its own listener. The
//! listeners share one port by setting SO_REUSEPORT
//! ([`Cx::set_reuse_port`]) before they bind, and the kernel spreads the
//! incoming connections among them by a hash of each connection's addresses
//! and ports. A connection stays on the loop that accepted it for its whole
//! life, so the loops share nothing and need no locks. Each line of the log
//! says which loop took the connection.

use std::thread;

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser};

/// A loop's listener; `loop_no` names the loop in the log.
struct Listener {
    loop_no: usize,
}

impl SocketUser for Listener {
    fn on_bound(&mut self, _: &mut Cx, _: SocketId, local: &tether::SockAddr) {
        println!("loop {}: listening on {local}", self.loop_no);
    }
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, peer: &PeerInfo) -> Admission {
        println!("loop {}: incoming from {:?}", self.loop_no, peer.peer);
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        println!(
            "loop {}: listener closed: {} {:?}",
            self.loop_no, closed.reason, closed.error
        );
    }
}

/// Echoes, and ends the connection the way the client does.
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
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
}

/// One loop: its own `IoMux` and its own listener on the shared port.
fn serve(loop_no: usize, addr: &str) -> std::io::Result<()> {
    let mut mux = IoMux::new(())?;
    let s = mux.stream(Listener { loop_no });
    // Before the bind: only then does the option count.
    mux.set_reuse_port(s, true).expect("a fresh stream socket");
    // A failed bind (a port taken without the option, say) closes the
    // listener with `BindFailed`, told by its `on_closed`; listen then
    // refuses, and the loop, with nothing left to run, returns.
    if mux.bind(s, addr).is_ok() {
        let _ = mux.listen(s);
    }
    mux.run()
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let loops = thread::available_parallelism().map_or(1, |n| n.get());
    println!("{loops} loops on {addr}");
    let threads: Vec<_> = (0..loops)
        .map(|loop_no| {
            let addr = addr.clone();
            thread::spawn(move || serve(loop_no, &addr))
        })
        .collect();
    for t in threads {
        t.join().expect("a loop panicked").expect("event loop");
    }
}
