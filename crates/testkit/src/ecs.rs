//! ECS operations in tests: the test scope, request bodies, operations run as the writer
//! runs them — against a hand-built [`State`] (the free functions and [`World`]) or
//! submitted to a real [`ControlPlane`] ([`submit`]).

use std::sync::Arc;

use controlplane::engine::{Clock, Written};
use controlplane::ops::{agent, clusters, instances, task_definitions, tasks};
use controlplane::{Change, ControlPlane, Ctx, EcsError, Scope, State};
use model::wire;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The account of [`scope`].
pub const ACCOUNT: &str = "000000000000";
/// The region of [`scope`].
pub const REGION: &str = "eu-west-1";
/// The time at which a [`World`] starts, in epoch seconds (14 November 2023).
pub const T0: f64 = 1_700_000_000.0;

/// A write operation, as the writer runs it: `controlplane::ops::*` functions are these.
pub type Op<Req, Resp> = fn(&State, &mut Ctx, Req) -> Written<Resp>;

/// The scope every test helper here works in: account [`ACCOUNT`], region [`REGION`].
pub fn scope() -> Scope {
    Scope::new(ACCOUNT, REGION)
}

/// A request (or any wire shape) from its JSON form; panics if the JSON does not fit.
pub fn req<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("request shape")
}

/// A context in [`scope`] at `now`, its RNG seeded with `seed`.
pub fn ctx(now: f64, seed: u64) -> Ctx {
    Ctx::new(scope(), now, seed)
}

/// Applies `changes` to `state`, in order, as the writer publishes them.
pub fn apply(state: &mut State, changes: &[Change]) {
    for c in changes {
        state.apply(c);
    }
}

/// Runs `op` in `ctx` and applies its changes to `state` if it succeeds.
///
/// # Errors
/// The operation's own error; `state` is then unchanged.
pub fn try_write<Req, Resp>(
    state: &mut State,
    ctx: &mut Ctx,
    op: Op<Req, Resp>,
    r: Req,
) -> Result<Resp, EcsError> {
    let (resp, changes) = op(state, ctx, r)?;
    apply(state, &changes);
    Ok(resp)
}

/// [`try_write`] that must succeed; panics with the error's code and message.
pub fn write<Req, Resp>(state: &mut State, ctx: &mut Ctx, op: Op<Req, Resp>, r: Req) -> Resp {
    try_write(state, ctx, op, r).unwrap_or_else(|e| panic!("{}: {e}", e.code()))
}

/// The identity document of an EC2 instance `id` (a `t3.large`) in `zone`, as agents
/// send it to RegisterContainerInstance.
pub fn identity_document(id: &str, zone: &str) -> String {
    json!({"instanceId": id, "availabilityZone": zone, "instanceType": "t3.large"}).to_string()
}

/// RegisterContainerInstance's `totalResources`: `cpu` units and `memory` MiB.
pub fn resources(cpu: i64, memory: i64) -> Value {
    json!([
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}
    ])
}

/// A RegisterContainerInstance body: EC2 instance `id` in `zone`, joining `cluster` with
/// [`resources`]`(cpu, memory)`.
pub fn instance(cluster: &str, id: &str, zone: &str, cpu: i64, memory: i64) -> Value {
    json!({
        "cluster": cluster,
        "instanceIdentityDocument": identity_document(id, zone),
        "totalResources": resources(cpu, memory),
    })
}

/// A RegisterTaskDefinition body: `family` with one container `app` (`busybox`, `memory`
/// MiB).
pub fn task_definition(family: &str, memory: i64) -> Value {
    json!({"family": family, "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": memory}
    ]})
}

/// A control plane on an empty in-memory store, on the system clock.
pub fn control_plane() -> ControlPlane {
    ControlPlane::open(Arc::new(store::MemStore::new())).expect("open a control plane")
}

/// A control plane on an empty in-memory store whose time is `clock`.
pub fn control_plane_with_clock(clock: Clock) -> ControlPlane {
    ControlPlane::open_with_clock(Arc::new(store::MemStore::new()), clock)
        .expect("open a control plane")
}

/// Submits `op` to the real writer in [`scope`]; resolves once it is durable.
///
/// # Errors
/// The operation's error, or the store's.
pub async fn submit<Req: Clone + Send + 'static, Resp: Send + 'static>(
    cp: &ControlPlane,
    op: Op<Req, Resp>,
    r: Req,
) -> Result<Resp, EcsError> {
    cp.write(scope(), move |s, ctx| op(s, ctx, r.clone())).await
}

/// A hand-driven control plane state: operations run as the writer runs them, at `now`,
/// each with the next seed. Starts empty at [`T0`], seed 1.
#[derive(Clone, Debug)]
pub struct World {
    /// The state the operations read and change.
    pub state: State,
    /// The time the next operation runs at (epoch seconds); tests move it.
    pub now: f64,
    /// The last seed handed out; [`World::ctx`] increments it first.
    pub seed: u64,
}

impl Default for World {
    fn default() -> World {
        World {
            state: State::default(),
            now: T0,
            seed: 1,
        }
    }
}

impl World {
    /// One step of a simulated agent for the tasks of task group `group` in cluster `c`
    /// whose container `app` publishes container port 80: a PENDING task turns RUNNING
    /// with port 80 on host port `*next_port + 1` (then `*next_port` is that port), a
    /// task asked to stop turns STOPPED (exit 143); others are left alone.
    pub fn publishing_agent_step(&mut self, group: &str, next_port: &mut i32) {
        let tasks: Vec<(String, String, String)> = self
            .state
            .tasks
            .values()
            .filter(|t| t.task.group.as_deref() == Some(group))
            .map(|t| {
                let status =
                    |s: &Option<wire::SharedStr>| s.as_deref().unwrap_or_default().to_owned();
                (
                    t.id.clone(),
                    status(&t.task.last_status),
                    status(&t.task.desired_status),
                )
            })
            .collect();
        for (id, last, desired) in tasks {
            let body = if last == "STOPPED" {
                continue;
            } else if desired == "STOPPED" {
                json!({"cluster": "c", "task": id, "status": "STOPPED",
                    "containers": [{"containerName": "app", "status": "STOPPED", "exitCode": 143}]})
            } else if last != "RUNNING" {
                *next_port += 1;
                json!({"cluster": "c", "task": id, "status": "RUNNING",
                    "containers": [{"containerName": "app", "status": "RUNNING",
                        "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80,
                            "hostPort": *next_port, "protocol": "tcp"}]}]})
            } else {
                continue;
            };
            let _: wire::SubmitTaskStateChangeResponse =
                self.write(agent::submit_task_state_change, req(body));
        }
    }

    /// An empty state at [`T0`].
    pub fn new() -> World {
        World::default()
    }

    /// A context at `now` with the next seed.
    pub fn ctx(&mut self) -> Ctx {
        self.seed += 1;
        ctx(self.now, self.seed)
    }

    /// Applies `changes` to the state.
    pub fn apply(&mut self, changes: &[Change]) {
        apply(&mut self.state, changes);
    }

    /// Runs `op` in a fresh [`World::ctx`] and applies its changes if it succeeds.
    ///
    /// # Errors
    /// The operation's own error; the state is then unchanged.
    pub fn try_write<Req, Resp>(&mut self, op: Op<Req, Resp>, r: Req) -> Result<Resp, EcsError> {
        let mut ctx = self.ctx();
        try_write(&mut self.state, &mut ctx, op, r)
    }

    /// [`World::try_write`] that must succeed; panics with the error's code and message.
    pub fn write<Req, Resp>(&mut self, op: Op<Req, Resp>, r: Req) -> Resp {
        self.try_write(op, r)
            .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
    }

    /// CreateCluster `name`.
    pub fn create_cluster(&mut self, name: &str) {
        let _: wire::CreateClusterResponse =
            self.write(clusters::create_cluster, req(json!({"clusterName": name})));
    }

    /// RegisterContainerInstance of [`instance`]`(cluster, id, zone, cpu, memory)`;
    /// returns the container instance's ARN.
    pub fn add_instance(
        &mut self,
        cluster: &str,
        id: &str,
        zone: &str,
        cpu: i64,
        memory: i64,
    ) -> String {
        let r: wire::RegisterContainerInstanceResponse = self.write(
            instances::register,
            req(instance(cluster, id, zone, cpu, memory)),
        );
        r.container_instance
            .and_then(|c| c.container_instance_arn)
            .expect("container instance ARN")
    }

    /// Runs the Cloud Map operation `op` on `body` in a fresh [`World::ctx`] and applies its
    /// changes; panics with the error's code and message if it fails.
    pub fn sd_write<Req: DeserializeOwned, Resp>(
        &mut self,
        op: fn(&State, &mut Ctx, Req) -> controlplane::ops::servicediscovery::SdWritten<Resp>,
        body: Value,
    ) -> Resp {
        let mut ctx = self.ctx();
        let (resp, changes) =
            op(&self.state, &mut ctx, req(body)).unwrap_or_else(|e| panic!("{}: {e}", e.code()));
        self.apply(&changes);
        resp
    }

    /// [`World::add_instance`] with 4096 CPU units and MiB, whose agent reported `ip` as
    /// its private address (the `flotilla.private-ip` attribute load balancer and Cloud
    /// Map registrations of `bridge` tasks use).
    pub fn add_node_with_ip(&mut self, cluster: &str, id: &str, zone: &str, ip: &str) {
        self.add_instance(cluster, id, zone, 4096, 4096);
        let mut rec = self
            .state
            .instances
            .values()
            .find(|i| i.instance.ec2_instance_id.as_deref() == Some(id))
            .expect("the instance just registered")
            .clone();
        rec.instance
            .attributes
            .get_or_insert_with(Vec::new)
            .push(wire::Attribute {
                name: Some(instances::PRIVATE_IP_ATTRIBUTE.into()),
                value: Some(ip.into()),
                ..Default::default()
            });
        self.apply(&[Change::Put(controlplane::state::Record::Instance(rec))]);
    }

    /// Registers a revision of [`task_definition`]`(family, memory)`; returns its ARN.
    pub fn register(&mut self, family: &str, memory: i64) -> String {
        let r: wire::RegisterTaskDefinitionResponse = self.write(
            task_definitions::register,
            req(task_definition(family, memory)),
        );
        r.task_definition
            .and_then(|d| d.task_definition_arn)
            .expect("task definition ARN")
    }

    /// RunTask with `body`; the ARNs of the tasks it started.
    pub fn run(&mut self, body: Value) -> Vec<String> {
        let r: wire::RunTaskResponse = self.write(tasks::run_task, req(body));
        r.tasks
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.task_arn.expect("task ARN").into())
            .collect()
    }

    /// StopTask of the task `arn` (its cluster read from the ARN), reason "done".
    pub fn stop(&mut self, arn: &str) {
        let _: wire::StopTaskResponse = self.write(
            tasks::stop_task,
            req(json!({"cluster": cluster_of(arn), "task": arn, "reason": "done"})),
        );
    }

    /// The agent reports the task `arn` (its cluster read from the ARN) in `status`.
    pub fn report(&mut self, arn: &str, status: &str) {
        let _: wire::SubmitTaskStateChangeResponse = self.write(
            agent::submit_task_state_change,
            req(json!({"cluster": cluster_of(arn), "task": arn, "status": status})),
        );
    }
}

/// The cluster name in a task ARN (`arn:aws:ecs:…:task/<cluster>/<id>`).
fn cluster_of(task_arn: &str) -> &str {
    task_arn.rsplit('/').nth(1).expect("a task ARN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_runs_a_task_and_stops_it() {
        let mut w = World::new();
        w.create_cluster("c");
        let arn = w.add_instance("c", "i-1", "a", 1024, 1024);
        assert!(arn.contains(":container-instance/c/"), "{arn}");
        let def = w.register("web", 32);
        assert!(def.ends_with(":task-definition/web:1"), "{def}");
        let tasks = w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 2}));
        assert_eq!(tasks.len(), 2);
        w.report(&tasks[0], "RUNNING");
        w.stop(&tasks[1]);
        let status = |arn: &str| {
            let t = &w
                .state
                .tasks
                .values()
                .find(|t| t.task.task_arn.as_deref() == Some(arn));
            let t = &t.expect("the task").task;
            (t.desired_status.as_deref(), t.last_status.as_deref())
        };
        assert_eq!(status(&tasks[0]), (Some("RUNNING"), Some("RUNNING")));
        assert_eq!(status(&tasks[1]).0, Some("STOPPED"));
        assert_eq!(w.seed, 7, "one seed per operation");
    }

    #[test]
    fn a_refused_write_leaves_the_state_as_it_was() {
        let mut w = World::new();
        let before = format!("{:?}", w.state);
        let e = w
            .try_write(
                tasks::run_task,
                req(json!({"cluster": "nope", "taskDefinition": "web"})),
            )
            .unwrap_err();
        assert_eq!(e.code(), "ClusterNotFoundException");
        assert_eq!(format!("{:?}", w.state), before);
    }
}
