use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn policy(yaml: &str) -> UpstreamPolicySpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn window(yaml: &str) -> MaintenanceWindowSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("shop", name)
}

fn policy_name(index: &Index, pod: &str) -> Option<String> {
    index.config_of(&key(pod)).policy.map(|p| p.name)
}

/// Two checkout pods, one cart pod, and a checkout pod in another namespace.
fn pods() -> Index {
    let mut index = Index::default();
    index.apply_pod(key("checkout-1"), labels(&[("app", "checkout")]));
    index.apply_pod(key("checkout-2"), labels(&[("app", "checkout"), ("tier", "web")]));
    index.apply_pod(key("cart-1"), labels(&[("app", "cart")]));
    index.apply_pod(ObjectKey::new("other", "checkout-9"), labels(&[("app", "checkout")]));
    index
}

#[test]
fn a_policy_selects_pods_in_its_namespace_by_labels() {
    let mut index = pods();
    index.apply_policy(
        key("checkout"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {app: checkout}}"),
    );
    assert_eq!(policy_name(&index, "checkout-1").as_deref(), Some("shop/checkout"));
    assert_eq!(policy_name(&index, "checkout-2").as_deref(), Some("shop/checkout"));
    assert_eq!(policy_name(&index, "cart-1"), None);
    assert_eq!(
        index.config_of(&ObjectKey::new("other", "checkout-9")).policy,
        None,
        "never across namespaces"
    );
    assert_eq!(
        index.policy_status(&key("checkout")),
        Some(PolicyStatus { matched_pods: 2, accepted: Acceptance::Accepted })
    );

    index.apply_policy(key("all"), ts("2026-02-01T00:00:00Z"), policy("{}"));
    assert_eq!(
        policy_name(&index, "cart-1").as_deref(),
        Some("shop/all"),
        "an empty selector selects every pod"
    );
    let expressions = "selector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}";
    index.apply_policy(key("web"), ts("2025-01-01T00:00:00Z"), policy(expressions));
    assert_eq!(policy_name(&index, "checkout-2").as_deref(), Some("shop/web"));
}

#[test]
fn the_oldest_policy_wins_and_the_others_are_told_why() {
    let mut index = pods();
    index.apply_policy(
        key("newer"),
        ts("2026-03-01T00:00:00Z"),
        policy("selector: {matchLabels: {app: checkout}}"),
    );
    index.apply_policy(
        key("older"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {tier: web}}"),
    );
    assert_eq!(policy_name(&index, "checkout-1").as_deref(), Some("shop/newer"));
    assert_eq!(policy_name(&index, "checkout-2").as_deref(), Some("shop/older"));
    let newer = index.policy_status(&key("newer")).unwrap();
    assert_eq!(newer.matched_pods, 2);
    assert_eq!(
        newer.accepted,
        Acceptance::Conflicted(
            "older UpstreamPolicy older selects some of the same pods and wins there".into()
        )
    );
    assert_eq!(newer.accepted.reason(), "Conflicted");
    assert_eq!(index.policy_status(&key("older")).unwrap().accepted, Acceptance::Accepted);

    // Same creation time: the name decides.
    index.apply_policy(
        key("aaa"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {tier: web}}"),
    );
    assert_eq!(policy_name(&index, "checkout-2").as_deref(), Some("shop/aaa"));

    // Deleting the winners makes the loser whole again.
    index.delete_policy(&key("older"));
    index.delete_policy(&key("aaa"));
    assert_eq!(policy_name(&index, "checkout-2").as_deref(), Some("shop/newer"));
    assert_eq!(index.policy_status(&key("newer")).unwrap().accepted, Acceptance::Accepted);
}

#[test]
fn an_invalid_policy_applies_nowhere_and_says_which_field() {
    let mut index = pods();
    index.apply_policy(
        key("bad"),
        ts("2026-01-01T00:00:00Z"),
        policy("routes: [{validation: {contentTypes: [csv]}}]"),
    );
    assert_eq!(policy_name(&index, "checkout-1"), None);
    let status = index.policy_status(&key("bad")).unwrap();
    assert_eq!(status.accepted.reason(), "Invalid");
    let Acceptance::Invalid(message) = status.accepted else { unreachable!() };
    assert!(message.starts_with("spec.routes[0].validation.contentTypes[0]: "), "{message}");

    let bad_selector = "selector: {matchExpressions: [{key: app, operator: Sideways}]}";
    index.apply_policy(key("bad"), ts("2026-01-01T00:00:00Z"), policy(bad_selector));
    let Acceptance::Invalid(message) = index.policy_status(&key("bad")).unwrap().accepted else {
        panic!()
    };
    assert!(message.starts_with("spec.selector: "), "{message}");
}

#[test]
fn every_window_that_selects_a_pod_applies() {
    let mut index = pods();
    index.apply_window(key("db"), ts("2026-01-01T00:00:00Z"), window("selector: {matchLabels: {app: checkout}}\nstart: \"2026-12-01T02:00:00Z\"\nend: \"2026-12-01T03:00:00Z\""));
    index.apply_window(
        key("weekly"),
        ts("2026-01-02T00:00:00Z"),
        window("schedule: \"0 2 * * SUN\"\nduration: 1h\ntimeZone: Europe/Berlin"),
    );
    index.apply_window(
        key("broken"),
        ts("2026-01-02T00:00:00Z"),
        window("schedule: \"0 2 * * SUN\""),
    );
    let names = |pod: &str| -> Vec<String> {
        index.config_of(&key(pod)).windows.into_iter().map(|w| w.name).collect()
    };
    assert_eq!(names("checkout-1"), ["shop/db", "shop/weekly"]);
    assert_eq!(names("cart-1"), ["shop/weekly"]);
    let broken = index.window_status(&key("broken"), ts("2026-06-01T00:00:00Z")).unwrap();
    assert_eq!(
        broken.accepted,
        Acceptance::Invalid("spec.duration: a schedule needs a positive duration".into())
    );
    // Windows travel as schedules, not as on/off: the sidecar judges time itself.
    let weekly = &index.config_of(&key("cart-1")).windows[0];
    assert_eq!(weekly.spec.schedule.as_deref(), Some("0 2 * * SUN"));
    assert_eq!(weekly.created, ts("2026-01-02T00:00:00Z"));
}

#[test]
fn window_status_tells_active_current_and_next() {
    let mut index = pods();
    index.apply_window(
        key("weekly"),
        ts("2026-01-01T00:00:00Z"),
        window("schedule: \"0 2 * * SUN\"\nduration: 1h"),
    );
    let during = index.window_status(&key("weekly"), ts("2026-11-29T02:30:00Z")).unwrap();
    assert!(during.active);
    assert_eq!(during.matched_pods, 3);
    assert_eq!(
        during.current,
        Some(Span { start: ts("2026-11-29T02:00:00Z"), end: Some(ts("2026-11-29T03:00:00Z")) })
    );
    assert_eq!(during.next.map(|s| s.start), Some(ts("2026-12-06T02:00:00Z")));
    let after = index.window_status(&key("weekly"), ts("2026-11-29T03:00:00Z")).unwrap();
    assert!(!after.active && after.current.is_none());
    assert_eq!(after.next.map(|s| s.start), Some(ts("2026-12-06T02:00:00Z")));
}

#[test]
fn bypass_secrets_travel_as_digests_and_follow_the_secret() {
    let mut index = pods();
    index.apply_window(
        key("w"),
        ts("2026-01-01T00:00:00Z"),
        window("bypass: {header: X-Ops, secretRef: {name: ops, key: token}}"),
    );
    assert_eq!(index.config_of(&key("cart-1")).windows[0].bypass, None, "no Secret, no bypass");
    let mut rx = index.subscribe(&key("cart-1"));
    index.apply_secret(
        key("ops"),
        &BTreeMap::from([("token".to_string(), b"open sesame".to_vec())]),
    );
    assert!(rx.has_changed().unwrap());
    let config = rx.borrow_and_update().snapshot.config.clone();
    let bypass = config.windows[0].bypass.clone().unwrap();
    assert_eq!(bypass.header, "X-Ops");
    assert_eq!(bypass.sha256, hex_sha256(b"open sesame"));
    assert!(config.windows[0].spec.bypass.is_none(), "the secretRef does not travel");
    let wire = serde_json::to_string(&config).unwrap();
    assert!(!wire.contains("sesame"), "{wire}");
    // A Secret no bypass names changes nothing.
    index.apply_secret(key("unrelated"), &BTreeMap::from([("k".to_string(), b"v".to_vec())]));
    assert!(!rx.has_changed().unwrap());
}

#[test]
fn streams_change_only_when_a_pods_config_really_changes() {
    let mut index = pods();
    index.apply_policy(
        key("checkout"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {app: checkout}}"),
    );
    let mut rx = index.subscribe(&key("cart-1"));
    assert_eq!(rx.borrow_and_update().snapshot.config.policy, None);

    // A change elsewhere, and a relabel that does not change selection: no news.
    index.apply_policy(
        key("checkout"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {app: checkout}}\ntimeouts: {connect: 2s}"),
    );
    index.apply_pod(key("cart-1"), labels(&[("app", "cart"), ("version", "2")]));
    assert!(!rx.has_changed().unwrap());

    // Relabelled into the selector: news.
    index.apply_pod(key("cart-1"), labels(&[("app", "checkout")]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(
        rx.borrow_and_update().snapshot.config.policy.as_ref().map(|p| p.name.as_str()),
        Some("shop/checkout")
    );

    // The selector changes so that the pod falls out: news.
    index.apply_policy(
        key("checkout"),
        ts("2026-01-01T00:00:00Z"),
        policy("selector: {matchLabels: {tier: web}}"),
    );
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().snapshot.config.policy, None);

    // The pod is deleted while its stream is open: the stream keeps its last config.
    index.delete_pod(&key("cart-1"));
    assert!(!rx.has_changed().unwrap());
    assert_eq!(index.pod_count(), 3);

    // Once that stream closes, its channel goes too.
    assert_eq!(index.channel_count(), 1);
    drop(rx);
    index.prune();
    assert_eq!(index.channel_count(), 0);
}
