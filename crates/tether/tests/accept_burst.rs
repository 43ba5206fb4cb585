//! A burst of connects waiting in the backlog: the listener takes them a batch
//! at a time, turn by turn, and a connection that is ready in the same turn is
//! served before the rest of the burst is taken.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser};

/// Connections waiting at once, several times one turn's batch (64).
const BURST: usize = 300;

#[derive(Default)]
struct Seen {
    accepted: usize,
    /// The first connection: it echoes.
    echo: Option<SocketId>,
    /// How many were accepted when its message was echoed.
    accepted_when_echoed: Option<usize>,
}

struct Listener;

impl SocketUser<Seen> for Listener {
    fn on_incoming(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &PeerInfo) -> Admission<Seen> {
        Admission::Accept(Box::new(Conn))
    }
    fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
}

struct Conn;

impl SocketUser<Seen> for Conn {
    fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().accepted += 1;
        if cx.shared().echo.is_none() {
            cx.shared_mut().echo = Some(s);
            cx.recv(s, 64, RecvMode::Partial).unwrap();
        }
    }
    fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, data: &[u8]) {
        let accepted = cx.shared().accepted;
        cx.shared_mut().accepted_when_echoed = Some(accepted);
        cx.send(s, data).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
}

/// Turn the loop until `done`, for at most 10 s.
fn turn_until(mux: &mut IoMux<Seen>, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(mux.shared()) {
        assert!(Instant::now() < deadline, "the loop did not get there");
        // A turn first does what the last one put off, then waits for
        // readiness: bounded, so a turn with nothing left to wake it ends.
        mux.turn(Some(Duration::from_millis(50))).unwrap();
    }
}

#[test]
fn a_burst_is_taken_in_batches_and_a_ready_connection_is_served_between_them() {
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let l = mux.listen_on("127.0.0.1:0", Listener);
    let addr = mux.local_addr(l).unwrap().to_string();

    let mut first = TcpStream::connect(&addr).unwrap();
    turn_until(&mut mux, |s| s.accepted == 1);

    // The kernel completes these handshakes and holds them in the backlog.
    let burst: Vec<TcpStream> = (0..BURST)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // Loopback delivers the message before write returns: the first
    // connection is ready in the same turn as the listener.
    first.write_all(b"ping").unwrap();

    turn_until(&mut mux, |s| s.accepted_when_echoed.is_some());
    let when = mux.shared().accepted_when_echoed.unwrap();
    assert!(
        when <= 1 + 64,
        "the message waited for {when} accepts: the burst was taken whole first"
    );
    let mut back = [0u8; 4];
    first.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");

    // The rest of the burst is taken in the turns that follow.
    turn_until(&mut mux, |s| s.accepted == 1 + BURST);
    drop(burst);
}
