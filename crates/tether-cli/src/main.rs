//! The `tether` command.
//!
//! Thin by design: it parses arguments, runs what the library offers, and
//! prints what happened. For now it has one subcommand, `demo`.
#![forbid(unsafe_code)]

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// See and control how connections end.
#[derive(Parser, Debug)]
#[command(name = "tether", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the transactions scenario on loopback: clients run request/response
    /// transactions over the framed transport, say their count as disconnect
    /// data, and the server answers with the running grand total. Exits 0 only
    /// if every number adds up.
    Demo(demo::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(options) => demo::run(&options),
    }
}
