//! The query language's parser: text to [`Query`], strictly. Every error
//! says what was expected and at which character (1-based), so a person can
//! find the problem in what they typed.
//!
//! ```text
//! query   := [filter] tail*            (at least one of them)
//! tail    := sort by FIELD [asc|desc] {, FIELD [asc|desc]} | limit N | offset N | fields FIELD {, FIELD}
//! filter  := and_ {or and_}
//! and_    := not_ {and not_}
//! not_    := not not_ | ( filter ) | cond
//! cond    := exists FIELD | prefix TEXT | FIELD OP VALUE | FIELD VALUE | FIELD in [V, ...]
//!          | FIELD contains VALUE | FIELD prefix TEXT | FIELD between VALUE and VALUE
//! ```

use serde_json::Value;

use super::{CmpOp, Condition, Filter, Query, SortKey, parse_value};
use crate::state::index::FieldPath;

/// How deep parentheses and `not`s may nest (the parser recurses).
const MAX_NESTING: usize = 64;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    /// A JSON token (a quoted string, an object or an array), already parsed.
    Json(Value),
    Op(CmpOp),
    Open,
    Close,
    Comma,
}

/// A token and the character (0-based) where it starts.
type Spanned = (Tok, usize);

type Res<T> = std::result::Result<T, String>;

fn tokenize(text: &str) -> Res<Vec<Spanned>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('=', _) => (CmpOp::Eq, 1),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => return Err(format!("at character {}: `!` must be followed by `=` (write `!=`)", i + 1)),
                };
                i += len;
                Tok::Op(op)
            }
            '"' | '{' | '[' => {
                let end = json_end(&chars, i).ok_or_else(|| {
                    format!("at character {}: unclosed {}", i + 1, if c == '"' { "quote" } else { "bracket" })
                })?;
                let raw: String = chars[i..end].iter().collect();
                let value = serde_json::from_str(&raw)
                    .map_err(|e| format!("at character {}: invalid JSON `{raw}`: {e}", i + 1))?;
                i = end;
                Tok::Json(value)
            }
            _ => {
                while i < chars.len() && !chars[i].is_whitespace() && !"=!<>(),".contains(chars[i]) {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().collect())
            }
        };
        tokens.push((tok, start));
    }
    Ok(tokens)
}

/// The end (exclusive) of the JSON string, object or array starting at `start`.
fn json_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Words that end a filter and start a tail clause.
const TAIL: [&str; 4] = ["sort", "limit", "offset", "fields"];
/// Words that cannot be a value in the shorthand `field value`.
const RESERVED: [&str; 9] = ["and", "or", "not", "sort", "limit", "offset", "fields", "asc", "desc"];

struct Parser {
    tokens: Vec<Spanned>,
    at: usize,
    /// Characters in the text, for "at the end" positions.
    len: usize,
    depth: usize,
}

fn is_word(tok: Option<&Tok>, word: &str) -> bool {
    matches!(tok, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn peek2(&self) -> Option<&Tok> {
        self.tokens.get(self.at + 1).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.tokens.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        tok
    }

    /// "at character N" for the current token (or the end).
    fn here(&self) -> String {
        match self.tokens.get(self.at) {
            Some((_, pos)) => format!("at character {}", pos + 1),
            None => format!("at the end (character {})", self.len + 1),
        }
    }

    fn fail<T>(&self, what: &str) -> Res<T> {
        let found = match self.peek() {
            None => "the end of the query".to_owned(),
            Some(Tok::Word(w)) => format!("`{w}`"),
            Some(Tok::Json(v)) => format!("`{v}`"),
            Some(Tok::Op(op)) => format!("`{op}`"),
            Some(Tok::Open) => "`(`".into(),
            Some(Tok::Close) => "`)`".into(),
            Some(Tok::Comma) => "`,`".into(),
        };
        Err(format!("{}: expected {what}, found {found}", self.here()))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if is_word(self.peek(), word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn at_filter_end(&self) -> bool {
        match self.peek() {
            None | Some(Tok::Close) => true,
            Some(Tok::Word(w)) => TAIL.iter().any(|t| w.eq_ignore_ascii_case(t)) && !self.next_is_operator(),
            _ => false,
        }
    }

    /// Whether the token after the current one makes it a field (`sort = 1`).
    fn next_is_operator(&self) -> bool {
        matches!(self.peek2(), Some(Tok::Op(_)))
    }

    fn filter(&mut self) -> Res<Filter> {
        let mut parts = vec![self.and_()?];
        while self.eat_word("or") {
            parts.push(self.and_()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::Or(parts) })
    }

    fn and_(&mut self) -> Res<Filter> {
        let mut parts = vec![self.not_()?];
        while self.eat_word("and") {
            parts.push(self.not_()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
    }

    fn not_(&mut self) -> Res<Filter> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("{}: parentheses and `not` nest more than {MAX_NESTING} deep", self.here()));
        }
        let result = if is_word(self.peek(), "not") && !self.next_is_operator() {
            self.at += 1;
            self.not_().map(|f| Filter::Not(Box::new(f)))
        } else if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let inner = self.filter()?;
            if self.peek() != Some(&Tok::Close) {
                return self.fail("`)` or `and`/`or`");
            }
            self.at += 1;
            Ok(inner)
        } else {
            self.cond().map(Filter::Cond)
        };
        self.depth -= 1;
        result
    }

    fn field(&mut self) -> Res<FieldPath> {
        let pos = self.here();
        let text = match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| w.eq_ignore_ascii_case(r)) || self.next_is_operator() => {
                w.clone()
            }
            Some(Tok::Json(Value::String(s))) => s.clone(),
            _ => return self.fail("a field path such as `name`, `address.city` or `tags.0`"),
        };
        self.at += 1;
        FieldPath::parse(&text).map_err(|e| format!("{pos}: {e}"))
    }

    fn value(&mut self, after: &str) -> Res<Value> {
        match self.peek() {
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| w.eq_ignore_ascii_case(r)) => {
                let v = parse_value(w);
                self.at += 1;
                Ok(v)
            }
            Some(Tok::Json(v)) => {
                let v = v.clone();
                self.at += 1;
                Ok(v)
            }
            _ => self.fail(&format!("a value after {after}")),
        }
    }

    fn text(&mut self, after: &str) -> Res<String> {
        match self.value(after)? {
            Value::String(s) => Ok(s),
            // `prefix 42` means the text "42".
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Ok("null".into()),
            other => Err(format!("{}: {after} takes text, not {other}", self.here())),
        }
    }

    fn ordered(&self, value: &Value, what: &str) -> Res<()> {
        if value.is_number() || value.is_string() {
            Ok(())
        } else {
            Err(format!("{}: {what} compares numbers or strings, not {value}", self.here()))
        }
    }

    fn cond(&mut self) -> Res<Condition> {
        if is_word(self.peek(), "exists") && !self.next_is_operator() {
            self.at += 1;
            return Ok(Condition::Exists(self.field()?));
        }
        if is_word(self.peek(), "prefix") && !self.next_is_operator() {
            self.at += 1;
            return Ok(Condition::KeyPrefix(self.text("`prefix` (a key prefix)")?));
        }
        let field = self.field()?;
        let shown = field.to_string();
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.at += 1;
                let value = self.value(&format!("`{shown} {op}`"))?;
                if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    self.ordered(&value, &format!("`{op}`"))?;
                }
                Ok(Condition::Compare { field, op, value })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in") => {
                self.at += 1;
                match self.next() {
                    Some(Tok::Json(Value::Array(values))) => Ok(Condition::In { field, values }),
                    _ => {
                        self.at -= 1;
                        self.fail("a JSON array after `in`, such as [\"a\", 2]")
                    }
                }
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("contains") => {
                self.at += 1;
                Ok(Condition::Contains { value: self.value(&format!("`{shown} contains`"))?, field })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("prefix") => {
                self.at += 1;
                Ok(Condition::StartsWith { prefix: self.text(&format!("`{shown} prefix`"))?, field })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("between") => {
                self.at += 1;
                let low = self.value(&format!("`{shown} between`"))?;
                self.ordered(&low, "`between`")?;
                if !self.eat_word("and") {
                    return self.fail("`and` between the two bounds of `between`");
                }
                let high = self.value(&format!("`{shown} between ... and`"))?;
                self.ordered(&high, "`between`")?;
                Ok(Condition::Between { field, low, high })
            }
            // Shorthand: `name Alice` means `name = Alice`.
            Some(Tok::Word(w)) if !RESERVED.iter().any(|r| w.eq_ignore_ascii_case(r)) => {
                Ok(Condition::Compare { value: self.value("the field")?, field, op: CmpOp::Eq })
            }
            Some(Tok::Json(_)) => Ok(Condition::Compare { value: self.value("the field")?, field, op: CmpOp::Eq }),
            _ => self.fail(&format!(
                "an operator after `{shown}` (= != < <= > >=, in, contains, prefix, between) or a value"
            )),
        }
    }

    fn number(&mut self, what: &str) -> Res<usize> {
        match self.peek() {
            Some(Tok::Word(w)) if w.parse::<usize>().is_ok() => {
                let n = w.parse().unwrap_or(0);
                self.at += 1;
                Ok(n)
            }
            _ => self.fail(&format!("a whole number after `{what}`")),
        }
    }

    fn fields_list(&mut self) -> Res<Vec<FieldPath>> {
        let mut out = vec![self.field()?];
        while self.peek() == Some(&Tok::Comma) {
            self.at += 1;
            out.push(self.field()?);
        }
        Ok(out)
    }

    fn tail(&mut self, query: &mut Query) -> Res<()> {
        let mut seen = Vec::new();
        while let Some(Tok::Word(w)) = self.peek().cloned() {
            let word = w.to_ascii_lowercase();
            if !TAIL.contains(&word.as_str()) {
                break;
            }
            if seen.contains(&word) {
                return Err(format!("{}: `{word}` is given twice", self.here()));
            }
            seen.push(word.clone());
            self.at += 1;
            match word.as_str() {
                "sort" => {
                    if !self.eat_word("by") {
                        return self.fail("`by` after `sort`");
                    }
                    loop {
                        let field = self.field()?;
                        let descending = if self.eat_word("desc") {
                            true
                        } else {
                            self.eat_word("asc");
                            false
                        };
                        query.sort.push(SortKey { field, descending });
                        if self.peek() != Some(&Tok::Comma) {
                            break;
                        }
                        self.at += 1;
                    }
                }
                "limit" => query.limit = Some(self.number("limit")?),
                "offset" => query.offset = self.number("offset")?,
                _ => query.fields = Some(self.fields_list()?),
            }
        }
        Ok(())
    }
}

/// Parses `text`; the error is the reason, with the position.
pub(super) fn parse(text: &str) -> Res<Query> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("empty query: write a condition such as `name = Alice`".into());
    }
    let mut p = Parser { tokens, at: 0, len: text.chars().count(), depth: 0 };
    let mut query = Query::default();
    if !p.at_filter_end() {
        query.filter = p.filter()?;
    }
    p.tail(&mut query)?;
    if p.at < p.tokens.len() {
        let what = if p.peek() == Some(&Tok::Close) {
            "no `)` without its `(`"
        } else {
            "`and`, `or` or the end of the query"
        };
        return p.fail(what);
    }
    Ok(query)
}
