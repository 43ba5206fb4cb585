//! The attackers: plain std sockets doing what hostile peers do. Each
//! returns what it saw from its side: whether the connection was made, when
//! and how the server ended it, and what the server answered.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::prng::Prng;

/// What one attacking connection saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// The connection was made.
    pub(crate) connected: bool,
    /// The server ended it (EOF or reset) after this long; `None`: it was
    /// still open when the attacker gave up.
    pub(crate) ended_after: Option<Duration>,
    /// What the server sent (the start of it).
    pub(crate) answer: Vec<u8>,
}

/// The first bytes of a TLS handshake record announcing 16 KiB that never
/// come whole.
pub(crate) const TLS_HEAD: &[u8] = &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01];
/// A framed HELLO header announcing 200 bytes of connect data.
pub(crate) const HELLO_HEAD: &[u8] = &[0, 0, 0, 201, 1];
/// An HTTP head that never ends.
pub(crate) const HTTP_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: torture\r\nX-Slow: ";

fn connect(addr: &str) -> Option<TcpStream> {
    connect_within(addr, Duration::from_millis(500))
}

fn connect_within(addr: &str, limit: Duration) -> Option<TcpStream> {
    let a = addr.parse().ok()?;
    TcpStream::connect_timeout(&a, limit).ok()
}

/// Read what comes within `wait`: `Ok(true)` the server ended the
/// connection, `Ok(false)` it is still open.
fn poll_end(s: &mut TcpStream, wait: Duration, answer: &mut Vec<u8>) -> bool {
    let _ = s.set_read_timeout(Some(wait));
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            if answer.len() < 256 {
                answer.extend_from_slice(&buf[..n.min(256)]);
            }
            false
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

/// Slow-loris: `head`, then one more byte every `drip`, until the server
/// ends the connection or `give_up` passed.
pub(crate) fn dribble(
    addr: &str,
    head: &[u8],
    filler: u8,
    drip: Duration,
    give_up: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let Some(mut s) = connect(addr) else {
        return seen;
    };
    seen.connected = true;
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < give_up {
        let byte = head.get(i).copied().unwrap_or(filler);
        i += 1;
        if s.write_all(&[byte]).is_err() || poll_end(&mut s, drip, &mut seen.answer) {
            seen.ended_after = Some(start.elapsed());
            return seen;
        }
    }
    seen
}

/// Send `bytes` at once, then wait for the server's end.
pub(crate) fn blurt(addr: &str, bytes: &[u8], give_up: Duration) -> Seen {
    let mut seen = Seen::default();
    let Some(mut s) = connect(addr) else {
        return seen;
    };
    seen.connected = true;
    let start = Instant::now();
    // A reset may come while we still write: that is an end too.
    let wrote = s.write_all(bytes);
    while start.elapsed() < give_up {
        if poll_end(&mut s, Duration::from_millis(50), &mut seen.answer) {
            seen.ended_after = Some(start.elapsed());
            return seen;
        }
    }
    if wrote.is_err() {
        seen.ended_after = Some(start.elapsed());
    }
    seen
}

/// Random bytes that are no valid first frame of any layer: the first byte
/// is fixed by the caller (a bad record type, frame type...).
pub(crate) fn garbage(r: &mut Prng, first: &[u8], len: usize) -> Vec<u8> {
    let mut out = first.to_vec();
    while out.len() < len {
        out.push(r.next_u64() as u8);
    }
    out
}

/// A framed client that is admitted, then announces a frame over any
/// limit.
pub(crate) fn oversized_frame(addr: &str, give_up: Duration) -> Seen {
    let mut seen = Seen::default();
    let Some(mut s) = connect(addr) else {
        return seen;
    };
    seen.connected = true;
    let start = Instant::now();
    let _ = s.write_all(&[0, 0, 0, 1, 1]); // HELLO, no data
    let mut welcome = [0u8; 5];
    let _ = s.set_read_timeout(Some(give_up));
    if s.read_exact(&mut welcome).is_err() {
        return seen;
    }
    let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 4]);
    while start.elapsed() < give_up {
        if poll_end(&mut s, Duration::from_millis(50), &mut seen.answer) {
            seen.ended_after = Some(start.elapsed());
            return seen;
        }
    }
    seen
}

/// Connect `n` times and hold them all `hold` without sending or reading
/// anything; then drop them. Connects beyond the listener's backlog go
/// unanswered (their SYNs are dropped): they give up after 300 ms and are
/// counted. Many of these at once are the flood.
pub(crate) fn hold_silent(addrs: &str, n: usize, hold: Duration) -> (u64, u64) {
    let mut held = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
        match connect_within(addrs, Duration::from_millis(300)) {
            Some(s) => held.push(s),
            None => failed += 1,
        }
    }
    let made = held.len() as u64;
    std::thread::sleep(hold);
    drop(held);
    (made, failed)
}

/// Never read: connect, then hold the connection until `give_up` while
/// the server sends.
pub(crate) fn never_read(addr: &str, give_up: Duration) -> Seen {
    let mut seen = Seen::default();
    if let Some(s) = connect(addr) {
        seen.connected = true;
        std::thread::sleep(give_up);
        drop(s);
    }
    seen
}

/// Read one byte every `every`, until the server ends or `give_up`.
pub(crate) fn slow_read(addr: &str, every: Duration, give_up: Duration) -> Seen {
    let mut seen = Seen::default();
    let Some(mut s) = connect(addr) else {
        return seen;
    };
    seen.connected = true;
    let start = Instant::now();
    let mut byte = [0u8; 1];
    while start.elapsed() < give_up {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => {
                seen.ended_after = Some(start.elapsed());
                return seen;
            }
            Ok(_) => std::thread::sleep(every),
        }
    }
    seen
}

/// A good client's echo exchange: `true` if it was served whole in time.
pub(crate) fn good_echo(addr: &str, r: &mut Prng, limit: Duration) -> bool {
    let Some(mut s) = connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let len = 1 + r.below(4096) as usize;
    let msg = garbage(r, &[], len);
    if s.write_all(&msg).is_err() || s.shutdown(std::net::Shutdown::Write).is_err() {
        return false;
    }
    let mut back = Vec::new();
    s.read_to_end(&mut back).is_ok() && back == msg
}

/// A good client's HTTP request: `true` if answered 200 "ok" in time.
pub(crate) fn good_http(addr: &str, limit: Duration) -> bool {
    let Some(mut s) = connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: torture\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut back = Vec::new();
    s.read_to_end(&mut back).is_ok() && back.starts_with(b"HTTP/1.1 200") && back.ends_with(b"ok")
}
