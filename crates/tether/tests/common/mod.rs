//! Shared test fixtures: a user that records every callback and runs a hook,
//! and helpers to run a loop against a peer written with plain std::net.
#![allow(dead_code, unreachable_pub)]

pub mod pki;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, DiscardMethod, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId,
    SocketUser,
};

/// One callback, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum Ev {
    Bound(SockAddr),
    Incoming(Option<SockAddr>),
    Connected,
    Accepted,
    Sent,
    Received(Vec<u8>),
    PeerShutdown,
    Closed(Done),
    /// `on_received_from`: one datagram and its source.
    ReceivedFrom(Vec<u8>, SocketAddr),
    /// `on_truncated`: the first bytes of a datagram, its whole length, its source.
    Truncated {
        data: Vec<u8>,
        len: usize,
        from: SocketAddr,
    },
    /// `on_alpn`: the protocol the handshake selected (`Rec` accepts it).
    Alpn(Vec<u8>),
    /// `on_tls_ready`: what the handshake settled.
    TlsReady(tether::TlsInfo),
    /// On a framed listener, right after `Incoming`: the client's connect
    /// data (`PeerInfo::hello`).
    Hello(Option<Vec<u8>>),
    /// On a framed socket, right after `PeerShutdown`: the peer's disconnect
    /// data (recorded only when there is some, so plain sockets never show it).
    Farewell(Option<Vec<u8>>),
}

/// What `on_closed` said, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    pub reason: Reason,
    pub unsent: u64,
    pub unread: u64,
    pub error: Option<String>,
    pub os_error: Option<i32>,
    pub discard: Option<DiscardMethod>,
}

impl From<&Closed> for Done {
    fn from(closed: &Closed) -> Done {
        Done {
            reason: closed.reason,
            unsent: closed.unsent,
            unread: closed.unread,
            error: closed.error.as_ref().map(|e| e.to_string()),
            os_error: closed.error.as_ref().and_then(|e| e.raw_os_error()),
            discard: closed.discard,
        }
    }
}

/// Everything every socket of a loop reported, in order.
#[derive(Debug, Default)]
pub struct Log {
    pub events: Vec<(SocketId, Ev)>,
    /// Set by `run_for` when its deadline stopped the loop.
    pub timed_out: bool,
    /// `Closed::farewell` of every socket that closed, in order (kept beside
    /// `Done` so that code building `Done` literally keeps compiling).
    pub farewells: Vec<(SocketId, Option<Vec<u8>>)>,
}

impl Log {
    pub fn of(&self, s: SocketId) -> Vec<Ev> {
        self.events
            .iter()
            .filter(|(id, _)| *id == s)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The close record of `s`; panics if it never closed.
    pub fn closed(&self, s: SocketId) -> Done {
        self.events
            .iter()
            .find_map(|(id, e)| match e {
                Ev::Closed(d) if *id == s => Some(d.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{s} never closed: {:?}", self.of(s)))
    }

    /// All bytes `s` received, concatenated.
    pub fn received(&self, s: SocketId) -> Vec<u8> {
        self.of(s)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Received(d) => Some(d),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Sockets that were accepted, in order.
    pub fn accepted(&self) -> Vec<SocketId> {
        self.events
            .iter()
            .filter(|(_, e)| *e == Ev::Accepted)
            .map(|(s, _)| *s)
            .collect()
    }
}

pub type Hook = Box<dyn FnMut(&mut Cx<Log>, SocketId, &Ev)>;
pub type Factory = Box<dyn FnMut() -> Option<Rec>>;

/// A user that records each callback into the loop's `Log`, then calls its hook.
pub struct Rec {
    hook: Hook,
    accept: Option<Factory>,
}

impl Rec {
    /// Records only.
    pub fn quiet() -> Rec {
        Rec::with(|_, _, _| {})
    }

    /// Records, then runs `hook` on every callback.
    pub fn with(hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static) -> Rec {
        Rec {
            hook: Box::new(hook),
            accept: None,
        }
    }

    /// This user, whose hook then also runs `extra`.
    pub fn also(mut self, mut extra: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static) -> Rec {
        let mut hook = std::mem::replace(&mut self.hook, Box::new(|_, _, _| {}));
        self.hook = Box::new(move |cx, s, ev| {
            hook(cx, s, ev);
            extra(cx, s, ev);
        });
        self
    }

    /// A listener that admits each peer with the user `make` returns (None: deny).
    pub fn listener(make: impl FnMut() -> Option<Rec> + 'static) -> Rec {
        Rec {
            hook: Box::new(|_, _, _| {}),
            accept: Some(Box::new(make)),
        }
    }

    fn note(&mut self, cx: &mut Cx<Log>, s: SocketId, ev: Ev) {
        cx.shared_mut().events.push((s, ev.clone()));
        (self.hook)(cx, s, &ev);
    }
}

impl SocketUser<Log> for Rec {
    fn on_connected(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.note(cx, s, Ev::Connected)
    }
    fn on_bound(&mut self, cx: &mut Cx<Log>, s: SocketId, local: &SockAddr) {
        self.note(cx, s, Ev::Bound(local.clone()))
    }
    fn on_incoming(&mut self, cx: &mut Cx<Log>, l: SocketId, peer: &PeerInfo) -> Admission<Log> {
        self.note(cx, l, Ev::Incoming(peer.peer.clone()));
        if peer.hello.is_some() {
            self.note(cx, l, Ev::Hello(peer.hello.clone()));
        }
        match self.accept.as_mut().and_then(|make| make()) {
            Some(user) => Admission::Accept(Box::new(user)),
            None => Admission::Deny,
        }
    }
    fn on_accepted(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.note(cx, s, Ev::Accepted)
    }
    fn on_sent(&mut self, cx: &mut Cx<Log>, s: SocketId) {
        self.note(cx, s, Ev::Sent)
    }
    fn on_received(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8]) {
        self.note(cx, s, Ev::Received(data.to_vec()))
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Log>, s: SocketId, farewell: Option<&[u8]>) {
        self.note(cx, s, Ev::PeerShutdown);
        if let Some(data) = farewell {
            self.note(cx, s, Ev::Farewell(Some(data.to_vec())));
        }
    }
    fn on_received_from(&mut self, cx: &mut Cx<Log>, s: SocketId, data: &[u8], from: SocketAddr) {
        self.note(cx, s, Ev::ReceivedFrom(data.to_vec(), from))
    }
    fn on_truncated(
        &mut self,
        cx: &mut Cx<Log>,
        s: SocketId,
        data: &[u8],
        len: usize,
        from: SocketAddr,
    ) {
        let data = data.to_vec();
        self.note(cx, s, Ev::Truncated { data, len, from })
    }
    fn on_alpn(&mut self, cx: &mut Cx<Log>, s: SocketId, protocol: &[u8]) -> bool {
        self.note(cx, s, Ev::Alpn(protocol.to_vec()));
        true
    }
    fn on_tls_ready(&mut self, cx: &mut Cx<Log>, s: SocketId, info: &tether::TlsInfo) {
        self.note(cx, s, Ev::TlsReady(info.clone()))
    }
    fn on_closed(&mut self, cx: &mut Cx<Log>, s: SocketId, closed: &Closed) {
        let done = Done::from(closed);
        cx.shared_mut().farewells.push((s, closed.farewell.clone()));
        self.note(cx, s, Ev::Closed(done))
    }
}

/// A listener whose connections echo 64 bytes at a time until the peer's FIN,
/// then answer it with their own.
pub fn echo_listener() -> Rec {
    Rec::listener(|| {
        Some(Rec::with(|cx, s, ev| match ev {
            Ev::Accepted => cx.recv(s, 64, RecvMode::Partial).unwrap(),
            Ev::Received(d) => {
                cx.send(s, d).unwrap();
                cx.recv(s, 64, RecvMode::Partial).unwrap();
            }
            Ev::PeerShutdown => cx.shutdown(s).unwrap(),
            _ => {}
        }))
    })
}

/// A new loop with an empty log.
pub fn mux() -> IoMux<Log> {
    IoMux::new(Log::default()).expect("event loop")
}

/// Run the loop until something terminates it, or `limit` passes (then
/// `Log::timed_out` is set, which tests should treat as a failure).
pub fn run_for(mux: &mut IoMux<Log>, limit: Duration) {
    let guard = mux.set_timer(limit, |cx| {
        cx.shared_mut().timed_out = true;
        cx.terminate();
    });
    mux.run().expect("loop runs");
    mux.cancel_timer(guard);
}

/// The TCP address a listener got.
pub fn inet(mux: &IoMux<Log>, s: SocketId) -> SocketAddr {
    match mux.local_addr(s) {
        Some(SockAddr::Inet(a)) => a,
        other => panic!("{s} has no inet address: {other:?}"),
    }
}

/// A fresh Unix socket path in its own temporary directory (kept alive by the
/// returned guard).
pub fn unix_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sock");
    (dir, path)
}

/// The two stream transports every lifecycle test runs over.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    Tcp,
    Local,
}

/// A listening address for `t` plus whatever keeps it valid.
pub struct Spot {
    pub addr: String,
    _dir: Option<tempfile::TempDir>,
}

impl Transport {
    pub fn spot(self) -> Spot {
        match self {
            Transport::Tcp => Spot {
                addr: "127.0.0.1:0".into(),
                _dir: None,
            },
            Transport::Local => {
                let (dir, path) = unix_path();
                Spot {
                    addr: format!("unix:{}", path.display()),
                    _dir: Some(dir),
                }
            }
        }
    }
}

/// A blocking std peer of either transport, for checking the wire.
pub enum Peer {
    Tcp(std::net::TcpStream),
    Local(std::os::unix::net::UnixStream),
}

impl Peer {
    /// Connect to where listener `l` of `mux` listens.
    pub fn connect(mux: &IoMux<Log>, l: SocketId) -> Peer {
        match mux.local_addr(l).expect("listener address") {
            SockAddr::Inet(a) => Peer::Tcp(std::net::TcpStream::connect(a).expect("connect")),
            SockAddr::Unix(p) => {
                Peer::Local(std::os::unix::net::UnixStream::connect(p).expect("connect"))
            }
            other => panic!("cannot reach {other}"),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) {
        match self {
            Peer::Tcp(s) => s.set_write_timeout(t).unwrap(),
            Peer::Local(s) => s.set_write_timeout(t).unwrap(),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) {
        match self {
            Peer::Tcp(s) => s.set_read_timeout(t).unwrap(),
            Peer::Local(s) => s.set_read_timeout(t).unwrap(),
        }
    }

    pub fn shutdown_write(&self) {
        match self {
            Peer::Tcp(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
            Peer::Local(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
        }
    }
}

impl std::io::Read for Peer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Peer::Tcp(s) => s.read(buf),
            Peer::Local(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Peer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Peer::Tcp(s) => s.write(buf),
            Peer::Local(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ----- appended for failures.rs, misuse.rs and mux.rs -----

impl Log {
    /// True once `s` had its `on_closed`.
    pub fn is_closed(&self, s: SocketId) -> bool {
        self.events
            .iter()
            .any(|(id, e)| *id == s && matches!(e, Ev::Closed(_)))
    }

    /// How many times `s` had its `on_closed` (exactly once is the rule).
    pub fn close_count(&self, s: SocketId) -> usize {
        self.events
            .iter()
            .filter(|(id, e)| *id == s && matches!(e, Ev::Closed(_)))
            .count()
    }
}

/// Run the loop until `done` holds for the log (checked every 2 ms), then
/// terminate it; past `limit`, stop with `Log::timed_out` set, as `run_for` does.
pub fn run_until(mux: &mut IoMux<Log>, limit: Duration, done: impl Fn(&Log) -> bool + 'static) {
    let tick = mux.set_interval(Duration::from_millis(2), move |cx| {
        if done(cx.shared()) {
            cx.terminate();
        }
    });
    run_for(mux, limit);
    mux.cancel_timer(tick);
}

// ----- appended for timeouts.rs and dead_peers.rs -----

/// Network namespaces and veth pairs for tests that cut a live link.
pub mod netns;

// ----- appended for framed.rs -----

impl Log {
    /// `Closed::farewell` of `s`; panics if it never closed.
    pub fn farewell(&self, s: SocketId) -> Option<Vec<u8>> {
        self.farewells
            .iter()
            .find(|(id, _)| *id == s)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("{s} never closed: {:?}", self.of(s)))
    }
}

// ----- appended for the tests on a TestClock -----

/// How long a script waits (real time) for the loop or a peer before the test
/// counts as hung. Never slept: only a bound on waiting for an event.
pub const SCRIPT_WAIT: Duration = Duration::from_secs(10);

/// A new loop with an empty log, on `clock`.
pub fn mux_on(clock: &tether::TestClock) -> IoMux<Log> {
    IoMux::with_clock(Log::default(), clock).expect("event loop")
}

/// A closure a script runs on the loop.
type Look = Box<dyn FnOnce(&mut Cx<Log>) + Send>;

/// What a script running beside a loop on a [`tether::TestClock`] uses: it
/// moves the clock, looks at the loop, and waits for what the loop's
/// callbacks tell it. Dropping it (also by a panic) stops the loop.
///
/// Looks reach the loop through a doorbell, a UDP socket of the loop's own
/// (it logs nothing): a datagram is readiness the loop acts on whenever it
/// polls, where a posted closure's wake-up can be taken by the poll that
/// takes in readiness before due deadlines are judged, and then waits for
/// the next event (forever, on a test clock).
pub struct Script {
    pub clock: tether::TestClock,
    handle: tether::MuxHandle<Log>,
    looks: std::sync::Arc<std::sync::Mutex<Vec<Look>>>,
    bell: std::net::UdpSocket,
    door: SocketAddr,
}

/// The loop's end of the doorbell: each ring schedules the looks waiting
/// then as a timer due at once, which fires after every deadline already due
/// at the present time, in the same pass.
struct Doorbell(std::sync::Arc<std::sync::Mutex<Vec<Look>>>);

impl SocketUser<Log> for Doorbell {
    fn on_bound(&mut self, cx: &mut Cx<Log>, s: SocketId, _: &SockAddr) {
        cx.recv(s, 16, RecvMode::Partial).expect("doorbell recv");
    }
    fn on_received_from(&mut self, cx: &mut Cx<Log>, s: SocketId, _: &[u8], _: SocketAddr) {
        let looks = std::mem::take(&mut *self.0.lock().unwrap());
        for look in looks {
            cx.set_timer(Duration::ZERO, look);
        }
        cx.recv(s, 16, RecvMode::Partial).expect("doorbell recv");
    }
    fn on_closed(&mut self, _: &mut Cx<Log>, _: SocketId, _: &Closed) {}
}

impl Script {
    /// Move the clock by `by`, and return once the loop has judged its
    /// deadlines at the new time: what came due has fired, its callbacks ran.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.settle();
    }

    /// Return once the loop has judged its deadlines at the present time.
    pub fn settle(&self) {
        self.look(|_| ());
    }

    /// Run `f` on the loop once it has judged its deadlines at the clock's
    /// present time (after every deadline due by then), and return its answer.
    pub fn look<T: Send + 'static>(&self, f: impl FnOnce(&mut Cx<Log>) -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        self.looks.lock().unwrap().push(Box::new(move |cx| {
            let _ = tx.send(f(cx));
        }));
        self.bell.send_to(b"look", self.door).expect("ring");
        rx.recv_timeout(SCRIPT_WAIT)
            .expect("the loop answers a look")
    }

    /// The first event on `rx` that `want` picks, skipping the others.
    pub fn next<T: std::fmt::Debug>(
        &self,
        rx: &std::sync::mpsc::Receiver<T>,
        want: impl Fn(&T) -> bool,
    ) -> T {
        let mut skipped = Vec::new();
        loop {
            match rx.recv_timeout(SCRIPT_WAIT) {
                Ok(ev) if want(&ev) => return ev,
                Ok(ev) => skipped.push(ev),
                Err(e) => panic!("no awaited event ({e}); came: {skipped:?}"),
            }
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.handle.terminate();
    }
}

/// Run `mux` (on `clock`) on this thread while `script` runs in another (the
/// loop gets one more socket, the doorbell, that logs nothing); the loop
/// stops when the script returns (every socket still open then is closed
/// with `Reason::Stopped`). A panic of the script is this test's panic.
pub fn run_script<T: Send + 'static>(
    mux: &mut IoMux<Log>,
    clock: &tether::TestClock,
    script: impl FnOnce(&Script) -> T + Send + 'static,
) -> T {
    let looks = std::sync::Arc::default();
    let door = mux.udp(Doorbell(std::sync::Arc::clone(&looks)));
    mux.bind(door, "127.0.0.1:0").expect("doorbell");
    let sc = Script {
        clock: clock.clone(),
        handle: mux.handle(),
        looks,
        bell: std::net::UdpSocket::bind("127.0.0.1:0").expect("bell"),
        door: inet(mux, door),
    };
    let thread = std::thread::spawn(move || script(&sc));
    mux.run().expect("loop runs");
    match thread.join() {
        Ok(t) => t,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A user that records each callback, runs `hook`, then tells the callback
/// on `tx` (so what the hook did is done when the script hears of it).
pub fn told(
    tx: &std::sync::mpsc::Sender<(SocketId, Ev)>,
    mut hook: impl FnMut(&mut Cx<Log>, SocketId, &Ev) + 'static,
) -> Rec {
    let tx = tx.clone();
    Rec::with(move |cx, s, ev| {
        hook(cx, s, ev);
        let _ = tx.send((s, ev.clone()));
    })
}

// ----- appended for the DTLS tests -----

/// `user`, and on `on_tls_ready` the socket's SRTP keys pushed to `keys`.
pub fn keeping_keys(
    user: Rec,
    keys: &std::rc::Rc<std::cell::RefCell<Vec<tether::SrtpKeys>>>,
) -> Rec {
    let keys = keys.clone();
    user.also(move |cx, s, ev| {
        if let Ev::TlsReady(_) = ev {
            keys.borrow_mut().extend(cx.srtp_keying_material(s));
        }
    })
}
