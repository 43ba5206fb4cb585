//! Blocking std::net, a thread per connection: what the kernel gives a
//! program that never waits on a poller (the stream scenario's baseline).
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::common::{std_listener, Net, Service, Spec, Started, Stats, Target, CHUNK};

pub(crate) fn start(spec: Spec, stats: Arc<Stats>) -> Started {
    assert!(
        spec.net == Net::Tcp && spec.tls.is_none(),
        "the blocking server is plain TCP"
    );
    let (sock, target) = std_listener(spec.net).expect("listener");
    let listener: std::net::TcpListener = sock.into();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("std-server".into())
        .spawn(move || {
            for s in listener.incoming() {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let Ok(s) = s else { continue };
                stats.accepted();
                let stats = stats.clone();
                let service = spec.service;
                // Detached: each ends when its client goes.
                std::thread::spawn(move || serve(s, service, &stats));
            }
        })
        .expect("spawn");
    let poke = target.clone();
    let stopper = move || {
        stop.store(true, Ordering::Release);
        if let Target::Tcp(a) = poke {
            let _ = std::net::TcpStream::connect(a);
        }
    };
    (target, Box::new(stopper), thread)
}

fn serve(mut s: std::net::TcpStream, service: Service, stats: &Stats) {
    stats.up();
    let mut buf = vec![0u8; 64 * 1024];
    match service {
        Service::Source => while s.write_all(&CHUNK).is_ok() {},
        Service::Sink | Service::Echo => loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if service == Service::Echo => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Ok(n) => stats.bytes(n),
            }
        },
    }
    stats.closed();
}
