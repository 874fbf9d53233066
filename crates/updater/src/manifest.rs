//! `manifest.json`: the list of published versions, their waves and the migrations between them,
//! plus the pure functions that decide which update a node takes.
//!
//! Format (compatible in shape with Bottlerocket's `update_metadata`):
//!
//! ```json
//! {
//!   "updates": [{
//!     "variant": "flotilla-node", "arch": "x86_64",
//!     "version": "1.1.0", "max_version": "1.1.0",
//!     "waves": {"0": "2026-11-25T10:00:00Z", "1024": "2026-11-26T10:00:00Z"},
//!     "images": {"root": "flotilla-node-1.1.0.tar.gz"}
//!   }],
//!   "migrations": {"(1.0.0, 1.1.0)": ["migrate_1.1.0_add-attribute.json"]}
//! }
//! ```
//!
//! Waves are evaluated on the node from its persisted seed (0..2048) and `now`; nothing here
//! reads a clock or a random source.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use semver::Version;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// `(from, to)` → migration names.
pub type MigrationMap = BTreeMap<(Version, Version), Vec<String>>;

/// Seeds are in `[0, MAX_SEED)`.
pub const MAX_SEED: u32 = 2048;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// One entry per (variant, arch, version).
    #[serde(default)]
    pub updates: Vec<Update>,
    /// `(from, to)` → ordered migration target names.
    #[serde(
        default,
        serialize_with = "ser_migrations",
        deserialize_with = "de_migrations"
    )]
    pub migrations: MigrationMap,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// Image variant, e.g. `flotilla-node`.
    pub variant: String,
    /// CPU architecture, e.g. `x86_64`.
    pub arch: String,
    /// This version.
    pub version: Version,
    /// Nodes above this version roll back down to the newest version at or below it.
    pub max_version: Version,
    /// First seed of each wave → time the wave opens. Empty = available to everyone now.
    #[serde(default, serialize_with = "ser_waves", deserialize_with = "de_waves")]
    pub waves: BTreeMap<u32, Timestamp>,
    /// TUF target names of the image(s); `root` is the node image archive.
    pub images: BTreeMap<String, String>,
}

impl Update {
    /// The node image target name.
    ///
    /// # Errors
    /// When the entry has no `root` image.
    pub fn root_image(&self) -> Result<&str> {
        self.images
            .get("root")
            .map(String::as_str)
            .ok_or_else(|| Error::Manifest(format!("update {} has no root image", self.version)))
    }
}

fn ser_waves<S: Serializer>(w: &BTreeMap<u32, Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    let m: BTreeMap<String, String> = w
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.serialize(s)
}

fn de_waves<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, Timestamp>, D::Error> {
    let m: BTreeMap<String, Timestamp> = BTreeMap::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let seed: u32 = k
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("wave key {k:?} is not a seed")))?;
        if seed > MAX_SEED {
            return Err(serde::de::Error::custom(format!(
                "wave seed {seed} is above {MAX_SEED}"
            )));
        }
        out.insert(seed, v);
    }
    Ok(out)
}

fn ser_migrations<S: Serializer>(m: &MigrationMap, s: S) -> Result<S::Ok, S::Error> {
    let out: BTreeMap<String, &Vec<String>> = m
        .iter()
        .map(|((a, b), v)| (format!("({a}, {b})"), v))
        .collect();
    out.serialize(s)
}

fn de_migrations<'de, D: Deserializer<'de>>(d: D) -> Result<MigrationMap, D::Error> {
    let m: BTreeMap<String, Vec<String>> = BTreeMap::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let pair = parse_migration_key(&k).map_err(serde::de::Error::custom)?;
        out.insert(pair, v);
    }
    Ok(out)
}

/// Parses `"(1.0.0, 1.1.0)"`.
fn parse_migration_key(k: &str) -> Result<(Version, Version), String> {
    let inner = k
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("migration key {k:?} is not \"(FROM, TO)\""))?;
    let (a, b) = inner
        .split_once(',')
        .ok_or_else(|| format!("migration key {k:?} is not \"(FROM, TO)\""))?;
    let a = Version::parse(a.trim()).map_err(|e| format!("migration key {k:?}: {e}"))?;
    let b = Version::parse(b.trim()).map_err(|e| format!("migration key {k:?}: {e}"))?;
    Ok((a, b))
}

impl Manifest {
    /// Parses and validates a manifest.
    ///
    /// # Errors
    /// Malformed JSON, or waves whose times are not ascending with the seed.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| Error::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks wave ordering.
    ///
    /// # Errors
    /// When a later wave opens before an earlier one.
    pub fn validate(&self) -> Result<()> {
        for u in &self.updates {
            let mut last: Option<Timestamp> = None;
            for t in u.waves.values() {
                if let Some(l) = last
                    && *t < l
                {
                    return Err(Error::Manifest(format!(
                        "waves of {} are not ascending in time",
                        u.version
                    )));
                }
                last = Some(*t);
            }
        }
        Ok(())
    }

    /// Adds (or replaces) an update and raises `max_version` of every update of the same
    /// variant/arch to the highest version present, as Bottlerocket's publisher does —
    /// except a pulled release (its version above its own `max_version`): it stays pulled
    /// when a newer one is published, instead of being offered again.
    pub fn add_update(&mut self, update: Update) {
        self.updates.retain(|u| {
            !(u.variant == update.variant && u.arch == update.arch && u.version == update.version)
        });
        self.updates.push(update);
        let max = self.updates.iter().map(|u| u.version.clone()).max();
        if let Some(max) = max {
            for u in &mut self.updates {
                let pulled = u.version > u.max_version;
                if u.max_version < max && !pulled {
                    u.max_version = max.clone();
                }
            }
        }
        self.updates.sort_by(|a, b| b.version.cmp(&a.version));
    }

    /// The migrations to run to move a datastore from `from` to `to` (either direction).
    ///
    /// When the manifest lists no migration entry inside the range, none are needed. Otherwise
    /// the entries must form a contiguous chain: walk upward from the lower version taking, at
    /// each step, the entry whose target is the largest not above the higher version (fail safe:
    /// a gap refuses the update). The list is reversed for a downgrade.
    ///
    /// # Errors
    /// [`Error::MissingMigration`] when no chain of entries covers the range.
    pub fn migrations_between(&self, from: &Version, to: &Version) -> Result<Vec<String>> {
        if from == to {
            return Ok(Vec::new());
        }
        let (low, high) = if from < to { (from, to) } else { (to, from) };
        let relevant = self
            .migrations
            .keys()
            .any(|(a, b)| a >= low && b <= high && a < b);
        if !relevant {
            // No entry between the two versions at all: the datastore format did not change.
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut at = low.clone();
        while &at < high {
            let step = self
                .migrations
                .iter()
                .filter(|((a, b), _)| *a == at && b <= high && *b > at)
                .max_by(|x, y| x.0.1.cmp(&y.0.1));
            let Some(((_, b), list)) = step else {
                return Err(Error::MissingMigration {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            };
            out.extend(list.iter().cloned());
            at = b.clone();
        }
        if from > to {
            out.reverse();
        }
        Ok(out)
    }
}

/// Where a seed falls among the waves of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wave {
    /// No waves: available to everyone.
    None,
    /// Seed below the first wave key: available at once.
    Initial,
    /// Between two wave starts.
    General {
        start: (u32, Timestamp),
        end: (u32, Timestamp),
    },
    /// At or after the last wave start.
    Last { start: Timestamp },
}

fn wave_of(waves: &BTreeMap<u32, Timestamp>, seed: u32) -> Wave {
    let start = waves.range(..=seed).next_back().map(|(k, v)| (*k, *v));
    let end = waves.range(seed + 1..).next().map(|(k, v)| (*k, *v));
    match (start, end) {
        (None, None) => Wave::None,
        (None, Some(_)) => Wave::Initial,
        (Some(s), Some(e)) => Wave::General { start: s, end: e },
        (Some(s), None) => Wave::Last { start: s.1 },
    }
}

/// Whether `update` has reached the node with `seed` at `now`.
///
/// A wave key is the *first* seed of that wave: seeds `[k_i, k_{i+1})` open at `t_i`, spread
/// linearly until `t_{i+1}` (seed `k_i` at `t_i`, seed `k_{i+1}` at `t_{i+1}`). Unlike
/// Bottlerocket's `update_wave`, which multiplies by the absolute seed, the spread uses the
/// offset inside the wave, so a wave never opens for a seed before its start time.
#[must_use]
pub fn update_ready(update: &Update, seed: u32, now: Timestamp) -> bool {
    match wave_of(&update.waves, seed) {
        Wave::None | Wave::Initial => true,
        Wave::Last { start } => start <= now,
        Wave::General { start, end } => {
            if now < start.1 {
                return false;
            }
            if end.1 <= now {
                return true;
            }
            let seeds = i64::from(end.0 - start.0);
            if seeds == 0 {
                return true;
            }
            let span = end.1.duration_since(start.1);
            let per_seed = span / i32::try_from(seeds).unwrap_or(i32::MAX);
            let offset = i32::try_from(seed - start.0).unwrap_or(i32::MAX);
            let target = start.1 + per_seed.checked_mul(offset).unwrap_or(SignedDuration::MAX);
            now >= target
        }
    }
}

/// What the node's update settings say about choosing an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Node variant (only updates of this variant apply).
    pub variant: String,
    /// Node architecture.
    pub arch: String,
    /// The node's persisted seed in `[0, 2048)`.
    pub seed: u32,
    /// Skip wave evaluation (`settings.updates.ignore-waves`).
    pub ignore_waves: bool,
    /// `None` = latest, else this exact version.
    pub version_lock: Option<Version>,
}

/// Updates that apply to this node now, highest version first.
#[must_use]
pub fn applicable_updates<'a>(
    manifest: &'a Manifest,
    policy: &Policy,
    now: Timestamp,
) -> Vec<&'a Update> {
    let mut v: Vec<&Update> = manifest
        .updates
        .iter()
        .filter(|u| u.variant == policy.variant && u.arch == policy.arch)
        .filter(|u| u.version <= u.max_version)
        .filter(|u| policy.ignore_waves || update_ready(u, policy.seed, now))
        .collect();
    v.sort_by(|a, b| b.version.cmp(&a.version));
    v
}

/// The update the node should move to, if any: with a version lock, that exact version (when
/// applicable and different from `current`); otherwise the newest applicable version above
/// `current`, or — when `current` is above the published `max_version` — the newest one at or
/// below it (a pulled release rolls back).
#[must_use]
pub fn choose_update<'a>(
    applicable: &[&'a Update],
    current: &Version,
    policy: &Policy,
) -> Option<&'a Update> {
    if let Some(lock) = &policy.version_lock {
        return applicable
            .iter()
            .find(|u| &u.version == lock && &u.version != current)
            .copied();
    }
    applicable
        .iter()
        .find(|u| current < &u.version || current > &u.max_version)
        .copied()
}

/// One wave of a publishing policy: opens `start_after` after the release time and covers the
/// fleet up to `fleet_percentage` (cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaveSpec {
    /// Delay after the release time.
    pub start_after: SignedDuration,
    /// Cumulative share of the fleet (1..=100).
    pub fleet_percentage: u32,
}

/// Turns a wave policy into manifest waves (Bottlerocket's `set_waves`): the first wave starts
/// at seed 0, each next wave at `floor(pct/100 × 2048)` of the previous wave.
///
/// # Errors
/// Percentages out of range or not increasing.
pub fn waves_from_policy(
    release: Timestamp,
    policy: &[WaveSpec],
) -> Result<BTreeMap<u32, Timestamp>> {
    let mut out = BTreeMap::new();
    let mut seed = 0u32;
    let mut last_pct = 0u32;
    for w in policy {
        if w.fleet_percentage == 0 || w.fleet_percentage > 100 || w.fleet_percentage <= last_pct {
            return Err(Error::Manifest(format!(
                "wave percentages must increase within 1..=100, got {}",
                w.fleet_percentage
            )));
        }
        let at = release
            .checked_add(w.start_after)
            .map_err(|e| Error::Manifest(e.to_string()))?;
        out.insert(seed, at);
        seed = w.fleet_percentage * MAX_SEED / 100;
        last_pct = w.fleet_percentage;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn upd(v: &str, waves: &[(u32, &str)]) -> Update {
        Update {
            variant: "flotilla-node".into(),
            arch: "x86_64".into(),
            version: Version::parse(v).unwrap(),
            max_version: Version::parse(v).unwrap(),
            waves: waves.iter().map(|(k, s)| (*k, t(s))).collect(),
            images: [("root".to_owned(), format!("img-{v}.tar.gz"))].into(),
        }
    }

    fn policy(seed: u32) -> Policy {
        Policy {
            variant: "flotilla-node".into(),
            arch: "x86_64".into(),
            seed,
            ignore_waves: false,
            version_lock: None,
        }
    }

    #[test]
    fn waves_spread_linearly_inside_a_wave() {
        let u = upd(
            "1.1.0",
            &[(0, "2026-01-01T00:00:00Z"), (1000, "2026-01-11T00:00:00Z")],
        );
        // seed 0 is the initial seed of the first wave: opens at the first wave time
        assert!(!update_ready(&u, 0, t("2025-12-31T00:00:00Z")));
        assert!(update_ready(&u, 0, t("2026-01-01T00:00:00Z")));
        // seed 500 opens half way (day 5)
        assert!(!update_ready(&u, 500, t("2026-01-05T23:00:00Z")));
        assert!(update_ready(&u, 500, t("2026-01-06T00:00:00Z")));
        // seeds at/after the last key open at the last time
        assert!(!update_ready(&u, 1500, t("2026-01-10T00:00:00Z")));
        assert!(update_ready(&u, 1500, t("2026-01-11T00:00:00Z")));
    }

    #[test]
    fn seed_below_first_key_is_initial_wave() {
        let u = upd("1.1.0", &[(100, "2030-01-01T00:00:00Z")]);
        assert!(update_ready(&u, 5, t("2026-01-01T00:00:00Z")));
        assert!(!update_ready(&u, 100, t("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn ignore_waves_and_max_version() {
        let mut m = Manifest::default();
        m.add_update(upd("1.0.0", &[]));
        m.add_update(upd("1.1.0", &[(0, "2030-01-01T00:00:00Z")]));
        let now = t("2026-01-01T00:00:00Z");
        let cur = Version::new(1, 0, 0);
        let p = policy(7);
        assert!(choose_update(&applicable_updates(&m, &p, now), &cur, &p).is_none());
        let p2 = Policy {
            ignore_waves: true,
            ..p
        };
        let chosen = choose_update(&applicable_updates(&m, &p2, now), &cur, &p2).unwrap();
        assert_eq!(chosen.version, Version::new(1, 1, 0));
        // max_version raised on older entries
        assert!(
            m.updates
                .iter()
                .all(|u| u.max_version == Version::new(1, 1, 0))
        );
    }

    #[test]
    fn pulled_release_rolls_nodes_back() {
        let mut m = Manifest::default();
        m.add_update(upd("1.0.0", &[]));
        for u in &mut m.updates {
            u.max_version = Version::new(1, 0, 0);
        }
        let p = policy(1);
        let now = t("2026-01-01T00:00:00Z");
        let chosen =
            choose_update(&applicable_updates(&m, &p, now), &Version::new(1, 1, 0), &p).unwrap();
        assert_eq!(chosen.version, Version::new(1, 0, 0));
    }

    #[test]
    fn a_pulled_release_stays_pulled_when_a_newer_one_is_published() {
        let mut m = Manifest::default();
        m.add_update(upd("1.1.0", &[]));
        m.add_update(upd("1.2.0", &[]));
        for u in &mut m.updates {
            u.max_version = Version::new(1, 1, 0); // 1.2.0 pulled
        }
        m.add_update(upd("1.3.0", &[]));
        let p = policy(1);
        let now = t("2026-01-01T00:00:00Z");
        let offered: Vec<Version> = applicable_updates(&m, &p, now)
            .iter()
            .map(|u| u.version.clone())
            .collect();
        assert!(!offered.contains(&Version::new(1, 2, 0)), "{offered:?}");
        assert!(offered.contains(&Version::new(1, 3, 0)), "{offered:?}");
    }

    #[test]
    fn version_lock_picks_exact_version() {
        let mut m = Manifest::default();
        m.add_update(upd("1.0.0", &[]));
        m.add_update(upd("1.1.0", &[]));
        m.add_update(upd("1.2.0", &[]));
        let p = Policy {
            version_lock: Some(Version::new(1, 1, 0)),
            ..policy(3)
        };
        let now = t("2026-01-01T00:00:00Z");
        let chosen =
            choose_update(&applicable_updates(&m, &p, now), &Version::new(1, 0, 0), &p).unwrap();
        assert_eq!(chosen.version, Version::new(1, 1, 0));
    }

    #[test]
    fn other_variant_is_ignored() {
        let mut m = Manifest::default();
        let mut u = upd("2.0.0", &[]);
        u.variant = "other".into();
        m.add_update(u);
        assert!(applicable_updates(&m, &policy(0), t("2026-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn migrations_chain_forward_and_backward() {
        let json = br#"{"updates":[],"migrations":{
            "(1.0.0, 1.1.0)": ["m1"], "(1.1.0, 1.2.0)": ["m2", "m3"]}}"#;
        let m = Manifest::from_json(json).unwrap();
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            m.migrations_between(&v("1.0.0"), &v("1.2.0")).unwrap(),
            ["m1", "m2", "m3"]
        );
        assert_eq!(
            m.migrations_between(&v("1.2.0"), &v("1.0.0")).unwrap(),
            ["m3", "m2", "m1"]
        );
        assert!(m.migrations_between(&v("1.0.0"), &v("1.3.0")).is_err());
        // no entries in range: nothing to run
        assert!(
            m.migrations_between(&v("1.2.0"), &v("1.5.0"))
                .unwrap()
                .is_empty()
        );
        // an entry in range but not reachable from the start: refused
        assert!(m.migrations_between(&v("0.9.0"), &v("1.1.0")).is_err());
        assert!(
            m.migrations_between(&v("1.0.0"), &v("1.0.0"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn manifest_round_trips_and_rejects_bad_waves() {
        let mut m = Manifest::default();
        m.add_update(upd(
            "1.1.0",
            &[(0, "2026-01-01T00:00:00Z"), (20, "2026-01-02T00:00:00Z")],
        ));
        m.migrations.insert(
            (Version::new(1, 0, 0), Version::new(1, 1, 0)),
            vec!["x".into()],
        );
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(Manifest::from_json(&bytes).unwrap(), m);
        let bad = br#"{"updates":[{"variant":"v","arch":"a","version":"1.0.0","max_version":"1.0.0",
            "waves":{"0":"2026-01-02T00:00:00Z","10":"2026-01-01T00:00:00Z"},"images":{"root":"r"}}]}"#;
        assert!(Manifest::from_json(bad).is_err());
    }

    #[test]
    fn default_wave_policy_gives_bottlerocket_keys() {
        let h = |n: i64| SignedDuration::from_hours(n);
        let policy = [
            WaveSpec {
                start_after: h(1),
                fleet_percentage: 1,
            },
            WaveSpec {
                start_after: h(4),
                fleet_percentage: 5,
            },
            WaveSpec {
                start_after: h(24),
                fleet_percentage: 15,
            },
            WaveSpec {
                start_after: h(48),
                fleet_percentage: 40,
            },
            WaveSpec {
                start_after: h(96),
                fleet_percentage: 60,
            },
            WaveSpec {
                start_after: h(120),
                fleet_percentage: 90,
            },
            WaveSpec {
                start_after: h(144),
                fleet_percentage: 100,
            },
        ];
        let w = waves_from_policy(t("2026-01-01T00:00:00Z"), &policy).unwrap();
        assert_eq!(
            w.keys().copied().collect::<Vec<_>>(),
            [0, 20, 102, 307, 819, 1228, 1843]
        );
    }
}
