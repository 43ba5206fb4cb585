//! The security layer: TLS (rustls) over a stream transport, DTLS (dimpl)
//! over UDP, and the contexts that configure them. It imports only the
//! transport below it.

pub(crate) mod cert_error;
pub(crate) mod context;
pub(crate) mod dtls;
pub(crate) mod dtls_context;
pub(crate) mod fingerprint;
mod identity;
pub(crate) mod info;
pub(crate) mod srtp;
pub(crate) mod tls;
pub(crate) mod tls_error;
pub(crate) mod verify;
