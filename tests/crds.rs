//! `crds/` must be exactly what `portcullis crds` prints, so that the CRDs users install
//! never drift from the types the code reads.

use std::process::Command;

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
