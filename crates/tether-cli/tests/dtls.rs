//! `--dtls`: the command against OpenSSL's DTLS tools (`s_client -dtls1_2`,
//! `s_server -dtls1_2`), DTLS-SRTP keys compared with what OpenSSL exports,
//! two tether clients pinning one tether listener, and the usage errors.

mod common;

use std::process::Command;

use common::*;

const SRTP: &str = "SRTP_AES128_CM_SHA1_80";

fn openssl() -> Command {
    Command::new(tool("openssl", "version"))
}

/// The `Keying material: HEX` line OpenSSL prints with `-keymatexport`, as
/// lowercase hex.
fn keying_material(openssl_stdout: &str) -> String {
    openssl_stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Keying material:"))
        .unwrap_or_else(|| panic!("no keying material in {openssl_stdout}"))
        .trim()
        .to_ascii_lowercase()
}

/// An ECDSA P-256 certificate for `localhost` (dimpl takes no RSA keys):
/// the directory, and the certificate's SHA-256 fingerprint as OpenSSL prints
/// it (colons).
fn ec_cert() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let made = openssl()
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-days", "1", "-keyout"])
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(dir.path().join("c.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:#?}");
    let fp = openssl()
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(dir.path().join("c.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8(fp.stdout).unwrap();
    let fp = text.trim().split_once('=').unwrap().1.to_string();
    (dir, fp)
}

/// `openssl s_client -dtls1_2` to `tether listen --dtls --echo --srtp`: the
/// line comes back, both sides settle SRTP_AES128_CM_SHA1_80 and export the
/// same keys.
#[test]
fn openssl_s_client_to_tether_listen_dtls_echo_with_srtp_keys() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--dtls",
        "--echo",
        "--srtp",
        SRTP,
        "--events",
        "127.0.0.1:0",
    ]));
    let ours = server.wait_event("certificate");
    assert_eq!(ours.get("generated"), Some(&serde_json::Value::Bool(true)));
    let fingerprint = ours.str("fingerprint").to_string();
    let addr = server.bound();
    // Only the one profile is offered: the server would pick an AEAD one first.
    let mut client = Proc::spawn(
        openssl()
            .args(["s_client", "-dtls1_2", "-connect", &addr])
            .args(["-use_srtp", SRTP, "-keymatexport", "EXTRACTOR-dtls_srtp"])
            .args(["-keymatexportlen", "60"]),
    );
    // Its session summary (with the keys) comes once the handshake is done.
    let exported = client.wait_stdout(|l| l.contains("Keying material:"));
    client.write(b"ping from s_client\n");
    client.wait_stdout(|l| l == "ping from s_client\n");
    let tls = server.wait_event("tls");
    assert_eq!(tls.str("version"), "DTLSv1.2");
    assert_eq!(tls.opt("srtp_profile"), Some(SRTP));
    assert_eq!(tls.opt("local_fingerprint"), Some(&*fingerprint));
    assert_eq!(tls.opt("peer_fingerprint"), None);
    let keys = server.wait_event("keying_material");
    assert_eq!(keys.str("profile"), SRTP);
    let material = keys.str("material_hex").to_string();
    assert_eq!(material.len(), 120, "60 bytes");

    // stdin ends: s_client sends close_notify and exits.
    let out = client.finish(LIMIT);
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("profile=SRTP_AES128_CM_SHA1_80"),
        "{out:#?}"
    );
    assert_eq!(keying_material(&exported), material);
    assert_eq!(server.wait_event("closed").str("reason"), "by_peer");
}

/// `tether connect --dtls --pin` to `openssl s_server -dtls1_2` with an ECDSA
/// certificate: a line each way, the same SRTP keys, close_notify at the end.
#[test]
fn tether_connect_dtls_to_openssl_s_server_with_srtp_keys() {
    let (dir, fp) = ec_cert();
    let mut server = Proc::spawn(
        openssl()
            .args([
                "s_server",
                "-dtls1_2",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
            ])
            .args(["-use_srtp", SRTP, "-keymatexport", "EXTRACTOR-dtls_srtp"])
            .args(["-keymatexportlen", "60", "-cert"])
            .arg(dir.path().join("c.pem"))
            .arg("-key")
            .arg(dir.path().join("k.pem")),
    );
    let accept = server.wait_stdout(|l| l.starts_with("ACCEPT"));
    let port = accept.trim().rsplit(':').next().unwrap().to_string();

    let mut client = Proc::spawn(&mut tether(&[
        "connect",
        "--dtls",
        "--pin",
        &fp,
        "--srtp",
        SRTP,
        "--events",
        &format!("127.0.0.1:{port}"),
    ]));
    client.write(b"hello from tether\n");
    // s_server prints its session summary once the handshake is done, unless
    // stdin had something to send before (then it prints none): write after.
    let keys = server.wait_stdout(|l| l.contains("Keying material:"));
    server.write(b"hello from openssl\n");
    // The record carries s_server's newline; tether adds one per record.
    client.wait_stdout(|l| l == "hello from openssl\n");
    // stdin ends: replies are awaited for a quiet second, then close_notify.
    let out = client.finish(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let ev = out.events();
    let tls = one(&ev, "tls");
    assert_eq!(tls.str("version"), "DTLSv1.2");
    assert_eq!(tls.opt("srtp_profile"), Some(SRTP));
    let pinned = fp.replace(':', "").to_ascii_lowercase();
    assert_eq!(tls.opt("peer_fingerprint"), Some(&*pinned));
    assert_eq!(
        tls.opt("local_fingerprint"),
        Some(one(&ev, "certificate").str("fingerprint"))
    );
    let material = one(&ev, "keying_material").str("material_hex").to_string();
    assert_eq!(one(&ev, "closed").str("reason"), "normal");

    let server = server.finish(LIMIT);
    assert!(server.status.success(), "{server:#?}");
    assert!(server.stdout.contains("hello from tether"), "{server:#?}");
    assert_eq!(keying_material(&keys), material);
}

/// `connect --dtls --insecure` to `s_server`: no verification, a warning, and
/// data both ways all the same.
#[test]
fn tether_connect_dtls_insecure_to_openssl_s_server() {
    let (dir, _) = ec_cert();
    let mut server = Proc::spawn(
        openssl()
            .args([
                "s_server",
                "-dtls1_2",
                "-accept",
                "127.0.0.1:0",
                "-naccept",
                "1",
            ])
            .arg("-cert")
            .arg(dir.path().join("c.pem"))
            .arg("-key")
            .arg(dir.path().join("k.pem")),
    );
    let accept = server.wait_stdout(|l| l.starts_with("ACCEPT"));
    let port = accept.trim().rsplit(':').next().unwrap().to_string();
    server.write(b"answer\n");
    let mut client = Proc::spawn(&mut tether(&[
        "connect",
        "--dtls",
        "--insecure",
        "--on-eof",
        "close",
        &format!("127.0.0.1:{port}"),
    ]));
    client.write(b"question\n");
    client.wait_stdout(|l| l == "answer\n");
    let out = client.finish(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(out.stderr.contains("--insecure"), "{out:#?}");
    assert!(out.stderr.contains("not verified"), "{out:#?}");
    let server = server.finish(LIMIT);
    assert!(server.stdout.contains("question"), "{server:#?}");
}

/// Two `tether connect --dtls --pin FP` at once to one `tether listen --dtls
/// --echo`, FP from its `certificate` event: each gets its own echo while
/// both are open, and each ends with close_notify (by_peer at the listener).
#[test]
fn two_tether_clients_pin_one_tether_listener() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--dtls",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let fp = server
        .wait_event("certificate")
        .str("fingerprint")
        .to_string();
    let addr = server.bound();
    let client = |name: &str| {
        let mut c = Proc::spawn(&mut tether(&[
            "connect", "--dtls", "--pin", &fp, "--events", &addr,
        ]));
        c.write(format!("{name}\n").as_bytes());
        c
    };
    let mut one_ = client("one");
    let mut two = client("two");
    one_.wait_stdout(|l| l == "one\n");
    two.wait_stdout(|l| l == "two\n");
    // Both answered while both were open: served at once.
    for (c, name) in [(one_, "one"), (two, "two")] {
        let out = c.finish(LIMIT);
        assert_eq!(out.code(), Some(0), "{out:#?}");
        assert_eq!(out.stdout, format!("{name}\n"));
        let ev = out.events();
        let tls = one(&ev, "tls");
        assert_eq!(tls.str("version"), "DTLSv1.2");
        assert_eq!(tls.opt("peer_fingerprint"), Some(&*fp));
        assert_eq!(tls.opt("srtp_profile"), None);
        assert!(named(&ev, "keying_material").is_empty());
        assert_eq!(one(&ev, "closed").str("reason"), "normal");
    }
    let first = server.wait_event("closed");
    let second = server.wait_event("closed");
    assert_ne!(first.socket(), second.socket());
    assert_eq!(first.str("reason"), "by_peer");
    assert_eq!(second.str("reason"), "by_peer");
    let sev = server.kill().events();
    let tls = named(&sev, "tls");
    assert_eq!(tls.len(), 2, "{sev:#?}");
    for t in tls {
        assert_eq!(t.opt("local_fingerprint"), Some(&*fp));
    }
    assert_eq!(named(&sev, "accepted").len(), 2);
}

/// Each mistake is exit 2 with one line that names it.
#[test]
fn dtls_usage_errors() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["connect", "--dtls", "127.0.0.1:9"],
            &["connect --dtls needs --pin", "--ca FILE", "--insecure"],
        ),
        (
            &["connect", "--dtls", "--ca", "system", "127.0.0.1:9"],
            &["--dtls cannot use the system's trust roots"],
        ),
        (
            &["listen", "--udp", "--srtp", SRTP, "127.0.0.1:0"],
            &["--srtp needs --dtls"],
        ),
        (
            &["connect", "--srtp", SRTP, "127.0.0.1:9"],
            &["--srtp needs --dtls"],
        ),
        (
            &[
                "listen",
                "--dtls",
                "--srtp",
                "SRTP_NULL_HMAC",
                "127.0.0.1:0",
            ],
            &[
                "unknown SRTP profile \"SRTP_NULL_HMAC\"",
                "SRTP_AES128_CM_SHA1_80, SRTP_AEAD_AES_128_GCM, SRTP_AEAD_AES_256_GCM",
            ],
        ),
        (
            &["listen", "--dtls", "--alpn", "h2", "127.0.0.1:0"],
            &["--alpn needs --tls"],
        ),
        (
            &["listen", "--dtls", "--tls", "127.0.0.1:0"],
            &["--dtls", "--tls"],
        ),
        (
            &["connect", "--dtls", "--insecure", "unix:/tmp/x.sock"],
            &["--dtls needs an ip:port address"],
        ),
        (
            &[
                "listen",
                "--dtls",
                "--cert",
                "/nonexistent.pem",
                "127.0.0.1:0",
            ],
            &["--cert needs --key"],
        ),
    ];
    for (args, wanted) in cases {
        let out = run(args, b"");
        assert_eq!(out.code(), Some(2), "{args:?}: {out:#?}");
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {out:#?}");
        for w in *wanted {
            assert!(out.stderr.contains(w), "{args:?}: wanted {w:?} in {out:#?}");
        }
    }
    // The valid names in any case are taken.
    let out = run(
        &[
            "connect",
            "--dtls",
            "--srtp",
            "srtp_aes128_cm_sha1_80,SRTP_AEAD_AES_128_GCM",
            "--insecure",
            "--on-eof",
            "reset",
            "127.0.0.1:9",
        ],
        b"",
    );
    assert_ne!(out.code(), Some(2), "{out:#?}");
}

/// SIGINT to `listen --dtls --echo` with a client on: the association ends
/// with close_notify (the client's end is by_peer, exit 0), then the
/// listener; the command exits 0.
#[test]
fn sigint_ends_a_dtls_echo_server_gracefully() {
    let mut server = Proc::spawn(&mut tether(&[
        "listen",
        "--dtls",
        "--echo",
        "--events",
        "127.0.0.1:0",
    ]));
    let fp = server
        .wait_event("certificate")
        .str("fingerprint")
        .to_string();
    let addr = server.bound();
    let mut client = Proc::spawn(&mut tether(&[
        "connect", "--dtls", "--pin", &fp, "--events", &addr,
    ]));
    client.write(b"before\n");
    client.wait_stdout(|l| l == "before\n");
    let status = Command::new("kill")
        .args(["-INT", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = server.wait(LIMIT);
    assert!(!out.killed, "{out:#?}");
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let ev = out.events();
    let closed = named(&ev, "closed");
    assert_eq!(closed.len(), 2, "{ev:#?}");
    assert_eq!(closed[0].str("reason"), "normal", "the association first");
    // stdin still open: the client ends by the server's close_notify.
    let out = client.wait(LIMIT);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(last_closed(&out.events()).str("reason"), "by_peer");
}
