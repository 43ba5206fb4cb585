//! The HTTP request decoder against arbitrary bytes, split three ways.
//!
//! Input layout, as for the frame decoder: byte 0 picks the limits, byte 1
//! the number `k` of piece sizes that follow, then `k` piece sizes (0 = an
//! empty call), then the stream. The stream is fed whole, byte by byte, and
//! in those pieces (cycled), the way a server feeds it: a buffer, appended to
//! as bytes arrive, drained of what each call consumed. All three must give
//! the same requests, the same body bytes and the same error. Along the way:
//! no call consumes more than it was given, body ranges lie inside the
//! input, `NeedMore` really means the rest is not enough (asking again gives
//! nothing), what the caller must keep never passes the head limit, bodies
//! stay within theirs, and errors are sticky and carry a status and a
//! message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::http::{BodyKind, HttpError, Item, Limits, RequestDecoder, RequestHead};

#[derive(Debug, PartialEq)]
enum Ev {
    Head(RequestHead),
    Body(Vec<u8>),
    End,
}

#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Ev>,
    error: Option<HttpError>,
}

/// Feeds `stream` in pieces of the given sizes, checking every call.
fn run(stream: &[u8], limits: Limits, mut sizes: impl FnMut() -> usize) -> Run {
    let mut dec = RequestDecoder::new(limits);
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut body_len: u64 = 0;
    let mut declared = BodyKind::None;
    let mut calls = 0usize;
    loop {
        let size = sizes().min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + size]);
        pos += size;
        loop {
            calls += 1;
            assert!(calls <= 8 * stream.len() + 64, "no progress");
            let (used, item) = match dec.decode(&buf) {
                Ok(ok) => ok,
                Err(err) => {
                    assert_eq!(dec.decode(&buf), Err(err.clone()), "errors are sticky");
                    assert_eq!(dec.decode(&[]), Err(err.clone()));
                    assert!(!dec.is_idle());
                    assert!(matches!(err.status(), 400 | 413 | 431 | 501));
                    assert!(!err.to_string().is_empty());
                    return Run {
                        events,
                        error: Some(err),
                    };
                }
            };
            assert!(used <= buf.len());
            match item {
                Item::NeedMore => {
                    buf.drain(..used);
                    assert_eq!(
                        dec.decode(&buf),
                        Ok((0, Item::NeedMore)),
                        "NeedMore, yet more"
                    );
                    assert!(buf.len() <= limits.head.max(1), "kept {} bytes", buf.len());
                    break;
                }
                Item::Head(head) => {
                    assert!(used >= 1 && used <= limits.head);
                    assert!(head.headers.len() <= limits.headers);
                    if let BodyKind::Length(n) = head.body {
                        assert!(n <= limits.body);
                    }
                    declared = head.body;
                    body_len = 0;
                    events.push(Ev::Head(head));
                }
                Item::Body { start, len } => {
                    assert!(len >= 1 && start + len <= used);
                    body_len += len as u64;
                    assert!(body_len <= limits.body);
                    let bytes = &buf[start..start + len];
                    match events.last_mut() {
                        Some(Ev::Body(body)) => body.extend_from_slice(bytes),
                        _ => events.push(Ev::Body(bytes.to_vec())),
                    }
                }
                Item::End => {
                    assert!(dec.is_idle());
                    match declared {
                        BodyKind::None => assert_eq!(body_len, 0),
                        BodyKind::Length(n) => assert_eq!(body_len, n),
                        BodyKind::Chunked => {}
                    }
                    events.push(Ev::End);
                }
            }
            buf.drain(..used);
        }
        if pos == stream.len() && size == 0 {
            break;
        }
    }
    Run {
        events,
        error: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = usize::from(k % 32).min(rest.len());
    let (table, stream) = rest.split_at(k);
    // Small limits make every refusal reachable; the defaults check the real ones.
    let limits = if pick < 128 {
        Limits {
            head: 16 + usize::from(pick % 64),
            headers: usize::from(pick % 5),
            body: u64::from(pick % 32),
        }
    } else {
        Limits::default()
    };

    let mut whole_done = false;
    let whole = run(stream, limits, || {
        let n = if whole_done { 0 } else { stream.len() };
        whole_done = true;
        n
    });
    let single = run(stream, limits, || 1);
    let mut i = 0;
    let pieces = run(stream, limits, || {
        let n = table
            .get(i % table.len().max(1))
            .map_or(7, |&b| usize::from(b));
        i += 1;
        if i > 4 * stream.len() + 64 {
            stream.len()
        } else {
            n
        }
    });
    assert_eq!(whole, single, "whole vs byte by byte");
    assert_eq!(whole, pieces, "whole vs pieces {table:?}");
});
