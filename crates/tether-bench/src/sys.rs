//! The only place with `unsafe`: the few libc calls std does not wrap.
#![allow(unsafe_code)]

use std::time::Duration;

/// Raise the soft limit on open descriptors as far as the hard limit allows;
/// returns the soft limit in force afterwards.
pub(crate) fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer to a local struct.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of the whole process (every thread, user and system), in ns precision.
pub(crate) fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The size of a memory page.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Let `bind` on this socket take an address without reserving a port: the
/// port is chosen at `connect`, for the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT),
/// so clients bound to one source address are not limited by ports other
/// destinations (or TIME_WAIT sockets to them) hold.
pub(crate) fn bind_address_no_port(sock: &impl std::os::fd::AsRawFd) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor the caller owns, with a pointer to a
    // local int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ask the kernel to kill this process when its parent dies, so a child of
/// a benchmark never outlives it (also when the parent is killed).
pub(crate) fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// `shutdown(fd, SHUT_RDWR)` on a socket known only by its descriptor (the
/// monoio server's connections, whose type lends no `AsFd`): what the socket
/// is waiting for (a read, a write) ends at once.
pub(crate) fn shutdown_both(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown takes a descriptor and a flag, no pointers; the caller
    // holds the socket open, so the descriptor is not another file's.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
