//! DTLS against OpenSSL on loopback, both ways: `openssl s_client -dtls1_2`
//! to a tether DTLS listener, and a tether DTLS client to `openssl s_server
//! -dtls1_2`, with certificates made at test time (ECDSA: the DTLS library
//! signs with nothing else). With `-use_srtp`, the SRTP keying material
//! tether exports equals the bytes OpenSSL prints (`-keymatexport
//! EXTRACTOR-dtls_srtp`).

mod common;
mod tls_support;

use std::cell::RefCell;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use common::{inet, keeping_keys, mux, run_until, Ev, Rec};
use tether::{DtlsContext, Reason, RecvMode, SrtpProfile, TlsVersion};
use tls_support::*;

const PROFILE: &str = "SRTP_AES128_CM_SHA1_80";

/// The hex OpenSSL prints as "Keying material: ..." in `text`.
fn openssl_keying_material(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Keying material: "))
        .unwrap_or_else(|| panic!("no keying material in OpenSSL's output: {text}"))
        .trim()
        .to_ascii_lowercase()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `openssl s_server -dtls1_2` for one client, on a free port, with the PEM
/// files in `dir` (and SRTP with `-keymatexport` if `srtp`), once it is
/// ready; and its port.
fn s_server(dir: &Path, srtp: bool) -> (u16, Proc) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(openssl());
    cmd.args(["s_server", "-dtls1_2", "-naccept", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("server.pem"))
        .arg("-key")
        .arg(dir.join("server.key"));
    if srtp {
        cmd.args(["-use_srtp", PROFILE]).args([
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            "60",
        ]);
    }
    let mut server = Proc::spawn(&mut cmd);
    server.wait_line(LIMIT, |l| l.starts_with("ACCEPT"));
    (port, server)
}

#[test]
fn openssl_client_to_a_tether_listener_with_srtp() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    let ctx = DtlsContext::builder()
        .certificate_pem(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .unwrap()
        .srtp(&[SrtpProfile::Aes128CmSha1_80])
        .build()
        .unwrap();
    let keys = Rc::new(RefCell::new(Vec::new()));
    let k = keys.clone();
    let mut m = mux();
    let l = m.udp(Rec::listener(move || {
        // Echo the first record, then close (close_notify).
        let user = Rec::with(|cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.close(s).unwrap();
            }
            _ => {}
        });
        Some(keeping_keys(user, &k))
    }));
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_dtls(l, &ctx).unwrap();
    let port = inet(&m, l).port();
    let mut client = Proc::spawn(
        Command::new(openssl())
            .args(["s_client", "-dtls1_2", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(dir.path().join("ca.pem"))
            .args(["-verify_return_error", "-use_srtp", PROFILE])
            .args([
                "-keymatexport",
                "EXTRACTOR-dtls_srtp",
                "-keymatexportlen",
                "60",
            ]),
    );
    client.write_stdin(b"ping from openssl\n");
    run_until(&mut m, LIMIT, |log| {
        log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    let out = client.finish(LIMIT);
    let log = m.shared();
    assert!(
        !log.timed_out,
        "openssl said {out:#?}; log {:#?}",
        log.events
    );
    let a = log.accepted()[0];
    assert_eq!(log.received(a), b"ping from openssl\n");
    assert_eq!(log.closed(a).reason, Reason::Normal);
    assert!(
        out.stdout.contains("ping from openssl"),
        "the echo came back: {out:#?}"
    );
    assert!(out.stdout.contains("Verification: OK"), "{out:#?}");
    assert!(out.stdout.contains(PROFILE), "{out:#?}");
    let info = log
        .of(a)
        .into_iter()
        .find_map(|e| match e {
            Ev::TlsReady(i) => Some(i),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no on_tls_ready: {:#?}", log.of(a)));
    assert_eq!(info.version, TlsVersion::Dtls12);
    assert_eq!(info.srtp_profile, Some(SrtpProfile::Aes128CmSha1_80));
    let keys = keys.borrow();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].as_bytes().len(), 60);
    assert_eq!(
        hex(keys[0].as_bytes()),
        openssl_keying_material(&out.stdout)
    );
}

#[test]
fn tether_client_to_openssl_server_with_srtp() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    let (port, server) = s_server(dir.path(), true);
    let ctx = DtlsContext::builder()
        .roots_pem(pki.ca.cert_pem.as_bytes())
        .unwrap()
        .srtp(&[SrtpProfile::Aes128CmSha1_80])
        .build()
        .unwrap();
    let keys = Rc::new(RefCell::new(Vec::new()));
    let mut m = mux();
    let user = Rec::with(|cx, s, ev| {
        if *ev == Ev::Connected {
            cx.send(s, b"hello from tether\n").unwrap();
            cx.close(s).unwrap();
        }
    });
    let c = m.udp(keeping_keys(user, &keys));
    m.connect_dtls(c, &format!("127.0.0.1:{port}"), &ctx)
        .unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    // tether is done once its record and close_notify are written; s_server
    // may not have read them yet. Its stdin stays open: s_server quits at
    // stdin's end (even with -ign_eof) and looks at stdin before its socket,
    // so closing it now could end it with both datagrams still unread in its
    // socket. It ends on the close_notify instead.
    let out = server.wait_exit(LIMIT);
    let log = m.shared();
    assert!(
        !log.timed_out,
        "openssl said {out:#?}; log {:#?}",
        log.events
    );
    assert_eq!(log.closed(c).reason, Reason::Normal, "{:#?}", log.of(c));
    assert!(out.status.success(), "{out:#?}");
    // The record, then the close_notify after it as the end ("DONE").
    assert!(
        out.stdout
            .contains("hello from tether\nDONE\nshutting down SSL\n"),
        "{out:#?}"
    );
    let keys = keys.borrow();
    assert_eq!(keys.len(), 1, "{:#?}", log.of(c));
    assert_eq!(
        hex(keys[0].as_bytes()),
        openssl_keying_material(&out.stdout)
    );
    assert_eq!(keys[0].client_key(), &keys[0].as_bytes()[..16]);
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    let (port, server) = s_server(dir.path(), false);
    let ctx = DtlsContext::builder()
        .roots_pem(other.ca.cert_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut m = mux();
    let c = m.udp(Rec::quiet());
    m.connect_dtls(c, &format!("127.0.0.1:{port}"), &ctx)
        .unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    let done = m.shared().closed(c);
    assert_eq!(done.reason, Reason::TlsHandshakeFailed);
    // Both test CAs have one name: webpki finds the other's as the issuer,
    // and its signature does not verify.
    assert!(
        done.error.unwrap().contains("certificate"),
        "{:#?}",
        m.shared().of(c)
    );
    assert!(!m.shared().of(c).contains(&Ev::Connected));
    drop(server);
}
