//! The syntax tree a query parses into: [`Expr`] of [`Comparison`]s, each a
//! [`Subject`], an [`Operator`] and an [`Argument`] already converted to the
//! form the subject needs (so evaluation cannot fail).

use std::fmt;

use regex::Regex;

/// The thing a comparison looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `attribute:<name>`.
    Attribute(String),
    /// `task:group`.
    TaskGroup,
    /// `agentConnected`.
    AgentConnected,
    /// `agentVersion`.
    AgentVersion,
    /// `ec2InstanceId`.
    Ec2InstanceId,
    /// `registeredAt`.
    RegisteredAt,
    /// `runningTasksCount`.
    RunningTasksCount,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::TaskGroup => f.write_str("task:group"),
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `==`, `equals`.
    Eq,
    /// `!=`, `not_equals`.
    Ne,
    /// `>`, `greater_than`.
    Gt,
    /// `>=`, `greater_than_equal`.
    Ge,
    /// `<`, `less_than`.
    Lt,
    /// `<=`, `less_than_equal`.
    Le,
    /// `exists`.
    Exists,
    /// `!exists`, `not_exists`.
    NotExists,
    /// `in`.
    In,
    /// `!in`, `not_in`.
    NotIn,
    /// `=~`, `matches`.
    Matches,
    /// `!~`, `not_matches`.
    NotMatches,
}

impl Operator {
    /// The symbolic spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Exists => "exists",
            Operator::NotExists => "!exists",
            Operator::In => "in",
            Operator::NotIn => "!in",
            Operator::Matches => "=~",
            Operator::NotMatches => "!~",
        }
    }

    /// The operator a word alias (`equals`, `not_in`, …) names, in any case.
    pub(super) fn from_word(word: &str) -> Option<Operator> {
        let lower = word.to_ascii_lowercase();
        Some(match lower.as_str() {
            "equals" => Operator::Eq,
            "not_equals" => Operator::Ne,
            "greater_than" => Operator::Gt,
            "greater_than_equal" => Operator::Ge,
            "less_than" => Operator::Lt,
            "less_than_equal" => Operator::Le,
            "exists" => Operator::Exists,
            "not_exists" => Operator::NotExists,
            "in" => Operator::In,
            "not_in" => Operator::NotIn,
            "matches" => Operator::Matches,
            "not_matches" => Operator::NotMatches,
            _ => return None,
        })
    }

    /// The positive form and whether this operator negates it.
    pub(super) fn positive(self) -> (Operator, bool) {
        match self {
            Operator::Ne => (Operator::Eq, true),
            Operator::NotExists => (Operator::Exists, true),
            Operator::NotIn => (Operator::In, true),
            Operator::NotMatches => (Operator::Matches, true),
            other => (other, false),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison's argument, already converted to the form its subject needs.
#[derive(Debug, Clone)]
pub enum Argument {
    /// `exists` / `!exists` take none.
    None,
    /// A literal string.
    Value(String),
    /// An `in` / `!in` list.
    List(Vec<String>),
    /// A compiled, fully anchored `=~` / `!~` pattern.
    Pattern(Regex),
    /// A `runningTasksCount` number.
    Count(u64),
    /// An `agentVersion` (dotted numeric parts).
    Version(Vec<u64>),
    /// A `registeredAt` time, seconds since the Unix epoch.
    Time(i64),
}

/// One `subject operator [argument]` term.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What is compared.
    pub subject: Subject,
    /// How.
    pub operator: Operator,
    /// Against what.
    pub argument: Argument,
}

/// The syntax tree of a query.
#[derive(Debug, Clone)]
pub enum Expr {
    /// All must hold.
    And(Vec<Expr>),
    /// At least one must hold.
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A single comparison.
    Compare(Comparison),
}
