//! [`EcsError`]: every way an ECS operation can fail, one variant per wire error code.

/// An ECS operation failed. The variant is the `__type` on the wire; the string is the
/// message the client shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// Input failed validation; the message names the field.
    #[error("{0}")]
    InvalidParameter(String),
    /// The request cannot be served as asked (ECS's generic client error).
    #[error("{0}")]
    Client(String),
    /// The named cluster does not exist (or is INACTIVE).
    #[error("Cluster not found.")]
    ClusterNotFound,
    /// The named service does not exist in the cluster.
    #[error("Service not found.")]
    ServiceNotFound,
    /// The service exists but is DRAINING or INACTIVE.
    #[error("Service was not ACTIVE.")]
    ServiceNotActive,
    /// The named task set does not exist in the service (DescribeTaskSets' siblings).
    #[error(
        "The specified task set wasn't found. You can view your available task sets with \
         DescribeTaskSets. Task sets are specific to each cluster, service and Region."
    )]
    TaskSetNotFound,
    /// A tagged resource, or another non-cluster resource, does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// PutAttributes/DeleteAttributes name a target that does not exist.
    #[error("{0}")]
    TargetNotFound(String),
    /// DeleteCluster while container instances are registered.
    #[error("The Cluster cannot be deleted while Container Instances are active or draining.")]
    ClusterContainsContainerInstances,
    /// DeleteCluster while services are active.
    #[error("The Cluster cannot be deleted while Services are active.")]
    ClusterContainsServices,
    /// DeleteCluster while tasks are not yet stopped.
    #[error("The Cluster cannot be deleted while Tasks are active.")]
    ClusterContainsTasks,
    /// The operation exists in ECS but flotilla does not implement it (yet).
    #[error("{0}")]
    UnsupportedFeature(String),
    /// Too many attributes on a resource.
    #[error("{0}")]
    AttributeLimitExceeded(String),
    /// The state was changed concurrently in a way that conflicts with the request.
    #[error("{0}")]
    Conflict(String),
    /// The agent that holds what was asked for (a task's logs) is not connected or did
    /// not answer in time.
    #[error("{0}")]
    TargetNotConnected(String),
    /// A Cloud Map namespace named by a Service Connect configuration does not exist.
    #[error("{0}")]
    NamespaceNotFound(String),
    /// The resource is in use and cannot be removed (PutClusterCapacityProviders
    /// dropping a capacity provider a service's strategy names).
    #[error("{0}")]
    ResourceInUse(String),
    /// StopServiceDeployment names a service deployment that does not exist.
    #[error("{0}")]
    ServiceDeploymentNotFound(String),
    /// Something failed on the server's side (e.g. the store could not commit).
    #[error("{0}")]
    Server(String),
}

impl EcsError {
    /// The wire error code (`__type`) of this error. One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            EcsError::InvalidParameter(_) => "InvalidParameterException",
            EcsError::Client(_) => "ClientException",
            EcsError::ClusterNotFound => "ClusterNotFoundException",
            EcsError::ServiceNotFound => "ServiceNotFoundException",
            EcsError::ServiceNotActive => "ServiceNotActiveException",
            EcsError::TaskSetNotFound => "TaskSetNotFoundException",
            EcsError::ResourceNotFound(_) => "ResourceNotFoundException",
            EcsError::TargetNotFound(_) => "TargetNotFoundException",
            EcsError::ClusterContainsContainerInstances => {
                "ClusterContainsContainerInstancesException"
            }
            EcsError::ClusterContainsServices => "ClusterContainsServicesException",
            EcsError::ClusterContainsTasks => "ClusterContainsTasksException",
            EcsError::UnsupportedFeature(_) => "UnsupportedFeatureException",
            EcsError::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            EcsError::Conflict(_) => "ConflictException",
            EcsError::TargetNotConnected(_) => "TargetNotConnectedException",
            EcsError::NamespaceNotFound(_) => "NamespaceNotFoundException",
            EcsError::ResourceInUse(_) => "ResourceInUseException",
            EcsError::ServiceDeploymentNotFound(_) => "ServiceDeploymentNotFoundException",
            EcsError::Server(_) => "ServerException",
        }
    }

    /// Whether the server, not the client, is at fault (HTTP 500 instead of 400).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, EcsError::Server(_))
    }
}

/// Shorthand for an [`EcsError::InvalidParameter`].
pub fn invalid(msg: impl Into<String>) -> EcsError {
    EcsError::InvalidParameter(msg.into())
}

/// Shorthand for an [`EcsError::Client`].
pub fn client(msg: impl Into<String>) -> EcsError {
    EcsError::Client(msg.into())
}
