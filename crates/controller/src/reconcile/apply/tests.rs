//! Every branch of `ensure` and `delete`, against a scripted API server.

use super::*;
use crate::fakes::{CRBS, FakeApi, RBS, Seen, UID, deleted, echo, failure, seed_plan};
use crate::metrics::WriteAction;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

const CRB: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/k10-admins:k10-admin";

/// The planned ClusterRoleBinding as the API server would hold it (uid `old-uid`), after `edit`.
fn on_server(
    planned: &Planned<ClusterRoleBinding>,
    edit: impl FnOnce(&mut ClusterRoleBinding),
) -> ClusterRoleBinding {
    let mut binding = planned.object.clone();
    binding.metadata.uid = Some("old-uid".into());
    binding.metadata.resource_version = Some("7".into());
    edit(&mut binding);
    binding
}

/// The tests' allowlist: K10's roles, release `k10` in `kasten-io`.
fn allowed() -> Allowlist {
    Allowlist::k10("k10", "kasten-io")
}

fn found(binding: ClusterRoleBinding) -> Found<ClusterRoleBinding> {
    Found::of(Some(Arc::new(binding)), UID, &allowed())
}

fn foreign_owner() -> OwnerReference {
    OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "other".into(),
        controller: Some(true),
        ..OwnerReference::default()
    }
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

async fn ensure_crb(
    api: &FakeApi,
    found: Found<ClusterRoleBinding>,
) -> Result<Ensured, ApplyError> {
    let plan = seed_plan();
    let planned = &plan.cluster_role_bindings[0];
    let done = ensure(
        &api.client(),
        &api.metrics(),
        (UID, &allowed()),
        planned,
        found,
    )
    .await;
    api.assert_writes_counted();
    let done = done?;
    assert_eq!(done.key, planned.key);
    assert_eq!(done.role, planned.role);
    Ok(done.ensured)
}

fn unexpected(seen: &Seen) -> (u16, Value) {
    panic!("unexpected request {} {}", seen.line(), seen.body)
}

#[tokio::test]
async fn a_binding_as_planned_costs_no_request() {
    let plan = seed_plan();
    let api = FakeApi::new(unexpected);
    let current = on_server(&plan.cluster_role_bindings[0], |b| {
        // Fields of other managers are left alone, as server-side apply would.
        b.metadata
            .labels
            .get_or_insert_default()
            .insert("team".into(), "ops".into());
    });
    assert_eq!(
        ensure_crb(&api, found(current)).await.unwrap(),
        Ensured::Unchanged
    );
    assert!(api.lines().is_empty());
}

#[tokio::test]
async fn an_absent_binding_is_created_with_the_field_manager() {
    let api = FakeApi::new(echo);
    assert_eq!(
        ensure_crb(&api, Found::Absent).await.unwrap(),
        Ensured::Created
    );
    let [post] = api.requests().try_into().unwrap();
    assert_eq!(post.line(), format!("POST {CRBS}"));
    assert!(
        post.query.contains("fieldManager=groupbinder"),
        "{}",
        post.query
    );
    let plan = seed_plan();
    assert_eq!(
        post.body["roleRef"],
        json_of(&plan.cluster_role_bindings[0].object.role_ref)
    );
    assert_eq!(post.body["metadata"]["name"], "k10-admins:k10-admin");
}

#[tokio::test]
async fn a_role_binding_is_written_in_its_own_namespace() {
    let plan = seed_plan();
    let planned = &plan.role_bindings[0];
    let api = FakeApi::new(echo);
    let done = ensure(
        &api.client(),
        &api.metrics(),
        (UID, &allowed()),
        planned,
        Found::Absent,
    )
    .await
    .unwrap();
    api.assert_writes_counted();
    assert_eq!(done.ensured, Ensured::Created);
    assert_eq!(api.lines(), [format!("POST {RBS}")]);
}

/// The one request `api` got: a forced server-side apply of the binding by the operator.
fn the_forced_apply(api: &FakeApi) -> Seen {
    let [patch] = api.requests().try_into().unwrap();
    assert_eq!(patch.line(), format!("PATCH {CRB}"));
    assert!(patch.query.contains("force=true"), "{}", patch.query);
    assert!(
        patch.query.contains("fieldManager=groupbinder"),
        "{}",
        patch.query
    );
    patch
}

#[tokio::test]
async fn a_drifted_binding_is_put_back_by_forced_server_side_apply() {
    let plan = seed_plan();
    let current = on_server(&plan.cluster_role_bindings[0], |b| {
        b.subjects.as_mut().unwrap()[0].name = "michael_azure_someone-else".into();
    });
    let api = FakeApi::new(echo);
    assert_eq!(
        ensure_crb(&api, found(current)).await.unwrap(),
        Ensured::PutBack
    );
    let patch = the_forced_apply(&api);
    assert_eq!(
        patch.body["subjects"],
        json_of(&plan.cluster_role_bindings[0].object.subjects)
    );
}

#[tokio::test]
async fn an_orphan_gets_its_owner_reference_back() {
    let plan = seed_plan();
    // Labelled with this object's uid, ownerReference removed.
    let current = on_server(&plan.cluster_role_bindings[0], |b| {
        b.metadata.owner_references = None;
    });
    let api = FakeApi::new(echo);
    assert_eq!(
        ensure_crb(&api, found(current)).await.unwrap(),
        Ensured::Adopted
    );
    let patch = the_forced_apply(&api);
    assert_eq!(patch.body["metadata"]["ownerReferences"][0]["uid"], UID);
}

#[tokio::test]
async fn a_changed_role_ref_replaces_exactly_the_binding_looked_at() {
    let plan = seed_plan();
    let current = on_server(&plan.cluster_role_bindings[0], |b| {
        b.role_ref.name = "cluster-admin".into();
    });
    let api = FakeApi::new(|seen| match seen.method.as_str() {
        "DELETE" => deleted(),
        "POST" => echo(seen),
        _ => unexpected(seen),
    });
    assert_eq!(
        ensure_crb(&api, found(current)).await.unwrap(),
        Ensured::PutBack
    );
    let [delete, post] = api.requests().try_into().unwrap();
    assert_eq!(delete.line(), format!("DELETE {CRB}"));
    assert_eq!(delete.body["preconditions"]["uid"], "old-uid");
    assert_eq!(post.line(), format!("POST {CRBS}"));
    assert_eq!(post.body["roleRef"]["name"], "k10-admin");
    let metrics = api.metrics();
    assert_eq!(
        metrics.writes_of(WriteAction::Replace),
        2,
        "DELETE and POST"
    );
    assert_eq!(metrics.writes_of(WriteAction::Delete), 0);
    assert_eq!(metrics.writes_of(WriteAction::Create), 0);
}

#[tokio::test]
async fn someone_elses_binding_is_never_written() {
    let plan = seed_plan();
    // Another controller and none of groupbinder's labels.
    let current = on_server(&plan.cluster_role_bindings[0], |b| {
        b.metadata.owner_references = Some(vec![foreign_owner()]);
        b.metadata.labels = None;
    });
    let api = FakeApi::new(unexpected);
    assert_eq!(
        ensure_crb(&api, found(current)).await.unwrap(),
        Ensured::Conflict {
            holder: "controlled by Widget w".into()
        }
    );
    // No controller and no label of ours: also someone else's.
    let bare = on_server(&plan.cluster_role_bindings[0], |b| {
        b.metadata.owner_references = None;
        b.metadata.labels = None;
    });
    assert_eq!(
        ensure_crb(&api, found(bare)).await.unwrap(),
        Ensured::Conflict {
            holder: "no controller ownerReference".into()
        }
    );
    assert!(api.lines().is_empty());
}

/// Answers a POST with 409 and a GET with `get`; anything else is echoed.
fn taken(get: impl Fn() -> (u16, Value) + Send + Sync + 'static) -> FakeApi {
    FakeApi::new(move |seen| match seen.method.as_str() {
        "POST" => failure(409, "AlreadyExists"),
        "GET" => get(),
        _ => echo(seen),
    })
}

#[tokio::test]
async fn a_409_on_create_reads_the_name_and_puts_back_our_own_binding() {
    let plan = seed_plan();
    let drifted = on_server(&plan.cluster_role_bindings[0], |b| {
        b.subjects = None;
    });
    let api = taken(move || (200, json_of(&drifted)));
    assert_eq!(
        ensure_crb(&api, Found::Absent).await.unwrap(),
        Ensured::PutBack
    );
    assert_eq!(
        api.lines(),
        [
            format!("POST {CRBS}"),
            format!("GET {CRB}"),
            format!("PATCH {CRB}")
        ]
    );
}

#[tokio::test]
async fn a_409_on_create_for_our_binding_as_planned_writes_nothing_more() {
    let plan = seed_plan();
    let as_planned = on_server(&plan.cluster_role_bindings[0], |_| {});
    let api = taken(move || (200, json_of(&as_planned)));
    assert_eq!(
        ensure_crb(&api, Found::Absent).await.unwrap(),
        Ensured::Unchanged
    );
    assert_eq!(api.lines(), [format!("POST {CRBS}"), format!("GET {CRB}")]);
}

#[tokio::test]
async fn a_409_on_create_for_someone_elses_binding_is_a_conflict() {
    let plan = seed_plan();
    let theirs = on_server(&plan.cluster_role_bindings[0], |b| {
        b.metadata.owner_references = Some(vec![foreign_owner()]);
        b.metadata.labels = None;
    });
    let api = taken(move || (200, json_of(&theirs)));
    assert_eq!(
        ensure_crb(&api, Found::Absent).await.unwrap(),
        Ensured::Conflict {
            holder: "controlled by Widget w".into()
        }
    );
    assert_eq!(api.lines(), [format!("POST {CRBS}"), format!("GET {CRB}")]);
}

#[tokio::test]
async fn a_name_taken_and_freed_again_is_created_at_most_twice() {
    let api = taken(|| failure(404, "NotFound"));
    assert_eq!(
        ensure_crb(&api, Found::Absent).await.unwrap(),
        Ensured::Conflict {
            holder: "created by someone else just now".into()
        }
    );
    assert_eq!(
        api.lines(),
        [
            format!("POST {CRBS}"),
            format!("GET {CRB}"),
            format!("POST {CRBS}")
        ]
    );
}

#[tokio::test]
async fn failed_requests_are_errors_that_name_the_action_and_the_binding() {
    let plan = seed_plan();
    let cases: [(&str, Found<ClusterRoleBinding>, FakeApi); 4] = [
        (
            "create",
            Found::Absent,
            FakeApi::new(|_| failure(403, "Forbidden")),
        ),
        (
            "get",
            Found::Absent,
            taken(|| failure(500, "InternalError")),
        ),
        (
            "apply",
            found(on_server(&plan.cluster_role_bindings[0], |b| {
                b.subjects = None
            })),
            FakeApi::new(|_| failure(500, "InternalError")),
        ),
        (
            "delete",
            found(on_server(&plan.cluster_role_bindings[0], |b| {
                b.role_ref.name = "view".into();
            })),
            FakeApi::new(|_| failure(500, "InternalError")),
        ),
    ];
    for (action, found, api) in cases {
        let error = ensure_crb(&api, found).await.unwrap_err();
        assert_eq!(error.action, action);
        assert_eq!(error.binding, plan.cluster_role_bindings[0].key);
        assert!(
            error.to_string().starts_with(&format!(
                "{action} ClusterRoleBinding k10-admins:k10-admin: "
            )),
            "{error}"
        );
    }
}

// ---- delete ----

fn key() -> BindingKey {
    seed_plan().cluster_role_bindings[0].key.clone()
}

fn meta(uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some("k10-admins:k10-admin".into()),
        uid: Some(uid.into()),
        resource_version: Some("7".into()),
        ..ObjectMeta::default()
    }
}

async fn delete_crb(api: &FakeApi) -> Result<(), ApplyError> {
    let done =
        delete::<ClusterRoleBinding>(&api.client(), &api.metrics(), &key(), &meta("old-uid")).await;
    api.assert_writes_counted();
    done
}

#[tokio::test]
async fn delete_names_the_uid_it_looked_at() {
    let api = FakeApi::new(|_| deleted());
    delete_crb(&api).await.unwrap();
    let [delete] = api.requests().try_into().unwrap();
    assert_eq!(delete.line(), format!("DELETE {CRB}"));
    assert_eq!(delete.body["preconditions"]["uid"], "old-uid");
    assert_eq!(delete.body["preconditions"]["resourceVersion"], "7");
}

#[tokio::test]
async fn a_binding_already_gone_or_replaced_counts_as_deleted() {
    let api = FakeApi::new(move |_| failure(404, "gone"));
    delete_crb(&api).await.unwrap();
    assert_eq!(api.lines().len(), 1);
    // 409: read again; another object of that name (or none) by now.
    for now in [
        json!({"metadata": {"name": "x", "uid": "new-uid"}}),
        Value::Null,
    ] {
        let api = FakeApi::new(move |seen| match seen.method.as_str() {
            "DELETE" => failure(409, "Conflict"),
            _ if now.is_null() => failure(404, "NotFound"),
            _ => (200, now.clone()),
        });
        delete_crb(&api).await.unwrap();
        assert_eq!(api.lines().len(), 2, "{:?}", api.lines());
    }
}

#[tokio::test]
async fn a_binding_changed_since_it_was_read_is_not_deleted_but_decided_again() {
    let api = FakeApi::new(|seen| match seen.method.as_str() {
        "DELETE" => failure(409, "Conflict"),
        _ => (
            200,
            json!({"metadata": {"name": "x", "uid": "old-uid", "resourceVersion": "8"}}),
        ),
    });
    let error = delete_crb(&api).await.unwrap_err();
    assert_eq!(error.action, "delete");
    assert_eq!(api.lines().len(), 2, "one DELETE, one GET, nothing more");
}

fn lingering(uid: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": "k10-admins:k10-admin",
            "uid": uid,
            "deletionTimestamp": "2026-11-29T00:00:00Z",
            "finalizers": ["example.com/hold"],
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-admin"},
    })
}

/// A server whose DELETE leaves the binding with `uid` held back by a finalizer, and that
/// answers other requests with `otherwise`.
fn holding_back(
    uid: &'static str,
    otherwise: impl Fn(&Seen) -> (u16, Value) + Send + Sync + 'static,
) -> FakeApi {
    FakeApi::new(move |seen| match seen.method.as_str() {
        "DELETE" => (200, lingering(uid)),
        _ => otherwise(seen),
    })
}

#[tokio::test]
async fn the_finalizers_that_hold_back_a_revoked_binding_are_removed() {
    let api = holding_back("old-uid", echo);
    delete_crb(&api).await.unwrap();
    let [_, patch] = api.requests().try_into().unwrap();
    assert_eq!(patch.line(), format!("PATCH {CRB}"));
    assert_eq!(
        patch.body,
        json!({"metadata": {"finalizers": null, "uid": "old-uid"}}),
        "a merge patch, pinned to the uid"
    );
}

#[tokio::test]
async fn finalizers_of_another_object_of_that_name_are_left_alone() {
    let api = holding_back("someone-elses", unexpected);
    delete_crb(&api).await.unwrap();
    assert_eq!(api.lines().len(), 1);
}

#[tokio::test]
async fn removing_finalizers_tolerates_a_binding_gone_meanwhile_and_reports_other_failures() {
    for (code, ok) in [(404, true), (409, true), (500, false)] {
        let api = holding_back("old-uid", move |_| failure(code, "x"));
        let result = delete_crb(&api).await;
        assert_eq!(result.is_ok(), ok, "{code}: {result:?}");
        if let Err(error) = result {
            assert_eq!(error.action, "remove the finalizers of");
        }
    }
}

#[tokio::test]
async fn a_failed_delete_is_an_error() {
    let api = FakeApi::new(|_| failure(500, "InternalError"));
    let error = delete_crb(&api).await.unwrap_err();
    assert_eq!(error.action, "delete");
}

#[tokio::test]
async fn revoke_reports_what_it_deleted_before_a_failure() {
    let binding = |name: &str| {
        Arc::new(ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            ..ClusterRoleBinding::default()
        })
    };
    let api = FakeApi::new(|seen| {
        if seen.path.ends_with("/second") {
            failure(500, "InternalError")
        } else {
            deleted()
        }
    });
    let stale = Stale {
        cluster_role_bindings: vec![binding("first"), binding("second"), binding("third")],
        role_bindings: Vec::new(),
    };
    let (deleted, result) = revoke(&api.client(), &api.metrics(), &stale).await;
    api.assert_writes_counted();
    assert_eq!(
        deleted,
        [BindingKey::Cluster {
            name: "first".into()
        }]
    );
    assert_eq!(result.unwrap_err().binding.name(), "second");
    assert_eq!(api.lines().len(), 2, "stops at the first failure");
}

// ---- step (pure) ----

#[test]
fn step_decides_from_what_has_the_name() {
    let plan = seed_plan();
    let planned = &plan.cluster_role_bindings[0];
    let same = on_server(planned, |_| {});
    let drifted = on_server(planned, |b| b.subjects = None);
    let moved = on_server(planned, |b| b.role_ref.name = "view".into());
    let orphan_moved = on_server(planned, |b| {
        b.role_ref.name = "view".into();
        b.metadata.owner_references = None;
    });
    assert_eq!(step(planned, &Found::Absent), Step::Create);
    assert_eq!(
        step(planned, &found(same)),
        Step::Nothing(Ensured::Unchanged)
    );
    assert_eq!(
        step(planned, &found(drifted)),
        Step::Patch(Ensured::PutBack)
    );
    assert_eq!(
        step(planned, &found(moved)),
        Step::Replace(Ensured::PutBack)
    );
    // Labelled, no controller, a role outside the allowlist: never groupbinder's, never touched.
    assert_eq!(
        step(planned, &found(orphan_moved)),
        Step::Nothing(Ensured::Conflict {
            holder: "no controller ownerReference".into()
        })
    );
}

/// A binding labelled as groupbinder's, of an allowed role, that someone gave another controller
/// (re-parenting skips RBAC's escalation check) is groupbinder's: taken back with an update that
/// holds only over the version read, ownerReferences exactly as planned. Not server-side apply,
/// which would keep their ownerReference next to ours.
#[tokio::test]
async fn a_re_parented_binding_is_taken_back_with_an_update() {
    let plan = seed_plan();
    let hijacked = on_server(&plan.cluster_role_bindings[0], |b| {
        b.metadata.owner_references = Some(vec![foreign_owner()]);
    });
    let api = FakeApi::new(echo);
    assert_eq!(
        ensure_crb(&api, found(hijacked)).await.unwrap(),
        Ensured::TakenBack
    );
    assert_eq!(api.lines(), [format!("PUT {CRB}")]);
    let put = api.request_to(CRB).unwrap();
    assert_eq!(put.body["metadata"]["resourceVersion"], "7");
    let owners = put.body["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0]["uid"], UID);
    assert_eq!(owners[0]["kind"], "AzureGroupBinding");
}
