//! What the TLS tests share: certificates and contexts, TLS listeners, a user
//! that refuses ALPN, and bounded child processes for the interop peers
//! (openssl, python3).
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tether::{
    Admission, Closed, Cx, Fingerprint, IoMux, PeerInfo, Reason, RecvMode, SocketId, SocketUser,
    TlsContext, TlsContextBuilder, TlsInfo, TlsRole, TlsVersion,
};

use crate::common::pki::{Ca, Identity};
use crate::common::{echo_listener, mux, run_until, Done, Ev, Log, Rec};

/// How long any one test may run its loop.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `localhost` it signed, and a client one.
pub struct Pki {
    pub ca: Ca,
    pub server: Identity,
    pub client: Identity,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::with_ca("tether test CA")
    }

    /// Another PKI: its CA must have its own name, or a chain of one would be
    /// taken as signed by the other (and fail as a bad signature, not as an
    /// unknown issuer).
    pub fn with_ca(name: &str) -> Pki {
        let ca = Ca::new(name);
        let server = ca.server();
        let client = ca.client("tether test client");
        Pki { ca, server, client }
    }

    /// A server context with the server certificate, to add to.
    pub fn server_builder(&self) -> TlsContextBuilder {
        TlsContext::builder()
            .certificate_pem(
                self.server.cert_pem.as_bytes(),
                self.server.key_pem.as_bytes(),
            )
            .expect("server certificate")
    }

    /// A client context trusting the CA, to add to.
    pub fn client_builder(&self) -> TlsContextBuilder {
        TlsContext::builder()
            .roots_pem(self.ca.cert_pem.as_bytes())
            .expect("CA as root")
    }

    pub fn server_ctx(&self) -> TlsContext {
        self.server_builder().build().expect("server context")
    }

    pub fn client_ctx(&self) -> TlsContext {
        self.client_builder().build().expect("client context")
    }

    /// A server that requires client certificates signed by the CA.
    pub fn mtls_server_builder(&self) -> TlsContextBuilder {
        self.server_builder()
            .roots_pem(self.ca.cert_pem.as_bytes())
            .expect("CA as root")
            .client_certs(tether::ClientCerts::Required)
    }

    /// A client that presents the client certificate.
    pub fn mtls_client_builder(&self) -> TlsContextBuilder {
        self.client_builder()
            .certificate_pem(
                self.client.cert_pem.as_bytes(),
                self.client.key_pem.as_bytes(),
            )
            .expect("client certificate")
    }

    /// Write the PEM files the external tools read: `ca.pem`, `server.pem`,
    /// `server.key`, `client.pem`, `client.key`.
    pub fn write_files(&self, dir: &Path) {
        for (name, text) in [
            ("ca.pem", &self.ca.cert_pem),
            ("server.pem", &self.server.cert_pem),
            ("server.key", &self.server.key_pem),
            ("client.pem", &self.client.cert_pem),
            ("client.key", &self.client.key_pem),
        ] {
            std::fs::write(dir.join(name), text).expect("write PEM");
        }
    }
}

/// The fingerprint of an identity's certificate.
pub fn fp(id: &Identity) -> Fingerprint {
    Fingerprint::of(&id.der)
}

/// Bind to a free loopback port and listen with TLS; returns the listener and
/// its address.
pub fn listen_tls(
    m: &mut IoMux<Log>,
    ctx: &TlsContext,
    user: impl SocketUser<Log> + 'static,
) -> (SocketId, String) {
    let l = m.stream(user);
    m.bind(l, "127.0.0.1:0").expect("bind");
    m.listen_tls(l, ctx).expect("listen_tls");
    let addr = m.local_addr(l).expect("listener address").to_string();
    (l, addr)
}

/// A new socket connecting over TLS to `addr` as `localhost`.
pub fn connect_tls(
    m: &mut IoMux<Log>,
    addr: &str,
    ctx: &TlsContext,
    user: impl SocketUser<Log> + 'static,
) -> SocketId {
    let c = m.stream(user);
    m.connect_tls(c, addr, "localhost", ctx)
        .expect("connect_tls");
    c
}

/// What `s` reported in `on_tls_ready`; panics if it never did.
pub fn tls_info(log: &Log, s: SocketId) -> TlsInfo {
    log.of(s)
        .into_iter()
        .find_map(|e| match e {
            Ev::TlsReady(info) => Some(info),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{s} never had on_tls_ready: {:?}", log.of(s)))
}

/// True when the `clients` have closed and at least `n` sockets were accepted,
/// all of them closed too.
pub fn settled(log: &Log, clients: &[SocketId], n: usize) -> bool {
    let accepted = log.accepted();
    accepted.len() >= n
        && accepted.iter().all(|s| log.is_closed(*s))
        && clients.iter().all(|s| log.is_closed(*s))
}

/// True when at least `n` sockets were accepted and every socket the log
/// names, `except` aside (listeners), has closed.
pub fn all_closed(log: &Log, n: usize, except: &[SocketId]) -> bool {
    let mut seen: Vec<SocketId> = Vec::new();
    for (s, _) in &log.events {
        if !except.contains(s) && !seen.contains(s) {
            seen.push(*s);
        }
    }
    log.accepted().len() >= n && seen.iter().all(|s| log.is_closed(*s))
}

/// A user that records like `Rec` but refuses whatever ALPN protocol the
/// handshake selected (recording it as `Ev::Alpn`).
pub struct RefuseAlpn(pub Rec);

impl SocketUser<Log> for RefuseAlpn {
    fn on_connected(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.0.on_connected(cx, s)
    }
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.0.on_accepted(cx, s)
    }
    fn on_sent(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.0.on_sent(cx, s)
    }
    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        self.0.on_received(cx, s, data)
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Log>, s: SocketId, farewell: Option<&[u8]>) {
        self.0.on_peer_shutdown(cx, s, farewell)
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Log>, s: SocketId, info: &TlsInfo) {
        self.0.on_tls_ready(cx, s, info)
    }
    fn on_alpn(&mut self, cx: &mut Cx<Log>, s: SocketId, protocol: &[u8]) -> bool {
        cx.shared_mut()
            .events
            .push((s, Ev::Alpn(protocol.to_vec())));
        false
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        self.0.on_closed(cx, s, closed)
    }
}

/// A listener whose connections refuse ALPN and send `greeting` once ready
/// (which must never arrive).
pub struct RefusingListener {
    pub greeting: &'static [u8],
}

impl SocketUser<Log> for RefusingListener {
    fn on_incoming(&mut self, _: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        let greeting = self.greeting;
        Admission::Accept(Box::new(RefuseAlpn(Rec::with(move |cx, s, ev| {
            if *ev == Ev::Accepted {
                // Queued while the handshake runs: held back, never sent.
                cx.send(s, greeting).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
        }))))
    }
    fn on_closed(&mut self, _: &mut Cx<Log>, _: SocketId, _: &Closed) {}
}

/// A plaintext line server: "HELLO" is answered "HI"; "STARTTLS" upgrades,
/// with the bytes after the newline as the read-ahead (their lengths are
/// recorded in `ahead`). Once upgraded it echoes; on the peer's end it ends.
pub fn starttls_server(ctx: TlsContext, chunk: usize, ahead: Rc<RefCell<Vec<usize>>>) -> Rec {
    Rec::listener(move || {
        let (ctx, ahead) = (ctx.clone(), ahead.clone());
        let mut line = Vec::new();
        let mut upgraded = false;
        Some(Rec::with(move |cx, s, ev| match ev {
            Ev::Accepted | Ev::TlsReady(_) => cx.recv(s, chunk, RecvMode::Partial).unwrap(),
            Ev::Received(d) if upgraded => {
                cx.send(s, d).unwrap();
                cx.recv(s, chunk, RecvMode::Partial).unwrap();
            }
            Ev::Received(d) => {
                line.extend_from_slice(d);
                while let Some(end) = line.iter().position(|&b| b == b'\n') {
                    let rest = line.split_off(end + 1);
                    match &line[..] {
                        b"HELLO\n" => cx.send(s, b"HI\n").unwrap(),
                        b"STARTTLS\n" => {
                            ahead.borrow_mut().push(rest.len());
                            cx.start_tls(s, &ctx, TlsRole::Server, &rest).unwrap();
                            upgraded = true;
                            return;
                        }
                        other => panic!("unexpected line {other:?}"),
                    }
                    line = rest;
                }
                cx.recv(s, chunk, RecvMode::Partial).unwrap();
            }
            Ev::PeerShutdown => cx.shutdown(s).unwrap(),
            _ => {}
        }))
    })
}

/// A deterministic, non-repeating-looking byte pattern.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ seed)
        .collect()
}

/// Compare two long byte strings without printing them.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

// ----- what the tether-to-tether tests share -----

/// What a client or server says of a certificate no trust root signed.
pub const UNKNOWN_ISSUER: &str = "TLS: unknown issuer: the certificate was not signed by any of \
     the trust roots (give its CA, or the certificate itself, as a trust root)";

pub const TLS13_SUITE: &str = "TLS13_AES_256_GCM_SHA384";
// rcgen makes ECDSA P-256 keys.
pub const TLS12_SUITE: &str = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384";

pub fn graceful(reason: Reason) -> Done {
    Done {
        reason,
        unsent: 0,
        unread: 0,
        error: None,
        os_error: None,
        discard: None,
    }
}

pub fn check_info(
    info: &TlsInfo,
    version: TlsVersion,
    suite: &str,
    alpn: Option<&[u8]>,
    peer: Option<Fingerprint>,
    server_name: Option<&str>,
) {
    assert_eq!(info.version, version, "{info:?}");
    assert_eq!(info.cipher_suite, suite, "{info:?}");
    assert_eq!(info.alpn.as_deref(), alpn, "{info:?}");
    assert_eq!(info.peer_fingerprint, peer, "{info:?}");
    assert_eq!(info.server_name.as_deref(), server_name, "{info:?}");
}

/// Run until `clients` and one accepted socket closed; fail on the deadline.
pub fn finish(mut m: IoMux<Log>, clients: &[SocketId]) -> Log {
    let clients = clients.to_vec();
    let watched = clients.clone();
    run_until(&mut m, LIMIT, move |log| settled(log, &watched, 1));
    assert!(!m.shared().timed_out, "timed out: {:#?}", m.shared().events);
    m.into_shared()
}

/// The client of `exchange`: "ping", wait for the echo, shut down.
pub fn ping_client() -> Rec {
    Rec::with(|cx, s, ev| match ev {
        Ev::Connected => {
            cx.send(s, b"ping").unwrap();
            cx.recv(s, 4, RecvMode::Exact).unwrap();
        }
        Ev::Received(_) => cx.shutdown(s).unwrap(),
        _ => {}
    })
}

/// A TLS echo server and a client pinging it as `name`. Returns the log, the
/// client and the accepted socket.
pub fn exchange(server: &TlsContext, client: &TlsContext, name: &str) -> (Log, SocketId, SocketId) {
    let mut m = mux();
    let (_l, addr) = listen_tls(&mut m, server, echo_listener());
    let c = m.stream(ping_client());
    m.connect_tls(c, &addr, name, client).unwrap();
    let log = finish(m, &[c]);
    let a = log.accepted()[0];
    (log, c, a)
}

/// The events of a successful ping over TLS, on the client and the server.
pub fn assert_pinged(log: &Log, c: SocketId, a: SocketId) -> (TlsInfo, TlsInfo) {
    let ci = tls_info(log, c);
    let si = tls_info(log, a);
    assert_eq!(
        log.of(c),
        vec![
            Ev::TlsReady(ci.clone()),
            Ev::Connected,
            Ev::Sent,
            Ev::Received(b"ping".to_vec()),
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::Normal)),
        ]
    );
    assert_eq!(
        log.of(a),
        vec![
            Ev::Accepted,
            Ev::TlsReady(si.clone()),
            Ev::Received(b"ping".to_vec()),
            Ev::Sent,
            Ev::PeerShutdown,
            Ev::Closed(graceful(Reason::ByPeer)),
        ]
    );
    (ci, si)
}

/// A failed handshake: no callback but `on_closed` (and `on_accepted` on the
/// server), with the reason and the error's text.
pub fn assert_failed(events: &[Ev], accepted: bool, error: &str) {
    let mut want = Vec::new();
    if accepted {
        want.push(Ev::Accepted);
    }
    want.push(Ev::Closed(Done {
        reason: Reason::TlsHandshakeFailed,
        unsent: 0,
        unread: 0,
        error: Some(error.to_string()),
        os_error: None,
        discard: None,
    }));
    assert_eq!(events, want);
}

// ----- external peers -----

/// The name of a tool the interop tests need, once it is known to run; fails
/// the test clearly if it is missing.
pub fn tool(name: &'static str, version_arg: &str) -> &'static str {
    let ok = Command::new(name)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{name}` was not found on PATH (or `{name} {version_arg}` failed): \
         the TLS interop tests need it; install it (CI has it)"
    );
    name
}

pub fn openssl() -> &'static str {
    tool("openssl", "version")
}

pub fn python3() -> &'static str {
    tool("python3", "--version")
}

/// A child process that cannot outlive its test: killed on drop, waited for
/// with a deadline, its output collected by threads so it never blocks.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    out_thread: Option<JoinHandle<()>>,
    err_thread: Option<JoinHandle<Vec<u8>>>,
}

/// How a child ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        let name = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut err = child.stderr.take().expect("stderr");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = channel();
        let sink = stdout.clone();
        let out_thread = std::thread::spawn(move || {
            let mut line = Vec::new();
            while matches!(out.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().extend_from_slice(&line);
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        });
        let err_thread = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        Proc {
            name,
            child,
            stdin,
            lines,
            stdout,
            out_thread: Some(out_thread),
            err_thread: Some(err_thread),
        }
    }

    /// Write to the child's stdin (kept open until `close_stdin` or the end).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(data).expect("write to child");
        stdin.flush().expect("flush to child");
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait for a line of stdout that `pred` accepts; panics past `limit`.
    pub fn wait_line(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => {
                    let so_far = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
                    let _ = self.child.kill();
                    panic!(
                        "{}: the expected line never came; stdout so far: {so_far}",
                        self.name
                    )
                }
            }
        }
    }

    /// Close the child's stdin, wait for it to exit (killing it past
    /// `limit`), then return what it printed.
    pub fn finish(mut self, limit: Duration) -> Outcome {
        self.stdin = None;
        self.wait_exit(limit)
    }

    /// Wait for the child to exit by itself, its stdin kept open (killing it
    /// past `limit`), then return what it printed. For a child that quits at
    /// its stdin's end whatever is still waiting in its sockets, as
    /// `openssl s_server` does (`-ign_eof` or not): closing its stdin would
    /// race with what it has yet to read.
    pub fn wait_exit(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        let (status, killed) = loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => break (status, false),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    break (self.child.wait().expect("wait"), true);
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if let Some(t) = self.out_thread.take() {
            let _ = t.join();
        }
        let stderr = self
            .err_thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let outcome = Outcome {
            status,
            stdout: String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        assert!(
            !killed,
            "{} did not exit within {limit:?} and was killed: {outcome:?}",
            self.name
        );
        outcome
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temporary directory with the PKI's PEM files in it.
pub fn pem_dir(pki: &Pki) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    pki.write_files(dir.path());
    let path = dir.path().to_path_buf();
    (dir, path)
}
