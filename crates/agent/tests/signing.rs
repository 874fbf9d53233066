//! The agent's requests are SigV4-signed with `aws-sigv4` and pass the server's
//! verifier (`--credentials`): the right key is accepted and acts in its account and the
//! client's region; a wrong secret or an unknown key is refused with AWS's codes.
//! A client given several endpoints moves past one that cannot be reached or is
//! unavailable, and never past one that answered with an API error.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent::AgentError;
use agent::client::{Client, Credentials};
use controlplane::ControlPlane;
use ecs_api::auth::{Credentials as ServerKeys, KeyEntry};
use ecs_api::{ApiConfig, router, serve};
use model::wire;
use store::MemStore;

async fn server_with_key(id: &str, secret: &str, account: &str) -> String {
    let cp = ControlPlane::open(Arc::new(MemStore::new())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let keys = ServerKeys {
        keys: BTreeMap::from([(
            id.to_owned(),
            KeyEntry {
                secret: secret.to_owned(),
                account: Some(account.to_owned()),
            },
        )]),
    };
    let app = router(
        cp,
        ApiConfig {
            account_id: "000000000000".into(),
            credentials: Some(keys),
            ..Default::default()
        },
    );
    tokio::spawn(serve(listener, app, std::future::pending()));
    endpoint
}

fn key(id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: id.into(),
        secret_access_key: secret.into(),
    }
}

async fn create_cluster(client: &Client) -> Result<wire::CreateClusterResponse, AgentError> {
    client
        .call(
            "AmazonEC2ContainerServiceV20141113.CreateCluster",
            &wire::CreateClusterRequest {
                cluster_name: Some("signed".into()),
                ..Default::default()
            },
        )
        .await
}

#[tokio::test]
async fn signed_requests_pass_the_servers_verifier() {
    let endpoint = server_with_key("AKIDNODE", "s3cret/with+chars", "123456789012").await;
    let client = Client::new(&endpoint, "eu-west-3", key("AKIDNODE", "s3cret/with+chars")).unwrap();
    let resp = create_cluster(&client)
        .await
        .expect("a correctly signed request");
    let arn = resp.cluster.unwrap().cluster_arn.unwrap();
    assert_eq!(arn, "arn:aws:ecs:eu-west-3:123456789012:cluster/signed");
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_refused() {
    let endpoint = server_with_key("AKIDNODE", "right", "123456789012").await;
    let wrong_secret = Client::new(&endpoint, "us-east-1", key("AKIDNODE", "wrong")).unwrap();
    match create_cluster(&wrong_secret).await {
        Err(AgentError::Api { code, .. }) => assert_eq!(code.as_str(), "InvalidSignatureException"),
        other => panic!("expected InvalidSignatureException, got {other:?}"),
    }
    let unknown = Client::new(&endpoint, "us-east-1", key("AKIDOTHER", "right")).unwrap();
    match create_cluster(&unknown).await {
        Err(AgentError::Api { code, .. }) => {
            assert_eq!(code.as_str(), "UnrecognizedClientException")
        }
        other => panic!("expected UnrecognizedClientException, got {other:?}"),
    }
}

/// A closed port on loopback: connecting to it is refused.
async fn closed_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    endpoint
}

/// A server that answers every request `503 Service Unavailable` (a proxy in front of a
/// stopped server), counting the requests.
async fn unavailable_endpoint() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (endpoint, hits)
}

#[tokio::test]
async fn a_client_moves_past_endpoints_that_are_down_or_unavailable() {
    let live = server_with_key("AKIDNODE", "right", "123456789012").await;
    let refused = closed_endpoint().await;
    let (busy, busy_hits) = unavailable_endpoint().await;
    let client = Client::new(
        &format!("{refused}, {busy}/,{live}"),
        "us-east-1",
        key("AKIDNODE", "right"),
    )
    .unwrap();
    assert_eq!(
        client.endpoint(),
        refused,
        "calls start at the first endpoint"
    );
    create_cluster(&client)
        .await
        .expect("the third endpoint answers");
    assert_eq!(client.endpoint(), live);
    assert_eq!(busy_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Clones share the endpoint they moved to: the next call goes straight there.
    create_cluster(&client.clone()).await.unwrap();
    assert_eq!(busy_hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Every endpoint down: the call fails (each tried once) with the last one's reason.
    let down = Client::new(
        &format!("{refused},{busy}"),
        "us-east-1",
        key("AKIDNODE", "right"),
    )
    .unwrap();
    match create_cluster(&down).await {
        Err(AgentError::ControlPlane(reason)) => assert!(reason.contains("503"), "{reason}"),
        other => panic!("expected the last endpoint's 503, got {other:?}"),
    }
    assert_eq!(busy_hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_api_error_is_an_answer_not_a_reason_to_move_on() {
    let refuses = server_with_key("AKIDOTHER", "x", "123456789012").await;
    let accepts = server_with_key("AKIDNODE", "right", "123456789012").await;
    let client = Client::new(
        &format!("{refuses},{accepts}"),
        "us-east-1",
        key("AKIDNODE", "right"),
    )
    .unwrap();
    match create_cluster(&client).await {
        Err(AgentError::Api { code, .. }) => {
            assert_eq!(code.as_str(), "UnrecognizedClientException")
        }
        other => panic!("expected the first server's refusal, got {other:?}"),
    }
    assert_eq!(client.endpoint(), refuses);
}

#[test]
fn bad_endpoint_lists_are_refused_clearly() {
    use agent::client::parse_endpoints;
    assert_eq!(
        parse_endpoints("http://a:1/, https://b:2").unwrap(),
        ["http://a:1", "https://b:2"]
    );
    for (value, says) in [
        ("", "names no URL"),
        (" , ", "names no URL"),
        (
            "http://a:1,b:2",
            "\"b:2\" is not an http:// or https:// URL",
        ),
    ] {
        let err = parse_endpoints(value).unwrap_err().to_string();
        assert!(err.contains(says), "{value:?}: {err}");
    }
    let many = vec!["http://a:1"; 17].join(",");
    assert!(
        parse_endpoints(&many)
            .unwrap_err()
            .to_string()
            .contains("at most 16")
    );
}
