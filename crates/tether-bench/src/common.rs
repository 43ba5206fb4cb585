//! What the servers, the load generator and the scenarios share.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::tlsio::Pki;

/// What a server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// Write back what arrives; answer the peer's end with ours.
    Echo,
    /// Read and count; answer the peer's end with ours.
    Sink,
    /// Write 64 KiB chunks for as long as the peer stays.
    Source,
}

/// Which transport a server listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Net {
    Tcp,
    Unix,
    Udp,
}

/// Where a server listens.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Udp(SocketAddr),
}

impl Target {
    /// The address as tether (and the command line) writes it.
    pub(crate) fn text(&self) -> String {
        match self {
            Target::Tcp(a) | Target::Udp(a) => a.to_string(),
            Target::Unix(p) => format!("unix:{}", p.display()),
        }
    }

    pub(crate) fn parse(s: &str, udp: bool) -> Option<Target> {
        if let Some(path) = s.strip_prefix("unix:") {
            return Some(Target::Unix(PathBuf::from(path)));
        }
        let addr = s.parse().ok()?;
        Some(if udp {
            Target::Udp(addr)
        } else {
            Target::Tcp(addr)
        })
    }
}

/// What a server is asked to be.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) net: Net,
    pub(crate) service: Service,
    /// TLS with these certificates (TCP only).
    pub(crate) tls: Option<Arc<Pki>>,
    /// Event loops, each on its own thread with its own listener on the one
    /// port (SO_REUSEPORT). Only the tether server takes more than one, and
    /// only over TCP; the others always run one.
    pub(crate) loops: usize,
}

/// Counters every server keeps the same way (relaxed atomics: one add per
/// event, nothing on the byte path but `bytes`, once per read).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections taken from the listener.
    pub(crate) accepted: AtomicU64,
    /// Connections up (accepted; for TLS, handshake over).
    pub(crate) up: AtomicU64,
    /// Connections the server closed (every accepted one, in the end).
    pub(crate) closed: AtomicU64,
    /// Bytes a sink took in.
    pub(crate) bytes: AtomicU64,
}

impl Stats {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn up(&self) {
        self.up.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a source writes, again and again.
pub(crate) static CHUNK: [u8; 64 * 1024] = [0x5a; 64 * 1024];

/// A fresh Unix socket path for one server.
pub(crate) fn unix_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("tether-bench-{}-{n}.sock", std::process::id()))
}

/// A listening socket for the servers that do not bind through their own API
/// (mio, tokio, std): the same options tether's listener has — SO_REUSEADDR,
/// TCP_NODELAY (inherited by accepted sockets), a backlog of 1024.
pub(crate) fn std_listener(net: Net) -> std::io::Result<(socket2::Socket, Target)> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    match net {
        Net::Tcp => {
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
            let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            sock.set_reuse_address(true)?;
            sock.set_nodelay(true)?;
            sock.bind(&addr.into())?;
            sock.listen(1024)?;
            let local = sock.local_addr()?.as_socket().expect("inet");
            Ok((sock, Target::Tcp(local)))
        }
        Net::Unix => {
            let path = unix_path();
            let _ = std::fs::remove_file(&path);
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            sock.bind(&SockAddr::unix(&path)?)?;
            sock.listen(1024)?;
            Ok((sock, Target::Unix(path)))
        }
        Net::Udp => {
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
            let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            sock.bind(&addr.into())?;
            let local = sock.local_addr()?.as_socket().expect("inet");
            Ok((sock, Target::Udp(local)))
        }
    }
}

/// What each server module's `start` returns: where it listens, how to stop
/// it, its thread.
pub(crate) type Started = (
    Target,
    Box<dyn FnOnce() + Send>,
    std::thread::JoinHandle<()>,
);
