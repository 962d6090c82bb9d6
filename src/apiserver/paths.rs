//! Relative paths inside a volume (`validatePathNoBacksteps`, `validateLocalDescendingPath`,
//! `ValidateLocalNonReservedPath` in `pkg/apis/core/validation/validation.go`).

use super::field::{FieldError, invalid, s};

/// `validatePathNoBacksteps`.
pub(crate) fn validate_no_backsteps(target: &str, path: &str, out: &mut Vec<FieldError>) {
    if target.split('/').any(|part| part == "..") {
        out.push(invalid(path, s(target), "must not contain '..'"));
    }
}

/// `validateLocalDescendingPath`.
pub(crate) fn validate_local_descending_path(target: &str, path: &str, out: &mut Vec<FieldError>) {
    if target.starts_with('/') {
        out.push(invalid(path, s(target), "must be a relative path"));
    }
    validate_no_backsteps(target, path, out);
}

/// `ValidateLocalNonReservedPath`.
pub(crate) fn validate_local_non_reserved_path(
    target: &str,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    validate_local_descending_path(target, path, out);
    if target.starts_with("..") && !target.starts_with("../") {
        out.push(invalid(path, s(target), "must not start with '..'"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn local_paths() {
        let mut out = Vec::new();
        validate_local_non_reserved_path("/abs", "p", &mut out);
        validate_local_non_reserved_path("a/../b", "p", &mut out);
        validate_local_non_reserved_path("..dots", "p", &mut out);
        assert_eq!(
            shown(out),
            [
                r#"p: Invalid value: "/abs": must be a relative path"#,
                r#"p: Invalid value: "a/../b": must not contain '..'"#,
                r#"p: Invalid value: "..dots": must not start with '..'"#,
            ]
        );
    }
}
