//! The few AWS Systems Manager (`ssm`) shapes flotilla serves: the hybrid activation
//! operations (CreateActivation, DescribeActivations, DeleteActivation) that ECS Anywhere
//! uses to admit an external node. Hand-written from botocore's
//! `ssm/2014-11-06/service-2.json` (JSON 1.1, `X-Amz-Target: AmazonSSM.<Operation>`,
//! PascalCase members) for just these operations; the rest of SSM is not served.

use serde::{Deserialize, Serialize};

use crate::wire::{Required, Timestamp};

/// The `X-Amz-Target` prefix of SSM operations.
pub const TARGET_PREFIX: &str = "AmazonSSM";

/// The SSM operations flotilla serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsmOperation {
    /// Creates an activation (an id and a code a node registers with).
    CreateActivation,
    /// Lists activations, with filters and paging.
    DescribeActivations,
    /// Deletes an activation; nodes registered with it stay registered.
    DeleteActivation,
}

impl SsmOperation {
    /// Every served operation.
    pub const ALL: [SsmOperation; 3] = [
        SsmOperation::CreateActivation,
        SsmOperation::DescribeActivations,
        SsmOperation::DeleteActivation,
    ];

    /// The operation's name as `X-Amz-Target` spells it.
    pub fn name(self) -> &'static str {
        match self {
            SsmOperation::CreateActivation => "CreateActivation",
            SsmOperation::DescribeActivations => "DescribeActivations",
            SsmOperation::DeleteActivation => "DeleteActivation",
        }
    }

    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<SsmOperation> {
        SsmOperation::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A tag (`Key` 1–128, `Value` 0–256 characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// `RegistrationMetadata` item ("reserved for internal use"; accepted and ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistrationMetadataItem {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// CreateActivation input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateActivationRequest {
    /// Description (0–256 characters).
    pub description: Option<String>,
    /// The name registered nodes get (0–256 characters).
    pub default_instance_name: Option<String>,
    /// The IAM role the nodes assume (required, at most 64 characters; kept as given).
    pub iam_role: Option<String>,
    /// How many nodes may register with it (1–1000, default 1).
    pub registration_limit: Option<i64>,
    /// When it expires (default: 24 hours from now; at most 30 days from now).
    pub expiration_date: Option<Timestamp>,
    /// Tags (at most 1000).
    pub tags: Option<Vec<Tag>>,
    /// Reserved for internal use; accepted and ignored.
    pub registration_metadata: Option<Vec<RegistrationMetadataItem>>,
}

impl Required for CreateActivationRequest {
    fn missing_required(&self) -> Option<&'static str> {
        self.iam_role.is_none().then_some("IamRole")
    }
}

/// CreateActivation output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateActivationResult {
    /// The activation id (a UUID).
    pub activation_id: String,
    /// The activation code (shown once: the server keeps only its hash).
    pub activation_code: String,
}

/// A DescribeActivations filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsFilter {
    /// `ActivationIds`, `DefaultInstanceName` or `IamRole`.
    pub filter_key: Option<String>,
    /// The values, any of which matches.
    pub filter_values: Option<Vec<String>>,
}

/// DescribeActivations input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsRequest {
    /// Filters (all must match).
    pub filters: Option<Vec<DescribeActivationsFilter>>,
    /// Page size (1–50, default 50).
    pub max_results: Option<i64>,
    /// The previous page's token.
    pub next_token: Option<String>,
}

impl Required for DescribeActivationsRequest {
    fn missing_required(&self) -> Option<&'static str> {
        None
    }
}

/// An activation as DescribeActivations shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activation {
    /// The id.
    pub activation_id: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The name registered nodes get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_instance_name: Option<String>,
    /// The IAM role.
    pub iam_role: Option<String>,
    /// Most registrations.
    pub registration_limit: Option<i64>,
    /// Registrations so far.
    pub registrations_count: Option<i64>,
    /// When it expires.
    pub expiration_date: Option<Timestamp>,
    /// Whether it has expired.
    pub expired: Option<bool>,
    /// When it was created.
    pub created_date: Option<Timestamp>,
    /// Tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
}

/// DescribeActivations output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeActivationsResult {
    /// One page of activations, oldest first.
    pub activation_list: Vec<Activation>,
    /// The next page's token, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// DeleteActivation input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteActivationRequest {
    /// The activation's id (required).
    pub activation_id: Option<String>,
}

impl Required for DeleteActivationRequest {
    fn missing_required(&self) -> Option<&'static str> {
        self.activation_id.is_none().then_some("ActivationId")
    }
}

/// DeleteActivation output (empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeleteActivationResult {}
