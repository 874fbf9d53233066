//! ARNs of flotilla resources, in the exact form ECS uses:
//! `arn:aws:ecs:<region>:<account>:<resource-type>/<resource-id>`.

use std::fmt;

/// The kinds of resource that carry an ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// `cluster/<name>`
    Cluster,
    /// `task-definition/<family>:<revision>`
    TaskDefinition,
    /// `container-instance/<cluster>/<id>`
    ContainerInstance,
    /// `task/<cluster>/<id>`
    Task,
    /// `service/<cluster>/<name>`
    Service,
    /// `capacity-provider/<name>`
    CapacityProvider,
    /// `task-set/<cluster>/<service>/<id>`
    TaskSet,
    /// `container/<cluster>/<task-id>/<container-id>`
    Container,
}

impl ResourceType {
    /// The resource type as it appears in an ARN.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cluster",
            ResourceType::TaskDefinition => "task-definition",
            ResourceType::ContainerInstance => "container-instance",
            ResourceType::Task => "task",
            ResourceType::Service => "service",
            ResourceType::CapacityProvider => "capacity-provider",
            ResourceType::TaskSet => "task-set",
            ResourceType::Container => "container",
        }
    }

    fn parse(s: &str) -> Option<ResourceType> {
        Some(match s {
            "cluster" => ResourceType::Cluster,
            "task-definition" => ResourceType::TaskDefinition,
            "container-instance" => ResourceType::ContainerInstance,
            "task" => ResourceType::Task,
            "service" => ResourceType::Service,
            "capacity-provider" => ResourceType::CapacityProvider,
            "task-set" => ResourceType::TaskSet,
            "container" => ResourceType::Container,
            _ => return None,
        })
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    /// Region the resource lives in.
    pub region: String,
    /// Account that owns it.
    pub account: String,
    /// What kind of resource it names.
    pub resource_type: ResourceType,
    /// Everything after `<type>/`, e.g. `my-cluster/0123abcd` for a task.
    pub resource: String,
}

impl Arn {
    /// Builds an ARN.
    pub fn new(
        region: &str,
        account: &str,
        resource_type: ResourceType,
        resource: impl Into<String>,
    ) -> Arn {
        Arn {
            region: region.to_owned(),
            account: account.to_owned(),
            resource_type,
            resource: resource.into(),
        }
    }

    /// Parses `arn:aws:ecs:region:account:type/resource`; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Arn> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let _partition = parts.next()?;
        if parts.next()? != "ecs" {
            return None;
        }
        let region = parts.next()?;
        let account = parts.next()?;
        let rest = parts.next()?;
        let (kind, resource) = rest.split_once('/')?;
        if region.is_empty() || account.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Arn::new(
            region,
            account,
            ResourceType::parse(kind)?,
            resource,
        ))
    }

    /// The last `/`-separated part of the resource (a task id, an instance id, a name).
    pub fn last_segment(&self) -> &str {
        self.resource.rsplit('/').next().unwrap_or(&self.resource)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:aws:ecs:{}:{}:{}/{}",
            self.region,
            self.account,
            self.resource_type.as_str(),
            self.resource
        )
    }
}

/// Whether `s` looks like an ARN at all (starts with `arn:`); names and ids never do.
pub fn is_arn(s: &str) -> bool {
    s.starts_with("arn:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_task_arn() {
        let s = "arn:aws:ecs:eu-west-1:000000000000:task/default/0123456789abcdef";
        let arn = Arn::parse(s).expect("valid");
        assert_eq!(arn.resource_type, ResourceType::Task);
        assert_eq!(arn.region, "eu-west-1");
        assert_eq!(arn.last_segment(), "0123456789abcdef");
        assert_eq!(arn.to_string(), s);
    }

    #[test]
    fn rejects_non_ecs_arns() {
        assert!(Arn::parse("arn:aws:s3:::bucket/key").is_none());
        assert!(Arn::parse("arn:aws:ecs:r:a:widget/x").is_none());
        assert!(Arn::parse("default").is_none());
        assert!(Arn::parse("arn:aws:ecs::000:cluster/x").is_none());
    }
}
