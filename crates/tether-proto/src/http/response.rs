//! The response encoder: a status line, headers, and the framing of what
//! follows.

use super::Version;

/// How the body that follows a response head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: `Content-Length: 0`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunks ([`encode_chunk`]) ended by [`encode_last_chunk`], for a body
    /// whose length is not known when the head goes out.
    Chunked,
}

/// The interim response to `Expect: 100-continue`: the client may send the
/// body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The header fields [`encode_head`] owns: it writes them itself, because
/// they must agree with the framing it chooses.
const OWNED: [&str; 4] = ["date", "content-length", "transfer-encoding", "connection"];

/// Writes a response head to `out` and returns whether the connection must
/// close after this response.
///
/// The layer owns `Date`, `Content-Length`, `Transfer-Encoding` and
/// `Connection`: any of those in `headers` are left out and set here, so the
/// framing announced is always the framing used. Header fields whose name is
/// empty or holds a byte outside a token, or whose value holds CR, LF or NUL,
/// are also left out: written, they would let a value split the response.
///
/// - The status line is `HTTP/1.1 {status} {reason}`, also to HTTP/1.0
///   clients, as servers do (the version names what the server supports).
/// - `date` is written as `Date` ([`http_date`](super::http_date)).
/// - For 1xx, 204 and 304, which never carry a body, no `Content-Length` or
///   `Transfer-Encoding` is written. Otherwise `Content-Length` for
///   [`ResponseBody::Empty`] (0) and [`ResponseBody::Length`], and
///   `Transfer-Encoding: chunked` for [`ResponseBody::Chunked`] — except to
///   an HTTP/1.0 client, which does not know chunked coding: then no length
///   is written, the body runs to the end of the connection, and the caller
///   must close after sending it (the return value is `true`).
/// - For a HEAD request (`head_request`) the head is written as for GET
///   (including the length GET would send) and the caller sends no body.
/// - `Connection: close` when the connection closes after this response
///   (`close`, or forced as above); `Connection: keep-alive` to an HTTP/1.0
///   client that keeps it open; nothing to an HTTP/1.1 client that does.
#[allow(clippy::too_many_arguments)] // each says one thing about the response; a struct would only rename them
pub fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(impl AsRef<str>, impl AsRef<[u8]>)],
    body: ResponseBody,
    date: &str,
    close: bool,
    version: Version,
    head_request: bool,
) -> bool {
    let _ = head_request; // the head is the same as for GET
    let bodiless = !body_allowed(status, false);
    let until_close = !bodiless && version == Version::Http10 && body == ResponseBody::Chunked;
    let must_close = close || until_close;

    out.extend_from_slice(b"HTTP/1.1 ");
    decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        if OWNED.iter().any(|owned| name.eq_ignore_ascii_case(owned)) || !valid_field(name, value) {
            continue;
        }
        field(out, name, value);
    }
    field(out, "Date", date.as_bytes());
    if !bodiless {
        match body {
            ResponseBody::Empty => field(out, "Content-Length", b"0"),
            ResponseBody::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            ResponseBody::Chunked if until_close => {}
            ResponseBody::Chunked => field(out, "Transfer-Encoding", b"chunked"),
        }
    }
    if must_close {
        field(out, "Connection", b"close");
    } else if version == Version::Http10 {
        field(out, "Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    must_close
}

/// Appends `name: value\r\n`.
fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A field name that is a token and a value that cannot end the line.
fn valid_field(name: &str, value: &[u8]) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !name.is_empty()
        && name.bytes().all(tchar)
        && !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// The standard reason phrase of `status` (RFC 9110 15), or `""` for a
/// status without one. The phrase is informative only; clients ignore it.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether a response may carry a body: never to a HEAD request, never with
/// a 1xx, 204 or 304 status (RFC 9110 6.4.1).
pub fn body_allowed(status: u16, head_request: bool) -> bool {
    !head_request && !(100..200).contains(&status) && status != 204 && status != 304
}

/// Appends one chunk of a chunked body: `{len:x}\r\n{data}\r\n`. Empty
/// `data` writes nothing, since a zero-size chunk would end the body.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // The chunk's size in hex, written without an allocation.
    let len = data.len();
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(len >> (4 * i)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the end of a chunked body: the zero-size chunk and an empty
/// trailer section, `0\r\n\r\n`.
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// `n` in decimal, written without an allocation (a response head is made
/// for every request).
fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
