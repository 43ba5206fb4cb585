//! [`Order`]: which frame may come next for each side, and the step rules
//! behind it.

use std::fmt;
use std::num::NonZeroU8;

use super::{FrameError, FrameType, Role};

/// How far one direction of the conversation has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing sent yet.
    Start,
    /// HELLO (client) or WELCOME (server) sent: DATA and FAREWELL may follow.
    Open,
    /// FAREWELL sent: nothing may follow.
    Farewell,
    /// REJECT sent (server only): nothing may follow.
    Rejected,
}

const BEFORE_HELLO: &str = "before HELLO: a client's first frame must be HELLO";
const BEFORE_ANSWER: &str = "before WELCOME: a server's first frame must be WELCOME or REJECT";
const HELLO_AGAIN: &str = "after HELLO: a client sends HELLO once, as its first frame";
const ANSWER_AGAIN: &str = "after WELCOME: a server admits or rejects once, with its first frame";
const NOT_ADMITTED: &str =
    "before WELCOME: a client sends nothing after HELLO until the server admits it";
const UNASKED: &str = "before HELLO: a server answers only after the client's HELLO";

/// The next step of `sender`'s side after it sends `kind`, by the rules of
/// that side alone.
fn advance(sender: Role, step: Step, kind: FrameType) -> Result<Step, FrameError> {
    use FrameType::{Data, Farewell, Hello, Reject, Welcome};
    let wrong_sender = match sender {
        Role::Client => matches!(kind, Welcome | Reject),
        Role::Server => kind == Hello,
    };
    if wrong_sender {
        return Err(FrameError::WrongSender { got: kind, sender });
    }
    let out_of_order = |rule| Err(FrameError::OutOfOrder { got: kind, rule });
    match (step, kind) {
        (Step::Farewell, _) => Err(FrameError::AfterFarewell(kind)),
        (Step::Rejected, _) => Err(FrameError::AfterReject(kind)),
        (Step::Start, Hello | Welcome) => Ok(Step::Open),
        (Step::Start, Reject) => Ok(Step::Rejected),
        (Step::Start, _) if sender == Role::Client => out_of_order(BEFORE_HELLO),
        (Step::Start, _) => out_of_order(BEFORE_ANSWER),
        (Step::Open, Data) => Ok(Step::Open),
        (Step::Open, Farewell) => Ok(Step::Farewell),
        (Step::Open, Hello) => out_of_order(HELLO_AGAIN),
        (Step::Open, Welcome | Reject) => out_of_order(ANSWER_AGAIN),
    }
}

/// The frame order of one framed connection, in both directions.
///
/// ```text
/// client: HELLO, then (after the server's WELCOME) DATA*, FAREWELL
/// server: (after the client's HELLO) WELCOME, DATA*, FAREWELL  |  REJECT
/// ```
///
/// [`check`](Order::check) judges each frame the peer sends us (a violation is
/// the peer's protocol error); [`check_send`](Order::check_send) judges our
/// own, which catches a driver bug where it is made and tells a client that its
/// messages must wait for WELCOME. A frame that fails a check changes nothing.
///
/// It is one byte (its role and both steps packed, so `Option<Order>` is one
/// byte too) because every socket's lifecycle carries one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Order(NonZeroU8);

// Bit 0 is always set (the niche that makes `Option<Order>` one byte); bit 1
// is the role; bits 2-3 the step received, bits 4-5 the step sent.
const PRESENT: u8 = 1;
const SERVER: u8 = 1 << 1;
const RECV_SHIFT: u8 = 2;
const SENT_SHIFT: u8 = 4;

impl Step {
    fn from_bits(bits: u8) -> Step {
        match bits & 3 {
            0 => Step::Start,
            1 => Step::Open,
            2 => Step::Farewell,
            _ => Step::Rejected,
        }
    }
}

impl Order {
    /// The order for our side of a connection, `role` being our role.
    pub fn new(role: Role) -> Self {
        let role = if role == Role::Server { SERVER } else { 0 };
        // Both steps Start (0).
        Order(NonZeroU8::MIN.saturating_add(role))
    }

    fn recv(&self) -> Step {
        Step::from_bits(self.0.get() >> RECV_SHIFT)
    }

    fn sent(&self) -> Step {
        Step::from_bits(self.0.get() >> SENT_SHIFT)
    }

    fn set(&mut self, shift: u8, step: Step) {
        let bits = (self.0.get() & !(3 << shift)) | ((step as u8) << shift) | PRESENT;
        self.0 = NonZeroU8::new(bits).unwrap_or(NonZeroU8::MIN);
    }

    /// Our role.
    pub fn role(&self) -> Role {
        if self.0.get() & SERVER != 0 {
            Role::Server
        } else {
            Role::Client
        }
    }

    /// Accepts a frame received from the peer, or says which rule it breaks.
    pub fn check(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let next = advance(self.role().peer(), self.recv(), kind)?;
        self.set(RECV_SHIFT, next);
        Ok(())
    }

    /// Accepts a frame we are about to send, or says which rule it would break.
    /// Besides our own side's order, a client sends DATA and FAREWELL only
    /// after receiving WELCOME, and a server answers only after receiving HELLO.
    pub fn check_send(&mut self, kind: FrameType) -> Result<(), FrameError> {
        let next = advance(self.role(), self.sent(), kind)?;
        let out_of_order = |rule| Err(FrameError::OutOfOrder { got: kind, rule });
        match (self.role(), self.recv()) {
            (Role::Client, Step::Start) if kind != FrameType::Hello => {
                return out_of_order(NOT_ADMITTED)
            }
            (Role::Client, Step::Rejected) => return Err(FrameError::AfterReject(kind)),
            (Role::Server, Step::Start) => return out_of_order(UNASKED),
            _ => {}
        }
        self.set(SENT_SHIFT, next);
        Ok(())
    }

    /// Accepts a frame we queue for sending that may wait in the queue for the
    /// peer's answer, or says which rule it would break. It is
    /// [`check_send`](Order::check_send) but for one rule: a client's DATA and
    /// FAREWELL may follow its HELLO before WELCOME arrived, because they are
    /// held back until it does (the lifecycle's `holds_output`), so the order
    /// on the wire is still the one `check_send` demands. A server still
    /// answers only after HELLO, and nothing follows a REJECT either way.
    pub fn check_queued(&mut self, kind: FrameType) -> Result<(), FrameError> {
        if self.role() == Role::Client && self.recv() == Step::Start {
            let next = advance(Role::Client, self.sent(), kind)?;
            self.set(SENT_SHIFT, next);
            return Ok(());
        }
        self.check_send(kind)
    }

    /// True once we sent (or queued) a REJECT.
    pub(crate) fn sent_reject(&self) -> bool {
        self.sent() == Step::Rejected
    }
}

impl fmt::Debug for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Order")
            .field("role", &self.role())
            .field("recv", &self.recv())
            .field("sent", &self.sent())
            .finish()
    }
}
