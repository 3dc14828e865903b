//! Which living AzureGroupBinding plans a binding: the one its name names
//! ([`groupbinder_api::names::planner_of`]), if that object's current plan holds it.
//!
//! Anyone who may patch bindings can move a binding's controller ownerReference from the object
//! that plans it to another living object (that change skips RBAC's escalation check). The other
//! object's reconcile must not delete it, nor the sweeper when the other object is deleted: the
//! object that plans it takes it back, and access never lapses.

use groupbinder_api::desired::BindingKey;
use groupbinder_api::names::planner_of;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::kinds::Guarded;
use crate::watch::caches::Caches;

impl Caches {
    /// The living AzureGroupBinding whose name `key`'s name carries, other than the one with
    /// `uid`, if its current plan holds `key`.
    pub(crate) fn planner(
        &self,
        key: &BindingKey,
        uid: Option<&str>,
    ) -> Option<ObjectRef<Guarded>> {
        let object = self.agbs.get(&ObjectRef::new(planner_of(key.name())?))?;
        let agb = object.0.as_ref().ok()?;
        let living = agb.metadata.deletion_timestamp.is_none();
        let other = agb.uid().is_some() && agb.uid().as_deref() != uid;
        let plans = groupbinder_api::plan(agb, &self.settings, Some(self))
            .is_ok_and(|plan| plan.keys().contains(key));
        (living && other && plans).then(|| ObjectRef::from_obj(&*object))
    }
}
