//! The event loop: callbacks never run inside an operation, other threads reach
//! the loop through `MuxHandle`, timers, how `run` ends, what stopping does to
//! open sockets, and swapping a socket's user.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tether::{
    Admission, Closed, Cx, IoMux, LoopGone, MuxHandle, PeerInfo, Reason, RecvMode, SockAddr,
    SocketId, SocketUser, TestClock,
};

const LIMIT: Duration = Duration::from_secs(10);

/// How long a blocking std peer waits before a test counts it as hung.
const PEER_WAIT: Duration = Duration::from_secs(5);

fn drain(r: &mut impl Read) -> (usize, Result<(), ErrorKind>) {
    let mut buf = [0; 4096];
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

/// A port where nothing listens (as far as anyone can know).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ----- no callback inside an operation -----

thread_local! {
    /// Up while one of the test's `cx.*` calls runs on this thread (the loop's).
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Run one operation with the flag up.
fn op<R>(f: impl FnOnce() -> R) -> R {
    assert!(!INSIDE.get(), "operations do not nest");
    INSIDE.set(true);
    let r = f();
    INSIDE.set(false);
    r
}

/// Called first in every callback.
fn check(what: &str) {
    assert!(!INSIDE.get(), "{what} ran inside an operation call");
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    /// A listener: admits each peer as an `Echo`.
    Server,
    /// Echoes, half-closes when the peer does.
    Echo,
    /// Sends "ping", waits for it back, then on a timer opens doomed sockets
    /// and shuts down.
    Client,
    /// Resets as soon as it is connected.
    Resetter,
    /// Expected to fail.
    Doomed,
}

/// A user whose every callback checks that no operation is under way, and
/// whose every operation is made with the flag up.
struct Guarded {
    role: Role,
    peer: String,
}

impl Guarded {
    fn new(role: Role, peer: &str) -> Guarded {
        Guarded {
            role,
            peer: peer.to_owned(),
        }
    }

    fn enter(&self, cx: &mut Cx<Log>, s: SocketId, ev: Ev) {
        check(&format!("{ev:?} of {s} ({:?})", self.role));
        cx.shared_mut().events.push((s, ev));
    }
}

impl SocketUser<Log> for Guarded {
    fn on_connected(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.enter(cx, s, Ev::Connected);
        match self.role {
            Role::Client => {
                op(|| cx.send(s, b"ping")).unwrap();
                op(|| cx.recv(s, 4, RecvMode::Exact)).unwrap();
                op(|| cx.set_linger(s, Duration::from_secs(5))).unwrap();
            }
            Role::Resetter => op(|| cx.reset(s)).unwrap(),
            _ => {}
        }
    }
    fn on_bound(&mut self, cx: &mut Cx<Log>, s: SocketId, local: &SockAddr) {
        self.enter(cx, s, Ev::Bound(local.clone()));
    }
    fn on_incoming(&mut self, cx: &mut Cx<Log>, l: SocketId, peer: &PeerInfo) -> Admission<Log> {
        self.enter(cx, l, Ev::Incoming(peer.peer.clone()));
        Admission::Accept(Box::new(Guarded::new(Role::Echo, "")))
    }
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.enter(cx, s, Ev::Accepted);
        op(|| cx.recv(s, 64, RecvMode::Partial)).unwrap();
    }
    fn on_sent(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.enter(cx, s, Ev::Sent);
    }
    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        self.enter(cx, s, Ev::Received(data.to_vec()));
        match self.role {
            Role::Echo => {
                op(|| cx.send(s, data)).unwrap();
                op(|| cx.recv(s, 64, RecvMode::Partial)).unwrap();
            }
            Role::Client => {
                let peer = self.peer.clone();
                op(|| {
                    cx.set_timer(Duration::from_millis(1), move |cx| {
                        check("a timer");
                        // Sockets made and failing inside a timer callback.
                        let doomed = |peer: &str| Guarded::new(Role::Doomed, peer);
                        op(|| cx.connect_to("localhost:80", doomed("")));
                        let port = dead_port();
                        op(|| cx.connect_to(&format!("127.0.0.1:{port}"), doomed("")));
                        let b = op(|| cx.stream(doomed("")));
                        op(|| cx.bind(b, "nonsense")).unwrap();
                        op(|| cx.connect_to(&peer, Guarded::new(Role::Resetter, "")));
                        op(|| cx.shutdown(s)).unwrap();
                        op(|| cx.recv(s, 1, RecvMode::Partial)).unwrap();
                    })
                });
            }
            _ => {}
        }
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Log>, s: SocketId, _farewell: Option<&[u8]>) {
        self.enter(cx, s, Ev::PeerShutdown);
        if self.role == Role::Echo {
            op(|| cx.close(s)).unwrap();
        }
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        let done = Done::from(closed);
        self.enter(cx, s, Ev::Closed(done));
        // Calls on the dead id are refused at once, and call nothing back.
        assert!(op(|| cx.send(s, b"x")).is_err());
        assert!(op(|| cx.close(s)).is_err());
    }
}

#[test]
fn no_callback_runs_inside_an_operation() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let l = op(|| m.listen_on(&spot.addr, Guarded::new(Role::Server, "")));
        let target = m.local_addr(l).unwrap().to_string();
        let c = op(|| m.connect_to(&target, Guarded::new(Role::Client, &target)));
        let early = op(|| m.connect_to("[::1:80", Guarded::new(Role::Doomed, "")));
        m.handle()
            .post(move |cx| {
                check("a posted closure");
                let port = dead_port();
                op(|| cx.connect_to(&format!("127.0.0.1:{port}"), Guarded::new(Role::Doomed, "")));
            })
            .unwrap();
        assert!(m.shared().events.is_empty(), "nothing before the loop runs");
        run_until(&mut m, LIMIT, move |log| {
            // The client, the early failure, the post's socket and the four its
            // timer made (the echo servers' ends are not waited for).
            let ends = log.events.iter().filter(|(_, e)| match e {
                Ev::Closed(d) => !matches!(d.reason, Reason::Lost | Reason::ByPeer),
                _ => false,
            });
            log.is_closed(c) && ends.count() >= 7
        });
        assert!(!m.shared().timed_out, "{t:?}: {:#?}", m.shared().events);
        let log = m.shared();
        let reasons: Vec<Reason> = log
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Ev::Closed(d) => Some(d.reason),
                _ => None,
            })
            .collect();
        for want in [
            Reason::AddressInvalid,
            Reason::ConnectRejected,
            Reason::Reset,
            Reason::Normal,
        ] {
            assert!(
                reasons.contains(&want),
                "{t:?}: no {want} among {reasons:?}"
            );
        }
        assert_eq!(log.closed(early).reason, Reason::AddressInvalid);
        assert_eq!(log.received(c), b"ping");
        assert_eq!(log.closed(c).reason, Reason::Normal, "{t:?}");
        for ev in [Ev::Connected, Ev::Accepted, Ev::Sent, Ev::PeerShutdown] {
            assert!(log.events.iter().any(|(_, e)| *e == ev), "{t:?}: no {ev:?}");
        }
        assert!(log.events.iter().any(|(_, e)| matches!(e, Ev::Bound(_))));
        assert!(log.events.iter().any(|(_, e)| matches!(e, Ev::Incoming(_))));
    }
}

// ----- MuxHandle -----

fn assert_send_clone<T: Send + Clone + 'static>() {}

#[test]
fn handle_is_send_and_clone() {
    assert_send_clone::<MuxHandle<Log>>();
    // The shared state stays on the loop's thread: the handle never carries it.
    assert_send_clone::<MuxHandle<Rc<RefCell<Vec<u8>>>>>();
}

#[derive(Default)]
struct Posts {
    seen: Vec<Vec<u32>>,
    timed_out: bool,
}

/// Run a loop of `Posts` with a guard like `run_for`'s.
fn run_posts(m: &mut IoMux<Posts>) {
    let guard = m.set_timer(LIMIT, |cx| {
        cx.shared_mut().timed_out = true;
        cx.terminate();
    });
    m.run().unwrap();
    m.cancel_timer(guard);
    assert!(!m.shared().timed_out);
}

#[test]
fn posts_from_many_threads_all_run_in_order() {
    const THREADS: usize = 4;
    const EACH: u32 = 1000;
    let mut m = IoMux::new(Posts {
        seen: vec![Vec::new(); THREADS],
        timed_out: false,
    })
    .unwrap();
    let posters: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = m.handle();
            thread::spawn(move || {
                for i in 0..EACH {
                    h.post(move |cx| cx.shared_mut().seen[t].push(i)).unwrap();
                }
            })
        })
        .collect();
    let h = m.handle();
    let stopper = thread::spawn(move || {
        for p in posters {
            p.join().unwrap();
        }
        h.terminate();
    });
    run_posts(&mut m);
    stopper.join().unwrap();
    for (t, seen) in m.shared().seen.iter().enumerate() {
        assert_eq!(*seen, (0..EACH).collect::<Vec<_>>(), "thread {t}");
    }
}

/// A closure posted before `terminate` runs before `run` returns, even when
/// both arrive while the loop is busy in a callback.
#[test]
fn closures_posted_before_terminate_run() {
    let mut m = IoMux::new(Posts::default()).unwrap();
    let h = m.handle();
    m.set_timer(Duration::from_millis(1), move |_| {
        let h = h.clone();
        thread::spawn(move || {
            h.post(|cx| cx.shared_mut().seen.push(vec![1])).unwrap();
            h.terminate();
        })
        .join()
        .unwrap();
    });
    run_posts(&mut m);
    assert_eq!(m.shared().seen, [vec![1]]);
}

/// A terminate that comes before `run` even started stops that run.
#[test]
fn terminate_before_run_is_not_lost() {
    let mut m = mux();
    let spot = Transport::Tcp.spot();
    let l = m.listen_on(&spot.addr, Rec::quiet()); // keeps the loop from idling out
    let h = m.handle();
    thread::spawn(move || h.terminate()).join().unwrap();
    run_for(&mut m, LIMIT);
    assert!(!m.shared().timed_out, "the terminate was forgotten");
    assert_eq!(m.shared().closed(l).reason, Reason::Stopped);
    // The request was used up: the next run of the same loop runs.
    let again = m.listen_on("127.0.0.1:0", Rec::quiet());
    let ran = Rc::new(Cell::new(false));
    let flag = ran.clone();
    m.set_timer(Duration::from_millis(20), move |cx| {
        flag.set(true);
        cx.terminate();
    });
    run_for(&mut m, LIMIT);
    assert!(ran.get(), "a second run of the same loop runs its timers");
    assert_eq!(m.shared().closed(again).reason, Reason::Stopped);
}

/// A closure posted while a deadline is due runs without waiting for another
/// event: here one posted by a posted closure, in the turn whose timer is due.
/// The poll that takes in readiness before due deadlines are judged takes the
/// waker's event too, and the loop then sleeps with the closure waiting.
#[test]
fn a_closure_posted_while_a_deadline_is_due_runs() {
    let mut m = mux();
    let handle = m.handle();
    let (tx, rx) = mpsc::channel();
    m.set_timer(Duration::ZERO, |_| {});
    let again = handle.clone();
    handle
        .post(move |_| {
            again
                .post(move |_| {
                    let _ = tx.send(());
                })
                .unwrap();
        })
        .unwrap();
    let watchdog = thread::spawn(move || {
        let ran = rx.recv_timeout(PEER_WAIT).is_ok();
        handle.terminate();
        ran
    });
    m.run().unwrap();
    assert!(watchdog.join().unwrap(), "the second closure never ran");
}

#[test]
fn post_after_the_loop_is_gone_fails() {
    let m = mux();
    let h = m.handle();
    let h2 = h.clone();
    h.post(|_| {})
        .expect("the loop exists, even if it is not running");
    drop(m);
    assert_eq!(h.post(|_| {}), Err(LoopGone));
    assert_eq!(
        thread::spawn(move || h2.post(|_| {})).join().unwrap(),
        Err(LoopGone),
        "from another thread too"
    );
    h.terminate(); // harmless
    assert_eq!(LoopGone.to_string(), "the event loop is gone");
}

// ----- timers -----

#[derive(Default)]
struct Ticks {
    fired: Vec<(&'static str, Instant)>,
}

impl Ticks {
    fn count(&self, name: &str) -> usize {
        self.fired.iter().filter(|(n, _)| *n == name).count()
    }
}

/// Run a loop that must end by itself (nothing left), in a thread so that a
/// loop that never ends fails the test instead of hanging it.
fn run_to_idle<S: Default + Send + 'static>(make: impl FnOnce() -> IoMux<S> + Send + 'static) -> S {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut m = make();
        m.run().unwrap();
        let _ = tx.send(m.into_shared());
    });
    rx.recv_timeout(LIMIT)
        .expect("run() did not return by itself")
}

/// `IoMux::into_shared` needs `Default`; a wrapper gives it to any state.
#[derive(Default)]
struct Wrapper<T>(T);

/// When timers fired, by the loop's time: kept outside the loop (`Send`) so
/// a script can read it between moves of a test clock.
type Fired = Arc<Mutex<Vec<(&'static str, Instant)>>>;

fn fire(fired: &Fired, what: &'static str, cx: &Cx<Log>) {
    fired.lock().unwrap().push((what, cx.now()));
}

fn fired(fired: &Fired) -> Vec<(&'static str, Instant)> {
    fired.lock().unwrap().clone()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn one_shot_fires_once_after_its_delay() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let log = Fired::default();
    let start = m.now();
    let f = log.clone();
    m.set_timer(ms(30), move |cx| fire(&f, "once", cx));
    run_script(&mut m, &clock, move |sc| {
        sc.advance(ms(29));
        assert_eq!(fired(&log), [], "at 29 ms");
        sc.advance(ms(1));
        assert_eq!(fired(&log), [("once", start + ms(30))]);
        sc.advance(Duration::from_secs(3600));
        assert_eq!(fired(&log).len(), 1, "once only");
        assert_eq!(sc.look(|cx| cx.stats().timers), 1, "only the look's own");
    });
}

#[test]
fn one_shot_set_in_a_callback_counts_from_now() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let log = Fired::default();
    let start = m.now();
    let f = log.clone();
    m.set_timer(ms(1), move |cx| {
        fire(&f, "outer", cx);
        let f = f.clone();
        cx.set_timer(ms(25), move |cx| fire(&f, "inner", cx));
    });
    run_script(&mut m, &clock, move |sc| {
        sc.advance(ms(1));
        assert_eq!(fired(&log), [("outer", start + ms(1))]);
        sc.advance(ms(24));
        assert_eq!(fired(&log).len(), 1, "25 ms from its call, not yet");
        sc.advance(ms(1));
        assert_eq!(fired(&log)[1], ("inner", start + ms(26)));
    });
}

#[test]
fn interval_repeats_until_cancelled_from_inside() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let log = Fired::default();
    let start = m.now();
    let me = Rc::new(Cell::new(None));
    let (id, f) = (me.clone(), log.clone());
    let t = m.set_interval(ms(3), move |cx| {
        fire(&f, "tick", cx);
        if fired(&f).len() == 3 {
            let t = id.get().unwrap();
            assert!(cx.cancel_timer(t), "cancelled from inside its own callback");
            assert!(!cx.cancel_timer(t), "cancelled only once");
            let f = f.clone();
            cx.set_timer(ms(30), move |cx| fire(&f, "end", cx));
        }
    });
    me.set(Some(t));
    run_script(&mut m, &clock, move |sc| {
        for _ in 0..3 {
            sc.advance(ms(3));
        }
        // Long enough for several more ticks, had the cancel not held.
        for _ in 0..20 {
            sc.advance(ms(3));
        }
        let at = |n| start + ms(n);
        assert_eq!(
            fired(&log),
            [
                ("tick", at(3)),
                ("tick", at(6)),
                ("tick", at(9)),
                ("end", at(39)),
            ]
        );
    });
}

/// A long stall skips the missed ticks of an interval instead of bursting,
/// and the ticks after it count from the stall's end.
#[test]
fn interval_skips_the_ticks_a_stall_missed() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let log = Fired::default();
    let start = m.now();
    let f = log.clone();
    m.set_interval(ms(10), move |cx| fire(&f, "tick", cx));
    run_script(&mut m, &clock, move |sc| {
        sc.advance(ms(10));
        sc.advance(ms(1000));
        sc.advance(ms(10));
        let at = |n| ("tick", start + ms(n));
        assert_eq!(fired(&log), [at(10), at(1010), at(1020)]);
    });
}

#[test]
fn interval_cancelled_from_elsewhere_stops() {
    let ticks = run_to_idle(|| {
        let mut m = IoMux::new(Ticks::default()).unwrap();
        let t = m.set_interval(Duration::from_millis(2), |cx| {
            cx.shared_mut().fired.push(("tick", Instant::now()))
        });
        // Another interval watches the first and cancels it after its third tick.
        let watch = Rc::new(Cell::new(None));
        let me = watch.clone();
        let w = m.set_interval(Duration::from_millis(1), move |cx| {
            if cx.shared().count("tick") >= 3 {
                assert!(cx.cancel_timer(t));
                assert!(cx.cancel_timer(me.get().unwrap()));
                cx.shared_mut().fired.push(("cancel", Instant::now()));
                cx.set_timer(Duration::from_millis(30), |cx| {
                    cx.shared_mut().fired.push(("end", Instant::now()))
                });
            }
        });
        watch.set(Some(w));
        m
    });
    let cancel_at = ticks
        .fired
        .iter()
        .position(|(n, _)| *n == "cancel")
        .unwrap();
    let ticks_before = ticks.fired[..cancel_at]
        .iter()
        .filter(|(n, _)| *n == "tick")
        .count();
    assert!(ticks_before >= 3, "it repeated: {:?}", ticks.fired);
    assert_eq!(ticks.count("end"), 1);
    assert_eq!(
        ticks.count("tick"),
        ticks_before,
        "no tick after the cancel: {:?}",
        ticks.fired
    );
}

#[test]
fn cancelled_timer_never_fires() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let log = Fired::default();
    let f = log.clone();
    let t = m.set_timer(ms(10), move |cx| fire(&f, "no", cx));
    assert!(m.cancel_timer(t));
    assert!(!m.cancel_timer(t), "the second cancel finds nothing");
    let f = log.clone();
    let done = m.set_timer(ms(1), move |cx| fire(&f, "yes", cx));
    let f = log.clone();
    let later = m.set_timer(ms(30), move |cx| {
        assert!(
            !cx.cancel_timer(done),
            "a one-shot that ran cannot be cancelled"
        );
        fire(&f, "later", cx);
    });
    assert_ne!(t, later, "ids are not reused while a stale one may be held");
    run_script(&mut m, &clock, move |sc| {
        for _ in 0..40 {
            sc.advance(ms(1));
        }
        let names: Vec<_> = fired(&log).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["yes", "later"]);
    });
}

// ----- run ends by itself -----

#[test]
fn run_returns_when_nothing_is_left() {
    // Nothing at all.
    let Wrapper(()) = run_to_idle(|| IoMux::new(Wrapper(())).unwrap());

    // A connection that ends gracefully, and nothing else.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = peer.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut s, _) = peer.accept().unwrap();
        s.set_read_timeout(Some(PEER_WAIT)).unwrap();
        drain(&mut s) // our FIN ends it; the peer's drop sends its own
    });
    let log = run_to_idle(move || {
        let mut m = mux();
        m.connect_to(
            &addr,
            Rec::with(|cx, s, ev| {
                if *ev == Ev::Connected {
                    cx.send(s, b"done").unwrap();
                    cx.close(s).unwrap();
                }
            }),
        );
        m
    });
    assert_eq!(server.join().unwrap(), (4, Ok(())));
    let c = log.events[0].0;
    assert_eq!(log.closed(c).reason, Reason::Normal);
}

/// A handle held by another thread keeps the loop alive, since it could post
/// work; once the last one is dropped, the loop ends by itself.
#[test]
fn run_returns_once_the_last_handle_elsewhere_is_dropped() {
    let (tx, rx) = mpsc::channel::<MuxHandle<Log>>();
    let holder = thread::spawn(move || {
        let h = rx.recv().unwrap();
        thread::sleep(Duration::from_millis(30));
        h.post(|cx| cx.shared_mut().timed_out = false).unwrap();
        let h2 = h.clone();
        drop(h);
        thread::sleep(Duration::from_millis(30));
        drop(h2);
    });
    let log = run_to_idle(move || {
        let m = mux();
        tx.send(m.handle()).unwrap();
        m
    });
    holder.join().unwrap();
    assert!(log.events.is_empty());
}

// ----- stopping -----

/// Stopping the loop closes every socket exactly once: open connections are
/// reset (Reason::Stopped), so no peer mistakes the end for a graceful one.
#[test]
fn terminate_closes_everything_once_and_resets_peers() {
    let remote = TcpListener::bind("127.0.0.1:0").unwrap();
    let remote_addr = remote.local_addr().unwrap().to_string();
    let far = thread::spawn(move || {
        let (mut s, _) = remote.accept().unwrap();
        s.set_read_timeout(Some(PEER_WAIT)).unwrap();
        drain(&mut s)
    });
    let mut m = mux();
    let recv_on = |ev: Ev| {
        Rec::with(move |cx, s, e| {
            if *e == ev {
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
        })
    };
    let l = m.listen_on(
        "127.0.0.1:0",
        Rec::listener(move || Some(recv_on(Ev::Accepted))),
    );
    let mut near = Peer::connect(&m, l);
    near.set_read_timeout(Some(PEER_WAIT));
    let near = thread::spawn(move || drain(&mut near));
    let c = m.connect_to(&remote_addr, recv_on(Ev::Connected));
    let connecting = Rc::new(Cell::new(None));
    let d = connecting.clone();
    m.set_interval(Duration::from_millis(2), move |cx| {
        let log = cx.shared();
        let ready = !log.accepted().is_empty() && log.of(c).contains(&Ev::Connected);
        if ready && d.get().is_none() {
            // A third connection, still connecting when the loop stops.
            let s = cx.connect_to(&remote_addr, Rec::quiet());
            assert_eq!(cx.state(s), tether::State::Connecting);
            d.set(Some(s));
            cx.terminate();
        }
    });
    run_for(&mut m, LIMIT);
    assert!(!m.shared().timed_out);
    let log = m.shared();
    let a = log.accepted()[0];
    let d = connecting.get().unwrap();
    for s in [l, a, c, d] {
        assert_eq!(log.close_count(s), 1, "{s}: {:?}", log.of(s));
        assert!(
            matches!(log.of(s).last(), Some(Ev::Closed(_))),
            "{s}: on_closed is last"
        );
        assert_eq!(log.closed(s).reason, Reason::Stopped, "{s}");
    }
    assert_eq!(
        near.join().unwrap(),
        (0, Err(ErrorKind::ConnectionReset)),
        "the accepted one"
    );
    assert_eq!(
        far.join().unwrap(),
        (0, Err(ErrorKind::ConnectionReset)),
        "the connected one"
    );
}

#[test]
fn terminate_from_another_thread_stops_the_loop() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let (tx, rx) = mpsc::channel();
        let l = m.listen_on(
            &spot.addr,
            Rec::listener(move || {
                let tx = tx.clone();
                Some(Rec::with(move |cx, s, ev| {
                    if *ev == Ev::Accepted {
                        cx.recv(s, 64, RecvMode::Partial).unwrap();
                        tx.send(()).unwrap();
                    }
                }))
            }),
        );
        let mut p = Peer::connect(&m, l);
        p.set_read_timeout(Some(PEER_WAIT));
        let h = m.handle();
        let peer = thread::spawn(move || {
            rx.recv_timeout(PEER_WAIT).expect("accepted");
            h.terminate();
            drain(&mut p)
        });
        run_for(&mut m, LIMIT);
        assert!(!m.shared().timed_out, "{t:?}");
        let (read, end) = peer.join().unwrap();
        let a = m.shared().accepted()[0];
        assert_eq!(m.shared().closed(a).reason, Reason::Stopped);
        assert_eq!(m.shared().closed(l).reason, Reason::Stopped);
        assert_eq!(read, 0);
        match t {
            Transport::Tcp => assert_eq!(end, Err(ErrorKind::ConnectionReset)),
            // A Unix-domain stream has no reset to send.
            Transport::Local => assert_eq!(end, Ok(())),
        }
    }
}

// ----- set_user -----

struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn set_user_inside_a_callback_hands_over_the_rest() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let l = m.listen_on(&spot.addr, echo_listener());
        let target = m.local_addr(l).unwrap().to_string();
        let heard: Rc<RefCell<Vec<(&str, Ev)>>> = Rc::default();
        let first_dropped = Rc::new(Cell::new(false));
        let (a_heard, flag) = (heard.clone(), DropFlag(first_dropped.clone()));
        let c = m.connect_to(
            &target,
            Rec::with(move |cx, s, ev| {
                let _keep = &flag; // dropped with this user
                a_heard.borrow_mut().push(("A", ev.clone()));
                if *ev == Ev::Connected {
                    let (b_heard, dropped) = (a_heard.clone(), flag.0.clone());
                    let b = Rec::with(move |cx, s, ev| {
                        assert!(
                            dropped.get(),
                            "the old user is gone before the new one hears anything"
                        );
                        b_heard.borrow_mut().push(("B", ev.clone()));
                        match ev {
                            Ev::Received(_) => cx.shutdown(s).unwrap(),
                            Ev::Sent | Ev::PeerShutdown | Ev::Closed(_) => {}
                            other => panic!("B heard {other:?}"),
                        }
                    });
                    cx.set_user(s, b).unwrap();
                    // Still inside A's callback: the swap is not visible yet.
                    cx.send(s, b"over").unwrap();
                    cx.recv(s, 4, RecvMode::Exact).unwrap();
                }
            }),
        );
        run_until(&mut m, LIMIT, move |log| log.is_closed(c));
        assert!(!m.shared().timed_out, "{t:?}");
        assert!(first_dropped.get());
        let heard = heard.borrow();
        let names: Vec<_> = heard
            .iter()
            .map(|(who, ev)| (*who, std::mem::discriminant(ev)))
            .collect();
        let done = m.shared().closed(c);
        assert_eq!(
            heard
                .iter()
                .map(|(who, ev)| (*who, ev.clone()))
                .collect::<Vec<_>>(),
            [
                ("A", Ev::Connected),
                ("B", Ev::Sent),
                ("B", Ev::Received(b"over".to_vec())),
                ("B", Ev::PeerShutdown),
                ("B", Ev::Closed(done.clone())),
            ],
            "{t:?}: {names:?}"
        );
        assert_eq!(done.reason, Reason::Normal);
    }
}

// ----- the peer's end, whatever the timing -----

/// The peer's last bytes and its FIN arrive together; one recv takes exactly
/// those bytes and no other recv follows. The end is still reported (as it is
/// when the FIN comes later), not left waiting for a recv that never comes.
#[test]
fn peer_end_arriving_with_the_last_bytes_is_reported_without_another_recv() {
    for t in [Transport::Tcp, Transport::Local] {
        let spot = t.spot();
        let mut m = mux();
        let l = m.listen_on(
            &spot.addr,
            Rec::listener(|| {
                Some(Rec::with(|cx, s, ev| match ev {
                    Ev::Accepted => cx.recv(s, 3, RecvMode::Exact).unwrap(),
                    Ev::PeerShutdown => {
                        assert_eq!(cx.state(s), tether::State::NoRecv);
                        cx.shutdown(s).unwrap();
                    }
                    _ => {}
                }))
            }),
        );
        let mut p = Peer::connect(&m, l);
        p.set_read_timeout(Some(PEER_WAIT));
        std::io::Write::write_all(&mut p, b"end").unwrap();
        p.shutdown_write();
        run_until(&mut m, LIMIT, |log| {
            log.accepted().first().is_some_and(|&s| log.is_closed(s))
        });
        assert!(!m.shared().timed_out, "{t:?}: {:?}", m.shared().events);
        let s = m.shared().accepted()[0];
        let done = m.shared().closed(s);
        assert_eq!(
            m.shared().of(s),
            [
                Ev::Accepted,
                Ev::Received(b"end".to_vec()),
                Ev::PeerShutdown,
                Ev::Closed(done.clone())
            ],
            "{t:?}"
        );
        assert_eq!(done.reason, Reason::ByPeer);
        assert_eq!(
            drain(&mut p),
            (0, Ok(())),
            "{t:?}: a clean end for the peer"
        );
    }
}

/// A user that does not want `on_sent` is never called for a send; the user
/// that replaces it (and wants it) is called for every send from then on.
#[test]
fn on_sent_goes_only_to_users_that_want_it() {
    #[derive(Default)]
    struct Counts {
        quiet_sent: usize,
        loud_sent: usize,
        closed: bool,
    }
    struct Quiet;
    impl SocketUser<Counts> for Quiet {
        fn wants_on_sent(&self) -> bool {
            false
        }
        fn on_connected(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
            for _ in 0..3 {
                cx.send(s, b"q").unwrap();
            }
            // From the next callback on, a user that wants on_sent.
            cx.set_user(s, Loud).unwrap();
            cx.send(s, b"l").unwrap();
            cx.send(s, b"l").unwrap();
        }
        fn on_sent(&mut self, cx: &mut Cx<Counts>, _: SocketId) {
            cx.shared_mut().quiet_sent += 1;
        }
        fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &Closed) {}
    }
    struct Loud;
    impl SocketUser<Counts> for Loud {
        fn on_sent(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
            cx.shared_mut().loud_sent += 1;
            if cx.shared().loud_sent == 2 {
                cx.close(s).unwrap();
            }
        }
        fn on_closed(&mut self, cx: &mut Cx<Counts>, _: SocketId, closed: &Closed) {
            assert_eq!(closed.reason, Reason::Normal);
            cx.shared_mut().closed = true;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(PEER_WAIT)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let mut m = IoMux::new(Counts::default()).unwrap();
    m.connect_to(&addr.to_string(), Quiet);
    m.run().unwrap();
    assert_eq!(peer.join().unwrap(), b"qqqll", "every byte went out");
    let counts = m.into_shared();
    assert_eq!(counts.quiet_sent, 0, "the user that did not want on_sent");
    assert_eq!(counts.loud_sent, 2, "the user that did");
    assert!(counts.closed);
}
