//! A hand-written io_uring loop: the io_uring floor, as `server_mio` is
//! epoll's. Plain TCP only, one thread, as little as a correct server can
//! do on a ring.
//!
//! Per connection it keeps a direct descriptor, one multishot receive, at
//! most one send in flight (bytes that arrive meanwhile wait behind it, a
//! copy), and two flags. One `io_uring_enter` a turn submits the turn's
//! requests and waits; the buffers the turn's receives filled go back to the
//! kernel before it.
//!
//! What each choice bought, in pingpong 64 B at 256 and 1,024 connections
//! (server CPU per round trip over mio's, measured in the same run; the
//! 2-core machine was shared, so single runs moved by ±5 %, some by 10 %):
//!
//! - SINGLE_ISSUER + DEFER_TASKRUN, multishot accept, multishot receive from
//!   a provided-buffer ring, sends submitted with the wait, a plain
//!   `submit_and_wait(1)`: 0.86–0.89×. This is the floor of "one enter a
//!   turn"; tether-uring measured 0.87–0.89× in the same runs.
//! - Direct descriptors from the multishot accept (no descriptor table, no
//!   file lookup per request): within the noise in pingpong; churn's CPU per
//!   connection about 3 % lower at 1 in parallel (49 against 51–54 µs).
//!   Kept.
//! - Receive bundles (RECVSEND_BUNDLE): within the noise in pingpong; stream
//!   up (a sink) at 4 connections 0.17–0.20 s/GB against 0.44–0.47
//!   without. Kept.
//! - Echoing straight from the provided buffer (no copy, the buffer held
//!   until the send completes): within the noise (a 64-byte copy is nothing
//!   beside the kernel's TCP work). Dropped: the copy is simpler.
//! - A registered ring descriptor (IORING_REGISTER_RING_FDS) and NO_SQARRAY:
//!   within the noise. Dropped.
//! - 16 KiB provided buffers instead of 4 KiB: no better for the sink.
//!   Dropped.
//! - A batched wait (the one choice that moved the figure): while at least
//!   8 connections are open and the last turn took at least 16
//!   completions, a wait asks for a quarter of the connections (at most
//!   64) beyond the sends it submits, with a 50 µs minimum wait
//!   (IORING_ENTER_EXT_ARG min_wait_usec, kernel 6.12): after 50 µs one
//!   completion will do. 0.78–0.83×, and 1.07–1.15× mio's round trips per
//!   second (the client, near 100 % busy, sets the pace). Fewer, fuller
//!   turns: at 256 connections about 35 round trips per `io_uring_enter`
//!   (counted at the tracepoint) where tether-uring makes about 7; the loop
//!   rarely sleeps either way (the server thread is over 90 % busy), so
//!   what it saves is each turn's fixed cost, not wake-ups. The price is
//!   latency: up to 50 µs more per turn. Asking for a fixed 64 whatever
//!   the connections cost 1 and 16 connections a third of their rate;
//!   batching when the last turn was small (not busy) cost churn at 64 in
//!   parallel 29–36 µs of server CPU per connection against 23–25.
//!
//! It is a floor for small messages, not for bulk: its sink (bundles of
//! 4 KiB buffers, 16 MiB of them) costs more per GB than tether-uring's
//! (64 KiB buffers consumed incrementally, 4 MiB), which BENCHMARKS.md's
//! stream table shows.
//!
//! An epoll loop cannot wait that way (`epoll_wait` returns as soon as
//! anything is ready): it is the ring's own lever.
//!
//! This is the one module of the crate besides `sys` with `unsafe`: pushing
//! a request is unsafe (the kernel will use the memory it names), and the
//! provided buffers are memory the kernel writes while the loop runs. Every
//! address handed to the kernel stays valid until the completion that ends
//! its request, and the loop ends only once every request has ended.
#![allow(unsafe_code)]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use io_uring::squeue::{self, SubmissionQueue};
use io_uring::types::{BufRingEntry, CancelBuilder, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, types, CompletionQueue, IoUring, Submitter};

use crate::common::{std_listener, Net, Service, Spec, Started, Stats, CHUNK};

/// Provided buffers (a power of two) and the size of each.
const BUFS: u16 = 4096;
const BUF_SIZE: usize = 4096;
/// The provided-buffer group every receive selects from.
const BGID: u16 = 0;
/// Direct descriptors the ring keeps for accepted sockets (at most: the table
/// counts against the descriptor limit).
const FILES: u32 = 32 * 1024;

/// What a completion is for: the low byte of its user_data; the rest is the
/// connection's key, the index of its direct descriptor.
const RECV: u64 = 1;
const SEND: u64 = 2;
const ACCEPT: u64 = 3;
const CLOSE: u64 = 4;
const STOP: u64 = 5;
const CANCEL: u64 = 6;

fn ud(key: u32, op: u64) -> u64 {
    (u64::from(key) << 8) | op
}

/// A wait takes up to this many completions at once (see the summary)...
const BATCH: usize = 64;
/// ...waiting at most this long for them; then one will do.
const BATCH_USEC: u32 = 50;
/// ...when the last turn took at least this many: the loop is busy.
const BUSY: usize = 16;

fn ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(16 * 1024)
        .build(4096)
}

/// Whether the kernel lets this server set up its ring (with every feature
/// it uses). Asked once; when it refuses, the reason is printed then and the
/// column stays empty.
pub(crate) fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        match ring().and_then(|r| {
            if !r.params().is_feature_recvsend_bundle() {
                Err(io::Error::other("no RECVSEND_BUNDLE (kernel 6.10)"))
            } else if !r.params().is_feature_min_timeout() {
                Err(io::Error::other("no MIN_TIMEOUT (kernel 6.12)"))
            } else {
                Ok(())
            }
        }) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("tether-bench: uring skipped: its ring could not start: {e}");
                false
            }
        }
    })
}

pub(crate) fn start(spec: Spec, stats: Arc<Stats>) -> Started {
    assert!(
        spec.net == Net::Tcp && spec.tls.is_none(),
        "the uring server is plain TCP only"
    );
    let (sock, target) = std_listener(Net::Tcp).expect("listener");
    // Stopping: the end of a socket pair the ring polls.
    let (stop_tx, stop_rx) = std::os::unix::net::UnixStream::pair().expect("pair");
    let thread = std::thread::Builder::new()
        .name("uring-server".into())
        .spawn(move || {
            let mut bufs = BufRing::new().expect("provided buffers");
            let mut uring = ring().expect("ring (probed before)");
            let done = run(
                &mut uring,
                &mut bufs,
                sock.as_raw_fd(),
                stop_rx.as_raw_fd(),
                spec.service,
                &stats,
            );
            drop(uring);
            if !done {
                // The kernel may still write the buffers: never free them.
                std::mem::forget(bufs);
            }
            drop(sock);
            drop(stop_rx);
        })
        .expect("spawn");
    let stopper = move || drop(stop_tx);
    (target, Box::new(stopper), thread)
}

/// The provided-buffer ring: its entries and its buffers, raw allocations
/// the kernel reads and writes while the loop runs.
struct BufRing {
    entries: *mut BufRingEntry,
    data: *mut u8,
    tail: u16,
    /// The buffer each ring entry holds, and the entry each buffer is in: a
    /// bundle names its first buffer; the others are the entries after it.
    bid_at: Vec<u16>,
    entry_of: Vec<u16>,
}

impl BufRing {
    fn entries_layout() -> Layout {
        Layout::from_size_align(
            usize::from(BUFS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    fn data_layout() -> Layout {
        Layout::from_size_align(usize::from(BUFS) * BUF_SIZE, 4096).expect("a valid layout")
    }

    fn new() -> io::Result<BufRing> {
        // SAFETY: both layouts have a non-zero size; a null result is checked.
        let entries = unsafe { alloc_zeroed(Self::entries_layout()) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc_zeroed(Self::data_layout()) };
        if entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut b = BufRing {
            entries,
            data,
            tail: 0,
            bid_at: vec![0; usize::from(BUFS)],
            entry_of: vec![0; usize::from(BUFS)],
        };
        for bid in 0..BUFS {
            b.push(bid);
        }
        Ok(b)
    }

    /// Give buffer `bid` (back) to the kernel; seen once published.
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUFS - 1));
        // SAFETY: `slot` < BUFS, inside the allocation; the kernel reads only
        // entries up to the published tail, and this one is past it.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(self.addr(bid) as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.bid_at[slot] = bid;
        self.entry_of[usize::from(bid)] = slot as u16;
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail overlays the first entry's reserved field, inside
        // the allocation and aligned for a u16; the kernel only reads it.
        let tail = unsafe { BufRingEntry::tail(self.entries) }.cast_mut();
        // SAFETY: valid and aligned (above); an atomic store, as the
        // kernel's reads of it are atomic.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }

    fn addr(&self, bid: u16) -> *mut u8 {
        self.data
            .wrapping_add(usize::from(bid.min(BUFS - 1)) * BUF_SIZE)
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed over.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: inside the data allocation (`addr` clamps the id, `min`
        // the length); the kernel wrote these bytes before the completion
        // and writes the buffer again only once it is pushed back, which
        // the caller does after using the slice.
        unsafe { std::slice::from_raw_parts(self.addr(bid), len.min(BUF_SIZE)) }
    }

    /// The buffers a receive filled: `first` and the entries after it.
    fn filled(&self, first: u16, used: usize, out: &mut Vec<u16>) {
        let entry = usize::from(self.entry_of[usize::from(first.min(BUFS - 1))]);
        for k in 0..used.min(usize::from(BUFS)) {
            out.push(self.bid_at[(entry + k) & usize::from(BUFS - 1)]);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; dropped only once
        // the ring is gone with no request left (otherwise forgotten).
        unsafe {
            dealloc(self.entries.cast(), Self::entries_layout());
            dealloc(self.data, Self::data_layout());
        }
    }
}

/// What a connection's send in flight sends from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// `Conn::inflight[done..]`.
    Copy,
    /// `CHUNK[done..]` (a source).
    Chunk,
}

#[derive(Debug)]
struct Conn {
    recv: bool,
    /// The send in flight, what it sends from, how far it got.
    send: Option<Src>,
    done: usize,
    inflight: Vec<u8>,
    /// What came while a send was in flight: sent after it.
    out: Vec<u8>,
    /// The peer ended: what it sent before goes back, then the close.
    eof: bool,
    /// Failed, or the loop stops: no new request; closed once none is left.
    dead: bool,
}

struct Loop<'a> {
    sub: Submitter<'a>,
    sq: SubmissionQueue<'a>,
    cq: CompletionQueue<'a>,
    bufs: &'a mut BufRing,
    service: Service,
    stats: &'a Stats,
    listener: RawFd,
    conns: Vec<Option<Conn>>,
    live: usize,
    accept_armed: bool,
    /// Sends submitted this turn.
    sends: usize,
    /// Completions the last turn took.
    last: usize,
    /// Buffers to give back at the turn's end.
    give: Vec<u16>,
    bids: Vec<u16>,
}

/// Serve until stopped; false if requests were left in the kernel.
fn run(
    uring: &mut IoUring,
    bufs: &mut BufRing,
    listener: RawFd,
    stop: RawFd,
    service: Service,
    stats: &Stats,
) -> bool {
    let (sub, sq, cq) = uring.split();
    // SAFETY: the entries are page-aligned, BUFS long, and outlive the ring
    // (`start` drops the ring first, or forgets the buffers).
    unsafe { sub.register_buf_ring_with_flags(bufs.entries as u64, BUFS, BGID, 0) }
        .expect("register the provided buffers");
    bufs.publish();
    let mut n = FILES;
    while let Err(e) = sub.register_files_sparse(n) {
        assert!(
            e.raw_os_error() == Some(libc::EMFILE) && n > 64,
            "register direct descriptors: {e}"
        );
        n /= 2;
    }
    let mut l = Loop {
        sub,
        sq,
        cq,
        bufs,
        service,
        stats,
        listener,
        conns: Vec::new(),
        live: 0,
        accept_armed: false,
        sends: 0,
        last: 0,
        give: Vec::new(),
        bids: Vec::new(),
    };
    l.arm_accept();
    l.push(
        opcode::PollAdd::new(types::Fd(stop), libc::POLLIN as u32)
            .build()
            .user_data(ud(0, STOP)),
    );
    let mut stopping = false;
    let mut waits = 0;
    loop {
        if stopping && l.live == 0 && !l.accept_armed {
            // The closes still queued go to the kernel before the ring ends.
            l.sq.sync();
            let _ = l.sub.submit();
            return true;
        }
        if stopping {
            // A bounded wait for the cancelled requests.
            waits += 1;
            if waits > 100 {
                // Sends may still read the connections' bytes: keep them.
                std::mem::forget(std::mem::take(&mut l.conns));
                return false;
            }
        }
        l.enter(stopping);
        l.cq.sync();
        l.last = l.cq.len();
        while let Some(cqe) = l.cq.next() {
            let (key, op) = ((cqe.user_data() >> 8) as u32, cqe.user_data() & 0xff);
            match op {
                RECV => l.on_recv(key, cqe.result(), cqe.flags()),
                SEND => l.on_send(key, cqe.result()),
                ACCEPT => l.on_accept(cqe.result(), cqe.flags(), stopping),
                STOP if !stopping => {
                    stopping = true;
                    l.stop();
                }
                _ => {}
            }
        }
        l.cq.sync();
        if !l.give.is_empty() {
            for i in 0..l.give.len() {
                let bid = l.give[i];
                l.bufs.push(bid);
            }
            l.give.clear();
            l.bufs.publish();
        }
    }
}

impl Loop<'_> {
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every address an entry names (a send's bytes, the
            // provided buffers) stays valid until the request's last
            // completion: a connection's bytes are kept until its send
            // completes, the buffers until the loop has none in the kernel.
            if unsafe { self.sq.push(&entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel to make room.
            self.sq.sync();
            let _ = self.sub.submit();
            self.sq.sync();
        }
    }

    /// Submit the turn's requests and wait for a completion: one enter.
    fn enter(&mut self, stopping: bool) {
        self.sq.sync();
        let sends = std::mem::take(&mut self.sends);
        let r = if stopping {
            let ts = Timespec::from(Duration::from_millis(20));
            let args = SubmitArgs::new().timespec(&ts);
            self.sub.submit_with_args(1, &args)
        } else if self.last >= BUSY && self.live / 4 > 1 {
            // A busy loop's batch: up to BATCH_USEC for a quarter of the
            // connections (at most BATCH), beyond the sends that complete
            // within the submission; then one completion will do. Few
            // connections could not fill one, and a loop that is not busy
            // would only sleep longer: they wait for the first.
            let args = SubmitArgs::new().min_wait_usec(BATCH_USEC);
            let want = (self.live / 4).min(BATCH);
            self.sub.submit_with_args(want.max(sends + 1), &args)
        } else {
            self.sub.submit_and_wait(1)
        };
        if let Err(e) = r {
            assert!(
                matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::ETIME | libc::EAGAIN)
                ),
                "io_uring_enter: {e}"
            );
        }
        self.sq.sync();
    }

    fn arm_accept(&mut self) {
        let e = opcode::AcceptMulti::new(types::Fd(self.listener))
            // Direct descriptors: in the ring's table, not the process's.
            .allocate_file_index(true)
            .build()
            .user_data(ud(0, ACCEPT));
        self.accept_armed = true;
        self.push(e);
    }

    fn on_accept(&mut self, res: i32, flags: u32, stopping: bool) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        // A request the kernel refuses would be refused again at once.
        assert!(
            !matches!(-res, libc::EINVAL | libc::EBADF | libc::ENOTSOCK),
            "multishot accept: {}",
            io::Error::from_raw_os_error(-res)
        );
        if res >= 0 {
            let key = res as u32;
            self.stats.accepted();
            self.stats.up();
            let i = key as usize;
            if self.conns.len() <= i {
                self.conns.resize_with(i + 1, || None);
            }
            self.conns[i] = Some(Conn {
                recv: false,
                send: None,
                done: 0,
                inflight: Vec::new(),
                out: Vec::new(),
                eof: false,
                dead: false,
            });
            self.live += 1;
            if stopping {
                self.finish(key);
                return;
            }
            self.arm_recv(key);
            if self.service == Service::Source {
                self.send(key, Src::Chunk);
            }
        }
        if !self.accept_armed && !stopping {
            self.arm_accept();
        }
    }

    fn arm_recv(&mut self, key: u32) {
        let Some(c) = self.conns.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        c.recv = true;
        let e = opcode::RecvMultiBundle::new(types::Fixed(key), BGID).build();
        self.push(e.user_data(ud(key, RECV)));
    }

    /// Start a send on `key` from `from` (its `done` is where it starts).
    fn send(&mut self, key: u32, from: Src) {
        let Some(c) = self.conns.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        let (ptr, len) = match from {
            Src::Copy => (c.inflight[c.done..].as_ptr(), c.inflight.len() - c.done),
            Src::Chunk => (CHUNK[c.done..].as_ptr(), CHUNK.len() - c.done),
        };
        c.send = Some(from);
        self.sends += 1;
        let e = opcode::Send::new(types::Fixed(key), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build();
        self.push(e.user_data(ud(key, SEND)));
    }

    fn on_recv(&mut self, key: u32, res: i32, flags: u32) {
        self.bids.clear();
        if let Some(first) = cqueue::buffer_select(flags) {
            let used = (res.max(1) as usize).div_ceil(BUF_SIZE);
            self.bufs.filled(first, used, &mut self.bids);
        }
        let Some(c) = self.conns.get_mut(key as usize).and_then(Option::as_mut) else {
            self.give.extend_from_slice(&self.bids);
            return;
        };
        if !cqueue::more(flags) {
            c.recv = false;
        }
        let mut send = None;
        if res > 0 && !c.dead {
            let n = res as usize;
            match self.service {
                Service::Echo => {
                    let idle = c.send.is_none();
                    let to = if idle { &mut c.inflight } else { &mut c.out };
                    let mut left = n;
                    for &b in &self.bids {
                        let bytes = self.bufs.bytes(b, left);
                        left -= bytes.len();
                        to.extend_from_slice(bytes);
                    }
                    if idle {
                        send = Some(Src::Copy);
                    }
                }
                Service::Sink => self.stats.bytes(n),
                Service::Source => {}
            }
        } else if res == 0 {
            c.eof = true;
        } else if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
            c.dead = true;
        }
        let rearm = !c.recv && !c.eof && !c.dead;
        self.give.extend_from_slice(&self.bids);
        if let Some(src) = send {
            c.done = 0;
            self.send(key, src);
        }
        if rearm {
            self.arm_recv(key);
        } else {
            self.close_if_idle(key);
        }
    }

    fn on_send(&mut self, key: u32, res: i32) {
        let Some(c) = self.conns.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(src) = c.send.take() else {
            return;
        };
        let len = match src {
            Src::Copy => c.inflight.len(),
            Src::Chunk => CHUNK.len(),
        };
        if res >= 0 {
            c.done += res as usize;
        }
        if res >= 0 && c.done < len && !c.dead {
            // Short (the peer's window): the rest.
            self.send(key, src);
            return;
        }
        match src {
            Src::Copy => c.inflight.clear(),
            Src::Chunk => {}
        }
        c.done = 0;
        if res < 0 {
            self.finish(key);
            return;
        }
        if !c.dead && !c.out.is_empty() {
            std::mem::swap(&mut c.inflight, &mut c.out);
            self.send(key, Src::Copy);
        } else if src == Src::Chunk && !c.dead && !c.eof {
            self.send(key, Src::Chunk);
        } else {
            self.close_if_idle(key);
        }
    }

    /// The connection ends: its requests are cancelled; it closes once none
    /// is left.
    fn finish(&mut self, key: u32) {
        let Some(c) = self.conns.get_mut(key as usize).and_then(Option::as_mut) else {
            return;
        };
        c.dead = true;
        c.out.clear();
        if c.recv || c.send.is_some() {
            let e = opcode::AsyncCancel2::new(CancelBuilder::fd(types::Fixed(key)).all()).build();
            self.push(e.user_data(ud(key, CANCEL)));
        }
        self.close_if_idle(key);
    }

    fn close_if_idle(&mut self, key: u32) {
        let Some(c) = self.conns.get(key as usize).and_then(Option::as_ref) else {
            return;
        };
        if !(c.eof || c.dead) || c.recv || c.send.is_some() || !c.out.is_empty() {
            return;
        }
        self.conns[key as usize] = None;
        self.live -= 1;
        self.stats.closed();
        let e = opcode::Close::new(types::Fixed(key)).build();
        self.push(e.user_data(ud(key, CLOSE)));
    }

    /// Stop: no more accepts; every connection ends.
    fn stop(&mut self) {
        if self.accept_armed {
            let e = opcode::AsyncCancel::new(ud(0, ACCEPT)).build();
            self.push(e.user_data(ud(0, CANCEL)));
        }
        for key in 0..self.conns.len() {
            if self.conns[key].is_some() {
                self.finish(key as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use crate::common::Target;

    fn server(service: Service) -> Option<(std::net::SocketAddr, Started, Arc<Stats>)> {
        if !available() {
            return None;
        }
        let stats = Arc::new(Stats::default());
        let spec = Spec {
            net: Net::Tcp,
            service,
            tls: None,
            loops: 1,
        };
        let started = start(spec, stats.clone());
        let Target::Tcp(addr) = started.0 else {
            unreachable!("a TCP server")
        };
        Some((addr, started, stats))
    }

    /// Echo, then the peer's end answered with ours; then a stop with a
    /// connection still open ends it (the client sees the end) and the loop.
    #[test]
    fn echoes_closes_and_stops_with_connections_open() {
        let Some((addr, (_, stop, thread), stats)) = server(Service::Echo) else {
            return;
        };
        let mut a = TcpStream::connect(addr).expect("connect");
        let msg = vec![7u8; 20_000];
        a.write_all(&msg).expect("write");
        let mut back = vec![0u8; msg.len()];
        a.read_exact(&mut back).expect("echo");
        assert_eq!(back, msg);
        a.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert_eq!(a.read(&mut back).expect("the server's end"), 0);

        let mut b = TcpStream::connect(addr).expect("connect");
        b.write_all(b"ping").expect("write");
        let mut four = [0u8; 4];
        b.read_exact(&mut four).expect("echo");
        stop();
        thread.join().expect("the loop ends");
        assert_eq!(b.read(&mut four).expect("the end at the stop"), 0);
        assert_eq!(Stats::get(&stats.accepted), 2);
        assert_eq!(Stats::get(&stats.closed), 2);
    }

    /// A sink counts what arrives; a source writes until the peer leaves.
    #[test]
    fn sink_counts_and_source_writes() {
        let Some((addr, (_, stop, thread), stats)) = server(Service::Sink) else {
            return;
        };
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(&[1u8; 300_000]).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut end = [0u8; 1];
        assert_eq!(s.read(&mut end).expect("the server's end"), 0);
        assert_eq!(Stats::get(&stats.bytes), 300_000);
        stop();
        thread.join().expect("the loop ends");

        let Some((addr, (_, stop, thread), _)) = server(Service::Source) else {
            return;
        };
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut got = vec![0u8; 3 * CHUNK.len()];
        s.read_exact(&mut got).expect("chunks");
        assert!(got.iter().all(|&b| b == CHUNK[0]));
        drop(s);
        stop();
        thread.join().expect("the loop ends");
    }
}
