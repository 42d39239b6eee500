//! One WAL record's on-disk line, encoded and decoded (the record itself,
//! [`Record`], is the state's `change` type, re-exported here).
//!
//! Pure: no I/O. A line is `CCCCCCCC {json}\n`, where `CCCCCCCC` is the crc32
//! (lowercase hex) of the JSON payload bytes. Decoding either returns a record
//! whose checksum matched and whose payload is a known, well-formed kind, or
//! says precisely why not. Layout: docs/design.md, "The write-ahead log".
//! Expiry adds an `"exp"` member (ms since the Unix epoch) and the
//! `expire`/`persist` kinds; records without expiry keep their bytes.
//!
//! One file, past 800 lines (a third of it tests): the encoder, the full
//! decoder and the fast path for plain `set`/`del` lines (`decode_plain`,
//! `plain_value`) stay together because the fast path is correct only as
//! long as it reads exactly the bytes the encoder writes and agrees with
//! the full decoder, which the tests below and the `record_decode` fuzz
//! target check side by side.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

pub use crate::state::change::{BatchOp, Expiry, Record, Seq};
use crate::state::doc::{Doc, MAX_DEPTH};
use crate::state::index::{FieldPath, IndexKind};

/// Bytes before the JSON payload: eight hex digits and a space.
pub const PREFIX_LEN: usize = 9;

/// Appends the line for `record` with sequence number `seq` to `out`.
pub fn encode(seq: Seq, record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let payload_start = out.len();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq.0).as_bytes());
    out.extend_from_slice(b",\"op\":");
    match record {
        Record::Set(key, value) => encode_set(key, value, None, out),
        Record::SetExpiring(key, value, exp) => encode_set(key, value, Some(*exp), out),
        Record::Expire(key, exp) => encode_expire(key, *exp, out),
        Record::Delete(key) => encode_del(key, out),
        Record::Batch(ops) => {
            out.extend_from_slice(b"\"batch\",\"ops\":[");
            for (i, op) in ops.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"op\":");
                match op {
                    BatchOp::Set(key, value) => encode_set(key, value, None, out),
                    BatchOp::SetExpiring(key, value, exp) => encode_set(key, value, Some(*exp), out),
                    BatchOp::Expire(key, exp) => encode_expire(key, *exp, out),
                    BatchOp::Delete(key) => encode_del(key, out),
                    BatchOp::Clear => out.extend_from_slice(b"\"clear\""),
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        Record::Clear => out.extend_from_slice(b"\"clear\""),
        Record::CreateIndex { field, unique, kind } => {
            out.extend_from_slice(b"\"create_index\",\"field\":");
            json_string(field, out);
            out.extend_from_slice(if *unique { b",\"unique\":true" } else { b",\"unique\":false" });
            // Written only for an ordered index, so hash index records read
            // (and are written) exactly as before the field existed.
            if *kind == IndexKind::Ordered {
                out.extend_from_slice(b",\"ordered\":true");
            }
        }
        Record::DropIndex(field) => {
            out.extend_from_slice(b"\"drop_index\",\"field\":");
            json_string(field, out);
        }
    }
    out.push(b'}');
    let crc = crc32fast::hash(&out[payload_start..]);
    // Eight lowercase hex digits, without format!'s allocation.
    for (i, byte) in out[start..start + 8].iter_mut().enumerate() {
        *byte = b"0123456789abcdef"[(crc >> (28 - 4 * i) & 0xf) as usize];
    }
    out.push(b'\n');
}

/// `"exp"` goes before `"value"` (a value can be long; the deadline is
/// then at a fixed place for a person reading the log), and only when there is one.
fn encode_set(key: &str, value: &Doc, exp: Option<Expiry>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"set\",\"key\":");
    json_string(key, out);
    if let Some(exp) = exp {
        encode_exp(exp, out);
    }
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(value.as_str().as_bytes());
}

fn encode_exp(exp: Expiry, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"exp\":");
    out.extend_from_slice(itoa::Buffer::new().format(exp.0).as_bytes());
}

/// `"expire"` with the new deadline, or `"persist"` when there is none.
fn encode_expire(key: &str, exp: Option<Expiry>, out: &mut Vec<u8>) {
    out.extend_from_slice(if exp.is_some() { b"\"expire\",\"key\":" } else { b"\"persist\",\"key\":" });
    json_string(key, out);
    if let Some(exp) = exp {
        encode_exp(exp, out);
    }
}

fn encode_del(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"del\",\"key\":");
    json_string(key, out);
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it (the
/// decoder's fast path reads only those bytes). A key with nothing to escape
/// (almost every key) is copied between its quotes as it is: serde_json's
/// byte-by-byte escaping was ~170 instructions of a relaxed set (issue 18).
fn json_string(s: &str, out: &mut Vec<u8>) {
    // Without a short circuit the loop vectorises; JSON escapes exactly the
    // quote, the backslash and the control characters below 0x20.
    let escapes = s.bytes().fold(false, |any, b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if escapes {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Why a line is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The line is shorter than a checksum prefix, or the prefix is not hex + space.
    Malformed(String),
    /// The checksum does not match the payload.
    Checksum {
        /// The checksum written in the line.
        stored: u32,
        /// The checksum of the payload as read.
        actual: u32,
    },
    /// The checksum matched but the payload is not a record redru knows.
    Payload(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Malformed(why) => write!(f, "not a record line: {why}"),
            DecodeError::Checksum { stored, actual } => {
                write!(f, "checksum mismatch: line says {stored:08x}, payload hashes to {actual:08x}")
            }
            DecodeError::Payload(why) => write!(f, "checksum matches but the record is invalid: {why}"),
        }
    }
}

/// A segment's framing line: carries no sequence number and no change, so
/// the change feed, positions and replay never see one. Layout:
/// docs/design.md, "Segment headers and seals".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// A segment's first line: the sequence number its name gives, and the
    /// first sequence number of the segment before it when there was one.
    Header {
        /// The segment's first sequence number (as in its name).
        first: Seq,
        /// The previous segment's first sequence number.
        prev: Option<Seq>,
    },
    /// A sealed segment's last line, appended once its successor (the
    /// segment starting at `next`) is durable: the log goes on there.
    Seal {
        /// The successor's first sequence number.
        next: Seq,
    },
}

/// One decoded line of a segment.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    /// A record.
    Record(Seq, Record),
    /// A header or a seal.
    Marker(Marker),
}

/// Appends the line for `marker` to `out`.
pub fn encode_marker(marker: Marker, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(64);
    let number = |out: &mut Vec<u8>, n: Seq| out.extend_from_slice(itoa::Buffer::new().format(n.0).as_bytes());
    match marker {
        Marker::Header { first, prev } => {
            payload.extend_from_slice(b"{\"op\":\"segment\",\"first\":");
            number(&mut payload, first);
            if let Some(prev) = prev {
                payload.extend_from_slice(b",\"prev\":");
                number(&mut payload, prev);
            }
        }
        Marker::Seal { next } => {
            payload.extend_from_slice(b"{\"op\":\"sealed\",\"next\":");
            number(&mut payload, next);
        }
    }
    payload.push(b'}');
    out.extend_from_slice(format!("{:08x} ", crc32fast::hash(&payload)).as_bytes());
    out.extend_from_slice(&payload);
    out.push(b'\n');
}

/// The whole line (with its newline) for `marker`.
pub fn marker_line(marker: Marker) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    encode_marker(marker, &mut out);
    out
}

/// Whether `line` looks like a marker (its payload starts as one does),
/// without checking it: lets a reader that skips lines by counting step
/// over markers at the cost of a 16-byte comparison.
pub fn is_marker(line: &[u8]) -> bool {
    line.get(PREFIX_LEN..)
        .is_some_and(|p| p.starts_with(b"{\"op\":\"segment\"") || p.starts_with(b"{\"op\":\"sealed\""))
}

/// Decodes one line (without its trailing `\n`): a record or a marker.
pub fn decode_line(line: &[u8]) -> Result<Line, DecodeError> {
    let payload = checked_payload(line)?;
    if payload.starts_with(b"{\"op\":") {
        return decode_marker(payload).map(Line::Marker).map_err(DecodeError::Payload);
    }
    decode_payload(payload).map(|(seq, record)| Line::Record(seq, record)).map_err(DecodeError::Payload)
}

/// A marker's payload, accepted only in the exact bytes [`encode_marker`]
/// writes (so that a torn seal can be recognised as a prefix of one).
fn decode_marker(payload: &[u8]) -> Result<Marker, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum MarkerKind {
        Segment,
        Sealed,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawMarker {
        op: MarkerKind,
        #[serde(default)]
        first: Option<u64>,
        #[serde(default)]
        prev: Option<u64>,
        #[serde(default)]
        next: Option<u64>,
    }
    let raw: RawMarker = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let marker = match (raw.op, raw.first, raw.prev, raw.next) {
        (MarkerKind::Segment, Some(first), prev, None) if first > 0 && prev.is_none_or(|p| p > 0 && p < first) => {
            Marker::Header { first: Seq(first), prev: prev.map(Seq) }
        }
        (MarkerKind::Sealed, None, None, Some(next)) if next > 1 => Marker::Seal { next: Seq(next) },
        _ => return Err("a segment marker with missing, extra or impossible members".into()),
    };
    let canonical = marker_line(marker);
    if canonical.get(PREFIX_LEN..canonical.len() - 1) != Some(payload) {
        return Err("a segment marker not in its canonical form".into());
    }
    Ok(marker)
}

/// Decodes one record line (without its trailing `\n`); a marker is refused.
pub fn decode(line: &[u8]) -> Result<(Seq, Record), DecodeError> {
    match decode_line(line)? {
        Line::Record(seq, record) => Ok((seq, record)),
        Line::Marker(_) => Err(DecodeError::Payload("a segment marker where a record must be".into())),
    }
}

/// The payload of a line whose prefix is well formed and whose checksum matches.
fn checked_payload(line: &[u8]) -> Result<&[u8], DecodeError> {
    if line.len() < PREFIX_LEN + 2 {
        return Err(DecodeError::Malformed(format!("{} bytes is too short", line.len())));
    }
    let (prefix, payload) = line.split_at(PREFIX_LEN);
    let hex = &prefix[..8];
    if prefix[8] != b' ' || !hex.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        return Err(DecodeError::Malformed("expected 8 lowercase hex digits and a space".into()));
    }
    let stored = std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| DecodeError::Malformed("bad checksum digits".into()))?;
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(DecodeError::Checksum { stored, actual });
    }
    Ok(payload)
}

/// Decodes a payload whose checksum is already known to match.
pub fn decode_payload(payload: &[u8]) -> Result<(Seq, Record), String> {
    match decode_plain(payload) {
        Some(plain) => Ok(plain),
        None => decode_payload_full(payload),
    }
}

/// The records almost every log is made of, `set` (with or without `exp`)
/// and `del`, in the exact bytes [`encode`] writes for a key without
/// escapes, read without serde's member-by-member machinery (half of a log
/// replay's decoding). `None` for anything else (other kinds, an escape,
/// whitespace, an error): [`decode_payload_full`] then reads it, or refuses
/// it with its reason. What this returns is what [`decode_payload_full`]
/// returns for the same bytes (the fuzz targets compare the two): the value
/// is checked by the same parser and [`Doc::from_raw`].
fn decode_plain(payload: &[u8]) -> Option<(Seq, Record)> {
    let (seq, rest) = plain_number(payload.strip_prefix(b"{\"seq\":")?)?;
    let rest = rest.strip_prefix(b",\"op\":\"")?;
    let (set, rest) = match rest.strip_prefix(b"set\",\"key\":\"") {
        Some(rest) => (true, rest),
        None => (false, rest.strip_prefix(b"del\",\"key\":\"")?),
    };
    let close = memchr::memchr2(b'"', b'\\', rest).filter(|&at| rest[at] == b'"')?;
    // Raw control characters are not JSON; an escape (above) is left to serde.
    let key = Some(&rest[..close]).filter(|key| key.iter().all(|&b| b >= 0x20))?;
    let key = std::str::from_utf8(key).ok()?.to_owned();
    let rest = &rest[close + 1..];
    if !set {
        return (rest == b"}").then_some((seq, Record::Delete(key)));
    }
    let (exp, rest) = match rest.strip_prefix(b",\"exp\":") {
        Some(rest) => plain_number(rest).map(|(exp, rest)| (Some(Expiry(exp.0)), rest))?,
        None => (None, rest),
    };
    let text = rest.strip_prefix(b",\"value\":")?.strip_suffix(b"}")?;
    // One whole value, nothing around it (a member after it fails here).
    let doc = if plain_value(text) {
        Doc::from_plain(std::str::from_utf8(text).ok()?)
    } else {
        let raw: &RawValue =
            serde_json::from_slice(text).ok().filter(|raw: &&RawValue| raw.get().len() == text.len())?;
        Doc::from_raw(raw).ok()?
    };
    Some((
        seq,
        match exp {
            None => Record::Set(key, doc),
            Some(exp) => Record::SetExpiring(key, doc, exp),
        },
    ))
}

/// Whether `text` is one JSON value of the plain kind redru writes: no
/// whitespace, no escapes, no raw control characters in strings, no `$`
/// (serde_json's reserved names start with one), numbers of the JSON
/// grammar with at most 200 digits before the exponent and an exponent of
/// at most two, nesting at most [`MAX_DEPTH`]; strings are not checked for
/// UTF-8 here. Every text this accepts (and is UTF-8) is one that
/// [`Doc::from_raw`] keeps as it is without parsing it: valid JSON
/// (serde_json reads it as a `RawValue`), not too deep, nothing its
/// `needs_parse` looks for (escapes, line breaks, reserved names, numbers
/// beyond f64: at most 10^200 x 10^99). False only sends a value to
/// serde_json; property tests (3,000 texts and 2,000 payloads a run) and
/// the fuzz targets check both paths agree. One pass, about half of
/// serde_json's instructions for the grammar alone.
fn plain_value(text: &[u8]) -> bool {
    // The open containers, innermost last: b'{' or b'['.
    let mut open = [0u8; MAX_DEPTH + 1];
    let mut depth = 0;
    let mut at = 0;
    'value: loop {
        // A value starts at `at`.
        match text.get(at) {
            Some(&b) if b == b'{' || b == b'[' => {
                if depth == MAX_DEPTH {
                    return false;
                }
                open[depth] = b;
                depth += 1;
                at += 1;
                let close = if b == b'{' { b'}' } else { b']' };
                if text.get(at) == Some(&close) {
                    at += 1;
                    depth -= 1;
                } else if b == b'{' {
                    match plain_member_name(text, at) {
                        Some(next) => at = next,
                        None => return false,
                    }
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => match plain_string(text, at) {
                Some(next) => at = next,
                None => return false,
            },
            Some(b't') if text[at..].starts_with(b"true") => at += 4,
            Some(b'f') if text[at..].starts_with(b"false") => at += 5,
            Some(b'n') if text[at..].starts_with(b"null") => at += 4,
            Some(b'-' | b'0'..=b'9') => match plain_json_number(text, at) {
                Some(next) => at = next,
                None => return false,
            },
            _ => return false,
        }
        // After a value: close containers, or a comma and the next value.
        loop {
            if depth == 0 {
                return at == text.len();
            }
            match (open[depth - 1], text.get(at)) {
                (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                    at += 1;
                    depth -= 1;
                }
                (b'[', Some(b',')) => {
                    at += 1;
                    continue 'value;
                }
                (b'{', Some(b',')) => match plain_member_name(text, at + 1) {
                    Some(next) => {
                        at = next;
                        continue 'value;
                    }
                    None => return false,
                },
                _ => return false,
            }
        }
    }
}

/// A member name and its colon at `at`: where its value starts.
fn plain_member_name(text: &[u8], at: usize) -> Option<usize> {
    let end = plain_string(text, at)?;
    (text.get(end) == Some(&b':')).then_some(end + 1)
}

/// A string at `at` (its opening quote) without escapes, raw control
/// characters or `$`: where it ends (after its closing quote).
fn plain_string(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let body = &text[at + 1..];
    // A loop, not memchr: strings in values are mostly a few bytes long.
    let stop = body.iter().position(|&b| b == b'"' || b == b'\\' || b == b'$' || b < 0x20)?;
    (body[stop] == b'"').then_some(at + 1 + stop + 1)
}

/// A number at `at` by the JSON grammar, at most 200 digits before an
/// exponent of at most two digits: where it ends.
fn plain_json_number(text: &[u8], at: usize) -> Option<usize> {
    let digits = |from: usize| text.get(from..).map_or(0, |t| t.iter().take_while(|b| b.is_ascii_digit()).count());
    let mut i = at + usize::from(text[at] == b'-');
    let int = digits(i);
    if int == 0 || (int > 1 && text[i] == b'0') {
        return None;
    }
    i += int;
    let mut mantissa = int;
    if text.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return None;
        }
        i += 1 + frac;
        mantissa += frac;
    }
    if mantissa > 200 {
        return None;
    }
    if let Some(b'e' | b'E') = text.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = text.get(i) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 || exp > 2 {
            return None;
        }
        i += exp;
    }
    Some(i)
}

/// A JSON number of 1 to 20 digits at the start of `bytes`, without a
/// leading zero and within u64, at least 1 (a seq, a deadline); the bytes after it.
fn plain_number(bytes: &[u8]) -> Option<(Seq, &[u8])> {
    let digits = bytes.iter().take(21).take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || bytes[0] == b'0' {
        return None;
    }
    let n = bytes[..digits].iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
    Some((Seq(n), &bytes[digits..]))
}

/// [`decode_payload`] without its fast path for plain records: every kind,
/// with serde (the fuzz targets check that both read the same).
pub fn decode_payload_full(payload: &[u8]) -> Result<(Seq, Record), String> {
    let raw: RawRecord = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let seq = Seq(raw.seq);
    if seq.0 == 0 {
        return Err("sequence numbers start at 1".into());
    }
    let need_key = |key: Option<String>| key.ok_or_else(|| format!("`{}` record without `key`", raw.op.name()));
    let exp = checked_exp(raw.exp)?;
    if exp.is_some() && !matches!(raw.op, Kind::Set | Kind::Expire) {
        return Err(format!("`{}` record with `exp`", raw.op.name()));
    }
    let record = match raw.op {
        Kind::Set => {
            let value = raw.value.ok_or("`set` record without `value`")?;
            match exp {
                None => Record::Set(need_key(raw.key)?, Doc::from_raw(value)?),
                Some(exp) => Record::SetExpiring(need_key(raw.key)?, Doc::from_raw(value)?, exp),
            }
        }
        Kind::Expire => Record::Expire(need_key(raw.key)?, Some(exp.ok_or("`expire` record without `exp`")?)),
        Kind::Persist => Record::Expire(need_key(raw.key)?, None),
        Kind::Del => Record::Delete(need_key(raw.key)?),
        Kind::Batch => {
            let ops = raw.ops.ok_or("`batch` record without `ops`")?;
            let ops = ops
                .into_iter()
                .map(|op| match (op.op, op.key, op.value, checked_exp(op.exp)?) {
                    (OpKind::Set, Some(k), Some(v), None) => Ok(BatchOp::Set(k, Doc::from_raw(v)?)),
                    (OpKind::Set, Some(k), Some(v), Some(e)) => Ok(BatchOp::SetExpiring(k, Doc::from_raw(v)?, e)),
                    (OpKind::Expire, Some(k), None, Some(e)) => Ok(BatchOp::Expire(k, Some(e))),
                    (OpKind::Persist, Some(k), None, None) => Ok(BatchOp::Expire(k, None)),
                    (OpKind::Del, Some(k), None, None) => Ok(BatchOp::Delete(k)),
                    (OpKind::Clear, None, None, None) => Ok(BatchOp::Clear),
                    (kind, _, _, _) => Err(format!("batch `{}` with missing or extra members", kind.name())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Record::Batch(ops)
        }
        Kind::Clear => Record::Clear,
        Kind::CreateIndex => {
            let field = raw.field.ok_or("`create_index` record without `field`")?;
            FieldPath::parse(&field).map_err(|e| e.to_string())?;
            let kind = if raw.ordered.unwrap_or(false) { IndexKind::Ordered } else { IndexKind::Hash };
            Record::CreateIndex { field, unique: raw.unique.unwrap_or(false), kind }
        }
        Kind::DropIndex => Record::DropIndex(raw.field.ok_or("`drop_index` record without `field`")?),
    };
    Ok((seq, record))
}

/// A deadline of 0 would read as "never" in the map: refused, not guessed.
fn checked_exp(exp: Option<u64>) -> Result<Option<Expiry>, String> {
    match exp {
        Some(0) => Err("`exp` must be at least 1 (milliseconds since the Unix epoch)".into()),
        other => Ok(other.map(Expiry)),
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Set,
    Expire,
    Persist,
    Del,
    Batch,
    Clear,
    CreateIndex,
    DropIndex,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Set => "set",
            Kind::Expire => "expire",
            Kind::Persist => "persist",
            Kind::Del => "del",
            Kind::Batch => "batch",
            Kind::Clear => "clear",
            Kind::CreateIndex => "create_index",
            Kind::DropIndex => "drop_index",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord<'a> {
    seq: u64,
    op: Kind,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, borrow, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(default, borrow)]
    ops: Option<Vec<RawOp<'a>>>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    unique: Option<bool>,
    #[serde(default)]
    ordered: Option<bool>,
    #[serde(default)]
    exp: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum OpKind {
    Set,
    Expire,
    Persist,
    Del,
    Clear,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Set => "set",
            OpKind::Expire => "expire",
            OpKind::Persist => "persist",
            OpKind::Del => "del",
            OpKind::Clear => "clear",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp<'a> {
    op: OpKind,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, borrow, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(default)]
    exp: Option<u64>,
}

/// `"value": null` is a present null, not a missing value. The value's text
/// is borrowed from the line, checked by the parser, and copied once into
/// its [`Doc`].
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(record: Record) -> Result<(), DecodeError> {
        let mut line = Vec::new();
        encode(Seq(7), &record, &mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line per record");
        let (seq, back) = decode(&line[..line.len() - 1])?;
        assert_eq!(seq, Seq(7));
        assert_eq!(back, record);
        Ok(())
    }

    /// A key is written byte for byte as serde_json writes it, whether it
    /// needs escapes or not (issue 18's copy without escaping must not take
    /// a key that needs one): every byte value alone and inside a key.
    #[test]
    fn keys_are_written_as_serde_json_writes_them() -> Result<(), DecodeError> {
        let mut keys: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        keys.extend((0u8..0x80).map(|b| format!("user:{}:x", char::from(b))));
        keys.extend(["", "é ü \u{7f}", "\u{2028}\u{10ffff}", "a\\\"b"].map(String::from));
        for key in keys {
            let mut ours = Vec::new();
            json_string(&key, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&key).unwrap_or_default(), "{key:?}");
            roundtrip(Record::Set(key, Doc::from(json!(1))))?;
        }
        Ok(())
    }

    /// The fast path takes the plain records as `encode` writes them, and
    /// leaves anything unusual to the full decoder; both read the same.
    #[test]
    fn plain_records_take_the_fast_path_and_read_as_the_full_decoder_does() {
        let payload = |record: &Record| {
            let mut line = Vec::new();
            encode(Seq(42), record, &mut line);
            line[PREFIX_LEN..line.len() - 1].to_vec()
        };
        let plain = [
            Record::Set("user:1".into(), Doc::from(json!({"a": [1, "x"], "b": null}))),
            Record::Set("é ü \u{7f}".into(), Doc::from(json!("s"))),
            Record::SetExpiring("k".into(), Doc::from(json!(1.5)), Expiry(u64::MAX)),
            Record::Delete("k".into()),
        ];
        for record in &plain {
            let bytes = payload(record);
            assert_eq!(decode_plain(&bytes), Some((Seq(42), record.clone())), "{}", String::from_utf8_lossy(&bytes));
        }
        let unusual = [
            Record::Set("a\"b".into(), Doc::from(json!(1))),
            Record::Set("tab\there".into(), Doc::from(json!(1))),
            Record::Expire("k".into(), Some(Expiry(5))),
            Record::Batch(vec![BatchOp::Delete("k".into())]),
        ];
        for record in &unusual {
            assert_eq!(decode_plain(&payload(record)), None);
            assert_eq!(decode_payload(&payload(record)), Ok((Seq(42), record.clone())));
        }
        let spaced = br#"{"seq":1, "op":"set","key":"k","value":1 }"#;
        assert_eq!(decode_plain(spaced), None);
        assert_eq!(decode_payload(spaced), Ok((Seq(1), Record::Set("k".into(), Doc::from(json!(1))))));
        for odd in [
            r#"{"seq":01,"op":"set","key":"k","value":1}"#,
            r#"{"seq":0,"op":"set","key":"k","value":1}"#,
            r#"{"seq":18446744073709551616,"op":"set","key":"k","value":1}"#,
            r#"{"seq":1,"op":"set","key":"k","exp":0,"value":1}"#,
            r#"{"seq":1,"op":"set","key":"k","value":1},"x":{"y":2}"#,
            r#"{"seq":1,"op":"set","key":"k","value":1,"key":"j"}"#,
            r#"{"seq":1,"op":"set","key":"k","value":[1,}"#,
            r#"{"seq":1,"op":"set","key":"k","value":1e400}"#,
            r#"{"seq":1,"op":"set","key":"k"}"#,
            "{\"seq\":1,\"op\":\"set\",\"key\":\"\u{1}\",\"value\":1}",
        ] {
            assert_eq!(decode_plain(odd.as_bytes()), None, "{odd}");
            assert!(decode_payload(odd.as_bytes()).is_err(), "{odd}");
        }
    }

    /// The plain-value check accepts only valid JSON, and leaves to
    /// serde_json whatever it is unsure of.
    #[test]
    fn the_plain_value_check_accepts_only_json() {
        let deep = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for good in ["0", "-1.5e-7", "\"\"", "[]", "{}", r#"{"a":[1,{"b":null}],"c":true}"#, "[false,\"é\"]", &deep] {
            assert!(plain_value(good.as_bytes()), "{good}");
            assert!(serde_json::from_str::<&RawValue>(good).is_ok());
        }
        let deeper = format!("[{deep}]");
        for unsure in [
            "",
            " 1",
            "1 ",
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "1e400",
            "1e+",
            "tru",
            "nul",
            "[1,]",
            "[,1]",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "[1}",
            "{\"a\":1]",
            "\"a\\\"\"",
            "\"\u{1}\"",
            "\"$a\"",
            "[1][2]",
            "\"x",
            "[",
            "{",
            "]",
            &deeper,
        ] {
            assert!(!plain_value(unsure.as_bytes()), "{unsure}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever a payload's bytes (records with one byte changed,
        /// dropped or doubled), the fast path reads what the full decoder
        /// does, or leaves it to it.
        #[test]
        fn the_fast_path_never_disagrees_with_the_full_decoder(
            key in "[a-z\"\\\\é\u{1}]{0,6}",
            value in proptest::sample::select(vec![
                "1", "null", "\"x\"", "[1,{\"a\":2}]", "1e5", "-0.5", "true", "[]", "{}", "[[],{}]",
                "{\"a\":{\"b\":[1,2.5e-3,\"é\",false]},\"c\":null}", "\"$x\"", "\"a\\nb\"", "1E+2", "123456789",
            ]),
            exp in proptest::option::of(0..3u64),
            delete in proptest::bool::ANY,
            at in 0..80usize,
            byte in proptest::prop_oneof![
                proptest::sample::select(b"\x01\"\\ 0-9},:e\xc3\xff".to_vec()),
                proptest::num::u8::ANY,
            ],
            how in 0..4u8,
        ) {
            let doc = Doc::parse(value).unwrap_or_else(|_| Doc::from(json!(null)));
            let record = match (delete, exp) {
                (true, _) => Record::Delete(key),
                (false, None) => Record::Set(key, doc),
                (false, Some(exp)) => Record::SetExpiring(key, doc, Expiry(exp + 1)),
            };
            let mut line = Vec::new();
            encode(Seq(7), &record, &mut line);
            let mut payload = line[PREFIX_LEN..line.len() - 1].to_vec();
            let at = at % (payload.len() + 1);
            match how {
                0 => {}
                1 if at < payload.len() => payload[at] = byte,
                2 if at < payload.len() => { payload.remove(at); }
                _ => payload.insert(at, byte),
            }
            let full = decode_payload_full(&payload);
            if let Some(plain) = decode_plain(&payload) {
                proptest::prop_assert_eq!(Ok(plain), full);
            }
            if how == 0 {
                proptest::prop_assert_eq!(decode_payload(&payload), Ok((Seq(7), record)));
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Any text the plain-value check accepts, serde_json reads as one
        /// value and `Doc::from_raw` keeps as it is (JSON texts with one byte
        /// changed, dropped or added).
        #[test]
        fn what_the_plain_value_check_accepts_serde_json_reads(
            value in proptest::sample::select(vec![
                "[1,{\"a\":2}]", "{\"a\":{\"b\":[1,2.5e-3,\"é\",false]},\"c\":null}", "-0.5E+12", "[[],{},\"\"]", "true",
                "[1e99,\"e123\",99999999999999999999999]", "{\"serde_json::private::RawValue\":1}", "[\"a\",\"b\"]",
            ]),
            at in 0..60usize,
            byte in proptest::prop_oneof![
                proptest::sample::select(b"{}[]\",:0123456789.eE+-tfn \\$\x01\xc3".to_vec()),
                proptest::num::u8::ANY,
            ],
            how in 0..3u8,
        ) {
            let mut text = value.as_bytes().to_vec();
            let at = at % (text.len() + 1);
            match how {
                0 if at < text.len() => text[at] = byte,
                1 if at < text.len() => { text.remove(at); }
                _ => text.insert(at, byte),
            }
            if plain_value(&text) && std::str::from_utf8(&text).is_ok() {
                let raw = serde_json::from_slice::<&RawValue>(&text);
                let kept = raw.map_err(|e| e.to_string()).and_then(Doc::from_raw).map(|doc| doc.as_str().as_bytes() == text);
                proptest::prop_assert_eq!(kept, Ok(true), "{:?}", String::from_utf8_lossy(&text));
            }
        }
    }

    #[test]
    fn every_kind_roundtrips() -> Result<(), DecodeError> {
        roundtrip(Record::Set("a\nb \"q\" é".into(), Doc::from(json!({"x": [1, 2.5, null, "s\n"]}))))?;
        roundtrip(Record::Set("null".into(), Doc::from(serde_json::Value::Null)))?;
        roundtrip(Record::Delete("k".into()))?;
        roundtrip(Record::Batch(vec![BatchOp::Set("a".into(), Doc::from(json!(null))), BatchOp::Delete("b".into())]))?;
        roundtrip(Record::Batch(vec![]))?;
        roundtrip(Record::Clear)?;
        roundtrip(Record::CreateIndex { field: "address.city".into(), unique: true, kind: IndexKind::Hash })?;
        roundtrip(Record::CreateIndex { field: "age".into(), unique: false, kind: IndexKind::Ordered })?;
        roundtrip(Record::DropIndex("name".into()))?;
        roundtrip(Record::SetExpiring("k".into(), Doc::from(json!({"a": 1})), Expiry(1_765_000_000_123)))?;
        roundtrip(Record::Expire("k".into(), Some(Expiry(u64::MAX))))?;
        roundtrip(Record::Expire("k".into(), None))?;
        roundtrip(Record::Batch(vec![
            BatchOp::SetExpiring("a".into(), Doc::from(json!(1)), Expiry(5)),
            BatchOp::Expire("b".into(), Some(Expiry(6))),
            BatchOp::Expire("c".into(), None),
            BatchOp::Set("d".into(), Doc::from(json!(2))),
        ]))?;
        Ok(())
    }

    /// A set without a deadline is byte for byte what it was before
    /// expiry existed; one with a deadline adds `"exp"` before the value.
    /// A deadline of 0, or one on a kind that takes none, is refused.
    #[test]
    fn expiry_records_are_laid_out_as_documented() {
        let payload = |record: &Record| {
            let mut line = Vec::new();
            encode(Seq(3), record, &mut line);
            String::from_utf8_lossy(&line[PREFIX_LEN..line.len() - 1]).into_owned()
        };
        assert_eq!(
            payload(&Record::Set("k".into(), Doc::from(json!(1)))),
            r#"{"seq":3,"op":"set","key":"k","value":1}"#
        );
        assert_eq!(
            payload(&Record::SetExpiring("k".into(), Doc::from(json!(1)), Expiry(1765000000000))),
            r#"{"seq":3,"op":"set","key":"k","exp":1765000000000,"value":1}"#
        );
        assert_eq!(
            payload(&Record::Expire("k".into(), Some(Expiry(9)))),
            r#"{"seq":3,"op":"expire","key":"k","exp":9}"#
        );
        assert_eq!(payload(&Record::Expire("k".into(), None)), r#"{"seq":3,"op":"persist","key":"k"}"#);
        for bad in [
            r#"{"seq":3,"op":"set","key":"k","exp":0,"value":1}"#,
            r#"{"seq":3,"op":"expire","key":"k"}"#,
            r#"{"seq":3,"op":"persist","key":"k","exp":4}"#,
            r#"{"seq":3,"op":"del","key":"k","exp":4}"#,
            r#"{"seq":3,"op":"batch","ops":[{"op":"del","key":"k","exp":4}]}"#,
            r#"{"seq":3,"op":"batch","ops":[{"op":"expire","key":"k"}]}"#,
            r#"{"seq":3,"op":"set","key":"k","exp":-1,"value":1}"#,
        ] {
            assert!(decode_payload(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn line_layout_is_crc_space_json() {
        let mut line = Vec::new();
        encode(Seq(1), &Record::Delete("k".into()), &mut line);
        let payload = br#"{"seq":1,"op":"del","key":"k"}"#;
        let expected = format!("{:08x} {}\n", crc32fast::hash(payload), std::str::from_utf8(payload).unwrap_or(""));
        assert_eq!(String::from_utf8_lossy(&line), expected);
    }

    /// A hash index record is byte for byte what it was before ordered
    /// indexes; an ordered one adds `"ordered":true`, and its absence reads as hash.
    #[test]
    fn index_records_keep_their_bytes() -> Result<(), DecodeError> {
        let payload = |record: &Record| {
            let mut line = Vec::new();
            encode(Seq(2), record, &mut line);
            String::from_utf8_lossy(&line[PREFIX_LEN..line.len() - 1]).into_owned()
        };
        let hash = Record::CreateIndex { field: "a".into(), unique: false, kind: IndexKind::Hash };
        assert_eq!(payload(&hash), r#"{"seq":2,"op":"create_index","field":"a","unique":false}"#);
        let ordered = Record::CreateIndex { field: "a".into(), unique: false, kind: IndexKind::Ordered };
        assert_eq!(payload(&ordered), r#"{"seq":2,"op":"create_index","field":"a","unique":false,"ordered":true}"#);
        let old = br#"{"seq":2,"op":"create_index","field":"a","unique":true}"#;
        assert!(matches!(decode_payload(old), Ok((_, Record::CreateIndex { kind: IndexKind::Hash, .. }))));
        Ok(())
    }

    #[test]
    fn damage_is_named() {
        let mut line = Vec::new();
        encode(Seq(3), &Record::Set("k".into(), Doc::from(json!(1))), &mut line);
        line.pop();
        let mut flipped = line.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        assert!(matches!(decode(&flipped), Err(DecodeError::Checksum { .. })));
        assert!(matches!(decode(b"zz"), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode(b"XXXXXXXX {\"seq\":1}"), Err(DecodeError::Malformed(_))));
        let bad_payload = br#"{"seq":1,"op":"frobnicate"}"#;
        let line = format!("{:08x} {}", crc32fast::hash(bad_payload), String::from_utf8_lossy(bad_payload));
        assert!(matches!(decode(line.as_bytes()), Err(DecodeError::Payload(_))));
        let zero_seq = br#"{"seq":0,"op":"clear"}"#;
        let line = format!("{:08x} {}", crc32fast::hash(zero_seq), String::from_utf8_lossy(zero_seq));
        assert!(matches!(decode(line.as_bytes()), Err(DecodeError::Payload(_))));
    }
}
