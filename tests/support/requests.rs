//! What the API server counted: `apiserver_request_total` from its own `/metrics`.

/// `apiserver_request_total` from the API server's own `/metrics`, by verb and resource (with
/// its subresource after a slash): what every client, the operator included, requested.
pub async fn apiserver_requests(
    client: &kube::Client,
) -> anyhow::Result<std::collections::BTreeMap<(String, String), f64>> {
    let text = client
        .request_text(groupbinder_testenv::http_get("/metrics"))
        .await?;
    let mut totals = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = line[start..].find('"')? + start;
            Some(&line[start..end])
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else {
            continue;
        };
        let resource = match label("subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *totals.entry((verb.to_owned(), resource)).or_default() += count;
    }
    Ok(totals)
}

/// Sum of [`apiserver_requests`] over write verbs for `resources` (subresources included).
pub async fn apiserver_writes(client: &kube::Client, resources: &[&str]) -> anyhow::Result<f64> {
    Ok(apiserver_requests(client)
        .await?
        .into_iter()
        .filter(|((verb, resource), _)| {
            matches!(
                verb.as_str(),
                "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
            ) && resources.contains(&resource.split('/').next().unwrap_or_default())
        })
        .map(|(_, count)| count)
        .sum())
}
