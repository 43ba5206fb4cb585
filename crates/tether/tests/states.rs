//! `on_state`: every state change is reported once, in order, ending in
//! `NotConnected` just before `on_closed`.

use std::io::{Read, Write};
use std::time::Duration;

use tether::{Closed, Cx, IoMux, RecvMode, SocketId, SocketUser, State};

#[derive(Default)]
struct Seen(Vec<String>);

/// Sends a ping, shuts down at once, reads until the peer's end.
struct Client;

impl SocketUser<Seen> for Client {
    fn on_state(&mut self, cx: &mut Cx<Seen>, s: SocketId, from: State, to: State) {
        assert_eq!(cx.state(s), to, "state() agrees with the report");
        cx.shared_mut().0.push(format!("{from}->{to}"));
    }
    fn on_connected(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().0.push("connected".into());
        cx.send(s, b"ping").unwrap();
        cx.shutdown(s).unwrap();
        cx.recv(s, 64, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, _: &[u8]) {
        cx.recv(s, 64, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Seen>, _: SocketId, _: Option<&[u8]>) {
        cx.shared_mut().0.push("peer_shutdown".into());
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _: SocketId, c: &Closed) {
        cx.shared_mut().0.push(format!("closed {}", c.reason));
        cx.terminate();
    }
}

/// A plain std server: read to EOF, answer, close.
fn serve(mut conn: impl Read + Write) {
    let mut request = Vec::new();
    conn.read_to_end(&mut request).unwrap();
    conn.write_all(b"pong").unwrap();
}

#[test]
fn a_graceful_exchange_walks_the_states_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let targets = [
        tcp.local_addr().unwrap().to_string(),
        format!("unix:{}", path.display()),
    ];
    let server = std::thread::spawn(move || {
        serve(tcp.accept().unwrap().0);
        serve(unix.accept().unwrap().0);
    });
    for target in &targets {
        let mut mux = IoMux::new(Seen::default()).unwrap();
        mux.connect_to(target, Client);
        mux.set_timer(Duration::from_secs(5), |cx| cx.terminate());
        mux.run().unwrap();
        // Whether the peer's FIN is seen (NoSendRecv) before its last bytes are
        // read depends on how they arrive; both orders are right.
        let seen = &mux.shared().0;
        let direct = [
            "not_connected->connecting",
            "connecting->connected",
            "connected",
            "connected->no_send",
            "peer_shutdown",
            "no_send->not_connected",
            "closed normal",
        ];
        let via_fin = [
            "not_connected->connecting",
            "connecting->connected",
            "connected",
            "connected->no_send",
            "no_send->no_send_recv",
            "peer_shutdown",
            "no_send_recv->not_connected",
            "closed normal",
        ];
        assert!(
            seen[..] == direct[..] || seen[..] == via_fin[..],
            "{target}: {seen:?}"
        );
    }
    server.join().unwrap();
}
