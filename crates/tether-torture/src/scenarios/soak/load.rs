//! The soak's load: one tether client loop keeping long-lived connections
//! (a small echoed message every 100 ms each) and a churn of short ones
//! (connect, send up to 64 KiB, half-close or reset, read the echo, end),
//! a fifth of them TLS, until the load's end. Every echo is checked against
//! what was sent, and every end against what it must be.

use std::time::{Duration, Instant};

use tether::{Closed, Cx, IoMux, Reason, RecvMode, SocketId, SocketUser, TlsContext, Turn};

use crate::check::{Ending, Expect};
use crate::pattern::{Pattern, Source, Tally};
use crate::prng::Prng;

/// What the load did, and what broke a rule.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) churned: u64,
    pub(crate) round_trips: u64,
    pub(crate) bytes: u64,
    /// (where, what).
    pub(crate) problems: Vec<(String, String)>,
}

struct Load {
    seed: u64,
    tcp: String,
    tls_addr: String,
    tls: TlsContext,
    stop_at: Instant,
    next: u64,
    in_flight: usize,
    window: usize,
    long_open: usize,
    out: Outcome,
    rng: Prng,
}

pub(crate) fn run(
    seed: u64,
    tcp: String,
    tls_addr: String,
    tls: TlsContext,
    secs: Duration,
    long_lived: usize,
    window: usize,
) -> Outcome {
    let mut mux = IoMux::new(Load {
        seed,
        tcp,
        tls_addr,
        tls,
        stop_at: Instant::now() + secs,
        next: 0,
        in_flight: 0,
        window,
        long_open: 0,
        out: Outcome::default(),
        rng: Prng::stream(seed, u64::MAX - 1),
    })
    .expect("load loop");
    for _ in 0..long_lived {
        let idx = mux.shared().next;
        mux.shared_mut().next += 1;
        let user = Long::new(seed, idx);
        let addr = mux.shared().tcp.clone();
        mux.connect_to(&addr, user);
        mux.shared_mut().long_open += 1;
    }
    launch(&mut mux);
    let watchdog = mux.set_timer(secs + Duration::from_secs(60), |cx| {
        cx.shared_mut()
            .out
            .problems
            .push(("load".into(), "still running a minute after its end".into()));
        cx.terminate();
    });
    while let Turn::Running = mux.turn(None).expect("load loop") {
        let l = mux.shared();
        if l.in_flight == 0 && l.long_open == 0 && Instant::now() >= l.stop_at {
            mux.cancel_timer(watchdog);
        }
    }
    std::mem::take(&mut mux.shared_mut().out)
}

/// Start short connections while the window has room and the load runs.
fn launch(cx: &mut Cx<Load>) {
    while cx.shared().in_flight < cx.shared().window && Instant::now() < cx.shared().stop_at {
        let l = cx.shared_mut();
        let idx = l.next;
        l.next += 1;
        let size = l.rng.below(64 * 1024 + 1);
        let reset = l.rng.percent(10);
        let tls = l.rng.percent(20);
        let seed = l.seed;
        l.in_flight += 1;
        let user = Short {
            idx,
            size,
            reset,
            tls,
            src: Source::new(Pattern::new(seed, idx, 0)),
            tally: Tally::new(Pattern::new(seed, idx, 0)),
        };
        if tls {
            let (addr, ctx) = (cx.shared().tls_addr.clone(), cx.shared().tls.clone());
            let s = cx.stream(user);
            if let Err(e) = cx.connect_tls(s, &addr, "localhost", &ctx) {
                let what = format!("connect_tls refused: {e}");
                cx.shared_mut()
                    .out
                    .problems
                    .push((format!("short {idx}"), what));
            }
        } else {
            let addr = cx.shared().tcp.clone();
            cx.connect_to(&addr, user);
        }
    }
}

/// A short connection.
struct Short {
    idx: u64,
    size: u64,
    reset: bool,
    tls: bool,
    src: Source,
    tally: Tally,
}

impl SocketUser<Load> for Short {
    fn wants_on_sent(&self) -> bool {
        false
    }

    fn on_connected(&mut self, cx: &mut Cx<Load>, s: SocketId) {
        let mut buf = Vec::new();
        self.src.next(self.size as usize, &mut buf);
        let _ = cx.send(s, &buf);
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
        let _ = if self.reset {
            cx.reset(s)
        } else {
            cx.shutdown(s)
        };
    }

    fn on_received(&mut self, cx: &mut Cx<Load>, s: SocketId, data: &[u8]) {
        self.tally.take(data);
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
    }

    fn on_closed(&mut self, cx: &mut Cx<Load>, _: SocketId, closed: &Closed) {
        let at = format!(
            "short {} ({}{} bytes{})",
            self.idx,
            if self.tls { "TLS, " } else { "" },
            self.size,
            if self.reset { ", reset" } else { "" }
        );
        let l = cx.shared_mut();
        let end = Ending::of(closed);
        if self.reset {
            if end.reason != Reason::Reset {
                l.out
                    .problems
                    .push((at, format!("ended {end}, expected reset")));
            }
        } else {
            let bad = Expect::clean(&[Reason::Normal]).mismatches(&end);
            if !bad.is_empty() {
                l.out
                    .problems
                    .push((at.clone(), format!("{}; ended {end}", bad.join(", "))));
            }
            if self.tally.damage(self.size) > 0 {
                let what = format!(
                    "echo: {} of {} bytes back, {} changed",
                    self.tally.got, self.size, self.tally.changed
                );
                l.out.problems.push((at, what));
            }
        }
        l.out.churned += 1;
        l.out.bytes += self.size + self.tally.got;
        l.in_flight -= 1;
        launch(cx);
    }
}

/// A long-lived connection: 64 bytes, their echo, 100 ms, again, until the
/// load ends; then a half-close.
struct Long {
    idx: u64,
    src: Source,
    tally: Tally,
}

const PING: usize = 64;

impl Long {
    fn new(seed: u64, idx: u64) -> Long {
        Long {
            idx,
            src: Source::new(Pattern::new(seed, idx, 0)),
            tally: Tally::new(Pattern::new(seed, idx, 0)),
        }
    }

    fn ping(&mut self, cx: &mut Cx<Load>, s: SocketId, after: Duration) {
        let mut buf = Vec::new();
        self.src.next(PING, &mut buf);
        cx.set_timer(after, move |cx| {
            let _ = cx.send(s, &buf);
        });
    }
}

impl SocketUser<Load> for Long {
    fn wants_on_sent(&self) -> bool {
        false
    }

    fn on_connected(&mut self, cx: &mut Cx<Load>, s: SocketId) {
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
        self.ping(cx, s, Duration::ZERO);
    }

    fn on_received(&mut self, cx: &mut Cx<Load>, s: SocketId, data: &[u8]) {
        self.tally.take(data);
        let _ = cx.recv(s, 64 * 1024, RecvMode::Partial);
        if self.tally.got == self.src.sent {
            cx.shared_mut().out.round_trips += 1;
            if Instant::now() < cx.shared().stop_at {
                self.ping(cx, s, Duration::from_millis(100));
            } else {
                let _ = cx.shutdown(s);
            }
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<Load>, _: SocketId, closed: &Closed) {
        let at = format!("long {}", self.idx);
        let l = cx.shared_mut();
        let end = Ending::of(closed);
        let bad = Expect::clean(&[Reason::Normal]).mismatches(&end);
        if !bad.is_empty() {
            l.out
                .problems
                .push((at.clone(), format!("{}; ended {end}", bad.join(", "))));
        }
        if self.tally.damage(self.src.sent) > 0 {
            let what = format!(
                "echo: {} of {} bytes back, {} changed",
                self.tally.got, self.src.sent, self.tally.changed
            );
            l.out.problems.push((at, what));
        }
        l.out.bytes += self.src.sent + self.tally.got;
        l.long_open -= 1;
    }
}
