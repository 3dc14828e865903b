//! The README's "never"s, each tried as an attacker would, on the real control plane: the
//! operator must grant nothing beyond its allowlist, keep no grant that the current spec and
//! allowlist do not give, and delete nothing it does not own. Access is decided by the API
//! server's RBAC authorizer (SubjectAccessReview), never assumed.

use std::collections::BTreeMap;
use std::time::Duration;

use groupbinder_api::{AzureGroupBindingSpec, NamespacedRole, RoleKind};
use groupbinder_e2e::*;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

const K10_ACTIONS: &str = "actions.kio.kasten.io";

/// Waits until `group`'s members may not create K10 backup actions in `kasten-io` (what
/// `k10-ns-admin` and `k10-admin` give).
async fn k10_admin_denied(client: &kube::Client, group: &str) -> anyhow::Result<()> {
    let groups = [group];
    Who::new(client, "mallory", &groups)
        .may_not("create", K10_ACTIONS, "backupactions", Some("kasten-io"))
        .await
}

/// Waits until they may.
async fn k10_admin_granted(client: &kube::Client, group: &str) -> anyhow::Result<()> {
    let groups = [group];
    Who::new(client, "mallory", &groups)
        .may("create", K10_ACTIONS, "backupactions", Some("kasten-io"))
        .await
}

fn group_of(n: u32) -> String {
    format!("{SEED_PREFIX}{}", guid(n))
}

fn metric(operator: &Operator, line_start: &str) -> f64 {
    operator
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Roles are allowed as `namespace/name` only: a namespace admin makes a Role called like K10's in a namespace they control (or one
/// that does not exist yet); a spec naming it there grants nothing, and nothing is created.
#[tokio::test]
async fn a_role_named_like_k10s_in_another_namespace_grants_nothing() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    ensure_namespace(&client, "team-a").await?;
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| (*g).into()).collect()),
        resources: Some(resources.iter().map(|r| (*r).into()).collect()),
        verbs: verbs.iter().map(|v| (*v).into()).collect(),
        ..PolicyRule::default()
    };
    for name in ["k10-ns-admin", "k10-admin"] {
        let role = Role {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team-a".into()),
                ..ObjectMeta::default()
            },
            rules: Some(vec![
                rule(&[""], &["pods/exec", "secrets"], &["get", "create"]),
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["rolebindings"],
                    &["create"],
                ),
            ]),
        };
        apply(&client, &role).await?;
    }
    let operator = Operator::start(&client, config(seed_settings()));
    let role = NamespacedRole::in_namespace;
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(1100),
        roles: Some(vec![
            role("k10-ns-admin", "team-a", RoleKind::Role),
            role("k10-admin", "team-a", RoleKind::Role),
            // Not there yet: whoever creates it later would activate the binding.
            role("k10-ns-admin", "kube-system", RoleKind::Role),
        ]),
        ..seed_spec()
    };
    apply(&client, &agb("atk-role-name", spec)).await?;
    let status = wait_for_reason(&client, "atk-role-name", "False", "RoleNotAllowed").await?;
    let message = ready(&status)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("Role team-a/k10-ns-admin"), "{message}");
    assert!(
        message.contains("Role kube-system/k10-ns-admin"),
        "{message}"
    );

    for namespace in ["team-a", "kube-system"] {
        let made = rbs(&client, namespace)
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|b| b.name_any().starts_with("atk-role-name:"))
            .count();
        assert_eq!(made, 0, "a RoleBinding was created in {namespace}");
    }
    let group = group_of(1100);
    let groups = [group.as_str()];
    let mallory = Who::new(&client, "mallory", &groups);
    assert!(!mallory.can("get", "", "secrets", Some("team-a")).await?);
    let bind = ("create", "rbac.authorization.k8s.io", "rolebindings");
    assert!(!mallory.can(bind.0, bind.1, bind.2, Some("team-a")).await?);
    operator.stop().await
}

/// A narrowed allowlist revokes: the operator restarted with a narrower allowlist revokes what it no longer allows.
#[tokio::test]
async fn narrowing_the_allowlist_revokes_on_restart() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "atk-narrowed", 1200).await?;
    k10_admin_granted(&client, &group_of(1200)).await?;
    operator.stop().await?;

    let mut narrow = seed_settings();
    narrow.allowed = groupbinder_api::Allowlist::parse(["k10-basic", "k10-config-view"])?;
    let operator = Operator::start(&client, config(narrow));
    wait_for_reason(&client, "atk-narrowed", "False", "RoleNotAllowed").await?;
    admin_bindings_gone(&client, "atk-narrowed", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group_of(1200)).await?;
    operator.stop().await
}

/// A refused or group-less spec keeps nothing: a spec that asks for something refused keeps none of its old bindings; one whose group
/// cannot be computed (a no-break space in the prefix, which got past an older CRD) keeps none.
#[tokio::test]
async fn a_refused_spec_keeps_no_old_grant() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "atk-refused", 1300).await?;
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(1300),
        cluster_roles: Some(vec!["k10-config-view".into(), "cluster-admin".into()]),
        ..seed_spec()
    };
    apply(&client, &agb("atk-refused", spec)).await?;
    wait_for_reason(&client, "atk-refused", "False", "RoleNotAllowed").await?;
    admin_bindings_gone(&client, "atk-refused", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group_of(1300)).await?;
    crbs(&client).get("atk-refused:k10-config-view").await?;

    // Today's CRD refuses the no-break space at admission.
    let mut nbsp = agb("atk-nbsp", seed_spec());
    nbsp.spec.group_prefix = Some("michael\u{a0}azure_".into());
    let refused = apply(&client, &nbsp).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("invisible characters")),
        "{refused:?}"
    );

    // An older CRD let it in: the controller must still revoke everything.
    seeded(&client, "atk-nbsp", 1301).await?;
    apply_crd(&client, &loose_crd()).await?;
    let result = async {
        let patch = serde_json::json!({"spec": {"groupPrefix": "michael\u{a0}azure_"}});
        let (api, params, merge) = (agbs(&client), PatchParams::default(), Patch::Merge(&patch));
        admitted("the patch through the loose CRD", || {
            api.patch("atk-nbsp", &params, &merge)
        })
        .await?;
        let status = wait_for_reason(&client, "atk-nbsp", "False", "InvalidSpec").await?;
        assert_eq!(status.status.and_then(|s| s.group), None);
        admin_bindings_gone(&client, "atk-nbsp", Duration::from_secs(30)).await?;
        k10_admin_denied(&client, &group_of(1301)).await?;
        agbs(&client)
            .delete("atk-nbsp", &DeleteParams::default())
            .await?;
        anyhow::Ok(())
    }
    .await;
    install_crd(&client).await?;
    result?;
    operator.stop().await
}

/// Deletion revokes at once: deleting with `--cascade=orphan` revokes at once, as does deleting an object that a
/// foreign finalizer holds, whose spec is then edited to something harmless.
#[tokio::test]
async fn deletion_revokes_at_once_whatever_holds_the_object() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));

    seeded(&client, "atk-orphan-cascade", 1400).await?;
    agbs(&client)
        .delete("atk-orphan-cascade", &DeleteParams::orphan())
        .await?;
    admin_bindings_gone(&client, "atk-orphan-cascade", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group_of(1400)).await?;

    seeded(&client, "atk-held", 1401).await?;
    let hold = serde_json::json!({"metadata": {"finalizers": ["example.com/hold"]}});
    agbs(&client)
        .patch("atk-held", &PatchParams::default(), &Patch::Merge(&hold))
        .await?;
    agbs(&client)
        .delete("atk-held", &DeleteParams::default())
        .await?;
    admin_bindings_gone(&client, "atk-held", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group_of(1401)).await?;
    // A harmless-looking spec while it waits: still nothing, and the status says why.
    let harmless = serde_json::json!({"spec": {"clusterRoles": ["k10-config-view"]}});
    agbs(&client)
        .patch(
            "atk-held",
            &PatchParams::default(),
            &Patch::Merge(&harmless),
        )
        .await?;
    let held = eventually(
        "atk-held to report Deleting",
        Duration::from_secs(30),
        || async {
            let agb = agbs(&client).get("atk-held").await?;
            Ok(ready(&agb)
                .is_some_and(|c| c.reason == "Deleting")
                .then_some(agb))
        },
    )
    .await?;
    assert!(held.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        crbs(&client)
            .get_opt("atk-held:k10-config-view")
            .await?
            .is_none()
    );
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    agbs(&client)
        .patch("atk-held", &PatchParams::default(), &Patch::Merge(&release))
        .await?;
    operator.stop().await
}

/// Items 4 and 5: someone with patch rights removes a binding's ownerReference (no escalation
/// check applies to that). The operator puts it back; and a binding orphaned while the operator
/// was down, whose object is then deleted, is deleted when it comes back.
#[tokio::test]
async fn detached_bindings_are_adopted_or_deleted() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let detach = serde_json::json!({"metadata": {"ownerReferences": null}});
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "atk-detached", 1500).await?;
    crbs(&client)
        .patch(
            "atk-detached:k10-admin",
            &PatchParams::default(),
            &Patch::Merge(&detach),
        )
        .await?;
    eventually(
        "the ownerReference to be put back",
        Duration::from_secs(10),
        || async {
            let b = crbs(&client).get("atk-detached:k10-admin").await?;
            Ok(b.metadata
                .owner_references
                .is_some_and(|o| o.iter().any(|o| o.kind == "AzureGroupBinding"))
                .then_some(()))
        },
    )
    .await?;
    assert_eq!(
        metric(
            &operator,
            "groupbinder_orphaned_bindings_total{action=\"adopted\"}"
        ),
        1.0
    );
    seeded(&client, "atk-gone", 1501).await?;
    operator.stop().await?;

    // The operator is down: detach, then delete the object. The garbage collector has no
    // ownerReference to follow, so the binding would grant for ever.
    rbs(&client, "kasten-io")
        .patch(
            "atk-gone:k10-ns-admin",
            &PatchParams::default(),
            &Patch::Merge(&detach),
        )
        .await?;
    agbs(&client)
        .delete("atk-gone", &DeleteParams::default())
        .await?;
    let operator = Operator::start(&client, config(seed_settings()));
    admin_bindings_gone(&client, "atk-gone", Duration::from_secs(60)).await?;
    k10_admin_denied(&client, &group_of(1501)).await?;
    assert_eq!(
        metric(
            &operator,
            "groupbinder_orphaned_bindings_total{action=\"deleted\"}"
        ),
        1.0
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    eventually(
        "the OrphanDeleted event",
        Duration::from_secs(10),
        || async {
            Ok(events
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .any(|e| {
                    e.reason.as_deref() == Some("OrphanDeleted")
                        && e.note.is_some_and(|n| n.contains("atk-gone:k10-ns-admin"))
                })
                .then_some(()))
        },
    )
    .await?;
    operator.stop().await
}

/// Found by the soak (seed 2 of the short run): someone with patch rights pins an object's
/// binding with a finalizer, and the object is deleted while the operator is down (or no replica
/// leads). The garbage collector deletes the binding only as far as `deletionTimestamp`, the
/// finalizer holds it, and RBAC does not look at that: the grant stayed for good, because the
/// sweeper heard only of bindings without a controller. A pinned binding whose object is gone is
/// now the sweeper's as well: deleted, finalizers and all, when the operator starts.
#[tokio::test]
async fn a_pinned_binding_of_an_object_deleted_while_the_operator_was_down_is_revoked()
-> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    seeded(&client, "atk-pinned", 1502).await?;
    operator.stop().await?;
    let pin = serde_json::json!({"metadata": {"finalizers": ["example.com/hold"]}});
    crbs(&client)
        .patch(
            "atk-pinned:k10-admin",
            &PatchParams::default(),
            &Patch::Merge(&pin),
        )
        .await?;
    agbs(&client)
        .delete("atk-pinned", &DeleteParams::default())
        .await?;
    // The garbage collector (its discovery refreshed every 30 s) deletes it; the finalizer
    // holds it back, and RBAC still grants it.
    eventually(
        "the garbage collector to delete the pinned binding",
        Duration::from_secs(90),
        || async {
            let binding = crbs(&client).get_opt("atk-pinned:k10-admin").await?;
            Ok(binding
                .is_some_and(|b| b.metadata.deletion_timestamp.is_some())
                .then_some(()))
        },
    )
    .await?;
    k10_admin_granted(&client, &group_of(1502)).await?;
    let operator = Operator::start(&client, config(seed_settings()));
    admin_bindings_gone(&client, "atk-pinned", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group_of(1502)).await?;
    assert_eq!(
        metric(
            &operator,
            "groupbinder_orphaned_bindings_total{action=\"deleted\"}"
        ),
        1.0
    );
    operator.stop().await
}

/// A RoleBinding `(namespace, name)` of ClusterRole `role` to Group `group`, whose controller
/// ownerReference is `(apiVersion, kind, name, uid)`: as anyone who may write bindings there can
/// make it.
fn controlled_role_binding(
    (namespace, name): (&str, &str),
    (api_version, kind, owner, uid): (&str, &str, &str, &str),
    (role, group): (&str, &str),
) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: owner.into(),
                uid: uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: group_subject(group),
    }
}

/// Nothing foreign is deleted: a team's RoleBinding dressed up as groupbinder's, with a controller ownerReference of
/// another kind carrying the AzureGroupBinding's uid (readable by anyone with `view`), is not
/// deleted or changed.
#[tokio::test]
async fn a_forged_owner_reference_deletes_nothing() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    ensure_namespace(&client, "team-b").await?;
    let operator = Operator::start(&client, config(seed_settings()));
    let target = seeded(&client, "atk-forged", 1600).await?;
    let uid = target.uid().unwrap_or_default();
    let mut team = Vec::new();
    // Kinds the garbage collector cannot resolve: with a resolvable kind (`v1 ConfigMap`) the
    // garbage collector itself deletes the binding, since no ConfigMap has that uid.
    for (api_version, kind) in [
        ("example.com/v1", "Widget"),
        ("example.com/v1", "AzureGroupBinding"),
    ] {
        let name = format!("team-admin-{}", kind.to_lowercase());
        let mut binding = controlled_role_binding(
            ("team-b", &name),
            (api_version, kind, "atk-forged", &uid),
            ("admin", "team-b-admins"),
        );
        binding.metadata.labels = Some(BTreeMap::from([
            ("app.kubernetes.io/managed-by".into(), "groupbinder".into()),
            (
                "groupbinder.dev/azuregroupbinding".into(),
                "atk-forged".into(),
            ),
            ("groupbinder.dev/azuregroupbinding-uid".into(), uid.clone()),
        ]));
        team.push(apply(&client, &binding).await?);
    }
    // Make the operator look at its object again: a new generation.
    let changed = AzureGroupBindingSpec {
        description: Some("touched".into()),
        ..target.spec.clone()
    };
    apply(&client, &agb("atk-forged", changed)).await?;
    wait_for_reason(&client, "atk-forged", "True", "Reconciled").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for before in team {
        let after = rbs(&client, "team-b").get_opt(&before.name_any()).await?;
        assert_eq!(
            after.and_then(|a| a.metadata.resource_version),
            before.metadata.resource_version,
            "{} was deleted or changed",
            before.name_any()
        );
    }
    operator.stop().await
}

/// Label selection is exact: an object named exactly like another's cut label value (the old `-` + hash form) must
/// not make a label selector list the other's bindings.
#[tokio::test]
async fn label_selectors_pick_one_objects_bindings() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let operator = Operator::start(&client, config(seed_settings()));
    let long = "x".repeat(70);
    // What the label value of `long` used to be: 52 characters, '-', a hash.
    let lookalike = format!("{}-c71bd10922", "x".repeat(52));
    let long_agb = seeded(&client, &long, 1700).await?;
    seeded(&client, &lookalike, 1701).await?;
    let value = groupbinder_api::names::owner_label_value(&long);
    let by_name = crbs(&client)
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("groupbinder.dev/azuregroupbinding={value}")),
        )
        .await?;
    let names: Vec<String> = by_name.items.iter().map(|b| b.name_any()).collect();
    let long_bindings = [format!("{long}:k10-admin")];
    assert_eq!(names, long_bindings);
    let uid = long_agb.uid().unwrap_or_default();
    let by_uid = crbs(&client)
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("groupbinder.dev/azuregroupbinding-uid={uid}")),
        )
        .await?;
    let names: Vec<String> = by_uid.items.iter().map(|b| b.name_any()).collect();
    assert_eq!(names, long_bindings);
    operator.stop().await
}

/// A replica of the controller for leader election on Lease `lease` (3 s leases).
fn replica(identity: &str, lease: &str) -> groupbinder_controller::Config {
    let mut c = config(seed_settings());
    c.instance = identity.into();
    c.leader_election = Some(groupbinder_controller::LeaderElection {
        namespace: "default".into(),
        name: lease.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
    });
    c
}

/// A Lease held by `holder`, renewed at `renewed` by the holder's clock.
fn lease(name: &str, holder: &str, renewed: k8s_openapi::jiff::Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(3),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// One leader, whatever the clocks, one way: a live holder whose clock is a minute behind keeps renewing. Its renewTime is
/// always a minute old by our clock, yet it is alive: no other replica may lead meanwhile.
#[tokio::test]
async fn a_holder_with_a_slow_clock_keeps_its_lease_while_it_renews() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let minute = k8s_openapi::jiff::SignedDuration::from_secs(60);
    apply(
        &client,
        &lease(
            "atk-slow-clock",
            "slow",
            k8s_openapi::jiff::Timestamp::now() - minute,
        ),
    )
    .await?;
    let renewing = tokio_util::sync::CancellationToken::new();
    let renewer = {
        let (client, renewing) = (client.clone(), renewing.clone());
        tokio::spawn(async move {
            while !renewing.is_cancelled() {
                let skewed = k8s_openapi::jiff::Timestamp::now() - minute;
                let _ = apply(&client, &lease("atk-slow-clock", "slow", skewed)).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let standby = Operator::start(&client, replica("atk-standby", "atk-slow-clock"));
    tokio::time::sleep(Duration::from_secs(8)).await; // over two lease durations
    let holder = leases
        .get("atk-slow-clock")
        .await?
        .spec
        .and_then(|s| s.holder_identity);
    let reconciles = standby.metrics.reconciles.get();
    renewing.cancel();
    renewer.await?;
    assert_eq!(
        holder.as_deref(),
        Some("slow"),
        "the lease was taken from a live holder"
    );
    assert_eq!(reconciles, 0, "a second leader reconciled");
    // The holder stops renewing: the standby takes over a lease duration later.
    eventually("the standby to lead", Duration::from_secs(15), || async {
        let holder = leases
            .get("atk-slow-clock")
            .await?
            .spec
            .and_then(|s| s.holder_identity);
        Ok((holder.as_deref() == Some("atk-standby")).then_some(()))
    })
    .await?;
    standby.stop().await
}

/// One leader, whatever the clocks, the other way: a dead holder whose clock was an hour ahead. Its renewTime lies in our
/// future; the lease is still free a lease duration after it stopped changing.
#[tokio::test]
async fn a_dead_holder_with_a_fast_clock_loses_its_lease_in_a_lease_duration() -> anyhow::Result<()>
{
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let hour = k8s_openapi::jiff::SignedDuration::from_secs(3600);
    apply(
        &client,
        &lease(
            "atk-fast-clock",
            "fast",
            k8s_openapi::jiff::Timestamp::now() + hour,
        ),
    )
    .await?;
    let started = std::time::Instant::now();
    let standby = Operator::start(&client, replica("atk-successor", "atk-fast-clock"));
    eventually("the successor to lead", Duration::from_secs(15), || async {
        let holder = leases
            .get("atk-fast-clock")
            .await?
            .spec
            .and_then(|s| s.holder_identity);
        Ok((holder.as_deref() == Some("atk-successor")).then_some(()))
    })
    .await?;
    println!("took over after {:?}", started.elapsed());
    seeded(&client, "atk-fast-clock", 1800).await?;
    standby.stop().await
}

/// Names are data in what the operator writes too: a RoleBinding takes the name a team's
/// AzureGroupBinding plans, with a controller ownerReference whose kind and name carry escape
/// sequences, a carriage return, C1 controls, a right-to-left override and a new line. The
/// `Conflict` status message and the event quote them, escaped.
#[tokio::test]
async fn hostile_owner_names_reach_status_and_events_escaped() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    ensure_namespace(&client, "team-h").await?;
    let operator = Operator::start(&client, config(seed_settings()));
    let hostile = "Widget\u{1b}]0;owned\u{7}\u{1b}[2K\r\u{9b}2J\u{85}\u{202e}\nFAKE-LINE Ready";
    let squatter = controlled_role_binding(
        ("team-h", "atk-hostile:k10-basic"),
        ("example.com/v1", hostile, hostile, "0000"),
        ("k10-basic", "team-h"),
    );
    rbs(&client, "team-h")
        .create(&Default::default(), &squatter)
        .await?;
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(1700),
        group_prefix: Some(SEED_PREFIX.into()),
        roles: Some(vec![NamespacedRole::in_namespace(
            "k10-basic",
            "team-h",
            RoleKind::ClusterRole,
        )]),
        ..AzureGroupBindingSpec::default()
    };
    apply(&client, &agb("atk-hostile", spec)).await?;
    let conflicted = wait_for_reason(&client, "atk-hostile", "False", "Conflict").await?;
    let message = ready(&conflicted)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let raw = |text: &str| text.chars().any(groupbinder_api::text::needs_escape);
    assert!(!raw(&message), "raw control characters in {message:?}");
    assert!(message.contains(r"Widget\u{1b}]0;owned"), "{message}");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let notes = eventually(
        "the Conflict event of atk-hostile",
        Duration::from_secs(30),
        || async {
            let notes: Vec<String> = events
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("atk-hostile")
                })
                .filter_map(|e| e.note)
                .collect();
            Ok(notes.iter().any(|n| n.contains("Widget")).then_some(notes))
        },
    )
    .await?;
    for note in &notes {
        assert!(!raw(note), "raw control characters in the event {note:?}");
    }
    operator.stop().await
}

/// A user who may get, list and patch bindings, and nothing else (no `bind`, no `delete`):
/// changing ownerReferences skips RBAC's escalation check.
async fn binding_patcher(
    cp: &groupbinder_testenv::ControlPlane,
    client: &kube::Client,
) -> anyhow::Result<kube::Client> {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Subject};
    let rbac = "rbac.authorization.k8s.io";
    let patcher_role = ClusterRole {
        metadata: ObjectMeta {
            name: Some("binding-patcher".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![rbac.into()]),
            resources: Some(vec!["clusterrolebindings".into(), "rolebindings".into()]),
            verbs: vec!["get".into(), "list".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    apply(client, &patcher_role).await?;
    let patcher_binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("binding-patcher".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some(rbac.into()),
            kind: "ClusterRole".into(),
            name: "binding-patcher".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            api_group: Some(rbac.into()),
            name: "patcher".into(),
            ..Subject::default()
        }]),
    };
    apply(client, &patcher_binding).await?;
    Ok(cp.user("patcher", &[])?.client().await?)
}

/// Re-parenting skips RBAC's escalation check: a user who may only get and patch bindings (no
/// `bind`, no `delete`) gives an object's two bindings the controller ownerReference of
/// `Namespace kube-system`. groupbinder's rule (labelled, and bound to an allowed role) keeps them
/// its own: taken back, and when the object is deleted right after a second re-parenting, revoked
/// by the operator though the garbage collector would keep them (their new owner exists).
#[tokio::test]
async fn re_parented_bindings_are_taken_back_and_revoked_with_their_object() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let patcher = binding_patcher(cp, &client).await?;

    let operator = Operator::start(&client, config(seed_settings()));
    let object = seeded(&client, "leaving-team", 1900).await?;
    let uid = object.uid().unwrap_or_default();
    let group = group_of(1900);
    k10_admin_granted(&client, &group).await?;
    let kube_system = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await?;
    let hijack = serde_json::json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Namespace", "name": "kube-system",
        "uid": kube_system.uid().unwrap_or_default(), "controller": true,
    }]}});
    let (crb, rb) = ("leaving-team:k10-admin", "leaving-team:k10-ns-admin");
    let re_parent = || async {
        let params = PatchParams::default();
        crbs(&patcher)
            .patch(crb, &params, &Patch::Merge(&hijack))
            .await?;
        rbs(&patcher, "kasten-io")
            .patch(rb, &params, &Patch::Merge(&hijack))
            .await?;
        anyhow::Ok(())
    };
    re_parent().await?;
    let controller = |meta: &ObjectMeta| {
        groupbinder_api::ownership::controller_of(meta).map(|o| (o.kind.clone(), o.uid.clone()))
    };
    let ours = Some(("AzureGroupBinding".to_owned(), uid.clone()));
    eventually(
        "both bindings taken back",
        Duration::from_secs(30),
        || async {
            let c = crbs(&client).get(crb).await?;
            let r = rbs(&client, "kasten-io").get(rb).await?;
            let back = controller(&c.metadata) == ours
                && controller(&r.metadata) == ours
                && c.metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default()
                    .len()
                    == 1;
            Ok(back.then_some(()))
        },
    )
    .await?;
    k10_admin_granted(&client, &group).await?;

    // Again, and the object deleted at once: the operator revokes what the garbage collector
    // would keep.
    re_parent().await?;
    agbs(&client)
        .delete("leaving-team", &DeleteParams::default())
        .await?;
    admin_bindings_gone(&client, "leaving-team", Duration::from_secs(30)).await?;
    k10_admin_denied(&client, &group).await?;
    operator.stop().await
}

/// Moving a binding away from the object that plans it never revokes: the patch-only user gives
/// `moving-a`'s two bindings to the living object `moving-b`, then to no owner, then to `Namespace
/// kube-system`. Neither `moving-b`'s reconcile nor the sweeper deletes them (`moving-a` plans
/// them), `moving-a` is reconciled each time and takes them back, and a SubjectAccessReview asked
/// all along never says no.
#[tokio::test]
async fn moving_a_binding_to_another_object_never_revokes() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let patcher = binding_patcher(cp, &client).await?;
    let operator = Operator::start(&client, config(seed_settings()));
    let a = seeded(&client, "moving-a", 2000).await?;
    let b = seeded(&client, "moving-b", 2001).await?;
    let (a_uid, b_uid) = (a.uid().unwrap_or_default(), b.uid().unwrap_or_default());
    let group = group_of(2000);
    k10_admin_granted(&client, &group).await?;

    // Ask all along: K10 actions and K10's Secrets in kasten-io (k10-admin, k10-ns-admin).
    let (stop, asked, refused) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
        Arc::new(AtomicU32::new(0)),
    );
    let sampler = tokio::spawn({
        let (client, group) = (client.clone(), group.clone());
        let (stop, asked, refused) = (stop.clone(), asked.clone(), refused.clone());
        async move {
            let groups = [group.as_str()];
            let who = Who::new(&client, "member", &groups);
            while !stop.load(Ordering::Relaxed) {
                let actions = who
                    .can("create", K10_ACTIONS, "backupactions", Some("kasten-io"))
                    .await?;
                let secrets = who.can("get", "", "secrets", Some("kasten-io")).await?;
                asked.fetch_add(2, Ordering::Relaxed);
                refused.fetch_add(u32::from(!actions) + u32::from(!secrets), Ordering::Relaxed);
            }
            anyhow::Ok(())
        }
    });

    let kube_system = Api::<Namespace>::all(client.clone())
        .get("kube-system")
        .await?;
    let to_object = serde_json::json!({"metadata": {"ownerReferences": [{
        "apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
        "name": "moving-b", "uid": b_uid, "controller": true, "blockOwnerDeletion": true,
    }]}});
    let to_none = serde_json::json!({"metadata": {"ownerReferences": null}});
    let to_foreign = serde_json::json!({"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Namespace", "name": "kube-system",
        "uid": kube_system.uid().unwrap_or_default(), "controller": true,
    }]}});
    let (crb, rb) = ("moving-a:k10-admin", "moving-a:k10-ns-admin");
    let controller =
        |meta: &ObjectMeta| groupbinder_api::ownership::controller_of(meta).map(|o| o.uid.clone());
    for (what, patch) in [
        ("to moving-b", &to_object),
        ("to no owner", &to_none),
        ("to Namespace kube-system", &to_foreign),
    ] {
        let params = PatchParams::default();
        crbs(&patcher)
            .patch(crb, &params, &Patch::Merge(patch))
            .await?;
        rbs(&patcher, "kasten-io")
            .patch(rb, &params, &Patch::Merge(patch))
            .await?;
        eventually(
            &format!("moved {what}: both taken back by moving-a"),
            Duration::from_secs(30),
            || async {
                let c = crbs(&client).get(crb).await?;
                let r = rbs(&client, "kasten-io").get(rb).await?;
                let back = controller(&c.metadata).as_deref() == Some(a_uid.as_str())
                    && controller(&r.metadata).as_deref() == Some(a_uid.as_str());
                Ok(back.then_some(()))
            },
        )
        .await?;
    }
    // moving-b kept its own two bindings and nothing else.
    let b_bindings = crbs(&client)
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| controller(&c.metadata).as_deref() == Some(b_uid.as_str()))
        .count();
    assert_eq!(
        b_bindings, 1,
        "moving-b controls only its own ClusterRoleBinding"
    );
    stop.store(true, Ordering::Relaxed);
    sampler.await??;
    let (asked, refused) = (
        asked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(asked >= 10, "asked only {asked} times");
    assert_eq!(
        refused, 0,
        "{refused} of {asked} SubjectAccessReviews said no"
    );
    let a = wait_for_reason(&client, "moving-a", "True", "Reconciled").await?;
    assert_eq!(bound_roles(&a).len(), 2, "{:?}", bound_roles(&a));
    for name in ["moving-a", "moving-b"] {
        agbs(&client).delete(name, &DeleteParams::default()).await?;
        admin_bindings_gone(&client, name, Duration::from_secs(30)).await?;
    }
    operator.stop().await
}

/// One Lease write must not stop all reconciling: a user who may only update Leases in the
/// operator's namespace writes `holderIdentity: mallory, leaseDurationSeconds: 2147483647`. The
/// leader steps down (someone else holds it now), and the replica that starts next does not
/// wait the 68 years the record asks for: no longer than its own lease duration (3 s here) after
/// it first saw the record. It leads, says so in `groupbinder_leading`, and reconciles. Before,
/// it waited for ever with `/readyz` ok.
#[tokio::test]
async fn a_forged_lease_duration_is_not_trusted_beyond_our_own() -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{Role, Subject};
    let (cp, client) = setup().await?;
    let _serial = exclusive().await;
    let rbac = "rbac.authorization.k8s.io";
    let role = Role {
        metadata: ObjectMeta {
            name: Some("lease-writer".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            verbs: vec!["get".into(), "update".into(), "patch".into()],
            ..PolicyRule::default()
        }]),
    };
    apply(&client, &role).await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("lease-writer".into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some(rbac.into()),
            kind: "Role".into(),
            name: "lease-writer".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            api_group: Some(rbac.into()),
            name: "lease-writer".into(),
            ..Subject::default()
        }]),
    };
    apply(&client, &binding).await?;
    let writer = cp.user("lease-writer", &[])?.client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = || async {
        let lease = leases.get_opt("atk-forever").await?;
        anyhow::Ok(lease.and_then(|l| l.spec?.holder_identity))
    };

    let first = Operator::start(&client, replica("atk-first", "atk-forever"));
    eventually("atk-first to lead", Duration::from_secs(15), || async {
        Ok((holder().await?.as_deref() == Some("atk-first")).then_some(()))
    })
    .await?;
    let forged = serde_json::json!({"spec": {
        "holderIdentity": "mallory", "leaseDurationSeconds": i32::MAX,
    }});
    Api::<Lease>::namespaced(writer, "default")
        .patch(
            "atk-forever",
            &PatchParams::default(),
            &Patch::Merge(&forged),
        )
        .await?;
    eventually(
        "atk-first to step down",
        Duration::from_secs(15),
        || async { Ok(first.is_finished().then_some(())) },
    )
    .await?;
    assert!(first.stop().await.is_err(), "it stopped for a lost lease");

    // The replica that comes next (a restarted pod).
    let started = std::time::Instant::now();
    let next = Operator::start(&client, replica("atk-next", "atk-forever"));
    eventually(
        "atk-next to wait for the lease",
        Duration::from_secs(5),
        || async { Ok((metric(&next, "groupbinder_lease_wait_seconds") > 0.0).then_some(())) },
    )
    .await?;
    assert_eq!(metric(&next, "groupbinder_leading"), 0.0);
    eventually("atk-next to lead", Duration::from_secs(15), || async {
        Ok((holder().await?.as_deref() == Some("atk-next")).then_some(()))
    })
    .await?;
    println!("took over after {:?}", started.elapsed());
    eventually(
        "atk-next to say it leads",
        Duration::from_secs(5),
        || async { Ok((metric(&next, "groupbinder_leading") == 1.0).then_some(())) },
    )
    .await?;
    let lease = leases.get("atk-forever").await?;
    assert_eq!(lease.spec.and_then(|s| s.lease_duration_seconds), Some(3));
    seeded(&client, "atk-forever", 1810).await?;
    agbs(&client)
        .delete("atk-forever", &DeleteParams::default())
        .await?;
    admin_bindings_gone(&client, "atk-forever", Duration::from_secs(30)).await?;
    next.stop().await
}
