//! The tether echo server of the fault scenarios, on its own loop in side A
//! of the impaired link: it writes back what comes, answers the peer's FIN
//! with its own, and logs how each connection ended and when.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tether::{
    Admission, Closed, Cx, IoMux, Keepalive, MuxHandle, PeerInfo, RecvMode, SockAddr, SocketId,
    SocketUser, Timeouts, TlsContext, TlsInfo,
};
use tether_impair::{Side, TunLink};

use crate::check::Ending;

/// The largest read asked for.
const RECV: usize = 64 * 1024;

/// What the listener sets, inherited by every connection it takes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    /// The port to listen on (0: any).
    pub(crate) port: u16,
    pub(crate) tls: Option<TlsContext>,
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) idle: Option<Duration>,
}

/// One connection as the server saw it, keyed by the client's port.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// Bytes received (and echoed).
    pub(crate) got: u64,
    /// How and when it ended, once it did.
    pub(crate) end: Option<(Ending, Instant)>,
    /// `on_closed` calls (must be exactly one).
    pub(crate) closed_calls: u32,
    /// Its socket in the server's loop.
    id: Option<SocketId>,
}

/// Everything the server saw, shared with the scenario's thread.
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) conns: BTreeMap<u16, Seen>,
    /// Connections open at once, at most.
    pub(crate) most_open: usize,
    open: usize,
}

/// The log and a condition the server signals at every change.
type Shared = Arc<(Mutex<Log>, Condvar)>;

/// Change the log and wake whoever waits on it.
fn update(shared: &Shared, f: impl FnOnce(&mut Log)) {
    let (log, changed) = &**shared;
    f(&mut log.lock().expect("log"));
    changed.notify_all();
}

/// A running server.
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) log: Shared,
    handle: MuxHandle<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Start it in side A of `link`.
    pub(crate) fn start(link: &TunLink, settings: Settings) -> Result<Server, String> {
        let log: Shared = Arc::default();
        let (tx, rx) = mpsc::channel();
        let shared = log.clone();
        let thread = link
            .spawn_in(Side::A, move || {
                let opened = open(shared, &settings);
                match opened {
                    Ok((port, mut mux)) => {
                        let _ = tx.send(Ok((port, mux.handle())));
                        let _ = mux.run();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("server thread in side A: {e}"))?;
        let (port, handle) = rx
            .recv()
            .map_err(|_| "the server thread ended early".to_string())??;
        Ok(Server {
            port,
            log,
            handle,
            thread: Some(thread),
        })
    }

    /// Wait until `done` holds for the log, or `limit` passes; whether it did.
    pub(crate) fn wait(&self, limit: Duration, done: impl Fn(&Log) -> bool) -> bool {
        let (log, changed) = &*self.log;
        let guard = log.lock().expect("log");
        let (_guard, timeout) = changed
            .wait_timeout_while(guard, limit, |l| !done(l))
            .expect("log");
        !timeout.timed_out()
    }

    /// Wait up to `limit` until `n` of its connections have ended.
    pub(crate) fn wait_ended(&self, n: usize, limit: Duration) -> bool {
        self.wait(limit, |log| {
            log.conns.values().filter(|s| s.end.is_some()).count() >= n
        })
    }

    /// A copy of what the server saw so far.
    pub(crate) fn seen(&self) -> BTreeMap<u16, Seen> {
        self.log.0.lock().expect("log").conns.clone()
    }

    /// Connections open at once, at most, so far.
    pub(crate) fn most_open(&self) -> usize {
        self.log.0.lock().expect("log").most_open
    }

    /// Set TCP_USER_TIMEOUT on every connection open now, and return once
    /// the loop has.
    pub(crate) fn set_user_timeout(&self, timeout: Duration) -> Result<(), String> {
        let (done, applied) = mpsc::channel();
        self.handle
            .post(move |cx| {
                let ids: Vec<SocketId> = {
                    let log = cx.shared().0.lock().expect("log");
                    log.conns.values().filter_map(|s| s.id).collect()
                };
                for s in ids {
                    let _ = cx.set_user_timeout(s, Some(timeout));
                }
                let _ = done.send(());
            })
            .map_err(|_| "the server loop is gone".to_string())?;
        applied
            .recv()
            .map_err(|_| "the server loop did not apply it".to_string())
    }

    /// Stop the loop (closing what is still open) and wait for it.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.terminate();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(shared: Shared, settings: &Settings) -> Result<(u16, IoMux<Shared>), String> {
    let mut mux = IoMux::new(shared).map_err(|e| format!("loop: {e}"))?;
    let l = mux.stream(Listener);
    mux.bind(l, &format!("{}:{}", TunLink::ADDR_A, settings.port))
        .map_err(|e| format!("bind: {e}"))?;
    if let Some(k) = settings.keepalive {
        mux.set_keepalive(l, Some(k))
            .map_err(|e| format!("keepalive: {e}"))?;
    }
    if settings.user_timeout.is_some() {
        mux.set_user_timeout(l, settings.user_timeout)
            .map_err(|e| format!("user timeout: {e}"))?;
    }
    if let Some(idle) = settings.idle {
        let t = Timeouts {
            idle: Some(idle),
            ..Timeouts::default()
        };
        mux.set_timeouts(l, t)
            .map_err(|e| format!("timeouts: {e}"))?;
    }
    match &settings.tls {
        Some(ctx) => mux.listen_tls(l, ctx),
        None => mux.listen(l),
    }
    .map_err(|e| format!("listen: {e}"))?;
    let port = match mux.local_addr(l) {
        Some(SockAddr::Inet(a)) => a.port(),
        other => return Err(format!("listener address {other:?}")),
    };
    Ok((port, mux))
}

struct Listener;

impl SocketUser<Shared> for Listener {
    fn on_incoming(
        &mut self,
        cx: &mut Cx<Shared>,
        _: SocketId,
        peer: &PeerInfo,
    ) -> Admission<Shared> {
        let port = match peer.peer {
            Some(SockAddr::Inet(a)) => a.port(),
            _ => 0,
        };
        update(cx.shared(), |log| {
            log.conns.insert(
                port,
                Seen {
                    got: 0,
                    end: None,
                    closed_calls: 0,
                    id: None,
                },
            );
            log.open += 1;
            log.most_open = log.most_open.max(log.open);
        });
        Admission::Accept(Box::new(Echo { port }))
    }
    fn on_closed(&mut self, _: &mut Cx<Shared>, _: SocketId, _: &Closed) {}
}

struct Echo {
    port: u16,
}

impl SocketUser<Shared> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        let port = self.port;
        update(cx.shared(), |log| {
            if let Some(seen) = log.conns.get_mut(&port) {
                seen.id = Some(s);
            }
        });
        let _ = cx.recv(s, RECV, RecvMode::Partial);
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Shared>, s: SocketId, _: &TlsInfo) {
        let _ = cx.recv(s, RECV, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<Shared>, s: SocketId, data: &[u8]) {
        let port = self.port;
        update(cx.shared(), |log| {
            if let Some(seen) = log.conns.get_mut(&port) {
                seen.got += data.len() as u64;
            }
        });
        let _ = cx.send(s, data);
        let _ = cx.recv(s, RECV, RecvMode::Partial);
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Shared>, s: SocketId, _: Option<&[u8]>) {
        let _ = cx.shutdown(s);
    }
    fn on_closed(&mut self, cx: &mut Cx<Shared>, _: SocketId, closed: &Closed) {
        let (port, ending) = (self.port, Ending::of(closed));
        update(cx.shared(), |log| {
            log.open = log.open.saturating_sub(1);
            if let Some(seen) = log.conns.get_mut(&port) {
                seen.closed_calls += 1;
                seen.end.get_or_insert((ending, Instant::now()));
            }
        });
    }
}
