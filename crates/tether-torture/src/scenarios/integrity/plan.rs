//! One connection's plan, derived from the seed and its index alone, so the
//! client, the server and the checker each compute the same one: transport,
//! peer kind, sizes both ways, how it ends, and how it must end.

use tether::Reason;

use crate::check::{Expect, GRACEFUL};
use crate::prng::Prng;

/// The transport stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    Tcp,
    Local,
    Tls,
    /// Framed messages over TCP.
    Framed,
}

/// Who the peers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A tether client on the client loop, the tether server.
    Tether,
    /// A blocking std client (ground truth written without tether), the
    /// tether server.
    Std,
    /// A tether client, a blocking std server.
    StdServer,
}

/// How the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client sends and half-closes; the server reads to the end, then
    /// sends and half-closes.
    ClientFirst,
    /// The server sends and half-closes at once; the client half-closes only
    /// once it has read the server's end (it keeps sending meanwhile).
    ServerFirst,
    /// Both send and half-close at once.
    Both,
    /// The client sends everything and half-closes; the server reads only
    /// `keep` of it, sends, and closes with the rest unread.
    CloseUnread,
    /// The server reads `keep` and closes while the client is still sending;
    /// the client half-closes once it has sent all and seen the server's end.
    CloseMidSend,
}

impl End {
    pub(crate) fn name(self) -> &'static str {
        match self {
            End::ClientFirst => "client-first",
            End::ServerFirst => "server-first",
            End::Both => "both",
            End::CloseUnread => "close-unread",
            End::CloseMidSend => "close-mid-send",
        }
    }

    /// Whether the client half-closes as soon as it has handed over its
    /// data (else only after the server's end).
    pub(crate) fn client_shuts_early(self) -> bool {
        matches!(self, End::ClientFirst | End::Both | End::CloseUnread)
    }
}

/// Frame header bytes (length u32 + type u8) of the message layer.
pub(crate) const FRAME_HEADER: u64 = 5;

/// The largest piece a sender hands over at once.
pub(crate) const CHUNK: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) idx: u64,
    pub(crate) net: Net,
    pub(crate) peer: Peer,
    pub(crate) end: End,
    /// Bytes client -> server, server -> client.
    pub(crate) up: u64,
    pub(crate) down: u64,
    /// Close endings: what the server reads before it closes (bytes; framed:
    /// messages).
    pub(crate) keep: u64,
    /// Framed: the message sizes each way (their sums are `up`, `down`).
    pub(crate) up_msgs: Vec<u64>,
    pub(crate) down_msgs: Vec<u64>,
}

/// Split `total` into messages of 0 to 64 KiB (an empty one now and then).
fn messages(r: &mut Prng, total: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = if r.percent(3) {
            0
        } else {
            r.between(1, CHUNK).min(left)
        };
        out.push(n);
        left -= n;
    }
    out
}

impl Plan {
    pub(crate) fn derive(seed: u64, idx: u64) -> Plan {
        let mut r = Prng::stream(seed, idx);
        let net = match r.below(100) {
            0..=29 => Net::Tcp,
            30..=49 => Net::Local,
            50..=74 => Net::Tls,
            _ => Net::Framed,
        };
        let peer = if matches!(net, Net::Tcp | Net::Local) {
            match r.below(100) {
                0..=39 => Peer::Std,
                40..=59 => Peer::StdServer,
                _ => Peer::Tether,
            }
        } else {
            Peer::Tether
        };
        let end = match r.below(5) {
            0 => End::ClientFirst,
            1 => End::ServerFirst,
            2 => End::Both,
            3 => End::CloseUnread,
            _ => End::CloseMidSend,
        };
        let (up, down) = (r.size(), r.size());
        let (up_msgs, down_msgs) = if net == Net::Framed {
            (messages(&mut r, up), messages(&mut r, down))
        } else {
            (Vec::new(), Vec::new())
        };
        let keep = match (end, net) {
            (End::CloseUnread | End::CloseMidSend, Net::Framed) => {
                r.below(up_msgs.len() as u64 + 1)
            }
            (End::CloseUnread | End::CloseMidSend, _) => r.below(up + 1),
            _ => up,
        };
        Plan {
            idx,
            net,
            peer,
            end,
            up,
            down,
            keep,
            up_msgs,
            down_msgs,
        }
    }

    /// Where a violation happened: enough to find the connection again.
    pub(crate) fn at(&self) -> String {
        format!(
            "conn {} ({:?} {:?} {} up {} down {} keep {})",
            self.idx,
            self.net,
            self.peer,
            self.end.name(),
            self.up,
            self.down,
            self.keep
        )
    }

    /// Whether the server closes with input unread.
    pub(crate) fn server_closes(&self) -> bool {
        matches!(self.end, End::CloseUnread | End::CloseMidSend)
    }

    /// The bytes the server reads of `up` (the rest it throws away).
    pub(crate) fn up_delivered(&self) -> u64 {
        if !self.server_closes() {
            self.up
        } else if self.net == Net::Framed {
            self.up_msgs[..self.keep as usize].iter().sum()
        } else {
            self.keep
        }
    }

    /// What the server's close throws away, as `Closed::unread` counts it:
    /// the bytes of the stream past `keep`; framed, the unread messages and
    /// the client's FAREWELL, headers included.
    pub(crate) fn server_unread(&self) -> u64 {
        if !self.server_closes() {
            0
        } else if self.net == Net::Framed {
            let rest = &self.up_msgs[self.keep as usize..];
            rest.iter().map(|m| m + FRAME_HEADER).sum::<u64>() + FRAME_HEADER
        } else {
            self.up - self.keep
        }
    }

    /// How the server's socket must end.
    pub(crate) fn server_expect(&self) -> Expect {
        let reasons: &'static [Reason] = match self.end {
            End::ClientFirst => &[Reason::ByPeer],
            End::ServerFirst | End::CloseMidSend => &[Reason::Normal],
            End::Both | End::CloseUnread => GRACEFUL,
        };
        Expect {
            reasons,
            unsent: Some(0),
            unread: Some(self.server_unread()),
        }
    }

    /// How a tether client's socket must end.
    pub(crate) fn client_expect(&self) -> Expect {
        Expect::clean(match self.end {
            End::ClientFirst => &[Reason::Normal],
            End::ServerFirst | End::CloseMidSend => &[Reason::ByPeer],
            // The client half-closes once its last byte is handed over, the
            // server closes once it read `keep`: either may come first.
            End::Both | End::CloseUnread => GRACEFUL,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_reproducible_and_consistent() {
        for idx in 0..2000 {
            let p = Plan::derive(42, idx);
            let q = Plan::derive(42, idx);
            assert_eq!(p.at(), q.at());
            assert_eq!(p.up_msgs, q.up_msgs);
            if p.net == Net::Framed {
                assert_eq!(p.up_msgs.iter().sum::<u64>(), p.up);
                assert_eq!(p.down_msgs.iter().sum::<u64>(), p.down);
                if p.server_closes() {
                    assert!(p.keep <= p.up_msgs.len() as u64);
                }
            } else {
                assert!(p.keep <= p.up);
            }
            assert!(p.up_delivered() <= p.up);
            if p.peer != Peer::Tether {
                assert!(matches!(p.net, Net::Tcp | Net::Local));
            }
        }
    }

    #[test]
    fn unread_is_what_the_server_leaves() {
        let mut p = Plan::derive(1, 0);
        p.net = Net::Tcp;
        p.end = End::CloseUnread;
        p.up = 100;
        p.keep = 30;
        assert_eq!((p.up_delivered(), p.server_unread()), (30, 70));
        p.net = Net::Framed;
        p.up_msgs = vec![10, 0, 90];
        p.keep = 1;
        // Two messages left (0 and 90 bytes) and the FAREWELL, each with its header.
        assert_eq!((p.up_delivered(), p.server_unread()), (10, 5 + 95 + 5));
        p.end = End::ClientFirst;
        assert_eq!((p.up_delivered(), p.server_unread()), (100, 0));
    }
}
