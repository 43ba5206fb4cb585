//! The flags of connections' timings, TLS trust and logging: --connect-timeout,
//! --keepalive, --user-timeout, --pin, --insecure, --ca system, --log,
//! --version.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A loopback listener that never accepts, its backlog full: a connect to it
/// stays `connecting` (its SYN dropped) until something gives up.
fn full_backlog() -> (socket2::Socket, Vec<TcpStream>, String) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    l.bind(&any.into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    // Fill the backlog: each connect that completes takes a place; once none
    // is left, connects time out.
    let mut held = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => held.push(c),
            Err(_) => break,
        }
    }
    (l, held, addr.to_string())
}

#[test]
fn connect_timeout_ends_a_connect_to_a_full_backlog() {
    let (_l, _held, addr) = full_backlog();
    let start = Instant::now();
    let out = run(
        &["connect", "--connect-timeout", "0.5", "--events", &addr],
        b"",
    );
    let took = start.elapsed();
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(last_closed(&out.events()).str("reason"), "connect_timeout");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn connect_timeout_must_be_positive() {
    for bad in ["0", "-1", "soon"] {
        let out = run(&["connect", "--connect-timeout", bad, "127.0.0.1:9"], b"");
        assert_eq!(out.code(), Some(2), "{bad}: {out:#?}");
        assert!(out.stderr.contains("--connect-timeout"), "{out:#?}");
    }
}

#[test]
fn keepalive_and_user_timeout_parse_errors_are_usage_errors() {
    for (flag, bad, says) in [
        ("--keepalive", "0", "IDLE"),
        ("--keepalive", "60,x", "INTERVAL"),
        ("--keepalive", "60,10,0", "COUNT"),
        ("--keepalive", "1,2,3,4", "IDLE[,INTERVAL,COUNT]"),
        ("--user-timeout", "0", "--user-timeout"),
        ("--user-timeout", "never", "--user-timeout"),
    ] {
        let out = run(&["connect", flag, bad, "127.0.0.1:9"], b"");
        assert_eq!(out.code(), Some(2), "{flag} {bad}: {out:#?}");
        assert!(out.stderr.contains(says), "{flag} {bad}: {out:#?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    }
}

/// With the options set on both ends (the listener's inherited by its
/// connection), bytes go through and both end gracefully: to an address, and
/// to a host name (set once it is resolved and connected).
#[test]
fn keepalive_and_user_timeout_on_a_working_connection() {
    for host in ["127.0.0.1", "localhost"] {
        let mut server = Proc::spawn(&mut tether(&[
            "listen",
            "--keepalive",
            "30,5,4",
            "--user-timeout",
            "10",
            "--events",
            "127.0.0.1:0",
        ]));
        let port = server.bound().rsplit_once(':').unwrap().1.to_string();
        server.write(b"from server\n");
        server.close_stdin();
        let addr = format!("{host}:{port}");
        let out = run(
            &[
                "connect",
                "--keepalive",
                "60",
                "--user-timeout",
                "2.5",
                "--events",
                &addr,
            ],
            b"from client\n",
        );
        assert_eq!(out.code(), Some(0), "{addr}: {out:#?}");
        assert_eq!(out.stdout, "from server\n");
        let server = server.wait(LIMIT);
        assert_eq!(server.code(), Some(0), "{server:#?}");
        assert_eq!(server.stdout, "from client\n");
    }
}

/// `listen --tls` with the test PKI's server certificate, sending `input`.
fn tls_server(pki: &Pki, input: &[u8]) -> (Proc, String) {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--tls",
        "--cert",
        &pki.file("server.pem"),
        "--key",
        &pki.file("server.key"),
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    server.write(input);
    server.close_stdin();
    (server, addr)
}

/// The fingerprint in the colon-separated form `openssl x509 -fingerprint`
/// prints.
fn with_colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn pin_of_the_right_certificate_connects_without_a_ca() {
    let pki = Pki::new();
    for pin in [
        fingerprint(&pki.server_der),
        with_colons(&fingerprint(&pki.server_der)),
    ] {
        let (server, addr) = tls_server(&pki, b"pinned\n");
        let out = run(
            &["connect", "--tls", "--pin", &pin, "--events", &addr],
            b"hi\n",
        );
        let server = server.wait(LIMIT);
        assert_eq!(out.code(), Some(0), "{pin}: {out:#?}");
        assert_eq!(out.stdout, "pinned\n");
        assert_eq!(server.stdout, "hi\n");
    }
}

#[test]
fn pin_of_another_certificate_fails_with_a_message() {
    let pki = Pki::new();
    let wrong = fingerprint(&pki.client_der);
    let (server, addr) = tls_server(&pki, b"");
    let out = run(
        &["connect", "--tls", "--pin", &wrong, "--events", &addr],
        b"hi\n",
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let ev = out.events();
    let closed = last_closed(&ev);
    assert_eq!(closed.str("reason"), "tls_handshake_failed", "{out:#?}");
    drop(server.kill());

    let (server, addr) = tls_server(&pki, b"");
    let out = run(&["connect", "--tls", "--pin", &wrong, &addr], b"hi\n");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.starts_with("tether: "), "{out:#?}");
    assert!(out.stderr.contains("not among the pinned"), "{out:#?}");
    assert_eq!(out.stdout, "");
    drop(server.kill());
}

#[test]
fn pin_that_is_not_a_fingerprint_is_a_usage_error() {
    let out = run(&["connect", "--tls", "--pin", "abcd", "127.0.0.1:9"], b"");
    assert_eq!(out.code(), Some(2), "{out:#?}");
    assert!(out.stderr.starts_with("tether: --pin: "), "{out:#?}");
}

#[test]
fn insecure_connects_to_an_untrusted_server_and_warns() {
    let pki = Pki::new();
    let (server, addr) = tls_server(&pki, b"untrusted\n");
    let out = run(
        &["connect", "--tls", "--insecure", "--events", &addr],
        b"hi\n",
    );
    let server = server.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "untrusted\n");
    assert_eq!(server.stdout, "hi\n");
    let ev = out.events();
    assert!(one(&ev, "warning").str("message").contains("not verified"));
    assert_eq!(
        one(&ev, "tls").opt("peer_fingerprint"),
        Some(&*fingerprint(&pki.server_der))
    );

    // Without --events, the warning is a line.
    let (server, addr) = tls_server(&pki, b"");
    let out = run(&["connect", "--tls", "--insecure", &addr], b"");
    drop(server.wait(LIMIT));
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(
        out.stderr.starts_with("tether: warning: --insecure: "),
        "{out:#?}"
    );

    // Without --insecure, the same server is not trusted.
    let (server, addr) = tls_server(&pki, b"");
    let out = run(&["connect", "--tls", "--events", &addr], b"hi\n");
    assert_eq!(out.code(), Some(1), "{out:#?}");
    drop(server.kill());
}

#[test]
fn ca_system_does_not_trust_a_private_ca() {
    let pki = Pki::new();
    let (server, addr) = tls_server(&pki, b"");
    let out = run(
        &["connect", "--tls", "--ca", "system", "--events", &addr],
        b"hi\n",
    );
    assert_eq!(out.code(), Some(1), "not a usage error: {out:#?}");
    let ev = out.events();
    let closed = last_closed(&ev);
    assert_eq!(closed.str("reason"), "tls_handshake_failed", "{out:#?}");
    assert!(closed.str("error").contains("unknown issuer"), "{out:#?}");
    drop(server.kill());
}

#[test]
fn log_writes_the_library_lines_on_stderr() {
    let addr = dead_tcp_addr();
    let out = run(
        &["connect", "--log", "tether::tcp=debug", "--events", &addr],
        b"",
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("tether::tcp") && l.contains("connecting")),
        "{out:#?}"
    );
    // The events are still whole JSON lines, between the log lines.
    let json: String = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        last_closed(&events(&json)).str("reason"),
        "connect_rejected"
    );

    let quiet = tether(&["connect", &addr])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("tether::"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn log_filter_that_does_not_parse_is_a_usage_error() {
    let out = run(
        &["connect", "--log", "tether::tcp=loud", "127.0.0.1:9"],
        b"",
    );
    assert_eq!(out.code(), Some(2), "{out:#?}");
    assert!(out.stderr.starts_with("tether: --log "), "{out:#?}");
}

#[test]
fn version_prints_the_package_version() {
    let out = tether(&["--version"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("tether {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(env!("CARGO_PKG_VERSION"), "0.1.0");
}
