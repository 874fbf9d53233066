//! Targets' life in their group: deregistration drains for the group's delay,
//! registering a draining target makes it active again, and the data plane's health
//! reports ([`health::report_health`]) show in DescribeTargetHealth.

use controlplane::State;
use controlplane::ops::elbv2::ElbError;
use controlplane::ops::elbv2::health::{self, HealthReport, MAX_HEALTH_REPORTS};
use controlplane::ops::elbv2::listeners;
use controlplane::ops::elbv2::load_balancers;
use controlplane::ops::elbv2::target_groups::{self, TargetHealth, TargetInput};
use controlplane::state::elb::{ObservedHealth, TargetGroupRecord};
use controlplane::state::{Change, Record};
use testkit::ecs::{self, T0};
use testkit::elb::{ElbOp, http_group, http_listener, load_balancer};

/// The state, a clock (epoch seconds) the test moves, and the changes of the last write.
struct World {
    state: State,
    now: f64,
    seed: u64,
    last_changes: Vec<Change>,
}

impl World {
    fn new() -> World {
        World {
            state: State::default(),
            now: T0,
            seed: 1,
            last_changes: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        (self.now * 1000.0) as u64
    }

    fn try_write<Req, Resp>(&mut self, op: ElbOp<Req, Resp>, r: Req) -> Result<Resp, ElbError> {
        self.seed += 1;
        let (resp, changes) = op(&self.state, &mut ecs::ctx(self.now, self.seed), r)?;
        ecs::apply(&mut self.state, &changes);
        self.last_changes = changes;
        Ok(resp)
    }

    fn write<Req, Resp>(&mut self, op: ElbOp<Req, Resp>, r: Req) -> Resp {
        self.try_write(op, r)
            .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
    }

    /// An `ip` group `name` (port 80) with a deregistration delay of `delay` seconds.
    fn group(&mut self, name: &str, delay: &str) -> TargetGroupRecord {
        let tg = self.write(target_groups::create, http_group(name, 80, Some("ip")));
        self.write(
            target_groups::modify_attributes,
            (
                tg.arn(),
                vec![("deregistration_delay.timeout_seconds".into(), delay.into())],
            ),
        );
        tg
    }

    /// A load balancer `name` with an HTTP listener on `port` forwarding to `tg`.
    fn listen(&mut self, name: &str, port: i64, tg: &TargetGroupRecord) {
        let lb = self.write(load_balancers::create, load_balancer(name));
        self.write(listeners::create, http_listener(lb.arn(), port, &tg.arn()));
    }

    fn health(&self, tg: &TargetGroupRecord, targets: Vec<TargetInput>) -> Vec<TargetHealth> {
        target_groups::describe_health(
            &self.state,
            &ecs::scope(),
            (tg.arn(), targets, self.now_ms()),
        )
        .unwrap()
    }

    fn group_now(&self, tg: &TargetGroupRecord) -> &TargetGroupRecord {
        &self.state.elb.target_groups[&tg.key()]
    }
}

fn ip(id: &str) -> TargetInput {
    TargetInput {
        id: id.into(),
        ..Default::default()
    }
}

/// (state, reason, description) of each answer.
fn states(h: &[TargetHealth]) -> Vec<(&str, Option<&str>, Option<&str>)> {
    h.iter()
        .map(|h| (h.state, h.reason.as_deref(), h.description.as_deref()))
        .collect()
}

fn report(tg: &TargetGroupRecord, id: &str, healthy: bool, reason: Option<&str>) -> HealthReport {
    HealthReport {
        scope: ecs::scope(),
        target_group: tg.name.clone(),
        target_id: id.into(),
        port: 80,
        health: ObservedHealth {
            healthy,
            reason: reason.map(Into::into),
            description: reason.map(|r| format!("{r}: the check failed")),
            since_ms: 0,
        },
    }
}

#[test]
fn a_deregistered_target_drains_for_the_delay_then_is_gone() {
    let mut w = World::new();
    let tg = w.group("api", "30");
    w.listen("web", 80, &tg);
    w.write(
        target_groups::register,
        (
            tg.arn(),
            vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")],
        ),
    );
    w.write(target_groups::deregister, (tg.arn(), vec![ip("10.0.0.2")]));
    let t = &w.group_now(&tg).targets[1];
    assert_eq!(t.draining_until_ms, Some(w.now_ms() + 30_000));
    let draining = (
        "draining",
        Some("Target.DeregistrationInProgress"),
        Some("Target deregistration is in progress"),
    );
    let initial = (
        "initial",
        Some("Elb.RegistrationInProgress"),
        Some("Target registration is in progress"),
    );
    // "Describe all" keeps the registration order.
    assert_eq!(states(&w.health(&tg, vec![])), [initial, draining, initial]);
    // Deregistering a draining target again changes nothing (and is no error).
    w.now += 10.0;
    w.write(target_groups::deregister, (tg.arn(), vec![ip("10.0.0.2")]));
    assert_eq!(
        w.group_now(&tg).targets[1].draining_until_ms,
        Some((T0 * 1000.0) as u64 + 30_000),
        "the deadline does not move"
    );
    // Past the deadline the target counts as not registered ...
    w.now += 25.0;
    assert_eq!(
        states(&w.health(&tg, vec![])),
        [initial, initial],
        "drained targets are left out"
    );
    assert_eq!(
        states(&w.health(&tg, vec![ip("10.0.0.2")])),
        [(
            "unused",
            Some("Target.NotRegistered"),
            Some("Target is not registered to the target group")
        )]
    );
    let e = w
        .try_write(target_groups::deregister, (tg.arn(), vec![ip("10.0.0.2")]))
        .unwrap_err();
    assert_eq!(
        e.code(),
        "InvalidTarget",
        "a drained target is not registered"
    );
    // ... and the next write of the group drops it.
    assert_eq!(w.group_now(&tg).targets.len(), 3, "not written since");
    w.write(target_groups::register, (tg.arn(), vec![ip("10.0.0.4")]));
    let ids: Vec<&str> = w
        .group_now(&tg)
        .targets
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(ids, ["10.0.0.1", "10.0.0.3", "10.0.0.4"]);
}

#[test]
fn a_zero_delay_removes_at_once_and_unused_groups_stay_unused() {
    let mut w = World::new();
    let tg = w.group("api", "0");
    w.write(
        target_groups::register,
        (tg.arn(), vec![ip("10.0.0.1"), ip("10.0.0.2")]),
    );
    w.write(target_groups::deregister, (tg.arn(), vec![ip("10.0.0.1")]));
    assert_eq!(w.group_now(&tg).targets.len(), 1);
    let unused = (
        "unused",
        Some("Target.NotInUse"),
        Some("Target group is not configured to receive traffic from the load balancer"),
    );
    assert_eq!(states(&w.health(&tg, vec![])), [unused]);
    // A reported health does not show while no listener uses the group.
    w.write(
        health::report_health,
        vec![report(&tg, "10.0.0.2", true, None)],
    );
    assert_eq!(states(&w.health(&tg, vec![])), [unused]);
}

#[test]
fn registering_a_draining_target_makes_it_active_again() {
    let mut w = World::new();
    let tg = w.group("api", "300");
    w.listen("web", 80, &tg);
    w.write(target_groups::register, (tg.arn(), vec![ip("10.0.0.1")]));
    w.write(
        health::report_health,
        vec![report(&tg, "10.0.0.1", true, None)],
    );
    w.write(target_groups::deregister, (tg.arn(), vec![ip("10.0.0.1")]));
    assert_eq!(w.health(&tg, vec![])[0].state, "draining");
    w.now += 5.0;
    w.write(target_groups::register, (tg.arn(), vec![ip("10.0.0.1")]));
    let t = &w.group_now(&tg).targets;
    assert_eq!(t.len(), 1, "the same target, not a second one");
    assert_eq!(
        (t[0].draining_until_ms, &t[0].health),
        (None, &None),
        "active again, to be checked anew"
    );
    assert_eq!(w.health(&tg, vec![])[0].state, "initial");
    // Registering an active target again changes nothing.
    w.write(
        health::report_health,
        vec![report(&tg, "10.0.0.1", true, None)],
    );
    let before = w.group_now(&tg).clone();
    w.write(target_groups::register, (tg.arn(), vec![ip("10.0.0.1")]));
    assert_eq!(w.group_now(&tg), &before);
}

#[test]
fn reported_health_shows_as_healthy_or_unhealthy_with_its_reason() {
    let mut w = World::new();
    let tg = w.group("api", "300");
    w.listen("web", 80, &tg);
    w.write(
        target_groups::register,
        (tg.arn(), vec![ip("10.0.0.1"), ip("10.0.0.2")]),
    );
    w.write(
        health::report_health,
        vec![
            report(&tg, "10.0.0.1", true, None),
            report(&tg, "10.0.0.2", false, Some("Target.Timeout")),
        ],
    );
    assert_eq!(w.last_changes.len(), 1, "one write of the group");
    assert_eq!(
        states(&w.health(&tg, vec![])),
        [
            ("healthy", None, None),
            (
                "unhealthy",
                Some("Target.Timeout"),
                Some("Target.Timeout: the check failed")
            )
        ]
    );
    let stored = w.group_now(&tg).targets[0].health.clone().unwrap();
    assert_eq!(stored.since_ms, w.now_ms(), "the writer's clock");
}

#[test]
fn report_health_writes_only_what_changed() {
    let mut w = World::new();
    let api = w.group("api", "300");
    let www = w.group("www", "300");
    w.listen("web", 80, &api);
    w.write(target_groups::register, (api.arn(), vec![ip("10.0.0.1")]));
    w.write(target_groups::register, (www.arn(), vec![ip("10.0.0.9")]));
    w.write(
        health::report_health,
        vec![report(&api, "10.0.0.1", false, Some("Target.Timeout"))],
    );
    assert_eq!(w.last_changes.len(), 1);
    // The same health again: nothing written.
    w.now += 1.0;
    w.write(
        health::report_health,
        vec![report(&api, "10.0.0.1", false, Some("Target.Timeout"))],
    );
    assert!(w.last_changes.is_empty(), "{:?}", w.last_changes);
    // Another reason is a change.
    w.write(
        health::report_health,
        vec![report(
            &api,
            "10.0.0.1",
            false,
            Some("Target.ResponseCodeMismatch"),
        )],
    );
    let [Change::Put(Record::TargetGroup(g))] = &w.last_changes[..] else {
        panic!("one group written: {:?}", w.last_changes)
    };
    assert_eq!(g.name, "api", "www was not named and is not written");
    // Targets that are not registered, groups that do not exist, draining targets and
    // ARNs of another group are skipped.
    w.write(target_groups::deregister, (www.arn(), vec![ip("10.0.0.9")]));
    let mut by_arn = report(&api, "10.0.0.1", true, None);
    by_arn.target_group = api.arn().replace(&api.id, "0000000000000000");
    let mut gone = report(&api, "10.0.0.1", true, None);
    gone.target_group = "nope".into();
    w.write(
        health::report_health,
        vec![
            report(&api, "10.0.0.7", true, None),
            report(&www, "10.0.0.9", true, None),
            by_arn,
            gone,
        ],
    );
    assert!(w.last_changes.is_empty(), "{:?}", w.last_changes);
    // By ARN works too.
    let mut by_arn = report(&api, "10.0.0.1", true, None);
    by_arn.target_group = api.arn();
    w.write(health::report_health, vec![by_arn]);
    assert_eq!(w.health(&api, vec![])[0].state, "healthy");
    // Bounded.
    let many = vec![report(&api, "10.0.0.1", true, None); MAX_HEALTH_REPORTS + 1];
    let e = w.try_write(health::report_health, many).unwrap_err();
    assert_eq!(e.code(), "ValidationError");
}
