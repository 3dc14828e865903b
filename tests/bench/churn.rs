//! The churn phase of `make bench`: many Roles, ClusterRoles and Namespaces change while the
//! benchmark's objects exist. Role, ClusterRole and Namespace events go to the objects that refer
//! to them through an index (`references.rs`), not a scan of every object; this phase measures
//! what the operator spends on them: unrelated changes should cost next to nothing and cause no
//! reconcile and no write; a change to a role every object binds reconciles every object and
//! writes nothing. "Writes" are every client's writes to bindings, AzureGroupBindings and events,
//! as the API server counts them, less the namespace controller's known share.

use std::time::{Duration, Instant};

use groupbinder_e2e::{OperatorProcess, apiserver_writes};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

use super::{CONCURRENCY, SETTLE, WRITES, cpu_seconds, run_all};

/// Namespaces created, labelled and deleted.
const NAMESPACES: usize = 100;
/// Roles per namespace, each created and then relabelled.
const ROLES_PER_NAMESPACE: usize = 10;
/// ClusterRoles created, relabelled and deleted.
const CLUSTER_ROLES: usize = 500;
/// Touches of each role every object binds (k10-admin, kasten-io/k10-ns-admin).
const REFERENCED_TOUCHES: usize = 3;

/// What one part of the phase cost the operator.
struct Cost {
    events: usize,
    seconds: f64,
    cpu: f64,
    reconciles: f64,
    writes: f64,
    /// Writes others are known to make: the namespace controller empties each deleted
    /// namespace with one DELETE of each collection in it, 3 of which count here (RoleBindings,
    /// core and events.k8s.io Events; measured: one namespace created and deleted, nothing in
    /// it, adds exactly these 3).
    expected: f64,
}

/// The namespace controller's writes counted for each deleted namespace (see [`Cost`]).
const NAMESPACE_CONTROLLER_WRITES: f64 = 3.0;

async fn measure<F, Fut>(
    client: &kube::Client,
    child: &OperatorProcess,
    events: usize,
    expected: f64,
    work: F,
) -> anyhow::Result<Cost>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let reconciles = || child.metric("groupbinder_reconciles_total").unwrap_or(0.0);
    let (cpu, before, writes) = (
        cpu_seconds(child.id()),
        reconciles(),
        apiserver_writes(client, &WRITES).await?,
    );
    let started = Instant::now();
    work().await?;
    let seconds = started.elapsed().as_secs_f64();
    // Let the operator finish what the last events caused.
    tokio::time::sleep(SETTLE).await;
    Ok(Cost {
        events,
        seconds,
        cpu: cpu_seconds(child.id()) - cpu,
        reconciles: reconciles() - before,
        writes: apiserver_writes(client, &WRITES).await? - writes,
        expected,
    })
}

/// The label the phase sets on what it changes (every churn namespace has it when it is deleted).
const CHURN_LABEL: &str = "bench.groupbinder.dev/churn";

fn labelled(value: &str) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({"metadata": {"labels": {CHURN_LABEL: value}}}))
}

/// Runs the churn phase against `child` with `objects` AzureGroupBindings in place, and prints it.
pub async fn run(
    client: &kube::Client,
    child: &OperatorProcess,
    objects: usize,
) -> anyhow::Result<()> {
    eprintln!("role and namespace churn ...");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    let role_events = NAMESPACES * ROLES_PER_NAMESPACE * 2;
    let unrelated = NAMESPACES * 3 + role_events + CLUSTER_ROLES * 3;
    let expected = NAMESPACE_CONTROLLER_WRITES * NAMESPACES as f64;
    let cost = measure(client, child, unrelated, expected, || async {
        run_all(NAMESPACES, CONCURRENCY, |i| {
            let namespaces = &namespaces;
            async move {
                let mut ns = Namespace::default();
                ns.metadata.name = Some(format!("churn-{i}"));
                namespaces.create(&PostParams::default(), &ns).await?;
                Ok(())
            }
        })
        .await?;
        run_all(NAMESPACES * ROLES_PER_NAMESPACE, CONCURRENCY, |i| {
            let client = client.clone();
            async move {
                let roles: Api<Role> =
                    Api::namespaced(client, &format!("churn-{}", i / ROLES_PER_NAMESPACE));
                let mut role = Role::default();
                role.metadata.name = Some(format!("churn-{i}"));
                let name = format!("churn-{i}");
                roles.create(&PostParams::default(), &role).await?;
                roles
                    .patch(&name, &PatchParams::default(), &labelled("1"))
                    .await?;
                Ok(())
            }
        })
        .await?;
        run_all(CLUSTER_ROLES, CONCURRENCY, |i| {
            let cluster_roles = &cluster_roles;
            async move {
                let mut role = ClusterRole::default();
                let name = format!("churn-{i}");
                role.metadata.name = Some(name.clone());
                cluster_roles.create(&PostParams::default(), &role).await?;
                cluster_roles
                    .patch(&name, &PatchParams::default(), &labelled("1"))
                    .await?;
                cluster_roles
                    .delete(&name, &DeleteParams::default())
                    .await?;
                Ok(())
            }
        })
        .await?;
        run_all(NAMESPACES, CONCURRENCY, |i| {
            let namespaces = &namespaces;
            async move {
                let name = format!("churn-{i}");
                namespaces
                    .patch(&name, &PatchParams::default(), &labelled("1"))
                    .await?;
                namespaces.delete(&name, &DeleteParams::default()).await?;
                Ok(())
            }
        })
        .await?;
        // The namespace controller empties them (its writes must not land in the next phase).
        let labelled_namespaces = ListParams::default().labels(CHURN_LABEL);
        while !namespaces
            .list_metadata(&labelled_namespaces)
            .await?
            .items
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    })
    .await?;

    // The roles every object binds: each touch concerns every object.
    let ns_admin: Api<Role> = Api::namespaced(client.clone(), "kasten-io");
    let touches = 2 * REFERENCED_TOUCHES;
    let referenced = measure(client, child, touches, 0.0, || async {
        for touch in 0..REFERENCED_TOUCHES {
            let value = touch.to_string();
            cluster_roles
                .patch("k10-admin", &PatchParams::default(), &labelled(&value))
                .await?;
            ns_admin
                .patch("k10-ns-admin", &PatchParams::default(), &labelled(&value))
                .await?;
            // One touch at a time: the reconciles of one do not merge with the next.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    })
    .await?;

    println!("\nrole and namespace churn with {objects} AzureGroupBindings in place:");
    for (what, c) in [
        (
            "unrelated: namespaces, Roles, ClusterRoles created, relabelled, deleted",
            &cost,
        ),
        ("the roles every object binds, relabelled", &referenced),
    ] {
        println!(
            "  {what}: {} changes in {:.1} s; operator CPU {:.2} s ({:.3} ms per change); reconciles {:.0} ({:.1} per change); writes to bindings, objects, events {:.0}, of which {:.0} beyond the namespace controller's",
            c.events,
            c.seconds,
            c.cpu,
            c.cpu * 1000.0 / c.events as f64,
            c.reconciles,
            c.reconciles / c.events as f64,
            c.writes,
            c.writes - c.expected
        );
    }
    Ok(())
}
