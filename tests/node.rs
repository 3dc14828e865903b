//! The way users run groupbinder: its image, installed by its chart, as a pod on a real node
//! (kubelet, containerd, runc, the CNI bridge). Nothing here runs the binary as a host process.
//!
//! Needs root, the Debian packages `make node-deps` installs and the image `make image` builds:
//! `make test-node` (part of `make test`) runs it. One test, in steps, as one node serves it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use groupbinder_api::AzureGroupBinding;
use groupbinder_e2e::*;
use groupbinder_testenv::{ControlPlane, Options};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};

const RELEASE: &str = "groupbinder";
const NAMESPACE: &str = "groupbinder-system";
const SELECTOR: &str = "app.kubernetes.io/name=groupbinder,app.kubernetes.io/instance=groupbinder";
const REPOSITORY: &str = "ghcr.io/groupbinder/groupbinder";

/// The largest number of AzureGroupBindings the README says the chart's default memory limit
/// holds through a restart.
const SUPPORTED_OBJECTS: usize = 6_000;

/// The chart's default memory limit (`resources.limits.memory: 128Mi`).
const DEFAULT_LIMIT: u64 = 128 * 1024 * 1024;

/// The lease duration the operator uses (its default, which the chart keeps).
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// The image tarball from `make image`, tagged `REPOSITORY:<the chart's appVersion>`.
fn image() -> anyhow::Result<(PathBuf, String)> {
    let tarball = image_tarball()?;
    let chart = std::fs::read_to_string(repo().join("charts/groupbinder/Chart.yaml"))?;
    let tag = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .ok_or_else(|| anyhow::anyhow!("Chart.yaml has no appVersion"))?;
    Ok((tarball, tag))
}

/// Runs helm as the admin, failing with what it printed.
fn helm(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<String> {
    succeeded(
        cp.helm().args(args).output()?,
        &format!("helm {}", args.join(" ")),
    )
}

/// `helm install` or `helm upgrade` of the chart, unchanged, with values only.
fn helm_release(cp: &ControlPlane, verb: &str, tag: &str, values: &[&str]) -> anyhow::Result<()> {
    let chart = chart_dir();
    let image_repository = format!("image.repository={REPOSITORY}");
    let image_tag = format!("image.tag={tag}");
    let mut args = vec![
        verb,
        RELEASE,
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--set",
        &image_repository,
        "--set",
        &image_tag,
        // Never pull: the image is on the node, and no registry may be reached.
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "k10.release=k10",
        "--set",
        "k10.namespace=kasten-io",
    ];
    if verb == "install" {
        args.push("--create-namespace");
    }
    for value in values {
        args.extend(["--set", value]);
    }
    helm(cp, &args).map(drop)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The chart's pods that are Ready (and not being deleted).
async fn ready_pods(client: &kube::Client) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let listed = pods.list(&ListParams::default().labels(SELECTOR)).await?;
    Ok(listed.items.into_iter().filter(pod_ready).collect())
}

/// Waits until the Deployment is Available with `replicas` updated, ready pods and no old ones
/// (its probes pass: a pod is Ready only when its readiness probe answers), and returns them.
async fn available(
    client: &kube::Client,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<Vec<Pod>> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    eventually(
        &format!("{replicas} available replicas"),
        timeout,
        || async {
            let d = deployments.get(RELEASE).await?;
            let status = d.status.clone().unwrap_or_default();
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas == Some(replicas)
                && status.available_replicas == Some(replicas)
                && status.replicas == Some(replicas)
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Available" && c.status == "True");
            let pods = ready_pods(client).await?;
            Ok((done && pods.len() == usize::try_from(replicas)?).then_some(pods))
        },
    )
    .await
}

/// The status of `pod`'s one container, groupbinder.
fn container(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()
}

/// The host pid of `pod`'s groupbinder container.
fn pid_of(cp: &ControlPlane, pod: &Pod) -> anyhow::Result<u32> {
    let id = container(pod)
        .and_then(|c| c.container_id.clone())
        .ok_or_else(|| anyhow::anyhow!("{} has no container id", pod.name_any()))?;
    let id = id.trim_start_matches("containerd://");
    cp.container_pid(id)?
        .ok_or_else(|| anyhow::anyhow!("no running task {id} for {}", pod.name_any()))
}

/// A field of `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> anyhow::Result<String> {
    proc_status(pid, field).ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// The memory cgroup (v1) directory of `pid`.
fn memory_cgroup(pid: u32) -> anyhow::Result<PathBuf> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("pid {pid} has no memory cgroup (v1)"))?;
    Ok(PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')))
}

fn read_number(file: PathBuf) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(text.trim().parse()?)
}

/// What the kernel enforces on the container's process: the pod's securityContext and limit.
fn check_enforced(pid: u32) -> anyhow::Result<()> {
    assert_eq!(status_field(pid, "Uid:")?, "65532 65532 65532 65532");
    assert_eq!(status_field(pid, "Gid:")?, "65532 65532 65532 65532");
    // allowPrivilegeEscalation: false; seccomp RuntimeDefault (2: filter mode); no capabilities.
    assert_eq!(status_field(pid, "NoNewPrivs:")?, "1");
    assert_eq!(status_field(pid, "Seccomp:")?, "2");
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(status_field(pid, set)?, "0000000000000000", "{set}");
    }
    // readOnlyRootFilesystem: the container's / is mounted read-only.
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    let root = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .ok_or_else(|| anyhow::anyhow!("no / in the container's mounts"))?;
    let options = root.split(' ').nth(5).unwrap_or_default();
    assert!(options.split(',').any(|o| o == "ro"), "/ mounted {options}");
    // The chart's memory limit is the container's cgroup limit.
    let limit = read_number(memory_cgroup(pid)?.join("memory.limit_in_bytes"))?;
    assert_eq!(limit, DEFAULT_LIMIT, "memory.limit_in_bytes");
    Ok(())
}

/// GET `http://<pod ip>:8080<path>` from the host, over the node's bridge.
fn pod_http(pod: &Pod, path: &str) -> anyhow::Result<String> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| anyhow::anyhow!("{} has no IP", pod.name_any()))?;
    Ok(http_get((ip.as_str(), 8080), path)?)
}

/// The pod's count of reconciles (0 before its first).
fn pod_reconciles(pod: &Pod) -> anyhow::Result<f64> {
    let text = pod_http(pod, "/metrics")?;
    Ok(metric(&text, "groupbinder_reconciles_total").unwrap_or(0.0))
}

/// When `pod`'s container started, and how long after that it logged that its caches had synced,
/// that it had read K10's settings, and that the kubelet saw it Ready.
async fn timeline(pods: &Api<Pod>, pod: &Pod) -> anyhow::Result<String> {
    use k8s_openapi::jiff::Timestamp;
    let status = pod.status.clone().unwrap_or_default();
    let started = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
        .map(|t| t.0);
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.clone())
        .map(|t| t.0);
    let log = pods
        .logs(
            &pod.name_any(),
            &kube::api::LogParams {
                timestamps: true,
                ..Default::default()
            },
        )
        .await?;
    let logged = |what: &str| -> Option<Timestamp> {
        let line = log.lines().find(|l| l.contains(what))?;
        line.split_whitespace().next()?.parse().ok()
    };
    let after = |t: Option<Timestamp>| match (started, t) {
        (Some(s), Some(t)) => format!("{:+.1} s", (t - s).total(jiff_seconds()).unwrap_or(0.0)),
        _ => "never".to_owned(),
    };
    Ok(format!(
        "container started; caches synced {}; K10's settings read {}; Ready {}",
        after(logged("caches synced")),
        after(logged("K10's OIDC settings")),
        after(ready),
    ))
}

fn jiff_seconds() -> k8s_openapi::jiff::Unit {
    k8s_openapi::jiff::Unit::Second
}

async fn lease_holder(client: &kube::Client) -> anyhow::Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    Ok(leases
        .get_opt(RELEASE)
        .await?
        .and_then(|l| l.spec?.holder_identity))
}

/// How many of `pods` report holding leadership: only a leader reconciles, so only a leader's
/// reconcile counter moves.
fn reconciling(pods: &[Pod]) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for pod in pods {
        if pod_reconciles(pod)? > 0.0 {
            names.push(pod.name_any());
        }
    }
    Ok(names)
}

/// Deletes the seed's ClusterRoleBinding and waits until `who` has put it back.
async fn repaired(client: &kube::Client, who: &str) -> anyhow::Result<()> {
    crbs(client)
        .delete("k10-admins:k10-admin", &DeleteParams::default())
        .await?;
    eventually(
        &format!("{who} to repair the deleted binding"),
        Duration::from_secs(30),
        || async { Ok(crbs(client).get_opt("k10-admins:k10-admin").await?) },
    )
    .await
    .map(drop)
}

fn restarts(pod: &Pod) -> i32 {
    container(pod).map_or(0, |c| c.restart_count)
}

#[tokio::test]
#[ignore = "needs root, a node and the image: make test-node"]
async fn the_chart_runs_on_a_real_node() -> anyhow::Result<()> {
    logs();
    let cp = std::sync::OnceLock::new();
    let result = story(&cp).await;
    if let (Err(_), Some(cp)) = (&result, cp.get()) {
        diagnose(cp);
    }
    result
}

/// What a failed run leaves to look at: pods, their events, the operator's and kubelet's logs.
fn diagnose(cp: &ControlPlane) {
    for args in [
        &["get", "pods", "-A", "-o", "wide"][..],
        &["describe", "pods", "-n", NAMESPACE],
        &["logs", "-n", NAMESPACE, "-l", SELECTOR, "--tail", "30"],
    ] {
        if let Ok(out) = cp.kubectl().args(args).output() {
            eprintln!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    if let Some(log) = cp.kubelet_log_tail(40) {
        eprintln!("--- kubelet.log (last 40 lines) ---\n{log}");
    }
}

/// The story, in steps; `slot` keeps the control plane for [`diagnose`] when a step fails.
async fn story(slot: &std::sync::OnceLock<ControlPlane>) -> anyhow::Result<()> {
    let (tarball, tag) = image()?;
    let started = Instant::now();
    let cp = ControlPlane::start(Options {
        node: true,
        ..Options::default()
    })
    .await?;
    let cp = slot.get_or_init(|| cp);
    eprintln!(
        "control plane and node Ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cp.import_image(&tarball)?;
    let client = cp.client().await?;
    install_k10(&client, "k10", "kasten-io").await?;
    // K10's live OIDC settings, as a running K10 keeps them: the pod reads them with its own
    // token (the chart grants exactly this Secret, by name).
    install_seed_k10_oidc(&client).await?;

    // 1. helm install: the Deployment becomes Available, its probes passing.
    helm_release(cp, "install", &tag, &[])?;
    let pods = available(&client, 1, Duration::from_secs(120)).await?;
    let first = &pods[0];
    for path in ["/healthz", "/readyz"] {
        let answer = pod_http(first, path)?;
        let status = answer.lines().next().unwrap_or_default();
        assert!(status.contains(" 200 "), "{path}: {status}");
    }
    let pid = pid_of(cp, first)?;
    check_enforced(pid)?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.get("azuregroupbindings.groupbinder.dev").await?;

    // 2. The seed: Ready, and the group's access as the RBAC authorizer decides it.
    kubectl_apply(cp, &repo().join("examples/k10-admins.yaml"))?;
    wait_for_reason_within(
        &client,
        "k10-admins",
        "True",
        "Reconciled",
        Duration::from_secs(60),
    )
    .await?;
    eventually(
        "the pod to read K10's OIDC Secret: K10Presents=True",
        Duration::from_secs(30),
        || async {
            let agb = agbs(&client).get("k10-admins").await?;
            let presented =
                agb.status.iter().flat_map(|s| &s.conditions).any(|c| {
                    c.type_ == "K10Presents" && c.status == "True" && c.reason == "Presented"
                });
            Ok(presented.then_some(()))
        },
    )
    .await?;
    let group = format!("{SEED_PREFIX}{SEED_GUID}");
    let member = ["system:authenticated", group.as_str()];
    let alice = Who::new(&client, "alice@example.com", &member);
    alice.administers_k10().await?;
    eprintln!(
        "the pod at rest with the seed: RSS {:.1} MiB (peak {:.1} MiB)",
        proc_status_kib(pid, "VmRSS:") as f64 / 1024.0,
        proc_status_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    alice
        .may_not(
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        )
        .await?;
    let upper = group.to_uppercase();
    let shouting = ["system:authenticated", upper.as_str()];
    Who::new(&client, "bob@example.com", &shouting)
        .may_not(
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("app"),
        )
        .await?;

    // 3. kubectl delete pod: a new pod takes over, and drift is still repaired.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods_api
        .delete(&first.name_any(), &DeleteParams::default())
        .await?;
    let replaced = eventually("a new pod", Duration::from_secs(120), || async {
        let pods = ready_pods(&client).await?;
        Ok(pods.into_iter().find(|p| p.name_any() != first.name_any()))
    })
    .await?;
    repaired(&client, "the new pod").await?;
    alice.administers_k10().await?;
    eprintln!(
        "{} took over from {}",
        replaced.name_any(),
        first.name_any()
    );

    // 4. Two replicas: exactly one leader; deleting it moves leadership within the lease duration.
    helm_release(cp, "upgrade", &tag, &["replicaCount=2"])?;
    let pods = available(&client, 2, Duration::from_secs(120)).await?;
    let leader = eventually("a lease holder", Duration::from_secs(60), || async {
        lease_holder(&client).await
    })
    .await?;
    assert!(
        pods.iter().any(|p| p.name_any() == leader),
        "lease holder {leader} is not one of the pods"
    );
    // Make the leader reconcile, then only it may have.
    kubectl_apply(cp, &repo().join("examples/k10-basic-in-shop.yaml"))?;
    let leaders = eventually("one pod reconciling", Duration::from_secs(30), || async {
        let names = reconciling(&pods)?;
        Ok((!names.is_empty()).then_some(names))
    })
    .await?;
    assert_eq!(leaders, std::slice::from_ref(&leader), "reconciling pods");
    let deleted = Instant::now();
    pods_api.delete(&leader, &DeleteParams::default()).await?;
    let next = eventually("another lease holder", 2 * LEASE_DURATION, || async {
        Ok(lease_holder(&client)
            .await?
            .filter(|holder| *holder != leader))
    })
    .await?;
    let moved = deleted.elapsed();
    eprintln!("leadership moved from {leader} to {next} in {moved:?}");
    assert!(moved <= LEASE_DURATION, "leadership took {moved:?}");
    repaired(&client, "the new leader").await?;

    // 5. helm upgrade with a changed value rolls the pods.
    let before: Vec<String> = available(&client, 2, Duration::from_secs(120))
        .await?
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    helm_release(
        cp,
        "upgrade",
        &tag,
        &["replicaCount=1", "resyncSeconds=300"],
    )?;
    let rolled = eventually("the rolled pod", Duration::from_secs(120), || async {
        let pods = available(&client, 1, Duration::from_secs(1)).await.ok();
        Ok(pods.and_then(|p| p.into_iter().find(|p| !before.contains(&p.name_any()))))
    })
    .await?;
    let env = rolled
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "GROUPBINDER_RESYNC_SECONDS")
        .and_then(|e| e.value.clone());
    assert_eq!(env.as_deref(), Some("300"));

    // 6. The memory limit is real: a restart with the largest supported number of objects in
    // place stays inside it (no OOM kill).
    restart_at_scale(cp, &client).await?;

    // 7. helm uninstall leaves the CRD and the AzureGroupBindings (all 6,001 of them).
    helm(
        cp,
        &["uninstall", RELEASE, "--namespace", NAMESPACE, "--wait"],
    )?;
    crds.get("azuregroupbindings.groupbinder.dev").await?;
    agbs(&client).get("k10-admins").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the Deployment gone", Duration::from_secs(60), || async {
        Ok(deployments.get_opt(RELEASE).await?.is_none().then_some(()))
    })
    .await?;
    eventually("the pods gone", Duration::from_secs(60), || async {
        let pods = pods_api
            .list(&ListParams::default().labels(SELECTOR))
            .await?;
        Ok(pods.items.is_empty().then_some(()))
    })
    .await?;
    cp.shutdown();
    Ok(())
}

/// Creates [`SUPPORTED_OBJECTS`] AzureGroupBindings, waits until the pod has made their bindings,
/// deletes the pod and measures its successor's start: every object confirmed, peak RSS and the
/// cgroup's peak usage under the limit, no OOM kill, no restart.
async fn restart_at_scale(cp: &ControlPlane, client: &kube::Client) -> anyhow::Result<()> {
    let n = SUPPORTED_OBJECTS;
    let api = agbs(client);
    let created = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("scale-{i}")).collect();
    futures::stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let api = api.clone();
            async move {
                let spec = groupbinder_api::AzureGroupBindingSpec {
                    group_object_id: guid(u32::try_from(i)? + 10_000),
                    ..seed_spec()
                };
                api.create(&PostParams::default(), &AzureGroupBinding::new(name, spec))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    eprintln!(
        "{n} AzureGroupBindings created in {:.1} s",
        created.elapsed().as_secs_f64()
    );
    eventually("every object Ready", Duration::from_secs(600), || async {
        // A list of every object is heavy on the API server the pod uses: once a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all = api.list(&ListParams::default()).await?;
        let ready = all
            .items
            .iter()
            .filter(|a| a.name_any().starts_with("scale-"))
            .filter(|a| ready(a).is_some_and(|c| c.status == "True"))
            .count();
        Ok((ready == n).then_some(()))
    })
    .await?;
    let pods = available(client, 1, Duration::from_secs(60)).await?;
    let steady = &pods[0];
    let steady_rss = proc_status_kib(pid_of(cp, steady)?, "VmRSS:");

    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods_api
        .delete(&steady.name_any(), &DeleteParams::default())
        .await?;
    let restarted = Instant::now();
    let next = eventually("the next pod", Duration::from_secs(120), || async {
        let pods = ready_pods(client).await?;
        Ok(pods.into_iter().find(|p| p.name_any() != steady.name_any()))
    })
    .await?;
    let total = f64::from(u32::try_from(n)?);
    eventually(
        "every object confirmed",
        Duration::from_secs(300),
        || async { Ok((pod_reconciles(&next)? >= total).then_some(())) },
    )
    .await?;
    let confirmed = restarted.elapsed();
    let pid = pid_of(cp, &next)?;
    let peak = proc_status_kib(pid, "VmHWM:");
    let cgroup = memory_cgroup(pid)?;
    let cgroup_peak = read_number(cgroup.join("memory.max_usage_in_bytes"))?;
    let failcnt = read_number(cgroup.join("memory.failcnt"))?;
    let next = pods_api.get(&next.name_any()).await?;
    eprintln!("restart timeline: {}", timeline(&pods_api, &next).await?);
    eprintln!(
        "restart in the pod with {n} objects: confirmed in {:.1} s; RSS at rest before {:.1} MiB; peak RSS {:.1} MiB; cgroup peak {:.1} MiB of {} MiB; failcnt {failcnt}; restarts {}",
        confirmed.as_secs_f64(),
        steady_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        cgroup_peak as f64 / 1048576.0,
        DEFAULT_LIMIT / 1048576,
        restarts(&next)
    );
    // What the OOM killer acts on is the cgroup's usage: it never reached the limit, and the pod
    // was not restarted. 15% of the limit stays free for what this run does not show (bigger
    // objects, a burst of events).
    assert_eq!(restarts(&next), 0, "the restarted pod was restarted (OOM?)");
    assert_eq!(failcnt, 0, "the cgroup hit its limit");
    assert!(
        cgroup_peak < DEFAULT_LIMIT / 100 * 85,
        "cgroup peak {cgroup_peak} B above 85% of the limit"
    );
    Ok(())
}
