//! What can be wrong with a request, and the status a server answers it with.

use std::error::Error;
use std::fmt;

/// A request the decoder refuses. Each error names the status a server sends
/// back ([`HttpError::status`]) before it closes the connection: after any of
/// these the rest of the byte stream can no longer be trusted to start where
/// the decoder thinks it does, so the connection is not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line and headers (or a chunked body's trailers) grew past
    /// the limit without ending.
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// More header fields than the limit.
    TooManyHeaders {
        /// The limit, in header fields.
        limit: usize,
    },
    /// A request that does not follow HTTP/1.1's syntax or framing rules;
    /// the message says which.
    Malformed(String),
    /// A body (declared, or counted as its chunks are announced) longer than
    /// the limit.
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A transfer coding other than a final `chunked`: the decoder cannot
    /// find where such a body ends. Holds the `Transfer-Encoding` value.
    UnsupportedTransferEncoding(String),
}

impl HttpError {
    /// The response status this error calls for: 431 for a head too large or
    /// too many headers, 400 for a malformed request, 413 for a body too
    /// large, 501 for a transfer coding the server does not implement.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::Malformed(_) => 400,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::UnsupportedTransferEncoding(_) => 501,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge { limit } => {
                write!(
                    f,
                    "request head (or trailers) longer than the limit of {limit} bytes"
                )
            }
            HttpError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} header fields")
            }
            HttpError::Malformed(why) => write!(f, "malformed request: {why}"),
            HttpError::BodyTooLarge { limit } => {
                write!(f, "request body longer than the limit of {limit} bytes")
            }
            HttpError::UnsupportedTransferEncoding(value) => {
                write!(
                    f,
                    "unsupported transfer coding {value:?}: only a final \"chunked\" is"
                )
            }
        }
    }
}

impl Error for HttpError {}
