//! The provided-buffer ring the floor server's receives fill.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;

/// Provided buffers (a power of two) and the size of each.
pub(super) const BUFS: u16 = 4096;
pub(super) const BUF_SIZE: usize = 4096;
/// The provided-buffer group every receive selects from.
pub(super) const BGID: u16 = 0;

/// The provided-buffer ring: its entries and its buffers, raw allocations
/// the kernel reads and writes while the loop runs.
pub(super) struct BufRing {
    pub(super) entries: *mut BufRingEntry,
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

    pub(super) fn new() -> io::Result<BufRing> {
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
    pub(super) fn push(&mut self, bid: u16) {
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

    pub(super) fn publish(&self) {
        // SAFETY: the tail overlays the first entry's reserved field, inside
        // the allocation and aligned for a u16; the kernel only reads it.
        let tail = unsafe { BufRingEntry::tail(self.entries) }.cast_mut();
        // SAFETY: valid and aligned (above); an atomic store, as the
        // kernel's reads of it are atomic.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }

    pub(super) fn addr(&self, bid: u16) -> *mut u8 {
        self.data
            .wrapping_add(usize::from(bid.min(BUFS - 1)) * BUF_SIZE)
    }

    /// The first `len` bytes of buffer `bid`, which a completion handed over.
    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: inside the data allocation (`addr` clamps the id, `min`
        // the length); the kernel wrote these bytes before the completion
        // and writes the buffer again only once it is pushed back, which
        // the caller does after using the slice.
        unsafe { std::slice::from_raw_parts(self.addr(bid), len.min(BUF_SIZE)) }
    }

    /// The buffers a receive filled: `first` and the entries after it.
    pub(super) fn filled(&self, first: u16, used: usize, out: &mut Vec<u16>) {
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
