//! The A/B "partition table": priority / tries-left / successful flags per slot.
//!
//! This mirrors Bottlerocket's `signpost` (ChromeOS-style GPT priority bits) as a pure value
//! type: every transition is a method returning `Result<()>` that only touches the in-memory
//! flags. Disk IO happens only in [`PartitionState::load`] and [`PartitionState::write`]
//! (atomic write + rename, so a crash leaves either the old or the new table).
//!
//! A slot *will boot* when `(priority > 0 && tries_left > 0) || successful`. The boot selector
//! ([`PartitionState::select_boot`], GRUB's `gptprio.next`) takes the highest priority slot that
//! will boot and decrements its tries. A freshly written slot gets priority 2 and one try; if it
//! never gets marked successful, the next boot skips it and falls back to the other slot.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One of the two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// First slot.
    A,
    /// Second slot.
    B,
}

impl Slot {
    /// The other slot.
    #[must_use]
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// Lower-case name, used for directory names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The flags of one slot (GPT attribute bits 48–56 in Bottlerocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotFlags {
    /// 0–15; higher wins. 0 = never boot.
    pub priority: u8,
    /// 0–15; decremented at each boot attempt that has not yet succeeded.
    pub tries_left: u8,
    /// Set once the slot booted and became healthy.
    pub successful: bool,
}

impl SlotFlags {
    /// Whether the boot selector may pick this slot.
    #[must_use]
    pub fn will_boot(&self) -> bool {
        (self.priority > 0 && self.tries_left > 0) || self.successful
    }
}

/// The whole table: both slots' flags plus which slot is running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Flags of slot A.
    pub a: SlotFlags,
    /// Flags of slot B.
    pub b: SlotFlags,
    /// The slot the node booted from last (the "active" set).
    pub active: Slot,
    /// Set the first time any boot was marked successful.
    pub ever_succeeded: bool,
}

impl PartitionState {
    /// A freshly installed node: `slot` holds a good image (priority 1, successful), the other
    /// slot is empty.
    #[must_use]
    pub fn fresh(slot: Slot) -> Self {
        let good = SlotFlags {
            priority: 1,
            tries_left: 0,
            successful: true,
        };
        let mut s = PartitionState {
            a: SlotFlags::default(),
            b: SlotFlags::default(),
            active: slot,
            ever_succeeded: false,
        };
        *s.flags_mut(slot) = good;
        s
    }

    /// Flags of a slot.
    #[must_use]
    pub fn flags(&self, slot: Slot) -> &SlotFlags {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }

    fn flags_mut(&mut self, slot: Slot) -> &mut SlotFlags {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }

    /// The slot that is not running.
    #[must_use]
    pub fn inactive(&self) -> Slot {
        self.active.other()
    }

    /// Before writing a new image into the inactive slot: make it unbootable.
    pub fn clear_inactive(&mut self) {
        *self.flags_mut(self.inactive()) = SlotFlags::default();
    }

    /// After the inactive slot was written completely: give it one try (still priority 0, so it
    /// is not chosen until [`Self::upgrade_to_inactive`]).
    pub fn mark_inactive_valid(&mut self) {
        let inactive = self.inactive();
        let f = self.flags_mut(inactive);
        f.tries_left = 1;
        f.successful = false;
    }

    /// "Activate": boot the inactive slot next, once.
    ///
    /// # Errors
    /// When the inactive slot was not prepared by [`Self::mark_inactive_valid`].
    pub fn upgrade_to_inactive(&mut self) -> Result<()> {
        let inactive = self.inactive();
        let f = *self.flags(inactive);
        if f.priority != 0 || f.successful || f.tries_left == 0 {
            return Err(Error::Partition {
                op: "upgrade-to-inactive",
                reason: format!("inactive slot {inactive} is not a freshly staged image ({f:?})"),
            });
        }
        self.prefer_inactive();
        Ok(())
    }

    /// The inactive slot first (priority 2), the active one as the fallback (priority 1).
    fn prefer_inactive(&mut self) {
        let inactive = self.inactive();
        self.flags_mut(inactive).priority = 2;
        let active = self.active;
        self.flags_mut(active).priority = 1;
    }

    /// "Deactivate" / `update cancel`: undo [`Self::upgrade_to_inactive`] before rebooting.
    pub fn cancel_upgrade(&mut self) {
        let inactive = self.inactive();
        self.flags_mut(inactive).priority = 0;
        let active = self.active;
        self.flags_mut(active).priority = 2;
    }

    /// Manual rollback: boot the other slot next (it must still be bootable).
    ///
    /// # Errors
    /// When the other slot would not boot (never written, or failed its only try).
    pub fn rollback_to_inactive(&mut self) -> Result<()> {
        let inactive = self.inactive();
        if !self.flags(inactive).will_boot() {
            return Err(Error::Partition {
                op: "rollback-to-inactive",
                reason: format!("slot {inactive} is not bootable"),
            });
        }
        self.prefer_inactive();
        Ok(())
    }

    /// The boot became healthy: keep this slot.
    pub fn mark_successful_boot(&mut self) {
        let active = self.active;
        self.flags_mut(active).successful = true;
        self.ever_succeeded = true;
    }

    /// Which slot the next boot will pick (without consuming a try). A wins ties.
    #[must_use]
    pub fn next(&self) -> Option<Slot> {
        let candidates = [Slot::A, Slot::B]
            .into_iter()
            .filter(|s| self.flags(*s).priority > 0 && self.flags(*s).will_boot());
        let mut best: Option<Slot> = None;
        for s in candidates {
            best = match best {
                Some(b) if self.flags(b).priority >= self.flags(s).priority => Some(b),
                _ => Some(s),
            };
        }
        best
    }

    /// The boot selector: pick [`Self::next`], consume one of its tries if it has not yet
    /// succeeded, and make it the active slot.
    ///
    /// # Errors
    /// When no slot is bootable.
    pub fn select_boot(&mut self) -> Result<Slot> {
        let slot = self.next().ok_or_else(|| Error::Partition {
            op: "boot",
            reason: "no bootable slot".to_owned(),
        })?;
        let f = self.flags_mut(slot);
        if f.tries_left > 0 {
            f.tries_left -= 1;
        }
        self.active = slot;
        Ok(slot)
    }

    /// Reads the table. IO edge.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Writes the table atomically. IO edge.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged() -> PartitionState {
        let mut p = PartitionState::fresh(Slot::A);
        p.clear_inactive();
        p.mark_inactive_valid();
        p
    }

    #[test]
    fn fresh_node_boots_its_slot_forever() {
        let mut p = PartitionState::fresh(Slot::A);
        for _ in 0..5 {
            assert_eq!(p.select_boot().unwrap(), Slot::A);
        }
        assert!(!p.b.will_boot());
    }

    #[test]
    fn staged_but_not_activated_does_not_boot() {
        let mut p = staged();
        assert_eq!(p.next(), Some(Slot::A));
        assert_eq!(p.select_boot().unwrap(), Slot::A);
    }

    #[test]
    fn activated_update_boots_once_then_falls_back_without_success() {
        let mut p = staged();
        p.upgrade_to_inactive().unwrap();
        assert_eq!(p.select_boot().unwrap(), Slot::B);
        assert_eq!(p.b.tries_left, 0);
        // never marked successful: next boot goes back to A on its own
        assert_eq!(p.select_boot().unwrap(), Slot::A);
        assert_eq!(p.select_boot().unwrap(), Slot::A);
    }

    #[test]
    fn successful_update_sticks() {
        let mut p = staged();
        p.upgrade_to_inactive().unwrap();
        assert_eq!(p.select_boot().unwrap(), Slot::B);
        p.mark_successful_boot();
        for _ in 0..3 {
            assert_eq!(p.select_boot().unwrap(), Slot::B);
        }
        assert!(p.ever_succeeded);
    }

    #[test]
    fn cancel_before_reboot_keeps_current_slot() {
        let mut p = staged();
        p.upgrade_to_inactive().unwrap();
        p.cancel_upgrade();
        assert_eq!(p.select_boot().unwrap(), Slot::A);
    }

    #[test]
    fn upgrade_requires_staged_inactive() {
        let mut p = PartitionState::fresh(Slot::A);
        assert!(p.upgrade_to_inactive().is_err());
    }

    #[test]
    fn manual_rollback_swaps_back_to_previous_good_slot() {
        let mut p = staged();
        p.upgrade_to_inactive().unwrap();
        p.select_boot().unwrap();
        p.mark_successful_boot();
        p.rollback_to_inactive().unwrap();
        assert_eq!(p.select_boot().unwrap(), Slot::A);
        // and the failed/empty case is refused
        let mut q = PartitionState::fresh(Slot::A);
        assert!(q.rollback_to_inactive().is_err());
    }

    #[test]
    fn load_write_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("partition.json");
        let p = staged();
        p.write(&path).unwrap();
        assert_eq!(PartitionState::load(&path).unwrap(), p);
    }
}
