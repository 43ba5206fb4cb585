//! `tether connect` and `tether listen`: the loop, its sockets and the stdin
//! thread set up, then run to the exit status. The sockets' users are in
//! [`users`](crate::users); what stdin and stdout carry, in
//! [`stdio`](crate::stdio).

use tether::{ApiError, HttpOptions, IoMux, RecvMode};

use crate::app::{App, Role, READ};
use crate::events::Events;
use crate::options::{Kind, Settings, UsageError};
use crate::signals;
use crate::stdin;
use crate::stdio::stdin_ended;
use crate::users::{tcp_options, Datagrams, Listener, Relay};

/// `tether connect`: the exit status.
pub(crate) fn connect(set: Settings) -> Result<u8, UsageError> {
    let Some(mut mux) = new_loop(set, Role::Connect) else {
        return Ok(1);
    };
    let (addr, kind, timeouts, linger) = {
        let set = &mux.shared().set;
        (set.addr.clone(), set.kind, set.timeouts, set.linger)
    };
    let insecure = mux.shared().set.tls.as_ref().is_some_and(|t| t.insecure)
        || mux.shared().set.dtls.as_ref().is_some_and(|d| d.insecure);
    if insecure {
        let warning = "--insecure: the server's certificate is not verified; \
                       anyone in the path can read and change this connection";
        match &mux.shared().events {
            Some(events) => events.warning(None, warning),
            None => eprintln!("tether: warning: {warning}"),
        }
    }
    let s = if kind == Kind::Udp {
        let s = mux.udp(Datagrams);
        let _ = mux.set_timeouts(s, timeouts);
        let _ = mux.connect(s, &addr);
        s
    } else if kind == Kind::Dtls {
        certificate(&mux);
        let s = mux.udp(Relay);
        let _ = mux.set_timeouts(s, timeouts);
        let ctx = mux.shared().set.dtls.as_ref().map(|d| d.ctx.clone());
        if let Some(ctx) = ctx {
            if let Err(e) = mux.connect_dtls(s, &addr, &ctx) {
                return Err(UsageError(format!("--dtls: {e}")));
            }
        }
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
        tcp_options(&mut mux, s);
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
    let role = if set.echo || set.reject.is_some() || set.http.is_some() {
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
    } else if kind == Kind::Dtls {
        certificate(&mux);
        // One UDP socket; each peer that completes the cookie exchange is an
        // association of its own. The listener's end ends them all, so it
        // stays open while they run: `listen` takes one peer by its limit.
        let l = mux.udp(Listener);
        let _ = mux.bind(l, &addr);
        let ctx = mux.shared().set.dtls.as_ref().map(|d| d.ctx.clone());
        if let Some(ctx) = ctx {
            if let Err(e) = mux.listen_dtls(l, &ctx) {
                if !matches!(e, ApiError::Refused(_)) {
                    return Err(UsageError(format!("--dtls: {e}")));
                }
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
        if role == Role::Serve {
            mux.shared_mut().stop.open.insert(l);
        }
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
        if let Some(keep_open) = mux.shared().set.http.as_ref().map(|h| h.keep_open) {
            if let Err(e) = mux.set_http(l, HttpOptions::default().keep_open(keep_open)) {
                return Err(UsageError(format!("--http: {e}")));
            }
        }
        let _ = mux.set_timeouts(l, timeouts);
        tcp_options(&mut mux, l);
        let max = if role == Role::Serve {
            max_conns
        } else {
            Some(1)
        };
        let _ = mux.max_connections(l, max);
        mux.shared_mut().listener = Some(l);
        if role == Role::Serve {
            mux.shared_mut().stop.open.insert(l);
        }
    }
    if role != Role::Serve {
        start_stdin(&mut mux);
    }
    Ok(run(mux))
}

/// `--dtls`: our certificate's fingerprint, for the peer to pin: a
/// `certificate` event with --events; else, for a certificate made for the
/// run, a line on stderr when listening.
fn certificate(mux: &IoMux<App>) {
    let app = mux.shared();
    let Some(dtls) = &app.set.dtls else { return };
    let fingerprint = dtls.ctx.fingerprint();
    let generated = dtls.ctx.is_self_signed();
    match &app.events {
        Some(e) => e.certificate(&fingerprint, generated),
        None if generated && app.role != Role::Connect => {
            eprintln!(
                "tether: DTLS certificate made for this run, SHA-256 fingerprint {fingerprint}"
            )
        }
        None => {}
    }
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
        stdout_closed: false,
        in_flight: false,
        exit: 1,
        stop: Default::default(),
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
    signals::watch(&mut mux);
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
