//! The 422 answer: `apierrors.NewInvalid` (`k8s.io/apimachinery/pkg/api/errors/errors.go`)
//! serialized as a `metav1.Status` (`pkg/apis/meta/v1/types.go`), keys in Go's field order.

use serde_json::{Map, Value, json};

use super::field::{FieldError, go_quote};

/// `NewInvalid(schema.GroupKind{group, kind}, name, errors)` as the API server writes it.
pub fn invalid_status(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Value {
    // GroupKind.String(): "Kind" for the core group, else "Kind.group".
    let qualified = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
    let message = match aggregate(errors) {
        None => format!("{qualified} {} is invalid", go_quote(name)),
        Some(all) => format!("{qualified} {} is invalid: {all}", go_quote(name)),
    };
    // Every cause is listed, repeats included; only the message drops repeats.
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| {
            let mut cause = Map::new();
            cause.insert("reason".into(), e.reason().into());
            cause.insert("message".into(), e.body().into());
            if !e.field.is_empty() {
                cause.insert("field".into(), e.field.clone().into());
            }
            Value::Object(cause)
        })
        .collect();
    let mut details = Map::new();
    for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
        if !value.is_empty() {
            details.insert(key.into(), value.into());
        }
    }
    if !causes.is_empty() {
        details.insert("causes".into(), Value::Array(causes));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Invalid",
        "details": Value::Object(details),
        "code": 422,
    })
}

/// `ErrorList.ToAggregate().Error()`: repeats dropped, one message bare, more in brackets.
fn aggregate(errors: &[FieldError]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let message = e.to_string();
        if !seen.contains(&message) {
            seen.push(message);
        }
    }
    match seen.len() {
        0 => None,
        1 => seen.pop(),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::field::{invalid, required, s};
    use super::*;

    #[test]
    fn one_error_is_bare_and_the_body_is_the_cause() {
        let e = invalid("spec.containers[0].ports[0].name", s("HTTP"), "must contain only...");
        let status = invalid_status("", "Pod", "web", &[e]);
        assert_eq!(
            status.to_string(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \"web\" is invalid: spec.containers[0].ports[0].name: Invalid value: \"HTTP\": must contain only...","reason":"Invalid","details":{"name":"web","kind":"Pod","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"HTTP\": must contain only...","field":"spec.containers[0].ports[0].name"}]},"code":422}"#
        );
    }

    #[test]
    fn several_errors_are_bracketed_and_repeats_leave_the_message_only() {
        let a = required("spec.containers[0].image", "");
        let b = required("spec.containers", "");
        let status = invalid_status("apps", "Deployment", "", &[a.clone(), b.clone(), a]);
        assert_eq!(
            status["message"],
            r#"Deployment.apps "" is invalid: [spec.containers[0].image: Required value, spec.containers: Required value]"#
        );
        assert_eq!(status["details"]["causes"].as_array().unwrap().len(), 3);
        assert_eq!(status["details"]["group"], "apps");
        assert!(status["details"].get("name").is_none());
    }

    #[test]
    fn no_errors_still_say_invalid() {
        let status = invalid_status("", "Pod", "web", &[]);
        assert_eq!(status["message"], r#"Pod "web" is invalid"#);
        assert!(status["details"].get("causes").is_none());
    }
}
