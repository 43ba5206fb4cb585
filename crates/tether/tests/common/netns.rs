//! Network namespaces for tests that need a network of their own: a link they
//! can cut, a loopback they can slow down. Each namespace is deleted when its
//! guard drops, also when the test fails.
//!
//! Only the calling thread ever enters a namespace (`setns` with
//! `CLONE_NEWNET` changes the thread, not the process), and addresses are
//! given only inside the test's own namespaces.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Why namespace tests cannot run here, if they cannot (not root, `ip` or
/// `tc` missing). Tests print it and return.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespace tests need root".into());
    }
    for tool in ["ip", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// A private network namespace, deleted when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace named after the process and `tag` (unique per test, so
    /// parallel tests don't collide), with its loopback up. `None`, with a
    /// notice, where the test cannot make one.
    pub fn new(tag: &str) -> Option<Netns> {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return None;
        }
        let name = format!("tether-{}-{tag}", std::process::id());
        // A namespace left behind by an earlier run that died with this pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipped: `ip netns add {name}` failed");
            return None;
        }
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// The namespace's file, for [`enter`].
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Move the calling thread into the namespace.
    pub fn enter(&self) {
        enter(&self.path());
    }

    /// `ip -n <ns> args...`; panics if it fails.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        assert!(ip(&all), "ip {all:?} failed");
    }

    /// `tc -n <ns> args...`; panics if it fails.
    pub fn tc(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        let status = Command::new("tc").args(&all).status().expect("tc runs");
        assert!(status.success(), "tc {all:?} failed");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete network namespace {}", self.name);
        }
    }
}

/// `ip args...`, true if it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Move the calling thread into the namespace at `path`: the sockets it opens
/// from now on live there.
pub fn enter(path: &str) {
    let ns = File::open(path).expect("namespace file");
    // SAFETY: a valid descriptor; CLONE_NEWNET only changes this thread's
    // network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Two namespaces joined by a veth pair: `a` (10.199.N.1/30 on its end `veth`)
/// and `b` (10.199.N.2/30). Both are deleted when dropped, and the pair with
/// them. The neighbours are static, so cutting the link never sends the
/// kernel into ARP (whose failure would end connections with EHOSTUNREACH
/// instead of the timeout under test).
pub struct VethPair {
    // Dropped in this order: the pair goes with either namespace.
    pub a: Netns,
    pub b: Netns,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

/// The name of each namespace's end of the pair.
pub const VETH: &str = "veth";
const MAC_A: &str = "02:74:68:00:00:01";
const MAC_B: &str = "02:74:68:00:00:02";

impl VethPair {
    pub fn new(tag: &str) -> Option<VethPair> {
        let a = Netns::new(&format!("{tag}-a"))?;
        let b = Netns::new(&format!("{tag}-b"))?;
        let net = (std::process::id() % 250) as u8;
        let addr_a = Ipv4Addr::new(10, 199, net, 1);
        let addr_b = Ipv4Addr::new(10, 199, net, 2);
        // Made inside `a`, its peer moved straight into `b`: nothing is ever
        // created in the namespace the tests run from.
        a.ip(&[
            "link", "add", VETH, "address", MAC_A, "type", "veth", "peer", "name", VETH, "address",
            MAC_B, "netns", &b.name,
        ]);
        for (ns, addr, peer, peer_mac) in [(&a, addr_a, addr_b, MAC_B), (&b, addr_b, addr_a, MAC_A)]
        {
            ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", VETH]);
            ns.ip(&["link", "set", VETH, "up"]);
            ns.ip(&[
                "neigh",
                "replace",
                &peer.to_string(),
                "lladdr",
                peer_mac,
                "dev",
                VETH,
                "nud",
                "permanent",
            ]);
        }
        Some(VethPair {
            a,
            b,
            addr_a,
            addr_b,
        })
    }

    /// Cut the link: from now on every packet `b` sends is dropped, so to
    /// `a` its peer has vanished without a word, while what `a` sends still
    /// leaves normally and goes unanswered.
    ///
    /// The drop is a token bucket whose bucket is smaller than any packet (tbf
    /// drops what can never fit), as `netem loss 100%` is not in every
    /// kernel. It sits on `b`'s side on purpose: a packet dropped by `a`'s own
    /// qdisc is reported to `a`'s TCP as local congestion, and a keepalive
    /// probe lost that way is retried without ever counting as unanswered.
    pub fn cut(&self) {
        cut(&self.b.name);
    }

    /// [`cut`](Self::cut), as a closure that owns what it needs (for a
    /// callback that outlives the borrow of the pair).
    pub fn cutter(&self) -> impl Fn() + 'static {
        let b = self.b.name.clone();
        move || cut(&b)
    }
}

/// Drop every packet the namespace `ns` sends on its end of the pair.
fn cut(ns: &str) {
    let args = [
        "-n", ns, "qdisc", "add", "dev", VETH, "root", "tbf", "rate", "1kbit", "burst", "10",
        "latency", "1ms",
    ];
    let status = Command::new("tc").args(args).status().expect("tc runs");
    assert!(status.success(), "tc {args:?} failed");
}
