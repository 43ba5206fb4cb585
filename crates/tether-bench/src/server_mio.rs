//! The floor: a hand-written mio loop, as little as a correct server can do.
//! Edge-triggered, read until WouldBlock into one shared buffer, write at
//! once, queue (a copy) only what the kernel would not take, flush on
//! writable. Nothing here is a shortcut tether could not take: per connection
//! it keeps a socket, an output queue that is empty when idle, and a flag.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::{Events, Interest, Poll, Token, Waker};

use crate::common::{std_listener, Service, Spec, Started, Stats, CHUNK};
use crate::tlsio::{server_session, Sock, Wire};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

enum Listener {
    Tcp(mio::net::TcpListener),
    Unix(mio::net::UnixListener),
    Udp(mio::net::UdpSocket),
}

struct Conn {
    wire: Wire,
    /// What the kernel would not take yet (plain; rustls holds TLS's own).
    outq: Vec<u8>,
    head: usize,
    /// Up: accepted, and for TLS the handshake is over.
    up: bool,
    /// The peer ended; we close once our output is out.
    closing: bool,
}

pub(crate) fn start(spec: Spec, stats: Arc<Stats>) -> Started {
    let (sock, target) = std_listener(spec.net).expect("listener");
    sock.set_nonblocking(true).expect("non-blocking");
    let mut listener = match spec.net {
        crate::common::Net::Tcp => Listener::Tcp(mio::net::TcpListener::from_std(sock.into())),
        crate::common::Net::Unix => Listener::Unix(mio::net::UnixListener::from_std(sock.into())),
        crate::common::Net::Udp => Listener::Udp(mio::net::UdpSocket::from_std(sock.into())),
    };
    let poll = Poll::new().expect("poll");
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("waker"));
    let interest = Interest::READABLE | Interest::WRITABLE;
    match &mut listener {
        Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE),
        Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE),
        Listener::Udp(u) => poll.registry().register(u, LISTENER, interest),
    }
    .expect("register");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // The loop keeps the waker open: closing an eventfd takes its pending
    // event off the poller, and the stop would be lost.
    let keep = waker.clone();
    let thread = std::thread::Builder::new()
        .name("mio-server".into())
        .spawn(move || {
            let _waker = keep;
            match listener {
                Listener::Udp(u) => udp_echo(poll, u, &flag),
                l => serve(poll, l, &spec, &stats, &flag),
            }
        })
        .expect("spawn");
    let stopper = move || {
        stop.store(true, Ordering::Release);
        let _ = waker.wake();
    };
    (target, Box::new(stopper), thread)
}

fn serve(mut poll: Poll, listener: Listener, spec: &Spec, stats: &Stats, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER if stop.load(Ordering::Acquire) => return,
                WAKER => {}
                LISTENER => loop {
                    let sock = match &listener {
                        Listener::Tcp(l) => l.accept().map(|(s, _)| Sock::Tcp(s)),
                        Listener::Unix(l) => l.accept().map(|(s, _)| Sock::Unix(s)),
                        Listener::Udp(_) => unreachable!(),
                    };
                    let mut sock = match sock {
                        Ok(s) => s,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    let i = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if poll
                        .registry()
                        .register(&mut sock, Token(i), interest)
                        .is_err()
                    {
                        free.push(i);
                        continue;
                    }
                    stats.accepted();
                    let tls = spec.tls.as_ref().map(|p| server_session(&p.server));
                    let mut c = Conn {
                        wire: Wire::new(sock, tls),
                        outq: Vec::new(),
                        head: 0,
                        up: false,
                        closing: false,
                    };
                    if !c.wire.is_tls() {
                        set_up(&mut c, spec.service, stats);
                    }
                    conns[i] = Some(c);
                },
                Token(i) => {
                    let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                        continue;
                    };
                    if !ready(c, ev, spec.service, stats, &mut buf) {
                        conns[i] = None; // closes the socket: FIN (or RST if unread)
                        free.push(i);
                        stats.closed();
                    }
                }
            }
        }
    }
}

fn set_up(c: &mut Conn, service: Service, stats: &Stats) {
    c.up = true;
    stats.up();
    if service == Service::Source {
        let _ = fill(c);
    }
}

/// Act on readiness; false when the connection is over.
fn ready(
    c: &mut Conn,
    ev: &mio::event::Event,
    service: Service,
    stats: &Stats,
    buf: &mut [u8],
) -> bool {
    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
        loop {
            match c.wire.read(buf) {
                Ok(0) => {
                    c.closing = true;
                    let _ = c.wire.close_notify();
                    break;
                }
                Ok(n) => match service {
                    Service::Echo => {
                        if send(c, n, buf).is_err() {
                            return false;
                        }
                    }
                    Service::Sink => stats.bytes(n),
                    Service::Source => {}
                },
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if !c.up && !c.wire.handshaking() {
            set_up(c, service, stats);
        }
    }
    if (ev.is_writable() || c.closing) && flush(c).is_err() {
        return false;
    }
    if c.closing {
        // Dropping the socket sends the FIN once what we queued is out.
        return c.head < c.outq.len() || c.wire.holds_output();
    }
    if service == Service::Source && c.up && fill(c).is_err() {
        return false;
    }
    true
}

/// Echo `buf[..n]`: write at once unless something waits before it.
fn send(c: &mut Conn, n: usize, buf: &[u8]) -> io::Result<()> {
    let data = &buf[..n];
    if c.wire.is_tls() || c.head == c.outq.len() {
        match c.wire.write(data) {
            Ok(w) => c.outq.extend_from_slice(&data[w..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.outq.extend_from_slice(data),
            Err(e) => return Err(e),
        }
    } else {
        c.outq.extend_from_slice(data);
    }
    Ok(())
}

/// Write what is queued, as far as the kernel takes it.
fn flush(c: &mut Conn) -> io::Result<()> {
    c.wire.flush()?;
    while c.head < c.outq.len() {
        let asked = c.outq.len() - c.head;
        match c.wire.write(&c.outq[c.head..]) {
            // Short: the socket buffer is full, the next edge says when not.
            Ok(n) if n < asked => {
                c.head += n;
                return Ok(());
            }
            Ok(n) => c.head += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Empty: give the memory back, as an idle connection should.
    c.outq = Vec::new();
    c.head = 0;
    Ok(())
}

/// A source writes chunks while the kernel takes them whole.
fn fill(c: &mut Conn) -> io::Result<()> {
    while c.head == c.outq.len() && !c.wire.holds_output() {
        match c.wire.write(&CHUNK) {
            Ok(n) if n == CHUNK.len() => {}
            Ok(n) => c.outq.extend_from_slice(&CHUNK[n..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.outq.extend_from_slice(&CHUNK),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Echo each datagram to its sender; queue the few the kernel would not take.
fn udp_echo(mut poll: Poll, sock: mio::net::UdpSocket, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut queue: VecDeque<(SocketAddr, Vec<u8>)> = VecDeque::new();
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        for ev in events.iter() {
            if ev.token() == WAKER {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                continue;
            }
            while let Some((to, d)) = queue.front() {
                match sock.send_to(d, *to) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    _ => {
                        queue.pop_front();
                    }
                }
            }
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if !queue.is_empty() {
                            queue.push_back((from, buf[..n].to_vec()));
                        } else if let Err(e) = sock.send_to(&buf[..n], from) {
                            if e.kind() == ErrorKind::WouldBlock {
                                queue.push_back((from, buf[..n].to_vec()));
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {}
                }
            }
        }
    }
}
