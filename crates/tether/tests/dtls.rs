//! DTLS on real UDP sockets on loopback: a tether client and a tether DTLS
//! listener, trusted by pinned fingerprints (the WebRTC way) or by a CA,
//! exchanging records, exporting the same SRTP keys, and ending with
//! close_notify either way; handshakes refused for the wrong certificate,
//! timed out on the loop's test clock, and garbage that changes nothing.

mod common;

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use tether::{
    ApiError, ClientCerts, DtlsContext, Fingerprint, IoMux, Reason, RecvMode, SocketId,
    SrtpProfile, State, TestClock, Timeouts, TlsVersion,
};
use tether_impair::{Impairment, UdpRelay};

const LIMIT: Duration = Duration::from_secs(20);

/// A DTLS association user that echoes every record.
fn echo() -> Rec {
    Rec::with(|cx, s, ev| match ev {
        Ev::Accepted => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
        Ev::Received(d) => {
            cx.send(s, d).unwrap();
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
        _ => {}
    })
}

/// A DTLS listener on loopback that echoes, and its address.
fn listener(mux: &mut IoMux<Log>, ctx: &DtlsContext, user: Rec) -> (SocketId, SocketAddr) {
    let l = mux.udp(user);
    mux.bind(l, "127.0.0.1:0").unwrap();
    mux.listen_dtls(l, ctx).unwrap();
    let addr = inet(mux, l);
    (l, addr)
}

fn tls_ready(log: &Log, s: SocketId) -> Option<tether::TlsInfo> {
    log.of(s).into_iter().find_map(|e| match e {
        Ev::TlsReady(info) => Some(info),
        _ => None,
    })
}

/// A client that sends `msgs` once connected (one datagram each), receives
/// as many echoes, then closes.
fn client(msgs: Vec<Vec<u8>>) -> Rec {
    let mut left = msgs.len();
    Rec::with(move |cx, s, ev| match ev {
        Ev::Connected => {
            for m in &msgs {
                cx.send(s, m).unwrap();
            }
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
        Ev::Received(_) => {
            left -= 1;
            if left == 0 {
                cx.close(s).unwrap();
            } else {
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
            }
        }
        _ => {}
    })
}

#[test]
fn pinned_peers_exchange_records_and_export_the_same_srtp_keys() {
    let server_ctx = DtlsContext::builder()
        .srtp(&SrtpProfile::ALL)
        .build()
        .unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .srtp(&SrtpProfile::ALL)
        .build()
        .unwrap();
    let mut mux = mux();
    // The keys, read by each side in its on_tls_ready.
    let keys = Rc::new(RefCell::new(Vec::new()));
    let k = keys.clone();
    let (l, addr) = listener(
        &mut mux,
        &server_ctx,
        Rec::listener(move || Some(keeping_keys(echo(), &k))),
    );
    let msgs: Vec<Vec<u8>> = vec![b"one".to_vec(), vec![7; 1000], b"three".to_vec()];
    let c = mux.udp(keeping_keys(client(msgs.clone()), &keys));
    mux.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    assert_eq!(mux.state(c), State::Connecting);
    run_until(&mut mux, LIMIT, move |log| {
        log.is_closed(c) && log.accepted().iter().all(|a| log.is_closed(*a))
    });
    let log = mux.shared();
    assert!(!log.timed_out, "{:#?}", log.events);
    assert_eq!(log.closed(c).reason, Reason::Normal);
    let received: Vec<Vec<u8>> = log
        .of(c)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Received(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(received, msgs, "every record echoed, whole, in order");
    let a = log.accepted()[0];
    assert_eq!(log.closed(a).reason, Reason::ByPeer);
    assert_eq!(
        log.of(l)
            .iter()
            .filter(|e| matches!(e, Ev::Incoming(_)))
            .count(),
        1
    );
    let ci = tls_ready(log, c).expect("client on_tls_ready");
    let si = tls_ready(log, a).expect("server on_tls_ready");
    assert_eq!(ci.version, TlsVersion::Dtls12);
    assert_eq!(ci.peer_fingerprint, Some(server_ctx.fingerprint()));
    assert_eq!(
        si.peer_fingerprint, None,
        "the server asked for no certificate"
    );
    // The server's first choice of what both offer.
    assert_eq!(ci.srtp_profile, Some(SrtpProfile::AeadAes256Gcm));
    assert_eq!(si.srtp_profile, ci.srtp_profile);
    let keys = keys.borrow();
    assert_eq!(keys.len(), 2, "both sides exported keys");
    assert_eq!(keys[0], keys[1], "client and server keys agree");
    assert_eq!(keys[0].as_bytes().len(), 2 * (32 + 12));
    assert_ne!(keys[0].client_key(), keys[0].server_key());
}

#[test]
fn an_srtp_profile_outside_the_accepted_ones_fails_the_handshake() {
    // The DTLS library answers with its own preference (AEAD_AES_256_GCM);
    // a client that accepts only SRTP_AES128_CM_SHA1_80 refuses the result.
    let server_ctx = DtlsContext::builder()
        .srtp(&SrtpProfile::ALL)
        .build()
        .unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .srtp(&[SrtpProfile::Aes128CmSha1_80])
        .build()
        .unwrap();
    let mut mux = mux();
    let (_, addr) = listener(&mut mux, &server_ctx, Rec::listener(|| Some(echo())));
    let c = mux.udp(Rec::quiet());
    mux.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_until(&mut mux, LIMIT, move |log| log.is_closed(c));
    let done = mux.shared().closed(c);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    assert!(done.error.unwrap().contains("SRTP_AEAD_AES_256_GCM"));
    assert!(mux.srtp_keying_material(c).is_none());
}

#[test]
fn a_server_not_pinned_is_refused() {
    let server_ctx = DtlsContext::builder().build().unwrap();
    let other = DtlsContext::builder().build().unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(other.fingerprint())
        .build()
        .unwrap();
    let mut mux = mux();
    let (_, addr) = listener(&mut mux, &server_ctx, Rec::listener(|| Some(echo())));
    let c = mux.udp(Rec::quiet());
    mux.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_until(&mut mux, LIMIT, move |log| log.is_closed(c));
    let log = mux.shared();
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    assert!(done.error.unwrap().contains("pinned"), "{:?}", log.of(c));
    assert!(!log.of(c).contains(&Ev::Connected));
}

#[test]
fn a_context_without_trust_cannot_connect() {
    let ctx = DtlsContext::builder().build().unwrap();
    let mut mux = mux();
    let c = mux.udp(Rec::quiet());
    assert!(matches!(
        mux.connect_dtls(c, "127.0.0.1:9", &ctx),
        Err(ApiError::TlsRole(_))
    ));
    assert_eq!(mux.state(c), State::NotConnected);
}

#[test]
fn garbage_to_a_listener_costs_nothing_and_changes_nothing() {
    let ctx = DtlsContext::builder().build().unwrap();
    let mut mux = mux();
    let (l, addr) = listener(&mut mux, &ctx, Rec::listener(|| Some(echo())));
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let mut d = i.to_be_bytes().repeat(20);
        d[0] = (i % 30) as u8; // some look like records, none a ClientHello
        junk.send_to(&d, addr).unwrap();
    }
    // And some that look like a ClientHello (a handshake record whose first
    // message is type 1) but are not one: the DTLS library refuses them.
    for i in 0..50u8 {
        let mut d = vec![i; 120];
        (d[0], d[13]) = (22, 1);
        junk.send_to(&d, addr).unwrap();
    }
    // A real client after the garbage is served.
    let client_ctx = DtlsContext::builder()
        .pin(ctx.fingerprint())
        .build()
        .unwrap();
    // Handshakes the listener keeps for unanswered challenges, seen when the
    // real client's handshake is over.
    let pending = Rc::new(std::cell::Cell::new(usize::MAX));
    let seen = pending.clone();
    let c = mux.udp(client(vec![b"after".to_vec()]).also(move |cx, _, ev| {
        if *ev == Ev::Connected {
            seen.set(cx.dtls_pending(l));
        }
    }));
    mux.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_until(&mut mux, LIMIT, move |log| log.is_closed(c));
    let log = mux.shared();
    assert_eq!(log.closed(c).reason, Reason::Normal);
    assert_eq!(pending.get(), 0, "nothing kept for the garbage");
    let incoming = log
        .of(l)
        .iter()
        .filter(|e| matches!(e, Ev::Incoming(_)))
        .count();
    assert_eq!(incoming, 1, "garbage never reached on_incoming");
    assert_eq!(log.accepted().len(), 1);
}

#[test]
fn fingerprint_of_the_generated_certificate_is_stable_and_parses() {
    let ctx = DtlsContext::builder().build().unwrap();
    let text = ctx.fingerprint().to_string();
    assert_eq!(text.parse::<Fingerprint>().unwrap(), ctx.fingerprint());
    assert!(ctx.is_self_signed());
    let other = DtlsContext::builder().build().unwrap();
    assert_ne!(
        other.fingerprint(),
        ctx.fingerprint(),
        "a fresh certificate each time"
    );
}

/// Datagrams waiting on `sock`, counted without blocking.
fn pending_datagrams(sock: &UdpSocket) -> usize {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_silent_server_gets_retransmitted_hellos_then_the_handshake_times_out() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let ctx = DtlsContext::builder()
        .insecure_no_verification()
        .retransmit(Duration::from_millis(100))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let c = m.udp(told(&tx, |_, _, _| {}));
    let handshake = Timeouts {
        handshake: Some(Duration::from_secs(3)),
        ..Timeouts::default()
    };
    m.set_timeouts(c, handshake).unwrap();
    m.connect_dtls(c, &addr.to_string(), &ctx).unwrap();
    run_script(&mut m, &clock, move |sc| {
        sc.settle();
        // The first ClientHello went at connect; the retransmissions go when
        // the loop's clock says, not the wall's.
        let mut hello = [0u8; 2048];
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (n, _) = silent.recv_from(&mut hello).expect("a ClientHello");
        assert_eq!(
            (hello[0], hello[13]),
            (22, 1),
            "a handshake record, a ClientHello"
        );
        assert!(n > 100);
        assert_eq!(
            pending_datagrams(&silent),
            0,
            "no retransmission before its time"
        );
        sc.advance(Duration::from_millis(200));
        silent.set_nonblocking(false).unwrap();
        silent.recv_from(&mut hello).expect("the ClientHello again");
        assert_eq!(hello[13], 1);
        sc.advance(Duration::from_millis(2799));
        assert_eq!(sc.look(move |cx| cx.state(c)), State::Connecting);
        sc.advance(Duration::from_millis(1));
        let (_, ev) = sc.next(&rx, |(_, e)| matches!(e, Ev::Closed(_)));
        let Ev::Closed(done) = ev else { unreachable!() };
        assert_eq!(done.reason, Reason::HandshakeTimeout);
    });
}

#[test]
fn handshake_and_echo_survive_loss_duplication_and_reordering() {
    for seed in [1, 2, 3] {
        let server_ctx = DtlsContext::builder()
            .retransmit(Duration::from_millis(50))
            .build()
            .unwrap();
        let client_ctx = DtlsContext::builder()
            .pin(server_ctx.fingerprint())
            .retransmit(Duration::from_millis(50))
            .build()
            .unwrap();
        let mut m = mux();
        let (_, addr) = listener(&mut m, &server_ctx, Rec::listener(|| Some(echo())));
        let bad = Impairment::none()
            .loss(0.2)
            .duplicate(0.2)
            .reorder(0.3)
            .delay(Duration::from_millis(2), Duration::from_millis(3));
        let relay = UdpRelay::start(addr, seed, bad, bad).unwrap();
        let sent: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 16 + i as usize]).collect();
        let to_send = sent.clone();
        let c = m.udp(Rec::with(move |cx, s, ev| match ev {
            Ev::Connected => {
                for d in &to_send {
                    cx.send(s, d).unwrap();
                }
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
                // Whatever the relay let through has come back by then.
                cx.set_timer(Duration::from_millis(300), move |cx| {
                    let _ = cx.close(s);
                });
            }
            Ev::Received(_) => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
            _ => {}
        }));
        m.connect_dtls(c, &relay.addr().to_string(), &client_ctx)
            .unwrap();
        run_until(&mut m, LIMIT, move |log| log.is_closed(c));
        let log = m.shared();
        assert!(!log.timed_out, "seed {seed}: {:#?}", log.of(c));
        assert!(
            log.of(c).contains(&Ev::Connected),
            "seed {seed}: handshake done"
        );
        assert_eq!(log.closed(c).reason, Reason::Normal);
        let got: Vec<Vec<u8>> = log
            .of(c)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Received(d) => Some(d),
                _ => None,
            })
            .collect();
        // Lost records stay lost (DTLS does not resend data), duplicates are
        // dropped by its replay window, and what arrives is intact.
        assert!(!got.is_empty(), "seed {seed}: some echoes came back");
        for d in &got {
            assert!(sent.contains(d), "seed {seed}: a record changed: {d:?}");
            assert_eq!(
                got.iter().filter(|x| *x == d).count(),
                1,
                "seed {seed}: a duplicate"
            );
        }
        let stats = relay.stats();
        assert!(
            stats.to_target.dropped + stats.to_client.dropped > 0,
            "seed {seed}: the relay dropped some"
        );
    }
}

#[test]
fn mutual_pins_each_side_knows_the_other_by_fingerprint() {
    let ca = common::pki::Ca::new("dtls identities");
    let (server_id, client_id, stranger) = (ca.server(), ca.client("peer"), ca.client("other"));
    let server_ctx = DtlsContext::builder()
        .certificate_pem(server_id.cert_pem.as_bytes(), server_id.key_pem.as_bytes())
        .unwrap()
        .pin(Fingerprint::of(&client_id.der))
        .client_certs(ClientCerts::Required)
        .build()
        .unwrap();
    let context = |id: &common::pki::Identity| {
        DtlsContext::builder()
            .certificate_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
            .unwrap()
            .pin(Fingerprint::of(&server_id.der))
            .build()
            .unwrap()
    };
    let mut m = mux();
    let (_, addr) = listener(&mut m, &server_ctx, Rec::listener(|| Some(echo())));
    let good = m.udp(client(vec![b"known".to_vec()]));
    m.connect_dtls(good, &addr.to_string(), &context(&client_id))
        .unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(good));
    let log = m.shared();
    assert_eq!(log.closed(good).reason, Reason::Normal);
    let a = log.accepted()[0];
    let info = tls_ready(log, a).expect("the server's on_tls_ready");
    assert_eq!(info.peer_fingerprint, Some(Fingerprint::of(&client_id.der)));
    assert_eq!(
        tls_ready(log, good).unwrap().peer_fingerprint,
        Some(Fingerprint::of(&server_id.der))
    );
    // A client with another certificate is refused by the server: its
    // association ends in the handshake, never opened. (A loop that ran to
    // its end closed its sockets: a new one.)
    let mut m = mux();
    let (_, addr) = listener(&mut m, &server_ctx, Rec::listener(|| Some(echo())));
    let bad = m.udp(Rec::quiet());
    m.connect_dtls(bad, &addr.to_string(), &context(&stranger))
        .unwrap();
    run_until(&mut m, LIMIT, move |log| {
        log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    let log = m.shared();
    assert!(!log.timed_out, "{:#?}", log.events);
    let refused = log.accepted()[0];
    let done = log.closed(refused);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    assert!(done.error.unwrap().contains("pinned"));
    assert!(tls_ready(log, refused).is_none());
}

#[test]
fn a_record_larger_than_the_mtu_allows_is_refused_at_send() {
    let ctx = DtlsContext::builder()
        .insecure_no_verification()
        .mtu(600)
        .build()
        .unwrap();
    let max = ctx.max_record();
    assert!(max > 500 && max < 600, "{max}");
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut m = mux();
    let c = m.udp(Rec::quiet());
    m.connect_dtls(c, &silent.local_addr().unwrap().to_string(), &ctx)
        .unwrap();
    assert_eq!(
        m.send(c, &vec![0; max + 1]),
        Err(ApiError::DatagramTooLarge { len: max + 1, max })
    );
    assert_eq!(m.unsent(c), 0, "a refused send changes nothing");
    // One that fits waits for the handshake.
    assert_eq!(m.send(c, &vec![0; max]), Ok(()));
    assert_eq!(m.unsent(c), max as u64);
}

/// A DTLS listener on loopback in a loop on `clock`, whose associations run
/// `hook` and tell `tx` of every callback.
fn told_listener(
    m: &mut IoMux<Log>,
    ctx: &DtlsContext,
    tx: &mpsc::Sender<(SocketId, Ev)>,
    hook: fn(&mut tether::Cx<Log>, SocketId, &Ev),
) -> (SocketId, SocketAddr) {
    let tx = tx.clone();
    listener(m, ctx, Rec::listener(move || Some(told(&tx, hook))))
}

#[test]
fn an_idle_dtls_association_times_out_on_the_loop_clock() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let server_ctx = DtlsContext::builder().build().unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let (l, addr) = told_listener(&mut m, &server_ctx, &tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            let idle = Timeouts {
                idle: Some(Duration::from_secs(5)),
                ..Timeouts::default()
            };
            cx.set_timeouts(s, idle).unwrap();
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
    });
    let c = m.udp(told(&tx, |cx, s, ev| {
        if *ev == Ev::Connected {
            cx.send(s, b"ping").unwrap();
        }
    }));
    m.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_script(&mut m, &clock, move |sc| {
        let (a, _) = sc.next(&rx, |(id, e)| *id != c && matches!(e, Ev::Received(_)));
        sc.advance(Duration::from_secs(3));
        assert_eq!(
            sc.look(move |cx| cx.idle_for(a)),
            Some(Duration::from_secs(3))
        );
        sc.advance(Duration::from_millis(1999));
        assert_eq!(sc.look(move |cx| cx.state(a)), State::Connected);
        sc.advance(Duration::from_millis(1));
        let (_, ev) = sc.next(&rx, |(id, e)| *id == a && matches!(e, Ev::Closed(_)));
        let Ev::Closed(done) = ev else { unreachable!() };
        assert_eq!(done.reason, Reason::IdleTimeout);
        // The listener and the client live on.
        assert_eq!(sc.look(move |cx| cx.state(l)), State::Connected);
        assert_eq!(sc.look(move |cx| cx.state(c)), State::Connected);
    });
}

#[test]
fn max_connections_holds_a_second_peer_until_the_first_ends() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let server_ctx = DtlsContext::builder().build().unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .retransmit(Duration::from_millis(100))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let (l, addr) = told_listener(&mut m, &server_ctx, &tx, |cx, s, ev| {
        if *ev == Ev::Accepted {
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
    });
    m.max_connections(l, Some(1)).unwrap();
    let first = m.udp(told(&tx, |_, _, _| {}));
    m.connect_dtls(first, &addr.to_string(), &client_ctx)
        .unwrap();
    run_script(&mut m, &clock, move |sc| {
        sc.next(&rx, |(id, e)| *id == first && *e == Ev::Connected);
        let ctx = client_ctx.clone();
        let second = sc.look(move |cx| {
            let s = cx.udp(Rec::quiet());
            cx.connect_dtls(s, &addr.to_string(), &ctx).unwrap();
            s
        });
        // Its retransmissions (after about 100 and 300 ms: the DTLS library
        // doubles the wait, with jitter) come and go; it is not let in while
        // the first lives.
        for _ in 0..3 {
            sc.advance(Duration::from_millis(150));
        }
        assert_eq!(sc.look(move |cx| cx.state(second)), State::Connecting);
        assert_eq!(sc.look(move |cx| cx.shared().accepted().len()), 1);
        // The first ends (close_notify): the second's next ClientHello gets in.
        sc.look(move |cx| cx.close(first).unwrap());
        sc.next(&rx, |(id, e)| *id != first && matches!(e, Ev::Closed(_)));
        let mut state_now = (State::Connecting, 1);
        for _ in 0..30 {
            sc.advance(Duration::from_millis(100));
            state_now = sc.look(move |cx| (cx.state(second), cx.shared().accepted().len()));
            if state_now.0 == State::Connected {
                break;
            }
        }
        let (state, accepted) = state_now;
        let seen = sc.look(move |cx| cx.shared().of(second));
        assert_eq!((state, accepted), (State::Connected, 2), "{seen:?}");
    });
}

#[test]
fn a_close_right_after_the_handshake_ends_the_association_by_peer() {
    // The client's close_notify can come with the handshake's last flight,
    // before the server's side has opened: it must still end the association.
    let server_ctx = DtlsContext::builder().build().unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .build()
        .unwrap();
    let mut m = mux();
    let (_, addr) = listener(&mut m, &server_ctx, Rec::listener(|| Some(echo())));
    let clients: Vec<SocketId> = (0..20)
        .map(|_| {
            let c = m.udp(Rec::with(|cx, s, ev| {
                if *ev == Ev::Connected {
                    cx.close(s).unwrap();
                }
            }));
            m.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
            c
        })
        .collect();
    let all = clients.clone();
    run_until(&mut m, LIMIT, move |log| {
        all.iter().all(|c| log.is_closed(*c))
            && log.accepted().len() == 20
            && log.accepted().iter().all(|a| log.is_closed(*a))
    });
    let log = m.shared();
    assert!(!log.timed_out, "{:#?}", log.events);
    for c in clients {
        assert_eq!(log.closed(c).reason, Reason::Normal);
    }
    for a in log.accepted() {
        assert_eq!(log.closed(a).reason, Reason::ByPeer);
    }
}

#[test]
fn records_nobody_asked_for_count_as_unread_and_the_peer_end_waits_for_them() {
    let clock = TestClock::new();
    let mut m = mux_on(&clock);
    let server_ctx = DtlsContext::builder().build().unwrap();
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    // Associations that never recv.
    let (_, addr) = told_listener(&mut m, &server_ctx, &tx, |_, _, _| {});
    let c = m.udp(told(&tx, |cx, s, ev| {
        if *ev == Ev::Connected {
            for d in [&b"one"[..], b"two!", b"three"] {
                cx.send(s, d).unwrap();
            }
            cx.close(s).unwrap();
        }
    }));
    m.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_script(&mut m, &clock, move |sc| {
        let (a, _) = sc.next(&rx, |(id, e)| *id != c && *e == Ev::Accepted);
        let (_, ev) = sc.next(&rx, |(id, e)| *id == c && matches!(e, Ev::Closed(_)));
        let Ev::Closed(done) = ev else { unreachable!() };
        assert_eq!((done.reason, done.unsent), (Reason::Normal, 0));
        // Wait for the association to have read all of it: its state shows
        // the peer's end (close_notify came) while its records wait.
        let mut state = State::Connecting;
        for _ in 0..200 {
            state = sc.look(move |cx| cx.state(a));
            if state == State::NoRecv {
                break;
            }
            sc.advance(Duration::from_millis(1));
        }
        assert_eq!(
            state,
            State::NoRecv,
            "the peer's end is known, not yet reported"
        );
        sc.look(move |cx| cx.close(a).unwrap());
        let (_, ev) = sc.next(&rx, |(id, e)| *id == a && matches!(e, Ev::Closed(_)));
        let Ev::Closed(done) = ev else { unreachable!() };
        // The peer ended first: a graceful end it began.
        assert_eq!(done.reason, Reason::ByPeer);
        assert_eq!(done.unread, 3 + 4 + 5, "the three records nobody asked for");
    });
}

#[test]
fn dtls_13_and_version_choice() {
    use tether::DtlsVersions;
    // (server, client, what they settle on)
    let cases = [
        (
            DtlsVersions::Dtls13,
            DtlsVersions::Dtls13,
            TlsVersion::Dtls13,
        ),
        (DtlsVersions::Both, DtlsVersions::Dtls13, TlsVersion::Dtls13),
        (DtlsVersions::Both, DtlsVersions::Dtls12, TlsVersion::Dtls12),
        (DtlsVersions::Both, DtlsVersions::Both, TlsVersion::Dtls13),
    ];
    for (server, client_v, want) in cases {
        let server_ctx = DtlsContext::builder()
            .versions(server)
            .srtp(&SrtpProfile::ALL)
            .build()
            .unwrap();
        let client_ctx = DtlsContext::builder()
            .versions(client_v)
            .pin(server_ctx.fingerprint())
            .srtp(&SrtpProfile::ALL)
            .build()
            .unwrap();
        let keys = Rc::new(RefCell::new(Vec::new()));
        let k = keys.clone();
        let mut m = mux();
        let (l, addr) = listener(
            &mut m,
            &server_ctx,
            Rec::listener(move || Some(keeping_keys(echo(), &k))),
        );
        let c = m.udp(keeping_keys(
            client(vec![b"v".to_vec(), vec![3; 900]]),
            &keys,
        ));
        m.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
        run_until(&mut m, LIMIT, move |log| {
            log.is_closed(c) && log.accepted().iter().all(|a| log.is_closed(*a))
        });
        let log = m.shared();
        let case = format!("{server:?} server, {client_v:?} client");
        assert!(!log.timed_out, "{case}: {:#?}", log.events);
        assert_eq!(log.closed(c).reason, Reason::Normal, "{case}");
        assert_eq!(log.received(c), [&b"v"[..], &[3; 900]].concat(), "{case}");
        assert_eq!(tls_ready(log, c).unwrap().version, want, "{case}");
        let a = log.accepted()[0];
        assert_eq!(tls_ready(log, a).unwrap().version, want, "{case}");
        // One admission, after the cookie round trip.
        assert_eq!(
            log.of(l)
                .iter()
                .filter(|e| matches!(e, Ev::Incoming(_)))
                .count(),
            1
        );
        let keys = keys.borrow();
        assert_eq!(keys.len(), 2, "{case}");
        assert_eq!(keys[0], keys[1], "{case}");
    }
}

#[test]
fn a_client_hello_from_an_address_that_does_not_answer_gets_a_challenge_and_no_admission() {
    use tether::DtlsVersions;
    for (version, challenge_type) in [(DtlsVersions::Dtls12, 3u8), (DtlsVersions::Dtls13, 2u8)] {
        // A real ClientHello, caught by a socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let ctx = DtlsContext::builder()
            .versions(version)
            .insecure_no_verification()
            .build()
            .unwrap();
        let mut catcher = mux();
        let c = catcher.udp(Rec::quiet());
        catcher
            .connect_dtls(c, &silent.local_addr().unwrap().to_string(), &ctx)
            .unwrap();
        let mut hello = vec![0u8; 2048];
        let (n, _) = silent
            .recv_from(&mut hello)
            .expect("the client's ClientHello");
        hello.truncate(n);
        // Replayed from another address (a spoofer's, which reads what comes).
        let server_ctx = DtlsContext::builder().versions(version).build().unwrap();
        let mut m = mux();
        let (l, addr) = listener(&mut m, &server_ctx, Rec::listener(|| Some(echo())));
        let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
        spoofer.set_nonblocking(true).unwrap();
        spoofer.send_to(&hello, addr).unwrap();
        let answers = Rc::new(RefCell::new(Vec::new()));
        let got = answers.clone();
        let reader = spoofer.try_clone().unwrap();
        // Once the challenge came back: what the listener keeps meanwhile
        // (the one challenged handshake), looked at from the loop itself.
        let pending = Rc::new(std::cell::Cell::new(0));
        let seen = pending.clone();
        m.set_interval(Duration::from_millis(1), move |cx| {
            let mut buf = [0u8; 2048];
            while let Ok((n, _)) = reader.recv_from(&mut buf) {
                got.borrow_mut().push(buf[..n].to_vec());
            }
            if !got.borrow().is_empty() {
                seen.set(cx.dtls_pending(l));
                cx.terminate();
            }
        });
        run_for(&mut m, LIMIT);
        assert!(!m.shared().timed_out, "{version:?}: no answer");
        let answers = answers.borrow();
        assert_eq!(answers.len(), 1, "{version:?}: one challenge");
        for a in answers.iter() {
            assert_eq!(
                (a[0], a[13]),
                (22, challenge_type),
                "{version:?}: a cookie challenge"
            );
        }
        assert_eq!(pending.get(), 1, "{version:?}: one pending challenge");
        let log = m.shared();
        assert!(
            log.of(l).iter().all(|e| !matches!(e, Ev::Incoming(_))),
            "{version:?}"
        );
        assert!(log.accepted().is_empty());
    }
}
