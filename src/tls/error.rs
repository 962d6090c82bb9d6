//! Why certificates could not be read.

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("unreadable PEM: {0}")]
    Pem(String),
}
