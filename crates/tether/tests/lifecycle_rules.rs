//! The lifecycle rules (README, "The lifecycle"), one test per rule, each over real
//! loopback sockets of both stream transports (TCP and Local).
//!
//! tether is always the accepting side; the other end is a blocking peer written
//! with plain `std::net` / `std::os::unix::net` in its own thread, so what goes
//! over the wire is checked by something that is not tether.
//!
//! Waits between the loop and the peer are handshakes (channels, flags polled by
//! a short timer, the state machine's own states), not sleeps, so a loaded
//! machine makes the tests slower, never red.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use tether::{
    ApiError, Cx, DiscardMethod, IoMux, Op, Reason, RecvMode, Refused, SocketId, State, TestClock,
};

/// Each rule is one function of the transport, run as one test per transport
/// (`tcp::rule1_...`, `local::rule1_...`), so a failure names both.
macro_rules! for_both_transports {
    ($($rule:ident),* $(,)?) => {
        mod tcp {
            $(#[test]
            fn $rule() {
                super::$rule(super::Transport::Tcp)
            })*
        }
        mod local {
            $(#[test]
            fn $rule() {
                super::$rule(super::Transport::Local)
            })*
        }
    };
}

for_both_transports!(
    rule1_every_byte_before_fin_else_counted_unsent,
    rule2_peer_shutdown_after_last_byte,
    rule3_closes_by_itself_when_both_directions_end,
    rule4_on_closed_once_last_then_stale,
    rule5_unread_is_counted,
    rule6_close_with_unread_input_does_not_reset,
    rule7_reasons_say_who_began,
);

/// How long one loop may run before the test counts as hung.
const LIMIT: Duration = Duration::from_secs(10);
/// How long a blocking peer call may take before the peer gives up.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a loop-side watcher looks at a condition.
const TICK: Duration = Duration::from_millis(5);
const MIB: usize = 1 << 20;
/// One send of rule 1.
const CHUNK: usize = 4 * MIB;

// ----- helpers -----

/// The byte at stream position `i`. The period 251 is prime, so a chunk sent
/// twice, dropped or reordered (every chunk here is a power of two long) shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Compare large buffers without printing megabytes when they differ.
fn assert_bytes(got: &[u8], want: &[u8], ctx: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{ctx}: got {} bytes, want {}; first difference at {:?}",
            got.len(),
            want.len(),
            first.or(Some(got.len().min(want.len())))
        );
    }
}

/// `got` is an in-order prefix of `want`.
fn assert_prefix(got: &[u8], want: &[u8], ctx: &str) {
    assert!(
        got.len() <= want.len(),
        "{ctx}: got {} bytes, more than the {} sent",
        got.len(),
        want.len()
    );
    assert_bytes(got, &want[..got.len()], ctx);
}

/// A socket's events, with data shortened to its length, for failure messages.
fn brief(log: &Log, s: SocketId) -> Vec<String> {
    log.of(s)
        .into_iter()
        .map(|e| match e {
            Ev::Received(d) => format!("Received({} bytes)", d.len()),
            other => format!("{other:?}"),
        })
        .collect()
}

fn count(log: &Log, s: SocketId, want: &Ev) -> usize {
    log.of(s).iter().filter(|e| *e == want).count()
}

/// Rule 4 for one socket: exactly one on_closed, and it is the last callback.
fn closed_once_last(log: &Log, s: SocketId, ctx: &str) -> Done {
    let events = log.of(s);
    let n = events.iter().filter(|e| matches!(e, Ev::Closed(_))).count();
    assert_eq!(
        n,
        1,
        "{ctx}: on_closed must run exactly once for {s}: {:?}",
        brief(log, s)
    );
    match events.last() {
        Some(Ev::Closed(done)) => done.clone(),
        _ => panic!(
            "{ctx}: on_closed must be the last callback of {s}: {:?}",
            brief(log, s)
        ),
    }
}

/// A loop listening on a fresh address of `t`, whose first accepted connection
/// gets a recording user running `hook` (later ones are denied).
fn server(
    t: Transport,
    hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static,
) -> (IoMux<Log>, SocketId, Spot) {
    server_on(t, mux(), hook)
}

/// [`server`] on the loop `m` (one on a test clock).
fn server_on(
    t: Transport,
    mut m: IoMux<Log>,
    hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static,
) -> (IoMux<Log>, SocketId, Spot) {
    let spot = t.spot();
    let mut hook = Some(hook);
    let l = m.listen_on(
        &spot.addr,
        Rec::listener(move || hook.take().map(Rec::with)),
    );
    assert_eq!(
        m.state(l),
        State::Listening,
        "{t:?}: listener on {}",
        spot.addr
    );
    (m, l, spot)
}

/// A peer connected to `l`, with timeouts so a broken test fails instead of hanging.
fn connect(m: &IoMux<Log>, l: SocketId) -> Peer {
    let p = Peer::connect(m, l);
    p.set_read_timeout(Some(PEER_TIMEOUT));
    match &p {
        Peer::Tcp(s) => s.set_write_timeout(Some(PEER_TIMEOUT)).unwrap(),
        Peer::Local(s) => s.set_write_timeout(Some(PEER_TIMEOUT)).unwrap(),
    }
    p
}

fn clone_peer(p: &Peer) -> Peer {
    match p {
        Peer::Tcp(s) => Peer::Tcp(s.try_clone().unwrap()),
        Peer::Local(s) => Peer::Local(s.try_clone().unwrap()),
    }
}

/// Drop the peer abortively: TCP sends RST (SO_LINGER 0). A Unix socket has
/// no such thing; it is simply closed.
fn abort_peer(p: Peer) {
    if let Peer::Tcp(s) = &p {
        socket2::SockRef::from(s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(p);
}

/// Read until the end of the stream or an error: what arrived, and the error
/// (`None` for a clean end).
fn read_all(p: &mut Peer) -> (Vec<u8>, Option<io::Error>) {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match p.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Some(e)),
        }
    }
}

/// Run `f` every tick until it returns true.
fn watch(cx: &mut Cx<Log>, mut f: impl FnMut(&mut Cx<Log>) -> bool + 'static) {
    type Watcher = Box<dyn FnMut(&mut Cx<Log>) -> bool>;
    fn again(cx: &mut Cx<Log>, mut f: Watcher) {
        cx.set_timer(TICK, move |cx| {
            if !f(cx) {
                again(cx, f)
            }
        });
    }
    if !f(cx) {
        again(cx, Box::new(f));
    }
}

/// Run the loop to its end, which must not be the time limit.
fn run(m: &mut IoMux<Log>, ctx: &str) {
    run_for(m, LIMIT);
    assert!(!m.shared().timed_out, "{ctx}: the loop hit its time limit");
}

/// The peer thread's result; its own panic message, if any, is printed above.
fn join<T>(peer: thread::JoinHandle<T>, ctx: &str) -> T {
    peer.join()
        .unwrap_or_else(|_| panic!("{ctx}: the peer thread failed"))
}

/// The one connection the listener accepted.
fn accepted(m: &IoMux<Log>, ctx: &str) -> SocketId {
    let acc = m.shared().accepted();
    assert_eq!(acc.len(), 1, "{ctx}: one connection accepted");
    acc[0]
}

fn os_error(e: &Option<io::Error>) -> Option<i32> {
    e.as_ref().and_then(|e| e.raw_os_error())
}

// ----- rule 1: every byte before the FIN; what an abort lost is counted -----

fn rule1_every_byte_before_fin_else_counted_unsent(t: Transport) {
    rule1_flush_then_fin(t);
    rule1_reset_counts_unsent(t);
}

/// Three sends and an immediate shutdown: the FIN must wait for the send queue.
///
/// Loopback TCP takes about 4 MiB into its buffers while the peer does not read
/// (autotuned send buffer up to tcp_wmem's 4 MiB, plus the peer's window), so
/// the sends are 3 x 4 MiB; the test checks that the queue was in use.
fn rule1_flush_then_fin(t: Transport) {
    let ctx = format!("{t:?}: rule 1, send x3 + shutdown");
    let data = Rc::new(pattern(3 * CHUNK));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let after_shutdown = Rc::new(RefCell::new(None));
    let sent_before_reading = Rc::new(Cell::new(usize::MAX));
    // `Cx::unsent` right after the sends, and at each on_sent.
    let unsent = Rc::new(RefCell::new(Vec::new()));
    let (mut m, l, _spot) = server(t, {
        let (data, after_shutdown, sent_before_reading, unsent) = (
            data.clone(),
            after_shutdown.clone(),
            sent_before_reading.clone(),
            unsent.clone(),
        );
        move |cx, s, ev| match ev {
            Ev::Accepted => {
                for chunk in data.chunks(CHUNK) {
                    cx.send(s, chunk).unwrap();
                }
                unsent.borrow_mut().push(cx.unsent(s));
                cx.shutdown(s).unwrap();
                *after_shutdown.borrow_mut() = Some((cx.state(s), cx.send(s, b"late")));
                // Let the queue fill before the peer starts reading.
                let (go_tx, sent_before_reading) = (go_tx.clone(), sent_before_reading.clone());
                cx.set_timer(Duration::from_millis(100), move |cx| {
                    sent_before_reading.set(count(cx.shared(), s, &Ev::Sent));
                    let _ = go_tx.send(());
                });
            }
            Ev::Sent => unsent.borrow_mut().push(cx.unsent(s)),
            Ev::Closed(_) => {
                assert_eq!(cx.unsent(s), 0, "a stale id has nothing unsent");
                cx.terminate();
            }
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        go_rx.recv_timeout(PEER_TIMEOUT).expect("told to read");
        read_all(&mut p)
        // dropping `p` here is the peer's end, after it saw ours
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);

    assert!(
        err.is_none(),
        "{ctx}: the peer must see a clean end, got {err:?} after {} bytes",
        got.len()
    );
    assert_bytes(
        &got,
        &data,
        &format!("{ctx}: the peer must get every byte in order before the FIN"),
    );

    let s = accepted(&m, &ctx);
    let log = m.shared();
    let (state, late) = after_shutdown.borrow_mut().take().expect("accepted");
    assert_eq!(state, State::NoSend, "{ctx}: state right after shutdown");
    assert_eq!(
        late,
        Err(ApiError::Refused(Refused {
            op: Op::Send,
            state: State::NoSend
        })),
        "{ctx}: send after shutdown"
    );
    assert!(
        sent_before_reading.get() < 3,
        "{ctx}: the test needs the send queue in use, but all 3 sends fit in the kernel before the peer read"
    );
    assert_eq!(
        count(log, s, &Ev::Sent),
        3,
        "{ctx}: one on_sent per send: {:?}",
        brief(log, s)
    );
    // What the kernel did not take at once waits in tether; it shrinks to
    // nothing as the sends complete, and the last on_sent sees 0.
    let unsent = unsent.borrow();
    let total = 3 * CHUNK as u64;
    assert_eq!(unsent.len(), 4, "{ctx}: {unsent:?}");
    assert!(unsent[0] > 0 && unsent[0] <= total, "{ctx}: {unsent:?}");
    assert!(unsent.windows(2).all(|w| w[1] <= w[0]), "{ctx}: {unsent:?}");
    assert_eq!(unsent[3], 0, "{ctx}: {unsent:?}");
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::Normal, 0, 0),
        "{ctx}: {done:?}"
    );
}

/// A reset while megabytes are still queued: the peer gets a prefix, and what it
/// did not get is counted in `unsent`. With TCP the 3 MiB sit mostly in the
/// kernel (unacknowledged, counted with SIOCOUTQ); with Local mostly in tether's
/// own queue.
fn rule1_reset_counts_unsent(t: Transport) {
    let ctx = format!("{t:?}: rule 1, reset with bytes queued");
    let data = Rc::new(pattern(3 * MIB));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (mut m, l, _spot) = server(t, {
        let data = data.clone();
        move |cx, s, ev| match ev {
            Ev::Accepted => {
                for chunk in data.chunks(MIB) {
                    cx.send(s, chunk).unwrap();
                }
                cx.set_timer(Duration::from_millis(100), move |cx| cx.reset(s).unwrap());
            }
            Ev::Closed(_) => {
                let _ = go_tx.send(());
                cx.terminate();
            }
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        // The peer reads nothing until tether has reset: the bytes tether
        // accepted are then either in the peer's kernel or counted as unsent.
        go_rx.recv_timeout(PEER_TIMEOUT).expect("told to read");
        read_all(&mut p)
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);

    let s = accepted(&m, &ctx);
    let done = closed_once_last(m.shared(), s, &ctx);
    let total = data.len() as u64;
    assert_eq!(done.reason, Reason::Reset, "{ctx}: {done:?}");
    assert!(
        done.unsent > 0 && done.unsent <= total,
        "{ctx}: unsent {} of {total}",
        done.unsent
    );
    assert_prefix(&got, &data, &ctx);
    let received = got.len() as u64;
    match t {
        Transport::Tcp => {
            assert_eq!(
                os_error(&err),
                Some(libc::ECONNRESET),
                "{ctx}: the peer must see the RST, got {err:?}"
            );
            // Bytes still unacknowledged may have reached the peer's kernel
            // and yet be counted as unsent; bytes that did not arrive must be.
            assert!(
                received + done.unsent >= total,
                "{ctx}: {received} received + {} unsent < {total}: bytes lost silently",
                done.unsent
            );
        }
        Transport::Local => {
            // No RST on a Unix socket (see `Cx::reset`): the peer had sent
            // nothing we left unread, so it reads what reached its queue and a
            // plain end. Those bytes were delivered: they are not unsent.
            assert!(
                err.is_none(),
                "{ctx}: the peer must see a plain end, got {err:?}"
            );
            assert_eq!(
                received + done.unsent,
                total,
                "{ctx}: received + unsent must be everything sent"
            );
        }
    }
}

// ----- rule 2: NoRecv as soon as the FIN is known; the end after the data -----

fn rule2_peer_shutdown_after_last_byte(t: Transport) {
    let ctx = format!("{t:?}: rule 2");
    let data = pattern(50_000);
    let fin_sent = Arc::new(AtomicBool::new(false));
    let seen = Rc::new(RefCell::new(None));
    let (mut m, l, _spot) = server(t, {
        let (fin_sent, seen) = (fin_sent.clone(), seen.clone());
        move |cx, s, ev| match ev {
            Ev::Accepted => {
                // No recv: the data and the FIN wait in the kernel. Once the
                // peer has shut down, the state must show it without any read.
                let (fin_sent, seen) = (fin_sent.clone(), seen.clone());
                watch(cx, move |cx| {
                    if !fin_sent.load(Ordering::Acquire) || cx.state(s) == State::Connected {
                        return false;
                    }
                    let log = cx.shared();
                    *seen.borrow_mut() = Some((
                        cx.state(s),
                        log.received(s).len(),
                        count(log, s, &Ev::PeerShutdown),
                    ));
                    cx.recv(s, 4096, RecvMode::Partial).unwrap();
                    true
                });
            }
            Ev::Received(_) => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
            Ev::PeerShutdown => {
                assert_eq!(cx.state(s), State::NoRecv);
                cx.shutdown(s).unwrap();
            }
            Ev::Closed(_) => cx.terminate(),
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn({
        let data = data.clone();
        move || {
            p.write_all(&data).unwrap();
            p.shutdown_write();
            fin_sent.store(true, Ordering::Release);
            read_all(&mut p)
        }
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(
        got.is_empty() && err.is_none(),
        "{ctx}: the peer gets a clean, empty stream: {err:?}"
    );

    let s = accepted(&m, &ctx);
    let log = m.shared();
    let (state, delivered, ended) = seen.borrow_mut().take().expect("the watcher ran");
    assert_eq!(
        state,
        State::NoRecv,
        "{ctx}: state once the FIN is known, before any recv"
    );
    assert_eq!(
        (delivered, ended),
        (0, 0),
        "{ctx}: nothing delivered or ended before any recv"
    );
    assert_bytes(&log.received(s), &data, &format!("{ctx}: data delivered"));
    let events = log.of(s);
    let end = events
        .iter()
        .position(|e| *e == Ev::PeerShutdown)
        .expect("on_peer_shutdown");
    let last_data = events
        .iter()
        .rposition(|e| matches!(e, Ev::Received(_)))
        .expect("data");
    assert!(
        last_data < end,
        "{ctx}: every on_received before on_peer_shutdown: {:?}",
        brief(log, s)
    );
    assert_eq!(
        count(log, s, &Ev::PeerShutdown),
        1,
        "{ctx}: {:?}",
        brief(log, s)
    );
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::ByPeer, 0, 0),
        "{ctx}: {done:?}"
    );
}

// ----- rule 3: both directions done => closes by itself -----

fn rule3_closes_by_itself_when_both_directions_end(t: Transport) {
    rule3_we_end_first(t);
    rule3_peer_ends_first(t);
}

fn rule3_we_end_first(t: Transport) {
    let ctx = format!("{t:?}: rule 3, our FIN first");
    let states = Rc::new(RefCell::new(Vec::new()));
    let (mut m, l, _spot) = server(t, {
        let states = states.clone();
        move |cx, s, ev| match ev {
            Ev::Accepted => {
                cx.send(s, b"bye").unwrap();
                cx.shutdown(s).unwrap();
                states.borrow_mut().push(cx.state(s));
                // Never recv, never close: the peer's end must finish it.
            }
            Ev::PeerShutdown => states.borrow_mut().push(cx.state(s)),
            Ev::Closed(_) => cx.terminate(),
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || read_all(&mut p)); // then drops: FIN
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(err.is_none(), "{ctx}: {err:?}");
    assert_eq!(got, b"bye", "{ctx}");

    let s = accepted(&m, &ctx);
    let log = m.shared();
    // Callbacks run after the fact: the peer's FIN finished both directions, so
    // by the time on_peer_shutdown runs, rule 3 has already closed the socket
    // (on_closed is queued behind it).
    assert_eq!(
        *states.borrow(),
        [State::NoSend, State::NotConnected],
        "{ctx}: states at shutdown, at peer's end"
    );
    assert_eq!(
        log.of(s)[..3],
        [Ev::Accepted, Ev::Sent, Ev::PeerShutdown],
        "{ctx}: {:?}",
        brief(log, s)
    );
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::Normal, 0, 0),
        "{ctx}: {done:?}"
    );
}

fn rule3_peer_ends_first(t: Transport) {
    let ctx = format!("{t:?}: rule 3, the peer's FIN first");
    let (mut m, l, _spot) = server(t, move |cx, s, ev| match ev {
        Ev::Accepted | Ev::Received(_) => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
        Ev::PeerShutdown => {
            assert_eq!(cx.state(s), State::NoRecv);
            cx.send(s, b"bye").unwrap();
            cx.shutdown(s).unwrap();
        }
        Ev::Closed(_) => cx.terminate(),
        _ => {}
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        p.write_all(b"hello").unwrap();
        p.shutdown_write();
        read_all(&mut p)
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(err.is_none(), "{ctx}: {err:?}");
    assert_eq!(got, b"bye", "{ctx}");

    let s = accepted(&m, &ctx);
    let log = m.shared();
    assert_eq!(log.received(s), b"hello", "{ctx}");
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::ByPeer, 0, 0),
        "{ctx}: {done:?}"
    );
}

// ----- rule 4: on_closed exactly once, last; the id is stale afterwards -----

fn rule4_on_closed_once_last_then_stale(t: Transport) {
    for ending in [
        Ending::Graceful,
        Ending::OurReset,
        Ending::PeerReset,
        Ending::Stopped,
    ] {
        rule4(t, ending);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ending {
    /// We shut down, the peer reads to the end and closes.
    Graceful,
    /// We reset with bytes of the peer unread.
    OurReset,
    /// The peer aborts (TCP: RST; Local: closes with bytes it never read).
    PeerReset,
    /// The loop is terminated with the connection open.
    Stopped,
}

/// What the id does once on_closed has run.
#[derive(Debug, PartialEq)]
struct AfterClose {
    send: Result<(), ApiError>,
    recv: Result<(), ApiError>,
    close: Result<(), ApiError>,
    state: State,
    /// A socket made now reuses the slot: the old id must still be stale.
    reused_slot: bool,
    send_on_reused: Result<(), ApiError>,
}

fn rule4(t: Transport, ending: Ending) {
    let ctx = format!("{t:?}: rule 4, {ending:?}");
    let after = Rc::new(RefCell::new(None));
    let (mut m, l, _spot) = server(t, {
        let after = after.clone();
        move |cx, s, ev| match ev {
            Ev::Accepted => match ending {
                Ending::Graceful => {
                    cx.send(s, b"bye").unwrap();
                    cx.shutdown(s).unwrap();
                }
                Ending::OurReset => {
                    cx.recv(s, 1, RecvMode::Exact).unwrap();
                    cx.send(s, b"ready").unwrap();
                }
                // No recv pending: the loss must be noticed all the same.
                // The extra bytes are what the peer will leave unread.
                Ending::PeerReset => cx
                    .send(s, &[b"ready".as_slice(), &[7; 1000]].concat())
                    .unwrap(),
                Ending::Stopped => {
                    cx.recv(s, 4096, RecvMode::Partial).unwrap();
                    cx.send(s, b"ready").unwrap();
                }
            },
            Ev::Received(_) if ending == Ending::OurReset => cx.reset(s).unwrap(),
            Ev::Sent if ending == Ending::Stopped => cx.terminate(),
            Ev::Closed(_) => {
                let (send, recv, close, state) = (
                    cx.send(s, b"x"),
                    cx.recv(s, 1, RecvMode::Partial),
                    cx.close(s),
                    cx.state(s),
                );
                let fresh = cx.stream(Rec::quiet());
                *after.borrow_mut() = Some(AfterClose {
                    send,
                    recv,
                    close,
                    state,
                    reused_slot: fresh.index() == s.index() && fresh != s,
                    send_on_reused: cx.send(s, b"x"),
                });
                cx.close(fresh).unwrap();
                cx.terminate();
            }
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        match ending {
            Ending::Graceful => read_all(&mut p),
            Ending::OurReset => {
                let mut ready = [0; 5];
                p.read_exact(&mut ready).unwrap();
                // More than the one byte tether asks for: the rest is unread.
                p.write_all(&[1; 100]).unwrap();
                read_all(&mut p)
            }
            Ending::PeerReset => {
                let mut ready = [0; 5];
                p.read_exact(&mut ready).unwrap();
                abort_peer(p);
                (Vec::new(), None)
            }
            Ending::Stopped => read_all(&mut p),
        }
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);

    let s = accepted(&m, &ctx);
    let log = m.shared();
    let done = closed_once_last(log, s, &ctx);
    let listener = closed_once_last(log, l, &format!("{ctx} (listener)"));
    assert_eq!(
        listener.reason,
        Reason::Stopped,
        "{ctx}: the listener ends with the loop"
    );
    let stale = Err(ApiError::StaleSocket(s));
    assert_eq!(
        after.borrow_mut().take(),
        Some(AfterClose {
            send: stale.clone(),
            recv: stale.clone(),
            close: stale.clone(),
            state: State::NotConnected,
            reused_slot: true,
            send_on_reused: stale.clone(),
        }),
        "{ctx}: the id inside on_closed"
    );
    // ... and after the loop.
    assert_eq!(m.send(s, b"x"), stale, "{ctx}");
    assert_eq!(m.state(s), State::NotConnected, "{ctx}");

    match ending {
        Ending::Graceful => {
            assert_eq!(
                (got.as_slice(), os_error(&err)),
                (b"bye".as_slice(), None),
                "{ctx}: {err:?}"
            );
            assert_eq!(
                (done.reason, done.unsent, done.unread),
                (Reason::Normal, 0, 0),
                "{ctx}: {done:?}"
            );
        }
        Ending::OurReset => {
            assert_eq!(done.reason, Reason::Reset, "{ctx}: {done:?}");
            assert_eq!(got, b"", "{ctx}");
            // The peer's 100 bytes: one delivered, 99 thrown away by the reset.
            assert_eq!(done.unread, 99, "{ctx}: {done:?}");
            // TCP: the RST. Local: no RST, but the peer had sent bytes we never
            // read, so it sees ECONNRESET (see `Cx::reset`).
            assert_eq!(os_error(&err), Some(libc::ECONNRESET), "{ctx}: {err:?}");
        }
        Ending::PeerReset => {
            assert_eq!(done.reason, Reason::Lost, "{ctx}: {done:?}");
            assert_eq!(done.os_error, Some(libc::ECONNRESET), "{ctx}: {done:?}");
        }
        Ending::Stopped => {
            assert_eq!(done.reason, Reason::Stopped, "{ctx}: {done:?}");
            assert_eq!(got, b"ready", "{ctx}");
            match t {
                // Reset, so the peer cannot take the end for a graceful one.
                Transport::Tcp => {
                    assert_eq!(os_error(&err), Some(libc::ECONNRESET), "{ctx}: {err:?}")
                }
                // A Unix socket can only close: a plain end.
                Transport::Local => assert!(err.is_none(), "{ctx}: {err:?}"),
            }
        }
    }
}

// ----- rule 5: unread bytes are counted -----

fn rule5_unread_is_counted(t: Transport) {
    rule5_close_without_reading(t);
    rule5_exact_recv_cut_short(t);
    rule5_abort_with_input_in_kernel(t, false);
    rule5_abort_with_input_in_kernel(t, true);
}

/// The peer sends N bytes; tether closes without reading them.
fn rule5_close_without_reading(t: Transport) {
    const N: usize = 10_000;
    let ctx = format!("{t:?}: rule 5, close with {N} bytes unread");
    let written = Arc::new(AtomicBool::new(false));
    let (mut m, l, _spot) = server(t, {
        let written = written.clone();
        move |cx, s, ev| match ev {
            Ev::Accepted => {
                let written = written.clone();
                watch(cx, move |cx| {
                    let now = written.load(Ordering::Acquire);
                    if now {
                        cx.close(s).unwrap();
                    }
                    now
                });
            }
            Ev::Closed(_) => cx.terminate(),
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        p.write_all(&pattern(N)).unwrap();
        written.store(true, Ordering::Release);
        read_all(&mut p)
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(
        got.is_empty() && err.is_none(),
        "{ctx}: the peer sees a clean end: {err:?}"
    );

    let s = accepted(&m, &ctx);
    let log = m.shared();
    assert_eq!(log.received(s), b"", "{ctx}");
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::Normal, 0, N as u64),
        "{ctx}: {done:?}"
    );
}

/// An Exact recv of 100 bytes; the peer sends 40 and ends. The 40 are never
/// delivered short: they are counted unread, and the end is still reported.
fn rule5_exact_recv_cut_short(t: Transport) {
    let ctx = format!("{t:?}: rule 5, Exact recv of 100, peer sends 40 then FIN");
    let (mut m, l, _spot) = server(t, |cx, s, ev| match ev {
        Ev::Accepted => cx.recv(s, 100, RecvMode::Exact).unwrap(),
        Ev::PeerShutdown => cx.shutdown(s).unwrap(),
        Ev::Closed(_) => cx.terminate(),
        _ => {}
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        p.write_all(&[9; 40]).unwrap();
        p.shutdown_write();
        read_all(&mut p)
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(got.is_empty() && err.is_none(), "{ctx}: {err:?}");

    let s = accepted(&m, &ctx);
    let log = m.shared();
    assert_eq!(
        log.of(s)[..2],
        [Ev::Accepted, Ev::PeerShutdown],
        "{ctx}: no on_received: {:?}",
        brief(log, s)
    );
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::ByPeer, 0, 40),
        "{ctx}: {done:?}"
    );
}

/// Input left in the kernel by a reset or a discard is counted. The peer's FIN
/// is the handshake: once tether's state shows it, every byte before it is in
/// tether's kernel queue.
fn rule5_abort_with_input_in_kernel(t: Transport, discard: bool) {
    const N: usize = 30_000;
    let ctx = format!(
        "{t:?}: rule 5, {} with {N} bytes in the kernel",
        if discard { "discard" } else { "reset" }
    );
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (mut m, l, _spot) = server(t, move |cx, s, ev| match ev {
        Ev::Accepted => watch(cx, move |cx| {
            let fin = cx.state(s) == State::NoRecv;
            if fin {
                if discard {
                    cx.discard(s).unwrap();
                } else {
                    cx.reset(s).unwrap();
                }
            }
            fin
        }),
        Ev::Closed(_) => {
            let _ = done_tx.send(());
            cx.terminate();
        }
        _ => {}
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        p.write_all(&pattern(N)).unwrap();
        p.shutdown_write();
        // A silent discard tells the peer nothing, so it waits for the loop's
        // word rather than for the end of the stream.
        done_rx.recv_timeout(PEER_TIMEOUT).expect("closed");
    });
    run(&mut m, &ctx);
    join(peer, &ctx);

    let s = accepted(&m, &ctx);
    let done = closed_once_last(m.shared(), s, &ctx);
    let reason = if discard {
        Reason::Discarded
    } else {
        Reason::Reset
    };
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (reason, 0, N as u64),
        "{ctx}: {done:?}"
    );
    if discard {
        let methods: &[DiscardMethod] = match t {
            // Silent with CAP_NET_ADMIN (TCP_REPAIR), else an RST.
            Transport::Tcp => &[DiscardMethod::Silent, DiscardMethod::Reset],
            Transport::Local => &[DiscardMethod::Close],
        };
        assert!(
            done.discard.is_some_and(|d| methods.contains(&d)),
            "{ctx}: {done:?}"
        );
    } else {
        assert_eq!(done.discard, None, "{ctx}: {done:?}");
    }
}

// ----- rule 6: close() drains instead of resetting -----

fn rule6_close_with_unread_input_does_not_reset(t: Transport) {
    rule6_drain(t);
    rule6_linger_timeout(t);
}

const REQUEST: &[u8] = b"GET /big\n";

/// The peer sends a request and keeps sending bytes tether never reads; tether
/// answers with 1 MiB and closes at once.
///
/// Why this matters: a plain close(2) of a socket with unread input makes
/// Linux send RST instead of FIN (RFC 2525, 2.17). The RST throws away what of
/// the response was still in our kernel's send queue (on some systems also what
/// the peer had received but not yet read), and the peer sees ECONNRESET
/// instead of the end of the answer: with a close that does not drain, this
/// test's TCP peer gets about 128 KB of the 1 MiB, then ECONNRESET. tether's
/// close() sends FIN after the queue and keeps reading (and dropping) the
/// peer's input until the peer's FIN, so the socket is never closed with
/// unread input.
fn rule6_drain(t: Transport) {
    const BURST: usize = 64 * 1024; // sent with the request
    const TRICKLE: usize = 16 * 4096; // sent slowly while the response comes
    let ctx = format!("{t:?}: rule 6, 1 MiB answer + close with unread input");
    let response = Rc::new(pattern(MIB));
    let state_after_close = Rc::new(Cell::new(None));
    let (mut m, l, _spot) = server(t, {
        let (response, state_after_close) = (response.clone(), state_after_close.clone());
        move |cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, REQUEST.len(), RecvMode::Exact).unwrap(),
            Ev::Received(_) => {
                cx.send(s, &response).unwrap();
                cx.close(s).unwrap();
                state_after_close.set(Some(cx.state(s)));
            }
            Ev::Closed(_) => cx.terminate(),
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        p.write_all(&[REQUEST, &[1; BURST]].concat()).unwrap();
        let mut w = clone_peer(&p);
        let writer = thread::spawn(move || {
            for _ in 0..TRICKLE / 4096 {
                w.write_all(&[2; 4096])?;
                thread::sleep(Duration::from_millis(2));
            }
            Ok::<_, io::Error>(w)
        });
        let got = read_all(&mut p);
        let w = writer.join().unwrap();
        (got, w.map(drop)) // dropping both halves: our FIN, only now
    });
    run(&mut m, &ctx);
    let ((got, err), trickle) = join(peer, &ctx);

    assert!(
        err.is_none(),
        "{ctx}: the peer must see a clean end, never a reset: {err:?} after {} bytes",
        got.len()
    );
    assert_bytes(&got, &response, &format!("{ctx}: the whole response"));
    assert!(
        trickle.is_ok(),
        "{ctx}: tether must take input until the peer's end: {trickle:?}"
    );
    assert_eq!(
        state_after_close.get(),
        Some(State::Closing),
        "{ctx}: waiting for the peer's end"
    );
    let s = accepted(&m, &ctx);
    let log = m.shared();
    assert_eq!(log.received(s), REQUEST, "{ctx}");
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (Reason::Normal, 0, (BURST + TRICKLE) as u64),
        "{ctx}: we began; every byte tether never read is counted: {done:?}"
    );
}

/// The peer neither reads nor ends: close() gives up at exactly the linger
/// time (on a test clock: still closing a millisecond before).
fn rule6_linger_timeout(t: Transport) {
    const EXTRA: usize = 1000; // sent with the request, never read by tether
    let ctx = format!("{t:?}: rule 6, linger timeout");
    let response = Rc::new(pattern(MIB));
    let clock = TestClock::new();
    let (closing_tx, closing_rx) = mpsc::channel::<SocketId>();
    let (mut m, l, _spot) = server_on(t, mux_on(&clock), {
        let response = response.clone();
        move |cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, REQUEST.len(), RecvMode::Exact).unwrap(),
            Ev::Received(_) => {
                cx.send(s, &response).unwrap();
                cx.set_linger(s, Duration::from_millis(100)).unwrap();
                cx.close(s).unwrap();
                let _ = closing_tx.send(s);
            }
            _ => {}
        }
    });
    let mut p = connect(&m, l);
    let script_ctx = ctx.clone();
    let (got, err) = run_script(&mut m, &clock, move |sc| {
        let ctx = script_ctx;
        p.write_all(&[REQUEST, &[1; EXTRA]].concat()).unwrap();
        let s = closing_rx.recv_timeout(PEER_TIMEOUT).expect("closing");
        let closed = move |sc: &Script| sc.look(move |cx| cx.shared().is_closed(s));
        sc.advance(Duration::from_millis(99));
        assert!(!closed(sc), "{ctx}: closed before the linger time");
        sc.advance(Duration::from_millis(1));
        assert!(closed(sc), "{ctx}: still open at the linger time");
        read_all(&mut p)
    });

    let s = accepted(&m, &ctx);
    let done = closed_once_last(m.shared(), s, &ctx);
    let total = response.len() as u64;
    assert_eq!(done.reason, Reason::LingerTimeout, "{ctx}: {done:?}");
    assert!(
        done.unsent > 0 && done.unsent <= total,
        "{ctx}: 1 MiB cannot all leave: {done:?}"
    );
    assert_eq!(done.unread, EXTRA as u64, "{ctx}: {done:?}");
    assert_prefix(&got, &response, &ctx);
    let received = got.len() as u64;
    match t {
        Transport::Tcp => {
            assert_eq!(os_error(&err), Some(libc::ECONNRESET), "{ctx}: {err:?}");
            assert!(
                received + done.unsent >= total,
                "{ctx}: {received} received + {} unsent",
                done.unsent
            );
        }
        Transport::Local => {
            assert!(err.is_none(), "{ctx}: {err:?}");
            assert_eq!(
                received + done.unsent,
                total,
                "{ctx}: received + unsent must be everything sent"
            );
        }
    }
}

// ----- rule 7: who began; Lost carries the OS error -----

fn rule7_reasons_say_who_began(t: Transport) {
    rule7_graceful(t, false);
    rule7_graceful(t, true);
    rule7_lost(t, false);
    if let Transport::Tcp = t {
        rule7_lost(t, true);
    }
}

/// close() first: Normal. The peer's FIN first, then close(): ByPeer.
fn rule7_graceful(t: Transport, peer_first: bool) {
    let ctx = format!(
        "{t:?}: rule 7, {} first",
        if peer_first { "the peer" } else { "we" }
    );
    let (mut m, l, _spot) = server(t, move |cx, s, ev| match ev {
        Ev::Accepted if peer_first => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
        Ev::Accepted => {
            cx.send(s, b"bye").unwrap();
            cx.close(s).unwrap();
        }
        Ev::Received(_) => cx.recv(s, 4096, RecvMode::Partial).unwrap(),
        Ev::PeerShutdown => {
            cx.send(s, b"bye").unwrap();
            cx.close(s).unwrap();
        }
        Ev::Closed(_) => cx.terminate(),
        _ => {}
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        if peer_first {
            p.write_all(b"hello").unwrap();
            p.shutdown_write();
        }
        read_all(&mut p)
    });
    run(&mut m, &ctx);
    let (got, err) = join(peer, &ctx);
    assert!(err.is_none(), "{ctx}: {err:?}");
    assert_eq!(got, b"bye", "{ctx}");

    let s = accepted(&m, &ctx);
    let done = closed_once_last(m.shared(), s, &ctx);
    let want = if peer_first {
        Reason::ByPeer
    } else {
        Reason::Normal
    };
    assert_eq!(
        (done.reason, done.unsent, done.unread),
        (want, 0, 0),
        "{ctx}: {done:?}"
    );
}

/// The peer aborts while tether has a recv pending: Lost, with ECONNRESET.
///
/// `linger0`: TCP peer with SO_LINGER 0, which sends RST. Otherwise the peer
/// closes while bytes tether sent sit unread in its socket: Linux then sends
/// RST for TCP, and for a Unix socket sets ECONNRESET on ours (the only way a
/// Unix stream reports an abort).
fn rule7_lost(t: Transport, linger0: bool) {
    let ctx = format!(
        "{t:?}: rule 7, Lost ({})",
        if linger0 {
            "SO_LINGER 0"
        } else {
            "closed with unread data"
        }
    );
    let (mut m, l, _spot) = server(t, move |cx, s, ev| match ev {
        Ev::Accepted => {
            cx.recv(s, 4096, RecvMode::Partial).unwrap();
            // One send, so "ready" and the rest arrive together.
            cx.send(s, &[b"ready".as_slice(), &[7; 1000]].concat())
                .unwrap();
        }
        Ev::Closed(_) => cx.terminate(),
        _ => {}
    });
    let mut p = connect(&m, l);
    let peer = thread::spawn(move || {
        let mut ready = [0; 5];
        p.read_exact(&mut ready).unwrap();
        if linger0 {
            abort_peer(p);
        } else {
            drop(p);
        }
    });
    run(&mut m, &ctx);
    join(peer, &ctx);

    let s = accepted(&m, &ctx);
    let log = m.shared();
    let done = closed_once_last(log, s, &ctx);
    assert_eq!(done.reason, Reason::Lost, "{ctx}: {done:?}");
    assert_eq!(done.os_error, Some(libc::ECONNRESET), "{ctx}: {done:?}");
    assert_eq!(
        count(log, s, &Ev::PeerShutdown),
        0,
        "{ctx}: a reset is no graceful end: {:?}",
        brief(log, s)
    );
}

/// Rule 6 at scale: `close()` drains more than one turn's worth of reads (the
/// peer filled our receive buffer, then ended), and still ends gracefully —
/// edge-triggered readiness does not repeat itself once everything has arrived,
/// so the drain must come back for the rest on its own.
#[test]
fn close_drains_a_full_receive_buffer_over_many_turns() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const TOTAL: usize = 3 << 20;
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", Rec::listener(|| Some(Rec::quiet())));
    // A receive buffer that holds everything the peer sends, inherited by the
    // accepted socket: then nothing is left on the peer's side to arrive later
    // and raise new readiness. Forcing past rmem_max needs root.
    let big: libc::c_int = 8 << 20;
    // SAFETY: one c_int option value, its length given.
    let rc = unsafe {
        libc::setsockopt(
            m.as_fd(l).unwrap().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &big as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        println!("skipped: SO_RCVBUFFORCE needs root");
        return;
    }
    let peer = std::net::TcpStream::connect(inet(&m, l)).unwrap();
    let filled = Arc::new(AtomicUsize::new(0));
    let sender = std::thread::spawn({
        let filled = filled.clone();
        move || {
            let mut peer = peer;
            peer.write_all(&vec![7u8; TOTAL]).unwrap();
            // Wait until all of it sits in our receive buffer (acknowledged).
            for _ in 0..300 {
                let mut queued: libc::c_int = 0;
                // SAFETY: TIOCOUTQ writes one c_int.
                unsafe { libc::ioctl(peer.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
                if queued == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            filled.store(TOTAL, Ordering::Release);
            peer
        }
    });
    // Once the peer has filled the buffer and ended, close the connection.
    let watch = filled.clone();
    m.set_interval(Duration::from_millis(20), move |cx| {
        let ready = watch.load(Ordering::Acquire) > 0;
        if let (true, Some(&s)) = (ready, cx.shared().accepted().first()) {
            if cx.state(s) != tether::State::Closing {
                cx.set_linger(s, Duration::from_secs(3)).unwrap();
                let _ = cx.close(s);
            }
        }
    });
    run_until(&mut m, Duration::from_secs(15), |log| {
        log.accepted().first().is_some_and(|&s| log.is_closed(s))
    });
    let peer = sender.join().unwrap();
    let s = m.shared().accepted()[0];
    let done = m.shared().closed(s);
    assert!(done.reason.is_graceful(), "{done:?}");
    assert_eq!(done.unread, TOTAL as u64, "every byte drained and counted");
    drop(peer);
}
