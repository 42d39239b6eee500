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

/// One redru operation inside a [`Request`]: `{"op":"set","key":K,"value":V}`,
/// `{"op":"delete","key":K}` or `{"op":"clear"}` (other members ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// Read by hand rather than by serde's derive for an internally tagged enum,
/// which first copies every operation into a buffer of its own (`Content`)
/// to find the tag: that was about a third of a follower's decoding of the
/// leader's appends. The shape read is the one written, in any member order.
impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Op, D::Error> {
        deserializer.deserialize_map(OpVisitor)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpKind {
    Set,
    Delete,
    Clear,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum OpField {
    Op,
    Key,
    Value,
    #[serde(other)]
    Other,
}

/// Fills a member's slot, refusing a member named twice (as serde's derive does).
fn once<T, E: serde::de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    match slot.replace(value) {
        Some(_) => Err(E::duplicate_field(name)),
        None => Ok(()),
    }
}

struct OpVisitor;

impl<'de> serde::de::Visitor<'de> for OpVisitor {
    type Value = Op;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"an operation: {"op":"set"|"delete"|"clear", "key":..., "value":...}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        use serde::de::Error;
        let (mut kind, mut key, mut value) = (None, None, None);
        while let Some(field) = map.next_key::<OpField>()? {
            match field {
                OpField::Op => once(&mut kind, "op", map.next_value::<OpKind>()?)?,
                OpField::Key => once(&mut key, "key", map.next_value::<String>()?)?,
                OpField::Value => once(&mut value, "value", map.next_value::<String>()?)?,
                OpField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let key = || key.ok_or_else(|| A::Error::missing_field("key"));
        match kind.ok_or_else(|| A::Error::missing_field("op"))? {
            OpKind::Set => Ok(Op::Set { value: value.ok_or_else(|| A::Error::missing_field("value"))?, key: key()? }),
            OpKind::Delete => Ok(Op::Delete { key: key()? }),
            OpKind::Clear => Ok(Op::Clear),
        }
    }
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
        let conds =
            self.conditions.iter().map(|c| COND + json_str_len(&c.key) + c.equals.as_deref().map_or(4, json_str_len));
        let many = self.many.iter().map(|r| 1 + r.json_len_bound());
        FRAME.saturating_add(ops.chain(conds).chain(many).fold(0, usize::saturating_add))
    }
}

/// The bytes serde_json writes for `s` as a string, quotes included (at
/// most: a control character other than `\n`, `\t`... is `\u00XX`).
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
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
/// Written as `{"result":"applied","ops":N}` and so on; read by hand (as
/// [`Op`], for the same reason: a follower reads one per forwarded write).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

    /// Operations read back as written, in any member order, ignoring
    /// other members; a missing, repeated or unknown member is refused.
    #[test]
    fn operations_decode_as_the_derive_wrote_them() -> Result<(), serde_json::Error> {
        let ops = vec![
            Op::Set { key: "k".into(), value: r#"{"a":"\"b"}"#.into() },
            Op::Delete { key: "d".into() },
            Op::Clear,
        ];
        let text = serde_json::to_string(&ops)?;
        assert_eq!(
            text,
            r#"[{"op":"set","key":"k","value":"{\"a\":\"\\\"b\"}"},{"op":"delete","key":"d"},{"op":"clear"}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Op>>(&text)?, ops);
        let reordered =
            r#"[{"value":"1","key":"k","op":"set"},{"key":"d","x":[1,{}],"op":"delete"},{"op":"clear","key":"z"}]"#;
        let want = vec![Op::Set { key: "k".into(), value: "1".into() }, Op::Delete { key: "d".into() }, Op::Clear];
        assert_eq!(serde_json::from_str::<Vec<Op>>(reordered)?, want);
        for bad in [
            r#"{"op":"set","key":"k"}"#,
            r#"{"op":"delete"}"#,
            r#"{"key":"k"}"#,
            r#"{"op":"drop","key":"k"}"#,
            r#"{"op":"set","key":"k","key":"j","value":"1"}"#,
            r#"{"op":"set","key":1,"value":"1"}"#,
            r#"["set","k","1"]"#,
        ] {
            assert!(serde_json::from_str::<Op>(bad).is_err(), "{bad} accepted");
        }
        Ok(())
    }

    /// Responses read back as written, in any member order; a missing or
    /// unknown member is refused.
    #[test]
    fn responses_decode_as_the_derive_wrote_them() -> Result<(), serde_json::Error> {
        let all = vec![
            Response::Applied { ops: 3 },
            Response::Rejected { reason: "r".into() },
            Response::Conflict { reason: "c".into() },
            Response::None,
            Response::Many { responses: vec![Response::Applied { ops: 1 }, Response::Many { responses: vec![] }] },
        ];
        let text = serde_json::to_string(&all)?;
        assert_eq!(
            text,
            r#"[{"result":"applied","ops":3},{"result":"rejected","reason":"r"},{"result":"conflict","reason":"c"},{"result":"none"},{"result":"many","responses":[{"result":"applied","ops":1},{"result":"many","responses":[]}]}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Response>>(&text)?, all);
        assert_eq!(
            serde_json::from_str::<Response>(r#"{"ops":2,"x":null,"result":"applied"}"#)?,
            Response::Applied { ops: 2 }
        );
        for bad in [
            r#"{"result":"applied"}"#,
            r#"{"result":"rejected"}"#,
            r#"{"result":"many"}"#,
            r#"{"result":"done"}"#,
            r#"{"ops":1}"#,
        ] {
            assert!(serde_json::from_str::<Response>(bad).is_err(), "{bad} accepted");
        }
        Ok(())
    }

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

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Response, D::Error> {
        deserializer.deserialize_map(ResponseVisitor)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ResponseKind {
    Applied,
    Rejected,
    Conflict,
    None,
    Many,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ResponseField {
    Result,
    Ops,
    Reason,
    Responses,
    #[serde(other)]
    Other,
}

struct ResponseVisitor;

impl<'de> serde::de::Visitor<'de> for ResponseVisitor {
    type Value = Response;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"a response: {"result":"applied"|"rejected"|"conflict"|"none"|"many", ...}"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Response, A::Error> {
        use serde::de::Error;
        let (mut kind, mut ops, mut reason, mut responses) = (None, None, None, None);
        while let Some(field) = map.next_key::<ResponseField>()? {
            match field {
                ResponseField::Result => once(&mut kind, "result", map.next_value::<ResponseKind>()?)?,
                ResponseField::Ops => once(&mut ops, "ops", map.next_value::<usize>()?)?,
                ResponseField::Reason => once(&mut reason, "reason", map.next_value::<String>()?)?,
                ResponseField::Responses => once(&mut responses, "responses", map.next_value::<Vec<Response>>()?)?,
                ResponseField::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let reason = || reason.ok_or_else(|| A::Error::missing_field("reason"));
        Ok(match kind.ok_or_else(|| A::Error::missing_field("result"))? {
            ResponseKind::Applied => Response::Applied { ops: ops.ok_or_else(|| A::Error::missing_field("ops"))? },
            ResponseKind::Rejected => Response::Rejected { reason: reason()? },
            ResponseKind::Conflict => Response::Conflict { reason: reason()? },
            ResponseKind::None => Response::None,
            ResponseKind::Many => {
                Response::Many { responses: responses.ok_or_else(|| A::Error::missing_field("responses"))? }
            }
        })
    }
}
