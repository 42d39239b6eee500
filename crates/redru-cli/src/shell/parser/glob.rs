//! Key patterns for `list` and `count`: [`Pattern`] is a prefix or a glob
//! (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\` escapes), plus the literal prefix
//! that narrows a scan.
//!
//! Invariants: the matcher is iterative (no recursion to blow the stack on
//! hostile patterns); every key a pattern matches starts with its `literal_prefix`.

/// Which keys `list` and `count` look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Keys starting with this text.
    Prefix(String),
    /// Keys matching a glob: `*` any run, `?` one character, `[abc]`, `[a-z]`,
    /// `[!x]` one of (or none of) a set, `\` escapes the next character.
    Glob(String),
}

impl Pattern {
    /// A glob when the text holds a glob character, a prefix otherwise.
    pub fn new(text: String) -> Pattern {
        if text.contains(['*', '?', '[']) { Pattern::Glob(text) } else { Pattern::Prefix(text) }
    }

    /// The longest literal prefix every matching key starts with (to narrow a scan).
    pub fn literal_prefix(&self) -> String {
        match self {
            Pattern::Prefix(p) => p.clone(),
            Pattern::Glob(g) => {
                let mut out = String::new();
                let mut chars = g.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '*' | '?' | '[' => break,
                        '\\' => match chars.next() {
                            Some(n) => out.push(n),
                            None => break,
                        },
                        c => out.push(c),
                    }
                }
                out
            }
        }
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Prefix(p) => key.starts_with(p.as_str()),
            Pattern::Glob(g) => {
                let pattern: Vec<char> = g.chars().collect();
                let text: Vec<char> = key.chars().collect();
                glob_match(&pattern, &text)
            }
        }
    }
}

/// Iterative glob matcher with single backtracking point for `*` (linear
/// in practice, no recursion to blow the stack on hostile patterns).
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == '[' {
                        // An unclosed `[` is a literal.
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                '\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`:
/// `Some((matched, index after the class))`, or `None` if the class is unclosed.
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let lo = pattern[i];
        if lo == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&hi| hi != ']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match() {
        let g = |p: &str, k: &str| Pattern::new(p.into()).matches(k);
        assert!(g("user:*", "user:1"));
        assert!(g("user:*", "user:"));
        assert!(!g("user:*", "use"));
        assert!(g("*:name", "user:1:name"));
        assert!(!g("*:name", "user:1:names"));
        assert!(g("a?c", "abc") && !g("a?c", "ac"));
        assert!(g("[ab]*", "banana") && !g("[ab]*", "cherry"));
        assert!(g("[a-c]x", "bx") && !g("[a-c]x", "dx"));
        assert!(g("[!a]x", "bx") && !g("[!a]x", "ax"));
        assert!(g("a\\*b", "a*b") && !g("a\\*b", "axb"));
        assert!(g("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!g("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        assert!(g("é*", "été"));
        assert!(g("[x", "[x"));
        assert_eq!(Pattern::new("user:*:x".into()).literal_prefix(), "user:");
        assert_eq!(Pattern::new("a\\*b*".into()).literal_prefix(), "a*b");
    }
}
