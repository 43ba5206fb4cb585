//! tether-bench: the same load against tether, a hand-written mio loop (the
//! floor of what epoll allows) and tokio's current-thread runtime, in one run,
//! interleaved round by round. See BENCHMARKS.md at the repository root.
//!
//! ```text
//! cargo run --release -p tether-bench -- SCENARIO [--quick] [--rounds N] [--secs S]
//! cargo run --release -p tether-bench -- pingpong --loops 2
//! ```
//!
//! `callgrind-pingpong` is not a scenario but a fixed amount of work for one
//! server, for `callgrind.sh` to run under valgrind; `callgrind-http` the
//! same for the http scenario's keep-alive load (`--only tether|hyper`,
//! `--conns`, `--trips` requests per connection).
#![deny(unsafe_code)]

mod common;
mod dtls;
mod http;
mod idle;
mod load;
mod report;
mod scenarios;
mod server_mio;
mod server_monoio;
mod server_std;
mod server_tether;
mod server_tokio;
mod server_uring;
mod servers;
mod sys;
mod tlsio;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::load::Window;
use crate::servers::Kind;

const SCENARIOS: [&str; 10] = [
    "pingpong",
    "stream",
    "local",
    "udp",
    "churn",
    "tls-handshake",
    "tls-data",
    "dtls",
    "http",
    "idle-memory",
];

/// Benchmarks: tether (epoll, io_uring) vs a hand-written mio loop vs tokio vs monoio vs a hand-written io_uring loop, on the same load.
#[derive(Parser, Debug)]
#[command(name = "tether-bench")]
struct Args {
    /// pingpong, stream, local, udp, churn, tls-handshake, tls-data, dtls,
    /// http, idle-memory, or all; or callgrind-pingpong: a fixed number of plain
    /// TCP round trips against one server (--only, default tether), untimed,
    /// for callgrind.sh; or callgrind-http: a fixed number of keep-alive
    /// HTTP requests (--conns, --trips per connection) against tether or
    /// hyper (--only tether|hyper).
    scenario: String,
    /// A few seconds for everything: proves it builds and runs (numbers
    /// from it mean little).
    #[arg(long)]
    quick: bool,
    /// Rounds per case (each server once per round) [default: 5, idle-memory
    /// 3; quick 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds measured per run (idle-memory: of echo by the active 1 %)
    /// [default: 1.0; quick 0.04].
    #[arg(long)]
    secs: Option<f64>,
    /// Seconds of warm-up before each measured window [default: 0.25; quick 0.02].
    #[arg(long)]
    warmup: Option<f64>,
    /// idle-memory: this one N of connections, plain and TLS [default: plain
    /// 1000, 5000, 19000 and TLS 10000; quick 200]. At most the descriptor
    /// limit less 48.
    #[arg(long)]
    idle_conns: Option<usize>,
    /// Only these servers (comma-separated: tether,tether-uring,mio,tokio,
    /// monoio,uring,std; in http, hyper, which stands for tokio).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Only the cases whose name contains this ("conns=256 size=64", "up").
    #[arg(long)]
    case: Option<String>,
    /// pingpong: the tether server runs this many loops, each on its own
    /// thread with its own listener on the one port (SO_REUSEPORT). mio and
    /// tokio run one loop whatever this says.
    #[arg(long, default_value_t = 1)]
    loops: usize,
    /// callgrind-pingpong: round trips per connection.
    #[arg(long, default_value_t = 100)]
    trips: u64,
    /// callgrind-pingpong: connections.
    #[arg(long, default_value_t = 256)]
    conns: usize,
    /// callgrind-pingpong: message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

/// What every scenario is run with.
#[derive(Debug)]
pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) rounds: usize,
    pub(crate) window: Window,
    /// idle-memory's one N, when given.
    pub(crate) idle_conns: Option<usize>,
    /// idle-memory's rounds (fewer by default: 19,000 connections take a while).
    pub(crate) idle_rounds: usize,
    pub(crate) only: Option<Vec<Kind>>,
    pub(crate) case: Option<String>,
    /// Loops of the tether server in pingpong.
    pub(crate) loops: usize,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // The idle-memory scenario's child processes.
    match argv.get(1).map(String::as_str) {
        Some("__idle-server") => return idle::server_child(&argv[2..]),
        Some("__idle-clients") => return idle::clients_child(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    if args.scenario == "callgrind-pingpong" {
        let kind = match args.only.as_deref() {
            None => Some(Kind::Tether),
            Some([one]) => Kind::parse(one).filter(|k| *k != Kind::Std),
            Some(_) => None,
        }
        .unwrap_or_else(|| {
            eprintln!("tether-bench: callgrind-pingpong takes one server: --only tether|tether-uring|mio|tokio|monoio|uring");
            std::process::exit(2);
        });
        sys::raise_nofile_limit();
        scenarios::callgrind_pingpong(kind, args.conns.max(1), args.size.max(1), args.trips);
        return;
    }
    if args.scenario == "callgrind-http" {
        let kind = match args.only.as_deref() {
            None => Some(Kind::Tether),
            Some([one]) if one == "hyper" => Some(Kind::Tokio),
            Some([one]) => Kind::parse(one).filter(|k| *k == Kind::Tether),
            Some(_) => None,
        }
        .unwrap_or_else(|| {
            eprintln!("tether-bench: callgrind-http takes one server: --only tether|hyper");
            std::process::exit(2);
        });
        sys::raise_nofile_limit();
        http::callgrind_http(kind, args.conns.max(1), args.trips);
        return;
    }
    let chosen: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else if SCENARIOS.contains(&args.scenario.as_str()) {
        vec![args.scenario.as_str()]
    } else {
        eprintln!(
            "tether-bench: unknown scenario {:?}; choose one of {}, all or callgrind-pingpong",
            args.scenario,
            SCENARIOS.join(", ")
        );
        std::process::exit(2);
    };
    let only = args.only.as_ref().map(|names| {
        names
            .iter()
            .map(|n| {
                // http's hyper server stands in tokio's column.
                let n = if n == "hyper" { "tokio" } else { n.as_str() };
                Kind::parse(n).unwrap_or_else(|| {
                    eprintln!("tether-bench: unknown server {n:?}");
                    std::process::exit(2);
                })
            })
            .collect()
    });
    let q = args.quick;
    let opts = Opts {
        quick: q,
        rounds: args.rounds.unwrap_or(if q { 1 } else { 5 }).max(1),
        window: Window {
            warmup: Duration::from_secs_f64(args.warmup.unwrap_or(if q { 0.02 } else { 0.25 })),
            measure: Duration::from_secs_f64(args.secs.unwrap_or(if q { 0.04 } else { 1.0 })),
        },
        idle_conns: args.idle_conns.map(|n| n.max(1)),
        idle_rounds: args.rounds.unwrap_or(if q { 1 } else { 3 }).max(1),
        only,
        case: args.case.clone(),
        loops: args.loops.max(1),
    };
    let limit = sys::raise_nofile_limit();
    eprintln!(
        "tether-bench: {} on {} CPU(s), load average {}, descriptor limit {limit}",
        chosen.join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let pki = Arc::new(tlsio::Pki::new());
    let started = Instant::now();
    for name in chosen {
        let t = Instant::now();
        let report = match name {
            "pingpong" => scenarios::pingpong(&opts),
            "stream" => scenarios::stream(&opts),
            "local" => scenarios::local(&opts),
            "udp" => scenarios::udp(&opts),
            "churn" => scenarios::churn(&opts),
            "tls-handshake" => scenarios::tls_handshake(&opts, &pki),
            "tls-data" => scenarios::tls_data(&opts, &pki),
            "dtls" => dtls::dtls(&opts),
            "http" => http::http(&opts),
            "idle-memory" => idle::idle_memory(&opts),
            _ => unreachable!(),
        };
        print!("{}", report.table());
        println!("{}", report.json(opts.quick));
        eprintln!(
            "tether-bench: {name} took {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "tether-bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
