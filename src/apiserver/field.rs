//! One field error as `k8s.io/apimachinery/pkg/util/validation/field` builds and prints it
//! (`errors.go`), and the field paths of `path.go` (`a.b[0][key]`).

use std::fmt;

/// Go's `field.ErrorType`; the string each one carries is the `CauseType` of a Status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    /// The `CauseType` (`details.causes[].reason`).
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The words that open the message (`ErrorType.String()`).
    pub fn words(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// The offending value, as `ErrorBody` renders it: Go prints a `string` (or a named string
/// type without a `String()` method, through `%#v`) quoted, integers and booleans plainly,
/// and anything with a `String()` method (a `ResourceName`, a `Quantity`) unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A value Go prints through its `String()` method, verbatim.
    Stringer(String),
    /// A nil pointer or interface.
    Null,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::Stringer(s) => f.write_str(s),
            BadValue::Null => f.write_str("null"),
        }
    }
}

/// One validation failure: Go's `*field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub type_: ErrorType,
    /// The JSON path, e.g. `spec.initContainers[0].ports[1].name`.
    pub field: String,
    /// None where Go passes its `omitValue` (only `TooMany` without a count).
    pub bad_value: Option<BadValue>,
    pub detail: String,
}

impl FieldError {
    pub fn reason(&self) -> &'static str {
        self.type_.reason()
    }

    /// Go's `ErrorBody()`: the message without the field.
    pub fn body(&self) -> String {
        let mut body = match (self.type_, &self.bad_value) {
            // These four never show the value, whatever was passed.
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _)
            | (ErrorType::Internal, _)
            | (_, None) => self.type_.words().to_owned(),
            (_, Some(value)) => format!("{}: {value}", self.type_.words()),
        };
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

pub(crate) fn invalid(field: &str, value: BadValue, detail: impl Into<String>) -> FieldError {
    FieldError {
        type_: ErrorType::Invalid,
        field: field.to_owned(),
        bad_value: Some(value),
        detail: detail.into(),
    }
}

pub(crate) fn required(field: &str, detail: impl Into<String>) -> FieldError {
    FieldError {
        type_: ErrorType::Required,
        field: field.to_owned(),
        bad_value: Some(BadValue::Str(String::new())),
        detail: detail.into(),
    }
}

pub(crate) fn forbidden(field: &str, detail: impl Into<String>) -> FieldError {
    FieldError {
        type_: ErrorType::Forbidden,
        field: field.to_owned(),
        bad_value: Some(BadValue::Str(String::new())),
        detail: detail.into(),
    }
}

pub(crate) fn duplicate(field: &str, value: BadValue) -> FieldError {
    FieldError {
        type_: ErrorType::Duplicate,
        field: field.to_owned(),
        bad_value: Some(value),
        detail: String::new(),
    }
}

pub(crate) fn not_found(field: &str, value: BadValue) -> FieldError {
    FieldError {
        type_: ErrorType::NotFound,
        field: field.to_owned(),
        bad_value: Some(value),
        detail: String::new(),
    }
}

/// `field.NotSupported`: the valid values quoted (`strconv.Quote`), in the order given.
pub(crate) fn not_supported(field: &str, value: BadValue, valid: &[&str]) -> FieldError {
    let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
    let detail = if valid.is_empty() {
        String::new()
    } else {
        format!("supported values: {}", quoted.join(", "))
    };
    FieldError {
        type_: ErrorType::NotSupported,
        field: field.to_owned(),
        bad_value: Some(value),
        detail,
    }
}

pub(crate) fn too_long(field: &str, max: usize) -> FieldError {
    FieldError {
        type_: ErrorType::TooLong,
        field: field.to_owned(),
        bad_value: Some(BadValue::Str(String::new())),
        detail: format!("must have at most {max} bytes"),
    }
}

pub(crate) fn s(value: &str) -> BadValue {
    BadValue::Str(value.to_owned())
}

/// `path.Child(name)`.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// `path.Index(i)` and `path.Key(k)`: both print as a bare subscript.
pub(crate) fn index(path: &str, i: impl fmt::Display) -> String {
    format!("{path}[{i}]")
}

/// Go's `strconv.Quote`. Printable characters stay; the rest are escaped as Go does.
/// Go decides "printable" with Unicode categories (L, M, N, P, S and the ASCII space);
/// std has no category tables, so outside ASCII this treats control, whitespace and the
/// common invisible format characters as unprintable, which covers what names hold.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn printable(c: char) -> bool {
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}')
        || matches!(c, '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_error_body() {
        let e = invalid("spec.containers[0].name", s("Web"), "bad");
        assert_eq!(e.to_string(), r#"spec.containers[0].name: Invalid value: "Web": bad"#);
        assert_eq!(e.reason(), "FieldValueInvalid");
        let e = required("spec.containers", "");
        assert_eq!(e.to_string(), "spec.containers: Required value");
        let e = forbidden("spec.x", "no");
        assert_eq!(e.to_string(), "spec.x: Forbidden: no");
        let e = duplicate("a[1].name", s("http"));
        assert_eq!(e.to_string(), r#"a[1].name: Duplicate value: "http""#);
        let e = not_supported("p", s("SCTPX"), &["SCTP", "TCP", "UDP"]);
        assert_eq!(
            e.to_string(),
            r#"p: Unsupported value: "SCTPX": supported values: "SCTP", "TCP", "UDP""#
        );
        let e = too_long("metadata.annotations", 262144);
        assert_eq!(e.to_string(), "metadata.annotations: Too long: must have at most 262144 bytes");
        let e = invalid("x", BadValue::Int(70000), "d");
        assert_eq!(e.body(), "Invalid value: 70000: d");
        let e = not_found("v", BadValue::Stringer("cpu".into()));
        assert_eq!(e.body(), "Not found: cpu");
    }

    #[test]
    fn quotes_as_go_does() {
        assert_eq!(go_quote("a\"b\\c\n\t"), r#""a\"b\\c\n\t""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("é大"), "\"é大\"");
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
        assert_eq!(go_quote("\u{7f}"), r#""\x7f""#);
    }

    #[test]
    fn paths_print_as_go_does() {
        assert_eq!(index(&child("spec", "containers"), 0), "spec.containers[0]");
        assert_eq!(index("metadata.annotations", "a/b"), "metadata.annotations[a/b]");
    }
}
