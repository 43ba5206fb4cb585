//! The ground-truth clients: blocking std sockets, no tether, one writer
//! thread and one reader per connection, playing the client's part of a
//! plan over TCP or Local.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use super::flow::{Record, DOWN, UP};
use super::plan::{Net, Plan, CHUNK};
use super::server::Addrs;
use crate::pattern::{Pattern, Source, Tally};

/// A std stream of either kind.
trait Stream: Read + Write + Send + Sized {
    fn split(&self) -> std::io::Result<Self>;
    fn half_close(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn split(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Stream for UnixStream {
    fn split(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// Bound on each blocking call: a stuck connection fails, never hangs the run.
const STUCK: Duration = Duration::from_secs(30);

/// Play `plan`'s client with a std socket; what it saw.
pub(crate) fn run(seed: u64, plan: &Plan, addrs: &Addrs) -> Record {
    let result = match plan.net {
        Net::Tcp => TcpStream::connect(&addrs.tcp).and_then(|s| {
            s.set_read_timeout(Some(STUCK))?;
            s.set_write_timeout(Some(STUCK))?;
            Ok(play(seed, plan, s))
        }),
        Net::Local => {
            // The abstract name of `unix:@name`.
            let name = addrs.local.trim_start_matches("unix:@");
            connect_abstract(name).and_then(|s| {
                s.set_read_timeout(Some(STUCK))?;
                s.set_write_timeout(Some(STUCK))?;
                Ok(play(seed, plan, s))
            })
        }
        Net::Tls | Net::Framed => unreachable!("std clients speak TCP and Local"),
    };
    result.unwrap_or_else(|e| Record {
        errors: vec![format!("connect: {e}")],
        ..Record::default()
    })
}

fn connect_abstract(name: &str) -> std::io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&addr)
}

fn play<T: Stream>(seed: u64, plan: &Plan, mut sock: T) -> Record {
    let mut record = Record::default();
    let mut writer = match sock.split() {
        Ok(w) => w,
        Err(e) => {
            record.errors.push(format!("clone: {e}"));
            return record;
        }
    };
    let (eof_tx, eof_rx) = mpsc::channel::<()>();
    let early = plan.end.client_shuts_early();
    let (up, idx) = (plan.up, plan.idx);
    let mut tally = Tally::new(Pattern::new(seed, idx, DOWN));
    let (src, write_err) = std::thread::scope(|scope| {
        let w = scope.spawn(move || {
            let mut src = Source::new(Pattern::new(seed, idx, UP));
            let mut buf = Vec::new();
            let r = (|| {
                writer.write_all(&idx.to_le_bytes())?;
                while src.sent < up {
                    src.next((up - src.sent).min(CHUNK) as usize, &mut buf);
                    writer.write_all(&buf)?;
                }
                if !early {
                    // Half-close only after the server's end was read.
                    let _ = eof_rx.recv_timeout(STUCK);
                }
                writer.half_close()
            })();
            (src, r.err())
        });
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => tally.take(&buf[..n]),
                Err(e) => {
                    record.errors.push(format!("read: {e}"));
                    break;
                }
            }
        }
        let _ = eof_tx.send(());
        w.join().expect("writer")
    });
    if let Some(e) = write_err {
        record.errors.push(format!("write: {e}"));
    }
    record.closes = 1;
    record.got = Some(tally);
    record.sent = Some(src);
    record
}
