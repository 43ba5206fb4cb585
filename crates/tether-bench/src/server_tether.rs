//! The tether server: one `IoMux` on its own thread, the callback API as an
//! application would use it; or, for `--loops N`, N of them on N threads,
//! each with its own listener on one port (SO_REUSEPORT).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use tether::{
    Admission, Backend, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser, TlsInfo,
};

use crate::common::{unix_path, Net, Service, Spec, Started, Stats, Target, CHUNK};

/// The largest read asked for: tether reads into its one shared buffer, so
/// asking for much costs nothing per connection.
const RECV: usize = 64 * 1024;

struct Shared {
    stats: Arc<Stats>,
    service: Service,
    /// A TLS listener's connections are up at `on_tls_ready`, not `on_accepted`.
    tls: bool,
}

pub(crate) fn start(spec: Spec, stats: Arc<Stats>, backend: Backend) -> Started {
    // Many loops share a TCP port; a Unix path or a UDP socket is one loop's.
    let loops = if spec.net == Net::Tcp {
        spec.loops.max(1)
    } else {
        1
    };
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("tether-server".into())
        .spawn(move || {
            let (target, handle, mut mux) = open(&spec, &stats, loops > 1, None, backend);
            // The other loops bind the port the first one got.
            let port = match &target {
                Target::Tcp(a) => a.port(),
                _ => 0,
            };
            let mut handles = vec![handle];
            let mut others = Vec::new();
            for n in 1..loops {
                let (spec, stats) = (spec.clone(), stats.clone());
                let (started, up) = mpsc::channel();
                others.push(
                    std::thread::Builder::new()
                        .name(format!("tether-server-{n}"))
                        .spawn(move || {
                            let (_, handle, mut mux) =
                                open(&spec, &stats, true, Some(port), backend);
                            started.send(handle).expect("report");
                            mux.run().expect("tether loop");
                        })
                        .expect("spawn"),
                );
                handles.push(up.recv().expect("tether loop started"));
            }
            tx.send((target, handles)).expect("report");
            mux.run().expect("tether loop");
            if std::env::var_os("TETHER_BENCH_WAKEUPS").is_some() {
                // Waits on the ring are its io_uring_enter calls on the data
                // path; on epoll, its epoll_wait calls.
                eprintln!(
                    "tether-bench: {:?} loop woke {} times",
                    mux.backend(),
                    mux.stats().wakeups
                );
            }
            for other in others {
                let _ = other.join();
            }
        })
        .expect("spawn");
    let (target, handles) = rx.recv().expect("tether server started");
    let stop = move || handles.iter().for_each(|h| h.terminate());
    (target, Box::new(stop), thread)
}

/// One loop and its listener (with SO_REUSEPORT when `shared`, on `port`
/// when given, else on a port the system picks).
fn open(
    spec: &Spec,
    stats: &Arc<Stats>,
    shared: bool,
    port: Option<u16>,
    backend: Backend,
) -> (Target, tether::MuxHandle<Shared>, IoMux<Shared>) {
    let mut mux = IoMux::builder()
        .backend(backend)
        .build(Shared {
            stats: stats.clone(),
            service: spec.service,
            tls: spec.tls.is_some(),
        })
        .expect("tether loop");
    if mux.backend() != backend {
        eprintln!(
            "tether-bench: {backend:?} refused, running on {:?}",
            mux.backend()
        );
    }
    let target = match spec.net {
        Net::Udp => {
            let s = mux.udp(UdpEcho);
            mux.bind(s, "127.0.0.1:0").expect("bind");
            Target::Udp(inet(&mux, s))
        }
        Net::Tcp | Net::Unix => {
            let l = mux.stream(Listener);
            let path = (spec.net == Net::Unix).then(unix_path);
            let addr = match &path {
                Some(p) => format!("unix:{}", p.display()),
                None => format!("127.0.0.1:{}", port.unwrap_or(0)),
            };
            if shared {
                mux.set_reuse_port(l, true).expect("reuse port");
            }
            mux.bind(l, &addr).expect("bind");
            match &spec.tls {
                Some(pki) => mux.listen_tls(l, &pki.tether).expect("listen_tls"),
                None => mux.listen(l).expect("listen"),
            }
            match path {
                Some(p) => Target::Unix(p),
                None => Target::Tcp(inet(&mux, l)),
            }
        }
    };
    let handle = mux.handle();
    (target, handle, mux)
}

fn inet(mux: &IoMux<Shared>, s: SocketId) -> SocketAddr {
    match mux.local_addr(s) {
        Some(tether::SockAddr::Inet(a)) => a,
        other => panic!("unexpected local address {other:?}"),
    }
}

struct Listener;

impl SocketUser<Shared> for Listener {
    fn on_incoming(&mut self, cx: &mut Cx<Shared>, _: SocketId, _: &PeerInfo) -> Admission<Shared> {
        // Only a source paces itself by on_sent. Both kinds are empty, so
        // boxing one allocates nothing: what a connection costs is tether's.
        if cx.shared().service == Service::Source {
            Admission::Accept(Box::new(Conn::<true>))
        } else {
            Admission::Accept(Box::new(Conn::<false>))
        }
    }
    fn on_closed(&mut self, _: &mut Cx<Shared>, _: SocketId, _: &Closed) {}
}

/// One connection; what it does is the run's service. `PACED`: it wants
/// `on_sent` (a source writes on as the kernel takes its chunks). A type
/// parameter rather than a field, so the user object is empty and its box
/// no allocation (a one-byte field cost a 32-byte heap chunk per connection,
/// counted in idle-memory as if it were tether's).
struct Conn<const PACED: bool>;

impl<const PACED: bool> Conn<PACED> {
    fn up(cx: &mut Cx<Shared>, s: SocketId) {
        cx.shared().stats.up();
        match cx.shared().service {
            Service::Echo | Service::Sink => {
                let _ = cx.recv(s, RECV, RecvMode::Partial);
            }
            Service::Source => Self::produce(cx, s),
        }
    }

    /// Write chunks while the kernel takes them whole; the `on_sent` of the
    /// one that had to wait says when to go on.
    fn produce(cx: &mut Cx<Shared>, s: SocketId) {
        while cx.unsent(s) == 0 && cx.send(s, &CHUNK).is_ok() {}
    }
}

impl<const PACED: bool> SocketUser<Shared> for Conn<PACED> {
    fn on_accepted(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        cx.shared().stats.accepted();
        if !cx.shared().tls {
            Self::up(cx, s);
        }
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Shared>, s: SocketId, _: &TlsInfo) {
        Self::up(cx, s);
    }
    fn on_received(&mut self, cx: &mut Cx<Shared>, s: SocketId, data: &[u8]) {
        match cx.shared().service {
            Service::Echo => {
                let _ = cx.send(s, data);
            }
            Service::Sink => cx.shared().stats.bytes(data.len()),
            Service::Source => {}
        }
        let _ = cx.recv(s, RECV, RecvMode::Partial);
    }
    fn wants_on_sent(&self) -> bool {
        PACED
    }
    fn on_sent(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        Self::produce(cx, s);
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Shared>, s: SocketId, _: Option<&[u8]>) {
        let _ = cx.shutdown(s);
    }
    fn on_closed(&mut self, cx: &mut Cx<Shared>, _: SocketId, _: &Closed) {
        cx.shared().stats.closed();
    }
}

/// Echoes each datagram to where it came from.
struct UdpEcho;

impl SocketUser<Shared> for UdpEcho {
    fn on_bound(&mut self, cx: &mut Cx<Shared>, s: SocketId, _: &tether::SockAddr) {
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_received_from(
        &mut self,
        cx: &mut Cx<Shared>,
        s: SocketId,
        data: &[u8],
        from: SocketAddr,
    ) {
        let _ = cx.send_to(s, data, from);
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_closed(&mut self, _: &mut Cx<Shared>, _: SocketId, _: &Closed) {}
}
