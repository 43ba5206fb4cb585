//! A client: connect, send a message, half-close, print the reply and how the
//! connection ended.
//!
//! ```text
//! cargo run -p tether --example echo -- 127.0.0.1:7000 &
//! cargo run -p tether --example client -- 127.0.0.1:7000 'hello, echo'
//! ```
//! The half-close (`shutdown`) tells the server the request is complete while
//! the client goes on receiving; the reply is printed as it comes, and once the
//! server has ended too the connection closes `normal` (the client ended
//! first). It exits 0 only after such a graceful end.

use std::process::ExitCode;

use tether::{Closed, Cx, IoMux, Reason, RecvMode, SocketId, SocketUser};

/// What the exchange brought back: the reply, and how the connection ended.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Every byte the server sent.
    pub(crate) reply: Vec<u8>,
    /// The reason and the error underneath, once closed.
    pub(crate) end: Option<(Reason, Option<String>)>,
}

struct Client {
    message: Vec<u8>,
}

impl SocketUser<Outcome> for Client {
    fn on_connected(&mut self, cx: &mut Cx<Outcome>, s: SocketId) {
        cx.send(s, &self.message).unwrap();
        // Nothing more to send: FIN after the message, and keep receiving.
        cx.shutdown(s).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx<Outcome>, s: SocketId, data: &[u8]) {
        cx.shared_mut().reply.extend_from_slice(data);
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Outcome>, _: SocketId, closed: &Closed) {
        let error = closed.error.as_ref().map(|e| e.to_string());
        cx.shared_mut().end = Some((closed.reason, error));
    }
}

/// Send `message` to `addr`, half-close, and gather the reply until the
/// connection ends.
pub(crate) fn exchange(addr: &str, message: &[u8]) -> std::io::Result<Outcome> {
    let mut mux = IoMux::new(Outcome::default())?;
    mux.connect_to(
        addr,
        Client {
            message: message.to_vec(),
        },
    );
    mux.run()?;
    Ok(std::mem::take(mux.shared_mut()))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let message = args.next().unwrap_or_else(|| "hello".into());
    let outcome = exchange(&addr, message.as_bytes()).expect("event loop");
    println!("reply: {}", String::from_utf8_lossy(&outcome.reply));
    match outcome.end {
        Some((reason, error)) => {
            match error {
                Some(e) => println!("closed: {reason}: {e}"),
                None => println!("closed: {reason}"),
            }
            if matches!(reason, Reason::Normal | Reason::ByPeer) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => ExitCode::FAILURE,
    }
}
