//! Unit tests of the [`State`]: applying changes, the derived indexes kept in step with
//! the records, and publishing that shares records with the working state.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use model::wire;

fn cluster(scope: &Scope, name: &str) -> Record {
    Record::Cluster(ClusterRecord {
        scope: scope.clone(),
        name: name.into(),
        cluster: wire::Cluster {
            cluster_name: Some(name.into()),
            ..Default::default()
        },
        updater: None,
    })
}

#[test]
fn regions_are_separate() {
    let mut s = State::default();
    let eu = Scope::new("1", "eu-west-1");
    let us = Scope::new("1", "us-east-1");
    s.apply(&Change::Put(cluster(&eu, "a")));
    assert!(s.cluster(&eu, "a").is_some());
    assert!(s.cluster(&us, "a").is_none());
    s.apply(&Change::Delete(cluster(&eu, "a")));
    assert!(s.cluster(&eu, "a").is_none());
}

#[test]
fn store_keys_are_distinct_per_kind_and_scope() {
    let a = cluster(&Scope::new("1", "r"), "x").store_key();
    let b = cluster(&Scope::new("1", "s"), "x").store_key();
    assert_ne!(a, b);
    assert!(a.starts_with("cluster|"));
}

fn task(sc: &Scope, id: &str, status: &str, cpu: i64, port: u16) -> Record {
    Record::Task(TaskRecord {
        task: wire::Task {
            last_status: Some(status.into()),
            ..Default::default()
        },
        reservation: Reservation {
            cpu,
            memory: 2 * cpu,
            ports_tcp: vec![port],
            ports_udp: vec![],
        },
        instance_id: Some("i1".into()),
        ..TaskRecord::bare(sc.clone(), "c", id)
    })
}

#[test]
fn updating_a_task_keeps_it_in_the_instance_index() {
    let mut s = State::default();
    let sc = Scope::new("1", "r");
    s.apply(&Change::Put(task(&sc, "a", "PENDING", 100, 8080)));
    s.apply(&Change::Put(task(&sc, "a", "RUNNING", 100, 8080)));
    let u = s.usage(&sc, "c", "i1").unwrap();
    assert_eq!(u.tasks.len(), 1, "the task is still on its instance");
    assert_eq!(u.groups.values().sum::<u32>(), 1);
    assert_eq!(
        (u.cpu, u.running, u.pending, u.ports_tcp.clone()),
        (100, 1, 0, vec![8080])
    );
}

#[test]
fn derived_usage_follows_task_changes() {
    let mut s = State::default();
    let sc = Scope::new("1", "r");
    s.apply(&Change::Put(task(&sc, "a", "PENDING", 100, 8080)));
    s.apply(&Change::Put(task(&sc, "b", "RUNNING", 50, 8081)));
    let u = s.usage(&sc, "c", "i1").unwrap();
    assert_eq!((u.cpu, u.memory, u.running, u.pending), (150, 300, 1, 1));
    assert_eq!(s.counts(&sc, "c").pending, 1);
    s.apply(&Change::Put(task(&sc, "a", "RUNNING", 100, 8080)));
    assert_eq!(s.usage(&sc, "c", "i1").unwrap().running, 2);
    assert_eq!(s.counts(&sc, "c").running, 2);
    s.apply(&Change::Put(task(&sc, "a", "STOPPED", 100, 8080)));
    let u = s.usage(&sc, "c", "i1").unwrap();
    assert_eq!((u.cpu, u.ports_tcp.clone()), (50, vec![8081]));
    s.apply(&Change::Delete(task(&sc, "b", "RUNNING", 50, 8081)));
    assert!(s.usage(&sc, "c", "i1").is_none());
    assert_eq!(s.counts(&sc, "c"), ClusterCounts::default());
}

/// Publishing (the engine applies each change to its working state, then shares it
/// into the published one) copies the changed task only: every other task is the
/// same allocation in both states, and the changed one is equal in both.
#[test]
fn publishing_shares_unchanged_tasks_with_the_working_state() {
    let sc = Scope::new("1", "r");
    let (mut working, mut published) = (State::default(), State::default());
    let publish = |working: &mut State, published: &mut State, changes: &[Change]| {
        for c in changes {
            working.apply(c);
        }
        for c in changes {
            published.apply_shared(c, working);
        }
    };
    let all: Vec<Change> = (0..100)
        .map(|i| Change::Put(task(&sc, &format!("t{i:03}"), "PENDING", 1, 0)))
        .collect();
    publish(&mut working, &mut published, &all);
    let key = |id: &str| MemberKey::new(&sc, "c", id);
    for t in working.tasks.values() {
        let k = t.key();
        assert!(Arc::ptr_eq(t, &published.tasks[&k]), "{k:?} is held once");
    }
    let untouched = published.tasks[&key("t007")].clone();
    // A batch that puts one task twice (the later edit wins) and another once.
    let changes = [
        Change::Put(task(&sc, "t042", "RUNNING", 1, 0)),
        Change::Put(task(&sc, "t042", "STOPPED", 1, 0)),
        Change::Put(task(&sc, "t043", "RUNNING", 1, 0)),
    ];
    publish(&mut working, &mut published, &changes);
    assert!(Arc::ptr_eq(&published.tasks[&key("t007")], &untouched));
    assert!(Arc::ptr_eq(&working.tasks[&key("t007")], &untouched));
    // Owners: `untouched` and, in each state, the `tasks` map, ListTasks' two sets
    // (every task; its instance) and its instance's usage: the indexes share the
    // record too, and no deep copy was made.
    assert_eq!(Arc::strong_count(&untouched), 1 + 2 * 4);
    for s in [&working, &published] {
        let lists = s.derived.task_lists.values().flat_map(BTreeMap::values);
        let indexed = lists.flatten();
        for t in indexed.chain(s.derived.usage.values().flat_map(|u| &u.tasks)) {
            assert!(Arc::ptr_eq(&t.0, &s.tasks[&key(t.id())]), "{t:?}");
        }
    }
    for id in ["t042", "t043"] {
        assert_eq!(working.tasks[&key(id)], published.tasks[&key(id)]);
        assert!(Arc::ptr_eq(
            &working.tasks[&key(id)],
            &published.tasks[&key(id)]
        ));
    }
    assert_eq!(
        published.tasks[&key("t042")].task.last_status.as_deref(),
        Some("STOPPED")
    );
    assert_eq!(working.derived.usage, published.derived.usage);
    assert_eq!(working.derived.counts, published.derived.counts);
    assert_eq!(working.derived.task_lists, published.derived.task_lists);
}

/// Publishing shares container instances and services with the working state as it
/// shares tasks: one allocation each, and an edited one is equal in both.
#[test]
fn publishing_shares_instances_and_services() {
    let sc = Scope::new("1", "r");
    let (mut working, mut published) = (State::default(), State::default());
    let instance = |id: &str, status: &str| {
        Record::Instance(InstanceRecord {
            scope: sc.clone(),
            cluster: "c".into(),
            id: id.into(),
            instance: wire::ContainerInstance {
                status: Some(status.into()),
                ..Default::default()
            },
            last_heartbeat: 0.0,
        })
    };
    let service = |name: &str, status: &str| {
        Record::Service(
            serde_json::from_value(serde_json::json!({
                "scope": sc, "cluster": "c", "name": name,
                "service": {"status": status}
            }))
            .unwrap(),
        )
    };
    let changes = [
        Change::Put(instance("i1", "ACTIVE")),
        Change::Put(instance("i2", "ACTIVE")),
        Change::Put(service("a", "ACTIVE")),
        Change::Put(service("b", "ACTIVE")),
        // Edited twice in one batch: the later edit wins, shared all the same.
        Change::Put(instance("i2", "DRAINING")),
        Change::Put(service("b", "DRAINING")),
    ];
    for c in &changes {
        working.apply(c);
    }
    for c in &changes {
        published.apply_shared(c, &working);
    }
    for k in working.instances.keys() {
        let (w, p) = (
            working.instances.get_shared(k),
            published.instances.get_shared(k),
        );
        assert!(Arc::ptr_eq(w.unwrap(), p.unwrap()), "{k:?} is held once");
    }
    for k in working.services.keys() {
        let (w, p) = (
            working.services.get_shared(k),
            published.services.get_shared(k),
        );
        assert!(Arc::ptr_eq(w.unwrap(), p.unwrap()), "{k:?} is held once");
    }
    let i2 = MemberKey::new(&sc, "c", "i2");
    assert_eq!(
        published.instances[&i2].instance.status.as_deref(),
        Some("DRAINING")
    );
    assert_eq!(working.instances, published.instances);
    assert_eq!(working.services, published.services);
    assert_eq!(
        working.derived.instances_by_status,
        published.derived.instances_by_status
    );
    assert_eq!(
        working.derived.listed_services,
        published.derived.listed_services
    );
    assert_eq!(published.instances_in(&sc, "c").count(), 2);
    assert_eq!(published.services_in(&sc, "c").count(), 2);
}

/// An instance's digest (kept in [`Usage::digest`]) depends on the assigned tasks
/// alone: not on the order they came in, and back to nothing when they are gone.
#[test]
fn the_instance_digest_is_kept_incrementally() {
    let sc = Scope::new("1", "r");
    let (mut a, mut b) = (State::default(), State::default());
    for id in ["x", "y", "z"] {
        a.apply(&Change::Put(task(&sc, id, "PENDING", 1, 0)));
    }
    for id in ["z", "x", "y"] {
        b.apply(&Change::Put(task(&sc, id, "PENDING", 1, 0)));
    }
    let digest = |s: &State| s.usage(&sc, "c", "i1").map(|u| u.digest);
    assert_eq!(digest(&a), digest(&b));
    let before = digest(&a);
    let mut t = task(&sc, "y", "PENDING", 1, 0);
    if let Record::Task(t) = &mut t {
        t.task.desired_status = Some("STOPPED".into());
    }
    a.apply(&Change::Put(t));
    assert_ne!(digest(&a), before, "a desired status the agent must act on");
    for id in ["x", "y", "z"] {
        a.apply(&Change::Put(task(&sc, id, "STOPPED", 1, 0)));
    }
    assert_eq!(digest(&a), None, "no task holds anything there");
}

#[test]
fn cluster_ranges_do_not_leak_into_neighbours() {
    let mut s = State::default();
    let sc = Scope::new("1", "r");
    for (cluster, id) in [("a", "1"), ("ab", "2"), ("a", "3"), ("b", "4")] {
        s.apply(&Change::Put(Record::Task(TaskRecord::bare(
            sc.clone(),
            cluster,
            id,
        ))));
    }
    let ids: Vec<_> = s.tasks_in(&sc, "a").map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["1", "3"]);
}

/// The derived indexes of `s` equal those rebuilt from its records alone (the
/// INACTIVE transition numbers aside: a rebuild numbers them anew).
fn assert_indexes_match(s: &State) {
    let mut fresh = State::default();
    let records = s
        .clusters
        .values()
        .map(|r| Record::Cluster(r.clone()))
        .chain(
            s.task_definitions
                .values()
                .map(|r| Record::TaskDefinition(r.clone())),
        )
        .chain(s.instances.values().map(|r| Record::Instance(r.clone())))
        .chain(s.tasks.values().map(|r| Record::Task(TaskRecord::clone(r))))
        .chain(s.services.values().map(|r| Record::Service(r.clone())));
    for r in records {
        fresh.apply(&Change::Put(r));
    }
    let (a, b) = (&s.derived, &fresh.derived);
    assert_eq!(a.usage, b.usage);
    assert_eq!(a.counts, b.counts);
    assert_eq!(a.task_lists, b.task_lists);
    assert_eq!(a.client_tokens, b.client_tokens);
    assert_eq!(a.definition_refs, b.definition_refs);
    assert_eq!(a.stopped, b.stopped);
    assert_eq!(
        a.inactive.keys().collect::<Vec<_>>(),
        b.inactive.keys().collect::<Vec<_>>()
    );
    assert_eq!(a.deleting, b.deleting);
    assert_eq!(a.active_clusters, b.active_clusters);
    assert_eq!(a.listed_services, b.listed_services);
    assert_eq!(a.instances_by_status, b.instances_by_status);
    assert_eq!(a.definitions_by_status, b.definitions_by_status);
    assert_eq!(a.families, b.families);
    assert_eq!(a.families_by_status, b.families_by_status);
    for cluster in ["a", "b", "c"] {
        for group in ["service:x", "family:f", ""] {
            let sc = Scope::new("1", "r");
            let scanned: Vec<&str> = s
                .tasks_in(&sc, cluster)
                .filter(|t| t.task.group.as_deref() == Some(group))
                .map(|t| t.id.as_str())
                .collect();
            let indexed: Vec<&str> = s
                .tasks_in_group(&sc, cluster, group)
                .map(|t| t.id.as_str())
                .collect();
            assert_eq!(indexed, scanned, "group {group:?} of {cluster}");
        }
    }
}

/// Thousands of random puts and deletes of every kind of record: after each step
/// the incrementally kept indexes equal a rebuild from the records.
#[test]
fn derived_indexes_stay_equal_to_a_rebuild() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let sc = Scope::new("1", "r");
    let mut s = State::default();
    let pick =
        |rng: &mut rand::rngs::StdRng, xs: &[&str]| xs[rng.random_range(0..xs.len())].to_owned();
    for step in 0..4000 {
        let delete = rng.random_range(0..4) == 0;
        let record = match rng.random_range(0..5) {
            0 => Record::Cluster(ClusterRecord {
                scope: sc.clone(),
                name: pick(&mut rng, &["a", "b", "c"]),
                cluster: wire::Cluster {
                    status: Some(pick(&mut rng, &["ACTIVE", "INACTIVE"])),
                    ..Default::default()
                },
                updater: None,
            }),
            1 => Record::TaskDefinition(TaskDefinitionRecord {
                scope: sc.clone(),
                family: pick(&mut rng, &["f", "g"]),
                revision: rng.random_range(1..4),
                definition: wire::TaskDefinition {
                    status: Some(
                        [
                            wire::TaskDefinitionStatus::Active,
                            wire::TaskDefinitionStatus::Inactive,
                            wire::TaskDefinitionStatus::DeleteInProgress,
                        ][rng.random_range(0..3)],
                    ),
                    ..Default::default()
                },
                tags: vec![],
            }),
            2 => Record::Instance(InstanceRecord {
                scope: sc.clone(),
                cluster: pick(&mut rng, &["a", "b"]),
                id: pick(&mut rng, &["i1", "i2", "i3"]),
                instance: wire::ContainerInstance {
                    status: Some(pick(&mut rng, &["ACTIVE", "DRAINING", "INACTIVE"])),
                    ..Default::default()
                },
                last_heartbeat: 0.0,
            }),
            3 => {
                let stopped = rng.random_range(0..2) == 0;
                Record::Task(TaskRecord {
                    scope: sc.clone(),
                    cluster: pick(&mut rng, &["a", "b"]).into(),
                    id: pick(&mut rng, &["t1", "t2", "t3", "t4", "t5"]),
                    task: wire::Task {
                        last_status: Some(if stopped { "STOPPED" } else { "RUNNING" }.into()),
                        desired_status: Some(pick(&mut rng, &["RUNNING", "STOPPED"]).into()),
                        group: Some(pick(&mut rng, &["service:x", "family:f"]).into()),
                        started_by: (rng.random_range(0..2) == 0).then(|| "ci".into()),
                        task_definition_arn: Some(
                            format!(
                                "arn:aws:ecs:r:1:task-definition/{}:1",
                                pick(&mut rng, &["f", "g"])
                            )
                            .into(),
                        ),
                        stopped_at: stopped.then_some(f64::from(rng.random_range(0..100))),
                        ..Default::default()
                    },
                    reservation: Reservation {
                        cpu: 10,
                        memory: 10,
                        ports_tcp: vec![],
                        ports_udp: vec![],
                    },
                    instance_id: Some(pick(&mut rng, &["i1", "i2"]).into()),
                    client_token: (rng.random_range(0..2) == 0)
                        .then(|| pick(&mut rng, &["k1", "k2"])),
                    client_token_fingerprint: None,
                    agent_acknowledged: true,
                    pending_stop: None,
                    pool: None,
                })
            }
            _ => Record::Service(
                serde_json::from_value(serde_json::json!({
                    "scope": sc,
                    "cluster": pick(&mut rng, &["a", "b"]),
                    "name": pick(&mut rng, &["x", "y"]),
                    "service": {"status": pick(&mut rng, &["ACTIVE", "DRAINING", "INACTIVE"])}
                }))
                .unwrap(),
            ),
        };
        s.apply(&if delete {
            Change::Delete(record)
        } else {
            Change::Put(record)
        });
        if step % 50 == 0 {
            assert_indexes_match(&s);
        }
    }
    assert_indexes_match(&s);
    assert!(!s.tasks.is_empty() && !s.derived.stopped.is_empty());
}
