//! Operation routing: one `match` from [`Operation`] to the control plane.
//!
//! Each arm names the operation's function in `controlplane::ops`; the helpers below
//! parse the body into the operation's request shape (naming the offending member on
//! error), check required members, run the function as a read or a write, and encode
//! the response.

use controlplane::engine::Written;
use controlplane::ops::{
    account, agent, attributes, capacity_providers, clusters, instances, protection,
    service_deployments, services, tags, task_definitions, task_sets, tasks,
};
use controlplane::{ControlPlane, Ctx, EcsError, Scope, State};
use model::wire::{Operation, Required};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Everything an operation needs besides its body.
#[derive(Debug, Clone)]
pub struct Call {
    /// Account and region of the caller.
    pub scope: Scope,
    /// Epoch seconds when the request arrived (for reads that issue page tokens).
    pub now: f64,
    /// The URL agents should use to reach this server (`http://<Host>`).
    pub advertised: String,
    /// The external node (`mi-…`) whose own credentials signed the request, if any
    /// (see [`crate::anywhere`]).
    pub node: Option<String>,
}

/// Parses a request body into `T`, naming the member at fault, and checks the members
/// the model marks required.
pub fn parse<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
    let req: T = parse_json(body)?;
    if let Some(field) = req.missing_required() {
        return Err(ApiError::MissingParameter(field));
    }
    Ok(req)
}

/// [`parse`] for an API whose invalid-input errors are its own: a member of the wrong
/// type, and a required member that is absent (named by `missing`'s message), become
/// `invalid`'s error; a body that is not a JSON object stays a `SerializationException`.
pub fn parse_as<T, E>(
    body: &[u8],
    invalid: impl Fn(String) -> E,
    missing: impl FnOnce(&str) -> String,
) -> Result<T, ApiError>
where
    T: DeserializeOwned + Required,
    ApiError: From<E>,
{
    let req: T = parse_json(body).map_err(|e| match e {
        ApiError::InvalidParameter(m) => ApiError::from(invalid(m)),
        other => other,
    })?;
    if let Some(field) = req.missing_required() {
        return Err(invalid(missing(field)).into());
    }
    Ok(req)
}

/// Parses a request body into `T`, naming the member at fault.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::Serialization(format!("The request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::Serialization(
            "The request body must be a JSON object.".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // A value outside an enum: ECS's "<member> should be one of [A,B]".
        ApiError::InvalidParameter(
            model::enum_error::enum_message(&path, &inner)
                .unwrap_or_else(|| format!("Invalid value for {path}: {inner}")),
        )
    })
}

/// Encodes a response body.
pub fn encode<T: Serialize>(resp: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(resp)
        .map_err(|e| ApiError::Ecs(EcsError::Server(format!("cannot encode the response: {e}"))))
}

async fn write<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> Written<Resp>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    write_parsed(cp, call, parse(body)?, op).await
}

/// Runs the write `op` of an ECS-error API through the one writer and encodes its
/// answer.
pub async fn write_parsed<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    req: Req,
    op: fn(&State, &mut Ctx, Req) -> Written<Resp>,
) -> Result<Vec<u8>, ApiError>
where
    Req: Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let resp = cp
        .write(call.scope.clone(), move |state, ctx| {
            op(state, ctx, req.clone())
        })
        .await?;
    encode(&resp)
}

/// Runs the write `op` of an API with its own error type `E` (Cloud Map, SSM, ELBv2,
/// CloudWatch) on `req` through the one writer ([`ControlPlane::write_as`]).
pub async fn write_own_errors<Req, Resp, E>(
    cp: &ControlPlane,
    scope: Scope,
    req: Req,
    op: fn(&State, &mut Ctx, Req) -> Written<Resp, E>,
) -> Result<Resp, E>
where
    Req: Clone + Send + 'static,
    Resp: Send + 'static,
    E: From<EcsError> + Send + 'static,
{
    cp.write_as(scope, move |state, ctx| op(state, ctx, req.clone()))
        .await
}

/// Parses `body` as its API does ([`ParseBody`]), runs the write `op` through the one
/// writer ([`write_own_errors`]) and encodes its answer.
pub async fn write_json<Req, Resp, E>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> Written<Resp, E>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
    E: ParseBody + From<EcsError> + Send + 'static,
    ApiError: From<E>,
{
    let req = E::parse_body(body)?;
    encode(&write_own_errors(cp, call.scope.clone(), req, op).await?)
}

/// The message of a `ValidationException` for a required member that is absent, as the
/// AWS JSON 1.1 APIs that use that code (SSM, ACM) word it.
pub fn null_member(field: &str) -> String {
    format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    )
}

/// The error type of a JSON API's operations, which also says how the API parses their
/// request bodies: ECS's [`parse`], or a [`parse_as`] with the API's own errors.
pub trait ParseBody {
    /// Parses a request body of one of the API's operations.
    fn parse_body<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError>;
}

impl ParseBody for EcsError {
    fn parse_body<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
        parse(body)
    }
}

/// Parses `body` as its API does ([`ParseBody`]) and runs the read-only `op` on it
/// ([`read_parsed`]).
pub fn read<Req, Resp, E: ParseBody>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &Scope, Req) -> Result<Resp, E>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required,
    Resp: Serialize,
    ApiError: From<E>,
{
    read_parsed(cp, call, E::parse_body(body)?, op)
}

/// [`read`] for a List operation ([`list_parsed`]).
pub fn list<Req, Resp, E: ParseBody>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &Scope, f64, Req) -> Result<Resp, E>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required,
    Resp: Serialize,
    ApiError: From<E>,
{
    list_parsed(cp, call, E::parse_body(body)?, op)
}

/// Runs the read-only `op` of any API on the published state and encodes its answer.
pub fn read_parsed<Req, Resp, E>(
    cp: &ControlPlane,
    call: &Call,
    req: Req,
    op: fn(&State, &Scope, Req) -> Result<Resp, E>,
) -> Result<Vec<u8>, ApiError>
where
    Resp: Serialize,
    ApiError: From<E>,
{
    let resp = cp.read(|state| op(state, &call.scope, req))?;
    encode(&resp)
}

/// [`read_parsed`] for a List operation, which also takes the time (its page tokens
/// expire).
pub fn list_parsed<Req, Resp, E>(
    cp: &ControlPlane,
    call: &Call,
    req: Req,
    op: fn(&State, &Scope, f64, Req) -> Result<Resp, E>,
) -> Result<Vec<u8>, ApiError>
where
    Resp: Serialize,
    ApiError: From<E>,
{
    let resp = cp.read(|state| op(state, &call.scope, call.now, req))?;
    encode(&resp)
}

fn unsupported(op: Operation) -> Result<Vec<u8>, ApiError> {
    Err(ApiError::Ecs(EcsError::UnsupportedFeature(format!(
        "{} is not supported by flotilla yet.",
        op.name()
    ))))
}

/// Runs one operation and returns the JSON response body.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    op: Operation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        // Clusters
        Operation::CreateCluster => write(cp, call, body, clusters::create_cluster).await,
        Operation::DeleteCluster => write(cp, call, body, clusters::delete_cluster).await,
        Operation::DescribeClusters => read(cp, call, body, clusters::describe_clusters),
        Operation::ListClusters => list(cp, call, body, clusters::list_clusters),
        Operation::UpdateCluster => write(cp, call, body, clusters::update_cluster).await,
        Operation::UpdateClusterSettings => {
            write(cp, call, body, clusters::update_cluster_settings).await
        }
        Operation::PutClusterCapacityProviders => {
            write(cp, call, body, clusters::put_cluster_capacity_providers).await
        }
        // Capacity providers
        Operation::CreateCapacityProvider => {
            write(cp, call, body, capacity_providers::create).await
        }
        Operation::DescribeCapacityProviders => list(cp, call, body, capacity_providers::describe),
        Operation::UpdateCapacityProvider => {
            write(cp, call, body, capacity_providers::update).await
        }
        Operation::DeleteCapacityProvider => {
            write(cp, call, body, capacity_providers::delete).await
        }
        // Task definitions
        Operation::RegisterTaskDefinition => {
            write(cp, call, body, task_definitions::register).await
        }
        Operation::DeregisterTaskDefinition => {
            write(cp, call, body, task_definitions::deregister).await
        }
        Operation::DeleteTaskDefinitions => write(cp, call, body, task_definitions::delete).await,
        Operation::DescribeTaskDefinition => read(cp, call, body, task_definitions::describe),
        Operation::ListTaskDefinitions => list(cp, call, body, task_definitions::list),
        Operation::ListTaskDefinitionFamilies => {
            list(cp, call, body, task_definitions::list_families)
        }
        // Container instances and attributes
        Operation::RegisterContainerInstance => write(cp, call, body, instances::register).await,
        Operation::DeregisterContainerInstance => {
            write(cp, call, body, instances::deregister).await
        }
        Operation::DescribeContainerInstances => read(cp, call, body, instances::describe),
        Operation::ListContainerInstances => list(cp, call, body, instances::list),
        Operation::UpdateContainerInstancesState => {
            write(cp, call, body, instances::update_state).await
        }
        Operation::PutAttributes => write(cp, call, body, attributes::put).await,
        Operation::DeleteAttributes => write(cp, call, body, attributes::delete).await,
        Operation::ListAttributes => list(cp, call, body, attributes::list),
        // Tasks
        Operation::RunTask => write(cp, call, body, tasks::run_task).await,
        Operation::StartTask => write(cp, call, body, tasks::start_task).await,
        Operation::StopTask => write(cp, call, body, tasks::stop_task).await,
        Operation::DescribeTasks => read(cp, call, body, tasks::describe),
        Operation::ListTasks => list(cp, call, body, tasks::list),
        Operation::UpdateTaskProtection => write(cp, call, body, protection::update).await,
        Operation::GetTaskProtection => list(cp, call, body, protection::get),
        // Services
        Operation::CreateService => write(cp, call, body, services::create).await,
        Operation::UpdateService => write(cp, call, body, services::update).await,
        Operation::DeleteService => write(cp, call, body, services::delete).await,
        Operation::DescribeServices => read(cp, call, body, services::describe),
        Operation::ListServices => list(cp, call, body, services::list),
        // Service deployments and revisions (the deployment history)
        Operation::ListServiceDeployments => list(cp, call, body, service_deployments::list),
        Operation::DescribeServiceDeployments => {
            read(cp, call, body, service_deployments::describe_deployments)
        }
        Operation::DescribeServiceRevisions => {
            read(cp, call, body, service_deployments::describe_revisions)
        }
        Operation::StopServiceDeployment => write(cp, call, body, service_deployments::stop).await,
        Operation::ContinueServiceDeployment => {
            write(cp, call, body, service_deployments::continue_deployment).await
        }
        // Task sets (services with the EXTERNAL deployment controller)
        Operation::CreateTaskSet => write(cp, call, body, task_sets::create).await,
        Operation::DescribeTaskSets => read(cp, call, body, task_sets::describe),
        Operation::UpdateTaskSet => write(cp, call, body, task_sets::update).await,
        Operation::UpdateServicePrimaryTaskSet => {
            write(cp, call, body, task_sets::update_primary).await
        }
        Operation::DeleteTaskSet => write(cp, call, body, task_sets::delete).await,
        // Tags and account settings
        Operation::TagResource => write(cp, call, body, tags::tag_resource).await,
        Operation::UntagResource => write(cp, call, body, tags::untag_resource).await,
        Operation::ListTagsForResource => read(cp, call, body, tags::list_tags_for_resource),
        Operation::PutAccountSetting => write(cp, call, body, account::put).await,
        Operation::PutAccountSettingDefault => write(cp, call, body, account::put_default).await,
        Operation::DeleteAccountSetting => write(cp, call, body, account::delete).await,
        Operation::ListAccountSettings => list(cp, call, body, account::list),
        // Agent-facing
        Operation::DiscoverPollEndpoint => {
            let req = parse(body)?;
            let resp = cp.read(|state| {
                agent::discover_poll_endpoint(state, &call.scope, &call.advertised, req)
            })?;
            encode(&resp)
        }
        Operation::SubmitTaskStateChange => {
            write(cp, call, body, agent::submit_task_state_change).await
        }
        Operation::SubmitContainerStateChange => {
            write(cp, call, body, agent::submit_container_state_change).await
        }
        Operation::SubmitAttachmentStateChanges => {
            read(cp, call, body, agent::submit_attachment_state_changes)
        }
        Operation::ListServicesByNamespace => list(
            cp,
            call,
            body,
            controlplane::service_connect::list_services_by_namespace,
        ),
        // Not implemented yet: answered with UnsupportedFeatureException.
        Operation::CreateDaemon
        | Operation::CreateExpressGatewayService
        | Operation::DeleteDaemon
        | Operation::DeleteDaemonTaskDefinition
        | Operation::DeleteExpressGatewayService
        | Operation::DescribeDaemon
        | Operation::DescribeDaemonDeployments
        | Operation::DescribeDaemonRevisions
        | Operation::DescribeDaemonTaskDefinition
        | Operation::DescribeExpressGatewayService
        | Operation::ExecuteCommand
        | Operation::ListDaemonDeployments
        | Operation::ListDaemonTaskDefinitions
        | Operation::ListDaemons
        | Operation::RegisterDaemonTaskDefinition
        | Operation::UpdateContainerAgent
        | Operation::UpdateDaemon
        | Operation::UpdateExpressGatewayService => unsupported(op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::wire::{CreateClusterRequest, RegisterTaskDefinitionRequest, RunTaskRequest};

    #[test]
    fn empty_body_is_an_empty_object() {
        let r: CreateClusterRequest = parse(b"").unwrap();
        assert!(r.cluster_name.is_none());
    }

    #[test]
    fn malformed_json_is_a_serialization_error() {
        let e = parse::<CreateClusterRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status_and_code().1, "SerializationException");
        let e = parse::<CreateClusterRequest>(b"[1,2]").unwrap_err();
        assert_eq!(e.status_and_code().1, "SerializationException");
    }

    #[test]
    fn wrong_types_name_the_member() {
        let e = parse::<RunTaskRequest>(br#"{"taskDefinition":"x","count":"three"}"#).unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidParameterException");
        assert!(e.to_string().contains("count"), "{e}");
        let e = parse::<RegisterTaskDefinitionRequest>(
            br#"{"family":"f","containerDefinitions":[{"name":"a","portMappings":[{"containerPort":80,"protocol":"sctp"}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("containerDefinitions[0].portMappings[0].protocol"),
            "{e}"
        );
    }

    #[test]
    fn values_outside_an_enum_list_the_valid_ones() {
        let e =
            parse::<RunTaskRequest>(br#"{"taskDefinition":"x","launchType":"MOON"}"#).unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidParameterException");
        assert_eq!(
            e.to_string(),
            "launch type should be one of [EC2,FARGATE,EXTERNAL,MANAGED_INSTANCES]"
        );
    }

    #[test]
    fn missing_required_members_are_named() {
        let e = parse::<RunTaskRequest>(b"{}").unwrap_err();
        assert_eq!(e.to_string(), "taskDefinition is required.");
        let e = parse::<model::wire::ContinueServiceDeploymentRequest>(
            br#"{"serviceDeploymentArn":"arn:aws:ecs:us-east-1:0:service-deployment/c/s/x"}"#,
        )
        .unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidParameterException");
        assert_eq!(e.to_string(), "hookId is required.");
        let e = parse::<model::wire::ContinueServiceDeploymentRequest>(
            br#"{"serviceDeploymentArn":"a","hookId":"h","action":"ABORT"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("CONTINUE"), "{e}");
    }
}
