//! The ECS cluster query language.
//!
//! Cluster queries select container instances. ECS uses the same expressions
//! in `ListContainerInstances --filter`, in `memberOf` placement constraints
//! of `RunTask` and `CreateService`, and in task definitions.
//!
//! # Syntax
//!
//! ```text
//! expr       := or
//! or         := and (("or" | "||") and)*
//! and        := unary (("and" | "&&") unary)*
//! unary      := ("not" | "!") unary | "(" expr ")" | comparison
//! comparison := subject operator [argument]
//! subject    := "attribute:" NAME | "task:group" | "agentConnected" | "agentVersion"
//!             | "ec2InstanceId" | "registeredAt" | "runningTasksCount"
//! argument   := VALUE | PATTERN | "[" VALUE ("," VALUE)* "]" | "(" VALUE ("," VALUE)* ")"
//! VALUE      := bare word | 'single quoted' | "double quoted"
//! PATTERN    := (after =~ / !~) a quoted value, or raw text up to whitespace,
//!               `&&`, `||` or an unbalanced `)`, outside (...) and [...]
//! ```
//!
//! A bare word ends at whitespace, `(`, `)`, `[`, `]`, `,`, a quote or an
//! operator symbol, so values such as `service:web` or `t2.micro` need no
//! quotes, and `t[23]\..*` or `(t2|m5)\..*` work unquoted after `=~`.
//!
//! Operators, with their word aliases: `==` `equals`, `!=` `not_equals`,
//! `>` `greater_than`, `>=` `greater_than_equal`, `<` `less_than`,
//! `<=` `less_than_equal`, `exists`, `!exists` `not_exists`, `in`,
//! `!in` `not_in`, `=~` `matches`, `!~` `not_matches`. Keywords (`and`, `or`,
//! `not` and the word operators) are case-insensitive; subjects are not.
//!
//! Which operators a subject accepts follows the ECS developer guide:
//!
//! | subject | operators |
//! | --- | --- |
//! | `attribute:NAME` | all |
//! | `task:group` | `==` `!=` `in` `!in` `=~` `!~` `exists` `!exists` |
//! | `agentConnected`, `ec2InstanceId` | `==` `!=` `in` `!in` `=~` `!~` |
//! | `agentVersion`, `registeredAt`, `runningTasksCount` | `==` `!=` `>` `>=` `<` `<=` |
//!
//! # Semantics
//!
//! - `=~` is a *full* match (like Java's `Pattern.matches`, which ECS
//!   documents): `attribute:ecs.instance-type =~ t2.*` matches `t2.micro` but
//!   not `xt2.micro`. Patterns use the `regex` crate's syntax, which agrees
//!   with Java's for the common subset (no look-around or back-references).
//! - The negated operators (`!=`, `!in`, `!~`, `!exists`) are exactly
//!   `not (positive form)`. An instance without the attribute therefore
//!   satisfies `attribute:x != v`.
//! - `task:group` is evaluated over the groups of the tasks on the instance:
//!   `task:group == g` holds when *any* task there is in group `g`, and
//!   `task:group != g` when none is (the usual anti-affinity idiom).
//! - Ordered comparisons on attributes compare numerically when both sides
//!   are numbers, as dotted versions when both are dotted versions, and as
//!   strings otherwise.
//! - `registeredAt` arguments accept `2018-06-18T22:28:28+00:00`,
//!   `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28` (UTC) and `2018-06-18`.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use scheduler::query::{InstanceFacts, Query};
//!
//! let q = Query::parse("attribute:ecs.instance-type =~ t2.* and task:group != database").unwrap();
//! let mut attributes = BTreeMap::new();
//! attributes.insert("ecs.instance-type".to_string(), Some("t2.micro".to_string()));
//! let facts = InstanceFacts { attributes: &attributes, ..InstanceFacts::default() };
//! assert!(q.matches(&facts));
//! ```
//!
//! # Layout
//!
//! - this file: [`Query`] (parse, match, serde) and [`MAX_EXPRESSION_LEN`];
//! - `ast.rs`: the syntax tree ([`Expr`], [`Comparison`], [`Subject`],
//!   [`Operator`], [`Argument`]);
//! - `lexer.rs`: tokens, lexed on demand, and raw `=~` patterns;
//! - `parser.rs`: recursive descent from the grammar above to an [`Expr`];
//! - `eval.rs`: [`QueryTarget`], [`InstanceFacts`] and comparison semantics;
//! - `time.rs`: the `registeredAt` date formats ([`parse_timestamp`]);
//! - `error.rs`: [`QueryError`].

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;
mod time;

use std::fmt;
use std::str::FromStr;

pub use ast::{Argument, Comparison, Expr, Operator, Subject};
pub use error::QueryError;
pub use eval::{InstanceFacts, QueryTarget};
pub use time::parse_timestamp;

/// The longest expression accepted, in bytes (the ECS limit for a
/// placement constraint expression).
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// Deepest nesting of `(`, `!` and `not` an expression may have: the parser and the
/// evaluator recurse once per level, so a bound keeps a 2,000-byte expression of
/// `((((…` from overflowing a thread's stack. ECS documents no limit; real expressions
/// nest two or three levels.
pub const MAX_NESTING: usize = 32;

/// A parsed cluster query. Parsing validates everything that can be checked
/// without an instance (subjects, operators, argument formats, patterns), so
/// evaluation cannot fail.
#[derive(Debug, Clone)]
pub struct Query {
    source: String,
    expr: Expr,
}

impl Query {
    /// Parses an expression.
    ///
    /// # Errors
    ///
    /// A [`QueryError`] naming the problem and its position.
    pub fn parse(source: &str) -> Result<Query, QueryError> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(QueryError::TooLong { len: source.len() });
        }
        if source.trim().is_empty() {
            return Err(QueryError::Empty);
        }
        let expr = parser::parse_expr(source)?;
        Ok(Query {
            source: source.to_string(),
            expr,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the query selects the target.
    pub fn matches<T: QueryTarget + ?Sized>(&self, target: &T) -> bool {
        eval::eval(&self.expr, target)
    }

    /// Whether the result can change when tasks are placed or stopped
    /// (the query mentions `task:group` or `runningTasksCount`). A query for
    /// which this is `false` depends only on the instance itself, so a
    /// placement pass may evaluate it once per instance.
    pub fn depends_on_tasks(&self) -> bool {
        fn walk(e: &Expr) -> bool {
            match e {
                Expr::And(v) | Expr::Or(v) => v.iter().any(walk),
                Expr::Not(inner) => walk(inner),
                Expr::Compare(c) => {
                    matches!(c.subject, Subject::TaskGroup | Subject::RunningTasksCount)
                }
            }
        }
        walk(&self.expr)
    }
}

/// Serialized as the expression string; deserializing parses it again.
impl serde::Serialize for Query {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Query {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Query::parse(&source).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Query {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Query::parse(s)
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}
