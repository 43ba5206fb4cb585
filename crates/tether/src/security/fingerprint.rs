//! [`Fingerprint`]: the SHA-256 fingerprint by which certificates are pinned
//! and reported.

use std::fmt;
use std::str::FromStr;

use super::tls_error::TlsError;
use super::verify::Pin;

/// The SHA-256 fingerprint of a certificate (of its DER bytes), written the way
/// `openssl x509 -noout -fingerprint -sha256` prints it.
///
/// ```
/// use tether::Fingerprint;
///
/// let fp = Fingerprint::of(b"not really a certificate");
/// let text = fp.to_string(); // "3A:0F:..." — 32 bytes, colon-separated
/// assert_eq!(text.parse::<Fingerprint>().unwrap(), fp);
/// assert_eq!(fp.to_hex().parse::<Fingerprint>().unwrap(), fp); // plain hex too
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Lowercase hex without separators, for JSON and logs.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Pin for Fingerprint {
    fn of(der: &[u8]) -> Fingerprint {
        Fingerprint::of(der)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    /// 64 hex digits, with or without colons, either case.
    fn from_str(s: &str) -> Result<Fingerprint, TlsError> {
        let bad = || TlsError::BadFingerprint(s.to_string());
        let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}
