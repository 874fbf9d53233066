//! The decision tests: a [`harness::Harness`] plays the cluster (a snapshot the actions
//! change the way ECS and the nodes would) and the clock; each test steps through a
//! rollout and checks the decisions.

mod harness;
mod plan;
mod rollout;
mod safety;
mod window;
