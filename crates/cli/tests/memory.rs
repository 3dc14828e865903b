//! Memory at the schema's maximum sizes: what the chart's 128 MiB limit holds, measured on the
//! `groupbinder` binary against a real control plane. The README's and the chart values' sizing
//! figures come from this test's output (`cargo test -p groupbinder --test memory -- --nocapture`).

use std::time::Duration;

use groupbinder_api::v1alpha1::{
    MAX_MATCH_EXPRESSIONS, MAX_MATCH_LABELS, MAX_ROLES, MAX_SELECTOR_ROLES, MAX_VALUES,
    NamespaceSelector, NamespacedRole, RoleKind, RoleName, SelectorOperator, SelectorRequirement,
};
use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_e2e::{
    OperatorProcess, eventually, guid, install_crd, install_k10, proc_status_kib,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{ListParams, PostParams};

/// The chart's default memory limit (`charts/groupbinder/values.yaml`).
const CHART_LIMIT_KIB: u64 = 128 * 1024;
/// Objects at the largest size admission lets through: the count the README says fits.
const OBJECTS: usize = 80;
/// Namespaces, each in one of `TEAMS` teams; every object binds in one team's namespaces.
const NAMESPACES: usize = 1000;
const TEAMS: usize = 100;

/// A label key as long as Kubernetes allows (317 characters: a 253-character DNS prefix, `/`, a
/// 63-character name), distinct for each `i`.
fn long_key(i: usize) -> String {
    let prefix = ["a", "b", "c", "d"].map(|c| c.repeat(62)).join(".") + ".x"; // 253
    format!("{prefix}/{}{i:02}", "n".repeat(61))
}

/// A label value as long as Kubernetes allows (63 characters), distinct for each `i`.
fn long_value(i: usize) -> String {
    format!("{}{i:03}", "v".repeat(60))
}

/// The 16 long labels every namespace carries, so that a selector at its maximum still selects.
fn shared_labels() -> std::collections::BTreeMap<String, String> {
    (0..MAX_MATCH_LABELS)
        .map(|i| (long_key(i), long_value(i)))
        .collect()
}

fn team(i: usize) -> String {
    format!("t{}", i % TEAMS)
}

/// A name as long as a role's may be (253 characters), distinct for each `(i, j)`.
fn long_name(i: usize, j: usize) -> String {
    format!("{}-{i:03}-{j:02}", "r".repeat(253 - 7))
}

/// Object `i` at the schema's maximum in every field: the longest prefix and description, 32
/// cluster roles (K10's four and 28 long names the allowlist refuses), 32 namespaced roles (8
/// selectors, each at its own maximum and selecting team `i`'s namespaces, and 24 long names
/// the allowlist refuses).
fn largest(i: usize) -> AzureGroupBinding {
    let requirement = |key: String, operator, values: Vec<String>| SelectorRequirement {
        key,
        operator,
        values: Some(values),
    };
    let selector = NamespaceSelector {
        match_labels: Some(shared_labels()),
        match_expressions: Some(
            std::iter::once(requirement(
                "team".into(),
                SelectorOperator::In,
                std::iter::once(team(i))
                    .chain((1..MAX_VALUES).map(long_value))
                    .collect(),
            ))
            .chain((1..MAX_MATCH_EXPRESSIONS).map(|k| {
                requirement(
                    long_key(MAX_MATCH_LABELS + k),
                    SelectorOperator::NotIn,
                    (0..MAX_VALUES).map(long_value).collect(),
                )
            }))
            .collect(),
        ),
    };
    let k10 = ["k10-admin", "k10-mc-admin", "k10-config-view", "k10-basic"];
    let cluster_roles = k10
        .iter()
        .map(|r| RoleName::from(*r))
        .chain((k10.len()..MAX_ROLES).map(|j| RoleName(long_name(i, j))))
        .collect();
    let roles = (0..MAX_SELECTOR_ROLES)
        .map(|_| NamespacedRole {
            name: "k10-basic".into(),
            namespace: None,
            namespace_selector: Some(selector.clone()),
            kind: RoleKind::ClusterRole,
        })
        .chain((MAX_SELECTOR_ROLES..MAX_ROLES).map(|j| {
            NamespacedRole::in_namespace(
                &long_name(i, j),
                &format!("{}{j:02}", "s".repeat(61)),
                RoleKind::Role,
            )
        }))
        .collect();
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(u32::try_from(i).unwrap_or(0)),
        group_prefix: Some(format!("{}:", "p".repeat(127))),
        description: Some("d".repeat(groupbinder_api::v1alpha1::DESCRIPTION_MAX_CHARS)),
        cluster_roles: Some(cluster_roles),
        roles: Some(roles),
        presented_by: Some(groupbinder_api::PresentedBy::Other),
    };
    AzureGroupBinding::new(&format!("largest-{i:03}"), spec)
}

/// The RoleBindings groupbinder manages, as the API server lists them.
async fn managed_role_bindings(client: &kube::Client) -> anyhow::Result<usize> {
    Ok(Api::<RoleBinding>::all(client.clone())
        .list_metadata(&ListParams::default().labels("app.kubernetes.io/managed-by=groupbinder"))
        .await?
        .items
        .len())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until the operator's RSS has not grown for 3 s (its caches have taken what was made).
async fn settled_rss(pid: u32) -> u64 {
    let mut last = proc_status_kib(pid, "VmRSS:");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = proc_status_kib(pid, "VmRSS:");
        if now <= last {
            return now;
        }
        last = now;
    }
    last
}

/// 1,000 namespaces with 17 labels each (16 of the longest kind), 960 RoleBindings of six plain
/// objects, then 80 objects at the
/// schema's maximum in every field (about 150 KB each), each making 14 bindings (4
/// ClusterRoleBindings and `k10-basic` in its team's 10 namespaces), then a restart with all of
/// it in place: the process stays inside the chart's 128 MiB limit throughout. It prints what
/// each part costs, the figures the README's sizing gives.
#[tokio::test]
async fn objects_at_the_schema_maximum_fit_the_charts_memory_limit() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder"));
    let operator =
        OperatorProcess::spawn(binary, cp.kubeconfig(), &[], std::process::Stdio::null())?;
    eventually(
        "the operator to serve metrics",
        Duration::from_secs(30),
        || async { Ok(operator.metric("groupbinder_reconciles_total").map(|_| ())) },
    )
    .await?;
    let empty = settled_rss(operator.id()).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    futures::future::try_join_all((0..NAMESPACES).map(|n| {
        let namespaces = namespaces.clone();
        async move {
            let mut labels = shared_labels();
            labels.insert("team".into(), team(n));
            let mut ns = Namespace::default();
            ns.metadata.name = Some(format!("memory-{n:04}"));
            ns.metadata.labels = Some(labels);
            namespaces.create(&PostParams::default(), &ns).await
        }
    }))
    .await?;
    let with_namespaces = settled_rss(operator.id()).await;

    // Plain objects that bind `k10-basic` in 16 teams' namespaces each: what a RoleBinding costs.
    let agbs: Api<AzureGroupBinding> = Api::all(client.clone());
    let wide = TEAMS / MAX_VALUES;
    for k in 0..wide {
        let teams = (0..MAX_VALUES).map(|t| team(k * MAX_VALUES + t)).collect();
        let selector = NamespaceSelector {
            match_labels: None,
            match_expressions: Some(vec![SelectorRequirement {
                key: "team".into(),
                operator: SelectorOperator::In,
                values: Some(teams),
            }]),
        };
        let spec = AzureGroupBindingSpec {
            group_object_id: guid(u32::try_from(1000 + k).unwrap_or(0)),
            group_prefix: Some("oidc:".into()),
            roles: Some(vec![NamespacedRole {
                name: "k10-basic".into(),
                namespace: None,
                namespace_selector: Some(selector),
                kind: RoleKind::ClusterRole,
            }]),
            ..AzureGroupBindingSpec::default()
        };
        agbs.create(
            &PostParams::default(),
            &AzureGroupBinding::new(&format!("wide-{k}"), spec),
        )
        .await?;
    }
    let wide_bindings = wide * MAX_VALUES * (NAMESPACES / TEAMS);
    eventually(
        "the wide objects' RoleBindings",
        Duration::from_secs(120),
        || async { Ok((managed_role_bindings(&client).await? == wide_bindings).then_some(())) },
    )
    .await?;
    let with_bindings = settled_rss(operator.id()).await;

    let size = serde_json::to_vec(&largest(0))?.len();
    for chunk in (0..OBJECTS).collect::<Vec<_>>().chunks(20) {
        futures::future::try_join_all(
            chunk
                .iter()
                .map(|i| async { agbs.create(&PostParams::default(), &largest(*i)).await }),
        )
        .await?;
    }
    // Every object reported on: not Ready (the allowlist refuses its long names), its bindings made.
    eventually(
        "every object's status",
        Duration::from_secs(300),
        || async {
            let all = agbs.list(&ListParams::default()).await?;
            let reported = all
                .items
                .iter()
                .filter(|o| groupbinder_e2e::ready(o).is_some())
                .count();
            Ok((reported == OBJECTS + wide).then_some(()))
        },
    )
    .await?;
    let role_bindings = managed_role_bindings(&client).await? - wide_bindings;
    assert_eq!(
        role_bindings,
        OBJECTS * (NAMESPACES / TEAMS),
        "RoleBindings made"
    );
    let with_objects = settled_rss(operator.id()).await;
    let peak = proc_status_kib(operator.id(), "VmHWM:");

    // A restart with everything in place: the new process lists it all at once.
    drop(operator);
    let operator =
        OperatorProcess::spawn(binary, cp.kubeconfig(), &[], std::process::Stdio::null())?;
    eventually(
        "the restarted operator to confirm every object",
        Duration::from_secs(300),
        || async {
            Ok(operator
                .metric("groupbinder_reconciles_total")
                .filter(|n| *n >= (OBJECTS + wide) as f64)
                .map(|_| ()))
        },
    )
    .await?;
    let restarted = settled_rss(operator.id()).await;
    let restart_peak = proc_status_kib(operator.id(), "VmHWM:");

    let per = |kib: u64, n: usize| kib as f64 / n as f64;
    eprintln!(
        "object at the schema's maximum: {size} bytes of JSON\n\
         RSS empty {:.1} MiB; with {NAMESPACES} namespaces {:.1} MiB ({:.1} KiB each)\n\
         with {wide_bindings} RoleBindings of {wide} plain objects {:.1} MiB ({:.1} KiB each)\n\
         with {OBJECTS} largest objects and {role_bindings} RoleBindings (+{} ClusterRoleBindings) {:.1} MiB ({:.0} KiB per object with its 14 bindings); peak {:.1} MiB\n\
         restart: settled {:.1} MiB, peak {:.1} MiB; the chart's limit {:.0} MiB",
        mib(empty),
        mib(with_namespaces),
        per(with_namespaces.saturating_sub(empty), NAMESPACES),
        mib(with_bindings),
        per(with_bindings.saturating_sub(with_namespaces), wide_bindings),
        OBJECTS * 4,
        mib(with_objects),
        per(with_objects.saturating_sub(with_bindings), OBJECTS),
        mib(peak),
        mib(restarted),
        mib(restart_peak),
        mib(CHART_LIMIT_KIB),
    );
    assert!(
        size > 140_000,
        "the largest object is {size} bytes: not at the maximum"
    );
    for (what, kib) in [("running", peak), ("restarting", restart_peak)] {
        assert!(
            kib < CHART_LIMIT_KIB,
            "{what} at the schema's maximum took {:.1} MiB, over the chart's 128 MiB",
            mib(kib)
        );
    }
    Ok(())
}
