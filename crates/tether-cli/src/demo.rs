//! `tether demo`: the transactions scenario on loopback, told client by client.
//!
//! The scenario itself is `tether_cli::transactions` (this package's library),
//! which the `transactions` example runs too.

use std::process::ExitCode;

use clap::Args;
use tether_cli::transactions;

/// Options of `tether demo`.
#[derive(Args, Debug)]
pub(crate) struct Options {
    /// How many clients connect at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// How many request/response transactions each client runs.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    transactions: u32,
    /// Speak TLS under the framing (a fresh self-signed certificate, which the
    /// clients trust by its fingerprint).
    #[arg(long)]
    tls: bool,
}

pub(crate) fn run(opts: &Options) -> ExitCode {
    let config = transactions::Config {
        clients: opts.clients,
        transactions: opts.transactions,
        tls: opts.tls,
    };
    println!(
        "{} clients x {} transactions over framed {} on loopback",
        config.clients,
        config.transactions,
        if config.tls { "TLS" } else { "TCP" }
    );
    let outcome = match transactions::run(&config) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("tether: demo failed to run: {e}");
            return ExitCode::FAILURE;
        }
    };
    for c in &outcome.clients {
        let total = c.total.map_or("none".to_string(), |t| t.to_string());
        println!(
            "client {:>3}: {} transactions, farewell sent {}, server's farewell {}, closed {} (unsent {}, unread {})",
            c.number, c.count, c.count, total, c.reason, c.unsent, c.unread
        );
    }
    let seconds = outcome.elapsed.as_secs_f64();
    println!(
        "server grand total {}; {} transactions in {:.3} s ({:.0}/s)",
        outcome.grand_total,
        outcome.grand_total,
        seconds,
        outcome.grand_total as f64 / seconds.max(1e-9)
    );
    match outcome.check(&config) {
        Ok(()) => {
            println!("every number adds up");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("does not add up: {e}");
            ExitCode::FAILURE
        }
    }
}
