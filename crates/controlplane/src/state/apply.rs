//! Applying a [`Change`] to the [`State`]: puts and deletes of every kind of record,
//! keeping the [`Derived`] indexes in step, and sharing unchanged records with the
//! writer's working state when publishing ([`State::apply_shared`]).

use std::sync::Arc;

use model::status::{ClusterStatus, InstanceStatus, ServiceStatus};

use super::*;

impl State {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(record) => self.put(record.clone()),
            Change::Delete(record) => self.delete(record),
        }
    }

    /// Applies one change as [`State::apply`] does, where `source` is a state the change
    /// was applied to already (the writer's working state, when publishing): a record
    /// `source` holds equal to the change's is shared with it, not copied. The working
    /// and published states then hold each unchanged task, container instance and
    /// service once between them.
    pub fn apply_shared(&mut self, change: &Change, source: &State) {
        match change {
            Change::Put(Record::Task(r)) => {
                let shared = source
                    .tasks
                    .get(&r.key())
                    .filter(|t| ***t == *r)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(r.clone()));
                self.put_task(shared);
            }
            Change::Put(Record::Instance(r)) => {
                let shared = source
                    .instances
                    .get_shared(&r.key())
                    .filter(|i| ***i == *r)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(r.clone()));
                self.put_instance(shared);
            }
            Change::Put(Record::Service(r)) => {
                let shared = source
                    .services
                    .get_shared(&r.key())
                    .filter(|v| ***v == *r)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(r.clone()));
                self.put_service(shared);
            }
            _ => self.apply(change),
        }
    }

    fn put_instance(&mut self, r: Arc<InstanceRecord>) {
        let key = r.key();
        let was = match self.instances.get_shared(&key).cloned() {
            Some(old) => {
                self.derived.index_instance(&old, -1);
                old.instance.status() == Some(InstanceStatus::Inactive)
            }
            None => false,
        };
        self.derived.index_instance(&r, 1);
        self.derived.mark_inactive(
            Retained::Instance(key.clone()),
            was,
            r.instance.status() == Some(InstanceStatus::Inactive),
        );
        self.instances.insert(key, r);
    }

    fn put_service(&mut self, r: Arc<ServiceRecord>) {
        let key = r.key();
        let was = self
            .services
            .get(&key)
            .is_some_and(|old| old.service.status() == Some(ServiceStatus::Inactive));
        let inactive = r.service.status() == Some(ServiceStatus::Inactive);
        if inactive {
            self.derived.listed_services.remove(&key);
        } else {
            self.derived.listed_services.insert(key.clone());
        }
        self.derived
            .mark_inactive(Retained::Service(key.clone()), was, inactive);
        self.services.insert(key, r);
    }

    fn put_task(&mut self, r: Arc<TaskRecord>) {
        // Remove the old record's contribution first: both share the task id.
        if let Some(old) = self.tasks.insert(Arc::clone(&r)) {
            self.derived.account(&old, -1);
        }
        self.derived.account(&r, 1);
    }

    fn put(&mut self, record: Record) {
        match record {
            Record::Cluster(r) => {
                let key = r.key();
                let was = self
                    .clusters
                    .get(&key)
                    .is_some_and(|old| old.cluster.status() == Some(ClusterStatus::Inactive));
                let status = r.cluster.status();
                if status == Some(ClusterStatus::Active) {
                    self.derived.active_clusters.insert(key.clone());
                } else {
                    self.derived.active_clusters.remove(&key);
                }
                self.derived.mark_inactive(
                    Retained::Cluster(key.clone()),
                    was,
                    status == Some(ClusterStatus::Inactive),
                );
                self.clusters.insert(key, r);
            }
            Record::TaskDefinition(r) => {
                let key = (r.scope.clone(), r.family.clone(), r.revision);
                if let Some(old) = self.task_definitions.get(&key) {
                    let old = old.clone();
                    self.derived.index_definition(&old, -1);
                }
                self.derived.index_definition(&r, 1);
                self.task_definitions.insert(key, r);
            }
            Record::Instance(r) => self.put_instance(Arc::new(r)),
            Record::Task(r) => self.put_task(Arc::new(r)),
            Record::Service(r) => self.put_service(Arc::new(r)),
            Record::Setting(r) => {
                let key = setting_key(&r);
                self.settings.insert(key, r);
            }
            Record::Meta(m) => self.meta = m,
            Record::Discovery(r) => self.discovery.put(r),
            Record::LoadBalancer(r) => {
                self.elb.load_balancers.insert(r.key(), r);
            }
            Record::TargetGroup(r) => {
                self.elb.target_groups.insert(r.key(), r);
            }
            Record::Listener(r) => {
                self.elb.listeners.insert(r.key(), r);
            }
            Record::ListenerRule(r) => {
                self.elb.rules.insert(r.key(), r);
            }
            Record::CapacityProvider(r) => {
                self.capacity_providers.insert(r.key(), r);
            }
            Record::ServiceDeployment(r) => {
                self.service_history.deployments.insert(r.key(), r);
            }
            Record::ServiceRevision(r) => {
                self.service_history.revisions.insert(r.key(), r);
            }
        }
    }

    fn delete(&mut self, record: &Record) {
        match record {
            Record::Cluster(r) => {
                let key = r.key();
                self.clusters.remove(&key);
                self.derived.active_clusters.remove(&key);
                self.derived.inactive.remove(&Retained::Cluster(key));
            }
            Record::TaskDefinition(r) => {
                if let Some(old) =
                    self.task_definitions
                        .remove(&(r.scope.clone(), r.family.clone(), r.revision))
                {
                    self.derived.index_definition(&old, -1);
                }
            }
            Record::Instance(r) => {
                let key = r.key();
                if let Some(old) = self.instances.remove(&key) {
                    self.derived.index_instance(&old, -1);
                }
                self.derived.inactive.remove(&Retained::Instance(key));
            }
            Record::Task(r) => {
                if let Some(old) = self.tasks.remove(&r.key()) {
                    self.derived.account(&old, -1);
                }
            }
            Record::Service(r) => {
                let key = r.key();
                self.services.remove(&key);
                self.derived.listed_services.remove(&key);
                self.derived.inactive.remove(&Retained::Service(key));
            }
            Record::Setting(r) => {
                self.settings.remove(&setting_key(r));
            }
            Record::Meta(_) => self.meta = MetaRecord::default(),
            Record::Discovery(r) => self.discovery.delete(r),
            Record::LoadBalancer(r) => {
                self.elb.load_balancers.remove(&r.key());
            }
            Record::TargetGroup(r) => {
                self.elb.target_groups.remove(&r.key());
            }
            Record::Listener(r) => {
                self.elb.listeners.remove(&r.key());
            }
            Record::ListenerRule(r) => {
                self.elb.rules.remove(&r.key());
            }
            Record::CapacityProvider(r) => {
                self.capacity_providers.remove(&r.key());
            }
            Record::ServiceDeployment(r) => {
                self.service_history.deployments.remove(&r.key());
            }
            Record::ServiceRevision(r) => {
                self.service_history.revisions.remove(&r.key());
            }
        }
    }
}

fn setting_key(r: &SettingRecord) -> SettingKey {
    (
        r.scope.clone(),
        r.setting.principal_arn.clone().unwrap_or_default(),
        r.setting
            .name
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
    )
}
