//! Which AzureGroupBindings a Namespace event concerns, without scanning every object.
//!
//! Two kinds of object care about a namespace: those that name it in `roles[].namespace` (only
//! whether it exists matters to them: they are woken when it is created or deleted), and those
//! whose `namespaceSelector`s may select it (woken when it starts or stops matching one of their
//! selectors: on creation, deletion or relabelling). The index keeps the first by namespace, the
//! second as a list of the objects that have selectors, and the labels each namespace had when
//! last seen, so that a relabel is compared with what it was. A namespace event costs a lookup
//! plus one label match per selector object (S), never O(all objects).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use groupbinder_api::desired::requested_roles;
use groupbinder_api::selector::{Labels, matches};
use groupbinder_api::{NamespaceSelector, Settings, Target};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use crate::reconcile::Guarded;

/// The index (cheap to clone: shared).
#[derive(Clone)]
pub(crate) struct NamespaceIndex {
    settings: Arc<Settings>,
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for NamespaceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceIndex").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Objects by the namespaces they name explicitly.
    naming: HashMap<String, HashSet<ObjectRef<Guarded>>>,
    /// What each object refers to: the namespaces it names, its selectors.
    refers: HashMap<ObjectRef<Guarded>, Refers>,
    /// The objects that have selectors.
    selecting: HashSet<ObjectRef<Guarded>>,
    /// Each namespace's labels when last seen (absent: not seen, or deleted).
    labels: HashMap<String, Labels>,
    /// The objects a relist has returned so far; the others are dropped when it completes.
    relisting: Option<HashSet<ObjectRef<Guarded>>>,
}

#[derive(Default)]
struct Refers {
    namespaces: Vec<String>,
    selectors: Vec<NamespaceSelector>,
}

impl Inner {
    fn remove(&mut self, object: &ObjectRef<Guarded>) {
        let Some(refers) = self.refers.remove(object) else {
            return;
        };
        for namespace in refers.namespaces {
            if let Some(set) = self.naming.get_mut(&namespace) {
                set.remove(object);
                if set.is_empty() {
                    self.naming.remove(&namespace);
                }
            }
        }
        self.selecting.remove(object);
    }

    fn insert(&mut self, object: ObjectRef<Guarded>, refers: Refers) {
        self.remove(&object);
        for namespace in &refers.namespaces {
            self.naming
                .entry(namespace.clone())
                .or_default()
                .insert(object.clone());
        }
        if !refers.selectors.is_empty() {
            self.selecting.insert(object.clone());
        }
        self.refers.insert(object, refers);
    }
}

impl NamespaceIndex {
    /// An empty index; `settings` fill in the admin profile of objects that name no role.
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        NamespaceIndex {
            settings,
            inner: Arc::default(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn refers(&self, object: &Guarded) -> Refers {
        let Ok(agb) = &object.0 else {
            return Refers::default();
        };
        let (_, roles) = requested_roles(agb, &self.settings);
        let mut refers = Refers::default();
        for role in &roles {
            match role.target() {
                Target::Namespace(namespace) => refers.namespaces.push(namespace.to_owned()),
                Target::Selector(selector) => refers.selectors.push(selector.clone()),
                Target::Invalid => {}
            }
        }
        refers.namespaces.sort();
        refers.namespaces.dedup();
        refers
    }

    /// Keeps the index up to date with an event of the AzureGroupBinding watch.
    pub(crate) fn apply(&self, event: &Event<Guarded>) {
        match event {
            Event::Apply(object) => {
                let refers = self.refers(object);
                self.write().insert(ObjectRef::from_obj(object), refers);
            }
            Event::Delete(object) => self.write().remove(&ObjectRef::from_obj(object)),
            Event::Init => self.write().relisting = Some(HashSet::new()),
            Event::InitApply(object) => {
                let refers = self.refers(object);
                let reference = ObjectRef::from_obj(object);
                let mut inner = self.write();
                if let Some(seen) = inner.relisting.as_mut() {
                    seen.insert(reference.clone());
                }
                inner.insert(reference, refers);
            }
            Event::InitDone => {
                let mut inner = self.write();
                if let Some(seen) = inner.relisting.take() {
                    let gone: Vec<_> = inner
                        .refers
                        .keys()
                        .filter(|o| !seen.contains(*o))
                        .cloned()
                        .collect();
                    for object in gone {
                        inner.remove(&object);
                    }
                }
            }
        }
    }

    /// The objects concerned by namespace `name` now having `labels` (`None`: it is gone), and
    /// remembers them for the next event of that namespace.
    pub(crate) fn changed(&self, name: &str, labels: Option<Labels>) -> Vec<ObjectRef<Guarded>> {
        let mut inner = self.write();
        let before = inner.labels.remove(name);
        let created_or_deleted = before.is_none() != labels.is_none();
        let mut concerned: HashSet<ObjectRef<Guarded>> = HashSet::new();
        if created_or_deleted && let Some(naming) = inner.naming.get(name) {
            concerned.extend(naming.iter().cloned());
        }
        for object in &inner.selecting {
            let selects = |labels: &Option<Labels>| {
                labels.is_some()
                    && inner.refers[object]
                        .selectors
                        .iter()
                        .any(|s| matches(s, labels.as_ref()))
            };
            if selects(&before) != selects(&labels) {
                concerned.insert(object.clone());
            }
        }
        if let Some(labels) = labels {
            inner.labels.insert(name.to_owned(), labels);
        }
        concerned.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, NamespacedRole, RoleKind};
    use kube::core::error_boundary::DeserializeGuard;

    fn object(name: &str, roles: Option<Vec<NamespacedRole>>) -> Guarded {
        let spec = AzureGroupBindingSpec {
            roles,
            ..AzureGroupBindingSpec::default()
        };
        DeserializeGuard(Ok(AzureGroupBinding::new(name, spec)))
    }

    fn selecting(team: &str) -> NamespacedRole {
        NamespacedRole {
            name: "k10-basic".into(),
            namespace: None,
            namespace_selector: Some(NamespaceSelector {
                match_labels: Some([("team".to_owned(), team.to_owned())].into()),
                match_expressions: None,
            }),
            kind: RoleKind::ClusterRole,
        }
    }

    fn team(team: &str) -> Option<Labels> {
        Some([("team".to_owned(), team.to_owned())].into())
    }

    fn names(refs: Vec<ObjectRef<Guarded>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    fn index() -> NamespaceIndex {
        let index = NamespaceIndex::new(Arc::new(Settings::for_k10(
            "k10",
            "kasten-io",
            "michael_azure_",
        )));
        for o in [
            object("admins", None),
            object("shop", Some(vec![selecting("shop")])),
            object("crm", Some(vec![selecting("crm")])),
            object(
                "named",
                Some(vec![NamespacedRole::in_namespace(
                    "k10-basic",
                    "shop-1",
                    RoleKind::ClusterRole,
                )]),
            ),
        ] {
            index.apply(&Event::Apply(o));
        }
        index
    }

    #[test]
    fn a_namespace_wakes_only_the_objects_it_concerns() {
        let index = index();
        // Created: those that name it, and those whose selectors select it.
        assert_eq!(
            names(index.changed("shop-1", team("shop"))),
            ["named", "shop"]
        );
        // Relabelled: those it starts or stops matching; naming it does not care.
        assert_eq!(names(index.changed("shop-1", team("crm"))), ["crm", "shop"]);
        // Labels changed without changing what matches: nobody.
        let mut more = team("crm");
        more.as_mut().unwrap().insert("tier".into(), "prod".into());
        assert!(index.changed("shop-1", more).is_empty());
        // Deleted: those that name it and those that selected it.
        assert_eq!(names(index.changed("shop-1", None)), ["crm", "named"]);
        // K10's namespace: the admin profile names it.
        assert_eq!(names(index.changed("kasten-io", team("x"))), ["admins"]);
        assert!(index.changed("kasten-io", team("y")).is_empty());
    }

    #[test]
    fn an_object_changed_or_deleted_is_forgotten() {
        let index = index();
        index.apply(&Event::Apply(object(
            "shop",
            Some(vec![selecting("other")]),
        )));
        assert!(index.changed("shop-2", team("shop")).is_empty());
        index.apply(&Event::Delete(object("crm", None)));
        assert!(index.changed("crm-1", team("crm")).is_empty());
        // A relist that no longer returns `named` drops it.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(object(
            "shop",
            Some(vec![selecting("shop")]),
        )));
        index.apply(&Event::InitDone);
        assert_eq!(names(index.changed("shop-1", team("shop"))), ["shop"]);
    }
}
