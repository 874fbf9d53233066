//! What a service launches its tasks on (CreateService, UpdateService): a launch type, or
//! a capacity provider strategy (given, or the cluster's default at creation), and the
//! checks a service on the Fargate pool passes (the FARGATE launch type, or a strategy of
//! the FARGATE and FARGATE_SPOT providers).
//!
//! UpdateService follows ECS's transitions: a non-empty `capacityProviderStrategy` moves a
//! service from its launch type (EC2 or FARGATE, not EXTERNAL) or its strategy to the new
//! strategy; an empty list moves a service with a strategy back to a launch type (FARGATE
//! from the Fargate providers, EC2 from node-group ones) and changes nothing on a service
//! with a launch type (it never means "the cluster's default", which ECS does not allow
//! once a service has a strategy). Every change starts a new deployment, whose tasks the
//! controller places on the new capacity (`controllers::service`).

use model::wire::{self, CapacityProviderStrategyItem, LaunchType, SchedulingStrategy};

use crate::capacity::{is_fargate_strategy, normalized, resolve_strategy, service_strategy};
use crate::error::{EcsError, invalid};
use crate::state::{ClusterRecord, TaskDefinitionRecord};

/// The capacity a service's deployment launches on: a launch type (shown on the service
/// and the deployment) or a strategy (shown instead of the launch type, as ECS does).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    pub launch_type: Option<LaunchType>,
    pub strategy: Option<Vec<CapacityProviderStrategyItem>>,
}

impl Launch {
    /// Whether its tasks run on the Fargate pool.
    pub fn is_fargate(&self) -> bool {
        self.launch_type == Some(LaunchType::Fargate)
            || self.strategy.as_deref().is_some_and(is_fargate_strategy)
    }

    /// The service's current capacity, as stored.
    pub fn of_service(s: &wire::Service) -> Launch {
        let strategy = s
            .capacity_provider_strategy
            .clone()
            .filter(|s| !s.is_empty());
        Launch {
            launch_type: if strategy.is_some() {
                None
            } else {
                s.launch_type
            },
            strategy,
        }
    }

    /// Shows it on the service.
    pub fn show_on(&self, s: &mut wire::Service) {
        s.launch_type = self.launch_type;
        s.capacity_provider_strategy.clone_from(&self.strategy);
    }
}

/// CreateService's capacity: the launch type, else the strategy given, else the
/// cluster's default strategy, else EC2 ([`service_strategy`]'s rules). An EXTERNAL
/// deployment controller's service has none (its task sets have theirs).
pub(crate) fn create_launch(
    cluster: &ClusterRecord,
    (launch_type, strategy): (Option<LaunchType>, Option<&[CapacityProviderStrategyItem]>),
    external: bool,
    scheduling: SchedulingStrategy,
) -> Result<Launch, EcsError> {
    if external {
        return Ok(Launch {
            launch_type: None,
            strategy: None,
        });
    }
    let daemon = scheduling == SchedulingStrategy::Daemon;
    let strategy = service_strategy(cluster, launch_type, strategy, daemon)?;
    Ok(Launch {
        launch_type: match strategy {
            Some(_) => None,
            None => Some(launch_type.unwrap_or(LaunchType::Ec2)),
        },
        strategy,
    })
}

/// UpdateService's `capacityProviderStrategy` against the service's current capacity:
/// the new capacity when it changes, none when it does not (see the module docs).
pub(crate) fn update_launch(
    cluster: &ClusterRecord,
    s: &wire::Service,
    given: Option<&[CapacityProviderStrategyItem]>,
) -> Result<Option<Launch>, EcsError> {
    let Some(given) = given else {
        return Ok(None);
    };
    let current = Launch::of_service(s);
    if given.is_empty() {
        // Back to a launch type; a service with one keeps it.
        return Ok(current.strategy.as_ref().map(|_| Launch {
            launch_type: Some(if current.is_fargate() {
                LaunchType::Fargate
            } else {
                LaunchType::Ec2
            }),
            strategy: None,
        }));
    }
    if s.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
        return Err(invalid(
            "A capacity provider strategy cannot be used with the DAEMON scheduling strategy. \
             Specify a launch type instead.",
        ));
    }
    if current.launch_type == Some(LaunchType::External) {
        return Err(invalid(
            "A service using the EXTERNAL launch type cannot be updated to use a capacity \
             provider strategy.",
        ));
    }
    let wanted = resolve_strategy(cluster, None, Some(given))?.map(|s| normalized(&s));
    if wanted == current.strategy {
        return Ok(None);
    }
    Ok(Some(Launch {
        launch_type: None,
        strategy: wanted,
    }))
}

/// The checks a service on the Fargate pool passes, as RunTask's FARGATE launch does
/// (`crate::fargate`): not DAEMON, no placement strategy or constraint, a definition and
/// network configuration Fargate can run. Returns the concrete platform version.
pub(crate) fn check_fargate(
    def: Option<&TaskDefinitionRecord>,
    scheduling: SchedulingStrategy,
    placement: (&[wire::PlacementConstraint], &[wire::PlacementStrategy]),
    network: Option<&wire::NetworkConfiguration>,
    platform_version: Option<&str>,
) -> Result<String, EcsError> {
    if scheduling == SchedulingStrategy::Daemon {
        return Err(invalid(
            "The DAEMON scheduling strategy is not supported with the FARGATE launch type.",
        ));
    }
    if !placement.0.is_empty() || !placement.1.is_empty() {
        return Err(invalid(
            "Task placement strategies and constraints are not supported with the FARGATE launch type.",
        ));
    }
    if let Some(def) = def {
        crate::fargate::validate_launch(&def.definition, None, network)?;
    }
    crate::fargate::resolve_platform_version(platform_version)
}

/// Moves service `s` to capacity `l` (UpdateService): onto the Fargate pool, the task
/// definition it will run (`def`, else its current one) and its network configuration
/// (`network`, else its own) pass [`check_fargate`] and the platform version is set;
/// off it, the platform version goes.
pub(crate) fn switch(
    state: &crate::state::State,
    scope: &crate::state::Scope,
    s: &mut wire::Service,
    l: &Launch,
    (def, network): (Option<&str>, Option<&wire::NetworkConfiguration>),
    platform_version: Option<String>,
) -> Result<(), EcsError> {
    if l.is_fargate() {
        let ident = def.or(s.task_definition.as_deref()).unwrap_or_default();
        let def = crate::ops::task_definitions::resolve(state, scope, ident);
        let version = check_fargate(
            def,
            s.scheduling_strategy.unwrap_or(SchedulingStrategy::Replica),
            (
                s.placement_constraints.as_deref().unwrap_or(&[]),
                s.placement_strategy.as_deref().unwrap_or(&[]),
            ),
            network.or(s.network_configuration.as_ref()),
            platform_version
                .as_deref()
                .or(s.platform_version.as_deref()),
        )?;
        s.platform_version = Some(version);
        s.platform_family = Some(crate::fargate::PLATFORM_FAMILY.to_owned());
    } else {
        s.platform_version = None;
        s.platform_family = None;
    }
    l.show_on(s);
    Ok(())
}
