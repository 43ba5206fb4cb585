//! `tether connect` and `tether listen`: the loop, its sockets and the stdin
//! thread set up, then run to the exit status. The sockets' users are in
//! [`users`](crate::users); what stdin and stdout carry, in
//! [`stdio`](crate::stdio).

use tether::{ApiError, IoMux, RecvMode};

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
    if mux.shared().set.tls.as_ref().is_some_and(|t| t.insecure) {
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
