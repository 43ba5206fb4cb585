//! Usage errors: every bad flag, address and file is exit status 2 and one
//! line that names what is wrong — never a panic, a backtrace or debug
//! formatting. And `--help` lists every flag.

mod common;

use common::*;

/// Run with `args` and stdin closed; check the usage error's form and
/// return its one line.
fn usage_error(args: &[&str]) -> String {
    let out = run(args, b"");
    assert_eq!(out.code(), Some(2), "{args:?}: {out:#?}");
    assert_eq!(out.stdout, "", "{args:?}");
    let err = &out.stderr;
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, not {err:?}");
    assert!(err.ends_with('\n'), "{args:?}: {err:?}");
    assert!(
        err.starts_with("tether: ") || err.starts_with("error: "),
        "{args:?}: {err:?}"
    );
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "Os {",
        "Some(",
        "kind:",
        "BadPem",
        "TlsError",
        "InvalidCharacter",
        "[45,",
    ] {
        assert!(!err.contains(bad), "{args:?}: {err:?}");
    }
    err.trim_end().to_string()
}

fn assert_has(line: &str, parts: &[&str]) {
    for p in parts {
        assert!(line.contains(p), "{line:?} should mention {p:?}");
    }
}

#[test]
fn bad_flags() {
    for (args, says) in [
        (
            &["connect", "--bogus", "127.0.0.1:1"][..],
            &["'--bogus'", "tether connect --help"][..],
        ),
        (
            &["listen", "--ech", "127.0.0.1:1"],
            &["'--ech'", "'--echo'"],
        ),
        (&["connect", "--echo", "127.0.0.1:1"], &["'--echo'"]),
        (&["connect"], &["<ADDR>"]),
        (&["connect", "127.0.0.1:1", "extra"], &["'extra'"]),
        (&["teleport", "127.0.0.1:1"], &["'teleport'"]),
        (
            &["connect", "--on-eof", "later", "127.0.0.1:1"],
            &["'later'", "half-close"],
        ),
        (
            &["connect", "--idle-timeout", "0", "127.0.0.1:1"],
            &["--idle-timeout"],
        ),
        (
            &["connect", "--idle-timeout", "soon", "127.0.0.1:1"],
            &["soon"],
        ),
        (&["connect", "--linger", "-1", "127.0.0.1:1"], &["--linger"]),
        (&["connect", "--linger", "1e300", "127.0.0.1:1"], &["1e300"]),
        (
            &["listen", "--echo", "--max-conns", "0", "127.0.0.1:1"],
            &["--max-conns"],
        ),
        (&["demo", "--clients", "0"], &["--clients"]),
    ] {
        let line = usage_error(args);
        assert_has(&line, says);
    }
}

#[test]
fn conflicting_and_missing_flags() {
    for (args, says) in [
        (
            &["connect", "--udp", "--tls", "127.0.0.1:1"][..],
            &["--udp", "--tls"][..],
        ),
        (
            &["listen", "--udp", "--framed", "127.0.0.1:1"],
            &["--udp", "--framed"],
        ),
        (
            &["listen", "--echo", "--on-eof", "close", "127.0.0.1:1"],
            &["--echo", "--on-eof"],
        ),
        (
            &[
                "listen",
                "--udp",
                "--echo",
                "--max-conns",
                "2",
                "127.0.0.1:1",
            ],
            &["--max-conns", "--udp"],
        ),
        (
            &["listen", "--max-conns", "2", "127.0.0.1:1"],
            &["--max-conns needs --echo"],
        ),
        (
            &["listen", "--http-keep-open", "127.0.0.1:1"],
            &["--http-keep-open needs --http DIR"],
        ),
        (
            &["listen", "--http", ".", "--echo", "127.0.0.1:1"],
            &["--http", "--echo"],
        ),
        (
            &["listen", "--http", ".", "--framed", "127.0.0.1:1"],
            &["--http", "--framed"],
        ),
        (
            &["listen", "--http", "/nonexistent/dir", "127.0.0.1:1"],
            &["--http /nonexistent/dir", "No such file"],
        ),
        (
            &["listen", "--http", "Cargo.toml", "127.0.0.1:1"],
            &["--http Cargo.toml: not a directory"],
        ),
        (
            &["connect", "--hello", "hi", "127.0.0.1:1"],
            &["--hello needs --framed"],
        ),
        (
            &["connect", "--farewell", "bye", "127.0.0.1:1"],
            &["--farewell needs --framed"],
        ),
        (
            &["listen", "--reject", "no", "127.0.0.1:1"],
            &["--reject needs --framed"],
        ),
        (
            &["connect", "--ca", "ca.pem", "127.0.0.1:1"],
            &["--ca needs --tls"],
        ),
        (
            &["connect", "--alpn", "h2", "127.0.0.1:1"],
            &["--alpn needs --tls"],
        ),
        (
            &["connect", "--server-name", "x", "127.0.0.1:1"],
            &["--server-name needs --tls"],
        ),
        (
            &["listen", "--cert", "c.pem", "127.0.0.1:1"],
            &["--cert needs --tls"],
        ),
        (
            &["listen", "--tls", "127.0.0.1:1"],
            &["listen --tls needs --cert FILE and --key FILE"],
        ),
        (
            &["connect", "--udp", "unix:/tmp/x.sock"],
            &["--udp", "unix:/tmp/x.sock"],
        ),
    ] {
        let line = usage_error(args);
        assert_has(&line, says);
    }
}

#[test]
fn bad_addresses() {
    for (addr, says) in [
        ("localhost", &["\"localhost\"", "port"][..]),
        ("1.2.3.4", &["\"1.2.3.4\"", "port"]),
        ("1.2.3.4:99999", &["99999"]),
        ("::1:80", &["::1:80"]),
        ("unix:@", &["abstract"]),
        ("local host:80", &["\"local host:80\"", "IP"]),
        ("tcp://1.2.3.4:80", &["scheme"]),
        ("", &["empty"]),
    ] {
        for cmd in ["connect", "listen"] {
            let line = usage_error(&[cmd, addr]);
            assert!(line.starts_with("tether: "), "{line}");
            assert_has(&line, says);
        }
    }
}

#[test]
fn unusable_certificate_files() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let broken = pki.path("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let truncated = pki.path("truncated.pem");
    let whole = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let missing = pki.path("missing.pem").display().to_string();
    let (garbage, broken) = (garbage.display().to_string(), broken.display().to_string());
    let truncated = truncated.display().to_string();
    let (cert, key, ca) = (
        pki.file("server.pem"),
        pki.file("server.key"),
        pki.file("ca.pem"),
    );
    let other_key = pki.file("client.key");
    let listen = |c: &str, k: &str| {
        usage_error(&["listen", "--tls", "--cert", c, "--key", k, "127.0.0.1:0"])
    };
    let connect = |ca: &str| usage_error(&["connect", "--tls", "--ca", ca, "127.0.0.1:1"]);

    assert_has(
        &listen(&missing, &key),
        &["--cert", &missing, "No such file"],
    );
    assert_has(
        &listen(&cert, &missing),
        &["--key", &missing, "No such file"],
    );
    assert_has(
        &listen(&garbage, &key),
        &["--cert", &garbage, "no certificate"],
    );
    assert_has(
        &listen(&broken, &key),
        &["--cert", &broken, "not valid PEM"],
    );
    assert_has(
        &listen(&cert, &garbage),
        &["--key", &garbage, "no private key"],
    );
    assert_has(
        &listen(&cert, &other_key),
        &["--key", &other_key, "--cert", "does not match"],
    );
    assert_has(&connect(&missing), &["--ca", &missing, "No such file"]);
    assert_has(&connect(&garbage), &["--ca", &garbage, "no CERTIFICATE"]);
    assert_has(&connect(&broken), &["--ca", &broken, "base64"]);
    assert_has(
        &connect(&truncated),
        &["--ca", &truncated, "no matching END"],
    );
    assert_has(
        &connect(pki.dir.path().to_str().unwrap()),
        &["--ca", "directory"],
    );
    assert_has(
        &usage_error(&[
            "connect",
            "--tls",
            "--ca",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &missing,
            "127.0.0.1:1",
        ]),
        &["--client-key", &missing],
    );
    assert_has(
        &usage_error(&[
            "connect",
            "--tls",
            "--ca",
            &ca,
            "--client-cert",
            &cert,
            "127.0.0.1:1",
        ]),
        &["--client-cert needs --client-key"],
    );
    assert_has(
        &usage_error(&[
            "listen",
            "--tls",
            "--cert",
            &cert,
            "--key",
            &key,
            "--require-client-cert",
            "127.0.0.1:0",
        ]),
        &["--require-client-cert needs --ca"],
    );
    assert_has(
        &usage_error(&[
            "connect",
            "--tls",
            "--ca",
            &ca,
            "--alpn",
            "h2,,x",
            "127.0.0.1:1",
        ]),
        &["--alpn", "empty"],
    );
    assert_has(
        &usage_error(&[
            "connect",
            "--tls",
            "--ca",
            &ca,
            "--server-name",
            "not a name!",
            "127.0.0.1:1",
        ]),
        &["--server-name", "not a name!"],
    );
    assert_has(
        &usage_error(&["connect", "--tls", "--ca", &ca, "unix:/tmp/tls.sock"]),
        &["--server-name"],
    );
}

/// Each subcommand's help names every flag it takes, with examples; help is
/// not an error.
#[test]
fn help_lists_every_flag() {
    let common = [
        "--udp",
        "--tls",
        "--framed",
        "--farewell",
        "--ca",
        "--alpn",
        "--idle-timeout",
        "--linger",
        "--on-eof",
        "--events",
        "half-close",
        "discard",
        "Examples:",
        "Exit status",
    ];
    for (cmd, own) in [
        (
            "connect",
            &["--hello", "--client-cert", "--client-key", "--server-name"][..],
        ),
        (
            "listen",
            &[
                "--echo",
                "--max-conns",
                "--reject",
                "--cert",
                "--key",
                "--require-client-cert",
                "--http",
                "--http-keep-open",
            ],
        ),
    ] {
        for flag in ["--help", "-h"] {
            let out = run(&[cmd, flag], b"");
            assert_eq!(out.code(), Some(0), "{out:#?}");
            for word in common.iter().chain(own) {
                assert!(out.stdout.contains(word), "{cmd} {flag} lacks {word}");
            }
        }
    }
    let out = run(&["--help"], b"");
    assert_eq!(out.code(), Some(0));
    for word in ["connect", "listen", "demo", "Exit status"] {
        assert!(out.stdout.contains(word), "tether --help lacks {word}");
    }
}

/// An argument that is not UTF-8 is a usage error too, not a panic.
#[test]
fn arguments_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"127.0.0.1:\xff");
    let mut p = Proc::spawn(tether(&["connect"]).arg(bad));
    p.close_stdin();
    let out = p.wait(LIMIT);
    assert_eq!(out.code(), Some(2), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: invalid UTF-8"),
        "{}",
        out.stderr
    );
}
