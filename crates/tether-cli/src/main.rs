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
    /// Run an echo server and a few clients on loopback, and show how each
    /// connection began and ended. Exits 0 only if every byte came back and
    /// every connection ended gracefully.
    Demo(demo::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(options) => demo::run(&options),
    }
}
