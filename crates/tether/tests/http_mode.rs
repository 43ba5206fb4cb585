//! HTTP mode on real sockets, with real clients: `curl`, Python's
//! `http.client`, and a raw-socket client for pipelining, malformed requests
//! and the lingering close. Every connection's `Closed` is checked.

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{inet, mux, run_until, Done, Log};
use tether::{
    Admission, ApiError, Closed, Cx, HttpLimits, HttpOptions, IoMux, PeerInfo, Reason, Request,
    Response, SocketId, SocketUser,
};

const LIMIT: Duration = Duration::from_secs(20);

/// What the test server saw, in the loop's log: requests as "METHOD target
/// body-length complete", closes as `Closed`.
#[derive(Clone, Copy)]
struct App {
    /// How the handler answers.
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// 200 with "hello {target}\n", or 404 for /missing, 204 for /empty.
    Hello,
    /// 200 with the body's length; tries `close` first (which is refused).
    Length,
}

impl SocketUser<Log> for App {
    fn on_incoming(&mut self, _: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        Admission::Accept(Box::new(*self))
    }

    fn on_request(&mut self, cx: &mut Cx<Log>, s: SocketId, r: &Request) {
        let line = format!(
            "{} {} {} {}",
            r.method,
            r.target,
            r.body.len(),
            r.body_complete
        );
        cx.shared_mut()
            .events
            .push((s, common::Ev::Received(line.into_bytes())));
        let response = match (self.kind, r.target.as_str()) {
            (Kind::Hello, "/missing") => Response::new(404).body("no\n"),
            (Kind::Hello, "/empty") => Response::new(204),
            (Kind::Hello, t) => Response::new(200)
                .header("Content-Type", "text/plain")
                .body(format!("hello {t}\n")),
            (Kind::Length, _) => {
                assert!(matches!(cx.close(s), Err(ApiError::Http(_))));
                assert!(matches!(cx.reset(s), Err(ApiError::Http(_))));
                Response::new(200).body(format!("{}\n", r.body.len()))
            }
        };
        cx.respond(s, response).unwrap();
    }

    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut()
            .events
            .push((s, common::Ev::Closed(Done::from(closed))));
    }
}

/// A loop with an HTTP listener on loopback.
fn server(kind: Kind, opts: HttpOptions) -> (IoMux<Log>, SocketId, SocketAddr) {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", App { kind });
    m.set_http(l, opts).unwrap();
    let addr = inet(&m, l);
    (m, l, addr)
}

/// The requests the server saw, in order.
fn requests(log: &Log) -> Vec<String> {
    log.events
        .iter()
        .filter_map(|(_, e)| match e {
            common::Ev::Received(d) => Some(String::from_utf8_lossy(d).into_owned()),
            _ => None,
        })
        .collect()
}

/// The connections that closed, and how (the listener, stopped with the
/// loop, left out).
fn closes(log: &Log) -> Vec<Done> {
    log.events
        .iter()
        .filter_map(|(_, e)| match e {
            common::Ev::Closed(d) if d.reason != Reason::Stopped => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Run `client` on a thread while the loop serves, until `n` connections
/// closed; the client's result.
fn serve<T: Send + 'static>(
    m: &mut IoMux<Log>,
    n: usize,
    client: impl FnOnce() -> T + Send + 'static,
) -> T {
    let t = std::thread::spawn(client);
    run_until(m, LIMIT, move |log| closes(log).len() >= n);
    assert!(!m.shared().timed_out, "{:#?}", m.shared().events);
    t.join().expect("client thread")
}

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs (CI installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_gets_a_response_and_the_connection_closes_itself() {
    let (mut m, _, addr) = server(Kind::Hello, HttpOptions::default());
    let url = format!("http://{addr}/hi");
    let (ok, body, err) = serve(&mut m, 1, move || curl(&["-i", &url]));
    assert!(ok, "{err}");
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(body.contains("\r\nConnection: close\r\n"), "{body}");
    assert!(body.contains("\r\nContent-Length: 10\r\n"), "{body}");
    assert!(body.contains("\r\nDate: "), "{body}");
    assert!(body.ends_with("\r\n\r\nhello /hi\n"), "{body}");
    let log = m.shared();
    assert_eq!(requests(log), ["GET /hi 0 true"]);
    let done = &closes(log)[0];
    assert_eq!(
        done.reason,
        Reason::Normal,
        "we ended it, after the response"
    );
    assert_eq!((done.unsent, done.unread), (0, 0));
}

#[test]
fn curl_reuses_a_kept_open_connection_and_a_404_keeps_it() {
    let (mut m, _, addr) = server(Kind::Hello, HttpOptions::default().keep_open(true));
    let (a, b, c) = (
        format!("http://{addr}/one"),
        format!("http://{addr}/missing"),
        format!("http://{addr}/two"),
    );
    let (ok, body, err) = serve(&mut m, 1, move || curl(&["-v", &a, &b, &c]));
    assert!(ok, "{err}");
    assert_eq!(body, "hello /one\nno\nhello /two\n");
    assert!(
        err.contains("Re-using existing connection") || err.contains("Reusing existing"),
        "{err}"
    );
    let log = m.shared();
    assert_eq!(
        requests(log),
        ["GET /one 0 true", "GET /missing 0 true", "GET /two 0 true"]
    );
    // One connection, ended by curl when it was done.
    assert_eq!(closes(log).len(), 1, "{err}");
    assert_eq!(closes(log)[0].reason, Reason::ByPeer);
}

#[test]
fn python_http_client_posts_length_and_chunked_bodies() {
    let (mut m, _, addr) = server(Kind::Length, HttpOptions::default().keep_open(true));
    let port = addr.port();
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
c.request("POST", "/a", body=b"x" * 1000)
r = c.getresponse(); assert r.status == 200; print(r.read().decode().strip())
c.request("POST", "/b", body=iter([b"ab", b"cde", b"f" * 5000]), encode_chunked=True)
r = c.getresponse(); assert r.status == 200; print(r.read().decode().strip())
c.request("HEAD", "/c")
r = c.getresponse(); assert r.status == 200; assert r.read() == b""; print(r.getheader("Content-Length"))
c.close()
"#
    );
    let out = serve(&mut m, 1, move || {
        Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3")
    });
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n5005\n2\n");
    assert_eq!(
        requests(m.shared()),
        ["POST /a 1000 true", "POST /b 5005 true", "HEAD /c 0 true"]
    );
}

/// Send `request` on a fresh connection, then read until the server's end.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (mut m, _, addr) = server(Kind::Hello, HttpOptions::default().keep_open(true));
    let got = serve(&mut m, 1, move || {
        raw(
            addr,
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    });
    let bodies: Vec<&str> = got
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/").next().unwrap())
        .collect();
    assert_eq!(bodies, ["hello /1\n", "hello /2\n", "hello /3\n"], "{got}");
    assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3);
    assert!(
        got.contains("Connection: close"),
        "the last, asked to close, says so"
    );
    assert_eq!(closes(m.shared())[0].reason, Reason::Normal);
}

#[test]
fn malformed_and_oversized_requests_get_their_status_and_the_close() {
    let limits = HttpLimits {
        body: 1 << 20,
        ..HttpLimits::default()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), "HTTP/1.1 400 "),
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000)).into_bytes(),
            "HTTP/1.1 431 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 20000000\r\n\r\n".to_vec(),
            "HTTP/1.1 413 ",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            "HTTP/1.1 501 ",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc".to_vec(),
            "HTTP/1.1 400 ",
        ),
    ];
    for (request, status) in cases {
        let (mut m, _, addr) = server(
            Kind::Hello,
            HttpOptions::default().keep_open(true).limits(limits),
        );
        let got = serve(&mut m, 1, move || raw(addr, &request));
        assert!(got.starts_with(status), "{status}: {got}");
        assert!(got.contains("Connection: close"), "{got}");
        assert!(requests(m.shared()).is_empty(), "never reached the handler");
        assert_eq!(closes(m.shared())[0].reason, Reason::Normal);
    }
}

#[test]
fn a_body_the_handler_never_read_does_not_cost_the_client_its_response() {
    // The lingering close: the server answers at once and closes; the client
    // sends its whole 10 MB body first and reads the response only then.
    let (mut m, _, addr) = server(Kind::Length, HttpOptions::default().buffer(1024));
    let total = 10 * 1024 * 1024;
    let got = serve(&mut m, 1, move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            format!("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
        )
        .unwrap();
        c.write_all(&vec![7u8; total]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    // The handler got at least the buffer's worth (and at most one read more).
    let (head, answer) = got.split_once("\r\n\r\n").expect("a whole head");
    let delivered: usize = answer.trim().parse().expect("the whole body");
    assert!((1024..1024 + 16 * 1024).contains(&delivered), "{got}");
    assert!(
        head.contains(&format!("Content-Length: {}", answer.len())),
        "{got}"
    );
    let log = m.shared();
    assert_eq!(requests(log), [format!("POST /big {delivered} false")]);
    let done = &closes(log)[0];
    assert_eq!(done.reason, Reason::Normal);
    assert!(
        done.unread > 9 * 1024 * 1024 && done.unread <= total as u64,
        "what the lingering close threw away: {}",
        done.unread
    );
}

#[test]
fn expect_continue_is_answered_and_head_and_204_carry_no_body() {
    let (mut m, _, addr) = server(Kind::Hello, HttpOptions::default().keep_open(true));
    let got = serve(&mut m, 1, move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .unwrap();
        let mut cont = [0u8; 25];
        c.read_exact(&mut cont).unwrap();
        assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
        c.write_all(b"hello").unwrap();
        c.write_all(b"HEAD /h HTTP/1.1\r\n\r\nGET /empty HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        String::from_utf8_lossy(&got).into_owned()
    });
    let parts: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 3, "{got}");
    assert!(
        parts[0].starts_with("200") && parts[0].ends_with("hello /x\n"),
        "{got}"
    );
    assert!(
        parts[1].starts_with("200") && parts[1].contains("Content-Length: 9\r\n"),
        "{got}"
    );
    assert!(parts[1].ends_with("\r\n\r\n"), "HEAD: no body: {got}");
    assert!(
        parts[2].starts_with("204") && !parts[2].contains("Content-Length"),
        "{got}"
    );
    assert!(parts[2].ends_with("\r\n\r\n"), "204: no body: {got}");
    assert_eq!(
        requests(m.shared()),
        ["POST /x 5 true", "HEAD /h 0 true", "GET /empty 0 true"]
    );
}

/// A handler that streams its answers: `/len` with a Content-Length in three
/// sends, `/chunked` in chunks; and reads a long body in parts, answering
/// with how many bytes came in how many parts.
struct Streamer {
    parts: usize,
    bytes: usize,
}

impl SocketUser<Log> for Streamer {
    fn on_incoming(&mut self, _: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        Admission::Accept(Box::new(Streamer { parts: 0, bytes: 0 }))
    }
    fn on_request(&mut self, cx: &mut Cx<Log>, s: SocketId, r: &Request) {
        match r.target.as_str() {
            "/len" => {
                cx.respond(s, Response::new(200).streamed(9)).unwrap();
                for part in [&b"abc"[..], b"def", b"ghi"] {
                    cx.send_body(s, part).unwrap();
                }
                assert!(matches!(cx.send_body(s, b"x"), Err(ApiError::Http(_))));
            }
            "/chunked" => {
                cx.respond(s, Response::new(200).chunked()).unwrap();
                cx.send_body(s, b"first ").unwrap();
                cx.send_body(s, b"second").unwrap();
                cx.end_body(s).unwrap();
            }
            _ if r.body_complete => {
                let answer = format!("{} in 1\n", r.body.len());
                cx.respond(s, Response::new(200).body(answer)).unwrap();
            }
            _ => {
                self.parts = 1;
                self.bytes = r.body.len();
                cx.recv_body(s).unwrap();
                // One part at a time.
                assert_eq!(cx.recv_body(s), Err(ApiError::RecvPending));
            }
        }
    }
    fn on_request_body(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8], last: bool) {
        self.bytes += data.len();
        if !data.is_empty() {
            self.parts += 1;
        }
        if last {
            let answer = format!("{} in {}\n", self.bytes, self.parts);
            cx.respond(s, Response::new(200).body(answer)).unwrap();
            assert!(matches!(cx.recv_body(s), Err(ApiError::Http(_))));
        } else {
            cx.recv_body(s).unwrap();
        }
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut()
            .events
            .push((s, common::Ev::Closed(Done::from(closed))));
    }
}

#[test]
fn streamed_responses_and_a_body_read_in_parts() {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", Streamer { parts: 0, bytes: 0 });
    m.set_http(l, HttpOptions::default().keep_open(true).buffer(4096))
        .unwrap();
    let addr = inet(&m, l);
    let (a, b, c) = (
        format!("http://{addr}/len"),
        format!("http://{addr}/chunked"),
        format!("http://{addr}/upload"),
    );
    let (ok, body, err) = serve(&mut m, 1, move || {
        let big = std::env::temp_dir().join(format!("tether-http-{}", std::process::id()));
        std::fs::write(&big, vec![1u8; 300_000]).unwrap();
        let r = curl(&[&a, &b, "--data-binary", &format!("@{}", big.display()), &c]);
        let _ = std::fs::remove_file(big);
        r
    });
    assert!(ok, "{err}");
    let (streamed, upload) = body.split_at("abcdefghifirst second".len());
    assert_eq!(streamed, "abcdefghifirst second");
    let (bytes, parts) = upload.trim().split_once(" in ").unwrap();
    assert_eq!(bytes, "300000", "{body}");
    assert!(parts.parse::<usize>().unwrap() > 2, "in parts: {body}");
}

/// A Hello server on a test clock, with a 5 s handshake timeout (and `idle`).
fn clocked(
    clock: &tether::TestClock,
    opts: HttpOptions,
    idle: Option<Duration>,
) -> (IoMux<Log>, SocketAddr) {
    let mut m = common::mux_on(clock);
    let l = m.listen_on("127.0.0.1:0", App { kind: Kind::Hello });
    m.set_http(l, opts).unwrap();
    let timeouts = tether::Timeouts {
        handshake: Some(Duration::from_secs(5)),
        idle,
        ..tether::Timeouts::default()
    };
    m.set_timeouts(l, timeouts).unwrap();
    let addr = inet(&m, l);
    (m, addr)
}

#[test]
fn a_dribbling_client_gets_408_and_the_close() {
    use std::sync::mpsc;
    let clock = tether::TestClock::new();
    let (mut m, addr) = clocked(&clock, HttpOptions::default(), None);
    let (tx, rx) = mpsc::channel();
    common::run_script(&mut m, &clock, move |sc| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: slo").unwrap();
        // Wait until the server has the connection and the partial head.
        loop {
            let n = sc.look(|cx| cx.stats().sockets);
            if n >= 3 {
                break;
            }
            std::thread::yield_now();
        }
        sc.advance(Duration::from_millis(4999));
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        assert!(c.read(&mut b).is_err(), "nothing before the deadline");
        c.set_nonblocking(false).unwrap();
        sc.advance(Duration::from_millis(1));
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        tx.send(String::from_utf8_lossy(&got).into_owned()).unwrap();
    });
    let got = rx.recv().unwrap();
    assert!(got.starts_with("HTTP/1.1 408 "), "{got}");
    assert!(got.contains("Connection: close"), "{got}");
    assert!(requests(m.shared()).is_empty());
}

#[test]
fn over_tls_and_on_a_unix_socket() {
    // TLS: curl verifies the server against the test CA.
    let pki = tls_support::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_files(dir.path());
    let mut m = mux();
    let (l, addr) = tls_support::listen_tls(&mut m, &pki.server_ctx(), App { kind: Kind::Hello });
    m.set_http(l, HttpOptions::default()).unwrap();
    let (url, ca) = (
        format!("https://{addr}/secure"),
        dir.path().join("ca.pem").display().to_string(),
    );
    let (ok, body, err) = serve(&mut m, 1, move || curl(&["--cacert", &ca, &url]));
    assert!(ok, "{err}");
    assert_eq!(body, "hello /secure\n");
    // curl over TLS closes as soon as it has the whole response; when that
    // beats our close_notify and FIN (microseconds after the response), its
    // kernel answers them with a reset and the FIN fails (ENOTCONN): the
    // lifecycle's rule says Lost, though the response was received. An open
    // point of HTTP mode over TLS (the close_notify should go in the
    // response's own write).
    let done = &closes(m.shared())[0];
    let reset_after = done.reason == Reason::Lost && matches!(done.os_error, Some(107 | 104 | 32));
    assert!(done.reason == Reason::Normal || reset_after, "{done:?}");

    // Local: a unix: path.
    let (_dir, path) = common::unix_path();
    let mut m = mux();
    let l = m.listen_on(
        &format!("unix:{}", path.display()),
        App { kind: Kind::Hello },
    );
    m.set_http(l, HttpOptions::default()).unwrap();
    let sock = path.display().to_string();
    let (ok, body, err) = serve(&mut m, 1, move || {
        curl(&["--unix-socket", &sock, "http://local/there"])
    });
    assert!(ok, "{err}");
    assert_eq!(body, "hello /there\n");
    assert_eq!(closes(m.shared())[0].reason, Reason::Normal);
}

/// A plain listener whose connections switch to HTTP mode on their first
/// line: "HTTP\n" (the programmatic switch), and refuse a recv once in it.
struct Switcher;

impl SocketUser<Log> for Switcher {
    fn on_incoming(&mut self, _: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        Admission::Accept(Box::new(Switcher))
    }
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        cx.recv(s, 5, tether::RecvMode::Exact).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        assert_eq!(data, b"HTTP\n");
        cx.set_http(s, HttpOptions::default()).unwrap();
        assert!(matches!(
            cx.recv(s, 10, tether::RecvMode::Partial),
            Err(ApiError::Http(_))
        ));
        assert!(matches!(cx.discard(s), Err(ApiError::Http(_))));
        assert!(matches!(cx.shutdown(s), Err(ApiError::Http(_))));
    }
    fn on_request(&mut self, cx: &mut Cx<Log>, s: SocketId, r: &Request) {
        cx.respond(s, Response::new(200).body(r.target.clone()))
            .unwrap();
        // One request's answer at a time.
        assert!(matches!(
            cx.respond(s, Response::new(200)),
            Err(ApiError::Http(_))
        ));
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut()
            .events
            .push((s, common::Ev::Closed(Done::from(closed))));
    }
}

#[test]
fn a_listener_put_in_http_mode_before_listen_serves_http() {
    // Before bind, and between bind and listen: `listen` takes the options.
    for bind_first in [false, true] {
        let mut m = mux();
        let l = m.stream(App { kind: Kind::Hello });
        if bind_first {
            m.bind(l, "127.0.0.1:0").unwrap();
        }
        m.set_http(l, HttpOptions::default()).unwrap();
        if !bind_first {
            m.bind(l, "127.0.0.1:0").unwrap();
        }
        m.listen(l).unwrap();
        let addr = inet(&m, l);
        let got = serve(&mut m, 1, move || {
            raw(addr, b"GET /early HTTP/1.1\r\nHost: x\r\n\r\n")
        });
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nhello /early\n"), "{got}");
        assert_eq!(closes(m.shared())[0].reason, Reason::Normal);
    }
    // A socket that is neither a listener to be nor open is refused, with
    // a reason that says what HTTP mode is for.
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", App { kind: Kind::Hello });
    let addr = inet(&m, l);
    let c = m.stream(App { kind: Kind::Hello });
    m.connect(c, &addr.to_string()).unwrap();
    m.close(c).unwrap();
    let refused = m.set_http(c, HttpOptions::default());
    assert!(matches!(refused, Err(ApiError::Http(_))), "{refused:?}");
}

#[test]
fn an_accepted_connection_switches_to_http_mode() {
    let mut m = mux();
    let l = m.listen_on("127.0.0.1:0", Switcher);
    let addr = inet(&m, l);
    let got = serve(&mut m, 1, move || {
        raw(addr, b"HTTP\nGET /switched HTTP/1.1\r\n\r\n")
    });
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\n/switched"), "{got}");
    assert_eq!(closes(m.shared())[0].reason, Reason::Normal);
}

#[test]
fn an_idle_kept_open_connection_ends_by_the_idle_timeout() {
    use std::sync::mpsc;
    let clock = tether::TestClock::new();
    let (mut m, addr) = clocked(
        &clock,
        HttpOptions::default().keep_open(true),
        Some(Duration::from_secs(60)),
    );
    let (tx, rx) = mpsc::channel();
    common::run_script(&mut m, &clock, move |sc| {
        let mut c = answered_once(addr);
        let mut first = [0u8; 512];
        // Past the head timeout but within the idle one: still open.
        sc.advance(Duration::from_secs(30));
        c.write_all(b"GET /b HTTP/1.1\r\n\r\n").unwrap();
        let n = c.read(&mut first).unwrap();
        assert!(
            first[..n].ends_with(b"hello /b\n"),
            "kept open between requests"
        );
        sc.advance(Duration::from_secs(60));
        let mut rest = Vec::new();
        let end = c.read_to_end(&mut rest);
        tx.send(end.is_err() || rest.is_empty()).unwrap();
    });
    assert!(rx.recv().unwrap(), "the connection ended");
    let done = &closes(m.shared())[0];
    assert_eq!(done.reason, Reason::IdleTimeout);
}

#[test]
fn curl_uploading_a_big_file_to_a_handler_that_ignores_it_gets_the_response() {
    let (mut m, _, addr) = server(Kind::Length, HttpOptions::default().buffer(4096));
    let url = format!("http://{addr}/ignored");
    let (ok, body, err) = serve(&mut m, 1, move || {
        let big = std::env::temp_dir().join(format!("tether-http-big-{}", std::process::id()));
        std::fs::write(&big, vec![9u8; 10 * 1024 * 1024]).unwrap();
        let r = curl(&["-i", "--data-binary", &format!("@{}", big.display()), &url]);
        let _ = std::fs::remove_file(big);
        r
    });
    assert!(ok, "curl: {err}");
    assert!(body.contains("HTTP/1.1 200 OK\r\n"), "{body}");
    // curl over TLS closes as soon as it has the whole response; when that
    // beats our close_notify and FIN (microseconds after the response), its
    // kernel answers them with a reset and the FIN fails (ENOTCONN): the
    // lifecycle's rule says Lost, though the response was received. An open
    // point of HTTP mode over TLS (the close_notify should go in the
    // response's own write).
    let done = &closes(m.shared())[0];
    let reset_after = done.reason == Reason::Lost && matches!(done.os_error, Some(107 | 104 | 32));
    assert!(done.reason == Reason::Normal || reset_after, "{done:?}");
}

/// Asks for one part of a body, then no more (until told by the test).
struct OnePart;

impl SocketUser<Log> for OnePart {
    fn on_incoming(&mut self, _: &mut Cx<Log>, _: SocketId, _: &PeerInfo) -> Admission<Log> {
        Admission::Accept(Box::new(OnePart))
    }
    fn on_request(&mut self, cx: &mut Cx<Log>, s: SocketId, r: &Request) {
        assert!(!r.body_complete);
        cx.recv_body(s).unwrap();
    }
    fn on_request_body(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8], _: bool) {
        cx.shared_mut()
            .events
            .push((s, common::Ev::Received(data.to_vec())));
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        cx.shared_mut()
            .events
            .push((s, common::Ev::Closed(Done::from(closed))));
    }
}

#[test]
fn a_body_not_asked_for_is_not_read_the_client_is_held_back() {
    let clock = tether::TestClock::new();
    let mut m = common::mux_on(&clock);
    let l = m.listen_on("127.0.0.1:0", OnePart);
    m.set_http(l, HttpOptions::default().buffer(1024)).unwrap();
    let addr = inet(&m, l);
    common::run_script(&mut m, &clock, move |sc| {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"POST /up HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n")
            .unwrap();
        c.set_nonblocking(true).unwrap();
        let chunk = vec![5u8; 64 * 1024];
        // Write until the kernel's buffers are full: the server reads no more.
        let mut blocked_rounds = 0;
        let mut written = 0usize;
        while blocked_rounds < 20 {
            match c.write(&chunk) {
                Ok(n) => {
                    written += n;
                    blocked_rounds = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Let the loop take a turn: were it reading, room would free.
                    sc.settle();
                    blocked_rounds += 1;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(
                written < 200 << 20,
                "the server kept reading: {written} bytes taken"
            );
        }
        // One part was delivered, as asked; the rest waits in the kernel.
        let parts = sc.look(|cx| {
            cx.shared()
                .events
                .iter()
                .filter(|(_, e)| matches!(e, common::Ev::Received(_)))
                .count()
        });
        assert_eq!(parts, 1, "one part per recv_body");
    });
}

/// A kept-open connection that has had the response to its `GET /a`.
fn answered_once(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /a HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].ends_with(b"hello /a\n"));
    c
}

/// In one turn of the loop: `first`, then `end_keep_alive` on the connection
/// that had a request. Which connection that was.
fn end_keep_alive_in_a_turn(
    sc: &common::Script,
    first: impl FnOnce() + Send + 'static,
) -> SocketId {
    sc.look(move |cx| {
        let s = cx.shared().events.iter().find_map(|(s, e)| match e {
            common::Ev::Received(_) => Some(*s),
            _ => None,
        });
        let s = s.expect("the request's connection");
        first();
        cx.end_keep_alive(s).unwrap();
        s
    })
}

/// Once the loop has seen `s` closed (the client must have gone too).
fn until_closed(sc: &common::Script, s: SocketId) -> SocketId {
    while !sc.look(move |cx| cx.shared().is_closed(s)) {
        std::thread::yield_now();
    }
    s
}

#[test]
fn end_keep_alive_closes_an_idle_kept_open_connection_gracefully() {
    let clock = tether::TestClock::new();
    let (mut m, addr) = clocked(&clock, HttpOptions::default().keep_open(true), None);
    let served = common::run_script(&mut m, &clock, move |sc| {
        let mut c = answered_once(addr);
        // Between requests: the server shutting down ends it now.
        let served = end_keep_alive_in_a_turn(sc, || {});
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "ended at once, nothing more sent");
        drop(c);
        until_closed(sc, served)
    });
    assert_eq!(m.shared().closed(served).reason, Reason::Normal);
}

/// A request whose first bytes have arrived is under way even if the loop has
/// not read them yet: `end_keep_alive` lets it be answered.
#[test]
fn end_keep_alive_answers_a_request_that_has_arrived_unread() {
    let clock = tether::TestClock::new();
    let (mut m, addr) = clocked(&clock, HttpOptions::default().keep_open(true), None);
    let served = common::run_script(&mut m, &clock, move |sc| {
        let mut c = answered_once(addr);
        // The next request's first line is written from inside the loop's
        // turn, so the loop cannot have read it when the shutdown comes.
        let mut w = c.try_clone().unwrap();
        let served = end_keep_alive_in_a_turn(sc, move || {
            w.write_all(b"GET /b HTTP/1.1\r\n").unwrap();
        });
        c.write_all(b"Host: x\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        let rest = String::from_utf8(rest).unwrap();
        assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
        assert!(rest.contains("\r\nConnection: close\r\n"), "{rest}");
        assert!(rest.ends_with("hello /b\n"), "{rest}");
        drop(c);
        until_closed(sc, served)
    });
    assert_eq!(m.shared().closed(served).reason, Reason::Normal);
}
