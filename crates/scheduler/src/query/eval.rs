//! Evaluation: what a query is evaluated against ([`QueryTarget`],
//! [`InstanceFacts`]) and how each comparison holds (negated operators as
//! `not` of their positive form, `task:group` over any task, loose ordering
//! of numbers, versions and strings).

use std::collections::BTreeMap;

use super::ast::{Argument, Expr, Operator, Subject};

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

/// Whether `expr` holds for `t`.
pub(super) fn eval<T: QueryTarget + ?Sized>(expr: &Expr, t: &T) -> bool {
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
pub(super) fn parse_version(s: &str) -> Option<Vec<u64>> {
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
