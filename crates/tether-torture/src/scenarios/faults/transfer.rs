//! The transfer cases: clients send their streams and read the echo through
//! a lossy link, or one that flaps; every byte must come through.

use std::time::Duration;

use tether::{Keepalive, Reason};
use tether_impair::Impairment;

use super::client::{Clients, Mode};
use super::server::{Server, Settings};
use super::{Case, Run, KEEPALIVE, LIMIT, SLACK};
use crate::check::Expect;

impl Run<'_> {
    /// Clients send their streams and read the echo through `imp`; with
    /// `flap`, the link is cut that long once every server connection has a
    /// quarter of its bytes. Every connection must come through intact.
    pub(super) fn transfer(
        &mut self,
        case: &mut Case,
        imp: Impairment,
        tls: bool,
        flap: Option<Duration>,
    ) -> Result<(), String> {
        // Many large transfers through loss; a flap needs only enough to be
        // under way in each when it comes.
        let (n, max) = match (self.quick, flap.is_some()) {
            (true, _) => (6, 256 << 10),
            (false, false) => (200, 4 << 20),
            (false, true) => (40, 1 << 20),
        };
        let min = if flap.is_some() { max / 2 } else { 0 };
        let link = self.link(imp)?;
        let settings = Settings {
            tls: tls.then(|| self.pki.server.clone()),
            // A flap must end nothing. No user timeout: Linux would apply it to
            // a reader that fell behind as well (see `cut_busy`).
            keepalive: flap.map(|_| Keepalive {
                idle: Duration::from_secs(5),
                ..KEEPALIVE
            }),
            user_timeout: None,
            idle: None,
            ..Settings::default()
        };
        let server = Server::start(&link, settings)?;
        let plans = self.plans(n, min, max);
        case.conns = plans.len() as u64;
        let client_tls = tls.then(|| self.pki.client.clone());
        let clients = Clients::start(
            &link,
            server.port,
            client_tls,
            Mode::Exchange,
            self.seed,
            plans.clone(),
            LIMIT,
        )?;
        if let Some(cut) = flap {
            let quarter: Vec<u64> = plans.iter().map(|p| p.size / 4).collect();
            let n = plans.len();
            let reached = server.wait(LIMIT, |log| {
                log.conns.len() == n
                    && log
                        .conns
                        .values()
                        .filter(|s| s.got >= *quarter.iter().min().unwrap_or(&0))
                        .count()
                        == n
            });
            if !reached {
                self.v
                    .add(&case.name, "the transfers did not get a quarter through");
            }
            link.set_cut(true);
            std::thread::sleep(cut); // the fault itself: the link is down this long
            link.set_cut(false);
        }
        let outcomes = clients.join()?;
        let n = outcomes.len();
        server.wait_ended(n, SLACK);
        let seen = server.seen();
        for o in &outcomes {
            let at = format!("{} conn {} ({} B)", case.name, o.plan.conn, o.plan.size);
            let mut ok = true;
            if o.tally.damage(o.plan.size) != 0 || o.tally.got != o.plan.size {
                self.v.add(
                    &at,
                    &format!(
                        "echo: got {} of {} B, {} changed (first at {:?})",
                        o.tally.got, o.plan.size, o.tally.changed, o.tally.first_changed
                    ),
                );
                ok = false;
            }
            if o.sent != o.plan.size {
                let what = format!("client: handed over {} of {} B", o.sent, o.plan.size);
                self.v.add(&at, &what);
                ok = false;
            }
            ok &= self.client_end(&at, o, &Expect::clean(&[Reason::Normal]));
            ok &= self.server_end(&at, o, &seen, &Expect::clean(&[Reason::ByPeer]), None);
            case.good += u64::from(ok);
        }
        server.stop();
        Ok(())
    }
}
