//! When a connection stays open after a response.

/// Does the connection stay open after this response?
///
/// Only if the server's mode keeps connections open (`mode_keep_open`), the
/// client asked to keep alive ([`RequestHead::keep_alive`](super::RequestHead::keep_alive)),
/// and `status` is not one a server sends when the byte stream is in doubt:
/// after a 400, 408, 413, 431 or 501 the server did not (or could not) read
/// the request's body to its end, so whatever follows on the connection
/// might be the rest of that body rather than a next request. Reading it as a
/// request is how request smuggling starts; closing is the safe answer.
///
/// ```
/// use tether_proto::http::keep_alive;
/// assert!(keep_alive(true, true, 200));
/// assert!(!keep_alive(true, true, 413));
/// assert!(!keep_alive(true, false, 200));
/// assert!(!keep_alive(false, true, 200));
/// ```
pub fn keep_alive(mode_keep_open: bool, client_keep_alive: bool, status: u16) -> bool {
    mode_keep_open && client_keep_alive && !matches!(status, 400 | 408 | 413 | 431 | 501)
}
