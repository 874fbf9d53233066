//! Cloud Map operation routing: one `match` from
//! [`OperationName`] to `controlplane::ops::servicediscovery`.

use controlplane::ops::servicediscovery::{
    SdError, SdWritten, instances, namespaces, operations, services, tags,
};
use controlplane::{ControlPlane, Ctx, State};
use model::wire::Required;
use model::wire_sd::OperationName;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, ParseBody, encode, list, parse_as, read, write_own_errors};
use crate::error::ApiError;

/// Parses a request body into `T`: a body that is not a JSON object is a
/// `SerializationException`; a member of the wrong type, or a required member that is
/// absent, an `InvalidInput` naming it.
pub fn parse<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
    parse_as(body, SdError::InvalidInput, |field| {
        format!("{field} is required.")
    })
}

impl ParseBody for SdError {
    fn parse_body<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
        parse(body)
    }
}

async fn write<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> SdWritten<Resp>,
) -> Result<Resp, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    Ok(write_own_errors(cp, call.scope.clone(), parse(body)?, op).await?)
}

fn unsupported(op: OperationName) -> Result<Vec<u8>, ApiError> {
    Err(SdError::InvalidInput(format!("{} is not supported by flotilla.", op.name())).into())
}

/// An output-less operation's answer: an empty JSON object.
#[derive(Serialize)]
struct Empty {}

/// Runs one Cloud Map operation (the server names it from the part of `X-Amz-Target`
/// after `Route53AutoNaming_v20170314.`) and returns the JSON response body.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    op: OperationName,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        // Namespaces
        OperationName::CreatePrivateDnsNamespace => {
            encode(&write(cp, call, body, namespaces::create_private_dns_namespace).await?)
        }
        OperationName::CreateHttpNamespace => {
            encode(&write(cp, call, body, namespaces::create_http_namespace).await?)
        }
        OperationName::GetNamespace => read(cp, call, body, namespaces::get_namespace),
        OperationName::ListNamespaces => list(cp, call, body, namespaces::list_namespaces),
        OperationName::DeleteNamespace => {
            encode(&write(cp, call, body, namespaces::delete_namespace).await?)
        }
        // Services
        OperationName::CreateService => {
            encode(&write(cp, call, body, services::create_service).await?)
        }
        OperationName::GetService => read(cp, call, body, services::get_service),
        OperationName::ListServices => list(cp, call, body, services::list_services),
        OperationName::UpdateService => {
            encode(&write(cp, call, body, services::update_service).await?)
        }
        OperationName::DeleteService => {
            encode(&write(cp, call, body, services::delete_service).await?)
        }
        // Instances
        OperationName::RegisterInstance => {
            encode(&write(cp, call, body, instances::register_instance).await?)
        }
        OperationName::DeregisterInstance => {
            encode(&write(cp, call, body, instances::deregister_instance).await?)
        }
        OperationName::GetInstance => read(cp, call, body, instances::get_instance),
        OperationName::ListInstances => list(cp, call, body, instances::list_instances),
        OperationName::GetInstancesHealthStatus => {
            list(cp, call, body, instances::get_instances_health_status)
        }
        OperationName::UpdateInstanceCustomHealthStatus => {
            write(
                cp,
                call,
                body,
                instances::update_instance_custom_health_status,
            )
            .await?;
            encode(&Empty {})
        }
        OperationName::DiscoverInstances => read(cp, call, body, instances::discover_instances),
        OperationName::DiscoverInstancesRevision => {
            read(cp, call, body, instances::discover_instances_revision)
        }
        // Operations
        OperationName::GetOperation => read(cp, call, body, operations::get_operation),
        OperationName::ListOperations => list(cp, call, body, operations::list_operations),
        // Tags
        OperationName::TagResource => encode(&write(cp, call, body, tags::tag_resource).await?),
        OperationName::UntagResource => encode(&write(cp, call, body, tags::untag_resource).await?),
        OperationName::ListTagsForResource => read(cp, call, body, tags::list_tags_for_resource),
        // Not implemented: answered with InvalidInput.
        OperationName::CreatePublicDnsNamespace
        | OperationName::UpdateHttpNamespace
        | OperationName::UpdatePrivateDnsNamespace
        | OperationName::UpdatePublicDnsNamespace
        | OperationName::GetServiceAttributes
        | OperationName::UpdateServiceAttributes
        | OperationName::DeleteServiceAttributes => unsupported(op),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::rejected;
    use model::wire_sd::{CreateServiceRequest, RegisterInstanceRequest};

    #[test]
    fn wrong_types_and_missing_members_are_invalid_input() {
        let body = br#"{"ServiceId":"srv-1","InstanceId":3}"#;
        let m = rejected(parse::<RegisterInstanceRequest>(body), "InvalidInput");
        assert!(m.contains("InstanceId"), "{m}");
        let m = rejected(parse::<CreateServiceRequest>(b"{}"), "InvalidInput");
        assert_eq!(m, "Name is required.");
        rejected(
            parse::<CreateServiceRequest>(b"{nope"),
            "SerializationException",
        );
    }
}
