//! Seeded impairing relays for tether's tests and torture suite.
//!
//! The test kernels have no netem, so links are impaired in user space: a
//! relay sits between two peers and, per direction, drops, duplicates,
//! reorders and delays what passes, or cuts the link altogether. Every
//! decision is drawn from a generator seeded by the caller, so the fate of
//! the n-th datagram (or IP packet) of a direction is the same on every run
//! with the same seed (when it is delivered still depends on real time).
//!
//! - [`Impairment`]: what to do to one direction.
//! - [`UdpRelay`]: the UDP relay (one client, one target), on loopback.
//! - [`TunLink`]: two network namespaces joined by an impaired IP link, for
//!   anything that runs over IP (TCP retransmits for real); needs root.
//! - [`Stats`] / [`TunStats`] / [`DirStats`]: what a relay did, per direction.
//!
//! Layout: `link.rs` holds the transport-agnostic decisions and delay queue,
//! which both relays share; `udp.rs` holds the UDP relay's sockets and
//! threads; `tun.rs` the TUN link (devices, namespaces, relay threads),
//! `netns.rs` the namespaces (`ip netns`) and moving a thread into one, and
//! `sys.rs` the few system calls std lacks (TUN creation, `setns`, `ppoll`),
//! the crate's only `unsafe` code. `stats.rs` holds the counters and how the
//! threads share them; `prng.rs` is a tiny splitmix64, so decisions need no
//! rand crate.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod impairment;
mod link;
mod netns;
mod prng;
mod stats;
mod sys;
mod tun;
mod udp;

pub use impairment::Impairment;
pub use link::REORDER_HOLD_MAX;
pub use netns::NetnsGuard;
pub use stats::{DirStats, Stats, TunStats};
pub use tun::{Side, TunLink};
pub use udp::UdpRelay;
