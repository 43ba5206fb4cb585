//! `tether` in pipelines: stdout ends when the peer's sending side does (so
//! two tethers can relay through a fifo), a reader that goes away ends the
//! connection quietly, and `listen --keep-open` serves one client after
//! another.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::*;

/// Wait for a child with a deadline (killed past it): its exit code.
fn wait_child(child: &mut Child, deadline: Instant) -> Option<i32> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `tether listen A < fifo | tether connect B > fifo`: an HTTP/1.0 request
/// to A reaches the server at B, and its answer comes back whole. The
/// server's end closes connect's stdout, so listen's stdin ends and it
/// half-closes to the client; the client's end closes listen's stdout, so
/// connect's stdin ends. Both exit 0.
#[test]
fn two_tethers_relay_an_http_request_through_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());

    let body = "x".repeat(100_000);
    let answer = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (server, backend) = tcp_listener();
    let sent = answer.clone();
    let peer = Peer::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut request = Vec::new();
        let mut buf = [0; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        c.write_all(sent.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });

    let front = dead_tcp_addr();
    // Opening a fifo waits for the other end: open both at once.
    let (tx, rx) = channel();
    let reading = fifo.clone();
    std::thread::spawn(move || tx.send(std::fs::File::open(reading).unwrap()));
    let write_end = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let read_end = rx.recv_timeout(LIMIT).unwrap();

    let mut listen = tether(&["listen", &front])
        .stdin(read_end)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pipe = listen.stdout.take().unwrap();
    let mut connect = tether(&["connect", &backend])
        .stdin(pipe)
        .stdout(write_end)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Only the two children hold the fifo and the pipe now.

    let deadline = Instant::now() + LIMIT;
    let mut client = loop {
        match TcpStream::connect(&front) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot connect to listen: {e}"),
        }
    };
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    drop(client);

    assert_eq!(String::from_utf8_lossy(&got), answer);
    assert!(peer.join().starts_with("GET / HTTP/1.0\r\n"));
    assert_eq!(wait_child(&mut listen, deadline), Some(0), "listen");
    assert_eq!(wait_child(&mut connect, deadline), Some(0), "connect");
}

/// The peer's FIN closes stdout at once: the reader sees its end while the
/// connection is still open.
#[test]
fn stdout_ends_at_the_peers_fin() {
    let (l, addr) = tcp_listener();
    let (go_tx, go_rx) = channel::<()>();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.write_all(b"last words\n").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // Open until the test has seen stdout's end.
        go_rx.recv_timeout(LIMIT).unwrap();
    });
    let mut child = tether(&["connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = tx.send(out.read_to_end(&mut got).map(|_| got));
    });
    let got = rx
        .recv_timeout(LIMIT)
        .expect("stdout did not end at the peer's FIN")
        .unwrap();
    assert_eq!(got, b"last words\n");
    // The connection is still open: stdin still open, tether still running.
    assert!(child.try_wait().unwrap().is_none());
    go_tx.send(()).unwrap();
    drop(child.stdin.take());
    peer.join();
    let code = wait_child(&mut child, Instant::now() + LIMIT);
    assert_eq!(code, Some(0));
}

/// `tether connect ... | head -c 10`: the reader going away ends the
/// connection as --on-eof says (half-close: our FIN; what the peer still
/// sends is read and dropped), with no error line and, the peer ending
/// gracefully, exit status 0.
#[test]
fn a_reader_that_goes_away_ends_the_connection_quietly() {
    let (l, addr) = tcp_listener();
    let peer = Peer::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        c.write_all(&vec![b'a'; 1 << 20]).unwrap();
        // Our FIN came: the peer sees the end, then ends too.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        rest.len()
    });
    let mut child = tether(&["connect", "--events", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stdin stays open: the reader's end alone ends the connection.
    let stdin = child.stdin.take();
    let mut out = child.stdout.take().unwrap();
    let mut ten = [0; 10];
    out.read_exact(&mut ten).unwrap();
    assert_eq!(&ten, b"aaaaaaaaaa");
    drop(out);
    assert_eq!(peer.join(), 0);
    let code = wait_child(&mut child, Instant::now() + LIMIT);
    drop(stdin);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("Broken pipe"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let closed = events(&err)
        .into_iter()
        .find(|e| e.name() == "closed")
        .expect("a closed event");
    // We shut down first: a graceful end of ours.
    assert_eq!(closed.str("reason"), "normal", "{err}");
    assert_eq!(code, Some(0), "{err}");
}

/// `listen --keep-open`: one client after another, each line on stdout in
/// turn; stdin went to the first, and after its end the second is
/// half-closed at once. It runs on until killed.
#[test]
fn keep_open_serves_one_client_after_another() {
    let mut p = Proc::spawn(&mut tether(&[
        "listen",
        "--keep-open",
        "--events",
        "127.0.0.1:0",
    ]));
    let addr = p.bound();
    p.write(b"hello first\n");
    p.close_stdin();
    // The third client is served after the second ended: it keeps listening.
    for (n, line) in ["one\n", "two\n", "three\n"].iter().enumerate() {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(LIMIT)).unwrap();
        c.write_all(line.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        let expected: &[u8] = if n == 0 { b"hello first\n" } else { b"" };
        assert_eq!(got, expected);
        p.wait_stdout(|out| out.contains(line.trim_end()));
    }
    // Each connection's end is printed once it is over on tether's side.
    for _ in 0..3 {
        p.wait_event("closed");
    }
    assert!(!p.exited(), "--keep-open ended by itself");
    let out = p.kill();
    assert_eq!(out.stdout, "one\ntwo\nthree\n");
    assert_eq!(
        out.events().iter().filter(|e| e.name() == "closed").count(),
        3,
        "{}",
        out.stderr
    );
}
