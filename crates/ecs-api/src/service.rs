//! [`AwsService`]: which AWS API a `POST /` speaks, read from the request.
//!
//! Every AWS client signs every request with SigV4, and the credential scope names the
//! service it meant (`Credential=<key>/<date>/<region>/<service>/aws4_request`): `ecs`,
//! `elasticloadbalancing`, `servicediscovery`, `ssm`, `acm`, `monitoring` (CloudWatch in JSON 1.0;
//! its Smithy RPC v2 CBOR requests have their own path, `/service/…/operation/…`, and are
//! routed by it). That name is what routes a request, so one
//! endpoint serves every API flotilla speaks (`AWS_ENDPOINT_URL` works for all of them).
//! Without `--credentials` the header is still there (clients always sign); a request
//! with no `Authorization` header at all (flotilla's own tests, `curl`) is routed by its
//! shape: an `X-Amz-Target` of Cloud Map's prefix goes to Cloud Map, one of SSM's
//! (`AmazonSSM`) to SSM, one of ACM's (`CertificateManager`) to ACM, one of CloudWatch's (`GraniteServiceVersion20100801`) to
//! CloudWatch, a form-encoded body
//! (the query protocol) to ELBv2, anything else to ECS as before.

use axum::http::HeaderMap;

use crate::auth::parse_authorization;
use crate::error::ApiError;

/// `X-Amz-Target` prefix of Cloud Map (AWS Cloud Map, `servicediscovery`) operations.
pub const SERVICE_DISCOVERY_TARGET_PREFIX: &str = "Route53AutoNaming_v20170314";

/// An AWS API served on `POST /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsService {
    /// ECS (JSON 1.1, `X-Amz-Target: AmazonEC2ContainerServiceV20141113.*`), with
    /// flotilla's agent (`FlotillaAgentV1.*`) and user (`FlotillaV1.*`) targets.
    Ecs,
    /// Elastic Load Balancing v2 (query protocol, XML answers, version 2015-12-01).
    ElasticLoadBalancing,
    /// AWS Cloud Map (JSON 1.1, `X-Amz-Target: Route53AutoNaming_v20170314.*`).
    ServiceDiscovery,
    /// AWS Systems Manager's activation operations, for ECS Anywhere (JSON 1.1,
    /// `X-Amz-Target: AmazonSSM.*`).
    Ssm,
    /// AWS Certificate Manager's imported certificates, for HTTPS listeners (JSON 1.1,
    /// `X-Amz-Target: CertificateManager.*`).
    Acm,
    /// Amazon CloudWatch's metric alarms and metric data (JSON 1.0,
    /// `X-Amz-Target: GraniteServiceVersion20100801.*`; also Smithy RPC v2 CBOR on
    /// `POST /service/GraniteServiceVersion20100801/operation/<Operation>`).
    CloudWatch,
}

impl AwsService {
    /// Every service, in the order the docs list them.
    pub const ALL: [AwsService; 6] = [
        AwsService::Ecs,
        AwsService::ElasticLoadBalancing,
        AwsService::ServiceDiscovery,
        AwsService::Ssm,
        AwsService::Acm,
        AwsService::CloudWatch,
    ];

    /// The SigV4 signing name, as credential scopes spell it.
    pub fn signing_name(self) -> &'static str {
        match self {
            AwsService::Ecs => "ecs",
            AwsService::ElasticLoadBalancing => "elasticloadbalancing",
            AwsService::ServiceDiscovery => "servicediscovery",
            AwsService::Ssm => "ssm",
            AwsService::Acm => "acm",
            AwsService::CloudWatch => "monitoring",
        }
    }

    /// The service a signing name names.
    pub fn from_signing_name(name: &str) -> Option<AwsService> {
        AwsService::ALL
            .into_iter()
            .find(|s| s.signing_name() == name)
    }

    /// The service a request is for: its credential scope's service when it is signed
    /// (an unknown service is [`ApiError::UnknownService`]), else its shape (see the
    /// module documentation). A malformed `Authorization` header goes to ECS, whose
    /// verifier answers what is wrong with it.
    pub fn of_request(headers: &HeaderMap) -> Result<AwsService, ApiError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let Ok(auth) = parse_authorization(value.to_str().unwrap_or("")) else {
                return Ok(AwsService::Ecs);
            };
            return AwsService::from_signing_name(&auth.service)
                .ok_or(ApiError::UnknownService(auth.service));
        }
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match target.split_once('.').map(|(prefix, _)| prefix) {
            Some(SERVICE_DISCOVERY_TARGET_PREFIX) => return Ok(AwsService::ServiceDiscovery),
            Some(model::wire_ssm::TARGET_PREFIX) => return Ok(AwsService::Ssm),
            Some(model::wire_acm::TARGET_PREFIX) => return Ok(AwsService::Acm),
            Some(model::wire_cw::TARGET_PREFIX) => return Ok(AwsService::CloudWatch),
            _ => {}
        }
        let form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        Ok(if form {
            AwsService::ElasticLoadBalancing
        } else {
            AwsService::Ecs
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_for(service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "AWS4-HMAC-SHA256 Credential=K/20261123/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
        );
        h.insert("authorization", v.parse().unwrap());
        h
    }

    #[test]
    fn the_credential_scope_names_the_service() {
        for s in AwsService::ALL {
            assert_eq!(
                AwsService::of_request(&signed_for(s.signing_name())).unwrap(),
                s
            );
        }
        // The scope wins over the body's shape: an ELBv2 form signed for `ecs` is ECS's.
        let mut h = signed_for("ecs");
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(AwsService::of_request(&h).unwrap(), AwsService::Ecs);
        let e = AwsService::of_request(&signed_for("s3")).unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidSignatureException");
    }

    #[test]
    fn unsigned_requests_are_routed_by_shape() {
        let mut h = HeaderMap::new();
        assert_eq!(AwsService::of_request(&h).unwrap(), AwsService::Ecs);
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        assert_eq!(
            AwsService::of_request(&h).unwrap(),
            AwsService::ElasticLoadBalancing
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "Route53AutoNaming_v20170314.ListNamespaces"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            AwsService::of_request(&h).unwrap(),
            AwsService::ServiceDiscovery
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "AmazonSSM.CreateActivation".parse().unwrap(),
        );
        assert_eq!(AwsService::of_request(&h).unwrap(), AwsService::Ssm);
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "CertificateManager.ListCertificates".parse().unwrap(),
        );
        assert_eq!(AwsService::of_request(&h).unwrap(), AwsService::Acm);
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            "GraniteServiceVersion20100801.DescribeAlarms"
                .parse()
                .unwrap(),
        );
        assert_eq!(AwsService::of_request(&h).unwrap(), AwsService::CloudWatch);
    }
}
