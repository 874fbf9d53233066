//! ECS Anywhere's records survive a restart of the control plane: an activation (its
//! registration count) and a managed node whose key still verifies, read back from the
//! store by a new `ControlPlane`; the store holds neither the activation code nor the
//! node's secret.

use std::sync::Arc;

use controlplane::ops::anywhere::{self, SsmError};
use controlplane::state::Scope;
use controlplane::{Change, ControlPlane, Ctx, EcsError, State};
use model::agent::RegisterExternalInstanceRequest;
use model::wire_ssm::CreateActivationRequest;
use store::{MemStore, Store};

/// Runs an SSM op through the writer; its refusal fails the test.
async fn ssm<T: Send + 'static>(
    cp: &ControlPlane,
    mut op: impl FnMut(&State, &mut Ctx) -> Result<(T, Vec<Change>), SsmError> + Send + 'static,
) -> T {
    cp.write(Scope::new("000000000000", "us-east-1"), move |s, ctx| {
        op(s, ctx).map_err(|e| EcsError::InvalidParameter(e.to_string()))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn activations_and_nodes_survive_a_restart() {
    let store = Arc::new(MemStore::new());
    let (act, node) = {
        let cp = ControlPlane::open(store.clone()).unwrap();
        let act = ssm(&cp, |s, ctx| {
            anywhere::create_activation(
                s,
                ctx,
                CreateActivationRequest {
                    iam_role: Some("ecsAnywhereRole".into()),
                    registration_limit: Some(3),
                    ..Default::default()
                },
            )
        })
        .await;
        let (id, code) = (act.activation_id.clone(), act.activation_code.clone());
        let node = ssm(&cp, move |s, ctx| {
            anywhere::register_external_instance(
                s,
                ctx,
                RegisterExternalInstanceRequest {
                    activation_id: id.clone(),
                    activation_code: code.clone(),
                    hostname: None,
                },
            )
        })
        .await;
        (act, node)
    };
    let text: String = store
        .load()
        .unwrap()
        .into_iter()
        .map(|(k, v)| format!("{k} {}\n", String::from_utf8_lossy(&v)))
        .collect();
    assert!(
        text.contains("ssm-act|") && text.contains("ssm-node|"),
        "{text}"
    );
    assert!(
        !text.contains(&act.activation_code),
        "the code is not stored"
    );
    assert!(
        !text.contains(&node.credentials.secret_access_key),
        "the node secret is not stored"
    );

    let cp = ControlPlane::open(store).unwrap();
    let now = node.credentials.expiration - 1.0;
    let (registrations, auth) = cp.read(|s| {
        (
            s.discovery.anywhere.activations[&act.activation_id].registrations,
            anywhere::node_auth(s, &node.credentials.access_key_id, now),
        )
    });
    assert_eq!(registrations, 1);
    let auth = auth.expect("the node's key verifies after a restart");
    assert_eq!(auth.secret, node.credentials.secret_access_key);
    assert_eq!(auth.node_id, node.managed_instance_id);
}
