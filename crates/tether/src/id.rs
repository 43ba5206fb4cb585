//! [`SocketId`]: how a socket is named.

use std::fmt;
use std::num::NonZeroU32;

/// Names a socket of one loop: a slab index plus a generation, so an id kept
/// after its socket closed is detected as stale and never reaches the socket
/// that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId {
    pub(crate) idx: u32,
    pub(crate) gen: Gen,
}

/// A generation: which of the sockets (or timers) that used one slot an id
/// names. Never zero, so that an `Option` of an id takes no more room than
/// the id: every socket keeps two of them (its listener's and its timer's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Gen(NonZeroU32);

impl Gen {
    /// The generation before any: the first `next` gives the first one used.
    pub(crate) const START: Gen = Gen(NonZeroU32::MAX);

    /// The one after this, wrapping past zero.
    pub(crate) fn next(self) -> Gen {
        Gen(self.0.checked_add(1).unwrap_or(NonZeroU32::MIN))
    }

    pub(crate) fn get(self) -> u32 {
        self.0.get()
    }

    fn from_bits(bits: u32) -> Option<Gen> {
        NonZeroU32::new(bits).map(Gen)
    }
}

impl SocketId {
    /// The slot index: small and dense, unique among the loop's live sockets.
    pub fn index(self) -> u32 {
        self.idx
    }

    pub(crate) fn token(self) -> mio::Token {
        mio::Token(((self.gen.get() as usize) << 32) | self.idx as usize)
    }

    /// The socket a token names; `None` for one no socket was given.
    pub(crate) fn from_token(t: mio::Token) -> Option<SocketId> {
        Some(SocketId {
            idx: t.0 as u32,
            gen: Gen::from_bits((t.0 >> 32) as u32)?,
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.idx)
    }
}
