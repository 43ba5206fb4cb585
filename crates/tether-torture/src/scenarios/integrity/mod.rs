//! `integrity`: thousands of connections over TCP, Local, TLS and framed
//! messages, sizes from 0 B to 4 MiB, five ways to end; every byte checked
//! both ways and every socket's end compared with what its plan says it
//! must be. Clients are tether (on their own loop) or plain std sockets;
//! servers tether, or for some TCP and Local connections plain std sockets.

mod flow;
mod plan;
mod server;
mod std_client;
mod std_server;
mod tether_client;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::flow::Record;
use self::plan::{Peer, Plan};
use super::Options;
use crate::check::Violations;
use crate::pattern::Pattern;
use crate::pki::Pki;
use crate::report::{Goal, Report};

/// Threads running std clients.
const STD_THREADS: usize = 3;
/// Tether client connections in flight at once.
const WINDOW: usize = 48;

pub(crate) fn run(opts: &Options) -> Report {
    let seed = opts.seed;
    let n = opts.conns.unwrap_or(if opts.quick { 1000 } else { 10_000 });
    let deadline = Duration::from_secs(if opts.quick { 90 } else { 1800 });
    let mut report = Report::new(
        "integrity",
        format!("{n} connections: TCP, Local, TLS, framed; tether and std peers"),
        seed,
        opts.quick,
    );
    let mut v = Violations::new("integrity", seed);
    let Some(pki) = Pki::for_run(&mut v) else {
        report.violations(v.count());
        return report;
    };
    let plans: Vec<Plan> = if opts.only.is_empty() {
        (0..n).map(|i| Plan::derive(seed, i)).collect()
    } else {
        opts.only.iter().map(|&i| Plan::derive(seed, i)).collect()
    };
    let n = plans.len() as u64;
    let started = Instant::now();
    let on_tether_server = plans.iter().filter(|p| p.peer != Peer::StdServer).count() as u64;
    let (mut addrs, server) = server::start(seed, on_tether_server, pki.server.clone(), deadline);
    let count = |net| {
        let std_served = |p: &&Plan| p.peer == Peer::StdServer && p.net == net;
        plans.iter().filter(std_served).count()
    };
    let std_server = match std_server::start(seed, count(plan::Net::Tcp), count(plan::Net::Local)) {
        Ok(s) => s,
        Err(e) => {
            v.add("setup", &format!("std server: {e}"));
            report.violations(v.count());
            return report;
        }
    };
    addrs.std_tcp = std_server.tcp.clone();
    addrs.std_local = std_server.local.clone();

    let std_plans: Arc<Mutex<VecDeque<Plan>>> = Arc::new(Mutex::new(
        plans
            .iter()
            .filter(|p| p.peer == Peer::Std)
            .cloned()
            .collect(),
    ));
    let std_records: Arc<Mutex<HashMap<u64, Record>>> = Arc::default();
    let std_threads: Vec<_> = (0..STD_THREADS)
        .map(|_| {
            let (queue, records, addrs) = (std_plans.clone(), std_records.clone(), addrs.clone());
            std::thread::spawn(move || loop {
                let Some(plan) = queue.lock().expect("queue").pop_front() else {
                    return;
                };
                let r = std_client::run(seed, &plan, &addrs);
                records.lock().expect("records").insert(plan.idx, r);
            })
        })
        .collect();
    let tether_plans: Vec<Plan> = plans
        .iter()
        .filter(|p| p.peer != Peer::Std)
        .cloned()
        .collect();
    let mut client_records = tether_client::run(
        seed,
        tether_plans,
        addrs,
        pki.client.clone(),
        WINDOW,
        deadline,
    );
    for t in std_threads {
        t.join().expect("std client thread");
    }
    client_records.extend(std::mem::take(&mut *std_records.lock().expect("records")));
    let server_log = server.join().expect("server thread");
    let std_served = std_server.thread.join().expect("std server thread");
    let secs = started.elapsed().as_secs_f64();

    let mut totals = Totals::default();
    let mut server_records = server_log.records;
    server_records.extend(std_served);
    for plan in &plans {
        let client = client_records.remove(&plan.idx).unwrap_or_default();
        let server = server_records.remove(&plan.idx).unwrap_or_default();
        check(seed, plan, &client, &server, &mut v, &mut totals);
    }
    for e in &server_log.anonymous {
        v.add(
            "server",
            &format!("a connection ended before naming itself: {e}"),
        );
        totals.closes_wrong += 1;
    }
    for idx in server_records.keys() {
        v.add(
            &format!("conn {idx}"),
            "the server saw a connection no client made",
        );
    }

    report.add("connections", n as f64, Goal::None);
    report.add("bytes moved (both ways)", totals.bytes as f64, Goal::None);
    report.add("seconds", secs, Goal::None);
    report.add(
        "bytes lost or changed",
        totals.damaged as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "checksum mismatches",
        totals.sums_wrong as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "framed messages cut or merged",
        totals.msgs_bad as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "on_closed not exactly once",
        totals.closes_wrong as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "accounting mismatches (reason, unsent, unread)",
        totals.endings_wrong as f64,
        Goal::AtMost(0.0),
    );
    report.add(
        "errors (refused calls, std socket errors)",
        totals.errors as f64,
        Goal::AtMost(0.0),
    );
    report.violations(v.count());
    report
}

#[derive(Debug, Default)]
struct Totals {
    bytes: u64,
    damaged: u64,
    sums_wrong: u64,
    msgs_bad: u64,
    closes_wrong: u64,
    endings_wrong: u64,
    errors: u64,
}

/// One connection against its plan, both sides.
fn check(
    seed: u64,
    plan: &Plan,
    client: &Record,
    server: &Record,
    v: &mut Violations,
    t: &mut Totals,
) {
    let before = v.count();
    check_sides(seed, plan, client, server, v, t);
    if v.count() > before {
        // Both ends, so a violation is read with its context.
        let show = |r: &Record| {
            let ending = r
                .ending
                .as_ref()
                .map_or("no on_closed".to_string(), |e| e.to_string());
            let got = r.got.map_or(0, |g| g.got);
            let sent = r.sent.map_or(0, |s| s.sent);
            format!("{ending}, received {got}, handed over {sent}")
        };
        eprintln!(
            "  {}: client {}; server {}",
            plan.at(),
            show(client),
            show(server)
        );
        for (side, r) in [("client", client), ("server", server)] {
            if !r.trace.is_empty() {
                eprintln!("    {side}: {}", r.trace.join(", "));
            }
        }
    }
}

fn check_sides(
    seed: u64,
    plan: &Plan,
    client: &Record,
    server: &Record,
    v: &mut Violations,
    t: &mut Totals,
) {
    let at = plan.at();
    for (side, rec) in [("client", client), ("server", server)] {
        for e in &rec.errors {
            v.add(&at, &format!("{side}: {e}"));
            t.errors += 1;
        }
        if rec.closes != 1 {
            v.add(&at, &format!("{side}: on_closed came {} times", rec.closes));
            t.closes_wrong += 1;
        }
        if rec.msgs_bad > 0 {
            v.add(
                &at,
                &format!("{side}: {} messages not of the length sent", rec.msgs_bad),
            );
            t.msgs_bad += rec.msgs_bad;
        }
    }
    // Endings: a tether side has its Closed; a std client had no error.
    if let Some(e) = &server.ending {
        if !v.ending(&at, "server", &plan.server_expect(), e) {
            t.endings_wrong += 1;
        }
    }
    if plan.peer != Peer::Std {
        if let Some(e) = &client.ending {
            if !v.ending(&at, "client", &plan.client_expect(), e) {
                t.endings_wrong += 1;
            }
        }
    }
    // Bytes: up as far as the server read it, down all of it.
    let up_expected = plan.up_delivered();
    let up = Pattern::new(seed, plan.idx, flow::UP);
    let down = Pattern::new(seed, plan.idx, flow::DOWN);
    let dirs = [
        (
            "up (client -> server)",
            server.got,
            client.sent,
            up,
            up_expected,
            plan.up,
        ),
        (
            "down (server -> client)",
            client.got,
            server.sent,
            down,
            plan.down,
            plan.down,
        ),
    ];
    for (dir, got, sent, pattern, expected, total) in dirs {
        let Some(got) = got else {
            if (client.closes, server.closes) != (0, 0) {
                v.add(&at, &format!("{dir}: nothing recorded by the receiver"));
            }
            t.damaged += expected;
            continue;
        };
        t.bytes += got.got;
        let damage = got.damage(expected);
        if damage > 0 {
            v.add(
                &at,
                &format!(
                    "{dir}: received {} of {expected} bytes, {} changed (first at {:?})",
                    got.got, got.changed, got.first_changed
                ),
            );
            t.damaged += damage;
        }
        // The receiver's checksum against the stream's, and, when all of
        // it was to arrive, against the sender's own.
        let want = pattern.checksum(expected);
        let sender_sum = sent.filter(|_| expected == total).map(|s| s.sum);
        if got.sum != want || sender_sum.is_some_and(|s| s != got.sum) {
            v.add(&at, &format!("{dir}: checksum differs"));
            t.sums_wrong += 1;
        }
        if let Some(s) = sent.filter(|s| s.sent != total) {
            v.add(
                &at,
                &format!("{dir}: the sender handed over {} of {total} bytes", s.sent),
            );
        }
    }
}
