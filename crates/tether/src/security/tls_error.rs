//! [`TlsError`]: why a TLS context could not be built or changed.

use std::fmt;

/// Why a [`TlsContext`](crate::TlsContext) could not be built. Each message names the problem and
/// the input it concerns.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    Read {
        /// The file.
        path: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// Not PEM, or PEM that does not hold what it should.
    BadPem {
        /// What was being read ("certificate chain", "private key", "trust roots").
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The certificate chain holds no certificate.
    EmptyChain,
    /// No private key was found.
    NoPrivateKey,
    /// The private key does not belong to the first certificate of the chain.
    KeyMismatch,
    /// A certificate could not be used as a trust root.
    BadRoot(String),
    /// The context can neither serve (no certificate) nor connect (no roots, no pins).
    Empty,
    /// Client certificates were required or allowed without any roots or pins
    /// to check them against.
    NoClientTrust,
    /// Not a SHA-256 fingerprint.
    BadFingerprint(String),
    /// An ALPN protocol name that TLS cannot carry (empty, or over 255 bytes).
    BadAlpn(String),
    /// rustls refused the configuration.
    Rustls(rustls::Error),
    /// Not an SRTP protection profile tether knows.
    BadSrtpProfile(String),
    /// The DTLS library refused the configuration.
    Dtls(String),
    /// DTLS signs with ECDSA only (P-256 or P-384): the key is of another kind.
    DtlsKey,
    /// [`TlsContext::set_certificate`](crate::TlsContext::set_certificate) on a context built without a
    /// certificate: it does not serve, so there is nothing to replace.
    NoCertificate,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, error } => write!(f, "cannot read {path}: {error}"),
            TlsError::BadPem { what, detail } => write!(f, "not valid PEM in the {what}: {detail}"),
            TlsError::EmptyChain => f.write_str("the certificate chain holds no certificate"),
            TlsError::NoPrivateKey => f.write_str("no private key found in the key PEM"),
            TlsError::KeyMismatch => {
                f.write_str("the private key does not match the certificate's public key")
            }
            TlsError::BadRoot(why) => write!(f, "a trust root was refused: {why}"),
            TlsError::Empty => f.write_str(
                "a TLS context needs a certificate (to serve) or trust roots or pins (to connect)",
            ),
            TlsError::NoClientTrust => {
                f.write_str("client certificates cannot be checked without trust roots or pins")
            }
            TlsError::BadFingerprint(s) => {
                write!(
                    f,
                    "{s:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                )
            }
            TlsError::BadAlpn(p) => write!(
                f,
                "{p:?} is not a valid ALPN protocol name (1 to 255 bytes)"
            ),
            TlsError::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
            TlsError::BadSrtpProfile(p) => write!(
                f,
                "{p:?} is not an SRTP profile (SRTP_AES128_CM_SHA1_80, SRTP_AEAD_AES_128_GCM, SRTP_AEAD_AES_256_GCM)"
            ),
            TlsError::Dtls(why) => write!(f, "DTLS configuration refused: {why}"),
            TlsError::DtlsKey => f.write_str(
                "DTLS needs an ECDSA P-256 or P-384 certificate and key (RSA and Ed25519 are not supported)",
            ),
            TlsError::NoCertificate => f.write_str(
                "this TLS context has no certificate to replace: build it with one to serve",
            ),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read { error, .. } => Some(error),
            TlsError::Rustls(e) => Some(e),
            _ => None,
        }
    }
}
