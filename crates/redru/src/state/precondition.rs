//! Preconditions of a conditional write: what must hold of a key, checked
//! against the state just before a record is logged.
//!
//! Pure: no I/O. Never logged: a record whose conditions failed is not
//! written at all, and replay needs no condition because the log holds only
//! records that passed theirs.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::state::change::Seq;
use crate::state::store::Map;

/// What must hold of one key for a conditional write to go ahead.
#[derive(Clone, Debug, PartialEq)]
pub enum Precondition {
    /// The key does not exist.
    Absent(String),
    /// The key exists and its value equals this one (serde_json's equality:
    /// `1` and `1.0` differ, member order does not matter).
    Equals(String, Value),
    /// The key exists and the record that last wrote it has a seq at most
    /// this one: nothing wrote it since. Keys loaded from a snapshot report
    /// the snapshot's seq (the file keeps no per-key seq), so after a
    /// reopen a condition from before it may fail where it would have
    /// passed; it never passes wrongly.
    Unchanged(String, Seq),
}

impl Precondition {
    /// The key the condition is on.
    pub fn key(&self) -> &str {
        match self {
            Precondition::Absent(k) | Precondition::Equals(k, _) | Precondition::Unchanged(k, _) => k,
        }
    }

    /// Checks the condition against `map` at `now` (ms since the epoch: a
    /// key expired by then is absent); `index` is its position, for the error.
    ///
    /// # Errors
    /// [`Error::ConditionFailed`] naming the key, what was required and what was found.
    pub fn check(&self, map: &Map, index: usize, now: u64) -> Result<()> {
        let current = map.get_with_seq(self.key(), now);
        let holds = match (self, current) {
            (Precondition::Absent(_), found) => found.is_none(),
            (Precondition::Equals(_, want), Some((doc, _))) => doc.to_value() == *want,
            (Precondition::Unchanged(_, since), Some((_, seq))) => seq <= *since,
            (_, None) => false,
        };
        if holds {
            return Ok(());
        }
        let expected = match self {
            Precondition::Absent(_) => "is absent".to_owned(),
            Precondition::Equals(_, v) => format!("equals {}", short(&v.to_string())),
            Precondition::Unchanged(_, since) => format!("is unchanged since record {since}"),
        };
        let found = match (self, current) {
            (_, None) => "it is absent".to_owned(),
            (Precondition::Unchanged(..), Some((_, seq))) => format!("it was last written by record {seq}"),
            (_, Some((doc, _))) => format!("it holds {}", short(doc.as_str())),
        };
        Err(Error::ConditionFailed {
            key: self.key().to_owned(),
            index,
            expected,
            found,
            seq: current.map(|(_, s)| s.0),
        })
    }
}

/// JSON text cut to 80 characters for a message.
fn short(text: &str) -> String {
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::doc::Doc;
    use serde_json::json;

    #[test]
    fn each_condition_holds_or_says_what_it_found() {
        let mut map = Map::default();
        map.insert("a".into(), Doc::from(json!({"n": 1})), Seq(4));
        assert!(Precondition::Absent("b".into()).check(&map, 0, 0).is_ok());
        assert!(Precondition::Equals("a".into(), json!({"n": 1})).check(&map, 0, 0).is_ok());
        assert!(Precondition::Unchanged("a".into(), Seq(4)).check(&map, 0, 0).is_ok());
        assert!(Precondition::Unchanged("a".into(), Seq(9)).check(&map, 0, 0).is_ok());
        let failed = |c: Precondition| c.check(&map, 2, 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            failed(Precondition::Absent("a".into())),
            r#"condition 3 failed: `a` is absent, but it holds {"n":1}; nothing was written"#
        );
        assert!(failed(Precondition::Equals("a".into(), json!({"n": 2}))).contains("equals {\"n\":2}"));
        assert!(failed(Precondition::Equals("b".into(), json!(1))).contains("but it is absent"));
        assert!(failed(Precondition::Unchanged("a".into(), Seq(3))).contains("it was last written by record 4"));
        assert!(failed(Precondition::Unchanged("b".into(), Seq(3))).contains("it is absent"));
        // A map loaded from a snapshot at seq 10 reports 10 for its older keys.
        map.set_floor(Seq(10));
        assert!(Precondition::Unchanged("a".into(), Seq(4)).check(&map, 0, 0).is_err());
        assert!(Precondition::Unchanged("a".into(), Seq(10)).check(&map, 0, 0).is_ok());
    }
}
