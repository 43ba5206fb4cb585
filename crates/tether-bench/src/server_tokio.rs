//! tokio's current-thread runtime (tokio-rustls for TLS), written as its
//! documentation teaches: a task per connection, `read` into the task's own
//! buffer, `write_all`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::common::{std_listener, Net, Service, Spec, Started, Stats, CHUNK};

/// Each connection's read buffer: large enough for the biggest message in one
/// read. (Its pages are touched only as far as reads fill them.)
const BUF: usize = 16 * 1024;

pub(crate) fn start(spec: Spec, stats: Arc<Stats>) -> Started {
    let (sock, target) = std_listener(spec.net).expect("listener");
    sock.set_nonblocking(true).expect("non-blocking");
    // Stopping: a byte (or the end) on a socket pair the runtime waits on.
    let (stop_tx, stop_rx) = std::os::unix::net::UnixStream::pair().expect("pair");
    stop_rx.set_nonblocking(true).expect("non-blocking");
    let thread = std::thread::Builder::new()
        .name("tokio-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match spec.net {
                    Net::Tcp => {
                        let l = tokio::net::TcpListener::from_std(sock.into()).expect("listener");
                        tokio::spawn(accept_tcp(l, spec, stats));
                    }
                    Net::Unix => {
                        let l = tokio::net::UnixListener::from_std(sock.into()).expect("listener");
                        tokio::spawn(accept_unix(l, spec, stats));
                    }
                    Net::Udp => {
                        let u = tokio::net::UdpSocket::from_std(sock.into()).expect("udp");
                        tokio::spawn(udp_echo(u));
                    }
                }
                let mut stop = tokio::net::UnixStream::from_std(stop_rx).expect("stop");
                let _ = stop.read(&mut [0u8]).await;
            });
            // Dropping the runtime drops every task and its connection.
            drop(rt);
        })
        .expect("spawn");
    let stopper = move || drop(stop_tx);
    (target, Box::new(stopper), thread)
}

async fn accept_tcp(l: tokio::net::TcpListener, spec: Spec, stats: Arc<Stats>) {
    let acceptor = spec
        .tls
        .as_ref()
        .map(|p| tokio_rustls::TlsAcceptor::from(p.server.clone()));
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        stats.accepted();
        let stats = stats.clone();
        let service = spec.service;
        match &acceptor {
            None => {
                tokio::spawn(async move {
                    stats.up();
                    serve(s, service, &stats).await;
                });
            }
            Some(acceptor) => {
                let accept = acceptor.accept(s);
                tokio::spawn(async move {
                    if let Ok(tls) = accept.await {
                        stats.up();
                        serve(tls, service, &stats).await;
                    } else {
                        stats.closed();
                    }
                });
            }
        }
    }
}

async fn accept_unix(l: tokio::net::UnixListener, spec: Spec, stats: Arc<Stats>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        stats.accepted();
        let stats = stats.clone();
        let service = spec.service;
        tokio::spawn(async move {
            stats.up();
            serve(s, service, &stats).await;
        });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, service: Service, stats: &Stats) {
    match service {
        Service::Echo | Service::Sink => {
            let mut buf = vec![0u8; BUF];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => {
                        let _ = s.shutdown().await;
                        break;
                    }
                    Ok(n) if service == Service::Echo => {
                        // flush: tokio-rustls may hold records back otherwise.
                        if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                            break;
                        }
                    }
                    Ok(n) => stats.bytes(n),
                    Err(_) => break,
                }
            }
        }
        Service::Source => while s.write_all(&CHUNK).await.is_ok() {},
    }
    stats.closed();
}

async fn udp_echo(u: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Ok((n, from)) = u.recv_from(&mut buf).await {
            let _ = u.send_to(&buf[..n], from).await;
        }
    }
}
