//! `hostile`: a tether server under attack — slow-loris on every handshake
//! (TLS, framed HELLO, HTTP head), a flood of silent connections beyond what
//! it admits, garbage to every layer (DTLS datagrams too, in `dtls`), oversized frames and heads, a peer
//! that never reads and one that reads a byte at a time — while good clients
//! do exchanges. Every attack must end with its documented reason within its
//! bound, every good client must be served, and the server's memory must
//! stay bounded by what its application queued.

mod attacks;
mod dtls;
mod judge;
mod plan;
mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use self::attacks::Seen;
use self::plan::{Act, Attack, SLACK};
use self::server::{Bounds, Ends, Service, Spec};
use super::Options;
use crate::check::Violations;
use crate::pki::Pki;
use crate::prng::Prng;
use crate::procfs;
use crate::report::{Goal, Report};

/// Threads opening the flood's connections.
const FLOOD_THREADS: usize = 16;

pub(crate) fn run(opts: &Options) -> Report {
    let (seed, quick) = (opts.seed, opts.quick);
    let n = if quick { 2 } else { 20 };
    let flood = if quick { 1200 } else { 2500 };
    let b = Bounds {
        handshake: Duration::from_millis(if quick { 1000 } else { 2000 }),
        idle: Duration::from_millis(if quick { 1500 } else { 3000 }),
        queued: if quick { 4 << 20 } else { 1 << 20 },
    };
    let mut report = Report::new(
        "hostile",
        format!("{n} of each attack, {flood} silent connections, good clients throughout"),
        seed,
        quick,
    );
    let mut v = Violations::new("hostile", seed);
    let Some(pki) = Pki::for_run(&mut v) else {
        report.violations(v.count());
        return report;
    };
    let list = plan::attacks(&b, n, flood, if quick { 50 } else { 200 });
    let mut specs: Vec<Spec> = list.iter().map(|a| a.spec).collect();
    for tag in ["good-echo", "good-http"] {
        let service = if tag == "good-echo" {
            Service::Echo
        } else {
            Service::Http
        };
        specs.push(Spec {
            tag,
            tls: false,
            framed: false,
            service,
            max: None,
        });
    }
    let ends = Arc::new(Ends::default());
    let srv = server::start(specs, pki.server.clone(), b, ends.clone());
    let rss_before = procfs::rss();
    let started = Instant::now();

    // The sampler: the process's peak memory while the attack runs.
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(procfs::rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let good = good_clients(seed, &srv, running.clone());

    // The attacks, every connection on its own thread (the flood on a few).
    let give_up = b.idle * 2 + SLACK * 2;
    let mut threads: Vec<(usize, JoinHandle<Seen>)> = Vec::new();
    let mut floods = Vec::new();
    for (ai, a) in list.iter().enumerate() {
        let addr = srv.addr(a.spec.tag).to_string();
        if a.act == Act::Flood {
            for _ in 0..FLOOD_THREADS {
                let (addr, per, hold) = (addr.clone(), a.count / FLOOD_THREADS, b.idle + SLACK);
                floods.push(std::thread::spawn(move || {
                    attacks::hold_silent(&addr, per, hold)
                }));
            }
            continue;
        }
        for i in 0..a.count {
            let (addr, act) = (addr.clone(), a.act);
            let mut r = Prng::stream(seed, (ai * 100_000 + i) as u64);
            let t = std::thread::spawn(move || attacks::perform(act, &addr, &mut r, give_up));
            threads.push((ai, t));
        }
    }
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); list.len()];
    for (ai, t) in threads {
        seen[ai].push(t.join().expect("attacker"));
    }
    let (mut flood_made, mut flood_refused) = (0usize, 0u64);
    for t in floods {
        let (m, f) = t.join().expect("flood");
        flood_made += m as usize;
        flood_refused += f;
    }
    // How many ends each listener owes: the connections made that have a
    // user on the server.
    let owed: Vec<usize> = list
        .iter()
        .zip(&seen)
        .map(|(a, s)| match (a.act, a.server) {
            (Act::Flood, _) => flood_made,
            (_, Some(_)) => s.iter().filter(|s| s.connected).count(),
            (_, None) => 0,
        })
        .collect();
    wait_for_ends(&ends, &list, &owed, Instant::now() + b.idle * 4 + SLACK * 4);
    running.store(false, Ordering::Relaxed);
    let (tried, served) = good.join().expect("good clients");
    sampler.join().expect("sampler");
    let rss_after = procfs::rss();
    let secs = started.elapsed().as_secs_f64();
    srv.handle.terminate();
    srv.thread.join().expect("server thread");

    let ends = std::mem::take(&mut *ends.list.lock().expect("ends"));
    let (mut ok, mut max_unsent) = (0usize, 0u64);
    for ((a, s), &made) in list.iter().zip(&seen).zip(&owed) {
        let mine: Vec<_> = ends.iter().filter(|e| e.tag == a.spec.tag).collect();
        let verdict = judge::judge(a, made, &mine, s, b.queued as u64, &mut v);
        ok += usize::from(verdict.ok);
        max_unsent = max_unsent.max(verdict.max_unsent);
    }
    if served < tried {
        v.add(
            "good clients",
            &format!("{} of {tried} exchanges not served", tried - served),
        );
    }
    let served_pct = if tried == 0 {
        0.0
    } else {
        100.0 * served as f64 / tried as f64
    };
    let growth = peak.load(Ordering::Relaxed).saturating_sub(rss_before);
    // The sources' application queues, plus room for everything else.
    let sources = list.iter().filter(|a| a.spec.service == Service::Source);
    let allowed = sources.map(|a| a.count as u64).sum::<u64>() * b.queued as u64 + (32 << 20);
    const MIB: f64 = 1048576.0;
    report.add(
        "attack kinds ended right, in bound",
        ok as f64,
        Goal::AtLeast(list.len() as f64),
    );
    report.add(
        "good exchanges during the attack",
        tried as f64,
        Goal::AtLeast(1.0),
    );
    report.add("good exchanges served %", served_pct, Goal::AtLeast(100.0));
    report.add("silent connections made", flood_made as f64, Goal::None);
    report.add(
        "silent connections beyond the backlog",
        flood_refused as f64,
        Goal::None,
    );
    report.add(
        "source unsent max (bytes)",
        max_unsent as f64,
        Goal::AtMost(b.queued as f64),
    );
    report.add(
        "RSS growth, peak (MiB)",
        growth as f64 / MIB,
        Goal::AtMost(allowed as f64 / MIB),
    );
    report.add(
        "RSS growth, after (MiB)",
        rss_after.saturating_sub(rss_before) as f64 / MIB,
        Goal::None,
    );
    report.add("seconds", secs, Goal::None);
    dtls::run(seed, quick, &mut report, &mut v);
    report.violations(v.count());
    report
}

/// Good clients, all through the attack: an echo exchange and an HTTP
/// request in turn, each to be served within 2 s. Returns (tried, served).
fn good_clients(
    seed: u64,
    srv: &server::Server,
    running: Arc<AtomicBool>,
) -> JoinHandle<(u64, u64)> {
    let (echo, http) = (
        srv.addr("good-echo").to_string(),
        srv.addr("good-http").to_string(),
    );
    std::thread::spawn(move || {
        let mut r = Prng::stream(seed, u64::MAX);
        let (mut tried, mut served) = (0u64, 0u64);
        while running.load(Ordering::Relaxed) {
            let ok = if tried % 2 == 0 {
                attacks::good_echo(&echo, &mut r, Duration::from_secs(2))
            } else {
                attacks::good_http(&http, Duration::from_secs(2))
            };
            tried += 1;
            served += u64::from(ok);
            // A steady trickle, not a load test: leave the cores to the
            // server and the attackers.
            std::thread::sleep(Duration::from_millis(2));
        }
        (tried, served)
    })
}

/// Wait until every listener logged the ends it owes, or `until`.
fn wait_for_ends(ends: &Ends, list: &[Attack], owed: &[usize], until: Instant) {
    let mut logged = ends.list.lock().expect("ends");
    loop {
        let all = list
            .iter()
            .zip(owed)
            .all(|(a, &n)| logged.iter().filter(|e| e.tag == a.spec.tag).count() >= n);
        let now = Instant::now();
        if all || now >= until {
            return;
        }
        logged = ends
            .changed
            .wait_timeout(logged, until - now)
            .expect("ends")
            .0;
    }
}
