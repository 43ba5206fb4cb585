//! The transactions scenario, over the framed transport.
//!
//! A server and N clients on loopback. Each client says hello (connect data the
//! server checks before admitting it), runs M request/response transactions,
//! then shuts down with its own count as disconnect data. The server adds each
//! count to a grand total and answers with the total so far as its own
//! disconnect data. Every number can be checked: each client's count is M, and
//! ordered by the totals they were given, each total is the one before plus the
//! client's count.
//!
//! `tether demo` runs it and tells it client by client; the `transactions`
//! example of this package runs it with a plainer report:
//!
//! ```text
//! cargo run -p tether-cli --example transactions -- 8 1000        # clients, transactions
//! cargo run -p tether-cli --example transactions -- 8 1000 tls    # the same over TLS
//! ```

use std::time::{Duration, Instant};

use tether::{
    Admission, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SocketId, SocketUser, TlsContext,
};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Clients connecting at once.
    pub clients: u32,
    /// Transactions per client.
    pub transactions: u32,
    /// Speak TLS under the framing.
    pub tls: bool,
}

/// What one client saw.
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// The client's number, from 1.
    pub number: u32,
    /// Transactions it completed with the right answer.
    pub count: u64,
    /// The grand total the server sent as its disconnect data.
    pub total: Option<u64>,
    /// How its connection ended.
    pub reason: Reason,
    /// Bytes it queued that did not go out; bytes it received but never took.
    pub unsent: u64,
    /// See `unsent`.
    pub unread: u64,
}

/// What the run showed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One report per client, in the order they closed.
    pub clients: Vec<ClientReport>,
    /// The server's grand total at the end.
    pub grand_total: u64,
    /// Wall time from the first connect to the last close.
    pub elapsed: Duration,
}

impl Outcome {
    /// Check every number; the first one that does not add up is the error.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        if self.clients.len() != config.clients as usize {
            return Err(format!(
                "{} of {} clients reported",
                self.clients.len(),
                config.clients
            ));
        }
        let mut by_total = self.clients.clone();
        by_total.sort_by_key(|c| c.total);
        let mut running = 0;
        for c in &by_total {
            if !c.reason.is_graceful() {
                return Err(format!("client {} ended with {}", c.number, c.reason));
            }
            if c.count != u64::from(config.transactions) {
                return Err(format!(
                    "client {} completed {} of {}",
                    c.number, c.count, config.transactions
                ));
            }
            running += c.count;
            if c.total != Some(running) {
                return Err(format!(
                    "client {} was told {:?}, expected {running}",
                    c.number, c.total
                ));
            }
        }
        let expected = u64::from(config.clients) * u64::from(config.transactions);
        if self.grand_total != expected {
            return Err(format!(
                "the server counted {}, expected {expected}",
                self.grand_total
            ));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Shared {
    outcome: Outcome,
    clients: u32,
    started: Option<Instant>,
}

const HELLO: &[u8] = b"tether transactions v1";

struct Server;

impl SocketUser<Shared> for Server {
    fn on_incoming(
        &mut self,
        _: &mut Cx<Shared>,
        _: SocketId,
        peer: &PeerInfo,
    ) -> Admission<Shared> {
        if peer.hello.as_deref() == Some(HELLO) {
            Admission::Accept(Box::new(Teller))
        } else {
            Admission::Reject(b"unknown protocol".to_vec())
        }
    }
    fn on_closed(&mut self, _: &mut Cx<Shared>, _: SocketId, _: &Closed) {}
}

/// The server's side of one client: answer each request, then add the
/// client's count to the grand total and say the total as goodbye.
struct Teller;

impl SocketUser<Shared> for Teller {
    fn on_accepted(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        let _ = cx.recv(s, 1, RecvMode::Partial);
    }
    fn on_received(&mut self, cx: &mut Cx<Shared>, s: SocketId, request: &[u8]) {
        // "txn N" is answered "ok N".
        let mut answer = [0u8; 32];
        let tail = request.get(3..).unwrap_or_default();
        let n = tail.len().min(answer.len() - 2);
        answer[..2].copy_from_slice(b"ok");
        answer[2..2 + n].copy_from_slice(&tail[..n]);
        let _ = cx.send(s, &answer[..2 + n]);
        let _ = cx.recv(s, 1, RecvMode::Partial);
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Shared>, s: SocketId, farewell: Option<&[u8]>) {
        let count = parse(farewell).unwrap_or(0);
        let total = &mut cx.shared_mut().outcome.grand_total;
        *total += count;
        let answer = total.to_string();
        let _ = cx.shutdown_with(s, answer.as_bytes());
    }
    fn on_closed(&mut self, _: &mut Cx<Shared>, _: SocketId, _: &Closed) {}
}

struct Client {
    number: u32,
    transactions: u32,
    done: u64,
    total: Option<u64>,
    request: Vec<u8>,
}

impl Client {
    fn next(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        if self.done == u64::from(self.transactions) {
            let _ = cx.shutdown_with(s, self.done.to_string().as_bytes());
        } else {
            self.request.clear();
            self.request
                .extend_from_slice(format!("txn {}", self.done + 1).as_bytes());
            let _ = cx.send(s, &self.request);
        }
        // The answer, or the server's goodbye.
        let _ = cx.recv(s, 1, RecvMode::Partial);
    }
}

impl SocketUser<Shared> for Client {
    fn on_connected(&mut self, cx: &mut Cx<Shared>, s: SocketId) {
        self.next(cx, s);
    }
    fn on_received(&mut self, cx: &mut Cx<Shared>, s: SocketId, answer: &[u8]) {
        if answer.starts_with(b"ok") && answer.get(2..) == self.request.get(3..) {
            self.done += 1;
        }
        self.next(cx, s);
    }
    fn on_peer_shutdown(&mut self, _: &mut Cx<Shared>, _: SocketId, farewell: Option<&[u8]>) {
        self.total = parse(farewell);
    }
    fn on_closed(&mut self, cx: &mut Cx<Shared>, _: SocketId, closed: &Closed) {
        let shared = cx.shared_mut();
        shared.outcome.clients.push(ClientReport {
            number: self.number,
            count: self.done,
            total: self.total,
            reason: closed.reason,
            unsent: closed.unsent,
            unread: closed.unread,
        });
        if shared.outcome.clients.len() as u32 == shared.clients {
            shared.outcome.elapsed = shared.started.map_or(Duration::ZERO, |t| t.elapsed());
            cx.terminate();
        }
    }
}

fn parse(data: Option<&[u8]>) -> Option<u64> {
    std::str::from_utf8(data?).ok()?.parse().ok()
}

/// Certificates for a TLS run: a fresh self-signed one for the server, which
/// the clients trust by its fingerprint.
fn tls_contexts() -> Result<(TlsContext, TlsContext), Box<dyn std::error::Error>> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let server = TlsContext::builder()
        .certificate_pem(
            cert.cert.pem().as_bytes(),
            cert.signing_key.serialize_pem().as_bytes(),
        )?
        .build()?;
    let fingerprint = server
        .fingerprint()
        .ok_or("the server has no certificate")?;
    let client = TlsContext::builder().pin(fingerprint).build()?;
    Ok((server, client))
}

/// Run the scenario on loopback.
pub fn run(config: &Config) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut mux = IoMux::new(Shared {
        clients: config.clients,
        ..Shared::default()
    })?;
    let contexts = if config.tls {
        Some(tls_contexts()?)
    } else {
        None
    };
    let listener = mux.stream(Server);
    mux.set_framing(listener, &[])?;
    mux.bind(listener, "127.0.0.1:0")?;
    match &contexts {
        Some((server, _)) => mux.listen_tls(listener, server)?,
        None => mux.listen(listener)?,
    }
    let addr = mux
        .local_addr(listener)
        .ok_or("the listener did not bind")?
        .to_string();
    mux.shared_mut().started = Some(Instant::now());
    for number in 1..=config.clients {
        let s = mux.stream(Client {
            number,
            transactions: config.transactions,
            done: 0,
            total: None,
            request: Vec::with_capacity(32),
        });
        mux.set_framing(s, HELLO)?;
        match &contexts {
            Some((_, client)) => mux.connect_tls(s, &addr, "localhost", client)?,
            None => mux.connect(s, &addr)?,
        }
    }
    // A scenario that hangs would show nothing: give up after a generous bound.
    mux.set_timer(Duration::from_secs(60), |cx| cx.terminate());
    mux.run()?;
    Ok(std::mem::take(&mut mux.shared_mut().outcome))
}
