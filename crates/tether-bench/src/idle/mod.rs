//! idle-memory: what N idle connections cost a server, and whether the few
//! active among them are served as fast as when N is small. Each measurement
//! runs the server in a fresh child process (no allocator state carried over
//! from another server) and the clients in a second one (their memory and
//! descriptors are not the server's); the parent reads both through /proc.
//!
//! Per measurement: WARM connections up, the server's RSS read; then N more
//! opened (the time until the server counts all up is *accept all*), RSS
//! read again (growth / N is *bytes/conn*); the server's loop thread's
//! context switches counted over a window with every connection idle
//! (*wake-ups/s*); then 1 % of the N driven with echo round trips (latency,
//! and the server's CPU time per round trip).
#![forbid(unsafe_code)]

mod child;
mod clients;
mod procfs;
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use child::Proc;
pub(crate) use clients::clients_child;
pub(crate) use server::server_child;

use crate::report::Report;
use crate::servers::Kind;
use crate::Opts;

/// Connections made before the first reading: one-time costs (the loop's
/// first buffers, TLS tables) are not any one connection's.
const WARM: usize = 16;
/// Descriptors a server needs besides its connections (listener, poller,
/// waker, stdio, a few spare).
const SPARE_FDS: usize = 32;

/// Connections opened at a time: the clients open a batch while the server
/// takes them, and the next batch waits until the server has them all. A
/// connection is up for the client when the kernel completed it, before the
/// server accepts it; without the wait the clients ran ahead, the listen
/// backlog (1,024) overflowed, and the kernel's one-second retry of each
/// dropped handshake was measured as accept time.
const BATCH: usize = 512;

/// Open `n` more connections after the `had` the server has, in batches;
/// returns once the server counts every one up.
fn open(clients: &mut Proc, server: &mut Proc, had: usize, n: usize) {
    let mut opened = 0;
    while opened < n {
        let k = BATCH.min(n - opened);
        opened += k;
        clients.say(&format!("open {k}"));
        server.say(&format!("wait {}", had + opened));
        clients.expect("up");
        server.expect("up");
    }
}

/// One case: plain or TLS, N connections.
#[derive(Clone, Copy)]
struct Case {
    tls: bool,
    n: usize,
}

impl Case {
    fn name(self) -> String {
        format!("{} N={}", if self.tls { "TLS" } else { "plain" }, self.n)
    }
}

/// How long each phase lasts.
struct Windows {
    /// All idle, counting the loop's wake-ups.
    idle: Duration,
    /// The active 1 % echoing, and the slices it moves through.
    echo: Duration,
    slices: usize,
    /// Before reading RSS: the last handshakes' output written, buffers
    /// given back.
    settle: Duration,
}

pub(crate) fn idle_memory(opts: &Opts) -> Report {
    let kinds = [Kind::Tether, Kind::TetherUring, Kind::Mio, Kind::Tokio];
    let cases: Vec<Case> = match (opts.idle_conns, opts.quick) {
        (Some(n), _) => vec![Case { tls: false, n }, Case { tls: true, n }],
        (None, true) => vec![Case { tls: false, n: 200 }, Case { tls: true, n: 200 }],
        (None, false) => [1000, 5000, 19000]
            .map(|n| Case { tls: false, n })
            .into_iter()
            .chain([Case {
                tls: true,
                n: 10000,
            }])
            .collect(),
    };
    let limit = crate::sys::raise_nofile_limit() as usize;
    let largest = cases.iter().map(|c| c.n).max().unwrap_or(0);
    if largest + WARM + SPARE_FDS > limit {
        eprintln!(
            "tether-bench: idle-memory: {largest} connections need more descriptors than the limit ({limit}) allows a process; at most {}",
            limit.saturating_sub(WARM + SPARE_FDS)
        );
        std::process::exit(2);
    }
    let windows = if opts.quick {
        Windows {
            idle: Duration::from_millis(50),
            echo: opts.window.measure,
            slices: 2,
            settle: Duration::from_millis(20),
        }
    } else {
        Windows {
            idle: Duration::from_secs(3),
            echo: opts.window.measure,
            slices: 10,
            settle: Duration::from_millis(200),
        }
    };
    let mut report = Report::new(
        "idle-memory",
        format!(
            "N idle echo connections (clients in another process); 1 % of them echo 64 B for {:.2} s through {} slices",
            windows.echo.as_secs_f64(),
            windows.slices
        ),
        &kinds,
        opts.idle_rounds,
    );
    let ca =
        TempFile(std::env::temp_dir().join(format!("tether-bench-{}-ca.pem", std::process::id())));
    let ca_path = &ca.0;
    for r in 0..opts.idle_rounds {
        for case in &cases {
            if opts
                .case
                .as_ref()
                .is_some_and(|c| !case.name().contains(c.as_str()))
            {
                continue;
            }
            for i in 0..kinds.len() {
                let kind = kinds[(i + r) % kinds.len()];
                if opts.only.as_ref().is_some_and(|only| !only.contains(&kind)) {
                    continue;
                }
                measure(&mut report, kind, *case, &windows, ca_path);
            }
        }
    }
    report
}

/// A file removed when dropped, also when a run panics.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn measure(report: &mut Report, kind: Kind, case: Case, w: &Windows, ca_path: &Path) {
    let Case { tls, n } = case;
    let ca = ca_path.display().to_string();
    let mode = if tls { "tls" } else { "plain" };
    let mut server = Proc::spawn(&[
        "__idle-server".into(),
        kind.name().into(),
        mode.into(),
        ca.clone(),
    ]);
    let addr = server.expect("addr");
    let mut clients = Proc::spawn(&[
        "__idle-clients".into(),
        addr,
        if tls { ca } else { "-".into() },
    ]);
    open(&mut clients, &mut server, 0, WARM);
    server.say(&format!("rss {}", w.settle.as_millis()));
    let before: f64 = server.expect("rss").parse().expect("rss");
    let slab_before = procfs::socket_slab_bytes();

    let t0 = Instant::now();
    open(&mut clients, &mut server, WARM, n);
    let accept = t0.elapsed();
    server.say(&format!("rss {}", w.settle.as_millis()));
    let after: f64 = server.expect("rss").parse().expect("rss");
    let slab_after = procfs::socket_slab_bytes();

    // tether's loop thread has the one name on either backend.
    let named = if kind == Kind::TetherUring {
        Kind::Tether
    } else {
        kind
    };
    let name = format!("{}-server", named.name());
    let tid = procfs::thread_named(server.pid(), &name)
        .unwrap_or_else(|| panic!("no thread named {name} in the server"));
    let s0 = procfs::switches(server.pid(), tid);
    // The window is the measurement, not a wait for something.
    std::thread::sleep(w.idle);
    let wakeups = procfs::switches(server.pid(), tid) - s0;

    clients.say(&format!(
        "echo {} {} {}",
        w.echo.as_secs_f64(),
        w.slices,
        server.pid()
    ));
    let reply = clients.expect("echo");
    let f: Vec<u64> = reply
        .split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect();
    let (trips, p50, p99, cpu, errors) = (f[0], f[1], f[2], f[3], f[4]);
    clients.finish();
    server.finish();

    let c = case.name();
    let c = c.as_str();
    report.add(c, kind, "bytes/conn ↓", (after - before) / n as f64);
    report.add(c, kind, "accept all ms ↓", accept.as_secs_f64() * 1e3);
    report.add(
        c,
        kind,
        "idle wake-ups/s ↓",
        wakeups as f64 / w.idle.as_secs_f64(),
    );
    report.add(c, kind, "echoes/s ↑", trips as f64 / w.echo.as_secs_f64());
    report.add(c, kind, "echo p50 µs ↓", p50 as f64 / 1e3);
    report.add(c, kind, "echo p99 µs ↓", p99 as f64 / 1e3);
    report.add(
        c,
        kind,
        "server CPU µs/echo ↓",
        cpu as f64 / 1e3 / trips.max(1) as f64,
    );
    // Kernel memory is machine-wide (other processes move it too) and both
    // ends of each loopback connection are on this machine: a log line for
    // BENCHMARKS.md's estimate, not a figure of the server's.
    eprintln!(
        "tether-bench: idle-memory {kind:?} {c}: socket slab caches grew {:.0} B per connection (both ends){}",
        slab_after.saturating_sub(slab_before) as f64 / n as f64,
        if errors > 0 {
            format!("; {errors} echo connection(s) FAILED")
        } else {
            String::new()
        }
    );
}
