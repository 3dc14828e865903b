//! Access as the API server's RBAC authorizer decides it: real SubjectAccessReviews.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use crate::eventually;

/// Waits (up to 10 s) until the RBAC authorizer allows `user` in `groups` to do `verb` on
/// `group/resource` in `namespace`: it reads bindings from its own watch cache, so a binding
/// counts a moment after it is written.
pub async fn granted(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    answered(
        true,
        client,
        user,
        groups,
        (verb, group, resource, namespace),
    )
    .await
}

/// Waits (up to 10 s) until the RBAC authorizer refuses what [`granted`] waits for: a deleted
/// binding leaves the authorizer's cache a moment after it is deleted.
pub async fn denied(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    answered(
        false,
        client,
        user,
        groups,
        (verb, group, resource, namespace),
    )
    .await
}

async fn answered(
    expected: bool,
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    (verb, group, resource, namespace): (&str, &str, &str, Option<&str>),
) -> anyhow::Result<()> {
    let answer = if expected { "allowed" } else { "refused" };
    let what =
        format!("{user} {groups:?} to be {answer} {verb} {group}/{resource} in {namespace:?}");
    eventually(&what, Duration::from_secs(10), || async {
        let allowed = can(client, user, groups, verb, group, resource, namespace).await?;
        Ok((allowed == expected).then_some(()))
    })
    .await
}

/// What the API server's RBAC authorizer answers for `user` in `groups` doing `verb` on
/// `group/resource` in `namespace` (a real SubjectAccessReview).
pub async fn can(
    client: &kube::Client,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> anyhow::Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                namespace: namespace.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
