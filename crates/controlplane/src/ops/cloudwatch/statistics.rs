//! The arithmetic GetMetricStatistics and GetMetricData do on a metric's stored
//! one-minute buckets, pure and apart from the operations: the [`Window`] a request
//! reads, a metric's buckets summed into that window's periods ([`per_period`]), and the
//! statistics flotilla can answer from them ([`statistic_named`], [`value_of`]).
//!
//! ## The rule
//! `StartTime` is rounded down to the minute (CloudWatch does so for a start within the
//! past 15 days, all flotilla keeps); periods are aligned on it: period `k` covers
//! `[start + k·Period, start + (k+1)·Period)` and is stamped with its start. `EndTime`
//! is exclusive: a bucket counts when its minute starts before it. A period without a
//! bucket has no datapoint. Each period's datapoint is its buckets merged (counts and
//! sums added, the least minimum and the greatest maximum), so every statistic of a
//! period is exact: what one bucket keeps is exactly what the five statistics need.
//!
//! The work is bounded by the stored buckets, never by the requested range: a metric
//! has at most one bucket per minute it keeps (`RETENTION_MINUTES` back, and up to
//! `MAX_FUTURE_SECS` ahead), so a series has at most that many datapoints however long
//! the range or short the period.

use std::collections::BTreeMap;

use model::wire_cw::Statistic;

use super::CwError;
use super::evaluate::statistic;
use crate::state::Bucket;

/// The time a read covers and how it is cut into periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The first period's start: `StartTime` rounded down to the minute (epoch seconds).
    pub start: i64,
    /// `StartTime` as given.
    pub start_time: f64,
    /// `EndTime` (exclusive).
    pub end_time: f64,
    /// Seconds per period, a multiple of 60.
    pub period: i64,
}

/// Checks `StartTime` and `EndTime`: finite, and the start before the end.
pub fn check_range(start_time: f64, end_time: f64) -> Result<(), CwError> {
    if !start_time.is_finite() || !end_time.is_finite() {
        return Err(CwError::InvalidParameterValue(
            "The parameters StartTime and EndTime must be valid timestamps.".into(),
        ));
    }
    if start_time >= end_time {
        return Err(CwError::InvalidParameterValue(
            "The parameter StartTime must be less than the parameter EndTime.".into(),
        ));
    }
    Ok(())
}

/// Checks a `Period` (`what` names it in the refusal): at least 1 (the model's bound)
/// and a multiple of 60, since flotilla keeps one-minute buckets (CloudWatch's rule for
/// standard-resolution metrics).
pub fn check_period(what: &str, period: i32) -> Result<i64, CwError> {
    if period < 1 {
        return Err(CwError::Validation(format!(
            "1 validation error detected: Value '{period}' at '{what}' failed to satisfy \
             constraint: Member must have value greater than or equal to 1"
        )));
    }
    if period % 60 != 0 {
        return Err(CwError::InvalidParameterValue(format!(
            "The parameter {what} must be a multiple of 60."
        )));
    }
    Ok(i64::from(period))
}

impl Window {
    /// The window of `[start_time, end_time)` in periods of `period` seconds (checked
    /// with [`check_range`] and [`check_period`]).
    pub fn new(start_time: f64, end_time: f64, period: i64) -> Window {
        Window {
            start: (start_time.floor() as i64).div_euclid(60) * 60,
            start_time,
            end_time,
            period,
        }
    }

    /// How many datapoints the range can hold: `(EndTime − StartTime) / Period`,
    /// rounded up (what CloudWatch counts against its 1,440).
    pub fn periods(&self) -> f64 {
        ((self.end_time - self.start_time) / self.period as f64).ceil()
    }

    /// The start of the period the bucket of `minute` falls in, if it is in the window.
    fn period_of(&self, minute: i64) -> Option<i64> {
        let at = minute.checked_mul(60)?;
        if at < self.start || (at as f64) >= self.end_time {
            return None;
        }
        Some(self.start + (at - self.start).div_euclid(self.period) * self.period)
    }
}

/// `buckets` summed into `window`'s periods: one merged bucket per period that has any,
/// keyed by the period's start (ascending). Buckets outside the window are left out.
pub fn per_period(buckets: &[Bucket], window: &Window) -> BTreeMap<i64, Bucket> {
    let mut periods: BTreeMap<i64, Bucket> = BTreeMap::new();
    for b in buckets {
        if let Some(start) = window.period_of(b.minute) {
            periods
                .entry(start)
                .and_modify(|p| p.merge(b))
                .or_insert(*b);
        }
    }
    periods
}

/// The statistic CloudWatch spells `name`, if flotilla can answer it (percentiles,
/// trimmed means and the like cannot be: buckets keep no distribution).
pub fn statistic_named(name: &str) -> Option<Statistic> {
    Some(match name {
        "SampleCount" => Statistic::SampleCount,
        "Average" => Statistic::Average,
        "Sum" => Statistic::Sum,
        "Minimum" => Statistic::Minimum,
        "Maximum" => Statistic::Maximum,
        _ => return None,
    })
}

/// `stat` of one period's merged bucket, `None` when it is not a finite number (sums
/// of huge values can overflow; the wire has no infinity).
pub fn value_of(stat: Statistic, period: &Bucket) -> Option<f64> {
    statistic(stat, &[period]).filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute boundary that is also a five-minute one.
    const T0: i64 = 1_700_000_100;

    fn bucket(minute_offset: i64, values: &[f64]) -> Bucket {
        let mut b = Bucket {
            minute: T0 / 60 + minute_offset,
            count: 1.0,
            sum: values[0],
            min: values[0],
            max: values[0],
        };
        for v in &values[1..] {
            b.merge(&Bucket {
                count: 1.0,
                sum: *v,
                min: *v,
                max: *v,
                ..b
            });
        }
        b
    }

    #[test]
    fn buckets_merge_into_periods_aligned_on_the_rounded_start() {
        let buckets = [
            bucket(0, &[1.0, 3.0]),
            bucket(1, &[10.0]),
            bucket(4, &[-2.0]),
            bucket(5, &[7.0]),
        ];
        // 300 s periods from T0 + 20 s (rounded down to T0): minutes 0–4, then 5–9.
        let w = Window::new(T0 as f64 + 20.0, T0 as f64 + 600.0, 300);
        assert_eq!(w.start, T0);
        let p = per_period(&buckets, &w);
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [T0, T0 + 300]);
        let first = p[&T0];
        assert_eq!((first.count, first.sum), (4.0, 12.0));
        assert_eq!((first.min, first.max), (-2.0, 10.0));
        assert_eq!(value_of(Statistic::Average, &first), Some(3.0));
        assert_eq!(value_of(Statistic::SampleCount, &first), Some(4.0));
        assert_eq!(value_of(Statistic::Minimum, &first), Some(-2.0));
        assert_eq!(value_of(Statistic::Maximum, &first), Some(10.0));
        assert_eq!(value_of(Statistic::Sum, &p[&(T0 + 300)]), Some(7.0));
        // 60 s periods: one per bucket.
        let w = Window::new(T0 as f64, T0 as f64 + 600.0, 60);
        assert_eq!(per_period(&buckets, &w).len(), 4);
        // Periods start at the (rounded) start, not at multiples of the period: from
        // minute 1, minutes 1–5 are one period.
        let w = Window::new(T0 as f64 + 60.0, T0 as f64 + 600.0, 300);
        let p = per_period(&buckets, &w);
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [T0 + 60]);
        assert_eq!(p[&(T0 + 60)].sum, 15.0);
    }

    #[test]
    fn the_end_is_exclusive_and_the_start_inclusive() {
        let buckets = [bucket(0, &[1.0]), bucket(2, &[2.0])];
        let w = Window::new(T0 as f64, T0 as f64 + 120.0, 60);
        assert_eq!(
            per_period(&buckets, &w).len(),
            1,
            "minute 2 starts at the end"
        );
        let w = Window::new(T0 as f64 + 59.0, T0 as f64 + 121.0, 60);
        assert_eq!(per_period(&buckets, &w).len(), 2, "the start rounds down");
        let w = Window::new(T0 as f64 + 60.0, T0 as f64 + 120.0, 60);
        assert!(per_period(&buckets, &w).is_empty());
    }

    #[test]
    fn periods_count_what_the_range_can_hold() {
        let day = 86_400.0;
        assert_eq!(Window::new(0.0, day, 60).periods(), 1440.0);
        assert_eq!(Window::new(0.0, day + 1.0, 60).periods(), 1441.0);
        assert_eq!(Window::new(30.0, 330.0, 300).periods(), 1.0);
    }

    #[test]
    fn ranges_periods_and_statistics_are_checked() {
        assert!(check_range(1.0, 2.0).is_ok());
        assert_eq!(
            check_range(2.0, 2.0).unwrap_err().code(),
            "InvalidParameterValueException"
        );
        assert!(check_range(f64::NAN, 2.0).is_err());
        assert_eq!(check_period("Period", 300).unwrap(), 300);
        assert_eq!(
            check_period("Period", 30).unwrap_err().code(),
            "InvalidParameterValueException"
        );
        assert_eq!(
            check_period("Period", 0).unwrap_err().code(),
            "ValidationError"
        );
        assert_eq!(statistic_named("Sum"), Some(Statistic::Sum));
        assert_eq!(statistic_named("p99"), None);
        let huge = Bucket {
            minute: 0,
            count: 2.0,
            sum: f64::INFINITY,
            min: f64::MAX,
            max: f64::MAX,
        };
        assert_eq!(value_of(Statistic::Sum, &huge), None);
        assert_eq!(value_of(Statistic::Maximum, &huge), Some(f64::MAX));
    }
}
