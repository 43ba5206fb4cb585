//! Seeded impairing relays for tether's tests and torture suite.
//!
//! The test kernels have no netem, so links are impaired in user space: a
//! relay sits between a client and a target and, per direction, drops,
//! duplicates, reorders and delays what passes, or cuts the link altogether.
//! Every decision is drawn from a generator seeded by the caller, so the fate
//! of the n-th datagram of a direction is the same on every run with the same
//! seed (when it is delivered still depends on real time).
//!
//! - [`Impairment`]: what to do to one direction.
//! - [`UdpRelay`]: the UDP relay (one client, one target).
//! - [`Stats`] / [`DirStats`]: what a relay did, per direction.
//!
//! Layout: `link.rs` holds the transport-agnostic decisions and delay queue,
//! `udp.rs` the sockets and threads; a TCP relay would sit beside it in
//! `tcp.rs` and reuse `link.rs`. `prng.rs` is a tiny splitmix64, so this crate
//! needs nothing beyond std.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod impairment;
mod link;
mod prng;
mod stats;
mod udp;

pub use impairment::Impairment;
pub use link::REORDER_HOLD_MAX;
pub use stats::{DirStats, Stats};
pub use udp::UdpRelay;
