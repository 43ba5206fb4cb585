//! HTTP/1.1 load: a fixed `GET /` and its response, found by its head's
//! `Content-Length`. Keep-alive (each connection sends its next request when
//! the response is in) or one request per connection (connect, GET, read to
//! the server's end, again).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{poll_events, Clock, Measured, Window};

/// The request, the same for both modes and both servers.
pub(crate) const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// The length of the first whole response in `buf`, if it is all there: a
/// head ending in an empty line, then `Content-Length` bytes. Panics on a
/// response that is not a 200 with a Content-Length (the load would be
/// meaningless).
pub(crate) fn response_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).expect("response head is ASCII");
    assert!(
        head.starts_with("HTTP/1.1 200 "),
        "unexpected response: {head:?}"
    );
    let length = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().expect("Content-Length"))
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    (buf.len() >= end + length).then_some(end + length)
}

fn connect(poll: &Poll, addr: SocketAddr, i: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    poll.registry()
        .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    s
}

/// Keep-alive: `conns` connections, one request in flight on each.
/// Counts responses.
pub(crate) fn keep_alive(addr: SocketAddr, conns: usize, w: Window) -> Measured {
    struct C {
        sock: TcpStream,
        connected: bool,
        buf: Vec<u8>,
    }
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut cs: Vec<C> = (0..conns)
        .map(|i| C {
            sock: connect(&poll, addr, i),
            connected: false,
            buf: Vec::with_capacity(4096),
        })
        .collect();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut clock = Clock::new(w);
    let (mut up, mut done) = (0usize, 0u64);
    loop {
        poll_events(&mut poll, &mut events);
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if !c.connected {
                match c.sock.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                    Err(e) => panic!("connect failed: {e}"),
                }
                c.connected = true;
                up += 1;
                // A small request always fits an empty socket buffer.
                c.sock.write_all(REQUEST).expect("write request");
            }
            loop {
                match c.sock.read(&mut scratch) {
                    Ok(0) => panic!("the server closed a keep-alive connection"),
                    Ok(n) => {
                        c.buf.extend_from_slice(&scratch[..n]);
                        while let Some(len) = response_len(&c.buf) {
                            c.buf.drain(..len);
                            done += 1;
                            c.sock.write_all(REQUEST).expect("write request");
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        let now = Instant::now();
        if up == conns {
            clock.start(now);
        }
        if clock.tick(now, done) {
            return clock.end.take().expect("measured");
        }
    }
}

/// A fixed amount of keep-alive work, untimed (for callgrind): `conns`
/// connections each make exactly `requests` requests, then all are closed.
/// Returns the responses read.
pub(crate) fn keep_alive_requests(addr: SocketAddr, conns: usize, requests: u64) -> u64 {
    struct C {
        sock: TcpStream,
        connected: bool,
        buf: Vec<u8>,
        done: u64,
    }
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut cs: Vec<C> = (0..conns)
        .map(|i| C {
            sock: connect(&poll, addr, i),
            connected: false,
            buf: Vec::with_capacity(4096),
            done: 0,
        })
        .collect();
    let mut scratch = vec![0u8; 64 * 1024];
    let (mut finished, mut total) = (0usize, 0u64);
    while finished < conns {
        poll_events(&mut poll, &mut events);
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if !c.connected {
                match c.sock.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => continue,
                    Err(e) => panic!("connect failed: {e}"),
                }
                c.connected = true;
                c.sock.write_all(REQUEST).expect("write request");
            }
            loop {
                match c.sock.read(&mut scratch) {
                    Ok(0) => panic!("the server closed a keep-alive connection"),
                    Ok(n) => {
                        c.buf.extend_from_slice(&scratch[..n]);
                        while let Some(len) = response_len(&c.buf) {
                            c.buf.drain(..len);
                            c.done += 1;
                            total += 1;
                            if c.done == requests {
                                finished += 1;
                            } else {
                                c.sock.write_all(REQUEST).expect("write request");
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
    }
    total
}

/// One request per connection, `parallel` at a time: connect, GET, read to
/// the server's end, close, again. Counts complete responses; a connection
/// that ends without one is an error.
pub(crate) fn per_connection(addr: SocketAddr, parallel: usize, w: Window) -> Measured {
    struct C {
        sock: TcpStream,
        sent: bool,
        buf: Vec<u8>,
    }
    let fresh = |poll: &Poll, i| C {
        sock: connect(poll, addr, i),
        sent: false,
        buf: Vec::with_capacity(4096),
    };
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut cs: Vec<C> = (0..parallel).map(|i| fresh(&poll, i)).collect();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut clock = Clock::new(w);
    clock.start(Instant::now());
    let (mut done, mut errors) = (0u64, 0u64);
    loop {
        poll_events(&mut poll, &mut events);
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut cs[i];
            let result = (|| -> std::io::Result<bool> {
                if !c.sent {
                    match c.sock.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(false),
                        Err(e) => return Err(e),
                    }
                    c.sock.write_all(REQUEST)?;
                    c.sent = true;
                }
                loop {
                    match c.sock.read(&mut scratch) {
                        Ok(0) => {
                            return match response_len(&c.buf) {
                                Some(n) if n == c.buf.len() => Ok(true),
                                _ => Err(ErrorKind::UnexpectedEof.into()),
                            }
                        }
                        Ok(n) => c.buf.extend_from_slice(&scratch[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            })();
            match result {
                Ok(false) => continue,
                Ok(true) => done += 1,
                Err(_) => errors += 1,
            }
            let _ = poll.registry().deregister(&mut cs[i].sock);
            cs[i] = fresh(&poll, i);
        }
        if clock.tick(Instant::now(), done) {
            let mut m = clock.end.take().expect("measured");
            m.errors = errors;
            return m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::response_len;

    #[test]
    fn finds_the_end_of_a_response() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello worldHTTP/1.1";
        assert_eq!(response_len(r), Some(r.len() - 8));
        assert_eq!(response_len(&r[..40]), None);
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
