//! Admission limits set from a callback: `max_connections` only records the
//! limit; the waiting connections are taken once the current callback has
//! returned, each offered to the listener's `on_incoming`, which never runs
//! inside an operation.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SockAddr, SocketId, SocketUser};

/// How many clients wait in the backlog before the loop runs.
const CLIENTS: usize = 6;
/// How long a test's loop may run.
const LIMIT: Duration = Duration::from_secs(5);

/// What the loop saw.
#[derive(Debug, Default)]
struct Seen {
    /// Callbacks running right now (1 inside a callback that runs alone).
    depth: u32,
    /// The depth at each `on_incoming`, counting itself.
    incoming: Vec<u32>,
    accepted: Vec<SocketId>,
    closed: usize,
    timed_out: bool,
}

fn enter(cx: &mut Cx<Seen>) {
    cx.shared_mut().depth += 1;
}

fn leave(cx: &mut Cx<Seen>) {
    cx.shared_mut().depth -= 1;
}

/// When a connection raises its listener's limit.
#[derive(Clone, Copy)]
enum Raise {
    /// The listener's `on_incoming`, on every connection.
    OnIncoming,
    /// Each taken connection's `on_accepted`.
    OnAccepted,
}

struct Gate {
    raise: Raise,
}

impl SocketUser<Seen> for Gate {
    fn on_incoming(&mut self, cx: &mut Cx<Seen>, l: SocketId, _: &PeerInfo) -> Admission<Seen> {
        enter(cx);
        let depth = cx.shared().depth;
        cx.shared_mut().incoming.push(depth);
        let raise = match self.raise {
            Raise::OnIncoming => {
                cx.max_connections(l, Some(10)).unwrap();
                None
            }
            Raise::OnAccepted => Some(l),
        };
        leave(cx);
        Admission::Accept(Box::new(Greeter { raise }))
    }
    fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
}

/// Sends "hi" and its FIN, then waits for the client's.
struct Greeter {
    raise: Option<SocketId>,
}

impl SocketUser<Seen> for Greeter {
    fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        enter(cx);
        cx.shared_mut().accepted.push(s);
        if let Some(l) = self.raise {
            cx.max_connections(l, Some(10)).unwrap();
        }
        cx.send(s, b"hi").unwrap();
        cx.shutdown(s).unwrap();
        cx.recv(s, 64, RecvMode::Partial).unwrap();
        leave(cx);
    }
    fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, _: &[u8]) {
        cx.recv(s, 64, RecvMode::Partial).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _: SocketId, _: &Closed) {
        enter(cx);
        cx.shared_mut().closed += 1;
        if cx.shared().closed == CLIENTS {
            cx.terminate();
        }
        leave(cx);
    }
}

/// A TCP listener on loopback, with `initial` as its limit; `CLIENTS` clients
/// connect (the kernel completes them into the backlog) before the loop runs.
/// Returns what the loop saw and what each client read.
fn run(raise: Raise, initial: Option<u32>) -> (Seen, Vec<std::io::Result<Vec<u8>>>) {
    let mut m = IoMux::new(Seen::default()).expect("event loop");
    let l = m.stream(Gate { raise });
    m.bind(l, "127.0.0.1:0").expect("bind");
    m.listen(l).expect("listen");
    if initial.is_some() {
        m.max_connections(l, initial).unwrap();
    }
    let addr: SocketAddr = match m.local_addr(l) {
        Some(SockAddr::Inet(a)) => a,
        other => panic!("listener address: {other:?}"),
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let c = TcpStream::connect(addr).expect("connect");
            c.set_read_timeout(Some(LIMIT)).unwrap();
            thread::spawn(move || {
                let mut c = c;
                let mut got = Vec::new();
                c.read_to_end(&mut got).map(|_| got)
            })
        })
        .collect();
    m.set_timer(LIMIT, |cx| {
        cx.shared_mut().timed_out = true;
        cx.terminate();
    });
    m.run().expect("loop runs");
    let read = clients.into_iter().map(|t| t.join().unwrap()).collect();
    (m.into_shared(), read)
}

fn check(seen: &Seen, read: &[std::io::Result<Vec<u8>>]) {
    for (i, r) in read.iter().enumerate() {
        match r {
            Ok(got) => assert_eq!(got, b"hi", "client {i}"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                panic!("client {i} was reset without being offered: {seen:?}")
            }
            Err(e) => panic!("client {i}: {e}: {seen:?}"),
        }
    }
    assert_eq!(seen.incoming.len(), CLIENTS, "offered: {seen:?}");
    assert_eq!(seen.accepted.len(), CLIENTS, "accepted: {seen:?}");
    assert!(!seen.timed_out, "{seen:?}");
}

/// The listener's own `on_incoming` sets the limit on every connection: its
/// user is running then, so the connections still waiting must be taken
/// after it returns, each offered to it, not denied unasked.
#[test]
fn limit_set_in_on_incoming_offers_every_waiting_client() {
    let (seen, read) = run(Raise::OnIncoming, None);
    check(&seen, &read);
    assert!(seen.incoming.iter().all(|&d| d == 1), "nested: {seen:?}");
}

/// A connection raises its listener's limit from `on_accepted` while others
/// wait: `on_incoming` runs for them after `on_accepted` returns, not inside
/// it.
#[test]
fn limit_raised_in_on_accepted_takes_the_rest_after_it_returns() {
    let (seen, read) = run(Raise::OnAccepted, Some(1));
    check(&seen, &read);
    assert!(seen.incoming.iter().all(|&d| d == 1), "nested: {seen:?}");
}
