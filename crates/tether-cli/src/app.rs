//! The state the loop shares with every callback of `connect` and `listen`
//! and with the stdin thread.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use tether::SocketId;

use crate::events::Events;
use crate::options::Settings;

/// Bytes asked for per recv: a stream chunk, or any datagram whole.
pub(crate) const READ: usize = 64 * 1024;

/// What the command is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `connect`.
    Connect,
    /// `listen` for one connection (or, on UDP, one first peer).
    Listen,
    /// `listen --echo`, `--http` or `--reject`: every client, until interrupted.
    Serve,
}

/// The state the loop shares with every callback and with the stdin thread.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) set: Settings,
    pub(crate) role: Role,
    pub(crate) events: Option<Events>,
    /// Where stdin goes: the connection, or the UDP socket.
    pub(crate) conn: Option<SocketId>,
    pub(crate) listener: Option<SocketId>,
    /// `listen --udp`: stdin goes to the first sender.
    pub(crate) udp_peer: Option<SocketAddr>,
    /// Who the connection is with, for messages.
    pub(crate) peer_label: String,
    /// A chunk of stdin waiting for a connection (or a UDP peer).
    pub(crate) held: Option<Vec<u8>>,
    pub(crate) stdin_ended: bool,
    pub(crate) eof_applied: bool,
    /// Tells the stdin thread its chunk went out.
    pub(crate) ack: Option<Sender<()>>,
    /// `listen` without --echo: the one connection was admitted.
    pub(crate) taken: bool,
    /// UDP: we ended the socket, because stdin ended.
    pub(crate) ending: bool,
    pub(crate) stdout_failed: bool,
    /// stdout was closed: the peer finished sending, or its reader went away.
    pub(crate) stdout_closed: bool,
    /// A chunk of stdin was handed to the connection and not yet acknowledged.
    pub(crate) in_flight: bool,
    pub(crate) exit: u8,
    /// SIGINT and SIGTERM: what they have to end.
    pub(crate) stop: Stop,
}

/// What the loop keeps for the signals.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    /// Signals received so far.
    pub(crate) signals: u8,
    /// `listen --echo` and `--reject`: the listener and the connections it
    /// handed out, while open.
    pub(crate) open: HashSet<SocketId>,
}
