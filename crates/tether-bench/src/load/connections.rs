//! Loads made of connections rather than bytes: churn (connect, one
//! exchange, end, again).

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Instant;

use mio::{Events, Poll};

use super::{open, poll_events, Clock, Measured, Window};
use crate::common::Target;
use crate::tlsio::Wire;

/// Connection churn: `parallel` at a time, each connects (and on TLS does a
/// full handshake), sends 64 bytes, reads them back, ends its side (TLS:
/// close_notify, then FIN), reads until the server's end, closes.
pub(crate) fn churn(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    parallel: usize,
    w: Window,
) -> Measured {
    #[derive(PartialEq)]
    enum Phase {
        Opening,
        Exchange,
        Closing,
    }
    struct C {
        wire: Wire,
        connected: bool,
        phase: Phase,
        got: usize,
        fin_sent: bool,
    }
    let msg = [0x11u8; 64];
    let mut buf = vec![0u8; 16 * 1024];
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let fresh = |poll: &Poll, i| C {
        wire: open(poll, target, tls, i),
        connected: false,
        phase: Phase::Opening,
        got: 0,
        fin_sent: false,
    };
    let mut cs: Vec<C> = (0..parallel).map(|i| fresh(&poll, i)).collect();
    let mut clock = Clock::new(w);
    clock.start(Instant::now());
    let (mut done, mut errors) = (0u64, 0u64);
    loop {
        poll_events(&mut poll, &mut events);
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut cs[i];
            let result = (|| -> std::io::Result<bool> {
                if c.phase == Phase::Opening {
                    if !c.connected {
                        if !c.wire.sock.connected()? {
                            return Ok(false);
                        }
                        c.connected = true;
                    }
                    if c.wire.handshaking() {
                        c.wire.flush()?;
                        match c.wire.read(&mut buf) {
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            other => {
                                other?;
                            }
                        }
                        if c.wire.handshaking() {
                            return Ok(false);
                        }
                    }
                    c.phase = Phase::Exchange;
                    // 64 bytes always fit an empty socket buffer.
                    c.wire.write(&msg)?;
                }
                if c.phase == Phase::Closing && !c.fin_sent && c.wire.flush()? {
                    c.wire.sock.shutdown_write()?;
                    c.fin_sent = true;
                }
                loop {
                    match c.wire.read(&mut buf) {
                        Ok(0) => return Ok(c.phase == Phase::Closing),
                        Ok(n) if c.phase == Phase::Exchange => {
                            c.got += n;
                            if c.got == msg.len() {
                                c.phase = Phase::Closing;
                                if c.wire.close_notify()? {
                                    c.wire.sock.shutdown_write()?;
                                    c.fin_sent = true;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            })();
            match result {
                Ok(false) => continue,
                Ok(true) => done += 1,
                Err(_) => errors += 1,
            }
            cs[i] = fresh(&poll, i);
        }
        if clock.tick(Instant::now(), done) {
            let mut m = clock.end.take().expect("measured");
            m.errors = errors;
            return m;
        }
    }
}
