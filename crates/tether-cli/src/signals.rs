//! SIGINT (Ctrl-C) and SIGTERM on `connect` and `listen`.
//!
//! The first signal stops listening and closes every connection gracefully
//! (shutdown, drain the peer's end, within `--linger`); the command exits 0
//! once each ended gracefully. A second signal resets what is left at once;
//! the command then exits 1.
//!
//! The signals are read on a thread of their own (signal-hook), which posts
//! each one to the loop.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tether::{Closed, Cx, IoMux, SocketId};

use crate::app::{App, Role};
use crate::options::Kind;

/// Start the thread that turns SIGINT and SIGTERM into graceful ends.
pub(crate) fn watch(mux: &mut IoMux<App>) {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("tether: cannot watch for signals: {e}");
            return;
        }
    };
    let handle = mux.handle();
    let started = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if handle.post(received).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = started {
        eprintln!("tether: cannot watch for signals: {e}");
    }
}

/// A socket of `listen --echo` or `--reject` opened: one more to end.
pub(crate) fn opened(cx: &mut Cx<App>, s: SocketId) {
    cx.shared_mut().stop.open.insert(s);
}

/// A socket of `listen --echo` or `--reject` closed: after a signal, the
/// command ends with the last one.
pub(crate) fn closed(cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
    let app = cx.shared_mut();
    if !app.stop.open.remove(&s) || app.stop.signals == 0 {
        return;
    }
    if !closed.reason.is_graceful() && Some(s) != app.listener {
        app.exit = 1;
    }
    // DTLS: the listener is closed after its associations (its end would
    // end them without their close_notify).
    if let Some(l) = app.listener.filter(|_| app.set.kind == Kind::Dtls) {
        if app.stop.open.len() == 1 && app.stop.open.contains(&l) {
            let _ = cx.close(l);
            return;
        }
    }
    if app.stop.open.is_empty() && app.conn.is_none() {
        cx.terminate();
    }
}

fn received(cx: &mut Cx<App>) {
    let app = cx.shared_mut();
    app.stop.signals = app.stop.signals.saturating_add(1);
    if app.stop.signals == 1 {
        first(cx);
    } else {
        second(cx);
    }
}

/// Stop listening and end every connection gracefully.
fn first(cx: &mut Cx<App>) {
    let app = cx.shared_mut();
    if app.role == Role::Serve {
        // Every end from now on counts; an ungraceful one makes it 1.
        app.exit = 0;
    }
    let (listener, conn, udp) = (app.listener, app.conn, app.set.kind == Kind::Udp);
    let dtls = app.set.kind == Kind::Dtls;
    let open: Vec<SocketId> = app.stop.open.iter().copied().collect();
    // DTLS: the listener last (see `closed`), unless nothing else is open.
    let alone = open.iter().all(|s| Some(*s) == listener);
    if let Some(l) = listener.filter(|_| !dtls || alone) {
        let _ = cx.close(l);
    }
    for s in open {
        // An HTTP-mode connection ends itself: after its response, or now
        // if it waits between requests.
        if Some(s) != listener && cx.close(s).is_err() {
            let _ = cx.end_keep_alive(s);
        }
    }
    match conn {
        // UDP has no graceful close: ending it is the orderly end.
        Some(s) if udp => {
            cx.shared_mut().ending = true;
            let _ = cx.discard(s);
        }
        Some(s) => {
            let _ = cx.close(s);
        }
        // `listen --echo` ends with its last socket's on_closed.
        None if cx.shared().role == Role::Serve => {}
        None => {
            // `listen` before its connection came: nothing to wait for.
            cx.shared_mut().exit = 0;
            cx.terminate();
        }
    }
}

/// Reset what is left.
fn second(cx: &mut Cx<App>) {
    let app = cx.shared_mut();
    app.exit = 1;
    let mut left: Vec<SocketId> = app.stop.open.iter().copied().collect();
    left.extend(app.conn);
    for s in left {
        if cx.reset(s).is_err() {
            let _ = cx.close(s);
        }
    }
    cx.terminate();
}
