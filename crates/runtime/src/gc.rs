//! Pure garbage-collection planning: which stopped containers and unused images are old
//! enough to remove. The runtimes gather the facts and carry the plan out.

use std::collections::BTreeSet;
use std::time::SystemTime;

use crate::types::{ContainerId, ContainerInfo, ContainerState, GcPolicy};

/// An image as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcImage {
    /// Image name.
    pub name: String,
    /// Last time a container was created from it (or when it was pulled).
    pub last_used: Option<SystemTime>,
}

/// What to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcPlan {
    /// Containers to remove.
    pub containers: Vec<ContainerId>,
    /// Images to remove.
    pub images: Vec<String>,
}

fn older_than(t: Option<SystemTime>, age: std::time::Duration, now: SystemTime) -> bool {
    // Unknown times are treated as "just now": never remove on missing data.
    t.and_then(|t| now.duration_since(t).ok())
        .is_some_and(|d| d >= age)
}

/// Plans a GC pass.
///
/// A container is removed when it is stopped (or has lost its task) and exited at least
/// `stopped_container_age` ago. An image is removed when no container that survives this
/// pass uses it and it was last used at least `unused_image_age` ago.
#[must_use]
pub fn plan(
    containers: &[ContainerInfo],
    images: &[GcImage],
    policy: &GcPolicy,
    now: SystemTime,
) -> GcPlan {
    let mut out = GcPlan::default();
    let mut in_use: BTreeSet<&str> = BTreeSet::new();
    for c in containers {
        let removable = match c.state {
            ContainerState::Stopped(exit) => older_than(
                exit.exited_at.or(c.created_at),
                policy.stopped_container_age,
                now,
            ),
            ContainerState::Unknown => older_than(c.created_at, policy.stopped_container_age, now),
            ContainerState::Created | ContainerState::Running { .. } => false,
        };
        if removable {
            out.containers.push(c.id.clone());
        } else {
            in_use.insert(c.image.as_str());
        }
    }
    for i in images {
        if !in_use.contains(i.name.as_str())
            && older_than(i.last_used, policy.unused_image_age, now)
        {
            out.images.push(i.name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ExitStatus;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn c(id: &str, image: &str, state: ContainerState) -> ContainerInfo {
        ContainerInfo {
            id: ContainerId::new(id).unwrap(),
            image: image.into(),
            state,
            labels: BTreeMap::new(),
            created_at: Some(SystemTime::UNIX_EPOCH),
        }
    }

    #[test]
    fn removes_old_stopped_and_unused_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let stopped = |secs_ago: u64| {
            ContainerState::Stopped(ExitStatus {
                code: 0,
                oom_killed: false,
                exited_at: Some(now - Duration::from_secs(secs_ago)),
            })
        };
        let containers = vec![
            c("old", "a", stopped(600)),
            c("young", "b", stopped(10)),
            c("run", "c", ContainerState::Running { pid: 1 }),
            c("created", "d", ContainerState::Created),
            c("lost", "e", ContainerState::Unknown),
        ];
        let img = |n: &str, ago: Option<u64>| GcImage {
            name: n.into(),
            last_used: ago.map(|a| now - Duration::from_secs(a)),
        };
        let images = vec![
            img("a", Some(600)),
            img("b", Some(600)),
            img("c", Some(600)),
            img("d", Some(600)),
            img("e", Some(600)),
            img("f", Some(600)),
            img("g", Some(1)),
            img("h", None),
        ];
        let policy = GcPolicy {
            stopped_container_age: Duration::from_secs(300),
            unused_image_age: Duration::from_secs(300),
        };
        let p = plan(&containers, &images, &policy, now);
        let ids: Vec<&str> = p.containers.iter().map(ContainerId::as_str).collect();
        assert_eq!(ids, ["old", "lost"]);
        assert_eq!(p.images, ["a", "e", "f"]);
    }
}
