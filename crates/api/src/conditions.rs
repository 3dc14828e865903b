//! Condition types and reasons of `AzureGroupBinding` status, and the rule that keeps
//! `lastTransitionTime` when a condition's status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True` when every binding is in place, every role exists, and K10 does not certainly fail to
/// present the group (see the README's table of what `Ready` means).
pub const READY: &str = "Ready";
/// Whether K10, as configured now, presents the object's group: `True`, `False` (the bindings
/// reach nobody; `Ready` is `False` too) or `Unknown` (K10's settings cannot be read, or cannot
/// tell). Reasons: [`crate::k10oidc::reason`].
pub const K10_PRESENTS: &str = "K10Presents";
/// kstatus: `True` while `Ready` is `False` for a reason that needs a person (`RoleNotAllowed`,
/// `InvalidSpec`, `Conflict`, `TooManyRoleBindings`, `PrefixMismatch`, `NoGroupClaim`,
/// `NotInGroupAllowList`); absent otherwise.
pub const STALLED: &str = "Stalled";
/// kstatus: `True` while `Ready` is `False` for a reason that resolves by itself (a role or
/// namespace not there yet, a write being retried, K10's prefix not read yet); absent otherwise.
pub const RECONCILING: &str = "Reconciling";

/// Condition reasons (CamelCase, as the Kubernetes API conventions ask).
pub mod reason {
    /// Every binding is in place and every role and namespace exists.
    pub const RECONCILED: &str = "Reconciled";
    /// A requested role is outside the operator's allowlist: nothing is bound for it (the
    /// allowed roles of the same spec are bound).
    pub const ROLE_NOT_ALLOWED: &str = "RoleNotAllowed";
    /// The spec is invalid in a way the API server's admission did not catch: no group can be
    /// computed, and the object grants nothing until it is fixed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The spec asks for more RoleBindings than the operator's cap (`--max-role-bindings`): the
    /// ones in place are kept, none is added.
    pub const TOO_MANY_ROLE_BINDINGS: &str = "TooManyRoleBindings";
    /// A binding with the target name exists and belongs to someone else; it was left alone.
    pub const CONFLICT: &str = "Conflict";
    /// A bound role does not exist (yet): the binding exists but grants nothing until it does.
    pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
    /// The namespace of a requested Role does not exist (yet); its RoleBinding waits for it.
    pub const NAMESPACE_NOT_FOUND: &str = "NamespaceNotFound";
    /// The API server refused a write; the controller retries with backoff.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// The object is being deleted (a finalizer holds it): its bindings were deleted at once.
    pub const DELETING: &str = "Deleting";
    /// The operator follows K10's `groupPrefix` and has not read it yet: nothing was changed.
    pub const K10_PREFIX_UNKNOWN: &str = "K10PrefixUnknown";
}

/// The `&'static` form of a `Ready` reason, for metric labels: every reason the controller
/// writes, and `Other` for any other (a status someone else wrote), so labels stay few.
pub fn reason_label(reason: &str) -> &'static str {
    [
        reason::RECONCILED,
        reason::ROLE_NOT_ALLOWED,
        reason::TOO_MANY_ROLE_BINDINGS,
        reason::INVALID_SPEC,
        reason::CONFLICT,
        reason::ROLE_NOT_FOUND,
        reason::NAMESPACE_NOT_FOUND,
        reason::APPLY_FAILED,
        reason::DELETING,
        reason::K10_PREFIX_UNKNOWN,
        crate::k10oidc::reason::PREFIX_MISMATCH,
        crate::entra::reason::GROUP_NOT_FOUND,
        crate::k10oidc::reason::NO_GROUP_CLAIM,
        crate::k10oidc::reason::NOT_IN_GROUP_ALLOW_LIST,
    ]
    .into_iter()
    .find(|r| *r == reason)
    .unwrap_or("Other")
}

/// Builds a condition, keeping `lastTransitionTime` from `previous` when the status is unchanged.
/// The message is [`shown`](crate::text::shown): names in it never carry a raw control character.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    condition_of(
        previous,
        type_,
        status,
        reason,
        message,
        observed_generation,
        now,
    )
}

/// [`condition`] with any status: `True`, `False` or `Unknown`.
pub fn condition_of(
    previous: &[Condition],
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = status.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: crate::text::shown(&message),
        observed_generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let old = condition(
            &[],
            READY,
            true,
            reason::RECONCILED,
            "a".into(),
            Some(1),
            &at(10),
        );
        let new = condition(
            &[old],
            READY,
            true,
            reason::RECONCILED,
            "b".into(),
            Some(2),
            &at(20),
        );
        assert_eq!(new.last_transition_time, at(10));
        assert_eq!(new.message, "b");
        assert_eq!(new.observed_generation, Some(2));
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let old = condition(
            &[],
            READY,
            true,
            reason::RECONCILED,
            "a".into(),
            Some(1),
            &at(10),
        );
        let new = condition(
            &[old],
            READY,
            false,
            reason::CONFLICT,
            "b".into(),
            Some(1),
            &at(20),
        );
        assert_eq!(new.last_transition_time, at(20));
        assert_eq!(new.status, "False");
    }
}
