//! [`Transport`]: which transport a socket uses.

use tether_proto::SockAddr;

/// Which transport a socket uses. A stream socket's is fixed by its first
/// address; a UDP socket is one from its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// A Unix-domain stream socket.
    Local,
    /// UDP over IPv4 or IPv6.
    Udp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Transport {
    /// The transport's name in logs and messages (`tcp`, `local`, `udp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Local => "local",
            Transport::Udp => "udp",
        }
    }

    /// The stream transport an address calls for.
    pub(crate) fn of(addr: &SockAddr) -> Transport {
        if addr.is_local() {
            Transport::Local
        } else {
            Transport::Tcp
        }
    }
}
