//! The control plane's state: typed records, their keys, and [`Change`]s to them.
//!
//! Every record is stored as the ECS wire shape it is described as (so a describe is a
//! clone, not a translation) plus the few internal fields ECS does not show. Keys start
//! with a [`Scope`] (account + region): resources in different regions or accounts never
//! see each other, as in ECS.

//!
//! - [`keys`]: the record keys.
//! - [`records`]: the records, [`Record`] and [`Change`].
//! - [`derived`]: the indexes kept beside them.
//! - `apply`: applying a [`Change`] to the [`State`] (and publishing it).
//! - `queries`: reading one cluster's tasks, instances, services and indexes.

use std::collections::BTreeMap;

mod acm;
mod anywhere;
mod apply;
mod cloudwatch;
mod derived;
mod discovery;
pub mod elb;
mod keys;
mod queries;
mod records;
mod service_history;
mod shared;
mod tasks;
#[cfg(test)]
mod tests;

pub use acm::*;
pub use anywhere::*;
pub use cloudwatch::*;
pub use derived::*;
pub use discovery::*;
pub use keys::*;
pub use records::*;
pub use service_history::*;
pub use shared::*;
pub use tasks::*;

/// The whole state of the control plane.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Clusters, ACTIVE and INACTIVE.
    pub clusters: BTreeMap<ClusterKey, ClusterRecord>,
    /// Task definition revisions.
    pub task_definitions: BTreeMap<TaskDefKey, TaskDefinitionRecord>,
    /// Container instances.
    pub instances: SharedMap<MemberKey, InstanceRecord>,
    /// Tasks, each shared (an [`Arc`](std::sync::Arc)) between the writer's working state and the
    /// published one: publishing a change copies the changed task once, not every task
    /// (see [`State::apply_shared`]). A record in the map is never edited in place: an
    /// op edits a copy (`TaskRecord::clone(t)`) and puts it.
    pub tasks: TaskMap,
    /// Services.
    pub services: SharedMap<ServiceKey, ServiceRecord>,
    /// Account settings.
    pub settings: BTreeMap<SettingKey, SettingRecord>,
    /// Server metadata.
    pub meta: MetaRecord,
    /// Cloud Map namespaces, services, instances and operation records.
    pub discovery: Discovery,
    /// ELBv2 load balancers, target groups, listeners and rules.
    pub elb: elb::ElbState,
    /// Capacity providers, ACTIVE and INACTIVE.
    pub capacity_providers: BTreeMap<CapacityProviderKey, CapacityProviderRecord>,
    /// Services' deployment history (service deployments and revisions).
    pub service_history: ServiceHistory,
    /// Indexes derived from the records.
    pub derived: Derived,
}
