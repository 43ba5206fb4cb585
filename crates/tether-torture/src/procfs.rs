//! What the process holds, read from /proc: open descriptors, resident
//! memory, a thread's voluntary context switches (its wake-ups from sleep).

use std::fs;

/// Open file descriptors of this process.
pub(crate) fn fds() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process in bytes (VmRSS).
pub(crate) fn rss() -> u64 {
    status_field("/proc/self/status", "VmRSS:").map_or(0, |kb| kb * 1024)
}

/// The calling thread's id (as /proc/self/task names it).
pub(crate) fn thread_id() -> Option<u64> {
    // /proc/thread-self links to /proc/<pid>/task/<tid>.
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Voluntary context switches of thread `tid` of this process: each time it
/// slept and was woken.
pub(crate) fn voluntary_switches(tid: u64) -> Option<u64> {
    status_field(
        &format!("/proc/self/task/{tid}/status"),
        "voluntary_ctxt_switches:",
    )
}

fn status_field(path: &str, name: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_has_descriptors_memory_and_a_thread() {
        assert!(fds() >= 3);
        assert!(rss() > 0);
        let tid = thread_id().expect("thread id");
        let before = voluntary_switches(tid).expect("switches");
        // A sleep is a voluntary switch of this thread.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(voluntary_switches(tid).expect("switches") > before);
    }
}
