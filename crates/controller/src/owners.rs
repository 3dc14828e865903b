//! Which cached bindings each AzureGroupBinding controls, kept up to date from the watch events.
//!
//! A reconcile looks for bindings its object no longer plans. Scanning the whole cache for them
//! costs O(all bindings) per reconcile, O(n²) when every object is reconciled after a start; with
//! this index it costs O(bindings of this object).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

/// Objects by the uid of their controller (the ownerReference with `controller: true`).
pub struct OwnerIndex<K: Resource<DynamicType = ()>> {
    inner: Arc<RwLock<Inner<K>>>,
}

impl<K: Resource<DynamicType = ()>> std::fmt::Debug for OwnerIndex<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerIndex").finish_non_exhaustive()
    }
}

impl<K: Resource<DynamicType = ()>> Clone for OwnerIndex<K> {
    fn clone(&self) -> Self {
        OwnerIndex {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Default for OwnerIndex<K> {
    fn default() -> Self {
        OwnerIndex {
            inner: Arc::new(RwLock::new(Inner {
                owned: HashMap::new(),
                owner: HashMap::new(),
                relisting: None,
            })),
        }
    }
}

struct Inner<K: Resource<DynamicType = ()>> {
    owned: HashMap<String, HashSet<ObjectRef<K>>>,
    owner: HashMap<ObjectRef<K>, String>,
    /// What a relist has returned so far; it replaces the index when the relist is complete.
    relisting: Option<HashMap<ObjectRef<K>, String>>,
}

impl<K: Resource<DynamicType = ()>> Inner<K> {
    fn remove(&mut self, object: &ObjectRef<K>) {
        if let Some(uid) = self.owner.remove(object)
            && let Some(set) = self.owned.get_mut(&uid)
        {
            set.remove(object);
            if set.is_empty() {
                self.owned.remove(&uid);
            }
        }
    }

    fn insert(&mut self, object: ObjectRef<K>, uid: Option<String>) {
        self.remove(&object);
        if let Some(uid) = uid {
            self.owned
                .entry(uid.clone())
                .or_default()
                .insert(object.clone());
            self.owner.insert(object, uid);
        }
    }
}

/// The controller ownerReference of `meta` (the one with `controller: true`), if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn controller_uid<K: Resource>(object: &K) -> Option<String> {
    controller_of(object.meta()).map(|o| o.uid.clone())
}

impl<K: Resource<DynamicType = ()>> OwnerIndex<K> {
    /// The objects controlled by the object with `uid`.
    pub fn owned_by(&self, uid: &str) -> Vec<ObjectRef<K>> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .owned
            .get(uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Updates the index from one watch event.
    pub fn apply(&self, event: &Event<K>) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(object) => {
                inner.insert(ObjectRef::from_obj(object), controller_uid(object))
            }
            Event::Delete(object) => inner.remove(&ObjectRef::from_obj(object)),
            Event::Init => inner.relisting = Some(HashMap::new()),
            Event::InitApply(object) => {
                if let (Some(relisting), Some(uid)) =
                    (inner.relisting.as_mut(), controller_uid(object))
                {
                    relisting.insert(ObjectRef::from_obj(object), uid);
                }
            }
            Event::InitDone => {
                let listed = inner.relisting.take().unwrap_or_default();
                let mut owned: HashMap<String, HashSet<ObjectRef<K>>> = HashMap::new();
                for (object, uid) in &listed {
                    owned.entry(uid.clone()).or_default().insert(object.clone());
                }
                inner.owned = owned;
                inner.owner = listed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn rb(name: &str, owner: Option<&str>) -> RoleBinding {
        let mut b = RoleBinding::default();
        b.metadata.name = Some(name.to_owned());
        b.metadata.namespace = Some("kasten-io".to_owned());
        b.metadata.owner_references = owner.map(|uid| {
            vec![OwnerReference {
                controller: Some(true),
                uid: uid.to_owned(),
                ..OwnerReference::default()
            }]
        });
        b
    }

    fn names(index: &OwnerIndex<RoleBinding>, uid: &str) -> Vec<String> {
        let mut names: Vec<String> = index.owned_by(uid).into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn follows_applies_and_deletes() {
        let index = OwnerIndex::default();
        index.apply(&Event::Apply(rb("a:1", Some("a"))));
        index.apply(&Event::Apply(rb("a:2", Some("a"))));
        index.apply(&Event::Apply(rb("b:1", Some("b"))));
        index.apply(&Event::Apply(rb("foreign", None)));
        assert_eq!(names(&index, "a"), ["a:1", "a:2"]);
        index.apply(&Event::Delete(rb("a:1", Some("a"))));
        assert_eq!(names(&index, "a"), ["a:2"]);
        assert_eq!(names(&index, "b"), ["b:1"]);
    }

    #[test]
    fn a_changed_controller_moves_the_object() {
        let index = OwnerIndex::default();
        index.apply(&Event::Apply(rb("x", Some("a"))));
        index.apply(&Event::Apply(rb("x", Some("b"))));
        assert!(names(&index, "a").is_empty());
        assert_eq!(names(&index, "b"), ["x"]);
        index.apply(&Event::Apply(rb("x", None)));
        assert!(names(&index, "b").is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_when_it_is_done() {
        let index = OwnerIndex::default();
        index.apply(&Event::Apply(rb("a:1", Some("a"))));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(rb("a:2", Some("a"))));
        // Until the list is complete, the index answers with what it had.
        assert_eq!(names(&index, "a"), ["a:1"]);
        index.apply(&Event::InitDone);
        assert_eq!(names(&index, "a"), ["a:2"]);
    }
}
