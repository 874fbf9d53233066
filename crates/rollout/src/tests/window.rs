//! Maintenance windows: parsing, open/closed with a controlled clock, and a node in
//! progress finishing after the window closes.

use jiff::Timestamp;

use super::harness::{Harness, node};
use crate::decide::{Action, Decision};
use crate::error::Error;
use crate::policy::{Window, WindowStatus};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn a_window_is_cron_slash_duration() {
    let w: Window = "0 2 * * */3h".parse().unwrap();
    assert_eq!(w.spec(), "0 2 * * */3h");
    // A cron step keeps its slash: the duration is after the last one.
    let w: Window = "*/15 * * * */5m".parse().unwrap();
    assert_eq!(
        w.status(at("2026-03-02T12:16:00Z")),
        WindowStatus::Open {
            closes_at: at("2026-03-02T12:20:00Z")
        }
    );
    assert!(matches!(
        "0 2 * * *".parse::<Window>(),
        Err(Error::WindowShape { .. })
    ));
    assert!(matches!(
        "0 2 * * */soon".parse::<Window>(),
        Err(Error::WindowDuration { .. })
    ));
    assert!(matches!(
        "0 2 * * */0s".parse::<Window>(),
        Err(Error::WindowDuration { .. })
    ));
    assert!(matches!(
        "0 25 * * */1h".parse::<Window>(),
        Err(Error::WindowCron { .. })
    ));
}

#[test]
fn the_window_is_open_from_each_match_for_its_length() {
    let w: Window = "0 2 * * */3h".parse().unwrap();
    assert_eq!(
        w.status(at("2026-03-02T01:59:59Z")),
        WindowStatus::Closed {
            opens_at: Some(at("2026-03-02T02:00:00Z"))
        }
    );
    assert_eq!(
        w.status(at("2026-03-02T02:00:00Z")),
        WindowStatus::Open {
            closes_at: at("2026-03-02T05:00:00Z")
        }
    );
    assert_eq!(
        w.status(at("2026-03-02T05:00:00Z")),
        WindowStatus::Closed {
            opens_at: Some(at("2026-03-03T02:00:00Z"))
        }
    );
}

#[test]
fn nodes_start_only_while_the_window_is_open_and_in_progress_ones_finish() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.policy.window = Some("0 2 * * */3h".parse().unwrap());
    h.now = at("2026-03-02T12:00:00Z");
    assert_eq!(
        h.step(),
        Decision::OutsideWindow {
            opens_at: Some(at("2026-03-03T02:00:00Z"))
        }
    );
    assert!(h.actions.is_empty());

    h.now = at("2026-03-03T04:59:00Z");
    h.run_service_task("i-1", "web");
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    // The window closes while i-1 drains: i-1 is finished anyway.
    h.now = at("2026-03-03T05:10:00Z");
    h.finish_drained_node("i-1");
    // … but i-2 waits for the next opening.
    assert_eq!(
        h.step(),
        Decision::OutsideWindow {
            opens_at: Some(at("2026-03-04T02:00:00Z"))
        }
    );
    h.now = at("2026-03-04T02:00:00Z");
    assert!(
        matches!(h.step(), Decision::Act(Action::Drain { ref instance_id, .. }) if instance_id == "i-2")
    );
}
