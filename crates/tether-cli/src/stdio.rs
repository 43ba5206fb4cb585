//! stdin to the socket and the socket to stdout: each chunk of stdin sent
//! (and acknowledged to its thread once it went), `--on-eof` carried out when
//! stdin ends, received bytes written out.

use std::io::Write as _;
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
        on_eof(cx, s);
    }
}

/// The chunk of stdin went out: the thread may read the next.
pub(crate) fn ack(cx: &mut Cx<App>) {
    if let Some(ack) = &cx.shared().ack {
        let _ = ack.send(());
    }
}

/// stdin ended: do what --on-eof says (unless the connection is already
/// ending some other way).
fn on_eof(cx: &mut Cx<App>, s: SocketId) {
    if matches!(cx.state(s), State::Closing | State::NotConnected) {
        return;
    }
    let (action, kind, role, linger) = {
        let set = &cx.shared().set;
        (set.on_eof, set.kind, cx.shared().role, set.linger)
    };
    if let Some(e) = events(cx) {
        e.stdin_eof(s, action.as_str());
    }
    let farewell = cx.shared().set.farewell.clone();
    let done = match (kind, action) {
        (Kind::Udp, OnEof::HalfClose) => {
            // UDP has no half-close: wait for replies until quiet.
            let wait = linger.or((role == Role::Connect).then_some(UDP_WAIT));
            if let Some(wait) = wait {
                quiet_wait(cx, s, wait);
            }
            Ok(())
        }
        (Kind::Udp, action) => {
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
/// line. If stdout is gone, the connection is closed and the exit status is 1.
pub(crate) fn output(cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
    if cx.shared().stdout_failed {
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
    if let Err(e) = written {
        cx.shared_mut().stdout_failed = true;
        warn(cx, Some(s), &format!("cannot write to stdout: {e}"));
        let _ = cx.close(s);
    }
}
