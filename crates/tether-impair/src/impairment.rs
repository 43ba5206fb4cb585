//! What to do to one direction of a link.

use std::time::Duration;

/// The impairment applied to one direction of a relay.
///
/// Probabilities are in `[0, 1]` (values outside are clamped in effect: `>= 1`
/// always, `<= 0` never). The default impairs nothing.
///
/// Each datagram's decisions (loss, duplicate, reorder, jitter) are drawn
/// from the direction's seeded generator in a fixed number of draws, so the
/// decisions for the n-th datagram depend only on the seed and n.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram (not dropped) is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back and sent after the next one
    /// (or, if no next one comes, released a little late; see
    /// [`REORDER_HOLD_MAX`](crate::REORDER_HOLD_MAX)).
    pub reorder: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` for every copy sent.
    /// Jitter can reorder datagrams on its own.
    pub jitter: Duration,
}

impl Impairment {
    /// No impairment: every datagram is forwarded at once, in order.
    pub fn none() -> Self {
        Self::default()
    }

    /// With loss probability `p`.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// With duplication probability `p`.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// With reorder probability `p`.
    pub fn reorder(mut self, p: f64) -> Self {
        self.reorder = p;
        self
    }

    /// With a fixed `delay` and up to `jitter` more.
    pub fn delay(mut self, delay: Duration, jitter: Duration) -> Self {
        self.delay = delay;
        self.jitter = jitter;
        self
    }
}
