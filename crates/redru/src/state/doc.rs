//! A stored value: compact JSON text behind a reference count.
//!
//! Owns how the map holds values. A value is kept as the JSON text it is
//! logged and snapshotted as, not as a parsed `serde_json::Value` tree: a
//! 90-byte object costs one ~110-byte allocation instead of about a dozen
//! allocations and ~1.2 KB, loading a snapshot or a log copies text instead of
//! building trees, and `get` hands out a reference-counted handle without
//! copying. The price is that reading a field means parsing: [`Doc::to_value`]
//! or, better, [`Doc::deserialize`] straight into the caller's own type.
//! docs/design.md, "Values in memory", has the measurements behind the choice.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::state::json_check;

/// The deepest nesting of arrays and objects a value may have: serde_json
/// refuses to parse deeper documents, so a deeper value could be logged but
/// never read back.
pub const MAX_DEPTH: usize = 127;

/// An immutable JSON value as stored: cheap to clone (a reference count),
/// always valid JSON text, compact (no insignificant whitespace) when redru
/// wrote it.
///
/// ```
/// use redru::{Doc, json};
/// let doc = Doc::from(json!({"name": "Alice", "age": 30}));
/// assert_eq!(doc.as_str(), r#"{"age":30,"name":"Alice"}"#);
/// assert_eq!(doc.to_value()["name"], "Alice");
///
/// #[derive(serde::Deserialize)]
/// struct User { name: String, age: u32 }
/// let user: User = doc.deserialize()?;
/// assert_eq!((user.name.as_str(), user.age), ("Alice", 30));
/// # Ok::<(), redru::Error>(())
/// ```
#[derive(Clone)]
pub struct Doc(Arc<str>);

/// Without a weak count (unlike `std::sync::Arc`) the allocation is 8 bytes
/// smaller, which moves a ~95-byte value down one malloc size class.
type Arc<T> = triomphe::Arc<T>;

impl Doc {
    /// The value's JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value parsed into a `serde_json::Value` tree (a fresh copy).
    pub fn to_value(&self) -> Value {
        // The text is valid JSON no deeper than MAX_DEPTH (every constructor
        // ensures it), so parsing cannot fail; Null is unreachable.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The value deserialized into any type, without building a `Value` first.
    pub fn deserialize<T: DeserializeOwned>(&self) -> crate::Result<T> {
        serde_json::from_str(&self.0).map_err(|e| crate::Error::Deserialize { key: None, reason: e.to_string() })
    }

    /// Parses and checks JSON text, keeping it as written. Refuses invalid
    /// JSON and nesting deeper than [`MAX_DEPTH`].
    pub fn parse(text: &str) -> crate::Result<Doc> {
        let invalid = |reason: String| crate::Error::InvalidValue { key: None, reason };
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON value: {e}")))?;
        Doc::from_raw(raw).map_err(invalid)
    }

    /// How deeply arrays and objects nest (0 for a scalar).
    pub fn depth(&self) -> usize {
        depth(self.0.as_bytes())
    }

    /// Whether it nests deeper than [`MAX_DEPTH`] (cheaper than `depth`).
    pub(crate) fn too_deep(&self) -> bool {
        too_deep(self.0.as_bytes())
    }

    /// Text the caller has checked to be what [`Doc::from_raw`] keeps as it
    /// is: one compact JSON value, nested at most [`MAX_DEPTH`], that
    /// serde_json's `Value` parser reads back (no escapes, no reserved
    /// names, numbers within f64) and without line breaks. The log decoder's
    /// plain-value check guarantees all of it (its fuzz target and property
    /// tests compare it with [`Doc::from_raw`]'s path). Unlike
    /// [`Doc::from_checked`], it does not look at the text at all.
    pub(crate) fn from_plain(text: &str) -> Doc {
        Doc(Arc::from(text))
    }

    /// A value the log or snapshot parser has checked to be valid JSON (as
    /// a `RawValue`, without building it), refused unless `to_value` can
    /// read it back, and made compact if it spans lines.
    ///
    /// `RawValue` checks the grammar only. serde_json's `Value` parser also
    /// refuses nesting deeper than [`MAX_DEPTH`], numbers beyond f64's range
    /// (`1e400`) and `\u` escapes of unpaired UTF-16 surrogates, and a raw
    /// line break inside a value would split the one line its log record
    /// must be. Text that could hold any of those (rare: an escape, a line
    /// break, an exponent of three digits, a long run of digits) is parsed
    /// in full; the rest, almost every value, only scanned.
    pub(crate) fn from_raw(raw: &RawValue) -> Result<Doc, String> {
        Doc::from_checked(raw.get())
    }

    /// [`Doc::from_raw`] for text whose grammar was checked otherwise
    /// (a snapshot's values: [`crate::state::json_check::checked`]).
    pub(crate) fn from_checked(text: &str) -> Result<Doc, String> {
        if too_deep(text.as_bytes()) {
            return Err(format!("a value is nested deeper than {MAX_DEPTH} levels"));
        }
        if !needs_parse(text.as_bytes()) {
            return Ok(Doc(Arc::from(text)));
        }
        reads_back(text)?;
        if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some() {
            let value: Value = serde_json::from_str(text).map_err(|e| format!("a value cannot be read back: {e}"))?;
            return Ok(Doc::from(&value));
        }
        Ok(Doc(Arc::from(text)))
    }

    /// [`Doc::from_checked`] for a value [`json_check::checked`] proved
    /// valid: its report spares the two scans of the text (nesting, and
    /// what might need a full parse) for almost every value.
    pub(crate) fn from_json_check(checked: json_check::Checked<'_>) -> Result<Doc, String> {
        if checked.depth as usize > MAX_DEPTH {
            return Err(format!("a value is nested deeper than {MAX_DEPTH} levels"));
        }
        if checked.needs_parse {
            return Doc::from_checked(checked.text);
        }
        Ok(Doc(Arc::from(checked.text)))
    }

    /// Refuses what `to_value` would not read back as written: see
    /// [`RESERVED`]. (Text from a `Value` is otherwise always readable.)
    pub(crate) fn check_reserved(&self) -> Result<(), String> {
        // The byte first: building the substring finder was 15 % of a set (issue 18).
        let text = self.0.as_bytes();
        if memchr::memchr(b'$', text).is_some() && memchr::memmem::find(text, RESERVED.as_bytes()).is_some() {
            reads_back(&self.0)?;
        }
        Ok(())
    }

    /// Bytes the text occupies (for statistics).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: the shortest JSON value is one byte long. (Present so
    /// that `len` does not stand alone.)
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A prefix of object member names serde_json keeps for itself: built with
/// its `raw_value` feature (as redru is, for every crate in the build), it
/// reads an object whose first member is `$serde_json::private::RawValue` as
/// a wrapper around other JSON, so such a value would not read back as it
/// was written. Refused wherever a value enters.
pub const RESERVED: &str = "$serde_json::private::";

/// Checks JSON text the way serde_json's `Value` parser reads it (nesting
/// limit, numbers within f64, valid escapes) plus no [`RESERVED`] member
/// names, without building anything.
fn reads_back(text: &str) -> Result<(), String> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_str(text);
    Check.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| format!("a value cannot be read back: {e}"))
}

/// The visitor of [`reads_back`].
struct Check;

impl<'de> serde::de::DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Check)
    }
}

impl<'de> serde::de::Visitor<'de> for Check {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        while let Some(StrRef(key)) = access.next_key()? {
            if key.starts_with(RESERVED) {
                return Err(serde::de::Error::custom(format!("member names starting with `{RESERVED}` are reserved")));
            }
            access.next_value_seed(Check)?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        while access.next_element_seed(Check)?.is_some() {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Whether JSON text nests deeper than [`MAX_DEPTH`].
fn too_deep(text: &[u8]) -> bool {
    // Nesting deeper than the limit takes at least two bytes per level.
    if text.len() <= 2 * MAX_DEPTH {
        return false;
    }
    // A loop the compiler vectorises: no more opening brackets in all
    // (inside strings included) than the limit means no deeper than it.
    let opening = text.iter().filter(|&&b| b == b'[' || b == b'{').count();
    opening > MAX_DEPTH && depth(text) > MAX_DEPTH
}

/// Whether grammatically valid JSON text might still fail serde_json's
/// `Value` parser or contain a raw line break (see [`Doc::from_raw`]).
/// False positives only cost a full parse.
fn needs_parse(text: &[u8]) -> bool {
    // Escapes (an unpaired surrogate needs one), raw line breaks, and
    // serde_json's reserved names. Those start with `$`, which few values
    // hold: looking for the byte first spares building a substring finder
    // for every value (8 % of a snapshot load's samples went to it).
    if memchr::memchr3(b'\\', b'\n', b'\r', text).is_some()
        || (memchr::memchr(b'$', text).is_some() && memchr::memmem::find(text, RESERVED.as_bytes()).is_some())
    {
        return true;
    }
    // An exponent of three or more digits (f64 ends near 1e308).
    for at in memchr::memchr2_iter(b'e', b'E', text) {
        let rest = &text[at + 1..];
        let rest = rest.strip_prefix(b"-").or_else(|| rest.strip_prefix(b"+")).unwrap_or(rest);
        if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
            return true;
        }
    }
    // A run of more than 200 digits: with an exponent of at most two digits
    // (the rest), 200 digits stay below 1e299.
    text.len() > 200 && text.split(|b| !b.is_ascii_digit()).any(|run| run.len() > 200)
}

/// Nesting depth of JSON text (for tests elsewhere in the crate).
#[cfg(test)]
pub(crate) fn depth_of(text: &str) -> usize {
    depth(text.as_bytes())
}

/// Nesting depth of JSON text, counting brackets outside strings.
fn depth(text: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

impl From<&Value> for Doc {
    fn from(value: &Value) -> Doc {
        thread_local! {
            // Reused between calls: serializing into a fresh String grew it
            // four or five times per 100-byte value (a visible part of `set`).
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Without the buffer (a thread-local being torn down), a fresh one.
        let fresh = || Doc(Arc::from(serde_json::to_string(value).unwrap_or_default()));
        BUF.try_with(|buf| {
            let Ok(mut buf) = buf.try_borrow_mut() else { return fresh() };
            buf.clear();
            // Serializing a Value cannot fail (its map keys are strings) and
            // yields UTF-8; the fallbacks below only keep this function total.
            let _ = serde_json::to_writer(&mut *buf, value);
            let doc = Doc(Arc::from(std::str::from_utf8(&buf).unwrap_or("null")));
            if buf.capacity() > 1 << 20 {
                // Do not keep a huge value's buffer alive for the thread's life.
                *buf = Vec::new();
            }
            doc
        })
        .unwrap_or_else(|_| fresh())
    }
}

impl From<Value> for Doc {
    fn from(value: Value) -> Doc {
        Doc::from(&value)
    }
}

/// What [`crate::Db::set`] takes: a `serde_json::Value` (owned or borrowed)
/// or a [`Doc`]. Given a `Value`, the write keeps it beside the text it
/// stores, so that indexes read their fields from it instead of parsing the
/// text back.
pub trait IntoDoc<'a> {
    /// The stored text, and the parsed value when there is one.
    fn into_parts(self) -> (Doc, Option<Cow<'a, Value>>);
}

impl IntoDoc<'static> for Value {
    fn into_parts(self) -> (Doc, Option<Cow<'static, Value>>) {
        (Doc::from(&self), Some(Cow::Owned(self)))
    }
}

impl<'a> IntoDoc<'a> for &'a Value {
    fn into_parts(self) -> (Doc, Option<Cow<'a, Value>>) {
        (Doc::from(self), Some(Cow::Borrowed(self)))
    }
}

impl IntoDoc<'static> for Doc {
    fn into_parts(self) -> (Doc, Option<Cow<'static, Value>>) {
        (self, None)
    }
}

impl IntoDoc<'static> for &Doc {
    fn into_parts(self) -> (Doc, Option<Cow<'static, Value>>) {
        (self.clone(), None)
    }
}

impl From<&Doc> for Doc {
    fn from(doc: &Doc) -> Doc {
        doc.clone()
    }
}

impl std::fmt::Display for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Doc({})", &self.0)
    }
}

/// Equal when they denote the same JSON value (same text, or the same value
/// once parsed: `{"a": 1}` equals `{"a":1}`).
impl PartialEq for Doc {
    fn eq(&self, other: &Doc) -> bool {
        self.0 == other.0 || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Doc {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

/// Serializes as the JSON value it holds, in any serde format. (To embed
/// the text in JSON you write yourself, [`Doc::as_str`] skips the parse.)
impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// A JSON string borrowed from the input when it has no escapes (serde's own
/// `Cow<str>` always copies): keys read while loading or extracting cost no
/// allocation.
pub(crate) struct StrRef<'de>(pub std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for StrRef<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StrRef<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<StrRef<'de>, E> {
                Ok(StrRef(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<StrRef<'de>, E> {
                Ok(StrRef(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> std::result::Result<StrRef<'de>, E> {
                Ok(StrRef(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_compact_and_round_trips() {
        let v = json!({"b": [1, 2.5, null, "s\n\"q\""], "a": {"x": true}});
        let doc = Doc::from(&v);
        assert_eq!(doc.as_str(), r#"{"a":{"x":true},"b":[1,2.5,null,"s\n\"q\""]}"#);
        assert_eq!(doc.to_value(), v);
        assert_eq!(doc, v);
        assert_eq!(serde_json::to_string(&doc).ok().as_deref(), Some(doc.as_str()));
        assert_eq!(
            serde_json::to_string(&json!({"k": doc})).ok().as_deref(),
            Some(r#"{"k":{"a":{"x":true},"b":[1,2.5,null,"s\n\"q\""]}}"#)
        );
    }

    #[test]
    fn parse_refuses_invalid_text_and_equality_is_by_value() {
        assert!(Doc::parse("{\"a\":").is_err());
        assert!(Doc::parse("1 2").is_err());
        let compact = Doc::from(json!({"a": 1}));
        let spaced = Doc::parse("{ \"a\" : 1 }");
        assert!(spaced.as_ref().is_ok_and(|d| *d == compact && d.as_str() != compact.as_str()));
        assert_ne!(Doc::from(json!(1)), Doc::from(json!("1")));
    }

    fn raw(text: &str) -> Result<Doc, String> {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Doc::from_raw(raw)
    }

    /// What `RawValue` accepts but `Value` cannot hold is refused; a value
    /// spanning lines is made compact; everything kept reads back.
    #[test]
    fn from_raw_keeps_only_what_reads_back() {
        let long = "9".repeat(400);
        let long_exp = format!("{}e9", "9".repeat(300));
        let long_frac = format!("[1{}.5e10]", "0".repeat(299));
        let reserved = [
            r#"{"$serde_json::private::RawValue":"1"}"#,
            r#"{"a":[{"$serde_json::private::RawValue":"a\"b"}]}"#,
            r#"{"\u0024serde_json::private::RawValue":"1"}"#,
        ];
        for bad in ["1e400", "[-1E+999]", r#"{"a":"\ud888"}"#, r#""\udc00x""#, &long, &long_exp, &long_frac]
            .into_iter()
            .chain(reserved)
        {
            assert!(raw(bad).is_err(), "{bad:.60} was accepted");
        }
        // The name as a string value, or not at the start of a name, is plain data.
        let fine = r#"{"note":"$serde_json::private::RawValue","x$serde_json::private::":1}"#;
        assert_eq!(raw(fine).as_ref().map(Doc::as_str), Ok(fine));
        let spread = raw("{\n  \"a\": [1,\r\n 2]\n}");
        assert_eq!(spread.as_ref().map(Doc::as_str), Ok(r#"{"a":[1,2]}"#));
        for good in [r#"{"email":"e@example.com","n":1e10,"x":2.5E-5}"#, r#""\ud83d\ude00 \n \"""#, "1e308", "[1, 2]"] {
            let doc = raw(good);
            assert_eq!(doc.as_ref().map(Doc::as_str), Ok(good), "kept as written");
            assert!(doc.is_ok_and(|d| serde_json::from_str::<Value>(d.as_str()).is_ok()));
        }
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(Doc::from(json!(1)).depth(), 0);
        assert_eq!(Doc::from(json!({"a": [[1], {"b": "[[[[\\\"{"}]})).depth(), 3);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(depth(deep.as_bytes()), 200);
        assert!(too_deep(deep.as_bytes()) && !too_deep(b"[[[\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"]]]"));
        let in_strings = format!("[\"{}\"]", "[".repeat(200));
        assert!(!too_deep(in_strings.as_bytes()), "brackets inside strings do not nest");
        assert!(Doc::parse(&deep).is_err(), "refused: serde_json could not read it back");
        assert!(Doc::parse(&in_strings).is_ok());
    }
}
