//! The transactions scenario of `tether_cli::transactions`, with a plain
//! report: one line per client, then whether every number adds up.
//!
//! ```text
//! cargo run -p tether-cli --example transactions -- 8 1000        # clients, transactions
//! cargo run -p tether-cli --example transactions -- 8 1000 tls    # the same over TLS
//! ```

use tether_cli::transactions::{run, Config};

fn main() {
    let mut args = std::env::args().skip(1);
    let config = Config {
        clients: args.next().and_then(|a| a.parse().ok()).unwrap_or(8),
        transactions: args.next().and_then(|a| a.parse().ok()).unwrap_or(1000),
        tls: args.next().as_deref() == Some("tls"),
    };
    let outcome = match run(&config) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("transactions: {e}");
            std::process::exit(1);
        }
    };
    for c in &outcome.clients {
        println!(
            "client {}: {} transactions, server total {:?}, {}",
            c.number, c.count, c.total, c.reason
        );
    }
    match outcome.check(&config) {
        Ok(()) => println!("every number adds up: {} transactions", outcome.grand_total),
        Err(e) => {
            eprintln!("does not add up: {e}");
            std::process::exit(1);
        }
    }
}
