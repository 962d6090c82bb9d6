//! The certificate a controller replica serves right now. Listeners ask it on every
//! handshake, so a rotated certificate is served to the next connection without a restart,
//! while connections already open keep theirs.

use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsError;
use super::issue::facts;

/// What is installed: the key for handshakes, and the PEMs for those who hand them on.
struct Installed {
    key: Arc<CertifiedKey>,
    cert_pem: String,
    ca_pem: String,
}

#[derive(Default)]
pub struct CertStore {
    installed: RwLock<Option<Installed>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("ready", &self.ready()).finish()
    }
}

impl CertStore {
    /// Installs a serving certificate, its key and the CA that clients should trust.
    /// Returns the certificate's expiry (Unix seconds), or an error that leaves the
    /// current certificate in place.
    pub fn install(&self, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<i64, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("serving certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError::Pem("no certificate in the serving certificate PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        let not_after = facts(cert_pem).map_err(|e| TlsError::Pem(e.to_string()))?.not_after;
        let installed = Installed {
            key: Arc::new(CertifiedKey::new(chain, signer)),
            cert_pem: cert_pem.to_owned(),
            ca_pem: ca_pem.to_owned(),
        };
        *self.installed.write().unwrap_or_else(|e| e.into_inner()) = Some(installed);
        Ok(not_after)
    }

    pub fn ready(&self) -> bool {
        self.installed.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// The CA bundle (PEM) that sidecars and the API server must trust.
    pub fn ca_pem(&self) -> Option<String> {
        self.installed.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.ca_pem.clone())
    }

    /// The serving certificate (PEM) in use.
    pub fn cert_pem(&self) -> Option<String> {
        self.installed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.cert_pem.clone())
    }

    /// A server config that asks this store for the certificate on every handshake.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None until the first certificate is installed: the handshake fails, which is
        // what a client should see from a replica that has nothing to prove itself with.
        self.0.installed.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::tls::issue::{CA_VALIDITY, SERVING_VALIDITY, new_ca, serving};

    #[test]
    fn installs_a_pair_and_refuses_garbage_keeping_the_old_one() {
        let store = CertStore::default();
        assert!(!store.ready());
        let now = SystemTime::now();
        let ca = new_ca(now, CA_VALIDITY).unwrap();
        let leaf = serving(&ca, &["localhost".into()], now, SERVING_VALIDITY).unwrap();
        let expiry = store.install(&leaf.cert_pem, &leaf.key_pem, &ca.cert_pem).unwrap();
        assert_eq!(expiry, facts(&leaf.cert_pem).unwrap().not_after);
        assert_eq!(store.ca_pem().as_deref(), Some(ca.cert_pem.as_str()));
        assert!(store.install("garbage", &leaf.key_pem, &ca.cert_pem).is_err());
        assert!(store.install(&leaf.cert_pem, "garbage", &ca.cert_pem).is_err());
        assert_eq!(store.cert_pem().as_deref(), Some(leaf.cert_pem.as_str()));
    }
}
