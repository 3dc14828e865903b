//! `groupbinder explain-token` against the real kube-apiserver JWT authenticator: for the same
//! token, the identity it predicts is the identity the API server computes, and the access
//! `--check` predicts is the access the token gets.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use groupbinder_e2e::oidc::Issuer;
use groupbinder_e2e::{
    SEED_GUID, SEED_PREFIX, eventually, install_crd, install_k10, wait_for_reason,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

const AUDIENCE: &str = "k10-client";
const OTHER_GROUP: &str = "5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13";

/// One issuer path and its claim mappings, as K10 flags and as the apiserver configures them.
struct Case {
    path: &'static str,
    username_claim: &'static str,
    /// K10's usernamePrefix (`None`: unset).
    k10_username_prefix: Option<&'static str>,
    groups_prefix: &'static str,
}

const CASES: [Case; 3] = [
    // The recommended setup: oid, no user prefix, the seed's group prefix.
    Case {
        path: "/tenant-a/v2.0",
        username_claim: "oid",
        k10_username_prefix: Some("-"),
        groups_prefix: SEED_PREFIX,
    },
    // K10's defaults: sub, prefixed with the provider URL and '#', no group prefix.
    Case {
        path: "/tenant-b/v2.0",
        username_claim: "sub",
        k10_username_prefix: None,
        groups_prefix: "",
    },
    // email (no default prefix) and a group prefix with a colon.
    Case {
        path: "/tenant-c/v2.0",
        username_claim: "email",
        k10_username_prefix: None,
        groups_prefix: "oidc:",
    },
];

impl Case {
    /// The prefix kube-apiserver's structured configuration must spell out for K10's setting.
    fn apiserver_username_prefix(&self, issuer: &str) -> String {
        match self.k10_username_prefix {
            Some("-") => String::new(),
            Some(prefix) => prefix.to_owned(),
            None if self.username_claim == "email" => String::new(),
            None => format!("{issuer}#"),
        }
    }
}

fn claims(issuer: &str, n: u32) -> Value {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
    .unwrap_or(0);
    json!({
        "iss": issuer, "aud": AUDIENCE, "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
        "ver": "2.0", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "sub": format!("pairwise-subject-{n}"), "oid": format!("00000000-0000-0000-0000-00000000000{n}"),
        "email": format!("user{n}@contoso.com"), "email_verified": true,
        "preferred_username": format!("user{n}@contoso.com"),
        "groups": [SEED_GUID, OTHER_GROUP],
    })
}

fn explain(
    kubeconfig: &Path,
    token_file: &Path,
    case: &Case,
    issuer: &str,
    extra: &[&str],
) -> anyhow::Result<Value> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groupbinder"));
    command
        .args(["explain-token", "-o", "json", "--token-file"])
        .arg(token_file)
        .args([
            "--provider-url",
            issuer,
            "--username-claim",
            case.username_claim,
            "--groups-prefix",
            case.groups_prefix,
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig);
    if let Some(prefix) = case.k10_username_prefix {
        command.args(["--username-prefix", prefix]);
    }
    let out = command.output()?;
    anyhow::ensure!(
        out.status.success(),
        "explain-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test]
async fn explain_token_agrees_with_the_real_authenticator_and_authorizer() -> anyhow::Result<()> {
    let issuer = Issuer::start().await?;
    let jwt: Vec<Value> = CASES
        .iter()
        .map(|case| {
            let url = format!("{}{}", issuer.base, case.path);
            json!({
                "issuer": {"url": url, "audiences": [AUDIENCE], "certificateAuthority": issuer.ca_pem},
                "claimMappings": {
                    "username": {"claim": case.username_claim, "prefix": case.apiserver_username_prefix(&url)},
                    "groups": {"claim": "groups", "prefix": case.groups_prefix},
                },
            })
        })
        .collect();
    let config = json!({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "AuthenticationConfiguration", "jwt": jwt});
    let cp = ControlPlane::start(Options {
        authentication_config: Some(config.to_string()),
        ..Options::default()
    })
    .await?;
    let admin = cp.client().await?;

    for (n, case) in (1u32..).zip(&CASES) {
        let url = format!("{}{}", issuer.base, case.path);
        let token = issuer.sign(&claims(&url, n))?;
        let token_file = cp.dir().join(format!("token-{n}.jwt"));
        std::fs::write(&token_file, &token)?;
        let predicted = explain(cp.kubeconfig(), &token_file, case, &url, &[])?;

        // What the API server itself computes for the token (it may need a moment to fetch the
        // issuer's discovery document and keys).
        let token_kubeconfig = cp.token_kubeconfig(&format!("oidc-{n}"), &token)?;
        let whoami: Value = eventually(
            "the JWT authenticator to accept the token",
            Duration::from_secs(60),
            || async {
                // kubectl with the token's kubeconfig only (not the admin one).
                let out = Command::new(&cp.binaries().kubectl)
                    .args(["auth", "whoami", "-o", "json", "--kubeconfig"])
                    .arg(&token_kubeconfig)
                    .output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Ok(Some(serde_json::from_slice(&out.stdout)?))
            },
        )
        .await?;
        let user = &whoami["status"]["userInfo"];
        assert_eq!(
            predicted["username"], user["username"],
            "case {}: username",
            case.path
        );
        let mut actual: Vec<&str> = user["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        actual.retain(|g| *g != "system:authenticated");
        let predicted_groups: Vec<&str> = predicted["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(predicted_groups, actual, "case {}: groups", case.path);
        println!("case {}: {} in {actual:?}", case.path, user["username"]);
    }

    // With a groupbinder-managed binding in place, the token gets exactly what --check predicts.
    install_crd(&admin).await?;
    install_k10(&admin, "k10", "kasten-io").await?;
    let operator = groupbinder_e2e::Operator::start(
        &admin,
        groupbinder_e2e::config(groupbinder_e2e::seed_settings()),
    );
    let spec = groupbinder_api::AzureGroupBindingSpec {
        group_object_id: SEED_GUID.into(),
        group_prefix: Some(SEED_PREFIX.into()),
        ..Default::default()
    };
    groupbinder_e2e::apply(
        &admin,
        &groupbinder_api::AzureGroupBinding::new("k10-admins", spec),
    )
    .await?;
    wait_for_reason(&admin, "k10-admins", "True", "Reconciled").await?;

    let case = &CASES[0];
    let url = format!("{}{}", issuer.base, case.path);
    let token = issuer.sign(&claims(&url, 9))?;
    let token_file = cp.dir().join("token-check.jwt");
    std::fs::write(&token_file, &token)?;
    let jwks_file = cp.dir().join("jwks.json");
    std::fs::write(&jwks_file, issuer.jwks.to_string())?;
    let jwks_arg = jwks_file.display().to_string();
    let verified = explain(
        cp.kubeconfig(),
        &token_file,
        case,
        &url,
        &["--jwks", &jwks_arg],
    )?;
    assert_eq!(verified["signature"], "verified");
    let report = explain(
        cp.kubeconfig(),
        &token_file,
        case,
        &url,
        &["--check", "--default-group-prefix", SEED_PREFIX],
    )?;
    assert_eq!(report["bindings"][0]["name"], "k10-admins", "{report}");
    let as_token =
        groupbinder_testenv::client_from_kubeconfig(&cp.token_kubeconfig("oidc-check", &token)?)
            .await?;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(as_token);
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    assert!(checks.len() >= 5, "{report}");
    for check in &checks {
        let resource = check["resource"].as_str().unwrap_or_default();
        let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: check["verb"].as_str().map(str::to_owned),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    namespace: check["namespace"].as_str().map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        assert_eq!(Some(allowed), check["allowed"].as_bool(), "{check}");
    }
    let allowed: Vec<&str> = checks
        .iter()
        .filter(|c| c["allowed"] == true)
        .filter_map(|c| c["action"].as_str())
        .collect();
    assert!(
        allowed.contains(&"create a backup")
            && allowed.contains(&"read secrets in K10's namespace"),
        "{allowed:?}"
    );
    operator.stop().await
}
