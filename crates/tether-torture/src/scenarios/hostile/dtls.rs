//! Garbage to the DTLS layer: several senders flood a DTLS listener with
//! random datagrams (a quarter shaped like a ClientHello: a handshake record
//! whose first message is type 1) while good DTLS clients do their
//! handshakes and an echo. Every good client must be served; no garbage may
//! reach `on_incoming` or be kept beyond the listener's bound on pending
//! handshakes.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, DtlsContext, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId,
    SocketUser,
};

use crate::check::Violations;
use crate::prng::Prng;
use crate::report::{Goal, Report};

/// The most handshakes a DTLS listener keeps for unanswered challenges.
const PENDING_BOUND: f64 = 256.0;
/// How long the good clients may take in all.
const LIMIT: Duration = Duration::from_secs(60);

/// Run the DTLS part of `hostile`, adding its figures to `report`.
pub(crate) fn run(seed: u64, quick: bool, report: &mut Report, v: &mut Violations) {
    let (good, senders, each) = if quick { (4, 2, 500) } else { (40, 4, 5_000) };
    let ctx = match DtlsContext::builder().build() {
        Ok(c) => c,
        Err(e) => return v.add("dtls setup", &e.to_string()),
    };
    let client_ctx = match DtlsContext::builder().pin(ctx.fingerprint()).build() {
        Ok(c) => c,
        Err(e) => return v.add("dtls setup", &e.to_string()),
    };
    // The server: a DTLS listener that echoes, on its own loop.
    let (up, started) = mpsc::channel();
    let server = std::thread::spawn(move || -> Result<usize, String> {
        let incoming = Rc::new(Cell::new(0));
        let mut mux = IoMux::new(()).map_err(|e| e.to_string())?;
        let l = mux.udp(Listener {
            incoming: incoming.clone(),
        });
        mux.bind(l, "127.0.0.1:0").map_err(|e| e.to_string())?;
        mux.listen_dtls(l, &ctx).map_err(|e| e.to_string())?;
        let addr = match mux.local_addr(l) {
            Some(SockAddr::Inet(a)) => a,
            other => return Err(format!("listener address {other:?}")),
        };
        let _ = up.send((addr, mux.handle(), l));
        mux.run().map_err(|e| e.to_string())?;
        Ok(incoming.get())
    });
    let Ok((addr, handle, l)) = started.recv() else {
        return v.add("dtls", "the server did not start");
    };
    // The garbage, from threads of its own, while the good clients come.
    let flood: Vec<_> = (0..senders)
        .map(|n| {
            let mut r = Prng::stream(seed, 0xD715 + n);
            std::thread::spawn(move || send_garbage(addr, &mut r, each))
        })
        .collect();
    let served = serve_good(addr, &client_ctx, good);
    let sent: u64 = flood.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    // What the listener keeps once the good clients are done, read on its
    // loop before it stops.
    let pending = Arc::new(AtomicUsize::new(usize::MAX));
    let read = pending.clone();
    let _ = handle.post(move |cx| read.store(cx.dtls_pending(l), Ordering::SeqCst));
    handle.terminate();
    let incoming = match server.join() {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return v.add("dtls server", &e),
        Err(_) => return v.add("dtls server", "panicked"),
    };
    let pending = pending.load(Ordering::SeqCst);
    if served < good {
        v.add("dtls", &format!("{served} of {good} good clients served"));
    }
    if incoming != good {
        v.add(
            "dtls",
            &format!("on_incoming called {incoming} times for {good} good clients"),
        );
    }
    report.add("dtls garbage datagrams sent", sent as f64, Goal::None);
    report.add(
        "dtls good clients served during the garbage",
        served as f64,
        Goal::AtLeast(good as f64),
    );
    report.add(
        "dtls garbage that reached on_incoming",
        incoming.saturating_sub(good) as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "dtls handshakes kept pending at the end",
        pending as f64,
        Goal::AtMost(PENDING_BOUND),
    );
}

/// `n` datagrams of random bytes and lengths to `addr`; how many went.
fn send_garbage(addr: SocketAddr, r: &mut Prng, n: u64) -> u64 {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return 0;
    };
    let mut sent = 0;
    for i in 0..n {
        let len = r.between(1, 1400) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| r.next_u64() as u8).collect();
        if i % 4 == 0 && len > 13 {
            // A handshake record whose first message claims to be a ClientHello.
            (d[0], d[13]) = (22, 1);
        }
        sent += u64::from(sock.send_to(&d, addr).is_ok());
    }
    sent
}

/// `n` DTLS clients pinned to the server, each sending one message and
/// closing once its echo came back; how many were served so.
fn serve_good(addr: SocketAddr, ctx: &DtlsContext, n: usize) -> usize {
    let Ok(mut mux) = IoMux::new(()) else {
        return 0;
    };
    let state = Rc::new(RefCell::new((0usize, 0usize))); // (served, closed)
    for i in 0..n {
        let c = mux.udp(Good {
            msg: format!("good {i}").into_bytes(),
            echoed: false,
            state: state.clone(),
            n,
        });
        if mux.connect_dtls(c, &addr.to_string(), ctx).is_err() {
            return 0;
        }
    }
    mux.set_timer(LIMIT, |cx| cx.terminate());
    let _ = mux.run();
    let served = state.borrow().0;
    served
}

struct Listener {
    incoming: Rc<Cell<usize>>,
}

impl SocketUser<()> for Listener {
    fn on_incoming(&mut self, _: &mut Cx<()>, _: SocketId, _: &PeerInfo) -> Admission<()> {
        self.incoming.set(self.incoming.get() + 1);
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx<()>, _: SocketId, _: &Closed) {}
}

struct Echo;

impl SocketUser<()> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<()>, s: SocketId) {
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<()>, s: SocketId, data: &[u8]) {
        let _ = cx.send(s, data);
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_closed(&mut self, _: &mut Cx<()>, _: SocketId, _: &Closed) {}
}

struct Good {
    msg: Vec<u8>,
    echoed: bool,
    state: Rc<RefCell<(usize, usize)>>,
    n: usize,
}

impl SocketUser<()> for Good {
    fn on_connected(&mut self, cx: &mut Cx<()>, s: SocketId) {
        let _ = cx.send(s, &self.msg);
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<()>, s: SocketId, data: &[u8]) {
        self.echoed = data == self.msg;
        let _ = cx.close(s);
    }
    /// Served: its echo came back intact and it ended `Normal`.
    fn on_closed(&mut self, cx: &mut Cx<()>, _: SocketId, closed: &Closed) {
        let mut st = self.state.borrow_mut();
        st.0 += usize::from(self.echoed && closed.reason == Reason::Normal);
        st.1 += 1;
        if st.1 == self.n {
            cx.terminate();
        }
    }
}
