//! The few system calls std does not offer: creating a TUN device, moving a
//! thread into a network namespace, waiting for a file to become readable,
//! and the effective user id. Every `unsafe` block of the crate is here.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Where the kernel's TUN/TAP clone device lives.
pub(crate) const TUN_CLONE: &str = "/dev/net/tun";

/// Opens a new TUN device (IP packets, no packet-information header, no
/// virtio-net header, so no offloads) in the calling thread's network
/// namespace. `pattern` may hold a `%d` for the kernel to fill in with a
/// free number. Returns the device's file, non-blocking, and its name.
///
/// The device lives as long as the file is open (it is not persistent).
pub(crate) fn open_tun(pattern: &str) -> io::Result<(File, String)> {
    let mut ifr = ifreq_named(pattern)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(TUN_CLONE)?;
    // Writing a `Copy` field of a union is safe; the kernel reads the flags
    // as a short, which is what `ifru_flags` is.
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `ifr` is a
    // live, exclusively borrowed `libc::ifreq` of the kernel's layout; the fd
    // is open for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel wrote the chosen name back, NUL-terminated within IFNAMSIZ.
    let name: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let name = String::from_utf8(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "TUN name is not UTF-8"))?;
    Ok((file, name))
}

/// An all-zero `ifreq` with `name` in `ifr_name`.
fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    if name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long or holds a NUL",
        ));
    }
    // SAFETY: `ifreq` is plain data (integers, byte arrays, a union of those
    // and a raw pointer); all zeroes is a valid value of every field.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

/// Moves the calling thread (only it) into the network namespace `ns` refers
/// to (an open `/var/run/netns/<name>` or `/proc/thread-self/ns/net`).
pub(crate) fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns only reads its two integer arguments; an fd that is not
    // a network namespace is refused with EINVAL.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `file` is readable or `timeout` passes; true if readable.
/// An interrupted wait counts as a timeout (the caller loops anyway).
pub(crate) fn wait_readable(file: &File, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // ppoll, not poll: nanosecond timeouts, so a 5 ms delay is not rounded
    // to whole milliseconds and a due packet is not waited for too long.
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one live `pollfd` and one live `timespec`, both borrowed for
    // the call only; a null signal mask leaves the mask unchanged.
    let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(err),
        };
    }
    Ok(rc > 0 && pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
}

/// True if the process runs with effective user id 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
