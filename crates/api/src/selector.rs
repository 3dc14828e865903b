//! Namespace selectors: which namespaces a `roles` entry's `namespaceSelector` selects.
//!
//! The same label-matching rules as Kubernetes' own (`matchLabels` and `matchExpressions` are
//! ANDed; `In`, `NotIn`, `Exists`, `DoesNotExist`), and two rules of groupbinder's: a selector
//! never selects a `kube-*` namespace, nor K10's own namespace for `<release>-basic`.

use std::collections::BTreeMap;

use crate::v1alpha1::{NamespaceSelector, SelectorOperator};

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

/// The namespaces a plan may select from.
pub trait Namespaces {
    /// Calls `each` with the name and labels of every namespace.
    fn for_each(&self, each: &mut dyn FnMut(&str, Option<&Labels>));
}

/// Namespaces as a list of names and labels (for `groupbinder plan` and tests).
impl Namespaces for Vec<(String, Labels)> {
    fn for_each(&self, each: &mut dyn FnMut(&str, Option<&Labels>)) {
        for (name, labels) in self {
            each(name, Some(labels));
        }
    }
}

/// Whether `labels` (`None`: no labels) match `selector`. `In`/`NotIn` without values match
/// nothing (admission refuses those).
pub fn matches(selector: &NamespaceSelector, labels: Option<&Labels>) -> bool {
    let value = |key: &str| labels.and_then(|l| l.get(key));
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| value(k) == Some(v));
    by_labels
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let present = value(&e.key);
            match e.operator {
                SelectorOperator::In => {
                    !values.is_empty() && present.is_some_and(|v| values.contains(v))
                }
                SelectorOperator::NotIn => {
                    !values.is_empty() && present.is_none_or(|v| !values.contains(v))
                }
                SelectorOperator::Exists => present.is_some(),
                SelectorOperator::DoesNotExist => present.is_none(),
            }
        })
}

/// Whether `selector` names at least one label (an empty one would select every namespace, and
/// is refused).
pub fn is_specific(selector: &NamespaceSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_some_and(|l| !l.is_empty())
        || selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
}

/// Whether a selector may select `namespace` for the role `role`: never a `kube-*` namespace,
/// and not K10's own namespace for `<release>-basic`.
pub fn is_selectable(namespace: &str, role: &str, k10_release: &str, k10_namespace: &str) -> bool {
    let system = namespace.starts_with("kube-");
    let basic_in_k10 = namespace == k10_namespace && role == format!("{k10_release}-basic");
    !system && !basic_in_k10
}

/// The namespaces `selector` selects among `namespaces`, sorted.
pub fn selected(selector: &NamespaceSelector, namespaces: &dyn Namespaces) -> Vec<String> {
    let mut names = Vec::new();
    namespaces.for_each(&mut |name, labels| {
        if matches(selector, labels) {
            names.push(name.to_owned());
        }
    });
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::SelectorRequirement as NamespaceSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> NamespaceSelectorRequirement {
        NamespaceSelectorRequirement {
            key: key.into(),
            operator: serde_json::from_value(serde_json::json!(operator)).unwrap(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        expressions: Vec<NamespaceSelectorRequirement>,
    ) -> NamespaceSelector {
        NamespaceSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded_as_in_kubernetes() {
        let shop = labels(&[("team", "shop"), ("tier", "prod")]);
        let crm = labels(&[("team", "crm")]);
        let s = selector(&[("team", "shop")], vec![]);
        assert!(matches(&s, Some(&shop)));
        assert!(!matches(&s, Some(&crm)));
        assert!(!matches(&s, None));
        let s = selector(
            &[],
            vec![
                expression("team", "In", &["shop", "crm"]),
                expression("tier", "NotIn", &["prod"]),
            ],
        );
        assert!(!matches(&s, Some(&shop)), "tier=prod is excluded");
        assert!(matches(&s, Some(&crm)), "no tier label is NotIn prod");
        let s = selector(&[], vec![expression("team", "Exists", &[])]);
        assert!(matches(&s, Some(&crm)) && !matches(&s, None));
        let s = selector(&[], vec![expression("team", "DoesNotExist", &[])]);
        assert!(!matches(&s, Some(&crm)) && matches(&s, None));
        let s = selector(&[("team", "shop")], vec![expression("tier", "Exists", &[])]);
        assert!(matches(&s, Some(&shop)) && !matches(&s, Some(&labels(&[("team", "shop")]))));
    }

    #[test]
    fn malformed_expressions_match_nothing() {
        let crm = labels(&[("team", "crm")]);
        for e in [
            expression("team", "In", &[]),
            expression("team", "NotIn", &[]),
        ] {
            assert!(
                !matches(&selector(&[], vec![e.clone()]), Some(&crm)),
                "{e:?}"
            );
            assert!(!matches(&selector(&[], vec![e.clone()]), None), "{e:?}");
        }
        assert!(!is_specific(&NamespaceSelector::default()));
        assert!(is_specific(&selector(&[("a", "b")], vec![])));
    }

    #[test]
    fn selectors_never_select_system_namespaces_or_basic_in_k10s_own() {
        assert!(!is_selectable(
            "kube-system",
            "k10-config-view",
            "k10",
            "kasten-io"
        ));
        assert!(!is_selectable(
            "kube-public",
            "k10-basic",
            "k10",
            "kasten-io"
        ));
        assert!(!is_selectable("kasten-io", "k10-basic", "k10", "kasten-io"));
        assert!(is_selectable(
            "kasten-io",
            "k10-config-view",
            "k10",
            "kasten-io"
        ));
        assert!(is_selectable("shop", "k10-basic", "k10", "kasten-io"));
        assert!(is_selectable("kubeflow", "k10-basic", "k10", "kasten-io"));
    }

    #[test]
    fn selected_namespaces_come_sorted() {
        let namespaces: Vec<(String, Labels)> = ["b", "a", "c"]
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    labels(&[("team", if *n == "c" { "x" } else { "shop" })]),
                )
            })
            .collect();
        let s = selector(&[("team", "shop")], vec![]);
        assert_eq!(selected(&s, &namespaces), ["a", "b"]);
    }
}
