//! The TUN link: two network namespaces, a TUN device in each, and a relay
//! moving IP packets between the two devices through the shared decisions of
//! `link.rs`, one thread per direction.
//!
//! The devices are created in the caller's namespace and then moved; their
//! files stay with the relay, so the relay itself runs in no particular
//! namespace. A device without `IFF_VNET_HDR` gets no offloads: the stack
//! hands it packets of at most the MTU, and each one is one decision.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::link::{stop_threads, Link};
use crate::netns::{ip, Netns, NetnsGuard};
use crate::prng::Prng;
use crate::stats::Watched;
use crate::{sys, DirStats, Impairment, TunStats};

/// The longest a relay thread waits before it looks at the stop flag again,
/// which bounds how long `stop` and `Drop` take.
const POLL: Duration = Duration::from_millis(10);

/// Packets read in one go before due ones are released again, so a flood in
/// one direction does not hold back that direction's delay queue.
const BURST: usize = 64;

/// Larger than any packet a TUN device of MTU [`TunLink::MTU`] hands over.
const MAX_PACKET: usize = 65_536;

/// Numbers the namespaces of this process, so several links can coexist.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One end of a [`TunLink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Namespace A, address [`TunLink::ADDR_A`].
    A,
    /// Namespace B, address [`TunLink::ADDR_B`].
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dir {
    AToB,
    BToA,
}

/// What both relay threads and the handle share.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    cut: AtomicBool,
    stats: Watched<TunStats>,
}

impl Shared {
    fn update(&self, dir: Dir, f: impl FnOnce(&mut DirStats)) {
        self.stats.update(|stats| {
            f(match dir {
                Dir::AToB => &mut stats.a_to_b,
                Dir::BToA => &mut stats.b_to_a,
            })
        });
    }
}

/// Two network namespaces joined by an impairing IP link.
///
/// Namespace A holds a TUN device with [`ADDR_A`](Self::ADDR_A), namespace B
/// one with [`ADDR_B`](Self::ADDR_B), both in a /24, MTU 1500, up, with
/// loopback up and IPv6 off on the devices (so nothing but what the caller
/// sends crosses the link, and a seed replays the same decisions). Every IP
/// packet one side sends to the other passes through the relay, which applies
/// an [`Impairment`] per direction and can [cut](Self::set_cut) the link.
/// Each link is isolated from every other, so several can run at once with
/// the same addresses.
///
/// The namespaces are named `timp-<pid>-<n>-a` and `-b`, and removed when
/// the link is dropped, unwinding included (a process killed outright leaves
/// them behind: `ip netns del` them). Needs root, `/dev/net/tun` and `ip`;
/// [`unsupported`](Self::unsupported) says why not.
///
/// Code runs in a namespace through [`enter`](Self::enter) (this thread,
/// until the guard drops; sockets made meanwhile stay in the namespace),
/// [`spawn_in`](Self::spawn_in) (a new thread) or [`command`](Self::command)
/// (a process, through `ip netns exec`):
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
/// use tether_impair::{Impairment, Side, TunLink};
///
/// # if TunLink::unsupported().is_some() { return Ok(()); }
/// let lossy = Impairment::none().loss(0.1);
/// let link = TunLink::start(42, lossy, lossy)?;
/// let listener = {
///     let _in_a = link.enter(Side::A)?;
///     TcpListener::bind((TunLink::ADDR_A, 0))?
/// };
/// let port = listener.local_addr()?.port();
/// let client = link.spawn_in(Side::B, move || -> std::io::Result<()> {
///     TcpStream::connect((TunLink::ADDR_A, port))?.write_all(b"hello")
/// })?;
/// let mut got = String::new();
/// listener.accept()?.0.read_to_string(&mut got)?;
/// assert_eq!(got, "hello");
/// client.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TunLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    devs: [String; 2],
    /// Last: the namespaces go after the relay has closed the devices.
    ns: [Netns; 2],
}

impl TunLink {
    /// Namespace A's address on the link.
    pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    /// Namespace B's address on the link.
    pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    /// The prefix length of the link's subnet.
    pub const PREFIX: u8 = 24;
    /// Both devices' MTU.
    pub const MTU: u32 = 1500;

    /// Why a link cannot be made here (not root, no `/dev/net/tun`, no `ip`),
    /// or `None` if it can. For tests to skip with a reason.
    pub fn unsupported() -> Option<String> {
        if !sys::is_root() {
            return Some("not running as root".into());
        }
        if let Err(e) = File::open(sys::TUN_CLONE) {
            return Some(format!("cannot open {}: {e}", sys::TUN_CLONE));
        }
        if let Err(e) = ip(&["-V"]) {
            return Some(e.to_string());
        }
        None
    }

    /// Makes the namespaces and devices and starts the relay.
    ///
    /// `seed` fixes the decisions of both directions (each draws from its own
    /// generator derived from it, A to B first, as [`UdpRelay`](crate::UdpRelay)
    /// does client to target first). On error, whatever was made is removed.
    pub fn start(seed: u64, a_to_b: Impairment, b_to_a: Impairment) -> io::Result<TunLink> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let base = format!("timp-{}-{id}", std::process::id());
        let ns = [
            Netns::add(&format!("{base}-a"))?,
            Netns::add(&format!("{base}-b"))?,
        ];
        let (file_a, dev_a) = make_device(&ns[0], Self::ADDR_A)?;
        let (file_b, dev_b) = make_device(&ns[1], Self::ADDR_B)?;
        let mut link = TunLink {
            shared: Arc::new(Shared::default()),
            threads: Vec::new(),
            devs: [dev_a, dev_b],
            ns,
        };

        let (a, b) = (Arc::new(file_a), Arc::new(file_b));
        let mut root = Prng::new(seed);
        let dirs = [
            (Dir::AToB, Arc::clone(&a), Arc::clone(&b), a_to_b),
            (Dir::BToA, b, a, b_to_a),
        ];
        for (dir, input, output, imp) in dirs {
            let link_dir = Link::new(imp, Prng::new(root.next_u64()));
            let shared = Arc::clone(&link.shared);
            // On failure `link` drops here, which stops a thread already
            // started and removes the namespaces.
            let thread = thread::Builder::new()
                .name(format!("tether-impair-tun-{dir:?}"))
                .spawn(move || run(dir, &input, &output, link_dir, &shared))?;
            link.threads.push(thread);
        }
        Ok(link)
    }

    /// The name of `side`'s namespace (for `ip netns exec`, `ip -n`).
    pub fn netns(&self, side: Side) -> &str {
        self.ns[side.index()].name()
    }

    /// The name of `side`'s TUN device, inside its namespace.
    pub fn device(&self, side: Side) -> &str {
        &self.devs[side.index()]
    }

    /// `side`'s address on the link.
    pub fn addr(side: Side) -> Ipv4Addr {
        match side {
            Side::A => Self::ADDR_A,
            Side::B => Self::ADDR_B,
        }
    }

    /// Moves the calling thread into `side`'s namespace until the returned
    /// guard drops. Sockets made meanwhile belong to that namespace for good.
    pub fn enter(&self, side: Side) -> io::Result<NetnsGuard> {
        self.ns[side.index()].enter()
    }

    /// Runs `f` on a new thread inside `side`'s namespace. Errors if the
    /// thread cannot be made or cannot enter the namespace (then `f` does not
    /// run).
    pub fn spawn_in<T, F>(&self, side: Side, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.ns[side.index()].open()?;
        let (entered, result) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("tether-impair-in-{side:?}"))
            .spawn(move || {
                let outcome = sys::enter_netns(&ns);
                let failed = outcome.is_err();
                // The receiver waits for exactly this message.
                let _ = entered.send(outcome);
                if failed {
                    // Ends the thread without a value and without the panic
                    // message: the error went to the caller instead.
                    std::panic::resume_unwind(Box::new(()));
                }
                drop(ns);
                f()
            })?;
        match result.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("namespace thread ended before entering")),
        }
    }

    /// `ip netns exec <side's namespace> <program>`: add arguments and run
    /// it to have a process in the namespace.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.netns(side), program]);
        cmd
    }

    /// Cuts the link (`true`: every packet both ways is dropped, including
    /// those already queued when they fall due) or restores it. Takes effect
    /// at once, so a link can flap.
    pub fn set_cut(&self, cut: bool) {
        self.shared.cut.store(cut, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn stats(&self) -> TunStats {
        self.shared.stats.get()
    }

    /// Waits until `done` holds for the counters, or `timeout` passes;
    /// returns the counters that satisfied it, or `None` on timeout.
    pub fn wait_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&TunStats) -> bool,
    ) -> Option<TunStats> {
        self.shared.stats.wait(timeout, done)
    }

    /// Stops the relay and removes the devices and namespaces (as dropping
    /// the link does).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        stop_threads(&self.shared.stop, &mut self.threads);
    }
}

impl Drop for TunLink {
    fn drop(&mut self) {
        // The threads hold the device files: joining them closes the devices
        // before the fields (the namespaces last) drop.
        self.shutdown();
    }
}

/// Creates a TUN device here, moves it into `ns` and configures it there.
/// The device goes away if anything fails (its file is dropped).
fn make_device(ns: &Netns, addr: Ipv4Addr) -> io::Result<(File, String)> {
    // The kernel picks a free number, so concurrent links do not collide
    // in the creating namespace before the devices move.
    let (file, dev) = sys::open_tun("timp%d")?;
    let name = ns.name();
    ip(&["link", "set", "dev", &dev, "netns", name])?;
    disable_ipv6(ns, &dev)?;
    let cidr = format!("{addr}/{}", TunLink::PREFIX);
    let mtu = TunLink::MTU.to_string();
    ip(&["-n", name, "link", "set", "dev", "lo", "up"])?;
    ip(&["-n", name, "addr", "add", &cidr, "dev", &dev])?;
    ip(&["-n", name, "link", "set", "dev", &dev, "mtu", &mtu, "up"])?;
    Ok((file, dev))
}

/// Turns IPv6 off on `dev` so that the kernel sends nothing of its own
/// (router solicitations, MLD reports) over the link: the packets crossing
/// it are only the caller's, which keeps a seed's decisions on them.
fn disable_ipv6(ns: &Netns, dev: &str) -> io::Result<()> {
    let _inside = ns.enter()?;
    // Read through the calling thread's namespace, which is now `ns`.
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    match std::fs::write(path, "1") {
        // A kernel without IPv6 sends none.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// One direction's loop: release what is due, then wait for packets at most
/// until the next due time and take in what came.
fn run(dir: Dir, input: &File, output: &File, mut link: Link, shared: &Shared) {
    let mut buf = vec![0; MAX_PACKET];
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        while let Some(packet) = link.pop_due(now) {
            send(dir, output, &packet, shared);
        }
        let wait = link
            .next_due()
            .map_or(POLL, |due| due.saturating_duration_since(now).min(POLL));
        // An error here is EINTR-like or a device gone with its namespace:
        // either way, nothing to read; the stop flag ends the loop.
        if !sys::wait_readable(input, wait).unwrap_or(false) {
            continue;
        }
        for _ in 0..BURST {
            let n = match (&*input).read(&mut buf) {
                Ok(n) if n > 0 => n,
                // WouldBlock: drained. Other errors: try again after a wait.
                _ => break,
            };
            let cut = shared.cut.load(Ordering::SeqCst);
            shared.update(dir, |s| link.accept(&buf[..n], Instant::now(), cut, s));
        }
    }
}

/// Writes one due packet into the other device, or counts it dropped (cut,
/// or the write failed). Counted as forwarded before the write, as the UDP
/// relay does, so a packet the peer has seen is already counted.
fn send(dir: Dir, output: &File, packet: &[u8], shared: &Shared) {
    if shared.cut.load(Ordering::SeqCst) {
        return shared.update(dir, |s| s.dropped += 1);
    }
    shared.update(dir, |s| s.forwarded += 1);
    if (&*output).write(packet).is_err() {
        shared.update(dir, |s| {
            s.forwarded -= 1;
            s.dropped += 1;
        });
    }
}
