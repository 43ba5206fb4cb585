//! `tether listen`, against another tether and against std::net clients: TCP,
//! Local, TLS (with ALPN and client certificates), framed (connect data,
//! disconnect data, refusal), --echo with many clients, --max-conns.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use common::*;

/// `tether listen ADDR` with `input` on stdin (then stdin's end), waiting
/// until it is bound; returns it and the address it is bound to.
fn listener(args: &[&str], input: &[u8]) -> (Proc, String) {
    let mut server = Proc::spawn(&mut tether(args));
    let addr = server.bound();
    server.write(input);
    server.close_stdin();
    (server, addr)
}

fn graceful(reason: &str) -> bool {
    matches!(reason, "normal" | "by_peer")
}

#[test]
fn tether_to_tether_over_tcp_and_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.sock");
    for addr in [
        "127.0.0.1:0".to_string(),
        format!("unix:{}", path.display()),
    ] {
        let (server, bound) = listener(&["listen", "--events", &addr], b"from server\n");
        if addr.starts_with("unix:") {
            assert_eq!(bound, addr);
        }
        let client = run(&["connect", "--events", &bound], b"from client\n");
        let server = server.wait(LIMIT);
        assert_eq!(client.code(), Some(0), "{client:#?}");
        assert_eq!(server.code(), Some(0), "{server:#?}");
        assert_eq!(client.stdout, "from server\n");
        assert_eq!(server.stdout, "from client\n");

        let ev = server.events();
        let listener = one(&ev, "bound").socket().expect("the listener's index");
        let accepted = one(&ev, "accepted");
        assert_eq!(accepted.opt_num("listener"), Some(listener));
        let incoming = one(&ev, "incoming");
        assert_eq!(incoming.opt("hello"), None);
        let closes = named(&ev, "closed");
        assert_eq!(closes.len(), 2, "the listener, then the connection");
        // One connection: the listener closes as soon as it is taken.
        assert_eq!(closes[0].socket(), Some(listener));
        assert_eq!(closes[0].str("reason"), "normal");
        assert_eq!(closes[1].socket(), accepted.socket());
        assert!(graceful(closes[1].str("reason")), "{:?}", closes[1]);
        assert!(graceful(one(&client.events(), "closed").str("reason")));
        if addr.starts_with("unix:") {
            assert_eq!(incoming.opt("peer"), None, "an unnamed client");
            assert!(!path.exists(), "the socket file is removed");
        }
    }
}

/// Every connection `listen --echo` takes names its listener by the socket
/// index `bound` reported (a number, never null), and its peer by the
/// client's own address.
#[test]
fn accepted_connections_name_their_listener() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        c.write_all(b"x").unwrap();
        let mut back = [0; 1];
        c.read_exact(&mut back).unwrap();
        clients.push(c.local_addr().unwrap().to_string());
    }
    let out = server.kill();
    let ev = out.events();
    let listener = one(&ev, "bound").socket().expect("the listener's index");
    let accepted = named(&ev, "accepted");
    assert_eq!(accepted.len(), 3, "{}", out.stderr);
    for (a, client) in accepted.iter().zip(&clients) {
        assert_eq!(a.opt_num("listener"), Some(listener), "{}", a.line);
        assert_ne!(a.socket(), Some(listener), "{}", a.line);
        assert_eq!(a.opt("peer"), Some(client.as_str()), "{}", a.line);
    }
}

/// Without --echo, the listener takes one connection and stops listening.
#[test]
fn listen_serves_one_connection() {
    let (mut server, addr) = listener(&["listen", "--events", "127.0.0.1:0"], b"");
    let mut first = TcpStream::connect(&addr).unwrap();
    let listener = server.wait_event("accepted").num("listener");
    let closed = server.wait_event("closed");
    assert_eq!(closed.socket(), Some(listener));
    let second = TcpStream::connect(&addr);
    assert_eq!(
        second.map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionRefused)
    );
    first.write_all(b"only me\n").unwrap();
    first.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap(); // stdin was empty: its FIN
    let out = server.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "only me\n");
    assert!(rest.is_empty());
}

#[test]
fn tls_tether_to_tether_with_alpn() {
    let pki = Pki::new();
    let (server, addr) = listener(
        &[
            "listen",
            "--tls",
            "--cert",
            &pki.file("server.pem"),
            "--key",
            &pki.file("server.key"),
            "--alpn",
            "h2,http/1.1",
            "--events",
            "127.0.0.1:0",
        ],
        b"secret from server\n",
    );
    let client = run(
        &[
            "connect",
            "--tls",
            "--ca",
            &pki.file("ca.pem"),
            "--alpn",
            "h2",
            "--server-name",
            "localhost",
            "--events",
            &addr,
        ],
        b"secret from client\n",
    );
    let server = server.wait(LIMIT);
    assert_eq!(client.code(), Some(0), "{client:#?}");
    assert_eq!(server.code(), Some(0), "{server:#?}");
    assert_eq!(client.stdout, "secret from server\n");
    assert_eq!(server.stdout, "secret from client\n");

    let cev = client.events();
    let tls = one(&cev, "tls");
    assert_eq!(tls.str("version"), "TLSv1.3");
    assert_eq!(tls.opt("alpn"), Some("h2"));
    assert_eq!(
        tls.opt("peer_fingerprint"),
        Some(&*fingerprint(&pki.server_der))
    );
    let names: Vec<&str> = cev.iter().map(|e| e.name()).collect();
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(at("tls") < at("connected"), "{names:?}");

    let sev = server.events();
    let tls = one(&sev, "tls");
    assert_eq!(tls.opt("alpn"), Some("h2"));
    assert_eq!(tls.opt("peer_fingerprint"), None);
    assert_eq!(tls.opt("server_name"), Some("localhost"));
}

#[test]
fn tls_over_a_unix_socket() {
    let pki = Pki::new();
    let addr = unix_addr(pki.dir.path(), "tls.sock");
    let (server, _) = listener(
        &[
            "listen",
            "--tls",
            "--cert",
            &pki.file("server.pem"),
            "--key",
            &pki.file("server.key"),
            "--events",
            &addr,
        ],
        b"",
    );
    let client = run(
        &[
            "connect",
            "--tls",
            "--ca",
            &pki.file("ca.pem"),
            "--server-name",
            "localhost",
            &addr,
        ],
        b"over TLS over a unix socket\n",
    );
    let server = server.wait(LIMIT);
    assert_eq!(client.code(), Some(0), "{client:#?}");
    assert_eq!(server.code(), Some(0), "{server:#?}");
    assert_eq!(server.stdout, "over TLS over a unix socket\n");
    assert_eq!(one(&server.events(), "tls").str("version"), "TLSv1.3");
}

/// A server that requires client certificates: served with one, refused
/// without.
#[test]
fn mutual_tls() {
    let pki = Pki::new();
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--tls",
        "--cert",
        &pki.file("server.pem"),
        "--key",
        &pki.file("server.key"),
        "--ca",
        &pki.file("ca.pem"),
        "--require-client-cert",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let connect = |cert: bool| {
        let mut args = vec![
            "connect".to_string(),
            "--tls".into(),
            "--ca".into(),
            pki.file("ca.pem"),
            "--events".into(),
        ];
        if cert {
            args.extend([
                "--client-cert".into(),
                pki.file("client.pem"),
                "--client-key".into(),
                pki.file("client.key"),
            ]);
        }
        args.push(addr.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, b"with a certificate\n")
    };
    let with = connect(true);
    assert_eq!(with.code(), Some(0), "{with:#?}");
    assert_eq!(with.stdout, "with a certificate\n");
    let tls = server.wait_event("tls");
    assert_eq!(
        tls.opt("peer_fingerprint"),
        Some(&*fingerprint(&pki.client_der))
    );

    let without = connect(false);
    assert_eq!(without.code(), Some(1), "{without:#?}");
    assert_eq!(without.stdout, "");
    let refused = server.wait_stderr(|l| l.contains("tls_handshake_failed"));
    assert!(refused.contains("peer sent no certificates"), "{refused}");
    server.kill();
}

/// Connect data, messages line by line, and disconnect data both ways.
#[test]
fn framed_with_hello_and_farewell_both_ways() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--framed",
        "--echo",
        "--farewell",
        "server bye",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let client = run(
        &[
            "connect",
            "--framed",
            "--hello",
            "hi there",
            "--farewell",
            "client bye",
            "--events",
            &addr,
        ],
        b"one\ntwo\n\nlast without newline",
    );
    assert_eq!(client.code(), Some(0), "{client:#?}");
    assert_eq!(client.stdout, "one\ntwo\n\nlast without newline\n");
    let cev = client.events();
    assert_eq!(
        one(&cev, "peer_shutdown").opt("farewell"),
        Some("server bye")
    );
    let closed = one(&cev, "closed");
    assert_eq!(closed.str("reason"), "normal");
    assert_eq!(closed.opt("farewell"), Some("server bye"));

    let closed = server.wait_event("closed");
    let out = server.kill();
    let sev = out.events();
    assert_eq!(one(&sev, "incoming").opt("hello"), Some("hi there"));
    assert_eq!(
        one(&sev, "peer_shutdown").opt("farewell"),
        Some("client bye")
    );
    assert_eq!(closed.str("reason"), "by_peer");
    assert_eq!(closed.opt("farewell"), Some("client bye"));
}

/// listen --framed without --echo relays stdin as messages, both ways.
#[test]
fn framed_relay_on_both_sides() {
    let (server, addr) = listener(
        &[
            "listen",
            "--framed",
            "--farewell",
            "sf",
            "--events",
            "127.0.0.1:0",
        ],
        b"server line\n",
    );
    let client = run(
        &["connect", "--framed", "--farewell", "cf", "--events", &addr],
        b"client line\n",
    );
    let server = server.wait(LIMIT);
    assert_eq!(client.code(), Some(0), "{client:#?}");
    assert_eq!(server.code(), Some(0), "{server:#?}");
    assert_eq!(client.stdout, "server line\n");
    assert_eq!(server.stdout, "client line\n");
    assert_eq!(
        one(&client.events(), "peer_shutdown").opt("farewell"),
        Some("sf")
    );
    assert_eq!(
        one(&server.events(), "peer_shutdown").opt("farewell"),
        Some("cf")
    );
    assert_eq!(one(&server.events(), "incoming").opt("hello"), Some(""));
}

#[test]
fn framed_reject_is_connect_rejected_with_its_data() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--framed",
        "--reject",
        "full, come back later",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let client = run(
        &[
            "connect",
            "--framed",
            "--hello",
            "let me in",
            "--events",
            &addr,
        ],
        b"",
    );
    assert_eq!(client.code(), Some(1), "{client:#?}");
    let cev = client.events();
    assert!(named(&cev, "connected").is_empty());
    let closed = one(&cev, "closed");
    assert_eq!(closed.str("reason"), "connect_rejected");
    assert_eq!(closed.opt("farewell"), Some("full, come back later"));

    let quiet = run(&["connect", "--framed", &addr], b"");
    assert_eq!(quiet.code(), Some(1));
    assert_eq!(quiet.stderr.lines().count(), 1, "{}", quiet.stderr);
    // (Our FAREWELL, queued when stdin ended, never went out: "5 bytes unsent".)
    assert!(
        quiet.stderr.starts_with(&format!(
            "tether: connection to {addr} ended: connect_rejected, rejected with \"full, come back later\""
        )),
        "{}",
        quiet.stderr
    );
    let incoming = server.wait_event("incoming");
    assert_eq!(incoming.opt("hello"), Some("let me in"));
    let out = server.kill();
    assert_eq!(named(&out.events(), "incoming").len(), 2);
    assert!(named(&out.events(), "accepted").is_empty());
}

/// Several clients at once, each echoed in full, each ended gracefully.
#[test]
fn echo_serves_many_clients_at_once() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let clients: Vec<_> = (0..5u8)
        .map(|n| {
            let addr = addr.clone();
            Peer::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(LIMIT)).unwrap();
                let data: Vec<u8> = (0..200_000u32).map(|i| (i as u8) ^ n).collect();
                let mut reader = c.try_clone().unwrap();
                let echo = std::thread::spawn(move || {
                    let mut back = Vec::new();
                    reader.read_to_end(&mut back).unwrap();
                    back
                });
                c.write_all(&data).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                echo.join().unwrap() == data
            })
        })
        .collect();
    for c in clients {
        assert!(c.join(), "an echo differed");
    }
    for _ in 0..5 {
        server.wait_event("closed");
    }
    let out = server.kill();
    let ev = out.events();
    assert_eq!(named(&ev, "accepted").len(), 5);
    let closes = named(&ev, "closed");
    assert_eq!(closes.len(), 5, "the listener runs on");
    assert!(
        closes.iter().all(|c| c.str("reason") == "by_peer"),
        "{closes:#?}"
    );
}

/// --max-conns 1: the second client waits in the backlog until the first
/// ends.
#[test]
fn max_conns_holds_the_next_client_until_one_ends() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--echo",
        "--max-conns",
        "1",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(LIMIT)).unwrap();
    a.write_all(b"a").unwrap();
    let mut one_byte = [0; 1];
    a.read_exact(&mut one_byte).unwrap();
    assert_eq!(&one_byte, b"a");

    let mut b = TcpStream::connect(&addr).unwrap(); // the kernel's backlog takes it
    b.write_all(b"b").unwrap();
    b.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let waiting = b.read(&mut one_byte).map_err(|e| e.kind());
    assert!(
        matches!(waiting, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "{waiting:?}"
    );

    a.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    b.set_read_timeout(Some(LIMIT)).unwrap();
    b.read_exact(&mut one_byte).unwrap();
    assert_eq!(&one_byte, b"b");
    drop(b);
    let out = server.kill();
    assert_eq!(named(&out.events(), "accepted").len(), 2);
}

#[test]
fn idle_timeout_on_the_listening_side() {
    let (server, addr) = listener(
        &["listen", "--idle-timeout", "0.3", "--events", "127.0.0.1:0"],
        b"",
    );
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = Vec::new();
    // stdin was empty: the server half-closed at once; then it went quiet.
    let end = c.read_to_end(&mut got).map_err(|e| e.kind());
    let out = server.wait(LIMIT);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(last_closed(&out.events()).str("reason"), "idle_timeout");
    // The FIN came first; the reset of the timeout may or may not be seen.
    assert!(
        matches!(end, Ok(0) | Err(ErrorKind::ConnectionReset)),
        "{end:?}"
    );
}

/// An address in use: exit 1, one line.
#[test]
fn bind_failure_is_one_line_and_exit_1() {
    let (_taken, addr) = tcp_listener();
    let out = run(&["listen", &addr], b"");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "tether: cannot listen on {addr}: bind_failed (Address already in use (os error 98))\n"
        )
    );
    let out = run(&["listen", "--echo", "--events", &addr], b"");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(one(&out.events(), "closed").str("reason"), "bind_failed");
}
