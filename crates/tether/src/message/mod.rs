//! The message layer: framed messages over a byte stream (plain or secured).
//! It imports only the layers below it.

pub(crate) mod framed;
