//! The floor server's loop: its connections, its turns, its completions.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::squeue::{self, SubmissionQueue};
use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, types, CompletionQueue, IoUring, Submitter};

use crate::common::{Service, Stats, CHUNK};

use super::bufs::{BufRing, BGID, BUFS, BUF_SIZE};

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
pub(super) fn run(
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
