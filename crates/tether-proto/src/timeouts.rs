//! Per-connection timeouts: which deadline matters in each stage of a
//! connection, and which reason it ends with when it passes.
//!
//! The table holds durations only; the lifecycle says which stage applies
//! ([`Lifecycle::stage`](crate::Lifecycle::stage)), the driver keeps when that
//! stage began and when data last moved, and asks here for the deadline. Idle
//! deadlines are lazy: data moving only records the time, and a deadline that
//! comes up early is simply asked again, so a busy connection costs nothing
//! per message and one timer per idle period.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether_proto::timeouts::{Stage, Timeouts};
//! use tether_proto::Reason;
//!
//! let t = Timeouts { idle: Some(Duration::from_secs(30)), ..Timeouts::default() };
//! let start = Instant::now();
//! let active = start + Duration::from_secs(10); // data moved then
//! assert_eq!(t.deadline(Stage::Open, start, active), Some(active + Duration::from_secs(30)));
//! assert_eq!(t.expired(Stage::Open, start, active, active + Duration::from_secs(29)), None);
//! assert_eq!(t.expired(Stage::Open, start, active, active + Duration::from_secs(30)), Some(Reason::IdleTimeout));
//! assert_eq!(t.deadline(Stage::Connecting, start, active), None); // no connect timeout set
//! ```

use std::time::{Duration, Instant};

use crate::Reason;

/// How long each stage of a connection may take. `None`: no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From `connect` until the transport is up (TCP's handshake).
    pub connect: Option<Duration>,
    /// From the transport being up until the handshakes over it are done (TLS,
    /// the framed HELLO/WELCOME). This is what evicts a peer that connects and
    /// then dribbles.
    pub handshake: Option<Duration>,
    /// With no data moving either way, once the connection is up.
    pub idle: Option<Duration>,
}

/// The stage a connection is in, as far as timeouts go. The lifecycle decides
/// it: [`Lifecycle::stage`](crate::Lifecycle::stage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Connecting: the connect timeout runs.
    Connecting,
    /// Up, but a handshake over it is not done: the handshake timeout runs.
    Handshaking,
    /// Up: the idle timeout runs.
    Open,
}

impl Timeouts {
    /// True when no timeout is set.
    pub fn is_empty(&self) -> bool {
        *self == Timeouts::default()
    }

    /// When the current stage times out: `since` is when it began, `active`
    /// when data last moved.
    pub fn deadline(&self, stage: Stage, since: Instant, active: Instant) -> Option<Instant> {
        let (from, limit) = match stage {
            Stage::Connecting => (since, self.connect?),
            Stage::Handshaking => (since, self.handshake?),
            Stage::Open => (active.max(since), self.idle?),
        };
        Some(from.checked_add(limit).unwrap_or(from))
    }

    /// The reason to end with if the stage's deadline has passed at `now`.
    pub fn expired(
        &self,
        stage: Stage,
        since: Instant,
        active: Instant,
        now: Instant,
    ) -> Option<Reason> {
        let deadline = self.deadline(stage, since, active)?;
        (now >= deadline).then_some(match stage {
            Stage::Connecting => Reason::ConnectTimeout,
            Stage::Handshaking => Reason::HandshakeTimeout,
            Stage::Open => Reason::IdleTimeout,
        })
    }
}
