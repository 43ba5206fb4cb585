//! The message layer: framed messages, or HTTP/1.1, over a byte stream
//! (plain or secured).
//! It imports only the layers below it.

pub(crate) mod framed;
pub(crate) mod http;
