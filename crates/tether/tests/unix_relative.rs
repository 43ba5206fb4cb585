//! A relative `unix:` path is relative to the working directory, as `nc -U`
//! takes it. Its own test binary: it changes the process's working directory.

use std::time::Duration;

use tether::{Closed, Cx, IoMux, Reason, SockAddr, SocketId, SocketUser};

#[derive(Default)]
struct Seen {
    connected: usize,
    accepted: usize,
    closed: Vec<Reason>,
}

struct User;

impl SocketUser<Seen> for User {
    fn on_connected(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().connected += 1;
        cx.reset(s).unwrap();
    }
    fn on_accepted(&mut self, cx: &mut Cx<Seen>, s: SocketId) {
        cx.shared_mut().accepted += 1;
        cx.reset(s).unwrap();
    }
    fn on_closed(&mut self, cx: &mut Cx<Seen>, _s: SocketId, closed: &Closed) {
        cx.shared_mut().closed.push(closed.reason);
    }
}

struct Listener;

impl SocketUser<Seen> for Listener {
    fn on_incoming(
        &mut self,
        _cx: &mut Cx<Seen>,
        _l: SocketId,
        _peer: &tether::PeerInfo,
    ) -> tether::Admission<Seen> {
        tether::Admission::Accept(Box::new(User))
    }
    fn on_closed(&mut self, _cx: &mut Cx<Seen>, _s: SocketId, _closed: &Closed) {}
}

#[test]
fn relative_unix_path() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let mut mux = IoMux::new(Seen::default()).unwrap();
    let l = mux.listen_on("unix:echo.sock", Listener);
    assert_eq!(mux.local_addr(l), Some(SockAddr::Unix("echo.sock".into())));
    assert!(
        dir.path().join("echo.sock").exists(),
        "the file is in the working directory"
    );
    mux.connect_to("unix:echo.sock", User);
    let handle = mux.handle();
    mux.set_interval(Duration::from_millis(10), move |cx| {
        if cx.shared().closed.len() == 2 {
            handle.terminate();
        }
    });
    mux.set_timer(Duration::from_secs(10), |cx| cx.terminate());
    mux.run().unwrap();
    let seen = mux.shared();
    assert_eq!(seen.connected, 1);
    assert_eq!(seen.accepted, 1);
    assert!(
        !dir.path().join("echo.sock").exists(),
        "closing the listener removed it"
    );
}
