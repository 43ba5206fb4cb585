//! DTLS against a second DTLS stack: Mbed TLS, through the `python-mbedtls`
//! package (`python3 -m pip install python-mbedtls`), on loopback, both ways:
//! a Python DTLS 1.2 client to a tether DTLS listener, and a tether DTLS
//! client to a Python DTLS 1.2 server that asks for a cookie
//! (HelloVerifyRequest) first. Python's own `ssl` module has no DTLS.

mod common;
mod tls_support;

use std::process::Command;

use common::{inet, mux, run_until, Ev, Rec};
use tether::{DtlsContext, Reason, RecvMode, TlsVersion};
use tls_support::*;

/// `python3`, once it is known to import `mbedtls`; fails the test with how
/// to install it otherwise (never skips).
fn python_mbedtls() -> &'static str {
    let python = python3();
    let out = Command::new(python)
        .args(["-c", "import mbedtls.tls"])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 cannot import `mbedtls`: the DTLS interop tests need the \
         python-mbedtls package; install it with \
         `python3 -m pip install python-mbedtls` (CI does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    python
}

/// What both scripts share: DTLS 1.2 only, so a failure to agree on it shows
/// as a handshake failure rather than a silent downgrade.
const COMMON: &str = r#"
import socket, sys
from mbedtls import tls, x509, pk
from mbedtls.exceptions import TLSError

PEER_CLOSE_NOTIFY = 0x7880  # MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY

def config(**kw):
    return tls.DTLSConfiguration(
        lowest_supported_version=tls.DTLSVersion.DTLSv1_2,
        highest_supported_version=tls.DTLSVersion.DTLSv1_2,
        **kw)

def read(conn):
    """One record's plaintext, or None at the peer's close_notify."""
    while True:
        try:
            return conn.recv(4096)
        except tls.WantReadError:
            pass  # a datagram with no application data: read on
        except TLSError as e:
            if e.err == PEER_CLOSE_NOTIFY:
                return None
            raise
"#;

/// argv: ca.pem, port. Connects verifying `localhost`, sends a line, checks
/// the echo, then shuts down (which sends close_notify) and exits 0.
const CLIENT: &str = r#"
ca, port = sys.argv[1], int(sys.argv[2])
conf = config(trust_store=tls.TrustStore.from_pem_file(ca), validate_certificates=True)
sock = tls.ClientContext(conf).wrap_socket(
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM), server_hostname="localhost")
sock.settimeout(10)
sock.connect(("127.0.0.1", port))
sock.do_handshake()
print("HANDSHAKE", sock.negotiated_tls_version(), sock.cipher(), flush=True)
msg = b"ping from python-mbedtls\n"
sock.send(msg)
echo = read(sock)
assert echo == msg, echo
print("ECHO", echo.decode().strip(), flush=True)
sock.shutdown(socket.SHUT_RDWR)  # close_notify, then the socket's shutdown
sock.close()
print("CLOSED", flush=True)
"#;

/// argv: server.pem, server.key. Binds a free loopback port, prints
/// "READY <port>", answers the first ClientHello with a HelloVerifyRequest,
/// handshakes with the second, echoes one record, then reads on until the
/// peer's close_notify (which Mbed TLS reports as an error) and exits 0.
const SERVER: &str = r#"
cert, key = sys.argv[1], sys.argv[2]
conf = config(certificate_chain=((x509.CRT.from_file(cert),), pk.ECC.from_file(key)),
              validate_certificates=False)
sock = tls.ServerContext(conf).wrap_socket(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
# accept() rebinds the address for the next peer: the bound socket must allow it.
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print("READY", sock.getsockname()[1], flush=True)
conn, addr = sock.accept()
conn.settimeout(10)
conn.setcookieparam(addr[0].encode())
try:
    conn.do_handshake()
    sys.exit("the first ClientHello was taken without a cookie")
except tls.HelloVerifyRequest:
    print("HELLO_VERIFY_REQUEST", flush=True)
conn, addr = conn.accept()
conn.settimeout(10)
conn.setcookieparam(addr[0].encode())
conn.do_handshake()
print("HANDSHAKE", conn.negotiated_tls_version(), conn.cipher(), flush=True)
data = read(conn)
print("GOT", data.decode().strip(), flush=True)
conn.send(data)
rest = read(conn)
assert rest is None, rest
print("CLOSE_NOTIFY", flush=True)
conn.close()
"#;

/// A `python3 -c` command running `script` after `COMMON`.
fn python(script: &str) -> Command {
    let mut cmd = Command::new(python_mbedtls());
    cmd.arg("-c").arg(format!("{COMMON}{script}"));
    cmd
}

#[test]
fn python_mbedtls_client_to_a_tether_listener() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let ctx = DtlsContext::builder()
        .certificate_pem(
            pki.server.cert_pem.as_bytes(),
            pki.server.key_pem.as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap();
    let mut m = mux();
    let l = m.udp(Rec::listener(|| {
        // Echo each record; the peer ends it.
        Some(Rec::with(|cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, 2048, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.recv(s, 2048, RecvMode::Partial).unwrap();
            }
            _ => {}
        }))
    }));
    m.bind(l, "127.0.0.1:0").unwrap();
    m.listen_dtls(l, &ctx).unwrap();
    let port = inet(&m, l).port();
    let client = Proc::spawn(python(CLIENT).arg(dir.join("ca.pem")).arg(port.to_string()));
    run_until(&mut m, LIMIT, |log| {
        log.accepted().first().is_some_and(|a| log.is_closed(*a))
    });
    let out = client.finish(LIMIT);
    let log = m.shared();
    assert!(
        !log.timed_out,
        "python said {out:#?}; log {:#?}",
        log.events
    );
    assert!(out.status.success(), "{out:#?}");
    assert!(
        out.stdout.contains("HANDSHAKE DTLSVersion.DTLSv1_2"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("ECHO ping from python-mbedtls"),
        "{out:#?}"
    );
    let a = log.accepted()[0];
    let info = tls_info(log, a);
    assert_eq!(info.version, TlsVersion::Dtls12);
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::TlsReady(info.clone()),
            Ev::Received(b"ping from python-mbedtls\n".to_vec()),
            Ev::Sent,
            // DTLS has no half-close: the peer's close_notify ends the
            // association at once, with no on_peer_shutdown before it.
            Ev::Closed(graceful(Reason::ByPeer)),
        ],
        "python said {out:#?}"
    );
}

#[test]
fn tether_client_to_a_python_mbedtls_server_with_a_cookie() {
    let pki = Pki::new();
    let (_dir, dir) = pem_dir(&pki);
    let mut server = Proc::spawn(
        python(SERVER)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key")),
    );
    let ready = server.wait_line(LIMIT, |l| l.starts_with("READY "));
    let port: u16 = ready["READY ".len()..].trim().parse().unwrap();
    let ctx = DtlsContext::builder()
        .roots_pem(pki.ca.cert_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut m = mux();
    let c = m.udp(Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.send(s, b"hello from tether\n").unwrap();
            cx.recv(s, 2048, RecvMode::Partial).unwrap();
        }
        Ev::Received(_) => cx.close(s).unwrap(),
        _ => {}
    }));
    m.connect_dtls(c, &format!("127.0.0.1:{port}"), &ctx)
        .unwrap();
    run_until(&mut m, LIMIT, move |log| log.is_closed(c));
    let out = server.finish(LIMIT);
    let log = m.shared();
    assert!(
        !log.timed_out,
        "python said {out:#?}; log {:#?}",
        log.events
    );
    assert!(out.status.success(), "{out:#?}");
    assert!(out.stdout.contains("HELLO_VERIFY_REQUEST"), "{out:#?}");
    assert!(out.stdout.contains("GOT hello from tether"), "{out:#?}");
    assert!(out.stdout.contains("CLOSE_NOTIFY"), "{out:#?}");
    let info = tls_info(log, c);
    assert_eq!(info.version, TlsVersion::Dtls12);
    assert_eq!(info.peer_fingerprint, Some(fp(&pki.server)));
    let events = log.of(c);
    // The unbound socket was bound to an ephemeral port by connect_dtls.
    assert!(matches!(events[0], Ev::Bound(_)), "{events:#?}");
    assert_eq!(
        events[1..],
        [
            Ev::TlsReady(info.clone()),
            Ev::Connected,
            Ev::Sent,
            Ev::Received(b"hello from tether\n".to_vec()),
            Ev::Closed(graceful(Reason::Normal)),
        ][..],
        "python said {out:#?}"
    );
}
