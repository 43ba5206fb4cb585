//! UDP on real sockets, against plain std::net peers on loopback: datagrams
//! both ways over IPv4 and IPv6, connected mode, truncation, an unreachable
//! peer, every way of ending, the typed misuse errors, and the send queue under
//! a rate-limited link (in a private network namespace).
//!
//! Peers are blocking std sockets in threads with read timeouts, so a lost
//! datagram fails a test instead of hanging it. Each loop runs until the test's
//! condition holds (`run_until`), bounded by `LIMIT`.

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::*;
use tether::{
    ApiError, Closed, Cx, DiscardMethod, IoMux, Reason, RecvMode, SockAddr, SocketId, SocketUser,
    State, Transport,
};

const LIMIT: Duration = Duration::from_secs(20);

/// How long a blocking std peer waits for a datagram before the test fails.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// A receive buffer no burst of these tests can fill.
const BIG_RCVBUF: usize = 4 << 20;

// ----- helpers -----

/// Sets a flag when dropped, also when its thread panics: the loop's exit
/// condition can then stop waiting for a peer that died.
struct Finished(Arc<AtomicBool>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Join a peer thread, passing its panic on.
fn join<T>(peer: thread::JoinHandle<T>) -> T {
    peer.join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A blocking std socket bound to `addr`, with a read timeout and a big
/// receive buffer.
fn std_peer(addr: &str) -> UdpSocket {
    let sock = UdpSocket::bind(addr).expect("std peer binds");
    sock.set_read_timeout(Some(PEER_WAIT)).unwrap();
    set_rcvbuf(&sock);
    sock
}

/// A big receive buffer, past `rmem_max` when the process may (root).
fn set_rcvbuf(fd: &impl std::os::fd::AsFd) {
    let sock = socket2::SockRef::from(fd);
    if sock.set_recv_buffer_size(BIG_RCVBUF).is_err() {
        eprintln!("note: could not enlarge SO_RCVBUF");
    }
    // SO_RCVBUFFORCE lifts the rmem_max cap for root; harmless when refused.
    let size = BIG_RCVBUF as libc::c_int;
    // SAFETY: a valid descriptor and an option value of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A new tether UDP socket bound to `addr`, and the address it got.
fn bound(m: &mut IoMux<Log>, addr: &str, user: Rec) -> (SocketId, SocketAddr) {
    let s = m.udp(user);
    assert_eq!(m.bind(s, addr), Ok(()));
    let at = inet(m, s);
    assert_ne!(at.port(), 0, "port 0 was replaced by the system's pick");
    (s, at)
}

/// Datagram number `i`: sizes over 0..=1400 (number 0 is empty), the number in
/// the first four bytes when there is room, the rest a pattern of it.
fn datagram(i: usize) -> Vec<u8> {
    let size = (i * 389) % 1401;
    let mut d: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
    if size >= 4 {
        d[..4].copy_from_slice(&(i as u32).to_le_bytes());
    }
    d
}

/// Every datagram `s` received with `on_received_from`, with its source.
fn received_from(log: &Log, s: SocketId) -> Vec<(Vec<u8>, SocketAddr)> {
    log.of(s)
        .into_iter()
        .filter_map(|e| match e {
            Ev::ReceivedFrom(d, from) => Some((d, from)),
            _ => None,
        })
        .collect()
}

/// Every datagram `s` received with `on_received` (connected mode).
fn received(log: &Log, s: SocketId) -> Vec<Vec<u8>> {
    log.of(s)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Received(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn sent_count(log: &Log, s: SocketId) -> usize {
    log.events
        .iter()
        .filter(|(id, e)| *id == s && *e == Ev::Sent)
        .count()
}

#[track_caller]
fn assert_no_timeout(m: &IoMux<Log>) {
    assert!(!m.shared().timed_out, "timed out: {:?}", m.shared().events);
}

/// A Closed record as a UDP socket's end always looks.
#[track_caller]
fn assert_discarded(done: &Done, unsent: u64, unread: u64) {
    assert_eq!(done.reason, Reason::Discarded, "{done:?}");
    assert_eq!(done.discard, Some(DiscardMethod::Silent), "{done:?}");
    assert_eq!((done.unsent, done.unread), (unsent, unread), "{done:?}");
    assert_eq!(done.error, None, "{done:?}");
}

// ----- datagrams both ways -----

/// 2,000 datagrams of 0 to 1,400 bytes from a std peer, each delivered exactly
/// once with its source, each echoed back with `send_to` and checked there.
/// The peer sends in bursts of 50 and waits for their echoes, so no buffer
/// can overflow.
fn many_datagrams_both_ways(bind: &str) {
    const COUNT: usize = 2_000;
    const BURST: usize = 50;
    let mut m = mux();
    let (s, at) = bound(
        &mut m,
        bind,
        Rec::with(|cx, s, ev| match ev {
            Ev::Bound(_) => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
            Ev::ReceivedFrom(d, from) => {
                cx.send_to(s, d, *from).unwrap();
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    set_rcvbuf(&m.as_fd(s).unwrap());
    assert_eq!(m.transport(s), Some(Transport::Udp));
    assert_eq!(m.state(s), State::Connected, "a bound UDP socket is open");
    assert_eq!(m.peer_addr(s), None);

    let peer = std_peer(&SocketAddr::new(at.ip(), 0).to_string());
    let peer_at = peer.local_addr().unwrap();
    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let peer = thread::spawn(move || {
        let _finished = Finished(flag);
        let mut buf = vec![0; 2048];
        for first in (0..COUNT).step_by(BURST) {
            let mut sent: Vec<Vec<u8>> = (first..first + BURST).map(datagram).collect();
            for d in &sent {
                assert_eq!(peer.send_to(d, at).unwrap(), d.len());
            }
            let mut echoes = Vec::new();
            for _ in 0..BURST {
                let (n, from) = peer
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("echo of burst {first}: {e}"));
                assert_eq!(from, at, "the echo comes from the tether socket");
                echoes.push(buf[..n].to_vec());
            }
            sent.sort();
            echoes.sort();
            assert!(echoes == sent, "the echoes of burst {first} differ");
        }
    });
    run_until(&mut m, LIMIT, move |log| {
        sent_count(log, s) == COUNT || finished.load(Ordering::Acquire)
    });
    join(peer);
    assert_no_timeout(&m);

    let log = m.shared();
    let events = log.of(s);
    assert_eq!(events[0], Ev::Bound(SockAddr::Inet(at)), "on_bound first");
    let got = received_from(log, s);
    assert_eq!(got.len(), COUNT, "one on_received_from per datagram");
    for (d, from) in &got {
        assert_eq!(*from, peer_at, "the source of {d:?}");
    }
    let mut got: Vec<Vec<u8>> = got.into_iter().map(|(d, _)| d).collect();
    let mut want: Vec<Vec<u8>> = (0..COUNT).map(datagram).collect();
    assert!(want.iter().any(Vec::is_empty), "an empty datagram is sent");
    got.sort();
    want.sort();
    assert!(got == want, "each datagram exactly once, intact");
    assert_eq!(sent_count(log, s), COUNT, "one on_sent per datagram");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Ev::Received(_) | Ev::Truncated { .. })),
        "an unconnected socket reports with on_received_from only"
    );
    // Terminating the loop stops the socket.
    let done = log.closed(s);
    assert_eq!(done.reason, Reason::Stopped, "{done:?}");
    assert_eq!((done.unsent, done.unread), (0, 0), "{done:?}");
}

#[test]
fn many_datagrams_both_ways_ipv4() {
    many_datagrams_both_ways("127.0.0.1:0");
}

#[test]
fn many_datagrams_both_ways_ipv6() {
    many_datagrams_both_ways("[::1]:0");
}

/// The largest datagrams go through whole, both ways, in both families.
#[test]
fn the_largest_datagrams_go_through() {
    for (bind, max) in [("127.0.0.1:0", 65_507), ("[::1]:0", 65_527)] {
        let mut m = mux();
        let (s, at) = bound(
            &mut m,
            bind,
            Rec::with(|cx, s, ev| {
                if let Ev::Bound(_) = ev {
                    cx.recv(s, 1 << 17, RecvMode::Partial).unwrap();
                }
            }),
        );
        let peer = std_peer(&SocketAddr::new(at.ip(), 0).to_string());
        let peer_at = peer.local_addr().unwrap();
        let big: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
        assert_eq!(m.send_to(s, &big, peer_at), Ok(()), "{bind}");
        let mut buf = vec![0; 1 << 17];
        let (n, from) = peer.recv_from(&mut buf).expect("the largest datagram");
        assert_eq!((n, from), (max, at), "{bind}");
        assert!(buf[..n] == big[..], "{bind}: content");
        assert_eq!(peer.send_to(&big, at).unwrap(), max, "{bind}");
        run_until(&mut m, LIMIT, move |log| !received_from(log, s).is_empty());
        assert_no_timeout(&m);
        let got = received_from(m.shared(), s);
        assert_eq!(got.len(), 1, "{bind}");
        assert_eq!(got[0].0.len(), max, "{bind}: delivered whole");
        assert!(got[0].0 == big && got[0].1 == peer_at, "{bind}: content");
        assert_eq!(sent_count(m.shared(), s), 1);
    }
}

// ----- connected mode -----

/// `connect` fixes the peer: `send` goes to it, `on_received` brings what it
/// sent, and datagrams from anyone else never arrive.
#[test]
fn connected_mode_talks_to_its_peer_only() {
    const COUNT: usize = 100;
    let mut m = mux();
    let (s, at) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(|cx, s, ev| match ev {
            Ev::Connected => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    let peer = std_peer("127.0.0.1:0");
    let peer_at = peer.local_addr().unwrap();
    let third = std_peer("127.0.0.1:0");
    assert_eq!(m.connect(s, &peer_at.to_string()), Ok(()));
    assert_eq!(m.state(s), State::Connected, "a UDP connect is immediate");
    assert_eq!(m.peer_addr(s), Some(SockAddr::Inet(peer_at)));
    assert_eq!(m.local_addr(s), Some(SockAddr::Inet(at)));

    let finished = Arc::new(AtomicBool::new(false));
    let flag = finished.clone();
    let peer = thread::spawn(move || {
        let _finished = Finished(flag);
        let mut buf = vec![0; 2048];
        for i in 0..COUNT {
            // Someone else writes first; the kernel drops it, as it does not
            // come from the connected peer.
            third.send_to(b"intruder", at).unwrap();
            let d = datagram(i);
            peer.send_to(&d, at).unwrap();
            let (n, from) = peer.recv_from(&mut buf).expect("echo");
            assert_eq!(from, at);
            assert!(buf[..n] == d[..], "echo {i}");
        }
        third
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(
            third.recv_from(&mut buf).is_err(),
            "the third socket got an answer"
        );
    });
    run_until(&mut m, LIMIT, move |log| {
        sent_count(log, s) == COUNT || finished.load(Ordering::Acquire)
    });
    join(peer);
    assert_no_timeout(&m);

    let log = m.shared();
    let events = log.of(s);
    assert_eq!(events[..2], [Ev::Bound(SockAddr::Inet(at)), Ev::Connected]);
    let want: Vec<Vec<u8>> = (0..COUNT).map(datagram).collect();
    assert!(received(log, s) == want, "the peer's datagrams, in order");
    assert!(
        received_from(log, s).is_empty(),
        "a connected socket reports with on_received"
    );
    assert_eq!(sent_count(log, s), COUNT);
    let done = log.closed(s);
    assert_eq!(
        (done.reason, done.unread),
        (Reason::Stopped, 0),
        "the intruders' datagrams never reached the socket: {done:?}"
    );
}

/// Connecting again moves the socket to another peer.
#[test]
fn connect_again_changes_the_peer() {
    let mut m = mux();
    let (s, at) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(|cx, s, ev| {
            if let Ev::Received(_) = ev {
                cx.send(s, b"to b").unwrap();
            }
        }),
    );
    let (a, b) = (std_peer("127.0.0.1:0"), std_peer("127.0.0.1:0"));
    let (a_at, b_at) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    assert_eq!(m.connect(s, &a_at.to_string()), Ok(()));
    assert_eq!(m.connect(s, &b_at.to_string()), Ok(()));
    assert_eq!(m.peer_addr(s), Some(SockAddr::Inet(b_at)));
    assert_eq!(m.recv(s, 100, RecvMode::Partial), Ok(()));
    a.send_to(b"from a", at).unwrap();
    b.send_to(b"from b", at).unwrap();
    run_until(&mut m, LIMIT, move |log| sent_count(log, s) == 1);
    assert_no_timeout(&m);
    let mut buf = [0; 16];
    let (n, from) = b.recv_from(&mut buf).expect("b hears from the socket");
    assert_eq!((&buf[..n], from), (&b"to b"[..], at));
    assert_eq!(
        m.shared().of(s)[..4],
        [
            Ev::Bound(SockAddr::Inet(at)),
            Ev::Connected,
            Ev::Connected,
            Ev::Received(b"from b".to_vec()),
        ],
        "a's datagram, sent first, was filtered out"
    );
}

/// `send` needs a peer; a socket that is not even bound refuses any send.
#[test]
fn send_without_a_peer_is_refused() {
    let mut m = mux();
    let (s, _) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    assert_eq!(m.send(s, b"where to?"), Err(ApiError::NoPeer));
    assert_eq!(m.send(s, b""), Err(ApiError::NoPeer));
    let fresh = m.udp(Rec::quiet());
    assert!(
        matches!(m.send(fresh, b"x"), Err(ApiError::Refused(_))),
        "{:?}",
        m.send(fresh, b"x")
    );
    assert_eq!(m.state(fresh), State::NotConnected);
    assert_eq!(m.local_addr(fresh), None, "a refused send binds nothing");
    assert_eq!(m.close(s), Ok(()));
    assert_eq!(m.close(fresh), Ok(()));
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(s) && log.is_closed(fresh)
    });
    assert_no_timeout(&m);
    assert!(!m.shared().of(s).contains(&Ev::Sent), "nothing was sent");
    assert_discarded(&m.shared().closed(s), 0, 0);
}

// ----- truncation -----

/// A user that implements only what it must: no `on_truncated`.
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

/// A datagram longer than the recv is reported as cut, with its first bytes
/// and its length, never delivered as if whole; the rest counts as unread.
#[test]
fn a_longer_datagram_is_reported_truncated() {
    let mut m = mux();
    let (s, at) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(|cx, s, ev| match ev {
            Ev::Bound(_) | Ev::Truncated { .. } => cx.recv(s, 10, RecvMode::Partial).unwrap(),
            Ev::ReceivedFrom(..) => cx.close(s).unwrap(),
            _ => {}
        }),
    );
    let peer = std_peer("127.0.0.1:0");
    let peer_at = peer.local_addr().unwrap();
    let long: Vec<u8> = (0..100).collect();
    peer.send_to(&long, at).unwrap();
    peer.send_to(b"short", at).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    let events = m.shared().of(s);
    assert_eq!(
        events[..3],
        [
            Ev::Bound(SockAddr::Inet(at)),
            Ev::Truncated {
                data: long[..10].to_vec(),
                len: 100,
                from: peer_at
            },
            Ev::ReceivedFrom(b"short".to_vec(), peer_at),
        ]
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert_discarded(&m.shared().closed(s), 0, 90);
}

/// Without `on_truncated`, a cut datagram is dropped whole (and counted), and
/// the recv waits on for the next datagram, which arrives as usual.
#[test]
fn by_default_a_longer_datagram_is_dropped() {
    let mut m = mux();
    let s = m.udp(Plain);
    assert_eq!(m.bind(s, "127.0.0.1:0"), Ok(()));
    let at = inet(&m, s);
    let peer = std_peer("127.0.0.1:0");
    let peer_at = peer.local_addr().unwrap();
    peer.send_to(&[7; 100], at).unwrap();
    peer.send_to(b"short", at).unwrap();
    run_until(&mut m, LIMIT, move |log| !received_from(log, s).is_empty());
    assert_no_timeout(&m);
    assert_eq!(
        m.shared().of(s)[..2],
        [
            Ev::Bound(SockAddr::Inet(at)),
            Ev::ReceivedFrom(b"short".to_vec(), peer_at),
        ],
        "the long datagram was dropped, the next one delivered"
    );
    let done = m.shared().closed(s);
    assert_eq!(
        (done.reason, done.unread),
        (Reason::Stopped, 100),
        "the whole dropped datagram is unread: {done:?}"
    );
}

/// An empty datagram answers a recv with an empty slice: it is a datagram.
#[test]
fn an_empty_datagram_is_delivered() {
    let mut m = mux();
    let (s, at) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(|cx, s, ev| {
            if let Ev::Bound(_) = ev {
                cx.recv(s, 1, RecvMode::Partial).unwrap();
            }
        }),
    );
    let peer = std_peer("127.0.0.1:0");
    peer.send_to(b"", at).unwrap();
    run_until(&mut m, LIMIT, move |log| !received_from(log, s).is_empty());
    assert_no_timeout(&m);
    assert_eq!(
        received_from(m.shared(), s),
        [(vec![], peer.local_addr().unwrap())]
    );
}

// ----- an unreachable peer -----

/// A port where nothing listens: bound once, then let go.
fn dead_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The ICMP port-unreachable that answers a datagram to nobody ends a
/// connected socket with `Lost` and ECONNREFUSED, whether or not a recv waits.
#[test]
fn an_unreachable_peer_is_lost() {
    for recv_pending in [true, false] {
        let mut m = mux();
        let (s, _) = bound(
            &mut m,
            "127.0.0.1:0",
            Rec::with(move |cx, s, ev| {
                if let Ev::Connected = ev {
                    if recv_pending {
                        cx.recv(s, 100, RecvMode::Partial).unwrap();
                    }
                    cx.send(s, b"anyone?").unwrap();
                }
            }),
        );
        assert_eq!(m.connect(s, &dead_port().to_string()), Ok(()));
        run_until(&mut m, LIMIT, move |log| log.is_closed(s));
        assert_no_timeout(&m);
        let events = m.shared().of(s);
        let ctx = format!("recv pending: {recv_pending}: {events:?}");
        assert_eq!(events.len(), 4, "{ctx}");
        assert_eq!(events[1..3], [Ev::Connected, Ev::Sent], "{ctx}");
        let done = m.shared().closed(s);
        assert_eq!(done.reason, Reason::Lost, "{ctx}");
        assert_eq!(done.os_error, Some(libc::ECONNREFUSED), "{ctx}");
        assert!(done.error.is_some(), "{ctx}");
        assert_eq!(
            (done.unsent, done.unread, done.discard),
            (0, 0, None),
            "{ctx}"
        );
    }
}

/// An unconnected socket has no one peer to lose: Linux does not report the
/// ICMP error to it, and it goes on.
#[test]
fn an_unreachable_destination_does_not_end_an_unconnected_socket() {
    let mut m = mux();
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let (s, at) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(move |cx, s, ev| match ev {
            Ev::Bound(_) => cx.recv(s, 100, RecvMode::Partial).unwrap(),
            Ev::Sent => {
                let _ = sent_tx.send(());
            }
            _ => {}
        }),
    );
    assert_eq!(m.send_to(s, b"anyone?", dead_port()), Ok(()));
    let peer = std_peer("127.0.0.1:0");
    let late = thread::spawn(move || {
        // Once the datagram to the dead port is out (on loopback its ICMP
        // error is back by then), not before.
        sent_rx.recv_timeout(LIMIT).expect("sent");
        peer.send_to(b"still here", at).unwrap();
        peer.local_addr().unwrap()
    });
    run_until(&mut m, LIMIT, move |log| !received_from(log, s).is_empty());
    let peer_at = join(late);
    assert_no_timeout(&m);
    assert_eq!(
        m.shared().of(s)[1..3],
        [Ev::Sent, Ev::ReceivedFrom(b"still here".to_vec(), peer_at)]
    );
    assert_eq!(m.shared().closed(s).reason, Reason::Stopped);
}

// ----- ending -----

/// An operation that ends a socket.
type End = fn(&mut Cx<Log>, SocketId) -> Result<(), ApiError>;

/// Every way of ending a UDP socket is a silent discard, bound or connected,
/// and lets go of its port.
#[test]
fn every_end_is_a_silent_discard() {
    let ends: [(&str, End); 3] = [
        ("close", |cx, s| cx.close(s)),
        ("reset", |cx, s| cx.reset(s)),
        ("discard", |cx, s| cx.discard(s)),
    ];
    let peer = std_peer("127.0.0.1:0");
    for (name, end) in ends {
        for connected in [false, true] {
            let ctx = format!("{name}, connected: {connected}");
            let mut m = mux();
            let (s, at) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
            if connected {
                let peer_at = peer.local_addr().unwrap().to_string();
                assert_eq!(m.connect(s, &peer_at), Ok(()));
            }
            assert_eq!(m.recv(s, 10, RecvMode::Partial), Ok(()));
            assert_eq!(end(&mut m, s), Ok(()), "{ctx}");
            assert_eq!(m.state(s), State::NotConnected, "{ctx}");
            assert!(
                m.shared().events.is_empty(),
                "{ctx}: callback inside the call"
            );
            assert!(
                matches!(end(&mut m, s), Err(ApiError::Refused(_))),
                "{ctx}: ending twice"
            );
            run_until(&mut m, LIMIT, move |log| log.is_closed(s));
            assert_no_timeout(&m);
            assert_discarded(&m.shared().closed(s), 0, 0);
            assert_eq!(m.shared().close_count(s), 1, "{ctx}");
            assert_eq!(m.send_to(s, b"x", at), Err(ApiError::StaleSocket(s)));
            UdpSocket::bind(at).unwrap_or_else(|e| panic!("{ctx}: port kept: {e}"));
        }
    }
}

/// Datagrams that arrived but were never received are counted when the
/// socket ends (rule 5: nothing dropped silently), by their real lengths.
#[test]
fn datagrams_never_received_are_counted_unread() {
    let mut m = mux();
    let (s, at) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    set_rcvbuf(&m.as_fd(s).unwrap());
    let peer = std_peer("127.0.0.1:0");
    for len in [0, 1, 100, 1400] {
        peer.send_to(&vec![7u8; len], at).unwrap();
    }
    // Loopback delivers at once; give the kernel a moment all the same.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(m.close(s), Ok(()));
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    assert_discarded(&m.shared().closed(s), 0, 1501);
}

/// A socket that was never bound has no descriptor: it just goes.
#[test]
fn ending_a_socket_never_bound() {
    let mut m = mux();
    let s = m.udp(Rec::quiet());
    assert_eq!(m.transport(s), Some(Transport::Udp));
    assert_eq!(m.state(s), State::NotConnected);
    assert_eq!(m.as_fd(s).map(|_| ()), None);
    assert_eq!(m.close(s), Ok(()));
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    let done = m.shared().closed(s);
    assert_eq!(
        (done.reason, done.discard, done.unsent, done.unread),
        (Reason::Discarded, None, 0, 0),
        "released: nothing to discard silently"
    );
}

// ----- misuse -----

fn unsupported(op: &'static str, transport: Transport) -> Result<(), ApiError> {
    Err(ApiError::Unsupported { op, transport })
}

/// What has no meaning for datagrams is a typed error, and changes nothing.
#[test]
fn stream_operations_are_unsupported_on_udp() {
    let mut m = mux();
    let fresh = m.udp(Rec::quiet());
    let (s, _) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    for s in [fresh, s] {
        let state = m.state(s);
        assert_eq!(m.shutdown(s), unsupported("shutdown", Transport::Udp));
        assert_eq!(
            m.recv(s, 10, RecvMode::Exact),
            unsupported("exact recv", Transport::Udp)
        );
        assert_eq!(m.state(s), state, "nothing changed");
    }
    assert_eq!(m.local_addr(fresh), None, "nothing was bound");
    // The refused Exact recv left the recv slot free.
    assert_eq!(m.recv(s, 10, RecvMode::Partial), Ok(()));
    assert_eq!(m.close(s), Ok(()));
    assert_eq!(m.close(fresh), Ok(()));
    run_until(&mut m, LIMIT, move |log| {
        log.is_closed(s) && log.is_closed(fresh)
    });
    assert_no_timeout(&m);
    assert!(!m.shared().of(s).contains(&Ev::Sent), "nothing was sent");
    assert_discarded(&m.shared().closed(s), 0, 0);
}

#[test]
fn send_to_on_a_stream_is_unsupported() {
    let to: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut m = mux();
    let fresh = m.stream(Rec::quiet());
    assert_eq!(
        m.send_to(fresh, b"x", to),
        unsupported("send_to", Transport::Tcp)
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = m.connect_to(
        &listener.local_addr().unwrap().to_string(),
        Rec::with(|cx, s, ev| {
            if let Ev::Connected = ev {
                cx.terminate();
                let to = "127.0.0.1:9".parse().unwrap();
                assert_eq!(
                    cx.send_to(s, b"x", to),
                    Err(ApiError::Unsupported {
                        op: "send_to",
                        transport: Transport::Tcp
                    })
                );
            }
        }),
    );
    let (_dir, path) = unix_path();
    let local = m.stream(Rec::quiet());
    assert_eq!(m.bind(local, &format!("unix:{}", path.display())), Ok(()));
    assert_eq!(
        m.send_to(local, b"x", to),
        unsupported("send_to", Transport::Local)
    );
    run_for(&mut m, LIMIT);
    assert_no_timeout(&m);
    assert!(m.shared().of(c).contains(&Ev::Connected));
}

/// A datagram over the largest UDP payload of its address family is refused
/// at the call, and the socket is left as it was.
#[test]
fn a_datagram_too_large_is_refused() {
    let v4: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let big = vec![0; 65_528];
    let mut m = mux();
    let (s4, _) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    let (s6, _) = bound(&mut m, "[::1]:0", Rec::quiet());
    let too_large = |len, max| Err(ApiError::DatagramTooLarge { len, max });
    assert_eq!(m.send_to(s4, &big[..65_508], v4), too_large(65_508, 65_507));
    assert_eq!(m.send_to(s6, &big[..65_528], v6), too_large(65_528, 65_527));
    assert_eq!(m.send_to(s6, &big[..65_528], v6), too_large(65_528, 65_527));

    // Connected: the peer's family decides.
    let peer = std_peer("[::1]:0");
    assert_eq!(
        m.connect(s6, &peer.local_addr().unwrap().to_string()),
        Ok(())
    );
    assert_eq!(m.send(s6, &big[..65_528]), too_large(65_528, 65_527));

    // On a socket not yet bound, the refusal binds nothing either.
    let fresh = m.udp(Rec::quiet());
    assert_eq!(
        m.send_to(fresh, &big[..65_508], v4),
        too_large(65_508, 65_507)
    );
    assert_eq!(m.local_addr(fresh), None, "a refused send_to binds nothing");
    assert_eq!(m.state(fresh), State::NotConnected);

    for s in [s4, s6, fresh] {
        assert_eq!(m.close(s), Ok(()));
    }
    run_until(&mut m, LIMIT, move |log| {
        [s4, s6, fresh].iter().all(|&s| log.is_closed(s))
    });
    assert_no_timeout(&m);
    let log = m.shared();
    assert!(
        !log.events.iter().any(|(_, e)| *e == Ev::Sent),
        "{:?}",
        log.events
    );
    assert_eq!(
        log.of(fresh).len(),
        1,
        "only on_closed: {:?}",
        log.of(fresh)
    );
    assert_discarded(&log.closed(s4), 0, 0);
    assert_discarded(&log.closed(s6), 0, 0);
}

/// A datagram the kernel refuses at once is an error of that one send; the
/// socket stays open and the next datagram goes.
#[test]
fn a_datagram_the_kernel_refuses_is_not_sent() {
    let peer = std_peer("127.0.0.1:0");
    let peer_at = peer.local_addr().unwrap();
    let mut m = mux();
    let (s, at) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    assert_eq!(
        m.send_to(s, b"wrong family", v6),
        Err(ApiError::NotSent(libc::EAFNOSUPPORT))
    );
    assert_eq!(m.state(s), State::Connected);
    assert_eq!(m.send_to(s, b"fine", peer_at), Ok(()));
    let mut buf = [0; 16];
    let (n, from) = peer.recv_from(&mut buf).expect("datagram");
    assert_eq!((&buf[..n], from), (&b"fine"[..], at));
    assert_eq!(m.close(s), Ok(()));
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    assert_eq!(
        sent_count(m.shared(), s),
        1,
        "one on_sent, for the datagram that went"
    );
    assert_discarded(&m.shared().closed(s), 0, 0);
}

/// Addresses a UDP socket cannot use end it, as they end a stream socket.
#[test]
fn unusable_addresses_end_the_socket() {
    let (_dir, path) = unix_path();
    let unix = format!("unix:{}", path.display());
    let cases: [(&str, bool); 4] = [
        ("nonsense", false),
        (&unix, false),
        ("nonsense", true),
        (&unix, true),
    ];
    for (addr, connect) in cases {
        let mut m = mux();
        let s = m.udp(Rec::quiet());
        let result = if connect {
            m.connect(s, addr)
        } else {
            m.bind(s, addr)
        };
        assert_eq!(result, Ok(()), "a failure is reported by on_closed");
        run_until(&mut m, LIMIT, move |log| log.is_closed(s));
        assert_no_timeout(&m);
        let done = m.shared().closed(s);
        let ctx = format!("{addr}, connect: {connect}: {done:?}");
        assert_eq!(done.reason, Reason::AddressInvalid, "{ctx}");
        assert!(done.error.is_some(), "{ctx}");
        assert_eq!(m.shared().of(s).len(), 1, "{ctx}");
        assert!(!path.exists(), "{ctx}: no socket file was made");
    }
}

/// `send_to` on a socket never bound binds it to every interface first.
#[test]
fn send_to_binds_a_fresh_socket() {
    let peer = std_peer("127.0.0.1:0");
    let peer_at = peer.local_addr().unwrap();
    let mut m = mux();
    let s = m.udp(Rec::with(|cx, s, ev| {
        if let Ev::Sent = ev {
            cx.close(s).unwrap();
        }
    }));
    assert_eq!(m.send_to(s, b"hello", peer_at), Ok(()));
    let mut buf = [0; 16];
    let (n, from) = peer.recv_from(&mut buf).expect("datagram");
    assert_eq!(&buf[..n], b"hello");
    let Some(SockAddr::Inet(local)) = m.local_addr(s) else {
        panic!("not bound")
    };
    assert!(local.ip().is_unspecified() && local.port() == from.port());
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    let events = m.shared().of(s);
    assert_eq!(events[..2], [Ev::Bound(SockAddr::Inet(local)), Ev::Sent]);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_discarded(&m.shared().closed(s), 0, 0);
}

// ----- the send queue, in a network namespace with a slow loopback -----

/// A private network namespace whose loopback sends at 2 Mbit/s, removed when
/// dropped (also when the test fails). UDP sends on a normal loopback never
/// meet a full buffer; here, with a small SO_SNDBUF, they do.
struct Netns {
    name: String,
}

impl Netns {
    /// `None`, with a notice, where the test cannot make one.
    fn new(tag: &str) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the queued-send tests need root for a network namespace");
            return None;
        }
        for tool in ["ip", "tc"] {
            if Command::new(tool).arg("-V").output().is_err() {
                eprintln!("skipped: `{tool}` is not installed");
                return None;
            }
        }
        let name = format!("tether-udp-{}-{tag}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipped: `ip netns add` failed");
            return None;
        }
        let ns = Netns { name };
        assert!(ip(&["-n", &ns.name, "link", "set", "lo", "up"]));
        let tbf = [
            "-n", &ns.name, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "2mbit", "burst",
            "32kbit", "latency", "2s",
        ];
        let status = Command::new("tc").args(tbf).status().expect("tc runs");
        assert!(status.success(), "tc qdisc add failed");
        Some(ns)
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Move the calling thread into the namespace at `path`: the sockets it opens
/// from now on live there.
fn enter(path: &str) {
    let ns = File::open(path).expect("namespace file");
    // SAFETY: a valid descriptor; CLONE_NEWNET only changes this thread's
    // network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

const FLOOD: usize = 300;
const FLOOD_SIZE: usize = 1000;

/// Flood datagram `i`: its number, then a pattern of it.
fn flood_datagram(i: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..FLOOD_SIZE).map(|j| (i + j) as u8).collect();
    d[..4].copy_from_slice(&(i as u32).to_le_bytes());
    d
}

/// A std peer in the namespace that reads flood datagrams as fast as it can,
/// checks each, and returns their numbers in arrival order once all `FLOOD`
/// came or none came for `quiet`. `count` follows the arrivals.
fn flood_reader(
    path: String,
    count: Arc<AtomicUsize>,
    quiet: Duration,
) -> (SocketAddr, thread::JoinHandle<Vec<usize>>) {
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        enter(&path);
        let sock = std_peer("127.0.0.1:0");
        sock.set_read_timeout(Some(quiet)).unwrap();
        tx.send(sock.local_addr().unwrap()).unwrap();
        let mut buf = vec![0; 4096];
        let mut seqs = Vec::new();
        while seqs.len() < FLOOD {
            let Ok(n) = sock.recv(&mut buf) else { break };
            let i = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            assert!(buf[..n] == flood_datagram(i)[..], "datagram {i} damaged");
            seqs.push(i);
            count.fetch_add(1, Ordering::Release);
        }
        seqs
    });
    let at = rx.recv_timeout(PEER_WAIT).expect("reader address");
    (at, reader)
}

/// A burst far beyond the socket's send buffer: most of it waits in tether's
/// queue, then goes out in order as the link drains, one `on_sent` each, and
/// the peer gets every datagram, in order.
#[test]
fn queued_sends_go_out_in_order_under_a_flood() {
    let Some(ns) = Netns::new("flood") else {
        return;
    };
    enter(&ns.path());
    let arrived = Arc::new(AtomicUsize::new(0));
    let (to, reader) = flood_reader(ns.path(), arrived.clone(), Duration::from_secs(5));

    let mut m = mux();
    let mut sent = 0;
    let (s, _) = bound(
        &mut m,
        "127.0.0.1:0",
        Rec::with(move |cx, s, ev| {
            if let Ev::Sent = ev {
                sent += 1;
                if sent == FLOOD {
                    cx.close(s).unwrap();
                }
            }
        }),
    );
    socket2::SockRef::from(&m.as_fd(s).unwrap())
        .set_send_buffer_size(4096)
        .unwrap();
    for i in 0..FLOOD {
        assert_eq!(m.send_to(s, &flood_datagram(i), to), Ok(()), "send {i}");
    }
    // The 2 Mbit/s link holds what the kernel took, so a 4 KiB send buffer
    // takes a few datagrams: the rest wait in tether's queue.
    let queued = m.unsent(s);
    assert!(
        queued >= ((FLOOD - 8) * FLOOD_SIZE) as u64,
        "only {queued} bytes queued: the kernel took the burst"
    );
    run_until(&mut m, Duration::from_secs(30), move |log| {
        log.is_closed(s) && arrived.load(Ordering::Acquire) == FLOOD
    });
    let seqs = join(reader);
    assert_no_timeout(&m);

    let events = m.shared().of(s);
    assert_eq!(
        events.len(),
        1 + FLOOD + 1,
        "bound, one on_sent each, closed"
    );
    assert!(events[1..=FLOOD].iter().all(|e| *e == Ev::Sent));
    assert_discarded(&m.shared().closed(s), 0, 0);
    assert_eq!(seqs, (0..FLOOD).collect::<Vec<_>>(), "all, in order");
}

/// Closing with datagrams still queued counts their bytes as unsent; the ones
/// that went before the close are the first ones, in order.
#[test]
fn closing_with_queued_datagrams_counts_them_unsent() {
    let Some(ns) = Netns::new("close") else {
        return;
    };
    enter(&ns.path());
    let (to, reader) = flood_reader(
        ns.path(),
        Arc::new(AtomicUsize::new(0)),
        Duration::from_secs(1),
    );
    let mut m = mux();
    let (s, _) = bound(&mut m, "127.0.0.1:0", Rec::quiet());
    socket2::SockRef::from(&m.as_fd(s).unwrap())
        .set_send_buffer_size(4096)
        .unwrap();
    assert_eq!(m.connect(s, &to.to_string()), Ok(()));
    for i in 0..FLOOD {
        assert_eq!(m.send(s, &flood_datagram(i)), Ok(()), "send {i}");
    }
    assert_eq!(m.close(s), Ok(()));
    run_until(&mut m, LIMIT, move |log| log.is_closed(s));
    assert_no_timeout(&m);
    let sent = sent_count(m.shared(), s);
    println!("{sent} of {FLOOD} datagrams went before the close");
    assert!(sent > 0 && sent < FLOOD, "{sent} sent");
    assert_discarded(
        &m.shared().closed(s),
        ((FLOOD - sent) * FLOOD_SIZE) as u64,
        0,
    );
    let seqs = join(reader);
    assert_eq!(
        seqs,
        (0..sent).collect::<Vec<_>>(),
        "the first ones, in order"
    );
}
