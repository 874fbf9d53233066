//! `FlotillaV1.GetUpdaterState` and `PutUpdaterState`: the OS updater's state document,
//! kept on its cluster's record with a revision and a lease (the rules are in
//! [`model::updater_state`]).

use model::updater_state::{
    GetUpdaterStateRequest, MAX_HOLDER_CHARS, MAX_LEASE_SECONDS, MAX_UPDATER_DOCUMENT_BYTES,
    PutUpdaterStateRequest, UpdaterStateResponse,
};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::active_cluster;
use crate::state::{Change, Record, Scope, State, UpdaterDocument};

fn response(doc: Option<&UpdaterDocument>, now: f64) -> UpdaterStateResponse {
    let Some(doc) = doc else {
        return UpdaterStateResponse::default();
    };
    let leased = doc.holder.is_some() && doc.lease_expires_at > now;
    UpdaterStateResponse {
        document: Some(doc.document.clone()),
        revision: doc.revision,
        holder: doc.holder.clone().filter(|_| leased),
        lease_expires_at: leased.then_some(doc.lease_expires_at),
    }
}

/// GetUpdaterState: the document, its revision and the running lease (none once it
/// ended).
pub fn get(
    state: &State,
    scope: &Scope,
    now: f64,
    req: GetUpdaterStateRequest,
) -> Result<UpdaterStateResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    Ok(response(cluster.updater.as_ref(), now))
}

fn validate(req: &PutUpdaterStateRequest) -> Result<(), EcsError> {
    if req.document.len() > MAX_UPDATER_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "document is {} bytes; the most is {MAX_UPDATER_DOCUMENT_BYTES}.",
            req.document.len()
        )));
    }
    if serde_json::from_str::<serde_json::Value>(&req.document).is_err() {
        return Err(invalid("document must be JSON text."));
    }
    if req.lease_seconds > MAX_LEASE_SECONDS {
        return Err(invalid(format!(
            "leaseSeconds must be 0 to {MAX_LEASE_SECONDS}, got {}.",
            req.lease_seconds
        )));
    }
    match &req.holder {
        Some(h) if h.is_empty() || h.chars().count() > MAX_HOLDER_CHARS => Err(invalid(format!(
            "holder must be 1 to {MAX_HOLDER_CHARS} characters."
        ))),
        None if req.lease_seconds > 0 => Err(invalid("leaseSeconds needs a holder.")),
        _ => Ok(()),
    }
}

/// PutUpdaterState: stores the document if `expectedRevision` is the stored revision
/// and no other holder's lease runs; takes, renews or gives up the lease with `holder`.
pub fn put(
    state: &State,
    ctx: &mut Ctx,
    req: PutUpdaterStateRequest,
) -> Written<UpdaterStateResponse> {
    validate(&req)?;
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let current = cluster.updater.as_ref();
    let revision = current.map_or(0, |d| d.revision);
    if req.expected_revision != revision {
        return Err(EcsError::Conflict(format!(
            "The updater state of cluster {} is at revision {revision}, not {}: read it again.",
            cluster.name, req.expected_revision
        )));
    }
    let running = current.filter(|d| d.holder.is_some() && d.lease_expires_at > ctx.now);
    if let (Some(lease), Some(holder)) = (running, &req.holder)
        && lease.holder.as_ref() != Some(holder)
    {
        return Err(EcsError::Conflict(format!(
            "Updater {} holds the updater state of cluster {} until {:.0} (epoch seconds).",
            lease.holder.as_deref().unwrap_or_default(),
            cluster.name,
            lease.lease_expires_at
        )));
    }
    let (holder, lease_expires_at) = match req.holder {
        Some(_) if req.lease_seconds == 0 => (None, 0.0),
        Some(h) => (Some(h), ctx.now + f64::from(req.lease_seconds)),
        None => running.map_or((None, 0.0), |l| (l.holder.clone(), l.lease_expires_at)),
    };
    let doc = UpdaterDocument {
        document: req.document,
        revision: revision + 1,
        holder,
        lease_expires_at,
    };
    let answer = response(Some(&doc), ctx.now);
    let mut rec = cluster.clone();
    rec.updater = Some(doc);
    Ok((answer, vec![Change::Put(Record::Cluster(rec))]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ClusterRecord;
    use model::wire;

    fn state() -> (State, Scope) {
        let scope = Scope::new("1", "r");
        let mut s = State::default();
        s.apply(&Change::Put(Record::Cluster(ClusterRecord {
            scope: scope.clone(),
            name: "default".into(),
            cluster: wire::Cluster {
                cluster_name: Some("default".into()),
                status: Some("ACTIVE".into()),
                ..Default::default()
            },
            updater: None,
        })));
        (s, scope)
    }

    fn put(
        s: &mut State,
        scope: &Scope,
        now: f64,
        req: PutUpdaterStateRequest,
    ) -> Result<UpdaterStateResponse, EcsError> {
        let mut ctx = Ctx::new(scope.clone(), now, 1);
        let (answer, changes) = super::put(s, &mut ctx, req)?;
        for c in &changes {
            s.apply(c);
        }
        Ok(answer)
    }

    fn req(doc: &str, rev: u64, holder: Option<&str>, lease: u32) -> PutUpdaterStateRequest {
        PutUpdaterStateRequest {
            cluster: None,
            document: doc.into(),
            expected_revision: rev,
            holder: holder.map(str::to_owned),
            lease_seconds: lease,
        }
    }

    #[test]
    fn revisions_refuse_a_stale_writer() {
        let (mut s, scope) = state();
        assert_eq!(
            get(&s, &scope, 0.0, GetUpdaterStateRequest::default()).unwrap(),
            UpdaterStateResponse::default()
        );
        let a = put(&mut s, &scope, 10.0, req("{\"a\":1}", 0, Some("u1"), 30)).unwrap();
        assert_eq!(a.revision, 1);
        let stale = put(&mut s, &scope, 11.0, req("{}", 0, Some("u1"), 30));
        assert!(matches!(stale, Err(EcsError::Conflict(_))), "{stale:?}");
        let got = get(&s, &scope, 12.0, GetUpdaterStateRequest::default()).unwrap();
        assert_eq!(got.document.as_deref(), Some("{\"a\":1}"));
        assert_eq!(got.holder.as_deref(), Some("u1"));
        assert_eq!(got.lease_expires_at, Some(40.0));
    }

    #[test]
    fn another_holder_waits_for_the_lease_to_end_or_be_given_up() {
        let (mut s, scope) = state();
        put(&mut s, &scope, 10.0, req("{}", 0, Some("u1"), 30)).unwrap();
        let early = put(&mut s, &scope, 20.0, req("{}", 1, Some("u2"), 30));
        assert!(matches!(early, Err(EcsError::Conflict(m)) if m.contains("u1")));
        // After expiry the lease is shown as ended and u2 may take it.
        let ended = get(&s, &scope, 41.0, GetUpdaterStateRequest::default()).unwrap();
        assert_eq!((ended.holder, ended.lease_expires_at), (None, None));
        let took = put(&mut s, &scope, 41.0, req("{}", 1, Some("u2"), 30)).unwrap();
        assert_eq!(took.holder.as_deref(), Some("u2"));
        // u2 gives it up: u1 may take it at once.
        put(&mut s, &scope, 42.0, req("{}", 2, Some("u2"), 0)).unwrap();
        let back = put(&mut s, &scope, 43.0, req("{}", 3, Some("u1"), 30)).unwrap();
        assert_eq!((back.revision, back.holder.as_deref()), (4, Some("u1")));
    }

    #[test]
    fn an_edit_without_holder_keeps_the_lease() {
        let (mut s, scope) = state();
        put(&mut s, &scope, 10.0, req("{}", 0, Some("u1"), 30)).unwrap();
        let edited = put(&mut s, &scope, 11.0, req("{\"halt\":null}", 1, None, 0)).unwrap();
        assert_eq!(edited.revision, 2);
        assert_eq!(edited.holder.as_deref(), Some("u1"));
        assert_eq!(edited.lease_expires_at, Some(40.0));
    }

    #[test]
    fn bad_input_is_refused() {
        let (mut s, scope) = state();
        let big = format!("\"{}\"", "x".repeat(MAX_UPDATER_DOCUMENT_BYTES));
        for bad in [
            req(&big, 0, Some("u"), 30),
            req("not json", 0, Some("u"), 30),
            req("{}", 0, Some("u"), MAX_LEASE_SECONDS + 1),
            req("{}", 0, Some(""), 30),
            req("{}", 0, None, 30),
        ] {
            let r = put(&mut s, &scope, 1.0, bad);
            assert!(matches!(r, Err(EcsError::InvalidParameter(_))), "{r:?}");
        }
        let mut other = req("{}", 0, Some("u"), 30);
        other.cluster = Some("nope".into());
        assert!(matches!(
            put(&mut s, &scope, 1.0, other),
            Err(EcsError::ClusterNotFound)
        ));
    }
}
