//! tether clients of the fault scenarios, on one loop in side B of the
//! impaired link. Each sends its connection's byte stream and checks the
//! echo byte by byte as it comes back.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tether::{Closed, Cx, IoMux, MuxHandle, RecvMode, SocketId, SocketUser, TlsContext};
use tether_impair::{Side, TunLink};

use crate::check::Ending;
use crate::pattern::{Pattern, Source, Tally};

/// One send of a stream, and the most queued in tether at once.
const CHUNK: usize = 64 * 1024;

/// What a client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Send its bytes, shut down, read the echo to the server's FIN.
    Exchange,
    /// Send its bytes, read their echo, then stay open and quiet until the
    /// loop stops.
    Hold,
}

/// One client: its index (the byte stream's key) and how much it sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) conn: u64,
    pub(crate) size: u64,
}

/// How one client's connection went.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) plan: Plan,
    /// The client's local port (the server's key for it), once connected.
    pub(crate) port: Option<u16>,
    pub(crate) sent: u64,
    pub(crate) tally: Tally,
    pub(crate) end: Option<Ending>,
}

struct State {
    outcomes: Vec<Outcome>,
    /// Clients whose echo is complete (Hold) or that closed (Exchange).
    done: usize,
    mode: Mode,
    /// Told once every Hold client has its whole echo.
    echoed: Option<mpsc::Sender<()>>,
}

type Shared = Rc<RefCell<State>>;

/// The client loop, running.
pub(crate) struct Clients {
    handle: MuxHandle<()>,
    echoed: mpsc::Receiver<()>,
    thread: JoinHandle<Result<Vec<Outcome>, String>>,
}

impl Clients {
    /// Start `plans` from side B against the server's `port`. The loop stops
    /// by itself once every Exchange client closed, at `limit` at the latest
    /// (what is open then ends `Stopped`), or when [`stop`](Clients::stop)
    /// asks.
    pub(crate) fn start(
        link: &TunLink,
        port: u16,
        tls: Option<TlsContext>,
        mode: Mode,
        seed: u64,
        plans: Vec<Plan>,
        limit: Duration,
    ) -> Result<Clients, String> {
        let (handle_tx, handle_rx) = mpsc::channel();
        let (echoed_tx, echoed) = mpsc::channel();
        let thread = link
            .spawn_in(Side::B, move || {
                let state: Shared = Rc::new(RefCell::new(State {
                    outcomes: plans
                        .iter()
                        .map(|&plan| Outcome {
                            plan,
                            port: None,
                            sent: 0,
                            tally: Tally::new(Pattern::new(seed, plan.conn, 0)),
                            end: None,
                        })
                        .collect(),
                    done: 0,
                    mode,
                    echoed: Some(echoed_tx),
                }));
                let mut mux = IoMux::new(()).map_err(|e| format!("client loop: {e}"))?;
                let _ = handle_tx.send(mux.handle());
                let addr = format!("{}:{port}", TunLink::ADDR_A);
                for (i, plan) in plans.iter().enumerate() {
                    let user = Client {
                        i,
                        state: state.clone(),
                        source: Source::new(Pattern::new(seed, plan.conn, 0)),
                        size: plan.size,
                        buf: Vec::new(),
                    };
                    let s = mux.stream(user);
                    match &tls {
                        Some(ctx) => mux.connect_tls(s, &addr, "localhost", ctx),
                        None => mux.connect(s, &addr),
                    }
                    .map_err(|e| format!("connect: {e}"))?;
                }
                mux.set_timer(limit, |cx| cx.terminate());
                mux.run().map_err(|e| format!("client loop: {e}"))?;
                let outcomes = state.borrow().outcomes.clone();
                Ok(outcomes)
            })
            .map_err(|e| format!("client thread in side B: {e}"))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| "the client loop did not start".to_string())?;
        Ok(Clients {
            handle,
            echoed,
            thread,
        })
    }

    /// Wait until every Hold client has its echo; whether it came in `limit`.
    pub(crate) fn wait_echoed(&self, limit: Duration) -> bool {
        self.echoed.recv_timeout(limit).is_ok()
    }

    /// Stop the loop now.
    pub(crate) fn stop(&self) {
        self.handle.terminate();
    }

    /// Wait for the loop to end; how each client went.
    pub(crate) fn join(self) -> Result<Vec<Outcome>, String> {
        self.thread
            .join()
            .map_err(|_| "the client thread panicked".to_string())?
    }
}

struct Client {
    i: usize,
    state: Shared,
    source: Source,
    size: u64,
    buf: Vec<u8>,
}

impl Client {
    fn up(&mut self, cx: &mut Cx<()>, s: SocketId) {
        if let Some(tether::SockAddr::Inet(a)) = cx.local_addr(s) {
            self.state.borrow_mut().outcomes[self.i].port = Some(a.port());
        }
        let _ = cx.recv(s, CHUNK, RecvMode::Partial);
        self.produce(cx, s);
    }

    /// Send while the kernel takes everything; `on_sent` goes on.
    fn produce(&mut self, cx: &mut Cx<()>, s: SocketId) {
        while cx.unsent(s) == 0 && self.source.sent < self.size {
            let n = (self.size - self.source.sent).min(CHUNK as u64) as usize;
            self.source.next(n, &mut self.buf);
            if cx.send(s, &self.buf).is_err() {
                return;
            }
        }
        self.state.borrow_mut().outcomes[self.i].sent = self.source.sent;
        let mode = self.state.borrow().mode;
        if self.source.sent == self.size && mode == Mode::Exchange {
            let _ = cx.shutdown(s);
        }
    }
}

impl SocketUser<()> for Client {
    /// Connected (over TLS: after the handshake).
    fn on_connected(&mut self, cx: &mut Cx<()>, s: SocketId) {
        self.up(cx, s);
    }
    fn wants_on_sent(&self) -> bool {
        true
    }
    fn on_sent(&mut self, cx: &mut Cx<()>, s: SocketId) {
        if self.source.sent < self.size {
            self.produce(cx, s);
        }
    }
    fn on_received(&mut self, cx: &mut Cx<()>, s: SocketId, data: &[u8]) {
        let mut st = self.state.borrow_mut();
        let o = &mut st.outcomes[self.i];
        let before = o.tally.got;
        o.tally.take(data);
        let echoed = before < self.size && o.tally.got >= self.size;
        if st.mode == Mode::Hold && echoed {
            st.done += 1;
            if st.done == st.outcomes.len() {
                // Every echo is in: the scenario's fault comes next.
                if let Some(tx) = st.echoed.take() {
                    let _ = tx.send(());
                }
            }
        }
        drop(st);
        let _ = cx.recv(s, CHUNK, RecvMode::Partial);
    }
    fn on_closed(&mut self, cx: &mut Cx<()>, _: SocketId, closed: &Closed) {
        let mut st = self.state.borrow_mut();
        st.outcomes[self.i].end = Some(Ending::of(closed));
        if st.mode == Mode::Exchange {
            st.done += 1;
            if st.done == st.outcomes.len() {
                cx.terminate();
            }
        }
    }
}
