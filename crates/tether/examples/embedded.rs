//! An echo server inside a program that has an event loop of its own: the
//! program waits in `poll(2)` on stdin and on the tether loop's descriptor at
//! once, and turns the loop when the descriptor is readable or its next
//! deadline has come. A line `quit` on stdin (or stdin's end) stops the loop:
//! the turn that follows closes every socket, each with its `on_closed`.
//!
//! ```text
//! cargo run -p tether --example embedded -- 127.0.0.1:7000
//! printf 'hello\n' | nc -N 127.0.0.1 7000
//! ```

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use tether::{Admission, Closed, Cx, IoMux, PeerInfo, RecvMode, SocketId, SocketUser, Turn};

struct Listener;

impl SocketUser for Listener {
    fn on_bound(&mut self, _: &mut Cx, _: SocketId, local: &tether::SockAddr) {
        println!("listening on {local}; type quit to stop");
    }
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        match &closed.error {
            Some(e) => eprintln!("listener ended: {}: {e}", closed.reason),
            None => println!("listener ended: {}", closed.reason),
        }
    }
}

struct Echo;

impl SocketUser for Echo {
    fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx, s: SocketId, closed: &Closed) {
        println!("{s} closed: {}", closed.reason);
    }
}

/// Wait in poll(2) for `fds` to be readable, at most `timeout` (`None`: no
/// limit). Which of them are readable.
fn wait_readable(fds: &[i32], timeout: Option<Duration>) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // Round up, so a deadline 0.3 ms away is not a busy wait of zeros.
    let ms = timeout.map_or(-1, |t| {
        t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    });
    // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd structures that
    // lives across the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if n < 0 {
        // EINTR and the like: report nothing readable, the caller comes back.
        return vec![false; fds.len()];
    }
    pfds.iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP) != 0)
        .collect()
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let mut mux = IoMux::new(()).expect("event loop");
    mux.listen_on(&addr, Listener);
    let stdin = std::io::stdin();
    let mut stdin_open = true;
    loop {
        let fds = [mux.as_raw_fd(), stdin.as_raw_fd()];
        let watched = if stdin_open { &fds[..] } else { &fds[..1] };
        let ready = wait_readable(watched, mux.poll_timeout());
        if stdin_open && ready[1] {
            // The program's own work: here, one line of input.
            let mut line = String::new();
            let n = stdin.lock().read_line(&mut line).unwrap_or(0);
            if n == 0 || line.trim() == "quit" {
                stdin_open = false;
                mux.terminate();
            }
        }
        // Readable or not, a turn with a zero timeout never blocks: it takes in
        // what is there and fires what is due.
        match mux.turn(Some(Duration::ZERO)) {
            Ok(Turn::Running) => {}
            Ok(Turn::Stopped) => return ExitCode::SUCCESS,
            Ok(Turn::Idle) => return ExitCode::FAILURE, // the listener ended
            Err(e) => {
                eprintln!("event loop: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
