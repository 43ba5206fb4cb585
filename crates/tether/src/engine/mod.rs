//! The engine behind [`Cx`](crate::Cx): what the loop keeps per socket, the
//! queue of deferred callbacks, the timer heap, and the work that moves bytes
//! and readiness through a socket's layers and carries out its lifecycle.
//!
//! The data lives in `Cx`; each file here holds one part of the work, as
//! methods on `Cx` that callbacks never see.

mod accept;
pub(crate) mod datagram;
mod deadlines;
mod dispatch;
pub(crate) mod failure;
mod framed;
pub(crate) mod read;
mod ready;
pub(crate) mod settle;
pub(crate) mod slot;
pub(crate) mod task;
pub(crate) mod timers;
pub(crate) mod tls;
mod write;
