//! What the soak does: one random operation or fault a step, each recorded in the world the
//! model reads.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::model::{Hold, K10};
use super::{
    ENTRA_RETRY, IDS, INTRUDER, K10_NAMESPACE, K10_PREFIXES, K10_PROVIDER, K10_SECRET,
    MANAGED_SELECTOR_LABEL, MAX_MISSING, NAMES, NAMESPACES, OWNER_LABEL, ROLES, SQUATTER_LABEL,
    Soak, TEAMS, UID_LABEL, object_id, random_spec, spec_json,
};
use groupbinder_api::AzureGroupBinding;

impl Soak<'_> {
    /// One random operation or fault.
    pub(super) async fn act(&mut self) -> anyhow::Result<()> {
        self.end_due_faults()?;
        self.replace_exited()?;
        let agbs: Api<AzureGroupBinding> = Api::all(self.client.clone());
        let roll = self.rng.below(100);
        let name = format!("soak-{}", self.rng.below(NAMES));
        match roll {
            0..=35 => {
                // Create or edit (server-side apply: a whole new spec).
                let spec = random_spec(&mut self.rng);
                let object: AzureGroupBinding = serde_json::from_value(spec_json(&name, &spec))?;
                let params = PatchParams::apply("soak").force();
                agbs.patch(&name, &params, &Patch::Apply(&object)).await?;
                let kind = if self.world.specs.contains_key(&name) {
                    "edit"
                } else {
                    "create"
                };
                self.spec_written(name, spec);
                self.op(kind);
            }
            36..=45 => {
                if self.world.specs.remove(&name).is_some() {
                    self.world.holds.remove(&name);
                    let _ = agbs.delete(&name, &DeleteParams::default()).await?;
                    self.op("delete");
                    if self.rng.chance(50) {
                        // Delete and recreate under one name, at once: applied, once the old
                        // one is gone, by the soak's field manager like every edit (an object
                        // made otherwise would keep, at the next apply, what it leaves out).
                        let spec = random_spec(&mut self.rng);
                        let object: AzureGroupBinding =
                            serde_json::from_value(spec_json(&name, &spec))?;
                        crate::eventually(
                            "the deleted object gone",
                            Duration::from_secs(10),
                            || async { Ok(agbs.get_opt(&name).await?.is_none().then_some(())) },
                        )
                        .await?;
                        let params = PatchParams::apply("soak").force();
                        agbs.patch(&name, &params, &Patch::Apply(&object)).await?;
                        self.spec_written(name, spec);
                        self.op("recreate");
                    }
                }
            }
            46..=60 => self.namespace_op().await?,
            61..=65 => {
                // A role deleted, or (more often, while one is missing) created again.
                let api: Api<ClusterRole> = Api::all(self.client.clone());
                let missing = ROLES[..3].iter().find(|r| !self.world.roles.contains(**r));
                match missing {
                    Some(role) if self.rng.chance(70) => {
                        self.create_role(&api, role).await?;
                        self.op("role created");
                    }
                    _ => {
                        let role = ROLES[self.rng.below(3)];
                        if self.world.roles.remove(role) {
                            api.delete(role, &DeleteParams::default()).await?;
                            self.op("role deleted");
                        }
                    }
                }
            }
            66..=83 => self.hand_edit().await?,
            84..=85 => self.squat().await?,
            86..=88 => self.k10_op().await?,
            89..=91 => self.entra_op(),
            92 => {
                // Narrow or (more often, while narrowed) widen the allowlist: every replica
                // restarted.
                let missing = ROLES[..3]
                    .iter()
                    .find(|r| !self.world.allowed.contains(**r));
                match missing {
                    Some(role) if self.rng.chance(70) => {
                        self.world.allowed.insert((*role).to_owned());
                    }
                    _ => {
                        self.world.allowed.remove(ROLES[self.rng.below(3)]);
                    }
                }
                if self.world.allowed.is_empty() {
                    self.world.allowed.insert(ROLES[0].to_owned());
                }
                self.restart_replicas()?;
                self.fault("allowlist changed (restart)");
            }
            93 if self.rng.chance(50) => {
                // The API server restarted: every watch breaks, every request fails meanwhile.
                let from = Instant::now();
                self.cp.stop_apiserver();
                tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2500) as u64)).await;
                self.cp.start_apiserver().await?;
                self.outage(from, Instant::now());
                self.fault("API server restart");
            }
            93 => {
                // etcd away: the API server answers errors meanwhile.
                let from = Instant::now();
                self.cp.stop_etcd();
                tokio::time::sleep(Duration::from_millis(500 + self.rng.below(2500) as u64)).await;
                self.cp.start_etcd()?;
                crate::eventually(
                    "the API server to answer again",
                    Duration::from_secs(60),
                    || async {
                        Ok(Api::<Namespace>::all(self.client.clone())
                            .list_metadata(&ListParams::default().limit(1))
                            .await
                            .ok()
                            .map(drop))
                    },
                )
                .await?;
                self.outage(from, Instant::now());
                self.fault("etcd stopped");
            }
            94 => {
                // kube-controller-manager away for a while: no garbage collection, namespaces
                // stay Terminating. Revocation must not depend on it.
                if self.kcm_down_until.is_none() {
                    self.cp.stop_controller_manager();
                    let away = Duration::from_secs(3 + self.rng.below(18) as u64);
                    self.kcm_down_until = Some(Instant::now() + away);
                    self.fault("kube-controller-manager stopped");
                }
            }
            95 => {
                // The leader SIGKILLed, and a replacement started (as a Deployment would).
                self.kill_leader().await;
                tokio::time::sleep(Duration::from_millis(self.rng.below(2000) as u64)).await;
                self.start_replica()?;
                self.fault("leader SIGKILLed");
            }
            96..=98 => {
                // A second replica started, or the standby SIGKILLed.
                if self.replicas.len() < 2 {
                    self.start_replica()?;
                    self.fault("standby started");
                } else if let Some(leader) = self.leader().await {
                    let standby = self.replicas.keys().find(|r| **r != leader).cloned();
                    if let Some(mut process) = standby.and_then(|s| self.replicas.remove(&s)) {
                        let _ = process.child().kill();
                        let _ = process.child().wait();
                        self.fault("standby SIGKILLed");
                    }
                }
            }
            _ => {
                // The leader SIGTERMed (it gives its lease up), and a replacement started.
                if let Some(leader) = self.leader().await {
                    self.replicas.remove(&leader);
                    self.leader_gone();
                }
                if self.replicas.is_empty() {
                    self.start_replica()?;
                }
                self.fault("leader SIGTERMed");
            }
        }
        Ok(())
    }

    /// A spec written (created, edited, recreated): while K10's settings cannot be read, one
    /// that sets no prefix grants nothing until they can.
    fn spec_written(&mut self, name: String, spec: super::Spec) {
        if !self.world.k10.readable && spec.prefix.is_none() {
            self.world.holds.insert(name.clone(), Hold::Nothing);
        } else {
            self.world.holds.remove(&name);
        }
        self.world.specs.insert(name, spec);
    }

    /// Ends the faults whose time is up (kube-controller-manager back, Entra ID answering).
    fn end_due_faults(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        if self.kcm_down_until.is_some_and(|until| now >= until) {
            self.kcm_down_until = None;
            self.cp.start_controller_manager()?;
        }
        if self.entra.fault.is_some_and(|(until, _)| now >= until) {
            self.end_entra_fault();
        }
        Ok(())
    }

    /// Ends every fault, for the quiet end of a run.
    pub(super) fn end_faults(&mut self) -> anyhow::Result<()> {
        if self.kcm_down_until.take().is_some() {
            self.cp.start_controller_manager()?;
        }
        self.end_entra_fault();
        Ok(())
    }

    /// Entra ID answers again. A lookup that failed meanwhile is asked again after the retry
    /// (throttling: after Retry-After, shorter).
    fn end_entra_fault(&mut self) {
        if let Some((_, kind)) = self.entra.fault.take() {
            self.entra.standin.set_down(false);
            self.entra.standin.set_group_read(true);
            self.entra.clear_from = Instant::now() + ENTRA_RETRY;
            self.trace(&format!("Entra ID {kind} ends"));
        }
    }

    async fn namespace_op(&mut self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = format!("soak-ns-{}", self.rng.below(NAMESPACES));
        let exists = self.world.namespaces.contains_key(&ns);
        let terminating = api
            .get_opt(&ns)
            .await?
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some());
        if terminating {
            return Ok(());
        }
        let team = if self.rng.chance(70) {
            Some(TEAMS[self.rng.below(TEAMS.len())].to_owned())
        } else {
            None
        };
        if !exists {
            let object: Namespace = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": team.as_ref().map(|t| json!({"team": t})).unwrap_or(json!({}))},
            }))?;
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()), // still terminating
                Err(e) => return Err(e.into()),
            }
            self.world.namespaces.insert(ns, team);
            self.op("namespace created");
        } else if self.rng.chance(25) {
            api.delete(&ns, &DeleteParams::default()).await?;
            self.world.namespaces.remove(&ns);
            // What is not groupbinder's goes with the namespace: deleted by the soak.
            let here = Some(ns.clone());
            self.world.squatted.retain(|(n, _)| *n != here);
            self.foreign.retain(|(_, n, _), _| *n != here);
            self.leaving.insert(ns);
            self.op("namespace deleted");
        } else {
            let patch = json!({"metadata": {"labels": {"team": team}}});
            api.patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            self.world.namespaces.insert(ns, team);
            self.op("namespace relabelled");
        }
        Ok(())
    }

    /// groupbinder's bindings now (namespace, name), but those being deleted.
    async fn managed_bindings(&self) -> anyhow::Result<Vec<(Option<String>, String)>> {
        let selector = ListParams::default().labels(MANAGED_SELECTOR_LABEL);
        let crbs: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let rbs: Api<RoleBinding> = Api::all(self.client.clone());
        let live = |m: &kube::api::ObjectMeta| m.deletion_timestamp.is_none();
        let mut targets: Vec<(Option<String>, String)> = crbs
            .list_metadata(&selector)
            .await?
            .items
            .iter()
            .filter(|b| live(&b.metadata))
            .map(|b| (None, b.name_any()))
            .collect();
        targets.extend(
            rbs.list_metadata(&selector)
                .await?
                .items
                .iter()
                .filter(|b| live(&b.metadata))
                .map(|b| (b.namespace(), b.name_any())),
        );
        Ok(targets)
    }

    /// Merge-patches binding `name` (a RoleBinding in `namespace`, or a ClusterRoleBinding), or
    /// deletes it when `patch` is null; the changed object's metadata, `None` when it was gone
    /// or changed meanwhile.
    async fn patch_binding(
        &self,
        (namespace, name): &(Option<String>, String),
        patch: &serde_json::Value,
    ) -> anyhow::Result<Option<kube::api::ObjectMeta>> {
        let params = PatchParams::default();
        let result = match (namespace, patch.is_null()) {
            (None, true) => Api::<ClusterRoleBinding>::all(self.client.clone())
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| kube::api::ObjectMeta::default()),
            (None, false) => Api::<ClusterRoleBinding>::all(self.client.clone())
                .patch(name, &params, &Patch::Merge(patch))
                .await
                .map(|b| b.metadata),
            (Some(ns), true) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| kube::api::ObjectMeta::default()),
            (Some(ns), false) => Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .patch(name, &params, &Patch::Merge(patch))
                .await
                .map(|b| b.metadata),
        };
        match result {
            Ok(meta) => Ok(Some(meta)),
            // Gone meanwhile (the operator deleted it): nothing was done.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What someone with `patch` on bindings does to a managed one.
    async fn hand_edit(&mut self) -> anyhow::Result<()> {
        let targets = self.managed_bindings().await?;
        if targets.is_empty() {
            return Ok(());
        }
        let target = targets[self.rng.below(targets.len())].clone();
        let controller = |api_version: &str, kind: &str, name: &str, uid: &str| {
            json!({"metadata": {"ownerReferences": [{"apiVersion": api_version, "kind": kind,
                "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": false}]}})
        };
        let (patch, kind): (serde_json::Value, &'static str) = match self.rng.below(7) {
            // Re-parented: the garbage collector would keep it for ever; the labels still say
            // groupbinder's.
            4 => (
                controller("v1", "Namespace", "kube-system", &self.kube_system),
                "controller moved to kube-system",
            ),
            5 => {
                let other = format!("soak-{}", self.rng.below(NAMES));
                let Some(other) = Api::<AzureGroupBinding>::all(self.client.clone())
                    .get_opt(&other)
                    .await?
                else {
                    return Ok(());
                };
                (
                    controller(
                        "groupbinder.dev/v1alpha1",
                        "AzureGroupBinding",
                        &other.name_any(),
                        &other.uid().unwrap_or_default(),
                    ),
                    "controller moved to another object",
                )
            }
            6 => (
                json!({"metadata": {"ownerReferences": null,
                    "labels": {UID_LABEL: "00000000-0000-4000-8000-00000000f0f0"}}}),
                "uid label forged",
            ),
            0 => (json!(null), "binding deleted"),
            1 => (
                json!({"subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": INTRUDER}]}),
                "subjects changed",
            ),
            2 => (
                json!({"metadata": {"ownerReferences": null}}),
                "ownerReferences stripped",
            ),
            _ => (
                json!({"metadata": {"finalizers": ["soak.groupbinder.test/hold"]}}),
                "finalizer added",
            ),
        };
        if self.patch_binding(&target, &patch).await?.is_some() {
            self.op(kind);
        }
        Ok(())
    }

    /// Takes a managed binding out of groupbinder's hands (its labels and ownerReferences
    /// removed, another subject: by the README's rule it is no longer groupbinder's and must
    /// never be touched again), or deletes one taken so earlier. While it stands, the object
    /// cannot have its binding of that name (`Conflict`).
    async fn squat(&mut self) -> anyhow::Result<()> {
        if !self.world.squatted.is_empty() && self.rng.chance(50) {
            let squatted: Vec<_> = self.world.squatted.iter().cloned().collect();
            let target = squatted[self.rng.below(squatted.len())].clone();
            self.patch_binding(&target, &serde_json::Value::Null)
                .await?;
            self.world.squatted.remove(&target);
            let kind = binding_kind(&target.0);
            self.foreign.remove(&(kind.to_owned(), target.0, target.1));
            self.op("squatter removed");
            return Ok(());
        }
        // Not in a namespace being deleted: the binding would go with it.
        let mut targets = self.managed_bindings().await?;
        targets.retain(|(ns, _)| {
            ns.as_ref()
                .is_none_or(|n| self.world.namespaces.contains_key(n) && !self.leaving.contains(n))
        });
        if targets.is_empty() {
            return Ok(());
        }
        let target = targets[self.rng.below(targets.len())].clone();
        let patch = json!({
            "metadata": {"ownerReferences": null, "labels": {
                super::MANAGED_BY.0: null, UID_LABEL: null, OWNER_LABEL: null, SQUATTER_LABEL: "true"}},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": INTRUDER}],
        });
        if let Some(meta) = self.patch_binding(&target, &patch).await? {
            self.foreign_is(binding_kind(&target.0), &meta);
            self.world.squatted.insert(target);
            self.op("binding taken out of groupbinder's hands");
        }
        Ok(())
    }

    /// K10 reconfigured: its groupPrefix, its groupClaim, its groupAllowList, or its OIDC Secret
    /// deleted (a reinstall) and written again.
    async fn k10_op(&mut self) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), K10_NAMESPACE);
        let mut k10 = self.world.k10.clone();
        let choice = self.rng.below(20);
        let unhealthy = !k10.group_claim || !k10.allow_list.is_empty();
        if k10.readable && unhealthy && self.rng.chance(60) {
            // K10's administrator mends it.
            k10.group_claim = true;
            k10.allow_list.clear();
            return self
                .k10_changed(&secrets, k10, "K10 groupClaim and groupAllowList mended")
                .await;
        }
        if !k10.readable || choice >= 17 {
            if k10.readable {
                secrets.delete(K10_SECRET, &DeleteParams::default()).await?;
                self.k10_unreadable().await?;
                self.op("K10's OIDC Secret deleted");
            } else {
                k10.readable = true;
                k10.prefix = K10_PREFIXES[self.rng.below(K10_PREFIXES.len())].to_owned();
                let secret: Secret = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": K10_SECRET, "namespace": K10_NAMESPACE, "labels": {"app": "k10"}},
                    "stringData": k10_data(&k10),
                }))?;
                secrets.create(&PostParams::default(), &secret).await?;
                self.world.k10 = k10;
                self.world.holds.clear();
                self.op("K10's OIDC Secret written again");
            }
            return Ok(());
        }
        let kind = match choice {
            0..=9 => {
                k10.prefix = K10_PREFIXES[self.rng.below(K10_PREFIXES.len())].to_owned();
                "K10 groupPrefix changed"
            }
            10..=12 => {
                k10.group_claim = !k10.group_claim;
                if k10.group_claim {
                    "K10 groupClaim set"
                } else {
                    "K10 groupClaim emptied"
                }
            }
            _ => {
                k10.allow_list.clear();
                if self.rng.chance(60) {
                    for n in 0..=IDS {
                        let id = object_id(n);
                        match self.rng.below(5) {
                            0 => k10.allow_list.push(id),
                            1 => k10.allow_list.push(format!("{}{id}", k10.prefix)),
                            2 | 3 => {
                                k10.allow_list.push(format!("{}{id}", k10.prefix));
                                k10.allow_list.push(id);
                            }
                            _ => {}
                        }
                    }
                }
                "K10 groupAllowList changed"
            }
        };
        self.k10_changed(&secrets, k10, kind).await
    }

    /// Writes `k10` into K10's OIDC Secret: K10 reconfigured.
    async fn k10_changed(
        &mut self,
        secrets: &Api<Secret>,
        k10: K10,
        kind: &'static str,
    ) -> anyhow::Result<()> {
        let patch = json!({"stringData": k10_data(&k10)});
        secrets
            .patch(K10_SECRET, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.world.k10 = k10;
        self.op(kind);
        Ok(())
    }

    /// K10's settings just became unreadable: each object that sets no prefix holds what its
    /// status says it was reconciled under, if that status is of its spec; until the operator
    /// says so (see `checks`), any of K10's last prefix and that one, or nothing.
    async fn k10_unreadable(&mut self) -> anyhow::Result<()> {
        self.world.k10.readable = false;
        let listed = Api::<AzureGroupBinding>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        for (name, spec) in &self.world.specs {
            if spec.prefix.is_some() {
                continue;
            }
            let mut prefixes: BTreeSet<String> = [self.world.k10.prefix.clone()].into();
            let status_prefix = listed
                .items
                .iter()
                .find(|o| o.name_any() == *name)
                .and_then(|o| {
                    let status = o.status.as_ref()?;
                    (status.observed_generation == o.metadata.generation).then_some(())?;
                    Some(status.group.as_deref()?.strip_suffix(&spec.id)?.to_owned())
                });
            prefixes.extend(status_prefix);
            self.world.holds.insert(name.clone(), Hold::Maybe(prefixes));
        }
        Ok(())
    }

    /// Entra ID: a group deleted or restored, or a fault for a few seconds: unreachable,
    /// throttling, or group reads denied. No answer may change a binding.
    fn entra_op(&mut self) {
        let choice = self.rng.below(20);
        let standin = &self.entra.standin;
        if choice < 17 {
            let id = match self.entra.missing.keys().next() {
                Some(missing) if self.rng.chance(30) => missing.clone(),
                _ => object_id(self.rng.below(IDS)),
            };
            if self.entra.missing.remove(&id).is_some() {
                standin.add_group(&id, "soak group, restored", true);
                self.op("Entra group restored");
            } else if self.entra.missing.len() < MAX_MISSING {
                standin.remove_group(&id);
                self.entra.missing.insert(id, Instant::now());
                self.op("Entra group deleted");
            }
            return;
        }
        if self.entra.fault.is_some() {
            return;
        }
        let lasts = Duration::from_secs(2 + self.rng.below(9) as u64);
        let kind = match choice {
            17 => {
                standin.set_down(true);
                "unreachable"
            }
            18 => {
                standin.throttle(lasts, 1 + self.rng.below(3) as u64);
                "throttling"
            }
            _ => {
                standin.set_group_read(false);
                "denying group reads"
            }
        };
        self.entra.fault = Some((Instant::now() + lasts, kind));
        self.fault(match kind {
            "unreachable" => "Entra ID unreachable",
            "throttling" => "Entra ID throttling",
            _ => "Entra ID denying group reads",
        });
    }

    /// The identity of the replica holding the lease, if it runs.
    pub(super) async fn leader(&self) -> Option<String> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), "default")
            .get_opt("groupbinder-leader")
            .await
            .ok()??;
        let holder = lease.spec?.holder_identity?;
        self.replicas.contains_key(&holder).then_some(holder)
    }

    /// Replaces the replicas that ended by themselves, as their Deployment would. A leader that
    /// cannot renew its lease in time (the API server away longer than the renew deadline)
    /// stops, so that only one replica reconciles; the Lease then says there is no leader. A
    /// panic (exit code 101) is a violation.
    pub(super) fn replace_exited(&mut self) -> anyhow::Result<()> {
        let exited: Vec<(String, Option<i32>)> = self
            .replicas
            .iter_mut()
            .filter_map(|(id, p)| Some((id.clone(), p.child().try_wait().ok()??.code())))
            .collect();
        for (identity, code) in exited {
            self.replicas.remove(&identity);
            let code = code.map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
            *self.report.exits.entry(code.clone()).or_default() += 1;
            self.trace(&format!("replica {identity} exited with {code}: replaced"));
            if code == "code 101" {
                let step = self.step;
                self.violate(
                    "(h) crashed",
                    step,
                    format!("replica {identity} panicked (exit code 101)"),
                    Duration::ZERO,
                );
            }
            self.start_replica()?;
        }
        Ok(())
    }

    /// The leader (or every replica) stopped now: no leader from here until the Lease says so.
    fn leader_gone(&mut self) {
        if self.leaderless_since.is_none() {
            self.leaderless_since = Some((Instant::now(), self.step));
        }
    }

    /// SIGKILLs the leader (any replica when none leads): no replica leads until the Lease,
    /// left to expire, says one does (`follow_the_lease` measures how long that takes).
    async fn kill_leader(&mut self) {
        let victim = match self.leader().await {
            Some(leader) => Some(leader),
            None => self.replicas.keys().next().cloned(),
        };
        if let Some(mut process) = victim.and_then(|v| self.replicas.remove(&v)) {
            let _ = process.child().kill();
            let _ = process.child().wait();
            self.leader_gone();
        }
    }

    /// Stops every replica gracefully (each gives its lease up) and starts as many again.
    fn restart_replicas(&mut self) -> anyhow::Result<()> {
        let count = self.replicas.len().max(1);
        self.replicas.clear(); // SIGTERM
        self.leader_gone();
        for _ in 0..count {
            self.start_replica()?;
        }
        Ok(())
    }
}

/// The kind of a binding in `namespace` (`None`: cluster-wide).
fn binding_kind(namespace: &Option<String>) -> &'static str {
    if namespace.is_some() {
        "RoleBinding"
    } else {
        "ClusterRoleBinding"
    }
}

/// K10's OIDC Secret's keys as K10's chart writes them, for `k10`.
fn k10_data(k10: &K10) -> serde_json::Value {
    json!({
        "provider-url": K10_PROVIDER,
        "groupClaim": if k10.group_claim { "groups" } else { "" },
        "groupPrefix": k10.prefix,
        "groupAllowList": k10.allow_list.join("\n"),
        "client-id": "k10",
        "client-secret": crate::CLIENT_SECRET,
    })
}
