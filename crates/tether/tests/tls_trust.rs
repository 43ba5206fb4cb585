//! Whom a context trusts and what it presents: certificates made by `openssl`
//! as people make them (a self-signed `CA:TRUE` certificate without
//! subjectAltName; a leaf signed by a CA), given directly as trust roots; the
//! messages of a refused certificate; the platform's roots; a certificate
//! replaced while a server runs; distinct server and client identities.

mod common;
mod tls_support;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use common::pki::Identity;
use common::{mux, run_for, run_until, Ev, Log, Rec};
use tether::{ClientCerts, Fingerprint, Reason, RecvMode, SocketId, TlsContext};
use tls_support::*;

/// Run `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl_in(dir: &Path, args: &[&str]) {
    let out = Command::new(openssl())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// The certificate everyone makes: `openssl req -x509` with a CN and nothing
/// else (`CA:TRUE`, no subjectAltName). Writes `{name}.pem` and `{name}.key`.
fn self_signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl_in(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "30",
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// A CA (`ca.pem`, `ca.key`) and a leaf for `localhost` it signed, with a
/// subjectAltName (`leaf.pem`, `leaf.key`), all made by openssl.
fn ca_and_leaf(dir: &Path) {
    self_signed(dir, "ca", "openssl test CA");
    openssl_in(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
}

/// `openssl s_server` with `cert` and `key`, for one connection; returns it and
/// its address.
fn s_server(cert: &Path, key: &Path) -> (Proc, String) {
    let mut server = Proc::spawn(
        Command::new(openssl())
            .args([
                "s_server",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
                "-ign_eof",
            ])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key),
    );
    let line = server.wait_line(LIMIT, |l| l.starts_with("ACCEPT"));
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    (server, format!("127.0.0.1:{port}"))
}

/// A client that shuts down as soon as it is connected.
fn quick_client() -> Rec {
    Rec::with(|cx, s, ev| {
        if *ev == Ev::Connected {
            cx.shutdown(s).unwrap();
        }
    })
}

/// Connect to `addr` as `name` with `ctx` and run until the socket closed.
fn connect_once(addr: &str, name: &str, ctx: &TlsContext) -> (Log, SocketId) {
    let mut m = mux();
    let c = m.stream(quick_client());
    m.connect_tls(c, addr, name, ctx).unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
    (m.into_shared(), c)
}

/// The error a failed handshake closed `c` with.
fn failure(log: &Log, c: SocketId) -> String {
    let done = log.closed(c);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed, "{done:?}");
    done.error.expect("an error")
}

/// The fingerprint of the certificate in a PEM file.
fn file_fp(pem: &Path) -> Fingerprint {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(pem).expect("a certificate");
    Fingerprint::of(&der)
}

// ----- certificates given directly as trusted -----

/// tether to `openssl s_server` presenting its `openssl req -x509` certificate
/// (CA:TRUE, no subjectAltName), that certificate given as the trust root: the
/// handshake succeeds, the CN standing for the name.
#[test]
fn openssl_self_signed_certificate_given_as_root_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server", "localhost");
    let (server, addr) = s_server(&cert, &key);
    let ctx = TlsContext::builder()
        .roots_file(&cert)
        .unwrap()
        .build()
        .unwrap();
    let (log, c) = connect_once(&addr, "localhost", &ctx);
    drop(server);
    let info = tls_info(&log, c);
    assert_eq!(info.peer_fingerprint, Some(file_fp(&cert)));
    assert_eq!(log.of(c)[1], Ev::Connected, "{:?}", log.of(c));
    assert_eq!(log.closed(c).error, None);
}

/// The same certificate asked for under another name: refused, the message
/// naming the name it is valid for.
#[test]
fn self_signed_certificate_under_another_name_names_the_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server", "localhost");
    let (server, addr) = s_server(&cert, &key);
    let ctx = TlsContext::builder()
        .roots_file(&cert)
        .unwrap()
        .build()
        .unwrap();
    let (log, c) = connect_once(&addr, "example.com", &ctx);
    drop(server);
    assert_eq!(
        failure(&log, c),
        "TLS: the certificate is valid for localhost, not for \"example.com\""
    );
}

/// A self-signed CA certificate that is not among the roots: the message says
/// so, and what to do.
#[test]
fn self_signed_certificate_not_given_as_trusted_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server", "localhost");
    let (server, addr) = s_server(&cert, &key);
    let pki = Pki::new();
    let (log, c) = connect_once(&addr, "localhost", &pki.client_ctx());
    drop(server);
    let error = failure(&log, c);
    assert_eq!(
        error,
        "TLS: the peer presented a self-signed CA certificate (CN=localhost) not given as \
         trusted: give that certificate as a trust root to accept it"
    );
}

/// A proper leaf signed by an openssl-made CA: the CA as root verifies it
/// through webpki; the leaf alone as root is direct trust; a wrong name names
/// the subjectAltName's names.
#[test]
fn openssl_ca_signed_leaf() {
    let dir = tempfile::tempdir().unwrap();
    ca_and_leaf(dir.path());
    let (ca, leaf, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("leaf.pem"),
        dir.path().join("leaf.key"),
    );
    let by_ca = TlsContext::builder()
        .roots_file(&ca)
        .unwrap()
        .build()
        .unwrap();
    let by_leaf = TlsContext::builder()
        .roots_file(&leaf)
        .unwrap()
        .build()
        .unwrap();
    for (ctx, name) in [(&by_ca, "localhost"), (&by_leaf, "127.0.0.1")] {
        let (server, addr) = s_server(&leaf, &key);
        let (log, c) = connect_once(&addr, name, ctx);
        drop(server);
        assert_eq!(tls_info(&log, c).peer_fingerprint, Some(file_fp(&leaf)));
        assert_eq!(log.closed(c).error, None);
    }
    let (server, addr) = s_server(&leaf, &key);
    let (log, c) = connect_once(&addr, "example.com", &by_ca);
    drop(server);
    assert_eq!(
        failure(&log, c),
        "TLS: the certificate is valid for localhost, 127.0.0.1, not for \"example.com\""
    );
}

/// A certificate whose validity ended, given directly as trusted, and one
/// signed by a trusted CA: both refused as expired, with the dates.
#[test]
fn expired_certificates_are_refused_with_the_dates() {
    let expired = |signer: Option<&rcgen::Issuer<'static, rcgen::KeyPair>>| {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 2, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = match signer {
            Some(ca) => params.signed_by(&key, ca).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    };
    // Direct trust.
    let id = expired(None);
    let server = TlsContext::builder()
        .certificate_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_pem(id.cert_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (log, c, _a) = exchange(&server, &client, "localhost");
    let error = failure(&log, c);
    assert!(
        error.starts_with(
            "TLS: the certificate expired: valid until 2020-02-01 00:00:00 UTC, it is now 20"
        ),
        "{error}"
    );
    // Through a CA.
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "expired test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let id = expired(Some(&issuer));
    let server = TlsContext::builder()
        .certificate_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_pem(ca_cert.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (log, c, _a) = exchange(&server, &client, "localhost");
    let error = failure(&log, c);
    assert!(
        error.starts_with("TLS: the certificate expired: valid until 2020-02-01 00:00:00 UTC"),
        "{error}"
    );
}

/// Mutual TLS with the client's `openssl req -x509` certificate listed as
/// trusted by the server, the server's own listed by the client.
#[test]
fn mutual_tls_with_self_signed_certificates_listed_as_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = self_signed(dir.path(), "server", "localhost");
    let (client_cert, client_key) = self_signed(dir.path(), "client", "a client");
    let server = TlsContext::builder()
        .certificate_files(&server_cert, &server_key)
        .unwrap()
        .roots_file(&client_cert)
        .unwrap()
        .client_certs(ClientCerts::Required)
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_file(&server_cert)
        .unwrap()
        .certificate_files(&client_cert, &client_key)
        .unwrap()
        .build()
        .unwrap();
    let (log, c, a) = exchange(&server, &client, "localhost");
    let (ci, si) = assert_pinged(&log, c, a);
    assert_eq!(ci.peer_fingerprint, Some(file_fp(&server_cert)));
    assert_eq!(si.peer_fingerprint, Some(file_fp(&client_cert)));

    // A client certificate the server does not list: refused, in words.
    let (other_cert, other_key) = self_signed(dir.path(), "other", "another client");
    let stranger = TlsContext::builder()
        .roots_file(&server_cert)
        .unwrap()
        .certificate_files(&other_cert, &other_key)
        .unwrap()
        .build()
        .unwrap();
    let (log, _c, a) = exchange(&server, &stranger, "localhost");
    let error = failure(&log, a);
    assert!(
        error.contains("self-signed CA certificate (CN=another client) not given as trusted"),
        "{error}"
    );
}

// ----- the platform's roots -----

/// `system_roots()` finds roots (the platform's or the built-in ones), and
/// such a context connects; a server whose certificate no public CA signed is
/// refused as from an unknown issuer.
#[test]
fn system_roots_refuse_a_private_ca_as_unknown_issuer() {
    let ctx = TlsContext::builder().system_roots().build().unwrap();
    assert!(ctx.root_count() > 0, "{ctx:?}");
    let pki = Pki::new();
    let (log, c, _a) = exchange(&pki.server_ctx(), &ctx, "localhost");
    assert_eq!(failure(&log, c), UNKNOWN_ISSUER);
    // Added to explicit roots, they add up.
    let both = pki.client_builder().system_roots().build().unwrap();
    assert_eq!(both.root_count(), ctx.root_count() + 1);
    let (log, c, a) = exchange(&pki.server_ctx(), &both, "localhost");
    assert_pinged(&log, c, a);
}

// ----- certificates that change; identities per role -----

/// A client that receives whatever comes, sent to from outside the loop.
fn receiver() -> Rec {
    Rec::with(|cx, s, ev| match ev {
        Ev::Connected | Ev::Received(_) => cx.recv(s, 64, RecvMode::Partial).unwrap(),
        _ => {}
    })
}

/// A certificate replaced while the server runs: the next client sees the new
/// one, the connection made before keeps working on the old one.
#[test]
fn set_certificate_changes_what_new_connections_see() {
    let pki = Pki::new();
    let renewed = pki.ca.server();
    let server = pki.server_ctx();
    let client = pki.client_ctx();
    let mut m = mux();
    let (_l, addr) = listen_tls(&mut m, &server, common::echo_listener());
    let first = connect_tls(&mut m, &addr, &client, receiver());
    m.send(first, b"one").unwrap();
    // The steps, each once the one before has its echo: replace the
    // certificate and connect again; send on the first connection again.
    let second = Rc::new(Cell::new(None));
    let step = Rc::new(Cell::new(0));
    let (ctx, pem) = (server.clone(), renewed.clone());
    let (second_, step_) = (second.clone(), step.clone());
    let fresh = pki.client_ctx();
    m.set_interval(Duration::from_millis(2), move |cx| match step_.get() {
        0 if cx.shared().received(first) == b"one" => {
            ctx.set_certificate(pem.cert_pem.as_bytes(), pem.key_pem.as_bytes())
                .unwrap();
            // A new client context: one that connected before would resume
            // its session, and a resumed session keeps the certificate it
            // was made with.
            let s = cx.stream(receiver());
            cx.connect_tls(s, &addr, "localhost", &fresh).unwrap();
            cx.send(s, b"two").unwrap();
            second_.set(Some(s));
            step_.set(1);
        }
        1 if cx.shared().received(second_.get().unwrap()) == b"two" => {
            cx.send(first, b" still here").unwrap();
            step_.set(2);
        }
        2 if cx.shared().received(first) == b"one still here" => {
            step_.set(3);
            cx.terminate();
        }
        _ => {}
    });
    run_for(&mut m, LIMIT);
    assert_eq!(step.get(), 3, "{:#?}", m.shared().events);
    let second = second.get().unwrap();
    let log = m.shared();
    assert_eq!(tls_info(log, first).peer_fingerprint, Some(fp(&pki.server)));
    assert_eq!(tls_info(log, second).peer_fingerprint, Some(fp(&renewed)));
    assert_eq!(server.fingerprint(), Some(fp(&renewed)));

    // A bad replacement changes nothing; a context that does not serve has
    // nothing to replace.
    let other = Pki::with_ca("another CA").server;
    assert!(matches!(
        server.set_certificate(renewed.cert_pem.as_bytes(), other.key_pem.as_bytes()),
        Err(tether::TlsError::KeyMismatch)
    ));
    assert_eq!(server.fingerprint(), Some(fp(&renewed)));
    assert!(matches!(
        pki.client_ctx()
            .set_certificate(renewed.cert_pem.as_bytes(), renewed.key_pem.as_bytes()),
        Err(tether::TlsError::NoCertificate)
    ));
}

/// One context with a server certificate and a different client certificate,
/// connecting to itself with mutual TLS: each side sees the right one.
#[test]
fn distinct_server_and_client_identities() {
    let pki = Pki::new();
    let ctx = pki
        .mtls_server_builder()
        .client_certificate_pem(
            pki.client.cert_pem.as_bytes(),
            pki.client.key_pem.as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(ctx.fingerprint(), Some(fp(&pki.server)));
    let (log, c, a) = exchange(&ctx, &ctx, "localhost");
    let (ci, si) = assert_pinged(&log, c, a);
    assert_eq!(ci.peer_fingerprint, Some(fp(&pki.server)));
    assert_eq!(si.peer_fingerprint, Some(fp(&pki.client)));

    // Without a client certificate, the same server refuses it.
    let anonymous = pki
        .mtls_server_builder()
        .no_client_certificate()
        .build()
        .unwrap();
    let (log, _c, a) = exchange(&ctx, &anonymous, "localhost");
    assert_eq!(failure(&log, a), "TLS: peer sent no certificates");
}
