//! The bytes a connection carries: a stream fixed by a key (the seed, the
//! connection, the direction), so the receiver knows every byte it should
//! get and where the first wrong one is; and a checksum each side takes of
//! what it sent and what it received, compared end to end.

use crate::prng::mix;

/// FNV-1a, 64 bits: a checksum of every byte in order (not a defence
/// against an adversary; a check that no byte was lost, added or changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    /// Take `data` in, after what came before.
    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The byte stream of one direction of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pattern {
    key: u64,
}

impl Pattern {
    pub(crate) fn new(seed: u64, conn: u64, dir: u8) -> Self {
        Pattern {
            key: mix(seed ^ mix(conn.wrapping_mul(4).wrapping_add(u64::from(dir)))),
        }
    }

    /// The stream's byte at `offset`.
    #[cfg(test)]
    pub(crate) fn byte(&self, offset: u64) -> u8 {
        mix(self.key ^ (offset / 8)).to_le_bytes()[(offset % 8) as usize]
    }

    /// Fill `buf` with the stream from `offset` on.
    pub(crate) fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut word = offset / 8;
        let mut w = mix(self.key ^ word).to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i as u64;
            if at / 8 != word {
                word = at / 8;
                w = mix(self.key ^ word).to_le_bytes();
            }
            *b = w[(at % 8) as usize];
        }
    }

    /// The checksum of the stream's first `len` bytes.
    pub(crate) fn checksum(&self, len: u64) -> Checksum {
        let mut sum = Checksum::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            self.fill(at, &mut buf[..n]);
            sum.update(&buf[..n]);
            at += n as u64;
        }
        sum
    }
}

/// What a receiver got of one direction, checked byte by byte as it came.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tally {
    pattern: Pattern,
    /// Bytes received so far.
    pub(crate) got: u64,
    /// Bytes that differ from the stream's.
    pub(crate) changed: u64,
    /// The first of them.
    pub(crate) first_changed: Option<u64>,
    /// The checksum of what was received.
    pub(crate) sum: Checksum,
}

impl Tally {
    pub(crate) fn new(pattern: Pattern) -> Self {
        Tally {
            pattern,
            got: 0,
            changed: 0,
            first_changed: None,
            sum: Checksum::default(),
        }
    }

    /// Take in the next received bytes.
    pub(crate) fn take(&mut self, data: &[u8]) {
        self.sum.update(data);
        let mut word = u64::MAX;
        let mut w = [0u8; 8];
        for (i, &b) in data.iter().enumerate() {
            let at = self.got + i as u64;
            if at / 8 != word {
                word = at / 8;
                w = mix(self.pattern.key ^ word).to_le_bytes();
            }
            if w[(at % 8) as usize] != b {
                self.changed += 1;
                self.first_changed.get_or_insert(at);
            }
        }
        self.got += data.len() as u64;
    }

    /// Bytes lost (missing at the end), added (beyond it) or changed, against
    /// `expected` bytes.
    pub(crate) fn damage(&self, expected: u64) -> u64 {
        self.changed + self.got.abs_diff(expected)
    }
}

/// What a sender sent of one direction: its own count and checksum.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    pattern: Pattern,
    /// Bytes handed to the transport so far.
    pub(crate) sent: u64,
    /// Their checksum.
    pub(crate) sum: Checksum,
}

impl Source {
    pub(crate) fn new(pattern: Pattern) -> Self {
        Source {
            pattern,
            sent: 0,
            sum: Checksum::default(),
        }
    }

    /// The next `n` bytes of the stream, counted as sent.
    pub(crate) fn next(&mut self, n: usize, buf: &mut Vec<u8>) {
        buf.resize(n, 0);
        self.pattern.fill(self.sent, buf);
        self.sum.update(buf);
        self.sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_agrees_with_byte_and_chunking_does_not_matter() {
        let p = Pattern::new(7, 3, 1);
        let mut whole = vec![0u8; 1000];
        p.fill(0, &mut whole);
        assert!(whole
            .iter()
            .enumerate()
            .all(|(i, &b)| b == p.byte(i as u64)));
        let mut src = Source::new(p);
        let mut parts = Vec::new();
        let mut buf = Vec::new();
        for n in [1, 7, 9, 0, 983] {
            src.next(n, &mut buf);
            parts.extend_from_slice(&buf);
        }
        assert_eq!(parts, whole);
        assert_eq!(src.sum, p.checksum(1000));
    }

    #[test]
    fn directions_and_connections_differ() {
        let a = Pattern::new(7, 3, 0).checksum(64);
        assert_ne!(a, Pattern::new(7, 3, 1).checksum(64));
        assert_ne!(a, Pattern::new(7, 4, 0).checksum(64));
        assert_ne!(a, Pattern::new(8, 3, 0).checksum(64));
    }

    #[test]
    fn tally_finds_a_changed_byte_a_lost_one_and_an_extra_one() {
        let p = Pattern::new(1, 2, 0);
        let mut data = vec![0u8; 300];
        p.fill(0, &mut data);

        let mut ok = Tally::new(p);
        ok.take(&data[..100]);
        ok.take(&data[100..]);
        assert_eq!((ok.damage(300), ok.first_changed), (0, None));
        assert_eq!(ok.sum, p.checksum(300));

        let mut bad = data.clone();
        bad[123] ^= 0x40;
        let mut t = Tally::new(p);
        t.take(&bad);
        assert_eq!((t.damage(300), t.first_changed), (1, Some(123)));
        assert_ne!(t.sum, p.checksum(300));

        let mut short = Tally::new(p);
        short.take(&data[..290]);
        assert_eq!(short.damage(300), 10);

        let mut long = Tally::new(p);
        long.take(&data);
        long.take(&[p.byte(300)]);
        assert_eq!(long.damage(300), 1);
    }
}
