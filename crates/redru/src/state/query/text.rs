//! The filter evaluated on a value's JSON text, without building values.
//!
//! Owns the walk from a field path to the span of text it selects (other
//! members and elements skipped byte by byte, never built) and the
//! comparison of that span with a query's literal in place. Invariant: on
//! valid JSON text, [`Filter::matches_text`] answers exactly as
//! [`Filter::matches`] on the parsed value; the property test below holds
//! the two together, and [`Filter::matches`] stays the reference.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{CmpOp, Condition, Filter, equal, holds};
use crate::state::index::{FieldPath, compare_numbers};

impl Filter {
    /// [`Filter::matches`] on a value's JSON text (valid JSON, as every
    /// stored value is): the same answer, without parsing the value. A scan
    /// that built the values it examined allocated per key, and those
    /// allocations held glibc's arena lock against a writer freeing into the
    /// same arena (issue 17); this allocates nothing unless a condition
    /// compares a whole array or object.
    pub(crate) fn matches_text(&self, key: &str, text: &str) -> bool {
        match self {
            Filter::Cond(c) => c.matches_text(key, text),
            Filter::And(parts) => parts.iter().all(|p| p.matches_text(key, text)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches_text(key, text)),
            Filter::Not(part) => !part.matches_text(key, text),
        }
    }
}

impl Condition {
    /// [`Condition::matches`] on JSON text.
    fn matches_text(&self, key: &str, text: &str) -> bool {
        match self {
            Condition::KeyPrefix(p) => key.starts_with(p.as_str()),
            Condition::Exists(field) => find(text, field).is_some(),
            Condition::Compare { field, op, value: wanted } => {
                let Some(have) = find(text, field) else { return false };
                match op {
                    CmpOp::Eq => have.equals(wanted),
                    CmpOp::Ne => !have.equals(wanted),
                    _ => have.order(wanted).is_some_and(|ord| holds(*op, ord)),
                }
            }
            Condition::In { field, values } => {
                find(text, field).is_some_and(|have| values.iter().any(|v| have.equals(v)))
            }
            Condition::Contains { field, value: wanted } => {
                find(text, field).and_then(Raw::items).is_some_and(|mut items| items.any(|item| item.equals(wanted)))
            }
            Condition::StartsWith { field, prefix } => {
                find(text, field).and_then(Raw::string).is_some_and(|s| s.starts_with(prefix))
            }
            Condition::Between { field, low, high } => find(text, field).is_some_and(|have| {
                have.order(low).is_some_and(|o| o != Ordering::Less)
                    && have.order(high).is_some_and(|o| o != Ordering::Greater)
            }),
        }
    }
}

/// JSON's insignificant whitespace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `text` without JSON whitespace around it.
fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    if bytes.first().is_some_and(|&b| !is_space(b)) && bytes.last().is_some_and(|&b| !is_space(b)) {
        return text; // compact text, as redru writes it
    }
    text.trim_matches(|c: char| c.is_ascii() && is_space(c as u8))
}

/// The span of `text` that `path` selects, as [`FieldPath::resolve`] would
/// find it in the parsed value: a member by name (the last of duplicates,
/// as serde_json keeps it), an element by a position `usize` parses.
fn find<'t>(text: &'t str, path: &FieldPath) -> Option<Raw<'t>> {
    let mut at = Raw(trim(text));
    for segment in path.segments() {
        at = match at.first()? {
            b'{' => at.member(segment)?,
            b'[' => at.items()?.nth(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The text of one JSON value, without surrounding whitespace.
#[derive(Clone, Copy, Debug)]
struct Raw<'t>(&'t str);

impl<'t> Raw<'t> {
    fn first(self) -> Option<u8> {
        self.0.as_bytes().first().copied()
    }

    /// The member named `name` of an object (the last one, when repeated).
    fn member(self, name: &str) -> Option<Raw<'t>> {
        let mut at = Cursor { text: self.0, at: 1 };
        let mut found = None;
        if at.eat(b'}') {
            return None;
        }
        loop {
            at.skip_space();
            let member = at.string()?;
            if !at.eat(b':') {
                return None;
            }
            let value = at.value()?;
            if member.equals(name) {
                found = Some(value);
            }
            if !at.eat(b',') {
                return found;
            }
        }
    }

    /// The elements of an array, or `None` for any other value.
    fn items(self) -> Option<Items<'t>> {
        (self.first()? == b'[').then(|| {
            let mut at = Cursor { text: self.0, at: 1 };
            let done = at.eat(b']');
            Items { at, done }
        })
    }

    /// A string's content, or `None` for any other value.
    fn string(self) -> Option<JsonStr<'t>> {
        if self.first()? != b'"' {
            return None;
        }
        let text = self.0.get(1..self.0.len().saturating_sub(1))?;
        Some(JsonStr { text, escaped: text.as_bytes().contains(&b'\\') })
    }

    /// A number as serde_json reads it, or `None` for any other value.
    fn number(self) -> Option<Number> {
        if !matches!(self.first()?, b'-' | b'0'..=b'9') {
            return None;
        }
        parse_number(self.0)
    }

    /// Equal as [`equal`] sees it: numbers by value, strings by their
    /// characters, arrays and objects (built, only here) by canonical form.
    fn equals(self, wanted: &Value) -> bool {
        match (self.first(), wanted) {
            (Some(b'n'), Value::Null) => true,
            (Some(b't'), Value::Bool(b)) => *b,
            (Some(b'f'), Value::Bool(b)) => !*b,
            (Some(b'"'), Value::String(s)) => self.string().is_some_and(|have| have.equals(s)),
            // Two numbers have one canonical form exactly when they are equal
            // by value (`compare_numbers`): both order by the exact value.
            (_, Value::Number(n)) => self.number().is_some_and(|have| compare_numbers(&have, n) == Ordering::Equal),
            (Some(b'['), Value::Array(_)) | (Some(b'{'), Value::Object(_)) => {
                serde_json::from_str::<Value>(self.0).is_ok_and(|have| equal(&have, wanted))
            }
            _ => false,
        }
    }

    /// Ordered as the evaluator's `order`: numbers with numbers by value,
    /// strings with strings by code point; other pairs do not compare.
    fn order(self, wanted: &Value) -> Option<Ordering> {
        match wanted {
            Value::Number(n) => self.number().map(|have| compare_numbers(&have, n)),
            Value::String(s) => self.string().map(|have| have.cmp(s)),
            _ => None,
        }
    }
}

/// Parses a JSON number (valid grammar) to the `Number` serde_json would
/// read, without serde_json's deserializer: built with `float_roundtrip`,
/// it collects a float's digits in a buffer it allocates for each parse.
/// Integers that fit go to u64 (not negative) or i64 (negative; `-0` is the
/// float -0.0, as serde_json reads it); everything else is the correctly
/// rounded f64, which both `float_roundtrip` and Rust's parser give.
fn parse_number(text: &str) -> Option<Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if text.starts_with('-') {
            if let Ok(n) = text.parse::<i64>()
                && n != 0
            {
                return Some(Number::from(n));
            }
        } else if let Ok(n) = text.parse::<u64>() {
            return Some(Number::from(n));
        }
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

/// The elements of an array's text, in order.
struct Items<'t> {
    at: Cursor<'t>,
    done: bool,
}

impl<'t> Iterator for Items<'t> {
    type Item = Raw<'t>;
    fn next(&mut self) -> Option<Raw<'t>> {
        if self.done {
            return None;
        }
        let item = self.at.value();
        self.done = item.is_none() || !self.at.eat(b',');
        item
    }
}

/// A position in JSON text. Every step stops (`None`) at text that is not
/// valid JSON instead of panicking; on valid text none does.
struct Cursor<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Cursor<'t> {
    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.byte().is_some_and(is_space) {
            self.at += 1;
        }
    }

    /// Steps over `b` (after whitespace) if it is next.
    fn eat(&mut self, b: u8) -> bool {
        self.skip_space();
        let next = self.byte() == Some(b);
        if next {
            self.at += 1;
        }
        next
    }

    /// Steps over a string (the cursor on its opening quote) and returns
    /// its content. A byte loop, not `memchr`: member names and values are
    /// a few bytes long, shorter than `memchr`'s setup.
    fn string(&mut self) -> Option<JsonStr<'t>> {
        if self.byte()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let mut end = start;
        let mut escaped = false;
        loop {
            match *self.text.as_bytes().get(end)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    end += 2; // the backslash and the character it escapes
                }
                _ => end += 1,
            }
        }
        self.at = end + 1;
        self.text.get(start..end).map(|text| JsonStr { text, escaped })
    }

    /// Steps over one value (after whitespace) and returns its text.
    fn value(&mut self) -> Option<Raw<'t>> {
        self.skip_space();
        let start = self.at;
        match self.byte()? {
            b'"' => {
                self.string()?;
            }
            b'[' | b'{' => {
                // Brackets balance outside strings, so counting them finds the end.
                let mut depth = 0usize;
                loop {
                    match self.byte()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'[' | b'{' => depth += 1,
                        b']' | b'}' => {
                            depth = depth.checked_sub(1)?;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while self.byte().is_some_and(|b| !is_space(b) && !matches!(b, b',' | b']' | b'}')) {
                    self.at += 1;
                }
            }
        }
        self.text.get(start..self.at).filter(|s| !s.is_empty()).map(Raw)
    }
}

/// A JSON string's content as written (escapes not yet decoded).
#[derive(Clone, Copy, Debug)]
struct JsonStr<'t> {
    text: &'t str,
    /// Whether it has an escape: without one, its text is its characters.
    escaped: bool,
}

impl<'t> JsonStr<'t> {
    fn chars(self) -> Unescaped<'t> {
        Unescaped(self.text.chars())
    }

    fn equals(self, s: &str) -> bool {
        if !self.escaped { self.text == s } else { self.chars().eq(s.chars()) }
    }

    /// By code point, as `str`'s order (UTF-8 bytes order as code points do).
    fn cmp(self, s: &str) -> Ordering {
        if !self.escaped { self.text.cmp(s) } else { self.chars().cmp(s.chars()) }
    }

    fn starts_with(self, prefix: &str) -> bool {
        if !self.escaped {
            return self.text.starts_with(prefix);
        }
        let mut chars = self.chars();
        prefix.chars().all(|p| chars.next() == Some(p))
    }
}

/// The characters of a JSON string's content, escapes decoded.
struct Unescaped<'t>(std::str::Chars<'t>);

impl Iterator for Unescaped<'_> {
    type Item = char;
    fn next(&mut self) -> Option<char> {
        let c = self.0.next()?;
        if c != '\\' {
            return Some(c);
        }
        Some(match self.0.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => self.unicode(),
            other => other, // `"`, `\`, `/`
        })
    }
}

impl Unescaped<'_> {
    fn hex4(&mut self) -> Option<u32> {
        (0..4).try_fold(0u32, |n, _| Some(n * 16 + self.0.next()?.to_digit(16)?))
    }

    /// The character of a `\u` escape (after the `u`), joining a UTF-16
    /// surrogate pair. An unpaired surrogate cannot be stored (serde_json
    /// refuses it, so every way in does); it reads as U+FFFD here.
    fn unicode(&mut self) -> char {
        const REPLACEMENT: char = '\u{fffd}';
        let Some(first) = self.hex4() else { return REPLACEMENT };
        if !(0xD800..0xDC00).contains(&first) {
            return char::from_u32(first).unwrap_or(REPLACEMENT);
        }
        let mut ahead = Unescaped(self.0.clone());
        if ahead.0.next() == Some('\\')
            && ahead.0.next() == Some('u')
            && let Some(second) = ahead.hex4().filter(|s| (0xDC00..0xE000).contains(s))
        {
            self.0 = ahead.0;
            return char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)).unwrap_or(REPLACEMENT);
        }
        REPLACEMENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::doc::Doc;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn paths_find_their_spans() {
        let text = r#" { "a" : { "b" : [ 1 , "x\"]" , { "c" : null } ] } , "d":true, "a\u002e":2, "d" : [] } "#;
        let span = |p: &str| find(text, &path(p)).map(|r| r.0);
        assert_eq!(span("$"), Some(text.trim()));
        assert_eq!(span("a.b.0"), Some("1"));
        assert_eq!(span("a.b.1"), Some(r#""x\"]""#));
        assert_eq!(span("a.b.2.c"), Some("null"));
        assert_eq!(span("a.b.+2.c"), Some("null"), "a position as `usize` parses it");
        assert_eq!(span("a.b.3"), None);
        assert_eq!(span("d"), Some("[]"), "the last of duplicate members");
        assert_eq!(span("d.0"), None);
        assert_eq!(span("a.b.0.x"), None);
        assert_eq!(find("{}", &path("a")).map(|r| r.0), None);
        // A name with an escape is compared by its characters.
        let text = r#"{"\u00e9\ud83d\ude00":"\u00e9t\u00e9","\"":1}"#;
        assert_eq!(find(text, &path("é😀")).map(|r| r.0), Some(r#""\u00e9t\u00e9""#));
        assert_eq!(find(text, &path("\"")).map(|r| r.0), Some("1"));
    }

    #[test]
    fn damaged_text_answers_without_panicking() {
        let p = path("a.b.0");
        for bad in ["", "{", "{\"a", "{\"a\":", "{\"a\":{\"b\":[", "{\"a\":{\"b\":[1", "]}", "\"\\", "{\"a\" 1}", "[}"]
        {
            let _ = find(bad, &p);
            let _ = find(bad, &path("$")).map(|r| r.equals(&json!([1])));
        }
    }

    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let texts = [
            "0",
            "-0",
            "-0.0",
            "1",
            "1.0",
            "1e0",
            "1E+2",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9007199254740993",
            "0.1",
            "1.7976931348623157e308",
            "2.2250738585072014e-308",
            "4.9e-324",
            "123456789012345678901234567890.123456789e-5",
        ];
        for text in texts {
            let want: Number = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = parse_number(text);
            assert_eq!(got.as_ref(), Some(&want), "{text}");
            // The same variant, not only an equal value.
            assert_eq!(
                got.map(|n| (n.is_u64(), n.is_i64(), n.is_f64())),
                Some((want.is_u64(), want.is_i64(), want.is_f64()))
            );
        }
    }

    /// A generated JSON value, written out with the freedoms stored text
    /// may have (`Doc::parse` keeps text as written): whitespace, escapes
    /// for any character, repeated member names, numbers in any notation.
    #[derive(Clone, Debug)]
    enum Gen {
        Lit(&'static str),
        Str(String, bool),
        Arr(Vec<Gen>),
        Obj(Vec<(String, bool, Gen)>),
    }

    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "1.0",
        "1e0",
        "10E-1",
        "1.5",
        "2",
        "-1",
        "17",
        "1.7e1",
        "9007199254740993",
        "9007199254740992.0",
        "18446744073709551615",
        "18446744073709551616",
        "1e20",
        "-9223372036854775809",
        "0.1",
        "1e-7",
    ];
    const STRINGS: &[&str] =
        &["", "a", "ab", "b", "A", "é", "😀", "\"", "\\", "a\nb", "/", "c17", "a.b", "\u{7f}", "\u{1}"];
    const NAMES: &[&str] = &["a", "b", "c", "0", "é", "\"q", "a b"];

    fn leaf() -> impl Strategy<Value = Gen> {
        prop_oneof![
            prop::sample::select(&["null", "true", "false"][..]).prop_map(Gen::Lit),
            prop::sample::select(NUMBERS).prop_map(Gen::Lit),
            (prop::sample::select(STRINGS), any::<bool>()).prop_map(|(s, e)| Gen::Str(s.to_owned(), e)),
        ]
    }

    fn gen_value() -> impl Strategy<Value = Gen> {
        leaf().prop_recursive(4, 24, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Gen::Arr),
                prop::collection::vec((prop::sample::select(NAMES), any::<bool>(), inner), 0..5)
                    .prop_map(|m| Gen::Obj(m.into_iter().map(|(n, e, v)| (n.to_owned(), e, v)).collect())),
            ]
        })
    }

    fn write_str(s: &str, escape_all: bool, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' if !escape_all => out.push_str("\\n"),
                '/' if escape_all => out.push_str("\\/"),
                c if escape_all || (c as u32) < 0x20 => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(g: &Gen, space: &str, out: &mut String) {
        match g {
            Gen::Lit(l) => out.push_str(l),
            Gen::Str(s, e) => write_str(s, *e, out),
            Gen::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(space);
                    write(item, space, out);
                }
                out.push_str(space);
                out.push(']');
            }
            Gen::Obj(members) => {
                out.push('{');
                for (i, (name, e, item)) in members.iter().enumerate() {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(space);
                    write_str(name, *e, out);
                    out.push_str(space);
                    out.push(':');
                    out.push_str(space);
                    write(item, space, out);
                }
                out.push_str(space);
                out.push('}');
            }
        }
    }

    const PATHS: &[&str] = &["$", "a", "b", "c", "a.b", "a.0", "0", "0.a", "a.a", "b.1", "é", "\"q", "a b", "a.+0"];

    fn literal() -> impl Strategy<Value = Value> {
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            prop::sample::select(NUMBERS).prop_map(|n| serde_json::from_str(n).unwrap_or(Value::Null)),
            prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
        ];
        scalar.prop_recursive(2, 6, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(NAMES), inner), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    fn condition() -> impl Strategy<Value = Condition> {
        let field = || prop::sample::select(PATHS).prop_map(path);
        let op = prop::sample::select(&[CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge][..]);
        prop_oneof![
            (field(), op, literal()).prop_map(|(field, op, value)| Condition::Compare { field, op, value }),
            field().prop_map(Condition::Exists),
            prop::sample::select(&["", "k", "k1", "x"][..]).prop_map(|p| Condition::KeyPrefix(p.to_owned())),
            (field(), prop::collection::vec(literal(), 0..4))
                .prop_map(|(field, values)| Condition::In { field, values }),
            (field(), literal()).prop_map(|(field, value)| Condition::Contains { field, value }),
            (field(), prop::sample::select(STRINGS))
                .prop_map(|(field, p)| Condition::StartsWith { field, prefix: p.to_owned() }),
            (field(), literal(), literal()).prop_map(|(field, low, high)| Condition::Between { field, low, high }),
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        condition().prop_map(Filter::Cond).prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
                prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    /// Every pair of edge values (numbers in every notation, strings with and
    /// without escapes, the other types) under every comparison: the text
    /// answers as the value does. Exhaustive where the random test below
    /// only samples.
    #[test]
    fn edge_pairs_answer_as_the_value() {
        let mut texts: Vec<String> = NUMBERS.iter().map(|n| (*n).to_owned()).collect();
        for s in STRINGS {
            for escape in [false, true] {
                let mut out = String::new();
                write_str(s, escape, &mut out);
                texts.push(out);
            }
        }
        texts.extend(["null", "true", "false", "[]", "{}", "[1,\"a\"]", "{\"a\":1}"].map(str::to_owned));
        let literals: Vec<Value> = texts.iter().filter_map(|t| serde_json::from_str(t).ok()).collect();
        let a = path("a");
        let ops = [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge];
        for text in &texts {
            let doc = format!("{{\"a\":{text}}}");
            let list = format!("{{\"a\":[0, {text}]}}");
            let (value, list_value) = (serde_json::from_str::<Value>(&doc), serde_json::from_str::<Value>(&list));
            let (Ok(value), Ok(list_value)) = (value, list_value) else { panic!("{doc} is not JSON") };
            for wanted in &literals {
                let mut conditions: Vec<Condition> =
                    ops.iter().map(|&op| Condition::Compare { field: a.clone(), op, value: wanted.clone() }).collect();
                conditions.push(Condition::In { field: a.clone(), values: vec![Value::Null, wanted.clone()] });
                conditions.push(Condition::Between { field: a.clone(), low: wanted.clone(), high: wanted.clone() });
                conditions.push(Condition::Between { field: a.clone(), low: json!(-1), high: wanted.clone() });
                conditions.push(Condition::Between { field: a.clone(), low: json!(""), high: wanted.clone() });
                if let Value::String(s) = wanted {
                    conditions.push(Condition::StartsWith { field: a.clone(), prefix: s.clone() });
                }
                for c in conditions {
                    let f = Filter::Cond(c);
                    assert_eq!(f.matches_text("k", &doc), f.matches("k", &value), "{f} on {doc}");
                }
                let f = Filter::Cond(Condition::Contains { field: a.clone(), value: wanted.clone() });
                assert_eq!(f.matches_text("k", &list), f.matches("k", &list_value), "{f} on {list}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random filters over random documents, written compactly and with
        /// every freedom of JSON text: the text evaluator answers as the
        /// reference evaluator does on the parsed value.
        #[test]
        fn the_text_answers_as_the_value(
            g in gen_value(),
            space in prop::sample::select(&["", " ", " \t", "\n "][..]),
            filters in prop::collection::vec(filter(), 1..8),
            key in prop::sample::select(&["k1", "k2", "x"][..]),
        ) {
            let mut text = String::new();
            write(&g, space, &mut text);
            let doc = Doc::parse(&text);
            prop_assert!(doc.is_ok(), "{text}: {doc:?}");
            let doc = doc.unwrap_or_else(|_| Doc::from(Value::Null));
            let value = doc.to_value();
            let compact = Doc::from(&value);
            for filter in &filters {
                let want = filter.matches(key, &value);
                prop_assert_eq!(filter.matches_text(key, doc.as_str()), want, "{} on {}", filter, doc.as_str());
                prop_assert_eq!(filter.matches_text(key, compact.as_str()), want, "{} on {}", filter, compact.as_str());
            }
            // Every path the filters can name finds what `resolve` finds.
            for p in PATHS {
                let p = path(p);
                let want = p.resolve(&value).cloned();
                let got = find(doc.as_str(), &p).and_then(|r| serde_json::from_str::<Value>(r.0).ok());
                prop_assert_eq!(got, want, "{} in {}", p, doc.as_str());
            }
        }
    }
}
