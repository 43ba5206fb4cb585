//! What idle-memory reads about another process from /proc: its CPU time,
//! its loop thread's context switches, and the kernel's slab memory.
#![forbid(unsafe_code)]

use std::fs;

/// CPU time of every thread of process `pid`, user and system, in ns: the
/// sum of the threads' run time in `/proc/PID/task/TID/schedstat` (ns
/// precision), or where that file is missing `utime + stime` of
/// `/proc/PID/stat` (clock ticks, 10 ms).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    let mut found = false;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += ns;
                found = true;
            }
        }
    }
    if found {
        return total;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from state
    // (field 3): utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks * (1_000_000_000 / crate::sys::clock_ticks())
}

/// The thread of process `pid` named `name` (servers name their loop thread).
pub(crate) fn thread_named(pid: u32, name: &str) -> Option<u32> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|t| fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|t| t.file_name().to_str()?.parse().ok())
}

/// Context switches of one thread so far, voluntary and not: each time it
/// slept in epoll_wait and woke, and each time it was preempted.
pub(crate) fn switches(pid: u32, tid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt_switches")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// The slab caches every TCP socket a process holds takes an object of:
/// the socket itself, its inode, its file and dentry, and (server side) the
/// epoll entry.
const SOCKET_CACHES: [&str; 5] = ["TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi"];

/// Bytes of the pages the kernel's socket-related slab caches hold now
/// (slabs × pages per slab × page size, from /proc/slabinfo; needs root, 0
/// without). Machine-wide: other processes' files move it too.
pub(crate) fn socket_slab_bytes() -> u64 {
    let page = crate::sys::page_size();
    fs::read_to_string("/proc/slabinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if !SOCKET_CACHES.contains(f.first()?) {
                return None;
            }
            // name active num objsize perslab pagesperslab : tunables l b s
            // : slabdata active_slabs num_slabs shared
            let pages_per_slab: u64 = f.get(5)?.parse().ok()?;
            let slabs: u64 = f.get(14)?.parse().ok()?;
            Some(slabs * pages_per_slab * page)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The thread is asleep (state S), so waking it is a context switch.
    fn asleep(pid: u32, tid: u32) -> bool {
        let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
    }

    #[test]
    fn a_named_threads_wake_ups_are_counted() {
        let (tx, rx) = mpsc::channel::<()>();
        let (back_tx, back) = mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("procfs-probe".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    back_tx.send(()).expect("back");
                }
            })
            .expect("spawn");
        // Its first answer: it runs, and has named itself.
        tx.send(()).expect("send");
        back.recv().expect("answer");
        let pid = std::process::id();
        let tid = thread_named(pid, "procfs-probe").expect("the thread by its name");
        let before = switches(pid, tid);
        // Twenty-one times: wait until it sleeps, wake it. A switch is
        // counted as the thread goes to sleep, so by the last wake the twenty
        // sleeps before it are all counted.
        for _ in 0..21 {
            while !asleep(pid, tid) {
                std::thread::yield_now();
            }
            tx.send(()).expect("send");
            back.recv().expect("answer");
        }
        let woke = switches(pid, tid) - before;
        assert!(woke >= 20, "20 wake-ups counted as {woke}");
        drop(tx);
        t.join().expect("join");
        assert_eq!(thread_named(pid, "no-such-thread"), None);
    }

    #[test]
    fn cpu_time_of_a_process_grows_as_it_works() {
        let pid = std::process::id();
        let before = cpu_ns(pid);
        // Spin for 50 ms of this thread's own CPU time, however busy the
        // machine is.
        let start = crate::sys::thread_cpu();
        let mut x = 0u64;
        while crate::sys::thread_cpu() - start < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = cpu_ns(pid) - before;
        // schedstat may lag the running thread by a scheduler tick.
        assert!(used >= 40_000_000, "50 ms of CPU counted as {used} ns");
    }
}
