//! Host names, resolved off the loop: the system resolver (`getaddrinfo`,
//! through `ToSocketAddrs`) blocks, so it runs on a small pool of helper
//! threads shared by every loop of the process, and each answer is handed to
//! a callback that posts it back to the loop that asked.
//!
//! The pool starts no thread until a name is resolved, grows to at most
//! [`THREADS`] while lookups wait, and a thread left idle for [`IDLE`] ends.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// At most this many lookups run at once, process-wide; more wait their turn.
pub(crate) const THREADS: usize = 4;

/// A helper thread with nothing to do for this long ends.
const IDLE: Duration = Duration::from_secs(30);

/// Where a lookup's answer goes: every address the name has, in the
/// resolver's order, or why there is none.
pub(crate) type Reply = Box<dyn FnOnce(io::Result<Vec<SocketAddr>>) + Send>;

struct Job {
    host: String,
    port: u16,
    reply: Reply,
}

struct Pool {
    state: Mutex<State>,
    work: Condvar,
}

struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        jobs: VecDeque::new(),
        threads: 0,
        idle: 0,
    }),
    work: Condvar::new(),
};

/// Resolve `host` (a name, or an IPv6 address scoped by interface name) with
/// `port` on a helper thread; `reply` gets the answer there.
pub(crate) fn resolve(host: String, port: u16, reply: Reply) {
    let mut state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
    state.jobs.push_back(Job { host, port, reply });
    if state.idle > 0 || state.threads >= THREADS {
        POOL.work.notify_one();
        return;
    }
    state.threads += 1;
    drop(state);
    let spawned = std::thread::Builder::new()
        .name("tether-resolve".into())
        .spawn(work);
    if let Err(e) = spawned {
        // No thread: the job just queued is answered here, with why.
        let mut state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
        state.threads -= 1;
        let job = if state.threads == 0 {
            state.jobs.pop_back()
        } else {
            None
        };
        drop(state);
        if let Some(job) = job {
            (job.reply)(Err(e));
        }
    }
}

/// A helper thread: lookups until none came for `IDLE`.
fn work() {
    loop {
        let mut state = POOL.state.lock().unwrap_or_else(|e| e.into_inner());
        let job = loop {
            if let Some(job) = state.jobs.pop_front() {
                break job;
            }
            state.idle += 1;
            let (next, waited) = POOL
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        };
        drop(state);
        let answer = lookup(&job.host, job.port);
        (job.reply)(answer);
    }
}

/// The system resolver's addresses for `host`, or its error; a name with no
/// address at all is an error too.
pub(crate) fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no address"),
        ));
    }
    Ok(addrs)
}
