//! The load generator: one hand-written mio client on the calling thread,
//! the same for every server. It counts, times and samples latency only
//! inside the measured window, and reads the server's CPU time around it.
#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use crate::common::Target;
use crate::sys;
use crate::tlsio::{client_session, Sock, Wire};

pub(crate) mod assoc;
mod bulk;
mod connections;
pub(crate) mod http;
mod pingpong;

pub(crate) use bulk::stream;
pub(crate) use connections::churn;
pub(crate) use pingpong::{pingpong, pingpong_trips, udp};

/// How long to warm up, then how long to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
}

/// What one measured window gave.
#[derive(Debug)]
pub(crate) struct Measured {
    /// Round trips, bytes, connections or datagrams.
    pub(crate) count: u64,
    pub(crate) elapsed: Duration,
    /// CPU time of everything in the process but the load generator's thread.
    pub(crate) server_cpu: Duration,
    /// CPU time of the load generator's thread: near the window's length, it
    /// is the load generator, not the server, that sets the pace.
    pub(crate) client_cpu: Duration,
    /// Round-trip latency in nanoseconds (pingpong).
    pub(crate) latency: Option<Histogram<u64>>,
    /// Connections that failed, datagrams lost.
    pub(crate) errors: u64,
}

impl Measured {
    /// From a start (time, count, process CPU, this thread's CPU) to now.
    fn since(
        (t0, c0, p0, th0): (Instant, u64, Duration, Duration),
        now: Instant,
        count: u64,
    ) -> Measured {
        let (p1, th1) = (sys::process_cpu(), sys::thread_cpu());
        Measured {
            count: count - c0,
            elapsed: now - t0,
            server_cpu: (p1.saturating_sub(p0)).saturating_sub(th1.saturating_sub(th0)),
            client_cpu: th1.saturating_sub(th0),
            latency: None,
            errors: 0,
        }
    }
    pub(crate) fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    /// Server CPU seconds per million of what was counted.
    pub(crate) fn cpu_per_million(&self) -> f64 {
        self.server_cpu.as_secs_f64() / (self.count.max(1) as f64 / 1e6)
    }
    /// The load generator's share of one CPU during the window, in percent.
    pub(crate) fn client_busy(&self) -> f64 {
        100.0 * self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }
    pub(crate) fn latency_us(&self, q: f64) -> f64 {
        self.latency
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// The phases of a run: connect, warm up, measure.
struct Clock {
    w: Window,
    /// When the warm-up began (all connections up).
    begin: Option<Instant>,
    t0: Option<(Instant, u64, Duration, Duration)>,
    end: Option<Measured>,
}

impl Clock {
    fn new(w: Window) -> Clock {
        Clock {
            w,
            begin: None,
            t0: None,
            end: None,
        }
    }
    fn start(&mut self, now: Instant) {
        self.begin.get_or_insert(now);
    }
    fn measuring(&self) -> bool {
        self.t0.is_some()
    }
    /// Move the phases on; `count` is the running total. True when done.
    fn tick(&mut self, now: Instant, count: u64) -> bool {
        let Some(begin) = self.begin else {
            return false;
        };
        match self.t0 {
            None if now >= begin + self.w.warmup => {
                self.t0 = Some((now, count, sys::process_cpu(), sys::thread_cpu()));
                false
            }
            None => false,
            Some((t0, c0, p0, th0)) if now >= t0 + self.w.measure => {
                self.end = Some(Measured::since((t0, c0, p0, th0), now, count));
                true
            }
            Some(_) => false,
        }
    }
}

fn poll_events(poll: &mut Poll, events: &mut Events) {
    if let Err(e) = poll.poll(events, Some(Duration::from_millis(5))) {
        assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
    }
}

/// Start connecting (TCP with TCP_NODELAY).
fn connect(target: &Target) -> std::io::Result<Sock> {
    match target {
        Target::Tcp(a) => {
            let s = mio::net::TcpStream::connect(*a)?;
            s.set_nodelay(true)?;
            Ok(Sock::Tcp(s))
        }
        Target::Unix(p) => Ok(Sock::Unix(mio::net::UnixStream::connect(p)?)),
        Target::Udp(_) => Err(std::io::Error::new(ErrorKind::InvalidInput, "not a stream")),
    }
}

fn open(poll: &Poll, target: &Target, tls: Option<&Arc<rustls::ClientConfig>>, i: usize) -> Wire {
    let mut sock = connect(target).expect("connect");
    poll.registry()
        .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    Wire::new(sock, tls.map(client_session))
}

/// Connected, and on TLS the handshake is over? Drives the handshake.
pub(crate) fn established(c: &mut Wire, connected: &mut bool) -> bool {
    if !*connected {
        match c.sock.connected() {
            Ok(true) => *connected = true,
            Ok(false) => return false,
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    if c.handshaking() {
        let _ = c.flush();
        let mut scratch = [0u8; 256];
        match c.read(&mut scratch) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("TLS handshake failed: {e}"),
            Ok(_) => {}
        }
    }
    !c.handshaking()
}
