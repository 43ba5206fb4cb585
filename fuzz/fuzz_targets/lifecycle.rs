//! The connection lifecycle against random sequences of API calls and
//! peer/kernel events, its rules checked as invariants after every step.
//!
//! Input layout: byte 0 picks how the socket starts (new with or without
//! layers, accepted with layers, datagram, accepted datagram, plain accepted); then each pair
//! of bytes is one step: an operation and its argument (a byte count, a
//! linger, a clock advance, a frame type, a reason). The harness plays a
//! correct driver: it reports `wrote` only for queued bytes, `read` only
//! while the machine wants input, `fin_sent` only after a polled SendFin;
//! everything else, including calls a driver should not make, is fair game
//! and must be refused or ignored. At the end the loop stops (`stop`).
//!
//! Checked, from the public API only:
//! - `Closed` comes exactly once, last, and nothing (event or action) after
//!   it; its reason fits the step that ended the socket, and a graceful one
//!   says who began (our shutdown/close/reject, or the peer's FIN) and, on a
//!   stream that was connected, comes only after our FIN was on the wire.
//! - A terminal action (Release, Reset, Discard) comes exactly with `Closed`,
//!   as the last action; a timer and draining only from `close`/`reject`,
//!   with the deadline `now + linger` (never in the past, saturating for a
//!   linger too long to represent); SendFin at most once, only after
//!   shutdown/close/reject, with nothing queued and no output held.
//! - Connected, Accepted, Secured, PeerShutdown at most once each, and only
//!   where they belong (Connected for a dialer, Accepted for an accepted
//!   socket, Secured with a security layer, PeerShutdown at the peer's end
//!   and never after `close`).
//! - Accounting: `unsent` grows by exactly what `send` accepted and shrinks
//!   only by what `wrote` reported; `unread` grows by exactly what `read`
//!   reported and shrinks only at `delivered`, by at most that much; both
//!   are final once closed. Neither can go negative (they are unsigned: a
//!   wrong subtraction would panic under the overflow checks).
//! - A refused command names the operation and the state it was refused in,
//!   has a message and changes nothing; a refused frame to send changes
//!   nothing; once closed every command is refused.
//! - The queries agree with each other (stage and handshake, a closed
//!   socket's view), and `check_send`/`check_recv` agree with `send`/`recv`.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tether_proto::{
    Action, Event, FrameType, Handshake, Lifecycle, Op, Reason, Refused, Role, Stage, State,
};

const REASONS: [Reason; 20] = [
    Reason::Normal,
    Reason::ByPeer,
    Reason::Reset,
    Reason::Discarded,
    Reason::LingerTimeout,
    Reason::Lost,
    Reason::Stopped,
    Reason::AddressInvalid,
    Reason::OpenFailed,
    Reason::ConnectFailed,
    Reason::ConnectRejected,
    Reason::BindFailed,
    Reason::ListenFailed,
    Reason::AcceptFailed,
    Reason::TlsHandshakeFailed,
    Reason::ProtocolError,
    Reason::ConnectTimeout,
    Reason::HandshakeTimeout,
    Reason::IdleTimeout,
    Reason::ResolveFailed,
];

const KINDS: [FrameType; 5] = [
    FrameType::Hello,
    FrameType::Welcome,
    FrameType::Reject,
    FrameType::Data,
    FrameType::Farewell,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Bind,
    Listen,
    Connect,
    SetSecurity,
    SetMessage(Role),
    StartSecurity,
    Recv,
    Send(usize),
    Shutdown,
    Close(Duration),
    Reject(Duration),
    Reset,
    Discard,
    Stop,
    Connected,
    Secured,
    Admitted,
    FrameIn(FrameType),
    FrameOut(FrameType),
    Wrote(usize),
    FinSent,
    Read(usize),
    Delivered(usize),
    DropHeld,
    FinKnown,
    Eof,
    NothingLeft,
    Fail(Reason),
    Violated,
    Expire(Reason),
    Timeout(Duration),
}

/// A byte count from one byte: small ones mostly, up to 4 GiB (a `u64`
/// counter fed a few thousand of those cannot overflow, as no real stream
/// can make it).
fn count(arg: u8) -> usize {
    usize::from(arg & 0x3f) << (8 * usize::from(arg >> 6))
}

/// A linger or clock advance: zero, milliseconds, seconds, or (255) a
/// duration no `Instant` can add.
fn duration(arg: u8) -> Duration {
    match arg {
        255 => Duration::MAX,
        0..=127 => Duration::from_millis(u64::from(arg) * 16),
        _ => Duration::from_secs(u64::from(arg - 128)),
    }
}

fn step(op: u8, arg: u8) -> Step {
    let kind = KINDS[usize::from(arg) % KINDS.len()];
    // A driver fails a socket for a reason, never with a graceful one.
    let reason = REASONS[2 + usize::from(arg) % (REASONS.len() - 2)];
    match op % 31 {
        0 => Step::Bind,
        1 => Step::Listen,
        2 => Step::Connect,
        3 => Step::SetSecurity,
        4 => Step::SetMessage(if arg & 1 == 0 {
            Role::Client
        } else {
            Role::Server
        }),
        5 => Step::StartSecurity,
        6 => Step::Recv,
        7 => Step::Send(count(arg)),
        8 => Step::Shutdown,
        9 => Step::Close(duration(arg)),
        10 => Step::Reject(duration(arg)),
        11 => Step::Reset,
        12 => Step::Discard,
        13 => Step::Stop,
        14 => Step::Connected,
        15 => Step::Secured,
        16 => Step::Admitted,
        17 => Step::FrameIn(kind),
        18 => Step::FrameOut(kind),
        19 => Step::Wrote(count(arg)),
        20 => Step::FinSent,
        21 => Step::Read(count(arg)),
        22 => Step::Delivered(count(arg)),
        23 => Step::DropHeld,
        24 => Step::FinKnown,
        25 => Step::Eof,
        26 => Step::NothingLeft,
        27 => Step::Fail(reason),
        28 => Step::Violated,
        29 => Step::Expire(reason),
        _ => Step::Timeout(duration(arg)),
    }
}

/// Everything the public API shows, to check that a refused or ignored call
/// changed nothing.
#[derive(Debug, PartialEq)]
struct View {
    state: State,
    closed: Option<Reason>,
    unsent: u64,
    unread: u64,
    handshake: Option<Handshake>,
    stage: Option<Stage>,
    flags: [bool; 10],
}

fn view(l: &Lifecycle) -> View {
    View {
        state: l.state(),
        closed: l.closed(),
        unsent: l.unsent(),
        unread: l.unread(),
        handshake: l.handshake(),
        stage: l.stage(),
        flags: [
            l.is_bound(),
            l.is_datagram(),
            l.wants_input(),
            l.fin_seen(),
            l.is_draining(),
            l.wire_up(),
            l.holds_output(),
            l.recv_pending(),
            l.wants_end_probe(),
            l.is_quiet(),
        ],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Us,
    Peer,
}

/// What the driver knows, kept apart from the machine.
struct Driver {
    now: Instant,
    /// Started accepted (by a listener): hears Accepted, never Connected.
    server: bool,
    /// A security layer was given (at the start, `set_security`, StartTLS).
    security: bool,
    /// A message layer was given.
    message: bool,
    /// Ever connected or accepted: a graceful end needs our FIN out.
    live: bool,
    /// `close` or `reject` succeeded.
    closing: bool,
    /// `shutdown`, `close` or `reject` succeeded.
    send_closed: bool,
    began: Option<Side>,
    fin_polled: bool,
    fin_reported: bool,
    connected: u32,
    /// Successful `connect` calls: a datagram socket may connect again, to
    /// another peer, and hears Connected each time.
    connects: u32,
    accepted: u32,
    secured: u32,
    peer_shutdown: u32,
    closed: Option<Reason>,
    closed_events: u32,
}

/// A command's answer: a refusal names the operation and the state, has a
/// message and changes nothing; once closed, every command is refused.
fn command(d: &Driver, op: Op, before: &View, r: Result<(), Refused>, l: &Lifecycle) -> bool {
    match r {
        Ok(()) => {
            assert!(d.closed.is_none(), "{op:?} accepted after Closed");
            true
        }
        Err(e) => {
            assert_eq!((e.op, e.state), (op, before.state), "{e:?}");
            assert!(!e.to_string().is_empty());
            assert_eq!(&view(l), before, "a refused {op:?} changed the machine");
            false
        }
    }
}

/// Which reasons may end the socket at `step`.
fn allowed(step: Step, reason: Reason) -> bool {
    match step {
        Step::Close(_) => matches!(reason, Reason::Normal | Reason::Discarded),
        Step::Reset => matches!(reason, Reason::Reset | Reason::Discarded),
        Step::Discard => reason == Reason::Discarded,
        Step::Stop => reason == Reason::Stopped,
        Step::Fail(r) | Step::Expire(r) => reason == r,
        Step::Timeout(_) => reason == Reason::LingerTimeout,
        Step::FrameIn(_) => matches!(reason, Reason::ProtocolError | Reason::ConnectRejected),
        Step::Violated => reason == Reason::ProtocolError,
        Step::FinSent | Step::Eof | Step::NothingLeft => reason.is_graceful(),
        _ => false,
    }
}

fn apply(l: &mut Lifecycle, d: &mut Driver, s: Step) {
    let before = view(l);
    let now = d.now;
    let mut ok = false;
    match s {
        Step::Bind => ok = command(d, Op::Bind, &before, l.bind(), l),
        Step::Listen => ok = command(d, Op::Listen, &before, l.listen(), l),
        Step::Connect => {
            ok = command(d, Op::Connect, &before, l.connect(), l);
            d.live |= ok;
            d.connects += u32::from(ok);
        }
        Step::SetSecurity => {
            ok = command(d, Op::SetSecurity, &before, l.set_security(), l);
            d.security |= ok;
        }
        Step::SetMessage(role) => {
            ok = command(d, Op::SetFraming, &before, l.set_message(role), l);
            d.message |= ok;
        }
        Step::StartSecurity => {
            ok = command(d, Op::StartTls, &before, l.start_security(), l);
            if ok {
                assert_eq!(before.state, State::Connected);
                d.security = true;
            }
        }
        Step::Recv => {
            let check = l.check_recv();
            ok = command(d, Op::Recv, &before, l.recv(), l);
            assert_eq!(check.is_ok(), ok, "check_recv disagrees with recv");
            if ok {
                assert!(l.recv_pending());
            }
        }
        Step::Send(n) => {
            let check = l.check_send();
            ok = command(d, Op::Send, &before, l.send(n), l);
            assert_eq!(check.is_ok(), ok, "check_send disagrees with send");
            if ok {
                assert!(!d.send_closed, "send accepted after shutdown/close");
                assert_eq!(l.unsent(), before.unsent + n as u64, "send accounting");
            }
        }
        Step::Shutdown => ok = command(d, Op::Shutdown, &before, l.shutdown(), l),
        Step::Close(linger) => {
            ok = command(d, Op::Close, &before, l.close(now, linger), l);
            d.closing |= ok;
        }
        Step::Reject(linger) => {
            ok = command(d, Op::Reject, &before, l.reject(now, linger), l);
            if ok {
                assert!(d.server && before.handshake == Some(Handshake::Message));
                d.closing = true;
            }
        }
        Step::Reset => ok = command(d, Op::Reset, &before, l.reset(), l),
        Step::Discard => ok = command(d, Op::Discard, &before, l.discard(), l),
        Step::Stop => l.stop(),
        Step::Connected => l.connected(),
        Step::Secured => l.secured(),
        Step::Admitted => l.admitted(),
        Step::FrameIn(kind) => {
            if let Err(e) = l.frame_in(kind) {
                assert!(!e.to_string().is_empty());
                if !d.message {
                    assert_eq!(
                        view(l),
                        before,
                        "a frame without framing changed the machine"
                    );
                }
            }
        }
        Step::FrameOut(kind) => {
            if let Err(e) = l.frame_out(kind) {
                assert!(!e.to_string().is_empty());
                assert_eq!(
                    view(l),
                    before,
                    "a refused frame to send changed the machine"
                );
            }
        }
        Step::Wrote(n) => {
            // A driver writes only what was queued.
            let n = n.min(before.unsent as usize);
            l.wrote(n);
            if d.closed.is_none() {
                assert_eq!(l.unsent(), before.unsent - n as u64, "wrote accounting");
            }
        }
        Step::FinSent => {
            if d.fin_polled && !d.fin_reported && d.closed.is_none() {
                d.fin_reported = true;
                l.fin_sent();
            } else {
                l.fin_sent();
                assert_eq!(view(l), before, "an unasked fin_sent was not ignored");
            }
        }
        Step::Read(n) => {
            if l.wants_input() {
                l.read(n);
                assert_eq!(l.unread(), before.unread + n as u64, "read accounting");
            } else if d.closed.is_some() {
                l.read(n);
            }
        }
        Step::Delivered(n) => {
            l.delivered(n);
            let after = l.unread();
            assert!(after <= before.unread && before.unread - after <= n as u64);
            assert!(!l.recv_pending());
        }
        Step::DropHeld => l.drop_held(),
        Step::FinKnown => l.fin_known(),
        Step::Eof => l.eof(),
        Step::NothingLeft => {
            let wanted = l.wants_end_probe();
            l.nothing_left();
            if !wanted {
                assert_eq!(view(l), before, "an unwanted nothing_left was not ignored");
            }
        }
        Step::Fail(reason) => l.fail(reason),
        Step::Violated => l.violated(),
        Step::Expire(reason) => l.expire(reason),
        Step::Timeout(advance) => {
            if let Some(later) = d.now.checked_add(advance) {
                d.now = later;
            }
            l.timeout(d.now);
        }
    }
    if ok && matches!(s, Step::Shutdown | Step::Close(_) | Step::Reject(_)) {
        d.send_closed = true;
        d.began.get_or_insert(Side::Us);
    }
    if matches!(s, Step::FinKnown | Step::Eof | Step::NothingLeft)
        && !before.flags[3]
        && l.fin_seen()
    {
        d.began.get_or_insert(Side::Peer);
    }
    // Only Delivered takes bytes out of `unread`, only Wrote out of `unsent`
    // (and only Send and Read put them in); once closed both are final.
    if !matches!(s, Step::Delivered(_) | Step::Read(_)) || d.closed.is_some() {
        assert_eq!(l.unread(), before.unread, "{s:?} changed unread");
    }
    if !matches!(s, Step::Wrote(_) | Step::Send(_)) || d.closed.is_some() {
        assert_eq!(l.unsent(), before.unsent, "{s:?} changed unsent");
    }
    drain(l, d, s, now);
}

/// Polls what the step produced and checks it.
fn drain(l: &mut Lifecycle, d: &mut Driver, s: Step, now: Instant) {
    let was_closed = d.closed.is_some();
    let mut closed_now = None;
    let mut terminal = false;
    while let Some(a) = l.poll_action() {
        assert!(!was_closed, "{a:?} after Closed");
        assert!(!terminal, "{a:?} after a terminal action");
        match a {
            Action::ArmTimer(at) => {
                let (Step::Close(linger) | Step::Reject(linger)) = s else {
                    panic!("a timer at {s:?}");
                };
                assert!(at >= now, "a deadline in the past");
                match now.checked_add(linger) {
                    Some(exact) => assert_eq!(at, exact, "deadline is not now + linger"),
                    None => assert!(at > now, "an endless linger became no linger"),
                }
            }
            Action::DrainInput => {
                assert!(
                    matches!(s, Step::Close(_) | Step::Reject(_)),
                    "draining at {s:?}"
                );
            }
            Action::SendFin => {
                assert!(!d.fin_polled, "SendFin twice");
                assert!(d.send_closed, "SendFin before shutdown/close");
                assert_eq!(l.unsent(), 0, "SendFin with bytes queued");
                assert!(!l.holds_output(), "SendFin while output is held");
                d.fin_polled = true;
            }
            Action::Release | Action::Reset | Action::Discard => terminal = true,
        }
    }
    let mut last = None;
    while let Some(e) = l.poll_event() {
        assert!(!was_closed, "{e:?} after Closed");
        assert!(closed_now.is_none(), "{e:?} after Closed");
        if let Some(prev) = last {
            // Accepted, Secured, Connected, PeerShutdown, Closed: in this order.
            assert!(rank(prev) < rank(e), "{prev:?} before {e:?}");
        }
        last = Some(e);
        match e {
            Event::Connected => {
                d.connected += 1;
                assert!(!d.server, "Connected on an accepted socket");
                assert!(
                    d.secured == 1 || !d.security || l.is_datagram(),
                    "Connected before Secured"
                );
            }
            Event::Accepted => {
                d.accepted += 1;
                assert!(d.server, "Accepted on a dialed socket");
            }
            Event::Secured => {
                d.secured += 1;
                assert!(d.security, "Secured without a security layer");
            }
            Event::PeerShutdown => {
                d.peer_shutdown += 1;
                assert!(
                    matches!(s, Step::Eof | Step::NothingLeft),
                    "PeerShutdown at {s:?}"
                );
                assert!(!d.closing, "PeerShutdown after close");
            }
            Event::Closed(reason) => closed_now = Some(reason),
        }
    }
    assert!(d.connected <= d.connects, "Connected without a connect");
    if !l.is_datagram() {
        assert!(d.connected + d.accepted <= 1, "opened twice");
    }
    assert!(d.accepted <= 1, "Accepted twice");
    assert!(d.secured <= 1 && d.peer_shutdown <= 1);
    assert_eq!(
        terminal,
        closed_now.is_some(),
        "a terminal action without Closed or back"
    );
    if let Some(reason) = closed_now {
        d.closed_events += 1;
        d.closed = Some(reason);
        assert_eq!(l.closed(), Some(reason));
        assert!(allowed(s, reason), "{reason:?} at {s:?}");
        if reason.is_graceful() {
            let expected = match d.began {
                Some(Side::Peer) => Reason::ByPeer,
                _ => Reason::Normal,
            };
            assert_eq!(reason, expected, "who began: {:?}", d.began);
            if d.live && !l.is_datagram() {
                assert!(d.fin_reported, "graceful before our FIN was out");
            }
        }
    } else {
        assert_eq!(l.closed(), d.closed, "closed without Closed");
    }
    if d.closed.is_some() {
        assert_eq!(l.state(), State::NotConnected);
        assert!(!l.wants_input() && !l.is_bound() && !l.wire_up() && !l.holds_output());
        assert!(!l.wants_end_probe() && !l.recv_pending());
        assert_eq!((l.stage(), l.handshake()), (None, None));
        assert!(l.is_quiet());
    } else {
        match l.stage() {
            Some(Stage::Connecting) => assert_eq!(l.handshake(), Some(Handshake::Transport)),
            Some(Stage::Handshaking) => assert!(l.wire_up() && l.handshake().is_some()),
            Some(Stage::Open) => assert_eq!(l.handshake(), None),
            None => {}
        }
    }
}

fn rank(e: Event) -> u8 {
    match e {
        Event::Accepted => 0,
        Event::Secured => 1,
        Event::Connected => 2,
        Event::PeerShutdown => 3,
        Event::Closed(_) => 4,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, steps)) = data.split_first() else {
        return;
    };
    // Low four bits: the start; bits 4 to 6: security, message, server role.
    let (start, security, message) = ((pick & 0x0f) % 6, pick & 0x10 != 0, pick & 0x20 != 0);
    let mut server = false;
    let mut live = false;
    let mut l = match start {
        0 | 1 => {
            let mut l = Lifecycle::new();
            if security {
                l.set_security().unwrap();
            }
            if message {
                let role = if pick & 0x40 == 0 {
                    Role::Client
                } else {
                    Role::Server
                };
                l.set_message(role).unwrap();
            }
            l
        }
        2 => {
            server = true;
            live = true;
            Lifecycle::accepted_with(security, message)
        }
        3 => Lifecycle::datagram(),
        4 => {
            server = true;
            live = true;
            Lifecycle::datagram_accepted(security)
        }
        _ => {
            server = true;
            live = true;
            Lifecycle::accepted()
        }
    };
    let mut d = Driver {
        now: Instant::now(),
        server,
        security: security && start != 3 && start != 5,
        message: message && start <= 2,
        live,
        closing: false,
        send_closed: false,
        began: None,
        fin_polled: false,
        fin_reported: false,
        connected: 0,
        connects: 0,
        accepted: 0,
        secured: 0,
        peer_shutdown: 0,
        closed: None,
        closed_events: 0,
    };
    // What the start itself made pending (Accepted), checked as a step.
    let t0 = d.now;
    drain(&mut l, &mut d, Step::Stop, t0);
    for pair in steps.chunks_exact(2) {
        apply(&mut l, &mut d, step(pair[0], pair[1]));
    }
    // The loop stops: whatever was open ends, with exactly one Closed.
    apply(&mut l, &mut d, Step::Stop);
    assert_eq!(d.closed_events, 1, "Closed not exactly once");
    assert!(l.closed().is_some());
});
