//! The load generator: one hand-written mio client on the calling thread,
//! the same for every server. It counts, times and samples latency only
//! inside the measured window, and reads the server's CPU time around it.
#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use crate::common::{Stats, Target, CHUNK};
use crate::sys;
use crate::tlsio::{client_session, Sock, Wire};

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

fn open(poll: &Poll, target: &Target, tls: Option<&Arc<rustls::ClientConfig>>, i: usize) -> Wire {
    let mut sock = Sock::connect(target).expect("connect");
    poll.registry()
        .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
        .expect("register");
    Wire::new(sock, tls.map(client_session))
}

/// Connected, and on TLS the handshake is over? Drives the handshake.
fn established(c: &mut Wire, connected: &mut bool) -> bool {
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

/// When a pingpong ends.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// After a warm-up and a measured window.
    Window(Window),
    /// Once every connection has made this many round trips (it sends no
    /// more after its last): a fixed amount of work, for counting
    /// instructions and calls rather than timing.
    Trips(u64),
}

/// Request/response: each connection sends `size` bytes, waits for them to come
/// back, and again.
pub(crate) fn pingpong(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    conns: usize,
    size: usize,
    w: Window,
) -> Measured {
    pingpong_until(target, tls, conns, size, Until::Window(w))
}

/// Plain pingpong of exactly `conns` × `trips` round trips: no warm-up, no
/// window; the figures cover the whole run from the first connect to the
/// last echo (connections still open). No latency histogram.
pub(crate) fn pingpong_trips(target: &Target, conns: usize, size: usize, trips: u64) -> Measured {
    pingpong_until(target, None, conns, size, Until::Trips(trips))
}

fn pingpong_until(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    conns: usize,
    size: usize,
    until: Until,
) -> Measured {
    struct C {
        wire: Wire,
        connected: bool,
        started: bool,
        sent: usize,
        got: usize,
        at: Instant,
        trips: u64,
    }
    let (w, limit) = match until {
        Until::Window(w) => (w, u64::MAX),
        Until::Trips(n) => (
            Window {
                warmup: Duration::ZERO,
                measure: Duration::ZERO,
            },
            n.max(1),
        ),
    };
    let begun = (Instant::now(), 0, sys::process_cpu(), sys::thread_cpu());
    let msg = vec![0xa5u8; size];
    let mut buf = vec![0u8; 256 * 1024];
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut cs: Vec<C> = (0..conns)
        .map(|i| C {
            wire: open(&poll, target, tls, i),
            connected: false,
            started: false,
            sent: 0,
            got: 0,
            at: now,
            trips: 0,
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut clock = Clock::new(w);
    let (mut started, mut done, mut finished) = (0, 0u64, 0);
    let deadline = now + Duration::from_secs(30);
    loop {
        poll_events(&mut poll, &mut events);
        let now = Instant::now();
        for ev in events.iter() {
            let c = &mut cs[ev.token().0];
            if !c.started {
                if !established(&mut c.wire, &mut c.connected) {
                    continue;
                }
                c.started = true;
                started += 1;
                c.at = now;
                c.sent = 0;
            }
            if ev.is_writable() {
                let _ = c.wire.flush();
            }
            loop {
                match c.wire.read(&mut buf) {
                    Ok(0) => panic!("the server closed a pingpong connection"),
                    Ok(n) => {
                        c.got += n;
                        if c.got >= size {
                            assert_eq!(c.got, size, "more came back than was sent");
                            done += 1;
                            if clock.measuring() {
                                let _ = hist.record((now - c.at).as_nanos() as u64);
                            }
                            c.got = 0;
                            c.sent = 0;
                            c.at = now;
                            c.trips += 1;
                            if c.trips == limit {
                                // Its last: nothing more to send.
                                c.sent = size;
                                finished += 1;
                            }
                        }
                        // A short plain read emptied the socket (the next edge
                        // says when more comes): asking again would only get
                        // EAGAIN, a system call per round trip that would make
                        // the load generator, not the server, set the pace.
                        if n < buf.len() && !c.wire.is_tls() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("pingpong read: {e}"),
                }
            }
            while c.sent < size {
                match c.wire.write(&msg[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("pingpong write: {e}"),
                }
            }
        }
        if started == conns {
            clock.start(now);
        } else {
            assert!(
                now < deadline,
                "only {started} of {conns} connections came up"
            );
        }
        if finished == conns {
            return Measured::since(begun, now, done);
        }
        if limit == u64::MAX && clock.tick(now, done) {
            let mut m = clock.end.take().expect("measured");
            m.latency = Some(hist);
            return m;
        }
    }
}

/// Bulk transfer, `up` (we write 64 KiB chunks, the server's sink counts) or
/// down (the server's source writes, we count).
pub(crate) fn stream(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    conns: usize,
    up: bool,
    server: &Stats,
    w: Window,
) -> Measured {
    /// Reads or writes per connection per turn: a fast peer could otherwise
    /// keep one loop going (never `WouldBlock`) past the end of the window.
    const BURST: usize = 16;
    struct C {
        wire: Wire,
        connected: bool,
        up: bool,
        /// Readiness not yet used up (no `WouldBlock` since the last event).
        hot: bool,
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut cs: Vec<C> = (0..conns)
        .map(|i| C {
            wire: open(&poll, target, tls, i),
            connected: false,
            up: false,
            hot: false,
        })
        .collect();
    let mut clock = Clock::new(w);
    let (mut started, mut received) = (0, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy = cs.iter().any(|c| c.hot);
        let timeout = if busy {
            Duration::ZERO
        } else {
            Duration::from_millis(5)
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
        }
        for ev in events.iter() {
            cs[ev.token().0].hot = true;
        }
        for c in cs.iter_mut().filter(|c| c.hot) {
            if !c.up {
                if !established(&mut c.wire, &mut c.connected) {
                    c.hot = false;
                    continue;
                }
                c.up = true;
                started += 1;
            }
            let mut drained = false;
            for _ in 0..BURST {
                match c.wire.read(&mut buf) {
                    Ok(0) => panic!("the server closed a stream connection"),
                    Ok(n) => received += n as u64,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        drained = true;
                        break;
                    }
                    Err(e) => panic!("stream read: {e}"),
                }
            }
            let mut full = true;
            if up {
                match c.wire.flush() {
                    Ok(true) => {
                        full = false;
                        for _ in 0..BURST {
                            // Plain: whatever the kernel takes (no queue
                            // needed: the bytes are all alike). TLS: until
                            // rustls holds output.
                            match c.wire.write(&CHUNK) {
                                Ok(_) if c.wire.holds_output() => {
                                    full = true;
                                    break;
                                }
                                Ok(_) => {}
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    full = true;
                                    break;
                                }
                                Err(e) => panic!("stream write: {e}"),
                            }
                        }
                    }
                    Ok(false) => {}
                    Err(e) => panic!("stream write: {e}"),
                }
            }
            c.hot = !(drained && full);
        }
        let now = Instant::now();
        if started == conns {
            clock.start(now);
        } else {
            assert!(
                now < deadline,
                "only {started} of {conns} connections came up"
            );
        }
        let count = if up {
            Stats::get(&server.bytes)
        } else {
            received
        };
        if clock.tick(now, count) {
            return clock.end.take().expect("measured");
        }
    }
}

/// UDP request/response with `window` datagrams of `size` bytes in flight.
pub(crate) fn udp(target: SocketAddr, window: usize, size: usize, w: Window) -> Measured {
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut sock = mio::net::UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    sock.connect(target).expect("connect");
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE)
        .expect("register");
    let msg = vec![0x3cu8; size];
    let mut buf = vec![0u8; 64 * 1024];
    let mut clock = Clock::new(w);
    clock.start(Instant::now());
    let (mut in_flight, mut done, mut lost) = (0usize, 0u64, 0u64);
    let mut last = Instant::now();
    loop {
        while in_flight < window {
            match sock.send(&msg) {
                Ok(_) => in_flight += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("udp send: {e}"),
            }
        }
        poll_events(&mut poll, &mut events);
        let now = Instant::now();
        loop {
            match sock.recv(&mut buf) {
                Ok(_) => {
                    done += 1;
                    in_flight = in_flight.saturating_sub(1);
                    last = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("udp recv: {e}"),
            }
        }
        if now - last > Duration::from_millis(20) {
            // Lost on the way (a full socket buffer): send them again.
            lost += in_flight as u64;
            in_flight = 0;
            last = now;
        }
        if clock.tick(now, done) {
            let mut m = clock.end.take().expect("measured");
            m.errors = lost;
            return m;
        }
    }
}

/// Connection churn: `parallel` at a time, each connects (and on TLS does a
/// full handshake), sends 64 bytes, reads them back, ends its side (TLS:
/// close_notify, then FIN), reads until the server's end, closes.
pub(crate) fn churn(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    parallel: usize,
    w: Window,
) -> Measured {
    #[derive(PartialEq)]
    enum Phase {
        Opening,
        Exchange,
        Closing,
    }
    struct C {
        wire: Wire,
        connected: bool,
        phase: Phase,
        got: usize,
        fin_sent: bool,
    }
    let msg = [0x11u8; 64];
    let mut buf = vec![0u8; 16 * 1024];
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let fresh = |poll: &Poll, i| C {
        wire: open(poll, target, tls, i),
        connected: false,
        phase: Phase::Opening,
        got: 0,
        fin_sent: false,
    };
    let mut cs: Vec<C> = (0..parallel).map(|i| fresh(&poll, i)).collect();
    let mut clock = Clock::new(w);
    clock.start(Instant::now());
    let (mut done, mut errors) = (0u64, 0u64);
    loop {
        poll_events(&mut poll, &mut events);
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut cs[i];
            let result = (|| -> std::io::Result<bool> {
                if c.phase == Phase::Opening {
                    if !c.connected {
                        if !c.wire.sock.connected()? {
                            return Ok(false);
                        }
                        c.connected = true;
                    }
                    if c.wire.handshaking() {
                        c.wire.flush()?;
                        match c.wire.read(&mut buf) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            other => {
                                other?;
                            }
                        }
                        if c.wire.handshaking() {
                            return Ok(false);
                        }
                    }
                    c.phase = Phase::Exchange;
                    // 64 bytes always fit an empty socket buffer.
                    c.wire.write(&msg)?;
                }
                if c.phase == Phase::Closing && !c.fin_sent && c.wire.flush()? {
                    c.wire.sock.shutdown_write()?;
                    c.fin_sent = true;
                }
                loop {
                    match c.wire.read(&mut buf) {
                        Ok(0) => return Ok(c.phase == Phase::Closing),
                        Ok(n) if c.phase == Phase::Exchange => {
                            c.got += n;
                            if c.got == msg.len() {
                                c.phase = Phase::Closing;
                                if c.wire.close_notify()? {
                                    c.wire.sock.shutdown_write()?;
                                    c.fin_sent = true;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            })();
            match result {
                Ok(false) => continue,
                Ok(true) => done += 1,
                Err(_) => errors += 1,
            }
            cs[i] = fresh(&poll, i);
        }
        if clock.tick(Instant::now(), done) {
            let mut m = clock.end.take().expect("measured");
            m.errors = errors;
            return m;
        }
    }
}

/// Open `n` connections and bring each up (TLS: handshake over), a few
/// hundred at a time so the listen backlog never overflows. Returns them open.
pub(crate) fn open_idle(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    n: usize,
    keep: &mut Vec<Wire>,
) {
    const BATCH: usize = 256;
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut opened = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened < n {
        let batch = BATCH.min(n - opened);
        let mut cs: Vec<(Wire, bool, bool)> = (0..batch)
            .map(|i| (open(&poll, target, tls, i), false, false))
            .collect();
        let mut up = 0;
        while up < batch {
            assert!(
                Instant::now() < deadline,
                "idle connections did not come up"
            );
            poll_events(&mut poll, &mut events);
            for ev in events.iter() {
                let (c, connected, is_up) = &mut cs[ev.token().0];
                if !*is_up && established(c, connected) {
                    *is_up = true;
                    up += 1;
                }
            }
        }
        // Whatever follows the handshake (TLS session tickets) is read now.
        std::thread::sleep(Duration::from_millis(5));
        let mut scratch = [0u8; 4096];
        for (mut c, _, _) in cs {
            while c.read(&mut scratch).is_ok_and(|n| n > 0) {}
            poll.registry().deregister(&mut c.sock).expect("deregister");
            keep.push(c);
        }
        opened += batch;
    }
}
