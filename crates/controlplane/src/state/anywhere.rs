//! ECS Anywhere records: SSM hybrid activations and the managed (external) nodes
//! registered with them, with the credentials each node was issued.
//!
//! They travel as [`DiscoveryRecord::Anywhere`](super::DiscoveryRecord) and live in
//! [`Discovery::anywhere`](super::Discovery): like Cloud Map's, they are the records of an
//! AWS API beside ECS on the one endpoint, and riding there keeps the store's record list
//! (the engine's `records_of`) unchanged. Store keys are `ssm-act|<account>|<region>|<id>`
//! and `ssm-node|<account>|<region>|<mi-id>`.
//!
//! No secret is stored in plain: an activation keeps the SHA-256 of its code, a node the
//! SHA-256 of its secret access key and the nonce it was derived from (see
//! `ops::anywhere` for the derivation and why a SigV4 verifier needs one).

use std::collections::BTreeMap;

use model::wire_ssm;
use serde::{Deserialize, Serialize};

use super::keys::Scope;

/// An SSM activation (`aws ssm create-activation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationRecord {
    /// Where it lives.
    pub scope: Scope,
    /// The activation id (a UUID).
    pub id: String,
    /// As DescribeActivations shows it (`RegistrationsCount` and `Expired` are kept
    /// current when read).
    pub activation: wire_ssm::Activation,
    /// Hex SHA-256 of the activation code; the code itself is not kept.
    pub code_sha256: String,
    /// How many nodes registered with it.
    #[serde(default)]
    pub registrations: i64,
}

/// A node's access key: its id, the nonce its secret was derived from, the secret's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeKey {
    /// `FLTN…` (see [`model::agent::NODE_ACCESS_KEY_PREFIX`]).
    pub access_key_id: String,
    /// Hex nonce the secret was derived from.
    pub nonce: String,
    /// Hex SHA-256 of the secret access key.
    pub secret_sha256: String,
    /// When it was issued (epoch seconds).
    pub issued_at: f64,
    /// When it stops being accepted (epoch seconds).
    pub expires_at: f64,
}

/// A managed (external) node: registered with an activation, identified by its
/// `mi-…` id, holding its own credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManagedNodeRecord {
    /// Where it acts (its activation's account and region).
    pub scope: Scope,
    /// `mi-` + 17 hex digits.
    pub id: String,
    /// The activation it registered with.
    pub activation_id: String,
    /// The activation's `DefaultInstanceName`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host name the node gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// When it registered (epoch seconds).
    pub registered_at: f64,
    /// Its current key.
    pub key: NodeKey,
    /// The key it rotated away from, accepted until its (shortened) `expires_at` so a
    /// node that lost a rotation's answer can still call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key: Option<NodeKey>,
}

/// Any ECS Anywhere record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "anywhere", content = "value")]
pub enum AnywhereRecord {
    /// An activation.
    Activation(ActivationRecord),
    /// A managed node.
    Node(ManagedNodeRecord),
}

impl AnywhereRecord {
    /// The record's key in the store.
    pub fn store_key(&self) -> String {
        let (kind, s, id) = match self {
            AnywhereRecord::Activation(r) => ("ssm-act", &r.scope, &r.id),
            AnywhereRecord::Node(r) => ("ssm-node", &r.scope, &r.id),
        };
        format!("{kind}|{}|{}|{id}", s.account, s.region)
    }
}

/// Every activation and managed node, with the index from access key id to node.
#[derive(Debug, Clone, Default)]
pub struct Anywhere {
    /// Activations by id (ids are UUIDs, unique across scopes; the record names its scope).
    pub activations: BTreeMap<String, ActivationRecord>,
    /// Managed nodes by `mi-` id (unique across scopes).
    pub nodes: BTreeMap<String, ManagedNodeRecord>,
    /// Access key id (current and previous keys) → `mi-` id; derived from `nodes`.
    pub keys: BTreeMap<String, String>,
}

impl Anywhere {
    /// Inserts or replaces a record.
    pub fn put(&mut self, record: AnywhereRecord) {
        match record {
            AnywhereRecord::Activation(r) => {
                self.activations.insert(r.id.clone(), r);
            }
            AnywhereRecord::Node(r) => {
                self.unindex(&r.id);
                for k in std::iter::once(&r.key).chain(r.previous_key.as_ref()) {
                    self.keys.insert(k.access_key_id.clone(), r.id.clone());
                }
                self.nodes.insert(r.id.clone(), r);
            }
        }
    }

    /// Removes a record.
    pub fn delete(&mut self, record: &AnywhereRecord) {
        match record {
            AnywhereRecord::Activation(r) => {
                self.activations.remove(&r.id);
            }
            AnywhereRecord::Node(r) => {
                self.unindex(&r.id);
                self.nodes.remove(&r.id);
            }
        }
    }

    fn unindex(&mut self, node: &str) {
        if let Some(old) = self.nodes.get(node) {
            for k in std::iter::once(&old.key).chain(old.previous_key.as_ref()) {
                self.keys.remove(&k.access_key_id);
            }
        }
    }

    /// Every record, as the store holds them.
    pub fn records(&self) -> impl Iterator<Item = AnywhereRecord> + '_ {
        self.activations
            .values()
            .cloned()
            .map(AnywhereRecord::Activation)
            .chain(self.nodes.values().cloned().map(AnywhereRecord::Node))
    }

    /// The node holding access key `access_key_id` (current or previous key).
    pub fn node_by_key(&self, access_key_id: &str) -> Option<&ManagedNodeRecord> {
        self.nodes.get(self.keys.get(access_key_id)?)
    }
}
