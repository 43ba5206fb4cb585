//! The attacks of a run: what each peer does, where it connects, and how
//! the server must end it, within what bound.

use std::time::Duration;

use tether::Reason;

use super::server::{Bounds, Service, Spec};
use crate::check::GRACEFUL;

/// Timers fire late by a turn at most, threads get scheduled late on a busy
/// 2-core machine: what a bound allows beyond the timeout itself.
pub(crate) const SLACK: Duration = Duration::from_millis(1500);

/// What an attacking peer does (see `attacks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// Slow-loris: these first bytes, then the filler, a byte per 100 ms.
    Dribble(&'static [u8], u8),
    /// Random bytes between these first and last ones, about 600 in all,
    /// at once (an HTTP garbage head ends as a head does, so it is judged
    /// at once rather than timed out).
    Garbage(&'static [u8], &'static [u8]),
    /// An HTTP head over the head limit.
    OversizedHead,
    /// A framed client admitted, then a frame over any limit.
    OversizedFrame,
    /// Never read while the server sends.
    NeverRead,
    /// Read one byte every 50 ms while the server sends.
    SlowRead,
    /// Many connections that never send, held, then dropped.
    Flood,
}

/// One attack: its listener, how many connections, and how they must end.
#[derive(Debug, Clone)]
pub(crate) struct Attack {
    pub(crate) spec: Spec,
    pub(crate) act: Act,
    pub(crate) count: usize,
    /// The server's reasons, when the connection has a user (a framed one
    /// gets one only at HELLO).
    pub(crate) server: Option<&'static [Reason]>,
    /// The longest the server may keep one.
    pub(crate) bound: Duration,
    /// The attacker must see the end within `bound` (it cannot when it
    /// never reads, or reads slower than the data that waits for it).
    pub(crate) attacker_sees_end: bool,
    /// What the server's answer must begin with.
    pub(crate) answer: &'static [u8],
}

/// The first bytes of a TLS handshake record announcing 16 KiB that never
/// come whole.
const TLS_HEAD: &[u8] = &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01];
/// A framed HELLO header announcing 200 bytes of connect data.
const HELLO_HEAD: &[u8] = &[0, 0, 0, 201, 1];
/// An HTTP head that never ends.
const HTTP_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: torture\r\nX-Slow: ";

fn spec(tag: &'static str, tls: bool, framed: bool, service: Service) -> Spec {
    Spec {
        tag,
        tls,
        framed,
        service,
        max: None,
    }
}

/// Every attack, `n` connections each; the flood `flood` connections to a
/// listener admitting `admit` at a time.
pub(crate) fn attacks(b: &Bounds, n: usize, flood: usize, admit: u32) -> Vec<Attack> {
    let hs = b.handshake + SLACK;
    let idle = b.idle + SLACK;
    let one = |tag, tls, framed, service, act, server, bound, answer| Attack {
        spec: spec(tag, tls, framed, service),
        act,
        count: n,
        server,
        bound,
        attacker_sees_end: true,
        answer,
    };
    use Service::{Echo, Http, Source};
    let mut list = vec![
        one(
            "tls-slowloris",
            true,
            false,
            Echo,
            Act::Dribble(TLS_HEAD, 0),
            Some(&[Reason::HandshakeTimeout][..]),
            hs,
            &b""[..],
        ),
        one(
            "framed-slowloris",
            false,
            true,
            Echo,
            Act::Dribble(HELLO_HEAD, b'a'),
            None,
            hs,
            b"",
        ),
        one(
            "http-slowloris",
            false,
            false,
            Http,
            Act::Dribble(HTTP_HEAD, b'a'),
            Some(GRACEFUL),
            hs,
            b"HTTP/1.1 408",
        ),
        one(
            "tls-garbage",
            true,
            false,
            Echo,
            Act::Garbage(&[0x99], b""),
            Some(&[Reason::TlsHandshakeFailed][..]),
            SLACK,
            b"",
        ),
        one(
            "framed-garbage",
            false,
            true,
            Echo,
            Act::Garbage(&[0, 0, 0, 5, 0x77], b""),
            None,
            SLACK,
            b"",
        ),
        one(
            "http-garbage",
            false,
            false,
            Http,
            Act::Garbage(b"\x01\x02\x03 \x7f\r\n", b"\r\n\r\n"),
            Some(GRACEFUL),
            SLACK,
            b"HTTP/1.1 400",
        ),
        one(
            "framed-oversized",
            false,
            true,
            Echo,
            Act::OversizedFrame,
            Some(&[Reason::ProtocolError][..]),
            SLACK,
            b"",
        ),
        one(
            "http-oversized",
            false,
            false,
            Http,
            Act::OversizedHead,
            Some(GRACEFUL),
            SLACK,
            b"HTTP/1.1 431",
        ),
        one(
            "never-reads",
            false,
            false,
            Source,
            Act::NeverRead,
            Some(&[Reason::IdleTimeout][..]),
            idle,
            b"",
        ),
        one(
            "slow-reader",
            false,
            false,
            Source,
            Act::SlowRead,
            Some(&[Reason::IdleTimeout][..]),
            idle,
            b"",
        ),
    ];
    for a in &mut list {
        a.attacker_sees_end = !matches!(a.act, Act::NeverRead | Act::SlowRead);
    }
    let mut flood_spec = spec("silent-flood", false, false, Echo);
    flood_spec.max = Some(admit);
    list.push(Attack {
        spec: flood_spec,
        act: Act::Flood,
        count: flood,
        server: Some(&[Reason::IdleTimeout, Reason::ByPeer][..]),
        bound: idle,
        attacker_sees_end: false,
        answer: b"",
    });
    list
}
