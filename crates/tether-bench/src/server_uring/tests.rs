//! The floor server against real clients on loopback.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::*;
use crate::common::{Service, Target, CHUNK};

fn server(service: Service) -> Option<(std::net::SocketAddr, Started, Arc<Stats>)> {
    if !available() {
        return None;
    }
    let stats = Arc::new(Stats::default());
    let spec = Spec {
        net: Net::Tcp,
        service,
        tls: None,
        loops: 1,
    };
    let started = start(spec, stats.clone());
    let Target::Tcp(addr) = started.0 else {
        unreachable!("a TCP server")
    };
    Some((addr, started, stats))
}

/// Echo, then the peer's end answered with ours; then a stop with a
/// connection still open ends it (the client sees the end) and the loop.
#[test]
fn echoes_closes_and_stops_with_connections_open() {
    let Some((addr, (_, stop, thread), stats)) = server(Service::Echo) else {
        return;
    };
    let mut a = TcpStream::connect(addr).expect("connect");
    let msg = vec![7u8; 20_000];
    a.write_all(&msg).expect("write");
    let mut back = vec![0u8; msg.len()];
    a.read_exact(&mut back).expect("echo");
    assert_eq!(back, msg);
    a.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(a.read(&mut back).expect("the server's end"), 0);

    let mut b = TcpStream::connect(addr).expect("connect");
    b.write_all(b"ping").expect("write");
    let mut four = [0u8; 4];
    b.read_exact(&mut four).expect("echo");
    stop();
    thread.join().expect("the loop ends");
    assert_eq!(b.read(&mut four).expect("the end at the stop"), 0);
    assert_eq!(Stats::get(&stats.accepted), 2);
    assert_eq!(Stats::get(&stats.closed), 2);
}

/// A sink counts what arrives; a source writes until the peer leaves.
#[test]
fn sink_counts_and_source_writes() {
    let Some((addr, (_, stop, thread), stats)) = server(Service::Sink) else {
        return;
    };
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&[1u8; 300_000]).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut end = [0u8; 1];
    assert_eq!(s.read(&mut end).expect("the server's end"), 0);
    assert_eq!(Stats::get(&stats.bytes), 300_000);
    stop();
    thread.join().expect("the loop ends");

    let Some((addr, (_, stop, thread), _)) = server(Service::Source) else {
        return;
    };
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut got = vec![0u8; 3 * CHUNK.len()];
    s.read_exact(&mut got).expect("chunks");
    assert!(got.iter().all(|&b| b == CHUNK[0]));
    drop(s);
    stop();
    thread.join().expect("the loop ends");
}
