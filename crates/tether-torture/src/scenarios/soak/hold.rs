//! Idle connections held by a child process (this same program, `__hold`),
//! so the server's side of ten thousand connections fits in this process's
//! descriptor limit and the client side in the child's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitCode, Stdio};

/// The child's name for itself on the command line.
pub(crate) const HOLD: &str = "__hold";

/// The child: connect `count` times to `addr`, say `ready N`, hold them until
/// stdin ends.
pub(crate) fn child_main(addr: &str, count: usize) -> ExitCode {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        match TcpStream::connect(addr) {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("tether-torture {HOLD}: connect {addr}: {e}");
                break;
            }
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready {}", held.len());
    let _ = out.flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(held);
    ExitCode::SUCCESS
}

/// The parent's handle on a holding child.
#[derive(Debug)]
pub(crate) struct Holder {
    child: Child,
    /// Connections the child made.
    pub(crate) made: usize,
}

impl Holder {
    /// Start a child holding `count` connections to `addr`; returns once it
    /// made them (it says so on its stdout).
    pub(crate) fn start(addr: &str, count: usize) -> std::io::Result<Holder> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([HOLD, addr, &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let made = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Ok(Holder { child, made })
    }

    /// Let the child go (its connections end with it) and wait for it.
    pub(crate) fn release(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
