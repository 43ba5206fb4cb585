//! The raw socket options tether needs that no crate wraps: the only `unsafe`
//! in the driver, kept in one place so it can be read in one sitting.
//!
//! Linux only, like the rest of tether: `TCP_REPAIR`, `FIONREAD` and `SIOCOUTQ`
//! have no portable equivalents.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

/// Bytes in the kernel's receive queue that nobody has read.
///
/// Counted into `Closed.unread` when a connection is aborted, so that input
/// thrown away by the kernel is not thrown away silently.
pub(crate) fn pending_in(fd: &impl AsRawFd) -> u64 {
    ioctl_count(fd.as_raw_fd(), libc::FIONREAD)
}

/// Bytes in the kernel's send queue that the peer has not taken (for TCP: not
/// acknowledged). An abort loses them, so they belong in `Closed.unsent`.
/// TCP only: for a Unix socket this is the kernel memory (not bytes) of what
/// already sits in the peer's receive queue, which a close does not lose.
pub(crate) fn pending_out(fd: &impl AsRawFd) -> u64 {
    ioctl_count(fd.as_raw_fd(), libc::TIOCOUTQ)
}

fn ioctl_count(fd: RawFd, request: libc::Ioctl) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one c_int through the pointer, which is valid
    // for the duration of the call; a bad descriptor only yields an error.
    let rc = unsafe { libc::ioctl(fd, request, &mut n as *mut libc::c_int) };
    if rc == 0 {
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Bytes of the datagrams waiting in a UDP socket's receive queue, read and
/// dropped so that an abort can count them in `Closed.unread`. MSG_TRUNC makes
/// each read return the datagram's real length without copying it.
pub(crate) fn drain_datagrams(fd: &impl AsRawFd) -> u64 {
    let mut total = 0;
    let mut byte = 0u8;
    // Bounded: a flood must not hold the loop.
    for _ in 0..65_536 {
        // SAFETY: the buffer is one writable byte, and its length says so.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                &mut byte as *mut u8 as *mut libc::c_void,
                1,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// Make the next `close` of a TCP socket send RST instead of FIN (SO_LINGER 0).
pub(crate) fn set_abortive(fd: &impl AsFd) -> io::Result<()> {
    socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO))
}

/// Put a TCP socket into repair mode, so that closing it sends nothing at all.
///
/// This is how a connection is forgotten without the peer being told. It needs
/// CAP_NET_ADMIN; without it the call fails with EPERM and the caller falls back.
pub(crate) fn set_repair(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: TCP_REPAIR takes one c_int; the pointer and length describe it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_REPAIR,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
