//! DTLS datagram input: a real client and server session (tether's, over
//! the DTLS library, as the engine drives them) talk through a network the
//! fuzzer controls. It delivers, drops, replays, corrupts and truncates
//! their datagrams, injects its own, lets time pass and has each side send
//! messages once its handshake is done.
//!
//! Input layout: pairs of bytes, an operation and its argument (an injected
//! datagram takes its bytes from the input after the pair).
//!
//! Checked: no panic whatever arrives; a server session starts only from
//! what a listener takes for a ClientHello; every record a session writes
//! fits the context's MTU; a session that fails says why with a reason its
//! handshake or connection can end with (and is then dropped, as the engine
//! drops it); plaintext delivered to a side is exactly one of the messages
//! the other side sent (corrupted or injected records never come out as
//! data); a connected client verifies the server as the engine would.
#![no_main]

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tether::fuzzing::{is_client_hello, is_hello_verify, DtlsSession};
use tether::{DtlsContext, Reason, DEFAULT_DTLS_MTU};

/// The two contexts, made once: a server with a fresh self-signed
/// certificate, and a client that trusts any (making the certificate is
/// slow, and the handshake's own randomness varies every run anyway).
fn contexts() -> &'static (DtlsContext, DtlsContext) {
    static CONTEXTS: OnceLock<(DtlsContext, DtlsContext)> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let server = DtlsContext::builder().build().expect("server context");
        let client = DtlsContext::builder()
            .insecure_no_verification()
            .build()
            .expect("client context");
        (server, client)
    })
}

/// One side: its session (gone once it failed), what it has sent, whether
/// its handshake is done.
struct Side {
    session: Option<DtlsSession>,
    sent: Vec<Vec<u8>>,
    connected: bool,
    client: bool,
}

impl Side {
    /// Drains the session: records go to `wire`, plaintext is checked
    /// against what `peer_sent`.
    fn drain(&mut self, wire: &mut VecDeque<Vec<u8>>, peer_sent: &[Vec<u8>]) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        session.drain(
            |record| {
                assert!(
                    record.len() <= DEFAULT_DTLS_MTU,
                    "a record of {} bytes over the MTU",
                    record.len()
                );
                if wire.len() < 64 {
                    wire.push_back(record.to_vec());
                }
            },
            |data| {
                assert!(
                    peer_sent.iter().any(|m| m[..] == *data),
                    "plaintext the peer never sent: {data:?}"
                );
            },
        );
        if session.take_connected() {
            assert!(!self.connected, "connected twice");
            self.connected = true;
            if self.client {
                // The client context trusts any certificate, and the server
                // asks for none: the engine's checks pass.
                session.verify(None).expect("verify");
            }
        }
    }

    /// The result of feeding or ticking: an error ends the session.
    fn settle(&mut self, result: Result<(), (Reason, tether::Error)>) {
        if let Err((reason, err)) = result {
            assert!(
                matches!(
                    reason,
                    Reason::TlsHandshakeFailed | Reason::HandshakeTimeout | Reason::Lost
                ),
                "{reason:?}: {err}"
            );
            if reason == Reason::Lost {
                assert!(self.connected, "Lost before the handshake's end: {err}");
            }
            assert!(!err.to_string().is_empty());
            self.session = None;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (server_ctx, client_ctx) = contexts();
    let mut now = Instant::now();
    let mut client = Side {
        session: Some(DtlsSession::new(client_ctx, true, now)),
        sent: Vec::new(),
        connected: false,
        client: true,
    };
    // The server's session exists once a ClientHello arrived, as a
    // listener makes one.
    let mut server = Side {
        session: None,
        sent: Vec::new(),
        connected: false,
        client: false,
    };
    // Datagrams in flight: to the server, to the client.
    let mut to_server: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_client: VecDeque<Vec<u8>> = VecDeque::new();
    if let Some(s) = client.session.as_mut() {
        let started = s.tick(now);
        client.settle(started);
    }
    client.drain(&mut to_server, &server.sent);

    let mut input = data;
    while let [op, arg, rest @ ..] = input {
        input = rest;
        let (op, arg) = (*op, *arg);
        // Which way: even ops go to the server, odd ones to the client.
        let to_srv = op & 1 == 0;
        let mut datagram = match op >> 1 & 7 {
            // Deliver the next datagram as it is.
            0 => pop(to_srv, &mut to_server, &mut to_client),
            // Corrupt one byte of it.
            1 => pop(to_srv, &mut to_server, &mut to_client).map(|mut d| {
                if !d.is_empty() {
                    let at = usize::from(arg) * 7 % d.len();
                    d[at] ^= arg | 1;
                }
                d
            }),
            // Truncate it.
            2 => pop(to_srv, &mut to_server, &mut to_client).map(|mut d| {
                d.truncate(usize::from(arg) * d.len() / 256);
                d
            }),
            // Drop it.
            3 => {
                pop(to_srv, &mut to_server, &mut to_client);
                None
            }
            // Deliver it, and keep a copy in flight: a replay, delivered by
            // the next op that takes a datagram this way.
            4 => pop(to_srv, &mut to_server, &mut to_client).inspect(|d| {
                let queue = if to_srv {
                    &mut to_server
                } else {
                    &mut to_client
                };
                queue.push_front(d.clone());
            }),
            // Inject a datagram of the next `arg` input bytes.
            5 => {
                let n = usize::from(arg).min(input.len());
                let (d, rest) = input.split_at(n);
                input = rest;
                Some(d.to_vec())
            }
            // Time passes: each side's retransmission or handshake timeout.
            6 => {
                now += Duration::from_millis(u64::from(arg) * 20);
                for side in [&mut client, &mut server] {
                    if let Some(s) = side.session.as_mut() {
                        if s.deadline().is_some_and(|at| at <= now) {
                            let ticked = s.tick(now);
                            side.settle(ticked);
                        }
                    }
                }
                None
            }
            // A side sends a message (once connected), or closes.
            _ => {
                let side = if to_srv { &mut client } else { &mut server };
                if let Some(s) = side.session.as_mut() {
                    if arg == 0 {
                        s.close();
                    } else if side.connected {
                        let message = vec![arg; usize::from(arg)];
                        if s.send(&message).is_ok() {
                            side.sent.push(message);
                        }
                    }
                }
                None
            }
        };
        // Whatever the op produced arrives now.
        if let Some(d) = datagram.take() {
            // The listener's gate judges a datagram from an unknown peer.
            if is_client_hello(&d) {
                assert!(d.len() > 25);
            }
            let _ = is_hello_verify(&d);
            let side = if to_srv {
                if server.session.is_none() && !server.connected && is_client_hello(&d) {
                    server.session = Some(DtlsSession::new(server_ctx, false, now));
                }
                &mut server
            } else {
                &mut client
            };
            if let Some(s) = side.session.as_mut() {
                let fed = s.feed(now, &d);
                side.settle(fed);
            }
        }
        client.drain(&mut to_server, &server.sent);
        server.drain(&mut to_client, &client.sent);
    }
});

/// The next datagram in flight the given way.
fn pop(
    to_srv: bool,
    to_server: &mut VecDeque<Vec<u8>>,
    to_client: &mut VecDeque<Vec<u8>>,
) -> Option<Vec<u8>> {
    if to_srv {
        to_server.pop_front()
    } else {
        to_client.pop_front()
    }
}
