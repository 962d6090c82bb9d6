//! The one error of checking a resource: which field, and what is wrong with it.

/// A field of a resource that holds a value it may not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidField { field: field.into(), message: message.into() }
    }
}
