//! The sans-IO core of tether.
//!
//! Everything here is pure: no sockets, no event loop, no clock. Time is a
//! parameter, bytes are counts, and the driver (the `tether` crate) feeds in what
//! happened on the wire and carries out what this crate asks for. That split keeps
//! every lifecycle rule in one deterministic place that tests can drive step by
//! step, the way quinn-proto and smoltcp keep their protocols apart from I/O.
//!
//! - [`lifecycle`]: the connection state machine (states, the handshakes of a
//!   connecting socket, commands, inputs, actions, events, reasons). It owns
//!   every decision of a connection's life: which handshake runs, when output
//!   may flow, when the FIN goes and when the end counts, when the peer's end is
//!   reported without a recv, which timeout applies, and the frame order of a
//!   framed connection in both directions.
//! - [`addr`]: parsing of the addresses tether accepts.
//! - [`frame`]: the framed wire format (encoder, streaming decoder, frame order).
//! - [`http`]: a server-side HTTP/1.1 codec (request decoder, response
//!   encoder, keep-alive rules), with limits on what a client can make a
//!   server hold.
//! - [`timeouts`]: per-connection timeouts (connect, handshake, idle); the
//!   lifecycle says which [`Stage`] applies.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod frame;
pub mod http;
pub mod lifecycle;
pub mod timeouts;

pub use addr::{AddrError, Destination, SockAddr};
pub use frame::{Decoder, Frame, FrameError, FrameType, Order, Role};
pub use lifecycle::{Action, Event, Handshake, Lifecycle, Op, Reason, Refused, State};
pub use timeouts::{Stage, Timeouts};
