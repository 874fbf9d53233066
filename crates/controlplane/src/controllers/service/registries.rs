//! The service's Cloud Map registrations (its `serviceRegistries`, its deployments'
//! Service Connect services and its task sets' `serviceRegistries`; rules in
//! [`crate::registries`]): each RUNNING task is an instance of the registry's service
//! for every registry that takes it ([`Registry::takes`]), and leaves it in the pass that
//! decides to stop it (draining from a load balancer included), or once it stopped by
//! itself. Runs last in a pass, when the pass's stops are known.

use model::wire_sd;

use super::*;
use crate::ops::servicediscovery::instances::{deregister_instance, register_instance};
use crate::registries::{Registry, instance_attributes};

impl<'a> Pass<'a> {
    pub(super) fn sync_registries(&mut self, ctx: &mut Ctx) {
        for r in self.registries.clone() {
            self.register_in(ctx, &r);
            self.deregister_from(ctx, &r);
        }
    }

    fn register_in(&mut self, ctx: &mut Ctx, r: &Registry<'a>) {
        let names = (self.rec.cluster.as_str(), self.rec.name.as_str());
        let running: Vec<(&'a TaskRecord, BTreeMap<String, String>)> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && is_running(&t.task))
            .filter(|t| r.takes(t.task.started_by.as_deref()))
            .filter_map(|t| {
                let instance = t.instance_id.as_deref().and_then(|i| self.instances.get(i));
                Some((t, instance_attributes(r, names, t, instance)?))
            })
            .collect();
        for (t, attrs) in running {
            let current = self
                .state
                .discovery
                .instance(&self.rec.scope, &r.service.id, &t.id);
            if current.and_then(|i| i.instance.attributes.as_ref()) == Some(&attrs) {
                continue;
            }
            let req = wire_sd::RegisterInstanceRequest {
                service_id: Some(r.service.id.clone()),
                instance_id: Some(t.id.clone()),
                creator_request_id: None,
                attributes: Some(attrs),
            };
            match register_instance(self.state, ctx, req) {
                Ok((_, changes)) => self.registry_changes.extend(changes),
                Err(e) => {
                    let m = format!(
                        "{} was unable to register task {} in service registry {}: {e}",
                        self.prefix(),
                        t.id,
                        r.service.id
                    );
                    self.problem(m);
                }
            }
        }
    }

    fn deregister_from(&mut self, ctx: &mut Ctx, r: &Registry<'a>) {
        let scope = &self.rec.scope;
        let gone: Vec<String> = self
            .state
            .discovery
            .instances_of(scope, &r.service.id, None)
            .filter(|i| {
                let attrs = i.instance.attributes.as_ref();
                let attr = |k: &str| attrs.and_then(|a| a.get(k)).map(String::as_str);
                attr("ECS_CLUSTER_NAME") == Some(self.rec.cluster.as_str())
                    && attr("ECS_SERVICE_NAME") == Some(self.rec.name.as_str())
            })
            .filter(|i| {
                self.task(&i.id)
                    .is_none_or(|t| !self.wanted(t) || !self.registered_in(r, t))
            })
            .map(|i| i.id.clone())
            .collect();
        for id in gone {
            let req = wire_sd::DeregisterInstanceRequest {
                service_id: Some(r.service.id.clone()),
                instance_id: Some(id),
            };
            if let Ok((_, changes)) = deregister_instance(self.state, ctx, req) {
                self.registry_changes.extend(changes);
            }
        }
    }

    /// Whether some registry of the pass takes task `t` into `r`'s Cloud Map service
    /// (a Service Connect service that two deployments share keeps the tasks of both).
    fn registered_in(&self, r: &Registry<'a>, t: &TaskRecord) -> bool {
        self.registries
            .iter()
            .any(|o| o.service.id == r.service.id && o.takes(t.task.started_by.as_deref()))
    }
}
