//! Which AzureGroupBindings a Namespace, ClusterRole or Role event concerns, without scanning
//! every object: an index of what each object refers to, kept from the AzureGroupBinding watch.
//!
//! Roles: an object refers to a ClusterRole by name (cluster-wide, or bound in namespaces), and to
//! a Role by namespace and name (or by name alone, in whatever namespaces its selector selects).
//! A role event costs a lookup.
//!
//! Namespaces: two kinds of object care about a namespace: those that name it in `roles[].namespace` (only
//! whether it exists matters to them: they are woken when it is created or deleted), and those
//! whose `namespaceSelector`s may select it (woken when it starts or stops matching one of their
//! selectors: on creation, deletion or relabelling). The index keeps the first by namespace, the
//! second as a list of the objects that have selectors, and the labels each namespace had when
//! last seen, so that a relabel is compared with what it was. A namespace event costs a lookup
//! plus one label match per selector object (S), never O(all objects).
//!
//! The selectors themselves are read from the AzureGroupBinding cache when a namespace changes,
//! not copied here: a copy doubled what the largest objects cost (at the schema's maximum, eight
//! selectors make up nine tenths of an object).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use groupbinder_api::desired::requested_roles;
use groupbinder_api::selector::{Labels, matches};
use groupbinder_api::{NamespaceSelector, RoleKind, Settings, Target};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;

use crate::kinds::Guarded;

/// The index (cheap to clone: shared).
#[derive(Clone)]
pub(crate) struct ReferenceIndex {
    settings: Arc<Settings>,
    agbs: Store<Guarded>,
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for ReferenceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceIndex").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Objects by the namespaces they name explicitly.
    naming: HashMap<String, HashSet<ObjectRef<Guarded>>>,
    /// Objects by the ClusterRoles they bind.
    cluster_roles: HashMap<String, HashSet<ObjectRef<Guarded>>>,
    /// Objects by the Roles they bind: (namespace, name); no namespace for a selector's.
    roles: HashMap<(Option<String>, String), HashSet<ObjectRef<Guarded>>>,
    /// What each object refers to: the namespaces and roles it names.
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
    has_selectors: bool,
    cluster_roles: Vec<String>,
    roles: Vec<(Option<String>, String)>,
}

/// Removes `object` from the set at `key` of `map`, and the set once it is empty.
fn unlink<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<ObjectRef<Guarded>>>,
    key: &K,
    object: &ObjectRef<Guarded>,
) {
    if let Some(set) = map.get_mut(key) {
        set.remove(object);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

/// Adds `object` to the set at `key` of `map`.
fn link<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, HashSet<ObjectRef<Guarded>>>,
    key: K,
    object: &ObjectRef<Guarded>,
) {
    map.entry(key).or_default().insert(object.clone());
}

/// The namespace selectors of `object`'s roles.
fn selectors(object: &Guarded) -> impl Iterator<Item = &NamespaceSelector> {
    object
        .0
        .as_ref()
        .ok()
        .and_then(|agb| agb.spec.roles.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|role| match role.target() {
            Target::Selector(selector) => Some(selector),
            Target::Namespace(_) | Target::Invalid => None,
        })
}

impl Inner {
    fn remove(&mut self, object: &ObjectRef<Guarded>) {
        let Some(refers) = self.refers.remove(object) else {
            return;
        };
        for namespace in &refers.namespaces {
            unlink(&mut self.naming, namespace, object);
        }
        for name in &refers.cluster_roles {
            unlink(&mut self.cluster_roles, name, object);
        }
        for role in &refers.roles {
            unlink(&mut self.roles, role, object);
        }
        self.selecting.remove(object);
    }

    fn insert(&mut self, object: ObjectRef<Guarded>, refers: Refers) {
        self.remove(&object);
        for namespace in &refers.namespaces {
            link(&mut self.naming, namespace.clone(), &object);
        }
        for name in &refers.cluster_roles {
            link(&mut self.cluster_roles, name.clone(), &object);
        }
        for role in &refers.roles {
            link(&mut self.roles, role.clone(), &object);
        }
        if refers.has_selectors {
            self.selecting.insert(object.clone());
        }
        self.refers.insert(object, refers);
    }
}

impl ReferenceIndex {
    /// An empty index; `settings` fill in the admin profile of objects that name no role, `agbs`
    /// is the cache the selectors are read from.
    pub(crate) fn new(settings: Arc<Settings>, agbs: Store<Guarded>) -> Self {
        ReferenceIndex {
            settings,
            agbs,
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
        let (cluster_roles, roles) = requested_roles(agb, &self.settings);
        let mut refers = Refers {
            cluster_roles: cluster_roles.iter().map(|r| r.0.clone()).collect(),
            ..Refers::default()
        };
        for role in roles.iter() {
            let namespace = match role.target() {
                Target::Namespace(namespace) => {
                    refers.namespaces.push(namespace.to_owned());
                    Some(namespace.to_owned())
                }
                Target::Selector(_) => {
                    refers.has_selectors = true;
                    None
                }
                Target::Invalid => continue,
            };
            match role.kind {
                RoleKind::ClusterRole => refers.cluster_roles.push(role.name.0.clone()),
                RoleKind::Role => refers.roles.push((namespace, role.name.0.clone())),
            }
        }
        for list in [&mut refers.namespaces, &mut refers.cluster_roles] {
            list.sort();
            list.dedup();
        }
        refers.roles.sort();
        refers.roles.dedup();
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The objects that bind the ClusterRole `name` (cluster-wide or in namespaces).
    pub(crate) fn by_cluster_role(&self, name: &str) -> Vec<ObjectRef<Guarded>> {
        let inner = self.read();
        inner
            .cluster_roles
            .get(name)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The objects that bind the Role `namespace/name`, or a Role `name` wherever their
    /// selectors select.
    pub(crate) fn by_role(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Guarded>> {
        let inner = self.read();
        let named = inner
            .roles
            .get(&(Some(namespace.to_owned()), name.to_owned()));
        let selected = inner.roles.get(&(None, name.to_owned()));
        let mut objects: HashSet<ObjectRef<Guarded>> = HashSet::new();
        objects.extend(named.into_iter().flatten().cloned());
        objects.extend(selected.into_iter().flatten().cloned());
        objects.into_iter().collect()
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
            // Gone from the cache: its deletion reaches it by its own event.
            let Some(cached) = self.agbs.get(object) else {
                continue;
            };
            let selects = |labels: &Option<Labels>| {
                labels.is_some() && selectors(&cached).any(|s| matches(s, labels.as_ref()))
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
    use groupbinder_api::{AzureGroupBinding, AzureGroupBindingSpec, NamespacedRole};
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

    /// The index with the cache it reads, fed events in the order the watch feeds them.
    struct Indexed {
        index: ReferenceIndex,
        cache: kube::runtime::reflector::store::Writer<Guarded>,
    }

    impl Indexed {
        fn apply(&mut self, event: Event<Guarded>) {
            self.index.apply(&event);
            self.cache.apply_watcher_event(&event);
        }

        fn changed(&self, name: &str, labels: Option<Labels>) -> Vec<ObjectRef<Guarded>> {
            self.index.changed(name, labels)
        }

        fn by_cluster_role(&self, name: &str) -> Vec<ObjectRef<Guarded>> {
            self.index.by_cluster_role(name)
        }

        fn by_role(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Guarded>> {
            self.index.by_role(namespace, name)
        }
    }

    fn index() -> Indexed {
        let cache = kube::runtime::reflector::store::Writer::default();
        let mut index = Indexed {
            index: ReferenceIndex::new(
                Arc::new(Settings::for_k10("k10", "kasten-io", "michael_azure_")),
                cache.as_reader(),
            ),
            cache,
        };
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
            index.apply(Event::Apply(o));
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
        let mut index = index();
        index.apply(Event::Apply(object("shop", Some(vec![selecting("other")]))));
        assert!(index.changed("shop-2", team("shop")).is_empty());
        index.apply(Event::Delete(object("crm", None)));
        assert!(index.changed("crm-1", team("crm")).is_empty());
        // A relist that no longer returns `named` drops it.
        index.apply(Event::Init);
        index.apply(Event::InitApply(object(
            "shop",
            Some(vec![selecting("shop")]),
        )));
        index.apply(Event::InitDone);
        assert_eq!(names(index.changed("shop-1", team("shop"))), ["shop"]);
    }

    #[test]
    fn a_role_wakes_the_objects_that_bind_it() {
        let mut index = index();
        let viewers = object(
            "viewers",
            Some(vec![
                NamespacedRole::in_namespace("team-role", "team-a", RoleKind::Role),
                NamespacedRole {
                    kind: RoleKind::Role,
                    name: "app-role".into(),
                    ..selecting("shop")
                },
            ]),
        );
        index.apply(Event::Apply(viewers));
        // The admin profile binds K10's roles through the settings.
        assert_eq!(names(index.by_cluster_role("k10-admin")), ["admins"]);
        assert!(
            index.by_cluster_role("k10-mc-admin").is_empty(),
            "bound only when named"
        );
        assert_eq!(
            names(index.by_role("kasten-io", "k10-ns-admin")),
            ["admins"]
        );
        // A ClusterRole bound in namespaces counts; a Role of that name does not.
        assert_eq!(
            names(index.by_cluster_role("k10-basic")),
            ["crm", "named", "shop"]
        );
        assert!(index.by_role("shop-1", "k10-basic").is_empty());
        // A Role in its namespace; a selector's Role in any namespace.
        assert_eq!(names(index.by_role("team-a", "team-role")), ["viewers"]);
        assert!(index.by_role("team-b", "team-role").is_empty());
        assert_eq!(names(index.by_role("anywhere", "app-role")), ["viewers"]);
        assert!(index.by_cluster_role("team-role").is_empty());
        index.apply(Event::Delete(object("admins", None)));
        assert!(index.by_cluster_role("k10-admin").is_empty());
    }
}
