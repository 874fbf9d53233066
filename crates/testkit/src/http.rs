//! ECS calls to a running server over HTTP: awsJson 1.1 `POST /` with `X-Amz-Target`,
//! unsigned (a server without `--credentials` accepts any signature, or none).
//!
//! `op` is an ECS operation name (`"CreateCluster"`, sent as
//! `AmazonEC2ContainerServiceV20141113.CreateCluster`) or a whole target with its prefix
//! (`"FlotillaAgentV1.PollTasks"`). Answers that are not JSON come back as
//! [`Value::String`] holding the body.

use reqwest::header::{CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::ecs;

/// The `X-Amz-Target` prefix of the ECS operations.
pub const ECS_TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// The content type of every awsJson 1.1 request.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The `X-Amz-Target` of `op`: as given if it has a prefix, the ECS one otherwise.
pub fn target(op: &str) -> String {
    if op.contains('.') {
        op.to_owned()
    } else {
        format!("{ECS_TARGET_PREFIX}.{op}")
    }
}

/// The headers of a request for `op`.
fn headers(op: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-amz-target",
        HeaderValue::from_str(&target(op)).expect("a target is a header value"),
    );
    h.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
    h
}

fn parse(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// `op` with `body`: the HTTP status and the answer.
///
/// # Errors
/// The request could not be sent or its answer not read (the server is gone, say).
pub async fn try_post(
    http: &reqwest::Client,
    endpoint: &str,
    op: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let resp = http
        .post(endpoint)
        .headers(headers(op))
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, parse(resp.text().await?)))
}

/// [`try_post`] that must reach the server; panics otherwise.
pub async fn post(http: &reqwest::Client, endpoint: &str, op: &str, body: &Value) -> (u16, Value) {
    try_post(http, endpoint, op, body)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// `op` with `body`: the answer if its status is 2xx.
///
/// # Errors
/// The request failed, or the answer's status and body when it is not 2xx.
pub async fn try_call(
    http: &reqwest::Client,
    endpoint: &str,
    op: &str,
    body: &Value,
) -> Result<Value, String> {
    match try_post(http, endpoint, op, body).await {
        Ok((status, v)) if (200..300).contains(&status) => Ok(v),
        Ok((status, v)) => Err(format!("{status} {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// [`try_call`] that must succeed; panics with the operation and the answer otherwise.
pub async fn call(http: &reqwest::Client, endpoint: &str, op: &str, body: &Value) -> Value {
    try_call(http, endpoint, op, body)
        .await
        .unwrap_or_else(|e| panic!("{op}: {e}"))
}

/// RegisterContainerInstance into `cluster` with [`ecs::resources`]`(cpu, memory)` and no
/// identity document; the container instance's ARN. Panics unless it succeeds.
pub async fn register_instance(
    http: &reqwest::Client,
    endpoint: &str,
    cluster: &str,
    cpu: i64,
    memory: i64,
) -> String {
    let body = json!({"cluster": cluster, "totalResources": ecs::resources(cpu, memory)});
    let v = call(http, endpoint, "RegisterContainerInstance", &body).await;
    v["containerInstance"]["containerInstanceArn"]
        .as_str()
        .unwrap_or_else(|| panic!("RegisterContainerInstance answered {v}"))
        .to_owned()
}

/// Cluster `c`, task definition `f` (one 32 MiB busybox container `a`) and `instances`
/// container instances of 1024 CPU units and 1024 MiB: the ARNs of the instances.
pub async fn cluster_with_instances(
    http: &reqwest::Client,
    endpoint: &str,
    instances: usize,
) -> Vec<String> {
    call(
        http,
        endpoint,
        "CreateCluster",
        &json!({"clusterName": "c"}),
    )
    .await;
    call(
        http,
        endpoint,
        "RegisterTaskDefinition",
        &json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 32}]}),
    )
    .await;
    let mut arns = Vec::new();
    for _ in 0..instances {
        arns.push(register_instance(http, endpoint, "c", 1024, 1024).await);
    }
    arns
}

/// [`post`] on a blocking client: the HTTP status and the answer; panics if the server
/// cannot be reached.
pub fn post_blocking(
    http: &reqwest::blocking::Client,
    endpoint: &str,
    op: &str,
    body: &Value,
) -> (u16, Value) {
    let resp = http
        .post(endpoint)
        .headers(headers(op))
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("{op}: {e}"));
    let status = resp.status().as_u16();
    (
        status,
        parse(resp.text().unwrap_or_else(|e| panic!("{op}: {e}"))),
    )
}

/// `GET <endpoint>/healthz`: the status and the body; status 0 when nothing answers.
pub fn healthz(http: &reqwest::blocking::Client, endpoint: &str) -> (u16, String) {
    match http.get(format!("{endpoint}/healthz")).send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// A listener on a free loopback port, for a server under test, and its endpoint
/// `http://127.0.0.1:<port>`.
pub async fn loopback() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    (listener, format!("http://{addr}"))
}

/// A loopback TCP port that was free a moment ago (another process may take it before
/// the caller binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_get_the_ecs_prefix_unless_they_have_one() {
        assert_eq!(
            target("ListClusters"),
            "AmazonEC2ContainerServiceV20141113.ListClusters"
        );
        assert_eq!(
            target("FlotillaAgentV1.PollTasks"),
            "FlotillaAgentV1.PollTasks"
        );
    }

    #[test]
    fn answers_that_are_not_json_are_kept_as_text() {
        assert_eq!(parse("{\"a\":1}".into())["a"], 1);
        assert_eq!(parse("no json".into()), Value::String("no json".into()));
    }

    #[test]
    fn free_ports_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }
}
