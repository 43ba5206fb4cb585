//! The `dtls` scenario: DTLS handshakes per second (cookie exchange
//! included), and 64-byte echo through 1 and 64 associations, DTLS beside
//! plain UDP associations of the same shape, so that the cost of DTLS is a
//! ratio. Server and load are both tether: a listener on its own thread
//! (`listen_dtls`, or `listen` on UDP for plain associations) echoing each
//! record, and clients on another loop on the calling thread.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, DtlsContext, IoMux, PeerInfo, RecvMode, SocketId, SocketUser, TlsInfo,
};

use crate::common::Stats;
use crate::load::{self, Window};
use crate::report::Report;
use crate::servers::Kind;
use crate::Opts;

/// The report's columns: DTLS in tether's place, plain UDP in mio's, so that
/// the ratio column reads dtls/udp. Both are tether.
const DTLS: Kind = Kind::Tether;
const UDP: Kind = Kind::Mio;

/// A tether UDP listener on loopback, on its own thread, echoing every record
/// of every association.
struct AssocServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    handle: tether::MuxHandle<Arc<Stats>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AssocServer {
    fn start(ctx: Option<DtlsContext>) -> AssocServer {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel();
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("tether-dtls-server".into())
            .spawn(move || {
                let mut mux = IoMux::new(st).expect("tether loop");
                let l = mux.udp(Listener {
                    dtls: ctx.is_some(),
                });
                mux.bind(l, "127.0.0.1:0").expect("bind");
                match &ctx {
                    Some(ctx) => mux.listen_dtls(l, ctx).expect("listen_dtls"),
                    None => mux.listen(l).expect("listen"),
                }
                let addr = match mux.local_addr(l) {
                    Some(tether::SockAddr::Inet(a)) => a,
                    other => panic!("unexpected local address {other:?}"),
                };
                tx.send((addr, mux.handle())).expect("report");
                mux.run().expect("tether loop");
            })
            .expect("spawn");
        let (addr, handle) = rx.recv().expect("server started");
        AssocServer {
            addr,
            stats,
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for AssocServer {
    fn drop(&mut self) {
        self.handle.terminate();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Listener {
    dtls: bool,
}

impl SocketUser<Arc<Stats>> for Listener {
    fn on_incoming(
        &mut self,
        _: &mut Cx<Arc<Stats>>,
        _: SocketId,
        _: &PeerInfo,
    ) -> Admission<Arc<Stats>> {
        Admission::Accept(Box::new(Assoc { dtls: self.dtls }))
    }
    fn on_closed(&mut self, _: &mut Cx<Arc<Stats>>, _: SocketId, _: &Closed) {}
}

/// One association: echoes each record.
struct Assoc {
    dtls: bool,
}

impl SocketUser<Arc<Stats>> for Assoc {
    fn wants_on_sent(&self) -> bool {
        false
    }
    fn on_accepted(&mut self, cx: &mut Cx<Arc<Stats>>, s: SocketId) {
        cx.shared().accepted();
        if !self.dtls {
            cx.shared().up();
        }
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Arc<Stats>>, _: SocketId, _: &TlsInfo) {
        cx.shared().up();
    }
    fn on_received(&mut self, cx: &mut Cx<Arc<Stats>>, s: SocketId, data: &[u8]) {
        let _ = cx.send(s, data);
        let _ = cx.recv(s, 2048, RecvMode::Partial);
    }
    fn on_closed(&mut self, cx: &mut Cx<Arc<Stats>>, _: SocketId, _: &Closed) {
        cx.shared().closed();
    }
}

/// Wait (half a second at most) until the server has seen every association
/// end: a client's close_notify should end it (`ByPeer`).
fn quiesce(stats: &Stats) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    loop {
        let (accepted, closed) = (Stats::get(&stats.accepted), Stats::get(&stats.closed));
        if closed >= accepted || std::time::Instant::now() > deadline {
            return accepted.saturating_sub(closed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn dtls(opts: &Opts) -> Report {
    let mut report = Report::new(
        "dtls",
        format!(
            "{}; tether both ends, dtls column = DTLS 1.2 (dimpl, self-signed ECDSA, pinned), \
             udp column = plain UDP associations of the same shape",
            crate::scenarios::about(
                opts,
                "DTLS handshakes (cookie exchange, close_notify); 64-byte echo, one record \
                 in flight per association"
            )
        ),
        &[DTLS, UDP],
        opts.rounds,
    )
    .labels(&[(DTLS, "dtls"), (UDP, "udp")]);
    let server_ctx = DtlsContext::builder().build().expect("server context");
    let client_ctx = DtlsContext::builder()
        .pin(server_ctx.fingerprint())
        .build()
        .expect("client context");
    let parallel: &[usize] = if opts.quick { &[4] } else { &[1, 16] };
    let assocs: &[usize] = &[1, 64];
    let wanted = |name: &str| opts.case.as_ref().is_none_or(|c| name.contains(c.as_str()));
    for r in 0..opts.rounds {
        for &p in parallel {
            let case = format!("handshakes parallel={p}");
            if !wanted(&case) {
                continue;
            }
            let server = AssocServer::start(Some(server_ctx.clone()));
            let warm = Window {
                warmup: Duration::ZERO,
                measure: opts.window.warmup,
            };
            let _ = load::assoc::handshakes(server.addr, &client_ctx, p, warm);
            let measured = Window {
                warmup: Duration::ZERO,
                measure: opts.window.measure,
            };
            let m = load::assoc::handshakes(server.addr, &client_ctx, p, measured);
            let unclosed = quiesce(&server.stats);
            drop(server);
            report.add(&case, DTLS, "handshakes/s ↑", m.per_sec());
            report.add(
                &case,
                DTLS,
                "server CPU µs/handshake ↓",
                m.server_cpu.as_secs_f64() * 1e6 / m.count.max(1) as f64,
            );
            report.add(&case, DTLS, "client busy % ↓", m.client_busy());
            report.add(&case, DTLS, "failed ↓", m.errors as f64);
            report.add(&case, DTLS, "left open by server ↓", unclosed as f64);
        }
        for &n in assocs {
            let case = format!("echo associations={n} size=64");
            if !wanted(&case) {
                continue;
            }
            // Alternate which goes first from round to round.
            let order = if r % 2 == 0 { [DTLS, UDP] } else { [UDP, DTLS] };
            for kind in order {
                let dtls = kind == DTLS;
                let server = AssocServer::start(dtls.then(|| server_ctx.clone()));
                let ctx = dtls.then_some(&client_ctx);
                let m = load::assoc::echo(server.addr, ctx, n, opts.window);
                drop(server);
                report.add(&case, kind, "round trips/s ↑", m.per_sec());
                report.add(&case, kind, "server CPU s/1M ↓", m.cpu_per_million());
                report.add(&case, kind, "client busy % ↓", m.client_busy());
                report.add(&case, kind, "resent ↓", m.errors as f64);
            }
        }
    }
    report
}
