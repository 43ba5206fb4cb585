//! The timing side of the lifecycle, over loopback: connect, handshake (TLS and
//! framed), idle and linger timeouts, `idle_for`, admission by
//! `max_connections`, slow-loris eviction, and what 10,000 idle sockets with
//! idle timeouts cost a sleeping loop. Cutting a live link is `dead_peers.rs`.
//!
//! Most tests run on a `TestClock`: each timeout is asserted exact, the
//! socket still up a millisecond before it and ended at it, with no sleeping.
//! A few real-time smoke tests (named `..._on_the_system_clock`) check the
//! system clock: each timeout `t` ends the socket within `[t, t + SLACK]` of
//! when it started to run. The slow-loris and 10,000-socket tests measure
//! real time too.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::pki::Ca;
use common::*;
use tether::{
    Cx, DiscardMethod, IoMux, Reason, RecvMode, SocketId, State, TestClock, Timeouts, TlsContext,
};

/// How late a timeout may end its socket (scheduling, a loaded machine).
const SLACK: Duration = Duration::from_secs(1);
/// How long one loop may run before the test counts as hung.
const LIMIT: Duration = Duration::from_secs(15);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Whether a timeout of `t` that fired `took` after it started did so within
/// `[t - early, t + SLACK]`. `early` is the part of the start that the
/// measurement cannot see (zero where it can).
fn timely(t: Duration, took: Duration, early: Duration) -> bool {
    took + early >= t && took <= t + SLACK
}

/// Asserts [`timely`], and prints the figure.
fn assert_timely(what: &str, t: Duration, took: Duration, early: Duration) {
    println!("{what}: set {t:?}, observed {took:?}");
    assert!(
        timely(t, took, early),
        "{what}: ended after {took:?}, not within [{t:?}, {t:?} + {SLACK:?}]"
    );
}

/// When each socket had each callback, first time only.
#[derive(Clone, Default)]
struct Stamps(Rc<RefCell<HashMap<(SocketId, &'static str), Instant>>>);

impl Stamps {
    fn note(&self, s: SocketId, ev: &Ev) {
        let what = match ev {
            Ev::Connected => "connected",
            Ev::Accepted => "accepted",
            Ev::Received(_) => "received",
            Ev::Closed(_) => "closed",
            _ => return,
        };
        self.0
            .borrow_mut()
            .entry((s, what))
            .or_insert_with(Instant::now);
    }

    fn get(&self, s: SocketId, what: &'static str) -> Instant {
        *self
            .0
            .borrow()
            .get(&(s, what))
            .unwrap_or_else(|| panic!("{s} had no {what}"))
    }

    /// A user that stamps its callbacks, then runs `hook`.
    fn rec(&self, mut hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static) -> Rec {
        let stamps = self.clone();
        Rec::with(move |cx, s, ev| {
            stamps.note(s, ev);
            hook(cx, s, ev)
        })
    }

    /// A listener whose connections echo (stamped).
    fn echo_listener(&self) -> Rec {
        let stamps = self.clone();
        Rec::listener(move || Some(stamps.rec(echo)))
    }
}

/// An accepted connection that echoes what it receives and answers the
/// peer's end with its own (framed: one message at a time).
fn echo(cx: &mut Cx<Log>, s: SocketId, ev: &Ev) {
    match ev {
        Ev::Accepted => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
        Ev::Received(d) => {
            cx.send(s, d).unwrap();
            cx.recv(s, 4096, RecvMode::Partial).unwrap();
        }
        Ev::PeerShutdown => cx.shutdown(s).unwrap(),
        _ => {}
    }
}

/// A framed listener on loopback with `user`, listening.
fn framed_listener(m: &mut IoMux<Log>, user: Rec) -> (SocketId, SocketAddr) {
    let l = m.stream(user);
    m.set_framing(l, b"").unwrap();
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    (l, inet(m, l))
}

fn timeouts(connect: Option<u64>, handshake: Option<u64>, idle: Option<u64>) -> Timeouts {
    Timeouts {
        connect: connect.map(ms),
        handshake: handshake.map(ms),
        idle: idle.map(ms),
    }
}

fn assert_no_timeout(m: &IoMux<Log>) {
    assert!(
        !m.shared().timed_out,
        "the loop hit its limit: {:#?}",
        m.shared().events
    );
}

fn incoming(log: &Log) -> usize {
    log.events
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Incoming(_)))
        .count()
}

/// A std peer in its own thread; `finished` is set when it returns (also when
/// it panics), so the loop can wait for it.
fn peer<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (thread::JoinHandle<T>, Arc<AtomicBool>) {
    struct Finished(Arc<AtomicBool>);
    impl Drop for Finished {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let finished = Arc::new(AtomicBool::new(false));
    let flag = Finished(finished.clone());
    let handle = thread::spawn(move || {
        let _flag = flag;
        f()
    });
    (handle, finished)
}

/// How a std client's connection ended: the time from its connect until the
/// read that saw the end, and what that read returned.
fn wait_for_end(stream: &mut impl Read) -> (Duration, Result<usize, ErrorKind>) {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (start.elapsed(), Ok(0)),
            Ok(_) => continue,
            Err(e) => return (start.elapsed(), Err(e.kind())),
        }
    }
}

// ----- on a test clock -----
//
// The tests below run on a `TestClock`: time moves only when the script moves
// it, so every deadline is asserted exactly — still open a millisecond before
// it, ended at it. Sockets and peers are real; the script waits for events
// (callbacks told over a channel, a peer's read), never for time.

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

type Told = mpsc::Receiver<(SocketId, Ev)>;

/// A loop on a new test clock, and the channel its `told` users tell.
fn clocked() -> (TestClock, IoMux<Log>, mpsc::Sender<(SocketId, Ev)>, Told) {
    let clock = TestClock::new();
    let m = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    (clock, m, tx, rx)
}

/// The state of `s`, and its close reason once closed.
fn status(sc: &Script, s: SocketId) -> (State, Option<Reason>) {
    sc.look(move |cx| {
        let log = cx.shared();
        (cx.state(s), log.is_closed(s).then(|| log.closed(s).reason))
    })
}

/// Waits for the event `ev` of socket `s`.
fn next_of(sc: &Script, rx: &Told, s: SocketId, ev: Ev) {
    sc.next(rx, |(id, e)| *id == s && *e == ev);
}

/// The next socket to have `ev`.
fn next_with(sc: &Script, rx: &Told, ev: Ev) -> SocketId {
    sc.next(rx, |(_, e)| *e == ev).0
}

/// A std peer reading: data pending (`Some(n)`), nothing yet (`None`), or
/// how its connection ended. Nonblocking: after `Script::settle`, an end the
/// loop made is already on the wire (loopback).
fn peek_end(s: &TcpStream) -> Option<Result<usize, ErrorKind>> {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let r = match (&*s).read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Ok(n) => Some(Ok(n)),
        Err(e) => Some(Err(e.kind())),
    };
    s.set_nonblocking(false).unwrap();
    r
}

/// One byte each way: the echo coming back means the loop has read it.
fn ping(s: &mut impl ReadWrite) {
    s.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).expect("the echo");
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

// ----- connect -----

/// A listener that never accepts, its backlog full: further SYNs are dropped.
fn full_backlog() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, ms(200)) {
            Ok(s) => fillers.push(s),
            // The backlog is full: this SYN went unanswered.
            Err(_) => return (listener, addr, fillers),
        }
    }
    panic!(
        "a listener with backlog 0 took {} connections",
        fillers.len()
    );
}

/// Real-time smoke test (system clock): a connect timeout fires on time.
/// The SYN goes unanswered: ConnectTimeout at the connect timeout (the
/// shorter handshake and idle timeouts belong to later stages and do not run).
#[test]
fn connect_timeout_when_nobody_answers_on_the_system_clock() {
    let (_listener, addr, _fillers) = full_backlog();
    let t = ms(300);
    let stamps = Stamps::default();
    let mut m = mux();
    let c = m.stream(stamps.rec(|_, _, _| {}));
    m.set_timeouts(c, timeouts(Some(300), Some(50), Some(50)))
        .unwrap();
    let start = Instant::now();
    m.connect(c, &addr.to_string()).unwrap();
    assert_eq!(m.state(c), State::Connecting);
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert_no_timeout(&m);
    let log = m.shared();
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::ConnectTimeout, "{done:?}");
    assert_eq!(log.of(c), vec![Ev::Closed(done)], "nothing but on_closed");
    assert_timely(
        "connect timeout",
        t,
        stamps.get(c, "closed") - start,
        Duration::ZERO,
    );
}

/// The SYN goes unanswered: ConnectTimeout at exactly the connect timeout;
/// the shorter handshake and idle timeouts belong to later stages.
#[test]
fn connect_timeout_when_nobody_answers() {
    let (_listener, addr, _fillers) = full_backlog();
    let (clock, mut m, _, _) = clocked();
    let c = m.stream(Rec::quiet());
    m.set_timeouts(c, timeouts(Some(10_000), Some(1000), Some(1000)))
        .unwrap();
    m.connect(c, &addr.to_string()).unwrap();
    assert_eq!(m.state(c), State::Connecting);
    run_script(&mut m, &clock, move |sc| {
        sc.advance(ms(9_999));
        assert_eq!(status(sc, c), (State::Connecting, None), "at 9.999 s");
        sc.advance(ms(1));
        assert_eq!(status(sc, c).1, Some(Reason::ConnectTimeout), "at 10 s");
    });
    let log = m.shared();
    assert_eq!(
        log.of(c),
        vec![Ev::Closed(log.closed(c))],
        "nothing but on_closed"
    );
}

/// A timeout set up before `run` counts from the call, not from when the loop
/// last read its clock (here: when it was made, long before).
#[test]
fn a_connect_timeout_set_up_before_run_counts_from_the_call() {
    let (clock, mut m, _, _) = clocked();
    let (_listener, addr, _fillers) = full_backlog();
    clock.advance(secs(400));
    let c = m.stream(Rec::quiet());
    m.set_timeouts(c, timeouts(Some(300), None, None)).unwrap();
    m.connect(c, &addr.to_string()).unwrap();
    run_script(&mut m, &clock, move |sc| {
        sc.settle();
        assert_eq!(status(sc, c), (State::Connecting, None), "at once");
        sc.advance(ms(299));
        assert_eq!(status(sc, c), (State::Connecting, None), "at 299 ms");
        sc.advance(ms(1));
        assert_eq!(status(sc, c).1, Some(Reason::ConnectTimeout), "at 300 ms");
    });
}

/// A connect timeout ends with the connect: the connection lives on past it.
#[test]
fn a_connection_made_in_time_outlives_its_connect_timeout() {
    let (clock, mut m, tx, rx) = clocked();
    let l = m.listen_on("127.0.0.1:0", echo_listener());
    let addr = inet(&m, l).to_string();
    let c = m.stream(told(&tx, |cx, s, ev| {
        if let Ev::Received(_) = ev {
            cx.close(s).unwrap()
        }
    }));
    m.set_timeouts(c, timeouts(Some(2000), Some(2000), None))
        .unwrap();
    m.connect(c, &addr).unwrap();
    run_script(&mut m, &clock, move |sc| {
        next_of(sc, &rx, c, Ev::Connected);
        sc.advance(secs(60));
        assert_eq!(status(sc, c), (State::Connected, None));
        sc.look(move |cx| {
            cx.send(c, b"ping").unwrap();
            cx.recv(c, 4, RecvMode::Exact).unwrap();
        });
        sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Closed(_)));
    });
    assert_eq!(m.shared().received(c), b"ping");
    assert_eq!(m.shared().closed(c).reason, Reason::Normal);
}

// ----- handshake -----

/// A framed listener with a handshake timeout: a client that connects and
/// says nothing is reset at exactly the timeout (it never had a user: no
/// callback at all); a client that completed its HELLO is served, also long
/// after the timeout.
#[test]
fn framed_handshake_timeout_evicts_a_silent_client() {
    let (clock, mut m, tx, rx) = clocked();
    let (l, addr) = framed_listener(&mut m, Rec::listener(|| Some(Rec::with(echo))));
    m.set_timeouts(l, timeouts(None, Some(5000), None)).unwrap();
    // Connected (in the kernel's backlog) before the good client, so taken first.
    let silent = TcpStream::connect(addr).unwrap();
    let c = m.stream(told(&tx, |cx, s, ev| {
        if let Ev::Received(_) = ev {
            cx.close(s).unwrap()
        }
    }));
    m.set_framing(c, b"hello").unwrap();
    m.connect(c, &addr.to_string()).unwrap();

    run_script(&mut m, &clock, move |sc| {
        // The good client's WELCOME: the silent one was taken before it.
        next_of(sc, &rx, c, Ev::Connected);
        sc.advance(ms(4_999));
        assert_eq!(peek_end(&silent), None, "the silent client at 4.999 s");
        sc.advance(ms(1));
        assert_eq!(
            peek_end(&silent),
            Some(Err(ErrorKind::ConnectionReset)),
            "the silent client at 5 s"
        );
        // The good one, quiet well past the handshake timeout, is served.
        sc.advance(secs(60));
        sc.look(move |cx| {
            cx.send(c, b"ping").unwrap();
            cx.recv(c, 64, RecvMode::Partial).unwrap();
        });
        sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Closed(_)));
    });
    let log = m.shared();
    assert_eq!(incoming(log), 1, "only the good client said HELLO");
    assert_eq!(log.received(c), b"ping");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    let a = log.accepted()[0];
    assert_eq!(log.closed(a).reason, Reason::ByPeer);
}

/// A framed client whose server accepts and never answers its HELLO: the
/// handshake timeout, from the transport being up, not the connect timeout.
#[test]
fn framed_client_handshake_timeout_without_welcome() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (clock, mut m, _, _) = clocked();
    let c = m.stream(Rec::quiet());
    m.set_framing(c, b"hi").unwrap();
    m.set_timeouts(c, timeouts(Some(10_000), Some(5000), None))
        .unwrap();
    m.connect(c, &addr.to_string()).unwrap();
    let hello = run_script(&mut m, &clock, move |sc| {
        let (mut s, _) = server.accept().unwrap();
        s.set_read_timeout(Some(SCRIPT_WAIT)).unwrap();
        let mut hello = [0u8; 7];
        // The HELLO went out: the transport is up, the handshake stage runs.
        s.read_exact(&mut hello).unwrap();
        sc.advance(ms(4_999));
        assert_eq!(status(sc, c), (State::Connecting, None), "at 4.999 s");
        sc.advance(ms(1));
        assert_eq!(status(sc, c).1, Some(Reason::HandshakeTimeout), "at 5 s");
        hello
    });
    assert_eq!(&hello, b"\x00\x00\x00\x03\x01hi");
    let log = m.shared();
    assert_eq!(log.of(c), vec![Ev::Closed(log.closed(c))]);
}

fn tls_contexts() -> (TlsContext, TlsContext) {
    let ca = Ca::new("timeouts test CA");
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

/// A TLS listener with a handshake timeout: the accepted connection of a
/// client that never sends its ClientHello ends with HandshakeTimeout at
/// exactly the timeout; a client that completed the handshake is served,
/// also past it.
#[test]
fn tls_handshake_timeout_evicts_a_silent_client() {
    let (server_ctx, client_ctx) = tls_contexts();
    let (clock, mut m, tx, rx) = clocked();
    let served_tx = tx.clone();
    let l = m.stream(Rec::listener(move || Some(told(&served_tx, echo))));
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_tls(l, &server_ctx).unwrap();
    m.set_timeouts(l, timeouts(None, Some(5000), None)).unwrap();
    let addr = inet(&m, l);
    let silent = TcpStream::connect(addr).unwrap();
    let c = m.stream(told(&tx, |cx, s, ev| {
        if let Ev::Received(_) = ev {
            cx.close(s).unwrap()
        }
    }));
    m.connect_tls(c, &addr.to_string(), "localhost", &client_ctx)
        .unwrap();

    let evicted = run_script(&mut m, &clock, move |sc| {
        let a = next_with(sc, &rx, Ev::Accepted);
        next_of(sc, &rx, c, Ev::Connected);
        sc.advance(ms(4_999));
        assert_eq!(peek_end(&silent), None, "the silent client at 4.999 s");
        assert_eq!(status(sc, a).1, None);
        sc.advance(ms(1));
        assert_eq!(status(sc, a).1, Some(Reason::HandshakeTimeout), "at 5 s");
        assert_eq!(peek_end(&silent), Some(Err(ErrorKind::ConnectionReset)));
        sc.advance(secs(60));
        sc.look(move |cx| {
            cx.send(c, b"ping").unwrap();
            cx.recv(c, 4, RecvMode::Exact).unwrap();
        });
        sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Closed(_)));
        a
    });
    let log = m.shared();
    assert_eq!(log.received(c), b"ping");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    assert_eq!(
        log.of(evicted),
        vec![Ev::Accepted, Ev::Closed(log.closed(evicted))],
        "on_accepted, then on_closed"
    );
    let served = log.accepted()[1];
    assert_eq!(log.closed(served).reason, Reason::ByPeer);
}

/// The idle timeout of a TLS server's connection runs from the end of its
/// handshake, also with no handshake timeout set: a relay holds the
/// handshake back for 20 s of the clock, and the connection then lives a
/// whole idle timeout.
#[test]
fn tls_idle_timeout_runs_after_the_handshake() {
    let (server_ctx, client_ctx) = tls_contexts();
    let (clock, mut m, tx, rx) = clocked();
    let served_tx = tx.clone();
    let l = m.stream(Rec::listener(move || Some(told(&served_tx, echo))));
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_tls(l, &server_ctx).unwrap();
    m.set_timeouts(l, timeouts(None, None, Some(30_000)))
        .unwrap();
    let server = inet(&m, l);
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = m.stream(told(&tx, |_, _, _| {}));
    m.connect_tls(
        c,
        &relay.local_addr().unwrap().to_string(),
        "localhost",
        &client_ctx,
    )
    .unwrap();
    run_script(&mut m, &clock, move |sc| {
        let (near, _) = relay.accept().unwrap();
        let far = TcpStream::connect(server).unwrap();
        let a = next_with(sc, &rx, Ev::Accepted);
        // The ClientHello waits in the relay while 20 s pass.
        sc.advance(secs(20));
        assert_eq!(status(sc, a), (State::Connecting, None), "handshaking");
        for (mut from, mut to) in [
            (near.try_clone().unwrap(), far.try_clone().unwrap()),
            (far.try_clone().unwrap(), near.try_clone().unwrap()),
        ] {
            thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
        next_of(sc, &rx, c, Ev::Connected);
        // Data both ways: the server's end of the handshake is done too.
        sc.look(move |cx| {
            cx.send(c, b"ping").unwrap();
            cx.recv(c, 4, RecvMode::Exact).unwrap();
        });
        next_of(sc, &rx, c, Ev::Received(b"ping".to_vec()));
        assert_eq!(status(sc, a), (State::Connected, None));
        sc.advance(ms(29_999));
        assert_eq!(status(sc, a), (State::Connected, None), "at 29.999 s");
        sc.advance(ms(1));
        assert_eq!(status(sc, a).1, Some(Reason::IdleTimeout), "at 30 s");
        sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Closed(_)));
    });
    assert_eq!(
        m.shared().closed(c).reason,
        Reason::Lost,
        "the client sees the RST"
    );
}

// ----- idle -----

/// Real-time smoke test (system clock): an idle timeout fires on time.
#[test]
fn idle_timeout_resets_a_quiet_tcp_stream_on_the_system_clock() {
    let t = Transport::Tcp;
    let idle = ms(300);
    let spot = t.spot();
    let stamps = Stamps::default();
    let mut m = mux();
    let l = m.listen_on(&spot.addr, stamps.echo_listener());
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    let mut client = Peer::connect(&m, l);
    let (quiet, quiet_done) = peer(move || {
        client.set_read_timeout(Some(ms(5000)));
        wait_for_end(&mut client)
    });
    run_until(&mut m, LIMIT, move |_| quiet_done.load(Ordering::Acquire));
    assert_no_timeout(&m);
    let (took, end) = quiet.join().unwrap();
    let log = m.shared();
    let a = log.accepted()[0];
    let done = log.closed(a);
    assert_eq!(done.reason, Reason::IdleTimeout, "{done:?}");
    assert_eq!((done.unsent, done.unread), (0, 0));
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    assert_timely(
        "idle timeout (tether)",
        idle,
        stamps.get(a, "closed") - stamps.get(a, "accepted"),
        Duration::ZERO,
    );
    assert_timely("idle timeout (peer)", idle, took, ms(20));
}

/// Idle timeout 30 s: still open at 29 s; data moves; still open 29 s later
/// (`idle_for` exactly 29 s); ended at exactly 30 s after the data.
fn idle_timeout_resets_a_quiet_stream(t: Transport) {
    let spot = t.spot();
    let (clock, mut m, tx, rx) = clocked();
    let l = m.listen_on(&spot.addr, Rec::listener(move || Some(told(&tx, echo))));
    m.set_timeouts(l, timeouts(None, None, Some(30_000)))
        .unwrap();
    let mut client = Peer::connect(&m, l);
    client.set_read_timeout(Some(SCRIPT_WAIT));
    let (a, end) = run_script(&mut m, &clock, move |sc| {
        let a = next_with(sc, &rx, Ev::Accepted);
        sc.advance(secs(29));
        assert_eq!(status(sc, a), (State::Connected, None), "{t:?} at 29 s");
        assert_eq!(sc.look(move |cx| cx.idle_for(a)), Some(secs(29)));
        ping(&mut client);
        assert_eq!(sc.look(move |cx| cx.idle_for(a)), Some(Duration::ZERO));
        sc.advance(secs(29));
        assert_eq!(status(sc, a), (State::Connected, None), "{t:?} 29 s later");
        assert_eq!(sc.look(move |cx| cx.idle_for(a)), Some(secs(29)));
        sc.advance(ms(999));
        assert_eq!(status(sc, a).1, None, "{t:?} 29.999 s later");
        sc.advance(ms(1));
        assert_eq!(
            status(sc, a).1,
            Some(Reason::IdleTimeout),
            "{t:?} 30 s later"
        );
        (a, wait_for_end(&mut client).1)
    });
    let done = m.shared().closed(a);
    assert_eq!((done.unsent, done.unread), (0, 0), "{t:?}: {done:?}");
    match t {
        // A reset: the peer cannot take it for a graceful end.
        Transport::Tcp => assert_eq!(end, Err(ErrorKind::ConnectionReset)),
        // A Unix socket has no RST: its peer sees the stream end.
        Transport::Local => assert_eq!(end, Ok(0)),
    }
}

#[test]
fn idle_timeout_resets_a_quiet_tcp_stream() {
    idle_timeout_resets_a_quiet_stream(Transport::Tcp);
}

#[test]
fn idle_timeout_closes_a_quiet_local_stream() {
    idle_timeout_resets_a_quiet_stream(Transport::Local);
}

/// A peer that sends every 20 s keeps a connection with a 30 s idle timeout
/// for as long as it does (here 20 times, 400 s); once it stops, the
/// connection ends exactly 30 s after the last data moved.
#[test]
fn traffic_resets_the_idle_clock() {
    let (clock, mut m, tx, rx) = clocked();
    let l = m.listen_on("127.0.0.1:0", Rec::listener(move || Some(told(&tx, echo))));
    m.set_timeouts(l, timeouts(None, None, Some(30_000)))
        .unwrap();
    let mut s = TcpStream::connect(inet(&m, l)).unwrap();
    s.set_read_timeout(Some(SCRIPT_WAIT)).unwrap();
    let (a, end) = run_script(&mut m, &clock, move |sc| {
        let a = next_with(sc, &rx, Ev::Accepted);
        for i in 0..20 {
            sc.advance(secs(20));
            assert_eq!(status(sc, a).1, None, "after {} s", (i + 1) * 20);
            ping(&mut s);
        }
        sc.advance(ms(29_999));
        assert_eq!(status(sc, a).1, None, "29.999 s after the last message");
        sc.advance(ms(1));
        assert_eq!(status(sc, a).1, Some(Reason::IdleTimeout));
        (a, wait_for_end(&mut s).1)
    });
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    assert_eq!(m.shared().received(a), vec![b'x'; 20]);
}

/// An echo server with an idle timeout of 300 ms whose callbacks are slow:
/// "slow" takes 500 ms of the clock and "busy" 150 ms, leaving a timer due.
/// While such a callback runs, `during` runs too (as if at the same time): a
/// peer's next message then waits in the kernel.
fn busy_echo_server(
    m: &mut IoMux<Log>,
    clock: &TestClock,
    during: impl Fn(&[u8]) + Clone + 'static,
) -> SocketAddr {
    let clock = clock.clone();
    let l = m.listen_on(
        "127.0.0.1:0",
        Rec::listener(move || {
            let (clock, during) = (clock.clone(), during.clone());
            Some(Rec::with(move |cx, s, ev| {
                echo(cx, s, ev);
                if let Ev::Received(d) = ev {
                    if d.windows(4).any(|w| w == b"busy") {
                        clock.advance(ms(150));
                        cx.set_timer(Duration::ZERO, |_| {});
                        during(d);
                    }
                    if d.windows(4).any(|w| w == b"slow") {
                        clock.advance(ms(500));
                        during(d);
                    }
                }
            }))
        }),
    );
    m.set_timeouts(l, timeouts(None, None, Some(300))).unwrap();
    inet(m, l)
}

/// Reads `n` bytes of echo.
fn echoed(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0u8; n];
    s.read_exact(&mut got).expect("the echo");
    got
}

/// A loop that is busy (a callback that takes 500 ms) does not take a
/// connection whose data waits for it unread for an idle one: data that
/// arrived before the deadline counts, though the loop looks at it late.
/// `own`: the slow callback is the talking connection's own; else another
/// connection's, while the talker's data waits with no event in hand.
fn busy_loop_does_not_mistake_waiting_data_for_idleness(own: bool) {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let (talk_tx, talk_rx) = mpsc::channel::<TcpStream>();
    // The talker's next message, sent while the slow callback runs.
    let talk_rx = Rc::new(talk_rx);
    let addr = busy_echo_server(&mut m, &clock, move |_| {
        let mut s = talk_rx.recv_timeout(SCRIPT_WAIT).unwrap();
        s.write_all(b"x").unwrap();
    });
    let mut talker = TcpStream::connect(addr).unwrap();
    talker.set_read_timeout(Some(SCRIPT_WAIT)).unwrap();
    let mut trigger = (!own).then(|| TcpStream::connect(addr).unwrap());
    let end = run_script(&mut m, &clock, move |sc| {
        // The trigger connected at 0 and must not time out before its
        // message: the talker's last data at 200 ms, the slow one at 250 ms.
        for step in [100, 100, 50] {
            ping(&mut talker);
            sc.advance(ms(step));
        }
        talk_tx.send(talker.try_clone().unwrap()).unwrap();
        match &mut trigger {
            Some(t) => t.write_all(b"slow").unwrap(),
            None => talker.write_all(b"slow").unwrap(),
        }
        // The echo of what came during the slow callback: the loop read it.
        let want: &[u8] = if own { b"slowx" } else { b"x" };
        assert_eq!(echoed(&mut talker, want.len()), want);
        // 300 ms from there, not from before the slow callback.
        sc.advance(ms(299));
        assert_eq!(peek_end(&talker), None, "299 ms after the last message");
        sc.advance(ms(1));
        let end = wait_for_end(&mut talker).1;
        if let Some(mut t) = trigger {
            // Quiet since its "slow": long timed out.
            assert_eq!(wait_for_end(&mut t).1, Err(ErrorKind::ConnectionReset));
        }
        end
    });
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    let log = m.shared();
    let talked = log
        .accepted()
        .into_iter()
        .find(|&a| log.received(a).starts_with(b"xxx"))
        .unwrap();
    assert_eq!(log.closed(talked).reason, Reason::IdleTimeout);
}

#[test]
fn a_slow_callback_of_the_connection_does_not_make_it_idle() {
    busy_loop_does_not_mistake_waiting_data_for_idleness(true);
}

#[test]
fn a_slow_callback_of_another_connection_does_not_make_it_idle() {
    busy_loop_does_not_mistake_waiting_data_for_idleness(false);
}

/// The slow callback runs while the loop takes in what arrived before it judges
/// a due deadline: what came during that callback must count too. "busy" keeps
/// the loop for 150 ms and leaves a timer due, and "slow" arrives meanwhile,
/// to be read by that taking-in; "slow" takes 500 ms, and "x" arrives
/// meanwhile: the idle deadline (300 ms) is due when it returns, with "x"
/// waiting unread.
#[test]
fn a_slow_callback_while_taking_in_does_not_make_it_idle() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let (talk_tx, talk_rx) = mpsc::channel::<TcpStream>();
    let talk_rx = Rc::new(talk_rx);
    let talker_side = Rc::new(RefCell::new(None::<TcpStream>));
    let addr = busy_echo_server(&mut m, &clock, move |d| {
        let mut slot = talker_side.borrow_mut();
        let s = slot.get_or_insert_with(|| talk_rx.recv_timeout(SCRIPT_WAIT).unwrap());
        let next: &[u8] = if d.windows(4).any(|w| w == b"busy") {
            b"slow"
        } else {
            b"x"
        };
        s.write_all(next).unwrap();
    });
    let mut talker = TcpStream::connect(addr).unwrap();
    talker.set_read_timeout(Some(SCRIPT_WAIT)).unwrap();
    let end = run_script(&mut m, &clock, move |sc| {
        sc.advance(ms(50));
        talk_tx.send(talker.try_clone().unwrap()).unwrap();
        talker.write_all(b"busy").unwrap();
        assert_eq!(echoed(&mut talker, 9), b"busyslowx");
        sc.advance(ms(299));
        assert_eq!(peek_end(&talker), None, "299 ms after the last message");
        sc.advance(ms(1));
        wait_for_end(&mut talker).1
    });
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    let log = m.shared();
    assert_eq!(log.closed(log.accepted()[0]).reason, Reason::IdleTimeout);
}

/// `idle_for` is exactly the time since data moved: it grows while nothing
/// moves and drops back to zero once data does.
#[test]
fn idle_for_is_the_time_since_data_moved() {
    let (clock, mut m, tx, rx) = clocked();
    let l = m.listen_on("127.0.0.1:0", echo_listener());
    let addr = inet(&m, l).to_string();
    let c = m.stream(told(&tx, |cx, s, ev| match ev {
        Ev::Connected => {
            cx.send(s, b"one").unwrap();
            cx.recv(s, 3, RecvMode::Exact).unwrap();
        }
        Ev::Received(d) if d == b"two" => cx.close(s).unwrap(),
        _ => {}
    }));
    m.connect(c, &addr).unwrap();
    let idle_for = move |sc: &Script| sc.look(move |cx| cx.idle_for(c).expect("a live socket"));
    let samples = run_script(&mut m, &clock, move |sc| {
        next_of(sc, &rx, c, Ev::Received(b"one".to_vec()));
        let mut samples = vec![idle_for(sc)];
        sc.advance(ms(100));
        samples.push(idle_for(sc));
        sc.advance(ms(150));
        samples.push(idle_for(sc));
        sc.look(move |cx| {
            cx.send(c, b"two").unwrap();
            cx.recv(c, 3, RecvMode::Exact).unwrap();
        });
        next_of(sc, &rx, c, Ev::Received(b"two".to_vec()));
        sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Closed(_)));
        sc.advance(ms(5));
        samples.push(sc.look(move |cx| cx.idle_for(c).unwrap_or(secs(999))));
        samples
    });
    assert_eq!(m.idle_for(c), None, "a closed socket has none");
    assert_eq!(samples, [Duration::ZERO, ms(100), ms(250), secs(999)]);
}

/// UDP: the idle timeout discards the socket silently, whether the timeout
/// was set before or after the bind; datagrams arriving keep it.
#[test]
fn udp_idle_timeout_is_a_silent_discard() {
    let (clock, mut m, tx, rx) = clocked();
    let set_before = m.udp(Rec::quiet());
    m.set_timeouts(set_before, timeouts(None, None, Some(30_000)))
        .unwrap();
    m.bind(set_before, "127.0.0.1:0").unwrap();
    let set_after = m.udp(Rec::quiet());
    m.bind(set_after, "127.0.0.1:0").unwrap();
    m.set_timeouts(set_after, timeouts(None, None, Some(30_000)))
        .unwrap();
    let fed = m.udp(told(&tx, |cx, s, ev| {
        if let Ev::Bound(_) | Ev::ReceivedFrom(..) = ev {
            cx.recv(s, 64, RecvMode::Partial).unwrap();
        }
    }));
    m.bind(fed, "127.0.0.1:0").unwrap();
    m.set_timeouts(fed, timeouts(None, None, Some(30_000)))
        .unwrap();
    let to = inet(&m, fed);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    run_script(&mut m, &clock, move |sc| {
        next_of(sc, &rx, fed, Ev::Bound(tether::SockAddr::Inet(to)));
        let tick = || {
            sock.send_to(b"tick", to).unwrap();
            sc.next(&rx, |(s, e)| *s == fed && matches!(e, Ev::ReceivedFrom(..)));
        };
        sc.advance(ms(29_999));
        for s in [set_before, set_after, fed] {
            assert_eq!(status(sc, s).1, None, "{s} at 29.999 s");
        }
        tick();
        sc.advance(ms(1));
        for s in [set_before, set_after] {
            assert_eq!(status(sc, s).1, Some(Reason::IdleTimeout), "{s} at 30 s");
        }
        sc.advance(ms(29_998));
        assert_eq!(status(sc, fed).1, None, "fed, 29.999 s after a datagram");
        tick();
        for _ in 0..10 {
            sc.advance(ms(29_999));
            assert_eq!(status(sc, fed).1, None, "fed, 29.999 s after a datagram");
            tick();
        }
        sc.advance(ms(29_999));
        assert_eq!(status(sc, fed).1, None);
        sc.advance(ms(1));
        assert_eq!(
            status(sc, fed).1,
            Some(Reason::IdleTimeout),
            "fed, 30 s after"
        );
    });
    let log = m.shared();
    for s in [set_before, set_after, fed] {
        let done = log.closed(s);
        assert_eq!(done.reason, Reason::IdleTimeout, "{s}: {done:?}");
        assert_eq!(done.discard, Some(DiscardMethod::Silent), "{s}: {done:?}");
    }
}

/// A socket's deadline is one record on the timer heap, moved or removed,
/// never left behind: a client with connect and idle timeouts, to a peer that
/// reads nothing, kept alive for 20 idle periods by its own sends, with
/// `set_timeouts` called again every other period. Throughout, the loop holds
/// one timer for it (plus the script's look), a handful of heap entries, and
/// wakes a bounded number of times per period, however many periods passed.
#[test]
fn idle_timers_do_not_pile_up() {
    const PERIODS: usize = 20;
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (clock, mut m, tx, rx) = clocked();
    let t = timeouts(Some(10_000), None, Some(30_000));
    let c = m.stream(told(&tx, |_, _, _| {}));
    m.set_timeouts(c, t).unwrap();
    m.connect(c, &addr.to_string()).unwrap();
    let wakes = run_script(&mut m, &clock, move |sc| {
        // Silent: holds the connection, reads nothing.
        let (_held, _) = server.accept().unwrap();
        next_of(sc, &rx, c, Ev::Connected);
        let stats = || sc.look(|cx| cx.stats());
        // What a look alone costs in wake-ups (the doorbell, its timer).
        let look_cost = {
            let before = stats().wakeups;
            stats().wakeups - before
        };
        let mut wakes = Vec::new();
        for period in 0..PERIODS {
            let before = stats().wakeups;
            // Traffic, and on every other period the timeouts set again.
            sc.look(move |cx| {
                cx.send(c, b"x").unwrap();
                if period % 2 == 0 {
                    cx.set_timeouts(c, t).unwrap();
                }
            });
            // A quiet period: just short of the idle timeout.
            sc.advance(secs(29));
            assert_eq!(status(sc, c), (State::Connected, None), "period {period}");
            let now = stats();
            // The client's one deadline, and the look being run.
            assert!(now.timers <= 2, "period {period}: {now:?}");
            assert!(now.timer_entries <= 4, "period {period}: {now:?}");
            assert_eq!(now.sockets, 2, "the client and the doorbell");
            // The traffic's look, the advance, its look, the stats' look.
            wakes.push(now.wakeups - before - 3 * look_cost);
        }
        sc.advance(ms(999));
        assert_eq!(status(sc, c).1, None, "29.999 s after the last data");
        sc.advance(ms(1));
        assert_eq!(status(sc, c).1, Some(Reason::IdleTimeout));
        let now = stats();
        assert_eq!((now.timers, now.sockets), (1, 1), "only the look: {now:?}");
        wakes
    });
    println!("wake-ups per idle period, beyond the script's looks: {wakes:?}");
    for (period, &n) in wakes.iter().enumerate() {
        // The advance's wake-up, the one deadline judged at it (with its
        // taking-in), a look that came in with other readiness: a few, and
        // as few in the 20th period as in the first.
        assert!(n <= 5, "period {period}: {n} wake-ups ({wakes:?})");
    }
}

// ----- linger -----

/// Real-time smoke test (system clock): a linger timeout fires on time.
/// close() to a peer that neither reads nor closes gives up at the linger time.
#[test]
fn close_to_a_silent_peer_ends_at_the_linger_time_on_the_system_clock() {
    let linger = ms(200);
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let (holder, _) = peer(move || {
        let (s, _) = server.accept().unwrap();
        // Hold the connection, reading nothing, until the test is over.
        let _ = rx.recv_timeout(ms(10_000));
        drop(s);
    });
    let closing = Rc::new(Cell::new(None));
    let closing_at = closing.clone();
    let stamps = Stamps::default();
    let mut m = mux();
    let c = m.stream(stamps.rec(move |cx, s, ev| {
        if let Ev::Connected = ev {
            cx.send(s, &[7u8; 100_000]).unwrap();
            cx.set_linger(s, ms(200)).unwrap();
            closing_at.set(Some(Instant::now()));
            cx.close(s).unwrap();
        }
    }));
    m.connect(c, &addr.to_string()).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    tx.send(()).unwrap();
    holder.join().unwrap();
    assert_no_timeout(&m);
    let done = m.shared().closed(c);
    assert_eq!(done.reason, Reason::LingerTimeout, "{done:?}");
    assert_timely(
        "linger timeout",
        linger,
        stamps.get(c, "closed") - closing.get().unwrap(),
        Duration::ZERO,
    );
}

/// close() to a peer that neither reads nor closes gives up at exactly the
/// linger time, with what could not leave counted.
#[test]
fn close_to_a_silent_peer_ends_at_the_linger_time() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (clock, mut m, tx, rx) = clocked();
    let c = m.stream(told(&tx, |cx, s, ev| {
        if let Ev::Connected = ev {
            cx.send(s, &[7u8; 4 << 20]).unwrap();
            cx.set_linger(s, secs(5)).unwrap();
            cx.close(s).unwrap();
        }
    }));
    m.connect(c, &addr.to_string()).unwrap();
    run_script(&mut m, &clock, move |sc| {
        // Held, reading nothing, until the script ends.
        let (_held, _) = server.accept().unwrap();
        next_of(sc, &rx, c, Ev::Connected);
        sc.advance(ms(4_999));
        assert_eq!(status(sc, c).1, None, "at 4.999 s");
        sc.advance(ms(1));
        assert_eq!(status(sc, c).1, Some(Reason::LingerTimeout), "at 5 s");
    });
    let done = m.shared().closed(c);
    assert!(
        done.unsent > 0,
        "4 MiB to a peer that reads nothing: {done:?}"
    );
}

/// A framed listener's user that rejects every client.
struct Rejecter;

impl tether::SocketUser<Log> for Rejecter {
    fn on_incoming(
        &mut self,
        _: &mut Cx<Log>,
        _: SocketId,
        _: &tether::PeerInfo,
    ) -> tether::Admission<Log> {
        tether::Admission::Reject(b"no".to_vec())
    }
    fn on_closed(&mut self, _: &mut Cx<Log>, _: SocketId, _: &tether::Closed) {}
}

/// A rejected framed client that neither reads to the end nor closes is
/// reset at the linger time (30 s by default) of the loop's clock, like any
/// other close.
#[test]
fn a_rejected_framed_client_lingers_on_the_loops_clock() {
    let (clock, mut m, _, _) = clocked();
    let l = m.stream(Rejecter);
    m.set_framing(l, b"").unwrap();
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    let addr = inet(&m, l);
    run_script(&mut m, &clock, move |sc| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(SCRIPT_WAIT)).unwrap();
        s.write_all(b"\x00\x00\x00\x03\x01hi").unwrap();
        // The REJECT came: the server is closing.
        let mut first = [0u8; 1];
        s.read_exact(&mut first).unwrap();
        let sockets = || sc.look(|cx| cx.stats().sockets);
        sc.advance(ms(29_999));
        assert_eq!(sockets(), 3, "listener, doorbell, the rejected client");
        sc.advance(ms(1));
        assert_eq!(sockets(), 2, "the rejected client is gone at 30 s");
    });
}

// ----- admission -----

/// max_connections(2): of three clients, two are taken; the third waits in the
/// kernel's backlog (its connect succeeded) and is taken only once one of the
/// two closed and its on_closed returned.
fn admission_waits_for_on_closed(t: Transport) {
    let spot = t.spot();
    let connected = Arc::new(AtomicUsize::new(0));
    // What the loop saw: Incoming count and clients connected, 300 ms after
    // the second was taken; Incoming count inside the first's on_closed.
    let checkpoint = Rc::new(Cell::new(None));
    let in_on_closed = Rc::new(Cell::new(None));

    let mut m = mux();
    let seen = in_on_closed.clone();
    let l = m.listen_on(
        &spot.addr,
        Rec::listener(move || {
            let seen = seen.clone();
            Some(Rec::with(move |cx, _, ev| {
                if let Ev::Closed(_) = ev {
                    if seen.get().is_none() {
                        seen.set(Some(incoming(cx.shared())));
                    }
                }
            }))
        }),
    );
    m.max_connections(l, Some(2)).unwrap();

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut p = Peer::connect(&m, l);
        let connected = connected.clone();
        clients.push(peer(move || {
            connected.fetch_add(1, Ordering::AcqRel);
            p.set_read_timeout(Some(ms(10_000)));
            wait_for_end(&mut p).1
        }));
    }

    // Once two are taken: wait 300 ms, look, then close the first.
    let phase = Rc::new(Cell::new(0));
    let (check, watched) = (checkpoint.clone(), connected.clone());
    let watch = m.set_interval(ms(5), move |cx| {
        let log = cx.shared();
        if phase.get() == 0 && log.accepted().len() == 2 {
            phase.set(1);
            let (check, watched) = (check.clone(), watched.clone());
            cx.set_timer(ms(300), move |cx| {
                let log = cx.shared();
                check.set(Some((incoming(log), watched.load(Ordering::Acquire))));
                let first = log.accepted()[0];
                cx.close(first).unwrap();
            });
        }
    });
    run_until(&mut m, LIMIT, |log| log.accepted().len() == 3);
    m.cancel_timer(watch);
    assert_no_timeout(&m);
    for (client, _) in clients {
        // The loop reset or closed them all when it stopped.
        let _ = client.join().unwrap();
    }

    let log = m.shared();
    assert_eq!(
        checkpoint.get(),
        Some((2, 3)),
        "{t:?}: 300 ms after two were taken, all three clients were connected \
         (kernel backlog) and only two had been offered (Incoming, connected)"
    );
    assert_eq!(
        in_on_closed.get(),
        Some(2),
        "{t:?}: nothing was taken while the first's on_closed ran"
    );
    let first = log.accepted()[0];
    let closed_at = log
        .events
        .iter()
        .position(|(s, e)| *s == first && matches!(e, Ev::Closed(_)))
        .unwrap();
    let third_at = log
        .events
        .iter()
        .enumerate()
        .filter(|(_, (s, e))| *s == l && matches!(e, Ev::Incoming(_)))
        .map(|(i, _)| i)
        .nth(2)
        .expect("a third Incoming");
    assert!(
        closed_at < third_at,
        "{t:?}: the third came after the first closed"
    );
    assert_eq!(log.closed(first).reason, Reason::Normal);
}

#[test]
fn admission_waits_for_on_closed_tcp() {
    admission_waits_for_on_closed(Transport::Tcp);
}

#[test]
fn admission_waits_for_on_closed_local() {
    admission_waits_for_on_closed(Transport::Local);
}

// ----- slow loris -----

const LORIS: usize = 200;
const LORIS_WAVES: usize = 4;

/// 200 clients that send one byte of their HELLO per second, in waves of 50
/// every 500 ms, to a framed listener with a handshake timeout of 2 s: each
/// is evicted at exactly 2 s from its connect, having sent 2 bytes, while a
/// client that behaves is served at every step of 100 ms throughout, at
/// once. On a test clock, moved 100 ms at a time.
#[test]
fn slow_loris_clients_are_evicted_while_good_ones_are_served() {
    let (clock, mut m, tx, rx) = clocked();
    let (l, addr) = framed_listener(&mut m, Rec::listener(|| Some(Rec::with(echo))));
    m.set_timeouts(l, timeouts(None, Some(2000), None)).unwrap();
    type Loris = (TcpStream, u64, usize, Option<u64>);
    let (lorises, good) = run_script(&mut m, &clock, move |sc| {
        let hello = b"\x00\x00\x00\x0a\x01slowloris";
        // Each: its stream, when it connected, bytes sent, when evicted (ms).
        let mut lorises: Vec<Loris> = Vec::new();
        let mut good = Vec::new();
        let mut t = 0;
        while lorises.len() < LORIS || lorises.iter().any(|l| l.3.is_none()) {
            assert!(t <= 5000, "lorises still up after {t} ms");
            for (s, _, _, evicted) in lorises.iter_mut().filter(|l| l.3.is_none()) {
                match peek_end(s) {
                    None => {}
                    Some(Ok(0)) | Some(Err(_)) => *evicted = Some(t),
                    Some(Ok(_)) => panic!("a loris was answered"),
                }
            }
            if lorises.len() < LORIS && t % 500 == 0 {
                for _ in 0..LORIS / LORIS_WAVES {
                    let s = TcpStream::connect(addr).expect("loris connects");
                    lorises.push((s, t, 0, None));
                }
            }
            for (s, at, sent, _) in lorises.iter_mut().filter(|l| l.3.is_none()) {
                if t - *at >= *sent as u64 * 1000 {
                    s.write_all(&hello[*sent..*sent + 1]).unwrap();
                    *sent += 1;
                }
            }
            // A good client, taken after the lorises that connected before
            // it: once it is served, they are in the loop, their time running.
            let n = good.len();
            let told_tx = tx.clone();
            let addr = addr.to_string();
            let c = sc.look(move |cx| {
                let c = cx.stream(told(&told_tx, move |cx, s, ev| match ev {
                    Ev::Connected => {
                        cx.send(s, format!("good {n}").as_bytes()).unwrap();
                        cx.recv(s, 64, RecvMode::Partial).unwrap();
                    }
                    Ev::Received(_) => cx.close(s).unwrap(),
                    _ => {}
                }));
                cx.set_framing(c, b"good").unwrap();
                cx.connect(c, &addr).unwrap();
                c
            });
            sc.next(&rx, |(s, e)| *s == c && matches!(e, Ev::Received(_)));
            good.push(c);
            sc.advance(ms(100));
            t += 100;
        }
        let lorises: Vec<(u64, usize, Option<u64>)> = lorises
            .into_iter()
            .map(|(_, at, sent, evicted)| (at, sent, evicted))
            .collect();
        (lorises, good)
    });

    assert_eq!(lorises.len(), LORIS);
    for (i, (at, sent, evicted)) in lorises.iter().enumerate() {
        assert_eq!(*sent, 2, "loris {i} sent {sent} bytes");
        assert_eq!(*evicted, Some(at + 2000), "loris {i}, connected at {at} ms");
    }
    let log = m.shared();
    println!("{} good clients served during the attack", good.len());
    for (i, &c) in good.iter().enumerate() {
        assert_eq!(
            log.received(c),
            format!("good {i}").as_bytes(),
            "client {i}"
        );
        assert_eq!(log.closed(c).reason, Reason::Normal, "client {i}");
    }
    assert_eq!(
        incoming(log),
        good.len(),
        "no loris ever reached on_incoming"
    );
}

// ----- 10,000 idle sockets -----

/// Raise the descriptor limit to at least `want` (root may raise the hard
/// limit too); returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max.max(want),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// CPU time (user + system) of the calling thread: the loop's, whatever the
/// other tests of this binary do meanwhile.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes the one struct given; a zeroed rusage is valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Times the calling thread went to sleep (voluntary context switches):
/// about one per loop turn that waited.
fn thread_sleeps() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The loop's side of the 10,000: counts accepted connections, then measures.
struct Fleet {
    target: usize,
    accepted: Cell<usize>,
    started: Cell<Option<Instant>>,
    /// The timer that watches the client process while it connects.
    watch: Cell<Option<tether::TimerId>>,
    /// CPU time, sleeps and wall time of the measured period.
    result: Cell<Option<(Duration, u64, Duration)>>,
}

impl Fleet {
    /// All taken: measure the next 3 s of doing nothing.
    fn ready(self: &Rc<Self>, cx: &mut Cx<Log>) {
        if self.accepted.get() < self.target || self.started.get().is_some() {
            return;
        }
        self.started.set(Some(Instant::now()));
        if let Some(watch) = self.watch.take() {
            cx.cancel_timer(watch);
        }
        let (cpu, sleeps, wall) = (thread_cpu(), thread_sleeps(), Instant::now());
        let fleet = self.clone();
        cx.set_timer(Duration::from_secs(3), move |cx| {
            fleet.result.set(Some((
                thread_cpu() - cpu,
                thread_sleeps() - sleeps,
                wall.elapsed(),
            )));
            cx.terminate();
        });
    }
}

/// Where the helper process connects, and how many times.
const FLEET_ADDR: &str = "TETHER_TEST_IDLE_FLEET_ADDR";
const FLEET_COUNT: &str = "TETHER_TEST_IDLE_FLEET_COUNT";

/// Not a test by itself: the clients of
/// `ten_thousand_idle_sockets_leave_the_loop_asleep`, run by it as a child
/// process (this binary again), so that the 10,000 client descriptors do not
/// count against the loop's process. Holds its connections until its stdin
/// closes.
#[test]
#[ignore = "a helper process of ten_thousand_idle_sockets_leave_the_loop_asleep"]
fn idle_fleet_clients() {
    let (Ok(addr), Ok(count)) = (std::env::var(FLEET_ADDR), std::env::var(FLEET_COUNT)) else {
        return;
    };
    let count: usize = count.parse().unwrap();
    raise_nofile(count as u64 + 100);
    let conns: Vec<TcpStream> = (0..count)
        .map(|i| TcpStream::connect(&addr).unwrap_or_else(|e| panic!("client {i}: {e}")))
        .collect();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(conns);
}

/// 10,000 idle TCP connections (20,000 sockets: both ends are tether's), each
/// with an idle timeout of 60 s: the loop sleeps. Measured as the CPU time its
/// thread uses over 3 s of nothing happening.
#[test]
fn ten_thousand_idle_sockets_leave_the_loop_asleep() {
    const N: usize = 10_000;
    let limit = raise_nofile(N as u64 + 2_000);
    assert!(limit > N as u64 + 1_000, "only {limit} descriptors");
    let idle = Timeouts {
        idle: Some(Duration::from_secs(60)),
        ..Timeouts::default()
    };
    let setup = Instant::now();
    let mut m = IoMux::new(Log::default()).unwrap();
    let fleet = Rc::new(Fleet {
        target: N,
        accepted: Cell::new(0),
        started: Cell::new(None),
        watch: Cell::new(None),
        result: Cell::new(None),
    });
    let server_fleet = fleet.clone();
    let l = m.listen_on(
        "127.0.0.1:0",
        Rec::listener(move || {
            let fleet = server_fleet.clone();
            Some(Rec::with(move |cx, _, ev| match ev {
                Ev::Accepted => {
                    fleet.accepted.set(fleet.accepted.get() + 1);
                    fleet.ready(cx);
                }
                Ev::Closed(done) if fleet.result.get().is_none() => {
                    panic!("an idle connection closed: {done:?}")
                }
                _ => {}
            }))
        }),
    );
    m.set_timeouts(l, idle).unwrap();

    let mut clients = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_fleet_clients",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(FLEET_ADDR, inet(&m, l).to_string())
        .env(FLEET_COUNT, N.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the client process starts");
    let stdin = clients.stdin.take();
    // Until all are in, stop if the client process dies.
    let children = Rc::new(RefCell::new(clients));
    let child = children.clone();
    let watch_fleet = fleet.clone();
    let watch = m.set_interval(ms(100), move |cx| {
        if watch_fleet.started.get().is_none() {
            if let Ok(Some(status)) = child.borrow_mut().try_wait() {
                eprintln!("the client process ended: {status}");
                cx.terminate();
            }
        }
    });
    // Cancelled before the quiet period starts.
    fleet.watch.set(Some(watch));
    run_for(&mut m, Duration::from_secs(60));
    drop(stdin);
    let _ = children.borrow_mut().wait();
    assert_no_timeout(&m);
    let (cpu, sleeps, wall) = fleet.result.get().expect("the quiet period was measured");
    let opened = fleet.started.get().unwrap() - setup;
    println!(
        "{N} idle connections (idle timeout 60 s) opened in {opened:?}; over {wall:?} \
         of quiet the loop's thread used {cpu:?} of CPU and slept {sleeps} times"
    );
    assert!(
        cpu < ms(300),
        "the loop used {cpu:?} of CPU over {wall:?} with nothing to do"
    );
}
