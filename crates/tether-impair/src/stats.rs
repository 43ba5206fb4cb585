//! Counters a relay keeps, per direction.

/// What happened to the datagrams of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams taken in by the relay on this direction's input.
    pub received: u64,
    /// Datagrams sent out (duplicate copies included). Counted just before
    /// the send, so anything the peer has received is already counted.
    pub forwarded: u64,
    /// Datagrams dropped: by loss, by a cut (at arrival or at release), for
    /// want of a client address, or because the send failed.
    pub dropped: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Datagrams held back to go after a later one.
    pub reordered: u64,
    /// Copies scheduled with a nonzero delay (fixed delay plus jitter).
    pub delayed: u64,
}

/// Counters of both directions of a relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// From the client to the target.
    pub to_target: DirStats,
    /// From the target back to the client.
    pub to_client: DirStats,
}
