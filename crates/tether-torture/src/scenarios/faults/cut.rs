//! The cut cases: the link cut for good under idle or busy connections; each
//! must end with the reason its timeout gives, within its bound.

use std::time::Instant;

use tether::Reason;
use tether_impair::Impairment;

use super::client::{Clients, Mode};
use super::server::{Server, Settings};
use super::{Case, Run, IDLE, KEEPALIVE, KEEPALIVE_BOUND, LATE, LIMIT, SLACK, USER_TIMEOUT};
use crate::check::Expect;

impl Run<'_> {
    /// Idle connections, then the link cut for good: keepalive (and the user
    /// timeout, should an ACK have been caught by the cut) must end each
    /// `Lost` with ETIMEDOUT; or, with `idle_timeout`, tether's idle timeout
    /// must end each `IdleTimeout`.
    pub(super) fn cut_idle(&mut self, case: &mut Case, idle_timeout: bool) -> Result<(), String> {
        let n = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        let settings = if idle_timeout {
            Settings {
                idle: Some(IDLE),
                ..Settings::default()
            }
        } else {
            Settings {
                keepalive: Some(KEEPALIVE),
                user_timeout: Some(USER_TIMEOUT),
                ..Settings::default()
            }
        };
        let server = Server::start(&link, settings)?;
        let plans = self.plans(n, 1, 64 << 10);
        case.conns = n;
        let clients = Clients::start(
            &link,
            server.port,
            None,
            Mode::Hold,
            self.seed,
            plans,
            LIMIT,
        )?;
        if !clients.wait_echoed(LIMIT) {
            self.v
                .add(&case.name, "the echoes did not all come before the cut");
        }
        let cut = Instant::now();
        link.set_cut(true);
        let (reason, bound, error) = if idle_timeout {
            (Reason::IdleTimeout, IDLE, None)
        } else {
            (
                Reason::Lost,
                KEEPALIVE_BOUND.max(USER_TIMEOUT),
                Some("timed out"),
            )
        };
        let n = n as usize;
        server.wait_ended(n, bound + SLACK + LATE);
        clients.stop();
        let outcomes = clients.join()?;
        let seen = server.seen();
        let expect = Expect {
            reasons: match reason {
                Reason::IdleTimeout => &[Reason::IdleTimeout],
                _ => &[Reason::Lost],
            },
            unsent: None,
            unread: Some(0),
        };
        for o in &outcomes {
            let at = format!("{} conn {}", case.name, o.plan.conn);
            let ok = self.server_end(&at, o, &seen, &expect, Some((cut, bound, error)));
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }

    /// Transfers under way, then the link cut for good: the server has data
    /// in flight, so TCP_USER_TIMEOUT (or keepalive, if the cut caught it with
    /// nothing unacknowledged) must end each `Lost` with ETIMEDOUT.
    pub(super) fn cut_busy(&mut self, case: &mut Case) -> Result<(), String> {
        let n: u64 = if self.quick { 4 } else { 16 };
        let link = self.link(Impairment::none())?;
        // The user timeout is set only at the cut: set during the transfer, it
        // would also end a connection whose reader fell behind (Linux applies
        // it to a window kept shut as to data unacknowledged).
        let server = Server::start(
            &link,
            Settings {
                keepalive: Some(KEEPALIVE),
                ..Settings::default()
            },
        )?;
        // Far more than can pass before the cut.
        let plans = self.plans(n, 256 << 20, 256 << 20);
        case.conns = n;
        let clients = Clients::start(
            &link,
            server.port,
            None,
            Mode::Exchange,
            self.seed,
            plans,
            LIMIT,
        )?;
        let n = n as usize;
        let busy = server.wait(LIMIT, |log| {
            log.conns.len() == n && log.conns.values().all(|s| s.got >= 256 << 10)
        });
        if !busy {
            let got: Vec<(u16, u64)> = server.seen().iter().map(|(p, s)| (*p, s.got)).collect();
            self.v.add(
                &case.name,
                &format!("the transfers did not get under way: received {got:?}"),
            );
        }
        server.set_user_timeout(USER_TIMEOUT)?;
        let cut = Instant::now();
        link.set_cut(true);
        let bound = KEEPALIVE_BOUND.max(USER_TIMEOUT);
        server.wait_ended(n, bound + SLACK + LATE);
        clients.stop();
        let outcomes = clients.join()?;
        let seen = server.seen();
        let expect = Expect {
            reasons: &[Reason::Lost],
            unsent: None,
            unread: None,
        };
        for o in &outcomes {
            let at = format!("{} conn {}", case.name, o.plan.conn);
            let ok = self.server_end(
                &at,
                o,
                &seen,
                &expect,
                Some((cut, bound, Some("timed out"))),
            );
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }
}
