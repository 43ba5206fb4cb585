//! tether-torture: seeded scenarios that run tether servers and clients on
//! loopback (or across an impaired link between two network namespaces they
//! create) and check ground truth themselves — every byte both ways, how
//! every socket ended — and count violations. See RELIABILITY.md at the
//! repository root.
//!
//! ```text
//! cargo run --release -p tether-torture -- SCENARIO [--seed N] [--quick] [--secs S]
//! ```
//!
//! The exit status is non-zero if any scenario found a violation or missed a
//! goal; each violation is printed with what, where and the seed to replay it.
#![deny(unsafe_code)]

mod check;
mod pattern;
mod pki;
mod prng;
mod procfs;
mod report;
mod scenarios;

use std::process::ExitCode;

use clap::Parser;

use crate::scenarios::{Options, SCENARIOS};

/// Torture scenarios against tether, reproducible from a seed.
#[derive(Parser, Debug)]
#[command(name = "tether-torture")]
struct Args {
    /// integrity, hostile, faults, soak, or all.
    scenario: String,
    /// The seed every choice follows [default: one from the clock, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Short runs: proves every scenario works, in well under a minute each.
    #[arg(long)]
    quick: bool,
    /// soak: seconds of load [default: 1800; quick 30].
    #[arg(long)]
    secs: Option<u64>,
    /// integrity: connections [default: 10000; quick 1000].
    #[arg(long)]
    conns: Option<u64>,
    /// soak: idle connections held while wake-ups are counted
    /// [default: 10000; quick 1000].
    #[arg(long)]
    idle: Option<u64>,
    /// integrity: run only these connections of the seed's plan
    /// (comma-separated indexes), to replay one that broke a rule.
    #[arg(long, value_delimiter = ',')]
    only: Vec<u64>,
}

fn main() -> ExitCode {
    // The soak's child that holds idle connections (not a scenario).
    let argv: Vec<String> = std::env::args().collect();
    // The faults scenario's client processes (not a scenario).
    if argv.get(1).map(String::as_str) == Some(scenarios::PEER) {
        return scenarios::peer_main(&argv[2..]);
    }
    if argv.get(1).map(String::as_str) == Some(scenarios::HOLD) {
        let count = argv.get(3).and_then(|n| n.parse().ok()).unwrap_or(0);
        return scenarios::child_main(argv.get(2).map_or("", String::as_str), count);
    }
    let args = Args::parse();
    // The library's log lines, when RUST_LOG asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        crate::prng::mix(t) % 1_000_000_000
    });
    let names: Vec<&str> = if args.scenario == "all" {
        SCENARIOS.iter().map(|(n, _)| *n).collect()
    } else if SCENARIOS.iter().any(|(n, _)| *n == args.scenario) {
        vec![args.scenario.as_str()]
    } else {
        let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "tether-torture: unknown scenario {:?} (known: {}, all)",
            args.scenario,
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let opts = Options {
        seed,
        quick: args.quick,
        secs: args.secs,
        conns: args.conns,
        idle: args.idle,
        only: args.only,
    };
    eprintln!("tether-torture: seed {seed} (replay with --seed {seed})");
    let mut failed = Vec::new();
    for name in names {
        let run = SCENARIOS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .expect("listed");
        let report = run(&opts);
        print!("{}", report.table());
        println!("{}", report.json());
        if !report.passed() {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "tether-torture: FAILED: {} (replay with --seed {seed})",
            failed.join(", ")
        );
        ExitCode::FAILURE
    }
}
