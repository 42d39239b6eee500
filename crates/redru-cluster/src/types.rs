//! The types the cluster replicates: openraft's type configuration, the
//! request (a list of redru operations applied as one atomic batch, or a
//! group of such requests the leader's batcher put in one entry) and the
//! response. A request is plain data: it is checked when applied, identically
//! on every node, so a bad one is answered with [`Response::Rejected`], never an error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node's identity in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of a redru cluster.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of a redru cluster.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A Raft vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership as the state machine records it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// openraft's storage error, as this crate reports it.
pub type StorageError = openraft::StorageError<NodeId>;
/// A Raft node of a redru cluster.
pub type Raft = openraft::Raft<TypeConfig>;

/// One redru operation inside a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Sets `key` to the JSON value written in `value` (JSON text, kept as written).
    Set {
        /// The key.
        key: String,
        /// The value, as JSON text.
        value: String,
    },
    /// Deletes `key` (nothing happens if it is absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Removes every key; the operations after it apply to an empty database.
    Clear,
}

/// What must hold of one key when a [`Request`] is applied: the value a
/// command read when it computed its writes (on whichever node, however
/// stale). Checked on every node against the state just before the entry,
/// so a write computed from an outdated read is refused the same everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cond {
    /// The key.
    pub key: String,
    /// Its value as JSON text, or `None`: the key must be absent.
    pub equals: Option<String>,
}

/// What a client asks the cluster to do: operations applied in order as one
/// atomic `redru::Batch`, all or none, if every condition holds.
///
/// Or, when `many` is not empty, a group of requests the leader's batcher
/// proposed as one entry so that concurrent writes share one append (and one
/// fsync): each is applied in order, atomically on its own, with its own
/// conditions checked against the state left by the ones before it, and gets
/// its own answer in [`Response::Many`]; `ops` and `conditions` are then
/// empty. The field is left out when empty, so single requests are written
/// exactly as before and entries of older logs read unchanged. The group's
/// requests are shared (`Arc`): openraft clones an entry for every
/// follower's append and for the apply, which cost each write's strings a
/// copy each time (about 8% of every node's CPU under load).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Conditions checked atomically with the operations (none: apply unconditionally).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Cond>,
    /// The requests of a group (see above); none for a single request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub many: Vec<Arc<Request>>,
}

impl Request {
    /// A request of one set.
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Request {
        Request { ops: vec![Op::Set { key: key.into(), value: value.into() }], ..Request::default() }
    }
    /// A request of one delete.
    pub fn delete(key: impl Into<String>) -> Request {
        Request { ops: vec![Op::Delete { key: key.into() }], ..Request::default() }
    }
    /// A group of requests proposed as one entry, each applied on its own.
    pub fn many(requests: Vec<Request>) -> Request {
        Request { many: requests.into_iter().map(Arc::new).collect(), ..Request::default() }
    }

    /// An upper bound of the bytes of this request as JSON (as the log line
    /// and the peer port write it), without writing it: the batcher sizes
    /// every write by it, and serializing each write only to count its
    /// bytes was a visible part of the leader's CPU.
    pub(crate) fn json_len_bound(&self) -> usize {
        // `{"ops":[],"conditions":[],"many":[]}` and the commas between items.
        const FRAME: usize = 40;
        // `{"op":"delete","key":}` and a comma; a set's `,"value":` is counted in SET.
        const OP: usize = 24;
        const SET: usize = 10;
        const COND: usize = 24;
        let ops = self.ops.iter().map(|op| match op {
            Op::Set { key, value } => OP + SET + json_str_len(key) + json_str_len(value),
            Op::Delete { key } => OP + json_str_len(key),
            Op::Clear => OP,
        });
        let conds = self.conditions.iter().map(|c| COND + json_str_len(&c.key) + c.equals.as_deref().map_or(4, json_str_len));
        let many = self.many.iter().map(|r| 1 + r.json_len_bound());
        FRAME.saturating_add(ops.chain(conds).chain(many).fold(0, usize::saturating_add))
    }
}

/// The bytes serde_json writes for `s` as a string, quotes included (at
/// most: a control character other than `\n`, `\t`... is `\u00XX`).
fn json_str_len(s: &str) -> usize {
    2 + s.bytes().map(|b| match b {
        b'"' | b'\\' => 2,
        0..=0x1f => 6,
        _ => 1,
    }).sum::<usize>()
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.many.is_empty() {
            write!(f, "request of {} operation(s)", self.ops.len())
        } else {
            write!(f, "group of {} request(s)", self.many.len())
        }
    }
}

/// The state machine's answer to a [`Request`], the same on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// All operations were applied, atomically.
    Applied {
        /// How many operations the batch held.
        ops: usize,
    },
    /// Nothing was applied: a value was not valid JSON, a key was reserved, or
    /// the engine refused the batch (a unique index, for example).
    Rejected {
        /// Why, for a person.
        reason: String,
    },
    /// Nothing was applied: a condition did not hold (the state changed
    /// since the command read it). Recompute on fresh state and retry.
    Conflict {
        /// Which condition failed, for a person.
        reason: String,
    },
    /// The entry carried no request (a blank or membership entry).
    None,
    /// The answers to a group's requests ([`Request::many`]), in order.
    Many {
        /// One answer per request.
        responses: Vec<Response>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batcher's size bound is never below what serde_json writes, for
    /// plain text, quotes, backslashes, control characters and multi-byte UTF-8.
    #[test]
    fn the_json_length_bound_is_never_below_the_encoding() -> Result<(), serde_json::Error> {
        let texts = ["", "a", r#""quoted""#, "back\\slash", "\u{0}\u{1}\n\t\u{1f}", "é€😀", r#"{"a":[1,"x\"y"]}"#];
        let mut requests = Vec::new();
        for t in texts {
            requests.push(Request::set(t, t));
            requests.push(Request::delete(t));
            requests.push(Request {
                ops: vec![Op::Clear, Op::Set { key: t.into(), value: t.into() }],
                conditions: vec![Cond { key: t.into(), equals: Some(t.into()) }, Cond { key: t.into(), equals: None }],
                many: Vec::new(),
            });
        }
        requests.push(Request::many(requests.clone()));
        requests.push(Request::default());
        for r in &requests {
            let written = serde_json::to_vec(r)?.len();
            assert!(r.json_len_bound() >= written, "{r}: bound {} < {written}", r.json_len_bound());
        }
        Ok(())
    }
}
