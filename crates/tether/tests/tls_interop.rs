//! TLS against real peers on loopback, with certificates made at test time:
//! `openssl s_server`, `openssl s_client`, `openssl x509`, and Python's `ssl`
//! module. A missing `openssl` or `python3` fails the test with a message that
//! says so; every child is killed on drop and waited for with a deadline.

mod common;
mod tls_support;

use std::cell::RefCell;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;

use common::{inet, mux, run_until, Done, Ev, Log, Rec};
use tether::{Fingerprint, Reason, RecvMode, SocketId, TlsContext, TlsRole, TlsVersion};
use tls_support::*;

/// Serve `ctx` with `listener`, start the external client `spawn(port)`, run
/// until one accepted connection closed, then collect the client's output.
fn serve(
    ctx: &TlsContext,
    listener: Rec,
    spawn: impl FnOnce(u16) -> Proc,
) -> (Log, SocketId, Outcome) {
    let mut m = mux();
    let (l, _addr) = listen_tls(&mut m, ctx, listener);
    let port = inet(&m, l).port();
    let peer = spawn(port);
    run_until(&mut m, LIMIT, |log| settled(log, &[], 1));
    let timed_out = m.shared().timed_out;
    let out = peer.finish(LIMIT);
    assert!(
        !timed_out,
        "the loop timed out; the peer said {out:#?}; the log: {:#?}",
        m.shared().events
    );
    let log = m.into_shared();
    let a = log.accepted()[0];
    (log, a, out)
}

/// Accepted connections that echo until a newline, then shut down (close_notify
/// and FIN) and read on until the peer's end.
fn echo_line_then_shutdown() -> Rec {
    Rec::listener(|| {
        Some(Rec::with(|cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                if d.ends_with(b"\n") {
                    cx.shutdown(s).unwrap();
                }
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            _ => {}
        }))
    })
}

// ----- openssl -----

/// What `openssl x509 -fingerprint -sha256` says of a PEM file.
fn openssl_fingerprint(pem: &Path) -> String {
    let out = Command::new(openssl())
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl x509");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    // "sha256 Fingerprint=AB:CD:..." (OpenSSL 1.1 wrote "SHA256 Fingerprint=").
    let (label, value) = text.trim().split_once('=').expect("a fingerprint line");
    assert!(label.eq_ignore_ascii_case("sha256 Fingerprint"), "{text}");
    value.to_string()
}

#[test]
fn fingerprints_match_openssl() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let server_fp = openssl_fingerprint(&dir.join("server.pem"));
    let client_fp = openssl_fingerprint(&dir.join("client.pem"));
    assert_eq!(fp(&pki.server).to_string(), server_fp);
    assert_eq!(fp(&pki.client).to_string(), client_fp);
    assert_eq!(server_fp.parse::<Fingerprint>().unwrap(), fp(&pki.server));

    // What a mutual TLS handshake reports, built from the same files.
    let server = TlsContext::builder()
        .certificate_files(dir.join("server.pem"), dir.join("server.key"))
        .unwrap()
        .roots_file(dir.join("ca.pem"))
        .unwrap()
        .client_certs(tether::ClientCerts::Required)
        .build()
        .unwrap();
    let client = TlsContext::builder()
        .roots_file(dir.join("ca.pem"))
        .unwrap()
        .certificate_files(dir.join("client.pem"), dir.join("client.key"))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(server.fingerprint().unwrap().to_string(), server_fp);
    assert_eq!(client.fingerprint().unwrap().to_string(), client_fp);
    let mut m = mux();
    let (_l, addr) = listen_tls(&mut m, &server, common::echo_listener());
    let c = connect_tls(
        &mut m,
        &addr,
        &client,
        Rec::with(|cx, s, ev| {
            if *ev == Ev::Connected {
                cx.shutdown(s).unwrap();
            }
        }),
    );
    run_until(&mut m, LIMIT, move |log| settled(log, &[c], 1));
    assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
    let log = m.into_shared();
    let a = log.accepted()[0];
    let seen_by_client = tls_info(&log, c).peer_fingerprint.unwrap();
    let seen_by_server = tls_info(&log, a).peer_fingerprint.unwrap();
    assert_eq!(seen_by_client.to_string(), server_fp);
    assert_eq!(seen_by_server.to_string(), client_fp);
}

/// tether as the client of `openssl s_server`: a line each way, then tether
/// shuts down and s_server answers with its own close_notify.
#[test]
fn tether_client_to_openssl_s_server() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    // Port 0: s_server prints the port it got ("ACCEPT 127.0.0.1:PORT"), so
    // there is no race for a free port. -ign_eof: stdin's end is not the
    // connection's.
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
            .arg(dir.join("server.pem"))
            .arg("-key")
            .arg(dir.join("server.key")),
    );
    let line = server.wait_line(LIMIT, |l| l.starts_with("ACCEPT"));
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    server.write_stdin(b"hello from openssl\n");

    let mut m = mux();
    let c = connect_tls(
        &mut m,
        &format!("127.0.0.1:{port}"),
        &pki.client_ctx(),
        Rec::with(|cx, s, ev| match ev {
            Ev::Connected => {
                cx.send(s, b"hello from tether\n").unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                if cx.shared().received(s).ends_with(b"\n") {
                    cx.shutdown(s).unwrap();
                }
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            _ => {}
        }),
    );
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    let timed_out = m.shared().timed_out;
    let out = server.finish(LIMIT);
    assert!(!timed_out, "{out:#?}\n{:#?}", m.shared().events);
    let log = m.into_shared();

    let info = tls_info(&log, c);
    assert_eq!(info.version, TlsVersion::Tls13);
    assert_eq!(info.cipher_suite, TLS13_SUITE);
    assert_eq!(info.peer_fingerprint, Some(fp(&pki.server)));
    assert_eq!(log.received(c), b"hello from openssl\n");
    let events = log.of(c);
    assert_eq!(events[..3], [Ev::TlsReady(info), Ev::Connected, Ev::Sent]);
    assert_eq!(
        events[events.len() - 2..],
        [Ev::PeerShutdown, Ev::Closed(graceful(Reason::Normal))]
    );
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.lines().any(|l| l == "hello from tether"),
        "{out:#?}"
    );
    // s_server saw our close_notify as the end ("DONE"), and closed in turn.
    assert!(out.stdout.contains("DONE\nshutting down SSL\n"), "{out:#?}");
}

fn s_client(dir: &Path, port: u16, cert: bool) -> Command {
    let mut cmd = Command::new(openssl());
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost", "-verify_return_error"])
        .args(["-alpn", "h2", "-quiet", "-CAfile"])
        .arg(dir.join("ca.pem"));
    if cert {
        cmd.arg("-cert")
            .arg(dir.join("client.pem"))
            .arg("-key")
            .arg(dir.join("client.key"));
    }
    cmd
}

/// `openssl s_client -alpn h2` to a tether server offering h2 and http/1.1:
/// h2 is selected, the line is echoed, and both ends close cleanly.
#[test]
fn openssl_s_client_alpn_h2() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ctx = pki
        .server_builder()
        .alpn(&["h2", "http/1.1"])
        .unwrap()
        .build()
        .unwrap();
    let (log, a, out) = serve(&ctx, echo_line_then_shutdown(), |port| {
        let mut p = Proc::spawn(&mut s_client(&dir, port, false));
        p.write_stdin(b"ping from s_client\n");
        p
    });
    let info = tls_info(&log, a);
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(info.version, TlsVersion::Tls13);
    assert_eq!(info.cipher_suite, TLS13_SUITE);
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    assert_eq!(info.peer_fingerprint, None);
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::Alpn(b"h2".to_vec()),
            Ev::TlsReady(info),
            Ev::Received(b"ping from s_client\n".to_vec()),
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::Normal)),
        ]
    );
    assert_eq!(out.stdout, "ping from s_client\n", "{out:#?}");
    assert!(out.status.success(), "{out:#?}");
}

/// Mutual TLS with a required client certificate that s_client presents.
#[test]
fn openssl_s_client_mutual_tls() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ctx = pki.mtls_server_builder().build().unwrap();
    let (log, a, out) = serve(&ctx, echo_line_then_shutdown(), |port| {
        let mut p = Proc::spawn(&mut s_client(&dir, port, true));
        p.write_stdin(b"ping with a certificate\n");
        p
    });
    let info = tls_info(&log, a);
    assert_eq!(info.peer_fingerprint, Some(fp(&pki.client)));
    assert_eq!(info.alpn, None);
    assert_eq!(log.received(a), b"ping with a certificate\n");
    assert_eq!(log.closed(a), graceful(Reason::Normal));
    assert_eq!(out.stdout, "ping with a certificate\n", "{out:#?}");
    assert!(out.status.success(), "{out:#?}");
}

/// A required client certificate that s_client does not have: the handshake
/// fails on the tether side with the reason, and s_client is told why.
#[test]
fn openssl_s_client_without_required_certificate_is_refused() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ctx = pki.mtls_server_builder().build().unwrap();
    // Nothing on stdin: data sent after the refusal would turn tether's close
    // into a reset that could overtake the alert.
    let (log, a, out) = serve(&ctx, echo_line_then_shutdown(), |port| {
        Proc::spawn(&mut s_client(&dir, port, false))
    });
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::Closed(Done {
                reason: Reason::TlsHandshakeFailed,
                unsent: 0,
                unread: 0,
                error: Some("TLS: peer sent no certificates".into()),
                os_error: None,
                discard: None,
            }),
        ]
    );
    assert!(!out.status.success(), "{out:#?}");
    assert!(
        out.stderr.contains("alert certificate required"),
        "{out:#?}"
    );
    assert_eq!(out.stdout, "");
}

// ----- Python's ssl module -----

fn python(script: &str, port: u16, dir: &Path) -> Proc {
    Proc::spawn(
        Command::new(python3())
            .arg("-c")
            .arg(script)
            .arg(port.to_string())
            .arg(dir.join("ca.pem")),
    )
}

const PY_PRELUDE: &str = r#"
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
raw = socket.create_connection(("127.0.0.1", port), timeout=10)
"#;

/// Python connects, is echoed, then unwraps (close_notify, and waits for
/// ours): tether sees the peer's end, answers, and closes gracefully.
#[test]
fn python_client_echo_and_close_notify() {
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
print("version", s.version())
print("cipher", s.cipher()[0])
s.sendall(b"hello from python\n")
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(1024)
    if not chunk:
        break
    data += chunk
print("echo", repr(data))
plain = s.unwrap()
print("unwrapped")
print("after", repr(plain.recv(10)))
plain.close()
"#
    );
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let (log, a, out) = serve(&pki.server_ctx(), common::echo_listener(), |port| {
        python(&script, port, &dir)
    });
    assert_eq!(
        out.stdout,
        "version TLSv1.3\ncipher TLS_AES_256_GCM_SHA384\n\
         echo b'hello from python\\n'\nunwrapped\nafter b''\n",
        "{out:#?}"
    );
    assert!(out.status.success(), "{out:#?}");
    let info = tls_info(&log, a);
    assert_eq!(info.version, TlsVersion::Tls13);
    assert_eq!(info.cipher_suite, TLS13_SUITE);
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::TlsReady(info),
            Ev::Received(b"hello from python\n".to_vec()),
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::ByPeer)),
        ]
    );
}

/// tether shuts down first: Python reads to close_notify (a bare FIN would
/// raise, since ragged EOFs are not suppressed), still sends, then sees our FIN.
#[test]
fn python_sees_close_notify_then_eof_and_still_sends() {
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
data = b""
while True:
    chunk = s.recv(1024)
    if not chunk:
        break
    data += chunk
print("got", repr(data))
print("close_notify")
s.sendall(b"still here")
plain = s.unwrap()
print("after", repr(plain.recv(10)))
plain.close()
"#
    );
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let states = Rc::new(RefCell::new(Vec::new()));
    let st = states.clone();
    let listener = Rec::listener(move || {
        let st = st.clone();
        Some(Rec::with(move |cx, s, ev| match ev {
            Ev::TlsReady(_) => {
                cx.send(s, b"bye\n").unwrap();
                cx.shutdown(s).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::Received(_) => {
                st.borrow_mut().push(cx.state(s));
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            _ => {}
        }))
    });
    let (log, a, out) = serve(&pki.server_ctx(), listener, |port| {
        python(&script, port, &dir)
    });
    assert_eq!(
        out.stdout, "got b'bye\\n'\nclose_notify\nafter b''\n",
        "{out:#?}"
    );
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::TlsReady(tls_info(&log, a)),
            Ev::Sent,
            Ev::Received(b"still here".to_vec()),
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::Normal)),
        ]
    );
    let states = states.borrow();
    assert_eq!(states.len(), 1);
    assert!(
        matches!(states[0], tether::State::NoSend | tether::State::NoSendRecv),
        "{states:?}"
    );
}

/// Python sends, then ends the TCP stream without close_notify: a truncation.
/// tether reports Lost with the reason, never a graceful end, whether a recv
/// was pending when the FIN came or not.
#[test]
fn python_fin_without_close_notify_is_lost() {
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"partial data")
s.shutdown(socket.SHUT_WR)  # drops the TLS layer: a FIN with no close_notify
print("fin sent")
try:
    while s.recv(4096):  # the plain socket now: session tickets, then the end
        pass
    print("end eof")
except ConnectionResetError:
    print("end reset")
"#
    );
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    for recv_pending in [true, false] {
        let listener = Rec::listener(move || {
            Some(Rec::with(move |cx, s, ev| match ev {
                Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                Ev::Received(_) if recv_pending => cx.recv(s, 64, RecvMode::Partial).unwrap(),
                _ => {}
            }))
        });
        let (log, a, out) = serve(&pki.server_ctx(), listener, |port| {
            python(&script, port, &dir)
        });
        assert_eq!(out.stdout, "fin sent\nend eof\n", "{out:#?}");
        let events = log.of(a);
        let done = log.closed(a);
        assert_eq!(
            events,
            vec![
                Ev::Accepted,
                Ev::TlsReady(tls_info(&log, a)),
                Ev::Received(b"partial data".to_vec()),
                Ev::Closed(done.clone()),
            ],
            "recv pending: {recv_pending}"
        );
        assert_eq!(done.reason, Reason::Lost, "{done:?}");
        let error = done.error.unwrap_or_default();
        assert!(
            error.contains("without sending TLS close_notify"),
            "recv pending: {recv_pending}: {error}"
        );
        assert_eq!((done.unsent, done.unread), (0, 0));
    }
}

/// StartTLS while plaintext is still going out: the server sends 32 MiB as
/// the connection opens, which the client does not read before its STARTTLS
/// line, so a send is still under way when the server upgrades. Every
/// plaintext byte reaches the client, in order and before the first record.
/// (On the io_uring backend the send in flight is the ring's; the upgrade
/// takes the socket off the ring with what it had not sent.)
#[test]
fn python_starttls_while_a_large_send_is_under_way() {
    const BULK: usize = 32 << 20;
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
sock = raw
sock.sendall(b"STARTTLS\n")
want = int(sys.argv[3])
got = bytearray()
while len(got) < want + 4:
    d = sock.recv(1 << 20)
    if not d:
        sys.exit("the server ended during plaintext")
    got += d
ok = all(got[i] == (i * 7 + i // 251) % 256 for i in range(0, want, 4093))
print("plaintext", len(got) - 4, ok, repr(bytes(got[want:])))
tls = ctx.wrap_socket(sock, server_hostname="localhost")
tls.sendall(b"ping over tls\n")
print("echo", repr(tls.recv(1024)))
"#
    );
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ctx = pki.server_ctx();
    let bulk: Vec<u8> = (0..BULK).map(|i| ((i * 7 + i / 251) % 256) as u8).collect();
    let listener = Rec::listener(move || {
        let (ctx, bulk) = (ctx.clone(), bulk.clone());
        let mut upgraded = false;
        Some(Rec::with(move |cx, s, ev| match ev {
            Ev::Accepted => {
                cx.send(s, &bulk).unwrap();
                cx.recv(s, 9, RecvMode::Exact).unwrap();
            }
            Ev::Received(d) if !upgraded => {
                assert_eq!(&d[..], b"STARTTLS\n");
                cx.send(s, b"220\n").unwrap();
                cx.start_tls(s, &ctx, TlsRole::Server, &[]).unwrap();
                upgraded = true;
            }
            Ev::TlsReady(_) => cx.recv(s, 1024, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.close(s).unwrap();
            }
            _ => {}
        }))
    });
    let mut m = mux();
    let l = m.stream(listener);
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    let peer = Proc::spawn(
        Command::new(python3())
            .arg("-c")
            .arg(&script)
            .arg(inet(&m, l).port().to_string())
            .arg(dir.join("ca.pem"))
            .arg(BULK.to_string()),
    );
    run_until(&mut m, LIMIT, |log| settled(log, &[], 1));
    let timed_out = m.shared().timed_out;
    let out = peer.finish(LIMIT);
    assert!(!timed_out, "{out:#?}\n{:#?}", m.shared().events);
    assert_eq!(
        out.stdout,
        format!("plaintext {BULK} True b'220\\n'\necho b'ping over tls\\n'\n"),
        "{out:#?}"
    );
    let log = m.into_shared();
    let a = log.accepted()[0];
    let sent = log.of(a).iter().filter(|e| **e == Ev::Sent).count();
    // The bulk, the 220 line and the echo each had their on_sent.
    assert_eq!(sent, 3, "{:?}", log.of(a));
}

/// StartTLS, server side, with the ClientHello in the same write as the
/// STARTTLS line: the bytes read ahead of the upgrade feed the handshake.
#[test]
fn python_starttls_client_hello_in_the_same_write() {
    let script = format!(
        "{PY_PRELUDE}{}",
        r#"
sock = raw
def line():
    buf = b""
    while not buf.endswith(b"\n"):
        d = sock.recv(1)
        if not d:
            sys.exit("the server ended during plaintext")
        buf += d
    return buf
sock.sendall(b"HELLO\n")
print("plaintext", repr(line()))
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="localhost")
try:
    tls.do_handshake()
    sys.exit("a handshake without the server?")
except ssl.SSLWantReadError:
    pass
hello = out.read()
print("client_hello", len(hello))
sock.sendall(b"STARTTLS\n" + hello)  # one write
def pump():
    pending = out.read()
    if pending:
        sock.sendall(pending)
    d = sock.recv(65536)
    if not d:
        sys.exit("the server ended during TLS")
    inc.write(d)
def call(f):
    while True:
        try:
            return f()
        except ssl.SSLWantReadError:
            pump()
call(tls.do_handshake)
sock.sendall(out.read())
print("version", tls.version())
tls.write(b"ping over tls\n")
sock.sendall(out.read())
data = b""
while not data.endswith(b"\n"):
    chunk = call(lambda: tls.read(1024))
    if not chunk:
        sys.exit("close_notify before the echo")
    data += chunk
print("echo", repr(data))
call(tls.unwrap)  # our close_notify out, the server's in
sock.sendall(out.read())
print("closed cleanly")
print("after", repr(sock.recv(10)))
"#
    );
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ahead = Rc::new(RefCell::new(Vec::new()));
    let listener = starttls_server(pki.server_ctx(), 4096, ahead.clone());
    let mut m = mux();
    let l = m.stream(listener);
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen(l).unwrap();
    let peer = python(&script, inet(&m, l).port(), &dir);
    run_until(&mut m, LIMIT, |log| settled(log, &[], 1));
    let timed_out = m.shared().timed_out;
    let out = peer.finish(LIMIT);
    assert!(!timed_out, "{out:#?}\n{:#?}", m.shared().events);
    let log = m.into_shared();
    let a = log.accepted()[0];

    let hello_len: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_hello "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out:#?}"));
    assert!(hello_len > 100, "{out:#?}");
    assert_eq!(
        out.stdout,
        format!(
            "plaintext b'HI\\n'\nclient_hello {hello_len}\nversion TLSv1.3\n\
             echo b'ping over tls\\n'\nclosed cleanly\nafter b''\n"
        ),
        "{out:#?}"
    );
    assert!(out.status.success(), "{out:#?}");
    // The whole ClientHello came with the STARTTLS line and was handed over.
    assert_eq!(*ahead.borrow(), vec![hello_len]);
    let events = log.of(a);
    let Ev::Received(upgrade) = &events[3] else {
        panic!("{events:?}")
    };
    assert_eq!(upgrade.len(), 9 + hello_len);
    assert!(upgrade.starts_with(b"STARTTLS\n\x16\x03"), "{upgrade:?}");
    let info = tls_info(&log, a);
    assert_eq!(info.version, TlsVersion::Tls13);
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    assert_eq!(
        events,
        vec![
            Ev::Accepted,
            Ev::Received(b"HELLO\n".to_vec()),
            Ev::Sent,
            Ev::Received(upgrade.clone()),
            Ev::TlsReady(info),
            Ev::Received(b"ping over tls\n".to_vec()),
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::ByPeer)),
        ]
    );
}
