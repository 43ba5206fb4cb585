//! Bad input from a caller is a typed error at the call, never a panic, and it
//! changes nothing: the socket goes on working as if the call had not been made.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;
use tether::{ApiError, Cx, Op, Reason, RecvMode, Refused, SockAddr, SocketId, State};

const LIMIT: Duration = Duration::from_secs(10);

fn refused(op: Op, state: State) -> Result<(), ApiError> {
    Err(ApiError::Refused(Refused { op, state }))
}

/// A std echo server for one connection: echoes until the end of the stream,
/// then ends its own. Returns the address to connect to and the thread, which
/// yields everything it echoed.
fn std_echo(t: Transport) -> (String, Option<tempfile::TempDir>, JoinHandle<Vec<u8>>) {
    fn echo(mut s: impl Read + Write) -> Vec<u8> {
        let mut all = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return all,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        return all;
                    }
                }
            }
        }
    }
    match t {
        Transport::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let th = thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let all = echo(&s);
                let _ = s.shutdown(std::net::Shutdown::Write);
                all
            });
            (addr, None, th)
        }
        Transport::Local => {
            let (dir, path) = unix_path();
            let l = UnixListener::bind(&path).unwrap();
            let th = thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let all = echo(&s);
                let _ = s.shutdown(std::net::Shutdown::Write);
                all
            });
            (format!("unix:{}", path.display()), Some(dir), th)
        }
    }
}

/// Every operation on `s`, which must be stale: each is refused as such, and
/// the getters say there is nothing.
fn assert_stale(cx: &mut Cx<Log>, s: SocketId) {
    let stale = Err(ApiError::StaleSocket(s));
    assert_eq!(cx.send(s, b"x"), stale);
    assert_eq!(cx.recv(s, 1, RecvMode::Partial), stale);
    assert_eq!(
        cx.recv(s, 0, RecvMode::Exact),
        stale,
        "staleness is checked first"
    );
    assert_eq!(cx.shutdown(s), stale);
    assert_eq!(cx.close(s), stale);
    assert_eq!(cx.reset(s), stale);
    assert_eq!(cx.discard(s), stale);
    assert_eq!(cx.bind(s, "127.0.0.1:0"), stale);
    assert_eq!(cx.listen(s), stale);
    assert_eq!(cx.connect(s, "127.0.0.1:9"), stale);
    assert_eq!(cx.set_linger(s, Duration::ZERO), stale);
    assert_eq!(cx.set_user(s, Rec::quiet()), stale);
    assert_eq!(cx.state(s), State::NotConnected);
    assert_eq!(cx.local_addr(s), None);
    assert_eq!(cx.peer_addr(s), None);
}

/// Refused calls at every stage of a connection's life, with the exchange
/// around them going on undisturbed.
#[test]
fn refused_calls_leave_a_connection_working() {
    for t in [Transport::Tcp, Transport::Local] {
        let (addr, _dir, peer) = std_echo(t);
        let mut m = mux();
        let target = addr.clone();
        let c = m.connect_to(
            &addr,
            Rec::with(move |cx, s, ev| match ev {
                Ev::Connected => {
                    assert_eq!(cx.listen(s), refused(Op::Listen, State::Connected));
                    assert_eq!(
                        cx.connect(s, &target),
                        refused(Op::Connect, State::Connected)
                    );
                    assert_eq!(
                        cx.bind(s, "127.0.0.1:0"),
                        refused(Op::Bind, State::Connected)
                    );
                    assert_eq!(
                        cx.recv(s, 0, RecvMode::Exact),
                        Err(ApiError::ZeroLengthRecv)
                    );
                    assert_eq!(
                        cx.recv(s, 0, RecvMode::Partial),
                        Err(ApiError::ZeroLengthRecv)
                    );
                    // A huge Exact recv would have to be held in memory whole.
                    assert_eq!(
                        cx.recv(s, usize::MAX, RecvMode::Exact),
                        Err(ApiError::RecvTooLarge(usize::MAX))
                    );
                    cx.recv(s, 5, RecvMode::Exact).unwrap();
                    // The pending recv stays as it was: 5 bytes, Exact.
                    assert_eq!(cx.recv(s, 1, RecvMode::Partial), Err(ApiError::RecvPending));
                    assert_eq!(cx.state(s), State::Connected);
                    cx.send(s, b"hello").unwrap();
                }
                Ev::Received(d) if d == b"hello" => {
                    cx.send(s, b"world").unwrap();
                    cx.shutdown(s).unwrap();
                    assert_eq!(cx.shutdown(s), refused(Op::Shutdown, State::NoSend));
                    assert_eq!(cx.send(s, b"late"), refused(Op::Send, State::NoSend));
                    assert_eq!(cx.listen(s), refused(Op::Listen, State::NoSend));
                    assert_eq!(cx.state(s), State::NoSend);
                    cx.recv(s, 5, RecvMode::Exact).unwrap();
                }
                Ev::Received(_) => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                Ev::Closed(_) => assert_stale(cx, s),
                _ => {}
            }),
        );
        run_until(&mut m, LIMIT, move |log| log.is_closed(c));
        assert!(!m.shared().timed_out, "{t:?}: {:?}", m.shared().of(c));
        assert_eq!(
            peer.join().unwrap(),
            b"helloworld",
            "{t:?}: the refused send sent nothing"
        );
        let done = m.shared().closed(c);
        assert_eq!(
            m.shared().of(c),
            [
                Ev::Connected,
                Ev::Sent,
                Ev::Received(b"hello".to_vec()),
                Ev::Sent,
                Ev::Received(b"world".to_vec()),
                Ev::PeerShutdown,
                Ev::Closed(done.clone()),
            ],
            "{t:?}"
        );
        assert_eq!(
            (done.reason, done.unsent, done.unread),
            (Reason::Normal, 0, 0),
            "{t:?}"
        );
        // Outside the loop, the id stays stale.
        assert_stale(&mut m, c);
    }
}

/// A slot is reused, its id is not: the old id never reaches the new socket.
#[test]
fn stale_id_never_reaches_the_socket_that_reuses_its_slot() {
    for t in [Transport::Tcp, Transport::Local] {
        let mut m = mux();
        let a = m.stream(Rec::quiet());
        m.close(a).unwrap(); // an unconnected socket closes at once ...
        assert_eq!(
            m.close(a),
            refused(Op::Close, State::NotConnected),
            "... and only once"
        );
        run_until(&mut m, LIMIT, move |log| log.is_closed(a));
        assert_eq!(m.shared().closed(a).reason, Reason::Normal);
        assert_stale(&mut m, a);

        let (addr, _dir, peer) = std_echo(t);
        let b = m.stream(Rec::with(move |cx, s, ev| {
            // A's id, used while B lives in its slot, still reaches nothing.
            assert_stale(cx, a);
            match ev {
                Ev::Connected => {
                    cx.recv(s, 3, RecvMode::Exact).unwrap();
                    cx.send(s, b"abc").unwrap();
                }
                Ev::Received(_) => cx.close(s).unwrap(),
                _ => {}
            }
        }));
        assert_eq!(b.index(), a.index(), "{t:?}: the slot is reused");
        assert_ne!(a, b);
        assert_stale(&mut m, a);
        assert_eq!(m.state(b), State::NotConnected);
        m.connect(b, &addr).unwrap();
        assert_eq!(m.state(b), State::Connecting, "{t:?}");
        run_until(&mut m, LIMIT, move |log| log.is_closed(b));
        assert!(!m.shared().timed_out, "{t:?}");
        assert_eq!(peer.join().unwrap(), b"abc");
        assert_eq!(m.shared().received(b), b"abc");
        assert_eq!(m.shared().closed(b).reason, Reason::Normal, "{t:?}");
        assert_eq!(
            m.shared().of(a).len(),
            1,
            "A heard nothing more: {:?}",
            m.shared().of(a)
        );
    }
}

/// A listener refuses everything a connection does, and keeps listening.
#[test]
fn listener_refuses_connection_calls_and_keeps_accepting() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let l = m.listen_on(&spot.addr, echo_listener());
        let here = m.local_addr(l).unwrap();
        let listening = State::Listening;
        assert_eq!(
            m.recv(l, 10, RecvMode::Partial),
            refused(Op::Recv, listening)
        );
        assert_eq!(
            m.recv(l, 0, RecvMode::Partial),
            refused(Op::Recv, listening)
        );
        assert_eq!(m.send(l, b"x"), refused(Op::Send, listening));
        assert_eq!(m.shutdown(l), refused(Op::Shutdown, listening));
        assert_eq!(m.listen(l), refused(Op::Listen, listening));
        assert_eq!(m.bind(l, &spot.addr), refused(Op::Bind, listening));
        assert_eq!(
            m.connect(l, &here.to_string()),
            refused(Op::Connect, listening)
        );
        assert_eq!(m.state(l), listening);
        assert_eq!(m.local_addr(l), Some(here), "{t:?}");

        let mut p = Peer::connect(&m, l);
        p.set_read_timeout(Some(Duration::from_secs(5)));
        let peer = thread::spawn(move || {
            p.write_all(b"still here").unwrap();
            p.shutdown_write();
            let mut got = Vec::new();
            p.read_to_end(&mut got).unwrap();
            got
        });
        run_until(&mut m, LIMIT, |log| {
            log.accepted().first().is_some_and(|&s| log.is_closed(s))
        });
        assert!(!m.shared().timed_out, "{t:?}");
        assert_eq!(peer.join().unwrap(), b"still here");
        let s = m.shared().accepted()[0];
        assert_eq!(m.shared().closed(s).reason, Reason::ByPeer);
        assert_eq!(
            m.shared().closed(l).reason,
            Reason::Stopped,
            "it listened until the end"
        );
    }
}

#[test]
fn bind_twice_is_refused_and_the_first_bind_stands() {
    for t in [Transport::Tcp, Transport::Local] {
        let (first, second) = (t.spot(), t.spot());
        let mut m = mux();
        let l = m.stream(Rec::listener(|| Some(Rec::quiet())));
        m.bind(l, &first.addr).unwrap();
        let bound = m.local_addr(l).expect("bound at once");
        assert_eq!(
            m.bind(l, &second.addr),
            refused(Op::Bind, State::NotConnected)
        );
        assert_eq!(
            m.bind(l, "nonsense"),
            refused(Op::Bind, State::NotConnected),
            "no parse, no close"
        );
        assert_eq!(m.local_addr(l), Some(bound.clone()), "{t:?}");
        if let SockAddr::Unix(path) = &bound {
            let other = second.addr.strip_prefix("unix:").unwrap();
            assert!(
                !std::path::Path::new(other).exists(),
                "the refused bind made no file"
            );
            assert!(path.exists());
        }
        m.listen(l).unwrap();
        let p = Peer::connect(&m, l);
        run_until(&mut m, LIMIT, |log| !log.accepted().is_empty());
        assert!(!m.shared().timed_out, "{t:?}");
        assert_eq!(m.shared().of(l)[0], Ev::Bound(bound), "{t:?}");
        drop(p);
    }
}

#[test]
fn connect_twice_is_refused_and_the_first_connect_goes_on() {
    for t in [Transport::Tcp, Transport::Local] {
        let (addr, _dir, peer) = std_echo(t);
        let mut m = mux();
        let c = m.stream(Rec::with(|cx, s, ev| match ev {
            Ev::Connected => cx.recv(s, 4, RecvMode::Exact).unwrap(),
            Ev::Received(_) => cx.close(s).unwrap(),
            _ => {}
        }));
        m.connect(c, &addr).unwrap();
        assert_eq!(m.connect(c, &addr), refused(Op::Connect, State::Connecting));
        assert_eq!(
            m.connect(c, "nonsense"),
            refused(Op::Connect, State::Connecting)
        );
        assert_eq!(m.listen(c), refused(Op::Listen, State::Connecting));
        assert_eq!(
            m.bind(c, "127.0.0.1:0"),
            refused(Op::Bind, State::Connecting)
        );
        m.send(c, b"ping").unwrap(); // allowed: it waits for the connection
        run_until(&mut m, LIMIT, move |log| log.is_closed(c));
        assert!(!m.shared().timed_out, "{t:?}");
        assert_eq!(peer.join().unwrap(), b"ping");
        assert_eq!(m.shared().received(c), b"ping");
        assert_eq!(m.shared().closed(c).reason, Reason::Normal, "{t:?}");
    }
}

/// After `close()`, everything but an abort is refused, and the close still
/// finishes gracefully.
#[test]
fn close_twice_is_refused_and_the_close_completes() {
    for t in [Transport::Tcp, Transport::Local] {
        let (addr, _dir, peer) = std_echo(t);
        let mut m = mux();
        let c = m.connect_to(
            &addr,
            Rec::with(|cx, s, ev| {
                if *ev == Ev::Connected {
                    cx.send(s, b"bye").unwrap();
                    cx.close(s).unwrap();
                    assert_eq!(cx.close(s), refused(Op::Close, State::Closing));
                    assert_eq!(cx.send(s, b"more"), refused(Op::Send, State::Closing));
                    assert_eq!(
                        cx.recv(s, 1, RecvMode::Partial),
                        refused(Op::Recv, State::Closing)
                    );
                    assert_eq!(cx.shutdown(s), refused(Op::Shutdown, State::Closing));
                    assert_eq!(cx.listen(s), refused(Op::Listen, State::Closing));
                    assert_eq!(cx.state(s), State::Closing);
                }
            }),
        );
        run_until(&mut m, LIMIT, move |log| log.is_closed(c));
        assert!(!m.shared().timed_out, "{t:?}");
        assert_eq!(peer.join().unwrap(), b"bye");
        let done = m.shared().closed(c);
        assert_eq!(done.reason, Reason::Normal, "{t:?}");
        assert_eq!(
            (done.unsent, done.unread),
            (0, 3),
            "{t:?}: the echo was drained and counted"
        );
    }
}

/// A socket that closed by itself inside a callback: the id is still there
/// until on_closed has run, and refuses everything.
#[test]
fn calls_after_the_end_but_before_on_closed_are_refused() {
    let mut m = mux();
    let s = m.stream(Rec::quiet());
    m.reset(s).unwrap();
    let gone = State::NotConnected;
    assert_eq!(m.reset(s), refused(Op::Reset, gone));
    assert_eq!(m.discard(s), refused(Op::Discard, gone));
    assert_eq!(m.close(s), refused(Op::Close, gone));
    assert_eq!(m.connect(s, "127.0.0.1:9"), refused(Op::Connect, gone));
    assert_eq!(m.listen(s), refused(Op::Listen, gone));
    assert_eq!(m.bind(s, "127.0.0.1:0"), refused(Op::Bind, gone));
    assert_eq!(m.send(s, b"x"), refused(Op::Send, gone));
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_eq!(m.shared().of(s).len(), 1);
    assert_eq!(m.shared().closed(s).reason, Reason::Reset);
    assert_stale(&mut m, s);
}

#[test]
fn errors_read_as_sentences() {
    let mut m = mux();
    let s = m.stream(Rec::quiet());
    let cases = [
        (
            ApiError::StaleSocket(s),
            format!("socket #{} is closed or unknown", s.index()),
        ),
        (
            ApiError::Refused(Refused {
                op: Op::Send,
                state: State::NoSend,
            }),
            "cannot send on a socket in state no_send".to_owned(),
        ),
        (
            ApiError::Refused(Refused {
                op: Op::Recv,
                state: State::Listening,
            }),
            "cannot recv on a socket in state listening".to_owned(),
        ),
        (
            ApiError::RecvPending,
            "a recv is already pending on this socket".to_owned(),
        ),
        (
            ApiError::ZeroLengthRecv,
            "cannot recv zero bytes".to_owned(),
        ),
        (
            ApiError::RecvTooLarge(1 << 31),
            "an exact recv of 2147483648 bytes is over the limit of 1073741824 bytes".to_owned(),
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
        assert!(
            !text.ends_with('.') && text.chars().next().unwrap().is_lowercase(),
            "{text}"
        );
    }
    // A refusal keeps its details reachable as the error's source.
    assert_eq!(
        m.send(s, b""),
        refused(Op::Send, State::NotConnected),
        "not before connect"
    );
    let e = m
        .listen(s)
        .and_then(|()| m.recv(s, 1, RecvMode::Partial))
        .unwrap_err();
    let source = std::error::Error::source(&e).expect("a source").to_string();
    assert_eq!(source, e.to_string());
}
