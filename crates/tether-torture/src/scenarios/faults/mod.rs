//! `faults`: tether's echo server in one network namespace, its clients in
//! another, joined by an impaired link (two TUN devices and a seeded relay
//! that drops, delays, reorders and duplicates IP packets, or cuts the link;
//! the kernel's own TCP retransmits for real). For each fault, every
//! connection must either complete with every byte intact and both ends
//! graceful, or end with the reason the fault calls for within its bound.
//!
//! - `loss` 1 %, 5 %, 10 % (with delay, jitter, reordering, duplication),
//!   plain and TLS, 200 clients of up to 4 MiB each way: all intact.
//! - `cut, idle` longer than keepalive: `Lost` (ETIMEDOUT) within the
//!   keepalive's bound; and the idle timeout: `IdleTimeout`.
//! - `cut, busy` (data in flight) longer than TCP_USER_TIMEOUT: `Lost`
//!   (ETIMEDOUT) within it.
//! - `flap` shorter than those: all intact.
//! - `sigkill`: client processes killed mid-transfer: the server's end is
//!   the peer's (`ByPeer` or `Lost`) within a bound, never a hang.
//! - `reset`: clients that abort (SO_LINGER 0): `Lost` within a bound.
//! - `emfile`: the server's process out of descriptors while clients come:
//!   accepting pauses and resumes, every client is served.

mod client;
mod cut;
mod peer;
mod peers;
mod server;
mod transfer;

use std::time::{Duration, Instant};

use tether::{Keepalive, Reason};
use tether_impair::{Impairment, TunLink};

use self::client::{Outcome, Plan};
use self::server::Server;
use super::Options;
use crate::check::{Expect, Violations};
use crate::pki::Pki;
use crate::prng::Prng;
use crate::report::{Goal, Report};

pub(crate) use self::peer::{main as peer_main, PEER};

/// How late an end may come past its bound (retransmission timers, a
/// loaded machine).
const SLACK: Duration = Duration::from_millis(1500);
/// How much longer than its bound an end is waited for, so that one that
/// comes late is reported as late (with how late), not as missing.
const LATE: Duration = Duration::from_secs(10);
/// Longest a case may take before what is left counts as hung.
const LIMIT: Duration = Duration::from_secs(300);

/// The keepalive of the cut cases: ends a silent peer after 1 + 2 x 1 s (the
/// kernel's unit is the second).
const KEEPALIVE: Keepalive = Keepalive {
    idle: Duration::from_secs(1),
    interval: Duration::from_secs(1),
    count: 2,
};
/// Its bound.
const KEEPALIVE_BOUND: Duration = Duration::from_secs(3);
/// TCP_USER_TIMEOUT of the cut cases.
const USER_TIMEOUT: Duration = Duration::from_millis(1500);
/// The idle timeout of its case.
const IDLE: Duration = Duration::from_millis(1500);
/// How long a flap cuts the link: well under every timeout above.
const FLAP: Duration = Duration::from_millis(400);

/// One case's tally.
struct Case {
    name: String,
    conns: u64,
    /// Completed intact, or ended as the fault calls for within its bound.
    good: u64,
    violations_before: u64,
}

struct Run<'a> {
    seed: u64,
    quick: bool,
    rng: Prng,
    next_conn: u64,
    pki: Pki,
    v: Violations,
    report: &'a mut Report,
}

pub(crate) fn run(opts: &Options) -> Report {
    let mut report = Report::new(
        "faults",
        "echo server and clients in two namespaces joined by a seeded impairing \
         TUN relay: loss, delay, reordering, duplication, cuts, flaps, killed and \
         resetting peers, descriptor exhaustion"
            .into(),
        opts.seed,
        opts.quick,
    );
    if let Some(why) = TunLink::unsupported() {
        eprintln!("faults: cannot run here: {why}");
        report.add(
            "could not run (needs root and /dev/net/tun)",
            1.0,
            Goal::AtMost(0.0),
        );
        return report;
    }
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("faults: {e}");
            report.add("could not run (TLS setup)", 1.0, Goal::AtMost(0.0));
            return report;
        }
    };
    let mut r = Run {
        seed: opts.seed,
        quick: opts.quick,
        rng: Prng::stream(opts.seed, 0xFA17),
        next_conn: 0,
        pki,
        v: Violations::new("faults", opts.seed),
        report: &mut report,
    };
    let losses = [
        (
            1,
            Duration::from_millis(1),
            Duration::from_micros(500),
            0,
            0,
        ),
        (5, Duration::from_millis(2), Duration::from_millis(1), 5, 1),
        (
            10,
            Duration::from_millis(5),
            Duration::from_millis(2),
            25,
            2,
        ),
    ];
    for (loss, delay, jitter, reorder, dup) in losses {
        let imp = Impairment::none()
            .loss(f64::from(loss) / 100.0)
            .delay(delay, jitter)
            .reorder(f64::from(reorder) / 100.0)
            .duplicate(f64::from(dup) / 100.0);
        for tls in [false, true] {
            let name = format!(
                "loss {loss}% delay {}ms reorder {reorder}% dup {dup}%{}",
                delay.as_millis(),
                if tls { " TLS" } else { "" }
            );
            r.case(&name, |r, case| r.transfer(case, imp, tls, None));
        }
    }
    r.case("flap 400 ms mid-transfer", |r, case| {
        r.transfer(case, Impairment::none(), false, Some(FLAP))
    });
    r.case("cut idle > keepalive", |r, case| r.cut_idle(case, false));
    r.case("cut idle > idle timeout", |r, case| r.cut_idle(case, true));
    r.case("cut busy > user timeout", |r, case| r.cut_busy(case));
    r.case("peer killed (SIGKILL)", |r, case| r.sigkill(case));
    r.case("peer resets (SO_LINGER 0)", |r, case| r.resets(case));
    r.case("server out of descriptors (EMFILE)", |r, case| {
        r.emfile(case)
    });
    let count = r.v.count();
    report.violations(count);
    report
}

impl Run<'_> {
    /// Run one case and put its figures in the report.
    fn case(&mut self, name: &str, body: impl FnOnce(&mut Self, &mut Case) -> Result<(), String>) {
        let mut case = Case {
            name: name.to_string(),
            conns: 0,
            good: 0,
            violations_before: self.v.count(),
        };
        let started = Instant::now();
        if let Err(e) = body(self, &mut case) {
            self.v.add(name, &format!("the case could not run: {e}"));
        }
        let bad = self.v.count() - case.violations_before;
        eprintln!(
            "faults: {name}: {}/{} good, {bad} violations, {:.1} s",
            case.good,
            case.conns,
            started.elapsed().as_secs_f64()
        );
        self.report.add(
            &format!("{name}: connections"),
            case.conns as f64,
            Goal::None,
        );
        self.report.add(
            &format!("{name}: intact or ended as due"),
            case.good as f64,
            Goal::AtLeast(case.conns as f64),
        );
        self.report.add(
            &format!("{name}: violations"),
            bad as f64,
            Goal::AtMost(0.0),
        );
    }

    fn link(&self, imp: Impairment) -> Result<TunLink, String> {
        TunLink::start(self.seed, imp, imp).map_err(|e| format!("impaired link: {e}"))
    }

    fn plans(&mut self, n: u64, min: u64, max: u64) -> Vec<Plan> {
        (0..n)
            .map(|_| {
                self.next_conn += 1;
                Plan {
                    conn: self.next_conn,
                    size: self.rng.between(min, max),
                }
            })
            .collect()
    }

    /// The server's end of the connection from `port`, after its peer
    /// process died or reset it at `since`: one of `reasons`, within SLACK.
    fn peer_ended(
        &mut self,
        at: &str,
        server: &Server,
        plan: Plan,
        port: u16,
        since: Instant,
        reasons: &'static [Reason],
    ) -> bool {
        server.wait(SLACK * 2, |log| {
            log.conns.get(&port).is_some_and(|s| s.end.is_some())
        });
        let expect = Expect {
            reasons,
            unsent: None,
            unread: None,
        };
        let o = Outcome::of_port(plan, port);
        self.server_end(at, &o, &server.seen(), &expect, Some((since, SLACK, None)))
    }

    /// A client's own end must match `expect`, and come exactly once.
    fn client_end(&mut self, at: &str, o: &Outcome, expect: &Expect) -> bool {
        match &o.end {
            Some(end) => self.v.ending(at, "client", expect, end),
            None => {
                self.v.add(at, "client: never ended");
                false
            }
        }
    }

    /// The server's end of `o`'s connection must match `expect`, come exactly
    /// once, and (with `within`) come within `bound` of `since`, with an
    /// error saying `error`.
    fn server_end(
        &mut self,
        at: &str,
        o: &Outcome,
        seen: &std::collections::BTreeMap<u16, server::Seen>,
        expect: &Expect,
        within: Option<(Instant, Duration, Option<&str>)>,
    ) -> bool {
        let Some(s) = o.port.and_then(|p| seen.get(&p)) else {
            self.v.add(at, "server: never saw the connection");
            return false;
        };
        if s.closed_calls != 1 {
            self.v.add(
                at,
                &format!("server: on_closed called {} times", s.closed_calls),
            );
            return false;
        }
        let Some((end, when)) = &s.end else {
            self.v.add(at, "server: never ended");
            return false;
        };
        let mut ok = self.v.ending(at, "server", expect, end);
        if let Some((since, bound, error)) = within {
            let took = when.saturating_duration_since(since);
            if took > bound + SLACK {
                self.v.add(
                    at,
                    &format!("server: ended {took:?} after the fault, bound {bound:?} + {SLACK:?}"),
                );
                ok = false;
            }
            if let Some(want) = error {
                if !end.error.as_deref().is_some_and(|e| e.contains(want)) {
                    self.v.add(
                        at,
                        &format!("server: error {:?}, expected {want:?}", end.error),
                    );
                    ok = false;
                }
            }
        }
        ok
    }
}

impl Outcome {
    /// An outcome known only by its port (a client in another process).
    fn of_port(plan: Plan, port: u16) -> Outcome {
        Outcome {
            plan,
            port: Some(port),
            sent: 0,
            tally: crate::pattern::Tally::new(crate::pattern::Pattern::new(0, 0, 0)),
            end: None,
        }
    }
}
