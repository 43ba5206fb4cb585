//! The server under attack: one tether loop, one listener per attack (so
//! each connection's attack is known by where it came in) and one for the
//! good clients, all with short handshake and idle timeouts. Every
//! connection's end is logged with its attack and how long it lived.

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tether::{
    Admission, Closed, Cx, HttpOptions, IoMux, MuxHandle, PeerInfo, RecvMode, Request, Response,
    SockAddr, SocketId, SocketUser, Timeouts, TlsContext,
};

use crate::check::Ending;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Echo what comes, end when the peer ends.
    Echo,
    /// Send as fast as the peer takes, forever (paced by `unsent`).
    Source,
    /// HTTP mode: 200 "ok" to every request.
    Http,
}

/// How a listener's connections are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub(crate) tag: &'static str,
    pub(crate) tls: bool,
    pub(crate) framed: bool,
    pub(crate) service: Service,
    /// At most this many connections at once (the rest wait in the backlog).
    pub(crate) max: Option<u32>,
}

/// One connection's end.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) tag: &'static str,
    pub(crate) ending: Ending,
    pub(crate) lived: Duration,
    /// Source: the most `unsent` ever was.
    pub(crate) max_unsent: u64,
}

/// Ends so far, shared with the coordinator (which waits on the condvar).
#[derive(Debug, Default)]
pub(crate) struct Ends {
    pub(crate) list: Mutex<Vec<Ended>>,
    pub(crate) changed: Condvar,
}

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) handshake: Duration,
    pub(crate) idle: Duration,
    /// What a source queues at once (the application's own bound).
    pub(crate) queued: usize,
}

pub(crate) struct Server {
    pub(crate) addrs: Vec<(&'static str, String)>,
    pub(crate) handle: MuxHandle<()>,
    pub(crate) thread: JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Server {
    pub(crate) fn addr(&self, tag: &str) -> &str {
        &self
            .addrs
            .iter()
            .find(|(t, _)| *t == tag)
            .expect("a listener per tag")
            .1
    }
}

pub(crate) fn start(specs: Vec<Spec>, tls: TlsContext, bounds: Bounds, ends: Arc<Ends>) -> Server {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("hostile-server".into())
        .spawn(move || {
            let mut mux = IoMux::new(()).expect("server loop");
            let mut addrs = Vec::new();
            for spec in specs {
                let l = mux.stream(Listener {
                    spec,
                    bounds,
                    ends: ends.clone(),
                });
                mux.bind(l, "127.0.0.1:0").expect("bind");
                if spec.framed {
                    mux.set_framing(l, b"").expect("framing");
                }
                let t = Timeouts {
                    handshake: Some(bounds.handshake),
                    idle: Some(bounds.idle),
                    ..Timeouts::default()
                };
                mux.set_timeouts(l, t).expect("timeouts");
                if spec.tls {
                    mux.listen_tls(l, &tls).expect("listen_tls");
                } else {
                    mux.listen(l).expect("listen");
                }
                if spec.service == Service::Http {
                    mux.set_http(l, HttpOptions::default()).expect("http");
                }
                if spec.max.is_some() {
                    mux.max_connections(l, spec.max).expect("max connections");
                }
                let addr = match mux.local_addr(l) {
                    Some(SockAddr::Inet(a)) => a.to_string(),
                    other => panic!("listener address {other:?}"),
                };
                addrs.push((spec.tag, addr));
            }
            tx.send((addrs, mux.handle())).expect("addresses");
            mux.run().expect("server loop");
        })
        .expect("spawn server");
    let (addrs, handle) = rx.recv().expect("server started");
    Server {
        addrs,
        handle,
        thread,
    }
}

struct Listener {
    spec: Spec,
    bounds: Bounds,
    ends: Arc<Ends>,
}

impl SocketUser for Listener {
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
        Admission::Accept(Box::new(Conn {
            spec: self.spec,
            bounds: self.bounds,
            ends: self.ends.clone(),
            born: Instant::now(),
            max_unsent: 0,
            chunk: Vec::new(),
        }))
    }

    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        if closed.reason != tether::Reason::Stopped {
            eprintln!(
                "hostile: listener {} ended: {}",
                self.spec.tag, closed.reason
            );
        }
    }
}

struct Conn {
    spec: Spec,
    bounds: Bounds,
    ends: Arc<Ends>,
    born: Instant,
    max_unsent: u64,
    chunk: Vec<u8>,
}

impl Conn {
    /// A source queues `queued` bytes whenever tether's queue is empty: its
    /// memory is bounded by that, whatever the peer does.
    fn produce(&mut self, cx: &mut Cx, s: SocketId) {
        if self.chunk.is_empty() {
            self.chunk = vec![0x5a; self.bounds.queued];
        }
        while cx.unsent(s) == 0 {
            if cx.send(s, &self.chunk).is_err() {
                return;
            }
            self.max_unsent = self.max_unsent.max(cx.unsent(s));
        }
        self.max_unsent = self.max_unsent.max(cx.unsent(s));
    }
}

impl SocketUser for Conn {
    fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
        match self.spec.service {
            Service::Echo => {
                let _ = cx.recv(s, 16 * 1024, RecvMode::Partial);
            }
            Service::Source => {
                let _ = cx.recv(s, 16 * 1024, RecvMode::Partial);
                self.produce(cx, s);
            }
            Service::Http => {}
        }
    }

    fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
        if self.spec.service == Service::Echo {
            let _ = cx.send(s, data);
        }
        let _ = cx.recv(s, 16 * 1024, RecvMode::Partial);
    }

    fn on_sent(&mut self, cx: &mut Cx, s: SocketId) {
        if self.spec.service == Service::Source {
            self.produce(cx, s);
        }
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
        if self.spec.service == Service::Echo {
            let _ = cx.shutdown(s);
        }
    }

    fn on_request(&mut self, cx: &mut Cx, s: SocketId, _: &Request) {
        let _ = cx.respond(s, Response::new(200).body("ok"));
    }

    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        let ended = Ended {
            tag: self.spec.tag,
            ending: Ending::of(closed),
            lived: self.born.elapsed(),
            max_unsent: self.max_unsent,
        };
        self.ends.list.lock().expect("ends").push(ended);
        self.ends.changed.notify_all();
    }
}
