//! `tether connect` run as a user would run it, against peers written with
//! std::net and Python: the half-close that nc gets wrong, a peer that
//! resets, every --on-eof ending as the peer sees it, timeouts.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::*;

/// A server that reads everything before it answers: it needs the client's
/// FIN to know the request is complete, and the client must still be
/// listening when the answer comes. `printf hello | nc host port` without -N
/// never sends the FIN (or, with -q 0, hangs up before the answer).
#[test]
fn half_close_gets_the_answer_of_a_server_that_reads_to_eof() {
    let (l, addr) = tcp_listener();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let answer = format!(
            "got {} bytes: {}\n",
            got.len(),
            String::from_utf8_lossy(&got)
        );
        c.write_all(answer.as_bytes()).unwrap();
    });
    let out = run(&["connect", "--events", &addr], b"hello");
    peer.join();
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "got 5 bytes: hello\n");

    let ev = out.events();
    let names: Vec<&str> = ev.iter().map(|e| e.name()).collect();
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(at("connected") < at("stdin_eof"), "{names:?}");
    assert!(at("stdin_eof") < at("peer_shutdown"), "{names:?}");
    assert_eq!(one(&ev, "stdin_eof").str("action"), "half_close");
    let states: Vec<&str> = named(&ev, "state").iter().map(|e| e.str("to")).collect();
    assert_eq!(
        states[..3],
        ["connecting", "connected", "no_send"],
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&"not_connected"));
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "normal", "we ended first");
    assert_eq!(closed.num("unsent"), 0);
    assert_eq!(closed.num("unread"), 0);
    assert_eq!(closed.opt("error"), None);
    // Every line is about the one socket.
    assert!(ev.iter().all(|e| e.socket() == ev[0].socket()));
}

/// The same with a Python server, and no --events: stderr stays empty.
#[test]
fn half_close_with_a_python_server() {
    let script = r#"
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
data = b""
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    data += chunk
c.sendall(b"%d lines\n" % data.count(b"\n"))
c.close()
"#;
    let mut server =
        Proc::spawn(std::process::Command::new(tool("python3", "--version")).args(["-c", script]));
    let port = server.wait_stdout(|_| true).trim().to_string();
    let out = run(
        &["connect", &format!("127.0.0.1:{port}")],
        b"one\ntwo\nthree\n",
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "3 lines\n");
    assert_eq!(out.stderr, "");
    assert!(server.finish(LIMIT).status.success());
}

/// Many chunks of stdin, a few MiB: all of it arrives, in order, once.
#[test]
fn a_large_stdin_arrives_whole() {
    let (l, addr) = tcp_listener();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        c.write_all(format!("{}\n", got.len()).as_bytes()).unwrap();
        got
    });
    let input: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let out = run(&["connect", &addr], &input);
    let got = peer.join();
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, format!("{}\n", input.len()));
    assert!(got == input, "the bytes differ");
}

/// A server that closes with our bytes unread: its kernel answers with RST,
/// and the connection is lost, exit 1.
#[test]
fn a_server_that_resets_means_exit_1_and_reason_lost() {
    for events in [true, false] {
        let (l, addr) = tcp_listener();
        let peer = Peer::spawn(move || {
            let (c, _) = l.accept().unwrap();
            let mut one = [0; 1];
            c.peek(&mut one).unwrap(); // bytes are there, unread
            drop(c); // close with unread data: RST
        });
        let mut args = vec!["connect", &addr];
        if events {
            args.push("--events");
        }
        let mut p = Proc::spawn(&mut tether(&args));
        p.write(b"never read\n"); // and stdin stays open
        peer.join();
        let out = p.wait(LIMIT);
        assert_eq!(out.code(), Some(1), "{out:#?}");
        if events {
            let ev = out.events();
            let closed = one(&ev, "closed");
            assert_eq!(closed.str("reason"), "lost");
            let error = closed.str("error");
            assert!(error.contains("reset"), "{error}");
            assert!(named(&ev, "peer_shutdown").is_empty());
        } else {
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            assert!(
                out.stderr.starts_with(&format!(
                    "tether: connection to {addr} ended: lost (Connection reset by peer"
                )),
                "{}",
                out.stderr
            );
        }
    }
}

/// Nothing listens: connect_rejected, exit 1, one line saying so.
#[test]
fn nothing_listening_is_connect_rejected() {
    let addr = dead_tcp_addr();
    let out = run(&["connect", &addr], b"");
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr,
        format!(
            "tether: connection to {addr} ended: connect_rejected (Connection refused (os error 111))\n"
        )
    );
    let out = run(&["connect", "--events", &addr], b"");
    assert_eq!(out.code(), Some(1));
    let ev = out.events();
    assert_eq!(one(&ev, "closed").str("reason"), "connect_rejected");
    assert!(named(&ev, "connected").is_empty());
}

/// What the peer saw of our end.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Saw {
    /// A clean end of stream (FIN).
    Eof,
    /// ECONNRESET.
    Reset,
    /// Nothing at all, for a second.
    Nothing,
}

/// `tether connect --on-eof ACTION` to a std peer that reads 3 bytes, then
/// watches how the stream ends; after an end of stream it sends `after`.
fn on_eof(action: &str, after: &'static [u8]) -> (Outcome, Saw) {
    let (l, addr) = tcp_listener();
    let (read3, got3) = channel();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut first = [0; 3];
        c.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"abc");
        read3.send(()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0; 64];
        match c.read(&mut buf) {
            Ok(0) => {
                let _ = c.write_all(after);
                Saw::Eof
            }
            Ok(n) => panic!("unexpected bytes {:?}", &buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Saw::Reset,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Saw::Nothing
            }
            Err(e) => panic!("{e}"),
        }
    });
    let mut p = Proc::spawn(&mut tether(&[
        "connect", "--events", "--on-eof", action, "--linger", "5", &addr,
    ]));
    p.write(b"abc");
    got3.recv_timeout(LIMIT).unwrap();
    let out = p.finish(LIMIT); // stdin ends now
    (out, peer.join())
}

#[test]
fn on_eof_half_close_the_peer_sees_eof_and_is_still_heard() {
    let (out, saw) = on_eof("half-close", b"after your end\n");
    assert_eq!(saw, Saw::Eof);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "after your end\n");
    let ev = out.events();
    assert_eq!(one(&ev, "stdin_eof").str("action"), "half_close");
    assert_eq!(one(&ev, "closed").str("reason"), "normal");
}

#[test]
fn on_eof_close_the_peer_sees_eof_and_what_it_sends_is_counted_unread() {
    let (out, saw) = on_eof("close", b"thrown away\n");
    assert_eq!(saw, Saw::Eof);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "", "close reads and discards");
    let ev = out.events();
    assert_eq!(one(&ev, "stdin_eof").str("action"), "close");
    assert!(named(&ev, "state").iter().any(|e| e.str("to") == "closing"));
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "normal");
    assert_eq!(closed.num("unread"), 12);
}

#[test]
fn on_eof_reset_the_peer_sees_a_reset() {
    let (out, saw) = on_eof("reset", b"");
    assert_eq!(saw, Saw::Reset);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let ev = out.events();
    assert_eq!(one(&ev, "closed").str("reason"), "reset");
}

/// With CAP_NET_ADMIN (TCP_REPAIR) the peer hears nothing; without, the
/// library resets, and says which it did.
#[test]
fn on_eof_discard_the_peer_hears_nothing_or_a_reset_as_reported() {
    let (out, saw) = on_eof("discard", b"");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let ev = out.events();
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "discarded");
    match closed.str("discard") {
        "silent" => assert_eq!(saw, Saw::Nothing),
        "reset" => assert_eq!(saw, Saw::Reset),
        other => panic!("discard {other}"),
    }
}

/// No data either way for --idle-timeout: reset, exit 1.
#[test]
fn idle_timeout_ends_with_exit_1() {
    let (l, addr) = tcp_listener();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).map_err(|e| e.kind())
    });
    let start = Instant::now();
    let p = Proc::spawn(&mut tether(&[
        "connect",
        "--idle-timeout",
        "0.3",
        "--events",
        &addr,
    ]));
    let out = p.wait(LIMIT); // stdin open, silent
    let took = start.elapsed();
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let ev = out.events();
    assert_eq!(one(&ev, "closed").str("reason"), "idle_timeout");
    assert_eq!(peer.join(), Err(ErrorKind::ConnectionReset));
}

/// `--on-eof close` to a peer that never ends: past --linger, reset.
#[test]
fn linger_bounds_a_close_the_peer_never_answers() {
    let (l, addr) = tcp_listener();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = Vec::new();
        let eof = c.read_to_end(&mut buf).is_ok(); // our FIN
                                                   // ...and then neither closes nor reads.
        std::thread::sleep(Duration::from_secs(2));
        (eof, buf)
    });
    let start = Instant::now();
    let out = run(
        &[
            "connect", "--on-eof", "close", "--linger", "0.3", "--events", &addr,
        ],
        b"x",
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    let ev = out.events();
    assert_eq!(one(&ev, "closed").str("reason"), "linger_timeout");
    assert_eq!(peer.join(), (true, b"x".to_vec()));
}

/// A host name: `localhost` resolves (off the loop) and connects, and
/// `--events` says what it resolved to before `connected`.
#[test]
fn a_host_name_resolves_and_connects() {
    let (l, addr) = tcp_listener();
    let port = addr.rsplit_once(':').unwrap().1.to_string();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        c.write_all(&got).unwrap();
    });
    let name = format!("localhost:{port}");
    let out = run(&["connect", "--events", &name], b"hello");
    peer.join();
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "hello");
    let ev = out.events();
    let names: Vec<&str> = ev.iter().map(|e| e.name()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(at("resolved") < at("connected"), "{names:?}");
    let resolved = one(&ev, "resolved");
    assert_eq!(resolved.str("name"), name);
    assert!(
        resolved.str("addrs").split(' ').any(|a| a == addr),
        "{}",
        resolved.line
    );
    assert_eq!(one(&ev, "connected").str("peer"), addr);
}

/// A name that does not resolve ends the connection as `resolve_failed`,
/// with the resolver's error.
#[test]
fn a_name_that_does_not_resolve() {
    let out = run(&["connect", "--events", "no-such-host.invalid:80"], b"");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let ev = out.events();
    assert!(named(&ev, "resolved").is_empty());
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "resolve_failed");
    assert!(
        closed.opt("error").is_some_and(|e| !e.is_empty()),
        "{}",
        closed.line
    );
}
