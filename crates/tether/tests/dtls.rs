//! DTLS on real UDP sockets on loopback: a tether client and a tether DTLS
//! listener, trusted by pinned fingerprints (the WebRTC way) or by a CA,
//! exchanging records, exporting the same SRTP keys, and ending with
//! close_notify either way; handshakes refused for the wrong certificate,
//! timed out on the loop's test clock, and garbage that changes nothing.

mod common;

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use tether::{
    ApiError, DtlsContext, Fingerprint, IoMux, Reason, RecvMode, SocketId, SrtpKeys, SrtpProfile,
    State, TlsVersion,
};

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

/// `user`, and on `on_tls_ready` the socket's SRTP keys pushed to `keys`.
fn keeping_keys(user: Rec, keys: &Rc<RefCell<Vec<SrtpKeys>>>) -> Rec {
    let keys = keys.clone();
    user.also(move |cx, s, ev| {
        if let Ev::TlsReady(_) = ev {
            keys.borrow_mut().extend(cx.srtp_keying_material(s));
        }
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
    // A real client after the garbage is served.
    let client_ctx = DtlsContext::builder()
        .pin(ctx.fingerprint())
        .build()
        .unwrap();
    let c = mux.udp(client(vec![b"after".to_vec()]));
    mux.connect_dtls(c, &addr.to_string(), &client_ctx).unwrap();
    run_until(&mut mux, LIMIT, move |log| log.is_closed(c));
    let log = mux.shared();
    assert_eq!(log.closed(c).reason, Reason::Normal);
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
