//! Which binding belongs to which AzureGroupBinding ([`claimed_by`], the rule of
//! [`groupbinder_api::ownership`]), and an index of the cached
//! bindings by that owner, kept up to date from the watch events.
//!
//! A reconcile looks for bindings its object no longer plans. Scanning the whole cache for them
//! costs O(all bindings) per reconcile, O(n²) when every object is reconciled after a start; with
//! this index it costs O(bindings of this object).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use groupbinder_api::{Allowlist, RbacBinding};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

/// Objects by the uid of the AzureGroupBinding that [claims](claimed_by) them.
pub struct OwnerIndex<K: Resource<DynamicType = ()>> {
    inner: Arc<RwLock<Inner<K>>>,
    /// The operator's allowlist: a labelled binding of an allowed role is groupbinder's whatever
    /// its ownerReferences say.
    allowed: Arc<Allowlist>,
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
            allowed: self.allowed.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Default for OwnerIndex<K> {
    /// An empty index under an empty allowlist.
    fn default() -> Self {
        OwnerIndex::new(Arc::new(Allowlist::default()))
    }
}

/// Entries are kept small, as there is one per binding: keys carry no resource version or uid
/// (an [`ObjectRef`] is equal without them), and each owner uid is one shared string.
struct Inner<K: Resource<DynamicType = ()>> {
    owned: HashMap<Arc<str>, HashSet<ObjectRef<K>>>,
    owner: HashMap<ObjectRef<K>, Arc<str>>,
    /// What a relist has returned so far; it replaces the index when the relist is complete.
    relisting: Option<HashMap<ObjectRef<K>, Arc<str>>>,
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

    fn insert(&mut self, object: ObjectRef<K>, uid: Option<&str>) {
        self.remove(&object);
        if let Some(uid) = uid {
            let uid = self.shared(uid);
            self.owned
                .entry(uid.clone())
                .or_default()
                .insert(object.clone());
            self.owner.insert(object, uid);
        }
    }

    /// `uid` as the string the index already holds for it, if any.
    fn shared(&self, uid: &str) -> Arc<str> {
        self.owned
            .get_key_value(uid)
            .map_or_else(|| Arc::from(uid), |(shared, _)| shared.clone())
    }
}

pub use groupbinder_api::ownership::{Claim, claim_binding, claimed_binding_by, controller_of};

/// The key of `object` in the index: its name and namespace only.
fn key<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let meta = object.meta();
    let key = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(namespace) => key.within(namespace),
        None => key,
    }
}

impl<K: Resource<DynamicType = ()>> OwnerIndex<K> {
    /// An empty index; `allowed` decides what a labelled binding with another owner is.
    pub fn new(allowed: Arc<Allowlist>) -> Self {
        OwnerIndex {
            inner: Arc::new(RwLock::new(Inner {
                owned: HashMap::new(),
                owner: HashMap::new(),
                relisting: None,
            })),
            allowed,
        }
    }

    /// The allowlist it claims by.
    pub fn allowed(&self) -> &Allowlist {
        &self.allowed
    }

    /// The objects claimed by the AzureGroupBinding with `uid`.
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
}

impl<K: RbacBinding> OwnerIndex<K> {
    /// Updates the index from one watch event.
    pub fn apply(&self, event: &Event<K>) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(object) => {
                inner.insert(key(object), claimed_binding_by(object, &self.allowed));
            }
            Event::Delete(object) => inner.remove(&key(object)),
            Event::Init => inner.relisting = Some(HashMap::new()),
            Event::InitApply(object) => {
                if let Some(uid) = claimed_binding_by(object, &self.allowed) {
                    let uid = inner.shared(uid);
                    if let Some(relisting) = inner.relisting.as_mut() {
                        relisting.insert(key(object), uid);
                    }
                }
            }
            Event::InitDone => {
                let listed = inner.relisting.take().unwrap_or_default();
                inner.owned = HashMap::new();
                inner.owner = HashMap::with_capacity(listed.len());
                for (object, uid) in listed {
                    inner.insert(object, Some(&uid));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groupbinder_api::names::OWNER_UID_LABEL;
    use groupbinder_api::ownership::{claim, claimed_by};
    use k8s_openapi::api::rbac::v1::RoleBinding;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn rb(name: &str, owner: Option<&str>) -> RoleBinding {
        let mut b = RoleBinding::default();
        b.metadata.name = Some(name.to_owned());
        b.metadata.namespace = Some("kasten-io".to_owned());
        b.metadata.owner_references = owner.map(|uid| vec![agb_owner(uid)]);
        b.role_ref = k8s_openapi::api::rbac::v1::RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "k10-admin".into(),
        };
        b
    }

    fn agb_owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "groupbinder.dev/v1alpha1".into(),
            kind: "AzureGroupBinding".into(),
            name: "a".into(),
            controller: Some(true),
            uid: uid.to_owned(),
            ..OwnerReference::default()
        }
    }

    fn labelled(mut b: RoleBinding, uid: Option<&str>) -> RoleBinding {
        let mut labels = std::collections::BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "groupbinder".to_owned(),
        )]);
        if let Some(uid) = uid {
            labels.insert(OWNER_UID_LABEL.to_owned(), uid.to_owned());
        }
        b.metadata.labels = Some(labels);
        b
    }

    #[test]
    fn a_forged_owner_reference_of_another_kind_claims_nothing() {
        for (api_version, kind) in [
            ("example.com/v1", "Widget"),
            ("v1", "ConfigMap"),
            ("example.com/v1", "AzureGroupBinding"),
            ("groupbinder.dev/v1alpha1", "Widget"),
        ] {
            let mut b = labelled(rb("team:admin", Some("a")), Some("a"));
            let owners = b.metadata.owner_references.as_mut().unwrap();
            owners[0].api_version = api_version.into();
            owners[0].kind = kind.into();
            assert_eq!(claim(&b.metadata), Claim::Foreign, "{api_version} {kind}");
            assert_eq!(claimed_by(&b.metadata), None);
        }
        let ours = rb("a:k10-admin", Some("a"));
        assert_eq!(claim(&ours.metadata), Claim::Controlled("a"));
    }

    #[test]
    fn a_labelled_binding_without_a_controller_is_an_orphan_of_its_uid_label() {
        let orphan = labelled(rb("a:k10-admin", None), Some("a"));
        assert_eq!(claim(&orphan.metadata), Claim::Orphaned(Some("a")));
        assert_eq!(claimed_by(&orphan.metadata), Some("a"));
        let anonymous = labelled(rb("old", None), None);
        assert_eq!(claim(&anonymous.metadata), Claim::Orphaned(None));
        let unlabelled = rb("hand-made", None);
        assert_eq!(claim(&unlabelled.metadata), Claim::Foreign);
        let index = OwnerIndex::new(Arc::new(Allowlist::k10("k10", "kasten-io")));
        index.apply(&Event::Apply(orphan.clone()));
        assert_eq!(names(&index, "a"), ["a:k10-admin"]);
        // Of a role outside the allowlist: not groupbinder's, not indexed.
        let index = OwnerIndex::default();
        index.apply(&Event::Apply(orphan));
        assert!(names(&index, "a").is_empty());
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
