//! Every ECS operation, as a pure function of the state.
//!
//! Reads: `fn(&State, &Scope, Request) -> Result<Response, EcsError>`.
//! Writes: `fn(&State, &mut Ctx, Request) -> Written<Response>` — they return the
//! [`Change`](crate::Change)s to make and never touch the state themselves.

pub mod account;
pub mod acm;
pub mod agent;
pub mod agent_channel;
pub mod anywhere;
pub mod attributes;
pub mod capacity_providers;
pub mod cloudwatch;
pub mod clusters;
pub mod common;
pub mod elbv2;
pub mod instances;
pub mod lifecycle_hooks;
pub mod logs;
pub mod protection;
pub mod service_deployments;
pub mod servicediscovery;
pub mod services;
pub mod tags;
pub mod task_definitions;
pub mod task_sets;
pub mod tasks;
#[cfg(test)]
mod test_support;
pub mod updater_state;
