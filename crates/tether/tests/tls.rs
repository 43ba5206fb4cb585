//! TLS between tether peers: contexts and their errors, verification and
//! pinning, TLS 1.3 and 1.2, mutual TLS, ALPN. The lifecycle over TLS and
//! StartTLS are in `tls_lifecycle.rs`; interop with openssl and Python in
//! `tls_interop.rs`.

mod common;
mod tls_support;

use common::{mux, Done, Ev, Log, Rec};
use tether::{
    ApiError, ClientCerts, Fingerprint, Reason, RecvMode, SocketId, State, TlsContext, TlsError,
    TlsVersion, TlsVersions,
};
use tls_support::*;

// ----- contexts -----

#[test]
fn context_errors_are_typed_and_name_the_problem() {
    let pki = Pki::new();
    let cert = pki.server.cert_pem.as_bytes();
    let key = pki.server.key_pem.as_bytes();
    let other_key = pki.client.key_pem.as_bytes();
    let b = TlsContext::builder;

    // Garbage inside PEM armour.
    let garbage = b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
    let e = b().certificate_pem(garbage, key).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                what: "certificate chain",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("not valid PEM in the certificate chain: "),
        "{e}"
    );
    let e = b().roots_pem(garbage).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                what: "trust roots",
                ..
            }
        ),
        "{e:?}"
    );
    let bad_key = b"-----BEGIN PRIVATE KEY-----\n!!not base64!!\n-----END PRIVATE KEY-----\n";
    let e = b().certificate_pem(cert, bad_key).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                what: "private key",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("not valid PEM in the private key: "),
        "{e}"
    );

    // PEM, or not even that, without a CERTIFICATE section.
    for chain in [key, &b"garbage"[..]] {
        let e = b().certificate_pem(chain, key).unwrap_err();
        assert!(matches!(e, TlsError::EmptyChain), "{e:?}");
        assert_eq!(e.to_string(), "the certificate chain holds no certificate");
    }
    let e = b().roots_pem(key).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::BadPem {
                what: "trust roots",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "not valid PEM in the trust roots: no CERTIFICATE section found"
    );

    // No key where the key should be.
    let e = b().certificate_pem(cert, cert).unwrap_err();
    assert!(matches!(e, TlsError::NoPrivateKey), "{e:?}");
    assert_eq!(e.to_string(), "no private key found in the key PEM");

    // The key of another certificate: caught when the context is built.
    let e = b()
        .certificate_pem(cert, other_key)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the private key does not match the certificate's public key"
    );

    // Files that cannot be read: the message names the path.
    let missing = "/nonexistent/tether-test/cert.pem";
    let e = b().certificate_files(missing, missing).unwrap_err();
    assert!(
        matches!(&e, TlsError::Read { path, .. } if path == missing),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("cannot read {missing}: No such file or directory (os error 2)")
    );
    let e = b().roots_file(missing).unwrap_err();
    assert!(e.to_string().contains(missing), "{e}");

    // A context that can do nothing, and client certificates nobody can check.
    let e = b().build().unwrap_err();
    assert!(matches!(e, TlsError::Empty), "{e:?}");
    assert_eq!(
        e.to_string(),
        "a TLS context needs a certificate (to serve) or trust roots or pins (to connect)"
    );
    for policy in [ClientCerts::Required, ClientCerts::Optional] {
        let e = pki
            .server_builder()
            .client_certs(policy)
            .build()
            .unwrap_err();
        assert!(matches!(e, TlsError::NoClientTrust), "{e:?}");
        assert_eq!(
            e.to_string(),
            "client certificates cannot be checked without trust roots or pins"
        );
    }

    // DER that is no certificate, as a root.
    let not_der = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let e = b().roots_pem(not_der).unwrap().build().unwrap_err();
    assert!(matches!(e, TlsError::BadRoot(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("a trust root was refused: "),
        "{e}"
    );

    // Fingerprints: 64 hex digits, colons optional.
    for bad in [
        "",
        "zz",
        &"ab".repeat(31),
        &"ab".repeat(33),
        &"g".repeat(64),
    ] {
        let e = bad.parse::<Fingerprint>().unwrap_err();
        assert!(
            matches!(&e, TlsError::BadFingerprint(s) if s == bad),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!("{bad:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
        );
    }
    let f = fp(&pki.server);
    assert_eq!(f.to_string().parse::<Fingerprint>().unwrap(), f);
    assert_eq!(f.to_hex().parse::<Fingerprint>().unwrap(), f);
    assert_eq!(f.to_hex().to_uppercase().parse::<Fingerprint>().unwrap(), f);
    assert_eq!(f.to_string().len(), 95);

    // ALPN names TLS cannot carry.
    let long = "x".repeat(256);
    for bad in ["", long.as_str()] {
        let e = b().alpn(&["h2", bad]).unwrap_err();
        assert!(matches!(&e, TlsError::BadAlpn(p) if p == bad), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{bad:?} is not a valid ALPN protocol name (1 to 255 bytes)")
        );
    }
    assert!(b().alpn(&["x".repeat(255)]).is_ok());

    // What built contexts say about themselves.
    assert_eq!(pki.server_ctx().fingerprint(), Some(f));
    assert_eq!(pki.client_ctx().fingerprint(), None);
    assert_eq!(
        pki.mtls_client_builder().build().unwrap().fingerprint(),
        Some(fp(&pki.client))
    );
}

#[test]
fn a_context_is_used_only_in_a_role_it_can_take() {
    let pki = Pki::new();
    let server_only = pki.server_ctx();
    let client_only = pki.client_ctx();
    let mut m = mux();

    // A context without roots or pins cannot connect: no plaintext, no
    // unverified fallback. The socket is left as it was.
    let c = m.stream(Rec::quiet());
    assert_eq!(
        m.connect_tls(c, "127.0.0.1:9", "localhost", &server_only),
        Err(ApiError::TlsRole(
            "this TLS context cannot connect: it has no trust roots or pins"
        ))
    );
    assert_eq!(m.state(c), State::NotConnected);
    assert_eq!(
        m.connect_tls(c, "127.0.0.1:9", "not a name!", &client_only),
        Err(ApiError::BadServerName("not a name!".into()))
    );
    assert_eq!(m.state(c), State::NotConnected);

    // A context without a certificate cannot serve.
    let l = m.stream(Rec::quiet());
    m.bind(l, "127.0.0.1:0").unwrap();
    assert_eq!(
        m.listen_tls(l, &client_only),
        Err(ApiError::TlsRole(
            "this TLS context cannot serve: it has no certificate"
        ))
    );
    assert_eq!(m.state(l), State::NotConnected);
    // (start_tls's role checks are in `starttls_both_sides_tether`.)
}

// ----- verification -----

#[test]
fn server_certificate_from_an_untrusted_ca_fails_the_handshake() {
    let pki = Pki::new();
    let stranger = Pki::with_ca("stranger CA");
    let (log, c, a) = exchange(&pki.server_ctx(), &stranger.client_ctx(), "localhost");
    assert_failed(&log.of(c), false, UNKNOWN_ISSUER);
    assert_failed(&log.of(a), true, "TLS: received fatal alert: UnknownCA");
}

/// A host name is resolved and, with no server name given, is the name the
/// server is verified as and the SNI it receives.
#[test]
fn a_host_name_is_the_default_server_name() {
    let pki = Pki::new();
    let mut m = mux();
    let (_l, addr) = listen_tls(&mut m, &pki.server_ctx(), common::echo_listener());
    let port = addr.rsplit_once(':').unwrap().1;
    let c = m.stream(ping_client());
    m.connect_tls(c, &format!("localhost:{port}"), "", &pki.client_ctx())
        .unwrap();
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    let (_ci, si) = assert_pinged(&log, c, a);
    assert_eq!(si.server_name.as_deref(), Some("localhost"));
}

/// A `unix:` address holds no name to verify the server as.
#[test]
fn no_default_server_name_for_a_unix_address() {
    let pki = Pki::new();
    let mut m = mux();
    let c = m.stream(Rec::quiet());
    assert_eq!(
        m.connect_tls(c, "unix:@nothing", "", &pki.client_ctx()),
        Err(ApiError::BadServerName(String::new()))
    );
}

#[test]
fn wrong_server_name_fails_the_handshake() {
    let pki = Pki::new();
    let (log, c, a) = exchange(&pki.server_ctx(), &pki.client_ctx(), "example.com");
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    let error = done.error.unwrap();
    assert!(
        error.starts_with("TLS: the certificate is valid for localhost")
            && error.ends_with("not for \"example.com\""),
        "{error}"
    );
    assert_eq!(log.of(c).len(), 1, "{:?}", log.of(c));
    assert_failed(
        &log.of(a),
        true,
        "TLS: received fatal alert: BadCertificate",
    );
}

#[test]
fn pinning_without_roots_accepts_the_pinned_certificate_only() {
    let pki = Pki::new();
    let server_fp = fp(&pki.server);

    // The pin alone is the trust.
    let pinned = TlsContext::builder().pin(server_fp).build().unwrap();
    let (log, c, a) = exchange(&pki.server_ctx(), &pinned, "localhost");
    let (ci, _) = assert_pinged(&log, c, a);
    assert_eq!(ci.peer_fingerprint, Some(server_fp));

    // Roots and pin: both must agree.
    let both = pki.client_builder().pin(server_fp).build().unwrap();
    let (log, c, a) = exchange(&pki.server_ctx(), &both, "localhost");
    assert_pinged(&log, c, a);

    // Another pin, with or without roots that would accept the chain.
    for ctx in [
        TlsContext::builder().pin(fp(&pki.client)).build().unwrap(),
        pki.client_builder().pin(fp(&pki.client)).build().unwrap(),
    ] {
        let (log, c, a) = exchange(&pki.server_ctx(), &ctx, "localhost");
        assert_failed(
            &log.of(c),
            false,
            "TLS: the certificate's fingerprint is not among the pinned ones",
        );
        assert_failed(&log.of(a), true, "TLS: received fatal alert: AccessDenied");
    }
}

// ----- versions, bulk transfer -----

const BULK: usize = 4 << 20;

/// Both sides send 4 MiB at once and shut down, while reading the other's.
fn bulk(
    client_versions: TlsVersions,
    server_versions: TlsVersions,
    version: TlsVersion,
    suite: &str,
) {
    let pki = Pki::new();
    let server = pki
        .server_builder()
        .versions(server_versions)
        .build()
        .unwrap();
    let client = pki
        .client_builder()
        .versions(client_versions)
        .build()
        .unwrap();
    let side = |seed: u8| {
        move |cx: &mut tether::Cx<Log>, s: SocketId, ev: &Ev| match ev {
            Ev::TlsReady(_) => {
                cx.send(s, &pattern(BULK, seed)).unwrap();
                cx.shutdown(s).unwrap();
                cx.recv(s, 64 * 1024, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => cx.recv(s, 64 * 1024, RecvMode::Partial).unwrap(),
            _ => {}
        }
    };
    let mut m = mux();
    let (_l, addr) = listen_tls(
        &mut m,
        &server,
        Rec::listener(move || Some(Rec::with(side(2)))),
    );
    let c = connect_tls(&mut m, &addr, &client, Rec::with(side(1)));
    let log = finish(m, &[c]);
    let a = log.accepted()[0];

    assert_bytes_eq(&log.received(a), &pattern(BULK, 1), "server received");
    assert_bytes_eq(&log.received(c), &pattern(BULK, 2), "client received");
    check_info(
        &tls_info(&log, c),
        version,
        suite,
        None,
        Some(fp(&pki.server)),
        None,
    );
    check_info(
        &tls_info(&log, a),
        version,
        suite,
        None,
        None,
        Some("localhost"),
    );
    for s in [c, a] {
        let events = log.of(s);
        assert_eq!(events.iter().filter(|e| **e == Ev::Sent).count(), 1);
        assert_eq!(events.iter().filter(|e| **e == Ev::PeerShutdown).count(), 1);
        // Both shut down before the other's end was known.
        assert_eq!(events.last(), Some(&Ev::Closed(graceful(Reason::Normal))));
    }
}

#[test]
fn tls13_bulk_both_ways() {
    bulk(
        TlsVersions::Both,
        TlsVersions::Both,
        TlsVersion::Tls13,
        TLS13_SUITE,
    );
    bulk(
        TlsVersions::Tls13,
        TlsVersions::Both,
        TlsVersion::Tls13,
        TLS13_SUITE,
    );
}

#[test]
fn tls12_bulk_both_ways() {
    bulk(
        TlsVersions::Tls12,
        TlsVersions::Both,
        TlsVersion::Tls12,
        TLS12_SUITE,
    );
    bulk(
        TlsVersions::Both,
        TlsVersions::Tls12,
        TlsVersion::Tls12,
        TLS12_SUITE,
    );
}

#[test]
fn no_common_version_fails_both_sides() {
    let pki = Pki::new();
    let server = pki
        .server_builder()
        .versions(TlsVersions::Tls13)
        .build()
        .unwrap();
    let client = pki
        .client_builder()
        .versions(TlsVersions::Tls12)
        .build()
        .unwrap();
    let (log, c, a) = exchange(&server, &client, "localhost");
    assert_failed(
        &log.of(c),
        false,
        "TLS: received fatal alert: ProtocolVersion",
    );
    assert_failed(
        &log.of(a),
        true,
        "TLS: peer is incompatible: Tls12NotOfferedOrEnabled",
    );
}

// ----- mutual TLS -----

#[test]
fn mutual_tls_required_and_presented() {
    let pki = Pki::new();
    for versions in [TlsVersions::Tls13, TlsVersions::Tls12] {
        let server = pki
            .mtls_server_builder()
            .versions(versions)
            .build()
            .unwrap();
        let client = pki.mtls_client_builder().build().unwrap();
        let (log, c, a) = exchange(&server, &client, "localhost");
        let (ci, si) = assert_pinged(&log, c, a);
        assert_eq!(ci.peer_fingerprint, Some(fp(&pki.server)));
        assert_eq!(si.peer_fingerprint, Some(fp(&pki.client)));
        assert_eq!(si.peer_fingerprint, client.fingerprint());
    }
}

#[test]
fn mutual_tls_required_but_missing_tls12_fails_both_handshakes() {
    let pki = Pki::new();
    let server = pki
        .mtls_server_builder()
        .versions(TlsVersions::Tls12)
        .build()
        .unwrap();
    let (log, c, a) = exchange(&server, &pki.client_ctx(), "localhost");
    assert_failed(
        &log.of(c),
        false,
        "TLS: received fatal alert: CertificateRequired",
    );
    assert_failed(&log.of(a), true, "TLS: peer sent no certificates");
}

/// In TLS 1.3 the client's handshake is over when it sends its Finished, which
/// is before the server has judged its (missing) certificate: the client has had
/// `on_tls_ready` and `on_connected` when the server's alert comes, and that
/// alert ends it as a failed handshake all the same.
#[test]
fn mutual_tls_required_but_missing_tls13() {
    let pki = Pki::new();
    let server = pki.mtls_server_builder().build().unwrap();
    let mut m = mux();
    let (_l, addr) = listen_tls(&mut m, &server, common::echo_listener());
    // It sends nothing: data arriving after the server gave up would make its
    // close a reset, which could overtake the alert.
    let c = connect_tls(
        &mut m,
        &addr,
        &pki.client_ctx(),
        Rec::with(|cx, s, ev| {
            if *ev == Ev::Connected {
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
        }),
    );
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    assert_failed(&log.of(a), true, "TLS: peer sent no certificates");
    let ci = tls_info(&log, c);
    assert_eq!(ci.peer_fingerprint, Some(fp(&pki.server)));
    assert_eq!(
        log.of(c),
        vec![
            Ev::TlsReady(ci),
            Ev::Connected,
            Ev::Closed(Done {
                reason: Reason::TlsHandshakeFailed,
                unsent: 0,
                unread: 0,
                error: Some("TLS: received fatal alert: CertificateRequired".into()),
                os_error: None,
                discard: None,
            }),
        ]
    );
}

#[test]
fn optional_client_certificates() {
    let pki = Pki::new();
    let server = pki
        .server_builder()
        .roots_pem(pki.ca.cert_pem.as_bytes())
        .unwrap()
        .client_certs(ClientCerts::Optional)
        .build()
        .unwrap();

    // None: served, anonymously.
    let (log, c, a) = exchange(&server, &pki.client_ctx(), "localhost");
    let (_, si) = assert_pinged(&log, c, a);
    assert_eq!(si.peer_fingerprint, None);

    // A good one: served, and known.
    let (log, c, a) = exchange(
        &server,
        &pki.mtls_client_builder().build().unwrap(),
        "localhost",
    );
    let (_, si) = assert_pinged(&log, c, a);
    assert_eq!(si.peer_fingerprint, Some(fp(&pki.client)));

    // One from another CA: refused.
    let stranger = Pki::with_ca("stranger CA");
    let client = pki
        .client_builder()
        .certificate_pem(
            stranger.client.cert_pem.as_bytes(),
            stranger.client.key_pem.as_bytes(),
        )
        .unwrap()
        .versions(TlsVersions::Tls12)
        .build()
        .unwrap();
    let (log, c, a) = exchange(&server, &client, "localhost");
    assert_failed(&log.of(c), false, "TLS: received fatal alert: UnknownCA");
    assert_failed(&log.of(a), true, UNKNOWN_ISSUER);
}

// ----- ALPN -----

fn alpn_pair(server: &[&str], client: &[&str]) -> (TlsContext, TlsContext, Pki) {
    let pki = Pki::new();
    let s = pki.server_builder().alpn(server).unwrap().build().unwrap();
    let c = pki.client_builder().alpn(client).unwrap().build().unwrap();
    (s, c, pki)
}

#[test]
fn alpn_selected_by_server_preference_and_reported() {
    let (server, client, _pki) = alpn_pair(&["h2", "http/1.1"], &["http/1.1", "h2"]);
    let (log, c, a) = exchange(&server, &client, "localhost");
    let (ci, si) = (tls_info(&log, c), tls_info(&log, a));
    assert_eq!(ci.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(si.alpn.as_deref(), Some(&b"h2"[..]));
    // on_alpn comes first, then on_tls_ready.
    assert_eq!(
        log.of(c)[..3],
        [Ev::Alpn(b"h2".to_vec()), Ev::TlsReady(ci), Ev::Connected]
    );
    assert_eq!(
        log.of(a)[..3],
        [Ev::Accepted, Ev::Alpn(b"h2".to_vec()), Ev::TlsReady(si)]
    );

    // No ALPN on one side: none negotiated, no on_alpn.
    let (server, client, _pki) = alpn_pair(&["h2"], &[]);
    let (log, c, a) = exchange(&server, &client, "localhost");
    let (ci, si) = assert_pinged(&log, c, a);
    assert_eq!((ci.alpn, si.alpn), (None, None));
}

#[test]
fn alpn_without_overlap_fails_both_handshakes() {
    let (server, client, _pki) = alpn_pair(&["h2"], &["http/1.1"]);
    let (log, c, a) = exchange(&server, &client, "localhost");
    assert_failed(
        &log.of(c),
        false,
        "TLS: received fatal alert: NoApplicationProtocol",
    );
    assert_failed(
        &log.of(a),
        true,
        "TLS: peer doesn't support any known protocol",
    );
}

fn alpn_refused(p: &str) -> Option<String> {
    Some(format!("the ALPN protocol {p:?} was refused"))
}

/// The client refuses the server's choice: its connection ends with
/// TlsHandshakeFailed before any application data moves either way.
#[test]
fn alpn_refused_by_the_client() {
    let (server, client, _pki) = alpn_pair(&["h2"], &["h2"]);
    let mut m = mux();
    let (_l, addr) = listen_tls(
        &mut m,
        &server,
        Rec::listener(|| {
            Some(Rec::with(|cx, s, ev| match ev {
                // The client may be gone already: then the send fails the
                // connection at once, and the recv is refused.
                Ev::TlsReady(_) => {
                    cx.send(s, b"greeting").unwrap();
                    let _ = cx.recv(s, 64, RecvMode::Partial);
                }
                Ev::Received(_) => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                _ => {}
            }))
        }),
    );
    let c = m.stream(RefuseAlpn(Rec::with(|cx, s, ev| {
        if *ev == Ev::Connected {
            cx.recv(s, 64, RecvMode::Partial).unwrap();
        }
    })));
    m.connect_tls(c, &addr, "localhost", &client).unwrap();
    // Queued during the handshake: must never go out.
    m.send(c, b"secret").unwrap();
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    assert_eq!(
        log.of(c),
        vec![
            Ev::Alpn(b"h2".to_vec()),
            Ev::Closed(Done {
                reason: Reason::TlsHandshakeFailed,
                unsent: 6,
                unread: 0,
                error: alpn_refused("h2"),
                os_error: None,
                discard: None,
            }),
        ]
    );
    // The server finished its side and said so; then the client was gone
    // (whether the greeting's write saw that, or the read after it).
    let events: Vec<Ev> = log.of(a).into_iter().filter(|e| *e != Ev::Sent).collect();
    assert_eq!(
        events[..3],
        [
            Ev::Accepted,
            Ev::Alpn(b"h2".to_vec()),
            Ev::TlsReady(tls_info(&log, a))
        ]
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(log.closed(a).reason, Reason::Lost, "{events:?}");
}

/// The server refuses: its connection ends with TlsHandshakeFailed, and the
/// greeting it queued never goes out.
#[test]
fn alpn_refused_by_the_server() {
    let (server, client, _pki) = alpn_pair(&["h2"], &["h2"]);
    let mut m = mux();
    let (_l, addr) = listen_tls(
        &mut m,
        &server,
        RefusingListener {
            greeting: b"greeting",
        },
    );
    let c = connect_tls(
        &mut m,
        &addr,
        &client,
        Rec::with(|cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"secret").unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => cx.recv(s, 64, RecvMode::Partial).unwrap(),
            _ => {}
        }),
    );
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    let done = log.closed(a);
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::Alpn(b"h2".to_vec()),
            Ev::Closed(done.clone())
        ]
    );
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    assert_eq!(done.error, alpn_refused("h2"));
    assert_eq!(done.unsent, 8, "the greeting was held back");
    // The client (TLS 1.3) was done first; it then finds the server gone
    // without a word, and never sees the greeting.
    let events: Vec<Ev> = log.of(c).into_iter().filter(|e| *e != Ev::Sent).collect();
    assert_eq!(
        events[..3],
        [
            Ev::Alpn(b"h2".to_vec()),
            Ev::TlsReady(tls_info(&log, c)),
            Ev::Connected
        ]
    );
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(log.closed(c).reason, Reason::Lost, "{events:?}");
}
