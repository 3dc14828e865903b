//! Waiting for what a controller does eventually: polling, and an object's `Ready` condition.

use std::time::{Duration, Instant};

use groupbinder_api::AzureGroupBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {what} (last error: {last_error:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `Ready` condition of `agb`, if any.
pub fn ready(agb: &AzureGroupBinding) -> Option<&Condition> {
    agb.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The roles `agb`'s status lists as bound.
pub fn bound_roles(agb: &AzureGroupBinding) -> Vec<String> {
    agb.status
        .iter()
        .flat_map(|s| &s.bindings)
        .map(|b| b.role.clone())
        .collect()
}

/// Waits until AzureGroupBinding `name` reports `Ready` with `status` and `reason` for its current
/// generation, and returns it; fails after 30 seconds.
pub async fn wait_for_reason(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
) -> anyhow::Result<AzureGroupBinding> {
    wait_for_reason_within(client, name, status, reason, Duration::from_secs(30)).await
}

/// Like [`wait_for_reason`], with another time limit.
pub async fn wait_for_reason_within(
    client: &kube::Client,
    name: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> anyhow::Result<AzureGroupBinding> {
    let api: Api<AzureGroupBinding> = Api::all(client.clone());
    eventually(
        &format!("{name} to be Ready={status} ({reason})"),
        timeout,
        || async {
            let agb = api.get(name).await?;
            let done = ready(&agb).is_some_and(|c| {
                c.status == status
                    && c.reason == reason
                    && c.observed_generation == agb.metadata.generation
            }) && agb.status.as_ref().and_then(|s| s.observed_generation)
                == agb.metadata.generation;
            Ok(done.then_some(agb))
        },
    )
    .await
}
