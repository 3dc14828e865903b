//! `groupbinder explain-token`: what K10 and kube-apiserver will see for an ID token, which
//! AzureGroupBindings match it, and (with `--check`) what the cluster's RBAC then allows.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use groupbinder_api::{AzureGroupBinding, Planned};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde::Serialize;

use crate::k10values::K10Values;
use crate::manifests;
use crate::namespaces::NamespaceArgs;
use crate::output::{self, Output, shown};
use crate::settings::SettingsArgs;
use crate::token::{self, Identity, Mapping};

/// Flags of `groupbinder explain-token`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The ID token (JWT); `-` or nothing reads standard input.
    token: Option<String>,
    /// Read the token from a file.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Check the token's signature against this JWKS file (the issuer's jwks_uri document).
    /// Without it the signature is not checked.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Read auth.oidcAuth.*, auth.k10AdminGroups, auth.groupAllowList and useNamespacedAPI from
    /// K10's Helm values file; the flags below override it.
    #[arg(long)]
    k10_values: Option<PathBuf>,
    /// K10 runs with useNamespacedAPI: its API groups are <x>.kio.<K10 namespace, '-' → '.'>
    /// instead of <x>.kio.kasten.io [default: from --k10-values, else false].
    #[arg(long)]
    k10_namespaced_api: Option<bool>,
    /// K10's auth.oidcAuth.providerURL (the expected issuer).
    #[arg(long)]
    provider_url: Option<String>,
    /// Claim holding the user name [default: sub].
    #[arg(long)]
    username_claim: Option<String>,
    /// Prefix of the user name; `-` for none [default: "<provider URL>#" unless the claim is email].
    #[arg(long)]
    username_prefix: Option<String>,
    /// Claim holding the groups [default: groups].
    #[arg(long)]
    groups_claim: Option<String>,
    /// Prefix of every group (K10's groupPrefix) [default: --default-group-prefix].
    #[arg(long)]
    groups_prefix: Option<String>,
    /// Read AzureGroupBindings from these files or directories instead of the cluster.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    namespaces: NamespaceArgs,
    /// Ask the cluster (SubjectAccessReviews) what this identity may do in K10.
    #[arg(long)]
    check: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    cluster: crate::k10cluster::K10ClusterArgs,
    #[command(flatten)]
    entra: crate::entra::EntraArgs,
}

/// An AzureGroupBinding whose group the token carries.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    name: String,
    group: String,
    roles: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// One K10 action, allowed or not.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    action: String,
    verb: String,
    resource: String,
    namespace: Option<String>,
    allowed: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// `verified`, `not checked`, or why it failed.
    signature: String,
    #[serde(flatten)]
    identity: Identity,
    mapping: Mapping,
    bindings: Vec<Match>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bindings_error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checks: Vec<Check>,
    /// Each group's display name in Entra ID (escaped, bounded), when Entra ID was asked; the
    /// groups that name no group of the tenant say so.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    group_names: std::collections::BTreeMap<String, String>,
}

/// The display name of each of the token's groups that is `<prefix><object ID>`, when Entra ID is
/// asked; `(not a group: ...)` for an ID that names none.
async fn group_names(
    entra: &crate::entra::EntraArgs,
    identity: &Identity,
    mapping: &Mapping,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let ids: Vec<(String, String)> = identity
        .groups
        .iter()
        .filter_map(
            |g| match crate::grants::group_name(g, &mapping.groups_prefix) {
                crate::grants::GroupName::ObjectId(id) => Some((g.clone(), id)),
                _ => None,
            },
        )
        .collect();
    let Some(answers) = entra.answers(ids.iter().map(|(_, id)| id.as_str())).await? else {
        return Ok(std::collections::BTreeMap::new());
    };
    Ok(ids
        .into_iter()
        .filter_map(|(group, id)| {
            let name = match answers.get(&id)? {
                groupbinder_api::entra::Answer::Group(g) => g.display_name.clone(),
                groupbinder_api::entra::Answer::NotAGroup(kind) => format!(
                    "(not a group: {})",
                    kind.as_ref()
                        .map_or_else(|| "unknown to this tenant".to_owned(), |k| k.described())
                ),
            };
            Some((group, name))
        })
        .collect())
}

/// Reads at most [`token::MAX_TOKEN_BYTES`] (and one byte more, to know it was more): a 300 MiB
/// file is refused after that, not held in memory first.
fn read_limited(reader: impl Read) -> Result<String, String> {
    let mut bytes = Vec::new();
    reader
        .take(token::MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > token::MAX_TOKEN_BYTES {
        return Err(format!(
            "larger than {} bytes: not an ID token",
            token::MAX_TOKEN_BYTES
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text: not an ID token".to_owned())
}

/// Exit code 2: the token could not be read.
pub async fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let input = match (&args.token, &args.token_file) {
        (_, Some(file)) => {
            let opened = std::fs::File::open(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            read_limited(opened)
        }
        (Some(token), None) if token != "-" => Ok(token.clone()),
        _ => read_limited(std::io::stdin()),
    };
    let input = match input {
        Ok(input) => input,
        Err(error) => {
            eprintln!("error: cannot read the token: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let token = match token::decode(&input) {
        Ok(token) => token,
        Err(error) => {
            eprintln!("error: cannot read the token: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let (signature, signature_ok) = match &args.jwks {
        None => ("not checked".to_owned(), true),
        Some(file) => {
            let jwks = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            match token.verify(&jwks) {
                Ok(()) => ("verified".to_owned(), true),
                Err(e) => (format!("INVALID: {e}"), false),
            }
        }
    };
    let (mapping, k10) = mapping(args).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let mut identity = token::explain(&token, &mapping, now);
    let k10 = k10.unwrap_or_default();
    let extra = k10.warnings(&identity, &mapping);
    identity.warnings.extend(extra);
    let namespaced_api = args.k10_namespaced_api.unwrap_or(k10.namespaced_api);

    let settings = args.settings.settings();
    let (bindings, bindings_error) = match agbs(args).await {
        Ok((agbs, namespaces)) => (
            matches(&agbs, &settings, namespaces.as_ref(), &identity),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let checks = if args.check {
        check(&identity, &settings, namespaced_api).await?
    } else {
        Vec::new()
    };
    let group_names = group_names(&args.entra, &identity, &mapping).await?;
    let report = Report {
        signature,
        identity,
        mapping,
        bindings,
        bindings_error,
        checks,
        group_names,
    };
    print!("{}", output::render(args.output, &report, table)?);
    // A signature that was asked for and does not verify fails the command.
    Ok(if signature_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The mapping from the K10 values (if given) and the flags, and what else the values say.
async fn mapping(args: &ExplainArgs) -> anyhow::Result<(Mapping, Option<K10Values>)> {
    let mut mapping = Mapping {
        groups_prefix: args.settings.default_group_prefix.clone(),
        ..Mapping::default()
    };
    let mut k10 = None;
    // Without a values file, K10's live settings when the command talks to the cluster anyway.
    // No cluster at hand (no kubeconfig): the flags and defaults, as offline.
    let client = match (args.k10_values.is_none() && (args.check || args.files.is_empty()))
        .then(crate::connection::client)
    {
        Some(connect) => connect.await.ok(),
        None => None,
    };
    if let Some(client) = client {
        let namespace = &args.settings.settings().k10_namespace;
        if let Some(cluster) = crate::k10cluster::read(args.cluster, &client, namespace).await {
            if let Some(oidc) = cluster.oidc() {
                mapping.provider_url = Some(oidc.provider_url.clone()).filter(|u| !u.is_empty());
                mapping.username_claim = oidc.username_claim.clone();
                mapping.username_prefix = oidc.username_prefix.clone().filter(|p| !p.is_empty());
                mapping.groups_claim = oidc.group_claim.clone();
                mapping.groups_prefix = oidc.group_prefix.clone();
            }
            k10 = Some(K10Values {
                group_allow_list: cluster
                    .oidc()
                    .map(|o| o.group_allow_list.clone())
                    .unwrap_or_default(),
                namespaced_api: cluster
                    .api_domain
                    .as_deref()
                    .is_some_and(|d| d != "kio.kasten.io"),
                ..K10Values::default()
            });
        }
    }
    if let Some(file) = &args.k10_values {
        let values = crate::k10values::read(file)?;
        k10 = Some(K10Values::from_values(&values));
        let oidc = &values["auth"]["oidcAuth"];
        let get = |key: &str| oidc[key].as_str().map(str::to_owned);
        mapping.provider_url = get("providerURL").or(mapping.provider_url);
        mapping.username_claim = get("usernameClaim").unwrap_or(mapping.username_claim);
        mapping.username_prefix = get("usernamePrefix")
            .filter(|p| !p.is_empty())
            .or(mapping.username_prefix);
        mapping.groups_claim = get("groupClaim").unwrap_or(mapping.groups_claim);
        mapping.groups_prefix =
            crate::k10values::group_prefix(&values).unwrap_or(mapping.groups_prefix);
    }
    let or = |flag: &Option<String>, current: String| flag.clone().unwrap_or(current);
    mapping.provider_url = args.provider_url.clone().or(mapping.provider_url);
    mapping.username_claim = or(&args.username_claim, mapping.username_claim);
    mapping.username_prefix = args.username_prefix.clone().or(mapping.username_prefix);
    mapping.groups_claim = or(&args.groups_claim, mapping.groups_claim);
    mapping.groups_prefix = or(&args.groups_prefix, mapping.groups_prefix);
    Ok((mapping, k10))
}

/// The AzureGroupBindings (from files, or the cluster) and the namespaces their selectors choose
/// from (from `--namespaces`, or the cluster when the objects come from it or it is asked).
async fn agbs(
    args: &ExplainArgs,
) -> anyhow::Result<(Vec<AzureGroupBinding>, Option<crate::namespaces::Listed>)> {
    let from_files = !args.files.is_empty();
    let namespaces = args.namespaces.read(!from_files).await?;
    let agbs = if from_files {
        let (agbs, failures) = manifests::azure_group_bindings(&args.files);
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure.into());
        }
        agbs
    } else {
        Api::<AzureGroupBinding>::all(crate::connection::client().await?)
            .list(&ListParams::default())
            .await?
            .items
    };
    Ok((agbs, namespaces))
}

fn matches(
    agbs: &[AzureGroupBinding],
    settings: &groupbinder_api::Settings,
    namespaces: Option<&crate::namespaces::Listed>,
    identity: &Identity,
) -> Vec<Match> {
    let namespaces = namespaces.map(|n| n as &dyn groupbinder_api::Namespaces);
    agbs.iter()
        .filter_map(|agb| {
            let plan = groupbinder_api::plan(agb, settings, namespaces).ok()?;
            identity.groups.contains(&plan.group).then(|| {
                let cluster = plan.cluster_role_bindings.iter().map(Planned::grant);
                let namespaced = plan.role_bindings.iter().map(Planned::grant);
                Match {
                    name: agb.name_any(),
                    group: plan.group.clone(),
                    roles: cluster.chain(namespaced).collect(),
                    warnings: groupbinder_api::desired::warnings(&plan, settings),
                }
            })
        })
        .collect()
}

/// The K10 actions `--check` asks about: (action, verb, K10 API (`actions` for
/// `actions.kio.<...>`, "" for the core API), resource, in K10's namespace).
const K10_ACTIONS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "create a backup",
        "create",
        "actions",
        "backupactions",
        false,
    ),
    (
        "create a restore",
        "create",
        "actions",
        "restoreactions",
        false,
    ),
    (
        "read restore points",
        "list",
        "apps",
        "restorepoints",
        false,
    ),
    ("manage policies", "create", "config", "policies", true),
    (
        "manage location profiles",
        "create",
        "config",
        "profiles",
        true,
    ),
    (
        "read secrets in K10's namespace",
        "get",
        "",
        "secrets",
        true,
    ),
];

async fn check(
    identity: &Identity,
    settings: &groupbinder_api::Settings,
    namespaced_api: bool,
) -> anyhow::Result<Vec<Check>> {
    let client = crate::connection::client().await?;
    let reviews: Api<SubjectAccessReview> = Api::all(client);
    let mut groups = identity.groups.clone();
    groups.push("system:authenticated".into());
    let mut checks = Vec::new();
    for (action, verb, api, resource, k10_namespace) in K10_ACTIONS {
        let namespace = k10_namespace.then(|| settings.k10_namespace.clone());
        let group = if api.is_empty() {
            String::new()
        } else {
            groupbinder_api::k10::api_group(api, &settings.k10_namespace, namespaced_api)
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: identity.username.clone(),
                groups: Some(groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some((*verb).into()),
                    group: Some(group.clone()),
                    resource: Some((*resource).into()),
                    namespace: namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let allowed = reviews
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        let resource = if group.is_empty() {
            (*resource).to_owned()
        } else {
            format!("{resource}.{group}")
        };
        checks.push(Check {
            action: (*action).into(),
            verb: (*verb).into(),
            resource,
            namespace,
            allowed,
        });
    }
    Ok(checks)
}

fn table(report: &Report) -> String {
    use std::fmt::Write;
    let id = &report.identity;
    let mut out = String::new();
    let or_none = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_owned(), shown);
    let _ = writeln!(out, "Signature       {}", shown(&report.signature));
    let _ = writeln!(out, "Token version   {}", or_none(&id.version));
    let _ = writeln!(out, "Issuer          {}", or_none(&id.issuer));
    let _ = writeln!(out, "Audience        {}", shown(&id.audience.join(", ")));
    let time = |exp: i64| {
        k8s_openapi::jiff::Timestamp::from_second(exp)
            .map_or_else(|_| exp.to_string(), |t| t.to_string())
    };
    let expiry = match id.expires {
        Some(exp) if id.expired => format!("{} (EXPIRED)", time(exp)),
        Some(exp) => time(exp),
        None => "-".to_owned(),
    };
    let _ = writeln!(out, "Expires         {expiry}");
    let _ = writeln!(out, "\nK10 and kube-apiserver will see:");
    let _ = writeln!(
        out,
        "  user          {}",
        id.username
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), shown)
    );
    if id.groups.is_empty() {
        let _ = writeln!(out, "  groups        (none)");
    }
    for group in &id.groups {
        match report.group_names.get(group) {
            Some(name) => {
                let _ = writeln!(out, "  group         {}  \"{}\"", shown(group), shown(name));
            }
            None => {
                let _ = writeln!(out, "  group         {}", shown(group));
            }
        }
    }
    if !id.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &id.warnings {
            let _ = writeln!(
                out,
                "  {}: {}\n    fix: {}",
                w.code,
                shown(&w.message),
                shown(&w.fix)
            );
        }
    }
    let _ = writeln!(out, "\nAzureGroupBindings that match:");
    if let Some(error) = &report.bindings_error {
        let _ = writeln!(out, "  (could not read them: {})", shown(error));
    } else if report.bindings.is_empty() {
        let _ = writeln!(out, "  none: this token gets no access through groupbinder");
    }
    for m in &report.bindings {
        let _ = writeln!(
            out,
            "  {} (group {}): {}",
            shown(&m.name),
            shown(&m.group),
            shown(&m.roles.join(", "))
        );
        for warning in &m.warnings {
            let _ = writeln!(out, "    warning: {}", shown(warning));
        }
    }
    if !report.checks.is_empty() {
        let _ = writeln!(out, "\nWhat the cluster allows (SubjectAccessReview):");
        for c in &report.checks {
            let verdict = if c.allowed { "allowed" } else { "denied " };
            let ns = c
                .namespace
                .as_deref()
                .map(|n| format!(" in {}", shown(n)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {verdict}  {} ({} {}{ns})",
                c.action, c.verb, c.resource
            );
        }
    }
    out
}
