//! The UDP relay on real loopback sockets. Waits are blocking receives with
//! timeouts or `wait_stats` (a condvar), never sleeps; assertions are on
//! counts and contents, never on speed.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tether_impair::{Impairment, Stats, UdpRelay};

/// Long enough never to fire on a loaded machine when a datagram is coming.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a receive waits when nothing should come (the counters have
/// already said nothing was forwarded; this only double-checks the socket).
const QUIET: Duration = Duration::from_millis(200);
/// Datagrams sent before the other side reads them, so no socket buffer ever
/// holds more than a few dozen and the kernel drops none.
const BATCH: u32 = 20;

struct Rig {
    relay: UdpRelay,
    client: UdpSocket,
    target: UdpSocket,
}

fn rig(seed: u64, to_target: Impairment, to_client: Impairment) -> Rig {
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let relay = UdpRelay::start(target.local_addr().unwrap(), seed, to_target, to_client).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&target, &client] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    Rig {
        relay,
        client,
        target,
    }
}

fn msg(i: u32) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend_from_slice(b" payload");
    m
}

/// Receives one datagram, checks its payload, returns its index and sender.
fn recv(sock: &UdpSocket) -> (u32, SocketAddr) {
    let mut buf = [0; 64];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("a datagram within PATIENCE");
    assert_eq!(&buf[4..n], b" payload", "content intact");
    (u32::from_be_bytes(buf[..4].try_into().unwrap()), from)
}

fn recv_n(sock: &UdpSocket, n: u64) -> Vec<u32> {
    (0..n).map(|_| recv(sock).0).collect()
}

fn nothing_arrives(sock: &UdpSocket) {
    sock.set_read_timeout(Some(QUIET)).unwrap();
    let mut buf = [0; 64];
    let got = sock.recv_from(&mut buf);
    assert!(got.is_err(), "unexpected datagram: {got:?}");
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
}

/// Waits until the relay has decided the fate of all `n` datagrams sent to
/// the target (taken in, and each dropped or sent on).
fn settled_to_target(relay: &UdpRelay, n: u64) -> Stats {
    relay
        .wait_stats(PATIENCE, |s| {
            let d = s.to_target;
            d.received == n && d.forwarded + d.dropped == n + d.duplicated
        })
        .unwrap_or_else(|| panic!("relay did not settle: {:?}", relay.stats()))
}

/// Sends one datagram from the client and returns the relay's back address as
/// the target sees it (where the target answers to).
fn handshake(rig: &Rig) -> SocketAddr {
    rig.client
        .send_to(&msg(u32::MAX), rig.relay.addr())
        .unwrap();
    let (i, back) = recv(&rig.target);
    assert_eq!(i, u32::MAX);
    back
}

#[test]
fn no_impairment_delivers_everything_in_order_both_ways() {
    let rig = rig(1, Impairment::none(), Impairment::none());
    let mut got = Vec::new();
    let mut back = None;
    for start in (0..200).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        }
        for _ in 0..BATCH {
            let (i, from) = recv(&rig.target);
            got.push(i);
            back = Some(from);
        }
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>());

    let back = back.unwrap();
    let mut got = Vec::new();
    for start in (0..200).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.target.send_to(&msg(i), back).unwrap();
        }
        for _ in 0..BATCH {
            let (i, from) = recv(&rig.client);
            assert_eq!(from, rig.relay.addr(), "answers come from the front");
            got.push(i);
        }
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>());

    let s = rig.relay.stats();
    for d in [s.to_target, s.to_client] {
        assert_eq!((d.received, d.forwarded, d.dropped), (200, 200, 0), "{s:?}");
        assert_eq!((d.duplicated, d.reordered, d.delayed), (0, 0, 0), "{s:?}");
    }
    rig.relay.stop();
}

#[test]
fn total_loss_drops_everything() {
    let rig = rig(1, Impairment::none().loss(1.0), Impairment::none());
    for i in 0..50 {
        rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
    }
    let s = settled_to_target(&rig.relay, 50);
    assert_eq!((s.to_target.dropped, s.to_target.forwarded), (50, 0));
    nothing_arrives(&rig.target);
}

/// Sends 200 datagrams through 30 % loss; returns the count dropped and the
/// indices received, in order.
fn lossy_run(seed: u64) -> (u64, Vec<u32>) {
    let rig = rig(seed, Impairment::none().loss(0.3), Impairment::none());
    let mut got = Vec::new();
    let mut forwarded = 0;
    for start in (0..200).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        }
        let s = settled_to_target(&rig.relay, u64::from(start + BATCH));
        got.extend(recv_n(&rig.target, s.to_target.forwarded - forwarded));
        forwarded = s.to_target.forwarded;
    }
    nothing_arrives(&rig.target);
    let s = rig.relay.stats().to_target;
    assert_eq!(s.dropped + s.forwarded, 200);
    assert_eq!(got.len() as u64, s.forwarded);
    (s.dropped, got)
}

#[test]
fn partial_loss_is_reproducible_from_the_seed() {
    let (dropped, got) = lossy_run(7);
    // A subset of what was sent: distinct, in range (and in order: loss alone
    // does not reorder).
    assert!(got.windows(2).all(|w| w[0] < w[1]) && got.iter().all(|&i| i < 200));
    assert!((20..100).contains(&dropped), "about 30 % of 200: {dropped}");

    let (again, got_again) = lossy_run(7);
    assert_eq!((again, &got_again), (dropped, &got), "same seed, same fate");

    let (other, got_other) = lossy_run(8);
    assert_ne!(other, dropped, "another seed drops another number");
    assert_ne!(got_other, got);
}

#[test]
fn full_duplication_delivers_every_datagram_twice() {
    let rig = rig(3, Impairment::none().duplicate(1.0), Impairment::none());
    let mut counts = BTreeMap::new();
    for start in (0..100).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        }
        for i in recv_n(&rig.target, 2 * u64::from(BATCH)) {
            *counts.entry(i).or_insert(0) += 1;
        }
    }
    nothing_arrives(&rig.target);
    assert_eq!(counts.len(), 100);
    assert!(
        counts.iter().all(|(&i, &n)| i < 100 && n == 2),
        "{counts:?}"
    );
    let s = rig.relay.stats().to_target;
    assert_eq!(
        (s.received, s.duplicated, s.forwarded, s.dropped),
        (100, 100, 200, 0)
    );
}

#[test]
fn reordering_keeps_every_datagram_but_changes_the_order() {
    // Both directions reorder; the answers check the way back.
    let imp = Impairment::none().reorder(0.5);
    let rig = rig(5, imp, imp);
    let mut got = Vec::new();
    let mut back = None;
    for start in (0..200).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        }
        for _ in 0..BATCH {
            let (i, from) = recv(&rig.target);
            got.push(i);
            back = Some(from);
        }
    }
    let sent: Vec<u32> = (0..200).collect();
    assert_ne!(got, sent, "seed 5 reorders");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, sent, "same multiset");

    let mut answers = Vec::new();
    for start in (0..200).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.target.send_to(&msg(i), back.unwrap()).unwrap();
        }
        answers.extend(recv_n(&rig.client, u64::from(BATCH)));
    }
    assert_ne!(answers, sent);
    answers.sort_unstable();
    assert_eq!(answers, sent);

    let s = rig.relay.stats();
    for d in [s.to_target, s.to_client] {
        assert!(d.reordered > 0, "{s:?}");
        assert_eq!((d.forwarded, d.dropped), (200, 0), "{s:?}");
    }
}

#[test]
fn delay_and_jitter_deliver_everything_later() {
    let imp = Impairment::none().delay(Duration::from_millis(2), Duration::from_millis(3));
    let rig = rig(9, imp, Impairment::none());
    let mut got = Vec::new();
    for start in (0..100).step_by(BATCH as usize) {
        for i in start..start + BATCH {
            rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        }
        got.extend(recv_n(&rig.target, u64::from(BATCH)));
    }
    got.sort_unstable();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    let s = rig.relay.stats().to_target;
    assert_eq!((s.forwarded, s.delayed, s.dropped), (100, 100, 0));
}

#[test]
fn a_cut_drops_both_ways_until_restored() {
    let rig = rig(11, Impairment::none(), Impairment::none());
    let back = handshake(&rig);

    rig.relay.set_cut(true);
    for i in 0..10 {
        rig.client.send_to(&msg(i), rig.relay.addr()).unwrap();
        rig.target.send_to(&msg(i), back).unwrap();
    }
    let s = rig
        .relay
        .wait_stats(PATIENCE, |s| {
            s.to_target.received == 11 && s.to_client.received == 10
        })
        .expect("relay took in all");
    assert_eq!(
        (s.to_target.dropped, s.to_target.forwarded),
        (10, 1),
        "{s:?}"
    );
    assert_eq!(
        (s.to_client.dropped, s.to_client.forwarded),
        (10, 0),
        "{s:?}"
    );
    nothing_arrives(&rig.target);
    nothing_arrives(&rig.client);

    rig.relay.set_cut(false);
    rig.client.send_to(&msg(100), rig.relay.addr()).unwrap();
    assert_eq!(recv(&rig.target).0, 100);
    rig.target.send_to(&msg(200), back).unwrap();
    assert_eq!(recv(&rig.client), (200, rig.relay.addr()));
}
