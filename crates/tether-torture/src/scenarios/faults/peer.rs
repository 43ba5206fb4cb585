//! A client in a process of its own, for faults that need one: killed with
//! SIGKILL mid-transfer, or many of them while the server's process runs out
//! of descriptors. `tether-torture fault-peer ADDR SIZE SEED CONN` waits for
//! a line on stdin, connects, sends its stream while reading the echo, shuts
//! down, reads to the end, and prints `ok GOT DAMAGE` (or `error ...`).

use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use crate::pattern::{Pattern, Source, Tally};

/// The subcommand's name.
pub(crate) const PEER: &str = "fault-peer";

/// The child's main: arguments after the subcommand's name.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let parsed = (|| {
        let addr = args.first()?.clone();
        let size: u64 = args.get(1)?.parse().ok()?;
        let seed: u64 = args.get(2)?.parse().ok()?;
        let conn: u64 = args.get(3)?.parse().ok()?;
        Some((addr, size, seed, conn))
    })();
    let Some((addr, size, seed, conn)) = parsed else {
        eprintln!("usage: tether-torture {PEER} ADDR SIZE SEED CONN");
        return ExitCode::from(2);
    };
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match exchange(&addr, size, seed, conn) {
        Ok((got, damage)) => {
            println!("ok {got} {damage}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}

fn exchange(addr: &str, size: u64, seed: u64, conn: u64) -> std::io::Result<(u64, u64)> {
    let stream = TcpStream::connect(addr)?;
    // A server that leaves it waiting this long has failed it.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(std::time::Duration::from_secs(60)))?;
    // Connected: the parent may act (a kill waits for this line).
    println!("connected {}", stream.local_addr()?.port());
    std::io::stdout().flush()?;
    let mut writer = stream.try_clone()?;
    let sending = std::thread::spawn(move || -> std::io::Result<()> {
        let mut source = Source::new(Pattern::new(seed, conn, 0));
        let mut buf = Vec::new();
        while source.sent < size {
            let n = (size - source.sent).min(64 * 1024) as usize;
            source.next(n, &mut buf);
            writer.write_all(&buf)?;
        }
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut tally = Tally::new(Pattern::new(seed, conn, 0));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf)? {
            0 => break,
            n => tally.take(&buf[..n]),
        }
    }
    sending
        .join()
        .map_err(|_| std::io::Error::other("sender panicked"))??;
    Ok((tally.got, tally.damage(size)))
}
