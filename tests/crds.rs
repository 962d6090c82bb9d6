//! `crds/` must be exactly what `portcullis crds` prints, so that the CRDs users install
//! never drift from the types the code reads.

use std::process::Command;

use portcullis::api::schema::recognised_format;

#[test]
fn crds_folder_matches_the_types() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/portcullis.dev.yaml"))
            .expect("crds/portcullis.dev.yaml exists");
    assert!(
        committed == portcullis::api::crds_yaml(),
        "crds/portcullis.dev.yaml is stale: run `cargo run -- crds > crds/portcullis.dev.yaml`"
    );
}

#[test]
fn crds_subcommand_prints_both_definitions() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis")).arg("crds").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, portcullis::api::crds_yaml());
    let docs: Vec<serde_yaml::Value> =
        text.split("\n---\n").map(|d| serde_yaml::from_str(d).unwrap()).collect();
    let names: Vec<&str> = docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["upstreampolicies.portcullis.dev", "maintenancewindows.portcullis.dev"]);
    for doc in &docs {
        let version = &doc["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(doc["spec"]["scope"], "Namespaced");
        assert!(version["subresources"]["status"].is_mapping());
        let columns = version["additionalPrinterColumns"].as_sequence().unwrap();
        assert!(columns.iter().any(|c| c["name"] == "Accepted"));
    }
    assert_eq!(docs[0]["spec"]["names"]["shortNames"][0], "upol");
    assert_eq!(docs[1]["spec"]["names"]["shortNames"][0], "mw");
}

/// Every field shows something in `kubectl explain`.
#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, schema: &serde_yaml::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_mapping()) {
            for (name, sub) in props {
                let path = format!("{path}.{}", name.as_str().unwrap());
                if sub.get("description").is_none() && !path.ends_with(".metadata") {
                    missing.push(path.clone());
                }
                walk(&path, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for doc in portcullis::api::crds_yaml().split("\n---\n") {
        let doc: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
        let kind = doc["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let schema = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&kind, schema, &mut missing);
    }
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

/// The schema nodes directly under `schema`, by the keywords that hold schemas; values such
/// as `default` or `example` are data and are not walked.
fn subschemas(schema: &serde_yaml::Value) -> Vec<(String, &serde_yaml::Value)> {
    let mut out = Vec::new();
    for key in ["properties", "patternProperties"] {
        if let Some(props) = schema.get(key).and_then(|p| p.as_mapping()) {
            for (name, sub) in props {
                out.push((format!(".{}", name.as_str().unwrap()), sub));
            }
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = schema.get(key).filter(|s| s.is_mapping()) {
            out.push((format!("<{key}>"), sub));
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in
            schema.get(key).and_then(|s| s.as_sequence()).into_iter().flatten().enumerate()
        {
            out.push((format!("<{key}[{i}]>"), sub));
        }
    }
    out
}

/// Calls `visit` on every schema node of both CRDs with its path, such as
/// `UpstreamPolicy.spec.overload.maxInFlight`.
fn each_schema_node(mut visit: impl FnMut(&str, &serde_yaml::Value)) {
    fn walk(
        path: &str,
        schema: &serde_yaml::Value,
        visit: &mut dyn FnMut(&str, &serde_yaml::Value),
    ) {
        visit(path, schema);
        for (step, sub) in subschemas(schema) {
            walk(&format!("{path}{step}"), sub, visit);
        }
    }
    for doc in portcullis::api::crds_yaml().split("\n---\n") {
        let doc: serde_yaml::Value = serde_yaml::from_str(doc).unwrap();
        let kind = doc["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        walk(&kind, &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"], &mut visit);
    }
}

/// `kubectl apply -f crds/` prints `Warning: unrecognized format` for any format the API
/// server does not know for the schema's type (the list and its source are in
/// `portcullis::api::schema`); the generated CRDs, every node of them, carry none.
#[test]
fn crds_use_only_formats_kubernetes_recognises() {
    let mut unrecognised = Vec::new();
    let mut seen = Vec::new();
    each_schema_node(|path, schema| {
        let Some(format) = schema.get("format") else { return };
        let format = format.as_str().unwrap_or_else(|| panic!("{path}: format {format:?}"));
        let known = recognised_format(schema.get("type").and_then(|t| t.as_str()), format);
        if known {
            seen.push(format!("{path}: {format}"));
        } else {
            unrecognised.push(format!("{path}: {format}"));
        }
    });
    assert!(unrecognised.is_empty(), "formats Kubernetes does not recognise: {unrecognised:?}");
    // The walk reaches real formats, so an empty list above means something.
    assert!(seen.contains(&"MaintenanceWindow.spec.start: date-time".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&"UpstreamPolicy.status.observedGeneration: int64".to_owned()),
        "{seen:?}"
    );
}

/// Unsigned fields lost their `uint32` format but keep its range, which the API server
/// enforces and the controller's `u32` relies on.
#[test]
fn unsigned_fields_keep_their_range() {
    let mut bounds = std::collections::BTreeMap::new();
    each_schema_node(|path, schema| {
        if schema.get("type").and_then(|t| t.as_str()) == Some("integer") {
            let num = |key: &str| schema.get(key).and_then(|v| v.as_f64());
            bounds.insert(path.to_owned(), (num("minimum"), num("maximum")));
        }
    });
    let u32_max = Some(f64::from(u32::MAX));
    for path in [
        "UpstreamPolicy.spec.overload.maxInFlight",
        "UpstreamPolicy.spec.overload.queue.size",
        "UpstreamPolicy.spec.overload.adaptive.minLimit",
        "UpstreamPolicy.spec.overload.adaptive.maxLimit",
    ] {
        assert_eq!(bounds[path], (Some(0.0), u32_max), "{path}");
    }
    assert_eq!(
        bounds["UpstreamPolicy.spec.validation.maxResponseHeaderBytes"],
        (Some(1024.0), Some(1_048_576.0))
    );
    assert_eq!(
        bounds["UpstreamPolicy.spec.routes<items>.validation.maxResponseHeaderBytes"],
        (Some(1024.0), Some(1_048_576.0))
    );
}

/// `kubectl explain` shows descriptions as written: a doc comment's line wraps must not
/// reach it as breaks in mid-sentence. Only paragraph breaks and list items stay.
#[test]
fn descriptions_are_paragraphs() {
    let mut broken = Vec::new();
    let mut descriptions = std::collections::BTreeMap::new();
    each_schema_node(|path, schema| {
        let Some(text) = schema.get("description").and_then(|d| d.as_str()) else { return };
        descriptions.insert(path.to_owned(), text.to_owned());
        let mut rest = text;
        while let Some(at) = rest.find('\n') {
            let after = &rest[at + 1..];
            if let Some(next) = after.strip_prefix('\n') {
                rest = next;
            } else if after.starts_with("- ") {
                rest = after;
            } else {
                broken.push(format!("{path}: {text:?}"));
                break;
            }
        }
    });
    assert!(broken.is_empty(), "descriptions with a line break inside a sentence: {broken:#?}");
    // A doc comment wrapped over two lines in the source reads as one sentence.
    assert_eq!(
        descriptions["UpstreamPolicy.spec.timeouts.connect"],
        "Longest wait for the app to accept a TCP connection; past it the client gets 504 \
         with Proxy-Status error `connection_timeout`."
    );
}
