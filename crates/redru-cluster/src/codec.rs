//! The line codec the Raft log and its state file share, the same shape as
//! the engine's log: `crc32-hex {json}\n`, the CRC-32 (IEEE) of the payload
//! bytes in 8 lowercase hex digits, one space, compact JSON, a newline.
//! Pure: no I/O, so every rule is unit-tested on bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `payload` as one line, newline included.
pub(crate) fn encode<T: Serialize>(payload: &T) -> Result<Vec<u8>, String> {
    let json = serde_json::to_vec(payload).map_err(|e| format!("cannot encode a log line: {e}"))?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Decodes one line (`line` includes its newline). The error says what is wrong.
pub(crate) fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    let Some((&b'\n', body)) = line.split_last() else {
        return Err("incomplete line (no newline)".to_owned());
    };
    if body.len() < 10 || body[8] != b' ' {
        return Err("not a `crc32 {json}` line".to_owned());
    }
    let (crc_hex, json) = (&body[..8], &body[9..]);
    let crc = std::str::from_utf8(crc_hex)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or_else(|| "the checksum is not 8 lowercase hex digits".to_owned())?;
    let actual = crc32fast::hash(json);
    if actual != crc {
        return Err(format!("checksum mismatch: the line says {crc:08x}, its payload hashes to {actual:08x}"));
    }
    serde_json::from_slice(json).map_err(|e| format!("checksum matches but the payload does not parse: {e}"))
}

/// Splits `bytes` into lines, each with its byte offset; a last piece without
/// a newline is returned too (decode refuses it as incomplete).
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset >= bytes.len() {
            return None;
        }
        let rest = &bytes[offset..];
        let len = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |p| p + 1);
        let start = offset;
        offset += len;
        Some((start as u64, &rest[..len]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_any_changed_byte_is_refused() -> Result<(), String> {
        let line = encode(&serde_json::json!({"index": 3, "term": 1}))?;
        assert_eq!(decode::<serde_json::Value>(&line)?, serde_json::json!({"index": 3, "term": 1}));
        assert!(line.starts_with(format!("{:08x} ", crc32fast::hash(br#"{"index":3,"term":1}"#)).as_bytes()));
        for i in 0..line.len() {
            let mut bad = line.clone();
            bad[i] ^= 0x01;
            assert!(decode::<serde_json::Value>(&bad).is_err(), "flipped byte {i} accepted");
        }
        assert!(decode::<serde_json::Value>(&line[..line.len() - 1]).is_err());
        assert!(decode::<serde_json::Value>(b"").is_err());
        Ok(())
    }

    #[test]
    fn lines_keep_offsets_and_a_last_piece() {
        let got: Vec<(u64, &[u8])> = lines(b"ab\ncd\nef").collect();
        assert_eq!(got, vec![(0, &b"ab\n"[..]), (3, &b"cd\n"[..]), (6, &b"ef"[..])]);
    }
}
