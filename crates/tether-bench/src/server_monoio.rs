//! monoio's io_uring runtime (its `IoUringDriver`, one thread), written as
//! its documentation teaches: a task per connection, an owned buffer handed
//! to `read` and `write_all` and handed back. Plain TCP only: it is the
//! io_uring anchor of the TCP scenarios (pingpong, stream, churn).
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, Runtime, RuntimeBuilder};

use crate::common::{std_listener, Net, Service, Spec, Started, Stats, CHUNK};

/// Each connection's read buffer, as tokio's: large enough for the biggest
/// message in one read.
const BUF: usize = 16 * 1024;

fn runtime() -> std::io::Result<Runtime<IoUringDriver>> {
    RuntimeBuilder::<IoUringDriver>::new().build()
}

/// Whether the kernel lets monoio set up its ring. Asked once; when it
/// refuses, the reason is printed then and the column stays empty.
pub(crate) fn available() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| match runtime() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("tether-bench: monoio skipped: its io_uring runtime could not start: {e}");
            false
        }
    })
}

/// The connections open, by descriptor, so that stopping can end them:
/// monoio's runtime, dropped, leaks the tasks still waiting on the ring
/// (their sockets stay open), where tokio's drops them.
#[derive(Default)]
struct Open {
    fds: HashSet<RawFd>,
    /// Woken when the last one closes after the stop.
    idle: Option<Waker>,
}

pub(crate) fn start(spec: Spec, stats: Arc<Stats>) -> Started {
    assert!(
        spec.net == Net::Tcp && spec.tls.is_none(),
        "the monoio server is plain TCP only"
    );
    let (sock, target) = std_listener(Net::Tcp).expect("listener");
    // Stopping: the end of a socket pair the runtime waits on.
    let (stop_tx, stop_rx) = std::os::unix::net::UnixStream::pair().expect("pair");
    let thread = std::thread::Builder::new()
        .name("monoio-server".into())
        .spawn(move || {
            let mut rt = runtime().expect("monoio runtime (probed before)");
            rt.block_on(async move {
                let open = Rc::new(RefCell::new(Open::default()));
                {
                    let l = TcpListener::from_std(sock.into()).expect("listener");
                    let mut stop = monoio::net::UnixStream::from_std(stop_rx).expect("stop");
                    let mut accepting = pin!(accept(l, spec.service, stats, open.clone()));
                    let mut stopped = pin!(stop.read(Vec::with_capacity(1)));
                    poll_fn(|cx| {
                        if stopped.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(());
                        }
                        let _ = accepting.as_mut().poll(cx);
                        Poll::Pending
                    })
                    .await;
                    // The accept loop and its listener are dropped here.
                }
                for &fd in &open.borrow().fds {
                    crate::sys::shutdown_both(fd);
                }
                poll_fn(|cx| {
                    let mut open = open.borrow_mut();
                    if open.fds.is_empty() {
                        Poll::Ready(())
                    } else {
                        open.idle = Some(cx.waker().clone());
                        Poll::Pending
                    }
                })
                .await;
            });
        })
        .expect("spawn");
    let stopper = move || drop(stop_tx);
    (target, Box::new(stopper), thread)
}

async fn accept(l: TcpListener, service: Service, stats: Arc<Stats>, open: Rc<RefCell<Open>>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        stats.accepted();
        stats.up();
        let fd = s.as_raw_fd();
        open.borrow_mut().fds.insert(fd);
        let (stats, open) = (stats.clone(), open.clone());
        monoio::spawn(async move {
            serve(s, service, &stats).await;
            // `serve` has dropped (closed) the socket: its descriptor may be
            // reused from now on, so it leaves the set before anything else.
            let mut open = open.borrow_mut();
            open.fds.remove(&fd);
            if open.fds.is_empty() {
                if let Some(w) = open.idle.take() {
                    w.wake();
                }
            }
        });
    }
}

async fn serve(mut s: TcpStream, service: Service, stats: &Stats) {
    match service {
        Service::Echo | Service::Sink => {
            let mut buf = Vec::with_capacity(BUF);
            loop {
                let (res, b) = s.read(buf).await;
                buf = b;
                match res {
                    Ok(0) => {
                        let _ = s.shutdown().await;
                        break;
                    }
                    Ok(_) if service == Service::Echo => {
                        let (res, b) = s.write_all(buf).await;
                        buf = b;
                        if res.is_err() {
                            break;
                        }
                    }
                    Ok(n) => stats.bytes(n),
                    Err(_) => break,
                }
                buf.clear();
            }
        }
        Service::Source => while s.write_all(&CHUNK[..]).await.0.is_ok() {},
    }
    drop(s);
    stats.closed();
}
