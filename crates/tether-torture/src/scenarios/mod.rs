//! The scenario families, one module each; each builds its own load, checks
//! its own ground truth (through `check`) and returns a `Report`. A new
//! family is a module here and a line in `SCENARIOS`.

use crate::report::Report;

mod faults;
mod hostile;
mod integrity;
mod soak;

pub(crate) use faults::{peer_main, PEER};
pub(crate) use soak::{child_main, HOLD};

/// What the command line asked for.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) seed: u64,
    pub(crate) quick: bool,
    pub(crate) secs: Option<u64>,
    pub(crate) conns: Option<u64>,
    pub(crate) idle: Option<u64>,
    pub(crate) only: Vec<u64>,
}

/// A scenario: its run, from the options to its report.
pub(crate) type Run = fn(&Options) -> Report;

/// Every scenario, in the order `all` runs them.
pub(crate) const SCENARIOS: &[(&str, Run)] = &[
    ("integrity", integrity::run),
    ("hostile", hostile::run),
    ("faults", faults::run),
    ("soak", soak::run),
];
