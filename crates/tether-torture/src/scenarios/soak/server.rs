//! The soak's server: one tether loop echoing over TCP and TLS, whose
//! loop statistics (wake-ups, live sockets) and thread are visible from
//! outside.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, IoMux, LoopStats, MuxHandle, PeerInfo, RecvMode, SockAddr, SocketId,
    SocketUser, Timeouts, TlsContext,
};

/// Idle connections' deadline: far beyond the run, so an idle loop has no
/// deadline due while wake-ups are counted, and its wake-ups must be zero.
pub(crate) const IDLE: Duration = Duration::from_secs(3600);

/// Listeners the server has (sockets that are not connections).
pub(crate) const LISTENERS: usize = 2;

pub(crate) struct Server {
    pub(crate) tcp: String,
    pub(crate) tls: String,
    /// The loop thread's id, for its context switches.
    pub(crate) tid: Option<u64>,
    handle: MuxHandle<()>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub(crate) fn start(tls: TlsContext) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("soak-server".into())
            .spawn(move || {
                let mut mux = IoMux::new(()).expect("server loop");
                let mut open = |tls: Option<&TlsContext>| {
                    let l = mux.stream(Listener);
                    mux.bind(l, "127.0.0.1:0").expect("bind");
                    let t = Timeouts {
                        idle: Some(IDLE),
                        handshake: Some(Duration::from_secs(10)),
                        ..Timeouts::default()
                    };
                    mux.set_timeouts(l, t).expect("timeouts");
                    match tls {
                        Some(ctx) => mux.listen_tls(l, ctx).expect("listen_tls"),
                        None => mux.listen(l).expect("listen"),
                    }
                    match mux.local_addr(l) {
                        Some(SockAddr::Inet(a)) => a.to_string(),
                        other => panic!("listener address {other:?}"),
                    }
                };
                let tcp = open(None);
                let tls = open(Some(&tls));
                tx.send((tcp, tls, crate::procfs::thread_id(), mux.handle()))
                    .expect("started");
                mux.run().expect("server loop");
            })
            .expect("spawn server");
        let (tcp, tls, tid, handle) = rx.recv().expect("server started");
        Server {
            tcp,
            tls,
            tid,
            handle,
            thread,
        }
    }

    /// The loop's statistics now (asking wakes it once).
    pub(crate) fn stats(&self) -> Option<LoopStats> {
        let (tx, rx) = mpsc::channel();
        self.handle
            .post(move |cx| {
                let _ = tx.send(cx.stats());
            })
            .ok()?;
        rx.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// Wait until the loop holds `n` connections (bounded by `limit`).
    pub(crate) fn wait_connections(&self, n: usize, limit: Duration) -> usize {
        let until = std::time::Instant::now() + limit;
        loop {
            let now = self
                .stats()
                .map_or(0, |s| s.sockets.saturating_sub(LISTENERS));
            if now == n || std::time::Instant::now() >= until {
                return now;
            }
            // Polling the loop from outside, a few times a second.
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn stop(self) {
        self.handle.terminate();
        self.thread.join().expect("server thread");
    }
}

struct Listener;

impl SocketUser for Listener {
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
        Admission::Accept(Box::new(Echo))
    }

    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        if closed.reason != tether::Reason::Stopped {
            eprintln!("soak: listener ended: {}", closed.reason);
        }
    }
}

struct Echo;

impl SocketUser for Echo {
    fn wants_on_sent(&self) -> bool {
        false
    }

    fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
    }

    fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
        let _ = cx.send(s, data);
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
        let _ = cx.shutdown(s);
    }

    fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
}
