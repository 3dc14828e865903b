//! Status: what an `AzureGroupBinding` should show after a reconcile, from its plan and what
//! observe and apply found and did. Pure: no client (the writes are in [`super::report`]).

use std::collections::BTreeMap;

use groupbinder_api::conditions::{self, READY, reason};
use groupbinder_api::desired::{BindingKey, refusal_message};
use groupbinder_api::entra::{self, GroupVerdict};
use groupbinder_api::k10oidc::{Presents, Verdict};
use groupbinder_api::{
    Allowlist, AzureGroupBinding, AzureGroupBindingStatus, BindingStatus, Plan, SelectedNamespaces,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::outcome::{Ensured, EnsuredBinding, Outcome, Problem};

/// What a reconcile that carried out `plan` found and did: the roles and namespaces `missing`,
/// what was done for each planned binding (`ensured`), and the roles the allowlist refused.
pub(crate) fn outcome(
    plan: &Plan,
    missing: Vec<Problem>,
    (notes, k10, entra): (Vec<String>, Option<Verdict>, Option<GroupVerdict>),
    ensured: &[EnsuredBinding],
    allowed: &Allowlist,
) -> Outcome {
    let mut problems = missing;
    if let Some(verdict) = entra.as_ref().filter(|v| v.not_ready) {
        problems.push(Problem::GroupNotFound {
            message: verdict.message.clone(),
        });
    }
    if let Some(verdict) = k10.as_ref().filter(|v| v.presents == Presents::No) {
        problems.push(Problem::K10WillNotPresent {
            reason: verdict.reason,
            message: verdict.message.clone(),
        });
    }
    if !plan.refused.is_empty() {
        problems.push(Problem::RoleNotAllowed {
            message: refusal_message(&plan.refused, allowed),
        });
    }
    let mut bindings = Vec::new();
    for done in ensured {
        match &done.ensured {
            Ensured::Conflict { holder } => problems.push(Problem::Conflict {
                binding: done.key.clone(),
                holder: holder.clone(),
            }),
            _ => bindings.push(binding_status(&done.key, &done.role.name)),
        }
    }
    Outcome::Bound {
        group: plan.group.clone(),
        bindings,
        problems,
        selected: plan.selected.clone(),
        notes,
        k10,
        entra,
    }
}

/// Whether `agb`'s status says a binding's name is taken (then observe reads uncached names from
/// the API server before apply writes).
pub(crate) fn in_conflict(agb: &AzureGroupBinding) -> bool {
    agb.status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == READY && c.reason == reason::CONFLICT)
}

/// The status `agb` should have after `outcome`. `lastTransitionTime` is kept when `Ready` keeps
/// its status. A refused spec has no group and no binding: they were deleted.
pub fn desired_status(
    agb: &AzureGroupBinding,
    outcome: &Outcome,
    now: &Time,
) -> AzureGroupBindingStatus {
    let previous = agb.status.clone().unwrap_or_default();
    let generation = agb.metadata.generation;
    let k10 = match outcome {
        Outcome::Bound { k10: Some(v), .. } | Outcome::Held(_, v, _) => {
            Some(conditions::condition_of(
                &previous.conditions,
                conditions::K10_PRESENTS,
                match v.presents {
                    Presents::Yes => "True",
                    Presents::No => "False",
                    Presents::Unknown => "Unknown",
                },
                v.reason,
                v.message.clone(),
                generation,
                now,
            ))
        }
        _ => None,
    };
    let (group_found, display_name) = match outcome {
        Outcome::Bound { entra: Some(v), .. } => (
            Some(conditions::condition_of(
                &previous.conditions,
                entra::GROUP_FOUND,
                v.status,
                v.reason,
                v.message.clone(),
                generation,
                now,
            )),
            v.display_name.clone(),
        ),
        _ => (None, None),
    };
    let (ready, reason, message, group, mut bindings, selected) = match outcome {
        Outcome::Held(message, _, true) => (
            false,
            reason::K10_PREFIX_UNKNOWN,
            message.clone(),
            previous.group.clone(),
            previous.bindings.clone(),
            previous.selected_namespaces.clone(),
        ),
        Outcome::Held(message, _, false) => (
            false,
            reason::K10_PREFIX_UNKNOWN,
            message.clone(),
            None,
            Vec::new(),
            None,
        ),
        Outcome::Refused(error) => (
            false,
            error.reason(),
            error.to_string(),
            None,
            Vec::new(),
            None,
        ),
        Outcome::Bound {
            group,
            bindings,
            problems,
            selected,
            notes,
            k10: _,
            entra: _,
        } => {
            let mut problems = problems.clone();
            problems.sort();
            problems.dedup();
            let (ready, reason, mut message) = match problems.first() {
                None => (true, reason::RECONCILED, ready_message(group, bindings)),
                Some(first) => {
                    let message = problems
                        .iter()
                        .map(Problem::message)
                        .collect::<Vec<_>>()
                        .join("; ");
                    (false, first.reason(), message)
                }
            };
            for note in notes {
                message = format!("{message}; {note}");
            }
            let selected = (has_selectors(agb)).then(|| SelectedNamespaces {
                count: i32::try_from(selected.len()).unwrap_or(i32::MAX),
                first: selected.iter().take(FIRST_SELECTED).cloned().collect(),
            });
            (
                ready,
                reason,
                message,
                Some(group.clone()),
                bindings.clone(),
                selected,
            )
        }
    };
    bindings.sort();
    AzureGroupBindingStatus {
        observed_generation: generation,
        group,
        group_display_name: display_name,
        bindings,
        selected_namespaces: selected,
        conditions: std::iter::once(conditions::condition(
            &previous.conditions,
            READY,
            ready,
            reason,
            message.clone(),
            generation,
            now,
        ))
        .chain(k10)
        .chain(group_found)
        .chain(kstatus(ready, reason).map(|type_| {
            conditions::condition(
                &previous.conditions,
                type_,
                true,
                reason,
                message.clone(),
                generation,
                now,
            )
        }))
        .collect(),
    }
}

/// kstatus's abnormal-true condition for a `Ready=False` with `reason` (what Flux's health
/// checks and `wait: true` read): `Stalled` when a person must act (Flux fails at once instead of
/// waiting out its timeout), `Reconciling` when it resolves by itself. Absent when ready.
fn kstatus(ready: bool, reason: &str) -> Option<&'static str> {
    use groupbinder_api::k10oidc::reason as k10;
    if ready {
        return None;
    }
    match reason {
        reason::ROLE_NOT_ALLOWED
        | reason::INVALID_SPEC
        | reason::CONFLICT
        | reason::TOO_MANY_ROLE_BINDINGS
        | k10::PREFIX_MISMATCH
        | k10::NO_GROUP_CLAIM
        | k10::NOT_IN_GROUP_ALLOW_LIST
        | entra::reason::GROUP_NOT_FOUND => Some(conditions::STALLED),
        _ => Some(conditions::RECONCILING),
    }
}

/// How many selected namespaces the status names.
const FIRST_SELECTED: usize = 5;

fn has_selectors(agb: &AzureGroupBinding) -> bool {
    agb.spec
        .roles
        .iter()
        .flatten()
        .any(|r| r.namespace_selector.is_some())
}

/// How a binding in place is listed in the status.
pub fn binding_status(key: &BindingKey, role: &str) -> BindingStatus {
    BindingStatus {
        kind: key.kind().to_owned(),
        name: key.name().to_owned(),
        namespace: key.namespace().map(str::to_owned),
        role: role.to_owned(),
    }
}

/// "group g is bound to k10-admin, k10-basic in shop-1, shop-2, shop-3 and 7 more": per role,
/// cluster-wide or in which namespaces (the first three of them).
fn ready_message(group: &str, bindings: &[BindingStatus]) -> String {
    if bindings.is_empty() {
        return format!("group {group} is bound to nothing");
    }
    let mut by_role: BTreeMap<(&str, bool), Vec<&str>> = BTreeMap::new();
    for b in bindings {
        let namespaces = by_role.entry((&b.role, b.namespace.is_some())).or_default();
        namespaces.extend(b.namespace.as_deref());
    }
    let roles: Vec<String> = by_role
        .into_iter()
        .map(|((role, _), namespaces)| match namespaces.len() {
            0 => role.to_owned(),
            n if n <= 3 => format!("{role} in {}", namespaces.join(", ")),
            n => format!(
                "{role} in {} and {} more",
                namespaces[..3].join(", "),
                n - 3
            ),
        })
        .collect();
    format!("group {group} is bound to {}", roles.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::{AzureGroupBindingSpec, PlanError, RoleKind};
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn agb() -> AzureGroupBinding {
        let mut agb = AzureGroupBinding::new("x", AzureGroupBindingSpec::default());
        agb.metadata.generation = Some(3);
        agb
    }

    fn crb(role: &str) -> BindingStatus {
        BindingStatus {
            kind: "ClusterRoleBinding".into(),
            name: format!("x:{role}"),
            namespace: None,
            role: role.into(),
        }
    }

    #[test]
    fn ready_when_no_problem() {
        let outcome = Outcome::bound("g".into(), vec![crb("k10-admin")], vec![]);
        let status = desired_status(&agb(), &outcome, &at(1));
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "True", "Reconciled")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.group.as_deref(), Some("g"));
        assert_eq!(ready.message, "group g is bound to k10-admin");
    }

    #[test]
    fn kstatus_says_stalled_when_a_person_must_act_and_reconciling_otherwise() {
        let types = |problems: Vec<Problem>| -> Vec<(String, String)> {
            let outcome = Outcome::bound("g".into(), vec![], problems);
            desired_status(&agb(), &outcome, &at(1))
                .conditions
                .into_iter()
                .map(|c| (c.type_, c.status))
                .collect()
        };
        let pair = |t: &str, s: &str| (t.to_owned(), s.to_owned());
        assert_eq!(types(vec![]), [pair("Ready", "True")]);
        let conflict = Problem::Conflict {
            binding: BindingKey::Cluster { name: "x".into() },
            holder: "someone".into(),
        };
        assert_eq!(
            types(vec![conflict]),
            [pair("Ready", "False"), pair("Stalled", "True")]
        );
        let waiting = Problem::NamespaceNotFound {
            namespace: "shop".into(),
        };
        assert_eq!(
            types(vec![waiting]),
            [pair("Ready", "False"), pair("Reconciling", "True")]
        );
        let unseen = Problem::K10WillNotPresent {
            reason: groupbinder_api::k10oidc::reason::PREFIX_MISMATCH,
            message: "m".into(),
        };
        assert_eq!(
            types(vec![unseen]),
            [pair("Ready", "False"), pair("Stalled", "True")]
        );
    }

    #[test]
    fn conflict_wins_over_missing_roles_and_all_are_reported() {
        let problems = vec![
            Problem::RoleNotFound {
                kind: RoleKind::ClusterRole,
                namespace: None,
                name: "k10-admin".into(),
            },
            Problem::Conflict {
                binding: BindingKey::Cluster {
                    name: "x:k10-basic".into(),
                },
                holder: "no owner".into(),
            },
        ];
        let outcome = Outcome::bound("g".into(), vec![], problems);
        let ready = desired_status(&agb(), &outcome, &at(1))
            .conditions
            .remove(0);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Conflict")
        );
        assert!(
            ready
                .message
                .contains("ClusterRoleBinding x:k10-basic already exists"),
            "{}",
            ready.message
        );
        assert!(
            ready
                .message
                .contains("ClusterRole k10-admin does not exist"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_spec_without_a_group_shows_no_group_and_no_binding() {
        let mut agb = agb();
        let before = Outcome::bound("g".into(), vec![crb("k10-admin")], vec![]);
        agb.status = Some(desired_status(&agb, &before, &at(1)));
        let refused = Outcome::Refused(PlanError::InvalidGroupPrefix("a\u{a0}".into()));
        let status = desired_status(&agb, &refused, &at(2));
        assert_eq!(status.bindings, vec![]);
        assert_eq!(status.group, None);
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            ready.message.contains("grants nothing"),
            "{}",
            ready.message
        );
        assert_eq!(ready.last_transition_time, at(2));
    }

    #[test]
    fn refused_roles_come_first_and_the_rest_is_listed() {
        let outcome = Outcome::bound(
            "g".into(),
            vec![crb("k10-config-view")],
            vec![
                Problem::RoleNotFound {
                    kind: RoleKind::ClusterRole,
                    namespace: None,
                    name: "k10-config-view".into(),
                },
                Problem::RoleNotAllowed {
                    message: "ClusterRole cluster-admin is not in the operator's allowlist".into(),
                },
            ],
        );
        let status = desired_status(&agb(), &outcome, &at(1));
        assert_eq!(status.bindings, vec![crb("k10-config-view")]);
        let ready = &status.conditions[0];
        assert_eq!(ready.reason, "RoleNotAllowed");
        assert!(
            ready.message.starts_with("ClusterRole cluster-admin"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn unchanged_outcome_gives_an_identical_status() {
        let mut agb = agb();
        let outcome = Outcome::bound("g".into(), vec![crb("k10-admin")], vec![]);
        let first = desired_status(&agb, &outcome, &at(1));
        agb.status = Some(first.clone());
        let second = desired_status(&agb, &outcome, &at(99));
        assert_eq!(
            first, second,
            "a later reconcile with the same outcome must not write"
        );
    }
}
