//! Embedding the loop in a program's own event loop: `IoMux::turn` one turn at
//! a time, the loop's file descriptor, `poll_timeout`, and how a terminate ends
//! a turn.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use tether::{
    Admission, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId, SocketUser,
    TestClock, Turn,
};

/// What the loop saw, in order.
#[derive(Default)]
struct Log {
    closed: Vec<(SocketId, Reason)>,
    incoming: usize,
    fired: u32,
}

struct Listener;
impl SocketUser<Log> for Listener {
    fn on_incoming(&mut self, cx: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        cx.shared_mut().incoming += 1;
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut().closed.push((s, closed.reason));
    }
}

struct Echo;
impl SocketUser<Log> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Log>, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut().closed.push((s, closed.reason));
    }
}

fn echo_server(mux: &mut IoMux<Log>) -> (SocketId, std::net::SocketAddr) {
    let l = mux.listen_on("127.0.0.1:0", Listener);
    let Some(SockAddr::Inet(addr)) = mux.local_addr(l) else {
        panic!("the listener has no address: {:?}", mux.shared().closed);
    };
    (l, addr)
}

/// Whether `fd` is readable within `wait`, by poll(2).
fn readable(fd: i32, wait: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and its count is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, wait.as_millis() as libc::c_int) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// A program with a frame loop of its own turns the loop once per frame,
/// never blocking in it, and an echo exchange with a std peer completes.
#[test]
fn a_frame_loop_drives_an_echo_exchange() {
    let mut mux = IoMux::new(Log::default()).unwrap();
    let (l, addr) = echo_server(&mut mux);
    let peer = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"one frame at a time").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).unwrap();
        reply
    });
    let mut frames = 0;
    for _frame in 0..5000 {
        frames += 1;
        let started = Instant::now();
        assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a turn with a zero timeout blocked"
        );
        if !mux.shared().closed.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(1)); // the frame's own work
    }
    assert_eq!(peer.join().unwrap(), b"one frame at a time");
    let closed = &mux.shared().closed;
    assert_eq!(closed.len(), 1, "within {frames} frames: {closed:?}");
    assert_eq!(closed[0].1, Reason::ByPeer);
    // Ending the program's own way: a terminate, carried out by the next turn.
    mux.terminate();
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Stopped);
    assert_eq!(mux.shared().closed[1], (l, Reason::Stopped));
    assert_eq!(mux.turn(None).unwrap(), Turn::Idle);
}

/// The loop's descriptor becomes readable when a peer connects, so another
/// event loop can wait on it; the turn it prompts takes the connection in.
#[test]
fn the_descriptor_is_readable_when_a_peer_connects() {
    let mut mux = IoMux::new(Log::default()).unwrap();
    let (_l, addr) = echo_server(&mut mux);
    let fd = mux.as_raw_fd();
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
    assert_eq!(mux.poll_timeout(), None, "no deadline, no work waiting");
    assert!(!readable(fd, Duration::ZERO), "readable with nothing to do");
    let _peer = TcpStream::connect(addr).unwrap();
    assert!(
        readable(fd, Duration::from_secs(5)),
        "a connect left it unreadable"
    );
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
    assert_eq!(mux.shared().incoming, 1);
}

/// A closure posted from another thread makes the descriptor readable; the
/// turn runs it.
#[test]
fn a_posted_closure_makes_the_descriptor_readable() {
    let mut mux = IoMux::new(Log::default()).unwrap();
    let h = mux.handle();
    let fd = mux.as_raw_fd();
    thread::spawn(move || h.post(|cx| cx.shared_mut().fired += 1).unwrap())
        .join()
        .unwrap();
    assert!(readable(fd, Duration::from_secs(5)));
    // The handle is gone and its closure ran: nothing is left.
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Idle);
    assert_eq!(mux.shared().fired, 1);
}

/// On a test clock, a turn fires a timer once the clock has passed it, and
/// moving the clock makes the descriptor readable.
#[test]
fn a_turn_fires_a_due_timer_on_a_test_clock() {
    let clock = TestClock::new();
    let mut mux = IoMux::with_clock(Log::default(), &clock).unwrap();
    mux.set_timer(Duration::from_secs(60), |cx| cx.shared_mut().fired += 1);
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
    assert_eq!(mux.shared().fired, 0, "fired before its time");
    assert_eq!(
        mux.poll_timeout(),
        None,
        "a test clock does not move by waiting"
    );
    clock.advance(Duration::from_secs(59));
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
    assert_eq!(mux.shared().fired, 0, "fired a second early");
    clock.advance(Duration::from_secs(1));
    assert!(
        readable(mux.as_raw_fd(), Duration::ZERO),
        "advance wakes the loop"
    );
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Idle);
    assert_eq!(mux.shared().fired, 1);
}

/// On the system clock, `turn(None)` sleeps until the next timer and no
/// longer, and `poll_timeout` says how long that is.
#[test]
fn turn_none_waits_for_the_next_deadline() {
    let mut mux = IoMux::new(Log::default()).unwrap();
    mux.set_timer(Duration::from_millis(50), |cx| cx.shared_mut().fired += 1);
    let wait = mux.poll_timeout().expect("a timer is set");
    assert!(wait <= Duration::from_millis(50), "{wait:?}");
    let started = Instant::now();
    let mut turns = 0;
    while mux.turn(None).unwrap() == Turn::Running {
        turns += 1;
        assert!(turns < 100, "turn(None) returns without waiting");
    }
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(mux.shared().fired, 1);
}

/// A terminate asked before a turn stops that turn: it closes every socket as
/// `run` would, each with its `on_closed`, and the request is used up.
#[test]
fn a_turn_after_terminate_closes_every_socket() {
    let mut mux = IoMux::new(Log::default()).unwrap();
    let (l, _addr) = echo_server(&mut mux);
    mux.set_timer(Duration::from_secs(3600), |cx| cx.shared_mut().fired += 1);
    mux.terminate();
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Stopped);
    assert_eq!(mux.shared().closed, [(l, Reason::Stopped)]);
    assert_eq!(mux.poll_timeout(), None, "the timers went with the stop");
    // Used up: the loop is idle now, not stopped again, and can be used anew.
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Idle);
    let (_l2, _) = echo_server(&mut mux);
    assert_eq!(mux.turn(Some(Duration::ZERO)).unwrap(), Turn::Running);
}

/// An idle loop's turn returns at once, even with no timeout.
#[test]
fn an_idle_turn_does_not_block() {
    let mut mux = IoMux::new(()).unwrap();
    assert_eq!(mux.turn(None).unwrap(), Turn::Idle);
}
