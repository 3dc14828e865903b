//! `groupbinder import` and `groupbinder audit`: golden outputs from a file of hand-written
//! bindings, and the migration they are for, on a control plane of its own (so that no other
//! test's bindings show up): hand-written bindings → import → apply with the operator running →
//! the same grants → delete the redundant hand-written ones → the same access.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use groupbinder_e2e::{
    Operator, SEED_PREFIX, Who, apply, config, ensure_namespace, eventually, foreign_binding,
    install_crd, install_k10, kubectl_apply, ready, repo, seed_settings,
};
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::Api;

/// `groupbinder <args[0]> --default-group-prefix michael_azure_ <args[1..]>`.
fn groupbinder(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groupbinder"));
    let (subcommand, rest) = args.split_first().unwrap_or((&"--help", &[]));
    command
        .arg(subcommand)
        .args(["--default-group-prefix", SEED_PREFIX])
        .args(rest);
    command
}

fn hand_written() -> PathBuf {
    repo().join("tests/golden/hand-written.yaml")
}

/// Compares `actual` with the committed golden file (`UPDATE_GOLDEN=1` rewrites it).
fn golden(name: &str, actual: &str) -> anyhow::Result<()> {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual)?;
    }
    let expected = std::fs::read_to_string(&path)?;
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
    Ok(())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_and_audit_of_a_file_match_their_golden_outputs() -> anyhow::Result<()> {
    let import = groupbinder(&["import", "-f"])
        .arg(hand_written())
        .output()?;
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    golden("import.yaml", &stdout(&import))?;
    golden("import.stderr", &String::from_utf8_lossy(&import.stderr))?;
    let audit = groupbinder(&["audit", "-f"]).arg(hand_written()).output()?;
    assert_eq!(audit.status.code(), Some(1), "warnings exit 1");
    golden("audit.txt", &stdout(&audit))?;
    let json = groupbinder(&["audit", "-o", "json", "-f"])
        .arg(hand_written())
        .output()?;
    // K10's own values give the same prefix as the flag.
    let values = repo().join("examples/k10-oidc-values.yaml");
    let from_values = Command::new(env!("CARGO_BIN_EXE_groupbinder"))
        .args(["import", "--k10-values"])
        .arg(&values)
        .arg("-f")
        .arg(hand_written())
        .output()?;
    assert_eq!(stdout(&from_values), stdout(&import));
    let grants: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(grants.as_array().map(Vec::len), Some(9), "{grants}");
    // Malformed input: exit 2 with a message, nothing written.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: ClusterRoleBinding\nmetadata: {name: x}\nroleRef: 7\n",
    )?;
    for (command, file) in [
        ("import", bad.as_path()),
        ("audit", bad.as_path()),
        ("import", Path::new("/nonexistent.yaml")),
    ] {
        let out = groupbinder(&[command, "-f"]).arg(file).output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} {}: {stderr}",
            file.display()
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    Ok(())
}

/// K10's basic role for `group` in namespace `shop`, as a team's namespace admin may write it.
fn team_basic(name: &str, group: &str) -> RoleBinding {
    let crb = foreign_binding(name);
    let mut subjects = crb.subjects.unwrap_or_default();
    for s in &mut subjects {
        s.name = group.into();
    }
    RoleBinding {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        role_ref: crb.role_ref,
        subjects: Some(subjects),
    }
}

/// Runs the README's step-5 line that deletes the redundant bindings, exactly as written there,
/// with `sh`, with `groupbinder` and `kubectl` on the path and the control plane's kubeconfig.
fn readme_migration_pipeline(cp: &ControlPlane) -> anyhow::Result<Output> {
    let readme = std::fs::read_to_string(repo().join("README.md"))?;
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("groupbinder import --redundant"))
        .ok_or_else(|| {
            anyhow::anyhow!("the README has no `groupbinder import --redundant` line")
        })?;
    let command = line.split(" #").next().unwrap_or(line);
    let groupbinder = Path::new(env!("CARGO_BIN_EXE_groupbinder"));
    let dirs = [
        groupbinder.parent().unwrap_or(Path::new(".")),
        cp.binaries().kubectl.parent().unwrap_or(Path::new(".")),
    ];
    let path = std::env::join_paths(dirs.iter().map(|d| d.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    Ok(Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .env("KUBECONFIG", cp.kubeconfig())
        .env("KUBECACHEDIR", cp.dir().join("kubectl-cache"))
        .env("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX)
        .output()?)
}

/// The access each group has: what the authorizer answers for the checks K10's users care about.
async fn access(client: &kube::Client) -> anyhow::Result<Vec<(String, bool)>> {
    let groups = [
        "michael_azure_a318b1eb-8b78-4715-98ad-ffc8670ac79d",
        "michael_azure_5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13",
        "michael_azure_7c2d4e6f-8a9b-4c1d-9e2f-3a4b5c6d7e8f",
    ];
    let checks: [(&str, &str, &str, Option<&str>); 5] = [
        (
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("shop"),
        ),
        (
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("kasten-io"),
        ),
        ("list", "config.kio.kasten.io", "profiles", Some("default")),
        ("get", "", "secrets", Some("kasten-io")),
        (
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("crm"),
        ),
    ];
    let mut answers = Vec::new();
    for group in groups {
        let one = [group];
        let who = Who::new(client, "someone@example.com", &one);
        for (verb, api, resource, ns) in checks {
            let allowed = who.can(verb, api, resource, ns).await?;
            answers.push((format!("{group} {verb} {resource} {ns:?}"), allowed));
        }
    }
    Ok(answers)
}

#[tokio::test]
async fn migrating_hand_written_bindings_keeps_every_grant() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options::default()).await?;
    let client = cp.client().await?;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    for ns in ["shop", "crm"] {
        ensure_namespace(&client, ns).await?;
    }
    kubectl_apply(&cp, &hand_written())?;
    // The authorizer reads bindings from its watch cache: wait for the last one to count.
    let ops = ["michael_azure_7c2d4e6f-8a9b-4c1d-9e2f-3a4b5c6d7e8f"];
    Who::new(&client, "x", &ops)
        .may(
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("kasten-io"),
        )
        .await?;
    let before = access(&client).await?;

    // import from the cluster gives what it gives from the file.
    let with_cluster = |args: &[&str]| {
        let mut command = groupbinder(args);
        command.env("KUBECONFIG", cp.kubeconfig());
        command.output()
    };
    let import = with_cluster(&["import"])?;
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    golden("import.yaml", &stdout(&import))?;
    let manifests = cp.dir().join("imported.yaml");
    std::fs::write(&manifests, stdout(&import))?;

    // Applied with the operator running, they become Ready...
    let operator = Operator::start(&client, config(seed_settings()));
    kubectl_apply(&cp, &manifests)?;
    let agbs: Api<groupbinder_api::AzureGroupBinding> = Api::all(client.clone());
    eventually(
        "the imported objects to be Ready",
        Duration::from_secs(30),
        || async {
            let all = agbs.list(&Default::default()).await?.items;
            let ready = all
                .iter()
                .filter(|a| ready(a).is_some_and(|c| c.status == "True"))
                .count();
            Ok((all.len() == 3 && ready == 3).then_some(()))
        },
    )
    .await?;
    // ... `plan` shows the same grants the hand-written bindings made ...
    let plan = groupbinder(&["plan", "-f"]).arg(&manifests).output()?;
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let planned: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&stdout(&plan))?;
    let mut planned: Vec<String> = planned
        .iter()
        .map(|b| {
            format!(
                "{} {} {} {}",
                b["metadata"]["namespace"].as_str().unwrap_or("-"),
                b["roleRef"]["kind"].as_str().unwrap_or_default(),
                b["roleRef"]["name"].as_str().unwrap_or_default(),
                b["subjects"][0]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            "- ClusterRole k10-admin michael_azure_a318b1eb-8b78-4715-98ad-ffc8670ac79d",
            "- ClusterRole k10-config-view michael_azure_5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13",
            "kasten-io ClusterRole k10-basic michael_azure_7c2d4e6f-8a9b-4c1d-9e2f-3a4b5c6d7e8f",
            "kasten-io Role k10-ns-admin michael_azure_a318b1eb-8b78-4715-98ad-ffc8670ac79d",
            "shop ClusterRole k10-basic michael_azure_5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13",
        ]
    );
    // ... and the README's step 5 deletes the hand-written bindings they replace, exactly those:
    // not the redundant ones whose names would be words for a shell (a namespace admin's
    // RoleBinding named to delete namespace `victim` and ClusterRoleBinding `victim-crb`), and
    // nothing those names mention.
    ensure_namespace(&client, "victim").await?;
    let mut victim = foreign_binding("victim-crb");
    victim.role_ref.name = "view".into();
    apply(&client, &victim).await?;
    let hostile = [
        "team-basic\nnamespace victim\nclusterrolebinding victim-crb",
        "team-basic namespaces --all",
        "team-basic\u{1b}]0;owned\u{7}",
    ];
    let shop_group = "michael_azure_5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13";
    let shop: Api<RoleBinding> = Api::namespaced(client.clone(), "shop");
    for name in hostile {
        // POST: the name travels in the body (kube does not escape it into a URL path).
        shop.create(&Default::default(), &team_basic(name, shop_group))
            .await?;
    }
    let deleted = readme_migration_pipeline(&cp)?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let victim_ns = namespaces.get("victim").await?;
    assert!(
        victim_ns.metadata.deletion_timestamp.is_none(),
        "{victim_ns:?}"
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    assert!(crbs.get_opt("victim-crb").await?.is_some());
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let stderr = String::from_utf8_lossy(&deleted.stderr);
    assert_eq!(
        stderr.matches("not listed: RoleBinding shop/").count(),
        3,
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains("victim\n"),
        "{stderr}"
    );
    let printed = stdout(&deleted);
    let mut gone: Vec<&str> = printed.lines().collect();
    gone.sort_unstable();
    assert_eq!(
        gone,
        [
            "clusterrolebinding.rbac.authorization.k8s.io \"k10-admins\" deleted",
            "clusterrolebinding.rbac.authorization.k8s.io \"shop-config-view\" deleted",
            "rolebinding.rbac.authorization.k8s.io \"k10-admins-ns\" deleted from kasten-io namespace",
            "rolebinding.rbac.authorization.k8s.io \"ops-basic\" deleted from kasten-io namespace",
            "rolebinding.rbac.authorization.k8s.io \"shop-basic\" deleted from shop namespace",
        ]
    );
    let left: Vec<String> = shop
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .filter(|n| hostile.contains(&n.as_str()))
        .collect();
    assert_eq!(left.len(), hostile.len(), "{left:?}");
    // Deleted by hand, as standard error said: kubectl escapes the names into the request.
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": hostile.map(|name| serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": "shop"},
    }))});
    let file = cp.dir().join("hostile.json");
    std::fs::write(&file, list.to_string())?;
    let out = cp.kubectl().arg("delete").arg("-f").arg(&file).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deleted: every group's access is what it was (the authorizer's cache lags a moment).
    eventually(
        "the same access without the hand-written bindings",
        Duration::from_secs(10),
        || async { Ok((access(&client).await? == before).then_some(())) },
    )
    .await?;

    // audit now: the imported grants are managed; what could not be imported still warns.
    let audit = with_cluster(&["audit", "-o", "json"])?;
    assert_eq!(audit.status.code(), Some(1));
    let grants: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout)?;
    let managed = grants.iter().filter(|g| g["managedBy"].is_string()).count();
    assert_eq!(
        managed, 5,
        "the imported objects name their roles: {grants:#?}"
    );
    let unmanaged: Vec<&str> = grants
        .iter()
        .filter(|g| g["managedBy"].is_null())
        .filter_map(|g| g["binding"].as_str())
        .collect();
    assert_eq!(
        unmanaged,
        [
            "ClusterRoleBinding alice-k10-admin",
            "ClusterRoleBinding k10-admins-typo",
            "ClusterRoleBinding k10-admins-typo",
            "RoleBinding shop/ci-basic",
        ]
    );

    // A backdoor that a CI audit gate must not pass: an unlabelled binding of `k10-mc-admin`
    // (every Secret) with a controller ownerReference forged to a living object, and a binding
    // labelled as groupbinder's of a role outside the allowlist. Neither is "managed by" anyone.
    let living = Api::<groupbinder_api::AzureGroupBinding>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    let victim = living.first().ok_or_else(|| anyhow::anyhow!("no object"))?;
    let forged_owner = serde_json::json!([{
        "apiVersion": "groupbinder.dev/v1alpha1", "kind": "AzureGroupBinding",
        "name": victim.metadata.name, "uid": victim.metadata.uid, "controller": true,
    }]);
    let mut backdoor = foreign_binding("backdoor");
    backdoor.role_ref.name = "k10-mc-admin".into();
    backdoor.metadata.owner_references = Some(serde_json::from_value(forged_owner)?);
    apply(&client, &backdoor).await?;
    let mut labelled = foreign_binding("labelled-cluster-admin");
    labelled.role_ref.name = "admin".into();
    labelled.metadata.labels = Some(
        [(
            "app.kubernetes.io/managed-by".to_owned(),
            "groupbinder".to_owned(),
        )]
        .into(),
    );
    apply(&client, &labelled).await?;
    let audit = with_cluster(&["audit", "-o", "json"])?;
    assert_eq!(audit.status.code(), Some(1));
    let grants: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout)?;
    let of = |binding: &str| {
        grants
            .iter()
            .find(|g| g["binding"] == binding)
            .cloned()
            .unwrap_or_default()
    };
    let backdoor = of("ClusterRoleBinding backdoor");
    assert!(backdoor["managedBy"].is_null(), "{backdoor}");
    assert_eq!(
        backdoor["warnings"],
        serde_json::json!(["ForgedOwner"]),
        "{backdoor}"
    );
    assert_eq!(
        backdoor["notes"],
        serde_json::json!(["AllSecrets"]),
        "{backdoor}"
    );
    let labelled = of("ClusterRoleBinding labelled-cluster-admin");
    assert_eq!(
        labelled["warnings"],
        serde_json::json!(["OutsideAllowlist"]),
        "{labelled}"
    );
    assert_eq!(
        grants.iter().filter(|g| g["managedBy"].is_string()).count(),
        5,
        "the real ones are still managed"
    );
    let table = stdout(&with_cluster(&["audit"])?);
    assert!(
        table.contains("ForgedOwner: it claims an AzureGroupBinding"),
        "{table}"
    );
    operator.stop().await
}

/// Every object `import` writes is admitted by the real API server (server-side dry run), a
/// group with 40 long-named source bindings included: its roles are split over two objects (the
/// schema lists 32 at most), and each description is cut to the schema's 512 characters, saying
/// how many more sources there were.
#[tokio::test]
async fn every_object_import_writes_is_admitted() -> anyhow::Result<()> {
    let cp = ControlPlane::shared().await?;
    install_crd(&cp.client().await?).await?;
    let dir = tempfile::tempdir()?;
    let group = "michael_azure_5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13";
    let items: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": format!("{i:03}-{}", "shop-basic-".repeat(22)),
                             "namespace": format!("team-{i}")},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "k10-basic"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                              "name": group}],
            })
        })
        .collect();
    let many = dir.path().join("many.json");
    std::fs::write(
        &many,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )?;
    let import = groupbinder(&["import", "-f"])
        .arg(&many)
        .arg("-f")
        .arg(hand_written())
        .output()?;
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let written = dir.path().join("imported.yaml");
    std::fs::write(&written, &import.stdout)?;
    let out = cp
        .kubectl()
        .args(["apply", "--dry-run=server", "-f"])
        .arg(&written)
        .output()?;
    let applied = stdout(&out);
    assert!(
        out.status.success(),
        "{applied}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 40 roles for one group: two objects (the schema lists 32 roles at most), then the seed's.
    assert_eq!(applied.matches("(server dry run)").count(), 4, "{applied}");
    assert!(
        applied.contains("azure-5b1e7c9a-3f2d-4e8b-9a61-2c4d8e0f7a13-2 created"),
        "{applied}"
    );
    assert!(
        stdout(&import).contains(" and "),
        "the long description says how many more"
    );
    Ok(())
}
