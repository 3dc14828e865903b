//! The Helm chart on the real control plane: lint and template, install/upgrade/uninstall, least
//! privilege of the chart's ServiceAccount (running the real binary as that identity), examples.

use groupbinder_e2e::{
    OperatorProcess, SEED_GUID, SEED_PREFIX, Who, apply_crd, chart_dir, install_k10, kubectl_apply,
    repo, stand_in_crd, succeeded, wait_for_reason,
};
use groupbinder_testenv::ControlPlane;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

fn kinds(manifests: &str) -> Vec<String> {
    let mut kinds: Vec<String> = manifests
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_owned)
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn lint_template_and_values_schema() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    succeeded(
        cp.helm()
            .args(["lint", "--strict", &chart_dir()])
            .output()?,
        "helm lint",
    )?;
    let custom = [
        "--set",
        "replicaCount=2",
        "--set",
        "k10.release=backup",
        "--set",
        "k10.groupPrefix=oidc:",
        "--set",
        "allowedRoles={backup-admin,view}",
        "--set",
        "podDisruptionBudget.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "metrics.grafanaDashboard.enabled=true",
        "--set",
        "log.format=text",
        "--set",
        "metrics.networkPolicy.enabled=true",
        "--set-json",
        r#"metrics.networkPolicy.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
    ];
    succeeded(
        cp.helm()
            .args(["lint", "--strict", &chart_dir()])
            .args(custom)
            .output()?,
        "helm lint (custom values)",
    )?;

    let chart_dir_string = chart_dir();
    let defaults = succeeded(
        cp.helm()
            .args(["template", "gb", &chart_dir(), "-n", "gb-system"])
            .output()?,
        "helm template",
    )?;
    assert_eq!(
        kinds(&defaults),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "Role",
            "Role",
            "Role", // K10's live settings, by name
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            // The operator's own writes, and everyone else's changes to ownership.
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    assert!(
        defaults.contains(
            "value: \"k10-admin,k10-basic,k10-config-view,k10-mc-admin,kasten-io/k10-ns-admin\""
        ),
        "{defaults}"
    );
    // Least privilege, rule by rule: no wildcard, no secrets but K10's OIDC Secret by name (in
    // K10's namespace, read-only), no escalate, `bind` only by name.
    let documents: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&defaults)?;
    let rules: Vec<(&serde_json::Value, &serde_json::Value)> = documents
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("ClusterRole" | "Role")))
        .flat_map(|d| {
            d["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (d, r))
        })
        .collect();
    assert!(rules.len() >= 8, "{rules:?}");
    let strings = |rule: &serde_json::Value, key: &str| -> Vec<String> {
        rule[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    for (document, rule) in &rules {
        let (verbs, resources) = (strings(rule, "verbs"), strings(rule, "resources"));
        assert!(
            !verbs
                .iter()
                .chain(&resources)
                .chain(&strings(rule, "apiGroups"))
                .any(|s| s.contains('*')),
            "{rule}"
        );
        if resources.iter().any(|r| r == "secrets") {
            assert_eq!(document["kind"], "Role", "{rule}");
            assert_eq!(document["metadata"]["namespace"], "kasten-io", "{rule}");
            assert_eq!(strings(rule, "resourceNames"), ["k10-oidc-auth"], "{rule}");
            assert_eq!(strings(rule, "verbs"), ["get", "list", "watch"], "{rule}");
        }
        assert!(
            !verbs.iter().any(|v| v == "escalate" || v == "impersonate"),
            "{rule}"
        );
        if verbs.iter().any(|v| v == "bind") {
            // ClusterRoles by name; Roles by name in a Role of their own namespace only.
            let expected: &[&str] = match resources.as_slice() {
                [r] if r == "clusterroles" => {
                    &["k10-admin", "k10-basic", "k10-config-view", "k10-mc-admin"]
                }
                [r] if r == "roles" => &["k10-ns-admin"],
                _ => panic!("bind on {resources:?}"),
            };
            assert_eq!(strings(rule, "resourceNames"), expected, "{rule}");
        }
    }
    let bind_roles: Vec<&serde_json::Value> = documents
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "gb-groupbinder-bind")
        .collect();
    assert_eq!(bind_roles.len(), 1);
    assert_eq!(bind_roles[0]["metadata"]["namespace"], "kasten-io");
    // Events in default only, the Lease by name.
    let events = documents
        .iter()
        .find(|d| d["metadata"]["name"] == "gb-groupbinder-events" && d["kind"] == "Role")
        .ok_or_else(|| anyhow::anyhow!("no events Role"))?;
    assert_eq!(events["metadata"]["namespace"], "default");
    assert!(
        defaults.contains("readOnlyRootFilesystem: true")
            && defaults.contains("type: RuntimeDefault")
    );

    let custom = succeeded(
        cp.helm()
            .args(["template", "gb", &chart_dir(), "-n", "gb-system"])
            .args(custom)
            .output()?,
        "helm template (custom)",
    )?;
    assert!(
        custom.contains("kind: PodDisruptionBudget")
            && custom.contains("kind: ServiceMonitor")
            && custom.contains("kind: PrometheusRule")
    );
    assert!(
        !defaults.contains("kind: PrometheusRule"),
        "alerts are opt-in"
    );
    assert!(
        custom.contains("grafana_dashboard: \"1\"") && !defaults.contains("grafana_dashboard"),
        "the dashboard is opt-in"
    );
    assert!(
        custom.contains("kind: NetworkPolicy") && custom.contains("name: monitoring"),
        "the metrics port's NetworkPolicy admits the listed peers"
    );
    assert!(!defaults.contains("kind: NetworkPolicy"), "off by default");
    assert!(custom.contains("resourceNames: [\"backup-admin\",\"view\"]"));
    assert!(
        !custom.contains("name: gb-groupbinder-bind\n"),
        "no Role allowed: no bind Role"
    );
    assert!(
        custom.contains("name: GROUPBINDER_LEADER_ELECTION\n              value: \"true\""),
        "2 replicas elect a leader"
    );

    // Entra ID, off by default; with workload identity, the label and annotation AKS's webhook
    // reads; with a client secret, a file only the operator's group may read.
    assert!(
        !defaults.contains("ENTRA"),
        "Entra ID is asked only when configured"
    );
    let template = |sets: &[&str]| -> anyhow::Result<String> {
        let mut args = vec!["template", "gb", &chart_dir_string, "-n", "gb-system"];
        for set in sets {
            args.extend(["--set", set]);
        }
        succeeded(cp.helm().args(&args).output()?, "helm template (entra)")
    };
    let tenant = "entra.tenantId=3f1c0d2e-0000-4000-8000-000000000001";
    let wi = template(&[
        tenant,
        "entra.clientId=5b1b2c3d-0000-4000-8000-0000000000aa",
    ])?;
    assert!(wi.contains("azure.workload.identity/use: \"true\""), "{wi}");
    assert!(
        wi.contains("azure.workload.identity/client-id: 5b1b2c3d-0000-4000-8000-0000000000aa"),
        "{wi}"
    );
    assert!(wi.contains("name: GROUPBINDER_ENTRA_TENANT_ID"), "{wi}");
    assert!(!wi.contains("CLIENT_SECRET_FILE"), "{wi}");
    let secret = template(&[
        tenant,
        "entra.workloadIdentity=false",
        "entra.clientSecret.secretName=gb-entra",
    ])?;
    assert!(!secret.contains("azure.workload.identity"), "{secret}");
    assert!(
        secret.contains("value: /var/run/secrets/groupbinder/entra/client-secret")
            && secret.contains("secretName: gb-entra")
            && secret.contains("defaultMode: 0440")
            && secret.contains("fsGroup: 65532"),
        "{secret}"
    );

    // The values schema refuses wrong types and unknown keys, saying where.
    for (set, expected) in [
        (
            "replicaCount=two",
            "at '/replicaCount': got string, want integer",
        ),
        (
            "k10.groupPrefx=x",
            "additional properties 'groupPrefx' not allowed",
        ),
        ("log.format=xml", "at '/log/format'"),
        ("k10.groupPrefix=system:masters", "at '/k10/groupPrefix'"),
        // The same invisible characters the CRD refuses.
        ("k10.groupPrefix=michael\u{3164}_", "at '/k10/groupPrefix'"),
        // An allowlist of none of K10's roles (a typo) would revoke every grant at once.
        ("allowedRoles={k10-adnim}", "names none of K10's roles"),
        // Entra ID without a credential, or a Graph that is not https.
        (
            "entra.tenantId=contoso.onmicrosoft.com,entra.workloadIdentity=false",
            "entra.tenantId needs a credential",
        ),
        (
            "entra.graphEndpoint=http://graph.example",
            "at '/entra/graphEndpoint'",
        ),
    ] {
        let out = cp
            .helm()
            .args(["template", "gb", &chart_dir(), "--set", set])
            .output()?;
        assert!(!out.status.success(), "{set} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    Ok(())
}

/// The values schema refuses in `k10.groupPrefix` exactly what the CRD refuses in
/// `spec.groupPrefix`: one definition of invisible.
#[test]
fn the_values_schema_uses_the_one_definition_of_invisible() -> anyhow::Result<()> {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        repo().join("charts/groupbinder/values.schema.json"),
    )?)?;
    let prefix = &schema["properties"]["k10"]["properties"]["groupPrefix"];
    assert_eq!(
        prefix["allOf"][1]["not"]["pattern"],
        groupbinder_api::text::INVISIBLE_PATTERN,
        "{prefix}"
    );
    Ok(())
}

#[test]
fn chart_crd_is_the_top_level_crd() -> anyhow::Result<()> {
    let top = std::fs::read_to_string(repo().join("crds/azuregroupbinding.yaml"))?;
    let chart =
        std::fs::read_to_string(repo().join("charts/groupbinder/crds/azuregroupbinding.yaml"))?;
    assert!(
        top == chart,
        "charts/groupbinder/crds differs from crds/: run `make crds`"
    );
    Ok(())
}

#[tokio::test]
async fn install_upgrade_uninstall_keeps_the_crd_and_the_bindings() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    // The chart's Role that may bind K10's ns-admin Role goes in K10's namespace: it must exist.
    groupbinder_e2e::ensure_namespace(&client, "kasten-io").await?;
    succeeded(
        cp.helm()
            .args([
                "install",
                "gb",
                &chart_dir(),
                "-n",
                "gb-system",
                "--create-namespace",
            ])
            .output()?,
        "helm install",
    )?;
    let listed = succeeded(
        cp.kubectl()
            .args(["get", "serviceaccounts,deployments,services,roles,rolebindings,clusterroles,clusterrolebindings", "-A"])
            .args(["-l", "app.kubernetes.io/instance=gb", "-o", "name"])
            .output()?,
        "kubectl get",
    )?;
    let objects: BTreeSet<&str> = listed.lines().collect();
    let expected: BTreeSet<&str> = [
        "serviceaccount/gb-groupbinder",
        "deployment.apps/gb-groupbinder",
        "service/gb-groupbinder-metrics",
        "role.rbac.authorization.k8s.io/gb-groupbinder-leader-election",
        "rolebinding.rbac.authorization.k8s.io/gb-groupbinder-leader-election",
        "role.rbac.authorization.k8s.io/gb-groupbinder-bind",
        "rolebinding.rbac.authorization.k8s.io/gb-groupbinder-bind",
        "role.rbac.authorization.k8s.io/gb-groupbinder-events",
        "rolebinding.rbac.authorization.k8s.io/gb-groupbinder-events",
        "role.rbac.authorization.k8s.io/gb-groupbinder-k10-settings",
        "rolebinding.rbac.authorization.k8s.io/gb-groupbinder-k10-settings",
        "clusterrole.rbac.authorization.k8s.io/gb-groupbinder",
        "clusterrole.rbac.authorization.k8s.io/gb-groupbinder-editor",
        "clusterrole.rbac.authorization.k8s.io/gb-groupbinder-viewer",
        "clusterrolebinding.rbac.authorization.k8s.io/gb-groupbinder",
    ]
    .into();
    assert_eq!(objects, expected);
    succeeded(
        cp.kubectl()
            .args(["get", "crd", "azuregroupbindings.groupbinder.dev"])
            .output()?,
        "CRD installed",
    )?;

    let example = repo()
        .join("examples/k10-admins.yaml")
        .display()
        .to_string();
    kubectl_apply(cp, Path::new(&example))?;

    succeeded(
        cp.helm()
            .args([
                "upgrade",
                "gb",
                &chart_dir(),
                "-n",
                "gb-system",
                "--set",
                "log.level=debug",
            ])
            .output()?,
        "helm upgrade",
    )?;
    let env = succeeded(
        cp.kubectl()
            .args([
                "get",
                "deployment",
                "gb-groupbinder",
                "-n",
                "gb-system",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env}",
            ])
            .output()?,
        "get env",
    )?;
    assert!(
        env.contains(r#"{"name":"GROUPBINDER_LOG_LEVEL","value":"debug"}"#),
        "{env}"
    );

    succeeded(
        cp.helm()
            .args(["uninstall", "gb", "-n", "gb-system", "--wait"])
            .output()?,
        "helm uninstall",
    )?;
    let left = succeeded(
        cp.kubectl()
            .args([
                "get",
                "clusterroles,deployments",
                "-A",
                "-l",
                "app.kubernetes.io/instance=gb",
                "-o",
                "name",
            ])
            .output()?,
        "get",
    )?;
    assert_eq!(left.trim(), "", "uninstall left {left}");
    succeeded(
        cp.kubectl()
            .args(["get", "crd", "azuregroupbindings.groupbinder.dev"])
            .output()?,
        "the CRD survives uninstall",
    )?;
    succeeded(
        cp.kubectl().args(["get", "agb", "k10-admins"]).output()?,
        "the AzureGroupBinding survives uninstall",
    )?;
    drop(client);
    Ok(())
}

/// The real binary as the chart's ServiceAccount of release `release` (in `<release>-system`),
/// with the chart's settings: the process, and a client with that identity.
async fn chart_operator(
    cp: &ControlPlane,
    admin: &kube::Client,
    release: &str,
) -> anyhow::Result<(OperatorProcess, kube::Client)> {
    let (namespace, account) = (
        format!("{release}-system"),
        format!("{release}-groupbinder"),
    );
    // A token for the chart's ServiceAccount, from the TokenRequest API.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .ok_or_else(|| anyhow::anyhow!("no token"))?;
    let kubeconfig = cp.token_kubeconfig(&account, &token)?;
    let sa = groupbinder_testenv::client_from_kubeconfig(&kubeconfig).await?;
    let operator = OperatorProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder")),
        &kubeconfig,
        &[
            ("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX),
            ("GROUPBINDER_LEADER_ELECTION", "true"),
            ("POD_NAMESPACE", namespace.as_str()),
            ("GROUPBINDER_LEASE_NAME", account.as_str()),
        ],
        Stdio::null(),
    )?;
    Ok((operator, sa))
}

#[tokio::test]
async fn the_chart_service_account_reconciles_the_seed_and_can_grant_nothing_else()
-> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    install_k10(&admin, "k10", "kasten-io").await?;
    let _serial = groupbinder_e2e::exclusive().await; // one operator at a time
    succeeded(
        cp.helm()
            .args([
                "install",
                "lp",
                &chart_dir(),
                "-n",
                "lp-system",
                "--create-namespace",
                "--set",
                &format!("k10.groupPrefix={SEED_PREFIX}"),
            ])
            .output()?,
        "helm install",
    )?;

    let (operator, sa) = chart_operator(cp, &admin, "lp").await?;
    let result = async {
        // The seed's three-line spec: the prefix comes from the chart's k10.groupPrefix.
        let spec = groupbinder_api::AzureGroupBindingSpec {
            group_object_id: SEED_GUID.into(),
            ..Default::default()
        };
        groupbinder_e2e::apply(
            &admin,
            &groupbinder_api::AzureGroupBinding::new("lp-admins", spec),
        )
        .await?;
        let ready = wait_for_reason(&admin, "lp-admins", "True", "Reconciled").await?;
        // K10 keeps its OIDC settings in a Secret the chart was not told about
        // (auth.oidcAuth.secretName without k10.oidcSecretName): the chart's token may not
        // read it, the object says so (Unknown), and Ready is decided as before.
        groupbinder_e2e::install_k10_oidc(
            &admin,
            "kasten-io",
            "lp-custom-oidc",
            &[("groupClaim", "groups"), ("groupPrefix", SEED_PREFIX)],
        )
        .await?;
        groupbinder_e2e::eventually(
            "lp-admins to say it may not read K10's Secret",
            std::time::Duration::from_secs(30),
            || async {
                let agb = Api::<groupbinder_api::AzureGroupBinding>::all(admin.clone())
                    .get("lp-admins")
                    .await?;
                let said = agb.status.iter().flat_map(|s| &s.conditions).any(|c| {
                    c.type_ == "K10Presents"
                        && c.status == "Unknown"
                        && c.reason == "K10ConfigUnreadable"
                        && c.message.contains("may not read Secret kasten-io/lp-custom-oidc")
                });
                Ok(said.then_some(()))
            },
        )
        .await?;
        wait_for_reason(&admin, "lp-admins", "True", "Reconciled").await?;
        // K10 newer than the fixtures: the chart's token may tell it in K10's namespace.
        let config: k8s_openapi::api::core::v1::ConfigMap =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "k10-config", "namespace": "kasten-io"},
                "data": {"version": "99.1.0", "apiDomain": "kio.kasten.io"},
            }))?;
        groupbinder_e2e::apply(&admin, &config).await?;
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(admin.clone(), "kasten-io");
        groupbinder_e2e::eventually(
            "a warning event about K10's version",
            std::time::Duration::from_secs(30),
            || async {
                let all = events.list(&Default::default()).await?;
                let warned = all.items.iter().any(|e| {
                    e.reason.as_deref() == Some(groupbinder_api::k10::NEWER_THAN_TESTED)
                        && e.note.as_deref().is_some_and(|n| n.starts_with("K10 99.1.0 is newer"))
                });
                Ok(warned.then_some(()))
            },
        )
        .await?;
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), "kasten-io")
            .delete("auth-svc", &Default::default())
            .await?;
        let ready_uid = kube::ResourceExt::uid(&ready).unwrap_or_default();
        assert_eq!(
            ready.status.and_then(|s| s.group),
            Some(format!("{SEED_PREFIX}{SEED_GUID}"))
        );

        // What that identity may not do, asked of the real authorizer...
        let user = "system:serviceaccount:lp-system:lp-groupbinder";
        let groups = [
            "system:serviceaccounts",
            "system:serviceaccounts:lp-system",
            "system:authenticated",
        ];
        for (verb, group, resource, namespace) in [
            ("get", "", "secrets", Some("kasten-io")),
            ("list", "", "secrets", None),
            ("update", "groupbinder.dev", "azuregroupbindings", None),
            ("patch", "groupbinder.dev", "azuregroupbindings", None),
            (
                "escalate",
                "rbac.authorization.k8s.io",
                "clusterroles",
                None,
            ),
        ] {
            assert!(
                !Who::new(&admin, user, &groups)
                    .can(verb, group, resource, namespace)
                    .await?,
                "the operator may {verb} {group}/{resource} in {namespace:?}"
            );
        }

        // ... and by real requests made with its token.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(sa.clone(), "kasten-io");
        assert_forbidden(secrets.list(&Default::default()).await, "reading secrets")?;
        // K10's OIDC Secret by name, and no other: the API server decides (404 is not 403).
        match secrets.get("k10-oidc-auth").await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            other => anyhow::bail!("reading K10's OIDC Secret: {other:?}"),
        }
        assert_forbidden(secrets.get("k10-other-secret").await, "reading another Secret")?;
        assert_forbidden(
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(sa.clone(), "default")
                .get("k10-oidc-auth")
                .await,
            "reading a Secret of that name elsewhere",
        )?;
        let agbs: Api<groupbinder_api::AzureGroupBinding> = Api::all(sa.clone());
        let patch =
            serde_json::json!({"spec": {"groupObjectId": "00000000-0000-4000-8000-000000000000"}});
        assert_forbidden(
            agbs.patch("lp-admins", &PatchParams::default(), &Patch::Merge(&patch))
                .await,
            "changing a spec",
        )?;

        // Binding outside the allowlist: the API server's escalation check refuses it, whatever the
        // operator's own check says. A dry run goes through authorization and admission.
        let dry = PostParams {
            dry_run: true,
            field_manager: None,
        };
        let subject = Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "x".into(),
            namespace: None,
        }]);
        let crb = |role: &str| ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("lp-test-{role}")),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: subject.clone(),
        };
        let crbs: Api<ClusterRoleBinding> = Api::all(sa.clone());
        // admin, edit and view are aggregated roles: wait until they have their rules, as they
        // always do in a real cluster (an empty role is vacuously held by everyone).
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
        groupbinder_e2e::eventually(
            "admin to be aggregated",
            std::time::Duration::from_secs(30),
            || async {
                Ok(roles
                    .get("admin")
                    .await?
                    .rules
                    .is_some_and(|r| !r.is_empty())
                    .then_some(()))
            },
        )
        .await?;
        for role in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:controller:clusterrole-aggregation-controller",
        ] {
            assert_forbidden(
                crbs.create(&dry, &crb(role)).await,
                &format!("binding {role}"),
            )?;
        }
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some("lp-test-admin".into()),
                namespace: Some("kasten-io".into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "admin".into(),
            },
            subjects: subject.clone(),
        };
        let rbs: Api<RoleBinding> = Api::namespaced(sa.clone(), "kasten-io");
        assert_forbidden(rbs.create(&dry, &rb).await, "a RoleBinding to admin")?;
        // The allowlisted roles, by contrast, can be bound (as groupbinder binds them).
        let owned_by = |api_version: &str, kind: &str| {
            vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: "lp-admins".into(),
                uid: ready_uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]
        };
        let ours = |mut meta: ObjectMeta| {
            meta.labels = Some(
                [(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "groupbinder".to_owned(),
                )]
                .into(),
            );
            meta.owner_references = Some(owned_by("groupbinder.dev/v1alpha1", "AzureGroupBinding"));
            meta
        };
        let mut allowed = crb("k10-config-view");
        allowed.metadata = ours(allowed.metadata);
        crbs.create(&dry, &allowed).await?;

        // Roles are allowed as `namespace/name` only: a Role is bindable in its own namespace only. The API server's own
        // escalation check refuses the Role of the same name in another namespace.
        groupbinder_e2e::ensure_namespace(&admin, "lp-team-a").await?;
        // A namespace admin of lp-team-a made a Role of that name there.
        let lookalike = groupbinder_e2e::k10::ns_admin("k10", "lp-team-a");
        groupbinder_e2e::apply(&admin, &lookalike).await?;
        let ns_admin_in = |namespace: &str| RoleBinding {
            metadata: ours(ObjectMeta {
                name: Some("lp-test-ns-admin".into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            }),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: "k10-ns-admin".into(),
            },
            subjects: subject.clone(),
        };
        let team_rbs: Api<RoleBinding> = Api::namespaced(sa.clone(), "lp-team-a");
        match team_rbs.create(&dry, &ns_admin_in("lp-team-a")).await {
            Err(kube::Error::Api(status))
                if status.code == 403
                    && status.message.contains("attempting to grant RBAC permissions") => {}
            other => anyhow::bail!("binding k10-ns-admin in lp-team-a: {other:?}"),
        }
        rbs.create(&dry, &ns_admin_in("kasten-io")).await?;

        // A leaked operator token cannot hurt other bindings: what RBAC lets a leaked token do to any binding, the admission
        // policy refuses for every binding that is not groupbinder's own.
        let delete_dry = DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        };
        let admin_crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
        admin_crbs.delete("system:kube-controller-manager", &delete_dry).await?; // RBAC allows the admin
        // The API server compiles a new policy a moment after it is created.
        groupbinder_e2e::eventually(
            "the admission policy to refuse deleting system:kube-controller-manager",
            std::time::Duration::from_secs(15),
            || async {
                Ok(assert_forbidden(
                    crbs.delete("system:kube-controller-manager", &delete_dry).await,
                    "deleting system:kube-controller-manager",
                )
                .ok())
            },
        )
        .await?;
        let patch_dry = PatchParams {
            dry_run: true,
            ..PatchParams::default()
        };
        let pin = serde_json::json!({"metadata": {"finalizers": ["example.com/pin"]}});
        assert_forbidden(
            crbs.patch("system:kube-controller-manager", &patch_dry, &Patch::Merge(&pin))
                .await,
            "pinning a foreign binding with a finalizer",
        )?;
        let grab = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "groupbinder"}}});
        assert_forbidden(
            crbs.patch("system:kube-controller-manager", &patch_dry, &Patch::Merge(&grab))
                .await,
            "labelling a foreign binding as groupbinder's",
        )?;
        let mut masters = allowed.clone();
        masters.subjects = Some(vec![Subject {
            kind: "Group".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "system:masters".into(),
            namespace: None,
        }]);
        assert_forbidden(crbs.create(&dry, &masters).await, "a binding for system:masters")?;
        let mut two = allowed.clone();
        two.subjects = subject.clone().map(|mut s| {
            s.push(Subject {
                name: "y".into(),
                ..s[0].clone()
            });
            s
        });
        assert_forbidden(crbs.create(&dry, &two).await, "a binding for two groups")?;

        // A leaked operator token cannot make a grant that nothing revokes: a labelled binding of
        // an allowed role owned by something else (the garbage collector would keep it).
        let mut kept = allowed.clone();
        kept.metadata.owner_references = Some(owned_by("v1", "Namespace"));
        assert_forbidden(crbs.create(&dry, &kept).await, "a binding owned by a Namespace")?;
        let mut unowned = allowed.clone();
        unowned.metadata.owner_references = None;
        assert_forbidden(crbs.create(&dry, &unowned).await, "a binding with no owner")?;

        // Everyone else: a user who may patch bindings cannot move groupbinder's ownership.
        let patcher_role = k8s_openapi::api::rbac::v1::ClusterRole {
            metadata: ObjectMeta {
                name: Some("lp-binding-patcher".into()),
                ..ObjectMeta::default()
            },
            rules: Some(vec![k8s_openapi::api::rbac::v1::PolicyRule {
                api_groups: Some(vec!["rbac.authorization.k8s.io".into()]),
                resources: Some(vec!["clusterrolebindings".into(), "rolebindings".into()]),
                verbs: vec!["get".into(), "list".into(), "patch".into()],
                ..Default::default()
            }]),
            ..Default::default()
        };
        groupbinder_e2e::apply(&admin, &patcher_role).await?;
        let mut patcher_binding = crb("lp-binding-patcher");
        patcher_binding.metadata.name = Some("lp-binding-patcher".into());
        patcher_binding.subjects = Some(vec![Subject {
            kind: "User".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            name: "lp-patcher".into(),
            namespace: None,
        }]);
        groupbinder_e2e::apply(&admin, &patcher_binding).await?;
        let patcher = cp.user("lp-patcher", &[])?.client().await?;
        let patcher_crbs: Api<ClusterRoleBinding> = Api::all(patcher.clone());
        let re_parent = serde_json::json!({"metadata": {"ownerReferences": owned_by("v1", "Namespace")}});
        groupbinder_e2e::eventually(
            "the ownership policy to refuse re-parenting",
            std::time::Duration::from_secs(15),
            || async {
                Ok(assert_forbidden(
                    patcher_crbs
                        .patch("lp-admins:k10-admin", &patch_dry, &Patch::Merge(&re_parent))
                        .await,
                    "re-parenting groupbinder's binding",
                )
                .ok())
            },
        )
        .await?;
        let unlabel = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
        assert_forbidden(
            patcher_crbs
                .patch("lp-admins:k10-admin", &patch_dry, &Patch::Merge(&unlabel))
                .await,
            "removing groupbinder's label",
        )?;
        assert_forbidden(
            patcher_crbs
                .patch("lp-binding-patcher", &patch_dry, &Patch::Merge(&grab))
                .await,
            "dressing a binding up as groupbinder's",
        )?;
        // What is not groupbinder's stays the patcher's to change.
        patcher_crbs
            .patch("lp-binding-patcher", &patch_dry, &Patch::Merge(&re_parent))
            .await?;
        admin_crbs.delete("lp-binding-patcher", &DeleteParams::default()).await?;

        // The operator still works under the policy: a deleted binding is put back.
        let admin_rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "kasten-io");
        admin_rbs
            .delete("lp-admins:k10-ns-admin", &DeleteParams::default())
            .await?;
        groupbinder_e2e::eventually(
            "the deleted binding to be put back",
            std::time::Duration::from_secs(15),
            || async { Ok(admin_rbs.get_opt("lp-admins:k10-ns-admin").await?.map(|_| ())) },
        )
        .await?;

        // Leaving groupbinder is refused while the chart's policy stands, even to an admin, and
        // says what to do; nothing changes.
        let refused = unmanage(cp, "lp-admins")?;
        assert_eq!(refused.status.code(), Some(1), "{refused:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("uninstall the chart first"), "{stderr}");
        let still = admin_crbs.get("lp-admins:k10-admin").await?;
        assert!(still.metadata.owner_references.is_some(), "{still:?}");
        anyhow::Ok(())
    }
    .await;
    drop(operator);
    succeeded(
        cp.helm()
            .args(["uninstall", "lp", "-n", "lp-system"])
            .output()?,
        "helm uninstall",
    )?;
    result?;
    leave_groupbinder(cp, &admin).await
}

/// `groupbinder unmanage NAME` as the control plane's admin.
fn unmanage(cp: &ControlPlane, name: &str) -> anyhow::Result<std::process::Output> {
    Ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_groupbinder"))
            .args(["unmanage", name])
            .env("KUBECONFIG", cp.kubeconfig())
            .output()?,
    )
}

/// The README's uninstall, after `helm uninstall`: `groupbinder unmanage` turns `lp-admins`'s
/// bindings into hand-written ones; the object is deleted (as deleting the CRD would), and the
/// group's access, asked of the authorizer before and after, is the same: K10 actions, and K10's
/// Secrets in K10's namespace only.
async fn leave_groupbinder(cp: &ControlPlane, admin: &kube::Client) -> anyhow::Result<()> {
    let group = format!("{SEED_PREFIX}{SEED_GUID}");
    let groups = [group.as_str()];
    let member = Who::new(admin, "member", &groups);
    let access = || async {
        anyhow::Ok([
            member
                .can(
                    "create",
                    "actions.kio.kasten.io",
                    "backupactions",
                    Some("kasten-io"),
                )
                .await?,
            member.can("get", "", "secrets", Some("kasten-io")).await?,
            member.can("get", "", "secrets", Some("default")).await?,
        ])
    };
    let before = access().await?;
    assert_eq!(before, [true, true, false]);
    // The policy goes with the chart a moment after `helm uninstall`.
    let left = groupbinder_e2e::eventually(
        "groupbinder unmanage to succeed once the chart is gone",
        std::time::Duration::from_secs(15),
        || async {
            let out = unmanage(cp, "lp-admins")?;
            Ok(out.status.success().then_some(out))
        },
    )
    .await?;
    let said = String::from_utf8_lossy(&left.stdout);
    assert!(
        said.contains(
            "unmanaged ClusterRoleBinding lp-admins:k10-admin (AzureGroupBinding lp-admins)"
        ),
        "{said}"
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let rbs: Api<RoleBinding> = Api::namespaced(admin.clone(), "kasten-io");
    let (crb, rb) = ("lp-admins:k10-admin", "lp-admins:k10-ns-admin");
    for meta in [crbs.get(crb).await?.metadata, rbs.get(rb).await?.metadata] {
        assert_eq!(meta.owner_references, None, "{meta:?}");
        let labels = meta.labels.unwrap_or_default();
        assert!(
            !labels
                .keys()
                .any(|k| k.starts_with("groupbinder.dev/") || k == "app.kubernetes.io/managed-by"),
            "{labels:?}"
        );
    }
    let agbs: Api<groupbinder_api::AzureGroupBinding> = Api::all(admin.clone());
    agbs.delete("lp-admins", &DeleteParams::default()).await?;
    groupbinder_e2e::eventually(
        "lp-admins to be gone",
        std::time::Duration::from_secs(15),
        || async { Ok(agbs.get_opt("lp-admins").await?.is_none().then_some(())) },
    )
    .await?;
    // Give the garbage collector time to act, had it anything to act on.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(crbs.get_opt(crb).await?.is_some() && rbs.get_opt(rb).await?.is_some());
    assert_eq!(
        access().await?,
        before,
        "the same access after leaving groupbinder"
    );
    crbs.delete(crb, &DeleteParams::default()).await?;
    rbs.delete(rb, &DeleteParams::default()).await?;
    Ok(())
}

fn assert_forbidden<T: std::fmt::Debug>(
    result: Result<T, kube::Error>,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        other => anyhow::bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn every_example_applies_and_the_seed_becomes_ready() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    let admin = cp.client().await?;
    install_k10(&admin, "k10", "kasten-io").await?;
    // Stand-ins for Argo CD's and Flux's APIs, and their namespaces.
    for (group, version, kind, plural) in [
        ("argoproj.io", "v1alpha1", "Application", "applications"),
        (
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            "gitrepositories",
        ),
        (
            "helm.toolkit.fluxcd.io",
            "v2",
            "HelmRelease",
            "helmreleases",
        ),
        (
            "kustomize.toolkit.fluxcd.io",
            "v1",
            "Kustomization",
            "kustomizations",
        ),
    ] {
        apply_crd(&admin, &stand_in_crd(group, version, kind, plural)).await?;
    }
    for ns in ["argocd", "flux-system"] {
        groupbinder_e2e::ensure_namespace(&admin, ns).await?;
    }
    kubectl_apply(cp, &repo().join("crds"))?;

    let mut applied = 0;
    for entry in std::fs::read_dir(repo().join("examples"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.ends_with("-values.yaml") {
            // K10 Helm values, not a manifest: its prefix must be the one the examples bind.
            let values: serde_json::Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
            assert_eq!(values["auth"]["oidcAuth"]["groupClaim"], "groups");
            assert_eq!(values["auth"]["oidcAuth"]["groupPrefix"], SEED_PREFIX);
            continue;
        }
        if name.starts_with("krew-") {
            // The kubectl plugin's krew manifest, for krew's index, not the cluster (checked by
            // `the_krew_manifest_installs_this_binary`).
            continue;
        }
        let out = cp
            .kubectl()
            .args(["apply", "--server-side", "--dry-run=server", "-f"])
            .arg(&path)
            .output()?;
        succeeded(out, &format!("server-side dry run of {name}"))?;
        applied += 1;
    }
    assert!(applied >= 4, "only {applied} examples");

    // And the seed example, applied for real with an operator running, becomes Ready.
    let _serial = groupbinder_e2e::exclusive().await;
    let operator = groupbinder_e2e::Operator::start(
        &admin,
        groupbinder_e2e::config(groupbinder_e2e::seed_settings()),
    );
    groupbinder_e2e::ensure_namespace(&admin, "shop").await?;
    for example in [
        "examples/k10-admins.yaml",
        "examples/k10-basic-in-shop.yaml",
        "examples/k10-basic-by-team-label.yaml",
    ] {
        kubectl_apply(cp, &repo().join(example))?;
    }
    for name in ["k10-admins", "k10-shop-operators", "k10-shop-team"] {
        wait_for_reason(&admin, name, "True", "Reconciled").await?;
    }
    operator.stop().await
}

/// The chart's ownership policy lets the garbage collector orphan groupbinder's bindings where
/// kube-controller-manager runs with per-controller credentials (most clusters), as
/// `system:serviceaccount:kube-system:generic-garbage-collector`: `kubectl delete agb
/// --cascade=orphan` with the operator down completes (the garbage collector removes the
/// ownerReferences, an UPDATE the policy refuses to anyone else), and the operator, back, deletes
/// the orphans. With that identity left out of `admissionPolicy.garbageCollectors`, the same
/// deletion never completes: the value is what makes it work.
#[tokio::test]
async fn the_garbage_collector_orphans_under_the_ownership_policy_with_its_own_credentials()
-> anyhow::Result<()> {
    use groupbinder_api::AzureGroupBinding;
    let cp = ControlPlane::start(groupbinder_testenv::Options {
        per_controller_credentials: true,
        ..Default::default()
    })
    .await?;
    let admin = cp.client().await?;
    install_k10(&admin, "k10", "kasten-io").await?;
    let install = |extra: &[&str]| {
        let mut helm = cp.helm();
        helm.args([
            "upgrade",
            "--install",
            "gc",
            &chart_dir(),
            "-n",
            "gc-system",
        ])
        .args([
            "--create-namespace",
            "--set",
            &format!("k10.groupPrefix={SEED_PREFIX}"),
        ])
        .args(extra);
        succeeded(helm.output()?, "helm upgrade --install")
    };
    install(&[])?;
    let agbs: Api<AzureGroupBinding> = Api::all(admin.clone());
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let object = |name: &str| {
        AzureGroupBinding::new(
            name,
            groupbinder_api::AzureGroupBindingSpec {
                group_object_id: SEED_GUID.into(),
                ..Default::default()
            },
        )
    };
    let orphan_delete = |name: &str| {
        succeeded(
            cp.kubectl()
                .args(["delete", "agb", name, "--cascade=orphan", "--wait=false"])
                .output()?,
            "kubectl delete --cascade=orphan",
        )
    };

    let (operator, _) = chart_operator(&cp, &admin, "gc").await?;
    groupbinder_e2e::apply(&admin, &object("gc-orphaned")).await?;
    wait_for_reason(&admin, "gc-orphaned", "True", "Reconciled").await?;
    drop(operator); // down: only the garbage collector acts on the deletion
    orphan_delete("gc-orphaned")?;
    groupbinder_e2e::eventually(
        "the garbage collector to orphan the bindings and let the object go",
        // The garbage collector learns of a new resource (the CRD, just installed) when it
        // refreshes discovery, every 30 s (kube-controller-manager's garbage collector syncPeriod);
        // until then it does not act on an AzureGroupBinding at all.
        std::time::Duration::from_secs(90),
        || async { Ok(agbs.get_opt("gc-orphaned").await?.is_none().then_some(())) },
    )
    .await?;
    let orphaned = crbs.get("gc-orphaned:k10-admin").await?;
    assert_eq!(orphaned.metadata.owner_references, None, "{orphaned:?}");
    // The operator, back, deletes what no object plans any more.
    let (operator, _) = chart_operator(&cp, &admin, "gc").await?;
    groupbinder_e2e::eventually(
        "the operator to delete the orphans",
        std::time::Duration::from_secs(30),
        || async {
            Ok(crbs
                .get_opt("gc-orphaned:k10-admin")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;

    // Without the garbage collector's own identity in the value, the deletion is stuck.
    drop(operator);
    groupbinder_e2e::apply(&admin, &object("gc-stuck")).await?;
    let (operator, _) = chart_operator(&cp, &admin, "gc").await?;
    wait_for_reason(&admin, "gc-stuck", "True", "Reconciled").await?;
    drop(operator);
    install(&[
        "--set",
        "admissionPolicy.garbageCollectors={system:kube-controller-manager}",
    ])?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await; // the policy's new parameters
    orphan_delete("gc-stuck")?;
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let stuck = agbs.get_opt("gc-stuck").await?;
    assert!(
        stuck.is_some_and(|s| s.metadata.deletion_timestamp.is_some()),
        "the deletion completed though the policy refused the garbage collector"
    );
    assert!(
        crbs.get("gc-stuck:k10-admin")
            .await?
            .metadata
            .owner_references
            .is_some()
    );
    cp.shutdown();
    Ok(())
}

/// The one template `template` of the chart, as `helm template` renders it for release `gb` in
/// `gb-system` with the boolean value `enabled` set.
fn rendered(cp: &ControlPlane, enabled: &str, template: &str) -> anyhow::Result<serde_json::Value> {
    let out = succeeded(
        cp.helm()
            .args(["template", "gb", &chart_dir(), "-n", "gb-system"])
            .args(["--set", &format!("{enabled}=true")])
            .args(["--show-only", &format!("templates/{template}")])
            .output()?,
        &format!("helm template ({template})"),
    )?;
    Ok(serde_saphyr::from_str(&out)?)
}

/// `promtool <args>` in `dir`, which must succeed.
fn promtool(promtool: &Path, dir: &Path, args: [&str; 3]) -> anyhow::Result<()> {
    let out = std::process::Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()?;
    succeeded(out, &format!("promtool {}", args.join(" "))).map(drop)
}

/// The chart's PrometheusRule passes `promtool check rules` and the unit tests in
/// `tests/promtool/alerts.test.yaml`, whose series have the names and labels of a real scrape;
/// the dashboard's queries parse (promtool) and read only metrics of that scrape.
#[tokio::test]
async fn alerts_and_dashboard_hold_to_promtool_and_a_real_scrape() -> anyhow::Result<()> {
    let (cp, client) = groupbinder_e2e::setup().await?;
    let promtool_bin = cp.binaries().promtool()?;
    let rule = rendered(cp, "metrics.prometheusRule.enabled", "prometheusrule.yaml")?;
    assert_eq!(rule["kind"], "PrometheusRule");
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_vec(&rule["spec"])?,
    )?;
    let tests = std::fs::read_to_string(repo().join("tests/promtool/alerts.test.yaml"))?;
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests)?;
    promtool(&promtool_bin, dir.path(), ["check", "rules", "rules.yaml"])?;
    promtool(
        &promtool_bin,
        dir.path(),
        ["test", "rules", "alerts.test.yaml"],
    )?;

    // A real scrape, with a repair, an orphan and K10's settings read, to hold the series to.
    let _serial = groupbinder_e2e::exclusive().await;
    groupbinder_e2e::install_seed_k10_oidc(&client).await?;
    let operator = groupbinder_e2e::Operator::start(
        &client,
        groupbinder_e2e::config(groupbinder_e2e::seed_settings()),
    );
    groupbinder_e2e::seeded(&client, "alerts-seed", 7300).await?;
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    crbs.patch(
        "alerts-seed:k10-admin",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "someone-else"}]})),
    )
    .await?;
    let rbs: Api<RoleBinding> = Api::namespaced(client.clone(), "kasten-io");
    rbs.patch(
        "alerts-seed:k10-ns-admin",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"ownerReferences": null}})),
    )
    .await?;
    let scrape = groupbinder_e2e::eventually(
        "a repair, an orphan and K10's settings in the metrics",
        std::time::Duration::from_secs(20),
        || {
            let text = operator.metrics.encode();
            async move {
                let done = [
                    "groupbinder_repairs_total{",
                    "groupbinder_orphaned_bindings_total{",
                    "groupbinder_k10_settings{state=\"read\"} 1",
                ]
                .iter()
                .all(|s| text.contains(s));
                Ok(done.then_some(text))
            }
        },
    )
    .await?;
    operator.stop().await?;
    // What Prometheus adds to every series it scrapes.
    let added = ["namespace", "job", "pod", "instance"];
    let mut checked = 0;
    for line in tests.lines() {
        let Some(series) = line.trim().strip_prefix("- series: '") else {
            continue;
        };
        let series = series.trim_end_matches('\'');
        let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
        let keys = |labels: &str| -> BTreeSet<String> {
            labels
                .trim_end_matches('}')
                .split(',')
                .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
                .filter(|k| !added.contains(&k.as_str()))
                .collect()
        };
        let want = keys(labels);
        let base = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            scrape.contains(&format!("# TYPE {base} ")),
            "{name} is not a metric the operator exports:\n{scrape}"
        );
        // Where the scrape has a sample of it, the same labels.
        if let Some(sample) = scrape.lines().find(|l| l.starts_with(&format!("{name}{{"))) {
            let got = keys(&sample[name.len() + 1..sample.rfind('}').unwrap_or(sample.len())]);
            assert_eq!(got, want, "labels of {name}: the scrape says {sample}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} series held to a sample");

    // The dashboard: every query parses, and names only metrics the scrape has.
    let cm = rendered(
        cp,
        "metrics.grafanaDashboard.enabled",
        "grafana-dashboard.yaml",
    )?;
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: serde_json::Value = serde_json::from_str(
        cm["data"]["groupbinder.json"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no dashboard in {cm}"))?,
    )?;
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            t["expr"]
                .as_str()
                .map(|e| e.replace("$namespace", "gb-system"))
        })
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    let rules = serde_json::json!({"groups": [{"name": "dashboard", "rules": exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:query{i}"), "expr": e}))
        .collect::<Vec<_>>()}]});
    std::fs::write(
        dir.path().join("dashboard.yaml"),
        serde_json::to_vec(&rules)?,
    )?;
    promtool(
        &promtool_bin,
        dir.path(),
        ["check", "rules", "dashboard.yaml"],
    )?;
    for expr in &exprs {
        let names = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("groupbinder_"));
        for name in names {
            let base = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                scrape.contains(&format!("# TYPE {base} ")),
                "the dashboard reads {name}, which the operator does not export: {expr}"
            );
        }
    }
    Ok(())
}
