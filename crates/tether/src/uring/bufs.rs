//! The provided-buffer ring that multishot receives fill, and the received
//! bytes still in it: runs of buffers delivered from there or copied out.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::uring::flow::Fresh;
use crate::uring::sock::RingSock;

/// The provided buffers: 4 MiB a loop, in one of two layouts.
///
/// Where the kernel consumes buffers incrementally (6.12), 64 buffers of
/// 64 KiB: a receive takes what it needs from the buffer at the ring's head
/// and the next receive, of any socket, goes on where it stopped. Small
/// messages lie next to one another, and a bulk receive gets up to 64 KiB in
/// one completion, as an epoll loop's 64 KiB read does.
///
/// Elsewhere each receive takes a whole buffer however little it brings, so
/// the buffers are many and small: 1,024 of 4 KiB.
///
/// Either way the buffers a wait's receives used up go back to the kernel
/// when its batch ends; when the ring runs dry a receive ends with ENOBUFS
/// and is armed again, the bytes waiting in the kernel meanwhile.
const POOL: usize = 4 << 20;
const INC_SIZE: usize = 64 * 1024;
const WHOLE_SIZE: usize = 4096;

/// The kernel's flag for incremental consumption (`IOU_PBUF_RING_INC`,
/// which the io-uring crate does not export).
const IOU_PBUF_RING_INC: u16 = 2;

/// The provided-buffer group every receive selects from.
pub(super) const BGID: u16 = 0;

/// The provided-buffer ring: the entries the kernel picks buffers from, and
/// the buffers. Both are raw allocations: the kernel writes the buffers while
/// the loop runs, so no Rust reference to them may live across that.
pub(super) struct BufRing {
    entries: *mut BufRingEntry,
    data: *mut u8,
    /// Buffers (a power of two) and the size of each.
    count: u16,
    size: usize,
    /// The kernel consumes buffers incrementally (`IOU_PBUF_RING_INC`).
    inc: bool,
    /// The tail the loop has written; published to the kernel by `publish`.
    tail: u16,
    /// How much of each buffer the kernel has filled since it was given
    /// back: where the next receive into it starts. The kernel's own rule,
    /// mirrored: a buffer is used up when it is full (incremental), or at
    /// its first receive (whole).
    filled: Vec<u32>,
}

impl BufRing {
    fn entries_layout(count: u16) -> Layout {
        // The kernel wants the ring page-aligned.
        Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    fn data_layout() -> Layout {
        Layout::from_size_align(POOL, 4096).expect("a valid layout")
    }

    /// The buffers, for incremental consumption (`inc`) or whole buffers.
    pub(super) fn new(inc: bool) -> io::Result<BufRing> {
        let size = if inc { INC_SIZE } else { WHOLE_SIZE };
        let count = u16::try_from(POOL / size).expect("a u16 count");
        // SAFETY: both layouts have a non-zero size; a null result is checked.
        let entries = unsafe { alloc_zeroed(Self::entries_layout(count)) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc_zeroed(Self::data_layout()) };
        if entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut bufs = BufRing {
            entries,
            data,
            count,
            size,
            inc,
            tail: 0,
            filled: vec![0; usize::from(count)],
        };
        for bid in 0..count {
            bufs.push(bid);
        }
        Ok(bufs)
    }

    /// Buffers in the ring, for the kernel to register.
    pub(super) fn count(&self) -> u16 {
        self.count
    }

    /// The registration flags this layout needs.
    pub(super) fn flags(&self) -> u16 {
        if self.inc {
            IOU_PBUF_RING_INC
        } else {
            0
        }
    }

    /// Give buffer `bid` (back) to the kernel; seen once `publish`ed.
    pub(super) fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < count, inside the allocation; the kernel reads only
        // the entries between its head and the published tail, and this one
        // is past the published tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        let bid = bid.min(self.count - 1);
        // SAFETY: `bid` < count: the buffer lies inside the data allocation.
        let addr = unsafe { self.data.add(usize::from(bid) * self.size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.filled[usize::from(bid)] = 0;
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish the entries pushed so far.
    pub(super) fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field,
        // inside the allocation, aligned for a u16; the kernel only reads it.
        let tail = unsafe { BufRingEntry::tail(self.entries) } as *mut u16;
        // SAFETY: `tail` is valid and aligned (above); the store is atomic,
        // as the kernel's reads of it are.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }

    /// Where the run of `len` bytes at offset `at` of the buffers'
    /// allocation starts (consecutive buffers are one run of memory).
    fn run(&self, at: usize, len: usize) -> *const u8 {
        assert!(at + len <= POOL, "a run in the buffers");
        self.data.wrapping_add(at).cast_const()
    }

    /// The ring's entries, for the kernel to register.
    pub(super) fn entries_addr(&self) -> u64 {
        self.entries as u64
    }

    /// A receive put `len` bytes in buffer `bid`: where they are. A buffer
    /// it used up is added to `used`, to go back to the kernel when the
    /// batch ends.
    pub(super) fn fill(&mut self, bid: u16, len: usize, used: &mut Vec<u16>) -> Fresh {
        let bid = bid.min(self.count - 1);
        let filled = &mut self.filled[usize::from(bid)];
        let start = *filled as usize;
        let len = len.min(self.size - start);
        let end = start + len;
        *filled = end as u32;
        // A zero-byte receive (the peer's end) takes nothing of an
        // incremental buffer, and the whole of a whole one.
        if end == self.size || !self.inc {
            used.push(bid);
        }
        Fresh {
            at: usize::from(bid) * self.size + start,
            len,
        }
    }

    /// The kernel may still write the buffers (the ring could not wait for
    /// all its requests to end): never free them.
    pub(super) fn leak(&mut self) {
        let bufs = std::mem::replace(
            self,
            BufRing {
                entries: std::ptr::null_mut(),
                data: std::ptr::null_mut(),
                count: 0,
                size: 0,
                inc: false,
                tail: 0,
                filled: Vec::new(),
            },
        );
        std::mem::forget(bufs);
    }

    /// The run of `fresh` bytes, lent for one delivery: only while its
    /// buffers are out of the kernel's ring (a batch's fresh bytes are).
    pub(super) fn lend(&self, fresh: Fresh) -> Lent {
        Lent {
            ptr: self.run(fresh.at, fresh.len),
            len: fresh.len,
        }
    }

    /// The bytes of a run a completion gave back.
    pub(super) fn bytes(&self, fresh: Fresh) -> &[u8] {
        let ptr = self.run(fresh.at, fresh.len);
        // SAFETY: inside the data allocation (`run`); the kernel wrote these
        // bytes before the completion and writes the buffer again only after
        // it is pushed back, which the caller does after using the slice.
        unsafe { std::slice::from_raw_parts(ptr, fresh.len) }
    }
}

// SAFETY: the allocations are owned by this value alone (no other thread has
// a pointer to them); moving it to another thread moves that ownership.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.entries.is_null() {
            // Leaked on purpose (see `Ring::drop`).
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the ring that used
        // them is gone (dropped before, see `Ring`'s field order) and had no
        // request left in the kernel (see `Ring::drop`).
        unsafe {
            dealloc(self.entries.cast(), Self::entries_layout(self.count));
            dealloc(self.data, Self::data_layout());
        }
    }
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing")
            .field("size", &self.size)
            .field("tail", &self.tail)
            .finish()
    }
}

/// Received bytes lent from the provided buffers for one delivery
/// (`Ring::lend`). The buffers go back to the kernel when the wait's batch
/// ends (`Ring::end_batch`), after every delivery of the batch.
#[derive(Debug)]
pub(crate) struct Lent {
    ptr: *const u8,
    len: usize,
}

impl Lent {
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` lies in the provided buffers of a ring
        // that outlives the delivery (the loop's ring is dropped only with
        // the loop, never inside a callback). The kernel wrote these bytes
        // before their completion and cannot write them again before the
        // buffers are given back, at the end of the batch, once every
        // delivery of it returned; nothing else writes them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Move a socket's fresh bytes (still in the provided buffers) to its stash.
pub(super) fn copy_fresh(bufs: &BufRing, rs: &mut RingSock) {
    let Some(f) = rs.flow.as_deref_mut().filter(|f| !f.fresh.is_empty()) else {
        return;
    };
    if f.head > 0 && f.head == f.stash.len() {
        f.stash.clear();
        f.head = 0;
    }
    f.fresh_len = 0;
    for fresh in f.fresh.drain(..) {
        // The batch's buffers are given back after this, at its end.
        f.stash.extend_from_slice(bufs.bytes(fresh));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incremental_buffer_is_used_up_when_full_and_its_receives_lie_end_to_end() {
        let mut bufs = BufRing::new(true).unwrap();
        let mut used = Vec::new();
        let a = bufs.fill(3, 100, &mut used);
        let b = bufs.fill(3, 28, &mut used);
        assert_eq!((a.at, a.len), (3 * INC_SIZE, 100));
        assert_eq!((b.at, b.len), (3 * INC_SIZE + 100, 28));
        // The peer's end takes nothing.
        let end = bufs.fill(3, 0, &mut used);
        assert_eq!((end.at, end.len), (3 * INC_SIZE + 128, 0));
        assert!(used.is_empty());
        let rest = bufs.fill(3, INC_SIZE - 128, &mut used);
        assert_eq!(rest.at + rest.len, 4 * INC_SIZE);
        assert_eq!(used, [3]);
        // Given back, it starts again from its beginning.
        bufs.push(3);
        assert_eq!(bufs.fill(3, 10, &mut used).at, 3 * INC_SIZE);
    }

    #[test]
    fn a_whole_buffer_is_used_up_by_any_receive() {
        let mut bufs = BufRing::new(false).unwrap();
        assert_eq!(usize::from(bufs.count()) * WHOLE_SIZE, POOL);
        let mut used = Vec::new();
        let a = bufs.fill(7, 64, &mut used);
        assert_eq!((a.at, a.len), (7 * WHOLE_SIZE, 64));
        bufs.fill(9, 0, &mut used);
        assert_eq!(used, [7, 9]);
    }

    #[test]
    fn a_receive_never_reaches_past_its_buffer() {
        let mut bufs = BufRing::new(true).unwrap();
        let mut used = Vec::new();
        let run = bufs.fill(bufs.count() - 1, 2 * INC_SIZE, &mut used);
        assert_eq!(run.at + run.len, POOL);
        // A buffer id the ring never had is read as its last one.
        let run = bufs.fill(u16::MAX, 1, &mut used);
        assert!(run.at + run.len <= POOL);
        assert_eq!(bufs.bytes(run).len(), run.len);
    }
}
