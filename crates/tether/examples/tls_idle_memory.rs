//! Memory per idle TLS connection.
//!
//! ```text
//! cargo run --release -p tether --example tls_idle_memory -- [N] [tcp]
//! ```
//!
//! One loop holds both ends: N tether clients connect over TLS 1.3 to a tether
//! server. Once every handshake is over (both ends had `on_tls_ready`) and
//! nothing is queued, the growth of the resident set is divided by the 2N
//! sockets, each end counted separately. A first batch of connections is made
//! and measured from, so one-time costs (the provider's tables, the first
//! buffers of the loop) are left out. With `tcp`, the same with plain TCP, for
//! comparison. Kernel socket buffers are not in the resident set.

use std::time::Instant;

use tether::{
    Admission, Closed, Cx, Fingerprint, IoMux, PeerInfo, SocketId, SocketUser, TlsContext, TlsInfo,
};

const WARM_UP: usize = 16;

struct Run {
    tls: bool,
    client: TlsContext,
    addr: String,
    n: usize,
    /// Ends whose connection is up.
    ready: usize,
    before: Option<u64>,
    after: Option<u64>,
    failures: usize,
}

/// Resident set size, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    pages * page
}

fn connect(cx: &mut Cx<Run>, count: usize) {
    for _ in 0..count {
        let s = cx.stream(End);
        let (addr, ctx, tls) = {
            let run = cx.shared();
            (run.addr.clone(), run.client.clone(), run.tls)
        };
        if tls {
            cx.connect_tls(s, &addr, "localhost", &ctx)
                .expect("connect_tls");
        } else {
            cx.connect(s, &addr).expect("connect");
        }
    }
}

/// One end of a connection, client or server: it counts itself up, then idles.
struct End;

impl End {
    fn up(cx: &mut Cx<Run>) {
        let run = cx.shared_mut();
        run.ready += 1;
        if run.ready == 2 * WARM_UP {
            run.before = Some(rss());
            let n = run.n;
            connect(cx, n);
        } else if run.ready == 2 * (WARM_UP + run.n) {
            run.after = Some(rss());
            cx.terminate();
        }
    }
}

impl SocketUser<Run> for End {
    fn on_connected(&mut self, cx: &mut Cx<Run>, _: SocketId) {
        if !cx.shared().tls {
            End::up(cx);
        }
    }
    fn on_accepted(&mut self, cx: &mut Cx<Run>, _: SocketId) {
        if !cx.shared().tls {
            End::up(cx);
        }
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Run>, _: SocketId, _: &TlsInfo) {
        End::up(cx);
    }
    fn on_closed(&mut self, cx: &mut Cx<Run>, _: SocketId, closed: &Closed) {
        if closed.reason != tether::Reason::Stopped {
            eprintln!("closed early: {} {:?}", closed.reason, closed.error);
            cx.shared_mut().failures += 1;
            cx.terminate();
        }
    }
}

struct Listener;

impl SocketUser<Run> for Listener {
    fn on_incoming(&mut self, _: &mut Cx<Run>, _: SocketId, _: &PeerInfo) -> Admission<Run> {
        Admission::Accept(Box::new(End))
    }
    fn on_closed(&mut self, _: &mut Cx<Run>, _: SocketId, _: &Closed) {}
}

/// Two descriptors per connection: raise the soft limit as far as allowed.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |a| a.parse().expect("N"));
    let tls = args.next().as_deref() != Some("tcp");
    raise_fd_limit();

    let chain = include_bytes!("../tests/data/cert.pem");
    let key = include_bytes!("../tests/data/key.pem");
    let server = TlsContext::builder()
        .certificate_pem(chain, key)
        .and_then(|b| b.build())
        .expect("server context");
    let pin: Fingerprint = server.fingerprint().expect("a certificate");
    let client = TlsContext::builder()
        .pin(pin)
        .build()
        .expect("client context");

    let mut mux = IoMux::new(Run {
        tls,
        client,
        addr: String::new(),
        n,
        ready: 0,
        before: None,
        after: None,
        failures: 0,
    })
    .expect("event loop");
    let l = mux.stream(Listener);
    mux.bind(l, "127.0.0.1:0").expect("bind");
    if tls {
        mux.listen_tls(l, &server).expect("listen_tls");
    } else {
        mux.listen(l).expect("listen");
    }
    mux.shared_mut().addr = mux.local_addr(l).expect("address").to_string();
    connect(&mut mux, WARM_UP);
    let started = Instant::now();
    mux.run().expect("loop");
    let elapsed = started.elapsed();

    let run = mux.shared();
    assert_eq!(run.failures, 0, "connections failed");
    let (Some(before), Some(after)) = (run.before, run.after) else {
        panic!(
            "the loop ended before all connections were up ({} ends)",
            run.ready
        );
    };
    let per_end = after.saturating_sub(before) as f64 / (2 * n) as f64;
    println!(
        "{} idle {} connections ({} ends): RSS {} -> {} bytes, {:.0} bytes per end ({:.1} KiB), {:.2?}",
        n,
        if tls { "TLS 1.3" } else { "TCP" },
        2 * n,
        before,
        after,
        per_end,
        per_end / 1024.0,
        elapsed
    );
}
