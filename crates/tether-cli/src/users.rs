//! The socket users of `connect` and `listen`: stdin to the socket, the socket
//! to stdout, `--echo`, and every lifecycle event to `--events`.
//!
//! Three shapes:
//! - [`Relay`]: the one connection of `connect` and of `listen` without
//!   `--echo`. Its end is the command's end and decides the exit status.
//! - [`Echo`]: each connection of `listen --echo`; the command runs on.
//! - [`Datagrams`]: the UDP socket of `connect --udp` and `listen --udp`.
//!
//! [`Listener`] is the listening socket that hands out `Relay`, `Echo`, or
//! for `listen --http` the [`Files`](crate::http::Files) of each connection.

use std::net::SocketAddr;

use tether::{
    Admission, Closed, Cx, PeerInfo, Reason, RecvMode, SockAddr, SocketId, SocketUser, State,
    TlsInfo,
};

use crate::app::{App, Role, READ};
use crate::options::Kind;
use crate::report::{
    describe, ev_accepted, ev_closed, ev_connected, ev_resolved, ev_state, ev_tls, events, finish,
};
use crate::signals;
use crate::stdio::{ack, close_stdout, flush_stdin, output};

/// The one connection whose bytes stdin and stdout carry.
#[derive(Debug)]
pub(crate) struct Relay;

impl SocketUser<App> for Relay {
    fn on_resolved(&mut self, cx: &mut Cx<App>, s: SocketId, addrs: &[SocketAddr]) {
        ev_resolved(cx, s, addrs);
    }

    fn on_connected(&mut self, cx: &mut Cx<App>, s: SocketId) {
        tcp_options(cx, s);
        ev_connected(cx, s);
    }

    fn on_accepted(&mut self, cx: &mut Cx<App>, s: SocketId) {
        ev_accepted(cx, s);
        if let Some(linger) = cx.shared().set.linger {
            let _ = cx.set_linger(s, linger);
        }
        let _ = cx.recv(s, READ, RecvMode::Partial);
        let label = cx.peer_addr(s).map(|a| a.to_string()).unwrap_or_default();
        let app = cx.shared_mut();
        app.conn = Some(s);
        app.peer_label = label;
        // One connection: stop listening (a unix: socket file goes away).
        // --keep-open listens on, taking the next client after this one.
        // A DTLS listener stays: its end would end this association too;
        // its limit of one keeps others out.
        let dtls = app.set.kind == Kind::Dtls;
        if let (false, false, Some(l)) = (app.set.keep_open, dtls, app.listener) {
            let _ = cx.close(l);
        }
        flush_stdin(cx);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_tls_ready(&mut self, cx: &mut Cx<App>, s: SocketId, info: &TlsInfo) {
        ev_tls(cx, s, info);
    }

    fn on_received(&mut self, cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
        output(cx, s, data);
        let _ = cx.recv(s, READ, RecvMode::Partial);
    }

    fn on_sent(&mut self, cx: &mut Cx<App>, _: SocketId) {
        ack(cx);
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx<App>, s: SocketId, farewell: Option<&[u8]>) {
        if let Some(e) = events(cx) {
            e.peer_shutdown(s, farewell);
        }
        // All the peer sent is written: stdout's reader sees the end too
        // (--keep-open keeps it for the next client).
        if !cx.shared().set.keep_open {
            close_stdout(cx, s);
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        let graceful = closed.reason.is_graceful();
        let app = cx.shared();
        if app.set.keep_open && !app.stdout_closed {
            next_client(cx, s, closed, graceful);
        } else {
            finish(cx, s, closed, graceful);
        }
    }
}

/// `listen --keep-open`: this client's connection ended; stdin (what is left
/// of it) goes to the next.
fn next_client(cx: &mut Cx<App>, s: SocketId, closed: &Closed, graceful: bool) {
    ev_closed(cx, s, closed);
    if !graceful && cx.shared().events.is_none() {
        eprintln!(
            "tether: connection from {} ended: {}",
            cx.shared().peer_label,
            describe(closed)
        );
    }
    let app = cx.shared_mut();
    app.conn = None;
    app.taken = false;
    app.eof_applied = false;
    app.peer_label.clear();
    // A chunk that went to this connection is done with: read the next.
    if app.in_flight {
        ack(cx);
    }
}

/// One connection of `listen --echo`: what arrives goes back; the peer's end
/// is answered with ours (and --farewell).
#[derive(Debug)]
pub(crate) struct Echo;

impl SocketUser<App> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<App>, s: SocketId) {
        ev_accepted(cx, s);
        if let Some(linger) = cx.shared().set.linger {
            let _ = cx.set_linger(s, linger);
        }
        let _ = cx.recv(s, READ, RecvMode::Partial);
        signals::opened(cx, s);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_tls_ready(&mut self, cx: &mut Cx<App>, s: SocketId, info: &TlsInfo) {
        ev_tls(cx, s, info);
    }

    fn on_received(&mut self, cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
        // The next recv waits for on_sent: a client that does not read its
        // echo is not read either.
        if cx.send(s, data).is_err() {
            let _ = cx.recv(s, READ, RecvMode::Partial);
        }
    }

    fn on_sent(&mut self, cx: &mut Cx<App>, s: SocketId) {
        let _ = cx.recv(s, READ, RecvMode::Partial);
    }

    fn on_peer_shutdown(&mut self, cx: &mut Cx<App>, s: SocketId, farewell: Option<&[u8]>) {
        if let Some(e) = events(cx) {
            e.peer_shutdown(s, farewell);
        }
        let ours = cx.shared().set.farewell.clone();
        let _ = match cx.shared().set.kind {
            Kind::Framed => cx.shutdown_with(s, &ours.unwrap_or_default()),
            _ => cx.shutdown(s),
        };
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        ev_closed(cx, s, closed);
        signals::closed(cx, s, closed);
    }
}

/// The listening socket.
#[derive(Debug)]
pub(crate) struct Listener;

impl SocketUser<App> for Listener {
    fn on_bound(&mut self, cx: &mut Cx<App>, s: SocketId, local: &SockAddr) {
        if let Some(e) = events(cx) {
            e.bound(s, local);
        }
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_incoming(&mut self, cx: &mut Cx<App>, l: SocketId, peer: &PeerInfo) -> Admission<App> {
        if let Some(e) = events(cx) {
            e.incoming(l, peer);
        }
        let app = cx.shared_mut();
        if let Some(data) = &app.set.reject {
            return Admission::Reject(data.clone());
        }
        match app.role {
            Role::Serve if app.set.http.is_some() => {
                Admission::Accept(Box::new(crate::http::Files::default()))
            }
            Role::Serve => Admission::Accept(Box::new(Echo)),
            _ if app.taken => Admission::Deny,
            _ => {
                app.taken = true;
                Admission::Accept(Box::new(Relay))
            }
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        ev_closed(cx, s, closed);
        signals::closed(cx, s, closed);
        // A UDP (DTLS) listener we closed ends as a discard.
        let dtls = cx.shared().set.kind == Kind::Dtls;
        if matches!(closed.reason, Reason::Normal | Reason::Stopped)
            || (dtls && closed.reason == Reason::Discarded)
        {
            return;
        }
        // It could not listen (or accept any more): nothing left to do.
        let app = cx.shared_mut();
        app.exit = 1;
        if app.events.is_none() {
            eprintln!(
                "tether: cannot listen on {}: {}",
                app.set.addr,
                describe(closed)
            );
        }
        if app.conn.is_none() {
            cx.terminate();
        }
    }
}

/// The UDP socket: datagrams to stdout (one per line), lines of stdin as
/// datagrams; with --echo, each datagram back to its sender.
#[derive(Debug)]
pub(crate) struct Datagrams;

impl SocketUser<App> for Datagrams {
    fn on_bound(&mut self, cx: &mut Cx<App>, s: SocketId, local: &SockAddr) {
        if let Some(e) = events(cx) {
            e.bound(s, local);
        }
    }

    fn on_connected(&mut self, cx: &mut Cx<App>, s: SocketId) {
        ev_connected(cx, s);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_received(&mut self, cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
        output(cx, s, data);
        let _ = cx.recv(s, READ, RecvMode::Partial);
    }

    fn on_received_from(&mut self, cx: &mut Cx<App>, s: SocketId, data: &[u8], from: SocketAddr) {
        if cx.shared().set.echo {
            // The next recv waits for on_sent, as a stream echo does.
            if cx.send_to(s, data, from).is_err() {
                let _ = cx.recv(s, READ, RecvMode::Partial);
            }
            return;
        }
        output(cx, s, data);
        let _ = cx.recv(s, READ, RecvMode::Partial);
        if cx.shared().udp_peer.is_none() {
            cx.shared_mut().udp_peer = Some(from);
            cx.shared_mut().peer_label = from.to_string();
            flush_stdin(cx);
        }
    }

    fn on_sent(&mut self, cx: &mut Cx<App>, s: SocketId) {
        if cx.shared().set.echo {
            let _ = cx.recv(s, READ, RecvMode::Partial);
        } else {
            ack(cx);
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        // UDP ends only by a discard: ours after stdin's end is the orderly one.
        let graceful = closed.reason == Reason::Discarded && cx.shared().ending;
        finish(cx, s, closed, graceful);
    }
}

/// `--keepalive` and `--user-timeout`, once the socket has its descriptor:
/// after connect to an address or listen (a listener's connections inherit
/// them), and again once connected (a host name has no descriptor until it is
/// resolved). On a unix: socket they do not apply, and are left unset.
pub(crate) fn tcp_options(cx: &mut Cx<App>, s: SocketId) {
    let (keepalive, user_timeout) = {
        let set = &cx.shared().set;
        (set.keepalive, set.user_timeout)
    };
    if keepalive.is_some() {
        let _ = cx.set_keepalive(s, keepalive);
    }
    if user_timeout.is_some() {
        let _ = cx.set_user_timeout(s, user_timeout);
    }
}
