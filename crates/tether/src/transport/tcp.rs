//! TCP over IPv4 and IPv6.

use std::net::{Ipv6Addr, SocketAddr};

use std::time::Duration;

use socket2::{Domain, Protocol, Socket};
use tether_proto::SockAddr;

use super::{new_socket, start_connect, OpenError, Stream};

/// Where a listener binds when the caller named no address: every interface,
/// IPv4 and IPv6 alike, on a port the system picks.
pub(crate) fn any() -> SockAddr {
    SockAddr::Inet(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)))
}

fn inet(addr: &SockAddr) -> Result<SocketAddr, OpenError> {
    match addr {
        SockAddr::Inet(inet) => Ok(*inet),
        _ => Err(OpenError::Mismatch("a TCP socket needs an ip:port address")),
    }
}

fn open(addr: SocketAddr) -> Result<Socket, OpenError> {
    let sock = new_socket(Domain::for_address(addr), Some(Protocol::TCP))?;
    // Small request/response exchanges are the common case; Nagle would hold
    // each answer back for an ACK. Accepted sockets inherit it from the listener.
    sock.set_nodelay(true).map_err(OpenError::Open)?;
    Ok(sock)
}

/// TCP keepalive: after `idle` without traffic, probe every `interval`; after
/// `count` unanswered probes the connection is dead and closes with `Lost`
/// (ETIMEDOUT).
///
/// The kernel counts both times in whole seconds, at least one: a shorter or
/// fractional time is rounded up (500 ms probes every second), not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Quiet time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before giving up.
    pub count: u32,
}

/// TCP keepalive on (with its timings) or off.
pub(crate) fn set_keepalive(
    fd: &impl std::os::fd::AsFd,
    keepalive: Option<Keepalive>,
) -> std::io::Result<()> {
    let sock = socket2::SockRef::from(fd);
    match keepalive {
        None => sock.set_keepalive(false),
        Some(k) => sock.set_tcp_keepalive(
            &socket2::TcpKeepalive::new()
                .with_time(whole_secs(k.idle))
                .with_interval(whole_secs(k.interval))
                .with_retries(k.count),
        ),
    }
}

/// `d` rounded up to whole seconds, at least one: the kernel's unit for
/// keepalive times, which would truncate 500 ms to an invalid 0.
fn whole_secs(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs.max(1))
}

/// How long sent data may stay unacknowledged (TCP_USER_TIMEOUT).
pub(crate) fn set_user_timeout(
    fd: &impl std::os::fd::AsFd,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<()> {
    socket2::SockRef::from(fd).set_tcp_user_timeout(timeout)
}

/// Bind a new TCP socket to `addr`. With `reuse_port`, SO_REUSEPORT is set
/// before the bind, so that other sockets of the same user that set it too may
/// bind the same address and port, and the kernel spreads incoming connections
/// among their listeners.
pub(crate) fn bind(addr: &SockAddr, reuse_port: bool) -> Result<Socket, OpenError> {
    let addr = inet(addr)?;
    let sock = open(addr)?;
    // A restarted server must be able to bind while old connections sit in
    // TIME_WAIT; this does not let two live listeners share a port.
    sock.set_reuse_address(true).map_err(OpenError::Bind)?;
    if reuse_port {
        // Only between creating and binding does it count.
        sock.set_reuse_port(true).map_err(OpenError::Bind)?;
    }
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // "[::]" means every interface, IPv4 included, whatever the sysctl says.
        sock.set_only_v6(false).map_err(OpenError::Bind)?;
    }
    sock.bind(&addr.into()).map_err(OpenError::Bind)?;
    Ok(sock)
}

pub(crate) fn connect(addr: &SockAddr, bound: Option<Socket>) -> Result<Stream, OpenError> {
    let addr = inet(addr)?;
    let sock = match bound {
        Some(sock) => {
            if sock.domain().ok() != Some(Domain::for_address(addr)) {
                return Err(OpenError::Mismatch(
                    "the bound address and the peer's are not of the same IP family",
                ));
            }
            sock
        }
        None => open(addr)?,
    };
    start_connect(&sock, &addr.into())?;
    Ok(Stream::Tcp(mio::net::TcpStream::from_std(sock.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_times_are_rounded_up_to_whole_seconds() {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        let k = Keepalive {
            idle: Duration::from_millis(500),
            interval: Duration::from_millis(1500),
            count: 2,
        };
        set_keepalive(&sock, Some(k)).expect("sub-second times are taken");
        assert_eq!(sock.keepalive_time().unwrap(), Duration::from_secs(1));
        assert_eq!(sock.keepalive_interval().unwrap(), Duration::from_secs(2));
        assert_eq!(sock.keepalive_retries().unwrap(), 2);
        assert!(sock.keepalive().unwrap());
    }
}
