//! ELBv2 in tests: request bodies for the usual load balancer, target group and listener,
//! ELBv2 operations run on a [`World`] as the writer runs them, and a simulated data
//! plane that finds every registered target healthy.

use controlplane::ops::elbv2::listeners::{self, ActionInput, CreateListener};
use controlplane::ops::elbv2::load_balancers::{self, CreateLoadBalancer};
use controlplane::ops::elbv2::target_groups::{self, CreateTargetGroup};
use controlplane::ops::elbv2::{self, ElbError, ElbWritten, RuleRef};
use controlplane::state::Record;
use controlplane::state::elb::{
    ActionKind, ListenerRecord, LoadBalancerRecord, ObservedHealth, TargetGroupRecord,
};
use controlplane::{Change, Ctx, State};

use crate::ecs::{World, scope};

/// An ELBv2 write operation, as the writer runs it: `controlplane::ops::elbv2::*`
/// functions are these.
pub type ElbOp<Req, Resp> = fn(&State, &mut Ctx, Req) -> ElbWritten<Resp>;

/// A `forward` action to the target group `tg_arn`.
pub fn forward(tg_arn: &str) -> ActionInput {
    ActionInput {
        action_type: "forward".into(),
        target_group_arn: Some(tg_arn.into()),
        ..Default::default()
    }
}

/// A `fixed-response` action answering `status` with `body` as `content_type`.
pub fn fixed_response(status: &str, content_type: &str, body: &str) -> ActionInput {
    ActionInput {
        action_type: "fixed-response".into(),
        fixed_response: Some((status.into(), Some(content_type.into()), Some(body.into()))),
        ..Default::default()
    }
}

/// CreateLoadBalancer of an application load balancer `name`, AWS defaults otherwise.
pub fn load_balancer(name: &str) -> CreateLoadBalancer {
    CreateLoadBalancer {
        name: name.into(),
        ..Default::default()
    }
}

/// CreateTargetGroup of an HTTP group `name` on `port`, of `target_type` if given.
pub fn http_group(name: &str, port: i64, target_type: Option<&str>) -> CreateTargetGroup {
    CreateTargetGroup {
        name: name.into(),
        protocol: Some("HTTP".into()),
        port: Some(port),
        target_type: target_type.map(Into::into),
        ..Default::default()
    }
}

/// CreateListener of an HTTP listener of `lb_arn` on `port` forwarding to `tg_arn`.
pub fn http_listener(lb_arn: String, port: i64, tg_arn: &str) -> CreateListener {
    CreateListener {
        load_balancer_arn: lb_arn,
        protocol: Some("HTTP".into()),
        port: Some(port),
        default_actions: vec![forward(tg_arn)],
        tags: vec![],
        ..Default::default()
    }
}

impl World {
    /// Runs the ELBv2 operation `op` in a fresh [`World::ctx`] and applies its changes if
    /// it succeeds.
    ///
    /// # Errors
    /// The operation's own error; the state is then unchanged.
    pub fn try_elb<Req, Resp>(&mut self, op: ElbOp<Req, Resp>, r: Req) -> Result<Resp, ElbError> {
        let mut ctx = self.ctx();
        let (resp, changes) = op(&self.state, &mut ctx, r)?;
        self.apply(&changes);
        Ok(resp)
    }

    /// [`World::try_elb`] that must succeed; panics with the error's code and message.
    pub fn elb<Req, Resp>(&mut self, op: ElbOp<Req, Resp>, r: Req) -> Resp {
        self.try_elb(op, r)
            .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
    }

    /// CreateLoadBalancer of [`load_balancer`]`(name)`.
    pub fn create_load_balancer(&mut self, name: &str) -> LoadBalancerRecord {
        self.elb(load_balancers::create, load_balancer(name))
    }

    /// CreateTargetGroup of [`http_group`]`(name, 80, Some(target_type))`.
    pub fn create_target_group(&mut self, name: &str, target_type: &str) -> TargetGroupRecord {
        self.elb(
            target_groups::create,
            http_group(name, 80, Some(target_type)),
        )
    }

    /// CreateListener of [`http_listener`]`(lb_arn, port, tg_arn)`.
    pub fn create_listener(&mut self, lb_arn: String, port: i64, tg_arn: &str) -> ListenerRecord {
        self.elb(listeners::create, http_listener(lb_arn, port, tg_arn))
    }

    /// Sets the group's `deregistration_delay.timeout_seconds` to `secs` straight in the
    /// state (below the operation's bounds, as tests want short delays); the group as
    /// stored.
    pub fn set_deregistration_delay(
        &mut self,
        tg: &TargetGroupRecord,
        secs: impl ToString,
    ) -> TargetGroupRecord {
        let mut g = tg.clone();
        g.attributes.insert(
            "deregistration_delay.timeout_seconds".into(),
            secs.to_string(),
        );
        self.apply(&[Change::Put(Record::TargetGroup(g.clone()))]);
        g
    }

    /// The target group `name` (in [`scope`]) as stored.
    pub fn target_group(&self, name: &str) -> &TargetGroupRecord {
        self.state
            .elb
            .target_groups
            .get(&(scope(), name.to_owned()))
            .expect("target group")
    }

    /// The ARNs of the tasks whose target in the group `name` is draining now.
    pub fn draining_in(&self, name: &str) -> Vec<String> {
        let now_ms = (self.now * 1000.0) as u64;
        self.target_group(name)
            .targets
            .iter()
            .filter(|x| x.is_draining(now_ms))
            .filter_map(|x| x.registered_by.clone())
            .collect()
    }

    /// The first load balancer's ARN.
    pub fn first_load_balancer_arn(&self) -> String {
        self.state
            .elb
            .load_balancers
            .values()
            .next()
            .expect("a load balancer")
            .arn()
    }

    /// A simulated data plane: every active target of every group that is not healthy
    /// yet is found healthy now.
    pub fn mark_targets_healthy(&mut self) {
        let now_ms = (self.now * 1000.0) as u64;
        let groups: Vec<TargetGroupRecord> =
            self.state.elb.target_groups.values().cloned().collect();
        for mut g in groups {
            let mut changed = false;
            for t in g.targets.iter_mut().filter(|t| t.is_active()) {
                if t.health.as_ref().map(|x| x.healthy) != Some(true) {
                    t.health = Some(ObservedHealth {
                        healthy: true,
                        reason: None,
                        description: None,
                        since_ms: now_ms,
                    });
                    changed = true;
                }
            }
            if changed {
                self.apply(&[Change::Put(Record::TargetGroup(g))]);
            }
        }
    }

    /// The groups (ARN, weight) of the first forward action of the rule `rule_arn` (a
    /// listener's default rule or another).
    pub fn forward_groups(&self, rule_arn: &str) -> Vec<(String, Option<u32>)> {
        let actions = match elbv2::rule_by_arn(&self.state, &scope(), rule_arn).expect("rule") {
            RuleRef::Rule(r, _) => r.actions.clone(),
            RuleRef::Default(l) => l.default_actions.clone(),
        };
        actions
            .iter()
            .find_map(|a| match &a.kind {
                ActionKind::Forward { target_groups, .. } => Some(
                    target_groups
                        .iter()
                        .map(|g| (g.arn.clone(), g.weight))
                        .collect(),
                ),
                ActionKind::FixedResponse { .. } => None,
            })
            .expect("a forward action")
    }

    /// The group the rule `rule_arn` sends (most of) its traffic to: the heaviest of its
    /// forward action (a weight not given counts as 1).
    pub fn rule_target(&self, rule_arn: &str) -> String {
        self.forward_groups(rule_arn)
            .into_iter()
            .max_by_key(|(_, w)| w.unwrap_or(1))
            .map(|(arn, _)| arn)
            .expect("a group")
    }
}
