//! The tether server of the integrity scenario: one loop on its own thread
//! with four listeners (TCP, Local, TLS, framed). Each connection learns its
//! plan from its first 8 bytes (framed: its HELLO) and plays the server's
//! part of it.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SockAddr, SocketId, SocketUser, State,
    Timeouts, TlsContext,
};

use super::flow::{Flow, Record};
use super::plan::{End, Plan, CHUNK};
use crate::check::Ending;

/// Where the listeners are, as connect addresses.
#[derive(Debug, Clone)]
pub(crate) struct Addrs {
    pub(crate) tcp: String,
    pub(crate) local: String,
    pub(crate) tls: String,
    pub(crate) framed: String,
    /// The std server's (set once it runs).
    pub(crate) std_tcp: String,
    pub(crate) std_local: String,
}

/// The server loop's state: a record per connection.
#[derive(Debug, Default)]
pub(crate) struct Log {
    seed: u64,
    pub(crate) records: HashMap<u64, Record>,
    /// Connections that ended before saying which they were.
    pub(crate) anonymous: Vec<Ending>,
    /// Connections ended so far, and how many the run has.
    done: u64,
    expected: u64,
}

/// Linger and idle bounds: a stuck connection ends instead of hanging the run.
pub(crate) const LINGER: Duration = Duration::from_secs(20);
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// Start the server for `expected` connections; it stops once each has
/// ended, or at `deadline`. The thread returns its log.
pub(crate) fn start(
    seed: u64,
    expected: u64,
    tls: TlsContext,
    deadline: Duration,
) -> (Addrs, JoinHandle<Log>) {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("integrity-server".into())
        .spawn(move || {
            let mut mux = IoMux::new(Log {
                seed,
                expected,
                ..Log::default()
            })
            .expect("server loop");
            let local = format!("unix:@tether-torture-{}-integrity", std::process::id());
            let mut open = |framed: bool, tls: Option<&TlsContext>, addr: &str| {
                let l = mux.stream(Listener { framed });
                mux.bind(l, addr).expect("bind");
                if framed {
                    mux.set_framing(l, b"").expect("framing");
                }
                let t = Timeouts {
                    idle: Some(IDLE),
                    handshake: Some(IDLE),
                    ..Timeouts::default()
                };
                mux.set_timeouts(l, t).expect("timeouts");
                match tls {
                    Some(ctx) => mux.listen_tls(l, ctx).expect("listen_tls"),
                    None => mux.listen(l).expect("listen"),
                }
                match mux.local_addr(l) {
                    Some(SockAddr::Inet(a)) => a.to_string(),
                    _ => addr.to_string(),
                }
            };
            let addrs = Addrs {
                tcp: open(false, None, "127.0.0.1:0"),
                local: open(false, None, &local),
                tls: open(false, Some(&tls), "127.0.0.1:0"),
                framed: open(true, None, "127.0.0.1:0"),
                std_tcp: String::new(),
                std_local: String::new(),
            };
            // Nothing to serve (every connection goes to the std server):
            // stop at once rather than at the deadline.
            let stop_after = if expected == 0 {
                Duration::ZERO
            } else {
                deadline
            };
            mux.set_timer(stop_after, |cx| cx.terminate());
            tx.send(addrs).expect("addresses");
            mux.run().expect("server loop");
            std::mem::take(mux.shared_mut())
        })
        .expect("spawn server");
    let addrs = rx.recv().expect("server started");
    (addrs, thread)
}

struct Listener {
    framed: bool,
}

impl SocketUser<Log> for Listener {
    fn on_incoming(&mut self, cx: &mut Cx<Log>, _: SocketId, peer: &PeerInfo) -> Admission<Log> {
        let seed = cx.shared().seed;
        if !self.framed {
            return Admission::Accept(Box::new(Conn::new(seed, None)));
        }
        let idx = peer
            .hello
            .as_deref()
            .and_then(|h| <[u8; 8]>::try_from(h).ok())
            .map(u64::from_le_bytes);
        Admission::Accept(Box::new(Conn::new(
            seed,
            idx.map(|i| Plan::derive(seed, i)),
        )))
    }

    fn on_closed(&mut self, _: &mut Cx<Log>, _: SocketId, _: &Closed) {}
}

/// One connection's server side.
struct Conn {
    seed: u64,
    plan: Option<Plan>,
    flow: Option<Flow>,
    peer_done: bool,
    /// Close endings: `keep` was read.
    kept: bool,
    /// Our shutdown or close was called.
    ended: bool,
}

impl Conn {
    fn new(seed: u64, plan: Option<Plan>) -> Conn {
        let flow = plan.as_ref().map(|p| Flow::new(seed, p, true));
        Conn {
            seed,
            plan,
            flow,
            peer_done: false,
            kept: false,
            ended: false,
        }
    }

    /// Ask for more input, or for close endings note that `keep` was read.
    fn read_more(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        let (Some(plan), Some(flow)) = (&self.plan, &mut self.flow) else {
            return;
        };
        let n = if !plan.server_closes() {
            CHUNK
        } else if plan.net == super::plan::Net::Framed {
            if flow.messages_in() < plan.keep {
                CHUNK
            } else {
                0
            }
        } else {
            (plan.keep - flow.got()).min(CHUNK)
        };
        if n == 0 {
            self.kept = true;
        } else if let Err(e) = cx.recv(s, n as usize, RecvMode::Partial) {
            flow.errors.push(format!("recv refused: {e}"));
        }
    }

    /// Send when the plan says so; end once everything is handed over.
    fn progress(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        let (Some(plan), Some(flow)) = (&self.plan, &mut self.flow) else {
            return;
        };
        let go = match plan.end {
            End::ClientFirst => self.peer_done,
            End::ServerFirst | End::Both => true,
            End::CloseUnread | End::CloseMidSend => self.kept,
        };
        if !go || self.ended || !flow.pump(cx, s) {
            return;
        }
        self.ended = true;
        let r = if plan.server_closes() {
            flow.note("close");
            cx.close(s)
        } else {
            flow.note("shutdown");
            cx.shutdown(s)
        };
        if let Err(e) = r {
            flow.errors.push(format!("end refused: {e}"));
        }
    }

    fn begin(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        let _ = cx.set_linger(s, LINGER);
        self.read_more(cx, s);
        self.progress(cx, s);
    }
}

impl SocketUser<Log> for Conn {
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        if self.plan.is_some() {
            self.begin(cx, s);
        } else if let Err(e) = cx.recv(s, 8, RecvMode::Exact) {
            eprintln!("integrity server: recv refused: {e}");
        }
    }

    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        if self.plan.is_none() {
            let idx = u64::from_le_bytes(data.try_into().unwrap_or([0xff; 8]));
            let plan = Plan::derive(self.seed, idx);
            self.flow = Some(Flow::new(self.seed, &plan, true));
            self.plan = Some(plan);
            self.begin(cx, s);
            return;
        }
        if let Some(flow) = &mut self.flow {
            flow.take(data);
        }
        self.read_more(cx, s);
        self.progress(cx, s);
    }

    fn on_sent(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.progress(cx, s);
    }

    fn on_state(&mut self, _: &mut Cx<Log>, _: SocketId, from: State, to: State) {
        if let Some(flow) = &mut self.flow {
            flow.note(format_args!("{from:?} -> {to:?}"));
        }
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx<Log>, s: SocketId, _: Option<&[u8]>) {
        if let Some(flow) = &mut self.flow {
            flow.note("peer shutdown");
        }
        self.peer_done = true;
        self.progress(cx, s);
    }

    fn on_closed(&mut self, cx: &mut Cx<Log>, _: SocketId, closed: &Closed) {
        let log = cx.shared_mut();
        match (&self.plan, &mut self.flow) {
            (Some(plan), Some(flow)) => {
                flow.record(log.records.entry(plan.idx).or_default(), Ending::of(closed));
            }
            _ => log.anonymous.push(Ending::of(closed)),
        }
        log.done += 1;
        if log.done >= log.expected {
            cx.terminate();
        }
    }
}
