//! The sans-IO core of tether.
//!
//! Everything here is pure: no sockets, no event loop, no clock. Time is a
//! parameter, bytes are counts, and the driver (the `tether` crate) feeds in what
//! happened on the wire and carries out what this crate asks for. That split keeps
//! every lifecycle rule in one deterministic place that tests can drive step by
//! step, the way quinn-proto and smoltcp keep their protocols apart from I/O.
//!
//! - [`lifecycle`]: the connection state machine (states, commands, inputs,
//!   actions, events, reasons).
//! - [`addr`]: parsing of the addresses tether accepts.
//! - [`frame`]: the framed wire format (encoder, streaming decoder, frame order).
//! - [`timeouts`]: per-connection timeouts (connect, handshake, idle).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod frame;
pub mod lifecycle;
pub mod timeouts;

pub use addr::{AddrError, SockAddr};
pub use frame::{Decoder, Frame, FrameError, FrameType, Order, Role};
pub use lifecycle::{Action, Event, Lifecycle, Op, Reason, Refused, State};
