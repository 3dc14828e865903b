//! What Entra ID says about an object's `groupObjectId`, and what that means for its status. Pure:
//! Graph's answers are parsed here and judged here; asking is `groupbinder-entra`'s, and when to
//! ask is the controller's.
//!
//! A group that does not exist grants nobody, so no answer here ever changes a binding: it only
//! says, in condition `GroupFound` and `status.groupDisplayName`, whether the object names the
//! group its author meant.

use std::time::Duration;

use serde::Deserialize;

use crate::text::bounded;

/// The condition type.
pub const GROUP_FOUND: &str = "GroupFound";

/// The longest display name stored in a status or shown (Entra ID allows 256).
pub const DISPLAY_NAME_MAX: usize = 256;

/// How long a group may be missing before `Ready` says so: Entra ID answers 404 for a new group
/// for a while (replication).
pub const REPLICATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Graph's `$select` for a group: what [`GraphGroup`] reads.
pub const GROUP_SELECT: &str = "id,displayName,securityEnabled,mailEnabled,groupTypes";

/// The reasons of condition `GroupFound`.
pub mod reason {
    /// The object ID names a security group of the tenant.
    pub const FOUND: &str = "Found";
    /// The object ID names a group that is not security-enabled (a Microsoft 365 group, a
    /// distribution list): tokens carry it only when the app registration's
    /// `groupMembershipClaims` is `All`.
    pub const NOT_SECURITY_ENABLED: &str = "NotSecurityEnabled";
    /// No group of the tenant has this object ID.
    pub const GROUP_NOT_FOUND: &str = "GroupNotFound";
    /// Entra ID has not been asked yet.
    pub const LOOKUP_PENDING: &str = "LookupPending";
    /// Entra ID could not be asked, or its answers cannot be trusted (a wrong tenant).
    pub const ENTRA_UNAVAILABLE: &str = "EntraUnavailable";
}

/// A group as `GET /v1.0/groups/{id}?$select=`[`GROUP_SELECT`] returns it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GraphGroup {
    /// The object ID.
    #[serde(default)]
    pub id: String,
    /// Its display name: neither unique nor stable.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Whether it is a security group.
    #[serde(default)]
    pub security_enabled: Option<bool>,
    /// Whether it has a mailbox.
    #[serde(default)]
    pub mail_enabled: Option<bool>,
    /// `Unified` for a Microsoft 365 group, `DynamicMembership` for a dynamic one.
    #[serde(default)]
    pub group_types: Vec<String>,
}

/// What a directory object that is not a group is instead (`@odata.type` of
/// `GET /v1.0/directoryObjects/{id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// `#microsoft.graph.user`.
    User,
    /// `#microsoft.graph.application`: an app registration.
    Application,
    /// `#microsoft.graph.servicePrincipal`: an enterprise application.
    ServicePrincipal,
    /// `#microsoft.graph.device`.
    Device,
    /// Another type, as Graph named it (escaped, bounded).
    Other(String),
}

impl ObjectKind {
    /// From `@odata.type`.
    pub fn from_odata_type(odata_type: &str) -> Self {
        match odata_type {
            "#microsoft.graph.user" => ObjectKind::User,
            "#microsoft.graph.application" => ObjectKind::Application,
            "#microsoft.graph.servicePrincipal" => ObjectKind::ServicePrincipal,
            "#microsoft.graph.device" => ObjectKind::Device,
            other => ObjectKind::Other(bounded(other.trim_start_matches('#'), 64)),
        }
    }

    /// "the object ID of a user", ...
    pub fn described(&self) -> String {
        let what = match self {
            ObjectKind::User => "a user",
            ObjectKind::Application => "an application (app registration)",
            ObjectKind::ServicePrincipal => "a service principal (enterprise application)",
            ObjectKind::Device => "a device",
            ObjectKind::Other(other) => return format!("the object ID of a {other}"),
        };
        format!("the object ID of {what}")
    }
}

/// The type of a directory object, as `GET /v1.0/directoryObjects/{id}` returns it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GraphDirectoryObject {
    /// `#microsoft.graph.user`, ...
    #[serde(rename = "@odata.type", default)]
    pub odata_type: String,
}

/// Graph's error body: `{"error": {"code": "Request_ResourceNotFound", "message": "..."}}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GraphErrorBody {
    /// The error.
    #[serde(default)]
    pub error: GraphErrorDetail,
}

/// The code and message of a Graph error.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GraphErrorDetail {
    /// `Request_ResourceNotFound`, `Authorization_RequestDenied`, ...
    #[serde(default)]
    pub code: String,
    /// For people.
    #[serde(default)]
    pub message: String,
}

/// What Entra ID answered for one object ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A group of the tenant.
    Group(GroupFacts),
    /// Not a group of the tenant; what it is instead when the operator may read that.
    NotAGroup(Option<ObjectKind>),
}

/// What matters of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFacts {
    /// Its display name, escaped and at most [`DISPLAY_NAME_MAX`] characters.
    pub display_name: String,
    /// Whether it is security-enabled.
    pub security_enabled: bool,
    /// Whether it is a Microsoft 365 group (`groupTypes` has `Unified`).
    pub unified: bool,
}

impl From<GraphGroup> for GroupFacts {
    fn from(group: GraphGroup) -> Self {
        GroupFacts {
            display_name: bounded(
                group.display_name.as_deref().unwrap_or_default(),
                DISPLAY_NAME_MAX,
            ),
            security_enabled: group.security_enabled.unwrap_or(false),
            unified: group.group_types.iter().any(|t| t == "Unified"),
        }
    }
}

/// What is known about one object ID, for its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// Not asked yet.
    Pending,
    /// Answered (`stale`: the last answer, kept while a refresh fails); `missing_for`: how long
    /// it has answered "not a group" without a break.
    Answered {
        /// The answer.
        answer: Answer,
        /// Whether refreshing it failed since.
        stale: bool,
        /// How long the object ID has been missing (for [`Answer::NotAGroup`]).
        missing_for: Duration,
    },
    /// Entra ID cannot be asked, and nothing was answered before: why.
    Unavailable(String),
}

/// Condition `GroupFound`, and whether `Ready` must say `GroupNotFound`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupVerdict {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// A [`reason`].
    pub reason: &'static str,
    /// For people.
    pub message: String,
    /// The group's display name, for `status.groupDisplayName`.
    pub display_name: Option<String>,
    /// `Ready` turns `False` with [`reason::GROUP_NOT_FOUND`]: the ID has been missing for
    /// longer than `window`.
    pub not_ready: bool,
}

/// Judges what is known about `object_id`; missing for longer than `window` makes `Ready` say so.
pub fn verdict(object_id: &str, known: &Known, window: Duration) -> GroupVerdict {
    let v = |status, reason, message: String| GroupVerdict {
        status,
        reason,
        message,
        display_name: None,
        not_ready: false,
    };
    match known {
        Known::Pending => v(
            "Unknown",
            reason::LOOKUP_PENDING,
            "Entra ID has not been asked about this object ID yet".into(),
        ),
        Known::Unavailable(why) => v("Unknown", reason::ENTRA_UNAVAILABLE, why.clone()),
        Known::Answered {
            answer,
            stale,
            missing_for,
        } => {
            let stale_note = if *stale {
                " (the last answer: asking again failed)"
            } else {
                ""
            };
            match answer {
                Answer::Group(group) => {
                    let name = &group.display_name;
                    let mut verdict = if group.security_enabled {
                        v(
                            "True",
                            reason::FOUND,
                            format!("Entra ID group \"{name}\"{stale_note}"),
                        )
                    } else {
                        let kind = if group.unified {
                            "a Microsoft 365 group"
                        } else {
                            "a group that is not security-enabled"
                        };
                        v(
                            "True",
                            reason::NOT_SECURITY_ENABLED,
                            format!(
                                "Entra ID group \"{name}\" is {kind}: ID tokens carry it only when K10's app registration has groupMembershipClaims \"All\" (with \"SecurityGroup\", the default for groups claims, they never do){stale_note}"
                            ),
                        )
                    };
                    verdict.display_name = Some(name.clone());
                    verdict
                }
                Answer::NotAGroup(kind) => {
                    let what = match kind {
                        Some(kind) => format!("{object_id} is {}, not a group", kind.described()),
                        None => format!("{object_id} is not a group in this tenant"),
                    };
                    let not_ready = *missing_for >= window;
                    let message = if not_ready {
                        format!(
                            "{what}: nobody gets this access; set spec.groupObjectId to the group's Object ID (Entra admin center → Groups → the group → Overview){stale_note}"
                        )
                    } else {
                        format!(
                            "{what} (a group created moments ago can be missing for a few minutes: Ready says so only after {} min){stale_note}",
                            window.as_secs() / 60
                        )
                    };
                    GroupVerdict {
                        not_ready,
                        ..v("False", reason::GROUP_NOT_FOUND, message)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7d2a3b4c-0000-4000-8000-000000000001";

    fn group(security: bool, types: &[&str]) -> Answer {
        Answer::Group(GroupFacts::from(GraphGroup {
            id: ID.into(),
            display_name: Some("K10 admins".into()),
            security_enabled: Some(security),
            mail_enabled: Some(!security),
            group_types: types.iter().map(|t| (*t).to_owned()).collect(),
        }))
    }

    fn answered(answer: Answer, missing_for: Duration) -> Known {
        Known::Answered {
            answer,
            stale: false,
            missing_for,
        }
    }

    #[test]
    fn a_security_group_is_found_with_its_name() {
        let v = verdict(
            ID,
            &answered(group(true, &[]), Duration::ZERO),
            REPLICATION_WINDOW,
        );
        assert_eq!((v.status, v.reason), ("True", reason::FOUND));
        assert_eq!(v.display_name.as_deref(), Some("K10 admins"));
        assert!(!v.not_ready);
    }

    #[test]
    fn a_microsoft_365_group_is_found_with_a_warning() {
        let v = verdict(
            ID,
            &answered(group(false, &["Unified"]), Duration::ZERO),
            REPLICATION_WINDOW,
        );
        assert_eq!((v.status, v.reason), ("True", reason::NOT_SECURITY_ENABLED));
        assert!(v.message.contains("Microsoft 365 group"), "{}", v.message);
        assert!(!v.not_ready);
    }

    #[test]
    fn a_user_is_not_a_group_and_ready_says_so_only_after_the_window() {
        let user = Answer::NotAGroup(Some(ObjectKind::User));
        let fresh = verdict(
            ID,
            &answered(user.clone(), Duration::from_secs(5)),
            REPLICATION_WINDOW,
        );
        assert_eq!(
            (fresh.status, fresh.reason),
            ("False", reason::GROUP_NOT_FOUND)
        );
        assert!(
            fresh.message.contains("the object ID of a user"),
            "{}",
            fresh.message
        );
        assert!(!fresh.not_ready);
        let late = verdict(ID, &answered(user, REPLICATION_WINDOW), REPLICATION_WINDOW);
        assert!(late.not_ready);
        let unknown = verdict(
            ID,
            &answered(Answer::NotAGroup(None), REPLICATION_WINDOW),
            REPLICATION_WINDOW,
        );
        assert!(
            unknown.message.contains("not a group in this tenant"),
            "{}",
            unknown.message
        );
    }

    #[test]
    fn nothing_known_is_unknown_and_never_not_ready() {
        for known in [Known::Pending, Known::Unavailable("throttled".into())] {
            let v = verdict(ID, &known, Duration::ZERO);
            assert_eq!(v.status, "Unknown");
            assert!(!v.not_ready);
        }
    }

    #[test]
    fn display_names_and_types_from_outside_are_escaped_and_bounded() {
        let facts = GroupFacts::from(GraphGroup {
            display_name: Some(format!("a\u{1b}[2J{}", "x".repeat(10_000))),
            ..GraphGroup::default()
        });
        assert!(facts.display_name.starts_with("a\\u{1b}[2J"));
        assert_eq!(facts.display_name.chars().count(), DISPLAY_NAME_MAX);
        let kind = ObjectKind::from_odata_type("#microsoft.graph.\u{7}orgContact");
        assert_eq!(
            kind.described(),
            "the object ID of a microsoft.graph.\\u{7}orgContact"
        );
    }

    #[test]
    fn graph_bodies_parse() {
        let group: GraphGroup = serde_json::from_str(
            r#"{"@odata.context":"x","id":"g","displayName":"Team","securityEnabled":false,"mailEnabled":true,"groupTypes":["Unified"]}"#,
        )
        .unwrap();
        assert!(GroupFacts::from(group).unified);
        let error: GraphErrorBody = serde_json::from_str(
            r#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist","innerError":{}}}"#,
        )
        .unwrap();
        assert_eq!(error.error.code, "Request_ResourceNotFound");
        let object: GraphDirectoryObject =
            serde_json::from_str(r##"{"@odata.type":"#microsoft.graph.user","id":"u"}"##).unwrap();
        assert_eq!(
            ObjectKind::from_odata_type(&object.odata_type),
            ObjectKind::User
        );
    }
}
