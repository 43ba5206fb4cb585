//! What the command tells: `--events` lines, warnings, and how the
//! command's connection ended (with the exit status it decides).

use tether::{Closed, Cx, Reason, SocketId, State, TlsInfo};

use crate::app::{App, Role};
use crate::events::Events;

/// A problem outside any socket's lifecycle: a `warning` event, or a line.
pub(crate) fn warn(cx: &Cx<App>, s: Option<SocketId>, message: &str) {
    match events(cx) {
        Some(e) => e.warning(s, message),
        None => eprintln!("tether: {message}"),
    }
}

/// The `--events` writer, if on.
pub(crate) fn events(cx: &Cx<App>) -> Option<&Events> {
    cx.shared().events.as_ref()
}

pub(crate) fn ev_state(cx: &Cx<App>, s: SocketId, from: State, to: State) {
    if let Some(e) = events(cx) {
        e.state(s, from, to);
    }
}

pub(crate) fn ev_connected(cx: &Cx<App>, s: SocketId) {
    if let Some(e) = events(cx) {
        e.connected(s, cx.local_addr(s), cx.peer_addr(s));
    }
}

pub(crate) fn ev_resolved(cx: &Cx<App>, s: SocketId, addrs: &[std::net::SocketAddr]) {
    if let Some(e) = events(cx) {
        e.resolved(s, &cx.shared().set.addr, addrs);
    }
}

pub(crate) fn ev_accepted(cx: &Cx<App>, s: SocketId) {
    if let Some(e) = events(cx) {
        e.accepted(s, cx.shared().listener, cx.peer_addr(s));
    }
}

/// `tls`, and with DTLS-SRTP `keying_material` after it.
pub(crate) fn ev_tls(cx: &Cx<App>, s: SocketId, info: &TlsInfo) {
    let Some(e) = events(cx) else { return };
    let local = cx.shared().set.dtls.as_ref().map(|d| d.ctx.fingerprint());
    e.tls(s, info, local);
    if let Some(keys) = cx.srtp_keying_material(s) {
        e.keying_material(s, &keys);
    }
}

pub(crate) fn ev_closed(cx: &Cx<App>, s: SocketId, c: &Closed) {
    if let Some(e) = events(cx) {
        e.closed(s, c);
    }
}

/// How a connection ended, as one line for people (without --events).
pub(crate) fn describe(c: &Closed) -> String {
    let mut text = c.reason.as_str().to_string();
    if let Some(e) = &c.error {
        text.push_str(&format!(" ({e})"));
    }
    if let Some(data) = &c.farewell {
        if c.reason == Reason::ConnectRejected {
            text.push_str(&format!(
                ", rejected with {:?}",
                String::from_utf8_lossy(data)
            ));
        }
    }
    if c.unsent > 0 {
        text.push_str(&format!(", {} bytes unsent", c.unsent));
    }
    if c.unread > 0 {
        text.push_str(&format!(", {} bytes unread", c.unread));
    }
    text
}

/// The command's connection closed: decide the exit status and stop.
pub(crate) fn finish(cx: &mut Cx<App>, s: SocketId, c: &Closed, graceful: bool) {
    ev_closed(cx, s, c);
    let app = cx.shared_mut();
    app.exit = if graceful { 0 } else { 1 };
    app.ack = None;
    app.conn = None;
    if !graceful && app.events.is_none() {
        let who = match app.role {
            Role::Connect => format!("connection to {}", app.peer_label),
            _ if app.peer_label.is_empty() => "connection".to_string(),
            _ => format!("connection from {}", app.peer_label),
        };
        eprintln!("tether: {who} ended: {}", describe(c));
    }
    cx.terminate();
}
