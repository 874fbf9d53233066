//! The container instances one service pass looks at: the cluster's own, found by id in
//! the state's instance map as the pass asks for them, and, for a service with tasks on
//! the Fargate pool, the pool's nodes.
//!
//! A pass used to gather every instance of the cluster into a map before it began; with
//! 10,000 instances that cost more than everything else a pass of a 100-task service
//! does, and every pass paid it. Now a pass pays per instance it looks up (its own
//! tasks' instances), and only the rare questions about the whole cluster (placement
//! failures, availability-zone rebalancing) walk it.

use std::collections::HashMap;

use crate::state::{InstanceRecord, MemberKey, Scope, State};

/// The instances a pass can see, by id.
pub(super) struct PassInstances<'a> {
    state: &'a State,
    scope: &'a Scope,
    /// The cluster whose own instances the pass sees (none for a service wholly on the
    /// Fargate pool).
    cluster: Option<&'a str>,
    /// The Fargate pool's nodes of the scope, by id (empty unless the service has tasks
    /// on the pool). The pools are spread over pseudo-clusters, so they are gathered once.
    pool: HashMap<&'a str, &'a InstanceRecord>,
}

impl<'a> PassInstances<'a> {
    /// The instances of `cluster` (when `own`) and of the scope's Fargate pool (when `pool`).
    pub(super) fn new(
        state: &'a State,
        scope: &'a Scope,
        cluster: &'a str,
        (pool, own): (bool, bool),
    ) -> Self {
        let pool = if pool {
            crate::fargate::pool_instances(state, scope)
                .map(|i| (i.id.as_str(), i))
                .collect()
        } else {
            HashMap::new()
        };
        PassInstances {
            state,
            scope,
            cluster: own.then_some(cluster),
            pool,
        }
    }

    /// The instance with this id, if the pass can see it.
    pub(super) fn get(&self, id: &str) -> Option<&'a InstanceRecord> {
        self.pool.get(id).copied().or_else(|| {
            let cluster = self.cluster?;
            self.state
                .instances
                .get(&MemberKey::new(self.scope, cluster, id))
        })
    }

    /// Every instance the pass can see (the pool's, then the cluster's): O(instances),
    /// for questions about the whole cluster only.
    pub(super) fn values(&self) -> impl Iterator<Item = &'a InstanceRecord> + '_ {
        self.pool.values().copied().chain(
            self.cluster
                .into_iter()
                .flat_map(|c| self.state.instances_in(self.scope, c)),
        )
    }
}
