//! The log lines: each under its socket's target (`tether::tls` for everything
//! about a TLS socket, `tether::tcp` / `tether::local` / `tether::udp` for
//! plain ones), each carrying the loop (`mux`) and, about a socket, the socket;
//! a socket's "closed" line comes before its `on_closed` runs.
//!
//! Lines are captured by a subscriber set for the test's own thread only, so
//! the tests of this file do not see each other's lines.

mod common;
mod tls_support;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

use common::{inet, mux, run_until, Ev, Log, Rec, Transport};
use tether::{Closed, Cx, IoMux, RecvMode, SockAddr, SocketId, SocketUser};
use tls_support::{connect_tls, finish, listen_tls, Pki, LIMIT};

/// One event as written: its target and its fields (the text as `message`).
#[derive(Clone, Debug)]
struct Line {
    target: String,
    fields: BTreeMap<String, String>,
}

impl Line {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }

    fn is_tether(&self) -> bool {
        self.target.starts_with("tether::")
    }
}

/// A layer that keeps every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Line {
            target: event.metadata().target().to_string(),
            fields,
        });
    }
}

/// Run `f` with every event of this thread captured.
fn captured<R>(f: impl FnOnce() -> R) -> (R, Vec<Line>) {
    let capture = Capture::default();
    let r = tracing::subscriber::with_default(Registry::default().with(capture.clone()), f);
    let lines = capture.0.lock().unwrap().clone();
    (r, lines)
}

/// Written by the test's users when their `on_closed` runs.
const ON_CLOSED: &str = "on_closed runs";

fn mark_closed(s: SocketId) {
    tracing::info!(target: "test", socket = %s, "{ON_CLOSED}");
}

/// A listener whose connections echo until the peer's FIN, then answer it.
fn echo_listener() -> Rec {
    Rec::listener(|| {
        Some(Rec::with(|cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::PeerShutdown => cx.shutdown(s).unwrap(),
            Ev::Closed(_) => mark_closed(s),
            _ => {}
        }))
    })
}

/// "ping", wait for the echo, shut down.
fn ping_client() -> Rec {
    Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.send(s, b"ping").unwrap();
            cx.recv(s, 4, RecvMode::Exact).unwrap();
        }
        Ev::Received(_) => cx.shutdown(s).unwrap(),
        Ev::Closed(_) => mark_closed(s),
        _ => {}
    })
}

/// The transports a connection is checked over.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tls,
    Plain(Transport),
}

/// A client pinging an echo server on one loop, closed gracefully. Returns
/// the log, the listener, the client and the accepted socket.
fn session(kind: Kind) -> (Log, SocketId, SocketId, SocketId) {
    let mut m = mux();
    // Keeps a Unix socket's directory until the loop is done.
    let mut _spot = None;
    let (l, c) = match kind {
        Kind::Tls => {
            let pki = Pki::new();
            let (l, addr) = listen_tls(&mut m, &pki.server_ctx(), echo_listener());
            (
                l,
                connect_tls(&mut m, &addr, &pki.client_ctx(), ping_client()),
            )
        }
        Kind::Plain(t) => {
            let spot = _spot.insert(t.spot());
            let l = m.stream(echo_listener());
            m.bind(l, &spot.addr).expect("bind");
            m.listen(l).expect("listen");
            let addr = m.local_addr(l).expect("listener address").to_string();
            let c = m.stream(ping_client());
            m.connect(c, &addr).expect("connect");
            (l, c)
        }
    };
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    (log, l, c, a)
}

/// The tether lines about `s`, in order.
fn about(lines: &[Line], s: SocketId) -> Vec<&Line> {
    let id = s.to_string();
    lines
        .iter()
        .filter(|l| l.is_tether() && l.field("socket") == Some(id.as_str()))
        .collect()
}

/// The position of `s`'s line saying `message` under `target`.
fn position(lines: &[Line], s: SocketId, target: &str, message: &str) -> usize {
    let id = s.to_string();
    lines
        .iter()
        .position(|l| {
            l.field("socket") == Some(id.as_str()) && l.target == target && l.message() == message
        })
        .unwrap_or_else(|| panic!("{s} has no {message:?} line under {target}: {lines:#?}"))
}

/// Every tether line carries the same `mux` (one loop wrote them all) and a
/// `socket`; returns the `mux`.
fn one_loop_every_line_with_its_socket(lines: &[Line]) -> String {
    let tether: Vec<&Line> = lines.iter().filter(|l| l.is_tether()).collect();
    assert!(!tether.is_empty(), "no tether line: {lines:#?}");
    let mux = tether[0]
        .field("mux")
        .unwrap_or_else(|| panic!("no mux: {:?}", tether[0]))
        .to_string();
    for line in &tether {
        assert_eq!(line.field("mux"), Some(mux.as_str()), "{line:?}");
        assert!(line.field("socket").is_some(), "no socket: {line:?}");
    }
    mux
}

/// The client's and the accepted socket's lines, all of them under `target`,
/// with the ones that mark their lives there; "closed" before `on_closed`.
fn check_connection(lines: &[Line], c: SocketId, a: SocketId, target: &str) {
    for (s, first) in [(c, "connecting"), (a, "accepted")] {
        for line in about(lines, s) {
            assert_eq!(line.target, target, "{s}: {line:?}");
        }
        position(lines, s, target, first);
        let closed = position(lines, s, target, "closed");
        let on_closed = position(lines, s, "test", ON_CLOSED);
        assert!(closed < on_closed, "{s}: closed line after on_closed ran");
    }
}

/// Everything about a TLS connection, on both ends, is under `tether::tls`:
/// its connect or accept, its FIN, its close.
#[test]
fn tls_connection_lines_are_under_tether_tls() {
    let ((log, l, c, a), lines) = captured(|| session(Kind::Tls));
    assert_eq!(log.closed(c).reason, tether::Reason::Normal);
    assert_eq!(log.closed(a).reason, tether::Reason::ByPeer);
    one_loop_every_line_with_its_socket(&lines);
    check_connection(&lines, c, a, "tether::tls");
    position(&lines, c, "tether::tls", "handshake done");
    position(&lines, a, "tether::tls", "handshake done");
    // The listener itself is a plain TCP socket.
    position(&lines, l, "tether::tcp", "listening");
}

/// A TLS socket's FIN (after its close_notify) is written under `tether::tls`,
/// as a plain socket's is under its transport's target.
#[test]
fn tls_fin_line_is_under_tether_tls() {
    let ((_, _, c, a), lines) = captured(|| session(Kind::Tls));
    position(&lines, c, "tether::tls", "FIN");
    position(&lines, a, "tether::tls", "FIN");
}

/// A plain TCP connection's lines, its "closed" line included, are under
/// `tether::tcp`.
#[test]
fn tcp_connection_lines_are_under_tether_tcp() {
    let ((_, l, c, a), lines) = captured(|| session(Kind::Plain(Transport::Tcp)));
    one_loop_every_line_with_its_socket(&lines);
    check_connection(&lines, c, a, "tether::tcp");
    position(&lines, c, "tether::tcp", "FIN");
    position(&lines, a, "tether::tcp", "FIN");
    position(&lines, l, "tether::tcp", "listening");
}

/// A Unix-domain connection's lines, its "closed" line included, are under
/// `tether::local`.
#[test]
fn local_connection_lines_are_under_tether_local() {
    let ((_, l, c, a), lines) = captured(|| session(Kind::Plain(Transport::Local)));
    one_loop_every_line_with_its_socket(&lines);
    check_connection(&lines, c, a, "tether::local");
    position(&lines, c, "tether::local", "FIN");
    position(&lines, a, "tether::local", "FIN");
    position(&lines, l, "tether::local", "listening");
}

/// Two loops on one thread: each line names its own loop.
#[test]
fn each_loop_names_itself() {
    let (((_, _, c1, a1), (_, _, c2, a2)), lines) = captured(|| {
        (
            session(Kind::Plain(Transport::Tcp)),
            session(Kind::Plain(Transport::Tcp)),
        )
    });
    let mux_of = |s: SocketId, after: usize| {
        let line = &lines[after..]
            .iter()
            .find(|l| l.is_tether() && l.field("socket") == Some(s.to_string().as_str()))
            .unwrap_or_else(|| panic!("no line about {s}"));
        line.field("mux").expect("mux").to_string()
    };
    // Socket ids of two loops may coincide: split the lines where the second
    // loop's first line is.
    let first_mux = lines
        .iter()
        .find(|l| l.is_tether())
        .and_then(|l| l.field("mux"))
        .expect("a tether line with a mux")
        .to_string();
    let split = lines
        .iter()
        .position(|l| l.is_tether() && l.field("mux") != Some(first_mux.as_str()))
        .expect("lines of a second loop");
    assert!(lines[..split]
        .iter()
        .filter(|l| l.is_tether())
        .all(|l| l.field("mux") == Some(first_mux.as_str())));
    let second_mux = lines[split].field("mux").unwrap().to_string();
    assert!(lines[split..]
        .iter()
        .filter(|l| l.is_tether())
        .all(|l| l.field("mux") == Some(second_mux.as_str())));
    assert_eq!(mux_of(c1, 0), first_mux);
    assert_eq!(mux_of(a1, 0), first_mux);
    assert_eq!(mux_of(c2, split), second_mux);
    assert_eq!(mux_of(a2, split), second_mux);
}

/// A user with no `on_truncated`: the default drops a cut datagram with a
/// warning.
struct Plain;

impl SocketUser<Log> for Plain {
    fn on_bound(&mut self, cx: &mut Cx<Log>, s: SocketId, local: &SockAddr) {
        cx.shared_mut().events.push((s, Ev::Bound(local.clone())));
        cx.recv(s, 10, RecvMode::Partial).unwrap();
    }
    fn on_received_from(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8], from: SocketAddr) {
        cx.shared_mut()
            .events
            .push((s, Ev::ReceivedFrom(data.to_vec(), from)));
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut().events.push((s, Ev::Closed(closed.into())));
    }
}

/// The default `on_truncated`'s warning carries the loop and the socket like
/// every other line, under `tether::udp`.
#[test]
fn dropped_datagram_warning_names_the_loop_and_the_socket() {
    let ((), lines) = captured(|| {
        let mut m: IoMux<Log> = mux();
        let s = m.udp(Plain);
        m.bind(s, "127.0.0.1:0").expect("bind");
        let at = inet(&m, s);
        let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
        peer.send_to(&[7; 100], at).unwrap();
        peer.send_to(b"short", at).unwrap();
        run_until(&mut m, LIMIT, move |log| {
            log.of(s).iter().any(|e| matches!(e, Ev::ReceivedFrom(..)))
        });
        assert!(!m.shared().timed_out);
    });
    one_loop_every_line_with_its_socket(&lines);
    let warning = lines
        .iter()
        .find(|l| l.message().starts_with("datagram longer than the recv"))
        .unwrap_or_else(|| panic!("no warning: {lines:#?}"));
    assert_eq!(warning.target, "tether::udp");
}
