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
mod peer;
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tether::{Keepalive, Reason};
use tether_impair::{Impairment, Side, TunLink};

use self::client::{Clients, Mode, Outcome, Plan};
use self::server::{Server, Settings};
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

    /// Clients send their streams and read the echo through `imp`; with
    /// `flap`, the link is cut that long once every server connection has a
    /// quarter of its bytes. Every connection must come through intact.
    fn transfer(
        &mut self,
        case: &mut Case,
        imp: Impairment,
        tls: bool,
        flap: Option<Duration>,
    ) -> Result<(), String> {
        // Many large transfers through loss; a flap needs only enough to be
        // under way in each when it comes.
        let (n, max) = match (self.quick, flap.is_some()) {
            (true, _) => (6, 256 << 10),
            (false, false) => (200, 4 << 20),
            (false, true) => (40, 1 << 20),
        };
        let min = if flap.is_some() { max / 2 } else { 0 };
        let link = self.link(imp)?;
        let settings = Settings {
            tls: tls.then(|| self.pki.server.clone()),
            // A flap must end nothing. No user timeout: Linux would apply it to
            // a reader that fell behind as well (see `cut_busy`).
            keepalive: flap.map(|_| Keepalive {
                idle: Duration::from_secs(5),
                ..KEEPALIVE
            }),
            user_timeout: None,
            idle: None,
        };
        let server = Server::start(&link, settings)?;
        let plans = self.plans(n, min, max);
        case.conns = plans.len() as u64;
        let client_tls = tls.then(|| self.pki.client.clone());
        let clients = Clients::start(
            &link,
            server.port,
            client_tls,
            Mode::Exchange,
            self.seed,
            plans.clone(),
            LIMIT,
        )?;
        if let Some(cut) = flap {
            let quarter: Vec<u64> = plans.iter().map(|p| p.size / 4).collect();
            let n = plans.len();
            let reached = server.wait(LIMIT, |log| {
                log.conns.len() == n
                    && log
                        .conns
                        .values()
                        .filter(|s| s.got >= *quarter.iter().min().unwrap_or(&0))
                        .count()
                        == n
            });
            if !reached {
                self.v
                    .add(&case.name, "the transfers did not get a quarter through");
            }
            link.set_cut(true);
            std::thread::sleep(cut); // the fault itself: the link is down this long
            link.set_cut(false);
        }
        let outcomes = clients.join()?;
        let n = outcomes.len();
        server.wait(SLACK, |log| {
            log.conns.values().filter(|s| s.end.is_some()).count() >= n
        });
        let seen = server.seen();
        for o in &outcomes {
            let at = format!("{} conn {} ({} B)", case.name, o.plan.conn, o.plan.size);
            let mut ok = true;
            if o.tally.damage(o.plan.size) != 0 || o.tally.got != o.plan.size {
                self.v.add(
                    &at,
                    &format!(
                        "echo: got {} of {} B, {} changed (first at {:?})",
                        o.tally.got, o.plan.size, o.tally.changed, o.tally.first_changed
                    ),
                );
                ok = false;
            }
            ok &= self.client_end(&at, o, &Expect::clean(&[Reason::Normal]));
            ok &= self.server_end(&at, o, &seen, &Expect::clean(&[Reason::ByPeer]), None);
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Idle connections, then the link cut for good: keepalive (and the user
    /// timeout, should an ACK have been caught by the cut) must end each
    /// `Lost` with ETIMEDOUT; or, with `idle_timeout`, tether's idle timeout
    /// must end each `IdleTimeout`.
    fn cut_idle(&mut self, case: &mut Case, idle_timeout: bool) -> Result<(), String> {
        let n = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        let settings = if idle_timeout {
            Settings {
                idle: Some(IDLE),
                ..Settings::default()
            }
        } else {
            Settings {
                keepalive: Some(KEEPALIVE),
                user_timeout: Some(USER_TIMEOUT),
                ..Settings::default()
            }
        };
        let server = Server::start(&link, settings)?;
        let plans = self.plans(n, 1, 64 << 10);
        case.conns = n;
        let clients = Clients::start(
            &link,
            server.port,
            None,
            Mode::Hold,
            self.seed,
            plans,
            LIMIT,
        )?;
        if !clients.wait_echoed(LIMIT) {
            self.v
                .add(&case.name, "the echoes did not all come before the cut");
        }
        let cut = Instant::now();
        link.set_cut(true);
        let (reason, bound, error) = if idle_timeout {
            (Reason::IdleTimeout, IDLE, None)
        } else {
            (
                Reason::Lost,
                KEEPALIVE_BOUND.max(USER_TIMEOUT),
                Some("timed out"),
            )
        };
        let n = n as usize;
        server.wait(bound + SLACK + LATE, |log| {
            log.conns.values().filter(|s| s.end.is_some()).count() >= n
        });
        clients.stop();
        let outcomes = clients.join()?;
        let seen = server.seen();
        let expect = Expect {
            reasons: match reason {
                Reason::IdleTimeout => &[Reason::IdleTimeout],
                _ => &[Reason::Lost],
            },
            unsent: None,
            unread: Some(0),
        };
        for o in &outcomes {
            let at = format!("{} conn {}", case.name, o.plan.conn);
            let ok = self.server_end(&at, o, &seen, &expect, Some((cut, bound, error)));
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Transfers under way, then the link cut for good: the server has data
    /// in flight, so TCP_USER_TIMEOUT (or keepalive, if the cut caught it with
    /// nothing unacknowledged) must end each `Lost` with ETIMEDOUT.
    fn cut_busy(&mut self, case: &mut Case) -> Result<(), String> {
        let n: u64 = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        // The user timeout is set only at the cut: set during the transfer, it
        // would also end a connection whose reader fell behind (Linux applies
        // it to a window kept shut as to data unacknowledged).
        let server = Server::start(
            &link,
            Settings {
                keepalive: Some(KEEPALIVE),
                ..Settings::default()
            },
        )?;
        // Far more than can pass before the cut.
        let plans = self.plans(n, 256 << 20, 256 << 20);
        case.conns = n;
        let clients = Clients::start(
            &link,
            server.port,
            None,
            Mode::Exchange,
            self.seed,
            plans,
            LIMIT,
        )?;
        let n = n as usize;
        let busy = server.wait(LIMIT, |log| {
            log.conns.len() == n && log.conns.values().all(|s| s.got >= 1 << 20)
        });
        if !busy {
            let got: Vec<(u16, u64)> = server.seen().iter().map(|(p, s)| (*p, s.got)).collect();
            self.v.add(
                &case.name,
                &format!("the transfers did not get under way: received {got:?}"),
            );
        }
        server.set_user_timeout(USER_TIMEOUT)?;
        let cut = Instant::now();
        link.set_cut(true);
        let bound = KEEPALIVE_BOUND.max(USER_TIMEOUT);
        server.wait(bound + SLACK + LATE, |log| {
            log.conns.values().filter(|s| s.end.is_some()).count() >= n
        });
        clients.stop();
        let outcomes = clients.join()?;
        let seen = server.seen();
        let expect = Expect {
            reasons: &[Reason::Lost],
            unsent: None,
            unread: None,
        };
        for o in &outcomes {
            let at = format!("{} conn {}", case.name, o.plan.conn);
            let ok = self.server_end(
                &at,
                o,
                &seen,
                &expect,
                Some((cut, bound, Some("timed out"))),
            );
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Client processes streaming through the link, killed with SIGKILL once
    /// the server has had some of their bytes: the server's end is the
    /// peer's, within a bound.
    fn sigkill(&mut self, case: &mut Case) -> Result<(), String> {
        let n = if self.quick { 3 } else { 10 };
        let link = self.link(Impairment::none())?;
        let server = Server::start(&link, Settings::default())?;
        let addr = format!("{}:{}", TunLink::ADDR_A, server.port);
        case.conns = n;
        for plan in self.plans(n, 1 << 30, 1 << 30) {
            let at = format!("{} conn {}", case.name, plan.conn);
            let mut peer = Peer::spawn(&link, &addr, plan, self.seed)?;
            peer.go()?;
            let port = peer.connected()?;
            let fed = server.wait(LIMIT, |log| {
                log.conns.get(&port).is_some_and(|s| s.got >= 256 << 10)
            });
            if !fed {
                self.v.add(&at, "the peer's bytes did not come");
            }
            let killed = Instant::now();
            peer.kill();
            // A dead process's kernel ends with a FIN, or a reset if bytes
            // waited unread in its socket: either is the peer's end.
            let ok = self.peer_ended(
                &at,
                &server,
                plan,
                port,
                killed,
                &[Reason::ByPeer, Reason::Lost],
            );
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Clients that read some of their echo and then abort (SO_LINGER 0, so
    /// their close sends RST): the server must end each `Lost` at once.
    fn resets(&mut self, case: &mut Case) -> Result<(), String> {
        let n = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        let server = Server::start(&link, Settings::default())?;
        let port = server.port;
        case.conns = n;
        for plan in self.plans(n, 64 << 10, 64 << 10) {
            let at = format!("{} conn {}", case.name, plan.conn);
            let seed = self.seed;
            let local = link
                .spawn_in(Side::B, move || -> std::io::Result<(u16, Instant)> {
                    let mut s = TcpStream::connect((TunLink::ADDR_A, port))?;
                    let local = s.local_addr()?.port();
                    let mut source = crate::pattern::Source::new(crate::pattern::Pattern::new(
                        seed, plan.conn, 0,
                    ));
                    let mut buf = Vec::new();
                    source.next(plan.size as usize, &mut buf);
                    s.write_all(&buf)?;
                    // Some of the echo, then the abort.
                    let mut got = vec![0u8; 1024];
                    s.read_exact(&mut got)?;
                    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                    drop(s);
                    Ok((local, Instant::now()))
                })
                .map_err(|e| format!("client thread: {e}"))?
                .join()
                .map_err(|_| "client thread panicked".to_string())?;
            let (local, reset) = match local {
                Ok(x) => x,
                Err(e) => {
                    self.v.add(&at, &format!("the client failed: {e}"));
                    continue;
                }
            };
            let ok = self.peer_ended(&at, &server, plan, local, reset, &[Reason::Lost]);
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Client processes wait; the server's process is then left a few
    /// descriptors only (its soft RLIMIT_NOFILE lowered to just above what it
    /// holds), and the clients all come at once. Accepting must pause on
    /// EMFILE and go on as connections end: every client is served intact.
    fn emfile(&mut self, case: &mut Case) -> Result<(), String> {
        const SPARE: u64 = 3;
        let n = if self.quick { 8 } else { 40 };
        let link = self.link(Impairment::none())?;
        let server = Server::start(&link, Settings::default())?;
        let addr = format!("{}:{}", TunLink::ADDR_A, server.port);
        let plans = self.plans(n, 64 << 10, 256 << 10);
        case.conns = n;
        let mut peers = Vec::new();
        for &plan in &plans {
            peers.push((plan, Peer::spawn(&link, &addr, plan, self.seed)?));
        }
        let squeeze = Squeeze::to(SPARE)?;
        let mut results = Vec::new();
        for (_, peer) in &mut peers {
            results.push(peer.go());
        }
        let mut outcomes = Vec::new();
        for ((plan, mut peer), went) in peers.into_iter().zip(results) {
            let line = went.and_then(|()| peer.finish());
            outcomes.push((plan, line));
        }
        drop(squeeze);
        let most = server.most_open() as u64;
        let n_us = n as usize;
        server.wait(SLACK, |log| {
            log.conns.values().filter(|s| s.end.is_some()).count() >= n_us
        });
        let seen = server.seen();
        for (plan, line) in outcomes {
            let at = format!("{} conn {}", case.name, plan.conn);
            match line {
                Ok((port, text)) if text == format!("ok {} 0", plan.size) => {
                    let o = Outcome::of_port(plan, port);
                    let ok =
                        self.server_end(&at, &o, &seen, &Expect::clean(&[Reason::ByPeer]), None);
                    case.good += u64::from(ok);
                }
                Ok((_, text)) => self.v.add(&at, &format!("the client said {text:?}")),
                Err(e) => self.v.add(&at, &format!("the client: {e}")),
            }
        }
        // Fewer than all at once: accepting waited for descriptors. (Not
        // exactly SPARE: a descriptor the process freed meanwhile is room too.)
        self.report.add(
            &format!("{}: most connections open at once", case.name),
            most as f64,
            Goal::AtMost((n - 1) as f64),
        );
        server.stop();
        Ok(())
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

/// The process left `spare` free descriptors: its soft RLIMIT_NOFILE lowered
/// to just above the highest it holds, the holes below filled with
/// `/dev/null`, then `spare` of those freed and the limit raised by as many.
/// Dropping it gives the limit and the descriptors back.
struct Squeeze {
    soft: Option<u64>,
    hard: Option<u64>,
    _fillers: Vec<std::fs::File>,
}

impl Squeeze {
    fn to(spare: u64) -> Result<Squeeze, String> {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        let highest = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let set = |soft| {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum,
                },
            )
            .map_err(|e| format!("setrlimit: {e}"))
        };
        set(highest + 1)?;
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        set(highest + 1 + spare)?;
        Ok(Squeeze {
            soft: current,
            hard: maximum,
            _fillers: fillers,
        })
    }
}

impl Drop for Squeeze {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: self.soft,
                maximum: self.hard,
            },
        );
    }
}

/// A client process in side B (`tether-torture fault-peer`).
struct Peer {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
    port: Option<u16>,
}

impl Peer {
    fn spawn(link: &TunLink, addr: &str, plan: Plan, seed: u64) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = link
            .command(Side::B, &exe.to_string_lossy())
            .args([PEER, addr])
            .arg(plan.size.to_string())
            .arg(seed.to_string())
            .arg(plan.conn.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("fault-peer: {e}"))?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Peer {
            child,
            out,
            port: None,
        })
    }

    fn go(&mut self) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(b"go\n").map_err(|e| e.to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| e.to_string())?;
        Ok(line.trim().to_string())
    }

    /// The child's local port, once it says it connected.
    fn connected(&mut self) -> Result<u16, String> {
        let line = self.line()?;
        let port = line
            .strip_prefix("connected ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("fault-peer said {line:?}"))?;
        self.port = Some(port);
        Ok(port)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its port and its last line, once it exited. (It gives up by itself
    /// when the server leaves it waiting a minute.)
    fn finish(&mut self) -> Result<(u16, String), String> {
        let port = self.connected()?;
        let line = self.line()?;
        self.child.wait().map_err(|e| e.to_string())?;
        Ok((port, line))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
