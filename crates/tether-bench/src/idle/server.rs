//! The server child of idle-memory: one server (tether, mio or tokio) in a
//! process of its own, so its resident memory is its own and nothing of
//! another server's allocator state is in it.
//!
//! `__idle-server KIND plain|tls CA_PATH` says `addr ADDR`, then answers
//! lines on stdin: `wait N` with `up` once N connections are up (accepted;
//! on TLS, handshake over), `rss MS` with `rss BYTES` after MS milliseconds to settle. The end of stdin stops
//! the server and the process.
#![forbid(unsafe_code)]

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Net, Service, Spec, Stats};
use crate::scenarios::rss;
use crate::servers::{Kind, Server};
use crate::sys;
use crate::tlsio::Pki;

/// The longest a `wait` may take before the child gives up (and the parent,
/// seeing its stdout end, fails the run).
const WAIT_LIMIT: Duration = Duration::from_secs(180);

pub(crate) fn server_child(args: &[String]) {
    sys::die_with_parent();
    sys::raise_nofile_limit();
    let kind = Kind::parse(&args[0]).expect("server kind");
    let tls = args[1] == "tls";
    let pki = tls.then(|| {
        let pki = Arc::new(Pki::new());
        std::fs::write(&args[2], &pki.ca_pem).expect("write the CA");
        pki
    });
    let server = Server::start(
        kind,
        &Spec {
            net: Net::Tcp,
            service: Service::Echo,
            tls: pki,
            loops: 1,
        },
    );
    println!("addr {}", server.target.text());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("wait ") {
            let n: u64 = n.trim().parse().expect("count");
            let deadline = Instant::now() + WAIT_LIMIT;
            // The servers count in a relaxed atomic and signal nothing: poll
            // it, often enough that the batches of the accept time follow
            // each other closely.
            while Stats::get(&server.stats.up) < n {
                assert!(Instant::now() < deadline, "connections did not come up");
                std::thread::sleep(Duration::from_micros(100));
            }
            println!("up");
        } else if let Some(ms) = line.strip_prefix("rss ") {
            // Up is counted before the last of a handshake's output (TLS
            // session tickets) is written and its buffers given back: let
            // that happen before reading.
            std::thread::sleep(Duration::from_millis(ms.trim().parse().expect("ms")));
            println!("rss {}", rss());
        }
    }
    server.stop();
}
