//! SIGINT and SIGTERM: the first ends every connection gracefully and exits
//! 0, a second resets what is left and exits 1.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;

use common::{named, tether, Proc, LIMIT};

/// Send `signal` (INT, TERM) to the child.
fn signal(p: &Proc, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &p.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// A client of `listen --echo` whose echo came back.
fn client(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut back = [0; 4];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    c
}

/// The first SIGINT closes the listener and each connection gracefully: the
/// clients read to a plain end (no reset), every `closed` is graceful, and
/// the command exits 0.
#[test]
fn sigint_ends_listen_echo_gracefully() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let clients: Vec<TcpStream> = (0..2).map(|_| client(&addr)).collect();
    for _ in 0..2 {
        server.wait_event("accepted");
    }
    signal(&server, "INT");
    for mut c in clients {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("a plain end, not a reset");
        assert!(rest.is_empty());
        c.shutdown(Shutdown::Write).unwrap();
    }
    let out = server.wait(LIMIT);
    assert!(!out.killed, "{}", out.stderr);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let ev = out.events();
    let listener = common::one(&ev, "bound").socket();
    let closed = named(&ev, "closed");
    assert_eq!(closed.len(), 3, "{}", out.stderr);
    assert!(
        closed.iter().any(|c| c.socket() == listener),
        "the listener closes: {}",
        out.stderr
    );
    for c in closed.iter().filter(|c| c.socket() != listener) {
        assert_eq!(c.str("reason"), "normal", "{}", c.line);
    }
}

/// A client that never ends its side holds the graceful close; a second
/// signal resets it: its `closed` says reset, and the command exits 1.
#[test]
fn second_signal_resets_what_is_left() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let mut c = client(&addr);
    server.wait_event("accepted");
    signal(&server, "INT");
    // Our end came (FIN); the client keeps its own side open.
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("a plain end first");
    signal(&server, "TERM");
    let out = server.wait(LIMIT);
    assert!(!out.killed, "{}", out.stderr);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    let ev = out.events();
    let listener = common::one(&ev, "bound").socket();
    let closed: Vec<_> = named(&ev, "closed")
        .into_iter()
        .filter(|c| c.socket() != listener)
        .collect();
    assert_eq!(closed.len(), 1, "{}", out.stderr);
    assert_eq!(closed[0].str("reason"), "reset", "{}", closed[0].line);
}

/// `connect` on SIGINT closes its connection gracefully and exits 0.
#[test]
fn sigint_ends_connect_gracefully() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut p = Proc::spawn(&mut tether(&["connect", "--events", &addr]));
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    p.wait_event("connected");
    signal(&p, "INT");
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest)
        .expect("a plain end, not a reset");
    peer.shutdown(Shutdown::Write).unwrap();
    let out = p.wait(LIMIT);
    assert!(!out.killed, "{}", out.stderr);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let ev = out.events();
    assert_eq!(
        common::last_closed(&ev).str("reason"),
        "normal",
        "{}",
        out.stderr
    );
}
