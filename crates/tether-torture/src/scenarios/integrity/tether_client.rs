//! The tether clients of the integrity scenario: one loop on its own thread
//! keeping a window of connections in flight, each playing the client's
//! part of its plan.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tether::{Closed, Cx, IoMux, RecvMode, SocketId, SocketUser, State, Timeouts, TlsContext};

use super::flow::{Flow, Record};
use super::plan::{Net, Peer, Plan, CHUNK};
use super::server::{Addrs, IDLE, LINGER};
use crate::check::Ending;

/// The client loop's state.
struct Clients {
    seed: u64,
    addrs: Addrs,
    tls: TlsContext,
    queue: VecDeque<Plan>,
    in_flight: usize,
    window: usize,
    records: HashMap<u64, Record>,
}

/// Run `plans` (all with a tether client), `window` at a time; the records
/// by connection once every one has ended (or at `deadline`).
pub(crate) fn run(
    seed: u64,
    plans: Vec<Plan>,
    addrs: Addrs,
    tls: TlsContext,
    window: usize,
    deadline: Duration,
) -> HashMap<u64, Record> {
    let mut mux = IoMux::new(Clients {
        seed,
        addrs,
        tls,
        queue: plans.into(),
        in_flight: 0,
        window,
        records: HashMap::new(),
    })
    .expect("client loop");
    launch(&mut mux);
    // The watchdog: a run that does not end by itself is stopped, and what
    // was still open ends `Stopped`, which the checker reports.
    let watchdog = mux.set_timer(deadline, |cx| cx.terminate());
    let mut mux = mux;
    // Run until the last connection ended; the watchdog is then cancelled so
    // the loop has nothing left.
    loop {
        let s = mux.shared();
        if s.in_flight == 0 && s.queue.is_empty() {
            mux.cancel_timer(watchdog);
        }
        if mux.turn(None).expect("client loop") != tether::Turn::Running {
            break;
        }
    }
    std::mem::take(&mut mux.shared_mut().records)
}

/// Start connections until the window is full.
fn launch(cx: &mut Cx<Clients>) {
    while cx.shared().in_flight < cx.shared().window {
        let Some(plan) = cx.shared_mut().queue.pop_front() else {
            return;
        };
        let st = cx.shared();
        let std_server = plan.peer == Peer::StdServer;
        let addr = match plan.net {
            Net::Tcp if std_server => st.addrs.std_tcp.clone(),
            Net::Local if std_server => st.addrs.std_local.clone(),
            Net::Tcp => st.addrs.tcp.clone(),
            Net::Local => st.addrs.local.clone(),
            Net::Tls => st.addrs.tls.clone(),
            Net::Framed => st.addrs.framed.clone(),
        };
        let tls = st.tls.clone();
        let seed = st.seed;
        let idx = plan.idx;
        let net = plan.net;
        let s = cx.stream(Conn::new(seed, plan));
        let t = Timeouts {
            idle: Some(IDLE),
            connect: Some(IDLE),
            handshake: Some(IDLE),
        };
        let mut r = cx
            .set_timeouts(s, t)
            .and_then(|()| cx.set_linger(s, LINGER));
        if r.is_ok() {
            r = match net {
                Net::Tls => cx.connect_tls(s, &addr, "localhost", &tls),
                Net::Framed => cx
                    .set_framing(s, &idx.to_le_bytes())
                    .and_then(|()| cx.connect(s, &addr)),
                Net::Tcp | Net::Local => cx.connect(s, &addr),
            };
        }
        let st = cx.shared_mut();
        if let Err(e) = r {
            st.records
                .entry(idx)
                .or_default()
                .errors
                .push(format!("connect refused: {e}"));
            let _ = cx.reset(s);
        }
        cx.shared_mut().in_flight += 1;
    }
}

struct Conn {
    plan: Plan,
    flow: Flow,
    peer_done: bool,
    shut: bool,
}

impl Conn {
    fn new(seed: u64, plan: Plan) -> Conn {
        let flow = Flow::new(seed, &plan, false);
        Conn {
            plan,
            flow,
            peer_done: false,
            shut: false,
        }
    }

    fn progress(&mut self, cx: &mut Cx<Clients>, s: SocketId) {
        if !self.flow.pump(cx, s) || self.shut {
            return;
        }
        if self.plan.end.client_shuts_early() || self.peer_done {
            self.shut = true;
            self.flow.note("shutdown");
            if let Err(e) = cx.shutdown(s) {
                self.flow.errors.push(format!("shutdown refused: {e}"));
            }
        }
    }
}

impl SocketUser<Clients> for Conn {
    fn on_connected(&mut self, cx: &mut Cx<Clients>, s: SocketId) {
        self.flow.note("connected");
        if self.plan.net != Net::Framed {
            if let Err(e) = cx.send(s, &self.plan.idx.to_le_bytes()) {
                self.flow.errors.push(format!("send refused: {e}"));
            }
        }
        if let Err(e) = cx.recv(s, CHUNK as usize, RecvMode::Partial) {
            self.flow.errors.push(format!("recv refused: {e}"));
        }
        self.progress(cx, s);
    }

    fn on_received(&mut self, cx: &mut Cx<Clients>, s: SocketId, data: &[u8]) {
        self.flow.take(data);
        if let Err(e) = cx.recv(s, CHUNK as usize, RecvMode::Partial) {
            self.flow.errors.push(format!("recv refused: {e}"));
        }
    }

    fn on_sent(&mut self, cx: &mut Cx<Clients>, s: SocketId) {
        self.progress(cx, s);
    }

    fn on_state(&mut self, _: &mut Cx<Clients>, _: SocketId, from: State, to: State) {
        self.flow.note(format_args!("{from:?} -> {to:?}"));
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx<Clients>, s: SocketId, _: Option<&[u8]>) {
        self.flow.note("peer shutdown");
        self.peer_done = true;
        self.progress(cx, s);
    }

    fn on_closed(&mut self, cx: &mut Cx<Clients>, _: SocketId, closed: &Closed) {
        let st = cx.shared_mut();
        self.flow.record(
            st.records.entry(self.plan.idx).or_default(),
            Ending::of(closed),
        );
        st.in_flight = st.in_flight.saturating_sub(1);
        launch(cx);
    }
}
