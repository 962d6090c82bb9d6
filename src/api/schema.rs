//! Makes schemars' output read well to Kubernetes and to `kubectl explain`.
//!
//! schemars writes Rust's integer widths as formats (`uint32`) that the API server does not
//! recognise (it warns on `kubectl apply`), and keeps doc comments' line wraps as hard breaks
//! in the middle of sentences. Each CRD's spec and status types apply [`for_kubernetes`] to
//! their whole schema with `#[schemars(transform = ...)]`, so `crd()` itself is clean.

use schemars::Schema;
use schemars::transform::transform_subschemas;
use serde_json::{Number, Value};

/// String formats the API server validates (apiextensions-apiserver
/// `pkg/apiserver/validation/formats.go`, the set since Kubernetes 1.0; `k8s-short-name` and
/// `k8s-long-name` are left out as they need 1.34), written without dashes as it compares them.
const STRING_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "quantity",
];

/// Whether the API server recognises `format` on a schema of type `ty` (`None`: untyped).
/// Integers take only int32 and int64, numbers only float and double, other types none.
pub fn recognised_format(ty: Option<&str>, format: &str) -> bool {
    match ty {
        None | Some("string") => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        Some("integer") => matches!(format, "int32" | "int64"),
        Some("number") => matches!(format, "float" | "double"),
        Some(_) => false,
    }
}

/// Applies [`tidy`] to a schema and all its subschemas.
pub(crate) fn for_kubernetes(schema: &mut Schema) {
    tidy(schema);
    transform_subschemas(&mut for_kubernetes, schema);
}

/// Fixes one schema node: its format and its description.
fn tidy(schema: &mut Schema) {
    let Some(node) = schema.as_object_mut() else {
        return;
    };
    let ty = match node.get("type") {
        Some(Value::String(t)) => Some(t.clone()),
        // `["integer", "null"]`: the one non-null type is the one the server checks.
        Some(Value::Array(types)) => {
            types.iter().filter_map(Value::as_str).find(|t| *t != "null").map(str::to_owned)
        }
        _ => None,
    };
    if let Some(format) = node.get("format").and_then(Value::as_str).map(str::to_owned)
        && !recognised_format(ty.as_deref(), &format)
    {
        node.remove("format");
        // The width that the format said still binds what the controller can read: say it
        // as bounds, which the API server enforces, unless the field already narrows them.
        if let Some((min, max)) = integer_bounds(&format) {
            node.entry("minimum").or_insert_with(|| Value::Number(min));
            if let Some(max) = max {
                node.entry("maximum").or_insert_with(|| Value::Number(max));
            }
        }
    }
    if let Some(Value::String(text)) = node.get_mut("description") {
        *text = reflow(text);
    }
}

/// The range of one of schemars' integer formats; no maximum where the API server's own
/// int64 is the narrower bound.
fn integer_bounds(format: &str) -> Option<(Number, Option<Number>)> {
    let (min, max): (i64, Option<i64>) = match format {
        "int8" => (i8::MIN.into(), Some(i8::MAX.into())),
        "int16" => (i16::MIN.into(), Some(i16::MAX.into())),
        "uint8" => (0, Some(u8::MAX.into())),
        "uint16" => (0, Some(u16::MAX.into())),
        "uint32" => (0, Some(u32::MAX.into())),
        "uint64" | "uint128" | "uint" => (0, None),
        _ => return None,
    };
    Some((min.into(), max.map(Number::from)))
}

/// Joins a doc comment's wrapped lines into paragraphs. Blank-line paragraph breaks stay, and
/// so do the breaks before `- ` list items.
pub(crate) fn reflow(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            let mut out = String::with_capacity(paragraph.len());
            for (i, line) in paragraph.split('\n').enumerate() {
                let line = line.trim_end();
                if i == 0 {
                    out.push_str(line);
                } else if line.trim_start().starts_with("- ") {
                    out.push('\n');
                    out.push_str(line);
                } else {
                    out.push(' ');
                    out.push_str(line.trim_start());
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use schemars::json_schema;

    use super::*;

    #[test]
    fn reflow_joins_wraps_and_keeps_paragraphs_and_list_items() {
        assert_eq!(reflow("one line"), "one line");
        assert_eq!(reflow("wrapped\nsentence."), "wrapped sentence.");
        assert_eq!(reflow("first\nparagraph.\n\nsecond\none."), "first paragraph.\n\nsecond one.");
        assert_eq!(
            reflow("Pick one:\n- a, wrapped\n  here\n- b"),
            "Pick one:\n- a, wrapped here\n- b"
        );
    }

    #[test]
    fn unsigned_formats_become_bounds() {
        let mut schema = json_schema!({
            "type": "object",
            "description": "A\nB",
            "default": {"format": "uint32"},
            "properties": {
                "count": {"type": "integer", "format": "uint32", "minimum": 0},
                "narrow": {"type": ["integer", "null"], "format": "uint32", "minimum": 1024, "maximum": 2048},
                "big": {"type": "integer", "format": "uint64", "minimum": 0},
                "byte": {"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255},
                "generation": {"type": "integer", "format": "int64"},
                "when": {"type": "string", "format": "date-time"},
                "list": {"type": "array", "items": {"type": "integer", "format": "uint16"}},
            },
        });
        for_kubernetes(&mut schema);
        assert_eq!(
            schema,
            json_schema!({
                "type": "object",
                "description": "A B",
                // Values are not schemas: a default's keys stay as they are.
                "default": {"format": "uint32"},
                "properties": {
                    "count": {"type": "integer", "minimum": 0, "maximum": 4294967295u32},
                    "narrow": {"type": ["integer", "null"], "minimum": 1024, "maximum": 2048},
                    "big": {"type": "integer", "minimum": 0},
                    "byte": {"type": "integer", "minimum": 0, "maximum": 255},
                    "generation": {"type": "integer", "format": "int64"},
                    "when": {"type": "string", "format": "date-time"},
                    "list": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 65535}},
                },
            })
        );
    }

    #[test]
    fn recognised_formats_follow_the_api_server() {
        assert!(recognised_format(Some("string"), "date-time"));
        assert!(recognised_format(None, "uuid"));
        assert!(recognised_format(Some("integer"), "int32"));
        assert!(!recognised_format(Some("integer"), "uint32"));
        assert!(!recognised_format(Some("string"), "int64"));
        assert!(!recognised_format(Some("boolean"), "byte"));
        assert!(recognised_format(Some("number"), "double"));
    }
}
