//! What a reconcile found and did, as values: the problems that keep an object from being
//! `Ready`, what was done for each planned binding, and the outcome the status is computed from.
//! Pure, a leaf of the pipeline: observe, apply and status produce and read these.

use std::collections::BTreeSet;

use groupbinder_api::conditions::reason;
use groupbinder_api::desired::{BindingKey, BoundRole};
use groupbinder_api::entra::GroupVerdict;
use groupbinder_api::k10oidc::Verdict;
use groupbinder_api::{BindingStatus, PlanError, RoleKind};

/// Something that keeps an `AzureGroupBinding` from being `Ready`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    /// Roles the spec names are outside the allowlist: nothing is bound for them.
    RoleNotAllowed {
        /// Which, and how to fix it.
        message: String,
    },
    /// More RoleBindings are planned than the operator's cap allows: those in place are kept,
    /// none is added (never a mass revocation that whoever labels namespaces could set off).
    TooManyRoleBindings {
        /// How many are planned.
        planned: usize,
        /// The cap.
        cap: usize,
        /// How many are in place and kept.
        kept: usize,
    },
    /// A binding with the target name exists and is not ours; it was left untouched.
    Conflict {
        /// The binding.
        binding: BindingKey,
        /// Who controls it, if anyone.
        holder: String,
    },
    /// The namespace of a RoleBinding does not exist; the binding waits for it.
    NamespaceNotFound {
        /// The namespace.
        namespace: String,
    },
    /// A bound role does not exist; its binding exists and grants nothing until it does.
    RoleNotFound {
        /// `Role` or `ClusterRole`.
        kind: RoleKind,
        /// The role's namespace, for a Role.
        namespace: Option<String>,
        /// The role's name.
        name: String,
    },
    /// K10, as configured now, will not present the group: the bindings are in place and reach
    /// nobody (condition `K10Presents`).
    K10WillNotPresent {
        /// Why (a `K10Presents` reason).
        reason: &'static str,
        /// What to fix.
        message: String,
    },
    /// Entra ID has had no group with this object ID for longer than the replication window:
    /// the bindings are in place and reach nobody (condition `GroupFound`).
    GroupNotFound {
        /// What the ID is instead, and what to fix.
        message: String,
    },
}

impl Problem {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Problem::RoleNotAllowed { .. } => reason::ROLE_NOT_ALLOWED,
            Problem::TooManyRoleBindings { .. } => reason::TOO_MANY_ROLE_BINDINGS,
            Problem::Conflict { .. } => reason::CONFLICT,
            Problem::NamespaceNotFound { .. } => reason::NAMESPACE_NOT_FOUND,
            Problem::RoleNotFound { .. } => reason::ROLE_NOT_FOUND,
            Problem::K10WillNotPresent { reason, .. } => reason,
            Problem::GroupNotFound { .. } => groupbinder_api::entra::reason::GROUP_NOT_FOUND,
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Problem::RoleNotAllowed { message } => message.clone(),
            Problem::TooManyRoleBindings { planned, cap, kept } => format!(
                "the spec asks for {planned} RoleBindings, more than the operator allows one object ({cap}, --max-role-bindings): the {kept} in place are kept and none is added; narrow the namespaceSelector, split the object, or raise the cap"
            ),
            Problem::Conflict { binding, holder } => format!(
                "{binding} already exists and is not managed by this AzureGroupBinding ({holder}); it was left untouched: delete or rename it, or rename this AzureGroupBinding"
            ),
            Problem::NamespaceNotFound { namespace } => format!(
                "namespace {namespace} does not exist (yet); its RoleBindings are created as soon as it does"
            ),
            Problem::RoleNotFound {
                kind,
                namespace,
                name,
            } => {
                let role = match namespace {
                    Some(ns) => format!("{} {ns}/{name}", kind.as_str()),
                    None => format!("{} {name}", kind.as_str()),
                };
                format!(
                    "{role} does not exist (yet): its binding is in place and grants access once the role exists; if K10 is installed, check that its Helm release name matches the operator's --k10-release"
                )
            }
            Problem::K10WillNotPresent { message, .. } => {
                format!("the bindings are in place but reach nobody: {message}")
            }
            Problem::GroupNotFound { message } => message.clone(),
        }
    }
}

/// What a reconcile found and did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// No group can be computed for the spec: every binding of the object was deleted.
    Refused(PlanError),
    /// The group's prefix is not known yet (the operator follows K10's, unread so far): why,
    /// what is known of K10, and whether the bindings were kept as they were (`true`: the spec
    /// is the one they were made for) or revoked (`false`: the spec changed since, so they are
    /// not its grants).
    Held(String, Verdict, bool),
    /// The plan was carried out as far as possible.
    Bound {
        /// The RBAC group subject.
        group: String,
        /// The bindings now in place and managed for this object.
        bindings: Vec<BindingStatus>,
        /// What keeps it from being ready.
        problems: Vec<Problem>,
        /// The namespaces the selectors select.
        selected: BTreeSet<String>,
        /// What is worth saying but does not keep it from being ready.
        notes: Vec<String>,
        /// Whether K10 presents the group (`None`: not asked).
        k10: Option<Verdict>,
        /// Whether Entra ID knows the group (`None`: not asked).
        entra: Option<GroupVerdict>,
    },
}

impl Outcome {
    /// A plan carried out with `bindings` in place and `problems`, no selector, nothing more to
    /// say.
    pub fn bound(group: String, bindings: Vec<BindingStatus>, problems: Vec<Problem>) -> Self {
        Outcome::Bound {
            group,
            bindings,
            problems,
            selected: BTreeSet::new(),
            notes: Vec::new(),
            k10: None,
            entra: None,
        }
    }

    /// Whether a binding's name is taken by someone else (looked at again after a while: the
    /// foreign binding is not watched).
    pub(crate) fn has_conflict(&self) -> bool {
        matches!(self, Outcome::Bound { problems, .. }
            if problems.iter().any(|p| matches!(p, Problem::Conflict { .. })))
    }
}

/// What was done for one planned binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ensured {
    /// It was already as planned: no request was made.
    Unchanged,
    /// It did not exist and was created.
    Created,
    /// It had drifted and was put back.
    PutBack,
    /// It had lost its controller ownerReference: that was put back (with anything else that
    /// had drifted).
    Adopted,
    /// Someone had given it another controller (re-parenting skips RBAC's escalation check):
    /// it was taken back, ownerReferences and all, as planned.
    TakenBack,
    /// The name is taken by a binding this object does not control; it was left untouched.
    Conflict {
        /// Who controls it.
        holder: String,
    },
}

/// One planned binding and what was done for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnsuredBinding {
    /// Which binding.
    pub(crate) key: BindingKey,
    /// The role it binds.
    pub(crate) role: BoundRole,
    /// What was done.
    pub(crate) ensured: Ensured,
}
