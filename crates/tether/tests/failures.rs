//! Every way a TCP or Local socket can fail, reached for real on loopback, with
//! the reason, the error and what the peer saw.
//!
//! Peers are plain std sockets in threads. Each test runs its loop until the
//! socket under test has closed (`run_until`), bounded by `LIMIT`.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use tether::{ApiError, DiscardMethod, IoMux, Reason, RecvMode, SockAddr, SocketId};

const LIMIT: Duration = Duration::from_secs(10);

/// How long a blocking std peer waits before a test counts it as hung.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// Four MiB: more than loopback buffers take from a peer that does not read.
const BIG: usize = 4 << 20;

/// Run `op` on a fresh socket: it must return `Ok(())` and nothing may be
/// reported inside the call. Then run until the socket closes, and return all
/// it reported and its close record.
fn fails(op: impl FnOnce(&mut IoMux<Log>, SocketId) -> Result<(), ApiError>) -> (Vec<Ev>, Done) {
    let mut m = mux();
    let s = m.stream(Rec::quiet());
    assert_eq!(
        op(&mut m, s),
        Ok(()),
        "a failure is reported by on_closed, not by the call"
    );
    assert!(
        m.shared().events.is_empty(),
        "callback inside the call: {:?}",
        m.shared().events
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert!(
        !m.shared().timed_out,
        "{s} never closed: {:?}",
        m.shared().of(s)
    );
    let events = m.shared().of(s);
    assert_eq!(m.shared().close_count(s), 1);
    assert!(
        matches!(events.last(), Some(Ev::Closed(_))),
        "on_closed is last: {events:?}"
    );
    (events, m.shared().closed(s))
}

/// The error text of a failure, which every failure must have.
fn message(done: &Done) -> &str {
    done.error
        .as_deref()
        .unwrap_or_else(|| panic!("{:?} without an error", done.reason))
}

/// Read until the stream ends: how many bytes came, and how it ended (`Ok` for
/// a plain end of stream, else the error).
fn drain(r: &mut impl Read) -> (usize, Result<(), ErrorKind>) {
    let mut buf = vec![0; 64 * 1024];
    let mut n = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (n, Ok(())),
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (n, Err(e.kind())),
        }
    }
}

/// The first accepted socket has closed.
fn accepted_closed(log: &Log) -> bool {
    log.accepted().first().is_some_and(|&s| log.is_closed(s))
}

/// A listener at `addr` whose connections each send their id on `tx` when
/// accepted and then run `hook`.
fn listener_reporting(
    m: &mut IoMux<Log>,
    addr: &str,
    tx: mpsc::Sender<SocketId>,
    hook: impl Fn(&mut tether::Cx<Log>, SocketId, &Ev) + Clone + 'static,
) -> SocketId {
    m.listen_on(
        addr,
        Rec::listener(move || {
            let (tx, hook) = (tx.clone(), hook.clone());
            Some(Rec::with(move |cx, s, ev| {
                if *ev == Ev::Accepted {
                    let _ = tx.send(s);
                }
                hook(cx, s, ev);
            }))
        }),
    )
}

fn path_of(spot: &Spot) -> PathBuf {
    PathBuf::from(spot.addr.strip_prefix("unix:").expect("a unix: spot"))
}

fn tcp_stream(p: &Peer) -> &TcpStream {
    match p {
        Peer::Tcp(s) => s,
        Peer::Local(_) => panic!("not a TCP peer"),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("socket file")
        .permissions()
        .mode()
        & 0o777
}

// ----- AddressInvalid -----

#[test]
fn connect_to_unusable_address_is_address_invalid() {
    for (addr, why) in [
        ("localhost", "no port"),
        ("1.2.3.4", "no port"),
        ("unix:@", "abstract"),
        ("local host:80", "invalid IP"),
        ("[::1:80", "brackets"),
    ] {
        let (events, done) = fails(|m, s| m.connect(s, addr));
        assert_eq!(done.reason, Reason::AddressInvalid, "{addr}");
        let msg = message(&done);
        assert!(
            msg.contains(&format!("{addr:?}")) && msg.contains(why),
            "{addr}: {msg}"
        );
        assert_eq!(done.os_error, None, "{addr}");
        assert_eq!(
            (done.unsent, done.unread, done.discard),
            (0, 0, None),
            "{addr}"
        );
        assert_eq!(events.len(), 1, "{addr}: only on_closed: {events:?}");
    }
}

/// Only a connect resolves names: a bind needs an address.
#[test]
fn bind_to_a_host_name_is_address_invalid() {
    let (_, done) = fails(|m, s| m.bind(s, "localhost:0"));
    assert_eq!(done.reason, Reason::AddressInvalid);
    assert!(message(&done).contains("host name"), "{done:?}");
}

#[test]
fn bind_to_unusable_address_is_address_invalid() {
    let (events, done) = fails(|m, s| m.bind(s, "nonsense"));
    assert_eq!(done.reason, Reason::AddressInvalid);
    assert!(
        message(&done).contains("\"nonsense\""),
        "{}",
        message(&done)
    );
    assert_eq!(done.os_error, None);
    assert_eq!(events.len(), 1, "no on_bound: {events:?}");
}

#[test]
fn address_that_does_not_fit_the_bound_socket_is_address_invalid() {
    let (_events, done) = fails(|m, s| {
        m.bind(s, "127.0.0.1:0")?;
        m.connect(s, "unix:/tmp/x")
    });
    assert_eq!(done.reason, Reason::AddressInvalid);
    assert_eq!(
        message(&done),
        "a TCP-bound socket cannot connect to a unix: address"
    );
    assert_eq!(done.os_error, None);

    let (_events, done) = fails(|m, s| {
        m.bind(s, "127.0.0.1:0")?;
        m.connect(s, "[::1]:80")
    });
    assert_eq!(done.reason, Reason::AddressInvalid);
    assert!(message(&done).contains("IP family"), "{}", message(&done));

    let spot = Transport::Local.spot();
    let (_events, done) = fails(|m, s| {
        m.bind(s, &spot.addr)?;
        m.connect(s, "127.0.0.1:80")
    });
    assert_eq!(done.reason, Reason::AddressInvalid);
    assert_eq!(done.os_error, None, "{}", message(&done));
}

// ----- ConnectRejected -----

#[test]
fn tcp_connect_to_closed_port_is_rejected() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (events, done) = fails(|m, s| m.connect(s, &format!("127.0.0.1:{port}")));
    assert_eq!(done.reason, Reason::ConnectRejected);
    assert_eq!(done.os_error, Some(libc::ECONNREFUSED), "{:?}", done.error);
    assert_eq!(events.len(), 1, "never connected: {events:?}");
}

#[test]
fn local_connect_to_dead_server_is_rejected() {
    let spot = Transport::Local.spot();
    let path = path_of(&spot);
    drop(UnixListener::bind(&path).unwrap());
    assert!(
        fs::symlink_metadata(&path).unwrap().file_type().is_socket(),
        "the file stays"
    );
    let (events, done) = fails(|m, s| m.connect(s, &spot.addr));
    assert_eq!(done.reason, Reason::ConnectRejected);
    assert_eq!(done.os_error, Some(libc::ECONNREFUSED), "{:?}", done.error);
    assert_eq!(events.len(), 1, "never connected: {events:?}");
}

/// TCP has completed the handshake before the listener's user is asked, so a
/// denied std client is connected, and then reset.
#[test]
fn denied_tcp_client_sees_reset() {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", Rec::listener(|| None));
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    let peer_addr = tcp_stream(&p).local_addr().unwrap();
    let h = m.handle();
    let peer = thread::spawn(move || {
        let r = p.read(&mut [0; 16]).map_err(|e| e.kind());
        h.post(|cx| cx.terminate()).unwrap();
        r
    });
    run_for(&mut m, LIMIT);
    assert!(!m.shared().timed_out);
    assert_eq!(peer.join().unwrap(), Err(ErrorKind::ConnectionReset));
    let events = m.shared().of(l);
    assert!(matches!(events[0], Ev::Bound(_)), "{events:?}");
    assert_eq!(events[1], Ev::Incoming(Some(SockAddr::Inet(peer_addr))));
    assert_eq!(m.shared().closed(l).reason, Reason::Stopped);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(m.shared().accepted().is_empty());
}

/// A tether client of a denying TCP listener. The kernel completes the
/// handshake before the listener's user is asked, so which the client's loop
/// sees first decides: usually the reset, while the connect is still in
/// progress (ConnectRejected, as a refusal); if the loop saw the connection up
/// first, it is Connected and then Lost. Either way the error is ECONNRESET and
/// nothing looks graceful.
#[test]
fn denied_tether_tcp_client_is_rejected() {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", Rec::listener(|| None));
    let addr = inet(&m, l).to_string();
    let c = m.connect_to(
        &addr,
        Rec::with(|cx, s, ev| {
            if *ev == Ev::Connected {
                cx.recv(s, 16, RecvMode::Partial).unwrap();
            }
        }),
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert!(!m.shared().timed_out);
    let done = m.shared().closed(c);
    assert_eq!(done.os_error, Some(libc::ECONNRESET), "{:?}", done.error);
    let events = m.shared().of(c);
    match done.reason {
        Reason::ConnectRejected => assert_eq!(events.len(), 1, "{events:?}"),
        Reason::Lost => assert_eq!(events, [Ev::Connected, Ev::Closed(done.clone())]),
        other => panic!("a denied connect ended as {other}: {events:?}"),
    }
}

/// A Local socket has no reset: a denied client sees the end of the stream.
#[test]
fn denied_local_client_sees_end_of_stream() {
    let spot = Transport::Local.spot();
    let mut m = mux();
    let l = m.listen_on(&spot.addr, Rec::listener(|| None));
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    let h = m.handle();
    let peer = thread::spawn(move || {
        let r = drain(&mut p);
        h.post(|cx| cx.terminate()).unwrap();
        r
    });
    run_for(&mut m, LIMIT);
    assert!(!m.shared().timed_out);
    assert_eq!(peer.join().unwrap(), (0, Ok(())));
    assert_eq!(m.shared().of(l)[1], Ev::Incoming(None), "an unnamed client");
}

// ----- BindFailed -----

#[test]
fn tcp_bind_to_port_in_use_fails() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let (events, done) = fails(|m, s| m.bind(s, &addr));
    assert_eq!(done.reason, Reason::BindFailed);
    assert_eq!(done.os_error, Some(libc::EADDRINUSE), "{:?}", done.error);
    assert_eq!(events.len(), 1, "{events:?}");

    // listen_on fails the same way, and never reaches the listen step.
    let mut m = mux();
    let l = m.listen_on(&addr, Rec::quiet());
    run_until(&mut m, LIMIT, move |log| log.is_closed(l));
    assert_eq!(m.shared().closed(l).reason, Reason::BindFailed);
    // The holder is untouched.
    let _c = TcpStream::connect(&addr).expect("the live listener still listens");
    drop(held);
}

#[test]
fn local_bind_over_live_server_fails() {
    let spot = Transport::Local.spot();
    let path = path_of(&spot);
    let live = UnixListener::bind(&path).unwrap();
    let (_events, done) = fails(|m, s| m.bind(s, &spot.addr));
    assert_eq!(done.reason, Reason::BindFailed);
    let msg = message(&done);
    assert!(
        msg.contains("listening") && msg.contains(&*path.to_string_lossy()),
        "{msg}"
    );
    // The live server keeps its file and its clients.
    let _c = UnixStream::connect(&path).expect("the live server is still reachable");
    live.accept().expect("and accepts");
}

#[test]
fn local_bind_never_replaces_a_regular_file() {
    let spot = Transport::Local.spot();
    let path = path_of(&spot);
    fs::write(&path, b"precious").unwrap();
    let (_events, done) = fails(|m, s| m.bind(s, &spot.addr));
    assert_eq!(done.reason, Reason::BindFailed);
    let msg = message(&done);
    assert!(msg.contains("not a socket"), "{msg}");
    assert_eq!(
        fs::read(&path).unwrap(),
        b"precious",
        "the file is untouched"
    );
}

#[test]
fn local_bind_replaces_stale_socket_file_and_cleans_up() {
    let spot = Transport::Local.spot();
    let path = path_of(&spot);
    drop(UnixListener::bind(&path).unwrap()); // its server is gone, the file stays
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());

    let mut m = mux();
    let l = m.listen_on(
        &spot.addr,
        Rec::listener(|| {
            Some(Rec::with(|cx, s, ev| match ev {
                Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                Ev::Received(d) => cx.send(s, d).unwrap(),
                Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                _ => {}
            }))
        }),
    );
    assert_eq!(
        m.state(l),
        tether::State::Listening,
        "{:?}",
        m.shared().events
    );
    assert_eq!(mode(&path), 0o666, "anyone may connect");
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    let h = m.handle();
    let peer = thread::spawn(move || {
        p.write_all(b"ping").unwrap();
        p.shutdown_write();
        let mut got = Vec::new();
        p.read_to_end(&mut got).unwrap();
        h.post(move |cx| cx.close(l).unwrap()).unwrap();
        got
    });
    run_until(&mut m, LIMIT, move |log| log.is_closed(l));
    assert!(!m.shared().timed_out);
    assert_eq!(peer.join().unwrap(), b"ping");
    assert_eq!(m.shared().closed(l).reason, Reason::Normal);
    assert!(!path.exists(), "a closed listener removes its socket file");
}

/// A listener that the loop's end closes removes its file too.
#[test]
fn stopped_local_listener_removes_its_file() {
    let spot = Transport::Local.spot();
    let path = path_of(&spot);
    let mut m = mux();
    let l = m.listen_on(&spot.addr, Rec::quiet());
    assert_eq!(mode(&path), 0o666);
    m.set_timer(Duration::from_millis(1), |cx| cx.terminate());
    run_for(&mut m, LIMIT);
    assert_eq!(m.shared().closed(l).reason, Reason::Stopped);
    assert!(!path.exists());
}

// ----- Lost -----

#[test]
fn tcp_peer_reset_while_recv_pending_is_lost() {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let peer = thread::spawn(move || {
        let (s, _) = server.accept().unwrap();
        rx.recv_timeout(PEER_WAIT)
            .expect("tether's recv is pending");
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    });
    let mut m = mux();
    let c = m.connect_to(
        &addr,
        Rec::with(move |cx, s, ev| {
            if *ev == Ev::Connected {
                cx.recv(s, 64, RecvMode::Partial).unwrap();
                tx.send(()).unwrap();
            }
        }),
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert!(!m.shared().timed_out);
    peer.join().unwrap();
    let done = m.shared().closed(c);
    assert_eq!(m.shared().of(c), [Ev::Connected, Ev::Closed(done.clone())]);
    assert_eq!(done.reason, Reason::Lost);
    assert_eq!(done.os_error, Some(libc::ECONNRESET), "{:?}", done.error);
}

/// A Local peer that closes with our bytes unread resets the connection: the
/// one way a Unix-domain stream can end abortively.
#[test]
fn local_peer_closing_with_unread_input_is_lost() {
    let spot = Transport::Local.spot();
    let server = UnixListener::bind(path_of(&spot)).unwrap();
    let (tx, rx) = mpsc::channel();
    let peer = thread::spawn(move || {
        let (s, _) = server.accept().unwrap();
        rx.recv_timeout(PEER_WAIT).expect("tether sent and waits");
        drop(s); // without reading
    });
    let mut m = mux();
    let c = m.connect_to(
        &spot.addr,
        Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"never read").unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Sent => tx.send(()).unwrap(),
            _ => {}
        }),
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert!(!m.shared().timed_out);
    peer.join().unwrap();
    let done = m.shared().closed(c);
    assert_eq!(
        m.shared().of(c),
        [Ev::Connected, Ev::Sent, Ev::Closed(done.clone())]
    );
    assert_eq!(done.reason, Reason::Lost);
    assert_eq!(done.os_error, Some(libc::ECONNRESET), "{:?}", done.error);
}

// ----- Reset -----

#[test]
fn tcp_reset_reaches_the_peer_and_counts_what_was_dropped() {
    let mut m = mux();
    let (tx, _rx) = mpsc::channel();
    let l = listener_reporting(&mut m, "127.0.0.1:0", tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            cx.send(s, &vec![7; BIG]).unwrap();
            cx.reset(s).unwrap();
        }
    });
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    let s = m.shared().accepted()[0];
    let done = m.shared().closed(s);
    assert_eq!(done.reason, Reason::Reset);
    assert_eq!((done.error.as_deref(), done.discard), (None, None));
    assert!(
        done.unsent > 0,
        "a peer that does not read leaves bytes behind: {done:?}"
    );
    // The peer reads only now: what its kernel took, then the reset.
    let (read, end) = drain(&mut p);
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "after {read} bytes");
    // Bytes sent but not yet acknowledged count as unsent even if they did
    // arrive: the count may be high, never low.
    assert!(
        read as u64 + done.unsent >= BIG as u64,
        "{read} read, {done:?}"
    );
    assert!(read < BIG);
}

/// `Cx::reset` on a Local socket: the peer sees ECONNRESET if it had sent
/// bytes we never read.
#[test]
fn local_reset_with_unread_input_resets_the_peer() {
    let spot = Transport::Local.spot();
    let mut m = mux();
    let (tx, rx) = mpsc::channel();
    let l = listener_reporting(&mut m, &spot.addr, tx, |_, _, _| {});
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    let h = m.handle();
    let peer = thread::spawn(move || {
        let s = rx.recv_timeout(PEER_WAIT).expect("accepted");
        p.write_all(b"never read").unwrap();
        h.post(move |cx| cx.reset(s).unwrap()).unwrap();
        drain(&mut p)
    });
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    assert_eq!(peer.join().unwrap(), (0, Err(ErrorKind::ConnectionReset)));
    let done = m.shared().closed(m.shared().accepted()[0]);
    assert_eq!(done.reason, Reason::Reset);
    assert_eq!(
        (done.unsent, done.unread),
        (0, 10),
        "the unread bytes are counted"
    );
    assert_eq!(done.error, None);
}

/// ... and a plain end of stream if it had not.
#[test]
fn local_reset_without_unread_input_ends_the_peer_stream() {
    let spot = Transport::Local.spot();
    let mut m = mux();
    let (tx, _rx) = mpsc::channel();
    let l = listener_reporting(&mut m, &spot.addr, tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            cx.send(s, b"last words").unwrap();
            cx.reset(s).unwrap();
        }
    });
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    let peer = thread::spawn(move || drain(&mut p));
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    let s = m.shared().accepted()[0];
    let done = m.shared().closed(s);
    assert_eq!(done.reason, Reason::Reset);
    let (read, end) = peer.join().unwrap();
    assert_eq!(end, Ok(()));
    assert_eq!(
        read as u64 + done.unsent,
        10,
        "every byte either arrived or is counted"
    );
    assert_eq!(done.unread, 0);
}

// ----- Discarded -----

#[test]
fn tcp_discard_tells_the_peer_nothing_or_resets() {
    let mut m = mux();
    let (tx, _rx) = mpsc::channel();
    let l = listener_reporting(&mut m, "127.0.0.1:0", tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            cx.discard(s).unwrap();
        }
    });
    let mut p = Peer::connect(&m, l);
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    let done = m.shared().closed(m.shared().accepted()[0]);
    assert_eq!(done.reason, Reason::Discarded);
    assert_eq!(
        (done.unsent, done.unread, done.error.as_deref()),
        (0, 0, None)
    );
    p.set_read_timeout(Some(Duration::from_millis(300)));
    let r = p.read(&mut [0; 16]).map_err(|e| e.kind());
    println!("discard method: {:?}, peer read: {r:?}", done.discard);
    match done.discard {
        Some(DiscardMethod::Silent) => assert!(
            matches!(r, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "a silent discard sent something: {r:?}"
        ),
        Some(DiscardMethod::Reset) => assert_eq!(r, Err(ErrorKind::ConnectionReset)),
        other => panic!("a TCP discard is Silent or Reset, not {other:?}"),
    }
}

#[test]
fn local_discard_is_a_close() {
    let spot = Transport::Local.spot();
    let mut m = mux();
    let (tx, _rx) = mpsc::channel();
    let l = listener_reporting(&mut m, &spot.addr, tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            cx.discard(s).unwrap();
        }
    });
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    let done = m.shared().closed(m.shared().accepted()[0]);
    assert_eq!(done.reason, Reason::Discarded);
    assert_eq!(done.discard, Some(DiscardMethod::Close));
    assert_eq!(drain(&mut p), (0, Ok(())));
}

/// Bytes queued for a peer that does not read are counted when discarded.
#[test]
fn discard_counts_unsent_bytes() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let (tx, _rx) = mpsc::channel();
        let l = listener_reporting(&mut m, &spot.addr, tx, |cx, s, ev| {
            if *ev == Ev::Accepted {
                cx.send(s, &vec![1; BIG]).unwrap();
                cx.discard(s).unwrap();
            }
        });
        let p = Peer::connect(&m, l);
        run_until(&mut m, LIMIT, accepted_closed);
        assert!(!m.shared().timed_out);
        let done = m.shared().closed(m.shared().accepted()[0]);
        assert_eq!(done.reason, Reason::Discarded, "{t:?}");
        assert!(
            done.unsent > 0 && done.unsent <= BIG as u64,
            "{t:?}: {done:?}"
        );
        drop(p);
    }
}

// ----- LingerTimeout -----

#[test]
fn close_past_linger_resets_and_counts_unsent() {
    let mut m = mux();
    let (tx, rx) = mpsc::channel();
    let l = listener_reporting(&mut m, "127.0.0.1:0", tx, |cx, s, ev| match ev {
        Ev::Accepted => {
            cx.send(s, &vec![2; BIG]).unwrap();
            cx.set_linger(s, Duration::from_millis(200)).unwrap();
            cx.close(s).unwrap();
        }
        Ev::Sent | Ev::Closed(_) => {}
        other => panic!("unexpected {other:?}"),
    });
    let mut p = Peer::connect(&m, l);
    p.set_read_timeout(Some(PEER_WAIT));
    run_until(&mut m, LIMIT, accepted_closed);
    assert!(!m.shared().timed_out);
    let s = rx.recv().unwrap();
    let done = m.shared().closed(s);
    assert_eq!(done.reason, Reason::LingerTimeout);
    assert!(done.unsent > 0, "{done:?}");
    assert_eq!(done.error, None);
    // The peer, reading only now, gets what did arrive and then the reset: never
    // a plain end of stream that would pass a truncated reply for a whole one.
    let (read, end) = drain(&mut p);
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "after {read} bytes");
    assert!(
        read as u64 + done.unsent >= BIG as u64,
        "{read} read, {done:?}"
    );
    assert!(read < BIG);
}

// ----- IPv6 and abstract names -----

/// A tether echo server at `addr` and a tether client that sends `hello`,
/// half-closes and reads the echo; returns the client's and server's records.
fn echo_pair(addr: &str) -> (Log, SocketId, SocketId, SocketId) {
    let mut m = mux();
    let l = m.listen_on(addr, echo_listener());
    assert_eq!(
        m.state(l),
        tether::State::Listening,
        "{:?}",
        m.shared().events
    );
    let target = m.local_addr(l).expect("listener address").to_string();
    let c = m.connect_to(
        &target,
        Rec::with(|cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"hello").unwrap();
                cx.shutdown(s).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => cx.recv(s, 64, RecvMode::Partial).unwrap(),
            _ => {}
        }),
    );
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(c) && accepted_closed(log)
    });
    assert!(!m.shared().timed_out, "{:?}", m.shared().events);
    let s = m.shared().accepted()[0];
    let log = std::mem::take(m.shared_mut());
    (log, l, c, s)
}

#[test]
fn ipv6_loopback_echo_ends_gracefully() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        println!("SKIPPED: ::1 cannot be bound here ({e})");
        return;
    }
    let (log, l, c, s) = echo_pair("[::1]:0");
    let SockAddr::Inet(bound) = log
        .of(l)
        .iter()
        .find_map(|e| match e {
            Ev::Bound(a) => Some(a.clone()),
            _ => None,
        })
        .expect("on_bound")
    else {
        panic!("not inet")
    };
    assert!(
        bound.is_ipv6() && bound.ip().is_loopback() && bound.port() != 0,
        "{bound}"
    );
    assert_eq!(log.received(c), b"hello");
    assert_eq!(log.received(s), b"hello");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    assert_eq!(log.closed(s).reason, Reason::ByPeer);
    assert_eq!(
        log.of(c).iter().filter(|e| **e == Ev::PeerShutdown).count(),
        1
    );
}

#[test]
fn abstract_unix_name_listens_and_connects() {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "tether-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let addr = format!("unix:@{name}");
    let (log, l, c, s) = echo_pair(&addr);
    assert!(
        log.of(l)
            .contains(&Ev::Bound(SockAddr::Abstract(name.into_bytes()))),
        "{:?}",
        log.of(l)
    );
    assert_eq!(log.received(c), b"hello");
    assert_eq!(log.closed(c).reason, Reason::Normal);
    assert_eq!(log.closed(s).reason, Reason::ByPeer);
    // The name is free again once the listener closed.
    let mut m = mux();
    let again = m.listen_on(&addr, Rec::quiet());
    assert_eq!(m.state(again), tether::State::Listening);
}

/// A peer that resets while our FIN goes out ends the connection as `Lost`,
/// never as a graceful `ByPeer`: the end is decided once the FIN went out, and
/// here it could not (the kernel answers the half-close with ENOTCONN).
#[test]
fn a_reset_while_our_fin_goes_out_is_lost_not_graceful() {
    use std::sync::{Arc, Mutex};
    use tether::{Admission, Closed, Cx, PeerInfo, SocketUser};

    type Seen = Arc<Mutex<Option<(Reason, Option<i32>)>>>;
    struct Listener(Option<Conn>);
    impl SocketUser<Seen> for Listener {
        fn on_incoming(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &PeerInfo) -> Admission<Seen> {
            match self.0.take() {
                Some(conn) => Admission::Accept(Box::new(conn)),
                None => Admission::Deny,
            }
        }
        fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &tether::Closed) {}
    }
    struct Conn {
        peer_ended: mpsc::Sender<()>,
        peer_reset: mpsc::Receiver<()>,
    }
    impl SocketUser<Seen> for Conn {
        fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
            cx.recv(s, 64, RecvMode::Partial).unwrap();
        }
        fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, _: &[u8]) {
            let _ = cx.recv(s, 64, RecvMode::Partial);
        }
        fn on_peer_shutdown(&mut self, cx: &mut Cx<Seen>, s: SocketId, _: Option<&[u8]>) {
            // The peer ended its side; it resets before we answer with ours.
            self.peer_ended.send(()).unwrap();
            self.peer_reset
                .recv_timeout(PEER_WAIT)
                .expect("the peer reset");
            cx.shutdown(s).unwrap();
        }
        fn on_closed(&mut self, cx: &mut Cx<Seen>, _: SocketId, closed: &Closed) {
            let errno = closed.error.as_ref().and_then(|e| e.raw_os_error());
            *cx.shared().lock().unwrap() = Some((closed.reason, errno));
            cx.terminate();
        }
    }

    let (ended_tx, ended_rx) = mpsc::channel();
    let (reset_tx, reset_rx) = mpsc::channel();
    let seen = Seen::default();
    let mut m = IoMux::new(seen.clone()).unwrap();
    let conn = Conn {
        peer_ended: ended_tx,
        peer_reset: reset_rx,
    };
    let l = m.listen_on("127.0.0.1:0", Listener(Some(conn)));
    let addr = match m.local_addr(l) {
        Some(SockAddr::Inet(a)) => a,
        other => panic!("{other:?}"),
    };
    let peer = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"last words").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        ended_rx
            .recv_timeout(PEER_WAIT)
            .expect("the server saw our end");
        // SO_LINGER 0: closing sends RST; on loopback it has arrived when
        // close returns.
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
        reset_tx.send(()).unwrap();
    });
    m.set_timer(LIMIT, |cx| cx.terminate());
    m.run().unwrap();
    peer.join().unwrap();
    let (reason, errno) = seen.lock().unwrap().expect("the connection closed");
    assert_eq!(reason, Reason::Lost, "errno {errno:?}");
    assert!(!reason.is_graceful());
    assert!(
        matches!(errno, Some(libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE)),
        "the error says why: {errno:?}"
    );
}
