//! Every listing's page costs the same wherever it starts: the records a page visits
//! are counted (the [`counted`](super::counted) hook) and must stay near the page size
//! on the last page as on the first, whatever the filters.

use model::wire;

use super::take_visited;
use crate::ops::{attributes, clusters, instances, services, task_definitions, tasks};
use crate::state::{
    ClusterRecord, InstanceRecord, MetaRecord, Record, Scope, ServiceRecord, State,
    TaskDefinitionRecord, TaskRecord,
};
use crate::{Change, EcsError};

const NOW: f64 = 1_700_000_000.0;
const PAGE: i32 = 100;

fn scope() -> Scope {
    Scope::new("000000000000", "eu-west-1")
}

fn state() -> State {
    let mut s = State::default();
    s.apply(&Change::Put(Record::Meta(MetaRecord {
        paging_secret: "00ff".into(),
    })));
    s
}

fn cluster(s: &mut State, sc: &Scope, name: &str, status: &str) {
    s.apply(&Change::Put(Record::Cluster(ClusterRecord {
        scope: sc.clone(),
        name: name.into(),
        cluster: wire::Cluster {
            cluster_arn: Some(sc.arn(model::arn::ResourceType::Cluster, name)),
            cluster_name: Some(name.into()),
            status: Some(status.into()),
            ..Default::default()
        },
        updater: None,
    })));
}

/// A List request body for cluster `c`: `filters`, a page of `PAGE`, and `token`.
fn cluster_page(filters: &serde_json::Value, token: Option<String>) -> serde_json::Value {
    let mut body = filters.clone();
    body["cluster"] = "c".into();
    body["maxResults"] = PAGE.into();
    if let Some(t) = token {
        body["nextToken"] = t.into();
    }
    body
}

/// Walks every page of a listing; returns the items and the records each page visited.
fn walk<T>(
    mut page: impl FnMut(Option<String>) -> Result<(Vec<T>, Option<String>), EcsError>,
) -> (Vec<T>, Vec<u64>) {
    let (mut items, mut visits, mut token) = (Vec::new(), Vec::new(), None);
    loop {
        take_visited();
        let (got, next) = page(token.take()).expect("page");
        visits.push(take_visited());
        items.extend(got);
        match next {
            Some(t) => token = Some(t),
            None => return (items, visits),
        }
    }
}

/// Walks every page of ListClusters in `sc`, [`PAGE`] a page.
fn walk_clusters(s: &State, sc: &Scope) -> (Vec<String>, Vec<u64>) {
    walk(|token| {
        let r = clusters::list_clusters(
            s,
            sc,
            NOW,
            wire::ListClustersRequest {
                max_results: Some(PAGE),
                next_token: token,
            },
        )?;
        Ok((r.cluster_arns.unwrap_or_default(), r.next_token))
    })
}

/// Each page visits at most `bound` records (a page and the look-ahead that decides
/// whether there is a next one), on the last page as on the first.
fn assert_flat(what: &str, visits: &[u64], bound: u64) {
    let worst = visits.iter().copied().max().unwrap_or(0);
    assert!(
        worst <= bound,
        "{what}: a page visited up to {worst} records (bound {bound}); per page: {visits:?}"
    );
}

#[test]
fn list_clusters_pages_cost_the_same_at_any_offset() {
    let mut s = state();
    let sc = scope();
    for i in 0..3000 {
        cluster(&mut s, &sc, &format!("c{i:05}"), "ACTIVE");
        // Deleted clusters in between are not listed and must not be walked.
        cluster(&mut s, &sc, &format!("c{i:05}-gone"), "INACTIVE");
    }
    cluster(
        &mut s,
        &Scope::new("000000000000", "us-east-1"),
        "other",
        "ACTIVE",
    );
    let (arns, visits) = walk_clusters(&s, &sc);
    assert_eq!(arns.len(), 3000);
    assert!(
        arns.windows(2).all(|w| w[0] < w[1]),
        "in name order, once each"
    );
    assert_flat("ListClusters", &visits, PAGE as u64 + 2);
}

/// `cargo test --release -p controlplane --lib walk_100k_clusters -- --ignored
/// --nocapture`: the time to walk 100,000 clusters 100 a page (docs/performance.md).
#[test]
#[ignore = "a measurement, not a check"]
fn walk_100k_clusters() {
    let mut s = state();
    let sc = scope();
    for i in 0..100_000 {
        cluster(&mut s, &sc, &format!("cluster-{i:06}"), "ACTIVE");
    }
    let started = std::time::Instant::now();
    let (arns, visits) = walk_clusters(&s, &sc);
    let took = started.elapsed();
    assert_eq!(arns.len(), 100_000);
    println!(
        "walked {} clusters in {} pages: {:.3} s ({:.1} µs a page; records visited: first page {}, last page {}, total {})",
        arns.len(),
        visits.len(),
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / visits.len() as f64,
        visits.first().unwrap_or(&0),
        visits.last().unwrap_or(&0),
        visits.iter().sum::<u64>()
    );
}

struct T<'a> {
    id: String,
    family: &'a str,
    desired: &'a str,
    last: &'a str,
    group: String,
    started_by: Option<&'a str>,
    instance: &'a str,
}

fn task(s: &mut State, sc: &Scope, cluster: &str, t: &T<'_>) {
    s.apply(&Change::Put(Record::Task(TaskRecord {
        task: wire::Task {
            task_arn: Some(
                sc.arn(
                    model::arn::ResourceType::Task,
                    format!("{cluster}/{}", t.id),
                )
                .into(),
            ),
            task_definition_arn: Some(
                sc.arn(
                    model::arn::ResourceType::TaskDefinition,
                    format!("{}:1", t.family),
                )
                .into(),
            ),
            desired_status: Some(t.desired.into()),
            last_status: Some(t.last.into()),
            group: Some(t.group.as_str().into()),
            started_by: t.started_by.map(Into::into),
            launch_type: Some(wire::LaunchType::Ec2),
            stopped_at: (t.last == "STOPPED").then_some(NOW),
            ..Default::default()
        },
        instance_id: Some(t.instance.into()),
        agent_acknowledged: true,
        ..TaskRecord::bare(sc.clone(), cluster, &t.id)
    })));
}

#[test]
fn list_tasks_pages_cost_the_same_at_any_offset_for_every_filter() {
    let mut s = state();
    let sc = scope();
    cluster(&mut s, &sc, "c", "ACTIVE");
    cluster(&mut s, &sc, "d", "ACTIVE");
    let mut all = Vec::new();
    for i in 0..6000 {
        let family = ["web", "db", "batch"][i % 3];
        let stopped = i % 2 == 1;
        let t = T {
            id: format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            family,
            desired: if stopped { "STOPPED" } else { "RUNNING" },
            last: if stopped { "STOPPED" } else { "RUNNING" },
            group: if i % 5 == 0 {
                "service:api".into()
            } else {
                format!("family:{family}")
            },
            started_by: (i % 7 == 0).then_some("ci"),
            instance: ["i1", "i2", "i3", "i4"][i % 4],
        };
        task(&mut s, &sc, if i % 10 == 9 { "d" } else { "c" }, &t);
        all.push((if i % 10 == 9 { "d" } else { "c" }, t));
    }
    type Pred = Box<dyn Fn(&T<'_>) -> bool>;
    let cases: Vec<(serde_json::Value, Pred)> = vec![
        (serde_json::json!({}), Box::new(|t| t.desired == "RUNNING")),
        (
            serde_json::json!({"desiredStatus": "STOPPED"}),
            Box::new(|t| t.desired == "STOPPED"),
        ),
        (
            serde_json::json!({"family": "db"}),
            Box::new(|t| t.desired == "RUNNING" && t.family == "db"),
        ),
        (
            serde_json::json!({"serviceName": "api", "desiredStatus": "STOPPED"}),
            Box::new(|t| t.desired == "STOPPED" && t.group == "service:api"),
        ),
        (
            serde_json::json!({"containerInstance": "i3"}),
            Box::new(|t| t.desired == "RUNNING" && t.instance == "i3"),
        ),
        (
            serde_json::json!({"startedBy": "ci", "desiredStatus": "STOPPED"}),
            Box::new(|t| t.desired == "STOPPED" && t.started_by == Some("ci")),
        ),
        (
            serde_json::json!({"family": "web", "containerInstance": "i1", "launchType": "EC2"}),
            Box::new(|t| t.desired == "RUNNING" && t.family == "web" && t.instance == "i1"),
        ),
    ];
    for (filters, wanted) in cases {
        let mut expected: Vec<String> = all
            .iter()
            .filter(|(c, t)| *c == "c" && wanted(t))
            .map(|(c, t)| sc.arn(model::arn::ResourceType::Task, format!("{c}/{}", t.id)))
            .collect();
        expected.sort();
        let (arns, visits) = walk(|token| {
            let body = cluster_page(&filters, token);
            let r = tasks::list(&s, &sc, NOW, serde_json::from_value(body).unwrap())?;
            Ok((r.task_arns.unwrap_or_default(), r.next_token))
        });
        assert_eq!(arns, expected, "ListTasks {filters}");
        // One filter of several may have to skip the tasks the others leave out,
        // but never more than a few for each one listed, wherever the page starts.
        let bound = if filters.as_object().is_some_and(|o| o.len() > 2) {
            8 * PAGE as u64
        } else {
            PAGE as u64 + 2
        };
        assert_flat(&format!("ListTasks {filters}"), &visits, bound);
    }
}

fn instance(s: &mut State, sc: &Scope, cluster: &str, id: &str, status: &str, zone: &str) {
    let attr = |n: &str, v: Option<&str>| wire::Attribute {
        name: Some(n.into()),
        value: v.map(str::to_owned),
        ..Default::default()
    };
    s.apply(&Change::Put(Record::Instance(InstanceRecord {
        scope: sc.clone(),
        cluster: cluster.into(),
        id: id.into(),
        instance: wire::ContainerInstance {
            container_instance_arn: Some(sc.arn(
                model::arn::ResourceType::ContainerInstance,
                format!("{cluster}/{id}"),
            )),
            status: Some(status.into()),
            // Stored out of name order on purpose: pages must still come in key order.
            attributes: Some(vec![
                attr("zone", Some(zone)),
                attr("ecs.os-type", Some("linux")),
                attr("gpu", None),
            ]),
            ..Default::default()
        },
        last_heartbeat: NOW,
    })));
}

#[test]
fn list_container_instances_and_attributes_pages_cost_the_same_at_any_offset() {
    let mut s = state();
    let sc = scope();
    cluster(&mut s, &sc, "c", "ACTIVE");
    cluster(&mut s, &sc, "d", "ACTIVE");
    let statuses = ["ACTIVE", "DRAINING", "INACTIVE", "REGISTERING"];
    let mut all = Vec::new();
    for i in 0..3000 {
        let id = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (status, zone) = (statuses[i % 4], ["a", "b"][i / 4 % 2]);
        let cl = if i % 10 == 9 { "d" } else { "c" };
        instance(&mut s, &sc, cl, &id, status, zone);
        all.push((cl, id, status, zone));
    }
    let arn = |cl: &str, id: &str| {
        sc.arn(
            model::arn::ResourceType::ContainerInstance,
            format!("{cl}/{id}"),
        )
    };
    type Pred = Box<dyn Fn(&str, &str) -> bool>;
    let cases: Vec<(serde_json::Value, Pred, u64)> = vec![
        (
            serde_json::json!({}),
            Box::new(|st, _| st == "ACTIVE" || st == "DRAINING"),
            PAGE as u64 + 3,
        ),
        (
            serde_json::json!({"status": "DRAINING"}),
            Box::new(|st, _| st == "DRAINING"),
            PAGE as u64 + 2,
        ),
        (
            serde_json::json!({"filter": "attribute:zone == a"}),
            Box::new(|st, z| (st == "ACTIVE" || st == "DRAINING") && z == "a"),
            3 * PAGE as u64,
        ),
    ];
    for (filters, wanted, bound) in cases {
        let mut expected: Vec<String> = all
            .iter()
            .filter(|(cl, _, st, z)| *cl == "c" && wanted(st, z))
            .map(|(cl, id, _, _)| arn(cl, id))
            .collect();
        expected.sort();
        let (arns, visits) = walk(|token| {
            let body = cluster_page(&filters, token);
            let r = instances::list(&s, &sc, NOW, serde_json::from_value(body).unwrap())?;
            Ok((r.container_instance_arns.unwrap_or_default(), r.next_token))
        });
        assert_eq!(arns, expected, "ListContainerInstances {filters}");
        assert_flat(&format!("ListContainerInstances {filters}"), &visits, bound);
    }
    for (filters, per_instance) in [
        (serde_json::json!({}), 3),
        (
            serde_json::json!({"attributeName": "zone", "attributeValue": "b"}),
            1,
        ),
    ] {
        let (attrs, visits) = walk(|token| {
            let mut body = filters.clone();
            body["cluster"] = "c".into();
            body["targetType"] = "container-instance".into();
            body["maxResults"] = PAGE.into();
            if let Some(t) = token {
                body["nextToken"] = t.into();
            }
            let r = attributes::list(&s, &sc, NOW, serde_json::from_value(body).unwrap())?;
            Ok((r.attributes.unwrap_or_default(), r.next_token))
        });
        let listed = all.iter().filter(|(cl, _, st, z)| {
            *cl == "c" && *st != "INACTIVE" && (per_instance == 3 || *z == "b")
        });
        let mut expected: Vec<(String, String)> = listed
            .flat_map(|(_, id, _, _)| {
                let names: &[&str] = if per_instance == 3 {
                    &["ecs.os-type", "gpu", "zone"]
                } else {
                    &["zone"]
                };
                names.iter().map(|n| (id.clone(), (*n).to_owned()))
            })
            .collect();
        expected.sort();
        let got: Vec<(String, String)> = attrs
            .iter()
            .map(|a| {
                let id = a.target_id.as_deref().unwrap().rsplit('/').next().unwrap();
                (id.to_owned(), a.name.clone().unwrap())
            })
            .collect();
        assert_eq!(got, expected, "ListAttributes {filters}");
        // Instances visited: those of the page and, with a filter, the ones between
        // them that it leaves out (here about 2 in 3) — as many on the last page as
        // on the first.
        let bound = if per_instance == 3 {
            (PAGE as u64 / per_instance) * 2 + 3
        } else {
            3 * PAGE as u64
        };
        assert_flat(&format!("ListAttributes {filters}"), &visits, bound);
    }
}

#[test]
fn list_services_pages_cost_the_same_at_any_offset() {
    let mut s = state();
    let sc = scope();
    cluster(&mut s, &sc, "c", "ACTIVE");
    let mut expected = Vec::new();
    for i in 0..3000 {
        for (cl, status) in [("c", "ACTIVE"), ("c", "INACTIVE"), ("d", "ACTIVE")] {
            let name = format!("s{i:05}-{status}");
            let arn = sc.arn(model::arn::ResourceType::Service, format!("{cl}/{name}"));
            let rec: ServiceRecord = serde_json::from_value(serde_json::json!({
                "scope": sc, "cluster": cl, "name": name,
                "service": {"serviceArn": arn, "serviceName": name, "status": status,
                            "launchType": "EC2"}
            }))
            .unwrap();
            s.apply(&Change::Put(Record::Service(rec)));
            if cl == "c" && status == "ACTIVE" {
                expected.push(arn);
            }
        }
    }
    let (arns, visits) = walk(|token| {
        let r = services::list(
            &s,
            &sc,
            NOW,
            wire::ListServicesRequest {
                cluster: Some("c".into()),
                max_results: Some(PAGE),
                next_token: token,
                launch_type: Some(wire::LaunchType::Ec2),
                ..Default::default()
            },
        )?;
        Ok((r.service_arns.unwrap_or_default(), r.next_token))
    });
    assert_eq!(arns, expected);
    assert_flat("ListServices", &visits, PAGE as u64 + 2);
}

fn definition(s: &mut State, sc: &Scope, family: &str, revision: i32, status: &str) {
    s.apply(&Change::Put(Record::TaskDefinition(TaskDefinitionRecord {
        scope: sc.clone(),
        family: family.into(),
        revision,
        definition: wire::TaskDefinition {
            task_definition_arn: Some(sc.arn(
                model::arn::ResourceType::TaskDefinition,
                format!("{family}:{revision}"),
            )),
            family: Some(family.into()),
            revision: Some(revision),
            status: Some(serde_json::from_value(status.into()).unwrap()),
            ..Default::default()
        },
        tags: Vec::new(),
    })));
}

#[test]
fn list_task_definitions_and_families_pages_cost_the_same_at_any_offset() {
    let mut s = state();
    let sc = scope();
    let other = Scope::new("000000000000", "us-east-1");
    let mut all = Vec::new();
    for f in 0..60 {
        for rev in 1..=40 {
            let family = format!("fam{f:03}");
            // Families fam000..fam019 have no ACTIVE revision left.
            let status = if f < 20 || rev % 3 == 0 {
                "INACTIVE"
            } else if rev % 7 == 0 {
                "DELETE_IN_PROGRESS"
            } else {
                "ACTIVE"
            };
            definition(&mut s, &sc, &family, rev, status);
            definition(&mut s, &other, &family, rev, "ACTIVE");
            all.push((family, rev, status));
        }
    }
    let page = 10;
    let arn = |f: &str, rev: i32| {
        sc.arn(
            model::arn::ResourceType::TaskDefinition,
            format!("{f}:{rev}"),
        )
    };
    for (filters, status, family) in [
        (serde_json::json!({}), "ACTIVE", None),
        (serde_json::json!({"sort": "DESC"}), "ACTIVE", None),
        (serde_json::json!({"status": "INACTIVE"}), "INACTIVE", None),
        (
            serde_json::json!({"status": "DELETE_IN_PROGRESS", "sort": "DESC"}),
            "DELETE_IN_PROGRESS",
            None,
        ),
        (
            serde_json::json!({"familyPrefix": "fam033"}),
            "ACTIVE",
            Some("fam033"),
        ),
        (
            serde_json::json!({"familyPrefix": "fam033", "sort": "DESC", "status": "INACTIVE"}),
            "INACTIVE",
            Some("fam033"),
        ),
    ] {
        let mut expected: Vec<(String, i32)> = all
            .iter()
            .filter(|(f, _, st)| *st == status && family.is_none_or(|x| x == f))
            .map(|(f, rev, _)| (f.clone(), *rev))
            .collect();
        expected.sort();
        if filters.get("sort").is_some() {
            expected.reverse();
        }
        let expected: Vec<String> = expected.iter().map(|(f, r)| arn(f, *r)).collect();
        let (arns, visits) = walk(|token| {
            let mut body = filters.clone();
            body["maxResults"] = page.into();
            if let Some(t) = token {
                body["nextToken"] = t.into();
            }
            let r = task_definitions::list(&s, &sc, NOW, serde_json::from_value(body).unwrap())?;
            Ok((r.task_definition_arns.unwrap_or_default(), r.next_token))
        });
        assert_eq!(arns, expected, "ListTaskDefinitions {filters}");
        // Within one family, revisions of other statuses are skipped (a few a page).
        let bound = if family.is_some() { 4 * page } else { page + 2 };
        assert_flat(&format!("ListTaskDefinitions {filters}"), &visits, bound);
    }
    for (filters, expected) in [
        (serde_json::json!({}), (0..60).collect::<Vec<_>>()),
        (serde_json::json!({"status": "ACTIVE"}), (20..60).collect()),
        (serde_json::json!({"status": "INACTIVE"}), (0..20).collect()),
        (
            serde_json::json!({"familyPrefix": "fam04"}),
            (40..50).collect(),
        ),
    ] {
        let expected: Vec<String> = expected.iter().map(|f| format!("fam{f:03}")).collect();
        let (families, visits) = walk(|token| {
            let mut body = filters.clone();
            body["maxResults"] = page.into();
            if let Some(t) = token {
                body["nextToken"] = t.into();
            }
            let r = task_definitions::list_families(
                &s,
                &sc,
                NOW,
                serde_json::from_value(body).unwrap(),
            )?;
            Ok((r.families.unwrap_or_default(), r.next_token))
        });
        assert_eq!(families, expected, "ListTaskDefinitionFamilies {filters}");
        assert_flat(
            &format!("ListTaskDefinitionFamilies {filters}"),
            &visits,
            page + 2,
        );
    }
}
