//! Redis's glob patterns (KEYS, SCAN MATCH, CONFIG GET), byte for byte as
//! Redis's `stringmatchlen` reads them: `*`, `?`, `[abc]`, `[^a]`, `[a-z]`,
//! and `\` to take the next byte literally. The shell's `list` patterns are
//! a different, documented dialect; these follow Redis so that the same
//! pattern matches the same keys on either server.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear in
    // practice and never recursive, so a hostile pattern cannot blow the stack.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = class(pattern, p + 1, text[t]);
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == text[t] => {
                    p += 2;
                    t += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class starting at `at` (just after `[`):
/// whether it matched, and the index after the closing `]` (or the end).
fn class(pattern: &[u8], mut at: usize, byte: u8) -> (bool, usize) {
    let negate = pattern.get(at) == Some(&b'^');
    if negate {
        at += 1;
    }
    let mut matched = false;
    while at < pattern.len() && pattern[at] != b']' {
        if pattern[at] == b'\\' && at + 1 < pattern.len() {
            matched |= pattern[at + 1] == byte;
            at += 2;
        } else if at + 2 < pattern.len() && pattern[at + 1] == b'-' && pattern[at + 2] != b']' {
            let (lo, hi) = (pattern[at].min(pattern[at + 2]), pattern[at].max(pattern[at + 2]));
            matched |= (lo..=hi).contains(&byte);
            at += 3;
        } else {
            matched |= pattern[at] == byte;
            at += 1;
        }
    }
    // Redis treats a class left open at the end of the pattern as closed there.
    let next = (at + 1).min(pattern.len());
    (matched != negate, next)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_semantics() {
        let m = |p: &str, t: &str| matches(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("user:*", "user:1"));
        assert!(!m("user:*", "use"));
        assert!(m("h?llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*b*c*", "xxaxxbxxc"));
        assert!(!m("*a*b*c*d", "xxaxxbxxc"));
        // A pathological pattern stays fast (no exponential backtracking).
        let text = "a".repeat(10_000);
        assert!(!m(&"*a".repeat(50).chars().chain("b".chars()).collect::<String>(), &text));
    }
}
