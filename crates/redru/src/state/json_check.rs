//! Proving that bytes are one JSON value, exactly as serde_json's parser
//! accepts it for a `RawValue`, without building anything or allocating:
//! how a snapshot's values are checked as they load (serde_json's
//! `ignore_value`, `ignore_str` and `skip_to_escape` were about 15 % of an
//! open's samples).
//!
//! Invariant: [`checked`] returns text only when `serde_json::from_slice::<&RawValue>`
//! accepts the same bytes and returns the same text (property-tested below
//! against serde_json on random and broken inputs). The digest of a
//! snapshot proves nothing about who wrote it, so the grammar is always
//! checked; this is only a faster way to check it.

/// Nesting this checker follows (one bit per level); deeper text is left to
/// serde_json, which has no limit here (a value deeper than
/// [`MAX_DEPTH`](crate::state::doc::MAX_DEPTH) is refused after it anyway).
const MAX_LEVELS: u32 = 128;

/// A value [`checked`] proved valid, with what the check saw on the way,
/// so that [`Doc`](crate::state::doc::Doc) need not scan the text again for
/// it (those scans were 4 % of a snapshot load's instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The value's text, whitespace around it dropped.
    pub text: &'a str,
    /// How deeply arrays and objects nest (0 for a scalar; `[]` is 1).
    pub depth: u32,
    /// Whether serde_json's `Value` parser might still refuse the text, or
    /// it holds a raw line break: it has a `\u` escape (other escapes
    /// always read back), a line break between tokens, a member name starting with `$`, or a number with an
    /// exponent of three or more digits or a run of more than 200 digits
    /// (what `Doc`'s own scan looks for, seen only where it matters).
    pub needs_parse: bool,
}

/// The JSON value `bytes` hold, whitespace around it dropped (as serde_json's
/// `RawValue` keeps it), with what [`Checked`] reports about it. `None` when the bytes are not exactly one valid
/// JSON value, or nest deeper than 128 levels (the caller then asks
/// serde_json, which gives the reason).
pub fn checked(bytes: &[u8]) -> Option<Checked<'_>> {
    let mut scan = Scan { b: bytes, i: 0, depth: 0, needs_parse: false };
    scan.ws();
    let start = scan.i;
    // Line breaks before the value are dropped with the whitespace.
    scan.needs_parse = false;
    scan.value()?;
    let end = scan.i;
    let needs_parse = scan.needs_parse;
    scan.ws();
    if scan.i != bytes.len() {
        return None;
    }
    let text = std::str::from_utf8(bytes.get(start..end)?).ok()?;
    Some(Checked { text, depth: scan.depth, needs_parse })
}

/// The bytes that end a string's plain run: its closing quote, an escape,
/// or a control character (not allowed raw).
static STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        table[c] = true;
        c += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A cursor over the bytes, and what it saw for [`Checked`].
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    /// The deepest nesting opened so far.
    depth: u32,
    /// See [`Checked::needs_parse`].
    needs_parse: bool,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips JSON whitespace (the four bytes serde_json skips).
    fn ws(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => {}
                Some(b'\n' | b'\r') => self.needs_parse = true,
                _ => return,
            }
            self.i += 1;
        }
    }

    /// One value, its containers followed with a stack of bits (1: object).
    fn value(&mut self) -> Option<()> {
        let (mut stack, mut depth) = (0u128, 0u32);
        loop {
            // A value starts here (whitespace skipped by the caller).
            let opened = match self.peek()? {
                b'{' => Some(true),
                b'[' => Some(false),
                b'"' => {
                    self.string()?;
                    None
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                    None
                }
                b't' => {
                    self.literal(b"true")?;
                    None
                }
                b'f' => {
                    self.literal(b"false")?;
                    None
                }
                b'n' => {
                    self.literal(b"null")?;
                    None
                }
                _ => return None,
            };
            if let Some(object) = opened {
                self.i += 1;
                if depth == MAX_LEVELS {
                    return None;
                }
                self.depth = self.depth.max(depth + 1);
                self.ws();
                if self.peek()? != if object { b'}' } else { b']' } {
                    stack = (stack << 1) | u128::from(object);
                    depth += 1;
                    if object {
                        self.member_name()?;
                    }
                    continue;
                }
                // Empty: a complete value.
                self.i += 1;
            }
            // After a value: a comma and the next value, or the enclosing
            // container's end (which completes a value in turn).
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = stack & 1 == 1;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if object {
                            self.member_name()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                self.i += 1;
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// `"name"`, whitespace, `:`, whitespace: what precedes a member's value.
    fn member_name(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        // serde_json keeps names starting with `$serde_json::private::` for
        // itself (`Doc`'s RESERVED): `Doc` looks again at a name starting with `$`.
        if self.b.get(self.i + 1) == Some(&b'$') {
            self.needs_parse = true;
        }
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        self.ws();
        Some(())
    }

    /// A string, the cursor on its opening quote: no raw control character,
    /// only JSON's escapes (`\u` with four hex digits; which code point
    /// they name is not judged, as serde_json does not here). A byte loop
    /// over a table, not `memchr`: a value's strings are mostly a few bytes
    /// long, where a call per string cost more than it saved (callgrind).
    fn string(&mut self) -> Option<()> {
        let b = self.b;
        let mut i = self.i + 1;
        loop {
            let c = *b.get(i)?;
            i += 1;
            if !STOP[usize::from(c)] {
                continue;
            }
            match c {
                b'"' => {
                    self.i = i;
                    return Some(());
                }
                b'\\' => match *b.get(i)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 1,
                    b'u' => {
                        // It may name an unpaired surrogate, which
                        // serde_json's `Value` parser refuses.
                        self.needs_parse = true;
                        if !b.get(i + 1..i + 5)?.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i += 5;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let from = self.i;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut longest = self.i - from;
        if self.peek() == Some(b'.') {
            self.i += 1;
            longest = longest.max(self.some_digits()?);
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let exponent = self.some_digits()?;
            // f64 ends near 1e308: an exponent of three digits may be beyond it.
            self.needs_parse |= exponent >= 3;
            longest = longest.max(exponent);
        }
        // With an exponent of at most two digits, 200 digits stay below 1e299.
        self.needs_parse |= longest > 200;
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// At least one digit: how many.
    fn some_digits(&mut self) -> Option<usize> {
        let from = self.i;
        self.digits();
        (self.i > from).then_some(self.i - from)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.b[self.i..].starts_with(word) {
            return None;
        }
        self.i += word.len();
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    use super::*;
    use crate::state::doc::Doc;

    fn value(bytes: &[u8]) -> Option<&str> {
        checked(bytes).map(|c| c.text)
    }

    /// What serde_json makes of the bytes: the raw value's text, or `None`.
    fn serde(bytes: &[u8]) -> Option<&str> {
        serde_json::from_slice::<&RawValue>(bytes).ok().map(RawValue::get)
    }

    fn depth(bytes: &[u8]) -> usize {
        bytes.iter().filter(|&&b| b == b'[' || b == b'{').count()
    }

    /// The checker agrees with serde_json on `bytes` (it may leave text
    /// nested deeper than it follows to serde_json).
    fn agrees(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        let (ours, theirs) = (value(bytes), serde(bytes));
        if ours.is_none() && theirs.is_some() && depth(bytes) > MAX_LEVELS as usize {
            return Ok(());
        }
        prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(bytes));
        Ok(())
    }

    #[test]
    fn known_cases() {
        let good = [
            "0",
            "-0",
            "1.5e-3",
            "-12E+7",
            "1e5",
            " true ",
            "\tnull\n",
            "\"\"",
            "\"a\\u00e9\\n\\\"\\/\"",
            "[]",
            "{}",
            "[ ]",
            "{ }",
            "[1,[2,{}],{\"a\":[]}]",
            "{\"a\" : 1 , \"b\":{\"c\":\"}\"}}",
            "\"é\u{7f}\"",
        ];
        let bad = [
            "",
            " ",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "True",
            "[1,]",
            "{\"a\":1,}",
            "[,]",
            "{,}",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "{1:1}",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"\\u12\"",
            "\"a",
            "\"\t\"",
            "\"\n\"",
            "[",
            "]",
            "{",
            "1 2",
            "[1]]",
            "[}",
            "{]",
            "\"\\\"",
            "[\"a\",]",
            "nulls",
            "0x1",
        ];
        for text in good {
            assert_eq!(value(text.as_bytes()), serde(text.as_bytes()), "{text:?}");
            assert!(value(text.as_bytes()).is_some(), "{text:?} refused");
        }
        for text in bad {
            assert_eq!(serde(text.as_bytes()), None, "{text:?}: serde_json takes it");
            assert_eq!(value(text.as_bytes()), None, "{text:?} accepted");
        }
        // Broken UTF-8 inside a string; the depth it leaves to serde_json.
        assert_eq!(value(b"\"\xff\""), None);
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(value(deep.as_bytes()), None);
        let limit = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(value(limit.as_bytes()), Some(limit.as_str()));
    }

    /// A member name: short ones, and names serde_json keeps for itself.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z\"]{0,4}",
            1 => prop::sample::select(vec!["$serde_json::private::RawValue", "$x", "a$serde_json::private::"])
                .prop_map(str::to_owned),
        ]
    }

    /// A random JSON value's text, spaced and escaped in every allowed way.
    fn json_text() -> impl Strategy<Value = String> {
        let ws = prop::sample::select(vec!["", "", " ", "\n", "\t", "\r", "  "]);
        let string =
            "[a-z\"\\\\/\u{e9}\u{1f600}\u{7f}\u{1} ]{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default());
        let escaped =
            prop::sample::select(vec![r#""\u00e9""#, r#""\ud83d\ude00""#, r#""\b\f\n\r\t\/""#, r#""\uDEAD""#]);
        let long = Box::leak(format!("1{}", "0".repeat(250)).into_boxed_str());
        let long_fraction = Box::leak(format!("0.{}1", "0".repeat(250)).into_boxed_str());
        let number = prop::sample::select(vec![
            "0",
            "-0",
            "12",
            "-3.25",
            "1e10",
            "2E-3",
            "1.5e+300",
            "1e400",
            "-0.0",
            "1e-400",
            "1E+99",
            "1e099",
            long,
            long_fraction,
        ]);
        let leaf = prop_oneof![
            string,
            escaped.prop_map(str::to_owned),
            number.prop_map(str::to_owned),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ];
        let ws2 = ws.clone();
        leaf.prop_recursive(6, 48, 6, move |inner| {
            let ws = ws2.clone();
            prop_oneof![
                prop::collection::vec((inner.clone(), ws.clone()), 0..5).prop_map(|items| {
                    let body: Vec<String> = items.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                    format!("[{}]", body.join(","))
                }),
                prop::collection::vec((name(), inner, ws), 0..5).prop_map(|members| {
                    let body: Vec<String> = members
                        .into_iter()
                        .map(|(k, v, w)| format!("{w}{}{w}:{w}{v}", serde_json::to_string(&k).unwrap_or_default()))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
        .prop_flat_map(move |text| (Just(text), ws.clone()))
        .prop_map(|(text, w)| format!("{w}{text}{w}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn valid_text_is_taken_as_serde_json_takes_it(text in json_text()) {
            prop_assert!(value(text.as_bytes()).is_some(), "{:?}", text);
            agrees(text.as_bytes())?;
        }

        /// What the check reports makes the same `Doc` (or the same refusal)
        /// as `Doc`'s own scans of the text.
        #[test]
        fn the_report_makes_the_doc_the_scans_make(text in json_text(), nest in 0..130usize) {
            let text = format!("{}{text}{}", "[".repeat(nest), "]".repeat(nest));
            let Some(c) = checked(text.as_bytes()) else {
                prop_assert!(nest > 120, "{:?} refused", text);
                return Ok(());
            };
            let doc = |d: std::result::Result<Doc, String>| d.map(|d| d.as_str().to_owned());
            prop_assert_eq!(doc(Doc::from_json_check(c)), doc(Doc::from_checked(c.text)), "{:?}", text);
            prop_assert_eq!(c.depth as usize, crate::state::doc::depth_of(c.text), "{:?}", text);
        }

        /// Broken text: a byte changed, removed, inserted or the text cut,
        /// anywhere (JSON's own bytes more often than random ones).
        #[test]
        fn broken_text_is_judged_as_serde_json_judges_it(
            text in json_text(),
            at in any::<prop::sample::Index>(),
            byte in prop_oneof![
                prop::sample::select(b"{}[],:\"\\ntfue0123456789.-+eE \t\n\x01\x7f".to_vec()),
                any::<u8>(),
            ],
            how in 0..4u8,
        ) {
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 if i < bytes.len() => { bytes.remove(i); }
                2 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
            agrees(&bytes)?;
        }

        #[test]
        fn any_bytes_are_judged_as_serde_json_judges_them(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
            agrees(&bytes)?;
        }
    }
}
