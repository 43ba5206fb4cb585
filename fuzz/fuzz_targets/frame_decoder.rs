//! The frame decoder against arbitrary bytes, split three ways.
//!
//! Input layout, so the fuzzer explores limits and split points as well as
//! the stream: byte 0 picks the payload limit, byte 1 the number `k` of
//! chunk sizes that follow, then `k` chunk sizes (0 = an empty call), then the
//! stream. The stream is decoded whole, byte by byte, and in those chunks
//! (cycled); all three must give the same frames and the same error. Every
//! call must make progress, and the decoder's promises (no heap when idle,
//! no more heap than the frame being gathered, sticky errors, re-encoding
//! gives back the bytes) are checked along the way. Each decoded frame also
//! goes through `Order` for both roles, both directions.
//!
//! The checks allocate nothing per byte or per frame (frames are recorded as
//! ranges of the stream, re-encoding reuses one buffer, each distinct error
//! message is formatted once): the byte-by-byte run makes a call per byte,
//! and with allocations or formatting per frame a stream of small frames
//! cost several times what the decoder itself does.
#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use tether_proto::frame::{self, Decoder, FrameError, FrameType, Order, Role, HEADER_LEN};

#[derive(Debug, PartialEq)]
struct Run {
    /// Each frame's type and where its payload lies in the stream.
    frames: Vec<(FrameType, Range<usize>)>,
    error: Option<FrameError>,
}

/// Decodes `stream` cut into pieces of the given sizes (the last piece takes
/// whatever is left), checking every call.
fn run(stream: &[u8], max: usize, again: &mut Vec<u8>, mut sizes: impl FnMut() -> usize) -> Run {
    let mut dec = Decoder::new(max);
    let mut frames = Vec::new();
    let mut pos = 0; // stream bytes consumed
    let mut frame_start = 0; // where the frame in progress began
    loop {
        let size = sizes().min(stream.len() - pos);
        let mut input = &stream[pos..pos + size];
        // Call until no frame, as the documentation recommends.
        loop {
            let before = (dec.is_idle(), dec.buffered(), dec.allocated());
            let result = dec.decode(input);
            let (used, frame) = match result {
                Ok(ok) => ok,
                Err(err) => {
                    assert_eq!(dec.decode(&stream[pos..]), Err(err), "errors are sticky");
                    assert_eq!(dec.decode(&[]), Err(err));
                    assert_eq!(dec.finish(), Err(err));
                    assert!(!dec.is_idle());
                    assert_eq!(dec.allocated(), 0, "an error frees the buffer");
                    return Run {
                        frames,
                        error: Some(err),
                    };
                }
            };
            assert!(used <= input.len());
            if !input.is_empty() {
                assert!(used >= 1, "no progress on {} bytes", input.len());
            }
            pos += used;
            input = &input[used..];
            match frame {
                Some(f) => {
                    assert!(used >= 1, "a frame without consuming its last byte");
                    // The frame is exactly the bytes it came from.
                    again.clear();
                    frame::encode(f.kind, f.payload, again).unwrap();
                    assert_eq!(again[..], stream[frame_start..pos]);
                    frames.push((f.kind, frame_start + HEADER_LEN..pos));
                    assert!(dec.is_idle());
                    assert_eq!(dec.buffered(), 0);
                    frame_start = pos;
                }
                None => {
                    assert!(input.is_empty(), "no frame, yet input left");
                    if used == 0 {
                        // Nothing to consume: only a delivered buffer may go.
                        let after = (dec.is_idle(), dec.buffered(), dec.allocated());
                        let delivered = before.0 && before.2 > 0;
                        if delivered {
                            assert_eq!(after, (true, 0, 0), "a delivered buffer was kept");
                        } else {
                            assert_eq!(before, after, "an empty call changed the decoder");
                        }
                    }
                    let held = pos - frame_start;
                    assert_eq!(dec.buffered(), held);
                    assert_eq!(dec.is_idle(), held == 0);
                    if held < HEADER_LEN + 1 {
                        assert_eq!(dec.allocated(), 0, "heap held with no payload");
                    } else {
                        let head = &stream[frame_start..frame_start + 4];
                        let len = u32::from_be_bytes(head.try_into().unwrap()) as usize - 1;
                        assert!(len <= max);
                        assert!(dec.allocated() <= len, "more heap than the frame");
                    }
                    break;
                }
            }
        }
        if pos == stream.len() && size == 0 {
            break;
        }
        if pos == stream.len() {
            // One more empty call releases a delivered buffer.
            continue;
        }
    }
    if dec.is_idle() {
        assert_eq!(dec.allocated(), 0, "heap held at a frame boundary");
    }
    match dec.finish() {
        Ok(()) => assert_eq!(frame_start, stream.len()),
        Err(FrameError::Truncated { buffered }) => assert_eq!(buffered, pos - frame_start),
        Err(other) => panic!("finish: {other}"),
    }
    Run {
        frames,
        error: None,
    }
}

/// Feeds `kinds` to a fresh `Order` through `check_fn`; a refused frame must
/// leave the machine unchanged and have a message (checked once per distinct
/// error: a refused frame changes nothing, so the same ones repeat).
fn order(
    role: Role,
    kinds: &[FrameType],
    check_fn: fn(&mut Order, FrameType) -> Result<(), FrameError>,
) {
    let mut order = Order::new(role);
    let mut seen: Vec<FrameError> = Vec::new();
    for &kind in kinds {
        let before = order.clone();
        if let Err(err) = check_fn(&mut order, kind) {
            assert_eq!(order, before, "a refused {kind:?} changed the machine");
            if !seen.contains(&err) {
                assert!(!err.to_string().is_empty());
                seen.push(err);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = usize::from(k % 32).min(rest.len());
    let (table, stream) = rest.split_at(k);
    // Small limits make TooLong reachable; the default checks the real one.
    let max = if limit < 128 {
        usize::from(limit % 64)
    } else {
        frame::DEFAULT_MAX_PAYLOAD
    };

    let mut again = Vec::new();
    let mut whole_done = false;
    let whole = run(stream, max, &mut again, || {
        let n = if whole_done { 0 } else { stream.len() };
        whole_done = true;
        n
    });
    let single = run(stream, max, &mut again, || 1);
    let mut i = 0;
    let chunked = run(stream, max, &mut again, || {
        let n = table
            .get(i % table.len().max(1))
            .map_or(7, |&b| usize::from(b));
        i += 1;
        // Avoid an endless run of empty calls if the table is all zeros.
        if i > 4 * stream.len() + 64 {
            stream.len()
        } else {
            n
        }
    });
    assert_eq!(whole, single, "whole vs byte by byte");
    assert_eq!(whole, chunked, "whole vs chunks {table:?}");

    let kinds: Vec<FrameType> = whole.frames.iter().map(|f| f.0).collect();
    for role in [Role::Client, Role::Server] {
        order(role, &kinds, Order::check);
        order(role, &kinds, Order::check_send);
    }
});
