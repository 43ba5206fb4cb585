//! The framed wire format (`tether_proto::frame`): encoding checked byte for byte
//! against the specification, decoding under every split of the input, the
//! zero-copy and no-idle-heap promises, every protocol error with its message,
//! and the frame order for both roles, every state against every frame type.
//!
//! "Without allocating" is measured, not inferred: a counting global allocator
//! counts this thread's allocations (the same one as `tether`'s no_alloc test).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tether_proto::frame::{
    self, Decoder, Frame, FrameError, FrameType, Order, Role, DEFAULT_MAX_PAYLOAD, HEADER_LEN,
    WIRE_MAX_PAYLOAD,
};

use FrameType::{Data, Farewell, Hello, Reject, Welcome};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// thread-local counter is const-initialised, so touching it never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, the system's) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|n| n.set(n.get() + 1));
        // SAFETY: `ptr` came from the system allocator with `layout`; the
        // caller's contract for `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations (and reallocations) made by this thread while `f` runs.
fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCS.with(|n| n.get());
    let r = f();
    (r, ALLOCS.with(|n| n.get()) - before)
}

const ALL: [FrameType; 5] = [Hello, Welcome, Reject, Data, Farewell];

fn encoded(frames: &[(FrameType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(kind, payload) in frames {
        frame::encode(kind, payload, &mut out).unwrap();
    }
    out
}

/// Decodes `input` in one piece with the recommended loop (call until no
/// frame), returning owned frames.
fn decode_all(
    dec: &mut Decoder,
    mut input: &[u8],
) -> Result<Vec<(FrameType, Vec<u8>)>, FrameError> {
    let mut out = Vec::new();
    loop {
        let before = input.len();
        let (used, frame) = dec.decode(input)?;
        assert!(used <= before);
        input = &input[used..];
        match frame {
            Some(f) => out.push((f.kind, f.payload.to_vec())),
            None => {
                assert!(input.is_empty(), "no frame, yet {} bytes left", input.len());
                return Ok(out);
            }
        }
    }
}

/// True if `inner` lies within `outer` (by address): a borrowed, not copied, slice.
fn lies_in(inner: &[u8], outer: &[u8]) -> bool {
    let outer = outer.as_ptr_range();
    let inner = inner.as_ptr_range();
    outer.start <= inner.start && inner.end <= outer.end
}

fn owned(frames: &[(FrameType, &[u8])]) -> Vec<(FrameType, Vec<u8>)> {
    frames.iter().map(|&(k, p)| (k, p.to_vec())).collect()
}

mod encoding {
    use super::*;

    #[test]
    fn bytes_match_the_specification() {
        let cases: [(FrameType, &[u8], &[u8]); 6] = [
            (Hello, b"hi", &[0, 0, 0, 3, 0x01, 0x68, 0x69]),
            (Hello, b"", &[0, 0, 0, 1, 0x01]),
            (Welcome, b"", &[0, 0, 0, 1, 0x02]),
            (Reject, b"full", &[0, 0, 0, 5, 0x03, b'f', b'u', b'l', b'l']),
            (Data, &[0xff], &[0, 0, 0, 2, 0x04, 0xff]),
            (Farewell, b"42", &[0, 0, 0, 3, 0x05, b'4', b'2']),
        ];
        for (kind, payload, wire) in cases {
            let mut out = Vec::new();
            frame::encode(kind, payload, &mut out).unwrap();
            assert_eq!(out, wire, "{kind:?} {payload:?}");
            assert_eq!(
                frame::header(kind, payload.len()).unwrap(),
                wire[..HEADER_LEN]
            );
        }
    }

    #[test]
    fn length_is_big_endian_and_counts_the_type_byte() {
        let payload = vec![7u8; 0x01_02_03];
        let mut out = Vec::new();
        frame::encode(Data, &payload, &mut out).unwrap();
        assert_eq!(out[..HEADER_LEN], [0x00, 0x01, 0x02, 0x04, 0x04]);
        assert_eq!(out.len(), HEADER_LEN + payload.len());
        assert_eq!(out[HEADER_LEN..], payload[..]);
    }

    #[test]
    fn encode_appends() {
        let mut out = b"prefix".to_vec();
        frame::encode(Data, b"abc", &mut out).unwrap();
        assert_eq!(out, b"prefix\x00\x00\x00\x04\x04abc");
    }

    #[test]
    fn header_at_the_format_limit() {
        assert_eq!(WIRE_MAX_PAYLOAD, u32::MAX as usize - 1);
        assert_eq!(
            frame::header(Data, WIRE_MAX_PAYLOAD).unwrap(),
            [0xff, 0xff, 0xff, 0xff, 0x04]
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn header_refuses_what_a_u32_cannot_announce() {
        for len in [WIRE_MAX_PAYLOAD + 1, u32::MAX as usize, usize::MAX] {
            let err = frame::header(Data, len).unwrap_err();
            assert_eq!(
                err,
                FrameError::TooLong {
                    len: len as u64,
                    max: WIRE_MAX_PAYLOAD
                }
            );
        }
        assert_eq!(
            frame::header(Hello, WIRE_MAX_PAYLOAD + 1)
                .unwrap_err()
                .to_string(),
            "frame payload of 4294967295 bytes cannot be framed: the u32 length, which also \
             counts the type byte, allows at most 4294967294"
        );
    }

    #[test]
    fn frame_types() {
        for (i, kind) in ALL.into_iter().enumerate() {
            let byte = i as u8 + 1;
            assert_eq!(u8::from(kind), byte);
            assert_eq!(FrameType::try_from(byte), Ok(kind));
        }
        for byte in [0u8, 6, 0x7f, 0xff] {
            assert_eq!(
                FrameType::try_from(byte),
                Err(FrameError::UnknownType(byte))
            );
        }
        let names: Vec<_> = ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, ["hello", "welcome", "reject", "data", "farewell"]);
        let wire: Vec<_> = ALL.iter().map(|k| k.wire_name()).collect();
        assert_eq!(wire, ["HELLO", "WELCOME", "REJECT", "DATA", "FAREWELL"]);
        assert_eq!(Farewell.to_string(), "farewell");
    }

    #[test]
    fn constants() {
        assert_eq!(HEADER_LEN, 5);
        assert_eq!(DEFAULT_MAX_PAYLOAD, 16 * 1024 * 1024);
        assert_eq!(Decoder::default().max_payload(), DEFAULT_MAX_PAYLOAD);
        assert_eq!(Decoder::new(10).max_payload(), 10);
    }
}

mod decoding {
    use super::*;

    #[test]
    fn round_trip_every_type_with_and_without_payload() {
        for kind in ALL {
            for payload in [&b""[..], b"x", b"connect data", &[0u8; 1000]] {
                let wire = encoded(&[(kind, payload)]);
                let mut dec = Decoder::default();
                let (used, frame) = dec.decode(&wire).unwrap();
                assert_eq!(used, wire.len());
                assert_eq!(frame, Some(Frame { kind, payload }));
                assert!(dec.is_idle());
                assert_eq!(dec.buffered(), 0);
                assert_eq!(dec.allocated(), 0);
                assert_eq!(dec.decode(&[]).unwrap(), (0, None));
            }
        }
    }

    #[test]
    fn many_frames_in_one_input_are_all_borrowed() {
        let frames: [(FrameType, &[u8]); 5] = [
            (Hello, b"h"),
            (Data, b""),
            (Data, b"second"),
            (Farewell, b""),
            (Welcome, b"w"),
        ];
        let wire = encoded(&frames);
        let mut dec = Decoder::default();
        let mut input = &wire[..];
        let mut got = Vec::new();
        while !input.is_empty() {
            let (used, frame) = dec.decode(input).unwrap();
            let frame = frame.expect("every call on whole frames returns one");
            assert!(lies_in(frame.payload, &wire), "{frame:?} was copied");
            got.push((frame.kind, frame.payload.to_vec()));
            input = &input[used..];
            assert_eq!(dec.allocated(), 0);
        }
        assert_eq!(got, owned(&frames));
    }

    #[test]
    fn byte_by_byte() {
        let frames: Vec<(FrameType, &[u8])> = ALL
            .iter()
            .flat_map(|&k| [(k, &b""[..]), (k, &b"payload"[..])])
            .collect();
        let wire = encoded(&frames);
        let mut dec = Decoder::default();
        let mut got = Vec::new();
        let mut in_frame = 0;
        for byte in wire.chunks(1) {
            let (used, frame) = dec.decode(byte).unwrap();
            assert_eq!(used, 1, "every byte is consumed at once");
            in_frame += 1;
            match frame {
                Some(f) => {
                    got.push((f.kind, f.payload.to_vec()));
                    assert!(dec.is_idle());
                    assert_eq!(dec.buffered(), 0);
                    in_frame = 0;
                }
                None => {
                    assert!(!dec.is_idle());
                    assert_eq!(dec.buffered(), in_frame);
                }
            }
        }
        assert_eq!(got, owned(&frames));
        assert_eq!(dec.decode(&[]).unwrap(), (0, None));
        assert_eq!(dec.allocated(), 0);
    }

    /// Gathering a payload that arrives a byte or a few at a time copies it a
    /// bounded number of times: the buffer at least doubles on each growth, so
    /// the reallocations are logarithmic in the payload and the bytes they
    /// move add up to less than twice the payload. Growing by what arrived
    /// would make a 1 MiB frame fed byte by byte cost a million reallocations
    /// and ~500 GB of copying (quadratic), which this counts without timing.
    #[test]
    fn gathering_byte_by_byte_is_linear() {
        let len = 1 << 20;
        let payload = vec![5u8; len];
        let wire = encoded(&[(Data, &payload), (Data, b"after")]);
        for step in [1, 3, 7, 4096] {
            let mut dec = Decoder::default();
            let (mut growths, mut moved, mut last_cap) = (0u32, 0usize, 0usize);
            let mut pos = 0;
            let ((), allocs) = allocations_during(|| {
                while dec.buffered() < HEADER_LEN + len - step.min(len) {
                    let chunk = &wire[pos..pos + step];
                    let (used, frame) = dec.decode(chunk).unwrap();
                    assert_eq!((used, frame), (step, None));
                    pos += step;
                    let cap = dec.allocated();
                    if cap != last_cap {
                        // A growth copies what was held before it.
                        assert!(cap >= 2 * last_cap || cap == len, "{last_cap} -> {cap}");
                        growths += 1;
                        moved += dec.buffered() - HEADER_LEN;
                        last_cap = cap;
                    }
                }
            });
            assert!(growths <= 22, "{growths} growths in steps of {step}");
            assert!(allocs <= 22, "{allocs} allocations in steps of {step}");
            assert!(
                moved < 2 * len + 2 * step,
                "{moved} bytes moved in steps of {step}"
            );
            let rest = &wire[pos..];
            let (used, frame) = dec.decode(rest).unwrap();
            assert_eq!(frame.unwrap().payload, &payload[..]);
            let (_, after) = dec.decode(&rest[used..]).unwrap();
            assert_eq!(after.unwrap().payload, b"after");
        }
    }
    #[test]
    fn every_split_point_of_a_frame_pair() {
        let frames: [(FrameType, &[u8]); 3] =
            [(Hello, b""), (Data, b"split me anywhere"), (Farewell, b"")];
        let wire = encoded(&frames);
        for cut in 0..=wire.len() {
            for cut2 in cut..=wire.len() {
                let mut dec = Decoder::default();
                let mut got = decode_all(&mut dec, &wire[..cut]).unwrap();
                got.extend(decode_all(&mut dec, &wire[cut..cut2]).unwrap());
                got.extend(decode_all(&mut dec, &wire[cut2..]).unwrap());
                assert_eq!(got, owned(&frames), "cut at {cut} and {cut2}");
                assert!(dec.is_idle());
                assert_eq!(dec.allocated(), 0);
                assert_eq!(dec.finish(), Ok(()));
            }
        }
    }

    #[test]
    fn a_split_payload_is_gathered_then_freed() {
        let payload = [9u8; 100];
        let wire = encoded(&[(Data, &payload)]);
        let mut dec = Decoder::default();

        let (used, frame) = dec.decode(&wire[..40]).unwrap();
        assert_eq!((used, frame), (40, None));
        assert_eq!(dec.buffered(), 40);
        assert!(!dec.is_idle());
        assert!(dec.allocated() >= 35 && dec.allocated() <= 100);

        let second = &wire[40..];
        let (used, frame) = dec.decode(second).unwrap();
        assert_eq!(used, second.len());
        let frame = frame.unwrap();
        assert_eq!(frame.payload, payload);
        assert!(
            !lies_in(frame.payload, second),
            "gathered, so not in the input"
        );
        assert!(dec.is_idle());
        assert_eq!(dec.buffered(), 0);

        // The call that finds the input used up releases the buffer.
        assert_eq!(dec.decode(&[]).unwrap(), (0, None));
        assert!(dec.is_idle());
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn whole_frames_and_split_headers_allocate_nothing() {
        let frames: [(FrameType, &[u8]); 4] = [
            (Hello, b""),
            (Data, b"message"),
            (Data, &[5; 300]),
            (Farewell, b"bye"),
        ];
        let wire = encoded(&frames);
        let mut dec = Decoder::default();
        let (count, allocs) = allocations_during(|| {
            let mut count = 0;
            // Whole frames, then the same frames with every header cut in two.
            let mut input = &wire[..];
            while let (used, Some(_)) = dec.decode(input).unwrap() {
                input = &input[used..];
                count += 1;
            }
            let mut input = &wire[..];
            while !input.is_empty() {
                let (used, frame) = dec.decode(&input[..2]).unwrap();
                assert_eq!((used, frame), (2, None));
                input = &input[used..];
                let (used, frame) = dec.decode(input).unwrap();
                assert!(frame.is_some());
                input = &input[used..];
                count += 1;
            }
            count
        });
        assert_eq!(count, 8);
        assert_eq!(allocs, 0);
    }

    #[test]
    fn only_the_header_split_costs_no_heap() {
        let wire = encoded(&[(Data, b"whole payload")]);
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&wire[..3]).unwrap(), (3, None));
        assert_eq!(dec.buffered(), 3);
        assert_eq!(dec.allocated(), 0);
        let rest = &wire[3..];
        let (used, frame) = dec.decode(rest).unwrap();
        assert_eq!(used, rest.len());
        let frame = frame.unwrap();
        assert!(
            lies_in(frame.payload, rest),
            "payload whole in the input is borrowed"
        );
        assert_eq!(dec.allocated(), 0);

        // A header that ends exactly at the end of the input: nothing held but it.
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&wire[..HEADER_LEN]).unwrap(), (HEADER_LEN, None));
        assert_eq!(dec.buffered(), HEADER_LEN);
        assert_eq!(dec.allocated(), 0);
        let rest = &wire[HEADER_LEN..];
        let frame = dec.decode(rest).unwrap().1.unwrap();
        assert!(lies_in(frame.payload, rest));
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn the_next_frame_after_a_gathered_one() {
        // A gathered frame followed in the same input by a whole one: the
        // whole one is borrowed, and the buffer is freed by that call.
        let wire = encoded(&[(Data, b"first frame"), (Data, b"second")]);
        let mut dec = Decoder::default();
        dec.decode(&wire[..8]).unwrap();
        let rest = &wire[8..];
        let (used, frame) = dec.decode(rest).unwrap();
        assert_eq!(frame.unwrap().payload, b"first frame");
        let rest = &rest[used..];
        let (used, frame) = dec.decode(rest).unwrap();
        assert_eq!(used, rest.len());
        let frame = frame.unwrap();
        assert!(lies_in(frame.payload, rest));
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn a_header_alone_after_a_gathered_frame_holds_no_heap() {
        // Found by the fuzzer: the buffer of a gathered frame was kept for the
        // next frame even when only that frame's header had arrived.
        let wire = encoded(&[(Data, &[1; 60]), (Data, &[2; 60])]);
        let mut dec = Decoder::default();
        dec.decode(&wire[..30]).unwrap();
        let rest = &wire[30..65 + HEADER_LEN];
        let (used, frame) = dec.decode(rest).unwrap();
        assert_eq!(frame.unwrap().payload, [1; 60]);
        assert_eq!(dec.decode(&rest[used..]).unwrap(), (HEADER_LEN, None));
        assert_eq!(dec.buffered(), HEADER_LEN);
        assert_eq!(dec.allocated(), 0);
        let frame = dec.decode(&wire[65 + HEADER_LEN..]).unwrap().1.unwrap();
        assert_eq!(frame.payload, [2; 60]);
    }

    #[test]
    fn a_buffer_is_reused_but_never_bigger_than_the_frame() {
        let big = vec![1u8; 1000];
        let small = vec![2u8; 10];
        let wire = encoded(&[(Data, &big), (Data, &small), (Data, &big)]);
        let mut dec = Decoder::default();
        let mut input = &wire[..];
        let mut got = Vec::new();
        // Chunks of 7 bytes: every payload is split.
        while !input.is_empty() {
            let chunk = &input[..input.len().min(7)];
            let mut rest = chunk;
            loop {
                let (used, frame) = dec.decode(rest).unwrap();
                rest = &rest[used..];
                match frame {
                    Some(f) => got.push(f.payload.len()),
                    None => break,
                }
            }
            let pending = dec.buffered().saturating_sub(HEADER_LEN);
            let expected = if got.len() == 1 { 10 } else { 1000 };
            assert!(
                dec.allocated() <= expected,
                "{} heap bytes for a {expected}-byte payload ({pending} arrived)",
                dec.allocated()
            );
            input = &input[chunk.len()..];
        }
        assert_eq!(got, [1000, 10, 1000]);
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn a_stalled_big_frame_holds_only_what_arrived() {
        let mut dec = Decoder::default();
        let head = frame::header(Data, DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(dec.decode(&head).unwrap(), (HEADER_LEN, None));
        assert_eq!(dec.allocated(), 0);
        assert_eq!(dec.decode(&[0; 100]).unwrap(), (100, None));
        assert!(dec.allocated() < 1024, "{} bytes held", dec.allocated());
        assert_eq!(dec.buffered(), HEADER_LEN + 100);
    }

    #[test]
    fn a_payload_of_exactly_the_limit_passes() {
        let mut dec = Decoder::new(10);
        let wire = encoded(&[(Data, &[3; 10]), (Hello, b"")]);
        let got = decode_all(&mut dec, &wire).unwrap();
        assert_eq!(got, [(Data, vec![3; 10]), (Hello, vec![])]);

        // A limit of 0 admits empty frames only.
        let mut dec = Decoder::new(0);
        let wire = encoded(&[(Hello, b""), (Welcome, b""), (Farewell, b"")]);
        assert_eq!(decode_all(&mut dec, &wire).unwrap().len(), 3);
    }

    #[test]
    fn empty_input_never_changes_anything() {
        let wire = encoded(&[(Data, b"abcdef")]);
        for cut in 0..wire.len() {
            let mut dec = Decoder::default();
            dec.decode(&wire[..cut]).unwrap();
            let before = format!("{dec:?}");
            assert_eq!(dec.decode(&[]).unwrap(), (0, None));
            assert_eq!(format!("{dec:?}"), before, "cut {cut}");
            let frame = dec.decode(&wire[cut..]).unwrap().1.unwrap();
            assert_eq!(frame.payload, b"abcdef");
        }
    }

    #[test]
    fn debug_summarises_the_buffer() {
        let mut dec = Decoder::default();
        let wire = encoded(&[(Data, &[b'z'; 64])]);
        dec.decode(&wire[..50]).unwrap();
        let shown = format!("{dec:?}");
        assert!(shown.contains("buf_len: 45"), "{shown}");
        assert!(!shown.contains("122"), "payload bytes printed: {shown}");
    }
}

mod errors {
    use super::*;

    /// Feeds `wire` byte by byte, expecting every byte before the last to be
    /// accepted with nothing allocated and the last to fail with `err`.
    #[track_caller]
    fn rejected_at_last_byte(dec: &mut Decoder, wire: &[u8], err: FrameError, message: &str) {
        let (last, head) = wire.split_last().unwrap();
        for byte in head.chunks(1) {
            assert_eq!(dec.decode(byte).unwrap(), (1, None));
            assert_eq!(dec.allocated(), 0);
        }
        assert_eq!(dec.decode(&[*last]), Err(err));
        assert_eq!(err.to_string(), message);
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn zero_length() {
        let mut dec = Decoder::default();
        rejected_at_last_byte(
            &mut dec,
            &[0, 0, 0, 0, 4],
            FrameError::ZeroLength,
            "frame length 0: a frame has at least its type byte",
        );
        // Also when the type byte would be invalid: the length is judged first.
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&[0, 0, 0, 0, 0xee]), Err(FrameError::ZeroLength));
    }

    #[test]
    fn length_u32_max_is_rejected_after_five_bytes_without_allocating() {
        let mut dec = Decoder::default();
        let err = FrameError::TooLong {
            len: u64::from(u32::MAX) - 1,
            max: DEFAULT_MAX_PAYLOAD,
        };
        rejected_at_last_byte(
            &mut dec,
            &[0xff, 0xff, 0xff, 0xff, 4],
            err,
            "frame payload of 4294967294 bytes is over the limit of 16777216 bytes",
        );
        // Counted apart from the message, whose formatting allocates.
        let mut dec = Decoder::default();
        let (result, allocs) = allocations_during(|| {
            for byte in [0xff, 0xff, 0xff, 0xff] {
                assert_eq!(dec.decode(&[byte]), Ok((1, None)));
            }
            dec.decode(&[4])
        });
        assert_eq!(result, Err(err));
        assert_eq!(allocs, 0, "heap allocations while rejecting the header");
        // In one piece, with payload bytes behind it: the same, at once.
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&[0xff, 0xff, 0xff, 0xff, 4, 1, 2, 3]), Err(err));
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn one_byte_over_the_limit() {
        let mut dec = Decoder::new(10);
        let wire = encoded(&[(Data, &[0; 11])]);
        let err = FrameError::TooLong { len: 11, max: 10 };
        rejected_at_last_byte(
            &mut dec,
            &wire[..HEADER_LEN],
            err,
            "frame payload of 11 bytes is over the limit of 10 bytes",
        );
    }

    #[test]
    fn unknown_types() {
        for byte in [0u8, 6, 0x80, 0xff] {
            let mut dec = Decoder::default();
            rejected_at_last_byte(
                &mut dec,
                &[0, 0, 0, 1, byte],
                FrameError::UnknownType(byte),
                &format!(
                    "unknown frame type 0x{byte:02x}: the types are 0x01 HELLO to 0x05 FAREWELL"
                ),
            );
        }
        // The type is judged before the limit: a wrong protocol shows as such.
        let mut dec = Decoder::new(0);
        assert_eq!(
            dec.decode(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::UnknownType(b'/'))
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = Decoder::default();
        let bad = [0, 0, 0, 1, 9];
        assert_eq!(dec.decode(&bad), Err(FrameError::UnknownType(9)));
        let good = encoded(&[(Data, b"ok")]);
        assert_eq!(dec.decode(&good), Err(FrameError::UnknownType(9)));
        assert_eq!(dec.decode(&[]), Err(FrameError::UnknownType(9)));
        assert_eq!(dec.finish(), Err(FrameError::UnknownType(9)));
        assert!(!dec.is_idle());
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn an_error_mid_stream_frees_the_gathered_payload() {
        let mut wire = encoded(&[(Data, &[1; 50])]);
        wire.extend_from_slice(&[0, 0, 0, 0, 4]);
        let mut dec = Decoder::default();
        dec.decode(&wire[..20]).unwrap();
        assert!(dec.allocated() > 0);
        let rest = &wire[20..];
        let (used, frame) = dec.decode(rest).unwrap();
        assert_eq!(frame.unwrap().payload, [1; 50]);
        assert_eq!(dec.decode(&rest[used..]), Err(FrameError::ZeroLength));
        assert_eq!(dec.allocated(), 0);
    }

    #[test]
    fn the_stream_may_end_only_between_frames() {
        let wire = encoded(&[(Data, b"abc")]);
        let mut dec = Decoder::default();
        assert_eq!(dec.finish(), Ok(()));
        for cut in 1..wire.len() {
            let mut dec = Decoder::default();
            dec.decode(&wire[..cut]).unwrap();
            assert_eq!(dec.finish(), Err(FrameError::Truncated { buffered: cut }));
        }
        dec.decode(&wire).unwrap();
        assert_eq!(dec.finish(), Ok(()));
        assert_eq!(
            FrameError::Truncated { buffered: 7 }.to_string(),
            "the stream ended 7 bytes into a frame: a stream may end only between frames"
        );
    }

    #[test]
    fn errors_are_std_errors() {
        fn takes(_: &dyn std::error::Error) {}
        takes(&FrameError::ZeroLength);
    }
}

mod order {
    use super::*;

    /// Every socket's lifecycle carries an `Option<Order>`: one byte, and the
    /// role and both steps survive the packing.
    #[test]
    fn an_order_is_one_byte_and_keeps_its_role_and_steps() {
        assert_eq!(std::mem::size_of::<Option<Order>>(), 1);
        for role in [Role::Client, Role::Server] {
            let mut o = Order::new(role);
            assert_eq!(o.role(), role);
            let (first, answer) = match role {
                Role::Client => (Hello, Welcome),
                Role::Server => (Welcome, Hello),
            };
            if role == Role::Server {
                o.check(answer).unwrap();
                o.check_send(first).unwrap();
            } else {
                o.check_send(first).unwrap();
                o.check(answer).unwrap();
            }
            o.check_send(Farewell).unwrap();
            assert_eq!(o.role(), role);
            assert!(matches!(
                o.check_send(Data),
                Err(FrameError::AfterFarewell(Data))
            ));
            o.check(Farewell).unwrap();
            assert!(matches!(
                o.check(Data),
                Err(FrameError::AfterFarewell(Data))
            ));
            let debug = format!("{o:?}");
            assert!(
                debug.contains("Farewell") && debug.contains(&format!("{role:?}")),
                "{debug}"
            );
        }
    }

    enum Ev {
        Recv(FrameType),
        Send(FrameType),
    }
    use Ev::{Recv, Send};

    fn after(role: Role, history: &[Ev]) -> Order {
        let mut order = Order::new(role);
        for ev in history {
            match *ev {
                Recv(k) => order.check(k),
                Send(k) => order.check_send(k),
            }
            .unwrap_or_else(|e| panic!("history of {role:?} is legal: {e}"));
        }
        order
    }

    /// `Ok` or the exact message.
    type Want = Result<(), &'static str>;

    /// Checks `kind` against `order` with `check_fn`: the result and message
    /// must match, and a refused frame must leave the machine unchanged.
    #[track_caller]
    fn expect(
        order: &Order,
        kind: FrameType,
        want: Want,
        check_fn: fn(&mut Order, FrameType) -> Result<(), FrameError>,
    ) {
        let mut o = *order;
        let got = check_fn(&mut o, kind);
        match (got, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(msg)) => {
                assert_eq!(e.to_string(), msg, "{kind:?} after {order:?}");
                assert_eq!(&o, order, "a refused {kind:?} changed the machine");
            }
            (got, want) => panic!("{kind:?} after {order:?}: got {got:?}, want {want:?}"),
        }
    }

    const OK: Want = Ok(());

    const SERVER_SENT_HELLO: &str = "HELLO sent by a server: only a client sends HELLO";
    const CLIENT_SENT_WELCOME: &str = "WELCOME sent by a client: only a server sends WELCOME";
    const CLIENT_SENT_REJECT: &str = "REJECT sent by a client: only a server sends REJECT";

    /// Every state of the client's stream, as the server receives it.
    #[test]
    fn server_receiving() {
        use Role::Server;
        let table: [(&[Ev], [Want; 5]); 4] = [
            (
                &[],
                [
                    OK,
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err("DATA before HELLO: a client's first frame must be HELLO"),
                    Err("FAREWELL before HELLO: a client's first frame must be HELLO"),
                ],
            ),
            (
                &[Recv(Hello)],
                [
                    Err("HELLO after HELLO: a client sends HELLO once, as its first frame"),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    OK,
                    OK,
                ],
            ),
            (
                &[Recv(Hello), Recv(Data), Recv(Data)],
                [
                    Err("HELLO after HELLO: a client sends HELLO once, as its first frame"),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    OK,
                    OK,
                ],
            ),
            (
                &[Recv(Hello), Recv(Farewell)],
                [
                    Err("HELLO after FAREWELL: its sender must send nothing more"),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err("DATA after FAREWELL: its sender must send nothing more"),
                    Err("FAREWELL after FAREWELL: its sender must send nothing more"),
                ],
            ),
        ];
        for (history, wants) in table {
            let order = after(Server, history);
            for (kind, want) in ALL.into_iter().zip(wants) {
                expect(&order, kind, want, Order::check);
            }
        }
    }

    /// Every state of the server's stream, as the client receives it.
    #[test]
    fn client_receiving() {
        use Role::Client;
        let answer_again = |k: &str| -> &'static str {
            match k {
                "WELCOME" => {
                    "WELCOME after WELCOME: a server admits or rejects once, with its first frame"
                }
                _ => "REJECT after WELCOME: a server admits or rejects once, with its first frame",
            }
        };
        let open = [
            Err(SERVER_SENT_HELLO),
            Err(answer_again("WELCOME")),
            Err(answer_again("REJECT")),
            OK,
            OK,
        ];
        let table: [(&[Ev], [Want; 5]); 5] = [
            (
                &[],
                [
                    Err(SERVER_SENT_HELLO),
                    OK,
                    OK,
                    Err("DATA before WELCOME: a server's first frame must be WELCOME or REJECT"),
                    Err(
                        "FAREWELL before WELCOME: a server's first frame must be WELCOME or \
                         REJECT",
                    ),
                ],
            ),
            (&[Recv(Welcome)], open),
            (&[Recv(Welcome), Recv(Data), Recv(Data)], open),
            (
                &[Recv(Welcome), Recv(Farewell)],
                [
                    Err(SERVER_SENT_HELLO),
                    Err("WELCOME after FAREWELL: its sender must send nothing more"),
                    Err("REJECT after FAREWELL: its sender must send nothing more"),
                    Err("DATA after FAREWELL: its sender must send nothing more"),
                    Err("FAREWELL after FAREWELL: its sender must send nothing more"),
                ],
            ),
            (
                &[Recv(Reject)],
                [
                    Err(SERVER_SENT_HELLO),
                    Err("WELCOME after REJECT: a REJECT ends the connection"),
                    Err("REJECT after REJECT: a REJECT ends the connection"),
                    Err("DATA after REJECT: a REJECT ends the connection"),
                    Err("FAREWELL after REJECT: a REJECT ends the connection"),
                ],
            ),
        ];
        for (history, wants) in table {
            let order = after(Client, history);
            for (kind, want) in ALL.into_iter().zip(wants) {
                expect(&order, kind, want, Order::check);
            }
        }
    }

    #[test]
    fn client_sending() {
        use Role::Client;
        const HELD: [&str; 2] = [
            "DATA before WELCOME: a client sends nothing after HELLO until the server admits it",
            "FAREWELL before WELCOME: a client sends nothing after HELLO until the server \
             admits it",
        ];
        const HELLO_AGAIN: &str =
            "HELLO after HELLO: a client sends HELLO once, as its first frame";
        let table: [(&[Ev], [Want; 5]); 6] = [
            (
                &[],
                [
                    OK,
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err("DATA before HELLO: a client's first frame must be HELLO"),
                    Err("FAREWELL before HELLO: a client's first frame must be HELLO"),
                ],
            ),
            (
                &[Send(Hello)],
                [
                    Err(HELLO_AGAIN),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err(HELD[0]),
                    Err(HELD[1]),
                ],
            ),
            (
                &[Send(Hello), Recv(Welcome), Send(Data)],
                [
                    Err(HELLO_AGAIN),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    OK,
                    OK,
                ],
            ),
            // The server's FAREWELL ends its side only: we may still send.
            (
                &[Send(Hello), Recv(Welcome), Recv(Farewell)],
                [
                    Err(HELLO_AGAIN),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    OK,
                    OK,
                ],
            ),
            (
                &[Send(Hello), Recv(Welcome), Send(Farewell)],
                [
                    Err("HELLO after FAREWELL: its sender must send nothing more"),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err("DATA after FAREWELL: its sender must send nothing more"),
                    Err("FAREWELL after FAREWELL: its sender must send nothing more"),
                ],
            ),
            (
                &[Send(Hello), Recv(Reject)],
                [
                    Err(HELLO_AGAIN),
                    Err(CLIENT_SENT_WELCOME),
                    Err(CLIENT_SENT_REJECT),
                    Err("DATA after REJECT: a REJECT ends the connection"),
                    Err("FAREWELL after REJECT: a REJECT ends the connection"),
                ],
            ),
        ];
        for (history, wants) in table {
            let order = after(Client, history);
            for (kind, want) in ALL.into_iter().zip(wants) {
                expect(&order, kind, want, Order::check_send);
            }
        }
    }

    #[test]
    fn server_sending() {
        use Role::Server;
        const FIRST: [&str; 2] = [
            "DATA before WELCOME: a server's first frame must be WELCOME or REJECT",
            "FAREWELL before WELCOME: a server's first frame must be WELCOME or REJECT",
        ];
        let table: [(&[Ev], [Want; 5]); 6] = [
            (
                &[],
                [
                    Err(SERVER_SENT_HELLO),
                    Err("WELCOME before HELLO: a server answers only after the client's HELLO"),
                    Err("REJECT before HELLO: a server answers only after the client's HELLO"),
                    Err(FIRST[0]),
                    Err(FIRST[1]),
                ],
            ),
            (
                &[Recv(Hello)],
                [Err(SERVER_SENT_HELLO), OK, OK, Err(FIRST[0]), Err(FIRST[1])],
            ),
            // The client's FAREWELL ends its side only: we may still answer.
            (
                &[Recv(Hello), Recv(Farewell)],
                [Err(SERVER_SENT_HELLO), OK, OK, Err(FIRST[0]), Err(FIRST[1])],
            ),
            (
                &[Recv(Hello), Send(Welcome), Send(Data)],
                [
                    Err(SERVER_SENT_HELLO),
                    Err(
                        "WELCOME after WELCOME: a server admits or rejects once, with its \
                         first frame",
                    ),
                    Err(
                        "REJECT after WELCOME: a server admits or rejects once, with its \
                         first frame",
                    ),
                    OK,
                    OK,
                ],
            ),
            (
                &[Recv(Hello), Send(Welcome), Send(Farewell)],
                [
                    Err(SERVER_SENT_HELLO),
                    Err("WELCOME after FAREWELL: its sender must send nothing more"),
                    Err("REJECT after FAREWELL: its sender must send nothing more"),
                    Err("DATA after FAREWELL: its sender must send nothing more"),
                    Err("FAREWELL after FAREWELL: its sender must send nothing more"),
                ],
            ),
            (
                &[Recv(Hello), Send(Reject)],
                [
                    Err(SERVER_SENT_HELLO),
                    Err("WELCOME after REJECT: a REJECT ends the connection"),
                    Err("REJECT after REJECT: a REJECT ends the connection"),
                    Err("DATA after REJECT: a REJECT ends the connection"),
                    Err("FAREWELL after REJECT: a REJECT ends the connection"),
                ],
            ),
        ];
        for (history, wants) in table {
            let order = after(Server, history);
            for (kind, want) in ALL.into_iter().zip(wants) {
                expect(&order, kind, want, Order::check_send);
            }
        }
    }

    #[test]
    fn both_directions_are_independent_after_admission() {
        // A whole conversation, interleaved, checked from both ends.
        let mut client = Order::new(Role::Client);
        let mut server = Order::new(Role::Server);
        let script = [
            (Role::Client, Hello),
            (Role::Server, Welcome),
            (Role::Client, Data),
            (Role::Server, Data),
            (Role::Client, Farewell),
            (Role::Server, Data),
            (Role::Server, Farewell),
        ];
        for (sender, kind) in script {
            let (from, to) = match sender {
                Role::Client => (&mut client, &mut server),
                Role::Server => (&mut server, &mut client),
            };
            from.check_send(kind).unwrap();
            to.check(kind).unwrap();
        }
        assert_eq!(client.role(), Role::Client);
        assert_eq!(server.role(), Role::Server);
        assert_eq!(Role::Client.peer(), Role::Server);
        assert_eq!(Role::Server.to_string(), "server");
    }
}

/// `check_queued`: the order of frames as they are queued, where a client's
/// messages may wait for WELCOME.
mod queued_order {
    use super::*;

    #[test]
    fn a_client_may_queue_messages_before_welcome() {
        let mut order = Order::new(Role::Client);
        assert!(order.check_queued(Data).is_err(), "HELLO comes first");
        assert_eq!(order.check_queued(Hello), Ok(()));
        assert_eq!(order.check_queued(Data), Ok(()));
        assert_eq!(order.check_queued(Farewell), Ok(()));
        assert_eq!(
            order.check_queued(Data),
            Err(FrameError::AfterFarewell(Data))
        );
        // check_send would have refused the DATA: on the wire it must wait.
        let mut strict = Order::new(Role::Client);
        strict.check_send(Hello).unwrap();
        assert!(strict.check_send(Data).is_err());
    }

    #[test]
    fn a_failed_check_changes_nothing() {
        let mut order = Order::new(Role::Client);
        order.check_queued(Hello).unwrap();
        let before = order;
        assert!(order.check_queued(Hello).is_err());
        assert!(order.check_queued(Welcome).is_err());
        assert_eq!(order, before);
    }

    #[test]
    fn otherwise_it_is_check_send() {
        let mut server = Order::new(Role::Server);
        assert!(server.check_queued(Welcome).is_err(), "only after HELLO");
        server.check(Hello).unwrap();
        assert_eq!(server.check_queued(Reject), Ok(()));
        assert_eq!(
            server.check_queued(Data),
            Err(FrameError::AfterReject(Data))
        );
        let mut client = Order::new(Role::Client);
        client.check_queued(Hello).unwrap();
        client.check(Reject).unwrap();
        assert_eq!(
            client.check_queued(Data),
            Err(FrameError::AfterReject(Data))
        );
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = FrameType> {
        prop::sample::select(ALL.to_vec())
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(Vec::new()),
            prop::collection::vec(any::<u8>(), 1..8),
            prop::collection::vec(any::<u8>(), 8..300),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Random frames, cut at random points, decode to exactly what was
        /// encoded; a payload is borrowed exactly when it lies whole in one
        /// chunk, every call makes progress, and nothing is held at the end.
        #[test]
        fn any_split_decodes_to_the_encoded_frames(
            frames in prop::collection::vec((kind(), payload()), 0..20),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut wire = Vec::new();
            // Where each payload lies in the stream.
            let mut spans = Vec::new();
            for (kind, payload) in &frames {
                frame::encode(*kind, payload, &mut wire).unwrap();
                spans.push((wire.len() - payload.len(), wire.len()));
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cuts.push(0);
            cuts.push(wire.len());
            cuts.sort_unstable();

            let mut dec = Decoder::default();
            let mut got = Vec::new();
            for pair in cuts.windows(2) {
                let (start, end) = (pair[0], pair[1]);
                let chunk = &wire[start..end];
                let mut input = chunk;
                loop {
                    let before = input.len();
                    let (used, frame) = dec.decode(input).unwrap();
                    prop_assert!(used <= before);
                    let Some(f) = frame else {
                        prop_assert_eq!(used, before, "no frame, yet input left");
                        break;
                    };
                    prop_assert!(used >= 1 || before == 0);
                    let (from, to) = spans[got.len()];
                    if !f.payload.is_empty() {
                        let whole_in_chunk = start <= from && to <= end;
                        prop_assert_eq!(lies_in(f.payload, chunk), whole_in_chunk);
                    }
                    got.push((f.kind, f.payload.to_vec()));
                    input = &input[used..];
                }
                let idle = dec.is_idle();
                prop_assert_eq!(idle, end == 0 || spans.iter().any(|s| s.1 == end));
                if idle {
                    prop_assert_eq!(dec.allocated(), 0);
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(dec.buffered(), 0);
            prop_assert_eq!(dec.finish(), Ok(()));
        }

        /// Arbitrary bytes never panic the decoder, and a byte-by-byte run
        /// agrees with a one-piece run on every frame and on the error.
        #[test]
        fn arbitrary_bytes_split_or_whole_agree(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut whole = Decoder::new(64);
            let expected = decode_all(&mut whole, &bytes);
            let mut single = Decoder::new(64);
            let mut got = Vec::new();
            let mut error = None;
            for b in bytes.chunks(1) {
                match single.decode(b) {
                    Ok((used, frame)) => {
                        prop_assert_eq!(used, 1);
                        if let Some(f) = frame {
                            got.push((f.kind, f.payload.to_vec()));
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            match (expected, error) {
                (Ok(frames), None) => prop_assert_eq!(frames, got),
                (Err(e1), Some(e2)) => {
                    prop_assert_eq!(e1, e2);
                    // The frames before the error are the same too.
                    let mut again = Decoder::new(64);
                    let mut before = Vec::new();
                    let mut input = &bytes[..];
                    while let Ok((used, frame)) = again.decode(input) {
                        input = &input[used..];
                        match frame {
                            Some(f) => before.push((f.kind, f.payload.to_vec())),
                            None => break,
                        }
                    }
                    prop_assert_eq!(before, got);
                }
                (e1, e2) => prop_assert!(false, "whole: {:?}, byte by byte: {:?}", e1, e2),
            }
        }
    }
}
