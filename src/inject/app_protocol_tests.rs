use serde_json::{Value, json};

use super::*;

fn annotated(value: &str) -> BTreeMap<String, String> {
    [(APP_PROTOCOL_ANNOTATION.to_owned(), value.to_owned())].into()
}

fn web_labels() -> BTreeMap<String, String> {
    [("app".to_owned(), "web".to_owned())].into()
}

/// The protocol for a port of a pod labelled `app: web` in `shop`, originally named `name`
/// and numbered 9000, with these annotations and Services.
fn decide(
    annotations: &BTreeMap<String, String>,
    name: Option<&str>,
    services: &[Arc<Service>],
) -> Result<(AppProtocol, ProtocolSource), ProtocolError> {
    let labels = web_labels();
    let target = Target { namespace: "shop", labels: &labels, name, number: 9000, protocol: "TCP" };
    app_protocol(annotations, &target, services)
}

/// By the annotations and the port's name alone.
fn without_services(
    annotations: &BTreeMap<String, String>,
    name: Option<&str>,
) -> Result<(AppProtocol, ProtocolSource), ProtocolError> {
    decide(annotations, name, &[])
}

/// A Service `name` in `shop` selecting `app: web`, with `ports`.
fn service(name: &str, ports: Value) -> Arc<Service> {
    let value = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": ports}});
    Arc::new(serde_json::from_value(value).unwrap())
}

/// A Service `name` whose port `port` (80) targets the port named `api` with `value`.
fn saying(name: &str, port: &str, value: &str) -> Arc<Service> {
    service(name, json!([{"name": port, "port": 80, "targetPort": "api", "appProtocol": value}]))
}

fn from_service(service: &str, port: &str, value: &str) -> ProtocolSource {
    ProtocolSource::Service {
        service: service.into(),
        port: port.into(),
        app_protocol: value.into(),
    }
}

#[test]
fn port_names_that_say_http2() {
    for name in ["grpc", "h2c", "http2", "grpc-web", "grpc-api", "h2c-internal", "http2-x"] {
        assert_eq!(
            without_services(&BTreeMap::new(), Some(name)),
            Ok((AppProtocol::Http2, ProtocolSource::PortName(name.to_owned()))),
            "{name}"
        );
    }
}

#[test]
fn other_port_names_and_none_are_http1() {
    // Near misses: a prefix without its dash, a dash with nothing after, or the word
    // elsewhere in the name.
    for name in ["http", "web", "grpcweb", "grpc-", "http2x", "h2", "my-grpc", "https", "GRPC"] {
        assert_eq!(
            without_services(&BTreeMap::new(), Some(name)),
            Ok((AppProtocol::Http1, ProtocolSource::Default)),
            "{name}"
        );
    }
    assert_eq!(
        without_services(&BTreeMap::new(), None),
        Ok((AppProtocol::Http1, ProtocolSource::Default))
    );
}

#[test]
fn the_annotation_wins_over_the_name() {
    assert_eq!(
        without_services(&annotated(" http1\n"), Some("grpc")),
        Ok((AppProtocol::Http1, ProtocolSource::Annotation))
    );
    assert_eq!(
        without_services(&annotated("http2"), None),
        Ok((AppProtocol::Http2, ProtocolSource::Annotation))
    );
}

#[test]
fn any_other_annotation_value_is_refused() {
    for (value, shown) in [
        ("grpc", "\"grpc\""),
        ("HTTP2", "\"HTTP2\""),
        ("h2c", "\"h2c\""),
        ("http/1.1", "\"http/1.1\""),
        ("", "\"\""),
        ("  ", "\"\""),
    ] {
        let error = without_services(&annotated(value), Some("grpc")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("portcullis.dev/app-protocol: {shown} is neither http1 nor http2"),
            "{value:?}"
        );
    }
}

#[test]
fn service_app_protocols_that_say_http2() {
    for value in
        ["kubernetes.io/h2c", "h2c", "http2", "grpc", "grpc-web", "Kubernetes.IO/H2C", "GRPC"]
    {
        assert_eq!(
            decide(&BTreeMap::new(), Some("api"), &[saying("web", "api", value)]),
            Ok((AppProtocol::Http2, from_service("web", "api", value))),
            "{value}"
        );
    }
}

#[test]
fn service_app_protocols_that_say_http1() {
    // Named grpc, so that HTTP/1.1 can only come from the Service.
    for value in ["http", "HTTP", "http1", "kubernetes.io/ws"] {
        let services = [service(
            "web",
            json!([{"name": "web", "port": 80, "targetPort": "grpc", "appProtocol": value}]),
        )];
        assert_eq!(
            decide(&BTreeMap::new(), Some("grpc"), &services),
            Ok((AppProtocol::Http1, from_service("web", "web", value))),
            "{value}"
        );
    }
}

#[test]
fn the_service_wins_over_the_port_name() {
    let services = [service(
        "api",
        json!([{"name": "rpc", "port": 80, "targetPort": "grpc", "appProtocol": "http"}]),
    )];
    let decided = decide(&BTreeMap::new(), Some("grpc"), &services);
    assert_eq!(decided, Ok((AppProtocol::Http1, from_service("api", "rpc", "http"))));
    assert_eq!(decided.unwrap().1.to_string(), "Service api port rpc appProtocol http");
}

#[test]
fn the_service_port_is_found_by_number_and_by_its_own_port() {
    let by_number = service(
        "numbered",
        json!([{"port": 80, "targetPort": 9000, "appProtocol": "kubernetes.io/h2c"}]),
    );
    assert_eq!(
        decide(&BTreeMap::new(), Some("api"), &[by_number]),
        Ok((AppProtocol::Http2, from_service("numbered", "80", "kubernetes.io/h2c")))
    );
    let defaulted =
        service("defaulted", json!([{"name": "rpc", "port": 9000, "appProtocol": "grpc"}]));
    assert_eq!(
        decide(&BTreeMap::new(), None, &[defaulted]),
        Ok((AppProtocol::Http2, from_service("defaulted", "rpc", "grpc")))
    );
}

#[test]
fn services_that_do_not_reach_the_port_say_nothing() {
    // Each would refuse the pod if it counted: by number, they reach the port whatever
    // its name.
    let https =
        || service("web", json!([{"port": 80, "targetPort": 9000, "appProtocol": "https"}]));
    let other_port = service(
        "metrics",
        json!([{"name": "m", "port": 9090, "targetPort": 9090, "appProtocol": "https"}]),
    );
    let mut elsewhere = (*https()).clone();
    elsewhere.metadata.namespace = Some("cart".into());
    let mut unselected = (*https()).clone();
    unselected.spec.as_mut().unwrap().selector = Some([("app".into(), "cart".into())].into());
    let silent = service("silent", json!([{"name": "api", "port": 80, "targetPort": 9000}]));
    let services = [other_port, Arc::new(elsewhere), Arc::new(unselected), silent];
    assert_eq!(
        decide(&BTreeMap::new(), Some("grpc-api"), &services),
        Ok((AppProtocol::Http2, ProtocolSource::PortName("grpc-api".into())))
    );
    assert_eq!(
        decide(&BTreeMap::new(), Some("api"), &services),
        Ok((AppProtocol::Http1, ProtocolSource::Default))
    );
    // And the same Service, selecting the pod in its namespace, does count.
    assert!(matches!(
        decide(&BTreeMap::new(), Some("api"), &[https()]),
        Err(ProtocolError::Unsupported(_))
    ));
}

#[test]
fn an_app_protocol_the_sidecar_cannot_speak_is_refused() {
    for value in ["https", "kubernetes.io/wss", "tcp", "mysql", "example.com/x"] {
        let error =
            decide(&BTreeMap::new(), Some("api"), &[saying("web", "api", value)]).unwrap_err();
        assert_eq!(
            error,
            ProtocolError::Unsupported(Said {
                port: "Service web port api".into(),
                value: value.into()
            })
        );
        assert_eq!(
            error.to_string(),
            format!(
                "Service web port api has appProtocol \"{value}\", which is neither HTTP/1.1 \
                 nor cleartext HTTP/2, the protocols the sidecar speaks to the app; set the \
                 annotation portcullis.dev/app-protocol to http1 or http2 to inject the pod \
                 anyway"
            ),
            "{value}"
        );
    }
    // After a port that says HTTP/2 too.
    let services = [saying("a", "grpc", "grpc"), saying("b", "tls", "https")];
    assert_eq!(
        decide(&BTreeMap::new(), Some("api"), &services).unwrap_err().to_string(),
        "Service b port tls has appProtocol \"https\", which is neither HTTP/1.1 nor cleartext \
         HTTP/2, the protocols the sidecar speaks to the app; set the annotation \
         portcullis.dev/app-protocol to http1 or http2 to inject the pod anyway"
    );
}

#[test]
fn services_that_disagree_are_refused() {
    // Given in the other order: messages name Services in name order.
    let services =
        [saying("web-legacy", "http", "http"), saying("web", "grpc", "kubernetes.io/h2c")];
    let error = decide(&BTreeMap::new(), Some("api"), &services).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Service web port grpc has appProtocol \"kubernetes.io/h2c\" (http2) but Service \
         web-legacy port http has appProtocol \"http\" (http1); set the annotation \
         portcullis.dev/app-protocol to http1 or http2 to inject the pod anyway"
    );
    assert!(matches!(error, ProtocolError::Conflicting { .. }));
    // Two ways of saying HTTP/2 agree.
    let agreeing = [saying("a", "grpc", "grpc"), saying("b", "h2", "kubernetes.io/h2c")];
    assert_eq!(
        decide(&BTreeMap::new(), Some("api"), &agreeing),
        Ok((AppProtocol::Http2, from_service("a", "grpc", "grpc")))
    );
}

#[test]
fn the_annotation_wins_over_services_even_ones_refused() {
    let https = [saying("web", "api", "https")];
    assert_eq!(
        decide(&annotated("http1"), Some("api"), &https),
        Ok((AppProtocol::Http1, ProtocolSource::Annotation))
    );
    let disagreeing = [saying("a", "grpc", "grpc"), saying("b", "http", "http")];
    assert_eq!(
        decide(&annotated("http2"), Some("api"), &disagreeing),
        Ok((AppProtocol::Http2, ProtocolSource::Annotation))
    );
}

/// The API server keeps no `appProtocol` on a container port, and neither does
/// k8s-openapi. Should a Kubernetes release add one, this fails: the port's own word
/// should then come before the Services'.
#[test]
fn a_container_port_has_no_app_protocol() {
    use k8s_openapi::api::core::v1::ContainerPort;

    let declared =
        json!({"name": "http", "containerPort": 8080, "appProtocol": "kubernetes.io/h2c"});
    let port: ContainerPort = serde_json::from_value(declared).unwrap();
    assert_eq!(serde_json::to_value(port).unwrap(), json!({"name": "http", "containerPort": 8080}));
}

#[test]
fn flags_and_sources_read_as_the_sidecar_and_the_summary_show_them() {
    assert_eq!(AppProtocol::ALL.map(AppProtocol::as_flag), ["http1", "http2"]);
    assert_eq!(AppProtocol::Http2.to_string(), "http2");
    assert_eq!(ProtocolSource::Annotation.to_string(), "annotation");
    assert_eq!(
        from_service("web", "grpc", "kubernetes.io/h2c").to_string(),
        "Service web port grpc appProtocol kubernetes.io/h2c"
    );
    assert_eq!(ProtocolSource::PortName("grpc-web".into()).to_string(), "port name grpc-web");
    assert_eq!(ProtocolSource::Default.to_string(), "default");
}
