//! `deploymentConfiguration.alarms`: a CloudWatch alarm that goes into ALARM during a
//! rollout fails it and, with `rollback`, rolls the service back as the circuit breaker
//! does; disabled alarms do nothing; an alarm already in ALARM before the deployment
//! does not count. The alarms are real ones (PutMetricAlarm, SetAlarmState,
//! PutMetricData on the same state), the service controller is driven through the
//! shared [`service_harness`].

mod service_harness;

use controlplane::controllers::services_touched;
use controlplane::ops::cloudwatch::{self, CwWritten};
use controlplane::state::{Change, ServiceDeploymentRecord, State};
use controlplane::{Ctx, EcsError};
use model::wire::{self, DeploymentRolloutState as Rollout, ServiceDeploymentStatus};
use model::wire_cw::{SetAlarmStateRequest, StateValue};
use serde_json::{Value, json};
use testkit::ecs::req;

use service_harness::{Harness, stable};

const ALARM: &str = "web-5xx";

/// Runs a CloudWatch write on the harness's state.
fn cw<Req>(h: &mut Harness, op: fn(&State, &mut Ctx, Req) -> CwWritten<()>, r: Req) -> Vec<Change> {
    let mut ctx = h.ctx();
    let (_, changes) = op(&h.state, &mut ctx, r).unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    h.apply(&changes);
    changes
}

fn put_alarm(h: &mut Harness) {
    cw(
        h,
        cloudwatch::put_metric_alarm,
        testkit::cw::errors_alarm(ALARM),
    );
}

fn set_state(h: &mut Harness, state: StateValue) -> Vec<Change> {
    cw(
        h,
        cloudwatch::set_alarm_state,
        SetAlarmStateRequest {
            alarm_name: Some(ALARM.into()),
            state_value: Some(state),
            state_reason: Some("test".into()),
            state_reason_data: None,
        },
    )
}

/// A service `web` of 2 tasks with the alarm named in its deployment configuration,
/// settled on `web:1`; returns (its task definition, the new revision's) after an
/// UpdateService to `web:2` that is still rolling out (its tasks RUNNING, not yet
/// healthy long enough to complete).
fn rolling_out(alarms: Value) -> (Harness, String, String) {
    let mut h = Harness::new(&["a", "b"]);
    put_alarm(&mut h);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"alarms": alarms}}));
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let next = h.register("web", 64);
    h.update_service(json!({"taskDefinition": next}));
    for _ in 0..5 {
        h.step();
    }
    let p = primary(&h);
    assert_eq!(p.task_definition.as_deref(), Some(next.as_str()));
    assert_eq!(p.rollout_state, Some(Rollout::InProgress));
    (h, good, next)
}

fn primary(h: &Harness) -> wire::Deployment {
    h.service().deployments.unwrap().remove(0)
}

/// The service deployment whose target is deployment `id`.
fn service_deployment(h: &Harness, id: &str) -> ServiceDeploymentRecord {
    h.state
        .service_history
        .deployments_of(&h.key())
        .find(|d| d.target == id)
        .cloned()
        .expect("service deployment")
}

#[test]
fn an_alarm_during_the_rollout_fails_it_and_rolls_back() {
    let (mut h, good, next) =
        rolling_out(json!({"alarmNames": [ALARM], "enable": true, "rollback": true}));
    let failed_id = primary(&h).id.unwrap();
    let sd = service_deployment(&h, &failed_id);
    let alarms = sd.deployment.alarms.clone().expect("alarms shown");
    assert_eq!(
        alarms.status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::Monitoring)
    );
    assert_eq!(alarms.alarm_names, Some(vec![ALARM.to_owned()]));
    let changes = set_state(&mut h, StateValue::Alarm);
    // The change feed wakes the service whose deployment watches the alarm.
    assert!(
        changes
            .iter()
            .any(|c| services_touched(&h.state, c).contains(&h.key())),
        "the alarm's change must wake the service"
    );
    h.step();
    let s = h.service();
    let failed = s
        .deployments
        .as_ref()
        .unwrap()
        .iter()
        .find(|d| d.id.as_deref() == Some(failed_id.as_str()))
        .expect("the failed deployment is still listed")
        .clone();
    assert_eq!(failed.rollout_state, Some(Rollout::Failed));
    assert_eq!(
        failed.rollout_state_reason.as_deref(),
        Some("ECS deployment failed: CloudWatch alarm web-5xx in ALARM.")
    );
    assert_eq!(s.task_definition.as_deref(), Some(good.as_str()));
    let events = h.events();
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "(service web) (deployment {failed_id}) deployment failed: alarm(s) web-5xx in ALARM"
        ))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.contains("rolling back")),
        "{events:#?}"
    );
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s), "{s:#?}");
    assert_eq!(s.task_definition.as_deref(), Some(good.as_str()));
    assert_eq!(h.running_of(&next), 0);
    assert_eq!(h.running_of(&good), 2);
    let sd = service_deployment(&h, &failed_id).deployment;
    assert_eq!(sd.status, Some(ServiceDeploymentStatus::RollbackSuccessful));
    let alarms = sd.alarms.expect("alarms");
    assert_eq!(
        alarms.status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::Triggered)
    );
    assert_eq!(alarms.triggered_alarm_names, Some(vec![ALARM.to_owned()]));
    // The circuit breaker did not trip: only the alarms did.
    assert_ne!(
        sd.deployment_circuit_breaker.unwrap().status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::Triggered)
    );
    assert!(sd.rollback.unwrap().reason.unwrap().contains("web-5xx"));
}

#[test]
fn without_rollback_the_deployment_is_failed_and_stays_failed() {
    let (mut h, good, next) =
        rolling_out(json!({"alarmNames": [ALARM, "absent"], "enable": true, "rollback": false}));
    let failed_id = primary(&h).id.unwrap();
    set_state(&mut h, StateValue::Alarm);
    h.settle(|_| {});
    let p = primary(&h);
    assert_eq!(p.id.as_deref(), Some(failed_id.as_str()));
    assert_eq!(p.rollout_state, Some(Rollout::Failed));
    assert_eq!(h.service().task_definition.as_deref(), Some(next.as_str()));
    assert_ne!(good, next);
    let sd = service_deployment(&h, &failed_id).deployment;
    assert_eq!(sd.status, Some(ServiceDeploymentStatus::Stopped));
    let alarms = sd.alarms.unwrap();
    assert_eq!(
        alarms.status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::Triggered)
    );
    // An alarm name with no alarm never triggers.
    assert_eq!(alarms.triggered_alarm_names, Some(vec![ALARM.to_owned()]));
}

#[test]
fn disabled_alarms_do_nothing() {
    let (mut h, _, next) =
        rolling_out(json!({"alarmNames": [ALARM], "enable": false, "rollback": true}));
    let id = primary(&h).id.unwrap();
    set_state(&mut h, StateValue::Alarm);
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s), "{s:#?}");
    assert_eq!(s.task_definition.as_deref(), Some(next.as_str()));
    assert_eq!(primary(&h).rollout_state, Some(Rollout::Completed));
    let sd = service_deployment(&h, &id).deployment;
    assert_eq!(sd.status, Some(ServiceDeploymentStatus::Successful));
    assert_eq!(
        sd.alarms.unwrap().status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::Disabled)
    );
}

#[test]
fn an_alarm_already_in_alarm_before_the_deployment_does_not_fail_it_until_it_goes_again() {
    let mut h = Harness::new(&["a", "b"]);
    put_alarm(&mut h);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"alarms": {"alarmNames": [ALARM], "enable": true, "rollback": true}}}));
    h.settle(|_| {});
    // A standing problem, before the deployment: its datapoints breach.
    let breaching = testkit::cw::errors_datum(9.0, None);
    cw(&mut h, cloudwatch::put_metric_data, breaching);
    let a = h
        .state
        .discovery
        .cloudwatch
        .alarm(&testkit::ecs::scope(), ALARM)
        .unwrap();
    assert_eq!(a.state(), StateValue::Alarm);
    h.now += 1.0;
    let next = h.register("web", 64);
    h.update_service(json!({"taskDefinition": next}));
    for _ in 0..5 {
        h.step();
    }
    assert_eq!(primary(&h).rollout_state, Some(Rollout::InProgress));
    // It recovers and goes into ALARM again while the deployment rolls out: that counts.
    set_state(&mut h, StateValue::Ok);
    h.step();
    assert_eq!(primary(&h).rollout_state, Some(Rollout::InProgress));
    h.now += 1.0;
    set_state(&mut h, StateValue::Alarm);
    h.step();
    let s = h.service();
    assert_ne!(
        s.task_definition.as_deref(),
        Some(next.as_str()),
        "rolled back"
    );
}

#[test]
fn an_alarm_in_alarm_before_the_deployment_lets_it_complete() {
    let mut h = Harness::new(&["a", "b"]);
    put_alarm(&mut h);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"alarms": {"alarmNames": [ALARM], "enable": true, "rollback": true}}}));
    h.settle(|_| {});
    set_state(&mut h, StateValue::Alarm);
    h.now += 1.0;
    let next = h.register("web", 64);
    h.update_service(json!({"taskDefinition": next}));
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s), "{s:#?}");
    assert_eq!(s.task_definition.as_deref(), Some(next.as_str()));
    let p = primary(&h);
    assert_eq!(p.rollout_state, Some(Rollout::Completed));
    // The alarms watched it through, without triggering.
    let sd = service_deployment(&h, p.id.as_deref().unwrap()).deployment;
    let alarms = sd.alarms.unwrap();
    assert_eq!(
        alarms.status,
        Some(wire::ServiceDeploymentRollbackMonitorsStatus::MonitoringComplete)
    );
    assert_eq!(alarms.triggered_alarm_names, None);
}

fn refused(h: &mut Harness, alarms: Value) -> EcsError {
    let body = json!({"cluster": "c", "serviceName": "other", "taskDefinition": "web",
        "desiredCount": 1, "deploymentConfiguration": {"alarms": alarms}});
    h.try_write(
        controlplane::ops::services::create,
        req::<wire::CreateServiceRequest>(body),
    )
    .map(|_: wire::CreateServiceResponse| ())
    .unwrap_err()
}

#[test]
fn alarm_settings_are_validated_as_ecs_does() {
    let mut h = Harness::new(&["a"]);
    let eleven: Vec<String> = (0..11).map(|i| format!("a{i}")).collect();
    for bad in [
        json!({"alarmNames": eleven, "enable": true, "rollback": true}),
        json!({"alarmNames": [ALARM], "rollback": true}),
        json!({"alarmNames": [ALARM], "enable": true}),
        json!({"enable": true, "rollback": true}),
        json!({"alarmNames": [], "enable": true, "rollback": true}),
        json!({"alarmNames": ["x".repeat(256)], "enable": true, "rollback": true}),
    ] {
        let e = refused(&mut h, bad.clone());
        assert_eq!(e.code(), "InvalidParameterException", "{bad}: {e}");
    }
    // Names need not exist yet; ten are fine.
    let ten: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    let body = json!({"cluster": "c", "serviceName": "ok", "taskDefinition": "web",
        "desiredCount": 1, "deploymentConfiguration":
            {"alarms": {"alarmNames": ten, "enable": true, "rollback": false}}});
    let r: wire::CreateServiceResponse = h.write(controlplane::ops::services::create, req(body));
    let alarms = r
        .service
        .unwrap()
        .deployment_configuration
        .unwrap()
        .alarms
        .unwrap();
    assert_eq!(alarms.alarm_names.unwrap().len(), 10);
}
