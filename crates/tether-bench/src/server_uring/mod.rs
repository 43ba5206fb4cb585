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
//! An epoll loop cannot wait that way (`epoll_wait` returns as soon as
//! anything is ready): it is the ring's own lever.
//!
//! It is a floor for small messages, not for bulk: its sink (bundles of
//! 4 KiB buffers, 16 MiB of them) costs more per GB than tether-uring's
//! (64 KiB buffers consumed incrementally, 4 MiB), which BENCHMARKS.md's
//! stream table shows.
//!
//! `bufs` holds the provided buffers, `serve` the loop. This is the one
//! module of the crate besides `sys` with `unsafe`: pushing a request is
//! unsafe (the kernel will use the memory it names), and the
//! provided buffers are memory the kernel writes while the loop runs. Every
//! address handed to the kernel stays valid until the completion that ends
//! its request, and the loop ends only once every request has ended.
#![allow(unsafe_code)]

mod bufs;
mod serve;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, OnceLock};

use io_uring::IoUring;

use crate::common::{std_listener, Net, Spec, Started, Stats};

use bufs::BufRing;
use serve::run;

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
