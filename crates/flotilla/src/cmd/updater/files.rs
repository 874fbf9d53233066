//! The updater's files in its state directory: `state.json` (the `rollout::State`,
//! replaced atomically: temporary file, fsync, rename) and `events.jsonl` (one
//! `rollout::Event` per line, trimmed to the last [`MAX_EVENTS`]).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rollout::{Event, State};

/// Events kept in `events.jsonl`.
pub const MAX_EVENTS: usize = 1000;

/// The state directory of one cluster.
pub struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    /// Opens (creating) `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<StateFiles> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        Ok(StateFiles {
            dir: dir.to_owned(),
        })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    /// The saved state, or a fresh one when there is none yet.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid updater state", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Replaces `state.json` in one rename (`durable::write`).
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(state).context("cannot encode the state")?;
        bytes.push(b'\n');
        durable::write(&path, &bytes, 0o644)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Appends an event; past [`MAX_EVENTS`] lines, keeps the last ones (the file is
    /// small enough to read back at each append).
    pub fn append(&self, event: &Event) -> anyhow::Result<()> {
        let path = self.events_path();
        let line = serde_json::to_string(event).context("cannot encode an event")?;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(file, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
        drop(file);
        let lines = self.read_lines()?;
        if lines.len() > MAX_EVENTS {
            let keep = &lines[lines.len() - MAX_EVENTS..];
            durable::write(&path, (keep.join("\n") + "\n").as_bytes(), 0o644)
                .with_context(|| format!("cannot trim {}", path.display()))?;
        }
        Ok(())
    }

    /// The last `n` events (lines that do not parse are left out).
    pub fn last_events(&self, n: usize) -> anyhow::Result<Vec<Event>> {
        let lines = self.read_lines()?;
        Ok(lines[lines.len().saturating_sub(n)..]
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    fn read_lines(&self) -> anyhow::Result<Vec<String>> {
        let path = self.events_path();
        match File::open(&path) {
            Ok(file) => BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
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
    fn state_is_saved_and_loaded_and_missing_state_is_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::open(&dir.path().join("c")).unwrap();
        assert_eq!(files.load().unwrap(), State::new());
        let mut state = State::new();
        state.skipped.insert(
            "arn".into(),
            rollout::Skipped {
                instance_id: "i-1".into(),
                reason: "r".into(),
                at: jiff::Timestamp::UNIX_EPOCH,
            },
        );
        files.save(&state).unwrap();
        assert_eq!(files.load().unwrap(), state);
        assert!(!dir.path().join("c/state.json.tmp").exists());
    }

    #[test]
    fn events_are_kept_to_the_last_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::open(dir.path()).unwrap();
        for i in 0..1200 {
            files.append(&event(i)).unwrap();
        }
        let all = files.last_events(5000).unwrap();
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0].why, "event 200");
        assert_eq!(all.last().unwrap().why, "event 1199");
        let last = files.last_events(20).unwrap();
        assert_eq!(last.len(), 20);
        assert_eq!(last[0].why, "event 1180");
    }
}
