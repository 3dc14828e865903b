//! The pure desired-state function: from an `AzureGroupBinding` and the operator's settings to the
//! exact ClusterRoleBindings and RoleBindings that should exist. No client, no I/O: the controller
//! and `groupbinder plan` both call [`plan`], so a review of `plan`'s output is a review of what the
//! controller will do.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::allowlist::Allowlist;
use crate::binding::RbacBinding;
use crate::k10;
use crate::names::{self, MANAGED_BY, MANAGED_BY_LABEL, OWNER_LABEL, OWNER_UID_LABEL};
use crate::selector::{self, Namespaces, is_selectable, is_specific};
use crate::v1alpha1::{AzureGroupBinding, NamespacedRole, RoleKind, RoleName, Target};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// How the operator is configured: where K10 is and what a binding may grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Helm release name of K10; its roles are named `<release>-admin`, `<release>-ns-admin`, ...
    pub k10_release: String,
    /// Namespace K10 is installed in.
    pub k10_namespace: String,
    /// Group prefix used when a spec leaves `groupPrefix` out (K10's `auth.oidcAuth.groupPrefix`).
    pub default_group_prefix: String,
    /// The roles a binding may refer to. Nothing else is ever bound.
    pub allowed: Allowlist,
    /// The most RoleBindings one object may make (its selectors select that many namespaces at
    /// most): above it, the object keeps the RoleBindings it has and adds none.
    pub max_role_bindings: usize,
    /// Objects that set no `groupPrefix` use K10's live `groupPrefix` (read from its OIDC
    /// Secret) instead of [`Settings::default_group_prefix`], and follow it when it changes.
    pub follow_k10_group_prefix: bool,
}

/// The default of [`Settings::max_role_bindings`].
pub const DEFAULT_MAX_ROLE_BINDINGS: usize = 500;

impl Settings {
    /// Settings for a K10 release, allowing exactly K10's own roles (see [`Allowlist::k10`]).
    pub fn for_k10(release: &str, namespace: &str, default_group_prefix: &str) -> Self {
        Settings {
            k10_release: release.to_owned(),
            k10_namespace: namespace.to_owned(),
            default_group_prefix: default_group_prefix.to_owned(),
            allowed: Allowlist::k10(release, namespace),
            max_role_bindings: DEFAULT_MAX_ROLE_BINDINGS,
            follow_k10_group_prefix: false,
        }
    }

    /// The admin profile, least privilege as the seed asks: the ClusterRole `<release>-admin`
    /// (no Secrets) and the Role `<release>-ns-admin` in K10's namespace (Secrets there only).
    /// `<release>-mc-admin`, which K10's own chart (7.5 on) also gives its admins, holds every
    /// verb on Secrets in every namespace: it is bound only where a spec names it.
    fn admin_profile(&self) -> (Vec<RoleName>, Vec<NamespacedRole>) {
        let release = &self.k10_release;
        let cluster = vec![RoleName(k10::role(release, "admin"))];
        let namespaced = vec![NamespacedRole::in_namespace(
            &k10::role(release, k10::NS_ADMIN_SUFFIX),
            &self.k10_namespace,
            RoleKind::Role,
        )];
        (cluster, namespaced)
    }

    /// `<release>-mc-admin`: K10's multi-cluster role, which grants every Secret in the cluster.
    pub fn mc_admin(&self) -> String {
        k10::role(&self.k10_release, "mc-admin")
    }
}

/// Why no group can be computed for a spec. Such a spec grants nothing: every binding of its
/// object is deleted until it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The group object ID is not a lower-case GUID (the CRD's admission rules were bypassed or
    /// are outdated).
    #[error(
        "spec.groupObjectId {0:?} is not a lower-case GUID like a318b1eb-8b78-4715-98ad-ffc8670ac79d; this object grants nothing until it is fixed"
    )]
    InvalidGroupObjectId(String),
    /// The group prefix is reserved or malformed.
    #[error(
        "group prefix {0:?} must not start with 'system:' or contain white space or invisible characters; this object grants nothing until it is fixed"
    )]
    InvalidGroupPrefix(String),
    /// The object has no name.
    #[error("the AzureGroupBinding has no metadata.name")]
    MissingName,
    /// A `roles` entry names a `namespaceSelector` and the cluster's namespaces are not known
    /// (offline `groupbinder plan` without a namespace list).
    #[error(
        "spec.roles[] names a namespaceSelector: which namespaces it selects depends on the cluster; give plan the namespaces (--namespaces-from-cluster, or --namespaces FILE)"
    )]
    NamespacesUnknown,
}

impl PlanError {
    /// The `Ready` condition reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        crate::conditions::reason::INVALID_SPEC
    }
}

/// A role the spec asks for that the allowlist does not permit: nothing is bound for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefusedRole {
    /// `Role` or `ClusterRole`.
    pub kind: RoleKind,
    /// The namespace of the RoleBinding it would need; `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    /// The role's name.
    pub name: String,
}

impl std::fmt::Display for RefusedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.namespace) {
            (RoleKind::Role, Some(ns)) => write!(f, "Role {ns}/{}", self.name),
            (RoleKind::ClusterRole, Some(ns)) => write!(f, "ClusterRole {} in {ns}", self.name),
            (kind, None) => write!(f, "{} {}", kind.as_str(), self.name),
        }
    }
}

/// The message for refused roles: which, what the allowlist holds, how to fix it.
pub fn refusal_message(refused: &[RefusedRole], allowed: &Allowlist) -> String {
    let names: Vec<String> = refused.iter().map(ToString::to_string).collect();
    let (them, are) = if refused.len() == 1 {
        ("it", "is")
    } else {
        ("them", "are")
    };
    format!(
        "{} {are} not in the operator's allowlist ({allowed}): nothing is bound for {them}; remove {them} from the spec, or ask the operator's administrator to allow {them} (--allowed-roles: a ClusterRole by name, a Role as namespace/name)",
        names.join(", ")
    )
}

/// Identifies one binding: its kind, its namespace (for a RoleBinding, always) and its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BindingKey {
    /// A ClusterRoleBinding.
    Cluster {
        /// Name of the binding.
        name: String,
    },
    /// A RoleBinding.
    Namespaced {
        /// Its namespace.
        namespace: String,
        /// Name of the binding.
        name: String,
    },
}

impl BindingKey {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub fn kind(&self) -> &'static str {
        match self {
            BindingKey::Cluster { .. } => "ClusterRoleBinding",
            BindingKey::Namespaced { .. } => "RoleBinding",
        }
    }

    /// Name of the binding.
    pub fn name(&self) -> &str {
        match self {
            BindingKey::Cluster { name } | BindingKey::Namespaced { name, .. } => name,
        }
    }

    /// Namespace of a RoleBinding; `None` for a ClusterRoleBinding.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            BindingKey::Cluster { .. } => None,
            BindingKey::Namespaced { namespace, .. } => Some(namespace),
        }
    }

    /// The key of the ClusterRoleBinding with `meta`; `None` without a name.
    pub fn of_cluster_role_binding(meta: &ObjectMeta) -> Option<Self> {
        Some(BindingKey::Cluster {
            name: meta.name.clone()?,
        })
    }

    /// The key of the RoleBinding with `meta`; `None` without a name or a namespace (never
    /// guessed: such an object did not come from the API server).
    pub fn of_role_binding(meta: &ObjectMeta) -> Option<Self> {
        Some(BindingKey::Namespaced {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
        })
    }
}

impl std::fmt::Display for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindingKey::Namespaced { namespace, name } => {
                write!(f, "RoleBinding {namespace}/{name}")
            }
            BindingKey::Cluster { name } => write!(f, "ClusterRoleBinding {name}"),
        }
    }
}

/// The role a planned binding refers to, typed as the spec named it (never re-parsed from the
/// strings of a `roleRef`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundRole {
    /// `Role` or `ClusterRole`.
    pub kind: RoleKind,
    /// The role's name.
    pub name: String,
}

/// One binding of a [`Plan`]: the object to write, with its key and role typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned<B> {
    /// Which binding.
    pub key: BindingKey,
    /// The role it binds.
    pub role: BoundRole,
    /// The binding as it should be.
    pub object: B,
}

impl<B> Planned<B> {
    /// What the binding grants, for people: `ClusterRole k10-admin`, `Role k10-ns-admin in
    /// kasten-io`.
    pub fn grant(&self) -> String {
        let role = format!("{} {}", self.role.kind.as_str(), self.role.name);
        match self.key.namespace() {
            Some(namespace) => format!("{role} in {namespace}"),
            None => role,
        }
    }
}

/// The bindings an `AzureGroupBinding` asks for under the operator's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The RBAC group subject: `<groupPrefix><groupObjectId>`.
    pub group: String,
    /// One ClusterRoleBinding per cluster role, sorted by name.
    pub cluster_role_bindings: Vec<Planned<ClusterRoleBinding>>,
    /// One RoleBinding per namespaced role, sorted by namespace and name.
    pub role_bindings: Vec<Planned<RoleBinding>>,
    /// The roles asked for that the allowlist refuses: nothing is bound for them.
    pub refused: Vec<RefusedRole>,
    /// The namespaces the spec's `namespaceSelector`s select, sorted.
    pub selected: BTreeSet<String>,
}

impl Plan {
    /// The keys of every binding in the plan.
    pub fn keys(&self) -> BTreeSet<BindingKey> {
        let crbs = self.cluster_role_bindings.iter().map(|b| b.key.clone());
        let rbs = self.role_bindings.iter().map(|b| b.key.clone());
        crbs.chain(rbs).collect()
    }

    /// Whether the plan holds `binding` as it is: its kind, namespace and name, its role and its
    /// subjects (labels and ownerReferences aside: see [`crate::ownership::standing`]).
    pub fn holds<B: RbacBinding>(&self, binding: &B) -> bool {
        let meta = binding.meta();
        let same = |role_ref: &RoleRef, subjects: &Option<Vec<Subject>>| {
            role_ref == binding.role_ref() && subjects == binding.subjects()
        };
        let name = meta.name.as_deref();
        match RbacBinding::namespace(binding) {
            None => self.cluster_role_bindings.iter().any(|p| {
                p.object.metadata.name.as_deref() == name
                    && same(&p.object.role_ref, &p.object.subjects)
            }),
            Some(namespace) => self.role_bindings.iter().any(|p| {
                p.object.metadata.name.as_deref() == name
                    && p.key.namespace() == Some(namespace)
                    && same(&p.object.role_ref, &p.object.subjects)
            }),
        }
    }
}

/// The cluster roles and namespaced roles `agb` asks for: its own lists, or K10's admin profile
/// when it names neither.
/// Borrowed from the spec when it names them: a reconcile of the largest object copies none.
pub fn requested_roles<'a>(
    agb: &'a AzureGroupBinding,
    settings: &Settings,
) -> (Cow<'a, [RoleName]>, Cow<'a, [NamespacedRole]>) {
    match (&agb.spec.cluster_roles, &agb.spec.roles) {
        (None, None) => {
            let (cluster_roles, roles) = settings.admin_profile();
            (Cow::Owned(cluster_roles), Cow::Owned(roles))
        }
        (c, r) => (
            Cow::Borrowed(c.as_deref().unwrap_or_default()),
            Cow::Borrowed(r.as_deref().unwrap_or_default()),
        ),
    }
}

/// Computes the bindings `agb` asks for under `settings`: one for each role the spec names and
/// the allowlist permits, in each namespace it names or its selectors select among `namespaces`.
/// Roles it does not permit are listed in [`Plan::refused`] and get nothing. A spec whose group
/// cannot be computed is an error, and plans nothing; so is a selector with `namespaces`
/// unknown.
///
/// The result carries a controller ownerReference to `agb`, and a label with its uid, when it has
/// a `uid` (it came from the API server); a spec read from a file plans the same bindings without.
pub fn plan(
    agb: &AzureGroupBinding,
    settings: &Settings,
    namespaces: Option<&dyn Namespaces>,
) -> Result<Plan, PlanError> {
    plan_with_default_prefix(agb, settings, namespaces, &settings.default_group_prefix)
}

/// [`plan`], with `default_prefix` for a spec that sets no `groupPrefix` (K10's live one, when
/// the operator follows it).
pub fn plan_with_default_prefix(
    agb: &AzureGroupBinding,
    settings: &Settings,
    namespaces: Option<&dyn Namespaces>,
    default_prefix: &str,
) -> Result<Plan, PlanError> {
    let owner = agb.metadata.name.as_deref().ok_or(PlanError::MissingName)?;
    let spec = &agb.spec;
    if !is_lower_guid(&spec.group_object_id) {
        return Err(PlanError::InvalidGroupObjectId(
            spec.group_object_id.clone(),
        ));
    }
    let prefix = spec.group_prefix.as_deref().unwrap_or(default_prefix);
    if !is_valid_prefix(prefix) {
        return Err(PlanError::InvalidGroupPrefix(prefix.to_owned()));
    }
    let group = format!("{prefix}{}", spec.group_object_id);

    let (cluster_roles, roles) = requested_roles(agb, settings);
    let allowed = &settings.allowed;
    let mut refused = BTreeSet::new();
    let mut refuse = |kind, namespace: Option<&str>, name: &str| {
        refused.insert(RefusedRole {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        });
    };
    let mut unique_cluster_roles = BTreeSet::new();
    for role in cluster_roles.iter() {
        if allowed.permits(RoleKind::ClusterRole, None, role.as_str()) {
            unique_cluster_roles.insert(role);
        } else {
            refuse(RoleKind::ClusterRole, None, role.as_str());
        }
    }
    // (namespace, role) → kind: one RoleBinding per role and namespace.
    let mut unique_roles: BTreeMap<(String, &RoleName), RoleKind> = BTreeMap::new();
    let mut selected = BTreeSet::new();
    for r in roles.iter() {
        let in_namespaces = match r.target() {
            Target::Namespace(namespace) => vec![namespace.to_owned()],
            Target::Selector(selector) if is_specific(selector) => {
                let namespaces = namespaces.ok_or(PlanError::NamespacesUnknown)?;
                let chosen: Vec<String> = selector::selected(selector, namespaces)
                    .into_iter()
                    .filter(|ns| {
                        is_selectable(
                            ns,
                            r.name.as_str(),
                            &settings.k10_release,
                            &settings.k10_namespace,
                        )
                    })
                    .collect();
                selected.extend(chosen.iter().cloned());
                chosen
            }
            // Admission refuses these; an object that got past it binds nothing for the entry.
            Target::Selector(_) | Target::Invalid => Vec::new(),
        };
        for namespace in in_namespaces {
            if allowed.permits(r.kind, Some(&namespace), r.name.as_str()) {
                unique_roles.insert((namespace, &r.name), r.kind);
            } else {
                refuse(r.kind, Some(&namespace), r.name.as_str());
            }
        }
    }

    let owner_ref = agb.controller_owner_ref(&());
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (OWNER_LABEL.to_owned(), names::owner_label_value(owner)),
    ]);
    if let Some(uid) = agb.metadata.uid.as_ref() {
        labels.insert(OWNER_UID_LABEL.to_owned(), uid.clone());
    }
    let meta = |namespace: Option<&str>, name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels.clone()),
        owner_references: owner_ref.clone().map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let subjects = Some(vec![Subject {
        kind: "Group".to_owned(),
        api_group: Some(RBAC_GROUP.to_owned()),
        name: group.clone(),
        namespace: None,
    }]);
    let role_ref = |kind: RoleKind, name: &RoleName| RoleRef {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: kind.as_str().to_owned(),
        name: name.0.clone(),
    };
    let cluster_role_bindings = unique_cluster_roles
        .into_iter()
        .map(|role| {
            let name = names::binding_name(owner, role.as_str());
            Planned {
                object: ClusterRoleBinding {
                    metadata: meta(None, &name),
                    role_ref: role_ref(RoleKind::ClusterRole, role),
                    subjects: subjects.clone(),
                },
                key: BindingKey::Cluster { name },
                role: BoundRole {
                    kind: RoleKind::ClusterRole,
                    name: role.0.clone(),
                },
            }
        })
        .collect();
    let role_bindings = unique_roles
        .into_iter()
        .map(|((namespace, role), kind)| {
            let name = names::binding_name(owner, role.as_str());
            Planned {
                object: RoleBinding {
                    metadata: meta(Some(&namespace), &name),
                    role_ref: role_ref(kind, role),
                    subjects: subjects.clone(),
                },
                key: BindingKey::Namespaced { namespace, name },
                role: BoundRole {
                    kind,
                    name: role.0.clone(),
                },
            }
        })
        .collect();
    Ok(Plan {
        group,
        cluster_role_bindings,
        role_bindings,
        refused: refused.into_iter().collect(),
        selected,
    })
}

/// A warning when the group's prefix holds a character outside ASCII: admitted, since a
/// look-alike (a Cyrillic `а` for a Latin `a`) cannot be refused by rule, but a name no token
/// carries if K10's `groupPrefix` is plain ASCII.
pub fn prefix_warning(plan: &Plan) -> Option<String> {
    let prefix = plan.group.get(..plan.group.len().saturating_sub(36))?;
    let c = crate::text::non_ascii_in(prefix)?;
    Some(format!(
        "group prefix {:?} holds {} ({c:?}), outside ASCII: a look-alike letter makes a group name no token carries; check it against K10's auth.oidcAuth.groupPrefix",
        crate::text::shown(prefix),
        c.escape_unicode()
    ))
}

/// What a plan's binding of `<release>-mc-admin` grants, said wherever it is planned (`plan`,
/// `explain-token`, the object's status): every Secret in the cluster.
pub fn all_secrets_note(plan: &Plan, settings: &Settings) -> Option<String> {
    let mc_admin = settings.mc_admin();
    plan.cluster_role_bindings
        .iter()
        .any(|b| b.role.name == mc_admin)
        .then(|| format!(
            "ClusterRole {mc_admin} grants every verb on Secrets in every namespace, service account tokens included (K10's multi-cluster primary needs it); leave it out unless that is meant"
        ))
}

/// What is allowed but probably a mistake in `plan`: a prefix outside ASCII
/// ([`prefix_warning`]), `<release>-mc-admin` ([`all_secrets_note`]), and K10's
/// `<release>-basic` bound in K10's own namespace, where it lets members manage K10's own
/// policies and actions.
pub fn warnings(plan: &Plan, settings: &Settings) -> Vec<String> {
    let basic = k10::role(&settings.k10_release, "basic");
    prefix_warning(plan).into_iter().chain(all_secrets_note(plan, settings)).chain(plan.role_bindings
        .iter()
        .filter(|b| b.role.name == basic && b.key.namespace() == Some(settings.k10_namespace.as_str()))
        .map(|b| {
            format!(
                "{} binds {}: in K10's own namespace that role lets members manage K10's policies and actions; bind it in the applications' namespaces instead",
                b.key,
                b.grant()
            )
        }))
        .collect()
}

/// Whether `prefix` may stand before a group object ID: not `system:` (Kubernetes' own names),
/// no invisible character ([`crate::text::is_invisible`]: white space, control, format and
/// default-ignorable characters, which look like nothing yet make a group name that no token
/// carries) and no leading combining mark.
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.starts_with("system:") && crate::text::invisible_in(prefix).is_none()
}

/// Whether `s` is an Entra ID object ID as tokens carry it: a lower-case GUID.
pub fn is_lower_guid(s: &str) -> bool {
    let groups = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == groups.len()
        && parts.iter().zip(groups).all(|(part, len)| {
            part.len() == len
                && part
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[cfg(test)]
mod tests;
