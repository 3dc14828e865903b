//! What observe reads from the caches, and when it asks the API server.

use super::*;
use crate::fakes::{FakeApi, FakeCaches, Seen, UID, failure, seed_plan};
use groupbinder_api::names::OWNER_UID_LABEL;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::Value;

fn no_request(seen: &Seen) -> (u16, Value) {
    panic!("observe asked the API server: {}", seen.line())
}

#[tokio::test]
async fn with_everything_cached_observe_makes_no_request() {
    let plan = seed_plan();
    let mut fake = FakeCaches::with_k10();
    fake.cluster_role_binding(&plan.cluster_role_bindings[0].object);
    let api = FakeApi::new(no_request);
    let observed = observe(&fake.caches, &api.client(), UID, &plan, false, usize::MAX)
        .await
        .unwrap();
    assert!(observed.missing.is_empty(), "{:?}", observed.missing);
    let [(_, admin)] = observed.cluster_role_bindings.as_slice() else {
        panic!()
    };
    assert!(
        matches!(
            admin,
            Found::Ours {
                orphaned: false,
                ..
            }
        ),
        "{admin:?}"
    );
    let [(_, rb)] = observed.role_bindings.as_slice() else {
        panic!()
    };
    assert_eq!(rb, &Found::Absent);
}

#[tokio::test]
async fn missing_roles_and_namespaces_are_reported_with_their_typed_kind() {
    let plan = seed_plan();
    let api = FakeApi::new(no_request);
    // K10's namespace exists, its roles do not.
    let mut fake = FakeCaches::new();
    fake.namespace("kasten-io");
    let observed = observe(&fake.caches, &api.client(), UID, &plan, false, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        observed.missing,
        [
            Problem::RoleNotFound {
                kind: RoleKind::ClusterRole,
                namespace: None,
                name: "k10-admin".into()
            },
            Problem::RoleNotFound {
                kind: RoleKind::Role,
                namespace: Some("kasten-io".into()),
                name: "k10-ns-admin".into()
            },
        ]
    );
    // Bindings to missing roles are still made: they grant once the role exists.
    assert_eq!(observed.role_bindings.len(), 1);
    assert_eq!(observed.cluster_role_bindings.len(), 1);

    // Without the namespace, its RoleBinding waits.
    let observed = observe(
        &FakeCaches::new().caches,
        &api.client(),
        UID,
        &plan,
        false,
        usize::MAX,
    )
    .await
    .unwrap();
    assert!(observed.missing.contains(&Problem::NamespaceNotFound {
        namespace: "kasten-io".into()
    }));
    assert!(observed.role_bindings.is_empty());
    assert_eq!(observed.cluster_role_bindings.len(), 1);
}

#[tokio::test]
async fn an_object_in_conflict_reads_uncached_names_from_the_api_server() {
    let plan = seed_plan();
    let fake = FakeCaches::with_k10();
    let theirs = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "k10-admins:k10-admin", "uid": "x"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-admin"},
    });
    let api = FakeApi::new(move |seen| {
        if seen
            .path
            .ends_with("/clusterrolebindings/k10-admins:k10-admin")
        {
            (200, theirs.clone())
        } else {
            failure(404, "NotFound")
        }
    });
    let observed = observe(&fake.caches, &api.client(), UID, &plan, true, usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        observed.cluster_role_bindings[0].1,
        Found::Foreign {
            holder: "no controller ownerReference".into()
        }
    );
    assert_eq!(observed.role_bindings[0].1, Found::Absent);
    assert_eq!(
        api.lines().len(),
        2,
        "each planned name missing from the cache is read"
    );

    let api = FakeApi::new(|_| failure(500, "InternalError"));
    let error = observe(&fake.caches, &api.client(), UID, &plan, true, usize::MAX)
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("reading "), "{error}");
}

#[test]
fn stale_holds_what_the_object_claims_and_the_plan_does_not() {
    let plan = seed_plan();
    let mut fake = FakeCaches::with_k10();
    let planned = plan.cluster_role_bindings[0].object.clone();
    let named = |name: &str, edit: &dyn Fn(&mut ClusterRoleBinding)| {
        let mut b = planned.clone();
        b.metadata.name = Some(name.into());
        edit(&mut b);
        b
    };
    // Kept: planned. Stale: an old binding of this object, and one that lost its owner
    // reference but carries the uid label. Not ours: another object's.
    fake.cluster_role_binding(&planned);
    fake.cluster_role_binding(&named("k10-admins:k10-basic", &|_| {}));
    fake.cluster_role_binding(&named("k10-admins:orphan", &|b| {
        b.metadata.owner_references = None;
    }));
    fake.cluster_role_binding(&named("other:k10-admin", &|b| {
        b.metadata.owner_references = Some(vec![OwnerReference {
            uid: "other-uid".into(),
            ..b.metadata.owner_references.clone().unwrap()[0].clone()
        }]);
        b.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(OWNER_UID_LABEL.into(), "other-uid".into());
    }));
    let mut names: Vec<String> = stale(&fake.caches, UID, &plan.keys())
        .cluster_role_bindings
        .iter()
        .filter_map(|b| b.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["k10-admins:k10-basic", "k10-admins:orphan"]);
    let everything = stale(&fake.caches, UID, &BTreeSet::new());
    assert_eq!(everything.cluster_role_bindings.len(), 3);
    assert!(stale(&fake.caches, "nobody", &BTreeSet::new()).is_empty());
}

#[tokio::test]
async fn over_the_cap_only_role_bindings_in_place_are_kept_and_none_is_added() {
    let plan = seed_plan();
    let api = FakeApi::new(no_request);
    let fake = FakeCaches::with_k10();
    let observed = observe(&fake.caches, &api.client(), UID, &plan, false, 0)
        .await
        .unwrap();
    assert!(
        observed.role_bindings.is_empty(),
        "an absent one is not added"
    );
    assert_eq!(
        observed.missing,
        [Problem::TooManyRoleBindings {
            planned: 1,
            cap: 0,
            kept: 0
        }]
    );
    assert_eq!(
        observed.cluster_role_bindings.len(),
        1,
        "the cap is on RoleBindings"
    );
    let mut fake = FakeCaches::with_k10();
    fake.role_binding(&plan.role_bindings[0].object);
    let observed = observe(&fake.caches, &api.client(), UID, &plan, false, 0)
        .await
        .unwrap();
    let [(_, kept)] = observed.role_bindings.as_slice() else {
        panic!("{:?}", observed.role_bindings)
    };
    assert!(matches!(kept, Found::Ours { .. }), "one in place is kept");
    let within = observe(&fake.caches, &api.client(), UID, &plan, false, 1)
        .await
        .unwrap();
    assert!(within.missing.is_empty(), "{:?}", within.missing);
}

/// Someone moves `other:k10-admin` (planned by the living object `other`) to this object: this
/// object's reconcile leaves it (it is not stale here), and `other`'s takes it back.
#[test]
fn a_binding_moved_from_the_object_that_plans_it_is_not_stale_and_is_taken_back() {
    let mut fake = FakeCaches::with_k10();
    let mut other = crate::fakes::seed("b0000000-0000-4000-8000-000000000000");
    other.metadata.name = Some("other".into());
    other.metadata.uid = Some("other-uid".into());
    fake.agb(&other);
    let other_plan = groupbinder_api::plan(&other, &crate::fakes::settings(), None).unwrap();
    // Its ClusterRoleBinding, given this object's controller ownerReference.
    let mut moved = other_plan.cluster_role_bindings[0].object.clone();
    moved.metadata.owner_references = seed_plan().cluster_role_bindings[0]
        .object
        .metadata
        .owner_references
        .clone();
    fake.cluster_role_binding(&moved);
    assert_eq!(moved.metadata.name.as_deref(), Some("other:k10-admin"));

    assert!(
        stale(&fake.caches, UID, &BTreeSet::new()).is_empty(),
        "another living object plans it"
    );
    let found = Found::of(
        Some(Arc::new(moved.clone())),
        "other-uid",
        &fake.caches.allowed,
    );
    assert!(
        matches!(found, Found::Ours { orphaned: true, .. }),
        "{found:?}"
    );

    // Once `other` no longer plans it (deleted here), it is this object's to revoke.
    let mut deleting = other.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    fake.agb(&deleting);
    assert_eq!(
        stale(&fake.caches, UID, &BTreeSet::new())
            .cluster_role_bindings
            .len(),
        1
    );
}
