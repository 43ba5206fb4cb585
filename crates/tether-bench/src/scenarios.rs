//! The scenarios: which servers, which cases, which figures. Every case runs
//! each server once per round, in an order that rotates from round to round,
//! and every round goes through all the cases before the next begins, so
//! that a machine that gets busier or quieter over the run touches every
//! server alike.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Net, Service, Spec, Stats, Target};
use crate::load::{self, Window};
use crate::report::Report;
use crate::servers::{Kind, Server};
use crate::tlsio::Pki;
use crate::Opts;

const THREE: [Kind; 3] = [Kind::Tether, Kind::Mio, Kind::Tokio];
/// Plain TCP's echo scenarios (pingpong, churn) run every server but std,
/// which serves bulk only: tether on both backends, mio, tokio, monoio and
/// the hand-written io_uring loop.
fn tcp_echo_servers() -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|&k| k != Kind::Std).collect()
}

/// Run `f` for every round, case and server, servers in rotating order.
/// `name` names a case (`--case` picks cases by a part of their name).
fn rounds<C>(
    opts: &Opts,
    kinds: &[Kind],
    cases: &[C],
    name: impl Fn(&C) -> String,
    mut f: impl FnMut(&str, &C, Kind),
) {
    let cases: Vec<(String, &C)> = cases
        .iter()
        .map(|c| (name(c), c))
        .filter(|(n, _)| {
            opts.case
                .as_ref()
                .is_none_or(|want| n.contains(want.as_str()))
        })
        .collect();
    for r in 0..opts.rounds {
        for (n, case) in &cases {
            for i in 0..kinds.len() {
                let kind = kinds[(i + r) % kinds.len()];
                if opts.only.as_ref().is_none_or(|only| only.contains(&kind)) && kind.available() {
                    f(n, case, kind);
                }
            }
        }
    }
}

pub(crate) fn about(opts: &Opts, what: &str) -> String {
    format!(
        "{what}; {:.2} s measured after {:.2} s warm-up",
        opts.window.measure.as_secs_f64(),
        opts.window.warmup.as_secs_f64()
    )
}

/// Pingpong over TCP, Unix sockets or TLS.
fn pingpong_cases(
    opts: &Opts,
    report: &mut Report,
    net: Net,
    pki: Option<&Arc<Pki>>,
    cases: &[(usize, usize)],
    loops: usize,
    kinds: &[Kind],
) {
    let spec = Spec {
        net,
        service: Service::Echo,
        tls: pki.cloned(),
        loops,
    };
    let client = pki.map(|p| p.client.clone());
    let name = |&(conns, size): &(usize, usize)| format!("conns={conns} size={size}");
    rounds(opts, kinds, cases, name, |case, &(conns, size), kind| {
        let server = Server::start(kind, &spec);
        let m = load::pingpong(&server.target, client.as_ref(), conns, size, opts.window);
        server.stop();
        report.add(case, kind, "round trips/s ↑", m.per_sec());
        report.add(case, kind, "p50 µs ↓", m.latency_us(0.5));
        report.add(case, kind, "p99 µs ↓", m.latency_us(0.99));
        report.add(case, kind, "server CPU s/1M ↓", m.cpu_per_million());
        report.add(case, kind, "client busy % ↓", m.client_busy());
    });
}

pub(crate) fn pingpong(opts: &Opts) -> Report {
    let what = match opts.loops {
        1 => "TCP echo, one message in flight per connection".to_string(),
        n => format!(
            "TCP echo, one message in flight per connection; tether runs {n} loops on \
             {n} threads sharing the port (SO_REUSEPORT), the others one"
        ),
    };
    let tcp = tcp_echo_servers();
    let mut report = Report::new("pingpong", about(opts, &what), &tcp, opts.rounds);
    let (conns, sizes): (&[usize], &[usize]) = if opts.quick {
        (&[1, 256], &[64, 16384])
    } else {
        (&[1, 16, 256, 1024], &[64, 1024, 16384])
    };
    let cases: Vec<_> = conns
        .iter()
        .flat_map(|&c| sizes.iter().map(move |&s| (c, s)))
        .collect();
    pingpong_cases(opts, &mut report, Net::Tcp, None, &cases, opts.loops, &tcp);
    report
}

pub(crate) fn local(opts: &Opts) -> Report {
    let mut report = Report::new(
        "local",
        about(
            opts,
            "Unix-socket echo, one message in flight per connection",
        ),
        &THREE,
        opts.rounds,
    );
    let cases: &[(usize, usize)] = if opts.quick {
        &[(16, 64)]
    } else {
        &[(1, 64), (1, 16384), (256, 64), (256, 16384)]
    };
    pingpong_cases(opts, &mut report, Net::Unix, None, cases, 1, &THREE);
    report
}

/// Bulk transfer, up (the server reads) and down (the server writes 64 KiB
/// chunks), plain or TLS.
fn stream_cases(
    opts: &Opts,
    report: &mut Report,
    kinds: &[Kind],
    pki: Option<&Arc<Pki>>,
    cases: &[(bool, usize)],
) {
    let client = pki.map(|p| p.client.clone());
    let name = |&(up, conns): &(bool, usize)| {
        let dir = if up {
            "up (server reads)"
        } else {
            "down (server writes)"
        };
        format!("{dir} conns={conns}")
    };
    rounds(opts, kinds, cases, name, |case, &(up, conns), kind| {
        let spec = Spec {
            net: Net::Tcp,
            service: if up { Service::Sink } else { Service::Source },
            tls: pki.cloned(),
            loops: 1,
        };
        let server = Server::start(kind, &spec);
        let m = load::stream(
            &server.target,
            client.as_ref(),
            conns,
            up,
            &server.stats,
            opts.window,
        );
        server.stop();
        report.add(case, kind, "MB/s ↑", m.per_sec() / 1e6);
        report.add(
            case,
            kind,
            "server CPU s/GB ↓",
            m.server_cpu.as_secs_f64() / (m.count.max(1) as f64 / 1e9),
        );
        report.add(case, kind, "client busy % ↓", m.client_busy());
    });
}

pub(crate) fn stream(opts: &Opts) -> Report {
    let kinds = Kind::ALL;
    let mut report = Report::new(
        "stream",
        about(
            opts,
            "TCP bulk, 64 KiB writes; std = blocking thread per connection",
        ),
        &kinds,
        opts.rounds,
    );
    let cases: &[(bool, usize)] = if opts.quick {
        &[(true, 1), (false, 1)]
    } else {
        &[(true, 1), (true, 4), (false, 1), (false, 4)]
    };
    stream_cases(opts, &mut report, &kinds, None, cases);
    report
}

pub(crate) fn udp(opts: &Opts) -> Report {
    let mut report = Report::new(
        "udp",
        about(
            opts,
            "UDP echo of 64-byte datagrams, a window of them in flight",
        ),
        &THREE,
        opts.rounds,
    );
    let windows: &[usize] = if opts.quick { &[16] } else { &[1, 64] };
    let spec = Spec {
        net: Net::Udp,
        service: Service::Echo,
        tls: None,
        loops: 1,
    };
    let name = |w: &usize| format!("in flight={w}");
    rounds(opts, &THREE, windows, name, |case, &window, kind| {
        let server = Server::start(kind, &spec);
        let Target::Udp(addr) = server.target else {
            unreachable!()
        };
        let m = load::udp(addr, window, 64, opts.window);
        server.stop();
        report.add(case, kind, "datagrams/s ↑", m.per_sec());
        report.add(case, kind, "server CPU s/1M ↓", m.cpu_per_million());
        report.add(case, kind, "lost ↓", m.errors as f64);
    });
    report
}

/// Wait until the server has closed every connection it opened.
fn quiesce(stats: &Stats) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (accepted, closed) = (Stats::get(&stats.accepted), Stats::get(&stats.closed));
        if closed >= accepted || Instant::now() > deadline {
            return accepted.saturating_sub(closed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn fd_count() -> f64 {
    std::fs::read_dir("/proc/self/fd").map_or(0.0, |d| d.count() as f64)
}

/// Resident set size in bytes.
pub(crate) fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * crate::sys::page_size()
}

/// Connect, exchange, graceful close, again: plain (`churn`) or with a full
/// TLS 1.3 handshake each time (`tls-handshake`).
fn churn_cases(
    opts: &Opts,
    report: &mut Report,
    pki: Option<&Arc<Pki>>,
    cases: &[usize],
    kinds: &[Kind],
) {
    let spec = Spec {
        net: Net::Tcp,
        service: Service::Echo,
        tls: pki.cloned(),
        loops: 1,
    };
    let client = pki.map(|p| p.client.clone());
    let per_sec = if pki.is_some() {
        "handshakes/s ↑"
    } else {
        "connections/s ↑"
    };
    let name = |p: &usize| format!("parallel={p}");
    rounds(opts, kinds, cases, name, |case, &parallel, kind| {
        let server = Server::start(kind, &spec);
        // A first run warms everything (the server's tables, the allocator);
        // the second is measured, and must leave nothing behind.
        let warm = Window {
            warmup: Duration::ZERO,
            measure: opts.window.warmup,
        };
        let _ = load::churn(&server.target, client.as_ref(), parallel, warm);
        quiesce(&server.stats);
        let (fds0, rss0) = (fd_count(), rss());
        let measured = Window {
            warmup: Duration::ZERO,
            measure: opts.window.measure,
        };
        let m = load::churn(&server.target, client.as_ref(), parallel, measured);
        let unclosed = quiesce(&server.stats);
        let (fds1, rss1) = (fd_count(), rss());
        server.stop();
        report.add(case, kind, per_sec, m.per_sec());
        report.add(
            case,
            kind,
            "server CPU µs/conn ↓",
            m.server_cpu.as_secs_f64() * 1e6 / m.count.max(1) as f64,
        );
        report.add(case, kind, "client busy % ↓", m.client_busy());
        report.add(case, kind, "failed ↓", m.errors as f64);
        report.add(case, kind, "left open by server ↓", unclosed as f64);
        report.add(case, kind, "fd growth ↓", fds1 - fds0);
        report.add(
            case,
            kind,
            "RSS growth KiB ↓",
            (rss1 as f64 - rss0 as f64) / 1024.0,
        );
    });
}

pub(crate) fn churn(opts: &Opts) -> Report {
    let tcp = tcp_echo_servers();
    let mut report = Report::new(
        "churn",
        about(
            opts,
            "TCP connect, 64-byte exchange, client FIN, server FIN, close",
        ),
        &tcp,
        opts.rounds,
    );
    let cases: &[usize] = if opts.quick { &[16] } else { &[1, 64] };
    churn_cases(opts, &mut report, None, cases, &tcp);
    report
}

pub(crate) fn tls_handshake(opts: &Opts, pki: &Arc<Pki>) -> Report {
    let mut report = Report::new(
        "tls-handshake",
        about(
            opts,
            "full TLS 1.3 handshakes (ECDSA P-256, X25519, no resumption), 64-byte exchange, close_notify both ways",
        ),
        &THREE,
        opts.rounds,
    );
    let cases: &[usize] = if opts.quick { &[8] } else { &[1, 32] };
    churn_cases(opts, &mut report, Some(pki), cases, &THREE);
    report
}

pub(crate) fn tls_data(opts: &Opts, pki: &Arc<Pki>) -> Report {
    let mut report = Report::new(
        "tls-data",
        about(
            opts,
            "TLS 1.3 (AES-256-GCM) bulk 64 KiB writes, and echo pingpong",
        ),
        &THREE,
        opts.rounds,
    );
    let bulk: &[(bool, usize)] = if opts.quick {
        &[(false, 1)]
    } else {
        &[(true, 1), (false, 1)]
    };
    let ping: &[(usize, usize)] = if opts.quick {
        &[(16, 1024)]
    } else {
        &[(1, 64), (1, 16384), (256, 64), (256, 16384)]
    };
    stream_cases(opts, &mut report, &THREE, Some(pki), bulk);
    pingpong_cases(opts, &mut report, Net::Tcp, Some(pki), ping, 1, &THREE);
    report
}

/// A fixed amount of plain TCP pingpong against one server, for counting its
/// instructions and calls under callgrind (`callgrind.sh` beside Cargo.toml):
/// `conns` connections each make exactly `trips` round trips of `size`
/// bytes, the client closes them all, and the server is stopped only once it
/// has closed every one, so that what follows the round trips is the same
/// whatever their number. Prints one line to stderr.
pub(crate) fn callgrind_pingpong(kind: Kind, conns: usize, size: usize, trips: u64) {
    if !kind.available() {
        std::process::exit(2);
    }
    let spec = Spec {
        net: Net::Tcp,
        service: Service::Echo,
        tls: None,
        loops: 1,
    };
    let server = Server::start(kind, &spec);
    let m = load::pingpong_trips(&server.target, conns, size, trips);
    let unclosed = quiesce(&server.stats);
    server.stop();
    eprintln!(
        "tether-bench: callgrind-pingpong server={} conns={conns} size={size} \
         trips per connection={trips} round trips={} in {:.2} s, {} left open by server",
        kind.name(),
        m.count,
        m.elapsed.as_secs_f64(),
        unclosed,
    );
}
