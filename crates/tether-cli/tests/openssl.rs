//! The command against OpenSSL's own tools: `tether connect --tls` to
//! `openssl s_server`, `openssl s_client` to `tether listen --tls --echo`,
//! with ALPN and client certificates. Certificates are made at test time.

mod common;

use std::process::Command;

use common::*;

fn openssl() -> Command {
    Command::new(tool("openssl", "version"))
}

#[test]
fn tether_connect_to_openssl_s_server_with_alpn() {
    let pki = Pki::new();
    // Port 0: s_server says which port it got ("ACCEPT 127.0.0.1:PORT").
    let mut server = Proc::spawn(
        openssl()
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
            .args(["-ign_eof", "-alpn", "h2", "-cert"])
            .arg(pki.path("server.pem"))
            .arg("-key")
            .arg(pki.path("server.key")),
    );
    let accept = server.wait_stdout(|l| l.starts_with("ACCEPT"));
    let port = accept.trim().rsplit(':').next().unwrap().to_string();
    server.write(b"hello from openssl\n");

    let mut client = Proc::spawn(&mut tether(&[
        "connect",
        "--tls",
        "--ca",
        &pki.file("ca.pem"),
        "--alpn",
        "http/1.1,h2",
        "--events",
        &format!("127.0.0.1:{port}"),
    ]));
    client.write(b"hello from tether\n");
    client.wait_stdout(|l| l == "hello from openssl\n");
    server.wait_stdout(|l| l == "hello from tether\n");
    // stdin ends: close_notify and FIN; s_server answers with its own.
    let out = client.finish(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.stdout, "hello from openssl\n");
    let ev = out.events();
    let tls = one(&ev, "tls");
    assert_eq!(tls.str("version"), "TLSv1.3");
    assert_eq!(tls.opt("alpn"), Some("h2"));
    assert_eq!(
        tls.opt("peer_fingerprint"),
        Some(&*fingerprint(&pki.server_der))
    );
    assert_eq!(one(&ev, "peer_shutdown").opt("farewell"), None);
    assert_eq!(one(&ev, "closed").str("reason"), "normal");

    let server = server.finish(LIMIT);
    assert!(server.status.success(), "{server:#?}");
    assert!(server.stdout.contains("DONE"), "{server:#?}");
}

fn s_client(pki: &Pki, addr: &str, cert: bool) -> Command {
    let mut cmd = openssl();
    cmd.args(["s_client", "-connect", addr, "-servername", "localhost"])
        .args(["-verify_return_error", "-alpn", "h2", "-brief", "-CAfile"])
        .arg(pki.path("ca.pem"));
    if cert {
        cmd.arg("-cert")
            .arg(pki.path("client.pem"))
            .arg("-key")
            .arg(pki.path("client.key"));
    }
    cmd
}

#[test]
fn openssl_s_client_to_tether_listen_tls_echo_with_alpn_h2() {
    let pki = Pki::new();
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--tls",
        "--cert",
        &pki.file("server.pem"),
        "--key",
        &pki.file("server.key"),
        "--alpn",
        "h2,http/1.1",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = server.bound();
    let mut client = Proc::spawn(&mut s_client(&pki, &addr, false));
    client.write(b"ping from s_client\n");
    client.wait_stdout(|l| l == "ping from s_client\n");
    // stdin ends: s_client sends close_notify; the echo answers with its own.
    let out = client.finish(LIMIT);
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stderr.contains("Verification: OK"), "{out:#?}");

    let closed = server.wait_event("closed");
    assert_eq!(closed.str("reason"), "by_peer");
    let sev = server.kill().events();
    let tls = one(&sev, "tls");
    assert_eq!(tls.opt("alpn"), Some("h2"));
    assert_eq!(tls.opt("server_name"), Some("localhost"));
    assert_eq!(tls.opt("peer_fingerprint"), None);
}

#[test]
fn openssl_s_client_with_a_client_certificate() {
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
    let mut client = Proc::spawn(&mut s_client(&pki, &addr, true));
    client.write(b"signed\n");
    client.wait_stdout(|l| l == "signed\n");
    assert!(client.finish(LIMIT).status.success());
    let tls = server.wait_event("tls");
    assert_eq!(
        tls.opt("peer_fingerprint"),
        Some(&*fingerprint(&pki.client_der))
    );
    assert_eq!(tls.opt("alpn"), None, "the server offered no ALPN");
    assert_eq!(server.wait_event("closed").str("reason"), "by_peer");
}

/// `connect --tls` without `--ca` verifies against the system's trust roots,
/// as curl does: a server whose certificate no public CA signed is refused in
/// the handshake as from an unknown issuer (not a usage error).
#[test]
fn tether_connect_without_ca_uses_the_system_roots() {
    let pki = Pki::new();
    let mut server = Proc::spawn(
        openssl()
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
            .args(["-ign_eof", "-cert"])
            .arg(pki.path("server.pem"))
            .arg("-key")
            .arg(pki.path("server.key")),
    );
    let accept = server.wait_stdout(|l| l.starts_with("ACCEPT"));
    let port = accept.trim().rsplit(':').next().unwrap().to_string();
    let out = Proc::spawn(&mut tether(&[
        "connect",
        "--tls",
        "--events",
        &format!("127.0.0.1:{port}"),
    ]))
    .finish(LIMIT);
    let ev = out.events();
    let closed = one(&ev, "closed");
    assert_eq!(closed.str("reason"), "tls_handshake_failed", "{out:#?}");
    assert!(closed.str("error").contains("unknown issuer"), "{out:#?}");
    assert_ne!(out.code(), Some(0), "{out:#?}");
    assert_ne!(out.code(), Some(2), "not a usage error: {out:#?}");
}
