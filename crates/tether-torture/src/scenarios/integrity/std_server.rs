//! The ground-truth server: blocking std listeners (TCP and Local) whose
//! connections, a reader and a writer thread each, play the server's part of
//! their plan against tether clients. Its "close" is what tether's is:
//! half-close after what it sent, then read and throw away until the
//! client's end, counting what it threw away.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::flow::{Record, DOWN, UP};
use super::plan::{End, Plan, CHUNK};
use crate::pattern::{Pattern, Source, Tally};

/// Bound on each blocking call: a stuck connection fails, never hangs the run.
const STUCK: Duration = Duration::from_secs(30);

/// A std stream of either kind.
trait Stream: Read + Write + Send + Sized + 'static {
    fn split(&self) -> std::io::Result<Self>;
    fn half_close(&self) -> std::io::Result<()>;
    fn bound(&self) -> std::io::Result<()>;
}

// The same for both: a macro rather than two copies.
macro_rules! impl_stream {
    ($($t:ty),*) => {$(
        impl Stream for $t {
            fn split(&self) -> std::io::Result<Self> {
                self.try_clone()
            }
            fn half_close(&self) -> std::io::Result<()> {
                self.shutdown(Shutdown::Write)
            }
            fn bound(&self) -> std::io::Result<()> {
                self.set_read_timeout(Some(STUCK))?;
                self.set_write_timeout(Some(STUCK))
            }
        }
    )*};
}

impl_stream!(TcpStream, UnixStream);

/// The std server's addresses, and its thread (which returns a record per
/// connection once it has served `count`).
pub(crate) struct StdServer {
    pub(crate) tcp: String,
    pub(crate) local: String,
    pub(crate) thread: JoinHandle<HashMap<u64, Record>>,
}

impl std::fmt::Debug for StdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdServer")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Serve `tcp` + `local` connections (how many of each the plans say).
pub(crate) fn start(seed: u64, tcp: usize, local: usize) -> std::io::Result<StdServer> {
    let tl = TcpListener::bind("127.0.0.1:0")?;
    let name = format!("tether-torture-{}-integrity-std", std::process::id());
    let ul = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        UnixListener::bind_addr(&addr)?
    };
    let tcp_addr = tl.local_addr()?.to_string();
    // Accepts poll, so a client that never came cannot hold the run.
    tl.set_nonblocking(true)?;
    ul.set_nonblocking(true)?;
    let thread = std::thread::Builder::new()
        .name("integrity-std-server".into())
        .spawn(move || {
            let (tx, rx) = mpsc::channel();
            let t = {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    accept_n(
                        tcp,
                        || tl.accept().map(|(s, _)| s),
                        |s| {
                            s.set_nonblocking(false)?;
                            spawn(seed, s, tx.clone());
                            Ok(())
                        },
                    )
                })
            };
            let u = std::thread::spawn(move || {
                accept_n(
                    local,
                    || ul.accept().map(|(s, _)| s),
                    |s| {
                        s.set_nonblocking(false)?;
                        spawn(seed, s, tx.clone());
                        Ok(())
                    },
                )
            });
            let _ = t.join();
            let _ = u.join();
            let mut records = HashMap::new();
            for _ in 0..tcp + local {
                match rx.recv_timeout(STUCK * 4) {
                    Ok((idx, r)) => {
                        records.insert(idx, r);
                    }
                    Err(_) => break,
                }
            }
            records
        })?;
    Ok(StdServer {
        tcp: tcp_addr,
        local: format!("unix:@{name}"),
        thread,
    })
}

/// Accept `n` connections, giving up once none came for `STUCK`.
fn accept_n<T>(
    n: usize,
    mut accept: impl FnMut() -> std::io::Result<T>,
    mut serve: impl FnMut(T) -> std::io::Result<()>,
) {
    let mut taken = 0;
    let mut quiet_since = std::time::Instant::now();
    while taken < n {
        match accept() {
            Ok(s) => {
                taken += 1;
                quiet_since = std::time::Instant::now();
                if let Err(e) = serve(s) {
                    eprintln!("integrity std server: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if quiet_since.elapsed() > STUCK {
                    eprintln!(
                        "integrity std server: {} of {n} connections never came",
                        n - taken
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => eprintln!("integrity std server: accept: {e}"),
        }
    }
}

fn spawn<T: Stream>(seed: u64, s: T, done: mpsc::Sender<(u64, Record)>) {
    std::thread::spawn(move || {
        let (idx, record) = serve(seed, s);
        let _ = done.send((idx, record));
    });
}

/// One connection: its index first, then its plan's server part.
fn serve<T: Stream>(seed: u64, mut sock: T) -> (u64, Record) {
    let mut record = Record::default();
    let mut head = [0u8; 8];
    if let Err(e) = sock.bound().and_then(|()| sock.read_exact(&mut head)) {
        record
            .errors
            .push(format!("std server: reading the index: {e}"));
        return (u64::MAX, record);
    }
    let idx = u64::from_le_bytes(head);
    let plan = Plan::derive(seed, idx);
    let mut writer = match sock.split() {
        Ok(w) => w,
        Err(e) => {
            record.errors.push(format!("std server: clone: {e}"));
            return (idx, record);
        }
    };
    // The writer starts when the plan says: at once, after the client's
    // end, or once `keep` was read; the reader tells it.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (down, at_once) = (plan.down, matches!(plan.end, End::ServerFirst | End::Both));
    let mut tally = Tally::new(Pattern::new(seed, idx, UP));
    let (src, unread, write_err) = std::thread::scope(|scope| {
        let w = scope.spawn(move || {
            let mut src = Source::new(Pattern::new(seed, idx, DOWN));
            if !at_once && go_rx.recv_timeout(STUCK).is_err() {
                return (
                    src,
                    Some(std::io::Error::new(
                        ErrorKind::TimedOut,
                        "never told to send",
                    )),
                );
            }
            let mut buf = Vec::new();
            let r = (|| {
                while src.sent < down {
                    src.next((down - src.sent).min(CHUNK) as usize, &mut buf);
                    writer.write_all(&buf)?;
                }
                writer.half_close()
            })();
            (src, r.err())
        });
        let keep = if plan.server_closes() {
            plan.keep
        } else {
            u64::MAX
        };
        let mut buf = vec![0u8; CHUNK as usize];
        let mut told = false;
        let mut unread = 0u64;
        loop {
            if tally.got >= keep && !told {
                // Keep reached: send, and from now on throw away.
                let _ = go_tx.send(());
                told = true;
            }
            let want = if told {
                buf.len()
            } else {
                ((keep - tally.got) as usize).min(buf.len())
            };
            match sock.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) if told && plan.server_closes() => unread += n as u64,
                Ok(n) => tally.take(&buf[..n]),
                Err(e) => {
                    record.errors.push(format!("std server: read: {e}"));
                    break;
                }
            }
        }
        if !told {
            // The client's end came first (client-first), or keep was all.
            let _ = go_tx.send(());
        }
        let (src, err) = w.join().expect("writer");
        (src, unread, err)
    });
    if let Some(e) = write_err {
        record.errors.push(format!("std server: write: {e}"));
    }
    if plan.server_closes() && unread != plan.server_unread() {
        record.errors.push(format!(
            "std server: threw away {unread} bytes, expected {}",
            plan.server_unread()
        ));
    }
    record.closes = 1;
    record.got = Some(tally);
    record.sent = Some(src);
    (idx, record)
}
