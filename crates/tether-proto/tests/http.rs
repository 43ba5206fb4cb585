//! The HTTP/1.1 server codec (`tether_proto::http`): every item sequence
//! exact, every request decoded the same under every split of its bytes,
//! pipelined requests, chunked bodies with extensions and trailers, each
//! limit at and one past its edge, each error with its status, the response
//! head byte for byte, the keep-alive rule and the date format.

use tether_proto::http::{
    self, BodyKind, HttpError, Item, Limits, RequestDecoder, RequestHead, ResponseBody, Version,
};

/// Decodes `input` as one buffer: every `(consumed, item)` of each call on
/// what is left, up to and including the first `NeedMore`, or the error.
fn steps(limits: Limits, input: &[u8]) -> Result<Vec<(usize, Item)>, HttpError> {
    let mut decoder = RequestDecoder::new(limits);
    let mut rest = input;
    let mut out = Vec::new();
    for _ in 0..=2 * input.len() + 2 {
        let (used, item) = decoder.decode(rest)?;
        rest = &rest[used..];
        let done = item == Item::NeedMore;
        out.push((used, item));
        if done {
            return Ok(out);
        }
    }
    panic!("no NeedMore after {} calls", out.len());
}

/// What a request stream held, with body ranges resolved to bytes and
/// adjacent body pieces joined, so splits that cut a body differently
/// compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Head(RequestHead),
    Body(Vec<u8>),
    End,
}

fn push(events: &mut Vec<Ev>, item: Item, input: &[u8]) {
    match item {
        Item::NeedMore => {}
        Item::Head(head) => events.push(Ev::Head(head)),
        Item::End => events.push(Ev::End),
        Item::Body { start, len } => {
            assert!(len > 0, "an empty body item");
            let bytes = &input[start..start + len];
            if let Some(Ev::Body(body)) = events.last_mut() {
                body.extend_from_slice(bytes);
            } else {
                events.push(Ev::Body(bytes.to_vec()));
            }
        }
    }
}

/// Feeds `input` in pieces cut at `cuts` (sorted offsets), the way a server
/// would: keep a buffer, append what arrived, decode until `NeedMore`, drain
/// what was consumed. Returns the events, and the error if one came.
fn feed(limits: Limits, input: &[u8], cuts: &[usize]) -> (Vec<Ev>, Option<HttpError>) {
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain([&input.len()]) {
        let to = to.clamp(from, input.len());
        buf.extend_from_slice(&input[from..to]);
        from = to;
        for _ in 0..=2 * input.len() + 2 {
            match decoder.decode(&buf) {
                Err(err) => return (events, Some(err)),
                Ok((used, item)) => {
                    assert!(used <= buf.len());
                    let more = item == Item::NeedMore;
                    push(&mut events, item, &buf);
                    buf.drain(..used);
                    if more {
                        break;
                    }
                }
            }
        }
    }
    (events, None)
}

/// `input` whole, and split at every byte boundary: both give the same.
fn decode_every_split(limits: Limits, input: &[u8]) -> (Vec<Ev>, Option<HttpError>) {
    let whole = feed(limits, input, &[]);
    let cuts: Vec<usize> = (1..input.len()).collect();
    assert_eq!(feed(limits, input, &cuts), whole, "byte by byte");
    for cut in 1..input.len() {
        assert_eq!(feed(limits, input, &[cut]), whole, "split at {cut}");
    }
    whole
}

fn events(input: &[u8]) -> Vec<Ev> {
    let (events, err) = decode_every_split(Limits::default(), input);
    assert_eq!(err, None);
    events
}

fn error(limits: Limits, input: &[u8]) -> HttpError {
    let (_, err) = decode_every_split(limits, input);
    err.expect("an error")
}

fn head(input: &[u8]) -> RequestHead {
    match steps(Limits::default(), input).unwrap().remove(0) {
        (_, Item::Head(head)) => head,
        other => panic!("{other:?}"),
    }
}

fn body(bytes: &[u8]) -> Ev {
    Ev::Body(bytes.to_vec())
}

mod head {
    use super::*;

    #[test]
    fn get_is_head_then_end() {
        let input = b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Two: 1\r\nx-two: 2\r\n\r\n";
        let got = steps(Limits::default(), input).unwrap();
        let want_head = RequestHead {
            method: "GET".into(),
            target: "/a?b=c".into(),
            version: Version::Http11,
            headers: vec![
                ("Host".into(), b"example.com".to_vec()),
                ("X-Two".into(), b"1".to_vec()),
                ("x-two".into(), b"2".to_vec()),
            ],
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        };
        assert_eq!(
            got,
            [
                (input.len(), Item::Head(want_head.clone())),
                (0, Item::End),
                (0, Item::NeedMore)
            ]
        );
        assert_eq!(want_head.header("x-TWO"), Some(&b"1"[..]));
        assert_eq!(want_head.header("missing"), None);
        assert!(!want_head.is_head());
        assert_eq!(events(input), [Ev::Head(want_head), Ev::End]);
    }

    #[test]
    fn partial_head_consumes_nothing_and_stays_idle() {
        let mut decoder = RequestDecoder::new(Limits::default());
        assert!(decoder.is_idle());
        assert_eq!(decoder.decode(b"").unwrap(), (0, Item::NeedMore));
        assert_eq!(
            decoder.decode(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(),
            (0, Item::NeedMore)
        );
        assert!(decoder.is_idle());
        let (used, item) = decoder
            .decode(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        assert_eq!(used, 27);
        assert!(matches!(item, Item::Head(_)));
        assert!(!decoder.is_idle(), "End not yet handed out");
        assert_eq!(decoder.decode(b"").unwrap(), (0, Item::End));
        assert!(decoder.is_idle());
    }

    #[test]
    fn head_method_and_http10() {
        let h = head(b"HEAD /x HTTP/1.0\r\n\r\n");
        assert!(h.is_head());
        assert_eq!(h.version, Version::Http10);
        assert_eq!(h.version.as_str(), "HTTP/1.0");
        assert_eq!(Version::Http11.to_string(), "HTTP/1.1");
        assert_eq!(h.body, BodyKind::None);
        assert!(!h.keep_alive);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let input = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let got = events(input);
        assert!(matches!(&got[..], [Ev::Head(h), Ev::End] if h.target == "/"));
    }

    #[test]
    fn expect_continue_any_case() {
        assert!(
            head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(head(b"PUT / HTTP/1.1\r\nexpect:  100-continue \r\n\r\n").expect_continue);
        assert!(!head(b"PUT / HTTP/1.1\r\nExpect: something\r\n\r\n").expect_continue);
        assert!(!head(b"PUT / HTTP/1.1\r\n\r\n").expect_continue);
    }

    #[test]
    fn non_utf8_header_value_is_kept_as_bytes() {
        let h = head(b"GET / HTTP/1.1\r\nX-Bin: caf\xe9\r\n\r\n");
        assert_eq!(h.header("x-bin"), Some(&b"caf\xe9"[..]));
    }
}

mod content_length {
    use super::*;

    #[test]
    fn body_items_are_ranges_of_the_input() {
        let head_bytes = b"POST /u HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        let input = [&head_bytes[..], b"hello"].concat();
        let got = steps(Limits::default(), &input).unwrap();
        assert_eq!(got.len(), 4);
        assert!(
            matches!(&got[0], (n, Item::Head(h)) if *n == head_bytes.len() && h.body == BodyKind::Length(5))
        );
        assert_eq!(
            got[1..],
            [
                (5, Item::Body { start: 0, len: 5 }),
                (0, Item::End),
                (0, Item::NeedMore)
            ]
        );
    }

    #[test]
    fn body_arriving_in_pieces() {
        let mut decoder = RequestDecoder::new(Limits::default());
        let (used, _) = decoder
            .decode(b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\nab")
            .unwrap();
        assert_eq!(used, 38);
        assert_eq!(
            decoder.decode(b"ab").unwrap(),
            (2, Item::Body { start: 0, len: 2 })
        );
        assert_eq!(decoder.decode(b"").unwrap(), (0, Item::NeedMore));
        assert_eq!(
            decoder.decode(b"cdefGET").unwrap(),
            (4, Item::Body { start: 0, len: 4 })
        );
        assert_eq!(decoder.decode(b"GET").unwrap(), (0, Item::End));
        assert_eq!(decoder.decode(b"GET").unwrap(), (0, Item::NeedMore));
    }

    #[test]
    fn every_split() {
        let input = b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
        let got = events(input);
        assert!(matches!(&got[0], Ev::Head(h) if h.body == BodyKind::Length(11)));
        assert_eq!(got[1..], [body(b"hello world"), Ev::End]);
    }

    #[test]
    fn zero_length_is_head_then_end() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        let got = steps(Limits::default(), input).unwrap();
        assert!(matches!(&got[0], (_, Item::Head(h)) if h.body == BodyKind::Length(0)));
        assert_eq!(got[1..], [(0, Item::End), (0, Item::NeedMore)]);
    }

    #[test]
    fn repeated_identical_lengths_are_one() {
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(3));
    }
}

mod chunked {
    use super::*;

    #[test]
    fn exact_items_with_extensions_and_trailers() {
        let head_bytes = &b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..];
        let one = &b"4\r\nWiki"[..];
        let two = &b"\r\n5;name=value;x\r\npedia"[..];
        let end = &b"\r\n0\r\nTrailer-One: x\r\nTrailer-Two: y\r\n\r\n"[..];
        let input = [head_bytes, one, two, end].concat();
        let got = steps(Limits::default(), &input).unwrap();
        assert!(
            matches!(&got[0], (n, Item::Head(h)) if *n == head_bytes.len() && h.body == BodyKind::Chunked)
        );
        assert_eq!(
            got[1..],
            [
                (one.len(), Item::Body { start: 3, len: 4 }),
                (
                    two.len(),
                    Item::Body {
                        start: two.len() - 5,
                        len: 5
                    }
                ),
                (end.len(), Item::End),
                (0, Item::NeedMore),
            ]
        );
        assert_eq!(events(&input)[1..], [body(b"Wikipedia"), Ev::End]);
    }

    #[test]
    fn framing_is_consumed_while_waiting() {
        let mut decoder = RequestDecoder::new(Limits::default());
        let h = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(decoder.decode(h).unwrap().0, h.len());
        assert_eq!(decoder.decode(b"").unwrap(), (0, Item::NeedMore));
        assert_eq!(
            decoder.decode(b"a").unwrap(),
            (0, Item::NeedMore),
            "a size line in progress"
        );
        assert_eq!(decoder.decode(b"a\r\n").unwrap(), (3, Item::NeedMore));
        assert_eq!(
            decoder.decode(b"0123456789\r").unwrap(),
            (10, Item::Body { start: 0, len: 10 })
        );
        assert_eq!(decoder.decode(b"\r").unwrap(), (0, Item::NeedMore));
        assert_eq!(
            decoder.decode(b"\r\n0\r\nT: 1\r").unwrap(),
            (10, Item::NeedMore),
            "trailers skipped as they come"
        );
        assert_eq!(decoder.decode(b"\n\r").unwrap(), (2, Item::NeedMore));
        assert_eq!(decoder.decode(b"\n").unwrap(), (1, Item::End));
        assert!(decoder.is_idle());
    }

    #[test]
    fn transfer_encoding_any_case_and_listed() {
        let h = head(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
    }

    #[test]
    fn bad_chunk_framing() {
        let h = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (tail, what) in [
            (&b"3\r\nabcX"[..], "data not followed by CRLF"),
            (b"3\r\nabc\rX", "CR not followed by LF"),
            (b"zz\r\n", "not a hex size"),
            (b"3\nabc\r\n", "bare LF after the size"),
            (b"11111111111111111\r\n", "size too long"),
        ] {
            let input = [&h[..], tail].concat();
            let err = error(Limits::default(), &input);
            assert!(matches!(err, HttpError::Malformed(_)), "{what}: {err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn every_split_of_many_chunks() {
        let input = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n2;e\r\nbc\r\nA\r\n0123456789\r\n0;last\r\nX: y\r\n\r\n";
        assert_eq!(events(input)[1..], [body(b"abc0123456789"), Ev::End]);
    }
}

mod pipelining {
    use super::*;

    #[test]
    fn two_requests_in_one_buffer() {
        let a = &b"GET /1 HTTP/1.1\r\n\r\n"[..];
        let b = &b"GET /2 HTTP/1.1\r\n\r\n"[..];
        let input = [a, b].concat();
        let got = steps(Limits::default(), &input).unwrap();
        assert_eq!(got.len(), 5);
        assert!(matches!(&got[0], (n, Item::Head(h)) if *n == a.len() && h.target == "/1"));
        assert_eq!(got[1], (0, Item::End));
        assert!(matches!(&got[2], (n, Item::Head(h)) if *n == b.len() && h.target == "/2"));
        assert_eq!(got[3..], [(0, Item::End), (0, Item::NeedMore)]);
    }

    #[test]
    fn three_requests_every_split() {
        let input = b"POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
GET /2 HTTP/1.1\r\n\r\n\
POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n";
        let got = events(input);
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(matches!(&got[0], Ev::Head(h) if h.target == "/1"));
        assert_eq!(got[1..3], [body(b"abc"), Ev::End]);
        assert!(matches!(&got[3], Ev::Head(h) if h.target == "/2"));
        assert_eq!(got[4], Ev::End);
        assert!(matches!(&got[5], Ev::Head(h) if h.target == "/3"));
        assert_eq!(got[6..], [body(b"xy"), Ev::End]);
    }

    #[test]
    fn a_recycled_head_gives_the_next_request_its_own_fields() {
        // The next head is parsed into the strings of the one given back:
        // nothing of the first may show in the second, with more headers,
        // fewer, shorter or longer.
        let first = b"POST /long/target HTTP/1.1\r\nHost: a.example\r\nX-One: 1\r\nContent-Length: 0\r\n\r\n";
        let second = b"GET / HTTP/1.0\r\nHost: b\r\n\r\n";
        let third = b"GET /3 HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
        let mut decoder = RequestDecoder::new(Limits::default());
        for input in [&first[..], &second[..], &third[..]] {
            let (used, item) = decoder.decode(input).unwrap();
            assert_eq!(used, input.len());
            let Item::Head(got) = item else {
                panic!("a head: {item:?}");
            };
            assert_eq!(got, head(input));
            assert_eq!(decoder.decode(&[]).unwrap(), (0, Item::End));
            decoder.recycle(got);
        }
    }
}

mod limits {
    use super::*;

    const REQUEST: &[u8] = b"GET /limit HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";

    #[test]
    fn defaults() {
        assert_eq!(
            Limits::default(),
            Limits {
                head: 16 * 1024,
                headers: 100,
                body: 1 << 30
            }
        );
    }

    #[test]
    fn head_exactly_at_the_limit_passes_one_over_fails() {
        let at = Limits {
            head: REQUEST.len(),
            ..Limits::default()
        };
        let got = decode_every_split(at, REQUEST);
        assert_eq!(got.1, None);
        assert_eq!(got.0.len(), 2);
        let under = Limits {
            head: REQUEST.len() - 1,
            ..Limits::default()
        };
        let err = error(under, REQUEST);
        assert_eq!(
            err,
            HttpError::HeadTooLarge {
                limit: REQUEST.len() - 1
            }
        );
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn endless_head_fails_once_past_the_limit() {
        let limits = Limits {
            head: 64,
            ..Limits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let mut input = b"GET / HTTP/1.1\r\nX: ".to_vec();
        input.resize(64, b'a');
        assert_eq!(decoder.decode(&input).unwrap(), (0, Item::NeedMore));
        input.push(b'a');
        assert_eq!(
            decoder.decode(&input),
            Err(HttpError::HeadTooLarge { limit: 64 })
        );
        assert_eq!(
            decoder.decode(b""),
            Err(HttpError::HeadTooLarge { limit: 64 }),
            "sticky"
        );
    }

    #[test]
    fn header_count_at_and_over() {
        let limits = Limits {
            headers: 2,
            ..Limits::default()
        };
        assert_eq!(
            decode_every_split(limits, b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n").1,
            None
        );
        let err = error(limits, b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        assert_eq!(err, HttpError::TooManyHeaders { limit: 2 });
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn huge_content_length_fails_at_the_head() {
        let limits = Limits {
            body: 1 << 20,
            ..Limits::default()
        };
        let input = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 20 << 20);
        let mut decoder = RequestDecoder::new(limits);
        let err = decoder.decode(input.as_bytes()).unwrap_err();
        assert_eq!(err, HttpError::BodyTooLarge { limit: 1 << 20 });
        assert_eq!(err.status(), 413);
        // At the limit is fine.
        let input = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1 << 20);
        assert!(matches!(
            RequestDecoder::new(limits).decode(input.as_bytes()),
            Ok((_, Item::Head(_)))
        ));
    }

    #[test]
    fn chunked_total_over_the_limit() {
        let limits = Limits {
            body: 10,
            ..Limits::default()
        };
        let ok = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
        assert_eq!(decode_every_split(limits, ok).1, None);
        let over = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n6\r\n";
        let (got, err) = decode_every_split(limits, over);
        assert_eq!(err, Some(HttpError::BodyTooLarge { limit: 10 }));
        assert_eq!(
            got[1..],
            [body(b"01234")],
            "refused at the size line, before its data"
        );
    }

    #[test]
    fn trailers_and_chunk_lines_are_bounded() {
        let limits = Limits {
            head: 64,
            ..Limits::default()
        };
        let h = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let trailers = [&h[..], b"0\r\nX: ", &[b'a'; 80], b"\r\n\r\n"].concat();
        assert_eq!(
            error(limits, &trailers),
            HttpError::HeadTooLarge { limit: 64 }
        );
        let line = [&h[..], b"1;", &[b'e'; 80], b"\r\nx\r\n0\r\n\r\n"].concat();
        assert!(matches!(error(limits, &line), HttpError::Malformed(_)));
    }
}

mod errors {
    use super::*;

    fn refused(input: &[u8]) -> HttpError {
        let err = error(Limits::default(), input);
        assert!(!err.to_string().is_empty());
        err
    }

    fn malformed(input: &[u8]) {
        let err = refused(input);
        assert!(matches!(err, HttpError::Malformed(_)), "{err:?}");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn smuggling_framings_are_refused() {
        malformed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
        malformed(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    }

    #[test]
    fn unsupported_transfer_codings() {
        for input in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        ] {
            let err = refused(input);
            assert!(
                matches!(err, HttpError::UnsupportedTransferEncoding(_)),
                "{err:?}"
            );
            assert_eq!(err.status(), 501);
        }
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HttpError::UnsupportedTransferEncoding("gzip".into())
        );
    }

    #[test]
    fn bad_request_lines() {
        malformed(b"GET / HTTP/2.0\r\n\r\n");
        malformed(b"GET\r\n\r\n");
        malformed(b"G\x01T / HTTP/1.1\r\n\r\n");
        malformed(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
    }

    #[test]
    fn a_head_is_judged_once_it_can_have_ended() {
        // The head is parsed when its empty line arrives (or the limit is
        // passed), not again for every piece of it.
        let mut decoder = RequestDecoder::new(Limits::default());
        let start = b"G\x01T / HTTP/1.1\r\nX: y\r\n";
        assert_eq!(decoder.decode(start).unwrap(), (0, Item::NeedMore));
        let whole = [&start[..], b"\r\n"].concat();
        assert!(matches!(
            decoder.decode(&whole),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn empty_lines_before_a_request_do_not_end_its_head() {
        // Empty lines before the request line are skipped, so they do not
        // make the head look ended: a malformed request line after them is
        // judged at its own head's end, whether the input comes whole or a
        // byte at a time (found by fuzzing: whole, it was refused at once;
        // split, only at the next empty line).
        let input = b"\r\n\r\nG\x01T / HTTP/1.1\r\n";
        let mut whole = RequestDecoder::new(Limits::default());
        assert_eq!(whole.decode(input).unwrap(), (0, Item::NeedMore));
        let mut split = RequestDecoder::new(Limits::default());
        for end in 1..=input.len() {
            assert_eq!(split.decode(&input[..end]).unwrap(), (0, Item::NeedMore));
        }
        let ended = [&input[..], b"\r\n"].concat();
        assert!(matches!(whole.decode(&ended), Err(HttpError::Malformed(_))));
        assert!(matches!(split.decode(&ended), Err(HttpError::Malformed(_))));

        let good = b"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut decoder = RequestDecoder::new(Limits::default());
        for end in 1..good.len() {
            assert_eq!(decoder.decode(&good[..end]).unwrap(), (0, Item::NeedMore));
        }
        let (used, item) = decoder.decode(good).unwrap();
        assert_eq!(used, good.len());
        assert!(matches!(item, Item::Head(head) if head.target == "/"));
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = RequestDecoder::new(Limits::default());
        let err = decoder.decode(b"GET\r\n\r\n").unwrap_err();
        assert_eq!(decoder.decode(b"GET / HTTP/1.1\r\n\r\n"), Err(err));
        assert!(!decoder.is_idle());
    }

    #[test]
    fn statuses_and_messages() {
        let all = [
            (HttpError::HeadTooLarge { limit: 1 }, 431),
            (HttpError::TooManyHeaders { limit: 1 }, 431),
            (HttpError::Malformed("x".into()), 400),
            (HttpError::BodyTooLarge { limit: 1 }, 413),
            (HttpError::UnsupportedTransferEncoding("gzip".into()), 501),
        ];
        for (err, status) in all {
            assert_eq!(err.status(), status);
            let shown = err.to_string();
            assert!(!shown.is_empty());
            let _: &dyn std::error::Error = &err;
        }
        assert_eq!(
            HttpError::BodyTooLarge { limit: 7 }.to_string(),
            "request body longer than the limit of 7 bytes"
        );
    }
}

mod response {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn encode(
        status: u16,
        headers: &[(&str, &[u8])],
        body: ResponseBody,
        close: bool,
        version: Version,
        head_request: bool,
    ) -> (String, bool) {
        let mut out = Vec::new();
        let must_close = http::encode_head(
            &mut out,
            status,
            headers,
            body,
            DATE,
            close,
            version,
            head_request,
        );
        (String::from_utf8(out).unwrap(), must_close)
    }

    #[test]
    fn length_keep_alive_11() {
        let got = encode(
            200,
            &[("Content-Type", b"text/plain"), ("X-A", b"1")],
            ResponseBody::Length(12),
            false,
            Version::Http11,
            false,
        );
        assert_eq!(
            got,
            (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 12\r\n\r\n"
                    .into(),
                false
            )
        );
    }

    #[test]
    fn owned_headers_are_replaced() {
        let (got, close) = encode(
            404,
            &[
                ("content-length", b"999"),
                ("Date", b"yesterday"),
                ("Transfer-Encoding", b"gzip"),
                ("CONNECTION", b"keep-alive"),
                ("X-B", b"2"),
            ],
            ResponseBody::Empty,
            true,
            Version::Http11,
            false,
        );
        assert!(close);
        assert_eq!(
            got,
            format!("HTTP/1.1 404 Not Found\r\nX-B: 2\r\nDate: {DATE}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn chunked_11_and_10() {
        let (got, close) = encode(
            200,
            &[],
            ResponseBody::Chunked,
            false,
            Version::Http11,
            false,
        );
        assert!(!close);
        assert_eq!(
            got,
            format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nTransfer-Encoding: chunked\r\n\r\n")
        );
        // A 1.0 client knows no chunked coding: the body runs to the close.
        let (got, close) = encode(
            200,
            &[],
            ResponseBody::Chunked,
            false,
            Version::Http10,
            false,
        );
        assert!(close);
        assert_eq!(
            got,
            format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nConnection: close\r\n\r\n")
        );
    }

    #[test]
    fn http10_keep_alive() {
        let (got, close) = encode(
            200,
            &[],
            ResponseBody::Length(3),
            false,
            Version::Http10,
            false,
        );
        assert!(!close);
        assert_eq!(
            got,
            format!("HTTP/1.1 200 OK\r\nDate: {DATE}\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n")
        );
    }

    #[test]
    fn bodiless_statuses_carry_no_length() {
        for status in [100, 101, 204, 304] {
            for body in [
                ResponseBody::Empty,
                ResponseBody::Length(5),
                ResponseBody::Chunked,
            ] {
                let (got, close) = encode(status, &[], body, false, Version::Http10, false);
                assert!(!close, "{status} {body:?}");
                assert!(
                    !got.contains("Content-Length") && !got.contains("Transfer-Encoding"),
                    "{got}"
                );
            }
        }
        let (got, _) = encode(204, &[], ResponseBody::Empty, false, Version::Http11, false);
        assert_eq!(
            got,
            format!("HTTP/1.1 204 No Content\r\nDate: {DATE}\r\n\r\n")
        );
    }

    #[test]
    fn head_request_gets_the_get_head() {
        for body in [
            ResponseBody::Length(42),
            ResponseBody::Chunked,
            ResponseBody::Empty,
        ] {
            for version in [Version::Http10, Version::Http11] {
                assert_eq!(
                    encode(200, &[], body, false, version, true),
                    encode(200, &[], body, false, version, false)
                );
            }
        }
        assert!(encode(
            200,
            &[],
            ResponseBody::Length(42),
            false,
            Version::Http11,
            true
        )
        .0
        .contains("Content-Length: 42\r\n"));
    }

    #[test]
    fn fields_that_would_split_the_response_are_left_out() {
        let (got, _) = encode(
            200,
            &[
                ("X-Evil", b"a\r\nSet-Cookie: x"),
                ("Bad Name", b"v"),
                ("", b"v"),
                ("X-Ok", b"fine"),
            ],
            ResponseBody::Empty,
            false,
            Version::Http11,
            false,
        );
        assert_eq!(
            got,
            format!("HTTP/1.1 200 OK\r\nX-Ok: fine\r\nDate: {DATE}\r\nContent-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn unknown_status_has_an_empty_reason() {
        let (got, _) = encode(599, &[], ResponseBody::Empty, false, Version::Http11, false);
        assert!(got.starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn reasons_and_body_rules() {
        assert_eq!(http::reason(200), "OK");
        assert_eq!(http::reason(404), "Not Found");
        assert_eq!(http::reason(413), "Content Too Large");
        assert_eq!(http::reason(431), "Request Header Fields Too Large");
        assert_eq!(http::reason(799), "");
        assert!(http::body_allowed(200, false));
        assert!(http::body_allowed(500, false));
        assert!(!http::body_allowed(200, true));
        for status in [100, 101, 199, 204, 304] {
            assert!(!http::body_allowed(status, false), "{status}");
        }
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        http::encode_chunk(&mut out, b"");
        assert!(out.is_empty());
        http::encode_chunk(&mut out, b"hello");
        http::encode_chunk(&mut out, &[b'x'; 26]);
        http::encode_last_chunk(&mut out);
        let want = [&b"5\r\nhello\r\n1a\r\n"[..], &[b'x'; 26], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(out, want);
        assert_eq!(http::CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
        // What the encoder writes, the decoder reads.
        let request = [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            &out,
        ]
        .concat();
        assert_eq!(
            events(&request)[1..],
            [body(&[&b"hello"[..], &[b'x'; 26]].concat()), Ev::End]
        );
    }
}

mod keep_alive {
    use super::*;

    #[test]
    fn what_the_client_asks() {
        assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn the_rule() {
        assert!(http::keep_alive(true, true, 200));
        assert!(http::keep_alive(true, true, 404));
        assert!(http::keep_alive(true, true, 500));
        assert!(!http::keep_alive(false, true, 200));
        assert!(!http::keep_alive(true, false, 200));
        for status in [400, 408, 413, 431, 501] {
            assert!(!http::keep_alive(true, true, status), "{status}");
        }
    }
}

mod date {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(http::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http::http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http::http_date(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http::http_date(951868799), "Tue, 29 Feb 2000 23:59:59 GMT");
        assert_eq!(http::http_date(951868800), "Wed, 01 Mar 2000 00:00:00 GMT");
        assert_eq!(http::http_date(1795955696), "Sun, 29 Nov 2026 12:34:56 GMT");
        assert_eq!(http::http_date(4107542399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(http::http_date(4102444799), "Thu, 31 Dec 2099 23:59:59 GMT");
    }
}

mod prop {
    use super::{feed, Ev, Limits};
    use proptest::prelude::*;

    /// A valid request's bytes, then what decoding must give: its target,
    /// its header fields and its body.
    type Request = (Vec<u8>, String, Vec<(String, Vec<u8>)>, Vec<u8>);

    fn request() -> impl Strategy<Value = Request> {
        let name = "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("owned by framing", |n| {
            !["content-length", "transfer-encoding"].contains(&n.to_ascii_lowercase().as_str())
        });
        let value = "[ -~]{0,20}".prop_map(|v| v.trim().to_string());
        let headers = prop::collection::vec((name, value), 0..8);
        let body = prop::collection::vec(any::<u8>(), 0..200);
        let chunks = prop::collection::vec(1usize..40, 0..10);
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "HEAD"]),
            "/[a-z0-9/?=&]{0,20}",
            headers,
            body,
            prop::option::of((chunks, any::<bool>())),
        )
            .prop_map(|(method, target, headers, body, chunked)| {
                let mut wire = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
                let mut all: Vec<(String, Vec<u8>)> = headers
                    .into_iter()
                    .map(|(n, v)| (n, v.into_bytes()))
                    .collect();
                match &chunked {
                    Some(_) => all.push(("Transfer-Encoding".into(), b"chunked".to_vec())),
                    None => {
                        all.push(("Content-Length".into(), body.len().to_string().into_bytes()))
                    }
                }
                for (n, v) in &all {
                    wire.extend_from_slice(format!("{n}: ").as_bytes());
                    wire.extend_from_slice(v);
                    wire.extend_from_slice(b"\r\n");
                }
                wire.extend_from_slice(b"\r\n");
                match chunked {
                    None => wire.extend_from_slice(&body),
                    Some((sizes, extras)) => {
                        let mut rest = &body[..];
                        let mut sizes = sizes.into_iter().cycle();
                        while !rest.is_empty() {
                            let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
                            let ext = if extras { ";ext=\"v\"" } else { "" };
                            wire.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                            wire.extend_from_slice(&rest[..n]);
                            wire.extend_from_slice(b"\r\n");
                            rest = &rest[n..];
                        }
                        wire.extend_from_slice(b"0\r\n");
                        if extras {
                            wire.extend_from_slice(b"Trailer-X: t\r\n");
                        }
                        wire.extend_from_slice(b"\r\n");
                    }
                }
                (wire, target, all, body)
            })
    }

    proptest! {
        #[test]
        fn random_splits_decode_the_same(
            (wire, target, headers, body) in request(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let whole = feed(Limits::default(), &wire, &[]);
            prop_assert_eq!(&whole.1, &None);
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cuts.sort_unstable();
            let split = feed(Limits::default(), &wire, &cuts);
            prop_assert_eq!(&split, &whole);
            let events = whole.0;
            let Ev::Head(head) = &events[0] else { panic!("{events:?}") };
            prop_assert_eq!(&head.target, &target);
            prop_assert_eq!(&head.headers, &headers);
            let mut want = vec![events[0].clone()];
            if !body.is_empty() {
                want.push(Ev::Body(body));
            }
            want.push(Ev::End);
            prop_assert_eq!(events, want);
        }
    }
}
