//! A small stand-in for the Kubernetes API server over HTTP: list (`PodList`,
//! `ServiceList`..., the items' apiVersion and kind left out for built-in kinds, as the
//! real one does; paged by `limit` and `continue`, every page from the list as it was at
//! the first, as the real one serves them) and watch of any collection (replayed from a resourceVersion), GET of
//! one object, PUT with resourceVersion preconditions, JSON patches applied to stored
//! objects, TokenReview, pod creation checked by the API server's own Pod validation
//! (`portcullis::apiserver`: a pod the real one refuses is refused here, with the same 422
//! Status), the pod proxy (`pods/{name}:{port}/proxy/...`, forwarded to the pod's IP),
//! 403 for the paths a test forbids, and a record of PATCHes, PUTs and POSTs. It speaks the
//! real JSON, so the code under test uses the real kube-rs client against it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

#[derive(Default)]
struct Store {
    version: u64,
    /// Collection path (e.g. `/api/v1/pods`) → object key (`ns/name`) → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    patches: Vec<(String, Value)>,
    posts: Vec<(String, Value)>,
    puts: Vec<(String, Value)>,
    /// Every request: method, path, query.
    requests: Vec<(String, String, String)>,
    /// Collections whose lists are answered only after this long, as a busy API server
    /// answers a list of 10,000 pods.
    slow_lists: BTreeMap<String, std::time::Duration>,
    /// Whole lists whose pages are being read, by continue token prefix.
    paged: Vec<Arc<Value>>,
    /// Every watch event so far, with its resourceVersion and collection, so that a watch
    /// from resourceVersion N first gets what happened after N, as the API server does.
    log: Vec<(u64, String, Value)>,
    /// Path prefixes answered 403, as for a user whose RBAC does not grant them.
    forbidden: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    events: broadcast::Sender<(u64, String, Value)>,
    /// Client connections: opened, open now, most open at once.
    connections: Arc<[std::sync::atomic::AtomicUsize; 3]>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (events, _) = broadcast::channel(1024);
        let api = FakeApi {
            addr: listener.local_addr().unwrap(),
            store: Arc::default(),
            events,
            connections: Arc::default(),
        };
        let server = api.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                let [opened, open, most] = &*server.connections;
                opened.fetch_add(1, Relaxed);
                most.fetch_max(open.fetch_add(1, Relaxed) + 1, Relaxed);
                tokio::spawn(async move {
                    let connections = server.connections.clone();
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    connections[1].fetch_sub(1, Relaxed);
                });
            }
        });
        api
    }

    /// Client connections: (opened, open now, most open at once).
    pub fn connections(&self) -> (usize, usize, usize) {
        let [opened, open, most] = &*self.connections;
        let load =
            |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
        (load(opened), load(open), load(most))
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Adds or replaces an object in `collection`, as `kubectl apply` would.
    pub fn apply(&self, collection: &str, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        let key = format!(
            "{}/{}",
            object["metadata"]["namespace"].as_str().unwrap_or(""),
            object["metadata"]["name"].as_str().unwrap()
        );
        let existed =
            store.objects.entry(collection.to_owned()).or_default().insert(key, object.clone());
        let kind = if existed.is_some() { "MODIFIED" } else { "ADDED" };
        record(&mut store, &self.events, collection, json!({"type": kind, "object": object}));
    }

    pub fn delete(&self, collection: &str, namespace: &str, name: &str) {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        let removed = store
            .objects
            .get_mut(collection)
            .and_then(|c| c.remove(&format!("{namespace}/{name}")));
        if let Some(object) = removed {
            record(
                &mut store,
                &self.events,
                collection,
                json!({"type": "DELETED", "object": object}),
            );
        }
    }

    /// Answers every later list of `collection` only after `delay` (before its first page).
    pub fn slow_list(&self, collection: &str, delay: std::time::Duration) {
        self.store.lock().unwrap().slow_lists.insert(collection.to_owned(), delay);
    }

    /// Answers every later request whose path starts with `prefix` with 403 Forbidden, worded
    /// as the API server words it for the request's verb and resource.
    pub fn forbid(&self, prefix: &str) {
        self.store.lock().unwrap().forbidden.push(prefix.to_owned());
    }

    /// POST requests (other than TokenReviews) received so far: (path, body).
    pub fn posts(&self) -> Vec<(String, Value)> {
        self.store.lock().unwrap().posts.clone()
    }

    /// Writes every request received so far to `target/tmp/api-requests/{name}.json`, where
    /// the chart's tests check that its RBAC grants each of them: the controller must work
    /// with exactly what the chart grants.
    pub fn save_requests(&self, name: &str) {
        // Cargo's scratch directory for tests; examples that include this file get none, so
        // the same place by hand.
        let tmp = option_env!("CARGO_TARGET_TMPDIR")
            .unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp"));
        let dir = std::path::Path::new(tmp).join("api-requests");
        std::fs::create_dir_all(&dir).unwrap();
        let requests: Vec<Value> = self
            .store
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|(method, path, query)| json!({"method": method, "path": path, "query": query}))
            .collect();
        let text = serde_json::to_string_pretty(&requests).unwrap();
        std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    }

    /// Every request so far: (method, path, query).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.store.lock().unwrap().requests.clone()
    }

    /// PUT requests (replacements) accepted so far: (path, body).
    pub fn puts(&self) -> Vec<(String, Value)> {
        self.store.lock().unwrap().puts.clone()
    }

    /// The object stored now under `collection` (`namespace` empty for cluster-scoped).
    pub fn object(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.store.lock().unwrap();
        store.objects.get(collection)?.get(&format!("{namespace}/{name}")).cloned()
    }

    /// PATCH requests received so far: (path, body).
    pub fn patches(&self) -> Vec<(String, Value)> {
        self.store.lock().unwrap().patches.clone()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        self.store.lock().unwrap().requests.push((
            req.method().to_string(),
            path.clone(),
            query.clone(),
        ));
        let forbidden = self.store.lock().unwrap().forbidden.iter().any(|p| path.starts_with(p));
        if forbidden {
            return forbidden_status(req.method(), &path, &query);
        }
        match *req.method() {
            Method::POST if path == "/apis/authentication.k8s.io/v1/tokenreviews" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut review: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(
                    review["spec"]["audiences"],
                    json!(["portcullis"]),
                    "the audience is asked for"
                );
                review["status"] = token_review(review["spec"]["token"].as_str().unwrap_or(""));
                json_response(201, &review)
            }
            Method::POST if pod_collection(&path) => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                self.create_pod(&path, &body)
            }
            Method::POST => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.store.lock().unwrap().posts.push((path, object.clone()));
                json_response(201, &object)
            }
            Method::PATCH
                if req
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v == "application/json-patch+json") =>
            {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.store.lock().unwrap().patches.push((path.clone(), patch.clone()));
                self.update(&path, |current| {
                    let mut object = current.clone();
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| status(400, "BadRequest", &e.to_string(), None))?;
                    json_patch::patch(&mut object, &ops)
                        .map_err(|e| status(422, "Invalid", &e.to_string(), None))?;
                    Ok(object)
                })
            }
            Method::PUT => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let response = self.update(&path, |current| {
                    // Optimistic concurrency, as the API server does it: a replacement
                    // must carry the resourceVersion it was made from.
                    let (given, held) = (
                        &object["metadata"]["resourceVersion"],
                        &current["metadata"]["resourceVersion"],
                    );
                    if given != held {
                        let (plural, name) = plural_and_name(&path);
                        return Err(status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on {plural} \"{name}\": the object \
                                 has been modified; please apply your changes to the latest \
                                 version and try again"
                            ),
                            Some((plural, name)),
                        ));
                    }
                    Ok(object.clone())
                });
                if response.status() == 200 {
                    self.store.lock().unwrap().puts.push((path, object));
                }
                response
            }
            Method::PATCH => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                self.store.lock().unwrap().patches.push((path.clone(), patch.clone()));
                // Answer with the whole object, as the API server does:
                // .../namespaces/{ns}/{plural}/{name}[/status]
                let parts: Vec<&str> =
                    path.trim_end_matches("/status").rsplit('/').take(4).collect();
                let mut object = patch;
                if let [name, _plural, namespace, "namespaces"] = parts.as_slice() {
                    object["metadata"] = json!({"name": name, "namespace": namespace});
                }
                if object.get("spec").is_none() {
                    object["spec"] = json!({});
                }
                json_response(200, &object)
            }
            Method::GET if pod_proxy(&path).is_some() => {
                let (namespace, name, port, rest) = pod_proxy(&path).unwrap();
                self.proxy(&namespace, &name, port, &rest, &query).await
            }
            Method::GET if query.contains("watch=true") => {
                let since: u64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                // Subscribe first, then replay: nothing falls between the two.
                let mut live = self.events.subscribe();
                let backlog: Vec<(u64, Value)> = self
                    .store
                    .lock()
                    .unwrap()
                    .log
                    .iter()
                    .filter(|(v, c, _)| *v > since && *c == path)
                    .map(|(v, _, e)| (*v, e.clone()))
                    .collect();
                let stream = async_stream(move |tx| async move {
                    let mut sent = since;
                    let line = |event: &Value| {
                        let mut line = serde_json::to_vec(event).unwrap();
                        line.push(b'\n');
                        line
                    };
                    for (version, event) in backlog {
                        sent = version;
                        if tx.send(line(&event)).await.is_err() {
                            return;
                        }
                    }
                    while let Ok((version, collection, event)) = live.recv().await {
                        if collection == path && version > sent {
                            sent = version;
                            if tx.send(line(&event)).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                Response::builder()
                    .header("content-type", "application/json")
                    .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
                    .unwrap()
            }
            Method::GET if object_key(&path).is_some() => {
                let (collection, key) = object_key(&path).unwrap();
                let found = self
                    .store
                    .lock()
                    .unwrap()
                    .objects
                    .get(&collection)
                    .and_then(|c| c.get(&key))
                    .cloned();
                match found {
                    Some(object) => json_response(200, &object),
                    None => not_found(&path),
                }
            }
            Method::GET => {
                let param = |name: &str| {
                    query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                };
                // A slow list is slow once, before its first page.
                let delay = self.store.lock().unwrap().slow_lists.get(&path).copied();
                if let Some(delay) = delay.filter(|_| param("continue").is_none()) {
                    tokio::time::sleep(delay).await;
                }
                let limit = param("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
                let mut store = self.store.lock().unwrap();
                let list = match param("continue") {
                    Some(token) => {
                        let found = token.split_once('-').and_then(|(id, offset)| {
                            let list = store.paged.get(id.parse::<usize>().ok()?)?.clone();
                            Some((id.parse::<usize>().ok()?, list, offset.parse::<usize>().ok()?))
                        });
                        let Some(found) = found else {
                            let message = "the provided continue parameter is too old to display \
                                           a consistent list result";
                            return json_response(410, &status(410, "Expired", message, None));
                        };
                        found
                    }
                    None => {
                        let list = Arc::new(list_of(&store, &path));
                        if limit.is_some() {
                            store.paged.push(list.clone());
                        }
                        (store.paged.len().saturating_sub(1), list, 0)
                    }
                };
                drop(store);
                json_response(200, &page(list, limit))
            }
            _ => json_response(405, &json!({"kind": "Status", "code": 405})),
        }
    }
}

impl FakeApi {
    /// The pod proxy: the GET forwarded to the stored pod's IP, and its answer passed back,
    /// status and body; the API server's own Status when the pod is missing or refuses.
    async fn proxy(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
        rest: &str,
        query: &str,
    ) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
        let Some(pod) = self.object("/api/v1/pods", namespace, name) else {
            let message = format!("pods \"{name}\" not found");
            let details = Some(("pods".to_owned(), name.to_owned()));
            return json_response(404, &status(404, "NotFound", &message, details));
        };
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        let target = format!("{ip}:{port}");
        let unreachable = |error: String| {
            let message = format!("error trying to reach service: {error}");
            json_response(503, &status(503, "ServiceUnavailable", &message, None))
        };
        let stream = match tokio::net::TcpStream::connect(&target).await {
            Ok(stream) => stream,
            // In Go's words, as the API server passes them on.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return unreachable(format!("dial tcp {target}: connect: connection refused"));
            }
            Err(e) => return unreachable(format!("dial tcp {target}: {e}")),
        };
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                Ok(handshake) => handshake,
                Err(e) => return unreachable(e.to_string()),
            };
        tokio::spawn(conn);
        let uri = if query.is_empty() { rest.to_owned() } else { format!("{rest}?{query}") };
        let request = Request::get(uri)
            .header("host", &target)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => return unreachable(e.to_string()),
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return unreachable(e.to_string()),
        };
        let mut answer = Response::builder().status(parts.status);
        if let Some(content_type) = parts.headers.get("content-type") {
            answer = answer.header("content-type", content_type);
        }
        answer.body(BodyExt::boxed_unsync(Full::new(body))).unwrap()
    }

    /// A pod CREATE, as the API server takes it after admission: named from its
    /// generateName, then validated; stored (201) or refused (422 Invalid).
    fn create_pod(&self, path: &str, body: &[u8]) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
        let mut object: Value = match serde_json::from_slice(body) {
            Ok(object) => object,
            Err(e) => return json_response(400, &status(400, "BadRequest", &e.to_string(), None)),
        };
        let namespace = path.split('/').nth(4).unwrap_or_default().to_owned();
        object["metadata"]["namespace"] = json!(namespace);
        let named = object["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty());
        if !named && let Some(prefix) = object["metadata"]["generateName"].as_str() {
            // The API server appends five random characters; any five will do here.
            object["metadata"]["name"] = json!(format!("{prefix}x2m9q"));
        }
        self.store.lock().unwrap().posts.push((path.to_owned(), object.clone()));
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let pod: k8s_openapi::api::core::v1::Pod = match serde_json::from_value(object.clone()) {
            Ok(pod) => pod,
            Err(e) => return json_response(400, &status(400, "BadRequest", &e.to_string(), None)),
        };
        let errors = portcullis::apiserver::validate_pod(&pod);
        if !errors.is_empty() {
            return json_response(
                422,
                &portcullis::apiserver::invalid_status("", "Pod", &name, &errors),
            );
        }
        self.apply("/api/v1/pods", object);
        let stored = self.object("/api/v1/pods", &namespace, &name).unwrap();
        json_response(201, &stored)
    }

    /// Replaces the object at `path` with what `change` makes of it, as a watch would
    /// see it: a new resourceVersion and a MODIFIED event.
    fn update(
        &self,
        path: &str,
        change: impl FnOnce(&Value) -> Result<Value, Value>,
    ) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
        let Some((collection, key)) = object_key(path) else { return not_found(path) };
        let mut store = self.store.lock().unwrap();
        let Some(current) = store.objects.get(&collection).and_then(|c| c.get(&key)).cloned()
        else {
            drop(store);
            return not_found(path);
        };
        let mut object = match change(&current) {
            Ok(object) => object,
            Err(status) => {
                let code = status["code"].as_u64().unwrap() as u16;
                return json_response(code, &status);
            }
        };
        store.version += 1;
        object["metadata"]["resourceVersion"] = json!(store.version.to_string());
        store.objects.get_mut(&collection).unwrap().insert(key, object.clone());
        record(
            &mut store,
            &self.events,
            &collection,
            json!({"type": "MODIFIED", "object": object}),
        );
        json_response(200, &object)
    }
}

/// The whole list of `collection` now.
fn list_of(store: &Store, collection: &str) -> Value {
    let (api_version, kind, built_in) = list_type(collection);
    // Built-in kinds are listed typed, and Go's list encoding leaves each item's apiVersion
    // and kind out (kubernetes/kubernetes#63676); custom resources are listed
    // unstructured, and keep theirs.
    let items: Vec<Value> =
        store.objects.get(collection).map(|c| c.values().cloned().collect()).unwrap_or_default();
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if built_in && let Some(object) = item.as_object_mut() {
                object.remove("apiVersion");
                object.remove("kind");
            }
            item
        })
        .collect();
    json!({
        "kind": format!("{kind}List"),
        "apiVersion": api_version,
        "metadata": {"resourceVersion": store.version.to_string()},
        "items": items,
    })
}

/// One page of a whole list: `limit` items from `offset`, with `continue` (`{list}-{next}`)
/// and `remainingItemCount` while more remain; the whole list without a limit.
fn page((id, list, offset): (usize, Arc<Value>, usize), limit: Option<usize>) -> Value {
    let items = list["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let end = limit.map_or(items.len(), |l| (offset + l).min(items.len()));
    let mut metadata = json!({"resourceVersion": list["metadata"]["resourceVersion"]});
    if end < items.len() {
        metadata["continue"] = json!(format!("{id}-{end}"));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    json!({
        "kind": list["kind"],
        "apiVersion": list["apiVersion"],
        "metadata": metadata,
        "items": items.get(offset.min(end)..end).unwrap_or_default().to_vec(),
    })
}

/// The collection and store key of a single object's path:
/// `/api/v1/namespaces/{ns}/{plural}/{name}`, `/apis/{group}/{version}/namespaces/...`,
/// or the cluster-scoped `/apis/{group}/{version}/{plural}/{name}`.
fn object_key(path: &str) -> Option<(String, String)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let prefix = match segments.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return None,
    };
    let base = segments.get(..prefix)?.join("/");
    match segments.get(prefix..)? {
        ["namespaces", namespace, plural, name] => {
            Some((format!("/{base}/{plural}"), format!("{namespace}/{name}")))
        }
        [plural, name] if *plural != "namespaces" || prefix == 2 => {
            Some((format!("/{base}/{plural}"), format!("/{name}")))
        }
        _ => None,
    }
}

/// The kinds of the collections the tests list, by plural.
const KINDS: [(&str, &str); 8] = [
    ("pods", "Pod"),
    ("secrets", "Secret"),
    ("services", "Service"),
    ("events", "Event"),
    ("leases", "Lease"),
    ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
    ("upstreampolicies", "UpstreamPolicy"),
    ("maintenancewindows", "MaintenanceWindow"),
];

/// The apiVersion and kind of the objects of a collection (`/api/v1/services`,
/// `/apis/{group}/{version}/namespaces/{ns}/{plural}`), and whether the kind is built in
/// (not a custom resource of ours).
fn list_type(collection: &str) -> (String, String, bool) {
    let segments: Vec<&str> = collection.trim_start_matches('/').split('/').collect();
    let (api_version, group) = match segments.as_slice() {
        ["api", version, ..] => (version.to_string(), ""),
        ["apis", group, version, ..] => (format!("{group}/{version}"), *group),
        _ => panic!("not a collection: {collection}"),
    };
    let plural = segments.last().unwrap();
    let kind = KINDS
        .iter()
        .find(|(p, _)| p == plural)
        .map(|(_, kind)| kind.to_string())
        .unwrap_or_else(|| panic!("the fake API server knows no kind for {plural}: add it"));
    (api_version, kind, group != "portcullis.dev")
}

/// `/api/v1/namespaces/{ns}/pods`: where pods are created.
fn pod_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["api", "v1", "namespaces", _, "pods"])
}

/// `/api/v1/namespaces/{ns}/pods/{name}:{port}/proxy{rest}`: namespace, name, port and
/// the path on the pod (`/` when none).
fn pod_proxy(path: &str) -> Option<(String, String, u16, String)> {
    let (namespace, rest) = path.strip_prefix("/api/v1/namespaces/")?.split_once('/')?;
    let (name_port, rest) = rest.strip_prefix("pods/")?.split_once('/')?;
    let rest = rest.strip_prefix("proxy")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let (name, port) = name_port.rsplit_once(':')?;
    let rest = if rest.is_empty() { "/" } else { rest };
    Some((namespace.to_owned(), name.to_owned(), port.parse().ok()?, rest.to_owned()))
}

/// 403 as the API server answers a request that RBAC does not allow:
/// `pods "x" is forbidden: User "u" cannot get resource "pods/proxy" in API group "" in
/// the namespace "ns"`.
fn forbidden_status(
    method: &Method,
    path: &str,
    query: &str,
) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", group, _, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [] => ("", None, None),
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, subresource, ..] => (*plural, Some(*name), Some(*subresource)),
    };
    let verb = match (method, name) {
        (&Method::GET, _) if query.contains("watch=true") => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, None) => "deletecollection",
        (&Method::DELETE, Some(_)) => "delete",
        _ => "get",
    };
    let resource = match subresource {
        Some(subresource) => format!("{plural}/{subresource}"),
        None => plural.to_owned(),
    };
    let subject = match name {
        Some(name) => format!("{plural} \"{name}\""),
        None => plural.to_owned(),
    };
    let scope = match namespace {
        Some(namespace) => format!("in the namespace \"{namespace}\""),
        None => "at the cluster scope".to_owned(),
    };
    let message = format!(
        "{subject} is forbidden: User \"u\" cannot {verb} resource \"{resource}\" in API group \
         \"{group}\" {scope}"
    );
    let mut answer = status(403, "Forbidden", &message, None);
    answer["details"] = match name {
        Some(name) => json!({"name": name, "kind": plural}),
        None => json!({"kind": plural}),
    };
    json_response(403, &answer)
}

fn plural_and_name(path: &str) -> (String, String) {
    let mut parts = path.rsplit('/');
    let name = parts.next().unwrap_or_default().to_owned();
    (parts.next().unwrap_or_default().to_owned(), name)
}

/// A `Status` as the API server answers failures.
fn status(code: u16, reason: &str, message: &str, details: Option<(String, String)>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some((kind, name)) = details {
        status["details"] = json!({"name": name, "kind": kind});
    }
    status
}

fn not_found(path: &str) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let (plural, name) = plural_and_name(path);
    let message = format!("{plural} \"{name}\" not found");
    json_response(404, &status(404, "NotFound", &message, Some((plural, name))))
}

/// As the API server reviews a token: `token-<ns>-<pod>` is bound to that pod,
/// `token-unbound` to none, anything else is not authenticated.
fn token_review(token: &str) -> Value {
    let parts: Vec<&str> = token.splitn(3, '-').collect();
    match parts.as_slice() {
        ["token", "unbound"] => json!({
            "authenticated": true,
            "audiences": ["portcullis"],
            "user": {"username": "system:serviceaccount:shop:default"}
        }),
        ["token", ns, pod] => json!({
            "authenticated": true,
            "audiences": ["portcullis"],
            "user": {
                "username": format!("system:serviceaccount:{ns}:default"),
                "extra": {"authentication.kubernetes.io/pod-name": [pod]}
            }
        }),
        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
    }
}

/// Logs a watch event and tells the watches open now.
fn record(
    store: &mut Store,
    events: &broadcast::Sender<(u64, String, Value)>,
    collection: &str,
    event: Value,
) {
    let version = store.version;
    store.log.push((version, collection.to_owned(), event.clone()));
    let _ = events.send((version, collection.to_owned(), event));
}

fn json_response(status: u16, value: &Value) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(serde_json::to_vec(value).unwrap()))))
        .unwrap()
}

/// A body stream fed by a task through a channel.
fn async_stream<F, Fut>(
    produce: F,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send
where
    F: FnOnce(tokio::sync::mpsc::Sender<Vec<u8>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok(Frame::data(Bytes::from(line))), rx))
    })
}
