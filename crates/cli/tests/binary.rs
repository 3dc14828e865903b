//! The `groupbinder` binary itself: its CRD output, its flags, its endpoints, its shutdown.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use groupbinder_e2e::{eventually, install_k10, kubectl_apply, repo, wait_for_reason};
use groupbinder_testenv::{ControlPlane, Options};

fn groupbinder() -> Command {
    Command::new(env!("CARGO_BIN_EXE_groupbinder"))
}

#[test]
fn committed_crd_matches_the_rust_types() -> anyhow::Result<()> {
    let out = groupbinder().arg("crd").output()?;
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout)?;
    let committed = std::fs::read_to_string(repo().join("crds/azuregroupbinding.yaml"))?;
    assert!(
        generated == committed,
        "crds/azuregroupbinding.yaml is out of date: run `make crds` and commit the result"
    );
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(kubeconfig: &Path, port: u16, extra: &[(&str, &str)]) -> anyhow::Result<Child> {
    let mut command = groupbinder();
    command
        .arg("run")
        .env("KUBECONFIG", kubeconfig)
        .env("GROUPBINDER_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
        .env("GROUPBINDER_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    Ok(command.spawn()?)
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response.split_whitespace().nth(1).unwrap_or("0").parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::test]
async fn without_the_crd_it_says_how_to_install_it() -> anyhow::Result<()> {
    let cp = ControlPlane::start(Options {
        without_controller_manager: true,
        ..Options::default()
    })
    .await?;
    let child = run(cp.kubeconfig(), free_port()?, &[])?;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CRD (azuregroupbindings.groupbinder.dev) is not installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("groupbinder crd | kubectl apply -f -"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn runs_the_seed_example_serves_probes_and_metrics_and_stops_on_sigterm() -> anyhow::Result<()>
{
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let _serial = groupbinder_e2e::exclusive().await; // one operator at a time
    // The committed CRD and the example apply as a user would apply them.
    for file in ["crds/azuregroupbinding.yaml", "examples/k10-admins.yaml"] {
        kubectl_apply(cp, &repo().join(file))?;
    }
    install_k10(&client, "k10", "kasten-io").await?;

    let port = free_port()?;
    let mut child = run(
        cp.kubeconfig(),
        port,
        &[
            ("GROUPBINDER_K10_RELEASE", "k10"),
            ("GROUPBINDER_RESYNC_SECONDS", "0"),
            ("GROUPBINDER_LOG_LEVEL", "info,groupbinder_controller=debug"),
        ],
    )?;
    eventually("/readyz to answer 200", Duration::from_secs(30), || async {
        Ok(http_get(port, "/readyz")
            .await
            .ok()
            .filter(|(code, _)| *code == 200)
            .map(|_| ()))
    })
    .await?;
    assert_eq!(http_get(port, "/healthz").await?.0, 200);
    let ready = wait_for_reason(&client, "k10-admins", "True", "Reconciled").await?;
    assert_eq!(
        ready.status.and_then(|s| s.group).as_deref(),
        Some("michael_azure_a318b1eb-8b78-4715-98ad-ffc8670ac79d")
    );

    // The object may be Ready from an earlier test's operator: wait for this one's reconcile.
    let metrics = eventually(
        "this process to reconcile",
        Duration::from_secs(30),
        || async {
            let (code, metrics) = http_get(port, "/metrics").await?;
            let done = code == 200
                && metrics.contains("groupbinder_managed_bindings{kind=\"ClusterRoleBinding\"}");
            Ok(done.then_some(metrics))
        },
    )
    .await?;
    for family in [
        "groupbinder_reconciles_total",
        "groupbinder_reconcile_duration_seconds",
        "groupbinder_managed_bindings",
    ] {
        assert!(
            metrics.contains(family),
            "{family} missing from:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("groupbinder_managed_bindings{kind=\"ClusterRoleBinding\"}"),
        "{metrics}"
    );

    // SIGTERM: a graceful stop with exit code 0; every log line is JSON.
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "{status}");
    let lines: Vec<String> = BufReader::new(stderr).lines().collect::<Result<_, _>>()?;
    assert!(
        lines.iter().any(|l| l.contains("caches synced")),
        "{lines:?}"
    );
    // Other tests of this binary leave the examples' objects on the shared control plane.
    let known = ["k10-admins", "k10-shop-operators", "k10-shop-team"];
    let mut in_span = 0;
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{e}: {line}"))?;
        assert!(
            parsed.get("level").is_some() && parsed.get("message").is_some(),
            "{line}"
        );
        // A reconcile's lines carry its span and the object's name, so one object's story can
        // be followed (the name is never a metric label).
        let span = &parsed["span"];
        if span["name"] == "reconcile" {
            let object = span["object"].as_str().unwrap_or_default();
            assert!(known.contains(&object), "{line}");
            in_span += usize::from(object == "k10-admins");
        }
    }
    assert!(
        in_span > 0,
        "no line in k10-admins' reconcile span: {lines:?}"
    );
    Ok(())
}

/// `groupbinder plan` prints exactly the bindings the controller then creates for the same files.
#[tokio::test]
async fn plan_output_equals_what_the_controller_creates() -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
    use kube::Api;
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    groupbinder_e2e::install_crd(&client).await?;
    install_k10(&client, "k10", "kasten-io").await?;
    let _serial = groupbinder_e2e::exclusive().await;

    // The application team's namespace, labelled for the selector example.
    groupbinder_e2e::ensure_namespace(&client, "shop").await?;
    let patch = serde_json::json!({"metadata": {"labels": {"team": "shop"}}});
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            "shop",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await?;
    let out = groupbinder()
        .args(["plan", "--namespaces-from-cluster", "-f"])
        .arg(repo().join("examples"))
        .env("KUBECONFIG", cp.kubeconfig())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let planned: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8(out.stdout)?)?;
    // k10-admins: admin, ns-admin; k10-shop-operators: config-view, basic in shop;
    // k10-shop-team: basic in every namespace labelled team=shop (shop, here).
    assert_eq!(planned.len(), 5, "{planned:?}");

    let operator = groupbinder_e2e::Operator::start(
        &client,
        groupbinder_e2e::config(groupbinder_api::Settings::for_k10("k10", "kasten-io", "")),
    );
    for file in [
        "examples/k10-admins.yaml",
        "examples/k10-basic-in-shop.yaml",
        "examples/k10-basic-by-team-label.yaml",
    ] {
        kubectl_apply(cp, &repo().join(file))?;
    }
    for name in ["k10-admins", "k10-shop-operators", "k10-shop-team"] {
        wait_for_reason(&client, name, "True", "Reconciled").await?;
    }
    for plan in &planned {
        let name = plan["metadata"]["name"].as_str().unwrap_or_default();
        let mut actual = match plan["metadata"]["namespace"].as_str() {
            Some(ns) => serde_json::to_value(
                Api::<RoleBinding>::namespaced(client.clone(), ns)
                    .get(name)
                    .await?,
            )?,
            None => serde_json::to_value(
                Api::<ClusterRoleBinding>::all(client.clone())
                    .get(name)
                    .await?,
            )?,
        };
        // The server adds what a plan cannot know: uid, resourceVersion, ownerReferences, ... and
        // the owner's uid label.
        let meta = actual["metadata"]
            .as_object_mut()
            .ok_or_else(|| anyhow::anyhow!("no metadata"))?;
        meta.retain(|k, _| ["name", "namespace", "labels"].contains(&k.as_str()));
        if let Some(labels) = meta.get_mut("labels").and_then(|l| l.as_object_mut()) {
            labels.remove(groupbinder_api::names::OWNER_UID_LABEL);
        }
        assert_eq!(&actual, plan, "{name}");
    }
    operator.stop().await
}

/// It stops within 10 s of SIGTERM, whatever the API server does: here one that accepts
/// connections and never answers, as one going away may.
#[test]
fn sigterm_stops_the_process_within_its_deadline_whatever_the_api_server_does() -> anyhow::Result<()>
{
    // Accepts, then holds every connection open without a byte: TLS never completes.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let address = silent.local_addr()?;
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            if let Ok(mut streams) = keep.lock() {
                streams.push(stream);
            }
        }
    });
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: silent\n  cluster:\n    server: https://{address}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context: {{cluster: silent, user: u}}\ncurrent-context: c\n"
        ),
    )?;
    let mut child = run(&kubeconfig, free_port()?, &[])?;
    let mut stderr = BufReader::new(
        child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?,
    );
    let mut line = String::new();
    stderr.read_line(&mut line)?; // "starting groupbinder": the process is up
    // Let it get stuck in its first request.
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait()?.is_none(), "it should still be waiting");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let signalled = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            anyhow::bail!("still running 15 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM with {status}");
    assert!(took <= Duration::from_secs(11), "{took:?}");
    Ok(())
}

/// An allowlist that names none of K10's roles (empty, or a typo) would revoke every grant in
/// the cluster at the next rollout: `run` refuses it before it touches the cluster, saying why,
/// unless `--allow-non-k10-roles` says it is meant.
#[test]
fn run_refuses_an_allowlist_of_no_k10_role_unless_told() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let nowhere = dir.path().join("no-kubeconfig");
    for allowed in ["", "k10-adnim", "shop/k10-ns-admin"] {
        let out = groupbinder()
            .args(["run", "--allowed-roles", allowed])
            .env("KUBECONFIG", &nowhere)
            .env("GROUPBINDER_METRICS_ADDRESS", "127.0.0.1:0")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{allowed:?} was accepted: {stderr}");
        assert!(
            stderr.contains("names none of K10's roles")
                && stderr.contains("--allow-non-k10-roles"),
            "{allowed:?}: {stderr}"
        );
    }
    // Told so, it goes on (and fails later, for want of a cluster).
    let out = groupbinder()
        .args([
            "run",
            "--allowed-roles",
            "k10-adnim",
            "--allow-non-k10-roles",
        ])
        .env("KUBECONFIG", &nowhere)
        .env("GROUPBINDER_METRICS_ADDRESS", "127.0.0.1:0")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("names none of K10's roles"), "{stderr}");
    Ok(())
}

/// The metrics and health port is bounded: 1,000 connections that each send half a request (a
/// long header, never finished) cost the process little memory, a probe still gets its answer
/// while they are open, and every one of them is closed after the header-read timeout.
#[tokio::test]
async fn half_sent_requests_cannot_exhaust_the_health_port() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        soft.max(4096).min(hard),
        hard,
    )?;
    let cp = ControlPlane::shared().await?;
    let _serial = groupbinder_e2e::exclusive().await; // one operator at a time
    kubectl_apply(cp, &repo().join("crds/azuregroupbinding.yaml"))?;
    let port = free_port()?;
    let mut child = run(cp.kubeconfig(), port, &[])?;
    let pid = child.id();
    let up = eventually("/healthz to answer", Duration::from_secs(30), || async {
        Ok(http_get(port, "/healthz")
            .await
            .ok()
            .filter(|(c, _)| *c == 200))
    })
    .await;
    if let Err(error) = up {
        let _ = child.kill();
        let out = child.wait_with_output()?;
        anyhow::bail!("{error}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let before_kib = groupbinder_e2e::proc_status_kib(pid, "VmRSS:");
    assert!(before_kib > 0, "no VmRSS for {pid}");
    let mut held = Vec::new();
    let header = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {}",
        "a".repeat(4000)
    );
    for _ in 0..1000 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(header.as_bytes()).await?;
        held.push(stream);
    }
    let opened = std::time::Instant::now();
    // A probe made now, with all of them open, is answered.
    let probe = tokio::time::timeout(Duration::from_secs(2), http_get(port, "/healthz")).await;
    assert!(
        matches!(probe, Ok(Ok((200, _)))),
        "/healthz with 1,000 half-sent requests open: {probe:?}"
    );
    let peak_kib = groupbinder_e2e::proc_status_kib(pid, "VmHWM:");
    // Every one is closed by the server: the oldest to make room, the rest after the timeout.
    let mut closed = 0;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        let left = Duration::from_secs(10).saturating_sub(opened.elapsed());
        match tokio::time::timeout(left.max(Duration::from_millis(10)), stream.read(&mut byte))
            .await
        {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // an error response, then the close
            Err(_) => {}
        }
    }
    let waited = opened.elapsed();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid)?),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    eprintln!(
        "RSS {before_kib} KiB before, peak {peak_kib} KiB; {closed} of 1000 closed within {waited:?}"
    );
    assert_eq!(closed, 1000, "connections still open after {waited:?}");
    assert!(
        peak_kib < 128 * 1024,
        "peak RSS {peak_kib} KiB over the chart's 128 MiB limit"
    );
    assert!(
        peak_kib < before_kib + 32 * 1024,
        "1,000 half-sent requests took {} KiB",
        peak_kib - before_kib
    );
    Ok(())
}

/// `groupbinder --help` says what the binary is for, command by command.
#[test]
fn help_describes_every_command() -> anyhow::Result<()> {
    let out = groupbinder().arg("--help").output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(
        help.starts_with("Maps Entra ID (Azure AD) groups to Kasten K10 roles"),
        "{help}"
    );
    for command in ["run", "crd", "plan", "explain-token", "import", "audit"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} is not described: {help}"
        );
        assert!(
            help.contains(&format!("({command}"))
                || help.contains(&format!(", {command}"))
                || help.contains(&format!("{command})")),
            "the summary names {command}: {help}"
        );
    }
    Ok(())
}
