//! `import`: the pairs of an export file (either shape) read the way `set`
//! reads a value, then applied as one atomic batch.
//!
//! The library's `Db::import_with` reads values into `serde_json::Value`,
//! which turns `12345678901234567890123` into `1.2345678901234568e22`; here
//! every value goes through [`json_doc`] (the library's raw-text path), so
//! numbers keep their digits and a value that could not be read back is
//! refused. The input is read to its end first, so `-`, `/dev/stdin`, pipes
//! and process substitution work like files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use redru::{Batch, Db, Doc};
use serde_json::value::RawValue;

use crate::shell::parser::json_doc;

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

/// Applies the pairs of `bytes` as one batch (after clearing, with
/// `replace`); all or nothing. Returns how many pairs there were.
pub fn apply(db: &Db, bytes: &[u8], replace: bool) -> Result<usize> {
    let pairs = pairs(bytes)?;
    let mut batch = if replace { Batch::new().clear() } else { Batch::new() };
    let n = pairs.len();
    for (key, value) in pairs {
        batch.push_set(key, value);
    }
    if !batch.is_empty() {
        db.batch(batch).context("applying the pairs (nothing was imported)")?;
    }
    Ok(n)
}

/// The pairs of an export file: JSON lines when the first non-blank line is
/// a `{"key": .., "value": ..}` object, else one JSON object of pairs.
pub fn pairs(bytes: &[u8]) -> Result<Vec<(String, Doc)>> {
    let first = bytes.split(|&b| b == b'\n').find(|l| !l.trim_ascii().is_empty());
    match first {
        None => bail!("the input is empty: expected a JSON object or JSON lines"),
        Some(line) if line_pair(line).is_ok() => lines(bytes),
        Some(_) => object(bytes),
    }
}

fn lines(bytes: &[u8]) -> Result<Vec<(String, Doc)>> {
    let mut pairs = Vec::new();
    let mut offset = 0usize;
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if !line.trim_ascii().is_empty() {
            let (key, raw) = line_pair(line).map_err(|e| {
                anyhow!(
                    "line {} (byte offset {offset}) is not a {{\"key\": string, \"value\": any}} object: {e}; \
                     nothing was imported",
                    i + 1
                )
            })?;
            let value =
                json_doc(raw).map_err(|e| anyhow!("line {}: value of {key:?}: {e}; nothing was imported", i + 1))?;
            pairs.push((key, value));
        }
        offset += line.len() + 1;
    }
    Ok(pairs)
}

/// One JSON line's key and raw value text.
fn line_pair(line: &[u8]) -> Result<(String, &str), String> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if members.len() != 2 {
        return Err("expected exactly the members `key` and `value`".into());
    }
    let key = members.get("key").ok_or("missing `key`")?;
    let value = members.get("value").ok_or("missing `value`")?;
    let key: String = serde_json::from_str(key.get()).map_err(|_| "`key` must be a string".to_owned())?;
    Ok((key, value.get()))
}

fn object(bytes: &[u8]) -> Result<Vec<(String, Doc)>> {
    let members: BTreeMap<String, &RawValue> = serde_json::from_slice(bytes).map_err(|e| {
        anyhow!(
            "not a JSON object of key/value pairs: {e} (a JSON-lines file needs one {{\"key\":..,\"value\":..}} \
             per line); nothing was imported"
        )
    })?;
    members
        .into_iter()
        .map(|(key, raw)| {
            let value = json_doc(raw.get()).map_err(|e| anyhow!("value of {key:?}: {e}; nothing was imported"))?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_keep_digits_and_refuse_what_cannot_read_back() -> Result<()> {
        let object = pairs(b"{\n\"a\": 12345678901234567890123,\n\"b\": { \"x\" : [1, 2] }\n}\n")?;
        let texts: Vec<(&str, &str)> = object.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(texts, [("a", "12345678901234567890123"), ("b", "{\"x\":[1,2]}")]);
        let lines = pairs(b"{\"key\":\"a\",\"value\":1.50}\n\n{\"key\":\"b\\nc\",\"value\":\"t\"}\n")?;
        assert_eq!(
            lines.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
            [("a", "1.50"), ("b\nc", "\"t\"")]
        );
        assert!(pairs(b"{\"a\": 1e400}").is_err());
        assert!(pairs(b"{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\",\"value\":1e400}\n").is_err());
        assert!(pairs(b"{\"a\": {\"$serde_json::private::RawValue\": \"1\"}}").is_err());
        assert!(pairs(b"  \n").is_err());
        assert!(pairs(b"{\"a\": 1,").is_err());
        Ok(())
    }
}
