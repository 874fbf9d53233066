//! The agent's requests are SigV4-signed with `aws-sigv4` and pass the server's
//! verifier (`--credentials`): the right key is accepted and acts in its account and the
//! client's region; a wrong secret or an unknown key is refused with AWS's codes.

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
