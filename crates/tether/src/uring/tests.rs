//! The ring on a real connection, without the engine: what a socket holds
//! while bytes move through it, and that it holds nothing once they moved.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::id::Gen;
use crate::uring::{Op, Ring};
use crate::SocketId;

/// Turns of the ring, each completion handled as the engine would, until
/// `done` says so (at most 200 turns of at most 50 ms).
fn turn_until(ring: &mut Ring, key: usize, mut done: impl FnMut(&mut Ring) -> bool) {
    for _ in 0..200 {
        if done(ring) {
            return;
        }
        ring.enter(Some(Duration::from_millis(50))).unwrap();
        while let Some(c) = ring.next_completion() {
            match c.op {
                Op::Recv => {
                    ring.on_recv(&c);
                }
                Op::Send => {
                    if let Some((_, Ok(n))) = ring.on_send(&c) {
                        // What the engine does with a send's completion.
                        let f = ring.flow(key).unwrap();
                        f.out.lent_out(n);
                    }
                }
                _ => {}
            }
        }
        ring.end_batch();
    }
    panic!("the ring never got there");
}

#[test]
fn a_socket_holds_a_flow_only_while_bytes_move_through_it() {
    let poll = mio::Poll::new().unwrap();
    let Ok(mut ring) = Ring::new(poll.as_raw_fd()) else {
        eprintln!("io_uring refused here: nothing to test");
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let s = SocketId {
        idx: 0,
        gen: Gen::START.next(),
    };
    let key = ring.adopt(s, server.as_raw_fd());
    ring.arm_recv(key);
    assert!(
        ring.by_key(key).unwrap().flow.is_none(),
        "idle from the start"
    );

    // Received: held until read.
    client.write_all(b"hello").unwrap();
    turn_until(&mut ring, key, |r| r.by_key(key).unwrap().stashed() == 5);
    let mut buf = [0u8; 16];
    let n = ring.settled(s).unwrap().take(&mut buf);
    assert_eq!(&buf[..n], b"hello");
    assert!(
        ring.by_key(key).unwrap().flow.is_some(),
        "kept until the wait"
    );
    turn_until(&mut ring, key, |r| r.by_key(key).unwrap().flow.is_none());

    // Sent: held until the kernel took it, then given back; the spare is
    // what the next send uses.
    ring.flow(key).unwrap().out.push(b"world");
    ring.want_send(key);
    turn_until(&mut ring, key, |r| r.by_key(key).unwrap().all_sent());
    turn_until(&mut ring, key, |r| r.by_key(key).unwrap().flow.is_none());
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"world");
    assert_eq!(ring.spares.len(), 1, "one flow, reused for both");
    // The ring first: it cancels its requests on the descriptor.
    drop(ring);
    drop(server);
}
