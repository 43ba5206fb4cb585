//! `--udp`: one line of stdin, one datagram; one datagram, one line of
//! stdout. Against std UdpSockets and another tether.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;

fn udp_peer() -> (UdpSocket, String) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let addr = s.local_addr().unwrap().to_string();
    (s, addr)
}

/// connect --udp: each line goes as a datagram, each answer comes back as a
/// line; after stdin ends, answers are awaited until a quiet second, then
/// exit 0.
#[test]
fn connect_udp_to_a_std_peer_both_ways() {
    let (peer, addr) = udp_peer();
    let answering = Peer::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0; 2048];
        for _ in 0..3 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            got.push(buf[..n].to_vec());
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&buf[..n]);
            peer.send_to(&answer, from).unwrap();
        }
        got
    });
    let start = Instant::now();
    let out = run(&["connect", "--udp", "--events", &addr], b"one\ntwo\n\n");
    let took = start.elapsed();
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "echo:one\necho:two\necho:\n");
    assert_eq!(
        answering.join(),
        [b"one".to_vec(), b"two".to_vec(), Vec::new()],
        "the newline is not sent; an empty line is an empty datagram"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let ev = out.events();
    assert_eq!(one(&ev, "connected").opt("peer"), Some(&*addr));
    assert_eq!(one(&ev, "stdin_eof").str("action"), "half_close");
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "discarded");
    assert_eq!(closed.opt("discard"), Some("silent"));
}

/// --linger sets the wait; --on-eof close ends at once.
#[test]
fn connect_udp_wait_after_stdin() {
    let (_peer, addr) = udp_peer();
    for (args, at_least, under) in [
        (vec!["--linger", "0.2"], 200, 900),
        (vec!["--on-eof", "close"], 0, 500),
    ] {
        let mut all = vec!["connect", "--udp"];
        all.extend(args.iter().copied());
        all.push(&addr);
        let start = Instant::now();
        let out = run(&all, b"x\n");
        let took = start.elapsed();
        assert_eq!(out.code(), Some(0), "{args:?}: {out:#?}");
        assert!(
            took >= Duration::from_millis(at_least) && took < Duration::from_millis(under),
            "{args:?}: {took:?}"
        );
    }
}

/// Nothing at the peer's port: the ICMP error ends it as lost, exit 1.
#[test]
fn connect_udp_to_a_closed_port_is_lost() {
    let (peer, addr) = udp_peer();
    drop(peer);
    let mut p = Proc::spawn(&mut tether(&["connect", "--udp", "--events", &addr]));
    p.write(b"anyone?\n");
    let out = p.wait(LIMIT);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let closed = one(&out.events(), "closed").clone();
    assert_eq!(closed.str("reason"), "lost");
    assert!(closed.str("error").contains("refused"), "{closed:?}");
}

/// listen --udp prints every datagram and sends stdin to the first sender;
/// --on-eof close ends it when stdin ends.
#[test]
fn listen_udp_prints_datagrams_and_answers_the_first_sender() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--udp",
        "--on-eof",
        "close",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    server.write(b"reply\n"); // held until someone sends
    let (peer, _) = udp_peer();
    peer.send_to(b"hello", &addr).unwrap();
    let mut buf = [0; 64];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"reply");
    assert_eq!(from.to_string(), addr);
    peer.send_to(b"and more", &addr).unwrap();
    server.wait_stdout(|l| l == "and more\n");
    let out = server.finish(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "hello\nand more\n");
    assert_eq!(one(&out.events(), "closed").str("reason"), "discarded");
}

#[test]
fn listen_udp_echo_and_tether_to_tether() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--udp",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let (peer, _) = udp_peer();
    peer.send_to(b"abc", &addr).unwrap();
    let mut buf = [0; 64];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"abc");

    let out = run(
        &["connect", "--udp", "--linger", "0.3", &addr],
        b"ping\npong\n",
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "ping\npong\n");
    let ev = server.kill().events();
    assert!(
        named(&ev, "closed").is_empty(),
        "the echo runs until killed"
    );
}

/// --idle-timeout on UDP: discarded after the quiet time, exit 1.
#[test]
fn udp_idle_timeout() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--udp",
        "--idle-timeout",
        "0.3",
        "--events",
        "127.0.0.1:0",
    ]));
    server.bound();
    let out = server.wait(LIMIT);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(one(&out.events(), "closed").str("reason"), "idle_timeout");
}
