//! Connecting to host names with real peers: `localhost` resolves off the loop
//! and connects, a name that does not exist ends the socket with
//! `ResolveFailed` and the resolver's error, and a literal address is not
//! resolved at all.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use tether::{Closed, Cx, IoMux, Reason, RecvMode, SocketId, SocketUser, Timeouts};

#[derive(Default)]
struct Seen {
    resolved: Vec<Vec<SocketAddr>>,
    connected: usize,
    received: Vec<u8>,
    closed: Vec<(Reason, String)>,
}

struct Client;

impl SocketUser<Seen> for Client {
    fn on_resolved(&mut self, cx: &mut Cx<Seen>, _s: SocketId, addrs: &[SocketAddr]) {
        cx.shared_mut().resolved.push(addrs.to_vec());
    }
    fn on_connected(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().connected += 1;
        cx.send(s, b"ping").unwrap();
        cx.recv(s, 4, RecvMode::Exact).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, data: &[u8]) {
        cx.shared_mut().received.extend_from_slice(data);
        cx.reset(s).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _s: SocketId, closed: &Closed) {
        let error = closed
            .error
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        cx.shared_mut().closed.push((closed.reason, error));
    }
}

fn run(mux: &mut IoMux<Seen>) {
    mux.set_timer(Duration::from_secs(20), |cx| cx.terminate());
    let handle = mux.handle();
    // The bound above keeps the loop alive; stop once the socket closed.
    mux.set_interval(Duration::from_millis(10), move |cx| {
        if !cx.shared().closed.is_empty() {
            handle.terminate();
        }
    });
    mux.run().unwrap();
}

/// An echo peer on 127.0.0.1, answering one message.
fn echo_peer() -> (u16, thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let peer = thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0; 4];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
        let _ = c.read(&mut buf);
    });
    (port, peer)
}

#[test]
fn localhost_connects() {
    let (port, peer) = echo_peer();
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let s = mux.connect_to(&format!("localhost:{port}"), Client);
    assert_eq!(mux.state(s), tether::State::Connecting);
    run(&mut mux);
    let seen = mux.shared();
    assert_eq!(seen.resolved.len(), 1, "one on_resolved");
    assert!(
        seen.resolved[0].contains(&format!("127.0.0.1:{port}").parse().unwrap()),
        "{:?}",
        seen.resolved
    );
    assert_eq!(seen.connected, 1, "one on_connected");
    assert_eq!(seen.received, b"ping");
    assert_eq!(seen.closed.len(), 1);
    assert_eq!(seen.closed[0].0, Reason::Reset);
    peer.join().unwrap();
}

#[test]
fn a_name_that_does_not_exist_fails_to_resolve() {
    let mut mux = IoMux::new(Seen::default()).unwrap();
    mux.connect_to("no-such-host.invalid:80", Client);
    run(&mut mux);
    let seen = mux.shared();
    assert!(seen.resolved.is_empty());
    assert_eq!(seen.connected, 0);
    assert_eq!(seen.closed.len(), 1, "{:?}", seen.closed);
    let (reason, error) = &seen.closed[0];
    assert_eq!(*reason, Reason::ResolveFailed);
    assert_eq!(reason.as_str(), "resolve_failed");
    assert!(!error.is_empty(), "the resolver's error is kept");
}

/// A literal address takes no detour through the resolver.
#[test]
fn a_literal_address_is_not_resolved() {
    let (port, peer) = echo_peer();
    let mut mux = IoMux::new(Seen::default()).unwrap();
    mux.connect_to(&format!("127.0.0.1:{port}"), Client);
    run(&mut mux);
    let seen = mux.shared();
    assert!(
        seen.resolved.is_empty(),
        "no on_resolved for a literal address"
    );
    assert_eq!(seen.connected, 1);
    peer.join().unwrap();
}

/// The socket may be closed while its name resolves: it ends once, and the
/// answer that comes later finds nothing to do.
#[test]
fn closed_while_resolving() {
    let (port, _peer) = echo_peer();
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let s = mux.connect_to(&format!("localhost:{port}"), Client);
    mux.reset(s).unwrap();
    run(&mut mux);
    let seen = mux.shared();
    assert_eq!(seen.connected, 0);
    assert_eq!(seen.closed.len(), 1, "{:?}", seen.closed);
}

/// Resolving counts against the connect timeout: a timeout shorter than any
/// lookup ends the socket with `ConnectTimeout` and nothing else.
#[test]
fn resolving_counts_against_the_connect_timeout() {
    let (port, _peer) = echo_peer();
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let s = mux.stream(Client);
    let timeouts = Timeouts {
        connect: Some(Duration::ZERO),
        ..Timeouts::default()
    };
    mux.set_timeouts(s, timeouts).unwrap();
    mux.connect(s, &format!("localhost:{port}")).unwrap();
    run(&mut mux);
    let seen = mux.shared();
    assert_eq!(seen.connected, 0);
    assert_eq!(seen.closed.len(), 1, "{:?}", seen.closed);
    assert_eq!(seen.closed[0].0, Reason::ConnectTimeout);
}
