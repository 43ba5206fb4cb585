//! One port, many loops: listeners in loops on different threads share a TCP
//! port through SO_REUSEPORT (`Cx::set_reuse_port`), the kernel spreads the
//! connections among them, and without the option the second bind fails.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use tether::{
    Admission, ApiError, Closed, Cx, Error, IoMux, MuxHandle, Op, PeerInfo, Reason, RecvMode,
    SockAddr, SocketId, SocketUser, Transport,
};

/// How long a blocking client waits before the test counts the server as hung.
const WAIT: Duration = Duration::from_secs(10);

/// Client connections: enough, from distinct source ports, that the kernel's
/// hash sends some to each of two listeners (all to one: odds 2^-63).
const CONNECTIONS: usize = 64;

/// A listener that counts what it admits and echoes each connection.
struct Server {
    accepted: Arc<AtomicUsize>,
}

impl SocketUser for Server {
    fn on_incoming(&mut self, _: &mut Cx, _: SocketId, _: &PeerInfo) -> Admission {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Admission::Accept(Box::new(Echo))
    }
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        assert_eq!(closed.reason, Reason::Stopped, "{closed:?}");
    }
}

struct Echo;

impl SocketUser for Echo {
    fn on_accepted(&mut self, cx: &mut Cx, s: SocketId) {
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_received(&mut self, cx: &mut Cx, s: SocketId, data: &[u8]) {
        cx.send(s, data).unwrap();
        cx.recv(s, 4096, RecvMode::Partial).unwrap();
    }
    fn on_peer_shutdown(&mut self, cx: &mut Cx, s: SocketId, _: Option<&[u8]>) {
        cx.shutdown(s).unwrap();
    }
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, _: &Closed) {}
}

/// A loop on its own thread listening on `addr` with SO_REUSEPORT; returns
/// the port it bound, its handle, its count of admitted connections and the
/// thread.
fn serve(addr: String) -> (u16, MuxHandle<()>, Arc<AtomicUsize>, thread::JoinHandle<()>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let count = accepted.clone();
    let thread = thread::spawn(move || {
        let mut mux = IoMux::new(()).unwrap();
        let s = mux.stream(Server { accepted: count });
        mux.set_reuse_port(s, true).unwrap();
        mux.bind(s, &addr).unwrap();
        mux.listen(s).unwrap();
        assert_eq!(mux.state(s), tether::State::Listening, "listen on {addr}");
        let Some(SockAddr::Inet(local)) = mux.local_addr(s) else {
            panic!("no local address");
        };
        tx.send((local.port(), mux.handle())).unwrap();
        mux.run().unwrap();
    });
    let (port, handle) = rx.recv_timeout(WAIT).expect("the loop started");
    (port, handle, accepted, thread)
}

#[test]
fn two_loops_on_two_threads_share_one_port() {
    let (port, first, first_count, first_thread) = serve("127.0.0.1:0".into());
    let (same, second, second_count, second_thread) = serve(format!("127.0.0.1:{port}"));
    assert_eq!(same, port);

    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let c = TcpStream::connect_timeout(&to, WAIT).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            c
        })
        .collect();
    let sources: std::collections::HashSet<u16> = clients
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    assert_eq!(sources.len(), CONNECTIONS, "distinct source ports");
    for (i, mut c) in clients.into_iter().enumerate() {
        let message = format!("hello from client {i}");
        c.write_all(message.as_bytes()).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, message, "client {i}'s echo");
    }

    first.terminate();
    second.terminate();
    first_thread.join().unwrap();
    second_thread.join().unwrap();
    let (a, b) = (
        first_count.load(Ordering::Relaxed),
        second_count.load(Ordering::Relaxed),
    );
    println!("connections per loop: {a} and {b}");
    assert_eq!(a + b, CONNECTIONS);
    assert!(a >= 1 && b >= 1, "each loop accepted some: {a} and {b}");
}

/// How a socket closed: its reason and its OS error number, if any.
type End = Rc<RefCell<Option<(Reason, Option<i32>)>>>;

/// Records how a socket closed.
struct Ends(End);

impl SocketUser for Ends {
    fn on_closed(&mut self, _: &mut Cx, _: SocketId, closed: &Closed) {
        let os = match &closed.error {
            Some(Error::Io(e)) => e.raw_os_error(),
            _ => None,
        };
        *self.0.borrow_mut() = Some((closed.reason, os));
    }
}

/// A listener bound on `port` (0: the system picks), with or without the
/// option; returns its port.
fn listener(mux: &mut IoMux, port: u16, reuse: bool, end: &End) -> u16 {
    let s = mux.stream(Ends(end.clone()));
    mux.set_reuse_port(s, reuse).unwrap();
    mux.bind(s, &format!("127.0.0.1:{port}")).unwrap();
    // A failed bind closed the socket; listen then refuses.
    let listened = mux.listen(s);
    assert_eq!(listened.is_ok(), mux.state(s) == tether::State::Listening);
    match mux.local_addr(s) {
        Some(SockAddr::Inet(a)) => a.port(),
        _ => 0,
    }
}

#[test]
fn without_the_option_the_second_bind_fails_with_eaddrinuse() {
    // The first listener with or without it, the second without; and the
    // second with it when the first had none: each needs it on both sides.
    for (first, second) in [(false, false), (true, false), (false, true)] {
        let mut mux = IoMux::new(()).unwrap();
        let first_end = Rc::new(RefCell::new(None));
        let port = listener(&mut mux, 0, first, &first_end);
        assert_ne!(port, 0);

        let second_end = Rc::new(RefCell::new(None));
        let got = listener(&mut mux, port, second, &second_end);
        assert_eq!(got, 0, "the second listener has no address");
        // The first stays; terminate ends the loop once the failure is told.
        mux.handle().terminate();
        mux.run().unwrap();

        let closed = second_end.borrow_mut().take();
        assert_eq!(
            closed,
            Some((Reason::BindFailed, Some(libc::EADDRINUSE))),
            "first {first}, second {second}"
        );
        let first_closed = first_end.borrow_mut().take();
        assert_eq!(first_closed, Some((Reason::Stopped, None)));
    }
}

fn so_reuseport(fd: &impl AsRawFd) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor and an int-sized buffer with its length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    on != 0
}

#[test]
fn the_option_reaches_the_descriptor_of_bind_and_of_listen_alone() {
    let mut mux = IoMux::new(()).unwrap();
    let end = Rc::new(RefCell::new(None));
    // Bound by `bind`.
    let bound = mux.stream(Ends(end.clone()));
    mux.set_reuse_port(bound, true).unwrap();
    mux.bind(bound, "127.0.0.1:0").unwrap();
    assert!(so_reuseport(&mux.as_fd(bound).unwrap()));
    // Bound by `listen`, on every interface.
    let listening = mux.stream(Ends(end.clone()));
    mux.set_reuse_port(listening, true).unwrap();
    mux.listen(listening).unwrap();
    assert!(so_reuseport(&mux.as_fd(listening).unwrap()));
    // Off by default, and turned off again.
    let plain = mux.stream(Ends(end.clone()));
    mux.bind(plain, "127.0.0.1:0").unwrap();
    assert!(!so_reuseport(&mux.as_fd(plain).unwrap()));
    let off = mux.stream(Ends(end.clone()));
    mux.set_reuse_port(off, true).unwrap();
    mux.set_reuse_port(off, false).unwrap();
    mux.bind(off, "127.0.0.1:0").unwrap();
    assert!(!so_reuseport(&mux.as_fd(off).unwrap()));
}

#[test]
fn the_option_is_refused_once_the_socket_has_a_descriptor_and_off_tcp() {
    let mut mux = IoMux::new(()).unwrap();
    let end = Rc::new(RefCell::new(None));
    let refused = |e: Result<(), ApiError>| match e {
        Err(ApiError::Refused(r)) => assert_eq!(r.op, Op::SetOption),
        other => panic!("not refused: {other:?}"),
    };

    let bound = mux.stream(Ends(end.clone()));
    mux.bind(bound, "127.0.0.1:0").unwrap();
    refused(mux.set_reuse_port(bound, true));
    mux.listen(bound).unwrap();
    refused(mux.set_reuse_port(bound, true));

    let port = match mux.local_addr(bound) {
        Some(SockAddr::Inet(a)) => a.port(),
        _ => panic!("no address"),
    };
    let connecting = mux.stream(Ends(end.clone()));
    mux.connect(connecting, &format!("127.0.0.1:{port}"))
        .unwrap();
    refused(mux.set_reuse_port(connecting, true));

    let closed = mux.stream(Ends(end.clone()));
    mux.close(closed).unwrap();
    assert!(matches!(
        mux.set_reuse_port(closed, true),
        Err(ApiError::Refused(_) | ApiError::StaleSocket(_))
    ));

    let udp = mux.udp(Ends(end.clone()));
    assert_eq!(
        mux.set_reuse_port(udp, true),
        Err(ApiError::Unsupported {
            op: "reuse_port",
            transport: Transport::Udp
        })
    );

    // A Local address refuses it and leaves the socket as it was: it may
    // still bind to a TCP address.
    let local = mux.stream(Ends(end.clone()));
    mux.set_reuse_port(local, true).unwrap();
    assert_eq!(
        mux.bind(local, "unix:@tether-reuse-port-test"),
        Err(ApiError::Unsupported {
            op: "reuse_port",
            transport: Transport::Local
        })
    );
    assert_eq!(mux.state(local), tether::State::NotConnected);
    assert!(mux.local_addr(local).is_none());
    mux.bind(local, "127.0.0.1:0").unwrap();
    assert!(so_reuseport(&mux.as_fd(local).unwrap()));
}
