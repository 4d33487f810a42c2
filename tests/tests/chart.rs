//! The Helm chart (`charts/greenbatch`), with the real helm binary: it lints; what it renders binds
//! the operator's service account to its roles and passes flags the operator binary accepts; bad
//! values fail with the key named and render nothing; and on a real kube-apiserver it passes a
//! server-side dry run, installs (CRDs included), runs the operator exactly as its Deployment says
//! (the binary, with the Deployment's args and env, as the chart's service account) until the
//! operator profiles an InferenceService applied with kubectl, upgrades, and uninstalls without
//! taking the CRDs or anybody's InferenceServices with it.
//!
//! The e2e tests (operator_e2e.rs, operator_leader.rs) install the same chart for their RBAC.
//! Needs the operator binary (`cargo build -p greenbatch-operator`; `cargo test --workspace` builds
//! it for the operator's own CLI tests).

use greenbatch_crds::{InferenceService, Phase};
use greenbatch_tests::http::get_local;
use greenbatch_tests::{
    OPERATOR, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, TestCluster, TestClusterOptions,
    built_binary, chart, wait_for, workspace_root,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "[chart] {line}");
}

fn operator_binary() -> PathBuf {
    built_binary("greenbatch-operator", "GREENBATCH_OPERATOR_BIN")
}

async fn render(values: &Value) -> Vec<Value> {
    let out = chart::template(values, &[]).await.expect("helm runs");
    assert!(out.success(), "helm template with {values}: {out}");
    chart::documents(&out.stdout).expect("the chart renders YAML")
}

/// (kind, namespace or "", name) of each document.
fn inventory(docs: &[Value]) -> BTreeSet<(String, String, String)> {
    docs.iter()
        .map(|d| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&d["kind"]),
                s(&d["metadata"]["namespace"]),
                s(&d["metadata"]["name"]),
            )
        })
        .collect()
}

/// Whether any rendered object is of `kind`.
fn has_kind(docs: &[Value], kind: &str) -> bool {
    docs.iter().any(|d| d["kind"] == kind)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn operator_container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment", "greenbatch-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    operator_container(docs)["args"]
        .as_array()
        .expect("the operator container has args")
        .iter()
        .map(|a| a.as_str().expect("string args").to_string())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
}

/// The operator binary parses `args` (clap validates every flag and value before acting on the
/// final `--help`): a flag the chart passes and the binary does not know fails here, not in a
/// crash-looping pod.
fn assert_operator_accepts(args: &[String]) {
    let bin = operator_binary();
    let out = std::process::Command::new(&bin)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): `cargo build -p greenbatch-operator`",
                bin.display()
            )
        });
    assert!(
        out.status.success(),
        "greenbatch-operator refuses the chart's flags {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Who a binding grants its role to: (kind, namespace, name) of each subject.
fn subjects(binding: &Value) -> Vec<(String, String, String)> {
    binding["subjects"]
        .as_array()
        .expect("subjects")
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (f("kind"), f("namespace"), f("name"))
        })
        .collect()
}

#[tokio::test]
async fn chart_lints_strictly() {
    let out = chart::lint(&json!({})).await.expect("helm runs");
    assert!(out.success(), "{out}");
    // With every optional part on, too.
    let all_on = json!({
        "watchNamespace": "vision",
        "runtime": {"namespaces": ["vision"]},
        "metrics": {"serviceMonitor": {"enabled": true}, "podMonitor": {"enabled": true}},
    });
    let out = chart::lint(&all_on).await.expect("helm runs");
    assert!(out.success(), "{out}");
}

#[tokio::test]
async fn default_render_binds_the_operator_and_passes_flags_it_accepts() {
    let docs = render(&json!({})).await;
    let ns = OPERATOR_NAMESPACE;
    let expected: BTreeSet<(String, String, String)> = [
        ("CustomResourceDefinition", "", CRD_NAMES[0]),
        ("CustomResourceDefinition", "", CRD_NAMES[1]),
        ("ServiceAccount", ns, "greenbatch-operator"),
        ("ClusterRole", "", "greenbatch-operator"),
        ("ClusterRoleBinding", "", "greenbatch-operator"),
        ("Role", ns, "greenbatch-operator-leader-election"),
        ("RoleBinding", ns, "greenbatch-operator-leader-election"),
        ("ClusterRole", "", "greenbatch-runtime"),
        ("Service", ns, "greenbatch-operator-metrics"),
        ("Deployment", ns, "greenbatch-operator"),
    ]
    .into_iter()
    .map(|(k, n, m)| (k.to_string(), n.to_string(), m.to_string()))
    .collect();
    assert_eq!(inventory(&docs), expected);

    // The service account the tests' operator identity is (Identity::operator()).
    assert_eq!(
        find(&docs, "ServiceAccount", OPERATOR_SERVICE_ACCOUNT)["metadata"]["namespace"],
        ns
    );
    let sa = (
        "ServiceAccount".to_string(),
        ns.to_string(),
        OPERATOR_SERVICE_ACCOUNT.to_string(),
    );
    for (kind, name, role_kind, role) in [
        (
            "ClusterRoleBinding",
            "greenbatch-operator",
            "ClusterRole",
            "greenbatch-operator",
        ),
        (
            "RoleBinding",
            "greenbatch-operator-leader-election",
            "Role",
            "greenbatch-operator-leader-election",
        ),
    ] {
        let b = find(&docs, kind, name);
        assert_eq!(subjects(b), vec![sa.clone()], "{kind} {name}");
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], role);
    }

    // With a Lease, the default rolling update: the new pod stands by until the old leader lets go.
    assert!(find(&docs, "Deployment", "greenbatch-operator")["spec"]["strategy"].is_null());
    let pod = &find(&docs, "Deployment", "greenbatch-operator")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], OPERATOR_SERVICE_ACCOUNT);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = operator_container(&docs);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["image"], "ghcr.io/greenbatch/operator:0.1.0");

    let a = args(&docs);
    assert_operator_accepts(&a);
    assert_eq!(
        flag(&a, "--runtime-image"),
        Some("ghcr.io/greenbatch/runtime:0.1.0")
    );
    assert_eq!(flag(&a, "--runtime-version"), Some("0.1.0"));
    assert_eq!(flag(&a, "--namespace"), None, "all namespaces by default");
    assert_eq!(
        flag(&a, "--serving-max-surge"),
        None,
        "Kubernetes' rollout by default"
    );
    // The Lease the Role grants is the one the operator takes, in the release's namespace.
    let role = find(&docs, "Role", "greenbatch-operator-leader-election");
    let lease_names: Vec<&Value> = role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["resourceNames"].as_array())
        .flatten()
        .collect();
    assert_eq!(lease_names, vec!["greenbatch-operator"]);
    assert_eq!(flag(&a, "--lease-name"), Some("greenbatch-operator"));
    assert_eq!(flag(&a, "--lease-namespace"), Some(ns));
    // Probes and the Service reach the port the operator listens on.
    assert_eq!(flag(&a, "--listen"), Some("0.0.0.0:8081"));
    assert_eq!(c["ports"][0]["containerPort"], 8081);
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let svc = find(&docs, "Service", "greenbatch-operator-metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    let selector = svc["spec"]["selector"].as_object().expect("selector");
    let labels =
        &find(&docs, "Deployment", "greenbatch-operator")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector {
        assert_eq!(
            &labels[k], v,
            "the Service selects the operator pods by {k}"
        );
    }

    // The CRDs are templates (so `helm upgrade` upgrades them): each exactly as the types generate
    // it, kept by `helm uninstall`, labelled as the chart's.
    let rendered_crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    let names: BTreeSet<&str> = rendered_crds
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(CRD_NAMES));
    for generated in greenbatch_crds::all_crds() {
        let name = generated.metadata.name.clone().unwrap_or_default();
        let rendered = rendered_crds
            .iter()
            .find(|d| d["metadata"]["name"] == name.as_str())
            .expect("rendered");
        assert_eq!(
            numbers_as_f64(&rendered["spec"]),
            numbers_as_f64(&serde_json::to_value(&generated.spec).expect("JSON")),
            "the chart renders {name} as the types generate it"
        );
        assert_eq!(
            rendered["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
        // Argo CD ignores Helm's policy: it is told in its own terms.
        assert_eq!(
            rendered["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
            "Prune=false,Delete=false"
        );
        assert_eq!(
            rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
    }
    // crds.keep=false: uninstall takes them (and every object of theirs); crds.install=false: none.
    let unkept = render(&json!({"crds": {"keep": false}})).await;
    let unkept_crd = find(&unkept, "CustomResourceDefinition", CRD_NAMES[0]);
    assert!(
        unkept_crd["metadata"]["annotations"]
            .get("helm.sh/resource-policy")
            .is_none(),
        "{unkept_crd}"
    );
    assert!(!has_kind(
        &render(&json!({"crds": {"install": false}})).await,
        "CustomResourceDefinition"
    ));
    // `helm upgrade --reuse-values` from a release made before the `crds` values existed has no
    // `crds` map at all (a null here removes it): the defaults hold, nothing fails. The same for
    // the controller's values newer than chart 0.1.0: their flags are left out, and the operator's
    // defaults (the chart's own) apply instead of a nil printed as 0.
    let defaults = args(&render(&json!({})).await);
    assert_eq!(flag(&defaults, "--job-ttl-seconds"), Some("86400"));
    assert_eq!(flag(&defaults, "--scale-down-delay-seconds"), Some("300"));
    let older = args(
        &render(&json!({"controller": {"scaleDownDelaySeconds": null,
                                       "profilingJob": {"ttlSecondsAfterFinished": null}}}))
        .await,
    );
    assert_operator_accepts(&older);
    assert_eq!(flag(&older, "--job-ttl-seconds"), None);
    assert_eq!(flag(&older, "--scale-down-delay-seconds"), None);
    let kept = args(
        &render(&json!({"controller": {"scaleDownDelaySeconds": 0,
                                       "profilingJob": {"ttlSecondsAfterFinished": "never"}}}))
        .await,
    );
    assert_operator_accepts(&kept);
    assert_eq!(flag(&kept, "--job-ttl-seconds"), Some("never"));
    assert_eq!(flag(&kept, "--scale-down-delay-seconds"), Some("0"));
    let reused = render(&json!({"crds": null})).await;
    assert_eq!(
        find(&reused, "CustomResourceDefinition", CRD_NAMES[1])["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
}

/// The verbs the operator's ClusterRole grants on `resource` of greenbatch.dev.
fn operator_verbs_on(docs: &[Value], resource: &str) -> Vec<String> {
    find(docs, "ClusterRole", "greenbatch-operator")["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|x| x == resource))
        })
        .flat_map(|r| r["verbs"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn profiling_jobs_are_unlimited_by_default_and_capped_when_asked() {
    let defaults = args(&render(&json!({})).await);
    assert_eq!(flag(&defaults, "--max-profiling-jobs"), Some("unlimited"));
    let capped = args(&render(&json!({"controller": {"profilingJob": {"maxRunning": 4}}})).await);
    assert_operator_accepts(&capped);
    assert_eq!(flag(&capped, "--max-profiling-jobs"), Some("4"));
    // The schema refuses what the operator would: no place for any Job, a word it does not know.
    for bad in [json!(0), json!("all")] {
        let out = chart::template_chart(
            &chart::chart_dir(),
            &json!({"controller": {"profilingJob": {"maxRunning": bad}}}),
            &[],
        )
        .await
        .expect("helm runs");
        assert!(!out.success(), "maxRunning {bad} rendered");
        assert!(out.stderr.contains("maxRunning"), "{out}");
    }
}

#[tokio::test]
async fn unused_profiles_are_kept_by_default_and_deletable_only_when_pruning_is_on() {
    let defaults = render(&json!({})).await;
    assert_eq!(
        flag(&args(&defaults), "--unused-profile-ttl-seconds"),
        Some("never")
    );
    assert!(
        !operator_verbs_on(&defaults, "energyprofiles").contains(&"delete".to_string()),
        "no delete on profiles while they are kept"
    );
    let week = render(&json!({"controller": {"unusedProfileTtlSeconds": 604800}})).await;
    let a = args(&week);
    assert_operator_accepts(&a);
    assert_eq!(flag(&a, "--unused-profile-ttl-seconds"), Some("604800"));
    assert!(operator_verbs_on(&week, "energyprofiles").contains(&"delete".to_string()));
    // The profile's status: only patch (the operator's `lastJob` record).
    assert_eq!(
        operator_verbs_on(&week, "energyprofiles/status"),
        vec!["patch"]
    );
}

fn yaml_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The default the operator binary's `--help` gives `flag`.
fn operator_default(flag: &str) -> String {
    let out = std::process::Command::new(operator_binary())
        .arg("--help")
        .output()
        .expect("greenbatch-operator --help");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let from = help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("{flag} in --help:\n{help}"));
    let rest = &help[from..];
    let start = rest.find("[default: ").expect("a default") + "[default: ".len();
    rest[start..start + rest[start..].find(']').expect("]")].to_string()
}

#[tokio::test]
async fn an_upgrade_reusing_the_values_of_chart_0_1_0_renders_what_a_fresh_install_does() {
    // `helm upgrade --reuse-values` renders the new templates with the old release's values in
    // place of the new chart's defaults: every key added since is absent. Simulated as Helm does
    // it: this chart with 0.1.0's values.yaml. Templates must not fail on the absent keys nor
    // render them as nil (a 0 delay, an empty listen host): each falls back to the same default.
    let fixture = greenbatch_tests::workspace::workspace_root()
        .join("tests/fixtures/chart-0.1.0-values.yaml");
    let scratch = tempfile::tempdir().expect("a temp dir");
    let old_values = scratch.path().join("greenbatch");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart::chart_dir())
        .arg(&old_values)
        .status()
        .expect("cp runs");
    assert!(status.success());
    std::fs::copy(&fixture, old_values.join("values.yaml")).expect("0.1.0's values.yaml");
    let out = chart::template_chart(&old_values, &json!({}), &[])
        .await
        .expect("helm runs");
    assert!(out.success(), "{out}");
    let reused = chart::documents(&out.stdout).expect("YAML");
    let fresh = render(&json!({})).await;
    let now = yaml_file(&chart::chart_dir().join("values.yaml"));
    // Flags the chart leaves out when their value is absent: left out here, and the operator's
    // default is the chart's, so the two installs run alike.
    let omitted = [
        (
            "--job-ttl-seconds",
            &now["controller"]["profilingJob"]["ttlSecondsAfterFinished"],
        ),
        (
            "--unused-profile-ttl-seconds",
            &now["controller"]["unusedProfileTtlSeconds"],
        ),
        (
            "--max-profiling-jobs",
            &now["controller"]["profilingJob"]["maxRunning"],
        ),
        (
            "--scale-down-delay-seconds",
            &now["controller"]["scaleDownDelaySeconds"],
        ),
    ];
    let reused_args = args(&reused);
    assert_operator_accepts(&reused_args);
    for (flag_name, chart_default) in omitted {
        assert_eq!(flag(&reused_args, flag_name), None, "{reused_args:?}");
        let chart_default = match chart_default {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(operator_default(flag_name), chart_default, "{flag_name}");
    }
    let without_omitted = |docs: &[Value]| -> Vec<Value> {
        let mut docs = docs.to_vec();
        for d in docs.iter_mut().filter(|d| d["kind"] == "Deployment") {
            if let Some(args) =
                d["spec"]["template"]["spec"]["containers"][0]["args"].as_array_mut()
            {
                args.retain(|a| {
                    !omitted
                        .iter()
                        .any(|(f, _)| a.as_str().is_some_and(|a| a.starts_with(&format!("{f}="))))
                });
            }
        }
        docs
    };
    assert_eq!(without_omitted(&reused), without_omitted(&fresh));
}

#[tokio::test]
async fn a_rollout_key_absent_or_null_is_unset_and_numbers_render_whole() {
    // A null (or, after --reuse-values from 0.5.0 with one key set, absent) key rendered as the
    // string "<nil>", which the operator refused at start; a large number as 1e+06.
    let docs =
        render(&json!({"runtime": {"rollout": {"maxSurge": 1_000_000, "maxUnavailable": null}}}))
            .await;
    let a = args(&docs);
    assert_operator_accepts(&a);
    assert_eq!(flag(&a, "--serving-max-surge"), Some("1000000"));
    assert_eq!(flag(&a, "--serving-max-unavailable"), None);
}

#[tokio::test]
async fn values_scope_the_operator_and_set_up_runtime_namespaces() {
    let values = json!({
        "watchNamespace": "vision",
        "runtime": {"namespaces": ["vision", "ml"], "serviceAccountName": "profiler",
                    "modelCAConfigMap": "corp-ca",
                    "rollout": {"maxSurge": 0, "maxUnavailable": "50%"},
                    "pod": {"resources": {"requests": {"cpu": 4, "memory": "8Gi"}},
                            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                    "image": {"repository": "registry.example/gb-runtime", "tag": "1.2.3", "pullPolicy": "Always"}},
        "leaderElection": {"enabled": false},
        "controller": {"targetUtilisation": "0.6", "observeIntervalSeconds": 10},
        "metrics": {"port": 9100, "serviceMonitor": {"enabled": true}, "podMonitor": {"enabled": true}},
    });
    let docs = render(&values).await;
    let inv = inventory(&docs);
    let has = |k: &str, ns: &str, n: &str| inv.contains(&(k.into(), ns.into(), n.into()));
    // One namespace watched: the ClusterRole granted there, not cluster-wide.
    assert!(
        has("RoleBinding", "vision", "greenbatch-operator"),
        "{inv:?}"
    );
    assert!(!has_kind(&docs, "ClusterRoleBinding"), "{inv:?}");
    // No leader election: no Lease role.
    assert!(!has_kind(&docs, "Role"), "{inv:?}");
    for ns in ["vision", "ml"] {
        assert!(has("ServiceAccount", ns, "profiler"), "{ns}: {inv:?}");
        let b = docs
            .iter()
            .find(|d| {
                d["kind"] == "RoleBinding"
                    && d["metadata"]["namespace"] == ns
                    && d["roleRef"]["name"] == "greenbatch-runtime"
            })
            .unwrap_or_else(|| panic!("no runtime RoleBinding in {ns}"));
        assert_eq!(
            subjects(b),
            vec![("ServiceAccount".into(), ns.into(), "profiler".into())]
        );
    }
    let a = args(&docs);
    assert_operator_accepts(&a);
    assert_eq!(flag(&a, "--namespace"), Some("vision"));
    assert!(
        a.contains(&"--disable-leader-election".to_string()),
        "{a:?}"
    );
    // No Lease to keep an old and a new pod apart during an update: the old one stops first.
    assert_eq!(
        find(&docs, "Deployment", "greenbatch-operator")["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert_eq!(flag(&a, "--lease-name"), None);
    assert_eq!(flag(&a, "--runtime-service-account"), Some("profiler"));
    assert_eq!(
        flag(&a, "--runtime-image"),
        Some("registry.example/gb-runtime:1.2.3")
    );
    assert_eq!(flag(&a, "--runtime-version"), Some("1.2.3"));
    // A digest pins an image (the tag no longer says which).
    let digest = format!("sha256:{}", "ab".repeat(32));
    let pinned = render(&json!({
        "image": {"digest": digest},
        "runtime": {"image": {"digest": digest}, "version": "2026.11"},
    }))
    .await;
    assert_eq!(
        operator_container(&pinned)["image"],
        format!("ghcr.io/greenbatch/operator@{digest}")
    );
    let pinned_args = args(&pinned);
    assert_operator_accepts(&pinned_args);
    assert_eq!(
        flag(&pinned_args, "--runtime-image"),
        Some(format!("ghcr.io/greenbatch/runtime@{digest}").as_str())
    );
    assert_eq!(flag(&pinned_args, "--runtime-version"), Some("2026.11"));
    assert_eq!(flag(&a, "--image-pull-policy"), Some("Always"));
    assert_eq!(flag(&a, "--model-ca-configmap"), Some("corp-ca"));
    // No spare GPU: pods replaced in place, half at a time (a 0 is a value, not "unset").
    assert_eq!(flag(&a, "--serving-max-surge"), Some("0"));
    assert_eq!(flag(&a, "--serving-max-unavailable"), Some("50%"));
    // The platform's pod defaults, as JSON the operator parses (assert_operator_accepts above).
    let pod_defaults: Value =
        serde_json::from_str(flag(&a, "--runtime-pod-defaults").expect("the flag")).expect("JSON");
    assert_eq!(pod_defaults["resources"]["requests"]["memory"], "8Gi");
    assert_eq!(pod_defaults["tolerations"][0]["operator"], "Exists");
    assert_eq!(flag(&a, "--target-utilisation"), Some("0.6"));
    assert_eq!(flag(&a, "--observe-interval-seconds"), Some("10"));
    assert_eq!(flag(&a, "--listen"), Some("0.0.0.0:9100"));
    // The monitors select what exists: the metrics Service's labels, the serving pods' labels.
    let sm = find(&docs, "ServiceMonitor", "greenbatch-operator");
    let svc_labels = &find(&docs, "Service", "greenbatch-operator-metrics")["metadata"]["labels"];
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("labels")
    {
        assert_eq!(&svc_labels[k], v, "ServiceMonitor selects by {k}");
    }
    // The per-service series keep their own `namespace` label (not renamed exported_namespace).
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
    let pm = find(&docs, "PodMonitor", "greenbatch-runtime-serving");
    // Series carry the service they serve: the dashboard groups by it.
    assert_eq!(
        pm["spec"]["podTargetLabels"],
        json!([greenbatch_operator::names::SERVICE_LABEL])
    );
    assert_eq!(
        pm["spec"]["namespaceSelector"]["matchNames"],
        json!(["vision"])
    );
    // A subset of the labels the operator gives every serving pod.
    let serving = greenbatch_operator::resources::serving_labels("any-service");
    let selector = pm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            serving.get(k).map(String::as_str),
            v.as_str(),
            "PodMonitor selects serving pods by {k}"
        );
    }
    assert_eq!(
        pm["spec"]["podMetricsEndpoints"][0]["port"],
        greenbatch_operator::names::HTTP_PORT_NAME
    );
}

#[tokio::test]
async fn values_files_long_names_and_extra_labels_render_what_the_api_and_operator_accept() {
    // Numbers from a values file are floats to Helm: a million must still render as digits.
    let values = json!({
        "controller": {"observeIntervalSeconds": 3600,
                       "profilingJob": {"deadlineSeconds": 1209600, "ttlSecondsAfterFinished": 2592000}},
        "leaderElection": {"leaseDurationSeconds": 1000000},
        "metrics": {"port": 65000},
        "runtime": {"namespaces": ["vision"], "imagePullSecrets": [{"name": "registry"}],
                    "serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/models-reader"}},
        // An attempt to relabel the selector's key keeps the selector matching the pods.
        "podLabels": {"app.kubernetes.io/component": "mine", "team": "ml"},
    });
    // Helm's longest release name (53), without "greenbatch" in it: 64 characters of prefix.
    let long_release = "platform-ml-inference-operator-production-europe-west";
    assert_eq!(long_release.len(), 53);
    let out = chart::template_release(long_release, &values, &[])
        .await
        .expect("helm runs");
    assert!(out.success(), "{out}");
    let docs = chart::documents(&out.stdout).expect("no key twice in any mapping");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let a: Vec<String> = serde_json::from_value(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
    )
    .expect("args");
    assert_operator_accepts(&a);
    assert_eq!(flag(&a, "--job-deadline-seconds"), Some("1209600"));
    assert_eq!(flag(&a, "--job-ttl-seconds"), Some("2592000"));
    assert_eq!(flag(&a, "--lease-duration-seconds"), Some("1000000"));
    assert_eq!(flag(&a, "--observe-interval-seconds"), Some("3600"));
    assert_eq!(flag(&a, "--listen"), Some("0.0.0.0:65000"));

    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &pod_labels[k], v,
            "the selector still matches the pods by {k}"
        );
    }
    assert_eq!(pod_labels["team"], "ml");

    // Names: a Service's must be a DNS label (63); the rest fit theirs, and none repeats.
    let mut seen = BTreeSet::new();
    for d in &docs {
        let kind = d["kind"].as_str().unwrap_or_default();
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let limit = if kind == "Service" { 63 } else { 253 };
        assert!(
            !name.is_empty() && name.len() <= limit,
            "{kind} {name:?}: {} characters",
            name.len()
        );
        assert!(
            seen.insert((kind, d["metadata"]["namespace"].as_str(), name)),
            "{kind} {name} twice"
        );
    }

    let runtime_sa = docs
        .iter()
        .find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["namespace"] == "vision")
        .expect("the runtime service account");
    assert_eq!(
        runtime_sa["imagePullSecrets"],
        json!([{"name": "registry"}])
    );
    // A cloud identity for the runtime pods (IRSA), on their account.
    assert_eq!(
        runtime_sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/models-reader"
    );
}

#[tokio::test]
async fn the_grafana_dashboard_ships_as_a_configmap_for_the_sidecar() {
    let docs = render(&json!({"dashboards": {"enabled": true, "namespace": "monitoring"}})).await;
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "greenbatch-dashboards")
        .expect("the dashboards ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(cm["data"]["greenbatch.json"].as_str().expect("JSON"))
            .expect("the ConfigMap holds the dashboard as JSON");
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart::chart_dir().join("dashboards/greenbatch.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
    // Every panel queries something; each query reads a greenbatch series.
    let queries = chart::dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    assert!(
        queries.iter().all(|q| q.contains("greenbatch_")),
        "{queries:?}"
    );
    // Off by default.
    assert!(!has_kind(&render(&json!({})).await, "ConfigMap"));
}

#[tokio::test]
async fn standbys_get_a_disruption_budget_in_the_api_the_cluster_serves() {
    let docs = render(&json!({"replicaCount": 3})).await;
    let pdb = find(&docs, "PodDisruptionBudget", "greenbatch-operator");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let pods =
        &find(&docs, "Deployment", "greenbatch-operator")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in pdb["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(&pods[k], v, "the budget covers the operator pods by {k}");
    }
    // Kubernetes 1.20 serves only policy/v1beta1.
    let out = chart::template(&json!({"replicaCount": 3}), &["--kube-version", "1.20.2"])
        .await
        .expect("helm runs");
    assert!(out.success(), "{out}");
    let old = chart::documents(&out.stdout).expect("YAML");
    assert_eq!(
        find(&old, "PodDisruptionBudget", "greenbatch-operator")["apiVersion"],
        "policy/v1beta1"
    );
    // One replica: nothing to keep available during a drain but the one pod, so no budget.
    assert!(!has_kind(&render(&json!({})).await, "PodDisruptionBudget"));
}

#[tokio::test]
async fn everything_the_chart_renders_fits_the_api_schemas_of_kubernetes_1_25_to_1_37() {
    // Every optional part on; the CRDs too. The dry run on the test cluster checks 1.20; these
    // are the schemas of newer releases, strict (no unknown field).
    let values = json!({
        "replicaCount": 2,
        "runtime": {"namespaces": ["vision"], "imagePullSecrets": [{"name": "registry"}]},
        "metrics": {"serviceMonitor": {"enabled": true}, "podMonitor": {"enabled": true},
                    "prometheusRule": {"enabled": true}},
        "dashboards": {"enabled": true},
    });
    for (version, watch) in [("1.25.0", ""), ("1.33.0", "vision"), ("1.37.0", "")] {
        let mut values = values.clone();
        values["watchNamespace"] = json!(watch);
        let out = chart::template(&values, &["--kube-version", version])
            .await
            .expect("helm runs");
        assert!(out.success(), "{out}");
        match chart::validate_schemas(&out.stdout, version)
            .await
            .expect("runs")
        {
            Some(checked) => assert!(checked.success(), "Kubernetes {version}: {checked}"),
            None if std::env::var_os("GREENBATCH_REQUIRE_KUBERNETES_VALIDATE").is_none() => {
                say(
                    "kubernetes-validate not installed: manifests not checked against newer schemas",
                );
                return;
            }
            None => panic!(
                "kubernetes-validate required (GREENBATCH_REQUIRE_KUBERNETES_VALIDATE) but not found: run scripts/setup-test-cluster.sh"
            ),
        }
    }
}

#[tokio::test]
async fn bad_values_fail_naming_the_key_and_render_nothing() {
    let cases = [
        (json!({"replicas": 2}), "Additional property replicas"),
        (
            json!({"controller": {"targetUtilisation": 1.5}}),
            "controller.targetUtilisation",
        ),
        (
            json!({"controller": {"targetUtilisation": "0"}}),
            "controller.targetUtilisation",
        ),
        (
            json!({"controller": {"observeIntervalSeconds": 0}}),
            "controller.observeIntervalSeconds",
        ),
        (
            json!({"runtime": {"namespaces": ["Not_A_Namespace"]}}),
            "runtime.namespaces",
        ),
        (
            json!({"runtime": {"modelCAConfigMap": "Corp_CA"}}),
            "runtime.modelCAConfigMap",
        ),
        (json!({"crds": {"install": "yes"}}), "crds.install"),
        // Unquoted, '#x' rendered as a YAML comment and vanished.
        (json!({"priorityClassName": "#x"}), "priorityClassName"),
        (
            json!({"runtime": {"pod": {"tolerations": [{"key": "gpu", "operator": "In"}]}}}),
            "runtime.pod.tolerations",
        ),
        (json!({"runtime": {"pod": {"affinity": {}}}}), "runtime.pod"),
        (
            json!({"controller": {"unusedProfileTtlSeconds": 600}}),
            "controller.unusedProfileTtlSeconds",
        ),
        (
            json!({"controller": {"unusedProfileTtlSeconds": 1e20}}),
            "controller.unusedProfileTtlSeconds",
        ),
        (
            json!({"controller": {"profilingJob": {"ttlSecondsAfterFinished": 60}}}),
            "controller.profilingJob.ttlSecondsAfterFinished",
        ),
        (
            json!({"controller": {"profilingJob": {"ttlSecondsAfterFinished": "forever"}}}),
            "controller.profilingJob.ttlSecondsAfterFinished",
        ),
        (json!({"image": {"repository": ""}}), "image.repository"),
        (json!({"image": {"digest": "sha256:xyz"}}), "image.digest"),
        (json!({"logging": {"format": "xml"}}), "logging.format"),
        (json!({"metrics": {"port": 70000}}), "metrics.port"),
        (json!({"metrics": {"port": 80}}), "metrics.port"),
        (
            json!({"runtime": {"version": "v".repeat(64)}}),
            "runtime.version",
        ),
        // A tag the schema allows but no EnergyProfile could name as its runtime version.
        (
            json!({"runtime": {"image": {"tag": "t".repeat(70)}}}),
            "runtime.version",
        ),
        (
            json!({"runtime": {"version": "1.0 #rc"}}),
            "runtime.version",
        ),
        (
            json!({"replicaCount": 2, "leaderElection": {"enabled": false}}),
            "leaderElection.enabled=false",
        ),
        (
            json!({"leaderElection": {"renewDeadlineSeconds": 20}}),
            "leaderElection.renewDeadlineSeconds",
        ),
        (
            json!({"leaderElection": {"renewIntervalSeconds": 10}}),
            "leaderElection.renewIntervalSeconds",
        ),
        (
            json!({"serviceAccount": {"create": false}}),
            "serviceAccount.name",
        ),
        (
            json!({"metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}),
            "metrics.service.enabled",
        ),
    ];
    for (values, key) in cases {
        let out = chart::template(&values, &[]).await.expect("helm runs");
        assert!(!out.success(), "{values} was accepted:\n{}", out.stdout);
        assert!(
            out.stderr.contains(key),
            "{values}: the error names {key}: {}",
            out.stderr
        );
        assert!(
            out.stdout.trim().is_empty(),
            "{values}: nothing is rendered: {}",
            out.stdout
        );
    }
}

/// A pod's environment as the kubelet would give it: plain values, and the downward-API fields the
/// chart uses (any other reference fails the test, so a new one gets handled here).
fn pod_env(container: &Value, pod_name: &str, namespace: &str) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            if let Some(v) = e["value"].as_str() {
                return (name, v.to_string());
            }
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => pod_name.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                other => panic!("env {name}: the test cannot resolve {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// The CRDs the chart installs (`templates/crds.yaml`, from its copy in `files/crds/`).
const CRD_NAMES: [&str; 2] = [
    "energyprofiles.greenbatch.dev",
    "inferenceservices.greenbatch.dev",
];

async fn assert_crds_exist(crds: &Api<CustomResourceDefinition>, when: &str) {
    for name in CRD_NAMES {
        let found = crds.get_opt(name).await.expect("get CRD");
        assert!(found.is_some(), "CRD {name} missing {when}");
    }
}

/// Whether the chart's operator Deployment exists.
async fn operator_deployed(deployments: &Api<Deployment>) -> bool {
    deployments
        .get_opt("greenbatch-operator")
        .await
        .expect("get")
        .is_some()
}

/// Each CRD carries the ownership Helm checks before it upgrades (or refuses to touch) an object.
async fn assert_crds_owned_by_the_release(crds: &Api<CustomResourceDefinition>) {
    for name in CRD_NAMES {
        let crd = crds.get(name).await.expect("get CRD");
        let annotations = crd.metadata.annotations.unwrap_or_default();
        let labels = crd.metadata.labels.unwrap_or_default();
        assert_eq!(
            annotations
                .get("meta.helm.sh/release-name")
                .map(String::as_str),
            Some(chart::RELEASE),
            "{name}: {annotations:?}"
        );
        assert_eq!(
            annotations
                .get("meta.helm.sh/release-namespace")
                .map(String::as_str),
            Some(OPERATOR_NAMESPACE)
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("Helm")
        );
    }
}

/// What `helm uninstall` keeps: the objects whose manifest in the release says so (Helm reads the
/// policy from the release's manifest, not from the live object).
async fn kept_by_the_release(cluster: &TestCluster) -> BTreeSet<String> {
    let manifest = cluster
        .helm([
            "get",
            "manifest",
            chart::RELEASE,
            "--namespace",
            OPERATOR_NAMESPACE,
        ])
        .await
        .expect("helm runs")
        .ok()
        .expect("helm get manifest");
    chart::documents(&manifest.stdout)
        .expect("YAML")
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep")
        .map(|d| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            format!("{}/{}", s(&d["kind"]), s(&d["metadata"]["name"]))
        })
        .collect()
}

fn kept_crds() -> BTreeSet<String> {
    CRD_NAMES
        .iter()
        .map(|n| format!("CustomResourceDefinition/{n}"))
        .collect()
}

/// The release owns the CRDs and its manifest keeps them; `helm uninstall` leaves them.
async fn uninstall_keeping_the_crds(
    cluster: &TestCluster,
    crds: &Api<CustomResourceDefinition>,
    when: &str,
) {
    assert_crds_owned_by_the_release(crds).await;
    assert_eq!(kept_by_the_release(cluster).await, kept_crds(), "{when}");
    chart::uninstall(cluster).await.expect("helm uninstall");
    assert_crds_exist(crds, &format!("kept by helm uninstall {when}")).await;
}

/// JSON with every number as a float: YAML and Rust write `4096` and `4096.0` for the same bound.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_f64).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Per version of a CRD: its name, schema and printer columns, as JSON.
fn crd_versions(crd: &CustomResourceDefinition) -> Vec<Value> {
    crd.spec
        .versions
        .iter()
        .map(|v| numbers_as_f64(&json!([v.name, v.schema, v.additional_printer_columns])))
        .collect()
}

async fn crd_versions_as_served(crds: &Api<CustomResourceDefinition>, name: &str) -> Vec<Value> {
    crd_versions(&crds.get(name).await.expect("get CRD"))
}

fn generated_crd_versions(name: &str) -> Vec<Value> {
    let crd = greenbatch_crds::all_crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .expect("a CRD of ours");
    crd_versions(&crd)
}

/// The operator's metrics once it has counted one of everything (an error, a pod scrape) and
/// decided for a service that serves and was observed.
#[tokio::test]
async fn the_alerts_parse_and_read_only_series_the_operator_exports() {
    let docs = render(&json!({"metrics": {"serviceMonitor": {"enabled": true},
                                          "prometheusRule": {"enabled": true, "labels": {"release": "prom"}}}}))
    .await;
    let rule = find(&docs, "PrometheusRule", "greenbatch-operator");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .clone();
    assert!(rules.len() >= 5, "{rules:?}");
    // Every alert says how bad, what, and for how long it held.
    for r in &rules {
        assert!(
            r["alert"]
                .as_str()
                .is_some_and(|a| a.starts_with("Greenbatch")),
            "{r}"
        );
        assert!(
            r["labels"]["severity"].is_string() && r["for"].is_string(),
            "{r}"
        );
        assert!(r["annotations"]["description"].is_string(), "{r}");
    }
    // Each reads series this operator exports (with a sample of each labelled family).
    let exported = busy_operator_metrics();
    for expr in rules.iter().filter_map(|r| r["expr"].as_str()) {
        // An alert that reads no greenbatch series (a misspelt prefix) would be checked by nothing.
        assert!(
            !chart::series_names(expr).is_empty(),
            "the alert `{expr}` reads no greenbatch series"
        );
        for name in chart::series_names(expr) {
            assert!(
                exported.contains(&format!("{name}{{")) || exported.contains(&format!("{name} ")),
                "the alert `{expr}` reads {name}, which the operator does not export"
            );
        }
    }
    // And Prometheus parses them (the rule file is the PrometheusRule's spec).
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), rule["spec"].to_string()).expect("written");
    if let Some(o) = greenbatch_tests::tool::promtool(
        &[
            "check",
            "rules",
            file.path().to_str().expect("a UTF-8 path"),
        ],
        "",
    ) {
        assert!(
            o.status.success(),
            "promtool refuses the alerts: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Off by default, and it needs the ServiceMonitor that scrapes what it reads.
    assert!(!has_kind(&render(&json!({})).await, "PrometheusRule"));
    let out = chart::template(
        &json!({"metrics": {"prometheusRule": {"enabled": true}}}),
        &[],
    )
    .await
    .expect("helm runs");
    assert!(
        !out.success() && out.stderr.contains("needs metrics.serviceMonitor.enabled"),
        "{out}"
    );
}

fn busy_operator_metrics() -> String {
    let m = greenbatch_operator::metrics::Metrics::new();
    m.reconciled("ns/svc", Duration::from_millis(5), Some("Job"));
    m.scraped(1, 1);
    let decided: greenbatch_crds::InferenceService = serde_json::from_value(json!({
        "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "svc", "namespace": "ns"},
        "spec": {"model": {"source": {"builtin": "resnet50"}, "input": {"shape": [3, 224, 224]}},
                 "slo": {"latencyMs": 50}},
        "status": {"phase": "Serving",
            "selected": {"batchSize": 32, "maxQueueDelayMs": 8, "expectedLatencyMs": 31, "percentile": 99,
                         "joulesPerInference": 0.084, "batch1JoulesPerInference": 0.594,
                         "sloAttainable": true, "meter": "nvml-counter", "reason": "r"},
            "replicas": {"desired": 2, "ready": 2, "measuredCapacityPerReplica": 900},
            "observed": {"joulesPerInference": 0.13, "predictedJoulesPerInference": 0.12,
                         "forwardMsPerBatch": 7.5, "predictedForwardMsPerBatch": 5.0,
                         "executorBusy": 0.85}},
    }))
    .expect("an InferenceService");
    m.render(&[std::sync::Arc::new(decided)])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn chart_installs_runs_the_operator_upgrades_and_uninstalls() {
    const WATCHED: &str = "vision";
    const OTHER: &str = "elsewhere";
    // With owner-reference enforcement on, as on OpenShift and hardened clusters (see rbac.yaml).
    let options = TestClusterOptions {
        extra_apiserver_args: vec![
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
        ],
        ..Default::default()
    };
    let cluster = TestCluster::start(options).await.expect("cluster starts");
    for ns in [OPERATOR_NAMESPACE, WATCHED, OTHER] {
        cluster.create_namespace(ns).await.expect("namespace");
    }
    let port = free_port();
    let values = json!({
        "watchNamespace": WATCHED,
        "runtime": {"namespaces": [WATCHED]},
        "metrics": {"port": port},
        "logging": {"format": "text"},
    });

    // A server-side dry run of everything the chart would create, CRDs included: the API server
    // validates it all and keeps nothing.
    let rendered = chart::template(&values, &[]).await.expect("helm runs");
    assert!(rendered.success(), "{rendered}");
    let dry = cluster
        .kubectl_with_stdin(["apply", "--dry-run=server", "-f", "-"], &rendered.stdout)
        .await
        .expect("kubectl runs");
    assert!(dry.success(), "{dry}");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), OPERATOR_NAMESPACE);
    assert!(
        !operator_deployed(&deployments).await,
        "a dry run created the Deployment"
    );

    let out = chart::install(&cluster, &values)
        .await
        .expect("helm install");
    // The NOTES tell the user what to run next, in the namespace set up for it.
    for next in [
        "kubectl apply -n vision -f examples/resnet50.yaml",
        "/plots/vision/<name>",
        "kubectl describe inferenceservice -n vision <name>",
        "`helm upgrade` upgrades them",
    ] {
        assert!(
            out.stdout.contains(next),
            "NOTES say {next:?}:\n{}",
            out.stdout
        );
    }
    say(&format!(
        "helm install: {}",
        out.stdout.lines().next().unwrap_or("")
    ));
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    assert_crds_exist(&crds, "after helm install").await;
    assert_crds_owned_by_the_release(&crds).await;
    assert_eq!(kept_by_the_release(&cluster).await, kept_crds());
    let runtime_sa: Api<ServiceAccount> = Api::namespaced(cluster.client(), WATCHED);
    assert!(
        runtime_sa
            .get_opt("greenbatch-runtime")
            .await
            .expect("get")
            .is_some()
    );

    // The operator as its Deployment runs it: the image's binary, the Deployment's args and env, the
    // service account's identity (the harness's token for the same user: the same RBAC).
    let deployment = deployments
        .get("greenbatch-operator")
        .await
        .expect("the chart's Deployment");
    let template = serde_json::to_value(&deployment.spec.expect("spec").template).expect("JSON");
    assert_eq!(
        template["spec"]["serviceAccountName"],
        OPERATOR_SERVICE_ACCOUNT
    );
    let container = &template["spec"]["containers"][0];
    let args: Vec<String> = serde_json::from_value(container["args"].clone()).expect("args");
    let pod_name = "greenbatch-operator-5d8c7b9f4-x2x7q";
    let log_path = cluster.dir().join("operator.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = tokio::process::Command::new(operator_binary());
    cmd.args(&args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env(
            "KUBECONFIG",
            cluster.kubeconfig_as(OPERATOR).expect("kubeconfig"),
        )
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true);
    for (k, v) in pod_env(container, pod_name, OPERATOR_NAMESPACE) {
        cmd.env(k, v);
    }
    let mut operator = cmd.spawn().expect("the operator binary starts");
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };

    wait_for(
        "the operator to be ready as the leader",
        Duration::from_secs(30),
        || async {
            match get_local(port, "/readyz").await {
                Ok((200, body)) if body.contains("leader") => Ok(()),
                other => Err(format!("/readyz: {other:?}; operator log:\n{}", log_tail())),
            }
        },
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(), OPERATOR_NAMESPACE);
    let lease = leases.get("greenbatch-operator").await.expect("the Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(pod_name)
    );

    // A user's service, applied with kubectl as the README says: profiled in the watched
    // namespace, by a Job whose pods run as the runtime service account the chart made there.
    let example = workspace_root().join("examples/cpu-dev.yaml");
    for ns in [WATCHED, OTHER] {
        cluster
            .kubectl(["apply", "-n", ns, "-f", example.to_str().expect("path")])
            .await
            .expect("kubectl runs")
            .ok()
            .expect("kubectl apply");
    }
    let services: Api<InferenceService> = Api::namespaced(cluster.client(), WATCHED);
    // Without a kube-controller-manager the Job gets no pod, so the service waits with its
    // profiling Job created (the e2e test goes on from there).
    let jobs: Api<Job> = Api::namespaced(cluster.client(), WATCHED);
    let job_list = wait_for("the profiling Job", Duration::from_secs(30), || async {
        let list = jobs
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let phase = services
            .get("resnet18-cpu")
            .await
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.phase);
        match (list.items.len(), phase) {
            // Pending in the reconcile that creates the Job, Profiling from the next one on (the
            // Job's own watch event triggers it at once): either, with one Job.
            (1, Some(Phase::Pending | Phase::Profiling)) => Ok(list),
            (n, phase) => Err(format!(
                "{n} Jobs, phase {phase:?}; operator log:\n{}",
                log_tail()
            )),
        }
    })
    .await;
    let job_pod = job_list.items[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(
        job_pod.service_account_name.as_deref(),
        Some("greenbatch-runtime")
    );
    assert_eq!(
        job_pod.containers[0].image.as_deref(),
        Some("ghcr.io/greenbatch/runtime:0.1.0")
    );
    // The other namespace is not watched (nor readable: the RoleBinding is in `vision` only).
    let other: Api<InferenceService> = Api::namespaced(cluster.client(), OTHER);
    let untouched = other.get("resnet18-cpu").await.expect("get");
    assert!(untouched.status.is_none(), "{:?}", untouched.status);
    // Its plot waits for the measurement, and says so (read with the chart's RBAC).
    let (code, body) = get_local(port, &format!("/plots/{WATCHED}/resnet18-cpu"))
        .await
        .expect("GET a plot");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no measured table yet"), "{body}");
    let (code, metrics) = get_local(port, "/metrics").await.expect("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("greenbatch_operator_reconciles_total"),
        "{metrics}"
    );
    // The dashboard's operator panels read series this binary exports (the serving panels are
    // checked against the runtime's /metrics in runtime/tests/serve.rs).
    let busy = busy_operator_metrics();
    for name in chart::dashboard_queries()
        .iter()
        .flat_map(|q| chart::series_names(q))
        .filter(|n| n.starts_with("greenbatch_operator_"))
    {
        // Labelled families appear with their first sample (no reconcile error yet here): those
        // are checked against the operator's metrics after one of each.
        let exported =
            |text: &str| text.contains(&format!("{name}{{")) || text.contains(&format!("{name} "));
        assert!(
            exported(&metrics) || exported(&busy),
            "the dashboard reads {name}, which the operator does not export:\n{metrics}"
        );
    }

    // An upgrade changes the Deployment's flags.
    let mut upgraded = values.clone();
    upgraded["controller"] = json!({"observeIntervalSeconds": 10});
    chart::apply(&cluster, "upgrade", &upgraded, &[])
        .await
        .expect("helm upgrade");
    let after = deployments.get("greenbatch-operator").await.expect("get");
    let new_args: Vec<String> = after
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert_operator_accepts(&new_args);
    assert_eq!(flag(&new_args, "--observe-interval-seconds"), Some("10"));

    // Uninstall removes what the chart made and nothing of the users': the CRDs (kept by their
    // resource policy), the services and their profiles stay.
    let _ = operator.kill().await;
    chart::uninstall(&cluster).await.expect("helm uninstall");
    assert!(!operator_deployed(&deployments).await);
    let roles: Api<ClusterRole> = Api::all(cluster.client());
    for name in ["greenbatch-operator", "greenbatch-runtime"] {
        assert!(roles.get_opt(name).await.expect("get").is_none(), "{name}");
    }
    assert!(
        runtime_sa
            .get_opt("greenbatch-runtime")
            .await
            .expect("get")
            .is_none()
    );
    assert_crds_exist(&crds, "kept by helm uninstall").await;
    assert!(
        services
            .get_opt("resnet18-cpu")
            .await
            .expect("get")
            .is_some()
    );
}

/// A copy of the chart in `dir` as an older version would have been: version 0.1.9, with an
/// InferenceService CRD a field (`spec.replicas`) and a printer column fewer.
fn older_chart(dir: &std::path::Path) -> PathBuf {
    let copy = dir.join("greenbatch-0.1.9");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(chart::chart_dir())
        .arg(&copy)
        .status()
        .expect("cp runs");
    assert!(status.success());
    let chart_yaml = copy.join("Chart.yaml");
    let text = std::fs::read_to_string(&chart_yaml).expect("Chart.yaml");
    let older: String = text
        .lines()
        .map(|l| {
            if l.starts_with("version: ") {
                "version: 0.1.9"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(older, text.trim_end(), "Chart.yaml has a version line");
    std::fs::write(&chart_yaml, older + "\n").expect("write Chart.yaml");
    let crd_file = copy.join("files/crds/inferenceservices.greenbatch.dev.yaml");
    let mut crd: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&crd_file).expect("CRD file")).expect("YAML");
    let version = &mut crd["spec"]["versions"][0];
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object_mut()
        .expect("spec properties")
        .remove("replicas")
        .expect("spec.replicas");
    version["additionalPrinterColumns"]
        .as_array_mut()
        .expect("printer columns")
        .remove(0);
    std::fs::write(&crd_file, serde_yaml::to_string(&crd).expect("YAML")).expect("write CRD");
    copy
}

/// The chart README's commands that hand CRDs applied by hand (or by a chart version that kept them
/// in `crds/`) to the release `greenbatch` in `greenbatch-system`.
const ADOPT_CRDS: [&str; 3] = [
    "kubectl apply -f crds/",
    "kubectl label crd inferenceservices.greenbatch.dev energyprofiles.greenbatch.dev --overwrite app.kubernetes.io/managed-by=Helm",
    "kubectl annotate crd inferenceservices.greenbatch.dev energyprofiles.greenbatch.dev --overwrite meta.helm.sh/release-name=greenbatch meta.helm.sh/release-namespace=greenbatch-system",
];

#[tokio::test]
async fn crds_upgrade_with_the_chart_and_ones_applied_by_hand_are_adopted_as_the_readme_says() {
    let cluster = TestCluster::start(TestClusterOptions::default())
        .await
        .expect("cluster starts");
    cluster
        .create_namespace(OPERATOR_NAMESPACE)
        .await
        .expect("namespace");
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let services = "inferenceservices.greenbatch.dev";

    // A release of an older chart, whose API lacks a field, upgraded to this chart: the CRDs come
    // out exactly as the types generate them (the API server would otherwise prune the new field).
    let older = older_chart(cluster.dir());
    chart::apply_chart(&cluster, "install", &older, &json!({}), &[])
        .await
        .expect("helm install of the older chart");
    assert_ne!(
        crd_versions_as_served(&crds, services).await,
        generated_crd_versions(services)
    );
    chart::apply(&cluster, "upgrade", &json!({}), &[])
        .await
        .expect("helm upgrade");
    for name in CRD_NAMES {
        assert_eq!(
            crd_versions_as_served(&crds, name).await,
            generated_crd_versions(name),
            "helm upgrade brings {name} to the chart's schema"
        );
    }
    uninstall_keeping_the_crds(&cluster, &crds, "after the upgrade").await;

    // CRDs applied by hand (here: the old ones removed, these applied with kubectl).
    let mut delete = vec!["delete", "crd", "--wait=true"];
    delete.extend(CRD_NAMES);
    cluster
        .kubectl(delete)
        .await
        .expect("kubectl runs")
        .ok()
        .expect("kubectl delete crd");
    let dir = workspace_root().join("crds");
    cluster
        .kubectl(["apply", "-f", dir.to_str().expect("path")])
        .await
        .expect("kubectl runs")
        .ok()
        .expect("kubectl apply -f crds/");

    // Helm will not take over objects it did not make: the install fails before creating anything,
    // naming the object and the reason.
    let refused = chart::install(&cluster, &json!({}))
        .await
        .expect_err("helm install over CRDs it does not own");
    let text = refused.to_string();
    assert!(text.contains(".greenbatch.dev"), "{text}");
    assert!(text.contains("invalid ownership metadata"), "{text}");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), OPERATOR_NAMESPACE);
    assert!(
        !operator_deployed(&deployments).await,
        "a refused install created the Deployment"
    );

    // crds.install=false: the chart leaves them to whoever applied them.
    chart::install(&cluster, &json!({"crds": {"install": false}}))
        .await
        .expect("helm install with crds.install=false");
    let crd = crds.get(services).await.expect("get");
    let annotations = crd.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key("meta.helm.sh/release-name"),
        "{annotations:?}"
    );
    assert!(kept_by_the_release(&cluster).await.is_empty());

    // The README's commands hand them to the release; the next upgrade owns them, and its
    // uninstall keeps them.
    let readme = std::fs::read_to_string(chart::chart_dir().join("README.md")).expect("README");
    for command in ADOPT_CRDS {
        assert!(
            readme.contains(command),
            "the chart README gives `{command}`"
        );
        let mut args: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        if command.ends_with(" crds/") {
            // Run from the repository root, as the README means.
            args.pop();
            args.push(dir.display().to_string());
        }
        cluster
            .kubectl(args)
            .await
            .expect("kubectl runs")
            .ok()
            .expect("the README's command");
    }
    // (Given explicitly: `helm upgrade` without values reuses the last ones, crds.install=false.)
    chart::apply(
        &cluster,
        "upgrade",
        &json!({"crds": {"install": true}}),
        &[],
    )
    .await
    .expect("helm upgrade with the CRDs adopted");
    uninstall_keeping_the_crds(&cluster, &crds, "after adoption").await;
}

#[tokio::test]
async fn the_serving_objects_the_operator_builds_fit_the_api_schemas_of_kubernetes_1_25_to_1_37() {
    // The e2e test applies them to a 1.20 API server; newer releases' schemas, strict, here —
    // the disruption budget in the policy/v1 form those releases are sent.
    use greenbatch_operator::config::OperatorConfig;
    use greenbatch_operator::resources::{self, ServeSettings};
    let service: InferenceService = serde_json::from_value(json!({
        "apiVersion": "greenbatch.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "resnet50", "namespace": "vision", "uid": "u-1", "generation": 4},
        "spec": {"model": {"source": {"uri": "pvc://models/resnet50.pt"}, "input": {"shape": [3, 224, 224]}},
                 "slo": {"latencyMs": 50}, "gpu": {"count": 1, "product": "NVIDIA-H100-80GB-HBM3"},
                 "pod": {"resources": {"requests": {"cpu": 4, "memory": "8Gi"}, "limits": {"memory": "16Gi"}},
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "nodeSelector": {"pool": "inference"}, "priorityClassName": "inference"}},
    }))
    .expect("an InferenceService");
    assert!(
        greenbatch_crds::validate::validate_spec(&service.spec).is_ok(),
        "a valid spec"
    );
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "greenbatch.dev/v1alpha1".into(),
        kind: "InferenceService".into(),
        name: "resnet50".into(),
        uid: "u-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let settings = ServeSettings {
        batch_size: 32,
        max_queue_delay_ms: 8.0,
        replicas: 2,
        slo_ms: 50.0,
        percentile: 99,
        precision: greenbatch_crds::Precision::Fp32,
        target_utilisation: 0.8,
        profile_json: Some("{}".into()),
        spec_generation: Some(4),
    };
    let cfg = OperatorConfig::default();
    let deployment = resources::deployment(
        "resnet50",
        "vision",
        &service.spec.model,
        resources::PodPlacement {
            gpu: &service.spec.gpu,
            pod: &service.spec.pod.clone().expect("spec.pod"),
        },
        &settings,
        owner.clone(),
        &cfg,
    )
    .expect("a Deployment");
    let pod = &serde_json::to_value(&deployment).expect("JSON")["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"][0]["key"], "nvidia.com/gpu");
    assert_eq!(pod["priorityClassName"], "inference");
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["memory"],
        "8Gi"
    );
    let objects = [
        serde_json::to_value(&deployment).expect("JSON"),
        serde_json::to_value(resources::service("resnet50", "vision", owner.clone()))
            .expect("JSON"),
        serde_json::to_value(resources::disruption_budget(
            "resnet50",
            "vision",
            owner,
            "policy/v1",
        ))
        .expect("JSON"),
    ];
    let yaml: String = objects
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("YAML")))
        .collect();
    for version in ["1.25.0", "1.33.0", "1.37.0"] {
        match chart::validate_schemas(&yaml, version).await.expect("runs") {
            Some(checked) => assert!(checked.success(), "Kubernetes {version}: {checked}"),
            None if std::env::var_os("GREENBATCH_REQUIRE_KUBERNETES_VALIDATE").is_none() => {
                say("kubernetes-validate not installed: the operator's objects not checked");
                return;
            }
            None => panic!(
                "kubernetes-validate required (GREENBATCH_REQUIRE_KUBERNETES_VALIDATE) but not found"
            ),
        }
    }
}
