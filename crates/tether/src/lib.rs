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
//!   optional security layer (TLS, [`TlsContext`]) and an optional message
//!   layer (framed messages). Each imports nothing from the one above it.
//! - **No callback inside an operation.** [`Cx`]'s operations return at once;
//!   what they cause is reported by callbacks that run after the current one
//!   returns. `on_closed` comes exactly once per socket, last.
//! - **One clock.** The loop reads the time at fixed points and passes it down;
//!   [`IoMux::with_clock`] runs it on a [`TestClock`] moved by hand.
//! - **Backpressure is a recv.** Nothing is read while no [`Cx::recv`] is
//!   pending, and [`Cx::unsent`] says how much waits to be written.
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
//!     fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
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
#![deny(missing_docs)]
// The raw socket options in `sys.rs` are the only unsafe code.
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

mod clock;
mod cx;
mod engine;
mod error;
mod handle;
mod id;
mod log;
mod message;
mod mux;
mod security;
#[allow(unsafe_code)]
mod sys;
mod transport;
mod user;

// The README's examples are compiled as doctests, so they cannot go stale.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use clock::TestClock;
pub use cx::{Cx, LoopStats, MAX_EXACT_RECV};
pub use engine::dial::CONNECTION_ATTEMPT_DELAY;
pub use engine::timers::TimerId;
pub use error::{ApiError, Error};
pub use handle::{LoopGone, MuxHandle};
pub use id::SocketId;
pub use mux::IoMux;
pub use security::context::{
    ClientCerts, Fingerprint, TlsContext, TlsContextBuilder, TlsError, TlsVersions,
};
pub use security::info::{TlsInfo, TlsRole, TlsVersion};
pub use tether_proto::timeouts::Timeouts;
pub use tether_proto::{AddrError, Destination, Op, Reason, Refused, SockAddr, State};
pub use transport::tcp::Keepalive;
pub use transport::Transport;
pub use user::{Admission, Closed, DiscardMethod, PeerInfo, RecvMode, SocketUser};
