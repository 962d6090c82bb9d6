//! Property test for the injector against the API server's own Pod validation.
//!
//! Random pods that the API server accepts (`portcullis::apiserver` says so first, so a
//! generator that strays is caught too): DNS-1123 container names up to 63 characters,
//! several containers and init containers, native sidecars already there, named and
//! unnamed ports (port names up to the 15 characters the API server allows, unique in the
//! pod), TCP, UDP and SCTP, probes and lifecycle hooks of every handler kind reaching ports
//! by name and by number, volumes, env vars, annotations (sometimes `portcullis.dev/port`).
//! Each goes through the injector; a pod it injects must pass the API server's validation
//! as patched, and injecting that pod again must add nothing. A Service that reaches the
//! taken-over port with `appProtocol: kubernetes.io/h2c` changes the patch in the app's
//! protocol only (the sidecar's `--app-protocol` and the annotation's `appProtocol`). A mutation the injector
//! holds back as invalid is a failure here: it means the injector planned a bad pod.
//!
//! Pods have grace periods of every length (unset, 0, short, long), and now and then a
//! `portcullis.dev/stop-delay`. The app container's own preStop hook is kept (but for its
//! port, moved to the number when it named the taken-over port) and no hook is added; else
//! it gets ours when the grace period is above 0, with the token its sidecar has. Every
//! other container's hooks stay as they were; the stop delay stays under the grace period.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use portcullis::apiserver::validate_pod;
use portcullis::inject::{
    InjectConfig, Injection, Outcome, PreStop, SkipReason, StopToken, mutate,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn token() -> StopToken {
    TOKEN.parse().unwrap()
}

/// A DNS-1123 label of 1..=max characters: a-z0-9 and '-', alphanumeric at both ends.
fn label(max: usize) -> impl Strategy<Value = String> {
    let max = max.max(1);
    (1..=max).prop_flat_map(|len| {
        proptest::collection::vec(
            prop_oneof![
                8 => proptest::char::range('a', 'z'),
                2 => proptest::char::range('0', '9'),
                1 => Just('-')
            ],
            len,
        )
        .prop_map(|chars| {
            let mut name: String = chars.into_iter().collect();
            let fix = |c: char| if c == '-' { 'x' } else { c };
            let first = fix(name.remove(0));
            name.insert(0, first);
            if let Some(last) = name.pop() {
                name.push(fix(last));
            }
            name
        })
    })
}

/// An IANA service name: at most 15 characters, at least one letter, no "--".
fn port_name() -> impl Strategy<Value = String> {
    label(15).prop_map(|name| {
        let mut name = name.replace("--", "-x");
        name.truncate(15);
        let name = name.trim_end_matches('-').to_owned();
        if name.bytes().any(|b| b.is_ascii_lowercase()) { name } else { format!("p{}", &name[1..]) }
    })
}

#[derive(Clone, Debug)]
struct PortDraft {
    named: bool,
    number: u16,
    protocol: &'static str,
}

fn port_draft() -> impl Strategy<Value = PortDraft> {
    (
        prop::bool::weighted(0.7),
        // Now and then the sidecar's own ports, which the injector must leave alone.
        prop_oneof![4 => Just(80u16), 4 => Just(8080), 1 => Just(4180), 1 => Just(9901), 30 => 1u16..=65535],
        prop_oneof![8 => Just("TCP"), 1 => Just("UDP"), 1 => Just("SCTP")],
    )
        .prop_map(|(named, number, protocol)| PortDraft { named, number, protocol })
}

#[derive(Clone, Debug)]
enum HandlerKind {
    HttpGet,
    TcpSocket,
    Grpc,
    Exec,
    Sleep,
}

#[derive(Clone, Debug)]
struct ProbeDraft {
    kind: HandlerKind,
    /// Which of the container's ports it reaches, and whether by name.
    port: usize,
    by_name: bool,
}

fn probe_draft() -> impl Strategy<Value = Option<ProbeDraft>> {
    let kind = prop_oneof![
        4 => Just(HandlerKind::HttpGet),
        2 => Just(HandlerKind::TcpSocket),
        1 => Just(HandlerKind::Grpc),
        1 => Just(HandlerKind::Exec),
        1 => Just(HandlerKind::Sleep)
    ];
    prop::option::weighted(
        0.5,
        (kind, 0usize..4, any::<bool>()).prop_map(|(kind, port, by_name)| ProbeDraft {
            kind,
            port,
            by_name,
        }),
    )
}

#[derive(Clone, Debug)]
struct ContainerDraft {
    name: String,
    ports: Vec<(PortDraft, String)>,
    probes: [Option<ProbeDraft>; 3],
    hooks: [Option<ProbeDraft>; 2],
    env: Vec<String>,
    mounts: usize,
}

fn container_draft() -> impl Strategy<Value = ContainerDraft> {
    (
        label(63),
        proptest::collection::vec((port_draft(), port_name()), 0..4),
        [probe_draft(), probe_draft(), probe_draft()],
        [probe_draft(), probe_draft()],
        proptest::collection::vec("[A-Za-z_][A-Za-z0-9_.-]{0,20}", 0..3),
        0usize..3,
    )
        .prop_map(|(name, ports, probes, hooks, env, mounts)| ContainerDraft {
            name,
            ports,
            probes,
            hooks,
            env,
            mounts,
        })
}

/// How a container may be built: regular, a plain init container (no probes, no hooks,
/// as the API server requires), or a native sidecar (restartPolicy Always).
#[derive(Clone, Copy, PartialEq)]
enum Role {
    App,
    Init,
    NativeSidecar,
}

/// Turns drafts into a pod the API server accepts: names made unique, port names unique in
/// the pod, port numbers unique per protocol, probes only where allowed.
struct Builder {
    names: BTreeSet<String>,
    port_names: BTreeSet<String>,
    numbers: BTreeSet<(u16, &'static str)>,
    volumes: Vec<String>,
}

impl Builder {
    fn unique(set: &mut BTreeSet<String>, name: &str, max: usize) -> String {
        let mut candidate = name.to_owned();
        let mut n = 0;
        while set.contains(&candidate) {
            n += 1;
            let suffix = format!("{n}");
            let keep = name.len().min(max - suffix.len());
            candidate = format!("{}{suffix}", name[..keep].trim_end_matches('-'));
        }
        set.insert(candidate.clone());
        candidate
    }

    fn container(&mut self, draft: &ContainerDraft, role: Role) -> Value {
        let name = Self::unique(&mut self.names, &draft.name, 63);
        let mut ports = Vec::new();
        let mut declared = Vec::new();
        for (port, wanted) in &draft.ports {
            if !self.numbers.insert((port.number, port.protocol)) {
                continue;
            }
            let mut value = json!({"containerPort": port.number, "protocol": port.protocol});
            let mut port_name = None;
            if port.named && !self.port_names.contains(wanted) {
                self.port_names.insert(wanted.clone());
                value["name"] = json!(wanted);
                port_name = Some(wanted.clone());
            }
            ports.push(value);
            declared.push((port.number, port_name, port.protocol));
        }
        let mut container = json!({"name": name, "image": format!("registry.example/{name}:1")});
        if !ports.is_empty() {
            container["ports"] = json!(ports);
        }
        if role == Role::NativeSidecar {
            container["restartPolicy"] = json!("Always");
        }
        if role != Role::Init {
            let fields = ["livenessProbe", "readinessProbe", "startupProbe"];
            for (field, probe) in fields.iter().zip(&draft.probes) {
                if let Some(handler) = probe.as_ref().and_then(|p| handler(p, &declared, false)) {
                    container[*field] = handler;
                }
            }
            for (hook, draft) in ["postStart", "preStop"].iter().zip(&draft.hooks) {
                if let Some(handler) = draft.as_ref().and_then(|p| handler(p, &declared, true)) {
                    container["lifecycle"][*hook] = handler;
                }
            }
        }
        let mut env_names = BTreeSet::new();
        let env: Vec<Value> = draft
            .env
            .iter()
            .filter(|n| env_names.insert(n.to_string()))
            .map(|n| json!({"name": n, "value": "v"}))
            .collect();
        if !env.is_empty() {
            container["env"] = json!(env);
        }
        let mounts: Vec<Value> = self
            .volumes
            .iter()
            .take(draft.mounts)
            .enumerate()
            .map(|(i, v)| json!({"name": v, "mountPath": format!("/data/{i}")}))
            .collect();
        if !mounts.is_empty() {
            container["volumeMounts"] = json!(mounts);
        }
        container
    }
}

/// A probe or hook handler for a container with `ports` (number, name, protocol); None
/// when the drafted one cannot exist there (no TCP port to reach).
fn handler(draft: &ProbeDraft, ports: &[(u16, Option<String>, &str)], hook: bool) -> Option<Value> {
    let tcp: Vec<_> = ports.iter().filter(|(_, _, p)| *p == "TCP").collect();
    let target = |by_name: bool| -> Option<Value> {
        let (number, name, _) = tcp.get(draft.port % tcp.len().max(1))?;
        Some(match (by_name, name) {
            (true, Some(name)) => json!(name),
            _ => json!(number),
        })
    };
    let handler = match draft.kind {
        HandlerKind::HttpGet => {
            json!({"httpGet": {"path": "/healthz", "port": target(draft.by_name)?}})
        }
        HandlerKind::TcpSocket => json!({"tcpSocket": {"port": target(draft.by_name)?}}),
        HandlerKind::Grpc if !hook => json!({"grpc": {"port": target(false)?}}),
        HandlerKind::Sleep if hook => json!({"sleep": {"seconds": 1}}),
        _ => json!({"exec": {"command": ["true"]}}),
    };
    Some(handler)
}

#[derive(Clone, Debug)]
struct PodDraft {
    apps: Vec<ContainerDraft>,
    inits: Vec<(ContainerDraft, bool)>,
    volumes: Vec<String>,
    annotations: Vec<(String, String)>,
    port_annotation: Option<(usize, bool)>,
    grace: Option<i64>,
    stop_delay: Option<&'static str>,
}

fn pod_draft() -> impl Strategy<Value = PodDraft> {
    (
        proptest::collection::vec(container_draft(), 1..4),
        proptest::collection::vec((container_draft(), any::<bool>()), 0..3),
        proptest::collection::vec(label(63), 0..3),
        proptest::collection::vec(
            ("[a-z]{1,10}\\.example/[a-z][a-z0-9-]{0,20}[a-z]", ".{0,40}"),
            0..4,
        ),
        prop::option::weighted(0.3, (0usize..8, any::<bool>())),
        prop::option::weighted(0.5, prop_oneof![Just(0i64), Just(1), Just(4), 5i64..=600]),
        prop::option::weighted(
            0.2,
            prop_oneof![Just("0s"), Just("3s"), Just("12s"), Just("1m30s"), Just("soon")],
        ),
    )
        .prop_map(|(apps, inits, volumes, annotations, port_annotation, grace, stop_delay)| {
            PodDraft { apps, inits, volumes, annotations, port_annotation, grace, stop_delay }
        })
}

fn build(draft: &PodDraft) -> Value {
    let mut builder = Builder {
        names: BTreeSet::new(),
        port_names: BTreeSet::new(),
        numbers: BTreeSet::new(),
        volumes: Vec::new(),
    };
    let mut volume_names = BTreeSet::new();
    for volume in &draft.volumes {
        builder.volumes.push(Builder::unique(&mut volume_names, volume, 63));
    }
    let inits: Vec<Value> = draft
        .inits
        .iter()
        .map(|(c, native)| {
            builder.container(c, if *native { Role::NativeSidecar } else { Role::Init })
        })
        .collect();
    let apps: Vec<Value> = draft.apps.iter().map(|c| builder.container(c, Role::App)).collect();
    let mut annotations: serde_json::Map<String, Value> =
        draft.annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if let Some((index, by_name)) = draft.port_annotation {
        let ports: Vec<&Value> =
            apps.iter().flat_map(|c| c["ports"].as_array()).flatten().collect();
        if let Some(port) = ports.get(index % ports.len().max(1)) {
            let value = match (by_name, port.get("name")) {
                (true, Some(name)) => name.clone(),
                _ => json!(port["containerPort"].to_string()),
            };
            annotations.insert("portcullis.dev/port".into(), value);
        }
    }
    if let Some(delay) = draft.stop_delay {
        annotations.insert("portcullis.dev/stop-delay".into(), json!(delay));
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9c5b8f4-",
            "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9c5b8f4"},
        },
        "spec": {"containers": apps}
    });
    if !annotations.is_empty() {
        pod["metadata"]["annotations"] = Value::Object(annotations);
    }
    if !inits.is_empty() {
        pod["spec"]["initContainers"] = json!(inits);
    }
    if !builder.volumes.is_empty() {
        let volumes: Vec<Value> =
            builder.volumes.iter().map(|v| json!({"name": v, "emptyDir": {}})).collect();
        pod["spec"]["volumes"] = json!(volumes);
    }
    if let Some(grace) = draft.grace {
        pod["spec"]["terminationGracePeriodSeconds"] = json!(grace);
        // A sleep hook may not outlast the grace period.
        for list in ["containers", "initContainers"] {
            for container in pod["spec"][list].as_array_mut().into_iter().flatten() {
                for hook in ["postStart", "preStop"] {
                    if let Some(sleep) = container.pointer_mut(&format!("/lifecycle/{hook}/sleep"))
                    {
                        sleep["seconds"] = json!(grace.min(1));
                    }
                }
            }
        }
    }
    pod
}

/// Every port name of every container and init container.
fn port_names(pod: &Value) -> Vec<String> {
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten());
    containers
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

fn errors(pod: &Value) -> Vec<String> {
    let pod: Pod = serde_json::from_value(pod.clone()).unwrap();
    validate_pod(&pod).iter().map(ToString::to_string).collect()
}

#[derive(Default)]
struct Tally {
    injected: u32,
    skipped: std::collections::BTreeMap<&'static str, u32>,
    /// Injected pods by what became of the app's preStop.
    pre_stops: std::collections::BTreeMap<&'static str, u32>,
}

/// One pod through the injector, and its patched pod through the API server's rules.
fn check(pod: &Value, tally: &mut Tally) -> Result<(), TestCaseError> {
    prop_assert_eq!(errors(pod), Vec::<String>::new(), "the generator made an invalid pod");
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let config = InjectConfig::default();
    match mutate(&typed, "shop", &config, CA, &[], &token()) {
        Outcome::Injected(injection) => {
            tally.injected += 1;
            *tally.pre_stops.entry(injection.summary.pre_stop.as_str()).or_default() += 1;
            check_a_service_says_http2(&typed, &injection)?;
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &injection.patch).unwrap();
            prop_assert_eq!(errors(&patched), Vec::<String>::new(), "{:#}", patched);
            check_hooks(pod, &patched, &injection)?;
            // The API server refuses a port name twice in one container only; in two
            // containers it would let Services and probes reach either. The generator
            // makes names unique in the pod, and so must the injector keep them.
            let names = port_names(&patched);
            let unique: BTreeSet<&String> = names.iter().collect();
            prop_assert_eq!(unique.len(), names.len(), "port names: {:?}", names);
            let again: Pod = serde_json::from_value(patched).unwrap();
            match mutate(&again, "shop", &config, CA, &[], &token()) {
                Outcome::Skipped(skip) => prop_assert_eq!(skip.reason, SkipReason::AlreadyInjected),
                other => prop_assert!(false, "injected twice: {:?}", other),
            }
        }
        Outcome::Skipped(skip) => *tally.skipped.entry(skip.reason.as_str()).or_default() += 1,
        Outcome::Invalid(invalid) => {
            prop_assert!(false, "the injector planned an invalid pod: {}", invalid.message())
        }
    }
    Ok(())
}

/// The same pod, with a Service that reaches its taken-over port (by its original name, or
/// by number when it had none) saying HTTP/2: the same patch but for the protocol.
fn check_a_service_says_http2(pod: &Pod, without: &Injection) -> Result<(), TestCaseError> {
    let summary = &without.summary;
    let target = match summary.renamed_to {
        Some(_) => json!(summary.port.as_deref().unwrap()),
        None => json!(summary.app_port),
    };
    let service: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "h2", "port": 80,
            "targetPort": target, "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]}
    }))
    .unwrap();
    let services = [Arc::new(service)];
    let with = match mutate(pod, "shop", &InjectConfig::default(), CA, &services, &token()) {
        Outcome::Injected(injection) => injection,
        other => return Err(TestCaseError::fail(format!("not injected: {other:?}"))),
    };
    prop_assert_eq!(with.summary.app_protocol.as_flag(), "http2");
    prop_assert_eq!(
        with.summary.protocol_source.to_string(),
        "Service web port h2 appProtocol kubernetes.io/h2c"
    );
    let mut expected = serde_json::to_value(&without.patch).unwrap();
    for op in expected.as_array_mut().unwrap() {
        let value = &mut op["value"];
        // The sidecar: the first of a new initContainers list, or appended to one.
        let sidecar = if value.is_array() { value.pointer_mut("/0") } else { Some(&mut *value) };
        if let Some(args) = sidecar.and_then(|c| c.get_mut("args")).and_then(Value::as_array_mut) {
            let at = args.iter().position(|a| a == "--app-protocol").unwrap();
            args[at + 1] = json!("http2");
        }
        // The annotation: added alone, or in a new annotations map.
        let annotation =
            if value.is_string() { Some(value) } else { value.get_mut("portcullis.dev/injected") };
        if let Some(Value::String(text)) = annotation {
            *text = text.replace("\"appProtocol\":\"http1\"", "\"appProtocol\":\"http2\"");
        }
    }
    prop_assert_eq!(serde_json::to_value(&with.patch).unwrap(), expected);
    Ok(())
}

/// The app container's own preStop kept (its port on the number when it named the port
/// taken over), else ours added when there is a grace period; other containers' hooks as
/// they were; the delay under the grace period.
fn check_hooks(pod: &Value, patched: &Value, injection: &Injection) -> Result<(), TestCaseError> {
    let summary = &injection.summary;
    let grace = pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    let after = patched["spec"]["containers"].as_array().unwrap();
    for (before, after) in containers.iter().zip(after) {
        if before["name"] != summary.container.as_str() {
            prop_assert_eq!(&before["lifecycle"], &after["lifecycle"], "{}", before["name"]);
            continue;
        }
        let own = &before["lifecycle"]["preStop"];
        let mut expected = before["lifecycle"].clone();
        if !own.is_null() {
            prop_assert_eq!(summary.pre_stop, PreStop::Kept);
            if summary.rewritten.iter().any(|r| r == "lifecycle.preStop") {
                let action = if own["httpGet"].is_object() { "httpGet" } else { "tcpSocket" };
                expected["preStop"][action]["port"] = json!(summary.app_port);
            }
        } else if grace > 0 {
            prop_assert_eq!(summary.pre_stop, PreStop::Added);
            expected["preStop"] = json!({"httpGet": {"path": "/prestop", "port": 9901,
                "httpHeaders": [{"name": "Portcullis-Stop-Token", "value": TOKEN}]}});
        } else {
            prop_assert_eq!(summary.pre_stop, PreStop::NoGracePeriod);
        }
        if summary.rewritten.iter().any(|r| r == "lifecycle.postStart") {
            let post = &before["lifecycle"]["postStart"];
            let action = if post["httpGet"].is_object() { "httpGet" } else { "tcpSocket" };
            expected["postStart"][action]["port"] = json!(summary.app_port);
        }
        prop_assert_eq!(&after["lifecycle"], &expected);
    }
    let delay = summary.stop_delay.delay.as_std();
    prop_assert!(
        grace <= 0 && delay.is_zero() || delay < std::time::Duration::from_secs(grace as u64),
        "stop delay {:?} for a grace period of {}",
        delay,
        grace
    );
    Ok(())
}

#[test]
fn every_injected_pod_passes_the_api_servers_validation() {
    let config = ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/inject_props.proptest-regressions"
        )))),
        ..ProptestConfig::default()
    };
    let tally = std::cell::RefCell::new(Tally::default());
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let result = runner.run(&pod_draft(), |draft| check(&build(&draft), &mut tally.borrow_mut()));
    if let Err(failure) = result {
        panic!("{failure}");
    }
    // Most drafts have a named TCP port: a generator that got every pod skipped would
    // prove nothing about injected pods.
    let tally = tally.into_inner();
    assert!(
        tally.injected >= 200,
        "only {} pods injected; skipped: {:?}",
        tally.injected,
        tally.skipped
    );
    // Each way an app's preStop can go, often enough to have been checked.
    for pre_stop in ["added", "kept", "none"] {
        let seen = tally.pre_stops.get(pre_stop).copied().unwrap_or(0);
        assert!(seen >= 10, "preStop {pre_stop}: {:?}", tally.pre_stops);
    }
    assert!(
        tally.skipped.get("invalid_annotation").copied().unwrap_or(0) >= 10,
        "{:?}",
        tally.skipped
    );
}
