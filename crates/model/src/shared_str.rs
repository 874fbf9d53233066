//! [`SharedStr`]: an immutable string that every record holding the same text shares.
//!
//! A cluster's 100,000 tasks name the same cluster, container instances, task definition,
//! group, image and statuses. As `String`s each task held its own copy of each (≈ 0.7 KB
//! per task); as `SharedStr`s they hold a pointer to one copy. The wire shapes use it for
//! those members of `Task` and `Container` (see `tools/gen_model.py`'s `SHARED`); on the
//! wire it is a plain JSON string.
//!
//! Every `SharedStr` is made through one process-wide table of the texts in use, so two
//! equal texts are one allocation however they were made (parsed from a request, read
//! back from the store, built with `format!`). The table holds each distinct text once.
//! **Limit:** texts no record holds any more are swept out whenever the table has grown
//! to twice its size after the last sweep (and at least [`SWEEP_FLOOR`] entries), so it
//! never holds more than about twice the distinct texts in use plus [`SWEEP_FLOOR`].
//! Making one costs a hash and a short lock; sweeps are amortized over the inserts that
//! grew the table.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The table never sweeps below this many entries.
pub const SWEEP_FLOOR: usize = 4096;

/// An immutable, shared string (see the module doc).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedStr(Arc<str>);

struct Table {
    texts: HashSet<Arc<str>>,
    sweep_at: usize,
}

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(|| {
        Mutex::new(Table {
            texts: HashSet::new(),
            sweep_at: SWEEP_FLOOR,
        })
    })
}

impl SharedStr {
    /// The shared copy of `text`.
    pub fn new(text: &str) -> SharedStr {
        let mut table = table().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = table.texts.get(text) {
            return SharedStr(Arc::clone(found));
        }
        if table.texts.len() >= table.sweep_at {
            // Only the table holds these: no record uses them any more.
            table.texts.retain(|t| Arc::strong_count(t) > 1);
            table.sweep_at = (2 * table.texts.len()).max(SWEEP_FLOOR);
        }
        let shared: Arc<str> = Arc::from(text);
        table.texts.insert(Arc::clone(&shared));
        SharedStr(shared)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SharedStr {
    fn default() -> SharedStr {
        SharedStr::new("")
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for SharedStr {
    fn from(text: &str) -> SharedStr {
        SharedStr::new(text)
    }
}

impl From<String> for SharedStr {
    fn from(text: String) -> SharedStr {
        SharedStr::new(&text)
    }
}

impl From<&String> for SharedStr {
    fn from(text: &String) -> SharedStr {
        SharedStr::new(text)
    }
}

impl From<SharedStr> for String {
    fn from(text: SharedStr) -> String {
        text.0.to_string()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == *other.0
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == *other.0
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        **self == *other.0
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedStr, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SharedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SharedStr, E> {
                Ok(SharedStr::new(text))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_copy_however_they_were_made() {
        let parsed: SharedStr =
            serde_json::from_str("\"arn:aws:ecs:r:1:cluster/shared-a\"").unwrap();
        let built = SharedStr::from(format!("arn:aws:ecs:r:1:cluster/{}", "shared-a"));
        assert!(Arc::ptr_eq(&parsed.0, &built.0));
        assert_eq!(parsed, "arn:aws:ecs:r:1:cluster/shared-a");
        assert_eq!(
            serde_json::to_string(&built).unwrap(),
            "\"arn:aws:ecs:r:1:cluster/shared-a\""
        );
    }

    #[test]
    fn texts_nobody_holds_are_swept_and_the_table_stays_bounded() {
        let kept = SharedStr::new("kept-while-swept");
        for i in 0..(4 * SWEEP_FLOOR) {
            drop(SharedStr::new(&format!("sweep-me-{i}")));
        }
        let len = table().lock().unwrap().texts.len();
        assert!(len <= 2 * SWEEP_FLOOR + 64, "the table holds {len} texts");
        let again = SharedStr::new("kept-while-swept");
        assert!(
            Arc::ptr_eq(&kept.0, &again.0),
            "a text in use survives sweeps"
        );
    }
}
