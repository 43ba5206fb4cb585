//! stdin to the socket and the socket to stdout: each chunk of stdin sent
//! (and acknowledged to its thread once it went), `--on-eof` carried out when
//! stdin ends, received bytes written out.

use std::io::{ErrorKind, Write as _};
use std::time::Duration;

use tether::{ApiError, Cx, SocketId, State};

use crate::app::{App, Role};
use crate::options::Kind;
use crate::report::{events, warn};
use crate::stdin;
use crate::OnEof;

/// How long `connect --udp` waits for more datagrams after stdin ended,
/// unless `--linger` says.
const UDP_WAIT: Duration = Duration::from_secs(1);

impl stdin::Sink for App {
    fn chunk(cx: &mut Cx<App>, chunk: Vec<u8>) {
        stdin_chunk(cx, chunk);
    }

    fn ended(cx: &mut Cx<App>, error: Option<String>) {
        stdin_ended(cx, error);
    }
}

// ----- stdin, from its thread -----

/// A chunk (or line) of stdin, posted by its thread.
pub(crate) fn stdin_chunk(cx: &mut Cx<App>, chunk: Vec<u8>) {
    if cx.shared().stdout_closed && cx.shared().ack.is_none() {
        // stdout's reader went away: stdin is no longer relayed.
        return;
    }
    cx.shared_mut().held = Some(chunk);
    flush_stdin(cx);
}

/// stdin ended (`error`: a read failed, which ends it too).
pub(crate) fn stdin_ended(cx: &mut Cx<App>, error: Option<String>) {
    if let Some(e) = error {
        let s = cx.shared().conn;
        warn(cx, s, &format!("stdin: {e}; taken as its end"));
    }
    cx.shared_mut().stdin_ended = true;
    flush_stdin(cx);
}

/// Send the held chunk if there is somewhere to send it; once stdin ended
/// and everything went, carry out --on-eof.
pub(crate) fn flush_stdin(cx: &mut Cx<App>) {
    let app = cx.shared_mut();
    let Some(s) = app.conn else { return };
    if let Some(chunk) = app.held.take() {
        let udp_listen = app.set.kind == Kind::Udp && app.role == Role::Listen;
        let sent = match (udp_listen, app.udp_peer) {
            (false, _) => cx.send(s, &chunk),
            (true, Some(peer)) => cx.send_to(s, &chunk, peer),
            (true, None) => {
                // No peer yet: the first datagram's sender will be.
                app.held = Some(chunk);
                return;
            }
        };
        if sent.is_ok() {
            cx.shared_mut().in_flight = true;
        }
        if let Err(e) = sent {
            if !matches!(e, ApiError::StaleSocket(_)) {
                warn(
                    cx,
                    Some(s),
                    &format!("{} bytes of stdin not sent: {e}", chunk.len()),
                );
            }
            ack(cx);
        }
        return;
    }
    if app.stdin_ended && !app.eof_applied {
        app.eof_applied = true;
        on_eof(cx, s, true);
    }
}

/// The chunk of stdin went out: the thread may read the next.
pub(crate) fn ack(cx: &mut Cx<App>) {
    cx.shared_mut().in_flight = false;
    if let Some(ack) = &cx.shared().ack {
        let _ = ack.send(());
    }
}

/// stdin ended, or (`from_stdin` false) stdout's reader went away: do what
/// --on-eof says (unless the connection is already ending some other way).
fn on_eof(cx: &mut Cx<App>, s: SocketId, from_stdin: bool) {
    if matches!(cx.state(s), State::Closing | State::NotConnected) {
        return;
    }
    let (action, kind, role, linger) = {
        let set = &cx.shared().set;
        (set.on_eof, set.kind, cx.shared().role, set.linger)
    };
    if let Some(e) = events(cx).filter(|_| from_stdin) {
        e.stdin_eof(s, action.as_str());
    }
    let farewell = cx.shared().set.farewell.clone();
    let done = match (kind, action) {
        (Kind::Udp | Kind::Dtls, OnEof::HalfClose) => {
            // UDP has no half-close: wait for replies until quiet.
            let wait = linger.or((role == Role::Connect).then_some(UDP_WAIT));
            if let Some(wait) = wait {
                quiet_wait(cx, s, wait);
            }
            Ok(())
        }
        (Kind::Udp | Kind::Dtls, action) => {
            cx.shared_mut().ending = true;
            match action {
                OnEof::Reset => cx.reset(s),
                OnEof::Discard => cx.discard(s),
                _ => cx.close(s),
            }
        }
        (_, OnEof::HalfClose) => match (kind, farewell) {
            (Kind::Framed, farewell) => cx.shutdown_with(s, &farewell.unwrap_or_default()),
            _ => cx.shutdown(s),
        },
        (_, OnEof::Close) => match (kind, farewell) {
            (Kind::Framed, Some(farewell)) => {
                cx.shutdown_with(s, &farewell).and_then(|()| cx.close(s))
            }
            _ => cx.close(s),
        },
        (_, OnEof::Reset) => cx.reset(s),
        (_, OnEof::Discard) => cx.discard(s),
    };
    if let Err(e) = done {
        if !matches!(e, ApiError::StaleSocket(_)) {
            warn(
                cx,
                Some(s),
                &format!("stdin ended, but {}: {e}", action.as_str()),
            );
        }
    }
}

/// UDP after stdin's end: close once nothing moved for `wait`.
fn quiet_wait(cx: &mut Cx<App>, s: SocketId, wait: Duration) {
    let Some(idle) = cx.idle_for(s) else { return };
    if idle >= wait {
        cx.shared_mut().ending = true;
        let _ = cx.close(s);
    } else {
        cx.set_timer(wait - idle, move |cx| quiet_wait(cx, s, wait));
    }
}

// ----- output -----

/// Received bytes to stdout: as they are, or (framed, UDP) one message per
/// line. If stdout's reader went away (EPIPE), the connection ends as
/// --on-eof says, quietly; any other failure closes the connection and makes
/// the exit status 1.
pub(crate) fn output(cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
    if cx.shared().stdout_failed || cx.shared().stdout_closed {
        return;
    }
    let by_line = cx.shared().set.kind.by_line();
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(data)
        .and_then(|()| {
            if by_line {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    drop(out);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => stdout_gone(cx, s),
        Err(e) => {
            cx.shared_mut().stdout_failed = true;
            warn(cx, Some(s), &format!("cannot write to stdout: {e}"));
            let _ = cx.close(s);
        }
    }
}

/// The peer finished sending and all it sent is written: close stdout, so
/// that whoever reads it sees its end (the next in a pipeline, a fifo).
pub(crate) fn close_stdout(cx: &mut Cx<App>, s: SocketId) {
    if cx.shared().stdout_closed || cx.shared().stdout_failed {
        return;
    }
    cx.shared_mut().stdout_closed = true;
    let _ = std::io::stdout().lock().flush();
    // fd 1 becomes /dev/null: the old one, the reader's pipe, is closed.
    let closed = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .and_then(|null| rustix::stdio::dup2_stdout(&null).map_err(std::io::Error::from));
    if let Err(e) = closed {
        warn(cx, Some(s), &format!("cannot close stdout: {e}"));
    }
}

/// stdout's reader went away (`tether connect ... | head`): that is how a
/// pipeline ends. stdin is no longer relayed, the connection ends as
/// --on-eof says, and what still arrives is dropped.
fn stdout_gone(cx: &mut Cx<App>, s: SocketId) {
    let app = cx.shared_mut();
    app.stdout_closed = true;
    app.held = None;
    // The stdin thread stops at its next chunk.
    app.ack = None;
    let keep_open = app.set.keep_open;
    let listener = app.listener;
    if !app.eof_applied {
        app.eof_applied = true;
        on_eof(cx, s, false);
    }
    // listen --keep-open: no one is left to relay later clients to.
    if let (true, Some(l)) = (keep_open, listener) {
        let _ = cx.close(l);
    }
}
