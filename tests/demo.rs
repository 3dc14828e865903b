//! `make demo`: the main job of groupbinder, end to end, on a local control plane.
//!
//! Boots etcd, kube-apiserver and kube-controller-manager; installs the CRD and K10's roles (as
//! fixtures: groupbinder binds them by name); runs the `groupbinder` binary; applies the seed's
//! AzureGroupBinding; shows what it created and what the group's members may now do; binds an
//! application team by namespace label; migrates hand-written bindings with `audit` and `import`.
//! Exits non-zero if anything is not as shown.
//!
//! `groupbinder-demo --node` (`make demo-node`) tells the same story with the operator as users
//! run it: the image, installed by the chart as a pod on a real node (root; `make image` first).

use std::process::{Command, ExitCode, Stdio};

use groupbinder_e2e::{
    OperatorProcess, SEED_GUID, SEED_PREFIX, Who, entra_oidc, install_k10, install_k10_oidc, repo,
};
use groupbinder_testenv::{ControlPlane, Options};

fn section(title: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m");
}

/// Runs `command`, echoing it as `$ kubectl ...` and printing its output.
fn show(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    println!("$ kubectl {}", args.join(" "));
    let out = cp.kubectl().args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    Ok(text)
}

/// Runs the `groupbinder` binary against the demo's cluster, echoing it; returns its standard
/// output and exit code (standard error is printed).
fn run_groupbinder(
    cp: &ControlPlane,
    binary: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<(String, Option<i32>)> {
    println!("$ groupbinder {}", args.join(" "));
    let out = Command::new(binary)
        .args(args)
        .env("KUBECONFIG", cp.kubeconfig())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    Ok((stdout, out.status.code()))
}

fn check(ok: bool, what: &str) -> anyhow::Result<()> {
    if ok {
        println!("   \x1b[32m✓\x1b[0m {what}");
        Ok(())
    } else {
        anyhow::bail!("demo failed: {what}")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> anyhow::Result<()> {
    let groupbinder = std::env::current_exe()?.with_file_name("groupbinder");
    anyhow::ensure!(
        groupbinder.is_file(),
        "{} not built: run `make demo`",
        groupbinder.display()
    );

    let on_node = std::env::args().any(|a| a == "--node");
    section(if on_node {
        "A local control plane with a node (containerd, kubelet, kube-scheduler)"
    } else {
        "A local control plane"
    });
    let cp = ControlPlane::start(Options {
        node: on_node,
        ..Options::default()
    })
    .await?;
    println!(
        "Kubernetes {} at {} (kubeconfig {})",
        cp.binaries().versions.kubernetes,
        cp.server(),
        cp.kubeconfig().display()
    );
    let client = cp.client().await?;

    section(
        "K10's roles (fixtures of K10 9.0.7's Helm chart), its OIDC settings, and the AzureGroupBinding CRD",
    );
    install_k10(&client, "k10", "kasten-io").await?;
    install_k10_oidc(
        &client,
        "kasten-io",
        "k10-oidc-auth",
        &entra_oidc("michael-azure_"),
    )
    .await?;
    show(
        &cp,
        &[
            "get",
            "clusterroles,roles",
            "-A",
            "-l",
            "k10.kasten.io/default-rbac-object=true",
        ],
    )?;
    show(
        &cp,
        &[
            "apply",
            "--server-side",
            "-f",
            &repo()
                .join("crds/azuregroupbinding.yaml")
                .display()
                .to_string(),
        ],
    )?;

    let log = cp.dir().join("groupbinder.log");
    let operator = if on_node {
        section("helm install: the image, as a pod on the node");
        let image = groupbinder_e2e::image_tarball()?;
        cp.import_image(&image)?;
        let chart = repo().join("charts/groupbinder").display().to_string();
        let args = [
            "install",
            "groupbinder",
            &chart,
            "-n",
            "groupbinder-system",
            "--create-namespace",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "120s",
        ];
        println!("$ helm {}", args.join(" "));
        let out = cp.helm().args(args).output()?;
        print!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        check(
            out.status.success(),
            "the chart is installed and its Deployment Available",
        )?;
        let pods = show(
            &cp,
            &["get", "pods", "-n", "groupbinder-system", "-o", "wide"],
        )?;
        check(
            pods.contains("1/1") && pods.contains("Running"),
            "the pod runs on the node, its probes passing",
        )?;
        Operator::Pod
    } else {
        section("groupbinder run");
        let operator = OperatorProcess::spawn(
            &groupbinder,
            cp.kubeconfig(),
            &[],
            std::fs::File::create(&log)?.into(),
        )?;
        println!(
            "operator pid {} (release k10 in kasten-io; allowlist k10-admin, k10-mc-admin, k10-ns-admin, k10-basic, k10-config-view)",
            operator.id()
        );
        Operator::Process(operator)
    };

    let result = async {
        section("The seed scenario: one AzureGroupBinding instead of two hand-written bindings");
        let example = repo().join("examples/k10-admins.yaml");
        print!("{}", std::fs::read_to_string(&example)?);
        show(&cp, &["apply", "--server-side", "-f", &example.display().to_string()])?;

        section("K10's live OIDC settings: a typo in K10's groupPrefix is caught, then fixed in K10, live");
        println!("K10's OIDC Secret says groupPrefix michael-azure_ (a hyphen for an underscore):");
        show(&cp, &["get", "secret", "k10-oidc-auth", "-n", "kasten-io", "-o", "jsonpath={.data.groupPrefix}"])?;
        println!();
        show(&cp, &["wait", "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}=PrefixMismatch", "azuregroupbinding/k10-admins", "--timeout=60s"])?;
        let caught = show(&cp, &["get", "agb"])?;
        check(caught.contains("PrefixMismatch") && caught.contains("False"), "the typo is caught: Ready=False, PrefixMismatch")?;
        show(&cp, &["get", "agb", "k10-admins", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}"])?;
        println!();
        show(&cp, &["patch", "secret", "k10-oidc-auth", "-n", "kasten-io", "--type", "merge", "-p", &format!("{{\"stringData\":{{\"groupPrefix\":\"{SEED_PREFIX}\"}}}}")])?;
        show(&cp, &["wait", "--for=condition=Ready", "azuregroupbinding/k10-admins", "--timeout=60s"])?;
        let table = show(&cp, &["get", "agb"])?;
        check(table.contains("Presented"), "K10, as configured now, presents the group (K10Presents=True), no restart")?;
        check(table.contains("True") && table.contains(&format!("{SEED_PREFIX}{SEED_GUID}")), "k10-admins is Ready for the prefixed group")?;

        section("What groupbinder created");
        show(&cp, &["get", "clusterrolebindings,rolebindings", "-A", "-l", "app.kubernetes.io/managed-by=groupbinder", "-o", "wide"])?;

        section("What a member of the group may do now (the API server's RBAC authorizer decides)");
        let group = format!("{SEED_PREFIX}{SEED_GUID}");
        // The authorizer reads bindings from its own watch cache: give it the moment it needs.
        Who::new(&client, "alice@example.com", &[group.as_str()]).may("get", "", "secrets", Some("kasten-io")).await?;
        let can = |user: &str, group: &str, args: &[&str]| -> anyhow::Result<bool> {
            let mut full = vec!["auth", "can-i"];
            full.extend_from_slice(args);
            full.extend_from_slice(&["--as", user, "--as-group", group, "--as-group", "system:authenticated"]);
            Ok(show(&cp, &full)?.trim() == "yes")
        };
        check(can("alice@example.com", &group, &["create", "backupactions.actions.kio.kasten.io", "-n", "kasten-io"])?, "a member can create a K10 backup action")?;
        check(can("alice@example.com", &group, &["get", "secrets", "-n", "kasten-io"])?, "a member can read K10's secrets in kasten-io (k10-ns-admin)")?;
        check(!can("alice@example.com", &group, &["get", "secrets", "-n", "default"])?, "a member cannot read Secrets in any other namespace (k10-mc-admin, which would grant them all, is bound only where named)")?;
        check(!can("alice@example.com", &group, &["delete", "nodes"])?, "a member cannot delete nodes")?;
        check(!can("alice@example.com", &group, &["create", "clusterrolebindings"])?, "a member cannot grant RBAC")?;
        let upper = format!("{SEED_PREFIX}{}", SEED_GUID.to_uppercase());
        check(!can("bob@example.com", &upper, &["create", "backupactions.actions.kio.kasten.io", "-n", "kasten-io"])?, "the upper-case spelling of the GUID is another group, and gets nothing")?;

        section("Application teams by label: K10's basic role in every namespace labelled team=shop");
        show(&cp, &["create", "namespace", "shop"])?;
        show(&cp, &["label", "namespace", "shop", "team=shop"])?;
        let teams = repo().join("examples/k10-basic-by-team-label.yaml");
        show(&cp, &["apply", "--server-side", "-f", &teams.display().to_string()])?;
        show(&cp, &["wait", "--for=condition=Ready", "azuregroupbinding/k10-shop-team", "--timeout=60s"])?;
        show(&cp, &["create", "namespace", "shop-staging"])?;
        show(&cp, &["label", "namespace", "shop-staging", "team=shop"])?;
        let shop = "michael_azure_7c2d4e6f-8a9b-4c1d-9e2f-3a4b5c6d7e8f";
        Who::new(&client, "dev@example.com", &[shop]).may("create", "actions.kio.kasten.io", "backupactions", Some("shop-staging")).await?;
        show(&cp, &["wait", "--for=jsonpath={.status.selectedNamespaces.count}=2", "azuregroupbinding/k10-shop-team", "--timeout=60s"])?;
        let wide = show(&cp, &["get", "agb", "k10-shop-team", "-o", "wide"])?;
        check(wide.contains("shop-staging"), "a namespace labelled later is bound too, and counted")?;
        check(can("dev@example.com", shop, &["create", "backupactions.actions.kio.kasten.io", "-n", "shop-staging"])?, "a shop developer can back up shop-staging")?;
        check(!can("dev@example.com", shop, &["create", "backupactions.actions.kio.kasten.io", "-n", "kasten-io"])?, "but not in K10's own namespace")?;

        section("Migrating hand-written bindings: audit, import, delete what became redundant, audit");
        let hand = repo().join("tests/golden/hand-written.yaml");
        show(&cp, &["apply", "-f", &hand.display().to_string()])?;
        let prefix = ["--default-group-prefix", SEED_PREFIX];
        let audit = |cp: &ControlPlane| run_groupbinder(cp, &groupbinder, &["audit", prefix[0], prefix[1]]);
        let (before, code) = audit(&cp)?;
        check(code == Some(1) && before.contains("UpperCaseGuid") && before.contains("PrefixMismatch"), "audit finds the hand-written grants and their typos (exit code 1)")?;
        let (imported, _) = run_groupbinder(&cp, &groupbinder, &["import", prefix[0], prefix[1]])?;
        let file = cp.dir().join("imported.yaml");
        std::fs::write(&file, &imported)?;
        show(&cp, &["apply", "--server-side", "-f", &file.display().to_string()])?;
        show(&cp, &["wait", "--for=condition=Ready", "azuregroupbinding", "-l", "!nothing", "--all", "--timeout=60s"])?;
        let (redundant, _) = run_groupbinder(&cp, &groupbinder, &["import", "--redundant", prefix[0], prefix[1]])?;
        // `groupbinder import --redundant | kubectl delete -f -`: a List of references, data.
        let redundant_file = cp.dir().join("redundant.yaml");
        std::fs::write(&redundant_file, &redundant)?;
        show(&cp, &["delete", "-f", &redundant_file.display().to_string()])?;
        let (after, _) = audit(&cp)?;
        // Rows of the table, not the legend under it.
        let unmanaged = |table: &str| table.lines().filter(|l| l.contains("NotManaged") && !l.trim_start().starts_with("NotManaged:")).count();
        check(unmanaged(&after) == 4 && unmanaged(&before) == 9, "afterwards only what import could not express is hand-written: a user, a ServiceAccount, two typos")?;

        section("A typo is refused at the door");
        let typo = "apiVersion: groupbinder.dev/v1alpha1\nkind: AzureGroupBinding\nmetadata: {name: typo}\nspec: {groupObjectId: A318B1EB-8B78-4715-98AD-FFC8670AC79D}\n";
        println!("$ kubectl apply -f - <<< '{{groupObjectId: A318B1EB-...}}'");
        let mut child = cp.kubectl().args(["apply", "--server-side", "-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, typo.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        print!("{}", String::from_utf8_lossy(&out.stderr));
        check(!out.status.success(), "an upper-case GUID is rejected with a message that says how to fix it")?;
        anyhow::Ok(())
    }
    .await;

    let operator_log = match operator {
        Operator::Process(mut operator) => {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(operator.id().to_string())
                .status();
            let _ = operator.child().wait();
            std::fs::read_to_string(&log).unwrap_or_default()
        }
        Operator::Pod => {
            let logs = cp
                .kubectl()
                .args(["logs", "-n", "groupbinder-system", "deploy/groupbinder"])
                .output()?;
            String::from_utf8_lossy(&logs.stdout).into_owned()
        }
    };
    if result.is_err() {
        eprintln!("--- operator log ---\n{operator_log}");
    }
    result?;
    section(if on_node {
        "Done: the node, its pods, the control plane are stopped and removed"
    } else {
        "Done: the control plane and operator are stopped and removed"
    });
    Ok(())
}

/// Where the operator runs: a host process, or the chart's pod on the node.
enum Operator {
    Process(OperatorProcess),
    Pod,
}
