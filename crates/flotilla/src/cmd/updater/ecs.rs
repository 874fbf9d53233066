//! The control plane calls the updater makes: the ECS operations (listing, describing,
//! draining and re-activating instances, attributes) and `FlotillaV1.CallHostApi` to
//! reach a node's host API, `GetUpdaterState`/`PutUpdaterState` for the updater's own
//! state. Each failure becomes a one-line error naming the call.

use agent::client::Client;
use agent::error::{AgentError, ApiCode};
use anyhow::{Context, bail};
use model::host::{CallHostApiRequest, CallHostApiResponse, HostCall};
use model::logs::USER_TARGET_PREFIX;
use model::updater_state::{GetUpdaterStateRequest, PutUpdaterStateRequest, UpdaterStateResponse};
use model::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The attribute that marks a node whose update halted the rollout (value: the target
/// version), for other tools to see.
pub const HALTED_ATTRIBUTE: &str = "flotilla.os-update.halted";

/// The control plane, for one cluster.
pub struct Ecs {
    client: Client,
    cluster: String,
}

impl Ecs {
    /// Calls for `cluster` through `client`.
    pub fn new(client: Client, cluster: &str) -> Ecs {
        Ecs {
            client,
            cluster: cluster.to_owned(),
        }
    }

    async fn ecs<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let target = format!("{}.{op}", wire::TARGET_PREFIX);
        self.client
            .call(&target, req)
            .await
            .with_context(|| format!("{op} on cluster {}", self.cluster))
    }

    fn cluster(&self) -> Option<String> {
        Some(self.cluster.clone())
    }

    /// Every container instance of the cluster, described (attributes included).
    pub async fn instances(&self) -> anyhow::Result<Vec<wire::ContainerInstance>> {
        let arns = list_all(async |next_token| {
            let page: wire::ListContainerInstancesResponse = self
                .ecs(
                    "ListContainerInstances",
                    &wire::ListContainerInstancesRequest {
                        cluster: self.cluster(),
                        next_token,
                        ..Default::default()
                    },
                )
                .await?;
            Ok((page.container_instance_arns, page.next_token))
        })
        .await?;
        describe_all(&arns, 100, async |chunk| {
            let page: wire::DescribeContainerInstancesResponse = self
                .ecs(
                    "DescribeContainerInstances",
                    &wire::DescribeContainerInstancesRequest {
                        cluster: self.cluster(),
                        container_instances: Some(chunk),
                        ..Default::default()
                    },
                )
                .await?;
            Ok(page.container_instances)
        })
        .await
    }

    /// The tasks placed on one instance that ECS still lists: those meant to run and
    /// those being stopped (a task still stopping counts as present).
    pub async fn tasks_on(&self, instance_arn: &str) -> anyhow::Result<Vec<wire::Task>> {
        let mut arns = Vec::new();
        for desired in [wire::DesiredStatus::Running, wire::DesiredStatus::Stopped] {
            arns.extend(
                list_all(async |next_token| {
                    let page: wire::ListTasksResponse = self
                        .ecs(
                            "ListTasks",
                            &wire::ListTasksRequest {
                                cluster: self.cluster(),
                                container_instance: Some(instance_arn.to_owned()),
                                desired_status: Some(desired),
                                next_token,
                                ..Default::default()
                            },
                        )
                        .await?;
                    Ok((page.task_arns, page.next_token))
                })
                .await?,
            );
        }
        describe_all(&arns, 100, async |chunk| {
            let page: wire::DescribeTasksResponse = self
                .ecs(
                    "DescribeTasks",
                    &wire::DescribeTasksRequest {
                        cluster: self.cluster(),
                        tasks: Some(chunk),
                        ..Default::default()
                    },
                )
                .await?;
            Ok(page.tasks)
        })
        .await
    }

    /// Every service of the cluster, described.
    pub async fn services(&self) -> anyhow::Result<Vec<wire::Service>> {
        let arns = list_all(async |next_token| {
            let page: wire::ListServicesResponse = self
                .ecs(
                    "ListServices",
                    &wire::ListServicesRequest {
                        cluster: self.cluster(),
                        next_token,
                        ..Default::default()
                    },
                )
                .await?;
            Ok((page.service_arns, page.next_token))
        })
        .await?;
        describe_all(&arns, 10, async |chunk| {
            let page: wire::DescribeServicesResponse = self
                .ecs(
                    "DescribeServices",
                    &wire::DescribeServicesRequest {
                        cluster: self.cluster(),
                        services: Some(chunk),
                        ..Default::default()
                    },
                )
                .await?;
            Ok(page.services)
        })
        .await
    }

    /// Sets one instance's status (DRAINING or ACTIVE); a per-instance failure is an error.
    pub async fn set_status(
        &self,
        instance_arn: &str,
        status: wire::ContainerInstanceStatus,
    ) -> anyhow::Result<()> {
        let wanted = format!("{status:?}").to_uppercase();
        let resp: wire::UpdateContainerInstancesStateResponse = self
            .ecs(
                "UpdateContainerInstancesState",
                &wire::UpdateContainerInstancesStateRequest {
                    cluster: self.cluster(),
                    container_instances: Some(vec![instance_arn.to_owned()]),
                    status: Some(status),
                },
            )
            .await?;
        if let Some(failure) = resp.failures.unwrap_or_default().into_iter().next() {
            bail!(
                "UpdateContainerInstancesState({wanted}) for {instance_arn}: {}{}",
                failure.reason.unwrap_or_default(),
                failure
                    .detail
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Marks `instance_arn` with [`HALTED_ATTRIBUTE`] = `target_version`.
    pub async fn put_halted_attribute(
        &self,
        instance_arn: &str,
        target_version: &str,
    ) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .ecs(
                "PutAttributes",
                &wire::PutAttributesRequest {
                    cluster: self.cluster(),
                    attributes: Some(vec![halted_attribute(instance_arn, Some(target_version))]),
                },
            )
            .await?;
        Ok(())
    }

    /// Removes [`HALTED_ATTRIBUTE`] from `instance_arn`.
    pub async fn delete_halted_attribute(&self, instance_arn: &str) -> anyhow::Result<()> {
        let _: serde_json::Value = self
            .ecs(
                "DeleteAttributes",
                &wire::DeleteAttributesRequest {
                    cluster: self.cluster(),
                    attributes: Some(vec![halted_attribute(instance_arn, None)]),
                },
            )
            .await?;
        Ok(())
    }

    /// One call to a node's host API (`FlotillaV1.CallHostApi`); the answer carries the
    /// host API's own status (404, 409, 423 are answers, not errors here).
    pub async fn host(
        &self,
        instance_arn: &str,
        call: HostCall,
    ) -> anyhow::Result<CallHostApiResponse> {
        let name = call.name();
        let target = format!("{USER_TARGET_PREFIX}.CallHostApi");
        self.client
            .call(
                &target,
                &CallHostApiRequest {
                    cluster: self.cluster(),
                    container_instance: instance_arn.to_owned(),
                    call,
                },
            )
            .await
            .with_context(|| format!("host API {name} on {instance_arn}"))
    }
}

/// Every ARN a List operation gives, page after page: `page` asks for the page at
/// `nextToken` (the first without one) and answers its ARNs and the next token.
async fn list_all(
    mut page: impl AsyncFnMut(Option<String>) -> anyhow::Result<(Option<Vec<String>>, Option<String>)>,
) -> anyhow::Result<Vec<String>> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let (more, next) = page(next_token).await?;
        arns.extend(more.unwrap_or_default());
        next_token = next;
        if next_token.is_none() {
            return Ok(arns);
        }
    }
}

/// What a Describe operation answers for all of `arns`, asked `chunk` ARNs at a time
/// (its limit), in order.
async fn describe_all<T>(
    arns: &[String],
    chunk: usize,
    mut describe: impl AsyncFnMut(Vec<String>) -> anyhow::Result<Option<Vec<T>>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in arns.chunks(chunk) {
        out.extend(describe(chunk.to_vec()).await?.unwrap_or_default());
    }
    Ok(out)
}

/// What a `PutUpdaterState` met.
pub enum PutOutcome {
    /// Stored: the document as it now stands.
    Stored(UpdaterStateResponse),
    /// Refused (`ConflictException`): the revision moved on, or another updater holds the
    /// lease; the message says which.
    Conflict(String),
}

impl Ecs {
    /// The cluster's updater state (`FlotillaV1.GetUpdaterState`).
    pub async fn updater_state(&self) -> anyhow::Result<UpdaterStateResponse> {
        self.client
            .call(
                &format!("{USER_TARGET_PREFIX}.GetUpdaterState"),
                &GetUpdaterStateRequest {
                    cluster: self.cluster(),
                },
            )
            .await
            .with_context(|| format!("GetUpdaterState on cluster {}", self.cluster))
    }

    /// Stores the cluster's updater state (`FlotillaV1.PutUpdaterState`); a conflict is
    /// an answer, not an error.
    pub async fn put_updater_state(
        &self,
        mut req: PutUpdaterStateRequest,
    ) -> anyhow::Result<PutOutcome> {
        req.cluster = self.cluster();
        match self
            .client
            .call(&format!("{USER_TARGET_PREFIX}.PutUpdaterState"), &req)
            .await
        {
            Ok(stored) => Ok(PutOutcome::Stored(stored)),
            Err(AgentError::Api {
                code: ApiCode::Other(code),
                message,
            }) if code == "ConflictException" => Ok(PutOutcome::Conflict(message)),
            Err(e) => {
                Err(e).with_context(|| format!("PutUpdaterState on cluster {}", self.cluster))
            }
        }
    }
}

fn halted_attribute(instance_arn: &str, value: Option<&str>) -> wire::Attribute {
    wire::Attribute {
        name: Some(HALTED_ATTRIBUTE.to_owned()),
        value: value.map(str::to_owned),
        target_type: Some(wire::TargetType::ContainerInstance),
        target_id: Some(instance_arn.to_owned()),
    }
}
