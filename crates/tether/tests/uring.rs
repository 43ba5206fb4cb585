//! The io_uring backend chosen by the builder (not by `TETHER_BACKEND`, so
//! that a plain `cargo test` runs it): an echo over a connection the ring
//! accepted, and its graceful end; a reset that counts what the ring had
//! received and nobody read. The whole suite runs on the ring with
//! `TETHER_BACKEND=uring`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use tether::{
    Admission, Backend, Closed, Cx, IoMux, PeerInfo, Reason, RecvMode, SocketId, SocketUser,
};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Seen {
    echoed: usize,
    peer_shut: bool,
    closed: Option<(Reason, u64)>,
    conn: Option<SocketId>,
}

struct Listener {
    echo: bool,
}
impl SocketUser<Seen> for Listener {
    fn on_incoming(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &PeerInfo) -> Admission<Seen> {
        Admission::Accept(Box::new(Conn { echo: self.echo }))
    }
    fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
}

struct Conn {
    echo: bool,
}
impl SocketUser<Seen> for Conn {
    fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().conn = Some(s);
        if self.echo {
            cx.recv(s, 1024, RecvMode::Partial).unwrap();
        }
    }
    fn on_received(&mut self, cx: &mut Cx<Seen>, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.shared_mut().echoed += data.len();
        cx.recv(s, 1024, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx<Seen>, s: SocketId, _: Option<&[u8]>) {
        cx.shared_mut().peer_shut = true;
        cx.close(s).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _: SocketId, closed: &Closed) {
        cx.shared_mut().closed = Some((closed.reason, closed.unread));
    }
}

fn ring_mux() -> IoMux<Seen> {
    let mux = IoMux::builder()
        .backend(Backend::IoUring)
        .build(Seen::default())
        .expect("event loop");
    assert_eq!(
        mux.backend(),
        Backend::IoUring,
        "the kernel refused io_uring"
    );
    mux
}

fn addr(mux: &IoMux<Seen>, l: SocketId) -> String {
    mux.local_addr(l).expect("bound").to_string()
}

fn turn_until(mux: &mut IoMux<Seen>, done: impl Fn(&Seen) -> bool) {
    let until = std::time::Instant::now() + WAIT;
    while !done(mux.shared()) {
        assert!(std::time::Instant::now() < until, "timed out");
        mux.turn(Some(Duration::from_millis(50))).unwrap();
    }
}

#[test]
fn echo_and_graceful_end_on_the_ring() {
    let mut mux = ring_mux();
    let l = mux.listen_on("127.0.0.1:0", Listener { echo: true });
    let to = addr(&mux, l);
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(to).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let mut back = [0u8; 5];
        for _ in 0..50 {
            c.write_all(b"hello").unwrap();
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"hello");
        }
        c.shutdown(Shutdown::Write).unwrap();
        // The server closes once it saw our end: a clean end of stream.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        rest
    });
    turn_until(&mut mux, |s| s.closed.is_some());
    assert!(client.join().unwrap().is_empty());
    let seen = mux.shared();
    assert_eq!(seen.echoed, 250);
    assert!(seen.peer_shut);
    // The peer ended first.
    assert_eq!(seen.closed, Some((Reason::ByPeer, 0)));
}

#[test]
fn a_reset_counts_what_the_ring_read_ahead() {
    let mut mux = ring_mux();
    // No recv: what the peer sends waits, read ahead by the ring.
    let l = mux.listen_on("127.0.0.1:0", Listener { echo: false });
    let mut c = TcpStream::connect(addr(&mux, l)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(&[7u8; 1000]).unwrap();
    turn_until(&mut mux, |s| s.conn.is_some());
    // The bytes are in the server's receive queue already (loopback); a few
    // turns let the ring read them ahead into its stash. Wherever they wait,
    // the reset counts all of them.
    for _ in 0..20 {
        mux.turn(Some(Duration::from_millis(5))).unwrap();
    }
    let s = mux.shared().conn.unwrap();
    mux.reset(s).unwrap();
    turn_until(&mut mux, |s| s.closed.is_some());
    assert_eq!(mux.shared().closed, Some((Reason::Reset, 1000)));
    let mut buf = [0u8; 16];
    let end = c.read(&mut buf).map_err(|e| e.kind());
    assert_eq!(end, Err(std::io::ErrorKind::ConnectionReset));
}

/// Bulk through the ring comes back whole and in order: 8 MiB through 4 MiB
/// of provided buffers, each given back and filled again.
#[test]
fn bulk_echo_keeps_every_byte_in_order() {
    const TOTAL: usize = 8 << 20;
    let pattern: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let mut mux = ring_mux();
    let l = mux.listen_on("127.0.0.1:0", Listener { echo: true });
    let c = TcpStream::connect(addr(&mux, l)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = c.try_clone().unwrap();
    let sent = pattern.clone();
    let w = std::thread::spawn(move || {
        for chunk in sent.chunks(100_000) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let r = std::thread::spawn(move || {
        let mut c = c;
        let mut got = Vec::with_capacity(TOTAL);
        c.read_to_end(&mut got).unwrap();
        got
    });
    turn_until(&mut mux, |s| s.closed.is_some());
    w.join().unwrap();
    let got = r.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern, "the echo differs from what was sent");
}

/// Many connections' small messages share the provided buffers (each
/// receive goes on where the last one, of any socket, stopped): each
/// connection gets back its own bytes, in order.
#[test]
fn interleaved_small_messages_stay_with_their_connection() {
    const CONNS: usize = 16;
    const MESSAGES: usize = 2000;
    const SIZE: usize = 37;
    let mut mux = ring_mux();
    let l = mux.listen_on("127.0.0.1:0", Listener { echo: true });
    let to = addr(&mux, l);
    let clients: Vec<_> = (0..CONNS)
        .map(|k| {
            let to = to.clone();
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(to).unwrap();
                c.set_read_timeout(Some(WAIT)).unwrap();
                let message: Vec<u8> = (0..SIZE).map(|i| (k * 7 + i) as u8).collect();
                let mut back = vec![0u8; SIZE];
                for _ in 0..MESSAGES {
                    c.write_all(&message).unwrap();
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(back, message, "connection {k} got another's bytes");
                }
            })
        })
        .collect();
    turn_until(&mut mux, |s| s.echoed == CONNS * MESSAGES * SIZE);
    for c in clients {
        c.join().unwrap();
    }
}

/// The inode of the TCP socket from local port `local` to peer port `peer`
/// (IPv4), from the kernel's table: names the server's socket of a
/// connection the test made.
fn socket_inode(local: u16, peer: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        if port(f[1])? == local && port(f[2])? == peer {
            f[9].parse().ok().filter(|&i| i != 0)
        } else {
            None
        }
    })
}

/// A descriptor of this process refers to socket `inode`.
fn fd_open(inode: u64) -> bool {
    let name = format!("socket:[{inode}]");
    std::fs::read_dir("/proc/self/fd").unwrap().any(|e| {
        let e = e.unwrap();
        std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == name)
    })
}

/// The server's socket of the connection `c` made to listener `l`, which
/// the process holds open now.
fn server_socket(mux: &IoMux<Seen>, l: SocketId, c: &TcpStream) -> u64 {
    let server = mux.local_addr(l).unwrap().to_string();
    let server: std::net::SocketAddr = server.parse().unwrap();
    let inode = socket_inode(server.port(), c.local_addr().unwrap().port())
        .expect("the connection in the kernel's table");
    assert!(fd_open(inode), "the server's descriptor of the connection");
    inode
}

/// Turn until no descriptor of this process refers to socket `inode`.
fn turn_until_gone(mux: &mut IoMux<Seen>, inode: u64) {
    let until = std::time::Instant::now() + WAIT;
    while fd_open(inode) {
        assert!(
            std::time::Instant::now() < until,
            "the descriptor stays open"
        );
        mux.turn(Some(Duration::from_millis(50))).unwrap();
    }
}

/// A released ring socket's descriptor is closed by the ring, without a
/// system call of its own: it is gone once the turn that closed the
/// socket submitted its requests.
#[test]
fn the_ring_closes_a_released_socket() {
    let mut mux = ring_mux();
    let l = mux.listen_on("127.0.0.1:0", Listener { echo: true });
    let mut c = TcpStream::connect(addr(&mux, l)).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    turn_until(&mut mux, |s| s.conn.is_some());
    let inode = server_socket(&mux, l, &c);
    c.shutdown(Shutdown::Write).unwrap();
    turn_until(&mut mux, |s| s.closed.is_some());
    assert_eq!(mux.shared().closed, Some((Reason::ByPeer, 0)));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    turn_until_gone(&mut mux, inode);
}

/// A server sending bulk to a peer that resets meanwhile: the socket ends
/// as lost while the ring may still have its send or receive in the kernel
/// (they are cancelled, the close linked after the cancel), and its
/// descriptor is closed all the same.
#[test]
fn a_socket_lost_with_requests_in_the_ring_is_closed() {
    struct Bulk;
    impl SocketUser<Seen> for Bulk {
        fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
            cx.shared_mut().conn = Some(s);
            // Far more than the kernel takes: the rest goes through the ring.
            cx.send(s, &vec![1u8; 16 << 20]).unwrap();
            cx.recv(s, 1024, RecvMode::Partial).unwrap();
        }
        fn on_closed(&mut self, cx: &mut Cx<Seen>, _: SocketId, closed: &Closed) {
            cx.shared_mut().closed = Some((closed.reason, closed.unread));
        }
    }
    struct BulkListener;
    impl SocketUser<Seen> for BulkListener {
        fn on_incoming(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &PeerInfo) -> Admission<Seen> {
            Admission::Accept(Box::new(Bulk))
        }
        fn on_closed(&mut self, _: &mut Cx<Seen>, _: SocketId, _: &Closed) {}
    }
    let mut mux = ring_mux();
    let l = mux.listen_on("127.0.0.1:0", BulkListener);
    let c = TcpStream::connect(addr(&mux, l)).unwrap();
    turn_until(&mut mux, |s| s.conn.is_some());
    let inode = server_socket(&mux, l, &c);
    // Some of it arrived: the send is under way.
    let mut first = [0u8; 1];
    (&c).read_exact(&mut first).unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    turn_until(&mut mux, |s| s.closed.is_some());
    assert_eq!(mux.shared().closed.map(|c| c.0), Some(Reason::Lost));
    turn_until_gone(&mut mux, inode);
}
