//! Peers that vanish: two network namespaces joined by a veth pair, tether in
//! one and a std peer in the other; after an exchange the link is cut (every
//! packet the peer's side sends is dropped), and each mechanism must end the
//! connection within its bound:
//! - TCP keepalive (set on the listener, inherited by the connection):
//!   `Lost` with ETIMEDOUT after idle + count × interval;
//! - TCP_USER_TIMEOUT with data in flight: `Lost` with ETIMEDOUT;
//! - the idle timeout: `IdleTimeout`.
//!
//! The tests need root, `ip` and `tc`; elsewhere they print why and pass. The
//! namespaces are deleted when the test ends, also when it fails.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use std::cell::Cell;

use common::netns::VethPair;
use common::*;
use tether::{Keepalive, Reason, RecvMode, Timeouts};

/// How late a dead peer may be noticed past its bound (retransmission timers,
/// a loaded machine).
const SLACK: Duration = Duration::from_millis(1500);
/// How long one loop may run before the test counts as hung.
const LIMIT: Duration = Duration::from_secs(15);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Asserts `took` is within `[least, bound + SLACK]` and prints it.
fn assert_within(what: &str, least: Duration, bound: Duration, took: Duration) {
    println!("{what}: bound {bound:?}, observed {took:?}");
    assert!(
        took >= least,
        "{what}: ended after {took:?}, before {least:?}"
    );
    assert!(
        took <= bound + SLACK,
        "{what}: ended after {took:?}, later than {bound:?} + {SLACK:?}"
    );
}

/// The std peer's side: holds its connection, reading and dropping what
/// comes, until `stop` is set.
fn hold(mut s: TcpStream, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

/// A std echo server in `b`: answers one "ping", then holds the connection.
fn echo_once_in(net: &VethPair, stop: Arc<AtomicBool>) -> (SocketAddr, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let path = net.b.path();
    let at = SocketAddr::from((net.addr_b, 0));
    let server = thread::spawn(move || {
        common::netns::enter(&path);
        let listener = TcpListener::bind(at).unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut ping = [0u8; 4];
        s.read_exact(&mut ping).unwrap();
        s.write_all(&ping).unwrap();
        hold(s, &stop);
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server's address");
    (addr, server)
}

/// Sets its flag when dropped: a peer holding a connection is let go also
/// when the test fails.
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// What the tether side saw: how it closed, and how long after the cut.
struct Outcome {
    log: Log,
    s: tether::SocketId,
    after_cut: Duration,
    /// When data last moved before the cut, to the cut.
    quiet_before_cut: Duration,
}

/// Runs a tether client in `a` against the echo server in `b`: "ping", then
/// at the echo, the link is cut and `after_cut` runs (it may send). Returns
/// once the client closed.
fn client_until_closed(
    net: &VethPair,
    server: SocketAddr,
    timeouts: Timeouts,
    user_timeout: Option<Duration>,
    after_cut: impl FnOnce(&mut tether::Cx<Log>, tether::SocketId) + Send + 'static,
) -> Outcome {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                net.a.enter();
                let cut = Rc::new(Cell::new(None));
                let quiet = Rc::new(Cell::new(Duration::ZERO));
                let (cut_at, quiet_at) = (cut.clone(), quiet.clone());
                let mut after_cut = Some(after_cut);
                let cut_link = net.cutter();
                let mut m = mux();
                let c = m.stream(Rec::with(move |cx, s, ev| match ev {
                    Ev::Connected => {
                        cx.send(s, b"ping").unwrap();
                        cx.recv(s, 4, RecvMode::Exact).unwrap();
                    }
                    Ev::Received(_) => {
                        quiet_at.set(cx.idle_for(s).unwrap());
                        let active = Instant::now() - cx.idle_for(s).unwrap();
                        cut_link();
                        cut_at.set(Some(active));
                        if let Some(f) = after_cut.take() {
                            f(cx, s);
                        }
                    }
                    _ => {}
                }));
                m.set_timeouts(c, timeouts).unwrap();
                m.connect(c, &server.to_string()).unwrap();
                if user_timeout.is_some() {
                    m.set_user_timeout(c, user_timeout).unwrap();
                }
                run_until(&mut m, LIMIT, move |log| log.is_closed(c));
                let closed = Instant::now();
                assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
                let cut = cut.get().expect("the link was cut");
                Outcome {
                    log: m.into_shared(),
                    s: c,
                    after_cut: closed - cut,
                    quiet_before_cut: quiet.get(),
                }
            })
            .join()
            .unwrap()
    })
}

/// Keepalive idle 1 s, interval 1 s, count 2, set on the listener: the
/// connection it takes finds the vanished client after about 1 + 2 × 1 s of
/// silence, and ends `Lost` with ETIMEDOUT.
#[test]
fn keepalive_finds_a_vanished_peer() {
    let Some(net) = VethPair::new("keepalive") else {
        return;
    };
    let keepalive = Keepalive {
        idle: secs(1.0),
        interval: secs(1.0),
        count: 2,
    };
    let stop = &AtomicBool::new(false);
    let net = &net;
    let (tx, rx) = mpsc::channel();
    let (outcome, client) = thread::scope(|scope| {
        let server = scope.spawn(|| {
            net.a.enter();
            let cut = Rc::new(Cell::new(None));
            let cut_at = cut.clone();
            let cut_link = Rc::new(net.cutter());
            let mut m = mux();
            let l = m.stream(Rec::listener(move || {
                let cut_at = cut_at.clone();
                let cut_link = cut_link.clone();
                Some(Rec::with(move |cx, s, ev| match ev {
                    Ev::Accepted => cx.recv(s, 4, RecvMode::Exact).unwrap(),
                    Ev::Received(d) if d == b"ping" => {
                        cx.send(s, b"pong").unwrap();
                        cx.recv(s, 4, RecvMode::Exact).unwrap();
                    }
                    // The client got the pong (this comes after it): nothing
                    // is in flight either way. Cut, and wait.
                    Ev::Received(_) => {
                        let active = Instant::now() - cx.idle_for(s).unwrap();
                        cut_link();
                        cut_at.set(Some(active));
                    }
                    _ => {}
                }))
            }));
            m.bind(l, &SocketAddr::from((net.addr_a, 0)).to_string())
                .unwrap();
            m.listen(l).unwrap();
            m.set_keepalive(l, Some(keepalive)).unwrap();
            tx.send(inet(&m, l)).unwrap();
            run_until(&mut m, LIMIT, |log| {
                log.accepted().len() == 1 && log.is_closed(log.accepted()[0])
            });
            let closed = Instant::now();
            assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
            let cut = cut.get().expect("the link was cut");
            (m.into_shared(), closed - cut)
        });
        let client = scope.spawn(move || {
            net.b.enter();
            let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"ping").unwrap();
            let mut pong = [0u8; 4];
            s.read_exact(&mut pong).unwrap();
            s.write_all(b"done").unwrap();
            hold(s, stop);
            pong
        });
        let outcome = server.join();
        // Also when the server failed: the client must not hold forever.
        stop.store(true, Ordering::Release);
        (outcome.unwrap(), client.join().unwrap())
    });
    assert_eq!(&client, b"pong");
    let (log, after_cut) = outcome;
    let a = log.accepted()[0];
    let done = log.closed(a);
    assert_eq!(done.reason, Reason::Lost, "{done:?}");
    assert_eq!(done.os_error, Some(libc::ETIMEDOUT), "{done:?}");
    // The first probe after 1 s of silence, the second 1 s later, and the
    // verdict 1 s after that.
    assert_within("keepalive", secs(2.8), secs(3.0), after_cut);
}

/// TCP_USER_TIMEOUT 1 s, data sent after the cut: it is never acknowledged,
/// and the connection ends `Lost` with ETIMEDOUT about 1 s later.
#[test]
fn user_timeout_ends_a_connection_with_data_in_flight() {
    let Some(net) = VethPair::new("usertimeout") else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let release = Release(stop.clone());
    let (server, peer) = echo_once_in(&net, stop);
    let sent = Arc::new(std::sync::Mutex::new(None));
    let sent_at = sent.clone();
    let outcome = client_until_closed(
        &net,
        server,
        Timeouts::default(),
        Some(secs(1.0)),
        move |cx, s| {
            cx.send(s, &[1u8; 10_000]).unwrap();
            *sent_at.lock().unwrap() = Some(Instant::now());
        },
    );
    drop(release);
    peer.join().unwrap();
    let done = outcome.log.closed(outcome.s);
    assert_eq!(done.reason, Reason::Lost, "{done:?}");
    assert_eq!(done.os_error, Some(libc::ETIMEDOUT), "{done:?}");
    // Rule 1: the bytes the peer never acknowledged did not go out.
    assert_eq!(done.unsent, 10_000, "{done:?}");
    println!("user timeout: {done:?}");
    assert!(sent.lock().unwrap().is_some());
    assert_within("user timeout", secs(0.9), secs(1.0), outcome.after_cut);
}

/// The idle timeout, 1 s: after the cut nothing moves, and the connection
/// ends `IdleTimeout` 1 s after the last data.
#[test]
fn idle_timeout_ends_a_connection_whose_peer_vanished() {
    let Some(net) = VethPair::new("idle") else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let release = Release(stop.clone());
    let (server, peer) = echo_once_in(&net, stop);
    let timeouts = Timeouts {
        idle: Some(secs(1.0)),
        ..Timeouts::default()
    };
    let outcome = client_until_closed(&net, server, timeouts, None, |_, _| {});
    drop(release);
    peer.join().unwrap();
    let done = outcome.log.closed(outcome.s);
    assert_eq!(done.reason, Reason::IdleTimeout, "{done:?}");
    println!(
        "quiet before the cut: {:?} (the cut is measured from the last data)",
        outcome.quiet_before_cut
    );
    assert_within("idle timeout", secs(1.0), secs(1.0), outcome.after_cut);
}
