//! UDP over IPv4 and IPv6.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tether_proto::SockAddr;

use super::OpenError;

/// The largest UDP payload: 65,535 bytes of IP packet less the headers (20 for
/// IPv4, plus 8 for UDP; IPv6's payload length excludes its own header).
pub(crate) fn max_payload(to: &SocketAddr) -> usize {
    match to {
        SocketAddr::V4(_) => 65_507,
        SocketAddr::V6(_) => 65_527,
    }
}

/// Where a socket binds when it sends or connects before any bind: every
/// interface of the peer's family, on a port the system picks.
pub(crate) fn any_for(peer: &SocketAddr) -> SockAddr {
    SockAddr::Inet(match peer {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    })
}

pub(crate) fn bind(addr: &SockAddr) -> Result<mio::net::UdpSocket, OpenError> {
    let SockAddr::Inet(addr) = addr else {
        return Err(OpenError::Mismatch("a UDP socket needs an ip:port address"));
    };
    let sock = Socket::new(Domain::for_address(*addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(OpenError::Open)?;
    sock.set_nonblocking(true).map_err(OpenError::Open)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // "[::]" means every interface, IPv4 included, whatever the sysctl says.
        sock.set_only_v6(false).map_err(OpenError::Bind)?;
    }
    sock.bind(&(*addr).into()).map_err(OpenError::Bind)?;
    Ok(mio::net::UdpSocket::from_std(sock.into()))
}
