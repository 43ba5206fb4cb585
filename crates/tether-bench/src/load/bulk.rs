//! Bulk transfer: 64 KiB chunks up to a sink or down from a source.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::{established, open, Clock, Measured, Window};
use crate::common::{Stats, Target, CHUNK};
use crate::tlsio::Wire;

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
