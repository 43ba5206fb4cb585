//! Happy Eyeballs with real peers on loopback, from a given address list (the
//! system's `localhost` need not resolve to both families).

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::{Closed, Cx, IoMux, SocketId, SocketUser};

#[derive(Default)]
struct Seen {
    events: Vec<String>,
}

struct User;

impl SocketUser<Seen> for User {
    fn on_resolved(&mut self, cx: &mut Cx<Seen>, _s: SocketId, addrs: &[SocketAddr]) {
        cx.shared_mut().events.push(format!("resolved {addrs:?}"));
    }
    fn on_connected(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        let peer = cx.peer_addr(s).map(|a| a.to_string()).unwrap_or_default();
        cx.shared_mut().events.push(format!("connected {peer}"));
        cx.reset(s).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _s: SocketId, closed: &Closed) {
        cx.shared_mut()
            .events
            .push(format!("closed {}", closed.reason));
        cx.terminate();
    }
}

fn run(addrs: &[SocketAddr]) -> Vec<String> {
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let s = mux.stream(User);
    mux.engine.connect_resolved(s, addrs);
    let began = Instant::now();
    // Bounded by a timer: a failing race must not hang the test.
    mux.set_timer(Duration::from_secs(10), |cx| cx.terminate());
    mux.run().unwrap();
    assert!(began.elapsed() < Duration::from_secs(10), "the race hung");
    std::mem::take(&mut mux.shared_mut().events)
}

/// Nothing listens on ::1: the IPv6 attempt is refused, the IPv4 one (started
/// at once, not after the delay) wins, and the socket's user hears of the
/// winner only: one on_connected, one on_closed.
#[test]
fn refused_ipv6_then_ipv4_wins() {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = v4.local_addr().unwrap().port();
    let addrs: Vec<SocketAddr> = vec![
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("[::1]:{port}").parse().unwrap(),
    ];
    let began = Instant::now();
    let events = run(&addrs);
    assert_eq!(
        events,
        [
            format!("resolved [[::1]:{port}, 127.0.0.1:{port}]"),
            format!("connected 127.0.0.1:{port}"),
            "closed reset".to_owned(),
        ]
    );
    assert!(
        began.elapsed() < crate::CONNECTION_ATTEMPT_DELAY,
        "a refused attempt starts the next at once"
    );
    v4.set_nonblocking(true).unwrap();
    assert!(v4.accept().is_ok(), "the winner reached the listener");
}

/// Both families listen: IPv6 goes first and wins; the IPv4 address is not
/// tried at all, because IPv6 connected within the delay.
#[test]
fn ipv6_first() {
    let Ok(v6) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    };
    let port = v6.local_addr().unwrap().port();
    let Ok(v4) = TcpListener::bind(("127.0.0.1", port)) else {
        eprintln!("127.0.0.1:{port} is taken: skipped");
        return;
    };
    let addrs: Vec<SocketAddr> = vec![
        format!("127.0.0.1:{port}").parse().unwrap(),
        format!("[::1]:{port}").parse().unwrap(),
    ];
    let events = run(&addrs);
    assert_eq!(events[1], format!("connected [::1]:{port}"));
    assert_eq!(events.len(), 3, "{events:?}");
    v4.set_nonblocking(true).unwrap();
    assert!(v4.accept().is_err(), "IPv4 was not tried");
}

/// Nothing listens anywhere: every attempt is refused and the socket ends
/// once, with the last failure's reason and no on_connected.
#[test]
fn all_refused_ends_with_the_last_failure() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addrs: Vec<SocketAddr> = vec![
        format!("[::1]:{port}").parse().unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
    ];
    let events = run(&addrs);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1], "closed connect_rejected");
}

/// An attempt that hangs does not hold the race: after the delay the next
/// address starts beside it and wins; the hanging one is closed unseen.
#[test]
fn a_slow_attempt_is_overtaken_after_the_delay() {
    // A listener whose backlog is full and that never accepts leaves a new
    // connect hanging (Linux drops its SYN). Where connects complete anyway,
    // the slow case cannot be made here and only the outcome is checked.
    let slow = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    slow.bind(&any.into()).unwrap();
    slow.listen(0).unwrap();
    let slow_addr = slow.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect_timeout(&slow_addr, Duration::from_millis(200)))
        .collect();
    let fast = TcpListener::bind("127.0.0.1:0").unwrap();
    let fast_addr = fast.local_addr().unwrap();
    let began = Instant::now();
    let events = run(&[slow_addr, fast_addr]);
    assert_eq!(
        events.last().map(String::as_str),
        Some("closed reset"),
        "{events:?}"
    );
    let connected: Vec<_> = events
        .iter()
        .filter(|e| e.starts_with("connected"))
        .collect();
    assert_eq!(connected.len(), 1, "{events:?}");
    if fillers.iter().any(|f| f.is_err()) {
        // The backlog was full: the slow attempt hung.
        assert_eq!(connected[0], &format!("connected {fast_addr}"));
        assert!(began.elapsed() >= crate::CONNECTION_ATTEMPT_DELAY);
    } else if connected[0] != &format!("connected {fast_addr}") {
        eprintln!("connects to a full backlog complete here: the slow case is not made");
    }
}
