//! UDP associations on real sockets, against plain std::net peers on
//! loopback: a UDP listener gives each admitted peer a socket of its own,
//! with its own user, recv, send, idle timeout and end.
//!
//! Peers send before the loop runs (the datagrams wait in the listener's
//! receive queue) and read the answers after it stopped, with a read timeout,
//! so a lost datagram fails a test instead of hanging it.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use tether::{
    ApiError, DiscardMethod, IoMux, Op, Reason, RecvMode, Refused, SockAddr, SocketId, State,
    TestClock, Timeouts,
};

const LIMIT: Duration = Duration::from_secs(20);

/// A blocking std peer on loopback that gives up reading after a while.
fn peer() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("std peer binds");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock
}

/// The next datagram `sock` receives, and its source.
fn recv(sock: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("a datagram comes");
    (buf[..n].to_vec(), from)
}

/// Nothing more waits for `sock`.
fn nothing_more(sock: &UdpSocket) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let got = sock.recv_from(&mut buf);
    assert!(got.is_err(), "unexpected datagram: {got:?}");
}

/// An association that echoes every datagram.
fn echo() -> Rec {
    Rec::with(|cx, s, ev| match ev {
        Ev::Accepted => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
        Ev::Received(d) => {
            cx.send(s, d).unwrap();
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
        _ => {}
    })
}

/// An association that echoes every datagram and tells `tx` of each callback.
fn echoing(tx: &mpsc::Sender<(SocketId, Ev)>) -> Rec {
    told(tx, |cx, s, ev| match ev {
        Ev::Accepted => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
        Ev::Received(d) => {
            cx.send(s, d).unwrap();
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
        _ => {}
    })
}

/// A UDP listener on loopback with `user`, and its address.
fn udp_listener(mux: &mut IoMux<Log>, user: Rec) -> (SocketId, SocketAddr) {
    let l = mux.udp(user);
    mux.bind(l, "127.0.0.1:0").unwrap();
    mux.listen(l).unwrap();
    let addr = inet(mux, l);
    (l, addr)
}

fn incoming(log: &Log, l: SocketId) -> Vec<Option<SockAddr>> {
    log.of(l)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Incoming(peer) => Some(peer),
            _ => None,
        })
        .collect()
}

/// How many datagrams `s` received.
fn datagrams(log: &Log, s: SocketId) -> usize {
    log.of(s)
        .iter()
        .filter(|e| matches!(e, Ev::Received(_)))
        .count()
}

#[test]
fn two_peers_get_an_association_each_with_its_own_echo() {
    let clock = TestClock::new();
    let mut mux = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    let (l, addr) = udp_listener(&mut mux, Rec::listener(move || Some(echoing(&tx))));
    run_script(&mut mux, &clock, move |sc| {
        let (a, b) = (peer(), peer());
        a.send_to(b"a1", addr).unwrap();
        b.send_to(b"b1", addr).unwrap();
        a.send_to(b"a2", addr).unwrap();
        b.send_to(b"b2", addr).unwrap();
        for _ in 0..4 {
            sc.next(&rx, |(_, e)| matches!(e, Ev::Received(_)));
        }
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        sc.look(move |cx| {
            let log = cx.shared();
            assert_eq!(
                incoming(log, l),
                vec![Some(SockAddr::Inet(a_addr)), Some(SockAddr::Inet(b_addr))]
            );
            let accepted = log.accepted();
            // Each association sees its own peer's datagrams, in order, and
            // no other's.
            assert_eq!(log.received(accepted[0]), b"a1a2");
            assert_eq!(log.received(accepted[1]), b"b1b2");
            // The listener's user saw no datagram of a live association.
            assert!(log
                .of(l)
                .iter()
                .all(|e| !matches!(e, Ev::Received(_) | Ev::ReceivedFrom(..))));
            assert_eq!(cx.peer_addr(accepted[0]), Some(SockAddr::Inet(a_addr)));
            assert_eq!(cx.peer_addr(accepted[1]), Some(SockAddr::Inet(b_addr)));
            assert_eq!(cx.local_addr(accepted[1]), cx.local_addr(l));
            assert_eq!(cx.state(accepted[0]), State::Connected);
        });
        // The echoes come from the listener's address, each to its own peer.
        assert_eq!(recv(&a), (b"a1".to_vec(), addr));
        assert_eq!(recv(&a), (b"a2".to_vec(), addr));
        assert_eq!(recv(&b), (b"b1".to_vec(), addr));
        assert_eq!(recv(&b), (b"b2".to_vec(), addr));
        nothing_more(&a);
        nothing_more(&b);
    });
}

#[test]
fn the_datagram_that_opens_an_association_is_its_first() {
    let mut mux = mux();
    let (_l, addr) = udp_listener(&mut mux, Rec::listener(|| Some(echo())));
    let a = peer();
    a.send_to(b"hello", addr).unwrap();
    run_until(&mut mux, LIMIT, |log| {
        log.accepted()
            .first()
            .is_some_and(|&s| datagrams(log, s) == 1)
    });
    let log = mux.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    let s = log.accepted()[0];
    assert_eq!(
        log.of(s)
            .into_iter()
            .filter(|e| !matches!(e, Ev::Sent | Ev::Closed(_)))
            .collect::<Vec<_>>(),
        vec![Ev::Accepted, Ev::Received(b"hello".to_vec())]
    );
    assert_eq!(recv(&a).0, b"hello");
}

#[test]
fn a_denied_datagram_is_dropped_and_the_peer_asked_again() {
    let mut mux = mux();
    let mut asked = 0;
    let listener = Rec::listener(move || {
        asked += 1;
        (asked > 1).then(echo)
    });
    let (l, addr) = udp_listener(&mut mux, listener);
    let a = peer();
    a.send_to(b"x", addr).unwrap();
    a.send_to(b"y", addr).unwrap();
    run_until(&mut mux, LIMIT, |log| {
        log.accepted()
            .first()
            .is_some_and(|&s| datagrams(log, s) == 1)
    });
    let log = mux.shared();
    assert!(!log.timed_out, "{:?}", log.events);
    assert_eq!(incoming(log, l).len(), 2);
    assert_eq!(log.received(log.accepted()[0]), b"y");
    assert_eq!(recv(&a).0, b"y");
    nothing_more(&a);
}

#[test]
fn max_connections_refuses_new_peers_until_an_association_closed() {
    let clock = TestClock::new();
    let mut mux = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    let (l, addr) = udp_listener(&mut mux, Rec::listener(move || Some(echoing(&tx))));
    mux.max_connections(l, Some(1)).unwrap();
    run_script(&mut mux, &clock, move |sc| {
        let (a, b) = (peer(), peer());
        a.send_to(b"a", addr).unwrap();
        let (first, _) = sc.next(&rx, |(_, e)| matches!(e, Ev::Received(_)));
        assert_eq!(recv(&a).0, b"a");
        // At the limit: dropped without asking the listener's user.
        b.send_to(b"b", addr).unwrap();
        // Once `a`'s next echo came back, `b`'s datagram was read before it.
        a.send_to(b"a again", addr).unwrap();
        assert_eq!(recv(&a).0, b"a again");
        assert_eq!(sc.look(move |cx| incoming(cx.shared(), l).len()), 1);
        nothing_more(&b);

        sc.look(move |cx| cx.close(first).unwrap());
        sc.next(&rx, |(id, e)| *id == first && matches!(e, Ev::Closed(_)));
        b.set_nonblocking(false).unwrap();
        b.send_to(b"b again", addr).unwrap();
        let (second, ev) = sc.next(&rx, |(_, e)| matches!(e, Ev::Received(_)));
        assert_ne!(second, first);
        assert_eq!(ev, Ev::Received(b"b again".to_vec()));
        assert_eq!(recv(&b).0, b"b again");
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let peers = sc.look(move |cx| incoming(cx.shared(), l));
        assert_eq!(
            peers,
            vec![Some(SockAddr::Inet(a_addr)), Some(SockAddr::Inet(b_addr))]
        );
        assert_eq!(sc.look(move |cx| cx.shared().received(second)), b"b again");
    });
}

#[test]
fn an_idle_association_times_out_while_its_listener_lives() {
    let clock = TestClock::new();
    let mut mux = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    let user = {
        let tx = tx.clone();
        move || {
            Some(told(&tx, |cx, s, ev| {
                if *ev == Ev::Accepted {
                    let idle = Timeouts {
                        idle: Some(Duration::from_secs(5)),
                        ..Timeouts::default()
                    };
                    cx.set_timeouts(s, idle).unwrap();
                    cx.recv(s, 2048, RecvMode::Partial).unwrap();
                }
            }))
        }
    };
    let (l, addr) = udp_listener(&mut mux, Rec::listener(user));
    let a = peer();
    run_script(&mut mux, &clock, move |sc| {
        a.send_to(b"ping", addr).unwrap();
        let (s, _) = sc.next(&rx, |(_, e)| matches!(e, Ev::Received(_)));
        sc.advance(Duration::from_secs(3));
        assert_eq!(
            sc.look(move |cx| cx.idle_for(s)),
            Some(Duration::from_secs(3))
        );
        sc.advance(Duration::from_secs(3));
        let (_, ev) = sc.next(&rx, |(id, e)| *id == s && matches!(e, Ev::Closed(_)));
        let Ev::Closed(done) = ev else { unreachable!() };
        assert_eq!(done.reason, Reason::IdleTimeout);
        assert_eq!(done.discard, Some(DiscardMethod::Silent));
        assert_eq!(sc.look(move |cx| cx.state(l)), State::Connected);
        assert!(!sc.look(move |cx| cx.shared().is_closed(l)));
    });
}

#[test]
fn closing_the_listener_ends_every_association() {
    let clock = TestClock::new();
    let mut mux = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    // Associations that never recv: what came for them is unread.
    let (l, addr) = udp_listener(
        &mut mux,
        Rec::listener(move || Some(told(&tx, |_, _, _| {}))),
    );
    run_script(&mut mux, &clock, move |sc| {
        let (a, b) = (peer(), peer());
        a.send_to(b"a1", addr).unwrap();
        b.send_to(b"b1", addr).unwrap();
        a.send_to(b"a22", addr).unwrap();
        let (first, _) = sc.next(&rx, |(_, e)| *e == Ev::Accepted);
        let (second, _) = sc.next(&rx, |(_, e)| *e == Ev::Accepted);
        // A look after the peers' datagrams: all three were read by then.
        let refused = sc.look(move |cx| cx.recv(l, 10, RecvMode::Partial));
        assert!(matches!(refused, Err(ApiError::Unsupported { .. })));
        sc.look(move |cx| cx.close(l).unwrap());
        // In either order.
        let (one, _) = sc.next(&rx, |(_, e)| matches!(e, Ev::Closed(_)));
        let (other, _) = sc.next(&rx, |(_, e)| matches!(e, Ev::Closed(_)));
        let mut ended = [one, other];
        ended.sort_by_key(|s| [first, second].iter().position(|x| x == s));
        assert_eq!(ended, [first, second]);
        sc.look(move |cx| {
            let log = cx.shared();
            for s in [l, first, second] {
                assert_eq!(log.close_count(s), 1);
                assert_eq!(log.closed(s).reason, Reason::Discarded);
            }
            assert_eq!(log.closed(first).unread, 5);
            assert_eq!(log.closed(second).unread, 2);
        });
    });
}

/// `listen` takes a bound, unconnected UDP socket, once.
#[test]
fn listen_needs_a_bound_unconnected_udp_socket() {
    let mut m = mux();
    let fresh = m.udp(Rec::quiet());
    let refused = |m: &IoMux<Log>, s| {
        Err(ApiError::Refused(Refused {
            op: Op::Listen,
            state: m.state(s),
        }))
    };
    assert_eq!(m.listen(fresh), refused(&m, fresh));
    let connected = m.udp(Rec::quiet());
    m.connect(connected, "127.0.0.1:9").unwrap();
    assert_eq!(m.listen(connected), refused(&m, connected));
    let (l, _) = udp_listener(&mut m, Rec::quiet());
    assert_eq!(m.listen(l), refused(&m, l));
    assert_eq!(m.state(l), State::Connected, "a UDP listener stays open");
    assert!(matches!(
        m.connect(l, "127.0.0.1:9"),
        Err(ApiError::Refused(Refused {
            op: Op::Connect,
            ..
        }))
    ));
}

/// An association's queue holds 64 datagrams; those beyond are dropped and
/// count as unread when it ends.
#[test]
fn a_full_association_queue_drops_and_counts() {
    let clock = TestClock::new();
    let mut mux = mux_on(&clock);
    let (tx, rx) = mpsc::channel();
    // Its recv starts only once every datagram was read.
    let user = move || {
        Some(told(&tx, |cx, s, ev| {
            if matches!(ev, Ev::Received(_)) {
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
            }
        }))
    };
    let (_l, addr) = udp_listener(&mut mux, Rec::listener(user));
    run_script(&mut mux, &clock, move |sc| {
        let a = peer();
        for i in 0..70u8 {
            a.send_to(&[i; 10], addr).unwrap();
        }
        let (s, _) = sc.next(&rx, |(_, e)| *e == Ev::Accepted);
        sc.look(move |cx| cx.recv(s, 2048, RecvMode::Partial).unwrap());
        for i in 0..64u8 {
            let (_, ev) = sc.next(&rx, |(_, e)| matches!(e, Ev::Received(_)));
            assert_eq!(ev, Ev::Received(vec![i; 10]));
        }
        sc.settle();
        sc.look(move |cx| cx.close(s).unwrap());
        let (_, ev) = sc.next(&rx, |(id, e)| *id == s && !matches!(e, Ev::Sent));
        let Ev::Closed(done) = ev else {
            panic!("more than 64 datagrams: {ev:?}")
        };
        assert_eq!(done.reason, Reason::Discarded);
        assert_eq!(done.unread, 60, "6 datagrams of 10 bytes dropped");
    });
}
