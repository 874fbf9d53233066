//! Amazon CloudWatch, the part ECS deployments need: metric alarms (PutMetricAlarm,
//! DescribeAlarms, DeleteAlarms, SetAlarmState), the metrics they watch (PutMetricData,
//! ListMetrics; and [`publish_metric_data`], the same path for the metrics flotilla
//! publishes itself: the load balancers' `AWS/ApplicationELB`) and their evaluation, and
//! the rules of ECS's `deploymentConfiguration.alarms`; and reading metrics back
//! (GetMetricStatistics, GetMetricData with simple metric math: [`reads`], over the pure
//! [`statistics`] and [`expression`]).
//!
//! ## Design
//! Like every operation, each is a pure function of the state, `ctx.now` and its request,
//! run through the single writer (reads on the published state). Refusals are
//! [`CwError`]s, CloudWatch's own codes, carried inside the writer's answer as SSM's are.
//! An alarm's state is a pure function of its configuration, its metric's datapoints and
//! the time ([`evaluate::evaluate`]); it is applied when the alarm is written, when its
//! metric gets datapoints, and by a timer ([`runner`], every
//! [`runner::EVALUATION_TICK`]) for what time alone changes (datapoints ageing out of the
//! window). A change of state is an ordinary record change, so the service controller
//! hears of it on the change feed like of any other and fails a deployment that watches
//! the alarm ([`deployment`]).
//!
//! ## Limits
//! The constants below; docs/security.md lists them. Datapoints are kept as one-minute
//! buckets (count, sum, minimum, maximum) for [`RETENTION_MINUTES`], so a period is a
//! multiple of 60 s and an alarm's window (`Period × EvaluationPeriods`) at most
//! [`MAX_WINDOW_SECS`] (CloudWatch allows a day). The reads' own limits are in
//! [`reads`] and [`expression`].

mod alarms;
pub mod deployment;
pub mod evaluate;
pub mod expression;
mod metrics;
#[cfg(test)]
mod read_tests;
pub mod reads;
pub mod runner;
pub mod statistics;
#[cfg(test)]
mod tests;

pub use alarms::{alarm_arn, delete_alarms, describe_alarms, put_metric_alarm, set_alarm_state};
pub use metrics::{list_metrics, publish_metric_data, put_metric_data};
pub use reads::{get_metric_data, get_metric_statistics};

use crate::error::EcsError;
use crate::state::{Change, CwRecord, DiscoveryRecord, Record};

/// Most metric alarms one account has in one region.
pub const MAX_ALARMS: usize = 1000;
/// Most metrics (namespace, name and dimensions) one account keeps in one region with
/// PutMetricData. Those flotilla publishes itself in `AWS/` namespaces (the load
/// balancers') do not count: [`publish_metric_data`] bounds them.
pub const MAX_METRICS: usize = 1000;
/// How many minutes of datapoints a metric keeps.
pub const RETENTION_MINUTES: i64 = 180;
/// Longest window an alarm evaluates: `Period × EvaluationPeriods`, in seconds.
pub const MAX_WINDOW_SECS: i64 = RETENTION_MINUTES * 60;
/// Longest alarm, metric, namespace and dimension name (characters).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest dimension value (characters).
pub const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// Most dimensions of a metric.
pub const MAX_DIMENSIONS: usize = 30;
/// Longest alarm description (characters).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most actions of each kind on an alarm (kept, never run).
pub const MAX_ACTIONS: usize = 5;
/// Most tags on an alarm.
pub const MAX_TAGS: usize = 50;
/// Most alarm names one DescribeAlarms or DeleteAlarms names.
pub const MAX_NAMES_PER_CALL: usize = 100;
/// Largest DescribeAlarms page (`MaxRecords`); the default is [`DEFAULT_RECORDS`].
pub const MAX_RECORDS: i32 = 100;
/// DescribeAlarms' page without `MaxRecords`.
pub const DEFAULT_RECORDS: i32 = 50;
/// Most `MetricData` entries in one PutMetricData (CloudWatch's).
pub const MAX_METRIC_DATA: usize = 1000;
/// Most metrics one ListMetrics page lists (CloudWatch's 500).
pub const LIST_METRICS_PAGE: i32 = 500;
/// Most dimension filters of one ListMetrics (CloudWatch's).
pub const MAX_DIMENSION_FILTERS: usize = 10;
/// Most `Values` of one datum (CloudWatch's).
pub const MAX_VALUES: usize = 150;
/// How far in the future a datapoint may be stamped (CloudWatch's two hours).
pub const MAX_FUTURE_SECS: f64 = 2.0 * 3600.0;
/// Longest `StateReason` (characters).
pub const MAX_REASON_CHARS: usize = 1023;
/// Longest `StateReasonData` (characters).
pub const MAX_REASON_DATA_CHARS: usize = 4000;

/// A CloudWatch operation failed. [`CwError::code`] is the `__type` on the wire (the
/// error shape's name) and [`CwError::query_code`] CloudWatch's classic code, which
/// clients read from `x-amzn-query-error` (the service is `awsQueryCompatible`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CwError {
    /// A member fails the model's constraints (length, range, type).
    #[error("{0}")]
    Validation(String),
    /// A value is valid in shape but not accepted (a period flotilla cannot evaluate, a
    /// NaN datapoint, a namespace of AWS's).
    #[error("{0}")]
    InvalidParameterValue(String),
    /// Members that cannot go together.
    #[error("{0}")]
    InvalidParameterCombination(String),
    /// A member the operation needs is absent.
    #[error("{0}")]
    MissingParameter(String),
    /// No such alarm.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A limit of the account and region is reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// A `NextToken` this server did not issue for this listing, or an old one.
    #[error("{0}")]
    InvalidNextToken(String),
    /// `StateReasonData` is not JSON.
    #[error("{0}")]
    InvalidFormat(String),
    /// A CloudWatch operation flotilla does not serve.
    #[error("{0}")]
    Unsupported(String),
    /// The server failed (the store could not commit, …).
    #[error("{0}")]
    Internal(String),
}

impl CwError {
    /// The `__type` (the error shape's name). One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            CwError::Validation(_) => "ValidationError",
            CwError::InvalidParameterValue(_) => "InvalidParameterValueException",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombinationException",
            CwError::MissingParameter(_) => "MissingRequiredParameterException",
            CwError::ResourceNotFound(_) => "ResourceNotFound",
            CwError::LimitExceeded(_) => "LimitExceededFault",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            CwError::InvalidFormat(_) => "InvalidFormatFault",
            CwError::Unsupported(_) => "UnsupportedOperation",
            CwError::Internal(_) => "InternalServiceFault",
        }
    }

    /// CloudWatch's query-protocol code (`x-amzn-query-error: <code>;Sender`), what the
    /// AWS CLI and boto3 report as the error code.
    pub fn query_code(&self) -> &'static str {
        match self {
            CwError::Validation(_) => "ValidationError",
            CwError::InvalidParameterValue(_) => "InvalidParameterValue",
            CwError::InvalidParameterCombination(_) => "InvalidParameterCombination",
            CwError::MissingParameter(_) => "MissingParameter",
            CwError::ResourceNotFound(_) => "ResourceNotFound",
            CwError::LimitExceeded(_) => "LimitExceeded",
            CwError::InvalidNextToken(_) => "InvalidNextToken",
            CwError::InvalidFormat(_) => "InvalidFormat",
            CwError::Unsupported(_) => "UnsupportedOperation",
            CwError::Internal(_) => "InternalServiceError",
        }
    }

    /// The HTTP status (the error shape's `httpStatusCode`).
    pub fn http_status(&self) -> u16 {
        match self {
            CwError::ResourceNotFound(_) => 404,
            CwError::Internal(_) => 500,
            CwError::Validation(_)
            | CwError::InvalidParameterValue(_)
            | CwError::InvalidParameterCombination(_)
            | CwError::MissingParameter(_)
            | CwError::LimitExceeded(_)
            | CwError::InvalidNextToken(_)
            | CwError::InvalidFormat(_)
            | CwError::Unsupported(_) => 400,
        }
    }

    /// Whether the server, not the client, is at fault.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, CwError::Internal(_))
    }
}

impl From<EcsError> for CwError {
    /// The writer's own failures are server faults; the shared paging machinery's
    /// refusals are a bad token.
    fn from(e: EcsError) -> CwError {
        if e.is_server_fault() {
            CwError::Internal(e.to_string())
        } else {
            CwError::InvalidNextToken(e.to_string())
        }
    }
}

/// What a CloudWatch write returns: its answer and the changes it decided.
pub type CwWritten<T> = crate::engine::Written<T, CwError>;

fn put(r: CwRecord) -> Change {
    Change::Put(Record::Discovery(DiscoveryRecord::CloudWatch(r)))
}

fn delete(r: CwRecord) -> Change {
    Change::Delete(Record::Discovery(DiscoveryRecord::CloudWatch(r)))
}

/// `Value at 'what' failed to satisfy constraint: …` when `value` has more than `max`
/// characters (or, with `min` 1, none).
fn check_len(what: &str, value: &str, min: usize, max: usize) -> Result<(), CwError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(CwError::Validation(format!(
            "1 validation error detected: Value at '{what}' failed to satisfy constraint: \
             Member must have length between {min} and {max}"
        )));
    }
    Ok(())
}

/// Refuses a list of more than `max` members, as CloudWatch words it.
pub(super) fn check_count(what: &str, len: usize, max: usize) -> Result<(), CwError> {
    if len > max {
        return Err(CwError::Validation(format!(
            "1 validation error detected: Value at '{what}' failed to satisfy constraint: \
             Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// Refuses a unit that is not one of CloudWatch's standard units, as CloudWatch words it.
fn check_unit(what: &str, unit: &str) -> Result<(), CwError> {
    if model::wire_cw::STANDARD_UNITS.contains(&unit) {
        return Ok(());
    }
    let mut shown: String = unit.chars().take(MAX_NAME_CHARS).collect();
    if shown.len() < unit.len() {
        shown.push('…');
    }
    Err(CwError::Validation(format!(
        "1 validation error detected: Value '{shown}' at '{what}' failed to satisfy \
         constraint: Member must satisfy enum value set: [{}]",
        model::wire_cw::STANDARD_UNITS.join(", ")
    )))
}

/// Checks a metric's dimensions: at most [`MAX_DIMENSIONS`], names 1–255 and values
/// 1–1024 characters, no name twice.
fn check_dimensions(what: &str, dims: &[model::wire_cw::Dimension]) -> Result<(), CwError> {
    check_count(what, dims.len(), MAX_DIMENSIONS)?;
    for (i, d) in dims.iter().enumerate() {
        check_len(
            &format!("{what}.{}.name", i + 1),
            &d.name,
            1,
            MAX_NAME_CHARS,
        )?;
        check_len(
            &format!("{what}.{}.value", i + 1),
            &d.value,
            1,
            MAX_DIMENSION_VALUE_CHARS,
        )?;
        if dims[..i].iter().any(|o| o.name == d.name) {
            return Err(CwError::InvalidParameterValue(format!(
                "The dimension {:?} is given more than once.",
                d.name
            )));
        }
    }
    Ok(())
}
