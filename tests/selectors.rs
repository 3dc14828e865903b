//! Application teams by namespace selector, on the real control plane: the role is bound in every
//! namespace that matches, as namespaces are created, relabelled and deleted, never in `kube-*`
//! or (for `basic`) K10's own namespace; status and `kubectl get agb -o wide` say how many.

use std::time::Duration;

use groupbinder_api::{
    AzureGroupBindingSpec, NamespaceSelector, NamespacedRole, RoleKind, SelectedNamespaces,
};
use groupbinder_e2e::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};

const TEAM: &str = "groupbinder.test/team";
const ACTIONS: &str = "actions.kio.kasten.io";

/// Creates `name` (if needed) and sets its team label (`None`: removes it), as a user would.
async fn label(client: &kube::Client, name: &str, team: Option<&str>) -> anyhow::Result<()> {
    ensure_namespace(client, name).await?;
    let patch = serde_json::json!({"metadata": {"labels": {TEAM: team}}});
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn by_team(team: &str) -> NamespacedRole {
    NamespacedRole {
        name: "k10-basic".into(),
        namespace: None,
        namespace_selector: Some(NamespaceSelector {
            match_labels: Some([(TEAM.to_owned(), team.to_owned())].into()),
            match_expressions: None,
        }),
        kind: RoleKind::ClusterRole,
    }
}

/// The namespaces holding the object's RoleBinding, as the status lists them.
async fn selected(client: &kube::Client, name: &str) -> anyhow::Result<Option<SelectedNamespaces>> {
    Ok(agbs(client)
        .get(name)
        .await?
        .status
        .and_then(|s| s.selected_namespaces))
}

async fn wait_selected(client: &kube::Client, name: &str, want: &[&str]) -> anyhow::Result<()> {
    let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    eventually(
        &format!("{name} to select {want:?}"),
        Duration::from_secs(30),
        || async {
            let s = selected(client, name).await?;
            let ok = s.as_ref().is_some_and(|s| {
                s.first == want && usize::try_from(s.count).ok() == Some(want.len())
            });
            Ok(ok.then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn a_selector_follows_namespaces_as_they_come_change_and_go() -> anyhow::Result<()> {
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    for (ns, team) in [
        ("sel-shop-1", Some("shop")),
        ("sel-shop-2", Some("shop")),
        ("sel-crm", Some("crm")),
        // Never selected: kube-* namespaces, and K10's own for basic.
        ("kube-sel-shop", Some("shop")),
    ] {
        label(&client, ns, team).await?;
    }
    label(&client, "kasten-io", Some("shop")).await?;
    let operator = Operator::start(&client, config(seed_settings()));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(3000),
        roles: Some(vec![by_team("shop")]),
        ..seed_spec()
    };
    let group = format!("{SEED_PREFIX}{}", spec.group_object_id);
    let groups = [group.as_str()];
    let dev = Who::new(&client, "dev@example.com", &groups);
    apply(&client, &agb("shop-team", spec)).await?;
    wait_for_reason(&client, "shop-team", "True", "Reconciled").await?;
    wait_selected(&client, "shop-team", &["sel-shop-1", "sel-shop-2"]).await?;
    dev.may("create", ACTIONS, "backupactions", Some("sel-shop-1"))
        .await?;
    for ns in ["sel-crm", "kube-sel-shop", "kasten-io"] {
        assert!(
            !dev.can("create", ACTIONS, "backupactions", Some(ns))
                .await?,
            "{ns}"
        );
        assert!(
            rbs(&client, ns)
                .get_opt("shop-team:k10-basic")
                .await?
                .is_none(),
            "{ns}"
        );
    }

    // A namespace that stops matching loses its binding (alone: nothing else wakes the object);
    // a relabelled one gains it.
    label(&client, "sel-shop-2", Some("crm")).await?;
    wait_selected(&client, "shop-team", &["sel-shop-1"]).await?;
    label(&client, "sel-crm", Some("shop")).await?;
    wait_selected(&client, "shop-team", &["sel-crm", "sel-shop-1"]).await?;
    dev.may("create", ACTIONS, "backupactions", Some("sel-crm"))
        .await?;
    dev.may_not("create", ACTIONS, "backupactions", Some("sel-shop-2"))
        .await?;
    // A new namespace with the label is bound as it is created; a deleted one drops out.
    label(&client, "sel-shop-3", Some("shop")).await?;
    wait_selected(
        &client,
        "shop-team",
        &["sel-crm", "sel-shop-1", "sel-shop-3"],
    )
    .await?;
    Api::<Namespace>::all(client.clone())
        .delete("sel-shop-1", &DeleteParams::default())
        .await?;
    wait_selected(&client, "shop-team", &["sel-crm", "sel-shop-3"]).await?;

    // `kubectl get agb -o wide` shows how many namespaces are selected, and the first few.
    let out = cp
        .kubectl()
        .args(["get", "agb", "shop-team", "-o", "wide"])
        .output()?;
    let table = String::from_utf8(out.stdout)?;
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("NAMESPACES") && header.contains("SELECTED"),
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.contains("2") && row.contains("sel-crm"), "{table}");
    let ready = agbs(&client).get("shop-team").await?;
    let message = ready::message(&ready);
    assert!(
        message.contains("k10-basic in sel-crm, sel-shop-3"),
        "{message}"
    );

    agbs(&client)
        .delete("shop-team", &DeleteParams::default())
        .await?;
    label(&client, "kasten-io", None).await?;
    operator.stop().await
}

mod ready {
    pub fn message(agb: &groupbinder_api::AzureGroupBinding) -> String {
        groupbinder_e2e::ready(agb)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    }
}

/// What admission refuses, with messages that say how to fix it.
#[tokio::test]
async fn admission_refuses_selectors_that_would_select_too_much_or_nothing() -> anyhow::Result<()> {
    let (cp, _) = setup().await?;
    // Each case is the `roles` list; `basic` makes one entry binding K10's basic role.
    let basic = |rest: &str| format!("{{name: k10-basic, kind: ClusterRole, {rest}}}");
    let cases = [
        (
            basic("namespaceSelector: {}"),
            "must name at least one label",
        ),
        (
            basic("namespace: shop, namespaceSelector: {matchLabels: {team: shop}}"),
            "name either namespace",
        ),
        (basic(""), "name either namespace"),
        (
            basic("namespaceSelector: {matchExpressions: [{key: team, operator: In}]}"),
            "In and NotIn need values",
        ),
        (
            basic(
                "namespaceSelector: {matchExpressions: [{key: team, operator: Exists, values: [a]}]}",
            ),
            "take none",
        ),
        (
            basic(
                "namespaceSelector: {matchExpressions: [{key: team, operator: Gt, values: [\"1\"]}]}",
            ),
            "Unsupported value",
        ),
        // Label-sized, as on a namespace: 50 such objects of 0.96 MB each once took the
        // operator past its memory limit.
        (
            basic(&format!(
                "namespaceSelector: {{matchLabels: {{team: {}}}}}",
                "v".repeat(64)
            )),
            "values at most 63",
        ),
        (
            basic(&format!(
                "namespaceSelector: {{matchLabels: {{{}: shop}}}}",
                "k".repeat(318)
            )),
            "keys are at most 317",
        ),
        // Bounded in count too, so that the largest object stays about 150 KB.
        (
            basic(&format!(
                "namespaceSelector: {{matchExpressions: [{}]}}",
                ["{key: team, operator: Exists}"; 9].join(", ")
            )),
            "must have at most 8 items",
        ),
        (
            basic(&format!(
                "namespaceSelector: {{matchExpressions: [{{key: team, operator: In, values: [{}]}}]}}",
                (0..17)
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            "must have at most 16 items",
        ),
        (
            vec![basic("namespaceSelector: {matchLabels: {team: shop}}"); 9].join(", "),
            "at most 8 roles may use a namespaceSelector",
        ),
    ];
    for (i, (entry, message)) in cases.iter().enumerate() {
        let manifest = format!(
            "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata: {{name: bad-selector-{i}}}\nspec:\n  groupObjectId: {SEED_GUID}\n  roles: [{entry}]\n"
        );
        let file = cp.dir().join(format!("bad-selector-{i}.yaml"));
        std::fs::write(&file, manifest)?;
        let out = cp
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&file)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{entry} was admitted");
        assert!(stderr.contains(message), "{entry}: {stderr}");
    }
    Ok(())
}

/// Whoever may label namespaces cannot make one object bind without bound, nor make it revoke
/// what it has: over the operator's cap (2 here) the object keeps its RoleBindings, adds none,
/// and says `TooManyRoleBindings`; back within it, the missing one is added.
#[tokio::test]
async fn over_the_cap_an_object_keeps_its_role_bindings_and_adds_none() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    for ns in ["cap-1", "cap-2"] {
        label(&client, ns, Some("cap")).await?;
    }
    let mut settings = seed_settings();
    settings.max_role_bindings = 2;
    let operator = Operator::start(&client, config(settings));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(1800),
        group_prefix: Some(SEED_PREFIX.into()),
        roles: Some(vec![by_team("cap")]),
        ..AzureGroupBindingSpec::default()
    };
    apply(&client, &agb("capped", spec)).await?;
    wait_for_reason(&client, "capped", "True", "Reconciled").await?;
    let group = format!("{SEED_PREFIX}{}", guid(1800));
    let groups = [group.as_str()];
    let member = Who::new(&client, "dev", &groups);
    member
        .may("create", ACTIONS, "backupactions", Some("cap-2"))
        .await?;
    // Two more namespaces take the label: 4 planned, over the cap of 2.
    for ns in ["cap-3", "cap-4"] {
        label(&client, ns, Some("cap")).await?;
    }
    let over = |planned: usize| {
        let client = client.clone();
        async move {
            eventually(
                &format!("capped to say it asks for {planned}"),
                Duration::from_secs(30),
                || async {
                    let agb = agbs(&client).get("capped").await?;
                    let message = ready(&agb).map(|c| (c.reason.clone(), c.message.clone()));
                    Ok(message.filter(|(reason, message)| {
                        reason == "TooManyRoleBindings"
                            && message.contains(&format!("asks for {planned} RoleBindings"))
                            && message.contains("the 2 in place are kept")
                    }))
                },
            )
            .await
        }
    };
    over(4).await?;
    for ns in ["cap-1", "cap-2"] {
        assert!(
            member
                .can("create", ACTIONS, "backupactions", Some(ns))
                .await?,
            "{ns} kept"
        );
    }
    for ns in ["cap-3", "cap-4"] {
        assert!(
            rbs(&client, ns)
                .get_opt("capped:k10-basic")
                .await?
                .is_none(),
            "{ns} added"
        );
        assert!(
            !member
                .can("create", ACTIONS, "backupactions", Some(ns))
                .await?,
            "{ns}"
        );
    }
    label(&client, "cap-4", None).await?;
    over(3).await?;
    // Back within the cap: cap-1 no longer matches and is revoked, cap-3 is added.
    label(&client, "cap-1", None).await?;
    wait_for_reason(&client, "capped", "True", "Reconciled").await?;
    member
        .may("create", ACTIONS, "backupactions", Some("cap-3"))
        .await?;
    member
        .may_not("create", ACTIONS, "backupactions", Some("cap-1"))
        .await?;
    operator.stop().await
}

/// Deleting an object revokes at the operator's pace, not the garbage collector's (20 requests a
/// second: 50 s for these 1,000): on a control plane without kube-controller-manager, a plain
/// `kubectl delete agb` of an object with 1,000 selector-made RoleBindings leaves none within
/// 20 s, and its group is refused. Before, the operator left a plain deletion to the garbage
/// collector: with it stopped, the grants stayed. The benchmark (`make bench
/// BENCH_ARGS=--deletion`) reports the time.
#[tokio::test]
async fn deletion_revokes_a_thousand_role_bindings_without_the_garbage_collector()
-> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    use groupbinder_testenv::{ControlPlane, Options};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    const N: usize = 1000;
    logs();
    let cp = ControlPlane::start(Options {
        without_controller_manager: true,
        ..Options::default()
    })
    .await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    futures::stream::iter(0..N)
        .map(|i| {
            let namespaces = namespaces.clone();
            async move {
                let mut ns = Namespace::default();
                ns.metadata.name = Some(format!("many-{i}"));
                ns.metadata.labels = Some([(TEAM.to_owned(), "many".to_owned())].into());
                namespaces.create(&Default::default(), &ns).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    let mut settings = seed_settings();
    settings.max_role_bindings = N;
    let operator = Operator::start(&client, config(settings));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(1850),
        group_prefix: Some(SEED_PREFIX.into()),
        roles: Some(vec![by_team("many")]),
        ..AzureGroupBindingSpec::default()
    };
    apply(&client, &agb("many", spec)).await?;
    wait_for_reason_within(
        &client,
        "many",
        "True",
        "Reconciled",
        Duration::from_secs(120),
    )
    .await?;
    let all_rbs = Api::<RoleBinding>::all(client.clone());
    let managed = kube::api::ListParams::default().labels("groupbinder.dev/azuregroupbinding=many");
    assert_eq!(all_rbs.list_metadata(&managed).await?.items.len(), N);
    let group = format!("{SEED_PREFIX}{}", guid(1850));
    let groups = [group.as_str()];
    let member = Who::new(&client, "dev", &groups);
    member
        .may("create", ACTIONS, "backupactions", Some("many-999"))
        .await?;

    let started = std::time::Instant::now();
    agbs(&client)
        .delete("many", &DeleteParams::default())
        .await?;
    eventually(
        "the 1,000 RoleBindings deleted without the garbage collector",
        Duration::from_secs(20),
        || async {
            Ok(all_rbs
                .list_metadata(&managed)
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "1,000 RoleBindings revoked"
    );
    member
        .may_not("create", ACTIONS, "backupactions", Some("many-999"))
        .await?;
    operator.stop().await
}
