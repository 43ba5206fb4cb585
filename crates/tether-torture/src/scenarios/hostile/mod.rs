//! `hostile`: a tether server under attack — slow-loris on every handshake
//! (TLS, framed HELLO, HTTP head), a flood of silent connections beyond what
//! it admits, garbage to every layer, oversized frames and heads, a peer
//! that never reads and one that reads a byte at a time — while good clients
//! do exchanges. Every attack must end with its documented reason within its
//! bound, every good client must be served, and the server's memory must
//! stay bounded by what its application queued.

mod attacks;
mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::Reason;

use self::attacks::Seen;
use self::server::{Bounds, Ends, Service, Spec};
use super::Options;
use crate::check::{Expect, Violations, GRACEFUL};
use crate::pki::Pki;
use crate::prng::Prng;
use crate::procfs;
use crate::report::{Goal, Report};

/// Timers fire late by a turn at most, threads get scheduled late on a busy
/// 2-core machine: what a bound allows beyond the timeout itself.
const SLACK: Duration = Duration::from_millis(1500);

/// Threads opening the flood's connections.
const FLOOD_THREADS: usize = 16;

/// One attack: its listener, how many connections, what each does, and how
/// the server must end them.
struct Attack {
    spec: Spec,
    count: usize,
    /// The server's reasons, when the connection has a user (a framed one
    /// gets one only at HELLO).
    server: Option<&'static [Reason]>,
    /// The longest the server may keep one.
    bound: Duration,
    /// The attacker must see the end within `bound` (it cannot when it
    /// never reads, or reads slower than the data that waits for it).
    attacker_sees_end: bool,
    /// What the server's answer must begin with.
    answer: &'static [u8],
}

fn spec(tag: &'static str, tls: bool, framed: bool, service: Service) -> Spec {
    Spec {
        tag,
        tls,
        framed,
        service,
        max: None,
    }
}

pub(crate) fn run(opts: &Options) -> Report {
    let seed = opts.seed;
    let quick = opts.quick;
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
    let pki = match Pki::new() {
        Ok(p) => p,
        Err(e) => {
            v.add("setup", &e);
            report.violations(v.count());
            return report;
        }
    };
    let hs = b.handshake + SLACK;
    let idle = b.idle + SLACK;
    let attack = |spec, server, bound, sees, answer| Attack {
        spec,
        count: n,
        server,
        bound,
        attacker_sees_end: sees,
        answer,
    };
    let mut flood_spec = spec("silent-flood", false, false, Service::Echo);
    flood_spec.max = Some(if quick { 50 } else { 200 });
    let list = vec![
        attack(
            spec("tls-slowloris", true, false, Service::Echo),
            Some(&[Reason::HandshakeTimeout][..]),
            hs,
            true,
            &b""[..],
        ),
        attack(
            spec("framed-slowloris", false, true, Service::Echo),
            None,
            hs,
            true,
            b"",
        ),
        attack(
            spec("http-slowloris", false, false, Service::Http),
            Some(GRACEFUL),
            hs,
            true,
            b"HTTP/1.1 408",
        ),
        attack(
            spec("tls-garbage", true, false, Service::Echo),
            Some(&[Reason::TlsHandshakeFailed][..]),
            SLACK,
            true,
            b"",
        ),
        attack(
            spec("framed-garbage", false, true, Service::Echo),
            None,
            SLACK,
            true,
            b"",
        ),
        attack(
            spec("http-garbage", false, false, Service::Http),
            Some(GRACEFUL),
            SLACK,
            true,
            b"HTTP/1.1 400",
        ),
        attack(
            spec("framed-oversized", false, true, Service::Echo),
            Some(&[Reason::ProtocolError][..]),
            SLACK,
            true,
            b"",
        ),
        attack(
            spec("http-oversized", false, false, Service::Http),
            Some(GRACEFUL),
            SLACK,
            true,
            b"HTTP/1.1 431",
        ),
        attack(
            spec("never-reads", false, false, Service::Source),
            Some(&[Reason::IdleTimeout][..]),
            idle,
            false,
            b"",
        ),
        attack(
            spec("slow-reader", false, false, Service::Source),
            Some(&[Reason::IdleTimeout][..]),
            idle,
            false,
            b"",
        ),
        Attack {
            spec: flood_spec,
            count: flood,
            server: Some(&[Reason::IdleTimeout, Reason::ByPeer][..]),
            bound: idle,
            attacker_sees_end: false,
            answer: b"",
        },
    ];
    let mut specs: Vec<Spec> = list.iter().map(|a| a.spec).collect();
    specs.push(spec("good-echo", false, false, Service::Echo));
    specs.push(spec("good-http", false, false, Service::Http));
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
    // Good clients, all through the attack.
    let good = {
        let (running, echo, http) = (
            running.clone(),
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
    };

    // The attacks, every connection on its own thread (the flood on a few).
    let give_up = b.idle * 2 + SLACK * 2;
    let drip = Duration::from_millis(100);
    let mut threads: Vec<(usize, std::thread::JoinHandle<Vec<Seen>>)> = Vec::new();
    let mut flood_made = Vec::new();
    for (ai, a) in list.iter().enumerate() {
        let addr = srv.addr(a.spec.tag).to_string();
        if a.spec.tag == "silent-flood" {
            for _ in 0..FLOOD_THREADS {
                let addr = addr.clone();
                let per = a.count / FLOOD_THREADS;
                let hold = b.idle + SLACK;
                flood_made.push(std::thread::spawn(move || {
                    attacks::hold_silent(&addr, per, hold)
                }));
            }
            continue;
        }
        for i in 0..a.count {
            let addr = addr.clone();
            let tag = a.spec.tag;
            let mut r = Prng::stream(seed, (ai * 100_000 + i) as u64);
            threads.push((
                ai,
                std::thread::spawn(move || {
                    let seen = match tag {
                        "tls-slowloris" => {
                            attacks::dribble(&addr, attacks::TLS_HEAD, 0, drip, give_up)
                        }
                        "framed-slowloris" => {
                            attacks::dribble(&addr, attacks::HELLO_HEAD, b'a', drip, give_up)
                        }
                        "http-slowloris" => {
                            attacks::dribble(&addr, attacks::HTTP_HEAD, b'a', drip, give_up)
                        }
                        "tls-garbage" => {
                            attacks::blurt(&addr, &attacks::garbage(&mut r, &[0x99], 600), give_up)
                        }
                        "framed-garbage" => attacks::blurt(
                            &addr,
                            &attacks::garbage(&mut r, &[0, 0, 0, 5, 0x77], 600),
                            give_up,
                        ),
                        "http-garbage" => attacks::blurt(
                            &addr,
                            &attacks::garbage(&mut r, b"\x01\x02\x03 \x7f\r\n", 600)
                                .into_iter()
                                .chain(*b"\r\n\r\n")
                                .collect::<Vec<u8>>(),
                            give_up,
                        ),
                        "framed-oversized" => attacks::oversized_frame(&addr, give_up),
                        "http-oversized" => {
                            let mut head = b"GET / HTTP/1.1\r\nHost: torture\r\nX-Big: ".to_vec();
                            head.resize(head.len() + 20 * 1024, b'a');
                            head.extend_from_slice(b"\r\n\r\n");
                            attacks::blurt(&addr, &head, give_up)
                        }
                        "never-reads" => attacks::never_read(&addr, give_up),
                        "slow-reader" => {
                            attacks::slow_read(&addr, Duration::from_millis(50), give_up)
                        }
                        _ => Seen::default(),
                    };
                    vec![seen]
                }),
            ));
        }
    }
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); list.len()];
    for (ai, t) in threads {
        seen[ai].extend(t.join().expect("attacker"));
    }
    let (mut made, mut refused) = (0u64, 0u64);
    for t in flood_made {
        let (m, f) = t.join().expect("flood");
        made += m;
        refused += f;
    }
    // Every connection the server has a user for must end: wait for them
    // (bounded), then stop the good clients and measure.
    let expected = |ai: usize, a: &Attack| -> usize {
        if a.spec.tag == "silent-flood" {
            made as usize
        } else if a.server.is_some() {
            seen[ai].iter().filter(|s| s.connected).count()
        } else {
            0
        }
    };
    let wait_until = Instant::now() + b.idle * 4 + SLACK * 4;
    {
        let mut list_ends = ends.list.lock().expect("ends");
        loop {
            let all = list.iter().enumerate().all(|(ai, a)| {
                list_ends.iter().filter(|e| e.tag == a.spec.tag).count() >= expected(ai, a)
            });
            let now = Instant::now();
            if all || now >= wait_until {
                break;
            }
            list_ends = ends
                .changed
                .wait_timeout(list_ends, wait_until - now)
                .expect("ends")
                .0;
        }
    }
    running.store(false, Ordering::Relaxed);
    let (tried, served) = good.join().expect("good clients");
    sampler.join().expect("sampler");
    let rss_after = procfs::rss();
    let secs = started.elapsed().as_secs_f64();
    srv.handle.terminate();
    srv.thread.join().expect("server thread");

    // The checks.
    let ends = std::mem::take(&mut *ends.list.lock().expect("ends"));
    let (mut attacks_ok, mut attacks_all) = (0u64, 0u64);
    let mut max_unsent = 0u64;
    for (ai, a) in list.iter().enumerate() {
        let tag = a.spec.tag;
        let mine: Vec<_> = ends.iter().filter(|e| e.tag == tag).collect();
        let mut bad = 0;
        if let Some(reasons) = a.server {
            let want = expected(ai, a);
            if mine.len() != want {
                v.add(
                    tag,
                    &format!(
                        "the server ended {} connections, {want} were made",
                        mine.len()
                    ),
                );
                bad += 1;
            }
            let expect = Expect {
                reasons,
                unsent: None,
                unread: None,
            };
            for e in &mine {
                if !v.ending(tag, "server", &expect, &e.ending) {
                    bad += 1;
                }
                if e.lived > a.bound {
                    v.add(
                        tag,
                        &format!("the server kept it {:?}, bound {:?}", e.lived, a.bound),
                    );
                    bad += 1;
                }
                if a.spec.service == Service::Source {
                    max_unsent = max_unsent.max(e.max_unsent);
                    if e.max_unsent > b.queued as u64 {
                        v.add(
                            tag,
                            &format!(
                                "unsent reached {} past the {} queued",
                                e.max_unsent, b.queued
                            ),
                        );
                        bad += 1;
                    }
                }
            }
        } else if !mine.is_empty() {
            v.add(
                tag,
                &format!(
                    "{} connections got a user before their handshake",
                    mine.len()
                ),
            );
            bad += 1;
        }
        for (i, s) in seen[ai].iter().enumerate() {
            let at = format!("{tag} #{i}");
            if !s.connected {
                v.add(&at, "the attacker could not connect");
                bad += 1;
                continue;
            }
            if a.attacker_sees_end {
                match s.ended_after {
                    Some(d) if d <= a.bound => {}
                    Some(d) => {
                        v.add(
                            &at,
                            &format!("the server ended it after {d:?}, bound {:?}", a.bound),
                        );
                        bad += 1;
                    }
                    None => {
                        v.add(&at, "still open when the attacker gave up");
                        bad += 1;
                    }
                }
            }
            if !s.answer.starts_with(a.answer) {
                let text = String::from_utf8_lossy(&s.answer[..s.answer.len().min(40)]).to_string();
                v.add(
                    &at,
                    &format!(
                        "answer {text:?}, expected it to begin {:?}",
                        String::from_utf8_lossy(a.answer)
                    ),
                );
                bad += 1;
            }
        }
        attacks_all += 1;
        attacks_ok += u64::from(bad == 0);
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
    let allowed = (2 * n as u64) * b.queued as u64 + (32 << 20);
    report.add(
        "attack kinds ended right, in bound",
        attacks_ok as f64,
        Goal::AtLeast(attacks_all as f64),
    );
    report.add(
        "good exchanges during the attack",
        tried as f64,
        Goal::AtLeast(1.0),
    );
    report.add("good exchanges served %", served_pct, Goal::AtLeast(100.0));
    report.add("silent connections made", made as f64, Goal::None);
    report.add(
        "silent connections beyond the backlog",
        refused as f64,
        Goal::None,
    );
    report.add(
        "source unsent max (bytes)",
        max_unsent as f64,
        Goal::AtMost(b.queued as f64),
    );
    report.add(
        "RSS growth, peak (MiB)",
        growth as f64 / 1048576.0,
        Goal::AtMost(allowed as f64 / 1048576.0),
    );
    report.add(
        "RSS growth, after (MiB)",
        rss_after.saturating_sub(rss_before) as f64 / 1048576.0,
        Goal::None,
    );
    report.add("seconds", secs, Goal::None);
    report.violations(v.count());
    report
}
