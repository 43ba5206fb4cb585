//! Framed messages (README, "Framed messages") over TCP, Local and TLS: connect data
//! and the admission that sees it, whole messages, disconnect data both ways,
//! protocol errors, and the wire format byte for byte against peers written
//! with plain std::net from the specification alone:
//!
//! ```text
//! frame = length:u32 big-endian | type:u8 | payload   (length counts type + payload)
//! 1 HELLO  2 WELCOME  3 REJECT  4 DATA  5 FAREWELL
//! ```

mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{mux, pki, run_until, Done, Ev, Log, Peer, Rec, Spot, Transport};
use tether::{
    Admission, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId, SocketUser,
    State, TlsContext,
};

const LIMIT: Duration = Duration::from_secs(10);
/// How long a std peer waits for tether before it gives up (and fails).
const PEER_WAIT: Duration = Duration::from_secs(5);

// ----- the wire, by hand -----

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const REJECT: u8 = 3;
const DATA: u8 = 4;
const FAREWELL: u8 = 5;

/// One frame as the specification spells it, built without tether's codec.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len() + 1).unwrap();
    let mut f = len.to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

#[test]
fn hand_built_frames_match_the_specification() {
    assert_eq!(frame(HELLO, b"hi"), [0, 0, 0, 3, 1, b'h', b'i']);
    assert_eq!(frame(WELCOME, b""), [0, 0, 0, 1, 2]);
    assert_eq!(frame(FAREWELL, b"bye"), [0, 0, 0, 4, 5, b'b', b'y', b'e']);
    assert_eq!(frame(DATA, &[9; 300])[..5], [0, 0, 1, 45, 4]);
}

/// Read exactly `n` bytes, or say what stopped the read.
fn read_n(r: &mut impl Read, n: usize) -> Result<Vec<u8>, ErrorKind> {
    let mut buf = vec![0; n];
    r.read_exact(&mut buf).map_err(|e| e.kind())?;
    Ok(buf)
}

/// Everything up to the end of the stream, and how it ended: `Ok` at a clean
/// end (EOF), else the error that ended it (a reset, or the wait running out).
fn read_rest(r: &mut impl Read) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e.kind())),
        }
    }
}

// ----- the tether side -----

type Decide = Box<dyn FnMut(&mut Cx<Log>, &PeerInfo) -> Admission<Log>>;

/// A framed listener that records what `on_incoming` saw (the peer, then its
/// HELLO data) and answers as `decide` says.
struct Gate(Decide);

impl Gate {
    fn new(decide: impl FnMut(&mut Cx<Log>, &PeerInfo) -> Admission<Log> + 'static) -> Gate {
        Gate(Box::new(decide))
    }

    /// Admits everyone, each with the user `make` returns.
    fn accept(make: impl Fn() -> Rec + 'static) -> Gate {
        Gate::new(move |_, _| Admission::Accept(Box::new(make())))
    }
}

impl SocketUser<Log> for Gate {
    fn on_bound(&mut self, cx: &mut Cx<Log>, s: SocketId, local: &SockAddr) {
        cx.shared_mut().events.push((s, Ev::Bound(local.clone())));
    }
    fn on_incoming(&mut self, cx: &mut Cx<Log>, l: SocketId, peer: &PeerInfo) -> Admission<Log> {
        let log = cx.shared_mut();
        log.events.push((l, Ev::Incoming(peer.peer.clone())));
        log.events.push((l, Ev::Hello(peer.hello.clone())));
        (self.0)(cx, peer)
    }
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        cx.shared_mut().events.push((s, Ev::Accepted));
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        let log = cx.shared_mut();
        log.farewells.push((s, closed.farewell.clone()));
        log.events.push((s, Ev::Closed(Done::from(closed))));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Tcp,
    Local,
    Tls,
}

const NETS: [Net; 3] = [Net::Tcp, Net::Local, Net::Tls];

/// A loop with a framed listener, and how to reach it.
struct Env {
    m: IoMux<Log>,
    l: SocketId,
    addr: String,
    /// The client side of TLS: trusts the test CA that signed the server.
    client_tls: Option<TlsContext>,
    _spot: Spot,
}

fn tls_contexts() -> (TlsContext, TlsContext) {
    let ca = pki::Ca::new("tether framed test CA");
    let id = ca.server();
    let server = TlsContext::builder()
        .certificate_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_pem(ca.cert_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    (server, client)
}

/// A framed listener for `net`, framing set before it listens.
fn serve(net: Net, gate: Gate, limit: Option<usize>) -> Env {
    let spot = match net {
        Net::Local => Transport::Local.spot(),
        Net::Tcp | Net::Tls => Transport::Tcp.spot(),
    };
    let mut m = mux();
    let l = m.stream(gate);
    m.set_framing(l, &[]).unwrap();
    if let Some(limit) = limit {
        m.set_frame_limit(l, limit).unwrap();
    }
    m.bind(l, &spot.addr).unwrap();
    let client_tls = if net == Net::Tls {
        let (server, client) = tls_contexts();
        m.listen_tls(l, &server).unwrap();
        Some(client)
    } else {
        m.listen(l).unwrap();
        None
    };
    let addr = m.local_addr(l).expect("bound").to_string();
    Env {
        m,
        l,
        addr,
        client_tls,
        _spot: spot,
    }
}

/// A framed client of `env`'s listener with connect data `hello`.
fn dial(env: &mut Env, hello: &[u8], user: Rec) -> SocketId {
    let c = env.m.stream(user);
    env.m.set_framing(c, hello).unwrap();
    match &env.client_tls {
        Some(ctx) => env.m.connect_tls(c, &env.addr, "localhost", ctx).unwrap(),
        None => env.m.connect(c, &env.addr).unwrap(),
    }
    c
}

/// A framed client of a std server at `addr` (TCP).
fn dial_std(m: &mut IoMux<Log>, addr: &str, hello: &[u8], user: Rec) -> SocketId {
    let c = m.stream(user);
    m.set_framing(c, hello).unwrap();
    m.connect(c, addr).unwrap();
    c
}

/// Where `want` first appears in the log, as (socket, event).
fn position(log: &Log, s: SocketId, want: impl Fn(&Ev) -> bool) -> usize {
    log.events
        .iter()
        .position(|(id, e)| *id == s && want(e))
        .unwrap_or_else(|| panic!("{s} has no such event: {:?}", brief(log, s)))
}

fn count(log: &Log, s: SocketId, want: impl Fn(&Ev) -> bool) -> usize {
    log.events
        .iter()
        .filter(|(id, e)| *id == s && want(e))
        .count()
}

/// A socket's events with received data shortened, for failure messages.
fn brief(log: &Log, s: SocketId) -> Vec<String> {
    log.of(s)
        .into_iter()
        .map(|e| match e {
            Ev::Received(d) => format!("Received({} bytes)", d.len()),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The one connection the listener admitted.
fn only_accepted(log: &Log) -> SocketId {
    let accepted = log.accepted();
    assert_eq!(accepted.len(), 1, "{:?}", log.events.len());
    accepted[0]
}

// ----- 1. admission, whole messages, sends before WELCOME -----

const MESSAGES: usize = 1_000;

/// Sizes 0 to 70,000 bytes: a few edges (a frame of exactly 64 KiB, payloads
/// over the 64 KiB read buffer), every tenth one large, the rest small, so
/// frames split across reads at every kind of place.
fn size(i: usize) -> usize {
    match i {
        0 => 0,
        1 => 70_000,
        2 => 65_531,
        3 => 65_536,
        4 => 1,
        _ if i.is_multiple_of(10) => 60_000 + (i * 7_919) % 10_001,
        _ => (i * 104_729) % 2_000,
    }
}

/// Message `i` of the side tagged `tag`: its size and pseudo-random content.
fn message(tag: u32, i: usize) -> Vec<u8> {
    let mut x = (i as u32).wrapping_mul(2_654_435_761) ^ (tag << 24) | 1;
    (0..size(i))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const FROM_CLIENT: u32 = 0xc1;
const FROM_SERVER: u32 = 0x5e;

fn admitted_exchange(net: Net) {
    let server_got = Rc::new(Cell::new(0usize));
    let got = server_got.clone();
    let mut env = serve(
        net,
        Gate::accept(move || {
            let got = got.clone();
            Rec::with(move |cx, s, ev| match ev {
                Ev::Accepted => {
                    assert_eq!(cx.state(s), State::Connected, "admitted: connected");
                    for i in 0..MESSAGES {
                        cx.send(s, &message(FROM_SERVER, i)).unwrap();
                    }
                    // The recv's length does not matter: one message answers it.
                    cx.recv(s, 1, RecvMode::Partial).unwrap();
                }
                Ev::Received(d) => {
                    let i = got.get();
                    assert!(
                        *d == message(FROM_CLIENT, i),
                        "server: message {i} ({} bytes)",
                        d.len()
                    );
                    got.set(i + 1);
                    cx.recv(s, 1, RecvMode::Partial).unwrap();
                }
                Ev::PeerShutdown => {
                    assert_eq!(got.get(), MESSAGES, "the client's FAREWELL came last");
                    cx.shutdown(s).unwrap();
                }
                _ => {}
            })
        }),
        None,
    );
    let states = Rc::new(RefCell::new(Vec::new()));
    let local = Rc::new(RefCell::new(None));
    let client_got = Rc::new(Cell::new(0usize));
    let (st, lo, got) = (states.clone(), local.clone(), client_got.clone());
    let c = dial(
        &mut env,
        b"client hello",
        Rec::with(move |cx, s, ev| match ev {
            Ev::TlsReady(_) => st.borrow_mut().push(("tls ready", cx.state(s))),
            Ev::Connected => {
                st.borrow_mut().push(("connected", cx.state(s)));
                *lo.borrow_mut() = Some(cx.local_addr(s));
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            Ev::Received(d) => {
                let i = got.get();
                assert!(
                    *d == message(FROM_SERVER, i),
                    "client: message {i} ({} bytes)",
                    d.len()
                );
                got.set(i + 1);
                if i + 1 == MESSAGES {
                    cx.shutdown(s).unwrap();
                }
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    // Every message is sent before the connection is even up: held until
    // WELCOME, then sent in order.
    for i in 0..MESSAGES {
        env.m.send(c, &message(FROM_CLIENT, i)).unwrap();
    }
    assert_eq!(env.m.state(c), State::Connecting);
    // Until its on_connected, the client is Connecting, whatever TCP and TLS did.
    let seen = Rc::new(RefCell::new(Vec::new()));
    let probe = {
        let seen = seen.clone();
        env.m.set_interval(Duration::from_millis(1), move |cx| {
            let connected = cx
                .shared()
                .events
                .iter()
                .any(|(id, e)| *id == c && *e == Ev::Connected);
            if !connected {
                seen.borrow_mut().push(cx.state(c));
            }
        })
    };
    run_until(&mut env.m, LIMIT, move |log| {
        log.is_closed(c) && log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    env.m.cancel_timer(probe);
    let log = env.m.shared();
    assert!(!log.timed_out, "{net:?}: client {:?}", brief(log, c));
    let a = only_accepted(log);
    let l = env.l;

    // on_incoming saw the peer and its HELLO data before anything else.
    let incoming = log.of(l);
    let client_local = local.borrow().clone().expect("the client connected");
    let want_peer = match net {
        Net::Local => None, // an unnamed Unix client
        Net::Tcp | Net::Tls => client_local,
    };
    assert_eq!(
        incoming[1..3],
        [
            Ev::Incoming(want_peer),
            Ev::Hello(Some(b"client hello".to_vec()))
        ],
        "{net:?}"
    );
    // The server's user exists only once admitted; the client is connected only
    // after the server's WELCOME.
    let hello_at = position(log, l, |e| matches!(e, Ev::Hello(_)));
    let accepted_at = position(log, a, |e| *e == Ev::Accepted);
    let connected_at = position(log, c, |e| *e == Ev::Connected);
    assert!(
        hello_at < accepted_at && accepted_at < connected_at,
        "{net:?}"
    );
    assert!(
        seen.borrow().iter().all(|s| *s == State::Connecting),
        "{net:?}: {:?}",
        seen.borrow()
    );

    let server_events = log.of(a);
    assert_eq!(server_events[0], Ev::Accepted, "{net:?}: on_accepted first");
    let client_events = log.of(c);
    if net == Net::Tls {
        // TLS was ready before the framing: on_tls_ready follows on_accepted on
        // the server, and precedes a client's on_connected, still Connecting.
        assert!(
            matches!(server_events[1], Ev::TlsReady(_)),
            "{:?}",
            brief(log, a)
        );
        assert!(
            matches!(client_events[0], Ev::TlsReady(_)),
            "{:?}",
            brief(log, c)
        );
        assert_eq!(
            *states.borrow(),
            [
                ("tls ready", State::Connecting),
                ("connected", State::Connected)
            ]
        );
    } else {
        assert_eq!(client_events[0], Ev::Connected);
        assert_eq!(*states.borrow(), [("connected", State::Connected)]);
    }

    // One on_received per message, one on_sent per send, content checked in
    // the hooks.
    for s in [a, c] {
        assert_eq!(
            count(log, s, |e| matches!(e, Ev::Received(_))),
            MESSAGES,
            "{net:?}"
        );
        assert_eq!(count(log, s, |e| *e == Ev::Sent), MESSAGES, "{net:?}");
    }
    assert_eq!((server_got.get(), client_got.get()), (MESSAGES, MESSAGES));

    // shutdown() on a framed socket is an empty FAREWELL; both end gracefully.
    let n = client_events.len();
    assert_eq!(
        client_events[n - 3..n - 1],
        [Ev::PeerShutdown, Ev::Farewell(Some(Vec::new()))],
        "{net:?}"
    );
    let (cd, ad) = (log.closed(c), log.closed(a));
    assert_eq!(
        (cd.reason, cd.unsent, cd.unread, &cd.error),
        (Reason::Normal, 0, 0, &None)
    );
    assert_eq!(
        (ad.reason, ad.unsent, ad.unread, &ad.error),
        (Reason::ByPeer, 0, 0, &None)
    );
    assert_eq!(log.farewell(c), Some(Vec::new()));
    assert_eq!(log.farewell(a), Some(Vec::new()));
}

#[test]
fn admitted_exchange_tcp() {
    admitted_exchange(Net::Tcp);
}

#[test]
fn admitted_exchange_local() {
    admitted_exchange(Net::Local);
}

#[test]
fn admitted_exchange_tls() {
    admitted_exchange(Net::Tls);
}

// ----- 2. refusals -----

#[test]
fn reject_carries_its_reason_to_the_client() {
    for net in NETS {
        let mut env = serve(
            net,
            Gate::new(|_, peer| {
                assert_eq!(peer.hello.as_deref(), Some(&b"let me in"[..]));
                Admission::Reject(b"reason".to_vec())
            }),
            None,
        );
        let c = dial(&mut env, b"let me in", Rec::quiet());
        // Held for a WELCOME that never comes.
        env.m.send(c, b"early").unwrap();
        run_until(&mut env.m, LIMIT, move |log| log.is_closed(c));
        let log = env.m.shared();
        assert!(!log.timed_out, "{net:?}");
        let done = log.closed(c);
        assert_eq!(done.reason, Reason::ConnectRejected, "{net:?}: {done:?}");
        assert_eq!(log.farewell(c), Some(b"reason".to_vec()), "{net:?}");
        // The held message never went out: its frame, header included.
        assert_eq!((done.unsent, done.unread), (5 + 5, 0), "{net:?}");
        let events = log.of(c);
        let n = events.len();
        assert_eq!(
            n,
            if net == Net::Tls { 2 } else { 1 },
            "{net:?}: {events:?}"
        );
        assert!(
            log.accepted().is_empty(),
            "{net:?}: a rejected client has no server user"
        );
        assert_eq!(log.of(env.l)[2], Ev::Hello(Some(b"let me in".to_vec())));
    }
}

/// Deny after HELLO resets the connection. The client is still connecting
/// (no WELCOME yet), so over TCP and TLS it sees the reset as a refusal,
/// `ConnectRejected` with ECONNRESET, as a plain client refused or reset while
/// connecting does. A Unix-domain socket has no reset: the client sees the
/// stream end before any answer, `ConnectFailed`.
#[test]
fn deny_resets_the_client() {
    for net in NETS {
        let mut env = serve(net, Gate::new(|_, _| Admission::Deny), None);
        let c = dial(&mut env, b"knock", Rec::quiet());
        env.m.send(c, b"held").unwrap();
        run_until(&mut env.m, LIMIT, move |log| log.is_closed(c));
        let log = env.m.shared();
        assert!(!log.timed_out, "{net:?}");
        let done = log.closed(c);
        assert!(log.accepted().is_empty());
        assert_eq!(log.of(env.l)[2], Ev::Hello(Some(b"knock".to_vec())));
        assert_eq!(log.farewell(c), None, "{net:?}: a Deny carries no data");
        assert_eq!((done.unsent, done.unread), (5 + 4, 0), "{net:?}: {done:?}");
        match net {
            Net::Tcp | Net::Tls => {
                assert_eq!(done.reason, Reason::ConnectRejected, "{net:?}: {done:?}");
                assert_eq!(done.os_error, Some(libc::ECONNRESET), "{net:?}: {done:?}");
            }
            Net::Local => {
                assert_eq!(done.reason, Reason::ConnectFailed, "{done:?}");
                let error = done.error.unwrap_or_default();
                assert!(error.contains("before WELCOME or REJECT"), "{error}");
            }
        }
        // Nothing but the TLS handshake's report came before.
        let tls = usize::from(net == Net::Tls);
        assert_eq!(log.of(c).len(), 1 + tls, "{net:?}: {:?}", log.of(c));
    }
}

// ----- 3. disconnect data both ways, in the seed's order -----

fn farewells_both_ways(net: Net) {
    let mut env = serve(
        net,
        Gate::accept(|| {
            Rec::with(|cx, s, ev| match ev {
                Ev::Accepted | Ev::Received(_) => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                Ev::Farewell(Some(data)) => {
                    assert_eq!(data, b"count=3");
                    assert_eq!(cx.state(s), State::NoRecv);
                    cx.shutdown_with(s, b"total=9").unwrap();
                }
                _ => {}
            })
        }),
        None,
    );
    let c = dial(
        &mut env,
        b"",
        Rec::with(|cx, s, ev| {
            if *ev == Ev::Connected {
                for m in [&b"one"[..], b"two", b"three"] {
                    cx.send(s, m).unwrap();
                }
                cx.shutdown_with(s, b"count=3").unwrap();
                assert_eq!(cx.state(s), State::NoSend);
                // The server's answer comes as its FAREWELL.
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
        }),
    );
    run_until(&mut env.m, LIMIT, move |log| {
        log.is_closed(c) && log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    let log = env.m.shared();
    assert!(!log.timed_out, "{net:?}: {:?}", log.events);
    let a = only_accepted(log);
    let tls = usize::from(net == Net::Tls);
    let client = log.of(c);
    assert_eq!(
        client[tls..],
        [
            Ev::Connected,
            Ev::Sent,
            Ev::Sent,
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Farewell(Some(b"total=9".to_vec())),
            Ev::Closed(log.closed(c)),
        ],
        "{net:?}"
    );
    let server = log.of(a);
    assert_eq!(
        server[1 + tls..],
        [
            Ev::Received(b"one".to_vec()),
            Ev::Received(b"two".to_vec()),
            Ev::Received(b"three".to_vec()),
            Ev::PeerShutdown,
            Ev::Farewell(Some(b"count=3".to_vec())),
            Ev::Closed(log.closed(a)),
        ],
        "{net:?}"
    );
    let (cd, ad) = (log.closed(c), log.closed(a));
    assert_eq!(
        (cd.reason, cd.unsent, cd.unread, &cd.error),
        (Reason::Normal, 0, 0, &None)
    );
    assert_eq!(
        (ad.reason, ad.unsent, ad.unread, &ad.error),
        (Reason::ByPeer, 0, 0, &None)
    );
    assert_eq!(log.farewell(c), Some(b"total=9".to_vec()));
    assert_eq!(log.farewell(a), Some(b"count=3".to_vec()));
}

#[test]
fn farewells_both_ways_tcp() {
    farewells_both_ways(Net::Tcp);
}

#[test]
fn farewells_both_ways_local() {
    farewells_both_ways(Net::Local);
}

#[test]
fn farewells_both_ways_tls() {
    farewells_both_ways(Net::Tls);
}

// ----- 4. protocol errors, from peers written with std -----

/// Collects the `error` field of `tether::framed`'s log events on the thread
/// that installs it: the only report of a protocol error on a connection
/// that broke a rule before its HELLO was admitted, when no user exists yet.
struct LoggedErrors(Arc<Mutex<Vec<String>>>);

struct ErrorField(Option<String>);

impl tracing::field::Visit for ErrorField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl tracing::Subscriber for LoggedErrors {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "tether::framed"
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut field = ErrorField(None);
        event.record(&mut field);
        if let Some(error) = field.0 {
            self.0.lock().unwrap().push(error);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// What a std peer saw after its part: the bytes that still came, and how
/// the stream ended.
type PeerEnd = (Vec<u8>, Result<(), ErrorKind>);

/// A tether framed server whose connections keep a recv pending, and a std
/// client that (if `admitted`) says HELLO and reads WELCOME, then writes
/// `bad`. Runs until the std client saw the end (and the admitted
/// connection closed); returns the log and what the std client saw.
fn break_server(
    t: Transport,
    limit: Option<usize>,
    admitted: bool,
    bad: Vec<u8>,
) -> (Log, PeerEnd, Vec<String>) {
    let net = match t {
        Transport::Tcp => Net::Tcp,
        Transport::Local => Net::Local,
    };
    let mut env = serve(
        net,
        Gate::accept(|| {
            Rec::with(|cx, s, ev| {
                if matches!(ev, Ev::Accepted | Ev::Received(_)) {
                    cx.recv(s, 1, RecvMode::Partial).unwrap();
                }
            })
        }),
        limit,
    );
    let mut p = Peer::connect(&env.m, env.l);
    p.set_read_timeout(Some(PEER_WAIT));
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let peer = thread::spawn(move || {
        let welcome = if admitted {
            p.write_all(&frame(HELLO, b"hi")).unwrap();
            read_n(&mut p, 5)
        } else {
            Ok(frame(WELCOME, b""))
        };
        if welcome.is_ok() {
            p.write_all(&bad).unwrap();
        }
        let end = read_rest(&mut p);
        flag.store(true, Ordering::SeqCst);
        (welcome, end)
    });
    let errors = Arc::new(Mutex::new(Vec::new()));
    let guard = tracing::subscriber::set_default(LoggedErrors(errors.clone()));
    run_until(&mut env.m, LIMIT, move |log| {
        finished.load(Ordering::SeqCst)
            && (!admitted || log.accepted().first().is_some_and(|a| log.is_closed(*a)))
    });
    drop(guard);
    let (welcome, end) = peer.join().unwrap();
    assert_eq!(welcome, Ok(frame(WELCOME, b"")), "{t:?}");
    let log = std::mem::take(env.m.shared_mut());
    assert!(!log.timed_out, "{t:?}: {:?}", log.events);
    let errors = errors.lock().unwrap().clone();
    (log, end, errors)
}

/// Checks an admitted connection that broke `rule`: tether reset it and
/// closed with ProtocolError, saying which rule; over TCP the std peer saw
/// the reset, having read nothing more.
fn assert_broke(t: Transport, what: &str, log: &Log, end: &PeerEnd, rule: &str) {
    let a = only_accepted(log);
    let done = log.closed(a);
    assert_eq!(done.reason, Reason::ProtocolError, "{t:?} {what}: {done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("protocol error: "),
        "{t:?} {what}: {error}"
    );
    assert!(
        error.contains(rule),
        "{t:?} {what}: {error:?} should say {rule:?}"
    );
    assert_eq!(log.of(a).len(), 2, "{t:?} {what}: {:?}", log.of(a));
    assert!(end.0.is_empty(), "{t:?} {what}: the peer got {:?}", end.0);
    match t {
        Transport::Tcp => assert_eq!(end.1, Err(ErrorKind::ConnectionReset), "{what}"),
        // No reset on a Unix socket: every byte the peer sent was read, so
        // it sees the stream end.
        Transport::Local => assert_eq!(end.1, Ok(()), "{what}"),
    }
}

fn header(len: u32, kind: u8) -> Vec<u8> {
    let mut h = len.to_be_bytes().to_vec();
    h.push(kind);
    h
}

/// After admission, each rule a client can break, over TCP and Local.
#[test]
fn server_resets_a_client_that_breaks_the_protocol() {
    let default_max = 16 << 20;
    let cases: Vec<(&str, Option<usize>, Vec<u8>, &str)> = vec![
        // Only the 5 header bytes are sent: tether must not wait for the
        // payload before it resets.
        (
            "oversized, limit 1024",
            Some(1024),
            header(1026, DATA),
            "frame payload of 1025 bytes is over the limit of 1024 bytes",
        ),
        (
            "oversized, default limit",
            None,
            header(default_max + 2, DATA),
            "frame payload of 16777217 bytes is over the limit of 16777216 bytes",
        ),
        ("zero length", None, header(0, DATA), "frame length 0"),
        (
            "unknown type",
            None,
            header(1, 9),
            "unknown frame type 0x09",
        ),
        (
            "HELLO twice",
            None,
            frame(HELLO, b"again"),
            "HELLO after HELLO: a client sends HELLO once",
        ),
        (
            "WELCOME from a client",
            None,
            frame(WELCOME, b""),
            "WELCOME sent by a client",
        ),
        (
            "after FAREWELL",
            None,
            [frame(FAREWELL, b"bye"), frame(DATA, b"more")].concat(),
            "DATA after FAREWELL",
        ),
    ];
    for t in [Transport::Tcp, Transport::Local] {
        for (what, limit, bad, rule) in &cases {
            let (log, end, _) = break_server(t, *limit, true, bad.clone());
            assert_broke(t, what, &log, &end, rule);
        }
    }
}

/// Before admission there is no user to tell: the connection is reset, the
/// listener's user never hears of it, and the log says which rule broke.
#[test]
fn server_resets_a_client_that_breaks_the_protocol_before_hello() {
    let cases: Vec<(Option<usize>, Vec<u8>, &str)> = vec![
        (
            None,
            frame(DATA, b"x"),
            "DATA before HELLO: a client's first frame must be HELLO",
        ),
        (
            Some(1024),
            header(1026, HELLO),
            "frame payload of 1025 bytes is over the limit of 1024 bytes",
        ),
        (None, header(1, 9), "unknown frame type 0x09"),
    ];
    for (limit, bad, rule) in cases {
        let (log, end, errors) = break_server(Transport::Tcp, limit, false, bad);
        assert_eq!(end, (Vec::new(), Err(ErrorKind::ConnectionReset)), "{rule}");
        assert!(
            !log.events
                .iter()
                .any(|(_, e)| matches!(e, Ev::Incoming(_) | Ev::Accepted)),
            "{rule}: {:?}",
            log.events
        );
        assert_eq!(errors.len(), 1, "{rule}: {errors:?}");
        assert!(errors[0].contains(rule), "{errors:?} should say {rule:?}");
    }
}

/// A std server at a fresh address: `script` gets each connection in turn.
fn std_server<R: Send + 'static>(
    script: impl FnOnce(&TcpListener) -> R + Send + 'static,
) -> (String, thread::JoinHandle<R>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let h = thread::spawn(move || {
        let r = script(&listener);
        flag.store(true, Ordering::SeqCst);
        r
    });
    (addr, h, finished)
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(PEER_WAIT)).unwrap();
    s
}

/// A tether framed client (with `limit`, a recv pending once connected) of
/// a std server that reads its HELLO and answers `answer`. Returns the log,
/// the client, and what the std server saw afterwards.
fn break_client(limit: Option<usize>, answer: Vec<u8>) -> (Log, SocketId, PeerEnd) {
    let (addr, server, finished) = std_server(move |l| {
        let mut s = accept(l);
        let hello = read_n(&mut s, 5 + 6);
        s.write_all(&answer).unwrap();
        (hello, read_rest(&mut s))
    });
    let mut m = mux();
    let c = m.stream(Rec::with(|cx, s, ev| {
        if matches!(ev, Ev::Connected | Ev::Received(_)) {
            cx.recv(s, 1, RecvMode::Partial).unwrap();
        }
    }));
    m.set_framing(c, b"client").unwrap();
    if let Some(limit) = limit {
        m.set_frame_limit(c, limit).unwrap();
    }
    m.connect(c, &addr).unwrap();
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    let (hello, end) = server.join().unwrap();
    assert_eq!(hello, Ok(frame(HELLO, b"client")));
    let log = std::mem::take(m.shared_mut());
    assert!(!log.timed_out, "{:?}", log.events);
    (log, c, end)
}

/// Each rule a server can break, before and after its WELCOME.
#[test]
fn client_resets_a_server_that_breaks_the_protocol() {
    let welcome = frame(WELCOME, b"");
    let cases: Vec<(Option<usize>, Vec<u8>, bool, &str)> = vec![
        (
            None,
            frame(DATA, b"early"),
            false,
            "DATA before WELCOME: a server's first frame must be WELCOME or REJECT",
        ),
        (
            None,
            frame(FAREWELL, b"early"),
            false,
            "FAREWELL before WELCOME",
        ),
        (None, frame(HELLO, b""), false, "HELLO sent by a server"),
        (
            None,
            [welcome.clone(), welcome.clone()].concat(),
            true,
            "WELCOME after WELCOME: a server admits or rejects once",
        ),
        (
            None,
            [welcome.clone(), frame(REJECT, b"no")].concat(),
            true,
            "REJECT after WELCOME",
        ),
        (
            Some(1024),
            [welcome.clone(), header(1026, DATA)].concat(),
            true,
            "frame payload of 1025 bytes is over the limit of 1024 bytes",
        ),
        (
            None,
            header((16 << 20) + 2, WELCOME),
            false,
            "frame payload of 16777217 bytes is over the limit of 16777216 bytes",
        ),
        (None, header(0, WELCOME), false, "frame length 0"),
        (None, header(1, 9), false, "unknown frame type 0x09"),
        (
            None,
            [
                welcome.clone(),
                frame(FAREWELL, b"bye"),
                frame(DATA, b"more"),
            ]
            .concat(),
            true,
            "DATA after FAREWELL",
        ),
    ];
    for (limit, answer, connected, rule) in cases {
        let (log, c, end) = break_client(limit, answer);
        let done = log.closed(c);
        assert_eq!(done.reason, Reason::ProtocolError, "{rule}: {done:?}");
        let error = done.error.clone().unwrap_or_default();
        assert!(error.contains(rule), "{error:?} should say {rule:?}");
        let want: &[Ev] = if connected {
            &[Ev::Connected, Ev::Closed(done.clone())]
        } else {
            &[Ev::Closed(done.clone())]
        };
        assert_eq!(log.of(c), want, "{rule}");
        assert_eq!(end, (Vec::new(), Err(ErrorKind::ConnectionReset)), "{rule}");
    }
}

// ----- 5. byte for byte, against peers written with std -----

/// std clients speak to a tether server, frames built by hand: HELLO, the
/// exact WELCOME, a DATA echoed frame for frame, FAREWELL both ways, accept
/// data, and a REJECT followed by the end of the stream.
#[test]
fn std_client_and_tether_server_byte_for_byte() {
    for t in [Transport::Tcp, Transport::Local] {
        let net = match t {
            Transport::Tcp => Net::Tcp,
            Transport::Local => Net::Local,
        };
        let echo = || {
            Rec::with(|cx, s, ev| match ev {
                Ev::Accepted => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                Ev::Received(d) => {
                    cx.send(s, d).unwrap();
                    cx.recv(s, 1, RecvMode::Partial).unwrap();
                }
                Ev::PeerShutdown => cx.shutdown_with(s, b"ok").unwrap(),
                _ => {}
            })
        };
        let mut env = serve(
            net,
            Gate::new(move |_, peer| match peer.hello.as_deref() {
                Some(b"hi") => Admission::Accept(Box::new(echo())),
                Some(b"with data") => Admission::AcceptWith(Box::new(echo()), b"welcome!".to_vec()),
                _ => Admission::Reject(b"no".to_vec()),
            }),
            None,
        );
        let peers: Vec<Peer> = (0..3)
            .map(|_| {
                let p = Peer::connect(&env.m, env.l);
                p.set_read_timeout(Some(PEER_WAIT));
                p
            })
            .collect();
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let script = thread::spawn(move || {
            let [mut one, mut two, mut three] = <[Peer; 3]>::try_from(peers).ok().unwrap();
            let mut seen = Vec::new();
            // A whole conversation.
            one.write_all(&[0, 0, 0, 3, 1, b'h', b'i']).unwrap();
            seen.push(read_n(&mut one, 5));
            one.write_all(&[0, 0, 0, 5, 4, b'p', b'i', b'n', b'g'])
                .unwrap();
            seen.push(read_n(&mut one, 9));
            one.write_all(&[0, 0, 0, 4, 5, b'b', b'y', b'e']).unwrap();
            one.shutdown_write();
            let (rest, end) = read_rest(&mut one);
            seen.push(end.map(|()| rest));
            // Accept data in the WELCOME; an empty FAREWELL.
            two.write_all(&frame(HELLO, b"with data")).unwrap();
            seen.push(read_n(&mut two, 13));
            two.write_all(&[0, 0, 0, 1, 5]).unwrap();
            two.shutdown_write();
            let (rest, end) = read_rest(&mut two);
            seen.push(end.map(|()| rest));
            // Rejected: REJECT with its reason, then the end of the stream.
            three.write_all(&frame(HELLO, b"wrong")).unwrap();
            let (rest, end) = read_rest(&mut three);
            seen.push(end.map(|()| rest));
            flag.store(true, Ordering::SeqCst);
            seen
        });
        run_until(&mut env.m, LIMIT, move |log| {
            finished.load(Ordering::SeqCst)
                && log.accepted().len() == 2
                && log.accepted().iter().all(|a| log.is_closed(*a))
        });
        let seen = script.join().unwrap();
        let log = env.m.shared();
        assert!(!log.timed_out, "{t:?}: {:?} {:?}", seen, log.events);
        assert_eq!(
            seen,
            [
                Ok(vec![0, 0, 0, 1, 2]),
                Ok(vec![0, 0, 0, 5, 4, b'p', b'i', b'n', b'g']),
                Ok(vec![0, 0, 0, 3, 5, b'o', b'k']),
                Ok([&[0, 0, 0, 9, 2][..], b"welcome!"].concat()),
                Ok(vec![0, 0, 0, 3, 5, b'o', b'k']),
                Ok(vec![0, 0, 0, 3, 3, b'n', b'o']),
            ],
            "{t:?}"
        );
        let accepted = log.accepted();
        let (one, two) = (accepted[0], accepted[1]);
        assert_eq!(
            log.of(one)[1..],
            [
                Ev::Received(b"ping".to_vec()),
                Ev::Sent,
                Ev::PeerShutdown,
                Ev::Farewell(Some(b"bye".to_vec())),
                Ev::Closed(log.closed(one)),
            ],
            "{t:?}"
        );
        assert_eq!(log.closed(one).reason, Reason::ByPeer);
        assert_eq!(log.farewell(one), Some(b"bye".to_vec()));
        assert_eq!(log.closed(two).reason, Reason::ByPeer);
        assert_eq!(log.farewell(two), Some(Vec::new()));
        let hellos: Vec<Ev> = log
            .of(env.l)
            .into_iter()
            .filter(|e| matches!(e, Ev::Hello(_)))
            .collect();
        assert_eq!(
            hellos,
            [
                Ev::Hello(Some(b"hi".to_vec())),
                Ev::Hello(Some(b"with data".to_vec())),
                Ev::Hello(Some(b"wrong".to_vec())),
            ]
        );
    }
}

/// A std server refuses a tether client by hand: it reads the exact HELLO
/// (the connect data), answers REJECT("no"), and the client ends with
/// ConnectRejected carrying "no", having sent nothing else.
#[test]
fn tether_client_rejected_by_std_server() {
    let (addr, server, finished) = std_server(|l| {
        let mut s = accept(l);
        let hello = read_n(&mut s, 5 + 13);
        s.write_all(&[0, 0, 0, 3, 3, b'n', b'o']).unwrap();
        (hello, read_rest(&mut s))
    });
    let mut m = mux();
    let c = dial_std(&mut m, &addr, b"connect data!", Rec::quiet());
    m.send(c, b"held").unwrap();
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    let (hello, end) = server.join().unwrap();
    let log = m.shared();
    assert!(!log.timed_out);
    assert_eq!(
        hello,
        Ok([&[0, 0, 0, 14, 1][..], b"connect data!"].concat())
    );
    // The held message never went out; the client just closed.
    assert_eq!(end, (Vec::new(), Ok(())));
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::ConnectRejected, "{done:?}");
    assert_eq!(done.error, None);
    assert_eq!(log.farewell(c), Some(b"no".to_vec()));
    assert_eq!(log.of(c), [Ev::Closed(done)]);
}

/// A std server admits a tether client by hand and checks every byte it
/// sends: nothing before WELCOME (the client stays Connecting meanwhile),
/// then the held message, the later one, its FAREWELL and its FIN; the
/// server's own DATA and FAREWELL reach the client.
#[test]
fn tether_client_and_std_server_byte_for_byte() {
    let hello_read = Arc::new(AtomicBool::new(false));
    let welcome_going = Arc::new(AtomicBool::new(false));
    let (hr, wg) = (hello_read.clone(), welcome_going.clone());
    let (addr, server, finished) = std_server(move |l| {
        let mut s = accept(l);
        let mut seen = vec![read_n(&mut s, 5 + 5)];
        hr.store(true, Ordering::SeqCst);
        // Nothing may come before our WELCOME: the wait must run out.
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0; 1];
        let early = s.read(&mut byte).map_err(|e| e.kind());
        s.set_read_timeout(Some(PEER_WAIT)).unwrap();
        wg.store(true, Ordering::SeqCst);
        s.write_all(&[[0, 0, 0, 1, 2].as_slice(), &frame(DATA, b"from server")].concat())
            .unwrap();
        // The held message, the one sent on on_connected, then FAREWELL + FIN.
        let (rest, end) = read_rest(&mut s);
        seen.push(end.map(|()| rest));
        s.write_all(&frame(FAREWELL, b"server bye")).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        (early, seen)
    });
    let mut m = mux();
    let c = dial_std(
        &mut m,
        &addr,
        b"hello",
        Rec::with(|cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"second").unwrap();
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                cx.shutdown_with(s, b"client bye").unwrap();
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    m.send(c, b"early").unwrap();
    // While the server holds its answer back, the client is Connecting.
    let states = Rc::new(RefCell::new(Vec::new()));
    let probe = {
        let states = states.clone();
        m.set_interval(Duration::from_millis(2), move |cx| {
            if hello_read.load(Ordering::SeqCst) && !welcome_going.load(Ordering::SeqCst) {
                states.borrow_mut().push(cx.state(c));
            }
        })
    };
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    m.cancel_timer(probe);
    let (early, seen) = server.join().unwrap();
    let log = m.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert!(
        matches!(early, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the client sent before WELCOME: {early:?}"
    );
    let states = states.borrow();
    assert!(!states.is_empty(), "no probe ran while the server waited");
    assert!(states.iter().all(|s| *s == State::Connecting), "{states:?}");
    assert_eq!(
        seen,
        [
            Ok([&[0, 0, 0, 6, 1][..], b"hello"].concat()),
            Ok([
                &[0, 0, 0, 6, 4][..],
                b"early",
                &[0, 0, 0, 7, 4],
                b"second",
                &[0, 0, 0, 11, 5],
                b"client bye",
            ]
            .concat()),
        ]
    );
    assert_eq!(
        log.of(c),
        [
            Ev::Connected,
            Ev::Sent,
            Ev::Sent,
            Ev::Received(b"from server".to_vec()),
            Ev::PeerShutdown,
            Ev::Farewell(Some(b"server bye".to_vec())),
            Ev::Closed(log.closed(c)),
        ]
    );
    let done = log.closed(c);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::Normal, 0, 0)
    );
    assert_eq!(log.farewell(c), Some(b"server bye".to_vec()));
}

// ----- 6. ends without FAREWELL; close() -----

/// The server admits, then closes its stream with no FAREWELL: the client's
/// connection was lost, and the error says so.
#[test]
fn peer_closing_without_farewell_is_lost() {
    let (addr, server, finished) = std_server(|l| {
        let mut s = accept(l);
        let hello = read_n(&mut s, 5 + 2);
        s.write_all(&frame(WELCOME, b"")).unwrap();
        s.write_all(&frame(DATA, b"last words")).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        (hello, read_rest(&mut s))
    });
    let mut m = mux();
    let c = dial_std(
        &mut m,
        &addr,
        b"hi",
        Rec::with(|cx, s, ev| {
            if matches!(ev, Ev::Connected | Ev::Received(_)) {
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
        }),
    );
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    let (hello, _) = server.join().unwrap();
    let log = m.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert_eq!(hello, Ok(frame(HELLO, b"hi")));
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::Lost, "{done:?}");
    let error = done.error.clone().unwrap_or_default();
    assert!(error.contains("without FAREWELL"), "{error}");
    assert_eq!(log.farewell(c), None);
    assert_eq!(
        log.of(c),
        [
            Ev::Connected,
            Ev::Received(b"last words".to_vec()),
            Ev::Closed(done)
        ]
    );
}

/// close() on a framed socket tells the peer with an empty FAREWELL, after
/// what was sent before, then FIN: client side and server side.
#[test]
fn close_sends_an_empty_farewell_first() {
    // A tether client closing.
    let (addr, server, finished) = std_server(|l| {
        let mut s = accept(l);
        let hello = read_n(&mut s, 5);
        s.write_all(&frame(WELCOME, b"")).unwrap();
        let rest = read_rest(&mut s);
        (hello, rest)
    });
    let mut m = mux();
    let c = dial_std(
        &mut m,
        &addr,
        b"",
        Rec::with(|cx, s, ev| {
            if *ev == Ev::Connected {
                cx.send(s, b"last").unwrap();
                cx.close(s).unwrap();
            }
        }),
    );
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    let (hello, end) = server.join().unwrap();
    let log = m.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert_eq!(hello, Ok(vec![0, 0, 0, 1, 1]));
    assert_eq!(
        end,
        (
            [&[0, 0, 0, 5, 4][..], b"last", &[0, 0, 0, 1, 5]].concat(),
            Ok(())
        )
    );
    let done = log.closed(c);
    assert_eq!((done.reason, done.unsent), (Reason::Normal, 0), "{done:?}");

    // A tether server closing an admitted connection.
    let mut env = serve(
        Net::Tcp,
        Gate::accept(|| {
            Rec::with(|cx, s, ev| {
                if *ev == Ev::Accepted {
                    cx.send(s, b"bye").unwrap();
                    cx.close(s).unwrap();
                }
            })
        }),
        None,
    );
    let mut p = Peer::connect(&env.m, env.l);
    p.set_read_timeout(Some(PEER_WAIT));
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let client = thread::spawn(move || {
        p.write_all(&frame(HELLO, b"")).unwrap();
        let got = read_rest(&mut p);
        // The server drains until our end, then closes.
        p.shutdown_write();
        flag.store(true, Ordering::SeqCst);
        got
    });
    run_until(&mut env.m, LIMIT, move |log| {
        finished.load(Ordering::SeqCst) && log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    let got = client.join().unwrap();
    let log = env.m.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert_eq!(
        got,
        (
            [
                &[0, 0, 0, 1, 2][..],
                &[0, 0, 0, 4, 4],
                b"bye",
                &[0, 0, 0, 1, 5]
            ]
            .concat(),
            Ok(())
        )
    );
    let a = only_accepted(log);
    assert_eq!(log.closed(a).reason, Reason::Normal, "{:?}", log.of(a));
}

/// close() before WELCOME waits for it, as a close while connecting waits
/// for the connection: the held message, then the FAREWELL and FIN go out,
/// and both sides end gracefully.
#[test]
fn close_before_welcome_sends_what_was_held() {
    for net in NETS {
        let mut env = serve(
            net,
            Gate::accept(|| {
                Rec::with(|cx, s, ev| match ev {
                    Ev::Accepted | Ev::Received(_) => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                    Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                    _ => {}
                })
            }),
            None,
        );
        let c = dial(&mut env, b"x", Rec::quiet());
        env.m.send(c, b"queued").unwrap();
        env.m.close(c).unwrap();
        assert_eq!(env.m.state(c), State::Closing);
        run_until(&mut env.m, LIMIT, move |log| {
            log.is_closed(c) && log.accepted().first().is_some_and(|a| log.is_closed(*a))
        });
        let log = env.m.shared();
        assert!(!log.timed_out, "{net:?}: {:?}", log.events);
        let a = only_accepted(log);
        let tls = usize::from(net == Net::Tls);
        let (cd, ad) = (log.closed(c), log.closed(a));
        assert_eq!(
            log.of(c)[tls..],
            [Ev::Connected, Ev::Sent, Ev::Closed(cd.clone())],
            "{net:?}"
        );
        assert_eq!(
            (cd.reason, cd.unsent),
            (Reason::Normal, 0),
            "{net:?}: {cd:?}"
        );
        assert_eq!(
            log.of(a)[1 + tls..],
            [
                Ev::Received(b"queued".to_vec()),
                Ev::PeerShutdown,
                Ev::Farewell(Some(Vec::new())),
                Ev::Closed(ad.clone()),
            ],
            "{net:?}"
        );
        assert_eq!(
            (ad.reason, ad.unsent, ad.unread),
            (Reason::ByPeer, 0, 0),
            "{net:?}"
        );
    }
}

/// The frame limit bounds what the user may send, inside a callback run
/// while frames are being read as well as outside.
#[test]
fn frame_limit_bounds_sends_in_every_callback() {
    let mut env = serve(
        Net::Tcp,
        Gate::accept(|| {
            Rec::with(|cx, s, ev| match ev {
                Ev::Accepted => {
                    cx.send(s, b"go").unwrap();
                    cx.recv(s, 1, RecvMode::Partial).unwrap();
                }
                Ev::Received(_) => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                _ => {}
            })
        }),
        None,
    );
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    let c = dial(
        &mut env,
        b"",
        Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                r.borrow_mut()
                    .push(cx.send(s, &[1; 17]).map_err(|e| e.to_string()));
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                r.borrow_mut()
                    .push(cx.send(s, &[1; 17]).map_err(|e| e.to_string()));
                r.borrow_mut()
                    .push(cx.send(s, &[1; 16]).map_err(|e| e.to_string()));
                cx.shutdown(s).unwrap();
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    env.m.set_frame_limit(c, 16).unwrap();
    run_until(&mut env.m, LIMIT, move |log| {
        log.is_closed(c) && log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    assert!(!env.m.shared().timed_out);
    let results = results.borrow();
    assert_eq!(results.len(), 3);
    for refused in [&results[0], &results[1]] {
        let e = refused.clone().unwrap_err();
        assert!(e.contains("17") && e.contains("16"), "{e}");
    }
    assert_eq!(results[2], Ok(()));
    assert_eq!(env.m.shared().closed(c).reason, Reason::Normal);
}

/// A server that admits and at once says FAREWELL (WELCOME, FAREWELL and its
/// FIN in one write) while the client still has messages to send: the
/// client sends them all, then its FAREWELL and FIN, and the server, still
/// reading, gets every byte and a clean end — no reset.
#[test]
fn farewell_with_welcome_lets_the_client_finish_sending() {
    const N: usize = 40;
    let (addr, server, finished) = std_server(|l| {
        let mut s = accept(l);
        let hello = read_n(&mut s, 5 + 5);
        s.write_all(&[frame(WELCOME, b""), frame(FAREWELL, b"bye")].concat())
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let (rest, end) = read_rest(&mut s);
        (hello, rest, end)
    });
    let mut m = mux();
    let sent = Rc::new(Cell::new(0));
    let count = sent.clone();
    let c = dial_std(
        &mut m,
        &addr,
        b"hello",
        Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                cx.recv(s, 65536, RecvMode::Partial).unwrap();
                cx.send(s, &[7; 1000]).unwrap();
                count.set(1);
            }
            Ev::Sent if count.get() < N => {
                cx.send(s, &[7; 1000]).unwrap();
                count.set(count.get() + 1);
            }
            Ev::Sent if count.get() == N => {
                cx.shutdown(s).unwrap();
                count.set(N + 1);
            }
            _ => {}
        }),
    );
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && finished.load(Ordering::SeqCst)
    });
    let (hello, rest, end) = server.join().unwrap();
    let log = m.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert_eq!(hello, Ok(frame(HELLO, b"hello")));
    assert_eq!(end, Ok(()), "the server's read ended with an error");
    let mut want = Vec::new();
    for _ in 0..N {
        want.extend(frame(DATA, &[7; 1000]));
    }
    want.extend(frame(FAREWELL, b""));
    assert_eq!(rest.len(), want.len());
    assert!(rest == want);
    assert_eq!(sent.get(), N + 1);
    let done = log.closed(c);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::ByPeer, 0, 0)
    );
}

/// A server that reads one message and closes while the client's FAREWELL
/// and FIN are already on their way (the client sent HELLO, a message,
/// FAREWELL and FIN in one write): everything the server sent before its
/// close reaches the client, then its FAREWELL and a clean end — no reset —
/// and the server counts the FAREWELL it threw away as unread.
#[test]
fn close_with_the_peers_farewell_waiting_sends_everything() {
    const DOWN: usize = 40_000;
    for round in 0..40 {
        let mut env = serve(
            Net::Tcp,
            Gate::new(|_, _| {
                Admission::Accept(Box::new(Rec::with(|cx, s, ev| match ev {
                    Ev::Accepted => cx.recv(s, 65536, RecvMode::Partial).unwrap(),
                    Ev::Received(_) => {
                        cx.send(s, &[9; DOWN]).unwrap();
                        cx.close(s).unwrap();
                    }
                    _ => {}
                })))
            }),
            None,
        );
        let mut peer = Peer::connect(&env.m, env.l);
        peer.set_read_timeout(Some(PEER_WAIT));
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let script = thread::spawn(move || {
            let mut out = frame(HELLO, b"");
            out.extend(frame(DATA, &[7; 600]));
            out.extend(frame(FAREWELL, b""));
            peer.write_all(&out).unwrap();
            peer.shutdown_write();
            let got = read_rest(&mut peer);
            flag.store(true, Ordering::SeqCst);
            got
        });
        run_until(&mut env.m, LIMIT, move |log| {
            finished.load(Ordering::SeqCst)
                && log.accepted().first().is_some_and(|&s| log.is_closed(s))
        });
        let (got, end) = script.join().unwrap();
        let mut want = frame(WELCOME, b"");
        want.extend(frame(DATA, &[9; DOWN]));
        want.extend(frame(FAREWELL, b""));
        assert_eq!(
            end,
            Ok(()),
            "round {round}: the client's read ended with an error"
        );
        assert_eq!(got.len(), want.len(), "round {round}");
        assert!(got == want, "round {round}");
        let log = env.m.shared();
        let s = only_accepted(log);
        let done = log.closed(s);
        assert!(done.reason.is_graceful(), "round {round}: {done:?}");
        assert_eq!(
            (done.unsent, done.unread),
            (0, 5),
            "round {round}: {done:?}"
        );
    }
}
