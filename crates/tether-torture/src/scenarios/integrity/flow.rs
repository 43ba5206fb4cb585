//! Both directions of one connection as one side sees them: what it sends
//! (paced by `unsent`, so only a chunk or a message is ever queued) and what
//! it receives (checked byte by byte, and framed, message by message).

use tether::{Cx, SocketId};

use super::plan::{Plan, CHUNK};
use crate::check::Ending;
use crate::pattern::{Pattern, Source, Tally};

/// Direction numbers for `Pattern`.
pub(crate) const UP: u8 = 0;
pub(crate) const DOWN: u8 = 1;

/// What one side of one connection did, for the checker.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// `on_closed` calls (exactly one is the rule).
    pub(crate) closes: u32,
    pub(crate) ending: Option<Ending>,
    /// What it received.
    pub(crate) got: Option<Tally>,
    /// What it sent, by its own count.
    pub(crate) sent: Option<Source>,
    /// Framed: messages whose length was not the one sent.
    pub(crate) msgs_bad: u64,
    /// Calls refused, std socket errors: anything that should not happen.
    pub(crate) errors: Vec<String>,
    /// The connection's story in short (tether sides), printed with a
    /// violation: what happened when, in milliseconds from its start.
    pub(crate) trace: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Flow {
    framed: bool,
    src: Source,
    out_total: u64,
    out_msgs: Vec<u64>,
    out_next: usize,
    tally: Tally,
    in_msgs: Vec<u64>,
    in_next: usize,
    msgs_bad: u64,
    buf: Vec<u8>,
    pub(crate) errors: Vec<String>,
    born: std::time::Instant,
    trace: Vec<String>,
    told_all_sent: bool,
}

impl Flow {
    /// The flow of the client (`server` false) or the server of `plan`.
    pub(crate) fn new(seed: u64, plan: &Plan, server: bool) -> Flow {
        let up = Pattern::new(seed, plan.idx, UP);
        let down = Pattern::new(seed, plan.idx, DOWN);
        let (out, input, out_total, out_msgs, in_msgs) = if server {
            (
                down,
                up,
                plan.down,
                plan.down_msgs.clone(),
                plan.up_msgs.clone(),
            )
        } else {
            (
                up,
                down,
                plan.up,
                plan.up_msgs.clone(),
                plan.down_msgs.clone(),
            )
        };
        Flow {
            framed: plan.net == super::plan::Net::Framed,
            src: Source::new(out),
            out_total,
            out_msgs,
            out_next: 0,
            tally: Tally::new(input),
            in_msgs,
            in_next: 0,
            msgs_bad: 0,
            buf: Vec::new(),
            errors: Vec::new(),
            born: std::time::Instant::now(),
            trace: Vec::new(),
            told_all_sent: false,
        }
    }

    /// Note a step of the connection's story.
    pub(crate) fn note(&mut self, what: impl std::fmt::Display) {
        let ms = self.born.elapsed().as_secs_f64() * 1000.0;
        self.trace.push(format!("{ms:.1} {what}"));
    }

    /// Everything handed over to `send`.
    pub(crate) fn all_sent(&self) -> bool {
        if self.framed {
            self.out_next == self.out_msgs.len()
        } else {
            self.src.sent == self.out_total
        }
    }

    /// Hand over the next pieces while nothing waits in tether's queue;
    /// true once everything is handed over.
    pub(crate) fn pump<S: 'static>(&mut self, cx: &mut Cx<S>, s: SocketId) -> bool {
        if self.all_sent() && !self.told_all_sent {
            self.told_all_sent = true;
            self.note("all handed over");
        }
        while !self.all_sent() && cx.unsent(s) == 0 {
            let n = if self.framed {
                self.out_msgs[self.out_next]
            } else {
                (self.out_total - self.src.sent).min(CHUNK)
            };
            self.src.next(n as usize, &mut self.buf);
            self.out_next += 1;
            if let Err(e) = cx.send(s, &self.buf) {
                self.errors.push(format!("send refused: {e}"));
                return true;
            }
        }
        if self.all_sent() && !self.told_all_sent {
            self.told_all_sent = true;
            self.note("all handed over");
        }
        self.all_sent()
    }

    /// Take in one `on_received`.
    pub(crate) fn take(&mut self, data: &[u8]) {
        if self.framed {
            if self.in_msgs.get(self.in_next) != Some(&(data.len() as u64)) {
                self.msgs_bad += 1;
            }
            self.in_next += 1;
        }
        self.tally.take(data);
    }

    /// Messages received (framed).
    pub(crate) fn messages_in(&self) -> u64 {
        self.in_next as u64
    }

    /// Bytes received.
    pub(crate) fn got(&self) -> u64 {
        self.tally.got
    }

    /// The record of this side, with its end.
    pub(crate) fn record(&mut self, record: &mut Record, ending: Ending) {
        self.note(format_args!("closed {ending}"));
        record.trace.append(&mut self.trace);
        record.closes += 1;
        record.ending = Some(ending);
        record.got = Some(self.tally);
        record.sent = Some(self.src);
        record.msgs_bad += self.msgs_bad;
        record.errors.append(&mut self.errors);
    }
}
