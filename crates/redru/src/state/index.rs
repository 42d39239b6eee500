//! Hash and ordered indexes over JSON field paths, the canonical encoding
//! they hash and the total order across JSON values they sort by.
//!
//! Pure: no I/O. An index maps the SHA-256 digest of a field value's canonical
//! JSON encoding to the sorted set of keys whose value holds it; an ordered
//! index also keeps the field values themselves in [`compare_values`] order.
//! Invariant: after every applied record, each index equals a rebuild from
//! the data (the model and property tests check exactly that).
//!
//! Past 800 lines only with its unit tests (about 200): the encoding that
//! equality hashes, the order that ranges walk and the indexes built on both
//! must agree value for value, so they are read and tested side by side.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;

use serde_json::{Number, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::state::doc::StrRef;
use crate::state::key::Key;

/// A path into a JSON value: `name`, `address.city`, `tags.0`, or `$` (the whole value).
///
/// Segments are separated by `.`; a segment selects an object member by name,
/// or an array element when the value there is an array and the segment is a
/// decimal position. Member names containing `.` cannot be addressed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses a path, refusing empty segments (`a..b`, `.a`, `a.`) and the empty path.
    pub fn parse(text: &str) -> Result<FieldPath> {
        let text = text.trim();
        if text == "$" {
            return Ok(FieldPath { text: "$".into(), segments: Vec::new() });
        }
        if text.is_empty() {
            return Err(Error::InvalidFieldPath {
                path: text.to_owned(),
                reason: "empty field path (use `$` for the whole value)".into(),
            });
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(Error::InvalidFieldPath {
                path: text.to_owned(),
                reason: format!("field path `{text}` has an empty segment (write `a.b.c`, positions as `tags.0`)"),
            });
        }
        Ok(FieldPath { text: text.to_owned(), segments })
    }

    /// The path as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments, in order (none for `$`).
    pub(crate) fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The part of `value` the path selects, if it has one.
    pub fn resolve<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        let mut at = value;
        for segment in &self.segments {
            at = match at {
                Value::Object(map) => map.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(at)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The parts of a value some field paths read, as a trie of their segments:
/// lets a write parse only those parts of a stored value's text (skipping the
/// rest without building it) instead of the whole tree. Maintaining one index
/// by parsing whole values cost 40 % of the relaxed write rate; reading only
/// the indexed field brings it back near the cost of hashing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The whole value here is wanted (a path ends here).
    whole: bool,
    /// Wanted members or positions, by segment.
    children: Vec<(String, Wanted)>,
}

impl Wanted {
    /// What `paths` read.
    pub fn of<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Wanted {
        let mut root = Wanted::default();
        for path in paths {
            let mut at = &mut root;
            for segment in &path.segments {
                let i = match at.children.iter().position(|(s, _)| s == segment) {
                    Some(i) => i,
                    None => {
                        at.children.push((segment.clone(), Wanted::default()));
                        at.children.len() - 1
                    }
                };
                at = &mut at.children[i].1;
            }
            at.whole = true;
        }
        root
    }

    /// Whether nothing is wanted (no paths).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        !self.whole && self.children.is_empty()
    }

    /// `text` (valid JSON) parsed only where wanted: every wanted path
    /// resolves in the result exactly as in the full value, and the rest is
    /// left out (members) or `null` (positions before a wanted one).
    pub fn extract(&self, text: &str) -> Value {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_str(text);
        // Valid stored text always extracts; a full parse is the fallback
        // that keeps this total.
        match self.deserialize(&mut de) {
            Ok(value) => value,
            Err(_) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }

    /// The wanted child for an array position, if exactly one segment names
    /// it (`0`; also `00`, which `resolve` reads as 0: two segments naming
    /// the same position are merged by taking the whole element).
    fn at_position(&self, i: usize) -> Option<std::borrow::Cow<'_, Wanted>> {
        let mut found = self.children.iter().filter(|(s, _)| s.parse::<usize>().ok() == Some(i)).map(|(_, w)| w);
        let first = found.next()?;
        Some(match found.next() {
            None => std::borrow::Cow::Borrowed(first),
            Some(_) => std::borrow::Cow::Owned(Wanted { whole: true, children: Vec::new() }),
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for &Wanted {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        if self.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &Wanted {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> std::result::Result<Value, A::Error> {
        use serde::de::IgnoredAny;
        let mut out = serde_json::Map::new();
        while let Some(StrRef(key)) = access.next_key::<StrRef<'de>>()? {
            match self.children.iter().find(|(s, _)| *s == *key) {
                Some((_, child)) => {
                    let value = access.next_value_seed(child)?;
                    // A later duplicate member replaces an earlier one, as in serde_json's Map.
                    out.insert(key.into_owned(), value);
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut access: A) -> std::result::Result<Value, A::Error> {
        use serde::de::IgnoredAny;
        let mut out = Vec::new();
        let mut i = 0usize;
        loop {
            match self.at_position(i) {
                Some(child) => match access.next_element_seed(child.as_ref())? {
                    Some(value) => out.push(value),
                    None => break,
                },
                None => match access.next_element::<IgnoredAny>()? {
                    Some(_) => out.push(Value::Null),
                    None => break,
                },
            }
            i += 1;
        }
        Ok(Value::Array(out))
    }

    // A scalar where a path goes on: no path resolves through it.
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Appends the canonical JSON encoding of `value` to `out`.
///
/// Equal JSON values give equal bytes: object members sorted by name (byte
/// order), no whitespace, strings escaped as serde_json does (so `"\u00e9"`
/// and `"é"` agree; no Unicode normalisation), and every number that has an
/// integral value within ±2^64 written as that integer (`1`, `1.0`, `1e0`
/// all become `1`; `-0.0` becomes `0`), other numbers in serde_json's
/// shortest round-trip form.
pub fn canonical(value: &Value, out: &mut Vec<u8>) {
    write_canonical(value, out);
}

/// Streams the canonical encoding into any writer (the digest hashes it
/// without building it in memory first). Writers here never fail.
fn write_canonical(value: &Value, out: &mut impl std::io::Write) {
    match value {
        Value::Null => {
            let _ = out.write_all(b"null");
        }
        Value::Bool(b) => {
            let _ = out.write_all(if *b { b"true" } else { b"false" });
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
                if f.is_finite() && f.fract() == 0.0 && f.abs() < TWO_POW_64 {
                    // Exact: an integral f64 below 2^64 fits an i128 without rounding.
                    let _ = write!(out, "{}", f as i128);
                } else {
                    let _ = serde_json::to_writer(&mut *out, n);
                }
            }
        }
        Value::String(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Value::Array(items) => {
            let _ = out.write_all(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                write_canonical(item, out);
            }
            let _ = out.write_all(b"]");
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let _ = out.write_all(b"{");
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_all(b",");
                }
                let _ = serde_json::to_writer(&mut *out, name);
                let _ = out.write_all(b":");
                write_canonical(item, out);
            }
            let _ = out.write_all(b"}");
        }
    }
}

/// Feeds written bytes to SHA-256.
struct DigestWriter(Sha256);

impl std::io::Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SHA-256 of a value's canonical encoding: fixed-size, whatever the value's size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ValueDigest(pub [u8; 32]);

impl ValueDigest {
    /// The digest of `value`.
    pub fn of(value: &Value) -> ValueDigest {
        let mut w = DigestWriter(Sha256::new());
        write_canonical(value, &mut w);
        ValueDigest(w.0.finalize().into())
    }
}

impl std::hash::Hash for ValueDigest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The digest is already uniformly distributed: 8 of its bytes are a hash.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// A hasher for [`ValueDigest`] keys: passes their first 8 bytes through
/// instead of hashing 32 bytes again with SipHash.
#[derive(Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a digest is hashed: fold it in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A hash map keyed by value digests.
pub type DigestMap<V> = HashMap<ValueDigest, V, std::hash::BuildHasherDefault<DigestHasher>>;

impl fmt::Debug for ValueDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// The total order of ordered indexes and of `sort by`, across types:
/// `null` < `false` < `true` < numbers (by exact value: `1` = `1.0`, `-0.0`
/// = `0`, integers beyond 2^53 compared exactly) < strings (by code point)
/// < arrays (element by element, then by length) < objects (by canonical
/// JSON text). Two values compare equal exactly when their canonical
/// encodings are equal, so equal values share one index entry.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = compare_values(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(_), Value::Object(_)) => {
            let text = |v: &Value| {
                let mut out = Vec::new();
                canonical(v, &mut out);
                out
            };
            text(a).cmp(&text(b))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Two JSON numbers by exact value. Comparing through `f64` would make
/// `2^53 + 1` equal to the float `2^53` but unequal to the integer `2^53`
/// (not transitive, which a `BTreeMap` cannot hold), so integers compare as
/// integers and an integer against a float compares the float's integral
/// part exactly, then its fraction.
pub fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    fn int(n: &Number) -> Option<i128> {
        n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
    }
    // JSON has no NaN or infinity: every float compares; -0.0 == 0.0.
    let float = |n: &Number| n.as_f64().unwrap_or(0.0);
    match (int(x), int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(a), None) => float_against_int(float(y), a).reverse(),
        (None, Some(b)) => float_against_int(float(x), b),
        (None, None) => float(x).partial_cmp(&float(y)).unwrap_or(Ordering::Equal),
    }
}

/// `f` against an integer within ±2^64.
fn float_against_int(f: f64, i: i128) -> Ordering {
    const BEYOND: f64 = 1e30; // far outside ±2^64, far inside i128
    if f >= BEYOND {
        return Ordering::Greater;
    }
    if f <= -BEYOND {
        return Ordering::Less;
    }
    let whole = f.trunc();
    // Exact: an integral f64 below 1e30 in magnitude fits an i128.
    (whole as i128).cmp(&i).then_with(|| (f - whole).partial_cmp(&0.0).unwrap_or(Ordering::Equal))
}

/// A field value as an ordered index holds it: ordered by [`compare_values`].
#[derive(Clone, Debug)]
struct Ordered(Value);

impl PartialEq for Ordered {
    fn eq(&self, other: &Ordered) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Ordered) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Ordered) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

/// Which structure an index keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum IndexKind {
    /// Equality lookups only (`=`, `in`).
    #[default]
    Hash,
    /// Equality lookups, and the field values in order: ranges (`<`, `<=`,
    /// `>`, `>=`, `between`) and `sort by`.
    Ordered,
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IndexKind::Hash => "hash",
            IndexKind::Ordered => "ordered",
        })
    }
}

/// Statistics of one index, as [`crate::Db::indexes`] reports them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IndexInfo {
    /// The indexed field path.
    pub field: String,
    /// Whether values are unique across keys.
    pub unique: bool,
    /// Hash, or ordered.
    pub kind: IndexKind,
    /// Number of distinct field values.
    pub distinct_values: usize,
    /// Number of (value, key) entries: keys whose value has the field.
    pub entries: usize,
}

/// One index: a hash index maps field value digests to the keys holding
/// each value; an ordered one maps the field values themselves, in order
/// (equal values are one entry there too, so it answers equality as well,
/// and a write skips the SHA-256). A unique ordered index (possible in a
/// log record, not through the API) keeps both: the unique checks go by digest.
#[derive(Clone, Debug)]
pub struct Index {
    path: FieldPath,
    unique: bool,
    kind: IndexKind,
    /// Empty for an ordered index that is not unique.
    map: DigestMap<BTreeSet<Key>>,
    /// Empty unless the index is ordered.
    sorted: BTreeMap<Ordered, BTreeSet<Key>>,
    entries: usize,
}

impl Index {
    /// An empty hash index on `path`.
    pub fn new(path: FieldPath, unique: bool) -> Index {
        Index::of_kind(path, unique, IndexKind::Hash)
    }

    /// An empty index of `kind` on `path`.
    pub fn of_kind(path: FieldPath, unique: bool, kind: IndexKind) -> Index {
        Index { path, unique, kind, map: DigestMap::default(), sorted: BTreeMap::new(), entries: 0 }
    }

    /// The indexed path.
    pub fn path(&self) -> &FieldPath {
        &self.path
    }

    /// Whether the index refuses two keys with one value.
    pub fn unique(&self) -> bool {
        self.unique
    }

    /// Hash or ordered.
    pub fn kind(&self) -> IndexKind {
        self.kind
    }

    /// The digest of `value`'s field, if it has the field.
    pub fn digest(&self, value: &Value) -> Option<ValueDigest> {
        self.path.resolve(value).map(ValueDigest::of)
    }

    /// Whether the digest map is kept.
    fn hashed(&self) -> bool {
        self.kind == IndexKind::Hash || self.unique
    }

    /// Records that `key` holds `value`.
    pub fn insert(&mut self, key: &Key, value: &Value) {
        let Some(field) = self.path.resolve(value) else { return };
        let added = if self.kind == IndexKind::Ordered {
            self.sorted.entry(Ordered(field.clone())).or_default().insert(Key::clone(key))
        } else {
            false
        };
        let added = if self.hashed() {
            self.map.entry(ValueDigest::of(field)).or_default().insert(Key::clone(key))
        } else {
            added
        };
        if added {
            self.entries += 1;
        }
    }

    /// Forgets that `key` held `value`.
    pub fn remove(&mut self, key: &str, value: &Value) {
        let Some(field) = self.path.resolve(value) else { return };
        let mut removed = false;
        if self.kind == IndexKind::Ordered {
            let at = Ordered(field.clone());
            if let Some(keys) = self.sorted.get_mut(&at) {
                removed = keys.remove(key);
                if keys.is_empty() {
                    self.sorted.remove(&at);
                }
            }
        }
        if self.hashed() {
            let d = ValueDigest::of(field);
            if let Some(keys) = self.map.get_mut(&d) {
                removed = keys.remove(key);
                if keys.is_empty() {
                    self.map.remove(&d);
                }
            }
        }
        if removed {
            self.entries -= 1;
        }
    }

    /// The keys whose field value has digest `d`, in key order: for hash
    /// and unique indexes (an ordered index answers [`Index::find`]).
    pub fn lookup(&self, d: &ValueDigest) -> impl Iterator<Item = &Key> {
        self.map.get(d).into_iter().flatten()
    }

    /// The keys whose field value equals `value` (canonical equality), in key order.
    pub fn find(&self, value: &Value) -> Box<dyn Iterator<Item = &Key> + '_> {
        if self.hashed() {
            Box::new(self.map.get(&ValueDigest::of(value)).into_iter().flatten())
        } else {
            Box::new(self.sorted.get(&Ordered(value.clone())).into_iter().flatten())
        }
    }

    /// For an ordered index, the groups of keys whose field value lies
    /// between `low` and `high` ([`compare_values`] order), each group one
    /// value with its keys in key order; groups ascending, or descending
    /// with `descending`. Empty for a hash index or an empty range.
    pub fn range<'a>(
        &'a self,
        low: Bound<&Value>,
        high: Bound<&Value>,
        descending: bool,
    ) -> Box<dyn Iterator<Item = &'a BTreeSet<Key>> + 'a> {
        let empty = match (low, high) {
            (Bound::Included(l), Bound::Included(h)) => compare_values(l, h) == Ordering::Greater,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
                compare_values(l, h) != Ordering::Less
            }
            _ => false,
        };
        if empty {
            // BTreeMap::range panics on an inverted range.
            return Box::new(std::iter::empty());
        }
        let owned = |b: Bound<&Value>| b.map(|v| Ordered(v.clone()));
        let groups = self.sorted.range((owned(low), owned(high))).map(|(_, keys)| keys);
        if descending { Box::new(groups.rev()) } else { Box::new(groups) }
    }

    /// Statistics.
    pub fn info(&self) -> IndexInfo {
        IndexInfo {
            field: self.path.to_string(),
            unique: self.unique,
            kind: self.kind,
            distinct_values: if self.hashed() { self.map.len() } else { self.sorted.len() },
            entries: self.entries,
        }
    }

    /// Whether two indexes hold exactly the same entries (verify compares a rebuild).
    pub fn same_entries(&self, other: &Index) -> bool {
        self.kind == other.kind
            && self.entries == other.entries
            && self.map == other.map
            && self.sorted.len() == other.sorted.len()
            && self.sorted.iter().zip(&other.sorted).all(|((a, x), (b, y))| {
                // Equal in order is not enough: the value held must be the same one.
                ValueDigest::of(&a.0) == ValueDigest::of(&b.0) && x == y
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every wanted path resolves in the extract exactly as in the full value.
    #[test]
    fn extract_resolves_wanted_paths_as_the_full_value() -> Result<()> {
        let texts = [
            r#"{"name":"Alice","address":{"city":"Oslo","zip":[1,2]},"tags":["a",{"k":"v"},"c"],"n":1.5}"#,
            r#"{"name":{"first":"A"},"tags":"not an array","address":null}"#,
            r#"{"name":"first","name":"second","tags":[],"address":{"city":{"deep":[true]}}}"#,
            r#"[{"name":"in an array"},"x"]"#,
            r#""just a string""#,
            r#"{"a.b":1,"0":"zero","tags":{"1":"member, not position"}}"#,
        ];
        let paths = ["name", "address.city", "address.zip.1", "tags.1", "tags.01", "tags.1.k", "0", "0.name", "n", "$"];
        for text in texts {
            let full: Value =
                serde_json::from_str(text).map_err(|e| Error::InvalidValue { key: None, reason: e.to_string() })?;
            for n in 1..=paths.len() {
                // Each path alone, and growing sets of them together.
                for set in [&paths[n - 1..n], &paths[..n]] {
                    let parsed: Vec<FieldPath> = set.iter().map(|p| FieldPath::parse(p)).collect::<Result<_>>()?;
                    let extract = Wanted::of(&parsed).extract(text);
                    for path in &parsed {
                        assert_eq!(path.resolve(&extract), path.resolve(&full), "{path} in {text} (wanted {set:?})");
                    }
                }
            }
        }
        assert!(Wanted::of(&[]).is_empty());
        Ok(())
    }

    fn canon(v: Value) -> String {
        let mut out = Vec::new();
        canonical(&v, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn key_order_does_not_matter() -> Result<(), serde_json::Error> {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[3,{"q":1,"p":2}]}}"#)?;
        let b: Value = serde_json::from_str(r#"{"a":{"x":[3,{"p":2,"q":1}],"y":2},"b":1}"#)?;
        assert_eq!(canon(a.clone()), r#"{"a":{"x":[3,{"p":2,"q":1}],"y":2},"b":1}"#);
        assert_eq!(ValueDigest::of(&a), ValueDigest::of(&b));
        Ok(())
    }

    #[test]
    fn the_digest_is_sha256_of_the_canonical_bytes() -> Result<(), serde_json::Error> {
        let v: Value = serde_json::from_str(r#"{"b":[1.0,"x\u00e9",null,true],"a":{"z":-0.0,"y":2.5e300}}"#)?;
        let mut bytes = Vec::new();
        canonical(&v, &mut bytes);
        assert_eq!(String::from_utf8_lossy(&bytes), r#"{"a":{"y":2.5e+300,"z":0},"b":[1,"xé",null,true]}"#);
        assert_eq!(ValueDigest::of(&v).0, <[u8; 32]>::from(Sha256::digest(&bytes)));
        Ok(())
    }

    #[test]
    fn numbers_are_normalised() -> Result<(), serde_json::Error> {
        for (x, y) in [("1", "1.0"), ("1", "1e0"), ("0", "-0.0"), ("-5", "-5.000"), ("100", "1e2")] {
            let x: Value = serde_json::from_str(x)?;
            let y: Value = serde_json::from_str(y)?;
            assert_eq!(ValueDigest::of(&x), ValueDigest::of(&y), "{x} vs {y}");
        }
        assert_ne!(ValueDigest::of(&json!(1)), ValueDigest::of(&json!(1.5)));
        assert_ne!(ValueDigest::of(&json!(1)), ValueDigest::of(&json!("1")));
        assert_eq!(canon(json!(2.5)), "2.5");
        assert_eq!(canon(json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(canon(json!(1e300)), "1e+300");
        Ok(())
    }

    #[test]
    fn arrays_keep_order_and_unicode_is_exact() -> Result<(), serde_json::Error> {
        assert_ne!(ValueDigest::of(&json!([1, 2])), ValueDigest::of(&json!([2, 1])));
        let escaped: Value = serde_json::from_str(r#""\u00e9\ud83d\ude00""#)?;
        assert_eq!(ValueDigest::of(&escaped), ValueDigest::of(&json!("é😀")));
        // No Unicode normalisation: a combining accent is a different string.
        assert_ne!(ValueDigest::of(&json!("e\u{301}")), ValueDigest::of(&json!("é")));
        Ok(())
    }

    #[test]
    fn paths_resolve() -> Result<()> {
        let v = json!({"name":"Alice","address":{"city":"Oslo"},"tags":["a","b"],"m":{"0":"zero"}});
        assert_eq!(FieldPath::parse("name")?.resolve(&v), Some(&json!("Alice")));
        assert_eq!(FieldPath::parse("address.city")?.resolve(&v), Some(&json!("Oslo")));
        assert_eq!(FieldPath::parse("tags.1")?.resolve(&v), Some(&json!("b")));
        assert_eq!(FieldPath::parse("tags.2")?.resolve(&v), None);
        assert_eq!(FieldPath::parse("m.0")?.resolve(&v), Some(&json!("zero")));
        assert_eq!(FieldPath::parse("name.x")?.resolve(&v), None);
        assert_eq!(FieldPath::parse("$")?.resolve(&v), Some(&v));
        for bad in ["", "a..b", ".a", "a."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn index_tracks_inserts_and_removes() -> Result<()> {
        let mut idx = Index::new(FieldPath::parse("name")?, false);
        idx.insert(&Key::from("k1"), &json!({"name":"A"}));
        idx.insert(&Key::from("k2"), &json!({"name":"A"}));
        idx.insert(&Key::from("k3"), &json!({"other":1}));
        let d = ValueDigest::of(&json!("A"));
        assert_eq!(idx.lookup(&d).map(|k| &**k).collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(idx.info().entries, 2);
        assert_eq!(idx.info().distinct_values, 1);
        idx.remove("k1", &json!({"name":"A"}));
        idx.remove("k2", &json!({"name":"A"}));
        assert_eq!(idx.lookup(&d).count(), 0);
        assert_eq!(
            idx.info(),
            IndexInfo { field: "name".into(), unique: false, kind: IndexKind::Hash, distinct_values: 0, entries: 0 }
        );
        Ok(())
    }

    /// The order is total, agrees with canonical equality, and ranks the types.
    #[test]
    fn values_order_exactly_across_types() -> Result<(), serde_json::Error> {
        let ascending = [
            "null",
            "false",
            "true",
            "-1e300",
            "-5",
            "-0.5",
            "0",
            "0.5",
            "1",
            "1.5",
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
            "1.8446744073709552e19",
            "1e300",
            "\"\"",
            "\"A\"",
            "\"a\"",
            "\"é\"",
            "\"😀\"",
            "[]",
            "[1]",
            "[1,2]",
            "[2]",
            // Objects by canonical text: `"` (0x22) sorts before `}` (0x7d).
            "{\"a\":1}",
            "{}",
        ];
        let values: Vec<Value> = ascending.iter().map(|t| serde_json::from_str(t)).collect::<Result<_, _>>()?;
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(compare_values(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        for (x, y) in [
            ("1", "1.0"),
            ("0", "-0.0"),
            ("-0.0", "0.0"),
            ("100", "1e2"),
            ("[1,{\"b\":1,\"a\":2}]", "[1.0,{\"a\":2,\"b\":1}]"),
        ] {
            let (x, y): (Value, Value) = (serde_json::from_str(x)?, serde_json::from_str(y)?);
            assert_eq!(compare_values(&x, &y), Ordering::Equal, "{x} vs {y}");
            assert_eq!(ValueDigest::of(&x), ValueDigest::of(&y), "equal in order means equal digests");
        }
        // Through f64, the float 2^53 would equal both 2^53 and 2^53 + 1.
        let (int, next, float) =
            (json!(9_007_199_254_740_992_u64), json!(9_007_199_254_740_993_u64), json!(9_007_199_254_740_992.0));
        assert_eq!(compare_values(&int, &float), Ordering::Equal);
        assert_eq!(compare_values(&next, &float), Ordering::Greater);
        Ok(())
    }

    #[test]
    fn an_ordered_index_keeps_values_in_order_and_forgets_exactly() -> Result<()> {
        let mut idx = Index::of_kind(FieldPath::parse("n")?, false, IndexKind::Ordered);
        for (k, v) in [("a", json!(2)), ("b", json!(1.0)), ("c", json!("x")), ("d", json!(1)), ("e", json!(-0.0))] {
            idx.insert(&Key::from(k), &json!({ "n": v }));
        }
        let all = |idx: &Index, descending| -> Vec<Vec<String>> {
            idx.range(Bound::Unbounded, Bound::Unbounded, descending)
                .map(|keys| keys.iter().map(|k| k.to_string()).collect())
                .collect()
        };
        assert_eq!(all(&idx, false), [vec!["e"], vec!["b", "d"], vec!["a"], vec!["c"]]);
        assert_eq!(all(&idx, true), [vec!["c"], vec!["a"], vec!["b", "d"], vec!["e"]], "keys in order within a value");
        let one = json!(1);
        assert_eq!(idx.range(Bound::Excluded(&one), Bound::Excluded(&one), false).count(), 0, "no panic");
        assert_eq!(idx.range(Bound::Included(&json!(3)), Bound::Included(&one), false).count(), 0, "no panic");
        // Removing under an equal value (1 for 1.0) forgets the entry.
        idx.remove("b", &json!({"n": 1}));
        idx.remove("e", &json!({"n": 0}));
        assert_eq!(all(&idx, false), [vec!["d"], vec!["a"], vec!["c"]]);
        let mut rebuilt = Index::of_kind(FieldPath::parse("n")?, false, IndexKind::Ordered);
        for (k, v) in [("a", json!(2)), ("c", json!("x")), ("d", json!(1))] {
            rebuilt.insert(&Key::from(k), &json!({ "n": v }));
        }
        assert!(idx.same_entries(&rebuilt));
        assert!(!idx.same_entries(&Index::new(FieldPath::parse("n")?, false)), "a hash index differs");
        assert_eq!(idx.info().kind, IndexKind::Ordered);
        Ok(())
    }
}
