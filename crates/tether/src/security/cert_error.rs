//! [`CertError`]: why a peer's certificate was refused, in words a user can act
//! on, instead of the TLS library's error codes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::{ServerName, UnixTime};
use rustls::CertificateError;

/// Why the peer's certificate was refused during the handshake, in
/// [`Error::Certificate`](crate::Error::Certificate). Each message says what was
/// wrong and, where it can, what to do about it.
///
/// ```
/// use tether::CertError;
///
/// let e = CertError::WrongName {
///     asked: "example.com".into(),
///     valid: vec!["localhost".into(), "127.0.0.1".into()],
/// };
/// assert_eq!(
///     e.to_string(),
///     "the certificate is valid for localhost, 127.0.0.1, not for \"example.com\""
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate's validity period ended.
    Expired {
        /// The end of its validity.
        not_after: SystemTime,
        /// The time it was checked at.
        now: SystemTime,
    },
    /// The certificate's validity period has not begun.
    NotYetValid {
        /// The start of its validity.
        not_before: SystemTime,
        /// The time it was checked at.
        now: SystemTime,
    },
    /// The certificate does not name the host that was asked for.
    WrongName {
        /// The server name the client asked for (SNI and verification).
        asked: String,
        /// The names the certificate is valid for (its subjectAltName DNS names
        /// and IP addresses; its CN when it is directly trusted and has none).
        valid: Vec<String>,
    },
    /// The certificate was not signed by any trust root.
    UnknownIssuer,
    /// The peer presented a CA certificate (`CA:TRUE`, as `openssl req -x509`
    /// makes) as its own, and that certificate is not one of the trust roots.
    CaNotTrusted {
        /// The certificate's subject.
        subject: String,
    },
    /// The certificate's fingerprint is not among the pinned ones.
    NotPinned,
    /// A signature in the chain does not verify.
    BadSignature,
    /// The certificate was revoked.
    Revoked,
    /// The certificate cannot be parsed.
    BadEncoding,
    /// Anything else, as the TLS library words it.
    Other(String),
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Expired { not_after, now } => write!(
                f,
                "the certificate expired: valid until {}, it is now {}",
                Utc(*not_after),
                Utc(*now)
            ),
            CertError::NotYetValid { not_before, now } => write!(
                f,
                "the certificate is not valid yet: valid from {}, it is now {}",
                Utc(*not_before),
                Utc(*now)
            ),
            CertError::WrongName { asked, valid } if valid.is_empty() => write!(
                f,
                "the certificate names no host (no DNS name or IP address in its \
                 subjectAltName), so it is not valid for {asked:?}"
            ),
            CertError::WrongName { asked, valid } => write!(
                f,
                "the certificate is valid for {}, not for {asked:?}",
                valid.join(", ")
            ),
            CertError::UnknownIssuer => f.write_str(
                "unknown issuer: the certificate was not signed by any of the trust roots \
                 (give its CA, or the certificate itself, as a trust root)",
            ),
            CertError::CaNotTrusted { subject } => write!(
                f,
                "the peer presented a self-signed CA certificate ({subject}) not given as \
                 trusted: give that certificate as a trust root to accept it"
            ),
            CertError::NotPinned => {
                f.write_str("the certificate's fingerprint is not among the pinned ones")
            }
            CertError::BadSignature => {
                f.write_str("a signature on the certificate does not verify")
            }
            CertError::Revoked => f.write_str("the certificate was revoked"),
            CertError::BadEncoding => f.write_str("the certificate cannot be parsed"),
            CertError::Other(why) => write!(f, "the certificate was refused: {why}"),
        }
    }
}

impl std::error::Error for CertError {}

impl CertError {
    /// The certificate error inside a rustls error, if it is one.
    pub(crate) fn from_rustls(e: &rustls::Error) -> Option<CertError> {
        let rustls::Error::InvalidCertificate(e) = e else {
            return None;
        };
        Some(match e {
            CertificateError::ExpiredContext { time, not_after } => CertError::Expired {
                not_after: system(*not_after),
                now: system(*time),
            },
            CertificateError::NotValidYetContext { time, not_before } => CertError::NotYetValid {
                not_before: system(*not_before),
                now: system(*time),
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => CertError::WrongName {
                asked: name(expected),
                valid: presented.clone(),
            },
            CertificateError::UnknownIssuer => CertError::UnknownIssuer,
            CertificateError::ApplicationVerificationFailure => CertError::NotPinned,
            CertificateError::BadSignature => CertError::BadSignature,
            CertificateError::Revoked => CertError::Revoked,
            CertificateError::BadEncoding => CertError::BadEncoding,
            CertificateError::Other(other) => match other.0.downcast_ref::<CertError>() {
                Some(ours) => ours.clone(),
                None => CertError::Other(format!("{:?}", other.0)),
            },
            other => CertError::Other(format!("{other:?}")),
        })
    }

    /// As a rustls error, for a verifier to return; the alert sent is
    /// BadCertificate.
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
            self,
        ))))
    }
}

fn system(t: UnixTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs())
}

/// A server name as the user wrote it.
pub(crate) fn name(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// A time written as `2025-01-31 23:59:59 UTC`.
struct Utc(SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self.0.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Days to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let at = |s| Utc(SystemTime::UNIX_EPOCH + Duration::from_secs(s)).to_string();
        assert_eq!(at(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(at(1_767_225_599), "2025-12-31 23:59:59 UTC");
    }
}
