//! Each attack against what it must come to: the server's ends (how many,
//! which reason, how soon, how much it held) and what the attacker saw.

use super::attacks::Seen;
use super::plan::Attack;
use super::server::{Ended, Service};
use crate::check::{Expect, Violations};

/// The verdict on one attack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verdict {
    /// Every connection of it ended as it must, within its bound.
    pub(crate) ok: bool,
    /// Sources: the most `unsent` one had.
    pub(crate) max_unsent: u64,
}

/// Judge attack `a`: `made` connections reached the server, which logged
/// `ends` for its listener; `seen` is each attacker's own view; a source
/// never queues more than `queued` at once.
pub(crate) fn judge(
    a: &Attack,
    made: usize,
    ends: &[&Ended],
    seen: &[Seen],
    queued: u64,
    v: &mut Violations,
) -> Verdict {
    let tag = a.spec.tag;
    let mut bad = 0;
    let mut max_unsent = 0;
    match a.server {
        Some(reasons) => {
            if ends.len() != made {
                let what = format!(
                    "the server ended {} connections, {made} were made",
                    ends.len()
                );
                v.add(tag, &what);
                bad += 1;
            }
            let expect = Expect {
                reasons,
                unsent: None,
                unread: None,
            };
            for e in ends {
                if !v.ending(tag, "server", &expect, &e.ending) {
                    bad += 1;
                }
                if e.lived > a.bound {
                    let what = format!("the server kept it {:?}, bound {:?}", e.lived, a.bound);
                    v.add(tag, &what);
                    bad += 1;
                }
                if a.spec.service == Service::Source {
                    max_unsent = max_unsent.max(e.max_unsent);
                    if e.max_unsent > queued {
                        let what =
                            format!("unsent reached {} past the {queued} queued", e.max_unsent);
                        v.add(tag, &what);
                        bad += 1;
                    }
                }
            }
        }
        None if !ends.is_empty() => {
            let what = format!(
                "{} connections got a user before their handshake",
                ends.len()
            );
            v.add(tag, &what);
            bad += 1;
        }
        None => {}
    }
    for (i, s) in seen.iter().enumerate() {
        let at = format!("{tag} #{i}");
        if !s.connected {
            v.add(&at, "the attacker could not connect");
            bad += 1;
            continue;
        }
        if a.attacker_sees_end {
            match s.ended_after {
                Some(d) if d <= a.bound => {}
                Some(d) => {
                    v.add(
                        &at,
                        &format!("the server ended it after {d:?}, bound {:?}", a.bound),
                    );
                    bad += 1;
                }
                None => {
                    v.add(&at, "still open when the attacker gave up");
                    bad += 1;
                }
            }
        }
        if !s.answer.starts_with(a.answer) {
            let got = String::from_utf8_lossy(&s.answer[..s.answer.len().min(40)]).to_string();
            let want = String::from_utf8_lossy(a.answer);
            v.add(
                &at,
                &format!("answer {got:?}, expected it to begin {want:?}"),
            );
            bad += 1;
        }
    }
    Verdict {
        ok: bad == 0,
        max_unsent,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tether::Reason;

    use super::*;
    use crate::check::Ending;
    use crate::scenarios::hostile::plan::{attacks, Act};
    use crate::scenarios::hostile::server::Bounds;

    fn ended(tag: &'static str, reason: Reason, lived_ms: u64) -> Ended {
        Ended {
            tag,
            ending: Ending {
                reason,
                unsent: 0,
                unread: 0,
                error: None,
            },
            lived: Duration::from_millis(lived_ms),
            max_unsent: 0,
        }
    }

    fn seen(after_ms: Option<u64>, answer: &[u8]) -> Seen {
        Seen {
            connected: true,
            ended_after: after_ms.map(Duration::from_millis),
            answer: answer.to_vec(),
        }
    }

    #[test]
    fn reason_bound_count_and_answer_are_each_judged() {
        let b = Bounds {
            handshake: Duration::from_secs(1),
            idle: Duration::from_secs(2),
            queued: 1000,
        };
        let list = attacks(&b, 1, 10, 5);
        let tls = list
            .iter()
            .find(|a| a.act == Act::Dribble(&[0x16, 3, 1, 0x40, 0, 1], 0))
            .unwrap();
        let mut v = Violations::new("test", 1);
        let good = ended("tls-slowloris", Reason::HandshakeTimeout, 1100);
        assert!(judge(tls, 1, &[&good], &[seen(Some(1100), b"")], 1000, &mut v).ok);
        assert_eq!(v.count(), 0);
        let wrong = ended("tls-slowloris", Reason::Lost, 1100);
        assert!(!judge(tls, 1, &[&wrong], &[seen(Some(1100), b"")], 1000, &mut v).ok);
        let late = ended("tls-slowloris", Reason::HandshakeTimeout, 9000);
        assert!(!judge(tls, 1, &[&late], &[seen(Some(1100), b"")], 1000, &mut v).ok);
        assert!(!judge(tls, 2, &[&good], &[seen(Some(1100), b"")], 1000, &mut v).ok);
        assert!(!judge(tls, 1, &[&good], &[seen(None, b"")], 1000, &mut v).ok);
        let http = list
            .iter()
            .find(|a| a.spec.tag == "http-oversized")
            .unwrap();
        let served = ended("http-oversized", Reason::Normal, 10);
        assert!(
            judge(
                http,
                1,
                &[&served],
                &[seen(Some(10), b"HTTP/1.1 431 x")],
                1000,
                &mut v
            )
            .ok
        );
        assert!(
            !judge(
                http,
                1,
                &[&served],
                &[seen(Some(10), b"HTTP/1.1 400 x")],
                1000,
                &mut v
            )
            .ok
        );
    }
}
