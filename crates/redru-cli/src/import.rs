//! `import`: an export file's pairs (either shape), each value read like
//! `set`'s ([`json_doc`]: digits kept, where the library's `import_with`
//! goes through `Value`), applied in one atomic step (`Db::import_expiring`:
//! a new snapshot for a replace or a large merge). The input is read to its
//! end first, so `-`, `/dev/stdin` and pipes work like files. A JSON line may
//! carry `"expires"` (ms since the Unix epoch), as `export --lines` writes it
//! for a key with a deadline; a key whose deadline has passed is not imported.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use redru::{Db, Doc, Expiry};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::shell::parser::json_doc;

/// The pairs of an input with their deadlines (ms since the Unix epoch;
/// JSON lines only), keys borrowed from it unless they hold escapes: a
/// million keys copied into `String`s only to be copied again into the
/// map's inline keys left 32 MB of freed heap resident after an import.
pub type Imported<'a> = Vec<(Cow<'a, str>, Doc, Option<u64>)>;

/// Called with (bytes parsed, bytes in all) as parsing goes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Reads the whole input: standard input for `-`, else the file (or pipe) at `path`.
pub fn read_input(path: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).context("reading standard input")?;
    } else {
        let mut file = std::fs::File::open(Path::new(path)).with_context(|| format!("opening {path}"))?;
        file.read_to_end(&mut bytes).with_context(|| format!("reading {path}"))?;
    }
    Ok(bytes)
}

/// Applies the pairs of `bytes` in one step (replacing everything, with
/// `replace`); all or nothing. Returns how many pairs there were (a key
/// given twice counts twice; the last value wins).
pub fn apply(db: &Db, bytes: &[u8], replace: bool, progress: Progress) -> Result<usize> {
    let pairs = pairs(bytes, progress)?;
    let pairs = pairs.into_iter().map(|(key, value, expires)| (key, value, expires.map(Expiry))).collect();
    db.import_expiring(pairs, replace).context("applying the pairs (nothing was imported)")
}

/// The pairs of an export file, in order: JSON lines when the first
/// non-blank line is a `{"key": .., "value": ..}` object, else one JSON object of pairs.
pub fn pairs<'a>(bytes: &'a [u8], progress: Progress) -> Result<Imported<'a>> {
    let first = bytes.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty());
    let pairs = match first {
        None => bail!("the input is empty: expected a JSON object or JSON lines"),
        Some(line) if line_pair(line).is_ok() => lines(bytes, progress)?,
        Some(_) => object(bytes, progress)?,
    };
    progress(bytes.len() as u64, bytes.len() as u64);
    Ok(pairs)
}

fn lines<'a>(bytes: &'a [u8], progress: Progress) -> Result<Imported<'a>> {
    let total = bytes.len() as u64;
    let mut pairs = Vec::new();
    let mut offset = 0usize;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if !line.trim_ascii().is_empty() {
            let (key, raw, expires) = line_pair(line).map_err(|e| {
                anyhow!(
                    "line {} (byte offset {offset}) is not a {{\"key\": string, \"value\": any}} object: {e}; \
                     nothing was imported",
                    i + 1
                )
            })?;
            let value =
                json_doc(raw).map_err(|e| anyhow!("line {}: value of {key:?}: {e}; nothing was imported", i + 1))?;
            pairs.push((key, value, expires));
        }
        offset += line.len() + 1;
        if i % 4096 == 0 {
            progress((offset as u64).min(total), total);
        }
    }
    Ok(pairs)
}

/// One JSON line's key, raw value text and deadline.
fn line_pair(line: &[u8]) -> Result<(Cow<'_, str>, &str, Option<u64>), String> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let expires = match members.get("expires") {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<u64>(raw.get())
                .ok()
                .filter(|&at| at > 0)
                .ok_or("`expires` must be a deadline in milliseconds since the Unix epoch")?,
        ),
    };
    if members.len() != 2 + usize::from(expires.is_some()) {
        return Err("expected exactly the members `key` and `value` (and `expires`, a deadline)".into());
    }
    let key = members.get("key").ok_or("missing `key`")?;
    let value = members.get("value").ok_or("missing `value`")?;
    let Key(key) = serde_json::from_str(key.get()).map_err(|_| "`key` must be a string".to_owned())?;
    Ok((key, value.get(), expires))
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn object<'a>(bytes: &'a [u8], progress: Progress) -> Result<Imported<'a>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let visitor = Pairs { start: bytes.as_ptr() as usize, total: bytes.len() as u64, progress };
    let raw = de.deserialize_map(visitor).and_then(|pairs| de.end().map(|()| pairs)).map_err(|e| {
        anyhow!(
            "not a JSON object of key/value pairs: {e} (a JSON-lines file needs one {{\"key\":..,\"value\":..}} \
             per line); nothing was imported"
        )
    })?;
    raw.into_iter()
        .map(|(key, text)| {
            let value = json_doc(text).map_err(|e| anyhow!("value of {key:?}: {e}; nothing was imported"))?;
            Ok((key, value, None))
        })
        .collect()
}

/// The members of the top-level object in order, each value as its raw
/// text; progress from where in the input the last value ends.
struct Pairs<'p> {
    start: usize,
    total: u64,
    progress: Progress<'p>,
}

impl<'de> Visitor<'de> for Pairs<'_> {
    type Value = Vec<(Cow<'de, str>, &'de str)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of key/value pairs")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some((Key(key), raw)) = access.next_entry::<Key<'de>, &'de RawValue>()? {
            let text = raw.get();
            if pairs.len() % 4096 == 0 {
                let end = (text.as_ptr() as usize + text.len()).saturating_sub(self.start) as u64;
                (self.progress)(end.min(self.total), self.total);
            }
            pairs.push((key, text));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<(String, String)>> {
        Ok(pairs(bytes, &mut |_, _| {})?.into_iter().map(|(k, v, _)| (k.into_owned(), v.as_str().to_owned())).collect())
    }

    #[test]
    fn both_shapes_keep_digits_order_and_refuse_what_cannot_read_back() -> Result<()> {
        let object = read(b"{\n\"b\": 12345678901234567890123,\n\"a\": { \"x\" : [1, 2] },\n\"b\": 2\n}\n")?;
        let texts: Vec<(&str, &str)> = object.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(texts, [("b", "12345678901234567890123"), ("a", "{\"x\":[1,2]}"), ("b", "2")]);
        let lines = read(b"{\"key\":\"a\",\"value\":1.50}\n\n{\"key\":\"b\\nc\",\"value\":\"t\"}\n")?;
        let texts: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(texts, [("a", "1.50"), ("b\nc", "\"t\"")]);
        assert!(read(b"{\"a\": 1e400}").is_err());
        assert!(read(b"{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":1e400}\n").is_err());
        assert!(read(b"{\"a\": {\"$serde_json::private::RawValue\": \"1\"}}").is_err());
        assert!(read(b"  \n").is_err());
        assert!(read(b"{\"a\": 1,").is_err());
        assert!(read(b"{\"a\": 1} x").is_err());
        // Deadlines in JSON lines.
        let with = pairs(b"{\"key\":\"a\",\"value\":1,\"expires\":1764547200000}\n", &mut |_, _| {})?;
        assert_eq!(with.first().map(|p| p.2), Some(Some(1_764_547_200_000)));
        assert!(read(b"{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":1,\"expires\":\"soon\"}\n").is_err());
        Ok(())
    }

    #[test]
    fn progress_reaches_the_end() -> Result<()> {
        let mut seen = Vec::new();
        pairs(b"{\"a\": 1, \"b\": 2}", &mut |done, total| seen.push((done, total)))?;
        assert_eq!(seen.first(), Some(&(7, 16)));
        assert_eq!(seen.last(), Some(&(16, 16)));
        Ok(())
    }
}
