//! Fixtures the operations' unit tests share (test builds only): the scope they act in,
//! an empty state that can sign page tokens, and applying an operation's changes to a
//! state as the writer would.

use crate::state::{Change, MetaRecord, Scope, State};

/// The account and region the unit tests act in.
pub(crate) fn scope() -> Scope {
    Scope::new("000000000000", "us-east-1")
}

/// An empty state with a paging secret, so that listings can sign their `nextToken`.
pub(crate) fn state() -> State {
    State {
        meta: MetaRecord {
            paging_secret: "00112233445566778899aabbccddeeff".into(),
        },
        ..State::default()
    }
}

/// Applies a write's changes to `state`, in order.
pub(crate) fn apply(state: &mut State, changes: &[Change]) {
    for c in changes {
        state.apply(c);
    }
}
