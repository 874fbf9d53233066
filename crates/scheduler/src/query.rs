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

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;

/// The longest expression accepted, in bytes (the ECS limit for a
/// placement constraint expression).
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// Why an expression could not be parsed. Every variant carries the byte
/// offset (0-based) into the expression where the problem was found, and its
/// message names that position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The expression is empty or blank. Callers that treat an empty filter
    /// as "everything" must check for that before parsing.
    #[error("empty expression")]
    Empty,
    /// The expression is longer than [`MAX_EXPRESSION_LEN`].
    #[error("expression is {len} bytes long; the limit is {MAX_EXPRESSION_LEN}")]
    TooLong {
        /// Length of the rejected expression.
        len: usize,
    },
    /// A quoted value has no closing quote.
    #[error("unterminated quoted value starting at position {position}")]
    UnterminatedQuote {
        /// Offset of the opening quote.
        position: usize,
    },
    /// A character that cannot start any token (for example a lone `=`).
    #[error("unexpected character `{found}` at position {position}{hint}")]
    UnexpectedChar {
        /// The offending character.
        found: char,
        /// Its offset.
        position: usize,
        /// A suggestion such as "; did you mean `==`?" (may be empty).
        hint: &'static str,
    },
    /// The expression ended where more was needed.
    #[error("unexpected end of expression at position {position}: expected {expected}")]
    UnexpectedEnd {
        /// What the parser was looking for.
        expected: &'static str,
        /// Offset of the end of the expression.
        position: usize,
    },
    /// A token that does not fit the grammar at this point.
    #[error("unexpected `{found}` at position {position}: expected {expected}")]
    UnexpectedToken {
        /// The token as written.
        found: String,
        /// What the parser was looking for.
        expected: &'static str,
        /// Offset of the token.
        position: usize,
    },
    /// The subject is not one ECS defines.
    #[error(
        "unknown subject `{subject}` at position {position}: expected attribute:<name>, task:group, \
         agentConnected, agentVersion, ec2InstanceId, registeredAt or runningTasksCount"
    )]
    UnknownSubject {
        /// The subject as written.
        subject: String,
        /// Its offset.
        position: usize,
    },
    /// `attribute:` with no name after the colon.
    #[error("missing attribute name after `attribute:` at position {position}")]
    EmptyAttributeName {
        /// Offset of the subject.
        position: usize,
    },
    /// The operator is valid but not for this subject.
    #[error(
        "operator `{operator}` at position {position} is not supported for subject `{subject}`"
    )]
    UnsupportedOperator {
        /// The operator as written.
        operator: String,
        /// The subject it was applied to.
        subject: String,
        /// Offset of the operator.
        position: usize,
    },
    /// An `=~`/`!~` pattern that does not compile.
    #[error("invalid pattern `{pattern}` at position {position}: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// Offset of the pattern.
        position: usize,
        /// The regex compiler's complaint.
        reason: String,
    },
    /// A `runningTasksCount` argument that is not a non-negative integer.
    #[error("invalid number `{value}` at position {position}: expected a non-negative integer")]
    InvalidNumber {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
    /// An `agentVersion` argument that is not a dotted version.
    #[error(
        "invalid version `{value}` at position {position}: expected a dotted version such as 1.14.5"
    )]
    InvalidVersion {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
    /// A `registeredAt` argument in none of the accepted date formats.
    #[error(
        "invalid date `{value}` at position {position}: expected 2018-06-18T22:28:28+00:00, \
         2018-06-18T22:28:28Z, 2018-06-18T22:28:28 or 2018-06-18"
    )]
    InvalidDate {
        /// The value as written.
        value: String,
        /// Its offset.
        position: usize,
    },
}

impl QueryError {
    /// Byte offset (0-based) of the problem in the expression, if it has one.
    pub fn position(&self) -> Option<usize> {
        match self {
            QueryError::Empty | QueryError::TooLong { .. } => None,
            QueryError::UnterminatedQuote { position }
            | QueryError::UnexpectedChar { position, .. }
            | QueryError::UnexpectedEnd { position, .. }
            | QueryError::UnexpectedToken { position, .. }
            | QueryError::UnknownSubject { position, .. }
            | QueryError::EmptyAttributeName { position }
            | QueryError::UnsupportedOperator { position, .. }
            | QueryError::InvalidPattern { position, .. }
            | QueryError::InvalidNumber { position, .. }
            | QueryError::InvalidVersion { position, .. }
            | QueryError::InvalidDate { position, .. } => Some(*position),
        }
    }
}

/// What a query is evaluated against: one container instance as the caller
/// sees it. Implemented by [`InstanceFacts`] and by the placement engine's
/// own view (which adds the tasks placed earlier in the same call).
pub trait QueryTarget {
    /// The attribute `name`: `None` when the instance does not have it,
    /// `Some(None)` when it has it without a value.
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    /// The EC2 instance ID (or the host's equivalent), if known.
    fn ec2_instance_id(&self) -> Option<&str>;
    /// Whether the agent is connected.
    fn agent_connected(&self) -> bool;
    /// The agent's version, such as `1.14.5`, if known.
    fn agent_version(&self) -> Option<&str>;
    /// When the instance registered, in seconds since the Unix epoch.
    fn registered_at(&self) -> Option<i64>;
    /// How many tasks are running on the instance.
    fn running_tasks_count(&self) -> u64;
    /// Whether `pred` holds for the group of any task on the instance.
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// A plain [`QueryTarget`] made of borrowed facts, for callers (such as
/// `ListContainerInstances --filter`) that have an instance record at hand.
#[derive(Debug, Clone, Copy)]
pub struct InstanceFacts<'a> {
    /// Attributes by name; a `None` value is an attribute without a value.
    pub attributes: &'a BTreeMap<String, Option<String>>,
    /// Groups of the tasks on the instance, one entry per task.
    pub task_groups: &'a [String],
    /// The EC2 instance ID.
    pub ec2_instance_id: Option<&'a str>,
    /// Whether the agent is connected.
    pub agent_connected: bool,
    /// The agent's version.
    pub agent_version: Option<&'a str>,
    /// Registration time in seconds since the Unix epoch.
    pub registered_at: Option<i64>,
    /// Number of running tasks.
    pub running_tasks_count: u64,
}

static EMPTY_ATTRIBUTES: BTreeMap<String, Option<String>> = BTreeMap::new();

impl Default for InstanceFacts<'_> {
    fn default() -> Self {
        InstanceFacts {
            attributes: &EMPTY_ATTRIBUTES,
            task_groups: &[],
            ec2_instance_id: None,
            agent_connected: true,
            agent_version: None,
            registered_at: None,
            running_tasks_count: 0,
        }
    }
}

impl QueryTarget for InstanceFacts<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2_instance_id
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version
    }
    fn registered_at(&self) -> Option<i64> {
        self.registered_at
    }
    fn running_tasks_count(&self) -> u64 {
        self.running_tasks_count
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.task_groups.iter().any(|g| pred(g))
    }
}

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

    fn from_word(word: &str) -> Option<Operator> {
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
    fn positive(self) -> (Operator, bool) {
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
        let mut parser = Parser {
            src: source,
            pos: 0,
            peeked: None,
        };
        let expr = parser.parse_or()?;
        if let Some(tok) = parser.peek()? {
            return Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: "`and`, `or` or the end of the expression",
                position: tok.pos,
            });
        }
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
        eval(&self.expr, target)
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

// ---------------------------------------------------------------------------
// Evaluation

fn eval<T: QueryTarget + ?Sized>(expr: &Expr, t: &T) -> bool {
    match expr {
        Expr::And(v) => v.iter().all(|e| eval(e, t)),
        Expr::Or(v) => v.iter().any(|e| eval(e, t)),
        Expr::Not(e) => !eval(e, t),
        Expr::Compare(c) => {
            let (op, negate) = c.operator.positive();
            eval_positive(&c.subject, op, &c.argument, t) != negate
        }
    }
}

/// Evaluates a positive operator (`==`, `>`, `>=`, `<`, `<=`, `exists`,
/// `in`, `=~`).
fn eval_positive<T: QueryTarget + ?Sized>(
    subject: &Subject,
    op: Operator,
    arg: &Argument,
    t: &T,
) -> bool {
    match subject {
        Subject::Attribute(name) => match t.attribute(name) {
            None => false,
            Some(value) => op == Operator::Exists || value.is_some_and(|v| string_test(v, op, arg)),
        },
        Subject::TaskGroup => {
            if op == Operator::Exists {
                t.any_task_group(&mut |_| true)
            } else {
                t.any_task_group(&mut |g| string_test(g, op, arg))
            }
        }
        Subject::AgentConnected => {
            string_test(if t.agent_connected() { "true" } else { "false" }, op, arg)
        }
        Subject::Ec2InstanceId => t.ec2_instance_id().is_some_and(|v| string_test(v, op, arg)),
        Subject::AgentVersion => match (t.agent_version().and_then(parse_version), arg) {
            (Some(have), Argument::Version(want)) => ordered(compare_versions(&have, want), op),
            _ => false,
        },
        Subject::RegisteredAt => match (t.registered_at(), arg) {
            (Some(have), Argument::Time(want)) => ordered(have.cmp(want), op),
            _ => false,
        },
        Subject::RunningTasksCount => match arg {
            Argument::Count(want) => ordered(t.running_tasks_count().cmp(want), op),
            _ => false,
        },
    }
}

fn string_test(value: &str, op: Operator, arg: &Argument) -> bool {
    match (op, arg) {
        (Operator::Eq, Argument::Value(want)) => value == want,
        (Operator::In, Argument::List(list)) => list.iter().any(|w| w == value),
        (Operator::Matches, Argument::Pattern(re)) => re.is_match(value),
        (Operator::Gt | Operator::Ge | Operator::Lt | Operator::Le, Argument::Value(want)) => {
            ordered(compare_loose(value, want), op)
        }
        _ => false,
    }
}

fn ordered(ord: std::cmp::Ordering, op: Operator) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Operator::Eq => ord == Equal,
        Operator::Gt => ord == Greater,
        Operator::Ge => ord != Less,
        Operator::Lt => ord == Less,
        Operator::Le => ord != Greater,
        _ => false,
    }
}

/// Numbers numerically, dotted versions by part, anything else as strings.
fn compare_loose(a: &str, b: &str) -> std::cmp::Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>())
        && let Some(ord) = x.partial_cmp(&y)
    {
        return ord;
    }
    if let (Some(x), Some(y)) = (parse_version(a), parse_version(b)) {
        return compare_versions(&x, &y);
    }
    a.cmp(b)
}

/// `1.14.5` → `[1, 14, 5]`; a leading `v` is allowed.
fn parse_version(s: &str) -> Option<Vec<u64>> {
    let s = s.strip_prefix('v').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    s.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// Compares part by part; missing trailing parts count as zero.
fn compare_versions(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

/// Parses the `registeredAt` formats into seconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let bytes = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if bytes.len() == 10 {
        return Some(secs);
    }
    if bytes.len() < 19 || bytes[10] != b'T' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    secs += h * 3600 + m * 60 + sec;
    match &s[19..] {
        "" | "Z" => Some(secs),
        tz => {
            let tb = tz.as_bytes();
            if tb.len() != 6 || tb[3] != b':' {
                return None;
            }
            let sign = match tb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (num(20..22)?, num(23..25)?);
            if oh > 23 || om > 59 {
                return None;
            }
            Some(secs - sign * (oh * 3600 + om * 60))
        }
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    AndAnd,
    OrOr,
    Bang,
    Symbol(Operator),
    Word(String),
    Quoted(String),
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    pos: usize,
}

impl Token {
    fn text(&self) -> String {
        match &self.kind {
            TokKind::LParen => "(".into(),
            TokKind::RParen => ")".into(),
            TokKind::LBracket => "[".into(),
            TokKind::RBracket => "]".into(),
            TokKind::Comma => ",".into(),
            TokKind::AndAnd => "&&".into(),
            TokKind::OrOr => "||".into(),
            TokKind::Bang => "!".into(),
            TokKind::Symbol(op) => op.as_str().into(),
            TokKind::Word(w) => w.clone(),
            TokKind::Quoted(q) => format!("'{q}'"),
        }
    }

    fn word(&self) -> Option<&str> {
        match &self.kind {
            TokKind::Word(w) => Some(w),
            _ => None,
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        self.word().is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }
}

/// Two-character symbols, longest first where it matters.
const SYMBOLS: &[(&str, Option<Operator>)] = &[
    ("&&", None),
    ("||", None),
    ("==", Some(Operator::Eq)),
    ("=~", Some(Operator::Matches)),
    ("!=", Some(Operator::Ne)),
    ("!~", Some(Operator::NotMatches)),
    (">=", Some(Operator::Ge)),
    ("<=", Some(Operator::Le)),
    (">", Some(Operator::Gt)),
    ("<", Some(Operator::Lt)),
];

fn symbol_at(rest: &str) -> Option<(&'static str, Option<Operator>)> {
    SYMBOLS.iter().copied().find(|(s, _)| rest.starts_with(s))
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',' | '\'' | '"')
}

/// Lexes the token starting at or after `i` (whitespace is skipped).
/// Returns the token and the offset just past it, or `None` at the end.
fn lex_token(src: &str, mut i: usize) -> Result<Option<(Token, usize)>, QueryError> {
    while let Some(c) = src[i..].chars().next() {
        if !c.is_whitespace() {
            break;
        }
        i += c.len_utf8();
    }
    let Some(c) = src[i..].chars().next() else {
        return Ok(None);
    };
    let single = match c {
        '(' => Some(TokKind::LParen),
        ')' => Some(TokKind::RParen),
        '[' => Some(TokKind::LBracket),
        ']' => Some(TokKind::RBracket),
        ',' => Some(TokKind::Comma),
        _ => None,
    };
    if let Some(kind) = single {
        return Ok(Some((Token { kind, pos: i }, i + 1)));
    }
    if c == '\'' || c == '"' {
        let (value, consumed) =
            lex_quoted(&src[i..], c).ok_or(QueryError::UnterminatedQuote { position: i })?;
        let tok = Token {
            kind: TokKind::Quoted(value),
            pos: i,
        };
        return Ok(Some((tok, i + consumed)));
    }
    if let Some((sym, op)) = symbol_at(&src[i..]) {
        let kind = match (sym, op) {
            (_, Some(op)) => TokKind::Symbol(op),
            ("&&", None) => TokKind::AndAnd,
            _ => TokKind::OrOr,
        };
        return Ok(Some((Token { kind, pos: i }, i + sym.len())));
    }
    if c == '!' {
        let tok = Token {
            kind: TokKind::Bang,
            pos: i,
        };
        return Ok(Some((tok, i + 1)));
    }
    if c == '=' {
        return Err(QueryError::UnexpectedChar {
            found: '=',
            position: i,
            hint: "; did you mean `==`?",
        });
    }
    // A bare word runs to a delimiter or the start of a symbol.
    let start = i;
    while let Some(c) = src[i..].chars().next() {
        if is_delimiter(c) || (i > start && symbol_at(&src[i..]).is_some()) {
            break;
        }
        i += c.len_utf8();
    }
    let tok = Token {
        kind: TokKind::Word(src[start..i].to_string()),
        pos: start,
    };
    Ok(Some((tok, i)))
}

/// Length of an unquoted `=~` pattern at the start of `s`: up to whitespace,
/// `&&`/`||` or an unbalanced `)`, outside parentheses and character
/// classes, so `t[23]\..*` and `(t2|m5)\..*` need no quotes.
fn raw_pattern_len(s: &str) -> usize {
    let (mut parens, mut class, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ']' if class => class = false,
            _ if class => {}
            '[' => class = true,
            '(' => parens += 1,
            ')' if parens == 0 => return i,
            ')' => parens -= 1,
            _ if parens == 0
                && (c.is_whitespace() || s[i..].starts_with("&&") || s[i..].starts_with("||")) =>
            {
                return i;
            }
            _ => {}
        }
    }
    s.len()
}

/// Reads a quoted value starting at the opening quote; a backslash escapes
/// the quote character or a backslash. Returns the value and bytes consumed.
fn lex_quoted(s: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((idx, c)) = chars.next() {
        if c == quote {
            return Some((out, idx + c.len_utf8()));
        }
        if c == '\\' {
            if let Some((_, next)) = chars.next() {
                if next != quote && next != '\\' {
                    out.push('\\');
                }
                out.push(next);
                continue;
            }
            return None;
        }
        out.push(c);
    }
    None
}

// ---------------------------------------------------------------------------
// Parsing

/// Recursive descent over tokens lexed on demand (so that `=~` patterns can
/// be read raw from the source).
struct Parser<'s> {
    src: &'s str,
    /// Offset of the first character not yet lexed.
    pos: usize,
    /// A token lexed ahead, with the offset just past it.
    peeked: Option<(Token, usize)>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&Token>, QueryError> {
        if self.peeked.is_none() {
            self.peeked = lex_token(self.src, self.pos)?;
        }
        Ok(self.peeked.as_ref().map(|(t, _)| t))
    }

    /// Whether the next token satisfies `pred` (lexing it if needed).
    fn next_is(&mut self, pred: impl Fn(&Token) -> bool) -> Result<bool, QueryError> {
        Ok(self.peek()?.is_some_and(pred))
    }

    fn bump(&mut self) -> Result<Option<Token>, QueryError> {
        self.peek()?;
        Ok(self.peeked.take().map(|(tok, end)| {
            self.pos = end;
            tok
        }))
    }

    fn expect_some(&mut self, expected: &'static str) -> Result<Token, QueryError> {
        self.bump()?.ok_or(QueryError::UnexpectedEnd {
            expected,
            position: self.src.len(),
        })
    }

    /// An `=~` argument: quoted, or raw up to whitespace (see
    /// [`raw_pattern_len`]).
    fn parse_pattern(&mut self) -> Result<(String, usize), QueryError> {
        if self.peeked.is_some() {
            return self.parse_value();
        }
        let rest = &self.src[self.pos..];
        let start = self.pos + (rest.len() - rest.trim_start().len());
        let body = &self.src[start..];
        if body.starts_with(['\'', '"']) {
            return self.parse_value();
        }
        let len = raw_pattern_len(body);
        if len == 0 {
            // Nothing usable: let the token path report what is there.
            return self.parse_value();
        }
        self.pos = start + len;
        Ok((body[..len].to_string(), start))
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        let mut terms = vec![self.parse_and()?];
        while self.next_is(|t| t.kind == TokKind::OrOr || t.is_keyword("or"))? {
            self.bump()?;
            terms.push(self.parse_and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        let mut terms = vec![self.parse_unary()?];
        while self.next_is(|t| t.kind == TokKind::AndAnd || t.is_keyword("and"))? {
            self.bump()?;
            terms.push(self.parse_unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn parse_unary(&mut self) -> Result<Expr, QueryError> {
        const EXPECTED: &str = "a subject, `not` or `(`";
        let tok = self.expect_some(EXPECTED)?;
        match &tok.kind {
            TokKind::Bang => Ok(Expr::Not(Box::new(self.parse_unary()?))),
            TokKind::Word(w) if w.eq_ignore_ascii_case("not") => {
                Ok(Expr::Not(Box::new(self.parse_unary()?)))
            }
            TokKind::LParen => {
                let inner = self.parse_or()?;
                let close = self.expect_some("`)`")?;
                if close.kind != TokKind::RParen {
                    return Err(QueryError::UnexpectedToken {
                        found: close.text(),
                        expected: "`)`, `and` or `or`",
                        position: close.pos,
                    });
                }
                Ok(inner)
            }
            TokKind::Word(w) => {
                let subject = parse_subject(w, tok.pos)?;
                self.parse_comparison(subject)
            }
            _ => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: EXPECTED,
                position: tok.pos,
            }),
        }
    }

    fn parse_operator(&mut self) -> Result<(Operator, Token), QueryError> {
        const EXPECTED: &str =
            "an operator (==, !=, >, >=, <, <=, exists, !exists, in, !in, =~, !~)";
        let tok = self.expect_some(EXPECTED)?;
        let op = match &tok.kind {
            TokKind::Symbol(op) => Some(*op),
            TokKind::Word(w) => Operator::from_word(w),
            TokKind::Bang => {
                // `!exists` / `!in`: the word must follow the bang directly.
                let adjacent = tok.pos + 1;
                let op = match self.peek()? {
                    Some(next) if next.pos == adjacent && next.is_keyword("exists") => {
                        Some(Operator::NotExists)
                    }
                    Some(next) if next.pos == adjacent && next.is_keyword("in") => {
                        Some(Operator::NotIn)
                    }
                    _ => None,
                };
                if op.is_some() {
                    self.bump()?;
                }
                op
            }
            _ => None,
        };
        match op {
            Some(op) => Ok((op, tok)),
            None => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: EXPECTED,
                position: tok.pos,
            }),
        }
    }

    fn parse_comparison(&mut self, subject: Subject) -> Result<Expr, QueryError> {
        let (operator, op_tok) = self.parse_operator()?;
        if !operator_allowed(&subject, operator) {
            return Err(QueryError::UnsupportedOperator {
                operator: op_tok.text(),
                subject: subject.to_string(),
                position: op_tok.pos,
            });
        }
        let argument = match operator {
            Operator::Exists | Operator::NotExists => Argument::None,
            Operator::In | Operator::NotIn => Argument::List(self.parse_list()?),
            Operator::Matches | Operator::NotMatches => {
                let (pattern, pos) = self.parse_pattern()?;
                let anchored = format!("^(?:{pattern})$");
                let re = Regex::new(&anchored).map_err(|e| QueryError::InvalidPattern {
                    pattern: pattern.clone(),
                    position: pos,
                    reason: e.to_string(),
                })?;
                Argument::Pattern(re)
            }
            _ => {
                let (value, pos) = self.parse_value()?;
                convert_scalar(&subject, value, pos)?
            }
        };
        Ok(Expr::Compare(Comparison {
            subject,
            operator,
            argument,
        }))
    }

    fn parse_value(&mut self) -> Result<(String, usize), QueryError> {
        const EXPECTED: &str = "a value";
        let tok = self.expect_some(EXPECTED)?;
        match tok.kind {
            TokKind::Word(w) => Ok((w, tok.pos)),
            TokKind::Quoted(q) => Ok((q, tok.pos)),
            _ => Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: EXPECTED,
                position: tok.pos,
            }),
        }
    }

    fn parse_list(&mut self) -> Result<Vec<String>, QueryError> {
        let open = self.expect_some("`[` starting a list")?;
        let close_kind = match open.kind {
            TokKind::LBracket => TokKind::RBracket,
            TokKind::LParen => TokKind::RParen,
            _ => {
                return Err(QueryError::UnexpectedToken {
                    found: open.text(),
                    expected: "`[` starting a list",
                    position: open.pos,
                });
            }
        };
        let mut values = Vec::new();
        loop {
            values.push(self.parse_value()?.0);
            let tok = self.expect_some("`,` or the end of the list")?;
            if tok.kind == TokKind::Comma {
                continue;
            }
            if tok.kind == close_kind {
                return Ok(values);
            }
            return Err(QueryError::UnexpectedToken {
                found: tok.text(),
                expected: "`,` or the end of the list",
                position: tok.pos,
            });
        }
    }
}

fn parse_subject(word: &str, pos: usize) -> Result<Subject, QueryError> {
    if let Some(name) = word.strip_prefix("attribute:") {
        if name.is_empty() {
            return Err(QueryError::EmptyAttributeName { position: pos });
        }
        return Ok(Subject::Attribute(name.to_string()));
    }
    Ok(match word {
        "task:group" => Subject::TaskGroup,
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        _ => {
            return Err(QueryError::UnknownSubject {
                subject: word.to_string(),
                position: pos,
            });
        }
    })
}

fn operator_allowed(subject: &Subject, op: Operator) -> bool {
    use Operator::*;
    match subject {
        Subject::Attribute(_) => true,
        Subject::TaskGroup => matches!(
            op,
            Eq | Ne | In | NotIn | Matches | NotMatches | Exists | NotExists
        ),
        Subject::AgentConnected | Subject::Ec2InstanceId => {
            matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches)
        }
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
            matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
        }
    }
}

fn convert_scalar(subject: &Subject, value: String, pos: usize) -> Result<Argument, QueryError> {
    Ok(match subject {
        Subject::RunningTasksCount => match value.parse::<u64>() {
            Ok(n) => Argument::Count(n),
            Err(_) => {
                return Err(QueryError::InvalidNumber {
                    value,
                    position: pos,
                });
            }
        },
        Subject::AgentVersion => match parse_version(&value) {
            Some(v) => Argument::Version(v),
            None => {
                return Err(QueryError::InvalidVersion {
                    value,
                    position: pos,
                });
            }
        },
        Subject::RegisteredAt => match parse_timestamp(&value) {
            Some(t) => Argument::Time(t),
            None => {
                return Err(QueryError::InvalidDate {
                    value,
                    position: pos,
                });
            }
        },
        Subject::Attribute(_)
        | Subject::TaskGroup
        | Subject::AgentConnected
        | Subject::Ec2InstanceId => Argument::Value(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    fn t2_micro() -> BTreeMap<String, Option<String>> {
        attrs(&[
            ("ecs.instance-type", Some("t2.micro")),
            ("ecs.availability-zone", Some("us-east-1a")),
            ("ecs.os-type", Some("linux")),
            ("gpu", None),
            ("mem-gb", Some("16")),
            ("kernel", Some("5.10.2")),
        ])
    }

    fn check(expr: &str, facts: &InstanceFacts<'_>) -> bool {
        match Query::parse(expr) {
            Ok(q) => q.matches(facts),
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    fn on_attrs(expr: &str) -> bool {
        let a = t2_micro();
        check(
            expr,
            &InstanceFacts {
                attributes: &a,
                ..InstanceFacts::default()
            },
        )
    }

    fn err(expr: &str) -> QueryError {
        match Query::parse(expr) {
            Ok(q) => panic!("{expr} parsed: {q:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn equals_and_not_equals() {
        assert!(on_attrs("attribute:ecs.instance-type == t2.micro"));
        assert!(on_attrs("attribute:ecs.instance-type equals t2.micro"));
        assert!(!on_attrs("attribute:ecs.instance-type == t2.small"));
        assert!(on_attrs("attribute:ecs.instance-type != t2.small"));
        assert!(on_attrs("attribute:ecs.instance-type NOT_EQUALS t2.small"));
        assert!(!on_attrs("attribute:ecs.instance-type != t2.micro"));
        // A missing attribute equals nothing, so `!=` holds.
        assert!(!on_attrs("attribute:missing == x"));
        assert!(on_attrs("attribute:missing != x"));
        // An attribute without a value equals nothing either.
        assert!(!on_attrs("attribute:gpu == x"));
    }

    #[test]
    fn no_spaces_around_symbols() {
        assert!(on_attrs("attribute:ecs.instance-type==t2.micro"));
        assert!(on_attrs(
            "attribute:ecs.os-type!=windows&&attribute:mem-gb>=16"
        ));
    }

    #[test]
    fn exists_and_not_exists() {
        assert!(on_attrs("attribute:gpu exists"));
        assert!(on_attrs("attribute:ecs.os-type exists"));
        assert!(!on_attrs("attribute:missing exists"));
        assert!(on_attrs("attribute:missing !exists"));
        assert!(on_attrs("attribute:missing not_exists"));
        assert!(!on_attrs("attribute:gpu !exists"));
    }

    #[test]
    fn in_and_not_in() {
        assert!(on_attrs(
            "attribute:ecs.instance-type in [t2.small, t2.micro]"
        ));
        assert!(on_attrs(
            "attribute:ecs.instance-type in (t2.small, t2.micro)"
        ));
        assert!(on_attrs("attribute:ecs.instance-type in [t2.micro]"));
        assert!(!on_attrs(
            "attribute:ecs.instance-type in [t2.small, t3.micro]"
        ));
        assert!(on_attrs(
            "attribute:ecs.instance-type !in [t2.small, t3.micro]"
        ));
        assert!(on_attrs("attribute:ecs.instance-type not_in [t2.small]"));
        assert!(!on_attrs(
            "attribute:ecs.instance-type not_in ['t2.micro', \"x\"]"
        ));
    }

    #[test]
    fn matches_is_a_full_match() {
        assert!(on_attrs("attribute:ecs.instance-type =~ t2.*"));
        assert!(on_attrs("attribute:ecs.instance-type matches t2\\..*"));
        assert!(!on_attrs("attribute:ecs.instance-type =~ micro"));
        assert!(on_attrs("attribute:ecs.instance-type =~ .*micro"));
        assert!(!on_attrs("attribute:ecs.instance-type =~ t3.*"));
        assert!(on_attrs("attribute:ecs.instance-type !~ t3.*"));
        assert!(on_attrs("attribute:ecs.instance-type not_matches m5.*"));
        // Patterns with parentheses must be quoted.
        assert!(on_attrs(
            "attribute:ecs.instance-type =~ 't2\\.(micro|small)'"
        ));
    }

    #[test]
    fn unquoted_patterns_may_use_classes_and_groups() {
        assert!(on_attrs("attribute:ecs.instance-type =~ t[23]\\..*"));
        assert!(on_attrs("attribute:ecs.instance-type =~ (t2|m5)\\.micro"));
        assert!(on_attrs(
            "attribute:ecs.instance-type =~ (t2|m5)\\.(micro|small) and attribute:gpu exists"
        ));
        assert!(on_attrs("(attribute:ecs.instance-type =~ t2.*)"));
        assert!(on_attrs("not(attribute:ecs.instance-type =~ m5.*)"));
        assert!(on_attrs(
            "attribute:ecs.instance-type =~ t2.*&&attribute:ecs.os-type==linux"
        ));
        assert!(on_attrs("attribute:ecs.instance-type =~ [a-z]2[.]micro"));
        assert!(!on_attrs("attribute:ecs.instance-type =~ t[3-9].*"));
        assert!(matches!(
            err("attribute:a =~ (b"),
            QueryError::InvalidPattern { position: 15, .. }
        ));
        assert!(matches!(
            err("attribute:a =~ )"),
            QueryError::UnexpectedToken { position: 15, .. }
        ));
        assert!(matches!(
            err("attribute:a =~"),
            QueryError::UnexpectedEnd { position: 14, .. }
        ));
    }

    #[test]
    fn ecs_documentation_examples() {
        for expr in [
            "attribute:ecs.instance-type == t2.small",
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
            "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
            "attribute:ecs.instance-type in [t2.small, t2.medium] and attribute:ecs.availability-zone == us-east-1a",
            "not(task:group == database)",
            "task:group == service:production",
            "runningTasksCount == 0",
            "agentVersion < 1.14.5",
            "registeredAt >= 2018-06-18",
            "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
            "attribute:ecs.os-type == linux",
            "(attribute:ecs.instance-type == t2.small or attribute:ecs.instance-type == t2.medium) and not(task:group == database)",
            "attribute:stack exists",
        ] {
            if let Err(e) = Query::parse(expr) {
                panic!("{expr}: {e}");
            }
        }
    }

    #[test]
    fn ordered_comparisons_on_attributes() {
        assert!(on_attrs("attribute:mem-gb > 8"));
        assert!(on_attrs("attribute:mem-gb >= 16"));
        assert!(!on_attrs("attribute:mem-gb < 16"));
        assert!(on_attrs("attribute:mem-gb <= 16"));
        // Numeric, not string, order: "16" > "9".
        assert!(on_attrs("attribute:mem-gb greater_than 9"));
        assert!(on_attrs("attribute:mem-gb less_than_equal 100"));
        assert!(on_attrs("attribute:kernel >= 5.4.0"));
        assert!(on_attrs("attribute:kernel < 5.10.10"));
        assert!(on_attrs("attribute:ecs.os-type > abc"));
        assert!(!on_attrs("attribute:missing > 0"));
    }

    #[test]
    fn boolean_operators_and_precedence() {
        assert!(on_attrs(
            "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d"
        ));
        assert!(on_attrs(
            "attribute:ecs.os-type == windows or attribute:ecs.os-type == linux"
        ));
        assert!(on_attrs(
            "attribute:ecs.os-type == windows || attribute:ecs.os-type == linux"
        ));
        assert!(!on_attrs(
            "attribute:ecs.os-type == windows && attribute:ecs.os-type == linux"
        ));
        assert!(on_attrs("not attribute:ecs.os-type == windows"));
        assert!(on_attrs("!(attribute:ecs.os-type == windows)"));
        assert!(on_attrs("not(attribute:ecs.os-type == windows)"));
        // `and` binds tighter than `or`.
        assert!(on_attrs(
            "attribute:ecs.os-type == linux or attribute:x == 1 and attribute:y == 2"
        ));
        assert!(!on_attrs(
            "(attribute:ecs.os-type == linux or attribute:x == 1) and attribute:y == 2"
        ));
        assert!(on_attrs(
            "attribute:gpu exists AND NOT attribute:missing exists"
        ));
    }

    #[test]
    fn task_group_looks_at_tasks_on_the_instance() {
        let groups = vec!["service:web".to_string(), "family:batch".to_string()];
        let facts = InstanceFacts {
            task_groups: &groups,
            running_tasks_count: 2,
            ..InstanceFacts::default()
        };
        assert!(check("task:group == service:web", &facts));
        assert!(!check("task:group == service:db", &facts));
        assert!(check("task:group != service:db", &facts));
        assert!(!check("task:group != service:web", &facts));
        assert!(check("not(task:group == database)", &facts));
        assert!(check("task:group in [service:db, family:batch]", &facts));
        assert!(check("task:group =~ service:.*", &facts));
        assert!(check("task:group exists", &facts));
        let empty = InstanceFacts::default();
        assert!(!check("task:group exists", &empty));
        assert!(check("task:group !exists", &empty));
        assert!(check("task:group != service:web", &empty));
    }

    #[test]
    fn builtin_subjects() {
        let a = t2_micro();
        let facts = InstanceFacts {
            attributes: &a,
            ec2_instance_id: Some("i-abcd1234"),
            agent_connected: false,
            agent_version: Some("1.14.5"),
            registered_at: parse_timestamp("2018-06-18T22:28:28Z"),
            running_tasks_count: 3,
            ..InstanceFacts::default()
        };
        assert!(check("ec2InstanceId == i-abcd1234", &facts));
        assert!(check(
            "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']",
            &facts
        ));
        assert!(check("ec2InstanceId =~ i-abcd.*", &facts));
        assert!(check("agentConnected == false", &facts));
        assert!(check("agentConnected != true", &facts));
        assert!(check("agentVersion < 1.15.0", &facts));
        assert!(check("agentVersion >= 1.14.5", &facts));
        assert!(check("agentVersion == 1.14.5", &facts));
        assert!(!check("agentVersion > 1.14.5", &facts));
        assert!(check("registeredAt < 2018-06-19", &facts));
        assert!(check("registeredAt > 2018-06-18", &facts));
        assert!(check("registeredAt == 2018-06-18T22:28:28+00:00", &facts));
        assert!(check("registeredAt == 2018-06-18T23:28:28+01:00", &facts));
        assert!(check("registeredAt <= 2018-06-18T22:28:28", &facts));
        assert!(check("runningTasksCount == 3", &facts));
        assert!(check("runningTasksCount > 2", &facts));
        assert!(check("runningTasksCount != 0", &facts));
        assert!(!check("runningTasksCount < 3", &facts));
        // Unknown facts never satisfy positive comparisons.
        let bare = InstanceFacts::default();
        assert!(!check("ec2InstanceId == i-abcd1234", &bare));
        assert!(!check("agentVersion > 0.0.1", &bare));
        assert!(!check("registeredAt > 1970-01-01", &bare));
    }

    #[test]
    fn quoted_values() {
        let a = attrs(&[("label", Some("hello world")), ("q", Some("it's"))]);
        let facts = InstanceFacts {
            attributes: &a,
            ..InstanceFacts::default()
        };
        assert!(check("attribute:label == 'hello world'", &facts));
        assert!(check("attribute:label == \"hello world\"", &facts));
        assert!(check("attribute:q == 'it\\'s'", &facts));
        assert!(check("attribute:q == \"it's\"", &facts));
    }

    #[test]
    fn depends_on_tasks() {
        let q = |s| Query::parse(s).map(|q| q.depends_on_tasks()).ok();
        assert_eq!(q("attribute:a == b"), Some(false));
        assert_eq!(q("attribute:a == b and not task:group == x"), Some(true));
        assert_eq!(q("runningTasksCount == 0"), Some(true));
        assert_eq!(q("agentConnected == true"), Some(false));
    }

    #[test]
    fn display_and_from_str_round_trip() {
        let q: Query = "attribute:a == b".parse().expect("parses");
        assert_eq!(q.to_string(), "attribute:a == b");
        assert_eq!(q.source(), "attribute:a == b");
        assert!(matches!(q.expr(), Expr::Compare(_)));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_timestamp("2018-06-18T22:28:28Z"), Some(1_529_360_908));
        assert_eq!(
            parse_timestamp("2018-06-18T22:28:28-01:00"),
            Some(1_529_364_508)
        );
        assert_eq!(parse_timestamp("2018-02-30"), None);
        assert_eq!(parse_timestamp("2018-06-18T22:28"), None);
        assert_eq!(parse_timestamp("2018-06-18T22:28:28+0100"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn error_empty_and_too_long() {
        assert_eq!(err(""), QueryError::Empty);
        assert_eq!(err("   "), QueryError::Empty);
        let long = format!("attribute:a == {}", "x".repeat(MAX_EXPRESSION_LEN));
        assert!(matches!(err(&long), QueryError::TooLong { .. }));
        assert_eq!(QueryError::Empty.position(), None);
    }

    #[test]
    fn error_unknown_subject_names_it_and_its_position() {
        let e = err("attribute:a == b and instanceType == t2");
        assert_eq!(
            e,
            QueryError::UnknownSubject {
                subject: "instanceType".into(),
                position: 21
            }
        );
        assert!(
            e.to_string()
                .contains("unknown subject `instanceType` at position 21"),
            "{e}"
        );
        assert_eq!(
            err("attribute: == x"),
            QueryError::EmptyAttributeName { position: 0 }
        );
    }

    #[test]
    fn error_missing_or_bad_operator() {
        assert!(matches!(
            err("attribute:a"),
            QueryError::UnexpectedEnd { position: 11, .. }
        ));
        let e = err("attribute:a is b");
        assert!(
            matches!(e, QueryError::UnexpectedToken { ref found, position: 12, .. } if found == "is"),
            "{e:?}"
        );
        assert!(e.to_string().contains("expected an operator"), "{e}");
        assert!(matches!(
            err("attribute:a = b"),
            QueryError::UnexpectedChar {
                found: '=',
                position: 12,
                ..
            }
        ));
        assert!(
            err("attribute:a = b")
                .to_string()
                .contains("did you mean `==`")
        );
        // `! exists` with a space is not `!exists`.
        assert!(matches!(
            err("attribute:a ! exists"),
            QueryError::UnexpectedToken { position: 12, .. }
        ));
    }

    #[test]
    fn error_operator_not_supported_for_subject() {
        let e = err("task:group > 3");
        assert_eq!(
            e,
            QueryError::UnsupportedOperator {
                operator: ">".into(),
                subject: "task:group".into(),
                position: 11
            }
        );
        assert!(matches!(
            err("runningTasksCount =~ 1.*"),
            QueryError::UnsupportedOperator { .. }
        ));
        assert!(matches!(
            err("agentVersion in [1, 2]"),
            QueryError::UnsupportedOperator { .. }
        ));
        assert!(matches!(
            err("ec2InstanceId exists"),
            QueryError::UnsupportedOperator { .. }
        ));
        assert!(matches!(
            err("agentConnected >= true"),
            QueryError::UnsupportedOperator { .. }
        ));
    }

    #[test]
    fn error_missing_value() {
        assert!(matches!(
            err("attribute:a =="),
            QueryError::UnexpectedEnd {
                expected: "a value",
                position: 14
            }
        ));
        assert!(matches!(
            err("attribute:a == )"),
            QueryError::UnexpectedToken { position: 15, .. }
        ));
    }

    #[test]
    fn error_bad_lists() {
        assert!(matches!(
            err("attribute:a in b"),
            QueryError::UnexpectedToken { position: 15, .. }
        ));
        assert!(matches!(
            err("attribute:a in [b, c"),
            QueryError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("attribute:a in [b c]"),
            QueryError::UnexpectedToken { position: 18, .. }
        ));
        assert!(matches!(
            err("attribute:a in [b, c)"),
            QueryError::UnexpectedToken { position: 20, .. }
        ));
        assert!(matches!(
            err("attribute:a in []"),
            QueryError::UnexpectedToken { position: 16, .. }
        ));
    }

    #[test]
    fn error_invalid_pattern() {
        let e = err("attribute:a =~ 'a(b'");
        assert!(
            matches!(e, QueryError::InvalidPattern { position: 15, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("invalid pattern `a(b` at position 15"),
            "{e}"
        );
    }

    #[test]
    fn error_invalid_scalars() {
        assert!(matches!(
            err("runningTasksCount > many"),
            QueryError::InvalidNumber { position: 20, .. }
        ));
        assert!(matches!(
            err("runningTasksCount > -1"),
            QueryError::InvalidNumber { .. }
        ));
        assert!(matches!(
            err("agentVersion > latest"),
            QueryError::InvalidVersion { position: 15, .. }
        ));
        assert!(matches!(
            err("registeredAt > yesterday"),
            QueryError::InvalidDate { position: 15, .. }
        ));
    }

    #[test]
    fn error_unbalanced_parentheses_and_trailing_tokens() {
        assert!(matches!(
            err("(attribute:a == b"),
            QueryError::UnexpectedEnd {
                expected: "`)`",
                ..
            }
        ));
        assert!(matches!(
            err("attribute:a == b)"),
            QueryError::UnexpectedToken { position: 16, .. }
        ));
        let e = err("attribute:a == b c");
        assert!(
            matches!(e, QueryError::UnexpectedToken { position: 17, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("expected `and`, `or` or the end"),
            "{e}"
        );
        assert!(matches!(
            err("attribute:a == b and"),
            QueryError::UnexpectedEnd { .. }
        ));
        assert!(matches!(
            err("and attribute:a == b"),
            QueryError::UnknownSubject { position: 0, .. }
        ));
        assert!(matches!(
            err("(attribute:a == b] "),
            QueryError::UnexpectedToken { position: 17, .. }
        ));
    }

    #[test]
    fn error_unterminated_quote() {
        assert_eq!(
            err("attribute:a == 'abc"),
            QueryError::UnterminatedQuote { position: 15 }
        );
        assert_eq!(
            err("attribute:a == \"abc\\"),
            QueryError::UnterminatedQuote { position: 15 }
        );
    }
}
