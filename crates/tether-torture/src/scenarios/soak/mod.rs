//! `soak`: mixed churn and long-lived connections for a long time, sampling
//! the process's descriptors and memory; then thousands of connections
//! left idle while the server loop's wake-ups are counted. Figures: the
//! descriptors left once the load stopped (goal 0), memory growth over the
//! last two thirds of the load (goal < 1 %), and wake-ups per second of a
//! loop whose connections are idle and whose deadlines are far (goal: none
//! but what the measurement itself causes).

mod hold;
mod load;
mod server;

use std::time::{Duration, Instant};

use self::hold::Holder;
pub(crate) use self::hold::{child_main, HOLD};
use self::server::Server;
use super::Options;
use crate::check::Violations;
use crate::pki::Pki;
use crate::procfs;
use crate::report::{Goal, Report};

/// Long-lived connections and short ones in flight during the load.
const LONG_LIVED: usize = 50;
const WINDOW: usize = 16;

pub(crate) fn run(opts: &Options) -> Report {
    let seed = opts.seed;
    let quick = opts.quick;
    let secs = opts.secs.unwrap_or(if quick { 20 } else { 1800 });
    let every = Duration::from_secs(if quick { 2 } else { 10 });
    let idle = opts.idle.unwrap_or(if quick { 1000 } else { 10_000 }) as usize;
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    let mut report = Report::new(
        "soak",
        format!(
            "{secs} s of churn and {LONG_LIVED} long-lived connections, then {idle} idle for {} s",
            window.as_secs()
        ),
        seed,
        quick,
    );
    let mut v = Violations::new("soak", seed);
    let Some(pki) = Pki::for_run(&mut v) else {
        report.violations(v.count());
        return report;
    };
    let started = Instant::now();
    let srv = Server::start(pki.server.clone());
    let fds_before = procfs::fds();

    // The load, on its own thread; samples here meanwhile.
    let load = {
        let (tcp, tls, ctx) = (srv.tcp.clone(), srv.tls.clone(), pki.client.clone());
        std::thread::spawn(move || {
            load::run(
                seed,
                tcp,
                tls,
                ctx,
                Duration::from_secs(secs),
                LONG_LIVED,
                WINDOW,
            )
        })
    };
    let mut samples: Vec<(f64, usize, u64)> = Vec::new();
    let load_start = Instant::now();
    let mut next = load_start;
    while !load.is_finished() {
        if Instant::now() >= next {
            samples.push((
                load_start.elapsed().as_secs_f64(),
                procfs::fds(),
                procfs::rss(),
            ));
            next += every;
        }
        // Sampling on a period is the measurement itself, not a wait.
        std::thread::sleep(Duration::from_millis(100));
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    let outcome = load.join().expect("load thread");
    for (at, what) in &outcome.problems {
        v.add(at, what);
    }
    // The server's side must have ended too: then count what is left.
    let left = srv.wait_connections(0, Duration::from_secs(30));
    if left != 0 {
        v.add(
            "server",
            &format!("{left} connections still open after the load"),
        );
    }
    let fds_after = procfs::fds();
    let fd_growth = fds_after as f64 - fds_before as f64;
    // Memory over the last two thirds of the load: the first third warms
    // the allocator and the caches up.
    let rss_growth = {
        let load_secs = samples.last().map_or(0.0, |s| s.0);
        let from = samples.iter().find(|s| s.0 >= load_secs / 3.0);
        match (from, samples.last()) {
            (Some(a), Some(b)) if a.2 > 0 => 100.0 * (b.2 as f64 - a.2 as f64) / a.2 as f64,
            _ => 0.0,
        }
    };

    // Idle: the child holds the connections, the server loop sleeps.
    let (mut wakeups_per_s, mut switches_per_s, mut held) = (f64::NAN, f64::NAN, 0usize);
    match Holder::start(&srv.tcp, idle) {
        Ok(holder) => {
            held = holder.made;
            if held < idle {
                v.add(
                    "idle",
                    &format!("only {held} of {idle} idle connections made"),
                );
            }
            let on_server = srv.wait_connections(held, Duration::from_secs(60));
            if on_server != held {
                v.add("idle", &format!("the server holds {on_server} of {held}"));
            }
            let sw0 = srv.tid.and_then(procfs::voluntary_switches);
            let s0 = srv.stats();
            let t0 = Instant::now();
            // The measurement window: nothing runs meanwhile.
            std::thread::sleep(window);
            let s1 = srv.stats();
            let sw1 = srv.tid.and_then(procfs::voluntary_switches);
            let dt = t0.elapsed().as_secs_f64();
            if let (Some(a), Some(b)) = (s0, s1) {
                // The second stats() woke the loop once itself.
                wakeups_per_s = b.wakeups.saturating_sub(a.wakeups).saturating_sub(1) as f64 / dt;
            }
            if let (Some(a), Some(b)) = (sw0, sw1) {
                // Both stats() calls woke the loop thread once each.
                switches_per_s = b.saturating_sub(a).saturating_sub(2) as f64 / dt;
            }
            holder.release();
            let left = srv.wait_connections(0, Duration::from_secs(60));
            if left != 0 {
                v.add(
                    "idle",
                    &format!("{left} connections still open after the holder left"),
                );
            }
        }
        Err(e) => v.add("idle", &format!("the holding child: {e}")),
    }
    srv.stop();

    for (t, fds, rss) in &samples {
        eprintln!(
            "soak sample: t {t:.0} s, descriptors {fds}, RSS {:.1} MiB",
            *rss as f64 / 1048576.0
        );
    }
    report.add("load seconds", load_secs, Goal::None);
    report.add("short connections", outcome.churned as f64, Goal::None);
    report.add(
        "long-lived round trips",
        outcome.round_trips as f64,
        Goal::None,
    );
    report.add("bytes echoed (both ways)", outcome.bytes as f64, Goal::None);
    report.add("samples", samples.len() as f64, Goal::None);
    report.add(
        "descriptor growth after the load",
        fd_growth,
        Goal::AtMost(0.0),
    );
    // The goal is 1 % over a long run. A quick run's 20 s are mostly the
    // allocator settling (0.1-0.6 % seen), so it allows 5 %: still far below
    // what a leak per connection or per message would show over its
    // hundreds of thousands of each.
    let rss_goal = if quick { 5.0 } else { 1.0 };
    report.add(
        "RSS growth, last two thirds %",
        rss_growth,
        Goal::AtMost(rss_goal),
    );
    report.add(
        "idle connections held",
        held as f64,
        Goal::AtLeast(idle as f64),
    );
    report.add(
        "loop wake-ups/s while idle",
        wakeups_per_s,
        Goal::AtMost(0.5),
    );
    report.add(
        "loop thread switches/s while idle",
        switches_per_s,
        Goal::AtMost(0.5),
    );
    report.add("seconds", started.elapsed().as_secs_f64(), Goal::None);
    report.violations(v.count());
    report
}
