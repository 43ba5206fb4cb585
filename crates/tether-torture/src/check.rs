//! Ground truth against what happened: the expected end of a socket compared
//! with its `Closed`, and the list of violations, each printed with what,
//! where and the seed that replays it.

use std::fmt;

use tether::Reason;

/// How a socket ended, as its `on_closed` (or a std peer's own view) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) reason: Reason,
    pub(crate) unsent: u64,
    pub(crate) unread: u64,
    /// The error's text, when there was one.
    pub(crate) error: Option<String>,
}

impl Ending {
    pub(crate) fn of(closed: &tether::Closed) -> Self {
        Ending {
            reason: closed.reason,
            unsent: closed.unsent,
            unread: closed.unread,
            error: closed.error.as_ref().map(|e| e.to_string()),
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (unsent {}, unread {}",
            self.reason, self.unsent, self.unread
        )?;
        if let Some(e) = &self.error {
            write!(f, ", error: {e}")?;
        }
        f.write_str(")")
    }
}

/// How a socket must end: one of `reasons`, and the unsent and unread counts
/// where they are knowable (`None`: not checked).
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub(crate) reasons: &'static [Reason],
    pub(crate) unsent: Option<u64>,
    pub(crate) unread: Option<u64>,
}

/// Both graceful reasons: who began is a race both sides may win.
pub(crate) const GRACEFUL: &[Reason] = &[Reason::Normal, Reason::ByPeer];

impl Expect {
    /// A graceful end with nothing left over, begun by `who`.
    pub(crate) fn clean(reasons: &'static [Reason]) -> Self {
        Expect {
            reasons,
            unsent: Some(0),
            unread: Some(0),
        }
    }

    /// What differs between this and `got`, one phrase per difference;
    /// empty when it ended as it must.
    pub(crate) fn mismatches(&self, got: &Ending) -> Vec<String> {
        let mut out = Vec::new();
        if !self.reasons.contains(&got.reason) {
            let want: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
            out.push(format!("reason {} expected {}", got.reason, want.join("|")));
        }
        if let Some(n) = self.unsent.filter(|&n| n != got.unsent) {
            out.push(format!("unsent {} expected {n}", got.unsent));
        }
        if let Some(n) = self.unread.filter(|&n| n != got.unread) {
            out.push(format!("unread {} expected {n}", got.unread));
        }
        out
    }
}

/// The violations of one scenario's run.
#[derive(Debug)]
pub(crate) struct Violations {
    scenario: &'static str,
    seed: u64,
    count: u64,
}

/// More than this many are counted, not printed.
const PRINTED: u64 = 40;

impl Violations {
    pub(crate) fn new(scenario: &'static str, seed: u64) -> Self {
        Violations {
            scenario,
            seed,
            count: 0,
        }
    }

    /// One broken rule: `at` is where (the connection and its plan), `what`
    /// what was seen against what was expected.
    pub(crate) fn add(&mut self, at: &str, what: &str) {
        self.count += 1;
        if self.count <= PRINTED {
            eprintln!(
                "VIOLATION {} --seed {}: {at}: {what}",
                self.scenario, self.seed
            );
        } else if self.count == PRINTED + 1 {
            eprintln!(
                "VIOLATION {} --seed {}: more violations, counted only",
                self.scenario, self.seed
            );
        }
    }

    /// Check an ending against its expectation; a violation per mismatch.
    pub(crate) fn ending(&mut self, at: &str, side: &str, expect: &Expect, got: &Ending) -> bool {
        let bad = expect.mismatches(got);
        for m in &bad {
            self.add(at, &format!("{side}: {m}; ended {got}"));
        }
        bad.is_empty()
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(reason: Reason, unsent: u64, unread: u64) -> Ending {
        Ending {
            reason,
            unsent,
            unread,
            error: None,
        }
    }

    #[test]
    fn a_clean_end_matches_and_each_difference_is_named() {
        let e = Expect::clean(&[Reason::Normal]);
        assert!(e.mismatches(&ending(Reason::Normal, 0, 0)).is_empty());
        let bad = e.mismatches(&ending(Reason::ByPeer, 3, 4));
        assert_eq!(
            bad,
            vec![
                "reason by_peer expected normal".to_string(),
                "unsent 3 expected 0".to_string(),
                "unread 4 expected 0".to_string()
            ]
        );
    }

    #[test]
    fn unknowable_counts_are_not_checked_and_either_graceful_reason_passes() {
        let e = Expect {
            reasons: GRACEFUL,
            unsent: None,
            unread: Some(10),
        };
        assert!(e.mismatches(&ending(Reason::ByPeer, 99, 10)).is_empty());
        assert!(e.mismatches(&ending(Reason::Normal, 0, 10)).is_empty());
        assert_eq!(e.mismatches(&ending(Reason::Reset, 0, 10)).len(), 1);
        assert_eq!(e.mismatches(&ending(Reason::Normal, 0, 9)).len(), 1);
    }

    #[test]
    fn violations_are_counted() {
        let mut v = Violations::new("test", 1);
        assert!(v.ending(
            "conn 1",
            "server",
            &Expect::clean(GRACEFUL),
            &ending(Reason::Normal, 0, 0)
        ));
        assert!(!v.ending(
            "conn 2",
            "server",
            &Expect::clean(GRACEFUL),
            &ending(Reason::Lost, 1, 0)
        ));
        assert_eq!(v.count(), 2);
    }
}
