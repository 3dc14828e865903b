//! The operator asks Entra ID (the stand-in of `tests/support/entra.rs`, over TLS, with a client
//! secret) whether each object's `groupObjectId` is a group, beside its reconciles: condition
//! `GroupFound`, `status.groupDisplayName`, `Ready=False GroupNotFound` only after the
//! replication window, throttling and an unreachable Entra ID that never touch a binding, and one
//! Graph request per object ID per TTL. The real binary on the real control plane.

use std::process::Stdio;
use std::time::Duration;

use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec};
use groupbinder_e2e::entra::{Entra, object_id};
use groupbinder_e2e::{
    OperatorProcess, SEED_PREFIX, agbs, apply, crbs, eventually, install_crd, install_k10,
    managed_binding_versions, wait_for_reason_within,
};
use groupbinder_testenv::ControlPlane;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};

const TENANT: &str = "3f1c0d2e-0000-4000-8000-0000000000e1";

fn object(name: &str, id: &str) -> AzureGroupBinding {
    AzureGroupBinding::new(
        name,
        AzureGroupBindingSpec {
            group_object_id: id.to_owned(),
            ..AzureGroupBindingSpec::default()
        },
    )
}

/// `GroupFound` of `name`: (status, reason, message).
async fn group_found(
    client: &kube::Client,
    name: &str,
) -> anyhow::Result<Option<(String, String, String)>> {
    let agb = agbs(client).get(name).await?;
    Ok(agb
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == "GroupFound")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone())))
}

async fn wait_found(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<String> {
    eventually(
        &format!("{name} to say GroupFound={status} ({reason})"),
        Duration::from_secs(30),
        || async {
            Ok(group_found(client, name)
                .await?
                .filter(|(s, r, _)| s == status && r == reason)
                .map(|(_, _, m)| m))
        },
    )
    .await
}

struct Running {
    operator: OperatorProcess,
    log: std::path::PathBuf,
}

fn start(
    cp: &ControlPlane,
    entra: &Entra,
    name: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let dir = cp.dir().join(name);
    let log = dir.join("operator.log");
    let mut env = entra.env(&dir)?;
    env.extend(
        [
            ("GROUPBINDER_DEFAULT_GROUP_PREFIX", SEED_PREFIX),
            ("GROUPBINDER_LOG_LEVEL", "debug"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let operator = OperatorProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_groupbinder")),
        cp.kubeconfig(),
        &env,
        Stdio::from(std::fs::File::create(&log)?),
    )?;
    Ok(Running { operator, log })
}

/// The control plane with the CRD and K10's roles, one test at a time, and a fresh stand-in.
async fn setup() -> anyhow::Result<(
    &'static ControlPlane,
    kube::Client,
    tokio::sync::MutexGuard<'static, ()>,
    Entra,
)> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let serial = groupbinder_e2e::exclusive().await;
    install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    clean(&client).await?;
    Ok((cp, client, serial, Entra::start(TENANT)?))
}

/// No AzureGroupBinding and no binding of one left by an earlier test: its IDs, unknown to this
/// test's stand-in, would be looked up too (and enough of them open the breaker).
async fn clean(client: &kube::Client) -> anyhow::Result<()> {
    let api = agbs(client);
    api.delete_collection(&Default::default(), &ListParams::default())
        .await?;
    eventually(
        "no object and no binding left",
        Duration::from_secs(120),
        || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let left = api.list(&ListParams::default()).await?.items.len()
                + managed_binding_versions(client).await?.len();
            Ok((left == 0).then_some(()))
        },
    )
    .await
}

#[tokio::test]
async fn entra_says_whether_the_id_is_a_group_and_never_moves_a_binding() -> anyhow::Result<()> {
    let (cp, client, _serial, entra) = setup().await?;
    let (group, m365, user, late) = (
        object_id(101),
        object_id(102),
        object_id(103),
        object_id(104),
    );
    entra.add_group(&group, "K10 admins \u{1b}[31m(prod)", true);
    entra.add_group(&m365, "Backup team site", false);
    entra.add_user(&user);
    let running = start(
        cp,
        &entra,
        "entra-operator",
        &[("GROUPBINDER_ENTRA_REPLICATION_WINDOW_SECONDS", "8")],
    )?;
    let within = Duration::from_secs(30);

    apply(&client, &object("entra-group", &group)).await?;
    apply(&client, &object("entra-m365", &m365)).await?;
    apply(&client, &object("entra-user", &user)).await?;
    wait_found(&client, "entra-group", "True", "Found").await?;
    let agb = agbs(&client).get("entra-group").await?;
    let shown = agb
        .status
        .and_then(|s| s.group_display_name)
        .unwrap_or_default();
    assert_eq!(shown, "K10 admins \\u{1b}[31m(prod)", "escaped, never raw");
    let m365_message = wait_found(&client, "entra-m365", "True", "NotSecurityEnabled").await?;
    assert!(
        m365_message.contains("Microsoft 365 group"),
        "{m365_message}"
    );
    wait_for_reason_within(&client, "entra-m365", "True", "Reconciled", within).await?;
    // A user's object ID: said at once, Ready only after the replication window; bound all along
    // (a group that does not exist grants nobody).
    let message = wait_found(&client, "entra-user", "False", "GroupNotFound").await?;
    assert!(message.contains("the object ID of a user"), "{message}");
    let ready =
        wait_for_reason_within(&client, "entra-user", "False", "GroupNotFound", within).await?;
    let stalled = ready
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == "Stalled" && c.status == "True");
    assert!(stalled, "a person must fix the ID");
    // A restart forgets every answer: the statuses hold until Entra ID answers again, and a
    // group missing for longer than the window stays Ready=False (no flap, same transition).
    let since = |agb: &AzureGroupBinding| {
        agb.status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.reason.clone(), c.last_transition_time.clone()))
    };
    let was = since(&ready);
    drop(running.operator);
    let asked = entra.graph_requests();
    let running = start(
        cp,
        &entra,
        "entra-operator-again",
        &[("GROUPBINDER_ENTRA_REPLICATION_WINDOW_SECONDS", "8")],
    )?;
    eventually("the new operator to ask again", within, || async {
        Ok((entra.graph_requests() >= asked + 4).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        since(&agbs(&client).get("entra-user").await?),
        was,
        "Ready moved on restart"
    );
    let before = managed_binding_versions(&client).await?;
    assert_eq!(
        before.len(),
        3 * 2 - 3,
        "one ClusterRoleBinding per object: {before:?}"
    );

    // `kubectl get agb -o wide` shows the name.
    let wide = cp
        .kubectl()
        .args(["get", "agb", "entra-group", "-o", "wide"])
        .output()?;
    let wide = String::from_utf8_lossy(&wide.stdout);
    assert!(
        wide.contains("GROUP NAME") && wide.contains("K10 admins"),
        "{wide}"
    );
    assert!(!wide.contains('\u{1b}'), "{wide:?}");

    // Throttled: a new object's group is Unknown, then found once Retry-After has passed; no
    // binding moved meanwhile.
    entra.throttle(Duration::from_secs(4), 2);
    entra.add_group(&late, "Late team", true);
    apply(&client, &object("entra-late", &late)).await?;
    wait_found(&client, "entra-late", "Unknown", "EntraUnavailable").await?;
    wait_for_reason_within(&client, "entra-late", "True", "Reconciled", within).await?;
    wait_found(&client, "entra-late", "True", "Found").await?;
    assert!(
        entra
            .counts
            .throttled
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    );
    let mut after = managed_binding_versions(&client).await?;
    after.retain(|name, _| before.contains_key(name));
    assert_eq!(after, before, "throttling changed a binding");

    // Unreachable: a binding deleted by hand is put back as fast as ever, a new object is bound.
    entra.set_down(true);
    let victim = before.keys().next().cloned().unwrap_or_default();
    crbs(&client).delete(&victim, &Default::default()).await?;
    eventually("the deleted binding back", within, || async {
        Ok(crbs(&client).get_opt(&victim).await?.map(|_| ()))
    })
    .await?;
    let down = object_id(105);
    apply(&client, &object("entra-down", &down)).await?;
    wait_for_reason_within(&client, "entra-down", "True", "Reconciled", within).await?;
    entra.set_down(false);

    // The client secret appears in no output.
    let metrics = running.operator.metrics().unwrap_or_default();
    assert!(
        metrics.contains("groupbinder_entra_lookups_total{result=\"group\"}"),
        "{metrics}"
    );
    drop(running.operator);
    let logs = std::fs::read_to_string(&running.log)?;
    let statuses = cp.kubectl().args(["get", "agb", "-o", "yaml"]).output()?;
    let events = cp
        .kubectl()
        .args(["get", "events", "-A", "-o", "yaml"])
        .output()?;
    for (what, text) in [
        ("log", logs),
        ("metrics", metrics),
        (
            "statuses",
            String::from_utf8_lossy(&statuses.stdout).into_owned(),
        ),
        (
            "events",
            String::from_utf8_lossy(&events.stdout).into_owned(),
        ),
    ] {
        assert!(
            !text.contains(&entra.client_secret),
            "the client secret is in the {what}"
        );
    }
    for name in [
        "entra-group",
        "entra-m365",
        "entra-user",
        "entra-late",
        "entra-down",
    ] {
        agbs(&client).delete(name, &Default::default()).await?;
    }
    Ok(())
}

/// A group deleted in Entra ID while nothing in the cluster changes: the operator asks again when
/// the answer's TTL is up, whatever else happens, so the object says `GroupNotFound` within the
/// TTL and the replication window, and `Reconciled` again within a TTL once the group is back;
/// no binding moves meanwhile.
#[tokio::test]
async fn a_group_deleted_in_entra_is_told_within_the_ttl_and_the_window() -> anyhow::Result<()> {
    let (cp, client, _serial, entra) = setup().await?;
    let group = object_id(110);
    entra.add_group(&group, "Deleted later", true);
    let running = start(
        cp,
        &entra,
        "entra-deleted",
        &[
            ("GROUPBINDER_ENTRA_TTL_SECONDS", "2"),
            ("GROUPBINDER_ENTRA_REPLICATION_WINDOW_SECONDS", "3"),
        ],
    )?;
    apply(&client, &object("entra-deleted", &group)).await?;
    wait_found(&client, "entra-deleted", "True", "Found").await?;
    wait_for_reason_within(
        &client,
        "entra-deleted",
        "True",
        "Reconciled",
        Duration::from_secs(30),
    )
    .await?;
    let before = managed_binding_versions(&client).await?;
    let asked = entra.graph_requests();
    // Asked again every TTL while the answer holds.
    eventually(
        "the group asked about again",
        Duration::from_secs(10),
        || async { Ok((entra.graph_requests() >= asked + 2).then_some(())) },
    )
    .await?;
    entra.remove_group(&group);
    let deleted = std::time::Instant::now();
    wait_for_reason_within(
        &client,
        "entra-deleted",
        "False",
        "GroupNotFound",
        Duration::from_secs(20),
    )
    .await?;
    let told = deleted.elapsed();
    entra.add_group(&group, "Deleted later, restored", true);
    wait_for_reason_within(
        &client,
        "entra-deleted",
        "True",
        "Reconciled",
        Duration::from_secs(20),
    )
    .await?;
    assert_eq!(
        managed_binding_versions(&client).await?,
        before,
        "an answer moved a binding"
    );
    eprintln!(
        "GroupNotFound {:.1} s after the deletion (TTL 2 s, window 3 s)",
        told.as_secs_f64()
    );
    drop(running.operator);
    agbs(&client)
        .delete("entra-deleted", &Default::default())
        .await?;
    Ok(())
}

/// A wrong tenant answers "not found" for every group: that is Entra ID being unusable, said on
/// every object, not twelve groups missing.
#[tokio::test]
async fn a_wrong_tenant_is_unavailable_for_all_not_missing_for_each() -> anyhow::Result<()> {
    let (cp, client, _serial, entra) = setup().await?;
    let running = start(cp, &entra, "entra-wrong-tenant", &[])?;
    let names: Vec<String> = (0..12).map(|i| format!("entra-wrong-{i}")).collect();
    for (i, name) in (0u32..).zip(&names) {
        apply(&client, &object(name, &object_id(300 + i))).await?;
    }
    for name in &names {
        let message = wait_found(&client, name, "Unknown", "EntraUnavailable").await?;
        assert!(message.contains(TENANT), "{message}");
        wait_for_reason_within(&client, name, "True", "Reconciled", Duration::from_secs(30))
            .await?;
    }
    drop(running.operator);
    for name in &names {
        agbs(&client).delete(name, &Default::default()).await?;
    }
    Ok(())
}

/// 1,000 objects: one Graph request each, and none more while their answers are fresh, however
/// often they are reconciled.
#[tokio::test]
async fn a_thousand_objects_cost_one_graph_request_each_per_ttl() -> anyhow::Result<()> {
    let (cp, client, _serial, entra) = setup().await?;
    let n = 1000u32;
    for i in 0..n {
        entra.add_group(&object_id(10_000 + i), &format!("team {i}"), true);
    }
    let running = start(
        cp,
        &entra,
        "entra-scale",
        &[("GROUPBINDER_LOG_LEVEL", "info")],
    )?;
    let api = agbs(&client);
    futures::future::try_join_all((0..n).map(|i| {
        let client = client.clone();
        async move {
            apply(
                &client,
                &object(&format!("entra-scale-{i}"), &object_id(10_000 + i)),
            )
            .await
        }
    }))
    .await?;
    eventually(
        "every object's group found",
        Duration::from_secs(180),
        || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let all = api.list(&ListParams::default()).await?;
            let found = all
                .items
                .iter()
                .filter(|a| a.name_any().starts_with("entra-scale-"))
                .filter(|a| {
                    a.status
                        .iter()
                        .flat_map(|s| &s.conditions)
                        .any(|c| c.type_ == "GroupFound" && c.reason == "Found")
                })
                .count();
            Ok((found == n as usize).then_some(()))
        },
    )
    .await?;
    let asked = entra.graph_requests();
    assert_eq!(asked, u64::from(n), "one request per object");
    // Every object reconciled again (an annotation is an event): nothing asked again.
    futures::future::try_join_all((0..n).map(|i| {
        let api = api.clone();
        async move {
            let patch = serde_json::json!({"metadata": {"annotations": {"touched": "1"}}});
            api.patch(
                &format!("entra-scale-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        }
    }))
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reconciles = running.operator.metrics().unwrap_or_default();
    assert_eq!(entra.graph_requests(), asked, "asked again within the TTL");
    assert!(
        reconciles.contains("groupbinder_reconciles_total"),
        "{reconciles}"
    );
    // Deleted while the operator runs: it deletes their bindings at once (the garbage collector
    // takes minutes for a thousand).
    clean(&client).await?;
    drop(running.operator);
    Ok(())
}

/// `audit`, `import` and `explain-token` name the groups Entra ID knows, escaped, and say which
/// object IDs name no group; offline (`-f`), with the stand-in as Entra ID.
#[tokio::test]
async fn the_commands_name_the_groups() -> anyhow::Result<()> {
    let entra = Entra::start(TENANT)?;
    let (group, user) = (object_id(201), object_id(202));
    entra.add_group(&group, "K10 Admins \u{1b}]0;x\u{7}", true);
    entra.add_user(&user);
    let dir = tempfile::tempdir()?;
    let binding = |name: &str, id: &str| {
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k10-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("{SEED_PREFIX}{id}")}],
        })
    };
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        binding("k10-admins-by-hand", &group),
        binding("k10-user-by-hand", &user),
    ]});
    let file = dir.path().join("bindings.json");
    std::fs::write(&file, list.to_string())?;
    let (secret, ca) = (dir.path().join("secret"), dir.path().join("ca.pem"));
    std::fs::write(&secret, &entra.client_secret)?;
    std::fs::write(&ca, &entra.ca_pem)?;
    let run = |args: &[&str]| -> anyhow::Result<(String, String)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_groupbinder"))
            .args(args)
            .args([
                "--default-group-prefix",
                SEED_PREFIX,
                "--no-k10-from-cluster",
            ])
            .args([
                "--entra-tenant-id",
                TENANT,
                "--entra-client-id",
                &entra.client_id,
            ])
            .arg("--entra-client-secret-file")
            .arg(&secret)
            .args([
                "--entra-authority-host",
                &entra.base,
                "--entra-graph-endpoint",
                &entra.base,
            ])
            .arg("--entra-ca-file")
            .arg(&ca)
            .output()?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let file = file.display().to_string();

    let (audit, _) = run(&["audit", "-f", &file])?;
    assert!(audit.contains("GROUP NAME"), "{audit}");
    assert!(
        audit.contains("K10 Admins \\u{1b}]0;x\\u{7}"),
        "escaped: {audit}"
    );
    assert!(!audit.contains('\u{1b}'), "{audit:?}");
    let user_row = audit
        .lines()
        .find(|l| l.contains("k10-user-by-hand"))
        .unwrap_or_default();
    assert!(user_row.contains("NotAGroup"), "{audit}");

    let (import, warnings) = run(&["import", "-f", &file])?;
    let short: String = group.chars().take(8).collect();
    assert!(
        import.contains(&format!("name: k10-admins-u-1b-0-x-u-7-{short}")),
        "{import}"
    );
    assert!(warnings.contains("the object ID of a user"), "{warnings}");

    let token = groupbinder_e2e::oidc::unsigned(&serde_json::json!({
        "iss": "https://login.microsoftonline.com/t/v2.0", "sub": "alice", "aud": "k10",
        "exp": 4_102_444_800u64, "groups": [group, user],
    }));
    let (explained, _) = run(&[
        "explain-token",
        &token,
        "-f",
        dir.path().to_str().unwrap_or("."),
    ])?;
    assert!(
        explained.contains(&format!(
            "{SEED_PREFIX}{group}  \"K10 Admins \\u{{1b}}]0;x\\u{{7}}\""
        )),
        "{explained}"
    );
    assert!(
        explained.contains("(not a group: the object ID of a user)"),
        "{explained}"
    );
    Ok(())
}
