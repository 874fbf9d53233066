//! The updater's state kept in the control plane, with its cluster
//! (`FlotillaV1.GetUpdaterState`/`PutUpdaterState`, rules in [`model::updater_state`]):
//! one JSON document holding the `rollout::State` and the last [`MAX_EVENTS`] events.
//! Any copy of the updater — a CLI, or the updater running as an ECS service that was
//! just moved to another node — reads it and carries on.
//!
//! A running updater holds the document's lease ([`LEASE`]), renews it as it works and
//! sleeps ([`Store::sleep`]), and gives it up when it stops; a second one waits for the
//! lease ([`Store::acquire`]). Every change is a read-modify-write on the revision, so
//! `updater resume` can clear a halt while an updater runs.

use std::time::Duration;

use anyhow::{Context, bail};
use model::updater_state::{PutUpdaterStateRequest, UpdaterStateResponse};
use rollout::{Event, State};
use serde::{Deserialize, Serialize};

use super::ecs::{Ecs, PutOutcome};

/// Events the document keeps (the oldest go first).
pub const MAX_EVENTS: usize = 200;

/// How long a lease runs; renewed when a third of it is left.
pub const LEASE: Duration = Duration::from_secs(30);

/// Read-modify-write attempts before a change is given up.
const ATTEMPTS: usize = 8;

/// The stored document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// What the updater has done and is doing.
    #[serde(default)]
    pub state: State,
    /// Its last events, oldest first.
    #[serde(default)]
    pub events: Vec<Event>,
}

impl Document {
    /// Adds an event, dropping the oldest past [`MAX_EVENTS`].
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
        let over = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..over);
    }

    fn decode(stored: &UpdaterStateResponse) -> anyhow::Result<Document> {
        match &stored.document {
            None => Ok(Document {
                state: State::new(),
                events: Vec::new(),
            }),
            Some(text) => serde_json::from_str(text)
                .context("the cluster's updater state is not a document this updater reads"),
        }
    }
}

/// The document as read: its content, revision and lease.
#[derive(Clone)]
pub struct Snapshot {
    /// The content.
    pub doc: Document,
    /// Who holds the lease and until when, while it runs.
    pub lease: Option<(String, jiff::Timestamp)>,
    revision: u64,
}

/// Who holds the stored document's lease and until when (the control plane answers
/// epoch seconds).
fn lease_of(stored: &UpdaterStateResponse) -> Option<(String, jiff::Timestamp)> {
    let until = stored.lease_expires_at?;
    let until = jiff::Timestamp::from_millisecond((until * 1000.0) as i64).ok()?;
    Some((stored.holder.clone()?, until))
}

/// Reads the cluster's document.
pub async fn read(ecs: &Ecs) -> anyhow::Result<Snapshot> {
    let stored = ecs.updater_state().await?;
    Ok(Snapshot {
        doc: Document::decode(&stored)?,
        lease: lease_of(&stored),
        revision: stored.revision,
    })
}

/// Changes the document (read, `change`, write on the revision, again on a conflict),
/// as `holder` (taking or renewing its lease for `lease`) or, with `None`, as an edit that
/// leaves the lease alone. Fails if another holder's lease runs.
async fn change(
    ecs: &Ecs,
    holder: Option<&str>,
    lease: Duration,
    mut current: Option<Snapshot>,
    change: &dyn Fn(&mut Document),
) -> anyhow::Result<Snapshot> {
    for _ in 0..ATTEMPTS {
        let mut snap = match current.take() {
            Some(snap) => snap,
            None => read(ecs).await?,
        };
        if let (Some(me), Some((other, _))) = (holder, &snap.lease)
            && other != me
        {
            bail!("updater {other} holds the cluster's updater state");
        }
        change(&mut snap.doc);
        let document = encode(&mut snap.doc)?;
        let req = PutUpdaterStateRequest {
            cluster: None,
            document,
            expected_revision: snap.revision,
            holder: holder.map(str::to_owned),
            lease_seconds: u32::try_from(lease.as_secs()).unwrap_or(u32::MAX),
        };
        match ecs.put_updater_state(req).await? {
            PutOutcome::Stored(stored) => {
                return Ok(Snapshot {
                    doc: snap.doc,
                    lease: lease_of(&stored),
                    revision: stored.revision,
                });
            }
            PutOutcome::Conflict(why) => tracing::debug!("updater state moved on: {why}"),
        }
    }
    bail!("the cluster's updater state kept changing under this updater ({ATTEMPTS} tries)")
}

/// The document as JSON text, within the control plane's limit (oldest events dropped
/// until it fits).
fn encode(doc: &mut Document) -> anyhow::Result<String> {
    loop {
        let text = serde_json::to_string(doc).context("cannot encode the updater state")?;
        if text.len() <= model::updater_state::MAX_UPDATER_DOCUMENT_BYTES {
            return Ok(text);
        }
        if doc.events.is_empty() {
            bail!(
                "the updater state is {} bytes, over the control plane's limit",
                text.len()
            );
        }
        doc.events.drain(..doc.events.len().div_ceil(4));
    }
}

/// Edits the document without a lease (`updater resume`).
pub async fn edit(ecs: &Ecs, f: &dyn Fn(&mut Document)) -> anyhow::Result<Document> {
    Ok(change(ecs, None, Duration::ZERO, None, f).await?.doc)
}

/// A running updater's hold on the document.
pub struct Store<'a> {
    ecs: &'a Ecs,
    holder: String,
    current: Snapshot,
    renewed: tokio::time::Instant,
}

impl<'a> Store<'a> {
    /// Waits until no other updater holds the lease, then takes it. `waiting` is told
    /// who holds it each time this waits.
    pub async fn acquire(ecs: &'a Ecs, waiting: &dyn Fn(&str)) -> anyhow::Result<Store<'a>> {
        let holder = holder_name();
        loop {
            let snap = read(ecs).await?;
            if let Some((other, until)) = &snap.lease
                && *other != holder
            {
                waiting(&format!("updater {other} holds the cluster until {until}"));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            match change(ecs, Some(&holder), LEASE, Some(snap), &|_| {}).await {
                Ok(current) => {
                    return Ok(Store {
                        ecs,
                        holder,
                        current,
                        renewed: tokio::time::Instant::now(),
                    });
                }
                // Someone else took it between the read and the write: wait again.
                Err(e) => tracing::debug!("{e:#}"),
            }
        }
    }

    /// This updater's name in the lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The state as last read or written.
    pub fn state(&self) -> &State {
        &self.current.doc.state
    }

    /// Changes the document (renewing the lease).
    pub async fn update(&mut self, f: &dyn Fn(&mut Document)) -> anyhow::Result<&State> {
        let started = tokio::time::Instant::now();
        let current = Some(self.current.clone());
        self.current = change(self.ecs, Some(&self.holder), LEASE, current, f)
            .await
            .context("lost the updater state's lease")?;
        self.renewed = started;
        Ok(&self.current.doc.state)
    }

    /// Reads the document again (what `updater resume` changed), renewing the lease.
    pub async fn reload(&mut self) -> anyhow::Result<&State> {
        self.update(&|_| {}).await
    }

    /// Adds an event.
    pub async fn record(&mut self, event: Event) -> anyhow::Result<()> {
        self.update(&|d| d.push(event.clone())).await.map(|_| ())
    }

    /// Sleeps `d`, renewing the lease whenever a third of it is left.
    pub async fn sleep(&mut self, d: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + d;
        loop {
            let renew_at = self.renewed + LEASE * 2 / 3;
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            if now >= renew_at {
                self.reload().await?;
                continue;
            }
            tokio::time::sleep_until(end.min(renew_at)).await;
        }
    }

    /// Gives the lease up (another updater may go on at once).
    pub async fn release(self) -> anyhow::Result<()> {
        change(self.ecs, Some(&self.holder), Duration::ZERO, None, &|_| {})
            .await
            .map(|_| ())
    }
}

/// `host:pid:start-nanos`: unique enough to tell two updaters apart.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}:{}:{nanos:09}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> Event {
        Event {
            at: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            node: Some(format!("i-{i}")),
            what: "wait".into(),
            why: format!("event {i}"),
        }
    }

    #[test]
    fn events_are_kept_to_the_last_ones() {
        let mut doc = Document::default();
        for i in 0..MAX_EVENTS + 50 {
            doc.push(event(i));
        }
        assert_eq!(doc.events.len(), MAX_EVENTS);
        assert_eq!(doc.events[0].why, "event 50");
    }

    #[test]
    fn an_oversized_document_drops_old_events_until_it_fits() {
        let mut doc = Document::default();
        let long = "x".repeat(4000);
        for i in 0..MAX_EVENTS {
            doc.push(Event {
                why: format!("{i} {long}"),
                ..event(i)
            });
        }
        let text = encode(&mut doc).unwrap();
        assert!(text.len() <= model::updater_state::MAX_UPDATER_DOCUMENT_BYTES);
        assert!(doc.events.len() < MAX_EVENTS && !doc.events.is_empty());
        assert!(doc.events.last().unwrap().why.starts_with("199 "));
        let back: Document = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn a_missing_document_is_a_fresh_state() {
        let doc = Document::decode(&UpdaterStateResponse::default()).unwrap();
        assert_eq!(doc.state, State::new());
        assert!(doc.events.is_empty());
    }
}
