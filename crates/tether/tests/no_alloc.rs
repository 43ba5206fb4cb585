//! The hot path does not allocate: once a connection is warm, sending and
//! receiving a message costs no heap allocation on the loop's thread.
//!
//! A counting global allocator counts allocations made by this thread only
//! (std's own threads, if any, do not disturb the count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use tether::{
    Admission, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId, SocketUser,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// thread-local counter is const-initialised, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: `ptr` came from the system allocator with `layout`; the
        // caller's contract for `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(|n| n.get())
}

const WARMUP: u32 = 1_000;
const MEASURED: u32 = 20_000;
const SIZE: usize = 64;

#[derive(Default)]
struct Counts {
    at_warm: Option<u64>,
    at_end: Option<u64>,
    round_trips: u32,
}

struct Server;
impl SocketUser<Counts> for Server {
    fn on_incoming(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &PeerInfo) -> Admission<Counts> {
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &Closed) {}
}

struct Echo;
impl SocketUser<Counts> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Counts>, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Counts>, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &Closed) {}
}

struct Client {
    msg: [u8; SIZE],
}
impl SocketUser<Counts> for Client {
    fn on_connected(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
        cx.send(s, &self.msg).unwrap();
        cx.recv(s, SIZE, RecvMode::Exact).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Counts>, s: SocketId, data: &[u8]) {
        assert_eq!(data, self.msg);
        let counts = cx.shared_mut();
        counts.round_trips += 1;
        if counts.round_trips == WARMUP {
            counts.at_warm = Some(allocations());
        }
        if counts.round_trips == WARMUP + MEASURED {
            counts.at_end = Some(allocations());
            cx.shutdown(s).unwrap();
            return;
        }
        self.msg[0] = self.msg[0].wrapping_add(1);
        cx.send(s, &self.msg).unwrap();
        cx.recv(s, SIZE, RecvMode::Exact).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Counts>, _: SocketId, closed: &Closed) {
        assert!(closed.reason.is_graceful(), "{closed:?}");
        cx.terminate();
    }
}

fn run(addr: &str) -> Counts {
    let mut mux = IoMux::new(Counts::default()).unwrap();
    let l = mux.listen_on(addr, Server);
    let target = mux.local_addr(l).unwrap().to_string();
    mux.connect_to(&target, Client { msg: [7; SIZE] });
    mux.run().unwrap();
    std::mem::take(mux.shared_mut())
}

#[test]
fn round_trips_do_not_allocate() {
    let dir = tempfile::tempdir().unwrap();
    let local = format!("unix:{}", dir.path().join("s").display());
    for addr in ["127.0.0.1:0", local.as_str()] {
        let counts = run(addr);
        assert_eq!(counts.round_trips, WARMUP + MEASURED, "{addr}");
        let (warm, end) = (counts.at_warm.unwrap(), counts.at_end.unwrap());
        assert_eq!(
            end - warm,
            0,
            "{addr}: {} allocations over {MEASURED} round trips",
            end - warm
        );
    }
}

// ----- UDP: a connected client and an unconnected echo server -----

/// Echoes each datagram to where it came from.
struct UdpEcho;
impl SocketUser<Counts> for UdpEcho {
    fn on_bound(&mut self, cx: &mut Cx<Counts>, s: SocketId, _: &SockAddr) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received_from(
        &mut self,
        cx: &mut Cx<Counts>,
        s: SocketId,
        data: &[u8],
        from: SocketAddr,
    ) {
        cx.send_to(s, data, from).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &Closed) {}
}

/// Sends a datagram, waits for its echo, and again; stops the loop at the end.
struct UdpClient {
    msg: [u8; SIZE],
}
impl SocketUser<Counts> for UdpClient {
    fn on_connected(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
        cx.send(s, &self.msg).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Counts>, s: SocketId, data: &[u8]) {
        assert_eq!(data, self.msg);
        let counts = cx.shared_mut();
        counts.round_trips += 1;
        if counts.round_trips == WARMUP {
            counts.at_warm = Some(allocations());
        }
        if counts.round_trips == WARMUP + MEASURED {
            counts.at_end = Some(allocations());
            cx.terminate();
            return;
        }
        self.msg[0] = self.msg[0].wrapping_add(1);
        cx.send(s, &self.msg).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, closed: &Closed) {
        assert_eq!(closed.reason, Reason::Stopped, "{closed:?}");
    }
}

#[test]
fn udp_round_trips_do_not_allocate() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let mut mux = IoMux::new(Counts::default()).unwrap();
        let server = mux.udp(UdpEcho);
        mux.bind(server, bind).unwrap();
        let target = mux.local_addr(server).unwrap().to_string();
        let client = mux.udp(UdpClient { msg: [7; SIZE] });
        mux.bind(client, bind).unwrap();
        mux.connect(client, &target).unwrap();
        // A lost datagram would stall the ping-pong: fail instead of hanging.
        mux.set_timer(Duration::from_secs(60), |cx| cx.terminate());
        mux.run().unwrap();
        let counts = std::mem::take(mux.shared_mut());
        assert_eq!(counts.round_trips, WARMUP + MEASURED, "{bind}");
        let (warm, end) = (counts.at_warm.unwrap(), counts.at_end.unwrap());
        assert_eq!(
            end - warm,
            0,
            "{bind}: {} allocations over {MEASURED} round trips",
            end - warm
        );
    }
}

// ----- framed TCP: a message that arrived whole is delivered from the read buffer -----

/// A framed listener that admits everyone with the echo user.
struct FramedServer;
impl SocketUser<Counts> for FramedServer {
    fn on_incoming(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &PeerInfo) -> Admission<Counts> {
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx<Counts>, _: SocketId, _: &Closed) {}
}

/// `Client` over framing: the same exchange, then its FAREWELL, keeping a
/// recv pending for the server's (a framed peer's end is read by a recv).
struct FramedClient(Client);
impl SocketUser<Counts> for FramedClient {
    fn on_connected(&mut self, cx: &mut Cx<Counts>, s: SocketId) {
        self.0.on_connected(cx, s);
    }
    fn on_received(&mut self, cx: &mut Cx<Counts>, s: SocketId, data: &[u8]) {
        self.0.on_received(cx, s, data);
        if cx.shared().at_end.is_some() {
            cx.recv(s, SIZE, RecvMode::Partial).unwrap();
        }
    }
    fn on_closed(&mut self, cx: &mut Cx<Counts>, s: SocketId, closed: &Closed) {
        self.0.on_closed(cx, s, closed);
    }
}

/// A framed client and server in one loop, exchanging whole 64-byte
/// messages as `Client` and `Echo` do: each `send` one DATA frame, each
/// `on_received` one message straight from the read buffer, no copy and no
/// allocation.
fn run_framed(addr: &str) -> Counts {
    let mut mux = IoMux::new(Counts::default()).unwrap();
    let l = mux.stream(FramedServer);
    mux.set_framing(l, &[]).unwrap();
    mux.bind(l, addr).unwrap();
    mux.listen(l).unwrap();
    let target = mux.local_addr(l).unwrap().to_string();
    let c = mux.stream(FramedClient(Client { msg: [7; SIZE] }));
    mux.set_framing(c, b"no allocation").unwrap();
    mux.connect(c, &target).unwrap();
    // A stalled exchange fails the counts below instead of hanging.
    mux.set_timer(Duration::from_secs(60), |cx| cx.terminate());
    mux.run().unwrap();
    std::mem::take(mux.shared_mut())
}

#[test]
fn framed_round_trips_do_not_allocate() {
    let counts = run_framed("127.0.0.1:0");
    assert_eq!(counts.round_trips, WARMUP + MEASURED);
    let (warm, end) = (counts.at_warm.unwrap(), counts.at_end.unwrap());
    assert_eq!(
        end - warm,
        0,
        "framed TCP: {} allocations over {MEASURED} round trips",
        end - warm
    );
}
