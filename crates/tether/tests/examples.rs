//! The examples run: `examples/client.rs` against a std echo server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use tether::Reason;

#[path = "../examples/client.rs"]
#[allow(dead_code)]
mod client;

/// The client sends, half-closes, and gets the whole reply; it ended first, so
/// the end is `Normal`.
#[test]
fn the_client_example_half_closes_and_reads_the_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        c.read_to_end(&mut request).unwrap(); // up to the client's FIN
        c.write_all(b"you said: ").unwrap();
        c.write_all(&request).unwrap();
        request
    });
    let outcome = client::exchange(&addr.to_string(), b"hello, echo").unwrap();
    assert_eq!(server.join().unwrap(), b"hello, echo");
    assert_eq!(outcome.reply, b"you said: hello, echo");
    assert_eq!(outcome.end, Some((Reason::Normal, None)));
}

/// Nothing listening: the client says so, with the reason and the OS error.
#[test]
fn the_client_example_reports_a_refused_connect() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let outcome = client::exchange(&addr.to_string(), b"anyone?").unwrap();
    let (reason, error) = outcome.end.expect("closed");
    assert_eq!(reason, Reason::ConnectRejected);
    assert!(error.is_some());
    assert!(outcome.reply.is_empty());
}
