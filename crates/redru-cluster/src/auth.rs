//! The shared cluster secret and the handshake that proves both ends of a
//! node-to-node connection hold it, without sending it: each side sends a
//! fresh random nonce and answers the other's with HMAC-SHA256(secret,
//! role || server nonce || client nonce). A peer without the secret is
//! refused before any Raft message is read. HMAC is written out here over
//! `sha2` (RFC 2104; checked against RFC 4231's test vectors below).

use sha2::{Digest, Sha256};

/// The shortest secret accepted: a short one could be guessed offline from
/// one recorded handshake.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared cluster secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from its text (surrounding whitespace, such as a file's last
    /// newline, is dropped).
    ///
    /// # Errors
    /// A message if it is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        if text.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the cluster secret is {} bytes; give at least {MIN_SECRET_LEN} (for example `openssl rand -hex 32`)",
                text.len()
            ));
        }
        Ok(Secret(text.as_bytes().to_vec()))
    }

    /// HMAC-SHA256 of `parts` (concatenated) under this secret.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac_sha256(&self.0, parts)
    }
}

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lower- or upper-case hex, `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// A fresh random nonce.
pub(crate) fn nonce() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2: key "Jefe".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        let key = [0xaau8; 131];
        let mac = hmac_sha256(&key, &[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(hex(&mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_secret() {
        assert!(Secret::new("short").is_err());
        let secret = Secret::new("  0123456789abcdef\n").map_err(|e| e.to_string());
        assert!(matches!(&secret, Ok(s) if format!("{s:?}") == "Secret(..)"));
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
