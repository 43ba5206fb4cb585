//! What a TLS handshake settled, and which side a StartTLS upgrade takes.

use crate::security::fingerprint::Fingerprint;

/// The TLS protocol version a handshake settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
    /// DTLS 1.2.
    Dtls12,
    /// DTLS 1.3.
    Dtls13,
}

impl TlsVersion {
    /// `TLSv1.2`, `TLSv1.3`, `DTLSv1.2` or `DTLSv1.3`, as OpenSSL writes them.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
            TlsVersion::Dtls12 => "DTLSv1.2",
            TlsVersion::Dtls13 => "DTLSv1.3",
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a TLS handshake settled, given to
/// [`SocketUser::on_tls_ready`](crate::SocketUser::on_tls_ready).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version.
    pub version: TlsVersion,
    /// The cipher suite, by its IANA name (`TLS13_AES_256_GCM_SHA384`); empty
    /// on DTLS, whose library does not say which it chose.
    pub cipher_suite: &'static str,
    /// The ALPN protocol, if one was negotiated.
    pub alpn: Option<Vec<u8>>,
    /// The SHA-256 fingerprint of the peer's certificate, if it sent one.
    pub peer_fingerprint: Option<Fingerprint>,
    /// On a server: the name the client asked for (SNI), if any.
    pub server_name: Option<String>,
    /// On DTLS with SRTP wanted ([`DtlsContextBuilder::srtp`](crate::DtlsContextBuilder::srtp)):
    /// the SRTP profile negotiated.
    pub srtp_profile: Option<crate::SrtpProfile>,
}

/// Which side of the handshake a StartTLS upgrade takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRole<'a> {
    /// We connect: `server_name` is sent as SNI and verified against the
    /// server's certificate.
    Client {
        /// A DNS name or an IP address.
        server_name: &'a str,
    },
    /// We serve, with the context's certificate.
    Server,
}
