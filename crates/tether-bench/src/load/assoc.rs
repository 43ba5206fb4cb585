//! The load of the `dtls` scenario: tether itself as the client (its own
//! `IoMux` on the calling thread), since the association is tether's: DTLS
//! clients, or plain connected UDP sockets with the same shape.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tether::{Closed, Cx, DtlsContext, IoMux, Reason, RecvMode, SocketId, SocketUser};

use super::{Clock, Measured, Window};

/// A record (or datagram) not answered within this is taken as lost and
/// sent again, so that one loss does not stall an association for good.
const RESEND: Duration = Duration::from_millis(50);

struct Load {
    clock: Clock,
    target: String,
    /// DTLS with this client context; plain UDP without.
    ctx: Option<DtlsContext>,
    msg: Vec<u8>,
    /// Sockets up (echo) / handshakes begun (handshakes).
    up: usize,
    conns: usize,
    /// Round trips, or handshakes completed and closed.
    done: u64,
    /// Lost (resent) records, or failed handshakes.
    errors: u64,
    /// Echo: each socket and when its record went out (`None`: not up yet).
    sent: Vec<(SocketId, Option<Instant>)>,
    /// Handshakes: a deadline for the run, whatever happens.
    deadline: Instant,
}

fn open(cx: &mut Cx<Load>, user: impl SocketUser<Load> + 'static) -> SocketId {
    let s = cx.udp(user);
    let target = cx.shared().target.clone();
    let r = match cx.shared().ctx.clone() {
        Some(ctx) => cx.connect_dtls(s, &target, &ctx),
        None => cx.connect(s, &target),
    };
    r.expect("connect");
    s
}

/// Move the window on; true once it is over (its figures in `clock.end`).
fn tick(load: &mut Load) -> bool {
    if load.clock.end.is_some() {
        return true;
    }
    let done = load.done;
    load.clock.tick(Instant::now(), done)
}

/// One association, one record of `msg` in flight, echoed back.
struct Echo {
    i: usize,
}

impl SocketUser<Load> for Echo {
    fn wants_on_sent(&self) -> bool {
        false
    }
    fn on_connected(&mut self, cx: &mut Cx<Load>, s: SocketId) {
        let load = cx.shared_mut();
        load.up += 1;
        if load.up == load.conns {
            load.clock.start(Instant::now());
        }
        load.sent[self.i].1 = Some(Instant::now());
        let msg = std::mem::take(&mut cx.shared_mut().msg);
        let _ = cx.send(s, &msg);
        cx.shared_mut().msg = msg;
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<Load>, s: SocketId, _: &[u8]) {
        let now = cx.now();
        let load = cx.shared_mut();
        load.done += 1;
        load.sent[self.i].1 = Some(now);
        let msg = std::mem::take(&mut load.msg);
        let _ = cx.send(s, &msg);
        cx.shared_mut().msg = msg;
        let _ = cx.recv(s, 2048, RecvMode::Partial);
        if tick(cx.shared_mut()) {
            cx.terminate();
        }
    }
    fn on_closed(&mut self, _: &mut Cx<Load>, _: SocketId, c: &Closed) {
        assert!(
            matches!(c.reason, Reason::Stopped | Reason::Normal),
            "client association ended: {c:?}"
        );
    }
}

fn mux(target: SocketAddr, ctx: Option<&DtlsContext>, conns: usize, w: Window) -> IoMux<Load> {
    IoMux::new(Load {
        clock: Clock::new(w),
        target: target.to_string(),
        ctx: ctx.cloned(),
        msg: vec![0x3c; 64],
        up: 0,
        conns,
        done: 0,
        errors: 0,
        sent: Vec::new(),
        deadline: Instant::now() + Duration::from_secs(10) + w.warmup + w.measure,
    })
    .expect("client loop")
}

/// Echo of 64-byte records through `conns` associations, one in flight each;
/// DTLS when `ctx` is given, plain UDP otherwise. `errors`: records resent.
pub(crate) fn echo(
    target: SocketAddr,
    ctx: Option<&DtlsContext>,
    conns: usize,
    w: Window,
) -> Measured {
    let mut mux = mux(target, ctx, conns, w);
    for i in 0..conns {
        let s = open(&mut mux, Echo { i });
        mux.shared_mut().sent.push((s, None));
    }
    mux.set_interval(RESEND, |cx| {
        let now = Instant::now();
        assert!(now < cx.shared().deadline, "the echo load did not finish");
        let stale: Vec<SocketId> = cx
            .shared()
            .sent
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| now - t > RESEND))
            .map(|(s, _)| *s)
            .collect();
        for s in stale {
            let msg = std::mem::take(&mut cx.shared_mut().msg);
            let _ = cx.send(s, &msg);
            cx.shared_mut().msg = msg;
            let load = cx.shared_mut();
            load.errors += 1;
            if let Some(e) = load.sent.iter_mut().find(|e| e.0 == s) {
                e.1 = Some(now);
            }
        }
        if tick(cx.shared_mut()) {
            cx.terminate();
        }
    });
    mux.run().expect("client loop");
    let load = mux.shared_mut();
    let mut m = load.clock.end.take().expect("measured");
    m.errors = load.errors;
    m
}

/// One DTLS client: a full handshake (cookie exchange included), then
/// close_notify; when it has ended, the next one begins, until the window is
/// over; the loop stops once the last has ended (so none is left half-open
/// on the server). `up` counts the clients alive.
struct Handshake;

impl SocketUser<Load> for Handshake {
    fn wants_on_sent(&self) -> bool {
        false
    }
    fn on_connected(&mut self, cx: &mut Cx<Load>, s: SocketId) {
        let _ = cx.close(s);
    }
    fn on_closed(&mut self, cx: &mut Cx<Load>, _: SocketId, c: &Closed) {
        if c.reason == Reason::Stopped {
            return;
        }
        let load = cx.shared_mut();
        if c.reason == Reason::Normal {
            load.done += 1;
        } else {
            load.errors += 1;
        }
        assert!(
            Instant::now() < load.deadline,
            "the handshakes did not finish"
        );
        load.up -= 1;
        if !tick(load) {
            load.up += 1;
            open(cx, Handshake);
        } else if load.up == 0 {
            cx.terminate();
        }
    }
}

/// Handshakes with `parallel` clients at a time, each a fresh UDP socket.
/// `errors`: handshakes that failed.
pub(crate) fn handshakes(
    target: SocketAddr,
    ctx: &DtlsContext,
    parallel: usize,
    w: Window,
) -> Measured {
    let mut mux = mux(target, Some(ctx), parallel, w);
    for _ in 0..parallel {
        open(&mut mux, Handshake);
    }
    mux.shared_mut().up = parallel;
    mux.shared_mut().clock.start(Instant::now());
    mux.run().expect("client loop");
    let load = mux.shared_mut();
    let mut m = load.clock.end.take().expect("measured");
    m.errors = load.errors;
    m
}
