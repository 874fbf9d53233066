//! Placement specifications: validated strategies and constraints.
//!
//! The wire shapes ([`PlacementStrategy`], [`PlacementConstraint`],
//! [`TaskDefinitionPlacementConstraint`]) have every field optional; this
//! module turns them into a [`PlacementSpec`] whose strategies and constraints
//! are known to be well formed, with the limits ECS enforces.

use model::wire::{
    PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType,
    TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType,
};

use serde::{Deserialize, Serialize};

use crate::query::{Query, QueryError};

/// The most strategies ECS accepts in one request or service.
pub const MAX_STRATEGIES: usize = 5;
/// The most constraints ECS accepts for one task, counting the task
/// definition's and the request's together.
pub const MAX_CONSTRAINTS: usize = 10;

/// Why a placement specification was rejected. Messages are suitable for an
/// ECS `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// More than [`MAX_STRATEGIES`] strategies.
    #[error("too many placement strategies: {count} given, at most {MAX_STRATEGIES} allowed")]
    TooManyStrategies {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_CONSTRAINTS`] constraints.
    #[error("too many placement constraints: {count} given, at most {MAX_CONSTRAINTS} allowed")]
    TooManyConstraints {
        /// How many were given (task definition and request together).
        count: usize,
    },
    /// A strategy without a `type`.
    #[error("placementStrategy[{index}]: type is required")]
    StrategyTypeMissing {
        /// Position in the list.
        index: usize,
    },
    /// `spread` without a `field`.
    #[error(
        "placementStrategy[{index}]: spread requires a field such as instanceId or attribute:ecs.availability-zone"
    )]
    SpreadFieldMissing {
        /// Position in the list.
        index: usize,
    },
    /// A `spread` field that is neither `instanceId`/`host` nor `attribute:<name>`.
    #[error(
        "placementStrategy[{index}]: invalid spread field `{field}`: expected instanceId, host or attribute:<name>"
    )]
    SpreadFieldInvalid {
        /// Position in the list.
        index: usize,
        /// The field as given.
        field: String,
    },
    /// `binpack` without a `field`.
    #[error("placementStrategy[{index}]: binpack requires a field: cpu or memory")]
    BinpackFieldMissing {
        /// Position in the list.
        index: usize,
    },
    /// A `binpack` field other than `cpu` or `memory`.
    #[error("placementStrategy[{index}]: invalid binpack field `{field}`: expected cpu or memory")]
    BinpackFieldInvalid {
        /// Position in the list.
        index: usize,
        /// The field as given.
        field: String,
    },
    /// A constraint without a `type`.
    #[error("placementConstraint[{index}]: type is required")]
    ConstraintTypeMissing {
        /// Position in the combined list.
        index: usize,
    },
    /// `memberOf` without an expression.
    #[error("placementConstraint[{index}]: memberOf requires an expression")]
    ExpressionMissing {
        /// Position in the combined list.
        index: usize,
    },
    /// `distinctInstance` with an expression.
    #[error("placementConstraint[{index}]: distinctInstance does not take an expression")]
    UnexpectedExpression {
        /// Position in the combined list.
        index: usize,
    },
    /// A `memberOf` expression that does not parse.
    #[error("placementConstraint[{index}]: invalid expression: {source}")]
    InvalidExpression {
        /// Position in the combined list.
        index: usize,
        /// The parse error, with its position in the expression.
        source: QueryError,
    },
}

/// What `binpack` packs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinpackField {
    /// Remaining CPU units.
    Cpu,
    /// Remaining memory (MiB).
    Memory,
}

/// What `spread` balances over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpreadField {
    /// Each container instance is its own bucket (`instanceId` or `host`).
    InstanceId,
    /// Instances are bucketed by the value of this attribute
    /// (`attribute:ecs.availability-zone` → `ecs.availability-zone`).
    /// Instances without the attribute share one extra bucket.
    Attribute(String),
}

/// One validated placement strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Prefer the instance with the least remaining `field`.
    Binpack(BinpackField),
    /// Prefer the bucket holding the fewest tasks of the request's group.
    Spread(SpreadField),
    /// Pick uniformly at random (from the seed). Strategies after a `random`
    /// can never break a tie and are ignored.
    Random,
}

/// One validated placement constraint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Constraint {
    /// No two tasks of the same group on one instance.
    DistinctInstance,
    /// Only instances the query selects.
    MemberOf(Query),
}

/// Validated strategies (in priority order) and constraints for one
/// placement call. An empty strategy list means "no preference": the choice
/// among feasible instances is then made by the seeded tie-break alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// Strategies, most significant first.
    pub strategies: Vec<Strategy>,
    /// Constraints; all must hold.
    pub constraints: Vec<Constraint>,
}

impl PlacementSpec {
    /// Validates the wire shapes of a `RunTask`/`CreateService` request
    /// together with the task definition's constraints (which come first in
    /// error indices). An empty strategy list stays empty; callers apply the
    /// ECS default with [`PlacementSpec::or_default_strategies`].
    ///
    /// # Errors
    ///
    /// A [`SpecError`] for the first invalid entry or exceeded limit.
    pub fn from_wire(
        strategies: &[PlacementStrategy],
        task_definition_constraints: &[TaskDefinitionPlacementConstraint],
        constraints: &[PlacementConstraint],
    ) -> Result<PlacementSpec, SpecError> {
        if strategies.len() > MAX_STRATEGIES {
            return Err(SpecError::TooManyStrategies {
                count: strategies.len(),
            });
        }
        let total = task_definition_constraints.len() + constraints.len();
        if total > MAX_CONSTRAINTS {
            return Err(SpecError::TooManyConstraints { count: total });
        }
        let strategies = strategies
            .iter()
            .enumerate()
            .map(|(index, s)| parse_strategy(index, s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut parsed = Vec::with_capacity(total);
        for (index, c) in task_definition_constraints.iter().enumerate() {
            let kind = match c.r#type {
                Some(TaskDefinitionPlacementConstraintType::MemberOf) => {
                    PlacementConstraintType::MemberOf
                }
                None => return Err(SpecError::ConstraintTypeMissing { index }),
            };
            parsed.push(parse_constraint(index, kind, c.expression.as_deref())?);
        }
        let offset = task_definition_constraints.len();
        for (i, c) in constraints.iter().enumerate() {
            let index = offset + i;
            let kind = c.r#type.ok_or(SpecError::ConstraintTypeMissing { index })?;
            parsed.push(parse_constraint(index, kind, c.expression.as_deref())?);
        }
        Ok(PlacementSpec {
            strategies,
            constraints: parsed,
        })
    }

    /// The strategies ECS uses for service tasks when the service names
    /// none: `spread(attribute:ecs.availability-zone)`.
    pub fn service_default_strategies() -> Vec<Strategy> {
        vec![Strategy::Spread(SpreadField::Attribute(
            "ecs.availability-zone".to_string(),
        ))]
    }

    /// The strategies ECS uses for standalone (`RunTask`) tasks when the
    /// request names none: `random`.
    pub fn run_task_default_strategies() -> Vec<Strategy> {
        vec![Strategy::Random]
    }

    /// Fills in `defaults` when no strategy was given (see
    /// [`PlacementSpec::service_default_strategies`] and
    /// [`PlacementSpec::run_task_default_strategies`]).
    pub fn or_default_strategies(mut self, defaults: Vec<Strategy>) -> PlacementSpec {
        if self.strategies.is_empty() {
            self.strategies = defaults;
        }
        self
    }

    /// Whether any constraint is `distinctInstance`.
    pub fn distinct_instance(&self) -> bool {
        self.constraints
            .iter()
            .any(|c| matches!(c, Constraint::DistinctInstance))
    }

    /// The `memberOf` queries.
    pub fn member_of(&self) -> impl Iterator<Item = &Query> {
        self.constraints.iter().filter_map(|c| match c {
            Constraint::MemberOf(q) => Some(q),
            Constraint::DistinctInstance => None,
        })
    }

    /// The strategies that can influence a choice: everything up to and
    /// including the first `random`.
    pub fn effective_strategies(&self) -> &[Strategy] {
        match self.strategies.iter().position(|s| *s == Strategy::Random) {
            Some(i) => &self.strategies[..=i],
            None => &self.strategies,
        }
    }
}

fn parse_strategy(index: usize, s: &PlacementStrategy) -> Result<Strategy, SpecError> {
    match s.r#type {
        None => Err(SpecError::StrategyTypeMissing { index }),
        // ECS ignores a field on random.
        Some(PlacementStrategyType::Random) => Ok(Strategy::Random),
        Some(PlacementStrategyType::Binpack) => {
            let field = s
                .field
                .as_deref()
                .ok_or(SpecError::BinpackFieldMissing { index })?;
            if field.eq_ignore_ascii_case("cpu") {
                Ok(Strategy::Binpack(BinpackField::Cpu))
            } else if field.eq_ignore_ascii_case("memory") {
                Ok(Strategy::Binpack(BinpackField::Memory))
            } else {
                Err(SpecError::BinpackFieldInvalid {
                    index,
                    field: field.to_string(),
                })
            }
        }
        Some(PlacementStrategyType::Spread) => {
            let field = s
                .field
                .as_deref()
                .ok_or(SpecError::SpreadFieldMissing { index })?;
            parse_spread_field(field).ok_or_else(|| SpecError::SpreadFieldInvalid {
                index,
                field: field.to_string(),
            })
        }
    }
}

fn parse_spread_field(field: &str) -> Option<Strategy> {
    if field.eq_ignore_ascii_case("instanceId") || field.eq_ignore_ascii_case("host") {
        return Some(Strategy::Spread(SpreadField::InstanceId));
    }
    let name = field.strip_prefix("attribute:")?;
    if name.is_empty() {
        return None;
    }
    Some(Strategy::Spread(SpreadField::Attribute(name.to_string())))
}

fn parse_constraint(
    index: usize,
    kind: PlacementConstraintType,
    expression: Option<&str>,
) -> Result<Constraint, SpecError> {
    match kind {
        PlacementConstraintType::DistinctInstance => match expression {
            Some(e) if !e.trim().is_empty() => Err(SpecError::UnexpectedExpression { index }),
            _ => Ok(Constraint::DistinctInstance),
        },
        PlacementConstraintType::MemberOf => {
            let expr = expression
                .filter(|e| !e.trim().is_empty())
                .ok_or(SpecError::ExpressionMissing { index })?;
            Query::parse(expr)
                .map(Constraint::MemberOf)
                .map_err(|source| SpecError::InvalidExpression { index, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(t: PlacementStrategyType, field: Option<&str>) -> PlacementStrategy {
        PlacementStrategy {
            r#type: Some(t),
            field: field.map(str::to_string),
        }
    }

    fn constraint(t: PlacementConstraintType, expr: Option<&str>) -> PlacementConstraint {
        PlacementConstraint {
            r#type: Some(t),
            expression: expr.map(str::to_string),
        }
    }

    fn spec(
        s: &[PlacementStrategy],
        c: &[PlacementConstraint],
    ) -> Result<PlacementSpec, SpecError> {
        PlacementSpec::from_wire(s, &[], c)
    }

    #[test]
    fn parses_every_strategy() {
        let s = spec(
            &[
                strategy(
                    PlacementStrategyType::Spread,
                    Some("attribute:ecs.availability-zone"),
                ),
                strategy(PlacementStrategyType::Spread, Some("instanceId")),
                strategy(PlacementStrategyType::Spread, Some("host")),
                strategy(PlacementStrategyType::Binpack, Some("memory")),
                strategy(PlacementStrategyType::Binpack, Some("CPU")),
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(
            s.strategies,
            vec![
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Spread(SpreadField::InstanceId),
                Strategy::Spread(SpreadField::InstanceId),
                Strategy::Binpack(BinpackField::Memory),
                Strategy::Binpack(BinpackField::Cpu),
            ]
        );
        let r = spec(
            &[strategy(PlacementStrategyType::Random, Some("ignored"))],
            &[],
        )
        .expect("valid");
        assert_eq!(r.strategies, vec![Strategy::Random]);
    }

    #[test]
    fn strategy_errors() {
        let missing_type = PlacementStrategy {
            r#type: None,
            field: None,
        };
        assert_eq!(
            spec(&[missing_type], &[]).err(),
            Some(SpecError::StrategyTypeMissing { index: 0 })
        );
        assert_eq!(
            spec(&[strategy(PlacementStrategyType::Spread, None)], &[]).err(),
            Some(SpecError::SpreadFieldMissing { index: 0 })
        );
        let bad = spec(
            &[
                strategy(PlacementStrategyType::Random, None),
                strategy(PlacementStrategyType::Spread, Some("zone")),
            ],
            &[],
        )
        .err();
        assert_eq!(
            bad,
            Some(SpecError::SpreadFieldInvalid {
                index: 1,
                field: "zone".into()
            })
        );
        assert!(matches!(
            spec(
                &[strategy(PlacementStrategyType::Spread, Some("attribute:"))],
                &[]
            ),
            Err(SpecError::SpreadFieldInvalid { .. })
        ));
        assert_eq!(
            spec(&[strategy(PlacementStrategyType::Binpack, None)], &[]).err(),
            Some(SpecError::BinpackFieldMissing { index: 0 })
        );
        let e = spec(
            &[strategy(PlacementStrategyType::Binpack, Some("disk"))],
            &[],
        )
        .expect_err("rejected");
        assert_eq!(
            e.to_string(),
            "placementStrategy[0]: invalid binpack field `disk`: expected cpu or memory"
        );
        let six = vec![strategy(PlacementStrategyType::Random, None); 6];
        assert_eq!(
            spec(&six, &[]).err(),
            Some(SpecError::TooManyStrategies { count: 6 })
        );
    }

    #[test]
    fn parses_constraints_with_task_definition_first() {
        let td = [TaskDefinitionPlacementConstraint {
            r#type: Some(TaskDefinitionPlacementConstraintType::MemberOf),
            expression: Some("attribute:ecs.os-type == linux".into()),
        }];
        let s = PlacementSpec::from_wire(
            &[],
            &td,
            &[
                constraint(PlacementConstraintType::DistinctInstance, None),
                constraint(
                    PlacementConstraintType::MemberOf,
                    Some("attribute:ecs.instance-type =~ t2.*"),
                ),
            ],
        )
        .expect("valid");
        assert_eq!(s.constraints.len(), 3);
        assert!(s.distinct_instance());
        let exprs: Vec<_> = s.member_of().map(|q| q.source().to_string()).collect();
        assert_eq!(
            exprs,
            vec![
                "attribute:ecs.os-type == linux",
                "attribute:ecs.instance-type =~ t2.*"
            ]
        );
    }

    #[test]
    fn constraint_errors() {
        assert_eq!(
            spec(
                &[],
                &[PlacementConstraint {
                    r#type: None,
                    expression: None
                }]
            )
            .err(),
            Some(SpecError::ConstraintTypeMissing { index: 0 })
        );
        assert_eq!(
            spec(&[], &[constraint(PlacementConstraintType::MemberOf, None)]).err(),
            Some(SpecError::ExpressionMissing { index: 0 })
        );
        assert_eq!(
            spec(
                &[],
                &[constraint(PlacementConstraintType::MemberOf, Some("  "))]
            )
            .err(),
            Some(SpecError::ExpressionMissing { index: 0 })
        );
        assert_eq!(
            spec(
                &[],
                &[constraint(
                    PlacementConstraintType::DistinctInstance,
                    Some("attribute:a == b")
                )]
            )
            .err(),
            Some(SpecError::UnexpectedExpression { index: 0 })
        );
        let e = spec(
            &[],
            &[
                constraint(PlacementConstraintType::DistinctInstance, None),
                constraint(PlacementConstraintType::MemberOf, Some("attribute:a = b")),
            ],
        )
        .expect_err("rejected");
        assert!(matches!(e, SpecError::InvalidExpression { index: 1, .. }));
        assert!(e.to_string().contains("at position 12"), "{e}");
        let eleven = vec![constraint(PlacementConstraintType::DistinctInstance, None); 11];
        assert_eq!(
            spec(&[], &eleven).err(),
            Some(SpecError::TooManyConstraints { count: 11 })
        );
    }

    #[test]
    fn ecs_default_strategies() {
        let service = spec(&[], &[])
            .expect("valid")
            .or_default_strategies(PlacementSpec::service_default_strategies());
        assert_eq!(
            service.strategies,
            vec![Strategy::Spread(SpreadField::Attribute(
                "ecs.availability-zone".into()
            ))]
        );
        let run = spec(&[], &[])
            .expect("valid")
            .or_default_strategies(PlacementSpec::run_task_default_strategies());
        assert_eq!(run.strategies, vec![Strategy::Random]);
        let given = spec(
            &[strategy(PlacementStrategyType::Binpack, Some("cpu"))],
            &[],
        )
        .expect("valid")
        .or_default_strategies(PlacementSpec::run_task_default_strategies());
        assert_eq!(given.strategies, vec![Strategy::Binpack(BinpackField::Cpu)]);
    }

    #[test]
    fn strategies_after_random_are_ignored() {
        let s = spec(
            &[
                strategy(PlacementStrategyType::Spread, Some("instanceId")),
                strategy(PlacementStrategyType::Random, None),
                strategy(PlacementStrategyType::Binpack, Some("memory")),
            ],
            &[],
        )
        .expect("valid");
        assert_eq!(
            s.effective_strategies(),
            &[Strategy::Spread(SpreadField::InstanceId), Strategy::Random]
        );
    }
}
