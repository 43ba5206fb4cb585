//! DTLS-SRTP (RFC 5764): the protection profiles a DTLS handshake may settle
//! and the keys it exports for the media path.

use std::fmt;
use std::str::FromStr;

use super::tls_error::TlsError;

/// An SRTP protection profile negotiated by the DTLS `use_srtp` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpProfile {
    /// `SRTP_AES128_CM_SHA1_80` (RFC 5764): AES-128 counter mode, an 80-bit
    /// HMAC-SHA1 tag. Every SRTP stack speaks it.
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714).
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (RFC 7714).
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Every profile tether can negotiate, in the order a server prefers them.
    pub const ALL: [SrtpProfile; 3] = [
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmSha1_80,
    ];

    /// The name RFC 5764 and OpenSSL (`-use_srtp`) give it.
    pub fn as_str(self) -> &'static str {
        match self {
            SrtpProfile::Aes128CmSha1_80 => "SRTP_AES128_CM_SHA1_80",
            SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            SrtpProfile::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }

    /// Bytes of one master key and one master salt.
    pub fn key_and_salt_len(self) -> (usize, usize) {
        match self {
            SrtpProfile::Aes128CmSha1_80 => (16, 14),
            SrtpProfile::AeadAes128Gcm => (16, 12),
            SrtpProfile::AeadAes256Gcm => (32, 12),
        }
    }

    pub(crate) fn from_dimpl(p: dimpl::SrtpProfile) -> Option<SrtpProfile> {
        match p {
            dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(SrtpProfile::Aes128CmSha1_80),
            dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
            dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
            _ => None,
        }
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SrtpProfile {
    type Err = TlsError;

    /// The RFC name, in any case (`SRTP_AES128_CM_SHA1_80`).
    fn from_str(s: &str) -> Result<SrtpProfile, TlsError> {
        SrtpProfile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| TlsError::BadSrtpProfile(s.to_string()))
    }
}

/// The SRTP master keys and salts a DTLS-SRTP handshake exported (RFC 5764
/// section 4.2): `client_key | server_key | client_salt | server_salt`, as
/// the exporter labelled `EXTRACTOR-dtls_srtp` returns them.
///
/// ```
/// use tether::{SrtpKeys, SrtpProfile};
///
/// let material: Vec<u8> = (0..60).collect();
/// let keys = SrtpKeys::new(SrtpProfile::Aes128CmSha1_80, material.clone()).unwrap();
/// assert_eq!(keys.client_key(), &material[..16]);
/// assert_eq!(keys.server_key(), &material[16..32]);
/// assert_eq!(keys.client_salt(), &material[32..46]);
/// assert_eq!(keys.server_salt(), &material[46..]);
/// assert!(SrtpKeys::new(SrtpProfile::Aes128CmSha1_80, vec![0; 59]).is_none());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    profile: SrtpProfile,
    material: Vec<u8>,
}

impl SrtpKeys {
    /// Keys for `profile` from the exported `material`; `None` if its length
    /// is not the profile's (two keys and two salts).
    pub fn new(profile: SrtpProfile, material: Vec<u8>) -> Option<SrtpKeys> {
        let (key, salt) = profile.key_and_salt_len();
        (material.len() == 2 * (key + salt)).then_some(SrtpKeys { profile, material })
    }

    /// The profile they are for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The exported bytes, whole (what `openssl -keymatexport` prints).
    pub fn as_bytes(&self) -> &[u8] {
        &self.material
    }

    fn part(&self, n: usize) -> &[u8] {
        let (key, salt) = self.profile.key_and_salt_len();
        let bounds = [0, key, 2 * key, 2 * key + salt, 2 * (key + salt)];
        &self.material[bounds[n]..bounds[n + 1]]
    }

    /// The client's master key (it protects what the client sends).
    pub fn client_key(&self) -> &[u8] {
        self.part(0)
    }

    /// The server's master key.
    pub fn server_key(&self) -> &[u8] {
        self.part(1)
    }

    /// The client's master salt.
    pub fn client_salt(&self) -> &[u8] {
        self.part(2)
    }

    /// The server's master salt.
    pub fn server_salt(&self) -> &[u8] {
        self.part(3)
    }
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
