//! [`SocketId`]: how a socket is named.

use std::fmt;

/// Names a socket of one loop: a slab index plus a generation, so an id kept
/// after its socket closed is detected as stale and never reaches the socket
/// that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

impl SocketId {
    /// The slot index: small and dense, unique among the loop's live sockets.
    pub fn index(self) -> u32 {
        self.idx
    }

    pub(crate) fn token(self) -> mio::Token {
        mio::Token(((self.gen as usize) << 32) | self.idx as usize)
    }

    pub(crate) fn from_token(t: mio::Token) -> SocketId {
        SocketId {
            idx: t.0 as u32,
            gen: (t.0 >> 32) as u32,
        }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.idx)
    }
}
