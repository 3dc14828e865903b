use super::*;
use crate::v1alpha1::AzureGroupBindingSpec;

const GUID: &str = "a318b1eb-8b78-4715-98ad-ffc8670ac79d";

fn settings() -> Settings {
    Settings::for_k10("k10", "kasten-io", "michael_azure_")
}

fn agb(name: &str, spec: AzureGroupBindingSpec) -> AzureGroupBinding {
    let mut agb = AzureGroupBinding::new(name, spec);
    agb.metadata.uid = Some("0a6c6f1e-0000-4000-8000-000000000001".into());
    agb
}

fn seed() -> AzureGroupBindingSpec {
    AzureGroupBindingSpec {
        group_object_id: GUID.into(),
        ..Default::default()
    }
}

/// `<release>-mc-admin` is bound only where named, and then said to grant every Secret.
#[test]
fn the_multi_cluster_role_is_bound_only_when_named_and_then_said_to_grant_every_secret() {
    let mut spec = seed();
    spec.cluster_roles = Some(vec!["k10-admin".into(), "k10-mc-admin".into()]);
    let plan = plan(&agb("k10-admins", spec), &settings(), None).unwrap();
    let note = all_secrets_note(&plan, &settings()).unwrap();
    assert!(
        note.contains("every verb on Secrets in every namespace"),
        "{note}"
    );
    assert!(warnings(&plan, &settings()).contains(&note));
}

#[test]
fn seed_spec_gets_the_k10_admin_profile() {
    let plan = plan(&agb("k10-admins", seed()), &settings(), None).unwrap();
    assert_eq!(plan.group, format!("michael_azure_{GUID}"));

    // The seed's least privilege: admin (no Secrets) and ns-admin (Secrets in K10's namespace);
    // not mc-admin (every Secret), which K10's own chart (7.5 on) also gives its admins.
    let [crb] = plan.cluster_role_bindings.as_slice() else {
        panic!("{plan:?}")
    };
    assert_eq!(crb.key.kind(), "ClusterRoleBinding");
    assert_eq!(crb.role.kind, RoleKind::ClusterRole);
    assert_eq!(all_secrets_note(&plan, &settings()), None);
    let crb = &crb.object;
    assert_eq!(crb.metadata.name.as_deref(), Some("k10-admins:k10-admin"));
    assert_eq!(crb.role_ref.kind, "ClusterRole");
    assert_eq!(crb.role_ref.name, "k10-admin");

    let [rb] = plan.role_bindings.as_slice() else {
        panic!("{plan:?}")
    };
    assert_eq!(
        rb.key.to_string(),
        "RoleBinding kasten-io/k10-admins:k10-ns-admin"
    );
    assert_eq!(rb.role.kind, RoleKind::Role);
    let rb = &rb.object;
    assert_eq!(rb.metadata.namespace.as_deref(), Some("kasten-io"));
    assert_eq!(rb.metadata.name.as_deref(), Some("k10-admins:k10-ns-admin"));
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(rb.role_ref.name, "k10-ns-admin");

    for subjects in [&crb.subjects, &rb.subjects] {
        let [s] = subjects.as_deref().unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("Group", plan.group.as_str())
        );
        assert_eq!(s.api_group.as_deref(), Some("rbac.authorization.k8s.io"));
        assert_eq!(s.namespace, None);
    }
}

#[test]
fn release_and_namespace_come_from_settings() {
    let settings = Settings::for_k10("backup", "k10-system", "");
    let plan = plan(&agb("x", seed()), &settings, None).unwrap();
    assert_eq!(plan.group, GUID);
    assert_eq!(
        plan.cluster_role_bindings[0].object.role_ref.name,
        "backup-admin"
    );
    assert_eq!(
        plan.role_bindings[0].object.role_ref.name,
        "backup-ns-admin"
    );
    assert_eq!(
        plan.role_bindings[0].object.metadata.namespace.as_deref(),
        Some("k10-system")
    );
}

#[test]
fn spec_prefix_overrides_default_and_empty_prefix_is_allowed() {
    let spec = AzureGroupBindingSpec {
        group_prefix: Some(String::new()),
        ..seed()
    };
    assert_eq!(
        plan(&agb("x", spec), &settings(), None).unwrap().group,
        GUID
    );
    let spec = AzureGroupBindingSpec {
        group_prefix: Some("oidc:".into()),
        ..seed()
    };
    assert_eq!(
        plan(&agb("x", spec), &settings(), None).unwrap().group,
        format!("oidc:{GUID}")
    );
}

#[test]
fn labels_and_controller_owner_reference() {
    let agb = agb("k10-admins", seed());
    let plan = plan(&agb, &settings(), None).unwrap();
    let meta = &plan.role_bindings[0].object.metadata;
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "groupbinder");
    assert_eq!(labels["groupbinder.dev/azuregroupbinding"], "k10-admins");
    let [owner] = meta.owner_references.as_deref().unwrap() else {
        panic!()
    };
    assert_eq!(owner.api_version, "groupbinder.dev/v1alpha1");
    assert_eq!(owner.kind, "AzureGroupBinding");
    assert_eq!(owner.name, "k10-admins");
    assert_eq!(Some(&owner.uid), agb.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
}

#[test]
fn without_uid_plans_the_same_bindings_without_owner() {
    let mut offline = agb("k10-admins", seed());
    offline.metadata.uid = None;
    let plan = plan(&offline, &settings(), None).unwrap();
    assert!(
        plan.cluster_role_bindings[0]
            .object
            .metadata
            .owner_references
            .is_none()
    );
    assert_eq!(plan.keys().len(), 2);
}

#[test]
fn explicit_roles_replace_the_profile() {
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec!["k10-config-view".into()]),
        roles: Some(vec![NamespacedRole::in_namespace(
            "k10-basic",
            "app",
            RoleKind::ClusterRole,
        )]),
        ..seed()
    };
    let plan = plan(&agb("viewers", spec), &settings(), None).unwrap();
    assert_eq!(plan.cluster_role_bindings.len(), 1);
    assert_eq!(
        plan.cluster_role_bindings[0].object.role_ref.name,
        "k10-config-view"
    );
    assert_eq!(plan.role_bindings[0].object.role_ref.kind, "ClusterRole");
    assert_eq!(plan.role_bindings[0].role.kind, RoleKind::ClusterRole);
    assert_eq!(plan.role_bindings[0].key.kind(), "RoleBinding");
    assert_eq!(
        plan.role_bindings[0].grant(),
        "ClusterRole k10-basic in app"
    );
    assert_eq!(
        plan.cluster_role_bindings[0].grant(),
        "ClusterRole k10-config-view"
    );
    assert_eq!(
        plan.role_bindings[0].object.metadata.namespace.as_deref(),
        Some("app")
    );
}

#[test]
fn only_cluster_roles_means_no_role_bindings() {
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec!["k10-basic".into()]),
        ..seed()
    };
    let plan = plan(&agb("x", spec), &settings(), None).unwrap();
    assert_eq!(plan.cluster_role_bindings.len(), 1);
    assert!(plan.role_bindings.is_empty());
}

#[test]
fn roles_outside_the_allowlist_get_nothing_and_the_others_are_planned() {
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec!["k10-admin".into(), "cluster-admin".into()]),
        roles: Some(vec![NamespacedRole::in_namespace(
            "admin",
            "default",
            RoleKind::ClusterRole,
        )]),
        ..seed()
    };
    let plan = plan(&agb("x", spec), &settings(), None).unwrap();
    let refused: Vec<String> = plan.refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        refused,
        ["ClusterRole cluster-admin", "ClusterRole admin in default"]
    );
    let names: Vec<&str> = plan
        .cluster_role_bindings
        .iter()
        .map(|b| b.object.role_ref.name.as_str())
        .collect();
    assert_eq!(names, ["k10-admin"]);
    assert!(plan.role_bindings.is_empty());
    let message = refusal_message(&plan.refused, &settings().allowed);
    assert!(
        message.contains("ClusterRole cluster-admin, ClusterRole admin in default are not in the operator's allowlist"),
        "{message}"
    );
    assert!(
        message.contains(
            "k10-admin, k10-basic, k10-config-view, k10-mc-admin, kasten-io/k10-ns-admin"
        ),
        "{message}"
    );
    assert!(message.contains("--allowed-roles"), "{message}");
}

#[test]
fn a_role_is_allowed_in_its_own_namespace_only() {
    // Anyone who may create Roles in team-a can make one called k10-ns-admin there.
    for (name, kind) in [
        ("k10-ns-admin", RoleKind::Role),
        ("k10-admin", RoleKind::Role),
    ] {
        let spec = AzureGroupBindingSpec {
            roles: Some(vec![
                NamespacedRole::in_namespace(name, "team-a", kind),
                NamespacedRole::in_namespace("k10-ns-admin", "kube-system", RoleKind::Role),
            ]),
            ..seed()
        };
        let plan = plan(&agb("x", spec), &settings(), None).unwrap();
        assert!(plan.role_bindings.is_empty(), "{plan:?}");
        assert_eq!(plan.refused.len(), 2);
    }
}

#[test]
fn custom_allowlist_is_honoured() {
    let mut settings = settings();
    settings.allowed = Allowlist::parse(["view"]).unwrap();
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec!["view".into()]),
        ..seed()
    };
    let planned = plan(&agb("x", spec), &settings, None).unwrap();
    assert!(planned.refused.is_empty());
    assert_eq!(planned.keys().len(), 1);
    // The default profile itself is refused when the allowlist does not hold it.
    let profile = plan(&agb("x", seed()), &settings, None).unwrap();
    assert!(profile.keys().is_empty());
    assert_eq!(profile.refused.len(), 2);
}

#[test]
fn invisible_characters_in_a_prefix_make_no_group() {
    for prefix in ["michael\u{a0}azure_", "oidc:\u{200b}", "tab\t", "nl\n"] {
        let spec = AzureGroupBindingSpec {
            group_prefix: Some(prefix.into()),
            ..seed()
        };
        assert!(
            matches!(
                plan(&agb("x", spec), &settings(), None),
                Err(PlanError::InvalidGroupPrefix(_))
            ),
            "{prefix:?}"
        );
    }
}

#[test]
fn bindings_carry_the_owner_uid_label() {
    let agb = agb("k10-admins", seed());
    let plan = plan(&agb, &settings(), None).unwrap();
    let labels = plan.cluster_role_bindings[0]
        .object
        .metadata
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(
        labels.get("groupbinder.dev/azuregroupbinding-uid"),
        agb.metadata.uid.as_ref()
    );
}

#[test]
fn malformed_or_upper_case_guids_never_become_subjects() {
    for bad in [
        "A318B1EB-8B78-4715-98AD-FFC8670AC79D",
        "a318b1eb-8b78-4715-98ad-ffc8670ac79d ",
        "{a318b1eb-8b78-4715-98ad-ffc8670ac79d}",
        "a318b1eb8b78471598adffc8670ac79d",
        "k10 admins",
        "",
    ] {
        let spec = AzureGroupBindingSpec {
            group_object_id: bad.into(),
            ..seed()
        };
        assert_eq!(
            plan(&agb("x", spec), &settings(), None),
            Err(PlanError::InvalidGroupObjectId(bad.into())),
            "{bad:?}"
        );
    }
}

#[test]
fn system_prefix_is_refused() {
    let spec = AzureGroupBindingSpec {
        group_prefix: Some("system:masters".into()),
        ..seed()
    };
    assert!(matches!(
        plan(&agb("x", spec), &settings(), None),
        Err(PlanError::InvalidGroupPrefix(_))
    ));
    let settings = Settings::for_k10("k10", "kasten-io", "system:");
    assert!(matches!(
        plan(&agb("x", seed()), &settings, None),
        Err(PlanError::InvalidGroupPrefix(_))
    ));
}

#[test]
fn duplicates_in_the_spec_give_one_binding() {
    let role = NamespacedRole::in_namespace("k10-ns-admin", "kasten-io", RoleKind::Role);
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec!["k10-admin".into(), "k10-admin".into()]),
        roles: Some(vec![role.clone(), role]),
        ..seed()
    };
    let plan = plan(&agb("x", spec), &settings(), None).unwrap();
    assert_eq!(
        (plan.cluster_role_bindings.len(), plan.role_bindings.len()),
        (1, 1)
    );
}

#[test]
fn long_names_get_hash_suffixes_and_stay_distinct() {
    let long = format!("{}.example", "team".repeat(60));
    let a = plan(&agb(&long, seed()), &settings(), None).unwrap();
    let b = plan(&agb(&format!("{long}x"), seed()), &settings(), None).unwrap();
    for key in a.keys() {
        assert!(key.name().len() <= 253, "{key}");
    }
    assert!(a.keys().is_disjoint(&b.keys()));
    let label = &a.cluster_role_bindings[0]
        .object
        .metadata
        .labels
        .as_ref()
        .unwrap()[OWNER_LABEL];
    assert!(label.len() <= 63);
}

#[test]
fn satisfied_ignores_foreign_fields_but_not_ours() {
    let plan = plan(&agb("x", seed()), &settings(), None).unwrap();
    let want = &plan.cluster_role_bindings[0].object;
    let mut have = want.clone();
    have.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "ops".into());
    have.metadata.resource_version = Some("42".into());
    let sat = |h: &ClusterRoleBinding| crate::is_satisfied(want, h);
    assert!(sat(&have));

    let mut edited = have.clone();
    edited.subjects.as_mut().unwrap()[0].name = "someone-else".into();
    assert!(!sat(&edited));

    let mut unlabelled = have.clone();
    unlabelled.metadata.labels = None;
    assert!(!sat(&unlabelled));

    let mut orphaned = have;
    orphaned.metadata.owner_references = None;
    assert!(!sat(&orphaned));
}

#[test]
fn plan_is_deterministic() {
    let spec = AzureGroupBindingSpec {
        cluster_roles: Some(vec![
            "k10-basic".into(),
            "k10-admin".into(),
            "k10-config-view".into(),
        ]),
        ..seed()
    };
    let one = plan(&agb("x", spec.clone()), &settings(), None).unwrap();
    let two = plan(&agb("x", spec), &settings(), None).unwrap();
    assert_eq!(one, two);
    let names: Vec<_> = one
        .cluster_role_bindings
        .iter()
        .map(|b| b.object.role_ref.name.clone())
        .collect();
    assert_eq!(names, ["k10-admin", "k10-basic", "k10-config-view"]);
}

#[test]
fn a_role_binding_without_a_namespace_has_no_key() {
    // Never guessed (it used to become "default"): such an object did not come from the API
    // server, and nothing is written or deleted for it.
    let meta = ObjectMeta {
        name: Some("x:k10-basic".into()),
        ..ObjectMeta::default()
    };
    assert_eq!(BindingKey::of_role_binding(&meta), None);
    assert_eq!(
        BindingKey::of_cluster_role_binding(&meta).map(|k| k.to_string()),
        Some("ClusterRoleBinding x:k10-basic".into())
    );
}

fn labelled(pairs: &[(&str, &str)]) -> Vec<(String, crate::selector::Labels)> {
    pairs
        .iter()
        .map(|(name, team)| {
            (
                (*name).to_owned(),
                [("team".to_owned(), (*team).to_owned())].into(),
            )
        })
        .collect()
}

fn selecting(name: &str, team: &str, kind: RoleKind) -> NamespacedRole {
    NamespacedRole {
        name: name.into(),
        namespace: None,
        namespace_selector: Some(crate::v1alpha1::NamespaceSelector {
            match_labels: Some([("team".to_owned(), team.to_owned())].into()),
            match_expressions: None,
        }),
        kind,
    }
}

#[test]
fn a_selector_binds_in_every_namespace_it_selects_and_only_there() {
    let namespaces = labelled(&[
        ("shop-prod", "shop"),
        ("shop-dev", "shop"),
        ("crm", "crm"),
        // Never selected: kube-* and, for basic, K10's own namespace.
        ("kube-shop", "shop"),
        ("kasten-io", "shop"),
    ]);
    let spec = AzureGroupBindingSpec {
        roles: Some(vec![
            selecting("k10-basic", "shop", RoleKind::ClusterRole),
            // Explicit and selected: one binding.
            NamespacedRole::in_namespace("k10-basic", "shop-dev", RoleKind::ClusterRole),
        ]),
        ..seed()
    };
    let plan = plan(&agb("shop", spec), &settings(), Some(&namespaces)).unwrap();
    let grants: Vec<String> = plan.role_bindings.iter().map(Planned::grant).collect();
    assert_eq!(
        grants,
        [
            "ClusterRole k10-basic in shop-dev",
            "ClusterRole k10-basic in shop-prod"
        ]
    );
    assert_eq!(
        plan.selected.iter().collect::<Vec<_>>(),
        ["shop-dev", "shop-prod"]
    );
    assert!(plan.refused.is_empty());
}

#[test]
fn a_selected_role_is_still_held_to_the_allowlist() {
    let namespaces = labelled(&[("shop", "shop"), ("kasten-io", "shop")]);
    let spec = AzureGroupBindingSpec {
        roles: Some(vec![
            // A Role is allowed only as namespace/name: kasten-io/k10-ns-admin, not shop's.
            selecting("k10-ns-admin", "shop", RoleKind::Role),
            selecting("admin", "shop", RoleKind::ClusterRole),
        ]),
        ..seed()
    };
    let plan = plan(&agb("x", spec), &settings(), Some(&namespaces)).unwrap();
    let grants: Vec<String> = plan.role_bindings.iter().map(Planned::grant).collect();
    assert_eq!(grants, ["Role k10-ns-admin in kasten-io"]);
    let refused: Vec<String> = plan.refused.iter().map(ToString::to_string).collect();
    assert_eq!(
        refused,
        [
            "Role shop/k10-ns-admin",
            "ClusterRole admin in kasten-io",
            "ClusterRole admin in shop"
        ]
    );
}

#[test]
fn a_selector_without_the_namespaces_cannot_be_planned() {
    let spec = AzureGroupBindingSpec {
        roles: Some(vec![selecting("k10-basic", "shop", RoleKind::ClusterRole)]),
        ..seed()
    };
    assert_eq!(
        plan(&agb("x", spec.clone()), &settings(), None),
        Err(PlanError::NamespacesUnknown)
    );
    // An empty selector (admission refuses it) selects nothing rather than everything.
    let mut empty = spec;
    empty.roles.as_mut().unwrap()[0].namespace_selector = Some(Default::default());
    let everything = labelled(&[("shop", "shop"), ("crm", "crm")]);
    let plan = plan(&agb("x", empty), &settings(), Some(&everything)).unwrap();
    assert!(plan.role_bindings.is_empty(), "{plan:?}");
}
