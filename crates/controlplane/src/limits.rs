//! The documented limits of the control plane: how much one call, one record or one
//! controller pass may ask for. Each is checked where input enters (the operations answer
//! `InvalidParameterException` naming the limit) and again where the work is done (the
//! service controller never trusts a stored record to be small), so no input can size an
//! allocation or a loop without a bound. The values follow ECS's service quotas where ECS
//! has one; docs/security.md lists them all.

/// Most tasks one service may run (`desiredCount`), as ECS's "Tasks per service" quota.
pub const MAX_TASKS_PER_SERVICE: i32 = 5_000;

/// Most services (ACTIVE or DRAINING) in one cluster, as ECS's "Services per cluster".
pub const MAX_SERVICES_PER_CLUSTER: usize = 5_000;

/// Most tasks one reconcile pass of a service starts: a larger deployment proceeds in
/// several passes (each pass's own changes queue the next), so one pass's work, memory
/// and commit stay bounded whatever a service asks for.
pub const MAX_STARTS_PER_PASS: i64 = 500;
