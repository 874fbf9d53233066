//! Retention: what the control plane forgets, and when.
//!
//! Without it, STOPPED tasks and deleted (INACTIVE) clusters, services and container
//! instances would stay in memory (and in the store) forever. ECS keeps them visible for
//! a while and then drops them; so does flotilla, with the same defaults:
//!
//! | record | deleted | ECS |
//! | --- | --- | --- |
//! | task | `stopped_task` (3600 s) after it stopped (`stoppedAt`) | "Stopped tasks are only visible for at least one hour" |
//! | service | `inactive` (3600 s) after it turned INACTIVE | INACTIVE services remain discoverable for at least an hour |
//! | cluster | `inactive` after it turned INACTIVE, once nothing of it is left | INACTIVE clusters "may remain discoverable for a short period" |
//! | container instance | `inactive` after it was deregistered, once no task holds it | deregistered instances remain discoverable for a while |
//! | task definition | `inactive` after DeleteTaskDefinitions, once no task or service refers to it, never the family's newest revision | DELETE_IN_PROGRESS revisions are deleted once nothing refers to them; INACTIVE ones are kept |
//!
//! What is never deleted, whatever its age:
//! - a task that is not STOPPED, in particular one asked to stop (`desiredStatus`
//!   STOPPED) that its agent has not yet reported stopped;
//! - a STOPPED task whose service still has work to do: the service controller counts a
//!   deployment's failed tasks from the STOPPED tasks (`failedTasks`, which feeds the
//!   circuit breaker) and keeps the count on the deployment, never lowering it. A STOPPED
//!   task of a listed deployment is deleted only while a dry run of the controller on the
//!   same state changes nothing, so its failure (if it was one) is already in the stored
//!   count, and the controller reads nothing else from STOPPED tasks: deleting it cannot
//!   change a decision;
//! - a STOPPED task that shares its RunTask `clientToken` with a task that is not yet
//!   expired: the token's tasks go together, so a retried RunTask sees all or none;
//! - INACTIVE ECS task definitions (ECS keeps them; `DeleteTaskDefinitions` is how to
//!   drop them), and the newest revision of a family (the next registration's revision
//!   number comes from it, so an ARN is never reused).
//!
//! [`expired`] is the pure decision; [`spawn_retention`] runs it on a timer through the
//! writer, at most [`RetentionConfig::batch`] deletions a commit (a larger backlog takes
//! several commits in a row, other writes interleaved).
//!
//! When a record turned INACTIVE is not stored (ECS records have no such timestamp), so
//! the runner notes when it first saw each INACTIVE record ([`Sightings`]); after a
//! restart, the clock of each starts again, so records are only ever kept longer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::lifecycle::TaskStatus;
use model::status::ServiceStatus;

use crate::controllers::reconcile_service;
use crate::engine::{ControlPlane, Ctx};
use crate::state::{
    Change, ClusterKey, MemberKey, Record, Retained, Scope, ServiceKey, State, TaskRecord,
    stopped_at,
};

/// How long records stay after they are done with.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// How long a STOPPED task stays (after `stoppedAt`).
    pub stopped_task: Duration,
    /// How long an INACTIVE cluster, service or container instance, or a task
    /// definition in DELETE_IN_PROGRESS, stays.
    pub inactive: Duration,
    /// How often the runner looks.
    pub interval: Duration,
    /// Most records deleted in one commit.
    pub batch: usize,
}

/// ECS's one hour for both.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// Most records one commit deletes.
pub const DEFAULT_BATCH: usize = 1000;
/// Most services whose controller one decision dry-runs (the rest wait a round).
pub const MAX_DRY_RUNS: usize = 64;

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            stopped_task: DEFAULT_RETENTION,
            inactive: DEFAULT_RETENTION,
            interval: Duration::from_secs(30),
            batch: DEFAULT_BATCH,
        }
    }
}

/// When this process first saw each INACTIVE record, by the number
/// [`Derived::inactive`](crate::state::Derived::inactive) gave its transition.
#[derive(Debug, Clone, Default)]
pub struct Sightings {
    first_seen: HashMap<u64, f64>,
}

impl Sightings {
    /// Notes the INACTIVE records first seen now and forgets those that are gone (or
    /// active again).
    pub fn observe(&mut self, state: &State, now: f64) {
        let live: HashSet<u64> = state.derived.inactive.values().copied().collect();
        self.first_seen.retain(|epoch, _| live.contains(epoch));
        for epoch in live {
            self.first_seen.entry(epoch).or_insert(now);
        }
    }

    /// When the INACTIVE record of this transition was first seen.
    pub fn since(&self, epoch: u64) -> Option<f64> {
        self.first_seen.get(&epoch).copied()
    }
}

/// Whether deleting the STOPPED tasks of services can change what their controllers
/// decide: dry runs, cached per service.
struct ServiceCheck<'a> {
    state: &'a State,
    now: f64,
    busy: HashMap<ServiceKey, bool>,
}

impl ServiceCheck<'_> {
    /// Whether `t` may go as far as its service is concerned.
    fn allows(&mut self, t: &TaskRecord) -> bool {
        let Some(name) = t.task.group.as_deref().and_then(crate::task::group_service) else {
            return true;
        };
        let key = ServiceKey::new(&t.scope, &t.cluster, name);
        let Some(svc) = self.state.services.get(&key) else {
            return true;
        };
        if !matches!(
            svc.service.status(),
            Some(ServiceStatus::Active | ServiceStatus::Draining)
        ) {
            return true;
        }
        // The controller reads STOPPED tasks only to count the failed tasks of the
        // deployments still listed.
        let listed = svc
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|d| d.id.is_some() && d.id.as_deref() == t.task.started_by.as_deref());
        if !listed {
            return true;
        }
        if let Some(busy) = self.busy.get(&key) {
            return !busy;
        }
        if self.busy.len() >= MAX_DRY_RUNS {
            return false;
        }
        let mut ctx = Ctx::new(key.scope.clone(), self.now, 0);
        let busy = !matches!(
            reconcile_service(self.state, &mut ctx, &key),
            Ok((_, changes)) if changes.is_empty()
        );
        self.busy.insert(key, busy);
        !busy
    }
}

/// What retention deletes now: at most `config.batch` records, oldest STOPPED tasks
/// first, then INACTIVE services and instances, then INACTIVE clusters left empty, then
/// unreferenced task definitions in DELETE_IN_PROGRESS. `sightings` says since when the
/// INACTIVE records have been seen (see [`Sightings::observe`]). Pure: the changes go
/// through the writer like any operation's, and [`State::apply`] keeps the derived
/// indexes consistent.
pub fn expired(
    state: &State,
    now: f64,
    config: &RetentionConfig,
    sightings: &Sightings,
) -> Vec<Change> {
    let batch = config.batch.max(1);
    let mut out = Vec::new();
    expired_tasks(state, now, config, batch, &mut out);
    let inactive_cutoff = now - config.inactive.as_secs_f64();
    let old_enough = |epoch: u64| sightings.since(epoch).is_some_and(|t| t <= inactive_cutoff);
    for (key, epoch) in &state.derived.inactive {
        if out.len() >= batch {
            return out;
        }
        if !old_enough(*epoch) {
            continue;
        }
        match key {
            Retained::Service(k) => {
                if let Some(r) = state.services.get(k) {
                    out.push(Change::Delete(Record::Service(r.clone())));
                    // Its deployment history goes with it (at most 2 × 100 records).
                    let history = &state.service_history;
                    out.extend(
                        history
                            .deployments_of(k)
                            .map(|d| Change::Delete(Record::ServiceDeployment(d.clone())))
                            .chain(
                                history
                                    .revisions_of(k)
                                    .map(|r| Change::Delete(Record::ServiceRevision(r.clone()))),
                            ),
                    );
                }
            }
            Retained::Instance(k) => {
                // Not while a task that is not STOPPED still holds it.
                if let Some(r) = state.instances.get(k)
                    && state.usage(&k.scope, &k.cluster, &k.id).is_none()
                {
                    out.push(Change::Delete(Record::Instance(r.clone())));
                }
            }
            Retained::Cluster(_) => {}
        }
    }
    // Clusters only once their tasks, services and instances are gone (they expire on
    // their own first), so that a cluster created again under the name starts empty.
    for (key, epoch) in &state.derived.inactive {
        if out.len() >= batch {
            return out;
        }
        if let Retained::Cluster(ClusterKey { scope, name }) = key
            && old_enough(*epoch)
            && state.tasks_in(scope, name).next().is_none()
            && state.services_in(scope, name).next().is_none()
            && state.instances_in(scope, name).next().is_none()
            && let Some(r) = state.cluster(scope, name)
        {
            out.push(Change::Delete(Record::Cluster(r.clone())));
        }
    }
    expired_definitions(state, inactive_cutoff, batch, &mut out);
    out
}

fn expired_tasks(
    state: &State,
    now: f64,
    config: &RetentionConfig,
    batch: usize,
    out: &mut Vec<Change>,
) {
    let cutoff = now - config.stopped_task.as_secs_f64();
    let expired_task = |t: &TaskRecord| {
        t.task.last() == Some(TaskStatus::Stopped) && stopped_at(&t.task) <= cutoff
    };
    let mut services = ServiceCheck {
        state,
        now,
        busy: HashMap::new(),
    };
    let mut taken: HashSet<MemberKey> = HashSet::new();
    // Tasks skipped for their service or token are visited again each round; the
    // bound keeps one round's work proportional to the batch.
    for (visits, (_, key)) in state.derived.stopped.iter().enumerate() {
        if out.len() >= batch || visits >= 100 * batch {
            return;
        }
        let Some(t) = state.tasks.get(key) else {
            continue;
        };
        if taken.contains(key) {
            continue;
        }
        // The index is ordered by the stop time: the first one not yet expired ends it.
        if stopped_at(&t.task) > cutoff {
            return;
        }
        // Never a task that is not STOPPED yet (the index holds only STOPPED ones; this
        // says so where it matters).
        if !expired_task(t) {
            continue;
        }
        // A clientToken's tasks go together, once all of them have expired.
        let group: Vec<&TaskRecord> = match &t.client_token {
            Some(token) => state
                .client_token_tasks(&t.scope, &t.cluster, token)
                .collect(),
            None => vec![t],
        };
        if !group.iter().all(|g| expired_task(g))
            || out.len() + group.len() > batch.max(group.len())
        {
            continue;
        }
        if !group.iter().all(|g| services.allows(g)) {
            continue;
        }
        for g in group {
            taken.insert(g.key());
            out.push(Change::Delete(Record::Task(g.clone())));
        }
    }
}

/// DELETE_IN_PROGRESS revisions past the retention that no task (of any status) and no
/// ACTIVE or DRAINING service refers to; never the newest revision of a family.
fn expired_definitions(state: &State, cutoff: f64, batch: usize, out: &mut Vec<Change>) {
    if state.derived.deleting.is_empty() || out.len() >= batch {
        return;
    }
    // family:revision of every definition a live service refers to.
    let mut by_services: HashSet<String> = HashSet::new();
    for s in state.services.values() {
        if !matches!(
            s.service.status(),
            Some(ServiceStatus::Active | ServiceStatus::Draining)
        ) {
            continue;
        }
        let refs = s.service.task_definition.iter().chain(
            s.service
                .deployments
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(|d| d.task_definition.as_ref()),
        );
        for r in refs {
            by_services.insert(r.rsplit('/').next().unwrap_or(r).to_owned());
        }
    }
    for key in &state.derived.deleting {
        if out.len() >= batch {
            return;
        }
        let Some(r) = state.task_definitions.get(key) else {
            continue;
        };
        let (scope, family, revision) = key;
        let newest = state
            .task_definitions
            .range(
                (scope.clone(), family.clone(), *revision)
                    ..=(scope.clone(), family.clone(), i32::MAX),
            )
            .next_back()
            .is_some_and(|(k, _)| k.2 == *revision);
        let requested = r.definition.delete_requested_at.unwrap_or(0.0);
        let arn = r.definition.task_definition_arn.as_deref().unwrap_or("");
        if newest
            || requested > cutoff
            || state.derived.definition_refs.contains_key(arn)
            || by_services.contains(&format!("{family}:{revision}"))
        {
            continue;
        }
        out.push(Change::Delete(Record::TaskDefinition(r.clone())));
    }
}

/// Runs retention every `config.interval` until the runtime stops: each round deletes
/// what [`expired`] says, one commit of at most `config.batch` records at a time, until
/// nothing more has expired.
pub fn spawn_retention(cp: ControlPlane, config: RetentionConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sightings = Arc::new(Mutex::new(Sightings::default()));
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            loop {
                let (config_, sightings_) = (config.clone(), sightings.clone());
                let round = cp
                    .write(Scope::new("", ""), move |state, ctx| {
                        let mut seen = sightings_
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        seen.observe(state, ctx.now);
                        let changes = expired(state, ctx.now, &config_, &seen);
                        Ok((changes.len(), changes))
                    })
                    .await;
                match round {
                    Ok(0) => break,
                    Ok(n) => {
                        tracing::info!(deleted = n, "retention: expired records deleted");
                        if n < config.batch {
                            break;
                        }
                        // More to do: let other writes in first.
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; retrying later");
                        break;
                    }
                }
            }
        }
    })
}
