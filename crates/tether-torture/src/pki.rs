//! TLS for the scenarios: one self-signed certificate for 127.0.0.1 and
//! localhost, made fresh each run, which the clients trust directly.

use tether::TlsContext;

use crate::check::Violations;

/// The server's context and the clients'.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) server: TlsContext,
    pub(crate) client: TlsContext,
}

impl Pki {
    pub(crate) fn new() -> Result<Pki, String> {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .map_err(|e| format!("certificate: {e}"))?;
        let cert_pem = made.cert.pem();
        let key_pem = made.signing_key.serialize_pem();
        let server = TlsContext::builder()
            .certificate_pem(cert_pem.as_bytes(), key_pem.as_bytes())
            .and_then(|b| b.build())
            .map_err(|e| format!("server TLS context: {e}"))?;
        let client = TlsContext::builder()
            .roots_pem(cert_pem.as_bytes())
            .and_then(|b| b.build())
            .map_err(|e| format!("client TLS context: {e}"))?;
        Ok(Pki { server, client })
    }

    /// The run's PKI; `None` when it could not be made, which is counted as
    /// the run's setup violation.
    pub(crate) fn for_run(v: &mut Violations) -> Option<Pki> {
        Pki::new().map_err(|e| v.add("setup", &e)).ok()
    }
}
