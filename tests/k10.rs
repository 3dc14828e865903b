//! K10 as it really is: the seed scenario and its access checks against the RBAC objects of each
//! K10 chart version (6.0.3, 7.5.10, 8.0.15, 9.0.7), decided by the real RBAC authorizer.

use std::time::Duration;

use groupbinder_api::{AzureGroupBindingSpec, Settings};
use groupbinder_e2e::k10::{K10, Version};
use groupbinder_e2e::*;
use kube::api::DeleteParams;

/// What a member of the group may do, and may not, on `k10` (the answers differ by version:
/// that is the point).
async fn check_access(client: &kube::Client, k10: &K10, group: &str) -> anyhow::Result<()> {
    let member = ["system:authenticated", group];
    let alice = Who::new(client, "alice@example.com", &member);
    let v = k10.version;
    let in_k10 = Some(k10.namespace.as_str());
    // <release>-admin, cluster-wide: K10's actions in any application namespace.
    let actions = k10.group("actions");
    alice
        .may("create", &actions, "backupactions", Some("app"))
        .await?;
    alice
        .may("delete", "cr.kanister.io", "blueprints", in_k10)
        .await?;
    // 8.0's admin adds the datamover API, 7.5's the DR API; 6.0's has neither.
    let datamover = k10.group("datamover");
    let datamover = alice.can("create", &datamover, "filerecoverysessions", Some("app"));
    assert_eq!(datamover.await?, v >= Version::V8_0_15, "{v:?}: datamover");
    let dr = alice
        .can("get", &k10.group("dr"), "drpolicies", in_k10)
        .await?;
    assert_eq!(dr, v >= Version::V7_5_10, "{v:?}: dr");
    // <release>-ns-admin in K10's namespace only.
    alice.may("get", "", "secrets", in_k10).await?;
    let services = alice.can("create", "", "services", in_k10).await?;
    assert_eq!(services, v >= Version::V7_5_10, "{v:?}: services");
    // Not <release>-mc-admin (K10's chart gives it to its own admins from 7.5; it holds every
    // Secret): the seed's least privilege, no Secret outside K10's namespace.
    assert!(!alice.can("get", "", "secrets", Some("default")).await?);
    assert!(!alice.can("get", "", "secrets", Some("kube-system")).await?);
    assert!(
        !alice
            .can("create", &k10.group("dist"), "clusters", None)
            .await?
    );
    // Nothing beyond K10's roles.
    assert!(!alice.can("delete", "", "nodes", None).await?);
    let rbac = "rbac.authorization.k8s.io";
    assert!(
        !alice
            .can("create", rbac, "clusterrolebindings", None)
            .await?
    );
    Ok(())
}

/// The keys K10's chart of `version` writes in its OIDC Secret (besides the client's): 9.0 adds
/// `pkce`, `sessionDuration` and `refreshTokenSupport`, which groupbinder does not read.
fn oidc_keys(version: Version) -> Vec<(&'static str, &'static str)> {
    let mut keys = vec![("groupClaim", "groups"), ("groupPrefix", SEED_PREFIX)];
    if version >= Version::V9_0_7 {
        keys.extend([
            ("pkce", "true"),
            ("sessionDuration", "1h0m0s"),
            ("refreshTokenSupport", "false"),
        ]);
    }
    keys
}

#[tokio::test]
async fn the_seed_scenario_holds_on_each_k10_version() -> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    for (i, version) in (0u32..).zip(Version::ALL) {
        let k10 = K10::new(version, &format!("k10v{i}"), &format!("kasten-v{i}"));
        install(&client, &k10).await?;
        // What a real K10 of that version has for this check: its OIDC Secret, auth-svc, k10-config.
        install_k10_oidc_of(
            &client,
            (&k10.namespace, version.as_str()),
            "k10-oidc-auth",
            &oidc_keys(version),
        )
        .await?;
        let settings = Settings::for_k10(&k10.release, &k10.namespace, SEED_PREFIX);
        let operator = Operator::start(&client, config(settings));
        let name = format!("seed-v{i}");
        let spec = AzureGroupBindingSpec {
            group_object_id: guid(2000 + i),
            ..seed_spec()
        };
        let group = format!("{SEED_PREFIX}{}", spec.group_object_id);
        apply(&client, &agb(&name, spec)).await?;
        let ready = wait_for_reason(&client, &name, "True", "Reconciled").await?;
        let presents = ready
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == "K10Presents")
            .map(|c| (c.status.clone(), c.reason.clone()));
        assert_eq!(
            presents,
            Some(("True".to_owned(), "Presented".to_owned())),
            "{}",
            version.as_str()
        );
        let info = format!(
            r#"groupbinder_k10_info{{version="{}",api_domain="kio.kasten.io"}} 1"#,
            version.as_str()
        );
        eventually(
            "the K10 version metric",
            Duration::from_secs(10),
            || async { Ok(operator.metrics.encode().contains(&info).then_some(())) },
        )
        .await?;
        let bound = bound_roles(&ready);
        let r = &k10.release;
        assert_eq!(
            bound,
            [format!("{r}-admin"), format!("{r}-ns-admin")],
            "{}",
            version.as_str()
        );
        check_access(&client, &k10, &group).await?;
        agbs(&client)
            .delete(&name, &DeleteParams::default())
            .await?;
        let alice = [group.as_str()];
        Who::new(&client, "alice@example.com", &alice)
            .may_not(
                "create",
                &k10.group("actions"),
                "backupactions",
                Some("app"),
            )
            .await?;
        operator.stop().await?;
    }
    Ok(())
}

/// `<release>-mc-admin` is bound only where a spec names it, and its object's status says that it
/// grants every Secret in the cluster; the member then really may read them (SAR).
#[tokio::test]
async fn the_multi_cluster_role_is_bound_only_when_named_and_says_it_grants_every_secret()
-> anyhow::Result<()> {
    let (_, client) = setup().await?;
    let _serial = exclusive().await;
    let k10 = K10::new(Version::NEWEST, "mck10", "mc-kasten");
    install(&client, &k10).await?;
    let settings = Settings::for_k10(&k10.release, &k10.namespace, SEED_PREFIX);
    let operator = Operator::start(&client, config(settings));
    let spec = AzureGroupBindingSpec {
        group_object_id: guid(2100),
        cluster_roles: Some(vec!["mck10-admin".into(), "mck10-mc-admin".into()]),
        ..seed_spec()
    };
    let group = format!("{SEED_PREFIX}{}", spec.group_object_id);
    apply(&client, &agb("mc-admins", spec)).await?;
    let ready = wait_for_reason(&client, "mc-admins", "True", "Reconciled").await?;
    let message = ready_message(&ready);
    assert!(
        message
            .contains("ClusterRole mck10-mc-admin grants every verb on Secrets in every namespace"),
        "{message}"
    );
    let alice = [group.as_str()];
    Who::new(&client, "alice@example.com", &alice)
        .may("get", "", "secrets", Some("default"))
        .await?;
    agbs(&client)
        .delete("mc-admins", &DeleteParams::default())
        .await?;
    operator.stop().await
}

fn ready_message(agb: &groupbinder_api::AzureGroupBinding) -> String {
    ready(agb).map(|c| c.message.clone()).unwrap_or_default()
}
