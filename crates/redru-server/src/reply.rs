//! Replies: what a command answers, independent of the protocol version, and
//! its encoding as RESP2 or RESP3 (by redis-protocol). RESP2 has no maps,
//! booleans or a distinct null: they become flat arrays, integers and the
//! null bulk string, as Redis sends them.

use redis_protocol::resp2::types::{OwnedFrame as Frame2, Resp2Frame};
use redis_protocol::resp3::types::{FrameMap, OwnedFrame as Frame3, Resp3Frame};

/// The protocol a connection speaks: 2 until `HELLO 3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, every client's default but redis-py 8's.
    Resp2,
    /// RESP3 (`HELLO 3`).
    Resp3,
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`.
    Simple(String),
    /// `-ERR text` (the text carries its own prefix: `ERR ...`, `WRONGTYPE ...`).
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$len bytes`.
    Bulk(Vec<u8>),
    /// The null reply.
    Nil,
    /// `*n ...`.
    Array(Vec<Reply>),
    /// A map (RESP3); a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A boolean (RESP3); 1 or 0 in RESP2.
    Bool(bool),
    /// The null array (`*-1` in RESP2): an EXEC that a WATCH aborted.
    NilArray,
    /// No reply at all (the connection is closing without one, as after SHUTDOWN).
    None,
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    /// `-ERR message`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string from text.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::Bulk(text.into().into_bytes())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the reply's bytes in `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        match (self, protocol) {
            (Reply::None, _) => return,
            // redis-protocol's RESP2 null is the null bulk string; EXEC's is the null array.
            (Reply::NilArray, Protocol::Resp2) => return out.extend_from_slice(b"*-1\r\n"),
            _ => {}
        }
        let start = out.len();
        // Encoding into a buffer of exactly `encode_len` bytes cannot fail;
        // if it ever did, the connection gets an error reply, not a torn one.
        let written = match protocol {
            Protocol::Resp2 => {
                let frame = self.to_resp2();
                out.resize(start + frame.encode_len(false), 0);
                redis_protocol::resp2::encode::encode(&mut out[start..], &frame, false)
            }
            Protocol::Resp3 => {
                let frame = self.to_resp3();
                out.resize(start + frame.encode_len(false), 0);
                redis_protocol::resp3::encode::complete::encode(&mut out[start..], &frame, false)
            }
        };
        match written {
            Ok(n) => out.truncate(start + n),
            Err(_) => {
                out.truncate(start);
                out.extend_from_slice(b"-ERR internal error encoding a reply\r\n");
            }
        }
    }

    fn to_resp2(&self) -> Frame2 {
        match self {
            Reply::Simple(s) => Frame2::SimpleString(s.clone().into_bytes()),
            Reply::Error(e) => Frame2::Error(e.clone()),
            Reply::Int(n) => Frame2::Integer(*n),
            Reply::Bulk(b) => Frame2::BulkString(b.clone()),
            Reply::Nil | Reply::NilArray | Reply::None => Frame2::Null,
            Reply::Array(items) => Frame2::Array(items.iter().map(Reply::to_resp2).collect()),
            Reply::Map(pairs) => Frame2::Array(pairs.iter().flat_map(|(k, v)| [k.to_resp2(), v.to_resp2()]).collect()),
            Reply::Bool(b) => Frame2::Integer(i64::from(*b)),
        }
    }

    fn to_resp3(&self) -> Frame3 {
        match self {
            Reply::Simple(s) => Frame3::SimpleString { data: s.clone().into_bytes(), attributes: None },
            Reply::Error(e) => Frame3::SimpleError { data: e.clone(), attributes: None },
            Reply::Int(n) => Frame3::Number { data: *n, attributes: None },
            Reply::Bulk(b) => Frame3::BlobString { data: b.clone(), attributes: None },
            Reply::Nil | Reply::NilArray | Reply::None => Frame3::Null,
            Reply::Array(items) => {
                Frame3::Array { data: items.iter().map(Reply::to_resp3).collect(), attributes: None }
            }
            Reply::Map(pairs) => {
                let mut data = FrameMap::default();
                for (k, v) in pairs {
                    data.insert(k.to_resp3(), v.to_resp3());
                }
                Frame3::Map { data, attributes: None }
            }
            Reply::Bool(b) => Frame3::Boolean { data: *b, attributes: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(reply: &Reply) -> (String, String) {
        let mut two = Vec::new();
        let mut three = Vec::new();
        reply.encode(Protocol::Resp2, &mut two);
        reply.encode(Protocol::Resp3, &mut three);
        (String::from_utf8_lossy(&two).into_owned(), String::from_utf8_lossy(&three).into_owned())
    }

    #[test]
    fn resp2_and_resp3_encodings() {
        assert_eq!(both(&Reply::ok()), ("+OK\r\n".into(), "+OK\r\n".into()));
        assert_eq!(both(&Reply::Nil), ("$-1\r\n".into(), "_\r\n".into()));
        assert_eq!(both(&Reply::Int(-3)), (":-3\r\n".into(), ":-3\r\n".into()));
        assert_eq!(both(&Reply::text("a\r\nb")), ("$4\r\na\r\nb\r\n".into(), "$4\r\na\r\nb\r\n".into()));
        let map = Reply::Map(vec![(Reply::text("proto"), Reply::Int(3))]);
        assert_eq!(both(&map), ("*2\r\n$5\r\nproto\r\n:3\r\n".into(), "%1\r\n$5\r\nproto\r\n:3\r\n".into()));
        assert_eq!(both(&Reply::Bool(true)), (":1\r\n".into(), "#t\r\n".into()));
        assert_eq!(both(&Reply::err("x")), ("-ERR x\r\n".into(), "-ERR x\r\n".into()));
        assert_eq!(both(&Reply::None), (String::new(), String::new()));
    }
}
