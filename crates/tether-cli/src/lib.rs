//! What the `tether` command shares with this package's examples.
//!
//! The command itself is the `tether` binary of this package; this library
//! holds the scenario that `tether demo` runs, so that the command and the
//! `transactions` example run the same code.
#![forbid(unsafe_code)]

pub mod transactions;
