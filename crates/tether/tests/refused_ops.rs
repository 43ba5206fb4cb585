//! A refused operation names the operation that was asked, not another one:
//! `max_connections` on a socket that is not a listener, a TCP option set
//! before the socket has a descriptor, `set_framing` once it is connecting.
//!
//! Each has an `Op` of its own (`Op::MaxConnections`, `Op::SetOption`,
//! `Op::SetFraming`), and names the state that refused it.

use std::net::TcpListener;
use std::time::Duration;

use tether::{ApiError, Closed, Cx, IoMux, Keepalive, Op, Refused, SocketId, SocketUser, State};

/// A user that does nothing.
struct Idle;

impl SocketUser for Idle {
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
}

/// The refusal `r` must be, or panic saying what came instead.
fn refused(r: Result<(), ApiError>) -> Refused {
    match r {
        Err(ApiError::Refused(refused)) => refused,
        other => panic!("not refused: {other:?}"),
    }
}

fn keepalive() -> Keepalive {
    Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(5),
        count: 3,
    }
}

/// The three refusals, each with what it is about.
fn refusals() -> Vec<(&'static str, Refused)> {
    let mut m = IoMux::new(()).expect("event loop");
    let plain = m.stream(Idle);
    let max = refused(m.max_connections(plain, Some(1)));
    let keep = refused(m.set_keepalive(plain, Some(keepalive())));
    let user_timeout = refused(m.set_user_timeout(plain, Some(Duration::from_secs(1))));
    let peer = TcpListener::bind("127.0.0.1:0").expect("peer listens");
    let c = m.stream(Idle);
    m.connect(c, &peer.local_addr().unwrap().to_string())
        .expect("connect");
    let framing = refused(m.set_framing(c, b"hello"));
    vec![
        ("max_connections", max),
        ("set_keepalive", keep),
        ("set_user_timeout", user_timeout),
        ("set_framing", framing),
    ]
}

/// Each refusal names the state that refused it.
#[test]
fn refusals_name_the_state_that_refused() {
    let states: Vec<(&str, State)> = refusals()
        .into_iter()
        .map(|(what, r)| (what, r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("max_connections", State::NotConnected),
            ("set_keepalive", State::NotConnected),
            ("set_user_timeout", State::NotConnected),
            ("set_framing", State::Connecting),
        ]
    );
}

/// None of them names an operation that was not asked: neither `listen` nor
/// `connect`.
#[test]
fn refusals_name_no_other_operation() {
    let wrong: Vec<String> = refusals()
        .into_iter()
        .filter(|(_, r)| matches!(r.op, Op::Listen | Op::Connect))
        .map(|(what, r)| format!("{what} refused as {:?}: {r}", r.op))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The text names the operation asked, as the API spells it or in words:
/// `max_connections` (`Op::MaxConnections`),
/// `set_option` for a TCP option (`Op::SetOption`), `set_framing`
/// (`Op::SetFraming`).
#[test]
fn refusals_name_the_operation_asked() {
    let want = ["max_connections", "set_option", "set_option", "set_framing"];
    let wrong: Vec<String> = refusals()
        .into_iter()
        .zip(want)
        .map(|((what, r), op)| (what, r.to_string(), op))
        .filter(|(_, text, op)| {
            // As the API spells it or in words ("set framing on").
            let words = text.replace('_', " ");
            !words.contains(&op.replace('_', " "))
                || words.contains("listen")
                || words.contains("connect ")
        })
        .map(|(what, text, op)| format!("{what}: {text:?} should name {op}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
