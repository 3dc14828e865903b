//! Access as the API server's RBAC authorizer decides it: real SubjectAccessReviews, asked one
//! way, through [`Who`].

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use crate::eventually;

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
async fn can(
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

/// Someone asking the RBAC authorizer: a user in groups.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    client: &'a kube::Client,
    user: &'a str,
    groups: &'a [&'a str],
}

impl std::fmt::Debug for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Who")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl<'a> Who<'a> {
    /// Waits until this identity has what the seed's admin profile gives a member: K10's
    /// backup actions in an application namespace (`k10-admin`) and K10's Secrets in `kasten-io`
    /// (`k10-ns-admin`).
    pub async fn administers_k10(&self) -> anyhow::Result<()> {
        self.may(
            "create",
            "actions.kio.kasten.io",
            "backupactions",
            Some("app"),
        )
        .await?;
        self.may("get", "", "secrets", Some("kasten-io")).await
    }

    /// `user` in `groups`, asked about through `client`.
    pub fn new(client: &'a kube::Client, user: &'a str, groups: &'a [&'a str]) -> Self {
        Who {
            client,
            user,
            groups,
        }
    }

    /// Waits (up to 10 s) until the RBAC authorizer allows `verb` on `group/resource` in
    /// `namespace`: it reads bindings from its own watch cache, so a binding counts a moment
    /// after it is written.
    pub async fn may(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<()> {
        let asked = (verb, group, resource, namespace);
        answered(true, self.client, self.user, self.groups, asked).await
    }

    /// Waits (up to 10 s) until the authorizer refuses it: a deleted binding leaves the
    /// authorizer's cache a moment after it is deleted.
    pub async fn may_not(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<()> {
        let asked = (verb, group, resource, namespace);
        answered(false, self.client, self.user, self.groups, asked).await
    }

    /// What the authorizer answers now ([`can`]).
    pub async fn can(
        &self,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<bool> {
        can(
            self.client,
            self.user,
            self.groups,
            verb,
            group,
            resource,
            namespace,
        )
        .await
    }
}
