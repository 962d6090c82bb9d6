//! Issuing the controller's CA and serving certificates (rcgen), and reading back what a
//! PEM certificate says (x509-parser), so that rotation is decided on the certificate
//! itself rather than on bookkeeping beside it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// The CA outlives many serving certificates: sidecars trust it, so replacing it means
/// re-injecting every pod.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Serving certificates are short-lived and replaced at two thirds of their life.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Clocks of API servers and nodes may lag behind ours.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot issue a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("not a readable PEM certificate: {0}")]
    Parse(String),
    #[error("the certificate's dates are out of range")]
    Time,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Pair {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// What a certificate says about itself, as much as rotation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names and IP addresses, as text.
    pub sans: BTreeSet<String>,
}

impl Facts {
    /// Past two thirds of its life, or not yet valid (a clock stepped back).
    pub fn due_for_rotation(&self, now: SystemTime) -> bool {
        let now = unix(now);
        let life = self.not_after - self.not_before;
        now < self.not_before || now >= self.not_before + life * 2 / 3
    }
}

/// A new self-signed CA.
pub fn new_ca(now: SystemTime, validity: Duration) -> Result<Pair, IssueError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "portcullis CA");
    params.distinguished_name.push(DnType::OrganizationName, "portcullis.dev");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, now, validity)?;
    let cert = params.self_signed(&key)?;
    Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A serving certificate for `sans` (DNS names or IP addresses), signed by `ca`.
pub fn serving(
    ca: &Pair,
    sans: &[String],
    now: SystemTime,
    validity: Duration,
) -> Result<Pair, IssueError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    let subject = sans.first().map(String::as_str).unwrap_or("portcullis");
    params.distinguished_name.push(DnType::CommonName, subject);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, now, validity)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Reads the dates and names of the first certificate in `pem`.
pub fn facts(pem: &str) -> Result<Facts, IssueError> {
    let (_, pem) = parse_x509_pem(pem.as_bytes()).map_err(|e| IssueError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| IssueError::Parse(e.to_string()))?;
    let validity = cert.validity();
    let mut sans = BTreeSet::new();
    if let Ok(Some(names)) = cert.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.insert((*dns).to_owned());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Facts {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        sans,
    })
}

/// Whether `cert_pem` was signed by the key of `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |pem: &str| parse_x509_pem(pem.as_bytes()).ok().map(|(_, p)| p);
    let (Some(cert), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else { return false };
    let (Ok(cert), Ok(ca)) = (cert.parse_x509(), ca.parse_x509()) else { return false };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn set_validity(
    params: &mut CertificateParams,
    now: SystemTime,
    validity: Duration,
) -> Result<(), IssueError> {
    let start = unix(now) - BACKDATE.as_secs() as i64;
    let end = unix(now) + validity.as_secs() as i64;
    params.not_before = OffsetDateTime::from_unix_timestamp(start).map_err(|_| IssueError::Time)?;
    params.not_after = OffsetDateTime::from_unix_timestamp(end).map_err(|_| IssueError::Time)?;
    Ok(())
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> Vec<String> {
        vec!["portcullis.portcullis-system.svc".into(), "127.0.0.1".into()]
    }

    #[test]
    fn a_serving_certificate_names_its_hosts_and_is_signed_by_the_ca() {
        let now = SystemTime::now();
        let ca = new_ca(now, CA_VALIDITY).unwrap();
        let leaf = serving(&ca, &sans(), now, SERVING_VALIDITY).unwrap();
        let facts = facts(&leaf.cert_pem).unwrap();
        assert_eq!(facts.sans, sans().into_iter().collect());
        assert_eq!(
            facts.not_after - facts.not_before,
            (SERVING_VALIDITY + BACKDATE).as_secs() as i64
        );
        assert!(signed_by(&leaf.cert_pem, &ca.cert_pem));
        let other = new_ca(now, CA_VALIDITY).unwrap();
        assert!(!signed_by(&leaf.cert_pem, &other.cert_pem));
    }

    #[test]
    fn rotation_is_due_at_two_thirds_of_the_life() {
        let facts = Facts { not_before: 1_000, not_after: 4_000, sans: BTreeSet::new() };
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert!(!facts.due_for_rotation(at(1_000)));
        assert!(!facts.due_for_rotation(at(2_999)));
        assert!(facts.due_for_rotation(at(3_000)));
        assert!(facts.due_for_rotation(at(999)), "a clock that stepped back");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(facts("not a pem"), Err(IssueError::Parse(_))));
        assert!(!signed_by("x", "y"));
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let pair = Pair { cert_pem: "C".into(), key_pem: "SECRET".into() };
        assert!(!format!("{pair:?}").contains("SECRET"));
    }
}
