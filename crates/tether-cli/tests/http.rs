//! `tether listen --http DIR` against real clients: curl (GET, HEAD, errors,
//! keep-alive, TLS, a unix: socket), Python's http.client (a 5 MB file), and
//! two std::net clients at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const PAGE: &str = "<!doctype html>\n<title>tether</title>\n<p>served by tether</p>\n";

/// DIR with `page.html`, `sub/index.html`, `empty/`, a secret outside it and
/// a symlink inside pointing at the secret. Returns (tempdir, DIR).
fn site() -> (tempfile::TempDir, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("site");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("page.html"), PAGE).unwrap();
    std::fs::write(root.join("sub/index.html"), "index\n").unwrap();
    std::fs::write(top.path().join("secret"), "secret\n").unwrap();
    std::os::unix::fs::symlink(top.path().join("secret"), root.join("link")).unwrap();
    (top, root)
}

/// `tether listen --events --http DIR [extra] ADDR`, once bound: it and its
/// address.
fn start(dir: &Path, extra: &[&str], addr: &str) -> (Proc, String) {
    let dir = dir.display().to_string();
    let mut args = vec!["listen", "--events", "--http", &dir];
    args.extend_from_slice(extra);
    args.push(addr);
    let mut p = Proc::spawn(&mut tether(&args));
    let bound = p.bound();
    (p, bound)
}

/// curl, bounded in time, HTTP/1.1.
fn curl(args: &[&str]) -> Output {
    let out = Command::new(tool("curl", "--version"))
        .args(["--silent", "--show-error", "--http1.1", "--max-time", "15"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The status curl got.
fn status(args: &[&str]) -> String {
    let mut all = vec!["--output", "/dev/null", "--write-out", "%{http_code}"];
    all.extend_from_slice(args);
    String::from_utf8(curl(&all).stdout).unwrap()
}

/// The value of a header in a response head (names in any case).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The connection of the last request has closed: its `closed` event.
fn served(server: &mut Proc) -> Event {
    server.wait_event("closed")
}

#[test]
fn curl_gets_a_file_with_its_type_and_length_and_events() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &[], "127.0.0.1:0");
    let out = curl(&["--dump-header", "-", &format!("http://{addr}/page.html")]);
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(head, "Content-Type"), Some("text/html"), "{head}");
    let len = PAGE.len().to_string();
    assert_eq!(header(head, "Content-Length"), Some(len.as_str()), "{head}");
    assert_eq!(body, PAGE);
    let closed = served(&mut server);
    assert_eq!(closed.str("reason"), "normal", "{closed:?}");

    let ev = events(&server.stderr_so_far());
    let request = one(&ev, "request");
    assert_eq!(request.str("method"), "GET");
    assert_eq!(request.str("target"), "/page.html");
    assert_eq!(request.num("status"), 200);
    assert_eq!(request.num("bytes"), PAGE.len() as u64);
    assert_eq!(request.socket(), closed.socket());
    assert_eq!(one(&ev, "accepted").socket(), closed.socket());
    // The connection closed itself, gracefully; the listener runs on.
    assert!(!server.exited());
}

#[test]
fn head_missing_escapes_and_other_methods() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &[], "127.0.0.1:0");
    let url = |path: &str| format!("http://{addr}{path}");

    let head = curl(&["--head", &url("/page.html")]);
    let head = String::from_utf8(head.stdout).unwrap();
    let len = PAGE.len().to_string();
    assert_eq!(
        header(&head, "Content-Length"),
        Some(len.as_str()),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "headers only: {head:?}");
    served(&mut server);

    let cases: [(&[&str], &str, &str); 8] = [
        (&[], "/missing.html", "404"),
        (&[], "/sub/", "200"),
        (&[], "/empty/", "404"),
        (&["--path-as-is"], "/../etc/passwd", "403"),
        (&["--path-as-is"], "/%2e%2e/secret", "403"),
        (&["--path-as-is"], "/sub/%2E%2E/%2e%2e/secret", "403"),
        (&[], "/link", "403"),
        (&["--request", "POST", "--data", "x"], "/page.html", "405"),
    ];
    for (flags, path, want) in cases {
        let mut args = flags.to_vec();
        let u = url(path);
        args.push(&u);
        assert_eq!(status(&args), want, "{flags:?} {path}");
        served(&mut server);
    }
    let post = curl(&["--dump-header", "-", "--data", "x", &url("/")]);
    let post = String::from_utf8(post.stdout).unwrap();
    assert_eq!(header(&post, "Allow"), Some("GET, HEAD"), "{post}");
    served(&mut server);

    let ev = events(&server.stderr_so_far());
    let requests = named(&ev, "request");
    let seen: Vec<(&str, &str, u64)> = requests
        .iter()
        .map(|r| (r.str("method"), r.str("target"), r.num("status")))
        .collect();
    assert_eq!(seen[0], ("HEAD", "/page.html", 200));
    assert_eq!(requests[0].num("bytes"), 0, "HEAD sends no body");
    assert_eq!(seen[4], ("GET", "/../etc/passwd", 403));
    assert_eq!(seen[5], ("GET", "/%2e%2e/secret", 403));
    assert_eq!(seen[8], ("POST", "/page.html", 405));
    assert_eq!(seen.len(), 10, "{seen:?}");
    for c in named(&ev, "closed") {
        assert_eq!(c.str("reason"), "normal", "{c:?}");
    }
}

#[test]
fn keep_open_serves_two_requests_on_one_connection() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &["--http-keep-open"], "127.0.0.1:0");
    let out = curl(&[
        "--verbose",
        &format!("http://{addr}/page.html"),
        &format!("http://{addr}/sub/"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{PAGE}index\n")
    );
    // curl's end ends the connection.
    let closed = served(&mut server);
    assert!(
        matches!(closed.str("reason"), "normal" | "by_peer"),
        "{closed:?}"
    );
    let out = server.kill();
    let ev = out.events();
    assert_eq!(named(&ev, "accepted").len(), 1);
    assert_eq!(named(&ev, "request").len(), 2);
    assert_eq!(named(&ev, "closed").len(), 1, "one connection, one end");
}

#[test]
fn python_gets_a_5_mb_file_whole() {
    let (_top, root) = site();
    // Not a repeating pattern: a part sent twice or out of order shows.
    let mut big = Vec::with_capacity(5_000_000);
    let mut x: u32 = 12345;
    while big.len() < 5_000_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        big.push((x >> 16) as u8);
    }
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let (mut server, addr) = start(&root, &[], "127.0.0.1:0");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "import hashlib, http.client\n\
         c = http.client.HTTPConnection('{host}', {port}, timeout=15)\n\
         c.request('GET', '/big.bin')\n\
         r = c.getresponse()\n\
         data = r.read()\n\
         want = open('{}', 'rb').read()\n\
         print(r.status, r.getheader('Content-Type'), len(data), \
               hashlib.sha256(data).hexdigest() == hashlib.sha256(want).hexdigest())\n",
        root.join("big.bin").display()
    );
    let out = Command::new(tool("python3", "--version"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "200 application/octet-stream 5000000 True\n"
    );
    let closed = served(&mut server);
    assert_eq!(closed.str("reason"), "normal");
    // HEAD of a file big enough to be streamed: the head alone.
    let head = curl(&["--head", &format!("http://{addr}/big.bin")]);
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(header(&head, "Content-Length"), Some("5000000"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "headers only: {head:?}");
    served(&mut server);
    let ev = events(&server.stderr_so_far());
    let requests = named(&ev, "request");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].num("bytes"), 5_000_000);
    assert_eq!(requests[1].str("method"), "HEAD");
    assert_eq!(requests[1].num("bytes"), 0);
}

#[test]
fn over_tls_with_alpn_and_on_a_unix_socket() {
    let (_top, root) = site();
    let pki = Pki::new();
    let (cert, key) = (pki.file("server.pem"), pki.file("server.key"));
    let tls = [
        "--tls", "--cert", &cert, "--key", &key, "--alpn", "http/1.1",
    ];
    let (mut server, addr) = start(&root, &tls, "127.0.0.1:0");
    let port = addr.rsplit_once(':').unwrap().1;
    let out = curl(&[
        "--cacert",
        &pki.file("ca.pem"),
        "--resolve",
        &format!("localhost:{port}:127.0.0.1"),
        &format!("https://localhost:{port}/page.html"),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), PAGE);
    // The connection ends as the layer ends it, unless curl is quicker: it
    // closes its socket once the body is in, and TLS records it has not read
    // (our close_notify, a session ticket) make its kernel answer with a
    // reset, which ends ours as `lost` (ENOTCONN) — the response was out.
    let closed = served(&mut server);
    assert!(
        matches!(closed.str("reason"), "normal" | "lost" | "reset"),
        "{}",
        server.stderr_so_far()
    );
    let ev = events(&server.stderr_so_far());
    assert_eq!(one(&ev, "tls").opt("alpn"), Some("http/1.1"));
    assert_eq!(one(&ev, "request").num("status"), 200);
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let unix = unix_addr(dir.path(), "site.sock");
    let (mut server, bound) = start(&root, &[], &unix);
    assert_eq!(bound, unix);
    let path = unix.strip_prefix("unix:").unwrap();
    let out = curl(&["--unix-socket", path, "http://localhost/sub/index.html"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "index\n");
    assert_eq!(served(&mut server).str("reason"), "normal");
}

#[test]
fn two_clients_at_once_are_both_served() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &[], "127.0.0.1:0");
    let read_all = |c: &mut TcpStream| {
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    };
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(LIMIT)).unwrap();
    // A's request is not complete yet...
    a.write_all(b"GET /page.html HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    server.wait_event("accepted");
    // ...while B is served whole,
    let mut b = TcpStream::connect(&addr).unwrap();
    b.set_read_timeout(Some(LIMIT)).unwrap();
    b.write_all(b"GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let rb = read_all(&mut b);
    assert!(rb.starts_with("HTTP/1.1 200"), "{rb}");
    assert!(rb.ends_with("\r\n\r\nindex\n"), "{rb}");
    // ...then A.
    a.write_all(b"\r\n").unwrap();
    let ra = read_all(&mut a);
    assert!(ra.starts_with("HTTP/1.1 200"), "{ra}");
    assert!(ra.ends_with(PAGE), "{ra}");
    // The server's lingering close waits for each client's end.
    drop((a, b));
    served(&mut server);
    served(&mut server);
    let ev = events(&server.stderr_so_far());
    assert_eq!(named(&ev, "request").len(), 2);
}

#[test]
fn usage_errors() {
    let (_top, root) = site();
    let dir = root.display().to_string();
    let missing = root.join("nope").display().to_string();
    let file = root.join("page.html").display().to_string();
    for args in [
        vec!["listen", "--http-keep-open", "127.0.0.1:0"],
        vec!["listen", "--http", &dir, "--echo", "127.0.0.1:0"],
        vec!["listen", "--http", &dir, "--udp", "127.0.0.1:0"],
        vec!["listen", "--http", &dir, "--dtls", "127.0.0.1:0"],
        vec!["listen", "--http", &dir, "--framed", "127.0.0.1:0"],
        vec!["listen", "--http", &missing, "127.0.0.1:0"],
        vec!["listen", "--http", &file, "127.0.0.1:0"],
    ] {
        let out = run(&args, b"");
        assert_eq!(out.code(), Some(2), "{args:?}: {out:#?}");
        assert!(out.stderr.starts_with("tether: ") || out.stderr.starts_with("error: "));
    }
}

/// SIGINT stops listening; a request under way is still answered, and the
/// command exits 0 once its connection has ended.
#[test]
fn sigint_stops_listening_and_lets_a_request_finish() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &["--http-keep-open"], "127.0.0.1:0");
    let listener = one(&events(&server.stderr_so_far()), "bound").socket();
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(LIMIT)).unwrap();
    a.write_all(b"GET /page.html HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    server.wait_event("accepted");
    let status = Command::new("kill")
        .args(["-INT", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let closed = served(&mut server);
    assert_eq!(closed.socket(), listener, "the listener closes first");
    a.write_all(b"Connection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    a.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(PAGE), "{text}");
    drop(a);
    let out = server.wait(LIMIT);
    assert!(!out.killed, "{}", out.stderr);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let ev = out.events();
    assert_eq!(one(&ev, "request").num("status"), 200);
    assert_eq!(named(&ev, "closed").len(), 2);
}

#[test]
fn sigint_ends_an_idle_kept_open_connection_at_once() {
    let (_top, root) = site();
    let (mut server, addr) = start(&root, &["--http-keep-open"], "127.0.0.1:0");
    let mut a = TcpStream::connect(&addr).unwrap();
    a.set_read_timeout(Some(LIMIT)).unwrap();
    a.write_all(b"GET /page.html HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    server.wait_event("request");
    let status = Command::new("kill")
        .args(["-INT", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The response, then the server's end (no second request was sent).
    let mut text = String::new();
    a.read_to_string(&mut text).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with(PAGE),
        "{text}"
    );
    drop(a);
    let out = server.wait(LIMIT);
    assert!(!out.killed, "{}", out.stderr);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let ev = out.events();
    let closed = named(&ev, "closed");
    assert_eq!(closed.len(), 2, "the listener and the connection");
    assert!(
        closed.iter().all(|c| c.str("reason") == "normal"),
        "{}",
        out.stderr
    );
}
