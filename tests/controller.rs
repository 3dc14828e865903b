//! The AzureGroupBinding controller on the real control plane. Tests that run an operator take
//! `exclusive()`, so only one operator watches the cluster at a time; each uses its own names.

use std::time::{Duration, Instant};

use groupbinder_api::{
    AzureGroupBinding, AzureGroupBindingSpec, NamespacedRole, RoleKind, Settings,
};
use groupbinder_e2e::*;
use groupbinder_testenv::ControlPlane;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleRef};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

const RBAC: &str = "rbac.authorization.k8s.io";

#[tokio::test]
async fn seed_scenario_grants_k10_admin_to_the_group_and_nothing_more() -> anyhow::Result<()> {
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    // The seed's whole spec: the group object ID (and its K10 prefix).
    apply(&client, &agb("k10-admins", seed_spec())).await?;
    let ready = wait_for_reason(&client, "k10-admins", "True", "Reconciled").await?;
    let group = format!("{SEED_PREFIX}{SEED_GUID}");

    // Status: group, bindings, observedGeneration equal to the generation.
    let status = ready.status.clone().unwrap_or_default();
    assert_eq!(status.group.as_deref(), Some(group.as_str()));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(status.bindings.len(), 2, "{:?}", status.bindings);

    // The bindings themselves.
    let crb = crbs(&client).get("k10-admins:k10-admin").await?;
    assert_eq!(
        crb.role_ref,
        RoleRef {
            api_group: Some(RBAC.into()),
            kind: "ClusterRole".into(),
            name: "k10-admin".into()
        }
    );
    assert_eq!(crb.subjects, group_subject(&group));
    let rb = rbs(&client, "kasten-io")
        .get("k10-admins:k10-ns-admin")
        .await?;
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(rb.role_ref.name, "k10-ns-admin");
    assert_eq!(rb.subjects, group_subject(&group));
    for meta in [&crb.metadata, &rb.metadata] {
        let owner = &meta.owner_references.as_deref().unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            (
                "AzureGroupBinding",
                ready.uid().unwrap_or_default().as_str()
            )
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            meta.labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .map(String::as_str),
            Some("groupbinder")
        );
        assert!(
            meta.managed_fields
                .iter()
                .flatten()
                .any(|f| f.manager.as_deref() == Some("groupbinder"))
        );
    }

    // What the real RBAC authorizer decides for a member of the group, and for a non-member.
    let member = ["system:authenticated", group.as_str()];
    let alice = Who::new(&client, "alice@example.com", &member);
    alice.administers_k10().await?;
    // The seed's least privilege: Secrets in K10's namespace only (not K10's multi-cluster role,
    // which K10's chart gives its own admins and which reads every Secret); nothing in the
    // profile touches nodes or RBAC itself.
    alice.may_not("get", "", "secrets", Some("default")).await?;
    alice.may_not("list", "", "secrets", None).await?;
    let rbac = "rbac.authorization.k8s.io";
    assert!(!alice.can("delete", "", "nodes", None).await?);
    assert!(
        !alice
            .can("create", rbac, "clusterrolebindings", None)
            .await?
    );
    let outsider = [
        "system:authenticated",
        "michael_azure_00000000-0000-4000-8000-000000000000",
    ];
    let backup = (
        "create",
        "actions.kio.kasten.io",
        "backupactions",
        Some("app"),
    );
    let bob = Who::new(&client, "bob@example.com", &outsider);
    assert!(!bob.can(backup.0, backup.1, backup.2, backup.3).await?);
    // Case matters: the upper-case spelling of the same group is another group.
    let upper = format!("{SEED_PREFIX}{}", SEED_GUID.to_uppercase());
    let upper = [upper.as_str()];
    let carol = Who::new(&client, "carol@example.com", &upper);
    assert!(!carol.can(backup.0, backup.1, backup.2, backup.3).await?);

    // The same through a real request made with a member's own client certificate.
    let alice = cp.user("alice@example.com", &member)?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(alice.client().await?, "kasten-io");
    secrets.list(&ListParams::default()).await?;

    // `kubectl get agb` shows the printer columns.
    let out = cp.kubectl().args(["get", "agb", "k10-admins"]).output()?;
    let table = String::from_utf8(out.stdout)?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "GROUP", "REASON", "K10", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // K10's OIDC Secret is not installed here: whether K10 presents the group is unknown.
    assert_eq!(
        &row[..5],
        [
            "k10-admins",
            "True",
            group.as_str(),
            "Reconciled",
            "K10NotInstalled"
        ],
        "{table}"
    );

    // One event (events.k8s.io) says what was done and that it is Ready.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let notes: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("k10-admins"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].0, "Reconciled", "{notes:?}");
    for binding in [
        "ClusterRoleBinding k10-admins:k10-admin",
        "RoleBinding kasten-io/k10-admins:k10-ns-admin",
    ] {
        assert!(
            notes[0].1.contains(&format!("created {binding}")),
            "{notes:?}"
        );
    }

    operator.stop().await
}

#[tokio::test]
async fn drift_is_repaired_within_seconds() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "drift", 1).await?;
    let group = format!("{SEED_PREFIX}{}", guid(1));

    // Edited by hand: someone swaps the subject.
    let api = crbs(&client);
    let mut edited = api.get("drift:k10-admin").await?;
    edited.subjects = group_subject("someone-else");
    let started = Instant::now();
    api.replace("drift:k10-admin", &PostParams::default(), &edited)
        .await?;
    eventually(
        "the edited binding to be restored",
        Duration::from_secs(10),
        || async {
            Ok((api.get("drift:k10-admin").await?.subjects == group_subject(&group)).then_some(()))
        },
    )
    .await?;
    let edit_repair = started.elapsed();

    // Deleted by hand.
    let namespaced = rbs(&client, "kasten-io");
    let started = Instant::now();
    namespaced
        .delete("drift:k10-ns-admin", &DeleteParams::default())
        .await?;
    eventually(
        "the deleted binding to be recreated",
        Duration::from_secs(10),
        || async { Ok(namespaced.get_opt("drift:k10-ns-admin").await?.map(|_| ())) },
    )
    .await?;
    let delete_repair = started.elapsed();
    println!(
        "drift repaired: edited binding in {edit_repair:?}, deleted binding in {delete_repair:?}"
    );
    assert!(edit_repair < Duration::from_secs(5) && delete_repair < Duration::from_secs(5));
    operator.stop().await
}

#[tokio::test]
async fn spec_changes_move_subjects_and_replace_bindings() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "changes", 2).await?;

    // A new group: the same bindings now name the new subject.
    let ready = seeded(&client, "changes", 3).await?;
    assert_eq!(ready.metadata.generation, Some(2));
    let crb = crbs(&client).get("changes:k10-admin").await?;
    assert_eq!(
        crb.subjects,
        group_subject(&format!("{SEED_PREFIX}{}", guid(3)))
    );

    // Other roles: new bindings appear, the ones no longer wanted are deleted.
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(3),
        cluster_roles: Some(vec!["k10-config-view".into()]),
        roles: Some(vec![NamespacedRole::in_namespace(
            "k10-basic",
            "kasten-io",
            RoleKind::ClusterRole,
        )]),
        ..seed_spec()
    };
    apply(&client, &agb("changes", spec)).await?;
    let ready = wait_for_reason(&client, "changes", "True", "Reconciled").await?;
    admin_bindings_gone(&client, "changes", Duration::from_secs(10)).await?;
    assert_eq!(
        crbs(&client)
            .get("changes:k10-config-view")
            .await?
            .role_ref
            .name,
        "k10-config-view"
    );
    let basic = rbs(&client, "kasten-io").get("changes:k10-basic").await?;
    assert_eq!(basic.role_ref.kind, "ClusterRole");
    let names: Vec<String> = ready
        .status
        .unwrap_or_default()
        .bindings
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["changes:k10-config-view", "changes:k10-basic"]);
    operator.stop().await
}

#[tokio::test]
async fn deleting_the_cr_while_the_operator_is_down_still_cleans_up() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "gc", 4).await?;
    operator.stop().await?;

    agbs(&client).delete("gc", &DeleteParams::default()).await?;
    admin_bindings_gone(&client, "gc", Duration::from_secs(60)).await
}

#[tokio::test]
async fn a_foreign_binding_with_the_target_name_is_left_untouched() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let before = apply(&client, &foreign_binding("conflict:k10-admin")).await?;
    let operator = Operator::start(&client, config(seed_settings()));
    apply(
        &client,
        &agb(
            "conflict",
            AzureGroupBindingSpec {
                group_object_id: guid(5),
                ..seed_spec()
            },
        ),
    )
    .await?;
    let status = wait_for_reason(&client, "conflict", "False", "Conflict").await?;
    let message = &ready(&status)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("ClusterRoleBinding conflict:k10-admin already exists"),
        "{message}"
    );
    // The other binding is still made.
    rbs(&client, "kasten-io")
        .get("conflict:k10-ns-admin")
        .await?;
    let after = crbs(&client).get("conflict:k10-admin").await?;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "foreign binding was modified"
    );
    assert_eq!(after.subjects, group_subject("hand-made"));
    operator.stop().await
}

#[tokio::test]
async fn roles_outside_the_allowlist_grant_nothing() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(6),
        cluster_roles: Some(vec!["cluster-admin".into(), "k10-admin".into()]),
        ..seed_spec()
    };
    apply(&client, &agb("greedy", spec)).await?;
    let status = wait_for_reason(&client, "greedy", "False", "RoleNotAllowed").await?;
    let message = ready(&status)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("ClusterRole cluster-admin is not in the operator's allowlist"),
        "{message}"
    );
    let group = format!("{SEED_PREFIX}{}", guid(6));
    assert!(
        crbs(&client)
            .get_opt("greedy:cluster-admin")
            .await?
            .is_none()
    );
    // The allowed entry of the same spec is bound, and shown.
    crbs(&client).get("greedy:k10-admin").await?;
    let bound = bound_roles(&status);
    assert_eq!(bound, ["k10-admin"]);
    assert!(
        !Who::new(&client, "mallory", &[group.as_str()])
            .can("get", "", "secrets", Some("kube-system"))
            .await?
    );
    let groups = [group.as_str()];
    let mallory = Who::new(&client, "mallory", &groups);
    assert!(!mallory.can("*", "*", "*", None).await?);
    operator.stop().await
}

#[tokio::test]
async fn missing_role_and_namespace_turn_ready_once_they_exist() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    // A K10 release that is not installed yet, in a namespace that does not exist yet.
    let settings = Settings::for_k10("later", "later-k10", SEED_PREFIX);
    let operator = Operator::start(&client, config(settings));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(7),
        cluster_roles: Some(vec!["later-admin".into()]),
        ..seed_spec()
    };
    apply(&client, &agb("later-role", spec)).await?;
    let status = wait_for_reason(&client, "later-role", "False", "RoleNotFound").await?;
    let message = ready(&status)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("ClusterRole later-admin does not exist"),
        "{message}"
    );
    crbs(&client).get("later-role:later-admin").await?; // the binding is in place already

    let spec = AzureGroupBindingSpec {
        group_object_id: guid(8),
        roles: Some(vec![NamespacedRole::in_namespace(
            "later-ns-admin",
            "later-k10",
            RoleKind::Role,
        )]),
        ..seed_spec()
    };
    apply(&client, &agb("later-namespace", spec)).await?;
    wait_for_reason(&client, "later-namespace", "False", "NamespaceNotFound").await?;

    // K10 arrives: the watches on roles and namespaces bring both to Ready, without a resync.
    let started = Instant::now();
    install_k10(&client, "later", "later-k10").await?;
    wait_for_reason(&client, "later-role", "True", "Reconciled").await?;
    wait_for_reason(&client, "later-namespace", "True", "Reconciled").await?;
    println!(
        "Ready {:?} after the role and namespace appeared",
        started.elapsed()
    );
    rbs(&client, "later-k10")
        .get("later-namespace:later-ns-admin")
        .await?;

    // And a role that disappears is reported again.
    Api::<Role>::namespaced(client.clone(), "later-k10")
        .delete("later-ns-admin", &DeleteParams::default())
        .await?;
    wait_for_reason(&client, "later-namespace", "False", "RoleNotFound").await?;
    Api::<ClusterRole>::all(client.clone())
        .delete("later-admin", &DeleteParams::default())
        .await?;
    wait_for_reason(&client, "later-role", "False", "RoleNotFound").await?;
    operator.stop().await
}

#[tokio::test]
async fn admission_rejects_bad_guids_and_reserved_prefixes_with_clear_messages()
-> anyhow::Result<()> {
    let (cp, _) = setup().await?;
    let _serial = exclusive().await; // another test swaps the CRD for a looser one for a while
    let cases = [
        (
            "A318B1EB-8B78-4715-98AD-FFC8670AC79D",
            "michael_azure_",
            "must be lower case",
            "use a318b1eb-8b78-4715-98ad-ffc8670ac79d",
        ),
        (
            "a318b1eb-8b78-4715-98ad-ffc8670ac79",
            "michael_azure_",
            "spec.groupObjectId",
            "should be at least 36",
        ),
        (
            "a318b1eb-8b78-4715-98ad-ffc8670ac7zz",
            "michael_azure_",
            "must be a group object ID",
            "GUID",
        ),
        (
            "a318b1eb-8b78-4715-98ad-ffc8670ac79d",
            "system:masters",
            "must not start with 'system:'",
            "reserved",
        ),
        (
            "a318b1eb-8b78-4715-98ad-ffc8670ac79d",
            "michael azure ",
            "must not contain white space",
            "groupPrefix",
        ),
    ];
    // Invisible characters the attacker's pass found admitted, as YAML escapes: a combining
    // grapheme joiner, a variation selector, Hangul fillers, a tag character, a musical
    // formatting character, an interlinear annotation anchor, an Arabic number sign, and a
    // leading combining mark. One definition of invisible refuses them all.
    let invisible = [
        "\\u034F",
        "\\uFE0F",
        "\\u3164",
        "\\u115F",
        "\\U000E0041",
        "\\U0001D173",
        "\\uFFF9",
        "\\u0600",
    ];
    let cases: Vec<(&str, String, &str, &str)> = cases
        .iter()
        .map(|(g, p, e, a)| (*g, (*p).to_owned(), *e, *a))
        .chain(invisible.iter().map(|c| {
            let guid = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";
            (
                guid,
                format!("michael{c}_"),
                "invisible characters",
                "groupPrefix",
            )
        }))
        .chain(std::iter::once((
            "a318b1eb-8b78-4715-98ad-ffc8670ac79d",
            "\\u0301michael_".to_owned(),
            "leading combining mark",
            "groupPrefix",
        )))
        .collect();
    for (i, (guid, prefix, expected, also)) in cases.iter().enumerate() {
        let manifest = format!(
            "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: bad-{i}\nspec:\n  groupObjectId: \"{guid}\"\n  groupPrefix: \"{prefix}\"\n"
        );
        let out = kubectl_apply_stdin(cp, &manifest)?;
        assert!(!out.status.success(), "case {i} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains(also),
            "case {i}: {stderr}"
        );
    }
    // Unknown fields are refused by server-side field validation.
    let typo = "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: typo\nspec:\n  groupObjectId: a318b1eb-8b78-4715-98ad-ffc8670ac79d\n  clusterRole: [k10-admin]\n";
    let out = kubectl_apply_stdin(cp, typo)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".spec.clusterRole: field not declared in schema"),
        "{stderr}"
    );
    // Empty role lists are refused too: they would bind nothing.
    let empty = "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: empty\nspec:\n  groupObjectId: a318b1eb-8b78-4715-98ad-ffc8670ac79d\n  clusterRoles: []\n";
    let out = kubectl_apply_stdin(cp, empty)?;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name at least one role"),
        "{out:?}"
    );
    Ok(())
}

fn kubectl_apply_stdin(cp: &ControlPlane, manifest: &str) -> anyhow::Result<std::process::Output> {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(manifest.as_bytes())?;
    Ok(child.wait_with_output()?)
}

#[tokio::test]
async fn steady_state_and_forced_resyncs_write_nothing() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let mut settings = seed_settings();
    settings.allowed = groupbinder_api::Allowlist::parse(
        settings
            .allowed
            .entries()
            .iter()
            .map(String::as_str)
            .chain(["view"]),
    )?;
    let operator = Operator::start(&client, config(settings.clone()));
    let mut names = Vec::new();
    for i in 0..20 {
        let name = format!("steady-{i}");
        apply(
            &client,
            &agb(
                &name,
                AzureGroupBindingSpec {
                    group_object_id: guid(100 + i),
                    ..seed_spec()
                },
            ),
        )
        .await?;
        names.push(name);
    }
    for name in &names {
        wait_for_reason(&client, name, "True", "Reconciled").await?;
    }
    operator.stop().await?;

    // A restart lists and reconciles everything; the 1 s resync reconciles everything again, over
    // and over. None of it may write.
    let resources = [
        "clusterrolebindings",
        "rolebindings",
        "azuregroupbindings",
        "events",
    ];
    let before = apiserver_writes(&client, &resources).await?;
    let mut resyncing = config(settings);
    resyncing.resync = Some(Duration::from_secs(1));
    let operator = Operator::start(&client, resyncing);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let reconciles = operator.metrics.reconciles.get();
    let after = apiserver_writes(&client, &resources).await?;
    operator.stop().await?;
    println!(
        "steady state: {reconciles} reconciles, {} writes",
        after - before
    );
    assert!(
        reconciles >= 3 * 20,
        "the resync did not run: {reconciles} reconciles"
    );
    assert_eq!(after - before, 0.0, "writes in steady state");
    Ok(())
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let replica = |identity: &str| {
        let mut c = config(seed_settings());
        c.instance = identity.into();
        c.leader_election = Some(groupbinder_controller::LeaderElection {
            namespace: "default".into(),
            name: "groupbinder-e2e-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(6),
            retry_period: Duration::from_secs(1),
        });
        c
    };
    let lease: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    let holder = || async {
        let lease = lease.get_opt("groupbinder-e2e-leader").await?;
        anyhow::Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
    };
    let first = Operator::start(&client, replica("replica-a"));
    eventually("replica-a to lead", Duration::from_secs(15), || async {
        Ok((holder().await?.as_deref() == Some("replica-a")).then_some(()))
    })
    .await?;
    let second = Operator::start(&client, replica("replica-b"));
    seeded(&client, "leader-1", 200).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        second.metrics.reconciles.get(),
        0,
        "the standby must not reconcile"
    );
    assert!(
        second.health.is_ready(),
        "a standby is ready (it serves probes)"
    );

    // The leader stops (and releases the lease): the standby takes over.
    let started = Instant::now();
    first.stop().await?;
    seeded(&client, "leader-2", 201).await?;
    println!("failover took {:?}", started.elapsed());
    assert!(second.metrics.reconciles.get() > 0);
    assert_eq!(holder().await?.as_deref(), Some("replica-b"));
    second.stop().await
}

/// A shutdown that comes before the first list has completed (a standby stopped just after it took
/// the lease; a pod deleted while it starts) ends the operator at once: kube-runtime's graceful
/// shutdown alone waits for a store that will never fill.
#[tokio::test]
async fn an_operator_stopped_before_its_first_list_stops_at_once() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), operator.stop())
        .await
        .map_err(|_| anyhow::anyhow!("still running 10 s after its shutdown signal"))??;
    println!("stopped {:?} after its shutdown signal", started.elapsed());
    Ok(())
}

/// With a CRD that admits anything (an older or hand-edited CRD), an object the controller cannot
/// decode, and one that only its own checks refuse, must not stop the others.
#[tokio::test]
async fn undecodable_and_unadmitted_objects_do_not_stop_the_others() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    apply_crd(&client, &loose_crd()).await?;
    let result = async {
        let raw: Api<kube::core::DynamicObject> = Api::all_with(
            client.clone(),
            &kube::core::ApiResource::erase::<AzureGroupBinding>(&()),
        );
        let bad: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
            "metadata": {"name": "undecodable"}, "spec": {"groupObjectId": 42}
        }))?;
        let post = PostParams::default();
        admitted("the undecodable object through the loose CRD", || {
            raw.create(&post, &bad)
        })
        .await?;
        let upper = AzureGroupBindingSpec {
            group_object_id: SEED_GUID.to_uppercase(),
            ..seed_spec()
        };
        let (unadmitted, all) = (agb("unadmitted", upper), agbs(&client));
        admitted("the upper-case GUID through the loose CRD", || {
            all.create(&post, &unadmitted)
        })
        .await?;
        let operator = Operator::start(&client, config(seed_settings()));
        seeded(&client, "good-neighbour", 300).await?;
        let refused = wait_for_reason(&client, "unadmitted", "False", "InvalidSpec").await?;
        let message = ready(&refused)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(message.contains("is not a lower-case GUID"), "{message}");
        assert!(
            crbs(&client)
                .get_opt("unadmitted:k10-admin")
                .await?
                .is_none()
        );
        let status = eventually(
            "the undecodable object to be reported",
            Duration::from_secs(30),
            || async {
                let object = raw.get("undecodable").await?;
                let reason = object
                    .data
                    .pointer("/status/conditions/0/reason")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                let message = object
                    .data
                    .pointer("/status/conditions/0/message")
                    .and_then(|r| r.as_str())
                    .map(str::to_owned);
                Ok(reason.filter(|r| r == "InvalidSpec").and(message))
            },
        )
        .await?;
        assert!(status.contains("the spec cannot be read"), "{status}");
        assert!(!operator.is_finished(), "the operator must keep running");
        for name in ["undecodable", "unadmitted"] {
            agbs(&client).delete(name, &DeleteParams::default()).await?;
        }
        operator.stop().await
    }
    .await;
    install_crd(&client).await?;
    result
}

/// Adversarial objects applied together with good ones: the good ones still become Ready, nothing
/// beyond the allowlist is granted, every bad one is refused with a reason.
#[tokio::test]
async fn adversarial_objects_next_to_good_ones() -> anyhow::Result<()> {
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));

    // Refused at admission, with a message.
    let many: Vec<String> = (0..100).map(|i| format!("role-{i}")).collect();
    let refused = [
        (
            format!("clusterRoles: [{}]", many.join(", ")),
            "must have at most 32 items",
        ),
        (
            "groupPrefix: \"system:masters\"".to_owned(),
            "must not start with 'system:'",
        ),
    ];
    for (i, (extra, expected)) in refused.iter().enumerate() {
        let manifest = format!(
            "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: adv-refused-{i}\nspec:\n  groupObjectId: {}\n  {extra}\n",
            guid(400)
        );
        let out = kubectl_apply_stdin(cp, &manifest)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{i}: {stderr}"
        );
    }
    let spaces = "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata:\n  name: adv-spaces\nspec:\n  groupObjectId: \"a318b1eb-8b78-4715-98ad-ffc8670ac79d  \"\n";
    assert!(
        !kubectl_apply_stdin(cp, spaces)?.status.success(),
        "a GUID with trailing spaces"
    );

    // Accepted, then refused by the controller: nothing granted.
    let greedy = AzureGroupBindingSpec {
        group_object_id: guid(401),
        cluster_roles: Some(vec!["cluster-admin".into()]),
        ..seed_spec()
    };
    apply(&client, &agb("adv-greedy", greedy)).await?;

    // Long names, one group in 50 objects, an object deleted while it is being reconciled.
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long.len(), 253);
    apply(
        &client,
        &agb(
            &long,
            AzureGroupBindingSpec {
                group_object_id: guid(402),
                ..seed_spec()
            },
        ),
    )
    .await?;
    for i in 0..50 {
        apply(
            &client,
            &agb(
                &format!("adv-same-{i}"),
                AzureGroupBindingSpec {
                    group_object_id: guid(403),
                    ..seed_spec()
                },
            ),
        )
        .await?;
    }
    apply(
        &client,
        &agb(
            "adv-fleeting",
            AzureGroupBindingSpec {
                group_object_id: guid(404),
                ..seed_spec()
            },
        ),
    )
    .await?;
    agbs(&client)
        .delete("adv-fleeting", &DeleteParams::default())
        .await?;

    wait_for_reason(&client, "adv-greedy", "False", "RoleNotAllowed").await?;
    let long_status = wait_for_reason(&client, &long, "True", "Reconciled").await?;
    for binding in long_status.status.unwrap_or_default().bindings {
        assert!(binding.name.len() <= 253, "{}", binding.name);
    }
    // Its event, too, got a valid name (`<object>.<time>` cut to 253 characters).
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(
        "the event about the 253-character object",
        Duration::from_secs(10),
        || async {
            let found = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .any(|e| e.regarding.and_then(|r| r.name).as_deref() == Some(long.as_str()));
            Ok(found.then_some(()))
        },
    )
    .await?;
    for i in 0..50 {
        wait_for_reason(&client, &format!("adv-same-{i}"), "True", "Reconciled").await?;
    }
    admin_bindings_gone(&client, "adv-fleeting", Duration::from_secs(60)).await?;
    let greedy_group = format!("{SEED_PREFIX}{}", guid(401));
    assert!(
        !Who::new(&client, "mallory", &[greedy_group.as_str()])
            .can("get", "", "secrets", Some("kube-system"))
            .await?
    );
    let same_group = format!("{SEED_PREFIX}{}", guid(403));
    let groups = [same_group.as_str()];
    Who::new(&client, "team", &groups)
        .may(
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("app"),
        )
        .await?;
    assert!(!operator.is_finished());
    operator.stop().await
}

/// Bindings that the operator's settings no longer plan (here: K10 reinstalled under another
/// release name) are deleted after a restart, though no spec changed.
#[tokio::test]
async fn bindings_of_changed_settings_are_deleted_after_a_restart() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    install_k10(&client, "k10b", "kasten-io").await?;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "moved", 500).await?;
    operator.stop().await?;
    crbs(&client).get("moved:k10-admin").await?;

    let operator = Operator::start(
        &client,
        config(Settings::for_k10("k10b", "kasten-io", SEED_PREFIX)),
    );
    eventually(
        "the k10b-admin binding",
        Duration::from_secs(30),
        || async { Ok(crbs(&client).get_opt("moved:k10b-admin").await?.map(|_| ())) },
    )
    .await?;
    admin_bindings_gone(&client, "moved", Duration::from_secs(30)).await?;
    operator.stop().await
}

/// A writer that keeps reverting a binding (another controller, a GitOps tool with the old
/// binding in Git): groupbinder repairs every time, the fight shows in
/// `groupbinder_repairs_total`, and it costs one event with a rising series count, not one event
/// per repair.
#[tokio::test]
async fn a_fight_over_a_binding_costs_one_event_and_shows_in_the_metrics() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "fight", 4000).await?;
    let crb_api = crbs(&client);
    let patch = serde_json::json!({"subjects": [
        {"kind": "Group", "apiGroup": RBAC, "name": "someone-else"}
    ]});
    let started = Instant::now();
    let mut reverts = 0u64;
    while started.elapsed() < Duration::from_secs(30) {
        crb_api
            .patch(
                "fight:k10-admin",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
        reverts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The operator has the last word.
    let group = format!("{SEED_PREFIX}{}", guid(4000));
    eventually("the binding put back", Duration::from_secs(10), || async {
        let crb = crb_api.get("fight:k10-admin").await?;
        Ok((crb.subjects == group_subject(&group)).then_some(()))
    })
    .await?;
    let repairs = operator
        .metrics
        .repairs
        .get_or_create(&groupbinder_controller::metrics::KindLabels {
            kind: "ClusterRoleBinding",
        })
        .get();
    assert!(
        repairs * 2 >= reverts,
        "{repairs} repairs counted for {reverts} reverts"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let about: Vec<Event> = events
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("fight"))
        .collect();
    let repaired: Vec<&Event> = about
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Repaired"))
        .collect();
    assert_eq!(repaired.len(), 1, "{about:#?}");
    let count = repaired[0].series.as_ref().map_or(1, |s| s.count);
    assert!(count >= 2, "{:#?}", repaired[0]);
    println!(
        "{reverts} reverts in 30 s: {repairs} repairs, {} event objects about the object, Repaired series count {count}",
        about.len()
    );
    agbs(&client)
        .delete("fight", &DeleteParams::default())
        .await?;
    operator.stop().await
}

/// kstatus (Flux's `wait: true` and health checks) reads a new object as InProgress, not Current,
/// until the controller has reconciled it: the CRD defaults `status.observedGeneration` to 0, which
/// differs from the object's generation until the controller writes its own.
#[tokio::test]
async fn a_new_object_reads_in_progress_until_it_is_reconciled() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await; // no operator runs meanwhile
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(2300),
        ..seed_spec()
    };
    apply(&client, &agb("in-progress", spec)).await?;
    let fresh = agbs(&client).get("in-progress").await?;
    assert_eq!(fresh.metadata.generation, Some(1));
    assert_eq!(
        fresh.status.as_ref().and_then(|s| s.observed_generation),
        Some(0),
        "{:?}",
        fresh.status
    );
    let operator = Operator::start(&client, config(seed_settings()));
    let ready = wait_for_reason(&client, "in-progress", "True", "Reconciled").await?;
    assert_eq!(ready.status.and_then(|s| s.observed_generation), Some(1));
    agbs(&client)
        .delete("in-progress", &DeleteParams::default())
        .await?;
    operator.stop().await
}
