//! `AzureGroupBinding`, API group `groupbinder.dev`, version `v1alpha1`.
//!
//! The rustdoc on these types becomes the CRD's OpenAPI descriptions, and so what
//! `kubectl explain azuregroupbinding.spec` prints: it is written for the cluster administrator.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The regular expression of an Entra ID object ID as it appears in ID tokens: a lower-case GUID.
pub const GUID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// The most characters `spec.description` may hold (the schema's `maxLength`).
pub const DESCRIPTION_MAX_CHARS: usize = 512;

/// The most entries `spec.clusterRoles`, and `spec.roles`, may each hold (the schema's
/// `maxItems`).
pub const MAX_ROLES: usize = 32;

/// The most `spec.roles` entries that may use a `namespaceSelector`: with the selector's own
/// bounds below, an object stays under about 150 KB however it is filled, which is what the
/// operator's memory sizing (README, chart values) counts on.
pub const MAX_SELECTOR_ROLES: usize = 8;

/// The most entries of a selector's `matchLabels` (the schema's `maxProperties`).
pub const MAX_MATCH_LABELS: usize = 16;

/// The most requirements of a selector's `matchExpressions` (the schema's `maxItems`).
pub const MAX_MATCH_EXPRESSIONS: usize = 8;

/// The most values one requirement may list (the schema's `maxItems`).
pub const MAX_VALUES: usize = 16;

/// Which Entra ID group gets which K10 access. The controller binds the roles to the RBAC group
/// `<groupPrefix><groupObjectId>` — the name K10 presents when it impersonates a signed-in member —
/// with one ClusterRoleBinding per cluster role and one RoleBinding per namespaced role, keeps
/// them as declared, and deletes them with this object.
// kube's `printcolumn(...)` repeats `type_`, `name`, ... once per column: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "groupbinder.dev",
    version = "v1alpha1",
    kind = "AzureGroupBinding",
    plural = "azuregroupbindings",
    singular = "azuregroupbinding",
    shortname = "agb",
    category = "kasten",
    status = "AzureGroupBindingStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Grants an Entra ID (Azure AD) group access to Kasten K10 through Kubernetes RBAC bindings.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every binding is in place and every role exists"
    ),
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".status.group",
        description = "The group name K10 presents: groupPrefix followed by groupObjectId"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the binding is or is not ready"
    ),
    printcolumn(
        name = "K10",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"K10Presents\")].reason",
        description = "Whether K10, as configured now, presents this group (condition K10Presents)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Group Name",
        type_ = "string",
        json_path = ".status.groupDisplayName",
        description = "The group's display name in Entra ID, when the operator may ask (condition GroupFound)",
        priority = "1"
    ),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.selectedNamespaces.count",
        description = "How many namespaces the roles' namespaceSelectors select",
        priority = "1"
    ),
    printcolumn(
        name = "Selected",
        type_ = "string",
        json_path = ".status.selectedNamespaces.first",
        description = "The first few namespaces selected",
        priority = "1"
    ),
    printcolumn(
        name = "Description",
        type_ = "string",
        json_path = ".spec.description",
        priority = "1"
    )
)]
#[x_kube(validation = Rule::new(
    "!has(self.roles) || self.roles.filter(r, has(r.namespaceSelector)).size() <= 8"
).message("at most 8 roles may use a namespaceSelector: bind one role in several namespaces with one selector (kasten.io/team In [a, b])"))] // MAX_SELECTOR_ROLES
#[x_kube(validation = Rule::new(
    "(!has(self.clusterRoles) && !has(self.roles)) || (has(self.clusterRoles) && size(self.clusterRoles) > 0) || (has(self.roles) && size(self.roles) > 0)"
).message("name at least one role in clusterRoles or roles, or leave both out to get the K10 admin profile"))]
#[serde(rename_all = "camelCase")]
pub struct AzureGroupBindingSpec {
    /// Object ID of the Entra ID (Azure AD) group, exactly as it appears in the `groups` claim of
    /// the ID token: a lower-case GUID such as `a318b1eb-8b78-4715-98ad-ffc8670ac79d`. Find it in
    /// the Azure portal under Groups, or with `az ad group show --group NAME --query id`.
    #[x_kube(validation = Rule::new("self == self.lowerAscii()").message(Message::Expression(
        "'must be lower case, as Entra ID writes it in tokens: RBAC group names are case-sensitive, so this value would grant nothing; use ' + self.lowerAscii()".into()
    )))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')"
    ).message(
        "must be a group object ID (a GUID like a318b1eb-8b78-4715-98ad-ffc8670ac79d) with no spaces, braces or group name"
    ))]
    #[schemars(length(min = 36, max = 36))]
    pub group_object_id: String,

    /// Prefix that K10 puts before every group name: the value of K10's Helm setting
    /// `auth.oidcAuth.groupPrefix`. Leave it out to use the operator's default; set it to "" when
    /// K10 adds no prefix. It may not start with `system:`, which is reserved for Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('system:')").message(
        "must not start with 'system:': that prefix is reserved for Kubernetes' own users and groups"
    ))]
    // One definition of invisible (`crate::text`): white space and separators (U+00A0), control
    // and format characters (U+200B), default-ignorable ones (U+3164, U+FE0F), a leading
    // combining mark; all pasted by accident, none in any token.
    #[x_kube(validation = Rule::new(format!(
        "!self.matches('{}')",
        crate::text::INVISIBLE_PATTERN.replace('\\', "\\\\")
    ))
    .message(
        "must not contain white space or invisible characters (such as U+00A0, U+200B, U+3164 or a leading combining mark): K10 compares group names exactly"
    ))]
    #[schemars(length(max = 128))]
    pub group_prefix: Option<String>,

    /// Free text for people: who is in the group and why it has this access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))] // DESCRIPTION_MAX_CHARS
    pub description: Option<String>,

    /// ClusterRoles to bind cluster-wide, one ClusterRoleBinding each, for example `k10-admin`.
    /// Each must be in the operator's allowlist. Leave out both `clusterRoles` and `roles` to get
    /// the least-privilege admin profile: `<release>-admin` here and `<release>-ns-admin` in K10's
    /// namespace. `<release>-mc-admin` (K10's multi-cluster role) grants every Secret in the
    /// cluster: it is bound only when named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "set"))] // MAX_ROLES
    pub cluster_roles: Option<Vec<RoleName>>,

    /// Roles to bind in namespaces, one RoleBinding per namespace: in one `namespace` (for
    /// example `k10-ns-admin` in `kasten-io`), or in every namespace a `namespaceSelector` selects
    /// (for example the ClusterRole `k10-basic` in every namespace labelled `team: shop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "atomic"))] // MAX_ROLES
    pub roles: Option<Vec<NamespacedRole>>,

    /// Who presents this group to the API server. `K10` (the default): K10 impersonates its
    /// signed-in members with it, and the operator checks that against K10's live OIDC settings
    /// (condition `K10Presents`; `Ready` is `False` when K10 certainly will not present it).
    /// `Other`: something else presents it (kube-apiserver's own OIDC sign-in, say): not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented_by: Option<PresentedBy>,
}

/// Who presents an AzureGroupBinding's group to the API server.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PresentedBy {
    /// K10, impersonating a signed-in member: checked against K10's live OIDC settings.
    #[default]
    K10,
    /// Another sign-in: not checked.
    Other,
}

/// The name of a Role or ClusterRole.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(transparent)]
pub struct RoleName(
    #[schemars(length(min = 1, max = 253), regex(pattern = ROLE_NAME_PATTERN))] pub String,
);

/// A role name is a path segment: no '/' or '%', and not '.' or '..'.
pub const ROLE_NAME_PATTERN: &str = r"^([^/%.][^/%]*|\.[^/%.][^/%]*|\.\.[^/%]+)$";

impl RoleName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RoleName {
    fn from(s: &str) -> Self {
        RoleName(s.to_owned())
    }
}

/// A role bound by RoleBindings: in one `namespace`, or in every namespace a `namespaceSelector`
/// selects. Name exactly one of the two.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.__namespace__) != has(self.namespaceSelector)").message(
    "name either namespace (one namespace) or namespaceSelector (every namespace whose labels match), not both"
))]
pub struct NamespacedRole {
    /// Name of the Role (or of the ClusterRole, with `kind: ClusterRole`).
    pub name: RoleName,
    /// Namespace the RoleBinding is created in, for example `kasten-io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')"
    ).message("must be a namespace name: lower-case letters, digits and '-'"))]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Binds the role in every namespace whose labels match, as namespaces are created, labelled
    /// and deleted; a namespace that stops matching loses its RoleBinding. It never selects a
    /// `kube-*` namespace, nor K10's own namespace for `<release>-basic` (there that role would let
    /// users manage K10 itself): name such a namespace in `namespace` if it is really meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// `Role` (the default) binds a Role of that namespace; `ClusterRole` grants a ClusterRole's
    /// permissions in that namespace only, as K10's `k10-basic` is meant to be used.
    #[serde(default, skip_serializing_if = "RoleKind::is_role")]
    pub kind: RoleKind,
}

/// The kind of role a RoleBinding refers to.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
pub enum RoleKind {
    /// A namespaced Role.
    #[default]
    Role,
    /// A ClusterRole, granted in one namespace.
    ClusterRole,
}

/// A standard Kubernetes label selector over namespaces: `matchLabels` and `matchExpressions`,
/// all of which must hold. It must name at least one label: an empty selector would select every
/// namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)"
).message("must name at least one label: an empty selector would select every namespace"))]
pub struct NamespaceSelector {
    /// Labels a namespace must have, with these values, for example `team: shop`: at most 16.
    /// Keys and values are as long as Kubernetes labels may be: 317 and 63 characters at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))] // MAX_MATCH_LABELS
    #[x_kube(validation = Rule::new("self.all(k, size(k) <= 317 && size(self[k]) <= 63)").message(
        "label keys are at most 317 characters and values at most 63, as on a namespace"
    ))]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// Further requirements on a namespace's labels: at most 8, each with at most 16 values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))] // MAX_MATCH_EXPRESSIONS
    pub match_expressions: Option<Vec<SelectorRequirement>>,
}

/// A requirement on one label.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)"
).message("In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct SelectorRequirement {
    /// The label's key, for example `team` or `kasten.io/team`.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(max = 63)))] // MAX_VALUES
    pub values: Option<Vec<String>>,
}

/// How a requirement relates a label to its values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label has one of the values.
    In,
    /// The label is missing or has none of the values.
    NotIn,
    /// The label is there, whatever its value.
    Exists,
    /// The label is not there.
    DoesNotExist,
}

/// Where a `roles` entry binds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target<'a> {
    /// In this namespace.
    Namespace(&'a str),
    /// In every namespace this selects.
    Selector(&'a NamespaceSelector),
    /// Neither or both were given (admission refuses that; an object that got past it binds
    /// nothing for this entry).
    Invalid,
}

impl NamespacedRole {
    /// A role bound in one namespace.
    pub fn in_namespace(name: &str, namespace: &str, kind: RoleKind) -> Self {
        NamespacedRole {
            name: name.into(),
            namespace: Some(namespace.to_owned()),
            namespace_selector: None,
            kind,
        }
    }

    /// Where this entry binds.
    pub fn target(&self) -> Target<'_> {
        match (&self.namespace, &self.namespace_selector) {
            (Some(namespace), None) => Target::Namespace(namespace),
            (None, Some(selector)) => Target::Selector(selector),
            _ => Target::Invalid,
        }
    }
}

impl RoleKind {
    /// The `kind` string of the role, as used in a `roleRef`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Role => "Role",
            RoleKind::ClusterRole => "ClusterRole",
        }
    }

    fn is_role(&self) -> bool {
        *self == RoleKind::Role
    }
}

/// What the controller last saw and did. Written by the controller only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
// A new object reads as `observedGeneration: 0` until the controller writes its status, so
// kstatus (Flux's `wait`, `kubectl wait`-style tools) sees it InProgress, not Current.
#[schemars(extend("default" = {"observedGeneration": 0}))]
pub struct AzureGroupBindingStatus {
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The exact group name bound as RBAC subject: `<groupPrefix><groupObjectId>`. A user gets
    /// this access when K10 presents this name among their groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The group's display name in Entra ID, when the operator asks Entra ID
    /// (`--entra-tenant-id`): data from outside, escaped and at most 256 characters; neither
    /// unique nor stable, so the object ID stays what is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_display_name: Option<String>,
    /// The bindings the controller manages for this object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<BindingStatus>,
    /// The namespaces the `namespaceSelector`s of `roles` select now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_namespaces: Option<SelectedNamespaces>,
    /// `Ready` is `True` when every binding is in place and every role and namespace exists.
    /// Otherwise its reason says what is wrong: `RoleNotAllowed`, `InvalidSpec`, `Conflict`,
    /// `RoleNotFound`, `NamespaceNotFound`, a K10 reason (`PrefixMismatch`, ...), `GroupNotFound`
    /// or `ApplyFailed`. `K10Presents` says whether K10 presents the group; `GroupFound`, when the
    /// operator asks Entra ID, whether the object ID names a group of the tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// How many namespaces the selectors select, and the first few.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelectedNamespaces {
    /// How many namespaces are selected.
    pub count: i32,
    /// The first few, in alphabetical order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first: Vec<String>,
}

/// One binding managed for this object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    /// `ClusterRoleBinding` or `RoleBinding`.
    pub kind: String,
    /// Name of the binding.
    pub name: String,
    /// Namespace of a RoleBinding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the bound role.
    pub role: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// The limits the CLI writes within are the schema's own.
    #[test]
    fn the_schemas_limits_are_the_constants() {
        let crd = serde_json::to_value(AzureGroupBinding::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        assert_eq!(spec["description"]["maxLength"], DESCRIPTION_MAX_CHARS);
        assert_eq!(spec["clusterRoles"]["maxItems"], MAX_ROLES);
        assert_eq!(spec["roles"]["maxItems"], MAX_ROLES);
        let selector = &spec["roles"]["items"]["properties"]["namespaceSelector"]["properties"];
        assert_eq!(selector["matchLabels"]["maxProperties"], MAX_MATCH_LABELS);
        assert_eq!(
            selector["matchExpressions"]["maxItems"],
            MAX_MATCH_EXPRESSIONS
        );
        assert_eq!(
            selector["matchExpressions"]["items"]["properties"]["values"]["maxItems"],
            MAX_VALUES
        );
        let rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["x-kubernetes-validations"]
            .to_string();
        assert!(
            rules.contains(&format!(".size() <= {MAX_SELECTOR_ROLES}\"")),
            "{rules}"
        );
    }
}
