//! The client child of idle-memory: holds the connections (in a process of
//! its own, so their memory is not the server's) and drives the active 1 %.
//!
//! `__idle-clients ADDR CA_PATH|-` answers lines on stdin: `open N` opens N
//! more connections and says `up` once all are (TLS: handshake over);
//! `echo SECS SLICES PID` drives echo round trips on 1 % of them for SECS,
//! the 1 % moving through SLICES slices of the whole, and says
//! `echo TRIPS P50_NS P99_NS CPU_NS ERRORS` (CPU_NS: process PID's CPU time
//! over the window). The end of stdin ends the process and every connection.
#![forbid(unsafe_code)]

use std::io::{BufRead, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::procfs;
use crate::common::Target;
use crate::load::established;
use crate::sys;
use crate::tlsio::{client_config_pem, client_session, Sock, Wire};

/// Source addresses 127.0.0.2 ..= 127.0.0.(1 + SOURCES), taken round-robin:
/// each holds a few thousand ports at most, well below the ~28,000 the
/// ephemeral range gives one source, whatever earlier runs left in TIME_WAIT.
const SOURCES: usize = 8;
/// Connections being set up at once (the parent asks for batches no larger).
const IN_FLIGHT: usize = 512;
/// The echo message.
const MSG: [u8; 64] = [0x42; 64];

pub(crate) fn clients_child(args: &[String]) {
    sys::die_with_parent();
    sys::raise_nofile_limit();
    let Some(Target::Tcp(addr)) = Target::parse(&args[0], false) else {
        panic!("a TCP address: {}", args[0]);
    };
    let tls = (args[1] != "-").then(|| {
        let pem = std::fs::read_to_string(PathBuf::from(&args[1])).expect("CA");
        client_config_pem(&pem)
    });
    let mut conns: Vec<Wire> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["open", n] => {
                open(addr, tls.as_ref(), n.parse().expect("count"), &mut conns);
                println!("up");
            }
            ["echo", secs, slices, pid] => {
                let secs = Duration::from_secs_f64(secs.parse().expect("seconds"));
                let slices = slices.parse().expect("slices");
                let (trips, hist, cpu, errors) =
                    echo(&mut conns, secs, slices, pid.parse().expect("pid"));
                println!(
                    "echo {trips} {} {} {cpu} {errors}",
                    hist.value_at_quantile(0.5),
                    hist.value_at_quantile(0.99)
                );
            }
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// Start connecting from the next source address (bound before connecting).
fn connect(addr: SocketAddr, nth: usize) -> std::io::Result<Sock> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    sys::bind_address_no_port(&s)?;
    let source = Ipv4Addr::new(127, 0, 0, 2 + (nth % SOURCES) as u8);
    s.bind(&SocketAddr::V4(SocketAddrV4::new(source, 0)).into())?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let std: std::net::TcpStream = s.into();
    Ok(Sock::Tcp(mio::net::TcpStream::from_std(std)))
}

/// Open `n` connections, at most IN_FLIGHT being set up at a time, and keep
/// them (no longer registered with any poller) once each is up.
fn open(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    n: usize,
    conns: &mut Vec<Wire>,
) {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<(Wire, bool)>> = (0..IN_FLIGHT).map(|_| None).collect();
    let (mut started, mut done) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(180);
    while done < n {
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_none() && started < n {
                let mut sock = connect(addr, conns.len() + started).expect("connect");
                let interest = Interest::READABLE | Interest::WRITABLE;
                poll.registry()
                    .register(&mut sock, Token(i), interest)
                    .expect("register");
                *slot = Some((Wire::new(sock, tls.map(client_session)), false));
                started += 1;
            }
        }
        assert!(Instant::now() < deadline, "connections did not come up");
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(100))) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
        }
        for ev in events.iter() {
            let slot = &mut slots[ev.token().0];
            let Some((wire, connected)) = slot else {
                continue;
            };
            if established(wire, connected) {
                let (mut wire, _) = slot.take().expect("slot");
                poll.registry()
                    .deregister(&mut wire.sock)
                    .expect("deregister");
                conns.push(wire);
                done += 1;
            }
        }
    }
}

/// One active connection of a slice: when its message went, what came back.
struct Active {
    conn: usize,
    sent: Instant,
    got: usize,
    /// A message is out and not all back.
    waiting: bool,
}

/// Echo round trips on 1 % of `conns` (at least one), one message in flight
/// each, for `window`: the window is cut into `slices`, and each slice's 1 %
/// starts at another point of the whole, so the connections that wake
/// differ. At a slice's end the messages out are waited for (and counted).
fn echo(
    conns: &mut [Wire],
    window: Duration,
    slices: usize,
    server: u32,
) -> (u64, Histogram<u64>, u64, u64) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 4096];
    let n = conns.len();
    let active = (n / 100).max(1);
    let slices = slices.max(1);
    let (mut trips, mut errors) = (0u64, 0u64);
    let cpu0 = procfs::cpu_ns(server);
    let begin = Instant::now();
    for slice in 0..slices {
        let end = begin + window * (slice as u32 + 1) / slices as u32;
        let first = slice * n / slices;
        let mut act: Vec<Active> = Vec::with_capacity(active);
        for k in 0..active {
            let conn = (first + k) % n;
            let c = &mut conns[conn];
            poll.registry()
                .register(&mut c.sock, Token(k), Interest::READABLE)
                .expect("register");
            // 64 bytes always fit an idle connection's socket buffer.
            let ok = c.write(&MSG).is_ok();
            errors += u64::from(!ok);
            act.push(Active {
                conn,
                sent: Instant::now(),
                got: 0,
                waiting: ok,
            });
        }
        let mut out = act.iter().filter(|a| a.waiting).count();
        while out > 0 {
            let now = Instant::now();
            let wait = end
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            }
            for ev in events.iter() {
                let a = &mut act[ev.token().0];
                if !a.waiting {
                    continue;
                }
                let c = &mut conns[a.conn];
                // Edge-triggered: read until there is nothing more.
                let failed = loop {
                    match c.read(&mut buf) {
                        Ok(0) => break true,
                        Ok(got) => a.got += got,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                        Err(_) => break true,
                    }
                };
                if failed {
                    errors += 1;
                    a.waiting = false;
                    out -= 1;
                } else if a.got >= MSG.len() {
                    let now = Instant::now();
                    let _ = hist.record((now - a.sent).as_nanos() as u64);
                    trips += 1;
                    a.got -= MSG.len();
                    if now < end && c.write(&MSG).is_ok() {
                        a.sent = now;
                    } else {
                        a.waiting = false;
                        out -= 1;
                    }
                }
            }
        }
        for a in act {
            poll.registry()
                .deregister(&mut conns[a.conn].sock)
                .expect("deregister");
        }
    }
    let cpu = procfs::cpu_ns(server).saturating_sub(cpu0);
    (trips, hist, cpu, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_come_from_the_sources_in_turn() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("address");
        let mut held = Vec::new();
        for nth in [0, 3, 7, 8, 13] {
            held.push(connect(addr, nth).expect("connect"));
            let (_, peer) = listener.accept().expect("accept");
            let want = Ipv4Addr::new(127, 0, 0, 2 + (nth % SOURCES) as u8);
            assert_eq!(peer.ip(), want, "connection {nth}");
        }
    }
}
