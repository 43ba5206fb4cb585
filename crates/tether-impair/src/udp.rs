//! The UDP relay: a front socket for the client, a back socket for the target,
//! and one thread per direction.
//!
//! One thread per direction keeps each loop a plain blocking receive whose
//! timeout is the time to the next due datagram; no poller is needed and the
//! two directions never wait on each other.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::link::{stop_threads, Link};
use crate::prng::Prng;
use crate::stats::Watched;
use crate::{DirStats, Impairment, Stats};

/// The longest a relay thread blocks before it looks at the stop flag again,
/// which bounds how long `stop` and `Drop` take.
const POLL: Duration = Duration::from_millis(10);

/// Large enough for any UDP datagram.
const MAX_DATAGRAM: usize = 65_536;

/// What both relay threads and the handle share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    cut: AtomicBool,
    /// The most recent client address; answers go there.
    client: Mutex<Option<SocketAddr>>,
    stats: Watched<Stats>,
}

impl Shared {
    fn update(&self, dir: Dir, f: impl FnOnce(&mut DirStats)) {
        self.stats.update(|stats| {
            f(match dir {
                Dir::ToTarget => &mut stats.to_target,
                Dir::ToClient => &mut stats.to_client,
            })
        });
    }
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    ToTarget,
    ToClient,
}

/// A UDP relay between one client and a target, impairing each direction.
///
/// Datagrams the client sends to [`addr`](Self::addr) go to the target from
/// a second socket; the target's answers to that socket go back to the most
/// recent client address. It runs two threads, one per direction; dropping
/// the relay (or [`stop`](Self::stop)) stops and joins them, within about
/// 10 ms.
///
/// ```
/// use std::net::UdpSocket;
/// use std::time::Duration;
/// use tether_impair::{Impairment, UdpRelay};
///
/// let target = UdpSocket::bind("127.0.0.1:0")?;
/// target.set_read_timeout(Some(Duration::from_secs(5)))?;
/// let twice = Impairment::none().duplicate(1.0);
/// let relay = UdpRelay::start(target.local_addr()?, 42, twice, Impairment::none())?;
///
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"hello", relay.addr())?;
/// let mut buf = [0; 16];
/// // Duplicated: it arrives twice.
/// assert_eq!(target.recv(&mut buf)?, 5);
/// assert_eq!(target.recv(&mut buf)?, 5);
/// assert_eq!(relay.stats().to_target.duplicated, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpRelay {
    front: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpRelay {
    /// Starts a relay to `target`, its front bound on `127.0.0.1:0`.
    ///
    /// `seed` fixes the decisions of both directions (each draws from its own
    /// generator derived from it).
    pub fn start(
        target: SocketAddr,
        seed: u64,
        to_target: Impairment,
        to_client: Impairment,
    ) -> io::Result<UdpRelay> {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let back = match target {
            SocketAddr::V4(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?,
            SocketAddr::V6(_) => UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?,
        };
        // Connected: only the target's datagrams come back in.
        back.connect(target)?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared::default());
        let mut root = Prng::new(seed);
        let mut relay = UdpRelay {
            front: addr,
            shared,
            threads: Vec::new(),
        };

        let links = [
            (
                Dir::ToTarget,
                front.try_clone()?,
                back.try_clone()?,
                to_target,
            ),
            (Dir::ToClient, back, front, to_client),
        ];
        for (dir, input, output, imp) in links {
            let link = Link::new(imp, Prng::new(root.next_u64()));
            let shared = Arc::clone(&relay.shared);
            let name = format!("tether-impair-udp-{dir:?}");
            // On failure `relay` drops here, which stops a thread already started.
            let thread = thread::Builder::new()
                .name(name)
                .spawn(move || run(dir, &input, &output, link, &shared))?;
            relay.threads.push(thread);
        }
        Ok(relay)
    }

    /// The front address: clients send here.
    pub fn addr(&self) -> SocketAddr {
        self.front
    }

    /// Cuts the link (`true`: every datagram both ways is dropped, including
    /// those already queued when they fall due) or restores it.
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats.get()
    }

    /// Waits until `done` holds for the counters, or `timeout` passes; returns
    /// the counters that satisfied it, or `None` on timeout. Lets a test wait
    /// for the relay to have taken in what it sent without sleeping.
    pub fn wait_stats(&self, timeout: Duration, done: impl Fn(&Stats) -> bool) -> Option<Stats> {
        self.shared.stats.wait(timeout, done)
    }

    /// Stops the relay and joins its threads (as dropping it does).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        stop_threads(&self.shared.stop, &mut self.threads);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One direction's loop: release what is due, then wait for input at most
/// until the next due time.
fn run(dir: Dir, input: &UdpSocket, output: &UdpSocket, mut link: Link, shared: &Shared) {
    let mut buf = vec![0; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while let Some(data) = link.pop_due(now) {
            send(dir, output, &data, shared);
        }
        let wait = link
            .next_due()
            .map_or(POLL, |due| due.saturating_duration_since(now).min(POLL))
            // A zero read timeout is an error; wait at least a little.
            .max(Duration::from_micros(50));
        if input.set_read_timeout(Some(wait)).is_err() {
            continue;
        }
        // Errors are timeouts, or ICMP errors reported on the connected back
        // socket (target not yet listening): nothing to relay, carry on.
        if let Ok((n, from)) = input.recv_from(&mut buf) {
            if let Dir::ToTarget = dir {
                *shared.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(from);
            }
            let cut = shared.cut.load(Ordering::SeqCst);
            shared.update(dir, |s| link.accept(&buf[..n], Instant::now(), cut, s));
        }
    }
}

/// Sends one due datagram, or counts it dropped (cut, no client yet, error).
///
/// Counted as forwarded *before* the send, so a datagram the peer has
/// received is always in the counters already; a failed send moves it to
/// dropped.
fn send(dir: Dir, output: &UdpSocket, data: &[u8], shared: &Shared) {
    if shared.cut.load(Ordering::SeqCst) {
        return shared.update(dir, |s| s.dropped += 1);
    }
    let to = match dir {
        Dir::ToTarget => None,
        Dir::ToClient => match *shared.client.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(client) => Some(client),
            None => return shared.update(dir, |s| s.dropped += 1),
        },
    };
    shared.update(dir, |s| s.forwarded += 1);
    let sent = match to {
        None => output.send(data),
        Some(client) => output.send_to(data, client),
    };
    if sent.is_err() {
        shared.update(dir, |s| {
            s.forwarded -= 1;
            s.dropped += 1;
        });
    }
}
