//! The lifecycle over TLS between tether peers (and a raw TCP peer sending
//! garbage): ordering around the handshake, half-close with close_notify, the
//! peer's end, a failed handshake that leaves the listener serving, StartTLS.

mod common;
mod tls_support;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::rc::Rc;

use common::{mux, run_until, Ev, Rec};
use tether::{ApiError, Reason, RecvMode, State, TlsRole, TlsVersion, TlsVersions};
use tls_support::*;

/// Data queued while the handshake runs goes out first, before anything sent
/// from `on_tls_ready` or `on_connected`.
#[test]
fn data_queued_during_the_handshake_goes_first() {
    let pki = Pki::new();
    let mut m = mux();
    let (_l, addr) = listen_tls(
        &mut m,
        &pki.server_ctx(),
        Rec::listener(|| {
            Some(Rec::with(|cx, s, ev| match ev {
                Ev::Accepted => {
                    cx.send(s, b"1").unwrap();
                    cx.recv(s, 3, RecvMode::Exact).unwrap();
                }
                Ev::TlsReady(_) => cx.send(s, b"2").unwrap(),
                Ev::Received(_) => cx.recv(s, 1, RecvMode::Partial).unwrap(),
                Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                _ => {}
            }))
        }),
    );
    let c = connect_tls(
        &mut m,
        &addr,
        &pki.client_ctx(),
        Rec::with(|cx, s, ev| match ev {
            Ev::TlsReady(_) => cx.send(s, b"b").unwrap(),
            Ev::Connected => {
                cx.send(s, b"c").unwrap();
                cx.shutdown(s).unwrap();
            }
            _ => {}
        }),
    );
    m.send(c, b"a").unwrap();
    m.recv(c, 2, RecvMode::Exact).unwrap();
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    assert_eq!(log.received(a), b"abc");
    assert_eq!(log.received(c), b"12");
    assert_eq!(log.closed(c), graceful(Reason::Normal));
    assert_eq!(log.closed(a), graceful(Reason::ByPeer));
}

/// A server that speaks first: its data may reach the client with the end of
/// the handshake (TLS 1.2: with the server's Finished). The client still hears
/// `on_tls_ready`, then `on_connected`, then `on_received`.
#[test]
fn server_speaks_first() {
    for versions in [TlsVersions::Tls12, TlsVersions::Tls13] {
        let pki = Pki::new();
        let server = pki.server_builder().versions(versions).build().unwrap();
        let mut m = mux();
        let (_l, addr) = listen_tls(
            &mut m,
            &server,
            Rec::listener(|| {
                Some(Rec::with(|cx, s, ev| match ev {
                    Ev::TlsReady(_) => {
                        cx.send(s, b"greeting").unwrap();
                        cx.recv(s, 64, RecvMode::Partial).unwrap();
                    }
                    Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                    _ => {}
                }))
            }),
        );
        let c = connect_tls(
            &mut m,
            &addr,
            &pki.client_ctx(),
            Rec::with(|cx, s, ev| {
                if let Ev::Received(_) = ev {
                    cx.shutdown(s).unwrap();
                }
            }),
        );
        // Asked for before the connection is up.
        m.recv(c, 8, RecvMode::Exact).unwrap();
        let log = finish(m, &[c]);
        assert_eq!(
            log.of(c),
            vec![
                Ev::TlsReady(tls_info(&log, c)),
                Ev::Connected,
                Ev::Received(b"greeting".to_vec()),
                Ev::PeerShutdown,
                Ev::Closed(graceful(Reason::Normal)),
            ],
            "{versions:?}"
        );
    }
}

// ----- the lifecycle over TLS -----

/// The client shuts down first (close_notify, FIN) and still receives; the
/// server sees the close_notify as the peer's end, answers, and ends too.
#[test]
fn half_close_over_tls_both_directions() {
    let pki = Pki::new();
    let states = Rc::new(RefCell::new(Vec::new()));
    let mut m = mux();
    let st = states.clone();
    let (_l, addr) = listen_tls(
        &mut m,
        &pki.server_ctx(),
        Rec::listener(move || {
            let st = st.clone();
            Some(Rec::with(move |cx, s, ev| match ev {
                Ev::Accepted | Ev::Received(_) => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                Ev::PeerShutdown => {
                    st.borrow_mut().push(("server", cx.state(s)));
                    cx.send(s, b"response").unwrap();
                    cx.shutdown(s).unwrap();
                }
                _ => {}
            }))
        }),
    );
    let st = states.clone();
    let c = connect_tls(
        &mut m,
        &addr,
        &pki.client_ctx(),
        Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"request").unwrap();
                cx.shutdown(s).unwrap();
                st.borrow_mut().push(("client", cx.state(s)));
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                st.borrow_mut().push(("client", cx.state(s)));
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    assert_eq!(
        log.of(c),
        vec![
            Ev::TlsReady(tls_info(&log, c)),
            Ev::Connected,
            Ev::Sent,
            Ev::Received(b"response".to_vec()),
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::Normal)),
        ]
    );
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::TlsReady(tls_info(&log, a)),
            Ev::Received(b"request".to_vec()),
            Ev::PeerShutdown,
            Ev::Sent,
            Ev::Closed(graceful(Reason::ByPeer)),
        ]
    );
    // When "response" is delivered the server's FIN may be known already
    // (it follows close_notify at once): then the state says so.
    let states = states.borrow();
    assert_eq!(
        states[..2],
        [("client", State::NoSend), ("server", State::NoRecv)]
    );
    assert_eq!(states.len(), 3);
    assert!(
        matches!(states[2], ("client", State::NoSend | State::NoSendRecv)),
        "{states:?}"
    );
}

/// The peer ends (close_notify, FIN) right after its side of the handshake, so
/// the end often comes in the same read as the handshake's last message, while
/// the connection is not yet up. With no recv pending, the end is still seen.
#[test]
fn peer_ends_right_after_the_handshake() {
    for _ in 0..20 {
        let pki = Pki::new();
        let mut m = mux();
        let (_l, addr) = listen_tls(
            &mut m,
            &pki.server_ctx(),
            Rec::listener(|| {
                Some(Rec::with(|cx, s, ev| {
                    if *ev == Ev::PeerShutdown {
                        cx.shutdown(s).unwrap();
                    }
                }))
            }),
        );
        let c = connect_tls(
            &mut m,
            &addr,
            &pki.client_ctx(),
            Rec::with(|cx, s, ev| {
                if *ev == Ev::Connected {
                    cx.shutdown(s).unwrap();
                }
            }),
        );
        let log = finish(m, &[c]);
        let a = log.accepted()[0];
        assert_eq!(
            log.of(a),
            [
                Ev::Accepted,
                Ev::TlsReady(tls_info(&log, a)),
                Ev::PeerShutdown,
                Ev::Closed(graceful(Reason::ByPeer))
            ]
        );
        assert_eq!(log.closed(c), graceful(Reason::Normal));
    }
}

/// Garbage instead of a ClientHello fails that connection; the listener goes on
/// and serves the next client.
#[test]
fn garbage_client_hello_fails_one_connection_only() {
    let pki = Pki::new();
    let client_ctx = pki.client_ctx();
    let target = Rc::new(RefCell::new(String::new()));
    let good = Rc::new(RefCell::new(None));
    let mut m = mux();
    let (t, g) = (target.clone(), good.clone());
    let (l, addr) = listen_tls(
        &mut m,
        &pki.server_ctx(),
        Rec::listener(move || {
            let (t, g, ctx) = (t.clone(), g.clone(), client_ctx.clone());
            Some(Rec::with(move |cx, s, ev| match ev {
                Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                Ev::Received(d) => {
                    cx.send(s, d).unwrap();
                    cx.recv(s, 64, RecvMode::Partial).unwrap();
                }
                Ev::PeerShutdown => cx.shutdown(s).unwrap(),
                Ev::Closed(d) if d.reason == Reason::TlsHandshakeFailed => {
                    // Only now does a good client come.
                    let c = cx.stream(ping_client());
                    cx.connect_tls(c, &t.borrow(), "localhost", &ctx).unwrap();
                    *g.borrow_mut() = Some(c);
                }
                _ => {}
            }))
        }),
    );
    *target.borrow_mut() = addr.clone();
    let raw = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.write_all(b"hello world\r\n").unwrap();
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got).map_err(|e| e.kind());
        (got, end)
    });
    run_until(&mut m, LIMIT, move |log| all_closed(log, 2, &[l]));
    assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
    let log = m.into_shared();
    let (got, end) = raw.join().unwrap();

    let accepted = log.accepted();
    assert_failed(
        &log.of(accepted[0]),
        true,
        "TLS: received corrupt message of type InvalidContentType",
    );
    // The garbage peer was told why, in a TLS alert (decode_error), then the
    // connection ended.
    assert_eq!(got, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50]);
    assert_eq!(end, Ok(7));
    let c = good.borrow().expect("the good client was started");
    assert_pinged(&log, c, accepted[1]);
}

// ----- StartTLS -----

/// Both sides upgrade a plain TCP connection. The client sends "STARTTLS\n"
/// and its ClientHello back to back; the plaintext arrives first, as plaintext.
#[test]
fn starttls_both_sides_tether() {
    let pki = Pki::new();
    let server_ctx = pki.server_ctx();
    let client_ctx = pki.client_ctx();
    let ahead = Rc::new(RefCell::new(Vec::new()));
    let mut m = mux();
    let l = m.stream(starttls_server(server_ctx.clone(), 64, ahead.clone()));
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    let addr = m.local_addr(l).unwrap().to_string();
    let results = Rc::new(RefCell::new(Vec::new()));
    let r = results.clone();
    let c = m.stream(Rec::with(move |cx, s, ev| match ev {
        Ev::Connected => {
            cx.send(s, b"STARTTLS\n").unwrap();
            // A context that cannot connect is refused; nothing changes.
            r.borrow_mut().push(cx.start_tls(
                s,
                &server_ctx,
                TlsRole::Client {
                    server_name: "localhost",
                },
                b"",
            ));
            let role = TlsRole::Client {
                server_name: "localhost",
            };
            r.borrow_mut().push(cx.start_tls(s, &client_ctx, role, b""));
            r.borrow_mut().push(cx.start_tls(s, &client_ctx, role, b""));
        }
        Ev::TlsReady(_) => {
            cx.send(s, b"over tls").unwrap();
            cx.recv(s, 8, RecvMode::Exact).unwrap();
        }
        Ev::Received(_) => cx.shutdown(s).unwrap(),
        _ => {}
    }));
    m.connect(c, &addr).unwrap();
    let log = finish(m, &[c]);
    let a = log.accepted()[0];

    assert_eq!(
        *results.borrow(),
        vec![
            Err(ApiError::TlsRole(
                "this TLS context cannot connect: it has no trust roots or pins"
            )),
            Ok(()),
            Err(ApiError::TlsActive),
        ]
    );
    let ci = tls_info(&log, c);
    check_info(
        &ci,
        TlsVersion::Tls13,
        TLS13_SUITE,
        None,
        Some(fp(&pki.server)),
        None,
    );
    assert_eq!(
        log.of(c),
        vec![
            Ev::Connected,
            Ev::Sent,
            Ev::TlsReady(ci),
            Ev::Sent,
            Ev::Received(b"over tls".to_vec()),
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::Normal)),
        ]
    );
    let events = log.of(a);
    let Ev::Received(first) = &events[1] else {
        panic!("{events:?}")
    };
    // The plaintext came first, as plaintext; what followed it in that read
    // was the start of the ClientHello (a handshake record), handed to TLS.
    assert!(first.starts_with(b"STARTTLS\n"), "{first:?}");
    assert_eq!(ahead.borrow().len(), 1);
    let ahead = ahead.borrow()[0];
    assert_eq!(ahead, first.len() - 9);
    if ahead > 0 {
        assert_eq!(first[9], 0x16, "a handshake record");
    }
    let si = tls_info(&log, a);
    check_info(
        &si,
        TlsVersion::Tls13,
        TLS13_SUITE,
        None,
        None,
        Some("localhost"),
    );
    assert_eq!(
        events,
        vec![
            Ev::Accepted,
            Ev::Received(first.clone()),
            Ev::TlsReady(si),
            Ev::Received(b"over tls".to_vec()),
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::ByPeer)),
        ]
    );
}

/// start_tls is misuse before the connection is up, on a listener, or with a
/// recv pending (its bytes would be half plaintext, half decrypted).
#[test]
fn start_tls_misuse() {
    let pki = Pki::new();
    let ctx = pki.server_ctx();
    let mut m = mux();
    let l = m.stream(common::echo_listener());
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    let addr = m.local_addr(l).unwrap().to_string();
    let errors = Rc::new(RefCell::new(Vec::new()));
    let e = errors.clone();
    let c = m.stream(Rec::with(move |cx, s, ev| {
        if *ev == Ev::Connected {
            cx.recv(s, 1, RecvMode::Partial).unwrap();
            e.borrow_mut()
                .push(cx.start_tls(s, &ctx, TlsRole::Server, b""));
            cx.reset(s).unwrap();
        }
    }));
    m.connect(c, &addr).unwrap();
    let ctx = pki.server_ctx();
    let early = m.start_tls(c, &ctx, TlsRole::Server, b"");
    assert!(
        matches!(early, Err(ApiError::Refused(r)) if r.state == State::Connecting),
        "{early:?}"
    );
    let on_listener = m.start_tls(l, &ctx, TlsRole::Server, b"");
    assert!(
        matches!(on_listener, Err(ApiError::Refused(r)) if r.state == State::Listening),
        "{on_listener:?}"
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert!(!m.shared().timed_out);
    assert_eq!(*errors.borrow(), vec![Err(ApiError::RecvPending)]);
}
