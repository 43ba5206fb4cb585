//! The connection lifecycle (`Lifecycle`, README "The lifecycle"), state by state.
//!
//! One module per public state, each with fixtures that build a [`Lifecycle`] in
//! that state, and one test per command and input; `properties` drives random
//! sequences against a byte-counting model. Every transition asserts the state, the
//! exact actions and events, and the counters; refused commands and ignored inputs
//! must leave the machine exactly as it was (compared through its `Debug` form).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tether_proto::{
    Action, Event, FrameError, FrameType, Handshake, Lifecycle, Op, Reason, Refused, Role, Stage,
    State,
};

const LINGER: Duration = Duration::from_secs(5);
const HOUR: Duration = Duration::from_secs(3600);

/// The instant every test starts at (so the deadlines can be constants).
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

/// The linger deadline of a `close(t0(), LINGER)`.
fn deadline() -> Instant {
    t0() + LINGER
}

fn just_before_deadline() -> Instant {
    deadline() - Duration::from_millis(1)
}

fn actions(l: &mut Lifecycle) -> Vec<Action> {
    std::iter::from_fn(|| l.poll_action()).collect()
}

fn events(l: &mut Lifecycle) -> Vec<Event> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Nothing pending: no action, no event.
#[track_caller]
fn assert_quiet(l: &mut Lifecycle) {
    assert!(
        l.is_quiet(),
        "is_quiet() is false with nothing to poll: {l:?}"
    );
    assert_eq!(actions(l), [], "unexpected actions");
    assert_eq!(events(l), [], "unexpected events");
}

/// Everything the machine holds, private fields included.
fn fingerprint(l: &Lifecycle) -> String {
    format!("{l:?}")
}

/// The public view that a refusal or an ignored input must not change.
type View = (
    (State, Option<Reason>, u64, u64, bool, bool, bool),
    (Option<Handshake>, bool, bool, Option<Stage>, bool, bool),
);

fn counters(l: &Lifecycle) -> View {
    (
        (
            l.state(),
            l.closed(),
            l.unsent(),
            l.unread(),
            l.wants_input(),
            l.is_draining(),
            l.is_bound(),
        ),
        (
            l.handshake(),
            l.wire_up(),
            l.holds_output(),
            l.stage(),
            l.recv_pending(),
            l.wants_end_probe(),
        ),
    )
}

/// The inputs of the handshakes and of the end, each ignored where it does
/// not apply.
#[track_caller]
fn assert_phase_inputs_ignored(l: &mut Lifecycle) {
    assert_ignored(l, Lifecycle::secured);
    assert_ignored(l, Lifecycle::admitted);
    assert_ignored(l, Lifecycle::fin_sent);
    assert_ignored(l, Lifecycle::nothing_left);
}

/// `cmd` is refused with `Refused { op, state: <the current state> }` and changes
/// nothing at all. `l` must be drained.
#[track_caller]
fn assert_refused(
    l: &mut Lifecycle,
    op: Op,
    cmd: impl FnOnce(&mut Lifecycle) -> Result<(), Refused>,
) {
    let before = fingerprint(l);
    let view = counters(l);
    let state = l.state();
    assert_eq!(cmd(l), Err(Refused { op, state }));
    assert_eq!(
        counters(l),
        view,
        "a refused {op:?} changed the public view"
    );
    assert_eq!(
        fingerprint(l),
        before,
        "a refused {op:?} changed the machine"
    );
    assert_quiet(l);
}

/// bind, listen and connect are refused.
#[track_caller]
fn assert_setup_refused(l: &mut Lifecycle) {
    assert_refused(l, Op::Bind, Lifecycle::bind);
    assert_refused(l, Op::Listen, Lifecycle::listen);
    assert_refused(l, Op::Connect, Lifecycle::connect);
}

/// `input` changes nothing at all and produces nothing. `l` must be drained.
#[track_caller]
fn assert_ignored(l: &mut Lifecycle, input: impl FnOnce(&mut Lifecycle)) {
    let before = fingerprint(l);
    let view = counters(l);
    input(l);
    assert_eq!(
        counters(l),
        view,
        "an ignored input changed the public view"
    );
    assert_eq!(
        fingerprint(l),
        before,
        "an ignored input changed the machine"
    );
    assert_quiet(l);
}

/// The socket closed with `reason`: it shows `NotConnected`, has no descriptor,
/// wants no input and refuses every command.
#[track_caller]
fn assert_gone(l: &mut Lifecycle, reason: Reason) {
    assert_eq!(l.state(), State::NotConnected);
    assert_eq!(l.closed(), Some(reason));
    assert!(!l.is_bound());
    assert!(!l.wants_input());
    assert_quiet(l);
    assert_refused(l, Op::Send, |l| l.send(1));
    assert_refused(l, Op::Close, |l| l.close(t0(), LINGER));
}

mod not_connected {
    use super::*;

    fn fresh() -> Lifecycle {
        let mut l = Lifecycle::new();
        assert_quiet(&mut l);
        l
    }

    fn bound() -> Lifecycle {
        let mut l = fresh();
        l.bind().unwrap();
        assert_quiet(&mut l);
        l
    }

    /// A new socket and a bound one: both show `NotConnected`.
    fn both() -> [Lifecycle; 2] {
        [fresh(), bound()]
    }

    #[test]
    fn new_socket_is_idle() {
        let l = fresh();
        assert_eq!(l.state(), State::NotConnected);
        assert_eq!(l.closed(), None);
        assert_eq!((l.unsent(), l.unread()), (0, 0));
        assert!(!l.is_bound());
        assert!(!l.wants_input());
        assert!(!l.is_draining());
        assert_eq!(fingerprint(&Lifecycle::default()), fingerprint(&l));
    }

    #[test]
    fn bind_gets_a_descriptor_and_stays_not_connected() {
        let mut l = fresh();
        assert_eq!(l.bind(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NotConnected);
        assert_eq!(l.closed(), None);
        assert!(l.is_bound());
        assert!(!l.wants_input());
    }

    #[test]
    fn bind_twice_is_refused() {
        assert_refused(&mut bound(), Op::Bind, Lifecycle::bind);
    }

    #[test]
    fn listen_from_new_or_bound() {
        for mut l in both() {
            assert_eq!(l.listen(), Ok(()));
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::Listening);
            assert!(l.is_bound());
        }
    }

    #[test]
    fn connect_from_new_or_bound() {
        for mut l in both() {
            assert_eq!(l.connect(), Ok(()));
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::Connecting);
            assert!(l.is_bound());
            assert_eq!(l.closed(), None);
        }
    }

    #[test]
    fn data_commands_are_refused() {
        for mut l in both() {
            assert_refused(&mut l, Op::Recv, |l| l.check_recv());
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Send, |l| l.send(0));
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
        }
    }

    #[test]
    fn close_releases_normally() {
        for mut l in both() {
            assert_eq!(l.close(t0(), LINGER), Ok(()));
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
            assert!(!l.is_draining());
            assert_gone(&mut l, Reason::Normal);
        }
    }

    #[test]
    fn reset_releases_without_rst() {
        for mut l in both() {
            assert_eq!(l.reset(), Ok(()));
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
            assert_gone(&mut l, Reason::Reset);
        }
    }

    #[test]
    fn discard_releases() {
        for mut l in both() {
            assert_eq!(l.discard(), Ok(()));
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
            assert_gone(&mut l, Reason::Discarded);
        }
    }

    #[test]
    fn stop_releases() {
        for mut l in both() {
            l.stop();
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
            assert_gone(&mut l, Reason::Stopped);
        }
    }

    #[test]
    fn fail_closes_with_the_given_reason() {
        let cases = [
            (fresh(), Reason::AddressInvalid),
            (fresh(), Reason::OpenFailed),
            (bound(), Reason::BindFailed),
        ];
        for (mut l, reason) in cases {
            l.fail(reason);
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(reason)]);
            assert_gone(&mut l, reason);
        }
    }

    #[test]
    fn connection_inputs_are_ignored() {
        for mut l in both() {
            assert_ignored(&mut l, Lifecycle::connected);
            assert_ignored(&mut l, |l| l.wrote(3));
            assert_ignored(&mut l, |l| l.read(3));
            assert_ignored(&mut l, |l| l.delivered(3));
            assert_ignored(&mut l, Lifecycle::drop_held);
            assert_ignored(&mut l, Lifecycle::fin_known);
            assert_ignored(&mut l, Lifecycle::eof);
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
            assert_phase_inputs_ignored(&mut l);
        }
    }
}

mod listening {
    use super::*;

    fn listening() -> Lifecycle {
        let mut l = Lifecycle::new();
        l.bind().unwrap();
        l.listen().unwrap();
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn a_listener() {
        let l = listening();
        assert_eq!(l.state(), State::Listening);
        assert_eq!(l.closed(), None);
        assert!(l.is_bound());
        assert!(!l.wants_input());
        assert!(!l.is_draining());
        assert_eq!((l.unsent(), l.unread()), (0, 0));
    }

    #[test]
    fn setup_commands_are_refused() {
        assert_setup_refused(&mut listening());
    }

    #[test]
    fn data_commands_are_refused() {
        let mut l = listening();
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        assert_refused(&mut l, Op::Send, |l| l.send(4));
        assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
    }

    #[test]
    fn close_releases_normally() {
        let mut l = listening();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn reset_releases_not_resets() {
        let mut l = listening();
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_gone(&mut l, Reason::Reset);
    }

    #[test]
    fn discard_releases() {
        let mut l = listening();
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_releases() {
        let mut l = listening();
        l.stop();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_closes_with_the_given_reason() {
        for reason in [Reason::ListenFailed, Reason::AcceptFailed] {
            let mut l = listening();
            l.fail(reason);
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(reason)]);
            assert_gone(&mut l, reason);
        }
    }

    #[test]
    fn connection_inputs_are_ignored() {
        let mut l = listening();
        assert_ignored(&mut l, Lifecycle::connected);
        assert_ignored(&mut l, |l| l.wrote(3));
        assert_ignored(&mut l, |l| l.read(3));
        assert_ignored(&mut l, |l| l.delivered(3));
        assert_ignored(&mut l, Lifecycle::drop_held);
        assert_ignored(&mut l, Lifecycle::fin_known);
        assert_ignored(&mut l, Lifecycle::eof);
        assert_ignored(&mut l, |l| l.timeout(t0()));
        assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
        assert_phase_inputs_ignored(&mut l);
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        assert_refused(&mut l, Op::SetFraming, |l| l.set_message(Role::Client));
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        assert_refused(&mut l, Op::Recv, Lifecycle::recv);
    }
}

mod connecting {
    use super::*;

    pub(super) fn connecting() -> Lifecycle {
        let mut l = Lifecycle::new();
        l.connect().unwrap();
        assert_quiet(&mut l);
        l
    }

    /// Connecting, with `n` bytes accepted that wait for the connection.
    fn connecting_with_queued(n: usize) -> Lifecycle {
        let mut l = connecting();
        l.send(n).unwrap();
        assert_quiet(&mut l);
        assert_eq!(l.unsent(), n as u64);
        l
    }

    #[test]
    fn a_connect_in_progress() {
        let l = connecting();
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.closed(), None);
        assert!(l.is_bound());
        // A handshake carried over the connection (TLS, framing) reads now.
        assert!(l.wants_input());
        assert!(!l.is_draining());
        assert_eq!(l.check_recv(), Ok(()));
    }

    #[test]
    fn setup_commands_are_refused() {
        assert_setup_refused(&mut connecting());
        assert_setup_refused(&mut connecting_with_queued(3));
    }

    #[test]
    fn send_queues_until_connected() {
        let mut l = connecting();
        assert_eq!(l.send(3), Ok(()));
        assert_eq!(l.send(4), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.unsent(), 7);
        assert_eq!(l.state(), State::Connecting);

        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.unsent(), 7);
        assert!(l.wants_input());

        l.wrote(7);
        assert_quiet(&mut l);
        assert_eq!(l.unsent(), 0);
    }

    #[test]
    fn connected_is_reported_once() {
        let mut l = connecting();
        l.connected();
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(actions(&mut l), []);
        assert_ignored(&mut l, Lifecycle::connected);
    }

    #[test]
    fn bytes_read_before_connected_are_held() {
        let mut l = connecting();
        l.read(3);
        assert_quiet(&mut l);
        assert_eq!(l.unread(), 3);
        l.connected();
        assert_eq!(events(&mut l), [Event::Connected]);
        l.delivered(3);
        assert_eq!(l.unread(), 0);
    }

    #[test]
    fn shutdown_waits_for_the_connection() {
        let mut l = connecting();
        assert_eq!(l.shutdown(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connecting);
        assert_refused(&mut l, Op::Send, |l| l.send(1));
        assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);

        l.connected();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::NoSend);
    }

    #[test]
    fn shutdown_with_queued_data_waits_for_it() {
        let mut l = connecting_with_queued(5);
        assert_eq!(l.shutdown(), Ok(()));
        assert_quiet(&mut l);

        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::NoSend);
        assert_eq!(l.unsent(), 5);

        l.wrote(2);
        assert_quiet(&mut l);
        l.wrote(3);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        assert_eq!(l.unsent(), 0);
    }

    #[test]
    fn close_sends_queued_data_after_connected_then_fin() {
        let mut l = connecting_with_queued(5);
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        assert!(l.is_draining());
        assert!(l.wants_input());
        assert_eq!(l.unsent(), 5);
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        assert_refused(&mut l, Op::Send, |l| l.send(1));
        assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
        assert_refused(&mut l, Op::Close, |l| l.close(t0(), LINGER));
        assert_setup_refused(&mut l);

        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Closing);
        assert!(l.wants_input());

        l.wrote(5);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);

        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_eq!((l.unsent(), l.unread()), (0, 0));
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn close_without_data_sends_fin_at_connected() {
        let mut l = connecting();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        l.connected();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [Event::Connected]);
    }

    #[test]
    fn close_that_never_connects_times_out() {
        let mut l = connecting_with_queued(4);
        l.close(t0(), LINGER).unwrap();
        actions(&mut l);
        assert_ignored(&mut l, |l| l.timeout(just_before_deadline()));
        l.timeout(deadline());
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
        assert_eq!(l.unsent(), 4);
        assert_gone(&mut l, Reason::LingerTimeout);
    }

    #[test]
    fn reset_counts_queued_as_unsent() {
        let mut l = connecting_with_queued(6);
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_eq!((l.unsent(), l.unread()), (6, 0));
        assert_gone(&mut l, Reason::Reset);
    }

    #[test]
    fn discard_counts_queued_as_unsent() {
        let mut l = connecting_with_queued(6);
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_eq!(l.unsent(), 6);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = connecting_with_queued(1);
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_eq!(l.unsent(), 1);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_closes_with_the_given_reason() {
        for reason in [Reason::ConnectRejected, Reason::ConnectFailed] {
            let mut l = connecting_with_queued(2);
            l.fail(reason);
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(reason)]);
            assert_eq!(l.unsent(), 2);
            assert_gone(&mut l, reason);
        }
    }

    #[test]
    fn peer_and_time_inputs_are_ignored() {
        let mut l = connecting_with_queued(2);
        assert_ignored(&mut l, Lifecycle::fin_known);
        assert_ignored(&mut l, Lifecycle::eof);
        assert_ignored(&mut l, |l| l.delivered(3));
        assert_ignored(&mut l, Lifecycle::drop_held);
        assert_ignored(&mut l, |l| l.timeout(t0()));
        assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
    }
}

mod connected {
    use super::*;

    /// Dialed: connect, then connected (its Connected event drained).
    pub(super) fn connected() -> Lifecycle {
        let mut l = Lifecycle::new();
        l.connect().unwrap();
        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        l
    }

    /// Taken from a listener: Accepted (drained), never Connected.
    pub(super) fn accepted() -> Lifecycle {
        let mut l = Lifecycle::accepted();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Accepted]);
        assert_eq!(l.state(), State::Connected);
        l
    }

    fn both() -> [Lifecycle; 2] {
        [connected(), accepted()]
    }

    #[test]
    fn both_directions_open() {
        for mut l in both() {
            assert_eq!(l.state(), State::Connected);
            assert_eq!(l.closed(), None);
            assert!(l.is_bound());
            assert!(l.wants_input());
            assert!(!l.is_draining());
            assert_eq!(l.check_recv(), Ok(()));
            assert_eq!((l.unsent(), l.unread()), (0, 0));
            assert_setup_refused(&mut l);
        }
    }

    #[test]
    fn send_and_wrote_count_unsent() {
        for mut l in both() {
            assert_eq!(l.send(10), Ok(()));
            assert_quiet(&mut l);
            assert_eq!(l.unsent(), 10);
            l.wrote(4);
            assert_quiet(&mut l);
            assert_eq!(l.unsent(), 6);
            l.wrote(6);
            assert_quiet(&mut l);
            assert_eq!(l.unsent(), 0);
            assert_eq!(l.state(), State::Connected);
        }
    }

    #[test]
    fn read_delivered_and_drop_held_count_unread() {
        for mut l in both() {
            l.read(7);
            assert_quiet(&mut l);
            assert_eq!(l.unread(), 7, "held bytes count until delivered");
            l.delivered(3);
            assert_eq!(l.unread(), 4);
            l.drop_held();
            assert_eq!(l.unread(), 4, "dropped bytes stay counted");
            l.read(2);
            l.delivered(2);
            assert_eq!(l.unread(), 4);
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::Connected);
        }
    }

    #[test]
    fn shutdown_with_nothing_queued_sends_fin_at_once() {
        for mut l in both() {
            assert_eq!(l.shutdown(), Ok(()));
            assert_eq!(actions(&mut l), [Action::SendFin]);
            assert_eq!(events(&mut l), []);
            assert_eq!(l.state(), State::NoSend);
            assert_refused(&mut l, Op::Send, |l| l.send(1));
        }
    }

    /// Rule 1.
    #[test]
    fn shutdown_sends_fin_only_after_the_last_queued_byte() {
        let mut l = connected();
        l.send(8).unwrap();
        assert_eq!(l.shutdown(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSend);
        assert_eq!(l.unsent(), 8);
        assert_refused(&mut l, Op::Send, |l| l.send(1));
        l.wrote(5);
        assert_quiet(&mut l);
        l.wrote(3);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        l.wrote(0);
        assert_quiet(&mut l);
    }

    /// Rule 2.
    #[test]
    fn fin_known_shows_no_recv_without_an_event() {
        for mut l in both() {
            l.fin_known();
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::NoRecv);
            assert!(l.wants_input());
            assert_eq!(l.check_recv(), Ok(()));
        }
    }

    #[test]
    fn eof_reports_peer_shutdown() {
        for mut l in both() {
            l.eof();
            assert_eq!(actions(&mut l), []);
            assert_eq!(events(&mut l), [Event::PeerShutdown]);
            assert_eq!(l.state(), State::NoRecv);
            assert!(!l.wants_input());
            assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        }
    }

    #[test]
    fn eof_counts_bytes_still_held_as_unread() {
        let mut l = connected();
        l.read(5);
        l.delivered(2);
        l.eof();
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        assert_eq!(l.unread(), 3);
        l.delivered(3);
        assert_eq!(l.unread(), 3, "nothing is held after eof");
    }

    /// Rules 5 and 6.
    #[test]
    fn close_with_unread_input_drains_and_does_not_reset() {
        for mut l in both() {
            l.read(4);
            assert_eq!(l.close(t0(), LINGER), Ok(()));
            assert_eq!(
                actions(&mut l),
                [
                    Action::ArmTimer(deadline()),
                    Action::DrainInput,
                    Action::SendFin
                ]
            );
            assert_eq!(events(&mut l), []);
            assert_eq!(l.state(), State::Closing);
            assert_eq!(l.unread(), 4);
            assert!(l.is_draining());
            assert!(l.wants_input());
            // The held bytes were thrown away: the user can no longer get them.
            assert_ignored(&mut l, |l| l.delivered(4));
            assert_eq!(l.unread(), 4);
        }
    }

    /// A FIN decided but not yet carried out never precedes an RST.
    #[test]
    fn an_abort_drops_a_pending_fin() {
        let abort: [fn(&mut Lifecycle); 3] = [
            |l| l.reset().unwrap(),
            |l| l.discard().unwrap(),
            Lifecycle::stop,
        ];
        let terminal = [Action::Reset, Action::Discard, Action::Reset];
        for (abort, terminal) in abort.into_iter().zip(terminal) {
            let mut l = connected();
            l.send(2).unwrap();
            l.shutdown().unwrap();
            l.wrote(2); // SendFin pending, not polled
            abort(&mut l);
            assert_eq!(actions(&mut l), [terminal]);
            assert_eq!(events(&mut l).len(), 1);
            assert_eq!(l.unsent(), 0);
        }
    }

    #[test]
    fn close_with_queued_data_sends_fin_after_it() {
        let mut l = connected();
        l.send(3).unwrap();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        l.wrote(3);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
    }

    /// Rule 5.
    #[test]
    fn reset_counts_everything_dropped() {
        for mut l in both() {
            l.send(7).unwrap();
            l.read(2);
            assert_eq!(l.reset(), Ok(()));
            assert_eq!(actions(&mut l), [Action::Reset]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
            assert_eq!((l.unsent(), l.unread()), (7, 2));
            assert_gone(&mut l, Reason::Reset);
        }
    }

    #[test]
    fn discard_counts_everything_dropped() {
        let mut l = connected();
        l.send(7).unwrap();
        l.read(2);
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_eq!((l.unsent(), l.unread()), (7, 2));
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = accepted();
        l.read(1);
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_eq!(l.unread(), 1);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_lost_with_queued_bytes_counts_them_unsent() {
        let mut l = connected();
        l.send(9).unwrap();
        l.wrote(4);
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert_eq!((l.unsent(), l.unread()), (5, 0));
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn connected_and_timeouts_are_ignored() {
        for mut l in both() {
            assert_ignored(&mut l, Lifecycle::connected);
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
        }
    }
}

mod no_send {
    use super::connected::connected;
    use super::*;

    /// Our FIN is out (SendFin carried out, `fin_sent` reported); the peer
    /// still sends.
    pub(super) fn no_send() -> Lifecycle {
        let mut l = connected();
        l.shutdown().unwrap();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSend);
        l
    }

    /// Shut down with `n` bytes still queued: the FIN waits for them.
    fn no_send_queued(n: usize) -> Lifecycle {
        let mut l = connected();
        l.send(n).unwrap();
        l.shutdown().unwrap();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSend);
        assert_eq!(l.unsent(), n as u64);
        l
    }

    /// A FIN decided but not yet carried out is dropped when the connection
    /// fails in the same breath: a dead connection is not sent one.
    #[test]
    fn failure_drops_an_undelivered_fin() {
        let mut l = no_send_queued(3);
        l.wrote(3);
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
    }

    #[test]
    fn still_receives() {
        for l in [no_send(), no_send_queued(3)] {
            assert_eq!(l.state(), State::NoSend);
            assert!(l.wants_input());
            assert!(!l.is_draining());
            assert_eq!(l.check_recv(), Ok(()));
            assert_eq!(l.closed(), None);
        }
    }

    /// Rule 1: nothing accepted after shutdown.
    #[test]
    fn send_shutdown_and_setup_are_refused() {
        for mut l in [no_send(), no_send_queued(3)] {
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Send, |l| l.send(0));
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
            assert_setup_refused(&mut l);
        }
    }

    /// Rule 1.
    #[test]
    fn fin_goes_out_once_after_the_last_queued_byte() {
        let mut l = no_send_queued(6);
        l.wrote(1);
        assert_quiet(&mut l);
        l.wrote(4);
        assert_quiet(&mut l);
        assert_eq!(l.unsent(), 1);
        l.wrote(1);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        assert_eq!(l.unsent(), 0);
        assert_ignored(&mut l, |l| l.wrote(0));
    }

    #[test]
    fn read_and_delivered_count() {
        let mut l = no_send();
        l.read(3);
        assert_eq!(l.unread(), 3);
        l.delivered(3);
        assert_eq!(l.unread(), 0);
        l.read(2);
        l.drop_held();
        assert_eq!(l.unread(), 2);
        assert_quiet(&mut l);
    }

    /// Rule 2.
    #[test]
    fn fin_known_shows_no_send_recv() {
        let mut l = no_send();
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSendRecv);
        assert!(l.wants_input());
    }

    /// Rules 3 and 7: we began, the peer's end finishes the socket.
    #[test]
    fn eof_after_our_fin_closes_normally() {
        let mut l = no_send();
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::Normal)]
        );
        assert_gone(&mut l, Reason::Normal);
    }

    /// Rule 3: SendFin, then Release once the FIN is out.
    #[test]
    fn eof_before_the_queue_drains_closes_when_it_does() {
        let mut l = no_send_queued(4);
        l.eof();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        assert_eq!(l.state(), State::NoSendRecv);
        assert!(!l.wants_input());
        l.wrote(4);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_eq!((l.unsent(), l.unread()), (0, 0));
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn close_after_our_fin_drains_without_a_second_fin() {
        let mut l = no_send();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn close_with_queued_data_keeps_the_fin_waiting() {
        let mut l = no_send_queued(2);
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        l.wrote(2);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
    }

    #[test]
    fn reset_counts_the_waiting_bytes() {
        let mut l = no_send_queued(5);
        l.read(1);
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Reset], "no FIN on an abort");
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_eq!((l.unsent(), l.unread()), (5, 1));
        assert_gone(&mut l, Reason::Reset);
    }

    #[test]
    fn discard_counts_the_waiting_bytes() {
        let mut l = no_send_queued(5);
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_eq!(l.unsent(), 5);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = no_send();
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_lost() {
        let mut l = no_send_queued(3);
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert_eq!(l.unsent(), 3);
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn connected_and_timeouts_are_ignored() {
        let mut l = no_send_queued(1);
        assert_ignored(&mut l, Lifecycle::connected);
        assert_ignored(&mut l, |l| l.timeout(t0()));
        assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
    }
}

mod no_recv {
    use super::connected::connected;
    use super::*;

    /// The peer's FIN is known; bytes before it may still wait to be read.
    pub(super) fn no_recv() -> Lifecycle {
        let mut l = connected();
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoRecv);
        l
    }

    /// Every byte up to the peer's FIN was read: PeerShutdown drained.
    pub(super) fn no_recv_ended() -> Lifecycle {
        let mut l = connected();
        l.eof();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        assert_eq!(l.state(), State::NoRecv);
        l
    }

    #[test]
    fn fin_known_still_reads() {
        let mut l = no_recv();
        assert!(l.wants_input());
        assert_eq!(l.check_recv(), Ok(()));
        assert!(!l.is_draining());
        assert_ignored(&mut l, Lifecycle::fin_known);
    }

    /// Rule 2: PeerShutdown only at eof, after the last byte.
    #[test]
    fn peer_shutdown_comes_at_eof_not_at_fin_known() {
        let mut l = no_recv();
        l.read(5);
        assert_quiet(&mut l);
        l.delivered(5);
        assert_quiet(&mut l);
        l.eof();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        assert_eq!(l.state(), State::NoRecv);
        assert_eq!(l.unread(), 0);
        assert!(!l.wants_input());
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
    }

    #[test]
    fn after_eof_the_peer_side_is_over() {
        let mut l = no_recv_ended();
        assert!(!l.wants_input());
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        assert_ignored(&mut l, Lifecycle::eof);
        assert_ignored(&mut l, Lifecycle::fin_known);
    }

    #[test]
    fn setup_commands_are_refused() {
        assert_setup_refused(&mut no_recv());
        assert_setup_refused(&mut no_recv_ended());
    }

    #[test]
    fn sending_still_works() {
        for mut l in [no_recv(), no_recv_ended()] {
            assert_eq!(l.send(4), Ok(()));
            assert_eq!(l.unsent(), 4);
            l.wrote(4);
            assert_eq!(l.unsent(), 0);
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::NoRecv);
        }
    }

    /// Rules 3 and 7: the peer began; our FIN finishes the socket at once.
    #[test]
    fn shutdown_after_eof_closes_by_peer() {
        let mut l = no_recv_ended();
        assert_eq!(l.shutdown(), Ok(()));
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    #[test]
    fn shutdown_after_eof_with_queued_data_closes_when_written() {
        let mut l = no_recv_ended();
        l.send(3).unwrap();
        assert_eq!(l.shutdown(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSendRecv);
        l.wrote(3);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    #[test]
    fn shutdown_after_fin_known_waits_for_eof() {
        let mut l = no_recv();
        assert_eq!(l.shutdown(), Ok(()));
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSendRecv);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::ByPeer)]
        );
        assert_gone(&mut l, Reason::ByPeer);
    }

    /// Rule 3: nothing to drain, so no draining; the end waits only for our
    /// FIN to be out (under the linger deadline, should that never come).
    #[test]
    fn close_after_eof_finishes_at_once() {
        let mut l = no_recv_ended();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::SendFin]
        );
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    #[test]
    fn close_after_eof_with_queued_data_closes_when_written() {
        let mut l = no_recv_ended();
        l.send(2).unwrap();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(actions(&mut l), [Action::ArmTimer(deadline())]);
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        assert!(!l.wants_input());
        l.wrote(2);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    /// Rules 5 and 6: held bytes and bytes drained while closing are unread.
    #[test]
    fn close_after_fin_known_drains_and_counts() {
        let mut l = no_recv();
        l.read(3);
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [
                Action::ArmTimer(deadline()),
                Action::DrainInput,
                Action::SendFin
            ]
        );
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_eq!(l.unread(), 3);
        l.read(2);
        assert_eq!(l.unread(), 5);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_eq!(l.unread(), 5);
        assert_gone(&mut l, Reason::ByPeer);
    }

    #[test]
    fn reset_counts_everything_dropped() {
        let mut l = no_recv();
        l.read(2);
        l.send(1).unwrap();
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_eq!((l.unsent(), l.unread()), (1, 2));
        assert_gone(&mut l, Reason::Reset);
    }

    #[test]
    fn discard() {
        let mut l = no_recv_ended();
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = no_recv();
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_lost() {
        let mut l = no_recv_ended();
        l.send(2).unwrap();
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert_eq!(l.unsent(), 2);
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn connected_and_timeouts_are_ignored() {
        for mut l in [no_recv(), no_recv_ended()] {
            assert_ignored(&mut l, Lifecycle::connected);
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
        }
    }
}

mod no_send_recv {
    use super::connected::connected;
    use super::no_recv::no_recv;
    use super::no_send::no_send;
    use super::*;

    /// We shut down first (FIN out), then the peer's FIN became known.
    fn no_send_recv() -> Lifecycle {
        let mut l = no_send();
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSendRecv);
        l
    }

    /// The peer's FIN was known first, then we shut down (FIN out).
    fn no_send_recv_by_peer() -> Lifecycle {
        let mut l = no_recv();
        l.shutdown().unwrap();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSendRecv);
        l
    }

    /// We shut down with `n` bytes queued, then the peer ended (eof): only our
    /// FIN is missing.
    fn no_send_recv_queued(n: usize) -> Lifecycle {
        let mut l = connected();
        l.send(n).unwrap();
        l.shutdown().unwrap();
        l.eof();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        assert_eq!(l.state(), State::NoSendRecv);
        l
    }

    #[test]
    fn both_sides_shut_down() {
        for mut l in [no_send_recv(), no_send_recv_by_peer()] {
            assert!(l.wants_input());
            assert_eq!(l.check_recv(), Ok(()));
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
            assert_setup_refused(&mut l);
            assert_ignored(&mut l, Lifecycle::fin_known);
        }
        let mut l = no_send_recv_queued(2);
        assert!(!l.wants_input());
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        assert_refused(&mut l, Op::Send, |l| l.send(1));
        assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
        assert_setup_refused(&mut l);
        assert_ignored(&mut l, Lifecycle::eof);
    }

    /// Rules 3 and 7.
    #[test]
    fn eof_closes_normally_when_we_began() {
        let mut l = no_send_recv();
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::Normal)]
        );
        assert_gone(&mut l, Reason::Normal);
    }

    /// Rules 3 and 7.
    #[test]
    fn eof_closes_by_peer_when_the_peer_began() {
        let mut l = no_send_recv_by_peer();
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::ByPeer)]
        );
        assert_gone(&mut l, Reason::ByPeer);
    }

    #[test]
    fn bytes_read_before_eof_are_delivered_or_counted() {
        let mut l = no_send_recv();
        l.read(4);
        l.delivered(1);
        assert_quiet(&mut l);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::Normal)]
        );
        assert_eq!(l.unread(), 3);
        assert_gone(&mut l, Reason::Normal);
    }

    /// Rule 3: SendFin then Release in one step.
    #[test]
    fn the_last_write_sends_fin_and_releases() {
        let mut l = no_send_recv_queued(3);
        l.wrote(2);
        assert_quiet(&mut l);
        l.wrote(1);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn close_drains_until_eof() {
        let mut l = no_send_recv();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn close_with_queued_data_closes_when_written() {
        let mut l = no_send_recv_queued(2);
        l.close(t0(), LINGER).unwrap();
        assert_eq!(actions(&mut l), [Action::ArmTimer(deadline())]);
        assert_eq!(events(&mut l), []);
        l.wrote(2);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn reset_counts_the_waiting_bytes() {
        let mut l = no_send_recv_queued(4);
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_eq!(l.unsent(), 4);
        assert_gone(&mut l, Reason::Reset);
    }

    #[test]
    fn discard() {
        let mut l = no_send_recv();
        l.read(2);
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_eq!(l.unread(), 2);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = no_send_recv_by_peer();
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_lost() {
        let mut l = no_send_recv_queued(1);
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert_eq!(l.unsent(), 1);
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn connected_and_timeouts_are_ignored() {
        for mut l in [no_send_recv(), no_send_recv_queued(1)] {
            assert_ignored(&mut l, Lifecycle::connected);
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
        }
    }
}

mod closing {
    use super::connected::connected;
    use super::no_recv::no_recv_ended;
    use super::*;

    /// close() on an idle connection: FIN out (`fin_sent` reported), draining
    /// the peer.
    fn closing() -> Lifecycle {
        let mut l = connected();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [
                Action::ArmTimer(deadline()),
                Action::DrainInput,
                Action::SendFin
            ]
        );
        assert_eq!(events(&mut l), []);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Closing);
        l
    }

    /// close() with `n` bytes still queued: the FIN waits for them.
    fn closing_queued(n: usize) -> Lifecycle {
        let mut l = connected();
        l.send(n).unwrap();
        assert_eq!(l.close(t0(), LINGER), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        l
    }

    #[test]
    fn draining() {
        for l in [closing(), closing_queued(2)] {
            assert!(l.is_draining());
            assert!(l.wants_input());
            assert!(l.is_bound());
            assert_eq!(l.closed(), None);
        }
    }

    /// Rule 1 (nothing accepted after close) and Rule 4.
    #[test]
    fn every_command_but_the_aborts_is_refused() {
        for mut l in [closing(), closing_queued(2)] {
            assert_refused(&mut l, Op::Recv, |l| l.check_recv());
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
            assert_refused(&mut l, Op::Close, |l| l.close(t0(), LINGER));
            assert_setup_refused(&mut l);
        }
    }

    /// Rule 5: drained bytes count as unread.
    #[test]
    fn bytes_read_while_draining_count_as_unread() {
        let mut l = closing();
        l.read(3);
        assert_quiet(&mut l);
        assert_eq!(l.unread(), 3);
        assert_ignored(&mut l, |l| l.delivered(3));
        assert_ignored(&mut l, Lifecycle::drop_held);
        l.read(1);
        assert_eq!(l.unread(), 4);
    }

    #[test]
    fn fin_known_keeps_closing() {
        let mut l = closing();
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Closing);
        assert!(l.wants_input());
    }

    /// Rules 2, 3 and 7: no PeerShutdown for a socket the user closed.
    #[test]
    fn the_peers_end_closes_normally() {
        let mut l = closing();
        l.read(2);
        l.eof();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_eq!(l.unread(), 2);
        assert_gone(&mut l, Reason::Normal);
    }

    /// Rule 3: SendFin, then Release once the FIN is out.
    #[test]
    fn the_peers_end_before_the_queue_drains() {
        let mut l = closing_queued(4);
        l.eof();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Closing);
        assert!(!l.wants_input());
        l.wrote(4);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
        assert_gone(&mut l, Reason::Normal);
    }

    /// Rule 6.
    #[test]
    fn timeout_before_the_deadline_does_nothing() {
        for mut l in [closing(), closing_queued(2)] {
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(just_before_deadline()));
        }
    }

    /// Rule 6: the deadline itself counts as reached.
    #[test]
    fn timeout_at_the_deadline_resets() {
        let mut l = closing();
        l.timeout(deadline());
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
        assert_gone(&mut l, Reason::LingerTimeout);
    }

    /// Rules 5 and 6.
    #[test]
    fn timeout_past_the_deadline_resets_and_counts() {
        let mut l = closing_queued(4);
        l.read(2);
        l.timeout(deadline() + Duration::from_secs(1));
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
        assert_eq!((l.unsent(), l.unread()), (4, 2));
        assert_gone(&mut l, Reason::LingerTimeout);
    }

    #[test]
    fn linger_zero_resets_at_the_first_timeout() {
        let mut l = connected();
        l.read(1);
        assert_eq!(l.close(t0(), Duration::ZERO), Ok(()));
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(t0()), Action::DrainInput, Action::SendFin]
        );
        assert_eq!(events(&mut l), []);
        assert_eq!(l.state(), State::Closing);
        assert_eq!(l.unread(), 1);
        l.timeout(t0());
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
        assert_eq!(l.unread(), 1);
        assert_gone(&mut l, Reason::LingerTimeout);
    }

    #[test]
    fn linger_zero_with_nothing_to_wait_for_closes_gracefully() {
        let mut l = no_recv_ended();
        assert_eq!(l.close(t0(), Duration::ZERO), Ok(()));
        assert_eq!(actions(&mut l), [Action::ArmTimer(t0()), Action::SendFin]);
        assert_eq!(events(&mut l), [], "the end waits for the FIN to be out");
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    /// A linger too long for an `Instant` means "very long", not "zero".
    #[test]
    fn an_unrepresentable_linger_does_not_reset_early() {
        let mut l = connected();
        assert_eq!(l.close(t0(), Duration::MAX), Ok(()));
        let acts = actions(&mut l);
        assert_eq!(acts.len(), 3, "{acts:?}");
        match acts[0] {
            Action::ArmTimer(at) => assert!(at >= t0() + 100 * 365 * 24 * HOUR),
            other => panic!("expected ArmTimer first, got {other:?}"),
        }
        assert_eq!(acts[1..], [Action::DrainInput, Action::SendFin]);
        assert_ignored(&mut l, |l| l.timeout(t0() + 24 * HOUR));
        assert_eq!(l.state(), State::Closing);
    }

    #[test]
    fn reset_cancels_the_linger() {
        let mut l = closing_queued(3);
        l.read(1);
        assert_eq!(l.reset(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        assert_eq!((l.unsent(), l.unread()), (3, 1));
        assert_gone(&mut l, Reason::Reset);
        assert_ignored(&mut l, |l| l.timeout(deadline()));
    }

    #[test]
    fn discard() {
        let mut l = closing();
        assert_eq!(l.discard(), Ok(()));
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_gone(&mut l, Reason::Discarded);
    }

    #[test]
    fn stop_resets() {
        let mut l = closing_queued(1);
        l.stop();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_eq!(l.unsent(), 1);
        assert_gone(&mut l, Reason::Stopped);
    }

    #[test]
    fn fail_lost() {
        let mut l = closing_queued(2);
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert_eq!(l.unsent(), 2);
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn connected_is_ignored() {
        assert_ignored(&mut closing(), Lifecycle::connected);
    }
}

mod closed {
    use super::connected::connected;
    use super::connecting::connecting;
    use super::no_send::no_send;
    use super::*;

    /// Reset with 3 bytes queued and 2 held.
    fn closed() -> Lifecycle {
        let mut l = connected();
        l.send(3).unwrap();
        l.read(2);
        l.reset().unwrap();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
        l
    }

    /// A socket closed each way it can close, drained, with its reason.
    fn closed_every_way() -> Vec<(Lifecycle, Reason)> {
        let mut ways: Vec<(Lifecycle, Reason)> = Vec::new();
        let mut add = |mut l: Lifecycle, reason: Reason| {
            let evs = events(&mut l);
            assert_eq!(evs.last(), Some(&Event::Closed(reason)), "{evs:?}");
            actions(&mut l);
            ways.push((l, reason));
        };

        let mut l = Lifecycle::new();
        l.close(t0(), LINGER).unwrap();
        add(l, Reason::Normal);

        let mut l = Lifecycle::new();
        l.bind().unwrap();
        l.listen().unwrap();
        l.stop();
        add(l, Reason::Stopped);

        let mut l = no_send();
        l.eof();
        add(l, Reason::Normal);

        let mut l = connected();
        l.eof();
        l.shutdown().unwrap();
        actions(&mut l);
        l.fin_sent();
        add(l, Reason::ByPeer);

        let mut l = connected();
        l.send(3).unwrap();
        l.read(2);
        l.reset().unwrap();
        add(l, Reason::Reset);

        let mut l = connected();
        l.send(1).unwrap();
        l.discard().unwrap();
        add(l, Reason::Discarded);

        let mut l = connected();
        l.close(t0(), LINGER).unwrap();
        l.timeout(deadline());
        add(l, Reason::LingerTimeout);

        let mut l = connected();
        l.fail(Reason::Lost);
        add(l, Reason::Lost);

        let mut l = connecting();
        l.fail(Reason::ConnectRejected);
        add(l, Reason::ConnectRejected);

        let mut l = connected();
        l.stop();
        add(l, Reason::Stopped);

        ways
    }

    /// Rules 4 and 5: the reason and the counts stay readable.
    #[test]
    fn reason_and_counts_stay() {
        let l = closed();
        assert_eq!(l.state(), State::NotConnected);
        assert_eq!(l.closed(), Some(Reason::Reset));
        assert_eq!((l.unsent(), l.unread()), (3, 2));
        assert!(!l.is_bound());
        assert!(!l.wants_input());
    }

    /// Rule 4: every command is refused.
    #[test]
    fn every_command_is_refused() {
        for (mut l, reason) in closed_every_way() {
            assert_setup_refused(&mut l);
            assert_refused(&mut l, Op::Recv, |l| l.check_recv());
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
            assert_refused(&mut l, Op::Close, |l| l.close(t0(), LINGER));
            assert_refused(&mut l, Op::Reset, Lifecycle::reset);
            assert_refused(&mut l, Op::Discard, Lifecycle::discard);
            assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
            assert_refused(&mut l, Op::SetFraming, |l| l.set_message(Role::Client));
            assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
            assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
            assert_refused(&mut l, Op::Recv, Lifecycle::recv);
            assert_eq!(l.closed(), Some(reason));
        }
    }

    /// Rule 4: Closed exactly once, and nothing after it; the counts are final.
    #[test]
    fn every_input_is_ignored() {
        for (mut l, reason) in closed_every_way() {
            assert_ignored(&mut l, Lifecycle::stop);
            assert_ignored(&mut l, Lifecycle::connected);
            assert_ignored(&mut l, |l| l.wrote(1));
            assert_ignored(&mut l, |l| l.read(1));
            assert_ignored(&mut l, |l| l.delivered(1));
            assert_ignored(&mut l, Lifecycle::drop_held);
            assert_ignored(&mut l, Lifecycle::fin_known);
            assert_ignored(&mut l, Lifecycle::eof);
            assert_ignored(&mut l, |l| l.fail(Reason::Lost));
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(deadline() + HOUR));
            assert_ignored(&mut l, |l| l.expire(Reason::IdleTimeout));
            assert_ignored(&mut l, Lifecycle::violated);
            assert_phase_inputs_ignored(&mut l);
            assert_eq!(l.closed(), Some(reason));
        }
    }
}

mod names {
    use super::*;

    /// Every socket carries one: the loop's per-socket budget counts on 48 bytes.
    #[test]
    fn a_lifecycle_is_48_bytes() {
        assert!(std::mem::size_of::<Lifecycle>() <= 48);
    }

    #[test]
    fn states_reasons_and_refusals_print_in_snake_case() {
        assert_eq!(State::NoSendRecv.to_string(), "no_send_recv");
        assert_eq!(State::NotConnected.as_str(), "not_connected");
        assert_eq!(Reason::ByPeer.to_string(), "by_peer");
        assert_eq!(Reason::LingerTimeout.as_str(), "linger_timeout");
        let refused = Refused {
            op: Op::Send,
            state: State::Closing,
        };
        assert_eq!(
            refused.to_string(),
            "cannot send on a socket in state closing"
        );
    }

    #[test]
    fn only_normal_and_by_peer_are_graceful() {
        assert!(Reason::Normal.is_graceful());
        assert!(Reason::ByPeer.is_graceful());
        for r in [
            Reason::Reset,
            Reason::Discarded,
            Reason::LingerTimeout,
            Reason::Lost,
            Reason::Stopped,
            Reason::ConnectRejected,
        ] {
            assert!(!r.is_graceful(), "{r}");
        }
    }
}

/// Random sequences of commands and inputs against a model that counts bytes,
/// over random layer configurations (security, message layer; dialed or
/// accepted).
mod properties {
    use super::*;
    use proptest::prelude::*;
    use tether_proto::{FrameType, Handshake, Role, Stage};

    #[derive(Clone, Copy, Debug)]
    enum Start {
        /// `Lifecycle::new()` with these layers set, nothing else: the
        /// sequence must connect it.
        Fresh { security: bool, message: bool },
        /// `new()`, `connect()`, `connected()`.
        Dialed,
        /// `Lifecycle::accepted_with(security, message)`.
        Accepted { security: bool, message: bool },
    }

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Bind,
        Listen,
        Connect,
        CheckRecv,
        Recv,
        Send(usize),
        Shutdown,
        /// Linger in milliseconds.
        Close(u64),
        /// Linger in milliseconds.
        Reject(u64),
        StartSecurity,
        Reset,
        Discard,
        Stop,
        Connected,
        Secured,
        Admitted,
        FrameIn(FrameType),
        FrameOut(FrameType),
        /// Capped at the model's queued bytes.
        Wrote(usize),
        FinSent,
        /// Only while the machine wants input (or, to check it is ignored, once closed).
        Read(usize),
        /// Capped at the model's held bytes.
        Delivered(usize),
        DropHeld,
        FinKnown,
        Eof,
        NothingLeft,
        Fail(Reason),
        /// The clock advances by this many milliseconds, then `timeout(now)`.
        Timeout(u64),
    }

    fn start() -> impl Strategy<Value = Start> {
        prop_oneof![
            (any::<bool>(), any::<bool>())
                .prop_map(|(security, message)| Start::Fresh { security, message }),
            Just(Start::Dialed),
            (any::<bool>(), any::<bool>())
                .prop_map(|(security, message)| Start::Accepted { security, message }),
        ]
    }

    fn frame_type() -> impl Strategy<Value = FrameType> {
        prop_oneof![
            Just(FrameType::Hello),
            Just(FrameType::Welcome),
            Just(FrameType::Reject),
            Just(FrameType::Data),
            Just(FrameType::Farewell),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let fail = prop_oneof![
            Just(Reason::Lost),
            Just(Reason::ConnectFailed),
            Just(Reason::ConnectRejected),
            Just(Reason::AcceptFailed),
        ];
        prop_oneof![
            1 => Just(Step::Bind),
            1 => Just(Step::Listen),
            2 => Just(Step::Connect),
            1 => Just(Step::CheckRecv),
            2 => Just(Step::Recv),
            6 => (0usize..8).prop_map(Step::Send),
            3 => Just(Step::Shutdown),
            3 => (0u64..4000).prop_map(Step::Close),
            2 => (0u64..4000).prop_map(Step::Reject),
            1 => Just(Step::StartSecurity),
            1 => Just(Step::Reset),
            1 => Just(Step::Discard),
            1 => Just(Step::Stop),
            3 => Just(Step::Connected),
            3 => Just(Step::Secured),
            1 => Just(Step::Admitted),
            3 => frame_type().prop_map(Step::FrameIn),
            3 => frame_type().prop_map(Step::FrameOut),
            8 => (0usize..8).prop_map(Step::Wrote),
            4 => Just(Step::FinSent),
            8 => (0usize..8).prop_map(Step::Read),
            6 => (0usize..8).prop_map(Step::Delivered),
            2 => Just(Step::DropHeld),
            3 => Just(Step::FinKnown),
            4 => Just(Step::Eof),
            2 => Just(Step::NothingLeft),
            1 => fail.prop_map(Step::Fail),
            4 => (0u64..3000).prop_map(Step::Timeout),
        ]
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Side {
        Us,
        Peer,
    }

    /// What the driver knows, counted independently of the machine.
    #[derive(Debug, Default)]
    struct Model {
        accepted: u64,
        written: u64,
        read: u64,
        delivered: u64,
        /// Read and neither delivered nor dropped.
        held: u64,
        /// A connection (not a listener): connect returned Ok, or it started
        /// dialed or accepted. Its graceful end needs its FIN out.
        live: bool,
        /// Taken from a listener.
        server: bool,
        /// It has a security layer (configured, or an upgrade).
        security: bool,
        /// It has a message layer.
        message: bool,
        /// Every handshake done (the connection is open): Connected, or for a
        /// server Accepted plus Secured if it has security; or rejected.
        open: bool,
        /// start_security returned Ok.
        upgraded: bool,
        /// reject returned Ok.
        rejected: bool,
        /// shutdown, close or reject returned Ok.
        send_closed: bool,
        /// close or reject returned Ok.
        close_called: bool,
        /// SendFin was asked for.
        fin_asked: bool,
        /// fin_sent took effect: the FIN is on the wire.
        fin_out: bool,
        /// The peer's FIN is known (fin_known or eof took effect).
        peer_fin: bool,
        /// eof took effect: every byte of the peer was read.
        peer_ended: bool,
        recv_pending: bool,
        peer_shutdowns: u32,
        connected_events: u32,
        accepted_events: u32,
        secured_events: u32,
        closed_events: u32,
        closed: Option<Reason>,
        began: Option<Side>,
    }

    impl Model {
        fn queued(&self) -> u64 {
            self.accepted - self.written
        }
    }

    fn begin(start: Start) -> (Lifecycle, Model) {
        let mut m = Model::default();
        let l = match start {
            Start::Fresh { security, message } => {
                let mut l = Lifecycle::new();
                if security {
                    l.set_security().unwrap();
                }
                if message {
                    l.set_message(Role::Client).unwrap();
                }
                assert_quiet(&mut l);
                m.security = security;
                m.message = message;
                l
            }
            Start::Dialed => {
                let mut l = Lifecycle::new();
                l.connect().unwrap();
                l.connected();
                assert_eq!(events(&mut l), [Event::Connected]);
                m.connected_events = 1;
                m.open = true;
                m.live = true;
                l
            }
            Start::Accepted { security, message } => {
                let mut l = Lifecycle::accepted_with(security, message);
                assert_eq!(actions(&mut l), []);
                let expected: &[Event] = if message { &[] } else { &[Event::Accepted] };
                assert_eq!(events(&mut l), expected);
                m.accepted_events = u32::from(!message);
                m.open = !security && !message;
                m.live = true;
                m.server = true;
                m.security = security;
                m.message = message;
                l
            }
        };
        (l, m)
    }

    /// One command's result: once closed, everything is refused.
    fn command(m: &Model, r: Result<(), Refused>) -> Result<bool, TestCaseError> {
        if m.closed.is_some() {
            prop_assert!(r.is_err(), "a closed socket accepted a command");
        }
        Ok(r.is_ok())
    }

    /// The peer's end took effect (eof, or rule 2 through nothing_left).
    fn peer_ends(m: &mut Model) {
        m.held = 0;
        m.peer_ended = true;
        m.peer_fin = true;
        m.recv_pending = false;
        m.began.get_or_insert(Side::Peer);
    }

    fn apply(
        l: &mut Lifecycle,
        m: &mut Model,
        now: &mut Instant,
        step: Step,
    ) -> Result<(), TestCaseError> {
        let was_open = m.open && m.closed.is_none();
        match step {
            Step::Bind => {
                command(m, l.bind())?;
            }
            Step::Listen => {
                command(m, l.listen())?;
            }
            Step::Connect => {
                if command(m, l.connect())? {
                    m.live = true;
                }
            }
            Step::CheckRecv => {
                let r = l.check_recv();
                command(m, r)?;
                if m.peer_ended || m.closed.is_some() {
                    prop_assert!(r.is_err(), "recv allowed after the peer's end");
                }
            }
            Step::Recv => {
                if command(m, l.recv())? {
                    m.recv_pending = true;
                }
            }
            Step::Send(n) => {
                let ok = command(m, l.send(n))?;
                if m.send_closed {
                    prop_assert!(!ok, "send accepted after shutdown/close");
                }
                if ok {
                    m.accepted += n as u64;
                }
            }
            Step::Shutdown => {
                if command(m, l.shutdown())? {
                    m.send_closed = true;
                    m.began.get_or_insert(Side::Us);
                }
            }
            Step::Close(ms) => {
                if command(m, l.close(*now, Duration::from_millis(ms)))? {
                    m.send_closed = true;
                    m.close_called = true;
                    m.began.get_or_insert(Side::Us);
                    m.held = 0;
                    m.recv_pending = false;
                }
            }
            Step::Reject(ms) => {
                let waiting = l.handshake() == Some(Handshake::Message);
                if command(m, l.reject(*now, Duration::from_millis(ms)))? {
                    prop_assert!(m.server && m.message && waiting, "reject allowed");
                    m.rejected = true;
                    m.open = true;
                    m.send_closed = true;
                    m.close_called = true;
                    m.began.get_or_insert(Side::Us);
                    m.held = 0;
                    m.recv_pending = false;
                }
            }
            Step::StartSecurity => {
                let state = l.state();
                if command(m, l.start_security())? {
                    prop_assert_eq!(state, State::Connected);
                    prop_assert!(!m.security, "a second security layer");
                    m.security = true;
                    m.upgraded = true;
                }
            }
            Step::Reset => {
                command(m, l.reset())?;
            }
            Step::Discard => {
                command(m, l.discard())?;
            }
            Step::Stop => l.stop(),
            Step::Connected => l.connected(),
            Step::Secured => l.secured(),
            Step::Admitted => l.admitted(),
            Step::FrameIn(kind) => {
                let r = l.frame_in(kind);
                if !m.message {
                    prop_assert!(r.is_err(), "a frame on a connection without framing");
                }
            }
            Step::FrameOut(kind) => {
                let before = fingerprint(l);
                let r = l.frame_out(kind);
                if !m.message {
                    prop_assert!(r.is_err(), "a frame on a connection without framing");
                }
                if r.is_err() {
                    prop_assert_eq!(fingerprint(l), before, "a refused frame changed it");
                }
            }
            Step::Wrote(n) => {
                let n = (n as u64).min(m.queued());
                l.wrote(n as usize);
                // Once closed the machine must ignore it: `unsent` is final.
                if m.closed.is_none() {
                    m.written += n;
                }
            }
            Step::FinSent => {
                // The driver reports it only after carrying out a SendFin.
                if m.fin_asked && !m.fin_out && m.closed.is_none() {
                    m.fin_out = true;
                    l.fin_sent();
                } else {
                    assert_ignored(l, Lifecycle::fin_sent);
                }
            }
            Step::Read(n) => {
                if l.wants_input() {
                    prop_assert!(m.closed.is_none());
                    let draining = l.is_draining();
                    l.read(n);
                    m.read += n as u64;
                    if !draining {
                        m.held += n as u64;
                    }
                } else if m.closed.is_some() {
                    l.read(n); // must be ignored
                }
            }
            Step::Delivered(n) => {
                let n = (n as u64).min(m.held);
                l.delivered(n as usize);
                m.delivered += n;
                m.held -= n;
                m.recv_pending = false;
            }
            Step::DropHeld => {
                l.drop_held();
                m.held = 0;
            }
            Step::FinKnown => {
                if l.wire_up() && !m.peer_fin && m.closed.is_none() {
                    m.began.get_or_insert(Side::Peer);
                    m.peer_fin = true;
                }
                l.fin_known();
            }
            Step::Eof => {
                // The end of the stream counts once the connection is open.
                if l.wants_input() && was_open {
                    peer_ends(m);
                }
                l.eof();
            }
            Step::NothingLeft => {
                let probe = l.wants_end_probe();
                if probe {
                    prop_assert!(m.peer_fin && !m.peer_ended && !m.recv_pending);
                    prop_assert!(!m.close_called && !m.message && m.held == 0);
                    peer_ends(m);
                    l.nothing_left();
                } else {
                    assert_ignored(l, Lifecycle::nothing_left);
                }
            }
            Step::Fail(reason) => l.fail(reason),
            Step::Timeout(ms) => {
                *now += Duration::from_millis(ms);
                l.timeout(*now);
            }
        }
        check(l, m, step)
    }

    /// Drain what the step produced and check it against the model.
    fn check(l: &mut Lifecycle, m: &mut Model, step: Step) -> Result<(), TestCaseError> {
        let acts = actions(l);
        let evs = events(l);

        // Rule 4: nothing at all after Closed.
        if m.closed.is_some() {
            prop_assert!(
                acts.is_empty() && evs.is_empty(),
                "output after Closed: {:?} {:?}",
                acts,
                evs
            );
        }

        // Events: Connected (dialed) or Accepted (accepted) once, at the input
        // that finished the handshakes; Secured once, before Connected, after
        // Accepted; PeerShutdown once and only at the peer's end; Closed once
        // and last.
        for (i, e) in evs.iter().enumerate() {
            match *e {
                Event::Connected => {
                    m.connected_events += 1;
                    prop_assert!(!m.server, "Connected on an accepted connection");
                    prop_assert!(
                        matches!(
                            step,
                            Step::Connected
                                | Step::Secured
                                | Step::Admitted
                                | Step::FrameIn(FrameType::Welcome)
                        ),
                        "Connected at {:?}",
                        step
                    );
                    prop_assert!(
                        !m.security || m.secured_events == 1,
                        "Connected before Secured"
                    );
                    m.open = true;
                }
                Event::Accepted => {
                    m.accepted_events += 1;
                    prop_assert!(m.server, "Accepted on a dialed connection");
                    prop_assert!(!m.rejected, "Accepted after a REJECT");
                    prop_assert!(
                        matches!(step, Step::Admitted | Step::FrameOut(FrameType::Welcome)),
                        "Accepted at {:?}",
                        step
                    );
                    m.open = !m.security || m.secured_events == 1 || evs.contains(&Event::Secured);
                }
                Event::Secured => {
                    m.secured_events += 1;
                    prop_assert!(m.security, "Secured without a security layer");
                    prop_assert!(!m.rejected, "Secured after a REJECT");
                    if m.server {
                        // A server's user hears of its connection first.
                        prop_assert_eq!(m.accepted_events, 1, "Secured before Accepted");
                        m.open = true;
                    }
                }
                Event::PeerShutdown => {
                    m.peer_shutdowns += 1;
                    prop_assert!(
                        matches!(step, Step::Eof | Step::NothingLeft),
                        "PeerShutdown at {:?}",
                        step
                    );
                    prop_assert!(!m.close_called, "PeerShutdown after close()");
                }
                Event::Closed(reason) => {
                    m.closed_events += 1;
                    prop_assert_eq!(i, evs.len() - 1, "Closed is not last: {:?}", evs);
                    m.closed = Some(reason);
                    m.held = 0;
                    m.recv_pending = false;
                    if reason.is_graceful() {
                        let expected = match m.began {
                            Some(Side::Peer) => Reason::ByPeer,
                            _ => Reason::Normal,
                        };
                        prop_assert_eq!(reason, expected, "who began: {:?}", m.began);
                        // The end is decided after the FIN went out, never
                        // before: a FIN that fails is the failure's end.
                        if m.live {
                            prop_assert!(m.fin_out, "graceful end before the FIN was out");
                            prop_assert!(m.peer_ended || m.close_called);
                        }
                    }
                }
            }
        }
        prop_assert!(m.connected_events + m.accepted_events <= 1);
        prop_assert!(m.secured_events <= 1);
        prop_assert!(m.peer_shutdowns <= 1);
        prop_assert!(m.closed_events <= 1, "Closed twice");

        // Actions: SendFin once, only after shutdown/close, the last byte and
        // every handshake; a terminal action only with Closed, last; never a
        // FIN in the same step as the end.
        let terminal = |a: &Action| matches!(a, Action::Release | Action::Reset | Action::Discard);
        let closed_now = evs.iter().any(|e| matches!(e, Event::Closed(_)));
        for (i, a) in acts.iter().enumerate() {
            match *a {
                Action::SendFin => {
                    prop_assert!(!m.fin_asked, "SendFin twice");
                    prop_assert!(m.send_closed, "SendFin before shutdown/close");
                    prop_assert_eq!(m.queued(), 0, "SendFin with bytes queued");
                    prop_assert!(m.open, "SendFin during a handshake");
                    prop_assert!(!l.holds_output(), "SendFin while output is held");
                    m.fin_asked = true;
                }
                Action::ArmTimer(_) | Action::DrainInput => {
                    prop_assert!(matches!(step, Step::Close(_) | Step::Reject(_)));
                }
                Action::Release | Action::Reset | Action::Discard => {
                    prop_assert_eq!(i, acts.len() - 1, "terminal action not last: {:?}", acts);
                }
            }
        }
        prop_assert_eq!(
            acts.iter().any(terminal),
            closed_now,
            "terminal action without Closed or Closed without one: {:?} {:?}",
            acts,
            evs
        );
        prop_assert!(
            !(acts.contains(&Action::SendFin) && closed_now),
            "a FIN and the end in one step: {:?}",
            acts
        );

        // The machine's own view.
        if let Some(reason) = m.closed {
            prop_assert_eq!(l.state(), State::NotConnected);
            prop_assert_eq!(l.closed(), Some(reason));
            prop_assert!(!l.wants_input());
            prop_assert!(!l.is_bound());
            prop_assert_eq!(l.stage(), None);
            prop_assert_eq!(l.handshake(), None);
            prop_assert!(!l.holds_output() && !l.wire_up() && !l.wants_end_probe());
        } else {
            prop_assert_eq!(l.closed(), None);
            // Never open while a handshake is pending (but for an upgrade).
            if m.live && (!m.open || (l.handshake().is_some() && !m.upgraded)) {
                prop_assert!(
                    matches!(l.state(), State::Connecting | State::Closing),
                    "state {:?} during handshake {:?}",
                    l.state(),
                    l.handshake()
                );
            }
            if m.open {
                prop_assert!(l.wire_up());
            }
            // Rule 1: the FIN follows the last byte as soon as it is written
            // and the handshakes are done.
            if m.send_closed && m.open && !l.holds_output() && m.queued() == 0 {
                prop_assert!(m.fin_asked, "FIN overdue");
            }
            // Rule 3: both directions finished means closed.
            prop_assert!(!(m.fin_out && m.peer_ended), "both ended, still open");
            if m.peer_ended {
                prop_assert!(!l.wants_input());
            }
            // Rule 2 without a recv: asked only when it can apply.
            if l.wants_end_probe() {
                prop_assert!(m.peer_fin && !m.peer_ended && !m.recv_pending && m.open);
            }
            // The timeout stage follows the phase.
            match l.stage() {
                Some(Stage::Connecting) => {
                    prop_assert_eq!(l.handshake(), Some(Handshake::Transport))
                }
                Some(Stage::Handshaking) => {
                    prop_assert!(l.wire_up() && l.handshake().is_some())
                }
                Some(Stage::Open) => prop_assert!(m.open && l.handshake().is_none()),
                None => prop_assert!(
                    !m.live || l.is_draining(),
                    "no stage on a live connection not closing"
                ),
            }
        }
        prop_assert_eq!(l.recv_pending(), m.recv_pending, "recv pending");

        // Rule 5: every byte is accounted for, at every step.
        prop_assert_eq!(m.accepted, m.written + l.unsent(), "send accounting");
        prop_assert_eq!(m.read, m.delivered + l.unread(), "recv accounting");
        Ok(())
    }

    fn run(start: Start, steps: &[Step]) -> Result<(), TestCaseError> {
        let (mut l, mut m) = begin(start);
        let mut now = t0();
        check(&mut l, &mut m, Step::Stop)?;
        for &step in steps {
            apply(&mut l, &mut m, &mut now, step)?;
        }
        // The loop stops: whatever was open ends, and Closed came exactly once.
        apply(&mut l, &mut m, &mut now, Step::Stop)?;
        prop_assert_eq!(m.closed_events, 1);
        prop_assert!(m.closed.is_some());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn lifecycle_keeps_its_rules(
            start in start(),
            steps in prop::collection::vec(step(), 0..=40),
        ) {
            run(start, &steps)?;
        }
    }
}

/// A datagram (UDP) socket: open once bound, `connect` only fixes its peer, and
/// every way of ending it is a discard.
mod datagram {
    use super::*;

    fn fresh() -> Lifecycle {
        let mut l = Lifecycle::datagram();
        assert_quiet(&mut l);
        l
    }

    /// Bound: open at once, with no event (there is no connection to report).
    fn bound() -> Lifecycle {
        let mut l = fresh();
        l.bind().unwrap();
        assert_quiet(&mut l);
        l
    }

    /// Bound, then connected to a peer (its Connected event drained).
    fn connected() -> Lifecycle {
        let mut l = bound();
        l.connect().unwrap();
        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        l
    }

    /// The two open sockets: bound only, and connected.
    fn open() -> [Lifecycle; 2] {
        [bound(), connected()]
    }

    /// A command that ends a socket.
    type End = fn(&mut Lifecycle) -> Result<(), Refused>;

    /// The three ways of ending a socket, each a discard on datagrams.
    fn ends() -> [(Op, End); 3] {
        [
            (Op::Close, |l| l.close(t0(), LINGER)),
            (Op::Reset, Lifecycle::reset),
            (Op::Discard, Lifecycle::discard),
        ]
    }

    #[test]
    fn new_datagram_socket_is_idle() {
        let mut l = fresh();
        assert!(l.is_datagram());
        assert!(!Lifecycle::new().is_datagram());
        assert!(!Lifecycle::accepted().is_datagram());
        assert_eq!(l.state(), State::NotConnected);
        assert_eq!(l.closed(), None);
        assert_eq!((l.unsent(), l.unread()), (0, 0));
        assert!(!l.is_bound());
        assert!(!l.wants_input());
        assert_refused(&mut l, Op::Recv, |l| l.check_recv());
        assert_refused(&mut l, Op::Send, |l| l.check_send());
        assert_refused(&mut l, Op::Send, |l| l.send(1));
    }

    #[test]
    fn bind_opens_it_without_an_event() {
        let mut l = fresh();
        assert_eq!(l.bind(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.closed(), None);
        assert!(l.is_bound());
        assert!(l.wants_input());
        assert!(!l.is_draining());
        assert_eq!(l.check_recv(), Ok(()));
        assert_eq!(l.check_send(), Ok(()));
        assert_refused(&mut l, Op::Bind, Lifecycle::bind);
    }

    #[test]
    fn connect_fixes_the_peer() {
        // Bound or not: the driver binds an unbound socket as it connects.
        for mut l in [fresh(), bound()] {
            assert_eq!(l.connect(), Ok(()));
            assert_quiet(&mut l);
            assert_eq!(l.state(), State::Connecting);
            assert!(l.is_bound());
            assert_eq!(l.check_send(), Ok(()));
            assert_eq!(l.check_recv(), Ok(()));
            l.connected();
            assert_eq!(actions(&mut l), []);
            assert_eq!(events(&mut l), [Event::Connected]);
            assert_eq!(l.state(), State::Connected);
            assert_ignored(&mut l, Lifecycle::connected);
        }
    }

    #[test]
    fn connect_again_to_another_peer() {
        let mut l = connected();
        l.send(4).unwrap();
        assert_eq!(l.connect(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connecting);
        l.connected();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.unsent(), 4, "queued datagrams stay queued");
    }

    #[test]
    fn a_failed_connect_ends_it() {
        let mut l = bound();
        l.connect().unwrap();
        l.fail(Reason::ConnectFailed);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ConnectFailed)]);
        assert_gone(&mut l, Reason::ConnectFailed);
    }

    #[test]
    fn shutdown_and_listen_are_refused() {
        for mut l in [fresh(), bound(), connected()] {
            assert_refused(&mut l, Op::Shutdown, Lifecycle::shutdown);
            assert_refused(&mut l, Op::Listen, Lifecycle::listen);
        }
    }

    /// Each send is one datagram, empty ones included.
    #[test]
    fn send_and_wrote_count_unsent() {
        for mut l in open() {
            assert_eq!(l.send(100), Ok(()));
            assert_eq!(l.send(0), Ok(()));
            assert_eq!(l.send(20), Ok(()));
            assert_quiet(&mut l);
            assert_eq!(l.unsent(), 120);
            l.wrote(100);
            l.wrote(0);
            assert_quiet(&mut l);
            assert_eq!(l.unsent(), 20);
            assert_eq!(l.state(), State::Connected);
        }
    }

    /// A datagram longer than the recv: read whole, its first bytes delivered,
    /// the rest counted as unread.
    #[test]
    fn a_cut_datagram_counts_the_rest_unread() {
        for mut l in open() {
            l.read(100);
            l.delivered(10);
            l.drop_held();
            assert_quiet(&mut l);
            assert_eq!(l.unread(), 90);
            l.read(5);
            l.delivered(5);
            assert_eq!(l.unread(), 90);
            assert_eq!(l.state(), State::Connected);
            assert!(l.wants_input());
        }
    }

    /// Nobody is told: no timer, no draining, no FIN; what was queued or held
    /// is counted.
    #[test]
    fn close_reset_and_discard_discard() {
        for (op, end) in ends() {
            for mut l in open() {
                l.send(7).unwrap();
                l.wrote(3);
                l.read(5);
                l.delivered(2);
                assert_eq!(end(&mut l), Ok(()), "{op:?}");
                assert_eq!(actions(&mut l), [Action::Discard], "{op:?}");
                assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
                assert!(!l.is_draining(), "{op:?}");
                assert_eq!((l.unsent(), l.unread()), (4, 3), "{op:?}");
                assert_gone(&mut l, Reason::Discarded);
                assert_setup_refused(&mut l);
                assert_refused(&mut l, op, end);
            }
        }
    }

    /// Never bound: there is nothing to discard, the socket is just let go.
    #[test]
    fn ending_one_never_bound_releases() {
        for (op, end) in ends() {
            let mut l = fresh();
            assert_eq!(end(&mut l), Ok(()), "{op:?}");
            assert_eq!(actions(&mut l), [Action::Release], "{op:?}");
            assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
            assert_gone(&mut l, Reason::Discarded);
        }
    }

    #[test]
    fn stop() {
        for mut l in open() {
            l.send(6).unwrap();
            l.stop();
            assert_eq!(actions(&mut l), [Action::Reset]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
            assert_eq!((l.unsent(), l.unread()), (6, 0));
            assert_gone(&mut l, Reason::Stopped);
        }
        let mut l = fresh();
        l.stop();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Stopped)]);
        assert_gone(&mut l, Reason::Stopped);
    }

    /// The one peer unreachable, or the socket failing under us.
    #[test]
    fn fail_lost_counts_queued_bytes_unsent() {
        for mut l in open() {
            l.send(9).unwrap();
            l.wrote(4);
            l.fail(Reason::Lost);
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
            assert_eq!((l.unsent(), l.unread()), (5, 0));
            assert_gone(&mut l, Reason::Lost);
        }
    }

    /// The driver opens the socket right after `bind`; when that fails, it ends.
    #[test]
    fn a_failed_bind_ends_it() {
        let mut l = bound();
        l.fail(Reason::BindFailed);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::BindFailed)]);
        assert_gone(&mut l, Reason::BindFailed);
    }

    #[test]
    fn timeouts_are_ignored() {
        for mut l in open() {
            assert_ignored(&mut l, |l| l.timeout(t0()));
            assert_ignored(&mut l, |l| l.timeout(t0() + HOUR));
        }
    }
}

/// A dialed connection with a security layer (TLS client): Connecting waits
/// for the transport, then for the security handshake.
/// A datagram socket with a security layer (DTLS): a client that connects and
/// runs its handshake with the one peer, and a listener's association whose
/// handshake runs from its first datagram. Once secured, `close` sends the
/// close_notify (the driver's "FIN") and ends `Normal` without waiting for the
/// peer; the peer's close_notify ends it `ByPeer`; every other end is a
/// discard, as on any datagram socket.
mod datagram_security {
    use super::*;

    /// Bound (or not), given DTLS, connected to its peer: handshaking.
    fn handshaking(bound: bool) -> Lifecycle {
        let mut l = Lifecycle::datagram();
        if bound {
            l.bind().unwrap();
        }
        assert_eq!(l.set_security(), Ok(()));
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        l.connect().unwrap();
        assert_eq!(l.handshake(), Some(Handshake::Transport));
        l.connected();
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert!(l.wire_up() && l.holds_output());
        assert_quiet(&mut l);
        l
    }

    /// A client whose handshake is done (its events drained).
    fn secured_client() -> Lifecycle {
        let mut l = handshaking(true);
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
        assert_eq!(actions(&mut l), []);
        l
    }

    /// An association whose handshake is done (its events drained).
    fn secured_association() -> Lifecycle {
        let mut l = Lifecycle::datagram_accepted(true);
        assert_eq!(events(&mut l), [Event::Accepted]);
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured]);
        assert_eq!(actions(&mut l), []);
        l
    }

    #[test]
    fn security_is_set_before_connect_only() {
        let mut l = handshaking(false);
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        assert_refused(&mut l, Op::Connect, Lifecycle::connect);
        let mut l = secured_client();
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        // The session is with this peer: no connecting again to another.
        assert_refused(&mut l, Op::Connect, Lifecycle::connect);
    }

    #[test]
    fn client_output_waits_for_the_handshake() {
        let mut l = handshaking(true);
        l.send(10).unwrap();
        assert!(l.holds_output());
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
        assert_eq!(
            (l.state(), l.stage()),
            (State::Connected, Some(Stage::Open))
        );
        assert!(!l.holds_output());
        assert_eq!(l.unsent(), 10);
        l.wrote(10);
        assert_eq!(l.unsent(), 0);
    }

    #[test]
    fn association_is_accepted_while_its_handshake_runs() {
        let mut l = Lifecycle::datagram_accepted(true);
        assert!(l.is_datagram());
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert_eq!(events(&mut l), [Event::Accepted]);
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured]);
        assert_eq!(l.state(), State::Connected);
        assert_quiet(&mut l);
    }

    #[test]
    fn plain_association_is_open_at_once() {
        let mut l = Lifecycle::datagram_accepted(false);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.handshake(), None);
        assert_eq!(events(&mut l), [Event::Accepted]);
        // No graceful end without a session: close is a discard.
        l.close(t0(), LINGER).unwrap();
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
    }

    #[test]
    fn close_sends_close_notify_after_the_queue_and_ends_normal() {
        for mut l in [secured_client(), secured_association()] {
            l.send(7).unwrap();
            l.close(t0(), LINGER).unwrap();
            assert_eq!(l.state(), State::Closing);
            assert_eq!(actions(&mut l), [Action::ArmTimer(deadline())]);
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Recv, |l| l.check_recv());
            l.wrote(7);
            assert_eq!(actions(&mut l), [Action::SendFin]);
            assert_quiet(&mut l);
            l.fin_sent();
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
            assert_eq!((l.unsent(), l.unread()), (0, 0));
            assert_gone(&mut l, Reason::Normal);
        }
    }

    #[test]
    fn input_while_closing_is_unread() {
        let mut l = secured_association();
        l.read(5);
        l.close(t0(), LINGER).unwrap();
        l.read(3);
        assert_eq!(l.unread(), 8);
    }

    #[test]
    fn close_notify_that_cannot_go_out_in_time_is_a_discard() {
        let mut l = secured_client();
        l.send(4).unwrap();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(actions(&mut l), [Action::ArmTimer(deadline())]);
        l.timeout(just_before_deadline());
        assert_quiet(&mut l);
        l.timeout(deadline());
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
        assert_eq!(l.unsent(), 4);
    }

    #[test]
    fn close_during_the_handshake_is_a_discard() {
        let mut l = handshaking(true);
        l.send(3).unwrap();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        assert_eq!(l.unsent(), 3);
    }

    #[test]
    fn peer_close_notify_ends_it_by_peer_once_delivered() {
        for mut l in [secured_client(), secured_association()] {
            l.send(2).unwrap();
            l.recv().unwrap();
            l.read(6);
            l.fin_known();
            assert_eq!(l.state(), State::NoRecv);
            assert_quiet(&mut l);
            l.delivered(6);
            l.eof();
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
            assert_eq!((l.unsent(), l.unread()), (2, 0));
        }
    }

    #[test]
    fn reset_discard_and_timeouts_are_discards() {
        let mut l = secured_client();
        l.reset().unwrap();
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Discarded)]);
        let mut l = handshaking(false);
        l.expire(Reason::HandshakeTimeout);
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::HandshakeTimeout)]);
        let mut l = secured_association();
        l.expire(Reason::IdleTimeout);
        assert_eq!(actions(&mut l), [Action::Discard]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::IdleTimeout)]);
    }

    #[test]
    fn failed_handshake_releases_with_its_reason() {
        let mut l = Lifecycle::datagram_accepted(true);
        assert_eq!(events(&mut l), [Event::Accepted]);
        l.fail(Reason::TlsHandshakeFailed);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::TlsHandshakeFailed)]);
    }
}

mod connecting_security {
    use super::*;

    /// `set_security`, then `connect`: waiting for the transport.
    pub(super) fn tls_client() -> Lifecycle {
        let mut l = Lifecycle::new();
        assert_eq!(l.set_security(), Ok(()));
        assert_eq!(l.connect(), Ok(()));
        assert_quiet(&mut l);
        l
    }

    /// The transport is up; the TLS handshake runs.
    pub(super) fn securing() -> Lifecycle {
        let mut l = tls_client();
        l.connected();
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn waits_for_the_transport_first() {
        let l = tls_client();
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.handshake(), Some(Handshake::Transport));
        assert_eq!(l.stage(), Some(Stage::Connecting));
        assert!(!l.wire_up());
        assert!(l.holds_output());
    }

    #[test]
    fn connected_starts_the_security_handshake_without_an_event() {
        let l = securing();
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert!(l.wire_up(), "the handshake's records may be written");
        assert!(l.holds_output(), "the user's bytes wait for it");
        assert!(l.wants_input());
        assert_eq!(l.check_send(), Ok(()));
        assert_eq!(l.check_recv(), Ok(()));
    }

    /// Secured before Connected, in one step.
    #[test]
    fn secured_opens_it() {
        let mut l = securing();
        l.send(4).unwrap();
        l.secured();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.handshake(), None);
        assert_eq!(l.stage(), Some(Stage::Open));
        assert!(!l.holds_output());
        assert_eq!(l.unsent(), 4, "what was sent meanwhile is still to go");
        assert_ignored(&mut l, Lifecycle::secured);
        assert_ignored(&mut l, Lifecycle::connected);
    }

    #[test]
    fn inputs_out_of_turn_are_ignored() {
        let mut l = tls_client();
        assert_ignored(&mut l, Lifecycle::secured);
        assert_ignored(&mut l, Lifecycle::admitted);
        assert_ignored(&mut l, Lifecycle::fin_known);
        assert_ignored(&mut l, Lifecycle::fin_sent);
        let mut l = securing();
        assert_ignored(&mut l, Lifecycle::connected);
        assert_ignored(&mut l, Lifecycle::admitted);
        assert_ignored(&mut l, Lifecycle::eof);
        assert_ignored(&mut l, Lifecycle::nothing_left);
        assert_ignored(&mut l, Lifecycle::fin_sent);
    }

    /// A FIN that comes with the handshake's last records is kept: the
    /// connection shows NoRecv as soon as it opens.
    #[test]
    fn a_fin_during_the_handshake_is_remembered() {
        let mut l = securing();
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connecting);
        assert!(!l.wants_end_probe(), "a FIN during a handshake is its own");
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
        assert_eq!(l.state(), State::NoRecv);
        assert!(l.wants_end_probe());
        l.nothing_left();
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        // The peer began: our FIN finishes it ByPeer.
        l.shutdown().unwrap();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
    }

    #[test]
    fn a_fin_before_the_transport_is_ignored() {
        assert_ignored(&mut tls_client(), Lifecycle::fin_known);
    }

    /// Rule 1: the FIN would cut the handshake off; it waits for it.
    #[test]
    fn shutdown_during_the_handshake_waits_for_it() {
        let mut l = securing();
        assert_eq!(l.shutdown(), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connecting);
        l.secured();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
        assert_eq!(l.state(), State::NoSend);
    }

    #[test]
    fn close_during_the_handshake_waits_for_it() {
        let mut l = securing();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(l.state(), State::Closing);
        assert_eq!(l.stage(), None, "the linger deadline is the close's");
        assert_eq!(l.handshake(), Some(Handshake::Security));
        l.secured();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [Event::Secured, Event::Connected]);
    }

    #[test]
    fn a_failed_handshake_ends_it_without_connected() {
        let mut l = securing();
        l.send(3).unwrap();
        l.fail(Reason::TlsHandshakeFailed);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::TlsHandshakeFailed)]);
        assert_eq!(l.unsent(), 3);
        assert_gone(&mut l, Reason::TlsHandshakeFailed);
        assert_ignored(&mut l, Lifecycle::secured);
    }

    #[test]
    fn the_handshake_timeout_resets() {
        let mut l = securing();
        l.expire(Reason::HandshakeTimeout);
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::HandshakeTimeout)]);
        assert_gone(&mut l, Reason::HandshakeTimeout);
    }

    /// Layers are set before connecting or listening, once, on streams only.
    #[test]
    fn layers_only_before_connecting() {
        let mut l = Lifecycle::new();
        l.bind().unwrap();
        assert_eq!(l.set_security(), Ok(()));
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        assert_eq!(l.set_message(Role::Client), Ok(()));
        assert_refused(&mut l, Op::SetFraming, |l| l.set_message(Role::Client));
        for mut l in [tls_client(), securing(), super::connected::connected()] {
            assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
            assert_refused(&mut l, Op::SetFraming, |l| l.set_message(Role::Client));
        }
        let mut l = Lifecycle::new();
        l.listen().unwrap();
        assert_refused(&mut l, Op::SetSecurity, Lifecycle::set_security);
        // A datagram socket takes security (DTLS), never framing.
        let mut l = Lifecycle::datagram();
        assert_refused(&mut l, Op::SetFraming, |l| l.set_message(Role::Client));
        assert_eq!(l.set_security(), Ok(()));
    }
}

/// A dialed connection with a message layer (framed client), alone or over
/// security.
mod connecting_message {
    use super::*;

    /// `set_message(Client)`, `connect`, HELLO queued first.
    fn framed_client() -> Lifecycle {
        let mut l = Lifecycle::new();
        l.set_message(Role::Client).unwrap();
        l.connect().unwrap();
        assert_eq!(l.frame_out(FrameType::Hello), Ok(()));
        assert_quiet(&mut l);
        assert_eq!(l.handshake(), Some(Handshake::Transport));
        l
    }

    /// The transport is up: HELLO goes, WELCOME is awaited.
    fn awaiting_welcome() -> Lifecycle {
        let mut l = framed_client();
        l.connected();
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn waits_for_welcome_holding_the_users_messages() {
        let mut l = awaiting_welcome();
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.handshake(), Some(Handshake::Message));
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert!(l.wire_up());
        assert!(l.holds_output());
        // Messages may be queued; they wait for WELCOME.
        assert_eq!(l.frame_out(FrameType::Data), Ok(()));
        assert_eq!(l.send(9), Ok(()));
        assert_quiet(&mut l);
    }

    #[test]
    fn welcome_is_the_admission() {
        let mut l = awaiting_welcome();
        assert_eq!(l.frame_in(FrameType::Welcome), Ok(()));
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.stage(), Some(Stage::Open));
        assert!(!l.holds_output());
        assert_eq!(l.frame_in(FrameType::Data), Ok(()));
        assert_eq!(l.frame_out(FrameType::Data), Ok(()));
        assert_quiet(&mut l);
    }

    /// Without frames (a future message layer), `admitted` is the input.
    #[test]
    fn admitted_opens_it_too() {
        let mut l = awaiting_welcome();
        l.admitted();
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
        assert_ignored(&mut l, Lifecycle::admitted);
    }

    #[test]
    fn admitted_before_the_transport_is_ignored() {
        let mut l = framed_client();
        assert_ignored(&mut l, Lifecycle::admitted);
        assert_ignored(&mut l, Lifecycle::secured);
    }

    #[test]
    fn reject_received_ends_it_rejected() {
        let mut l = awaiting_welcome();
        l.send(5).unwrap();
        assert_eq!(l.frame_in(FrameType::Reject), Ok(()));
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ConnectRejected)]);
        assert_eq!(l.unsent(), 5);
        assert_gone(&mut l, Reason::ConnectRejected);
    }

    /// The peer's protocol error: reset, and the rule named.
    #[test]
    fn a_frame_out_of_order_from_the_server_resets() {
        let mut l = awaiting_welcome();
        let err = l.frame_in(FrameType::Data).unwrap_err();
        assert!(matches!(err, FrameError::OutOfOrder { .. }), "{err}");
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ProtocolError)]);
        assert_gone(&mut l, Reason::ProtocolError);
    }

    /// Our own frames out of order: a caller's bug, refused, nothing changes.
    #[test]
    fn our_frames_out_of_order_change_nothing() {
        let mut l = awaiting_welcome();
        let before = fingerprint(&l);
        assert!(l.frame_out(FrameType::Hello).is_err(), "HELLO twice");
        assert!(
            l.frame_out(FrameType::Welcome).is_err(),
            "a client's WELCOME"
        );
        assert_eq!(fingerprint(&l), before);
        assert_quiet(&mut l);
        let mut l = Lifecycle::new();
        l.set_message(Role::Client).unwrap();
        l.connect().unwrap();
        let before = fingerprint(&l);
        assert!(l.frame_out(FrameType::Data).is_err(), "DATA before HELLO");
        assert_eq!(fingerprint(&l), before);
    }

    #[test]
    fn close_before_welcome_sends_its_fin_after_it() {
        let mut l = awaiting_welcome();
        l.frame_out(FrameType::Farewell).unwrap();
        l.send(5).unwrap();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::DrainInput]
        );
        assert_eq!(l.handshake(), Some(Handshake::Message));
        l.frame_in(FrameType::Welcome).unwrap();
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(actions(&mut l), [], "the FAREWELL is not out yet");
        l.wrote(5);
        assert_eq!(actions(&mut l), [Action::SendFin]);
    }

    /// A client over TLS: Secured (the driver's on_tls_ready) when TLS is
    /// done, Connected at WELCOME.
    #[test]
    fn over_security_secured_then_connected() {
        let mut l = Lifecycle::new();
        l.set_security().unwrap();
        l.set_message(Role::Client).unwrap();
        l.connect().unwrap();
        l.frame_out(FrameType::Hello).unwrap();
        l.connected();
        assert_quiet(&mut l);
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_ignored(&mut l, Lifecycle::admitted);
        l.secured();
        assert_eq!(events(&mut l), [Event::Secured]);
        assert_eq!(l.handshake(), Some(Handshake::Message));
        assert_eq!(l.state(), State::Connecting);
        assert!(l.holds_output());
        l.frame_in(FrameType::Welcome).unwrap();
        assert_eq!(events(&mut l), [Event::Connected]);
        assert_eq!(l.state(), State::Connected);
    }

    /// A framed peer's end is its FAREWELL, read by a recv: no end probe.
    #[test]
    fn no_end_probe_on_a_framed_connection() {
        let mut l = awaiting_welcome();
        l.frame_in(FrameType::Welcome).unwrap();
        events(&mut l);
        l.fin_known();
        assert_eq!(l.state(), State::NoRecv);
        assert!(!l.wants_end_probe());
        assert_ignored(&mut l, Lifecycle::nothing_left);
        l.frame_in(FrameType::Farewell).unwrap();
        assert_quiet(&mut l);
        l.eof();
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
    }
}

/// Connections taken from a listener, with and without layers.
mod accepted_handshakes {
    use super::*;

    #[test]
    fn plain_is_accepted() {
        let mut l = Lifecycle::accepted_with(false, false);
        assert_eq!(fingerprint(&l), fingerprint(&Lifecycle::accepted()));
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Accepted]);
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.handshake(), None);
        assert_eq!(l.stage(), Some(Stage::Open));
        assert!(l.wire_up() && !l.holds_output());
        assert_phase_inputs_ignored(&mut l);
        assert_ignored(&mut l, Lifecycle::connected);
    }

    /// A TLS server's connection has its user while the handshake runs.
    #[test]
    fn security_only_accepted_at_once_secured_later() {
        let mut l = Lifecycle::accepted_with(true, false);
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Accepted]);
        assert_eq!(l.state(), State::Connecting);
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert!(l.wire_up() && l.holds_output());
        assert_ignored(&mut l, Lifecycle::connected);
        assert_ignored(&mut l, Lifecycle::admitted);
        l.secured();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Secured], "never Connected");
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.stage(), Some(Stage::Open));
        assert!(!l.holds_output());
    }

    /// `server(security)` with a HELLO received, awaiting the decision.
    fn framed_server(security: bool) -> Lifecycle {
        let mut l = Lifecycle::accepted_with(security, true);
        assert_quiet(&mut l);
        if security {
            assert_eq!(l.handshake(), Some(Handshake::Security));
            l.secured();
            assert_quiet(&mut l);
        }
        assert_eq!(l.handshake(), Some(Handshake::Message));
        assert_eq!(l.frame_in(FrameType::Hello), Ok(()));
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn a_framed_server_has_no_user_until_admitted() {
        for security in [false, true] {
            let mut l = framed_server(security);
            assert_eq!(l.state(), State::Connecting);
            assert_eq!(l.stage(), Some(Stage::Handshaking));
            assert!(!l.holds_output(), "its answer must go out");
            assert_eq!(l.frame_out(FrameType::Welcome), Ok(()));
            let expected: &[Event] = if security {
                &[Event::Accepted, Event::Secured]
            } else {
                &[Event::Accepted]
            };
            assert_eq!(events(&mut l), expected);
            assert_eq!(actions(&mut l), []);
            assert_eq!(l.state(), State::Connected);
            assert_eq!(l.stage(), Some(Stage::Open));
            assert_eq!(l.frame_out(FrameType::Data), Ok(()));
            assert_phase_inputs_ignored(&mut l);
        }
    }

    #[test]
    fn a_server_answers_only_after_hello() {
        let mut l = Lifecycle::accepted_with(false, true);
        let before = fingerprint(&l);
        assert!(l.frame_out(FrameType::Welcome).is_err());
        assert!(l.frame_out(FrameType::Reject).is_err());
        assert_eq!(fingerprint(&l), before);
        assert_quiet(&mut l);
    }

    /// Failing before admission: nobody was told of it, so only Closed.
    #[test]
    fn failing_before_admission_never_accepts() {
        for security in [false, true] {
            let mut l = framed_server(security);
            l.expire(Reason::HandshakeTimeout);
            assert_eq!(actions(&mut l), [Action::Reset]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::HandshakeTimeout)]);
            assert_gone(&mut l, Reason::HandshakeTimeout);
            assert!(l.frame_out(FrameType::Welcome).is_ok());
            assert_quiet(&mut l);
        }
    }

    #[test]
    fn a_fin_before_admission_shows_at_once_after() {
        let mut l = framed_server(true);
        l.fin_known();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::Connecting);
        l.frame_out(FrameType::Welcome).unwrap();
        assert_eq!(events(&mut l), [Event::Accepted, Event::Secured]);
        assert_eq!(l.state(), State::NoRecv);
    }

    /// REJECT, FIN after it, drain, Normal; never a user.
    #[test]
    fn reject_ends_gracefully_without_a_user() {
        for security in [false, true] {
            let mut l = framed_server(security);
            assert_eq!(l.frame_out(FrameType::Reject), Ok(()));
            l.send(12).unwrap(); // the REJECT frame's bytes
            assert_eq!(l.reject(t0(), LINGER), Ok(()));
            assert_eq!(
                actions(&mut l),
                [Action::ArmTimer(deadline()), Action::DrainInput]
            );
            assert_eq!(events(&mut l), []);
            assert_eq!(l.state(), State::Closing);
            assert_eq!(l.handshake(), None);
            assert_eq!(l.stage(), None);
            assert!(l.is_draining());
            assert_refused(&mut l, Op::Send, |l| l.send(1));
            assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
            assert_ignored(&mut l, Lifecycle::admitted);
            l.wrote(12);
            assert_eq!(actions(&mut l), [Action::SendFin]);
            l.fin_sent();
            assert_quiet(&mut l);
            l.read(3);
            l.eof();
            assert_eq!(actions(&mut l), [Action::Release]);
            assert_eq!(events(&mut l), [Event::Closed(Reason::Normal)]);
            assert_eq!((l.unsent(), l.unread()), (0, 3));
            assert_gone(&mut l, Reason::Normal);
        }
    }

    #[test]
    fn reject_that_never_drains_times_out() {
        let mut l = framed_server(false);
        l.frame_out(FrameType::Reject).unwrap();
        l.reject(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [
                Action::ArmTimer(deadline()),
                Action::DrainInput,
                Action::SendFin
            ]
        );
        l.fin_sent();
        l.timeout(deadline());
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
    }

    #[test]
    fn reject_is_refused_anywhere_else() {
        // Before HELLO, or without the REJECT frame.
        let mut l = Lifecycle::accepted_with(false, true);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        let mut l = framed_server(false);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        // After admission.
        l.frame_out(FrameType::Welcome).unwrap();
        events(&mut l);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        // Before the security handshake, plain, security-only, on a client.
        let mut l = Lifecycle::accepted_with(true, true);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        let mut l = super::connected::accepted();
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        let mut l = Lifecycle::accepted_with(true, false);
        events(&mut l);
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
        let mut l = Lifecycle::new();
        l.set_message(Role::Client).unwrap();
        l.connect().unwrap();
        l.connected();
        assert_refused(&mut l, Op::Reject, |l| l.reject(t0(), LINGER));
    }

    #[test]
    fn nothing_after_our_reject() {
        let mut l = framed_server(false);
        l.frame_out(FrameType::Reject).unwrap();
        let before = fingerprint(&l);
        assert_eq!(
            l.frame_out(FrameType::Data),
            Err(FrameError::AfterReject(FrameType::Data))
        );
        assert_eq!(
            l.frame_out(FrameType::Welcome),
            Err(FrameError::AfterReject(FrameType::Welcome))
        );
        assert_eq!(fingerprint(&l), before);
    }
}

/// StartTLS: an open connection adds security.
mod upgrade {
    use super::connected::{accepted, connected};
    use super::*;

    fn upgrading() -> Lifecycle {
        let mut l = connected();
        assert_eq!(l.start_security(), Ok(()));
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn the_state_stays_connected_and_output_is_held() {
        let mut l = upgrading();
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.handshake(), Some(Handshake::Security));
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        assert!(l.wire_up() && l.holds_output());
        assert_eq!(l.send(3), Ok(()));
        assert_eq!(l.check_recv(), Ok(()));
        l.secured();
        assert_eq!(actions(&mut l), []);
        assert_eq!(events(&mut l), [Event::Secured], "no second Connected");
        assert_eq!(l.state(), State::Connected);
        assert_eq!(l.stage(), Some(Stage::Open));
        assert!(!l.holds_output());
        assert_eq!(l.unsent(), 3);
    }

    #[test]
    fn refused_unless_connected_and_without_security() {
        assert_refused(&mut upgrading(), Op::StartTls, Lifecycle::start_security);
        let mut l = upgrading();
        l.secured();
        events(&mut l);
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = connecting_security::securing();
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = Lifecycle::accepted_with(true, false);
        events(&mut l);
        l.secured();
        events(&mut l);
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = super::connecting::connecting();
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = super::no_send::no_send();
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = super::no_recv::no_recv();
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = connected();
        l.close(t0(), LINGER).unwrap();
        actions(&mut l);
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        let mut l = Lifecycle::datagram();
        l.bind().unwrap();
        assert_refused(&mut l, Op::StartTls, Lifecycle::start_security);
        // An accepted plain connection may upgrade (as the TLS server).
        let mut l = accepted();
        assert_eq!(l.start_security(), Ok(()));
    }

    /// Rule 1: the FIN waits for the upgrade, as it waits for any handshake.
    #[test]
    fn shutdown_during_the_upgrade_waits_for_it() {
        let mut l = upgrading();
        l.shutdown().unwrap();
        assert_quiet(&mut l);
        assert_eq!(l.state(), State::NoSend);
        l.secured();
        assert_eq!(actions(&mut l), [Action::SendFin]);
        assert_eq!(events(&mut l), [Event::Secured]);
    }

    #[test]
    fn a_fin_during_the_upgrade_is_not_probed() {
        let mut l = upgrading();
        l.fin_known();
        assert_eq!(l.state(), State::NoRecv);
        assert!(!l.wants_end_probe());
        l.secured();
        events(&mut l);
        assert!(l.wants_end_probe());
    }

    #[test]
    fn a_failed_upgrade() {
        let mut l = upgrading();
        l.fail(Reason::TlsHandshakeFailed);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::TlsHandshakeFailed)]);
        assert_gone(&mut l, Reason::TlsHandshakeFailed);
    }
}

/// Rule 2 without a recv: the driver probes when asked and reports
/// `nothing_left`; the lifecycle decides whether that ends the peer's side.
mod rule2_end_probe {
    use super::connected::{accepted, connected};
    use super::*;

    fn fin_known() -> Lifecycle {
        let mut l = connected();
        l.fin_known();
        assert_quiet(&mut l);
        l
    }

    #[test]
    fn probe_once_the_fin_is_known_and_nobody_reads() {
        assert!(!connected().wants_end_probe(), "no FIN known");
        for mut l in [fin_known(), {
            let mut l = accepted();
            l.fin_known();
            l
        }] {
            assert!(l.wants_end_probe());
            l.nothing_left();
            assert_eq!(actions(&mut l), []);
            assert_eq!(events(&mut l), [Event::PeerShutdown]);
            assert_eq!(l.state(), State::NoRecv);
            assert!(!l.wants_end_probe());
            assert!(!l.wants_input());
            assert_refused(&mut l, Op::Recv, Lifecycle::recv);
            assert_ignored(&mut l, Lifecycle::nothing_left);
        }
    }

    #[test]
    fn a_pending_recv_reaches_the_end_itself() {
        let mut l = fin_known();
        assert_eq!(l.recv(), Ok(()));
        assert!(l.recv_pending());
        assert_eq!(l.recv(), Ok(()), "asking again is the driver's to refuse");
        assert!(!l.wants_end_probe());
        assert_ignored(&mut l, Lifecycle::nothing_left);
        l.read(4);
        l.delivered(4);
        assert!(!l.recv_pending());
        assert!(l.wants_end_probe(), "answered: probe again");
    }

    #[test]
    fn eof_answers_a_pending_recv() {
        let mut l = fin_known();
        l.recv().unwrap();
        l.eof();
        assert!(!l.recv_pending());
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
    }

    #[test]
    fn close_drops_a_pending_recv_and_ends_its_own_way() {
        let mut l = fin_known();
        l.recv().unwrap();
        l.close(t0(), LINGER).unwrap();
        actions(&mut l);
        assert!(!l.recv_pending());
        assert!(!l.wants_end_probe(), "draining");
        assert_ignored(&mut l, Lifecycle::nothing_left);
    }

    #[test]
    fn bytes_held_are_not_thrown_away_by_a_probe() {
        let mut l = fin_known();
        l.read(2);
        assert!(!l.wants_end_probe());
        assert_ignored(&mut l, Lifecycle::nothing_left);
    }

    /// We shut down first: the probe finishes the socket, Normal.
    #[test]
    fn after_our_fin_the_probe_closes_it() {
        let mut l = super::no_send::no_send();
        l.fin_known();
        assert!(l.wants_end_probe());
        l.nothing_left();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(
            events(&mut l),
            [Event::PeerShutdown, Event::Closed(Reason::Normal)]
        );
        assert_gone(&mut l, Reason::Normal);
    }

    #[test]
    fn recv_marks_pending_where_check_recv_allows() {
        let mut l = super::connecting::connecting();
        assert_eq!(l.recv(), Ok(()));
        assert!(l.recv_pending());
        for mut l in [Lifecycle::new(), {
            let mut l = Lifecycle::new();
            l.listen().unwrap();
            l
        }] {
            assert_refused(&mut l, Op::Recv, Lifecycle::recv);
        }
        let mut l = super::no_recv::no_recv_ended();
        assert_refused(&mut l, Op::Recv, Lifecycle::recv);
    }

    #[test]
    fn no_probe_while_connecting() {
        let mut l = connecting_security::securing();
        l.fin_known();
        assert!(!l.wants_end_probe());
        assert_ignored(&mut l, Lifecycle::nothing_left);
    }
}

/// Which timeout applies, state by state.
mod timeout_stage {
    use super::*;

    #[test]
    fn each_state_has_its_stage() {
        let mut l = Lifecycle::new();
        assert_eq!(l.stage(), None);
        l.bind().unwrap();
        assert_eq!(l.stage(), None);
        let mut listener = Lifecycle::new();
        listener.listen().unwrap();
        assert_eq!(listener.stage(), None);

        l.connect().unwrap();
        assert_eq!(l.stage(), Some(Stage::Connecting));
        l.connected();
        assert_eq!(l.stage(), Some(Stage::Open));
        l.shutdown().unwrap();
        assert_eq!(l.stage(), Some(Stage::Open), "NoSend is still open");
        l.fin_known();
        assert_eq!(l.stage(), Some(Stage::Open), "NoSendRecv too");
        l.close(t0(), LINGER).unwrap();
        assert_eq!(l.stage(), None, "closing: the linger deadline's");
        l.reset().unwrap();
        assert_eq!(l.stage(), None, "closed");

        let mut l = super::no_recv::no_recv();
        assert_eq!(l.stage(), Some(Stage::Open));
        l.stop();
        assert_eq!(l.stage(), None);
    }

    #[test]
    fn handshakes_over_the_wire_are_handshaking() {
        let l = connecting_security::tls_client();
        assert_eq!(l.stage(), Some(Stage::Connecting));
        let l = connecting_security::securing();
        assert_eq!(l.stage(), Some(Stage::Handshaking));
        for (security, message) in [(true, false), (false, true), (true, true)] {
            let l = Lifecycle::accepted_with(security, message);
            assert_eq!(l.stage(), Some(Stage::Handshaking), "{security} {message}");
        }
        let mut l = super::connected::connected();
        l.start_security().unwrap();
        assert_eq!(l.stage(), Some(Stage::Handshaking));
    }

    #[test]
    fn a_datagram_socket_is_open_once_bound() {
        let mut l = Lifecycle::datagram();
        assert_eq!(l.stage(), None);
        l.bind().unwrap();
        assert_eq!(l.stage(), Some(Stage::Open));
        l.connect().unwrap();
        assert_eq!(l.stage(), Some(Stage::Connecting));
        l.connected();
        assert_eq!(l.stage(), Some(Stage::Open));
    }
}

/// The end is decided after the FIN went out: a FIN that fails to go is the
/// failure's end, never a graceful one.
mod fin_completion {
    use super::connected::connected;
    use super::*;

    /// The peer's FIN was read (eof), then we shut down.
    fn fin_asked_after_peers_end() -> Lifecycle {
        let mut l = connected();
        l.send(4).unwrap();
        l.wrote(4);
        l.eof();
        assert_eq!(events(&mut l), [Event::PeerShutdown]);
        l.shutdown().unwrap();
        assert_eq!(actions(&mut l), [Action::SendFin], "no Release yet");
        assert_eq!(events(&mut l), [], "no Closed yet");
        assert_eq!(l.state(), State::NoSendRecv);
        assert_eq!(l.closed(), None);
        l
    }

    /// Regression: shutdown(SHUT_WR) fails with ENOTCONN (the peer reset
    /// meanwhile); the socket must not report a graceful end.
    #[test]
    fn a_fin_that_fails_ends_lost() {
        let mut l = fin_asked_after_peers_end();
        l.fail(Reason::Lost);
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Lost)]);
        assert!(!l.closed().unwrap().is_graceful());
        assert_eq!(l.unsent(), 0);
        assert_gone(&mut l, Reason::Lost);
    }

    #[test]
    fn a_fin_that_goes_out_ends_by_peer() {
        let mut l = fin_asked_after_peers_end();
        l.fin_sent();
        assert_eq!(actions(&mut l), [Action::Release]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ByPeer)]);
        assert_gone(&mut l, Reason::ByPeer);
    }

    /// A fin_sent without a SendFin carried out is a driver's mistake: ignored.
    #[test]
    fn fin_sent_only_answers_a_polled_send_fin() {
        assert_ignored(&mut connected(), Lifecycle::fin_sent);
        let mut l = connected();
        l.send(2).unwrap();
        l.shutdown().unwrap();
        assert_ignored(&mut l, Lifecycle::fin_sent); // the FIN waits for bytes
        l.wrote(2);
        let before = fingerprint(&l);
        l.fin_sent(); // SendFin not polled yet
        assert_eq!(fingerprint(&l), before);
        assert_eq!(actions(&mut l), [Action::SendFin]);
        l.fin_sent();
        assert_quiet(&mut l);
        assert_ignored(&mut l, Lifecycle::fin_sent); // twice
    }

    /// With the FIN never confirmed, a close still ends by its deadline.
    #[test]
    fn a_close_whose_fin_never_completes_lingers_out() {
        let mut l = super::no_recv::no_recv_ended();
        l.close(t0(), LINGER).unwrap();
        assert_eq!(
            actions(&mut l),
            [Action::ArmTimer(deadline()), Action::SendFin]
        );
        assert_ignored(&mut l, |l| l.timeout(just_before_deadline()));
        l.timeout(deadline());
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::LingerTimeout)]);
    }

    /// A FIN asked and not yet out does not stop an abort.
    #[test]
    fn aborts_while_the_fin_goes_out() {
        let mut l = fin_asked_after_peers_end();
        l.reset().unwrap();
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::Reset)]);
    }
}

/// The frame order, both directions, through the lifecycle.
mod frame_order {
    use super::*;

    #[test]
    fn without_a_message_layer_every_frame_is_an_error() {
        for mut l in [
            super::connected::connected(),
            Lifecycle::new(),
            Lifecycle::accepted_with(true, false),
        ] {
            let before = fingerprint(&l);
            let err = l.frame_in(FrameType::Data).unwrap_err();
            assert_eq!(
                err.to_string(),
                "DATA on a connection without a message layer: it carries no frames"
            );
            assert!(l.frame_out(FrameType::Hello).is_err());
            assert_eq!(fingerprint(&l), before, "nothing changes");
        }
    }

    /// A whole conversation, client and server side by side.
    #[test]
    fn a_conversation() {
        let mut client = Lifecycle::new();
        client.set_message(Role::Client).unwrap();
        client.connect().unwrap();
        let mut server = Lifecycle::accepted_with(false, true);
        client.frame_out(FrameType::Hello).unwrap();
        client.frame_out(FrameType::Data).unwrap(); // held until WELCOME
        client.connected();
        server.frame_in(FrameType::Hello).unwrap();
        server.frame_out(FrameType::Welcome).unwrap();
        assert_eq!(events(&mut server), [Event::Accepted]);
        server.frame_out(FrameType::Data).unwrap();
        client.frame_in(FrameType::Welcome).unwrap();
        assert_eq!(events(&mut client), [Event::Connected]);
        server.frame_in(FrameType::Data).unwrap();
        client.frame_in(FrameType::Data).unwrap();
        client.frame_out(FrameType::Farewell).unwrap();
        server.frame_in(FrameType::Farewell).unwrap();
        server.frame_out(FrameType::Farewell).unwrap();
        client.frame_in(FrameType::Farewell).unwrap();
        for l in [&mut client, &mut server] {
            assert!(l.frame_out(FrameType::Data).is_err(), "after FAREWELL");
            assert_quiet(l);
            assert_eq!(l.state(), State::Connected);
        }
    }

    #[test]
    fn a_frame_after_the_peers_farewell_resets() {
        let mut l = Lifecycle::accepted_with(false, true);
        l.frame_in(FrameType::Hello).unwrap();
        l.frame_out(FrameType::Welcome).unwrap();
        events(&mut l);
        l.frame_in(FrameType::Farewell).unwrap();
        assert_eq!(
            l.frame_in(FrameType::Data),
            Err(FrameError::AfterFarewell(FrameType::Data))
        );
        assert_eq!(actions(&mut l), [Action::Reset]);
        assert_eq!(events(&mut l), [Event::Closed(Reason::ProtocolError)]);
    }

    #[test]
    fn a_server_sending_hello_breaks_the_protocol() {
        let mut l = Lifecycle::new();
        l.set_message(Role::Client).unwrap();
        l.connect().unwrap();
        l.frame_out(FrameType::Hello).unwrap();
        l.connected();
        assert!(matches!(
            l.frame_in(FrameType::Hello),
            Err(FrameError::WrongSender { .. })
        ));
        assert_eq!(events(&mut l), [Event::Closed(Reason::ProtocolError)]);
    }
}

mod footprint {
    use super::*;

    /// Per connection: it must stay small. Printed so changes show.
    #[test]
    fn the_machine_stays_small() {
        let size = std::mem::size_of::<Lifecycle>();
        println!("size_of::<Lifecycle>() = {size} bytes");
        assert!(size <= 64, "Lifecycle grew to {size} bytes");
    }

    #[test]
    fn new_names_print() {
        assert_eq!(Handshake::Security.to_string(), "security");
        assert_eq!(Handshake::Transport.as_str(), "transport");
        assert_eq!(Handshake::Message.as_str(), "message");
        let refused = |op| Refused {
            op,
            state: State::Connected,
        };
        assert_eq!(
            refused(Op::SetSecurity).to_string(),
            "cannot add a security layer to a socket in state connected"
        );
        assert_eq!(
            refused(Op::SetFraming).to_string(),
            "cannot set framing on a socket in state connected"
        );
        assert_eq!(
            refused(Op::Reject).to_string(),
            "cannot reject a socket in state connected"
        );
        assert_eq!(Op::SetFraming.as_str(), "set_framing");
    }
}

/// `is_quiet` says whether anything waits to be polled, actions and events
/// alike, and turns true once both are drained.
#[test]
fn is_quiet_tracks_what_waits_to_be_polled() {
    let mut l = Lifecycle::new();
    assert!(l.is_quiet());
    l.connect().unwrap();
    l.connected();
    assert!(!l.is_quiet(), "Connected waits");
    assert_eq!(events(&mut l), [Event::Connected]);
    assert!(l.is_quiet());
    l.shutdown().unwrap();
    assert!(!l.is_quiet(), "SendFin waits");
    assert_eq!(actions(&mut l), [Action::SendFin]);
    assert!(l.is_quiet());
}
