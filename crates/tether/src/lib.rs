//! Event-driven networking whose connections end as precisely as they begin.
//!
//! One callback interface ([`SocketUser`]) over TCP, TLS, UDP and Unix-domain
//! sockets, driven by a single-threaded event loop ([`IoMux`]). Each connection
//! has a lifecycle you can see — [`State`], a typed [`Reason`] when it ends, and
//! the bytes left unsent or unread ([`Closed`]) — and control: half-close
//! ([`Cx::shutdown`]), graceful close that drains instead of resetting
//! ([`Cx::close`]), reset ([`Cx::reset`]), silent discard ([`Cx::discard`]),
//! idle and handshake timeouts ([`Cx::set_timeouts`]), admission
//! ([`SocketUser::on_incoming`], [`Cx::max_connections`]), and data exchanged
//! at connect and disconnect ([`Cx::set_framing`]).
//!
//! # The model
//!
//! - **One lifecycle.** Every rule of how a connection begins and ends lives in
//!   the sans-IO crate `tether-proto` (`Lifecycle`): the phases of connecting
//!   (the transport, then TLS, then the framed handshake), rule by rule the
//!   half-closes and the end, which timeout applies, and what is counted as
//!   unsent or unread. This crate moves bytes and readiness in and carries out
//!   what the state machine asks.
//! - **A stack of layers.** A socket is a transport (TCP, Local, UDP), an
//!   optional security layer (TLS, [`TlsContext`]; DTLS on UDP,
//!   [`DtlsContext`]) and an optional message
//!   layer (framed messages). Each imports nothing from the one above it.
//! - **No callback inside an operation.** [`Cx`]'s operations return at once;
//!   what they cause is reported by callbacks that run after the current one
//!   returns. `on_closed` comes exactly once per socket, last.
//! - **One clock.** The loop reads the time at fixed points and passes it down;
//!   [`IoMux::with_clock`] runs it on a [`TestClock`] moved by hand.
//! - **Backpressure is a recv.** Nothing is read while no [`Cx::recv`] is
//!   pending, and [`Cx::unsent`] says how much waits to be written.
//!
//! # The lifecycle
//!
//! [`Cx::state`] reads a socket's [`State`] at any time:
//!
//! | state | meaning |
//! |---|---|
//! | `NotConnected` | created, or gone |
//! | `Connecting` | connect issued: the transport, then the TLS and framed handshakes |
//! | `Listening` | a listener |
//! | `Connected` | both directions open |
//! | `NoSend` | we shut down our sending side; we still receive |
//! | `NoRecv` | the peer shut down its sending side; data it sent before may still wait to be received |
//! | `NoSendRecv` | both sides shut down; received data may still wait |
//! | `Closing` | [`Cx::close`] was called: flushing, our FIN sent, draining until the peer's end |
//!
//! Ways to end, all non-blocking:
//!
//! | call | on the wire | queued outgoing data | [`Closed::reason`] |
//! |---|---|---|---|
//! | [`Cx::shutdown`] | FIN after the send queue drains | all sent first | — (half-close; state `NoSend`) |
//! | [`Cx::close`] | FIN after the queue, then read and discard until the peer's FIN; past the linger time (default 30 s, [`Cx::set_linger`]): RST | all sent first | `Normal` / `ByPeer`, or `LingerTimeout` |
//! | [`Cx::reset`] | RST now (SO_LINGER 0) | dropped, counted in [`Closed::unsent`] | `Reset` |
//! | [`Cx::discard`] | nothing: TCP_REPAIR where the process may (CAP_NET_ADMIN); else RST | dropped, counted | `Discarded` ([`Closed::discard`] says how, [`DiscardMethod`]) |
//! | loop stopped ([`Cx::terminate`]) | RST | dropped, counted | `Stopped` |
//!
//! The rules: every byte sent before `shutdown`/`close` reaches the peer
//! before the FIN, or is counted in [`Closed::unsent`];
//! [`SocketUser::on_peer_shutdown`] comes after the last byte the peer sent;
//! a socket whose directions are both finished closes by itself;
//! [`SocketUser::on_closed`] comes exactly once per socket, last, and the id is
//! stale afterwards; received bytes thrown away are counted in
//! [`Closed::unread`]; `close` drains the peer instead of letting the kernel
//! answer unread data with RST; graceful reasons say who began
//! ([`Reason::Normal`], [`Reason::ByPeer`]), and [`Reason::Lost`] carries the
//! OS error ([`Closed::error`]). Operations used wrongly return an
//! [`ApiError`] and change nothing; failures of an operation itself (a
//! malformed address, a refused connect, an address in use) end the socket
//! with a [`Reason`] such as `AddressInvalid`, `ConnectRejected` or
//! `BindFailed`.
//!
//! Unix-domain sockets have no RST: [`Cx::reset`] on one closes at once, and
//! [`Cx::discard`] is such a close ([`DiscardMethod::Close`]).
//!
//! # Timeouts, dead peers, admission
//!
//! - [`Cx::set_timeouts`] with [`Timeouts`] `{ connect, handshake, idle }`:
//!   [`Reason::ConnectTimeout`], [`Reason::HandshakeTimeout`] (TLS and framed
//!   handshakes) and [`Reason::IdleTimeout`] (no data either way: RST, or for
//!   UDP a discard). On a listener they apply to every connection it takes.
//!   [`Cx::idle_for`] says how long data has not moved. All deadlines share
//!   one timer heap with [`Cx::set_timer`] and [`Cx::set_interval`].
//! - [`Cx::set_keepalive`] ([`Keepalive`]) and [`Cx::set_user_timeout`]: a
//!   peer that vanished ends as [`Reason::Lost`] (ETIMEDOUT) within the bound.
//! - [`Cx::max_connections`]: at the limit a listener takes no more until one
//!   of its connections has closed.
//! - [`IoMux::with_clock`] runs all of it on a [`TestClock`], so timeout,
//!   linger and idle behaviour is tested without sleeping.
//!
//! # UDP
//!
//! [`Cx::udp`] makes a UDP socket; [`Cx::bind`] gives it an address,
//! [`Cx::send_to`] sends one datagram and [`SocketUser::on_received_from`]
//! delivers one, with its source, per [`Cx::recv`]. [`Cx::connect`] fixes the
//! peer: then [`Cx::send`] and [`SocketUser::on_received`], and an ICMP
//! port-unreachable ends the socket with [`Reason::Lost`]. A datagram longer
//! than the recv asked for is never cut silently: it arrives in
//! [`SocketUser::on_truncated`]. A datagram over the largest UDP payload is
//! [`ApiError::DatagramTooLarge`]. UDP has no connection to end: `close`,
//! `reset` and `discard` are all a discard ([`Reason::Discarded`]).
//!
//! # TLS
//!
//! [`TlsContext::builder`] ([`TlsContextBuilder`]) takes our certificate chain
//! and key, trust roots, the client-certificate policy ([`ClientCerts`]), ALPN
//! protocols, pinned peer [`Fingerprint`]s and the [`TlsVersions`]; `build`
//! checks all of it, so a bad PEM or a key that does not match its certificate
//! is a [`TlsError`] at start-up. Verification is always on.
//!
//! - [`Cx::connect_tls`]: the socket is `Connecting` until the handshake is
//!   over, then [`SocketUser::on_tls_ready`] ([`TlsInfo`]) and
//!   [`SocketUser::on_connected`].
//! - [`Cx::listen_tls`]: each connection is announced by
//!   [`SocketUser::on_accepted`] while its handshake runs, then `on_tls_ready`;
//!   a failed handshake ends it with [`Reason::TlsHandshakeFailed`].
//! - [`Cx::start_tls`] ([`TlsRole`]) upgrades a connected stream (StartTLS),
//!   with what was read ahead fed to the handshake.
//! - [`SocketUser::on_alpn`] may refuse the negotiated protocol.
//! - [`Cx::shutdown`] sends close_notify, then FIN; a FIN without close_notify
//!   is a truncation, [`Reason::Lost`].
//!
//! # DTLS and DTLS-SRTP
//!
//! [`DtlsContext::builder`] takes a PEM certificate (ECDSA) or makes a
//! self-signed one, whose [`DtlsContext::fingerprint`] a WebRTC peer pins;
//! trust is by pins or roots; it speaks DTLS 1.2, 1.3 or both
//! ([`DtlsVersions`]). [`Cx::connect_dtls`] runs a handshake on a UDP socket; [`Cx::listen_dtls`] makes a bound UDP socket a DTLS
//! listener whose peers, once they returned the cookie challenge, go through
//! `on_incoming` and become associations. One `send` is one record (at most
//! [`DtlsContext::max_record`] bytes); retransmissions run on the loop's timer
//! heap. `close` sends close_notify ([`Reason::Normal`]); the peer's ends it
//! [`Reason::ByPeer`]. With SRTP profiles ([`DtlsContextBuilder::srtp`]),
//! [`Cx::srtp_keying_material`] returns the RFC 5764 keys ([`SrtpKeys`]).
//!
//! # HTTP mode
//!
//! [`Cx::set_http`] ([`HttpOptions`]) makes a stream socket, or every
//! connection of a listener, carry HTTP/1.1: requests come to
//! [`SocketUser::on_request`] ([`Request`]), one at a time, and are answered
//! with [`Cx::respond`] ([`Response`]). The layer ends the connection itself
//! after the response (a lingering close, so no response is lost to a reset)
//! unless [`HttpOptions::keep_open`] and HTTP/1.1's rules keep it open; the
//! application's `close`, `reset` and `discard` are refused meanwhile.
//!
//! # Framed messages
//!
//! [`Cx::set_framing`] makes a stream socket (TCP, TLS, Local) carry messages
//! instead of bytes, in the wire format specified by `tether_proto::frame`:
//! `length:u32 BE | type:u8 | payload`, with HELLO (connect data), WELCOME,
//! REJECT (reason data), DATA and FAREWELL (disconnect data). One `send` is one
//! message, one `on_received` one message; [`PeerInfo::hello`] carries the
//! connect data to [`SocketUser::on_incoming`], [`Admission::Reject`] answers
//! REJECT, [`Cx::shutdown_with`] sends FAREWELL data. A broken rule resets the
//! connection with [`Reason::ProtocolError`].
//!
//! # Logging
//!
//! tether logs through [`tracing`](https://docs.rs/tracing) and prints nothing
//! by itself: install a subscriber, for instance `tracing-subscriber` with its
//! `env-filter` feature reading `RUST_LOG`:
//!
//! ```no_run
//! tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
//!     .init();
//! ```
//!
//! The targets are `tether::tcp`, `tether::local`, `tether::udp`,
//! `tether::tls`, `tether::framed` and `tether::timer`; every line carries the
//! loop (`mux`) and, where there is one, the socket (`socket`).
//!
//! # Embedding the loop
//!
//! [`IoMux::run`] drives a loop until it is done. A program with an event loop
//! of its own drives it by [`IoMux::turn`] instead, one turn at a time
//! ([`Turn`] says what the turn left), and waits on the loop's file descriptor
//! (`IoMux` implements [`AsRawFd`](std::os::fd::AsRawFd)) for at most
//! [`IoMux::poll_timeout`] in between.
//!
//! # Backends: epoll or io_uring
//!
//! A loop waits and does its I/O through epoll (the default) or io_uring,
//! chosen by [`IoMux::builder`] ([`Backend`]); [`IoMux::new`] takes it from
//! the `TETHER_BACKEND` environment variable (`uring`), so that a test suite
//! runs on either. The lifecycle is the same on both; only how bytes move
//! differs. On io_uring, TCP listeners and plain TCP streams (and HTTP mode's)
//! are on the ring: multishot accepts, multishot receives into buffers the
//! loop owns, answered from there without a copy, and small sends submitted
//! with the loop's wait — one system call a turn. TLS, framed, UDP, DTLS and
//! Unix sockets stay on epoll readiness in the same loop, which the ring
//! watches. A kernel that refuses io_uring gets epoll ([`IoMux::backend`]
//! says which runs). The README says when to choose which.
//!
//! # An echo server
//!
//! ```no_run
//! use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser};
//!
//! struct Listener;
//! impl SocketUser for Listener {
//!     fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
//!         Admission::Accept(Box::new(Echo))
//!     }
//!     fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
//!         // A port in use ends the listener at once: say why.
//!         eprintln!("listener ended: {} {:?}", closed.reason, closed.error);
//!     }
//! }
//!
//! struct Echo;
//! impl SocketUser for Echo {
//!     fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
//!         cx.recv(s, 4096, RecvMode::Partial).unwrap();
//!     }
//!     fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
//!         cx.send(s, data).unwrap();
//!         cx.recv(s, 4096, RecvMode::Partial).unwrap();
//!     }
//!     fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
//!         cx.shutdown(s).unwrap();
//!     }
//!     fn on_closed(&mut self, _: &mut Cx, s: SocketId, closed: &Closed) {
//!         println!("{s}: {} ({} unsent, {} unread)", closed.reason, closed.unsent, closed.unread);
//!     }
//! }
//!
//! let mut mux = IoMux::new(()).unwrap();
//! mux.listen_on("127.0.0.1:7000", Listener);
//! mux.run().unwrap();
//! ```
//!
//! # A client
//!
//! Connect, send, half-close, and print the reply and how the connection
//! ended (`examples/client.rs` is the same as a program):
//!
//! ```no_run
//! use tether::{Closed, Cx, IoMux, RecvMode, SocketId, SocketUser};
//!
//! struct Client;
//! impl SocketUser for Client {
//!     fn on_connected(&mut self, cx: &mut Cx, s: SocketId) {
//!         cx.send(s, b"hello").unwrap();
//!         cx.shutdown(s).unwrap(); // FIN after the message; we keep receiving
//!         cx.recv(s, 4096, RecvMode::Partial).unwrap();
//!     }
//!     fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
//!         println!("{}", String::from_utf8_lossy(data));
//!         cx.recv(s, 4096, RecvMode::Partial).unwrap();
//!     }
//!     fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
//!         println!("closed: {} {:?}", closed.reason, closed.error);
//!     }
//! }
//!
//! let mut mux = IoMux::new(()).unwrap();
//! mux.connect_to("127.0.0.1:7000", Client);
//! mux.run().unwrap();
//! ```
#![deny(missing_docs)]
// The raw socket options in `sys.rs` and the io_uring ring in `uring/`
// are the only unsafe code.
#![deny(unsafe_code)]

/// Log under the socket's own target, so each can be switched on alone:
/// `tether::tcp`, `tether::local`, `tether::udp` for plain sockets,
/// `tether::tls` for everything about a TLS socket, `tether::framed` for the
/// message layer, `tether::timer` for deadlines. Every line carries the loop
/// (`mux`) it happened on; lines about one socket carry it too (`socket`).
macro_rules! io_log {
    ($level:ident, $target:expr, $mux:expr, $($arg:tt)+) => {
        match $target {
            $crate::log::Target::Tcp => tracing::$level!(target: "tether::tcp", mux = $mux, $($arg)+),
            $crate::log::Target::Local => tracing::$level!(target: "tether::local", mux = $mux, $($arg)+),
            $crate::log::Target::Udp => tracing::$level!(target: "tether::udp", mux = $mux, $($arg)+),
            $crate::log::Target::Tls => tracing::$level!(target: "tether::tls", mux = $mux, $($arg)+),
            $crate::log::Target::Framed => tracing::$level!(target: "tether::framed", mux = $mux, $($arg)+),
            $crate::log::Target::Timer => tracing::$level!(target: "tether::timer", mux = $mux, $($arg)+),
        }
    };
}

mod backend;
mod clock;
mod cx;
mod engine;
mod error;
/// Entry points for the fuzz targets (the `fuzzing` feature): not part of
/// the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod http;
mod id;
mod log;
mod message;
mod mux;
mod security;
#[allow(unsafe_code)]
mod sys;
mod transport;
// The kernel reads and writes the ring's buffers: see the module's comments.
#[allow(unsafe_code)]
mod uring;
mod user;

// The README's examples are compiled as doctests, so they cannot go stale.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use backend::{Backend, IoMuxBuilder};
pub use clock::TestClock;
pub use cx::{Cx, LoopStats, MAX_EXACT_RECV};
pub use engine::dial::CONNECTION_ATTEMPT_DELAY;
pub use engine::timers::TimerId;
pub use error::{ApiError, Error};
pub use handle::{LoopGone, MuxHandle};
pub use http::{
    HttpLimits, HttpOptions, HttpVersion, IntoResponseBytes, Request, Response, ResponseBody,
};
pub use id::SocketId;
pub use mux::{IoMux, Turn};
pub use security::cert_error::CertError;
pub use security::context::{ClientCerts, TlsContext, TlsContextBuilder, TlsVersions};
pub use security::dtls_context::{DtlsContext, DtlsContextBuilder, DtlsVersions, DEFAULT_DTLS_MTU};
pub use security::fingerprint::Fingerprint;
pub use security::info::{TlsInfo, TlsRole, TlsVersion};
pub use security::srtp::{SrtpKeys, SrtpProfile};
pub use security::tls_error::TlsError;
pub use tether_proto::timeouts::Timeouts;
pub use tether_proto::{AddrError, Destination, Op, Reason, Refused, SockAddr, State};
pub use transport::tcp::Keepalive;
pub use transport::Transport;
pub use user::{Admission, Closed, DiscardMethod, PeerInfo, RecvMode, SocketUser};
