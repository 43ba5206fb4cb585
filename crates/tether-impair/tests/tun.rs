//! The TUN link with real TCP and UDP between two real network namespaces.
//! Skipped, with the reason printed, where it cannot run (not root, no
//! /dev/net/tun, no `ip`). Waits are blocking socket calls with timeouts or
//! `wait_stats` (a condvar), never sleeps; assertions are on contents and
//! counts, never on speed (the figures are printed for the record).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tether_impair::{Impairment, Side, TunLink, TunStats};

/// Long enough never to fire on a loaded machine when something is coming;
/// bounds every blocking call so a broken link fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn link(seed: u64, a_to_b: Impairment, b_to_a: Impairment) -> Option<TunLink> {
    if let Some(why) = TunLink::unsupported() {
        eprintln!("skipping: {why}");
        return None;
    }
    Some(TunLink::start(seed, a_to_b, b_to_a).expect("TunLink::start"))
}

/// The bytes of stream `stream`: a fixed pseudo-random sequence.
fn payload(stream: u64, len: usize) -> Vec<u8> {
    let mut x = stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, 64 bits: enough to tell a damaged stream from an intact one.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn listen_in_a(link: &TunLink) -> TcpListener {
    let _in_a = link.enter(Side::A).unwrap();
    TcpListener::bind((TunLink::ADDR_A, 0)).unwrap()
}

fn timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
}

/// Serves `conns` connections: each sends a stream and half-closes; the
/// answer is its length and hash, read in namespace A.
fn serve(listener: TcpListener, conns: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let handlers: Vec<_> = (0..conns)
            .map(|_| {
                let (mut s, _) = listener.accept().unwrap();
                thread::spawn(move || {
                    timeouts(&s);
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).unwrap();
                    let mut answer = (got.len() as u64).to_be_bytes().to_vec();
                    answer.extend_from_slice(&fnv(&got).to_be_bytes());
                    s.write_all(&answer).unwrap();
                })
            })
            .collect();
        for h in handlers {
            h.join().unwrap();
        }
    })
}

/// Sends `conns` streams of `len` bytes at once from namespace B to A and
/// checks that each arrived whole and unchanged; returns the time taken.
fn transfer(link: &TunLink, conns: usize, len: usize) -> Duration {
    let listener = listen_in_a(link);
    let to = SocketAddr::from((TunLink::ADDR_A, listener.local_addr().unwrap().port()));
    let server = serve(listener, conns);
    let start = Instant::now();
    let clients: Vec<_> = (0..conns as u64)
        .map(|i| {
            link.spawn_in(Side::B, move || {
                let data = payload(i, len);
                let mut s = TcpStream::connect_timeout(&to, PATIENCE).unwrap();
                timeouts(&s);
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut answer = [0; 16];
                s.read_exact(&mut answer).unwrap();
                assert_eq!(answer[..8], (len as u64).to_be_bytes(), "length");
                assert_eq!(answer[8..], fnv(&data).to_be_bytes(), "contents");
            })
            .unwrap()
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    server.join().unwrap();
    start.elapsed()
}

fn assert_no_packet_above_mtu(stats: &TunStats) {
    for d in [stats.a_to_b, stats.b_to_a] {
        assert!(
            d.largest <= u64::from(TunLink::MTU),
            "a packet beyond the MTU (an offload?): {stats:?}"
        );
    }
}

#[test]
fn tcp_through_a_clean_link_is_intact() {
    let Some(link) = link(1, Impairment::none(), Impairment::none()) else {
        return;
    };
    let len = 4 << 20;
    let took = transfer(&link, 1, len);
    let stats = link.stats();
    println!(
        "clean link: 4 MiB in {took:?} ({:.1} MB/s); {stats:?}",
        len as f64 / took.as_secs_f64() / 1e6
    );
    for d in [stats.a_to_b, stats.b_to_a] {
        assert_eq!(d.dropped, 0, "{stats:?}");
        assert_eq!(d.forwarded, d.received, "{stats:?}");
    }
    // Full-sized segments crossed, one packet each.
    assert_eq!(stats.b_to_a.largest, u64::from(TunLink::MTU), "{stats:?}");
    assert_no_packet_above_mtu(&stats);
}

#[test]
fn tcp_through_loss_delay_reordering_and_duplication_is_intact() {
    let bad = Impairment::none()
        .loss(0.10)
        .delay(Duration::from_millis(5), Duration::from_millis(1))
        .reorder(0.25)
        .duplicate(0.02);
    let Some(link) = link(7, bad, bad) else {
        return;
    };
    let (conns, len) = (8, 1 << 20);
    let took = transfer(&link, conns, len);
    let stats = link.stats();
    println!(
        "impaired link: {conns} x 1 MiB in {took:?} ({:.2} MB/s); {stats:?}",
        (conns * len) as f64 / took.as_secs_f64() / 1e6
    );
    for d in [stats.a_to_b, stats.b_to_a] {
        assert!(d.dropped > 0, "{stats:?}");
        assert!(d.duplicated > 0, "{stats:?}");
        assert!(d.reordered > 0, "{stats:?}");
        assert!(d.delayed > 0, "{stats:?}");
    }
    // The data went B to A: with a tenth of it lost, TCP must have sent
    // more than the bare payload (retransmissions), and got it all through.
    let payload_packets = (conns * len).div_ceil(1448) as u64;
    assert!(stats.b_to_a.received > payload_packets, "{stats:?}");
    assert_no_packet_above_mtu(&stats);
}

#[test]
fn a_cut_times_out_a_connect_and_stalls_data_until_lifted() {
    let Some(link) = link(3, Impairment::none(), Impairment::none()) else {
        return;
    };
    let listener = listen_in_a(&link);
    let to = SocketAddr::from((TunLink::ADDR_A, listener.local_addr().unwrap().port()));

    // Cut: the SYN never gets through, so the connect times out.
    link.set_cut(true);
    let refused = {
        let _in_b = link.enter(Side::B).unwrap();
        TcpStream::connect_timeout(&to, Duration::from_millis(300))
    };
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::TimedOut);
    let stats = link.stats();
    assert!(stats.b_to_a.dropped >= 1, "{stats:?}");
    assert_eq!(stats.b_to_a.forwarded, 0, "{stats:?}");

    // Lifted: a connection is made and carries data.
    link.set_cut(false);
    let mut client = {
        let _in_b = link.enter(Side::B).unwrap();
        TcpStream::connect_timeout(&to, PATIENCE).unwrap()
    };
    timeouts(&client);
    // The SYN of the timed-out connect may arrive in the backlog first only
    // if it crossed, which the counters say it did not: this is ours.
    let (mut server, _) = listener.accept().unwrap();
    timeouts(&server);
    client.write_all(b"before").unwrap();
    let mut buf = [0; 6];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"before");

    // Cut again: what the client sends now stalls, retransmissions included.
    link.set_cut(true);
    let at_cut = link.stats();
    client.write_all(b"during").unwrap();
    link.wait_stats(PATIENCE, |s| s.b_to_a.dropped >= at_cut.b_to_a.dropped + 2)
        .expect("the segment and a retransmission of it dropped");
    let stalled = link.stats();
    assert_eq!(
        stalled.b_to_a.forwarded, at_cut.b_to_a.forwarded,
        "{stalled:?}"
    );
    server.set_nonblocking(true).unwrap();
    let nothing = server.read(&mut buf);
    assert_eq!(
        nothing.map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::WouldBlock
    );

    // Lifted: the retransmission gets through and the connection goes on.
    link.set_cut(false);
    server.set_nonblocking(false).unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"during");
    let data = payload(9, 256 << 10);
    client.write_all(&data).unwrap();
    let mut got = vec![0; data.len()];
    server.read_exact(&mut got).unwrap();
    assert!(got == data, "data after the cut intact");
}

/// Sends 100 numbered datagrams from A to B through a link losing half of
/// them, and returns the numbers that arrived, in order of arrival.
fn survivors(seed: u64) -> Option<Vec<u8>> {
    let lossy = Impairment::none().loss(0.5).reorder(0.2);
    let link = link(seed, lossy, Impairment::none())?;
    let rx = {
        let _in_b = link.enter(Side::B).unwrap();
        UdpSocket::bind((TunLink::ADDR_B, 0)).unwrap()
    };
    rx.set_read_timeout(Some(PATIENCE)).unwrap();
    let to = rx.local_addr().unwrap();
    let tx = {
        let _in_a = link.enter(Side::A).unwrap();
        UdpSocket::bind((TunLink::ADDR_A, 0)).unwrap()
    };
    let n = 100u8;
    for i in 0..n {
        tx.send_to(&[i], to).unwrap();
    }
    let settled = link
        .wait_stats(PATIENCE, |s| {
            let d = s.a_to_b;
            d.received == u64::from(n) && d.forwarded + d.dropped == u64::from(n)
        })
        .unwrap_or_else(|| panic!("link did not settle: {:?}", link.stats()));
    // Nothing but our datagrams crossed (no IPv6 chatter).
    assert_eq!(settled.b_to_a.received, 0, "{settled:?}");
    let mut buf = [0; 8];
    let got = (0..settled.a_to_b.forwarded)
        .map(|_| {
            assert_eq!(rx.recv(&mut buf).unwrap(), 1);
            buf[0]
        })
        .collect();
    Some(got)
}

#[test]
fn the_same_seed_makes_the_same_decisions() {
    let Some(first) = survivors(11) else {
        return;
    };
    let second = survivors(11).unwrap();
    let other = survivors(12).unwrap();
    assert_eq!(first, second);
    assert_ne!(first, other);
    assert!((25..75).contains(&first.len()), "{first:?}");
    assert!(!first.is_sorted(), "reordered: {first:?}");
}

fn netns_listed(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn assert_gone(names: &[String]) {
    for name in names {
        assert!(!netns_listed(name), "{name} still listed");
        assert!(!Path::new("/var/run/netns").join(name).exists(), "{name}");
    }
}

#[test]
fn namespaces_are_removed_on_drop_and_on_panic() {
    let Some(link) = link(5, Impairment::none(), Impairment::none()) else {
        return;
    };
    let names = [Side::A, Side::B].map(|s| link.netns(s).to_owned());
    assert!(names.iter().all(|n| netns_listed(n)), "{names:?}");
    // A process in the namespace sees the device, up, with its address.
    let out = link
        .command(Side::B, "ip")
        .args(["-o", "-4", "addr", "show", "dev", link.device(Side::B)])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("10.77.0.2/24"), "{shown}");
    drop(link);
    assert_gone(&names);

    let mut names = Vec::new();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let link = TunLink::start(6, Impairment::none(), Impairment::none()).unwrap();
        names.extend([Side::A, Side::B].map(|s| link.netns(s).to_owned()));
        // A test failing with the link up (unwinding without the message).
        std::panic::resume_unwind(Box::new("failed"));
    }));
    assert!(unwound.is_err());
    assert_eq!(names.len(), 2);
    assert_gone(&names);
}

#[test]
fn a_spawned_thread_runs_inside_its_namespace() {
    let Some(link) = link(8, Impairment::none(), Impairment::none()) else {
        return;
    };
    // Only namespace B has B's address: binding to it works there alone.
    let in_b = link
        .spawn_in(Side::B, || UdpSocket::bind((TunLink::ADDR_B, 0)).map(drop))
        .unwrap();
    in_b.join().unwrap().expect("bind to B's address inside B");
    let in_a = link
        .spawn_in(Side::A, || UdpSocket::bind((TunLink::ADDR_B, 0)).map(drop))
        .unwrap();
    let err: io::Error = in_a.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrNotAvailable);
    // And the guard takes this thread back home.
    drop(link.enter(Side::B).unwrap());
    assert_eq!(
        UdpSocket::bind((TunLink::ADDR_B, 0)).unwrap_err().kind(),
        ErrorKind::AddrNotAvailable
    );
}
