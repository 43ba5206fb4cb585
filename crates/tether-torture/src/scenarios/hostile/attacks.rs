//! The attackers: plain std sockets doing what hostile peers do. Each
//! returns what it saw from its side: whether the connection was made, when
//! and how the server ended it, and what the server answered.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::plan::Act;
use crate::prng::Prng;

/// One attacking connection doing `act` against `addr`, giving up after
/// `give_up`.
pub(crate) fn perform(act: Act, addr: &str, r: &mut Prng, give_up: Duration) -> Seen {
    let drip = Duration::from_millis(100);
    match act {
        Act::Dribble(head, filler) => dribble(addr, head, filler, drip, give_up),
        Act::Garbage(first, last) => {
            let mut bytes = garbage(r, first, 600);
            bytes.extend_from_slice(last);
            blurt(addr, &bytes, give_up)
        }
        Act::OversizedHead => {
            let mut head = b"GET / HTTP/1.1\r\nHost: torture\r\nX-Big: ".to_vec();
            head.resize(head.len() + 20 * 1024, b'a');
            head.extend_from_slice(b"\r\n\r\n");
            blurt(addr, &head, give_up)
        }
        Act::OversizedFrame => oversized_frame(addr, give_up),
        Act::NeverRead => never_read(addr, give_up),
        Act::SlowRead => slow_read(addr, Duration::from_millis(50), give_up),
        // The flood is many connections: `hold_silent`.
        Act::Flood => Seen::default(),
    }
}

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
fn dribble(addr: &str, head: &[u8], filler: u8, drip: Duration, give_up: Duration) -> Seen {
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
fn blurt(addr: &str, bytes: &[u8], give_up: Duration) -> Seen {
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
fn garbage(r: &mut Prng, first: &[u8], len: usize) -> Vec<u8> {
    let mut out = first.to_vec();
    while out.len() < len {
        out.push(r.next_u64() as u8);
    }
    out
}

/// A framed client that is admitted, then announces a frame over any
/// limit.
fn oversized_frame(addr: &str, give_up: Duration) -> Seen {
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
fn never_read(addr: &str, give_up: Duration) -> Seen {
    let mut seen = Seen::default();
    if let Some(s) = connect(addr) {
        seen.connected = true;
        std::thread::sleep(give_up);
        drop(s);
    }
    seen
}

/// Read one byte every `every`, until the server ends or `give_up`.
fn slow_read(addr: &str, every: Duration, give_up: Duration) -> Seen {
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
