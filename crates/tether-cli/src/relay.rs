//! The socket users of `connect` and `listen`: stdin to the socket, the socket
//! to stdout, `--echo`, and every lifecycle event to `--events`.
//!
//! Three shapes:
//! - [`Relay`]: the one connection of `connect` and of `listen` without
//!   `--echo`. Its end is the command's end and decides the exit status.
//! - [`Echo`]: each connection of `listen --echo`; the command runs on.
//! - [`Datagrams`]: the UDP socket of `connect --udp` and `listen --udp`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::Duration;

use tether::{
    Admission, ApiError, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SockAddr, SocketId,
    SocketUser, State, TlsInfo,
};

use crate::events::Events;
use crate::options::{Kind, Settings, UsageError};
use crate::{stdin, OnEof};

/// Bytes asked for per recv: a stream chunk, or any datagram whole.
const READ: usize = 64 * 1024;

/// How long `connect --udp` waits for more datagrams after stdin ended,
/// unless `--linger` says.
const UDP_WAIT: Duration = Duration::from_secs(1);

/// What the command is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `connect`.
    Connect,
    /// `listen` for one connection (or, on UDP, one first peer).
    Listen,
    /// `listen --echo` or `--reject`: every client, until killed.
    Serve,
}

/// The state the loop shares with every callback and with the stdin thread.
#[derive(Debug)]
pub(crate) struct App {
    set: Settings,
    role: Role,
    events: Option<Events>,
    /// Where stdin goes: the connection, or the UDP socket.
    conn: Option<SocketId>,
    listener: Option<SocketId>,
    /// `listen --udp`: stdin goes to the first sender.
    udp_peer: Option<SocketAddr>,
    /// Who the connection is with, for messages.
    peer_label: String,
    /// A chunk of stdin waiting for a connection (or a UDP peer).
    held: Option<Vec<u8>>,
    stdin_ended: bool,
    eof_applied: bool,
    /// Tells the stdin thread its chunk went out.
    ack: Option<Sender<()>>,
    /// `listen` without --echo: the one connection was admitted.
    taken: bool,
    /// UDP: we ended the socket, because stdin ended.
    ending: bool,
    stdout_failed: bool,
    exit: u8,
}

/// `tether connect`: the exit status.
pub(crate) fn connect(set: Settings) -> Result<u8, UsageError> {
    let Some(mut mux) = new_loop(set, Role::Connect) else {
        return Ok(1);
    };
    let (addr, kind, timeouts, linger) = {
        let set = &mux.shared().set;
        (set.addr.clone(), set.kind, set.timeouts, set.linger)
    };
    let s = if kind == Kind::Udp {
        let s = mux.udp(Datagrams);
        let _ = mux.set_timeouts(s, timeouts);
        let _ = mux.connect(s, &addr);
        s
    } else {
        let s = mux.stream(Relay);
        if kind == Kind::Framed {
            let hello = mux.shared().set.hello.clone();
            let _ = mux.set_framing(s, &hello);
        }
        let _ = mux.set_timeouts(s, timeouts);
        if let Some(linger) = linger {
            let _ = mux.set_linger(s, linger);
        }
        match mux
            .shared()
            .set
            .tls
            .as_ref()
            .map(|t| (t.ctx.clone(), t.server_name.clone()))
        {
            Some((ctx, name)) => match mux.connect_tls(s, &addr, &name, &ctx) {
                Err(ApiError::BadServerName(_)) => {
                    return Err(UsageError(format!(
                        "--server-name {name:?} is not a DNS name or IP address"
                    )))
                }
                Err(e) => return Err(UsageError(format!("--tls: {e}"))),
                Ok(()) => {}
            },
            None => {
                let _ = mux.connect(s, &addr);
            }
        }
        s
    };
    let _ = mux.recv(s, READ, RecvMode::Partial);
    mux.shared_mut().conn = Some(s);
    mux.shared_mut().peer_label = addr;
    start_stdin(&mut mux);
    Ok(run(mux))
}

/// `tether listen`: the exit status.
pub(crate) fn listen(set: Settings) -> Result<u8, UsageError> {
    let role = if set.echo || set.reject.is_some() {
        Role::Serve
    } else {
        Role::Listen
    };
    let Some(mut mux) = new_loop(set, role) else {
        return Ok(1);
    };
    let (addr, kind, timeouts, max_conns) = {
        let set = &mux.shared().set;
        (set.addr.clone(), set.kind, set.timeouts, set.max_conns)
    };
    if kind == Kind::Udp {
        let s = mux.udp(Datagrams);
        let _ = mux.bind(s, &addr);
        let _ = mux.set_timeouts(s, timeouts);
        let _ = mux.recv(s, READ, RecvMode::Partial);
        mux.shared_mut().conn = Some(s);
    } else {
        let l = mux.stream(Listener);
        if kind == Kind::Framed {
            let _ = mux.set_framing(l, b"");
        }
        let _ = mux.bind(l, &addr);
        match mux.shared().set.tls.as_ref().map(|t| t.ctx.clone()) {
            Some(ctx) => {
                if let Err(e) = mux.listen_tls(l, &ctx) {
                    if !matches!(e, ApiError::Refused(_)) {
                        return Err(UsageError(format!("--tls: {e}")));
                    }
                }
            }
            None => {
                let _ = mux.listen(l);
            }
        }
        let _ = mux.set_timeouts(l, timeouts);
        let max = if role == Role::Serve {
            max_conns
        } else {
            Some(1)
        };
        let _ = mux.max_connections(l, max);
        mux.shared_mut().listener = Some(l);
    }
    if role != Role::Serve {
        start_stdin(&mut mux);
    }
    Ok(run(mux))
}

fn new_loop(set: Settings, role: Role) -> Option<IoMux<App>> {
    let app = App {
        events: set.events.then(Events::new),
        set,
        role,
        conn: None,
        listener: None,
        udp_peer: None,
        peer_label: String::new(),
        held: None,
        stdin_ended: false,
        eof_applied: false,
        ack: None,
        taken: false,
        ending: false,
        stdout_failed: false,
        exit: 1,
    };
    match IoMux::new(app) {
        Ok(mux) => Some(mux),
        Err(e) => {
            eprintln!("tether: cannot start the event loop: {e}");
            None
        }
    }
}

fn start_stdin(mux: &mut IoMux<App>) {
    let by_line = mux.shared().set.kind.by_line();
    match stdin::spawn(mux.handle(), by_line) {
        Ok(ack) => mux.shared_mut().ack = Some(ack),
        Err(e) => stdin_ended(mux, Some(format!("cannot start reading stdin: {e}"))),
    }
}

fn run(mut mux: IoMux<App>) -> u8 {
    if let Err(e) = mux.run() {
        eprintln!("tether: the event loop failed: {e}");
        return 1;
    }
    let app = mux.shared();
    if app.stdout_failed {
        1
    } else {
        app.exit
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
fn flush_stdin(cx: &mut Cx<App>) {
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
fn ack(cx: &mut Cx<App>) {
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
fn output(cx: &mut Cx<App>, s: SocketId, data: &[u8]) {
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

/// A problem outside any socket's lifecycle: a `warning` event, or a line.
fn warn(cx: &Cx<App>, s: Option<SocketId>, message: &str) {
    match events(cx) {
        Some(e) => e.warning(s, message),
        None => eprintln!("tether: {message}"),
    }
}

// ----- events -----

/// The `--events` writer, if on.
fn events(cx: &Cx<App>) -> Option<&Events> {
    cx.shared().events.as_ref()
}

fn ev_state(cx: &Cx<App>, s: SocketId, from: State, to: State) {
    if let Some(e) = events(cx) {
        e.state(s, from, to);
    }
}

fn ev_connected(cx: &Cx<App>, s: SocketId) {
    if let Some(e) = events(cx) {
        e.connected(s, cx.local_addr(s), cx.peer_addr(s));
    }
}

fn ev_accepted(cx: &Cx<App>, s: SocketId) {
    if let Some(e) = events(cx) {
        e.accepted(s, cx.shared().listener, cx.peer_addr(s));
    }
}

fn ev_closed(cx: &Cx<App>, s: SocketId, c: &Closed) {
    if let Some(e) = events(cx) {
        e.closed(s, c);
    }
}

/// How a connection ended, as one line for people (without --events).
fn describe(c: &Closed) -> String {
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
fn finish(cx: &mut Cx<App>, s: SocketId, c: &Closed, graceful: bool) {
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

// ----- the users -----

/// The one connection whose bytes stdin and stdout carry.
#[derive(Debug)]
struct Relay;

impl SocketUser<App> for Relay {
    fn on_connected(&mut self, cx: &mut Cx<App>, s: SocketId) {
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
        if let Some(l) = app.listener {
            let _ = cx.close(l);
        }
        flush_stdin(cx);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_tls_ready(&mut self, cx: &mut Cx<App>, s: SocketId, info: &TlsInfo) {
        if let Some(e) = events(cx) {
            e.tls(s, info);
        }
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
    }

    fn on_closed(&mut self, cx: &mut Cx<App>, s: SocketId, closed: &Closed) {
        let graceful = closed.reason.is_graceful();
        finish(cx, s, closed, graceful);
    }
}

/// One connection of `listen --echo`: what arrives goes back; the peer's end
/// is answered with ours (and --farewell).
#[derive(Debug)]
struct Echo;

impl SocketUser<App> for Echo {
    fn on_accepted(&mut self, cx: &mut Cx<App>, s: SocketId) {
        ev_accepted(cx, s);
        if let Some(linger) = cx.shared().set.linger {
            let _ = cx.set_linger(s, linger);
        }
        let _ = cx.recv(s, READ, RecvMode::Partial);
    }

    fn on_state(&mut self, cx: &mut Cx<App>, s: SocketId, from: State, to: State) {
        ev_state(cx, s, from, to);
    }

    fn on_tls_ready(&mut self, cx: &mut Cx<App>, s: SocketId, info: &TlsInfo) {
        if let Some(e) = events(cx) {
            e.tls(s, info);
        }
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
    }
}

/// The listening socket.
#[derive(Debug)]
struct Listener;

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
        if matches!(closed.reason, Reason::Normal | Reason::Stopped) {
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
struct Datagrams;

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
