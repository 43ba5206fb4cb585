//! The provided-buffer ring that multishot receives fill, and the received
//! bytes still in it: runs of buffers delivered from there or copied out.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

use crate::uring::sock::{Fresh, RingSock};

/// Buffers in the provided-buffer ring, and the size of each: 4 MiB a loop.
/// A receive fills one or more (a bundle); they go back to the kernel when
/// the wait's batch ends, so the ring needs room for what one wait brings
/// (when it runs dry a receive ends with ENOBUFS and is armed again: the
/// bytes wait in the kernel meanwhile). A small message takes a whole one.
pub(super) const BUFS: u16 = 1024;
pub(super) const BUF_SIZE: usize = 4096;

/// The provided-buffer group every receive selects from.
pub(super) const BGID: u16 = 0;

/// The provided-buffer ring: the entries the kernel picks buffers from, and
/// the buffers. Both are raw allocations: the kernel writes the buffers while
/// the loop runs, so no Rust reference to them may live across that.
pub(super) struct BufRing {
    entries: *mut BufRingEntry,
    data: *mut u8,
    /// The tail the loop has written; published to the kernel by `publish`.
    tail: u16,
    /// The buffer each ring entry holds, and the entry each buffer is in:
    /// a bundle receive names its first buffer, the others are the entries
    /// after it.
    bid_at: Vec<u16>,
    entry_of: Vec<u16>,
}

impl BufRing {
    fn entries_layout() -> Layout {
        // The kernel wants the ring page-aligned.
        Layout::from_size_align(
            usize::from(BUFS) * std::mem::size_of::<BufRingEntry>(),
            4096,
        )
        .expect("a valid layout")
    }

    fn data_layout() -> Layout {
        Layout::from_size_align(usize::from(BUFS) * BUF_SIZE, 4096).expect("a valid layout")
    }

    pub(super) fn new() -> io::Result<BufRing> {
        // SAFETY: both layouts have a non-zero size; a null result is checked.
        let entries = unsafe { alloc_zeroed(Self::entries_layout()) }.cast::<BufRingEntry>();
        // SAFETY: as above.
        let data = unsafe { alloc_zeroed(Self::data_layout()) };
        if entries.is_null() || data.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(BufRing {
            entries,
            data,
            tail: 0,
            bid_at: vec![0; usize::from(BUFS)],
            entry_of: vec![0; usize::from(BUFS)],
        })
    }

    /// Give buffer `bid` (back) to the kernel; seen once `publish`ed.
    pub(super) fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUFS - 1));
        // SAFETY: `slot` < BUFS, inside the allocation; the kernel reads only
        // the entries between its head and the published tail, and this one
        // is past the published tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        // SAFETY: `bid` < BUFS: the buffer lies inside the data allocation.
        let addr = unsafe { self.data.add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.bid_at[slot] = bid;
        self.entry_of[usize::from(bid.min(BUFS - 1))] = slot as u16;
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
        assert!(
            at + len <= usize::from(BUFS) * BUF_SIZE,
            "a run in the buffers"
        );
        self.data.wrapping_add(at).cast_const()
    }

    /// The ring's entries, for the kernel to register.
    pub(super) fn entries_addr(&self) -> u64 {
        self.entries as u64
    }

    /// The buffers a receive filled, its first being `first` and `used` in
    /// all: a bundle's are the ring entries after the first one's.
    pub(super) fn filled(&self, first: u16, used: usize, out: &mut Vec<u16>) {
        let entry = usize::from(self.entry_of[usize::from(first.min(BUFS - 1))]);
        for k in 0..used.min(usize::from(BUFS)) {
            let slot = (entry + k) & usize::from(BUFS - 1);
            out.push(self.bid_at[slot]);
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
                tail: 0,
                bid_at: Vec::new(),
                entry_of: Vec::new(),
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

    /// The first `len` bytes of buffer `bid`, which a completion gave back.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid.min(BUFS - 1));
        let len = len.min(BUF_SIZE);
        // SAFETY: inside the data allocation; the kernel wrote these bytes
        // before the completion and writes the buffer again only after it is
        // pushed back, which the caller does after using the slice.
        unsafe { std::slice::from_raw_parts(self.data.add(bid * BUF_SIZE), len) }
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
            dealloc(self.entries.cast(), Self::entries_layout());
            dealloc(self.data, Self::data_layout());
        }
    }
}

impl std::fmt::Debug for BufRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufRing").field("tail", &self.tail).finish()
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
    if rs.fresh.is_empty() {
        return;
    }
    if rs.head > 0 && rs.head == rs.stash.len() {
        rs.stash.clear();
        rs.head = 0;
    }
    rs.fresh_len = 0;
    for fresh in rs.fresh.drain(..) {
        let ptr = bufs.run(fresh.at, fresh.len);
        // SAFETY: the run lies in the buffers' allocation (`run`), which the
        // kernel wrote before the completion and does not write before the
        // buffers are given back at the end of the batch.
        rs.stash
            .extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, fresh.len) });
    }
}
