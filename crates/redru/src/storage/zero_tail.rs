//! The rule that tells a preallocated zero tail from a torn write at the end
//! of a log's last segment, for any log of newline-terminated lines none of
//! which starts with a zero byte. The engine's write-ahead log follows it
//! (`log::reader`, `log::recovery`), and so does redru-cluster's Raft log,
//! through this module: one rule, not two copies (docs/design.md,
//! "Preallocated segments"). Pure: the caller says which lines are valid.

/// Whether the last segment's data ends where `rest` starts (`rest`: the
/// bytes from a line's start on): at a zero byte. No line starts with one;
/// the zeros were written ahead of the appends (preallocated), or are a
/// write that had not reached the disk. Whatever follows them was never
/// acknowledged if the disk wrote its pages in order (an fsync that covers
/// a line covers every byte before it).
pub fn zeros_end_data(rest: &[u8]) -> bool {
    rest.first() == Some(&0)
}

/// Whether any complete line after the first newline of `bytes` is valid
/// (`is_valid` gets a line without its newline). Damage followed by a valid
/// line is not a torn tail: it is corruption.
pub fn any_valid_line(bytes: &[u8], is_valid: impl Fn(&[u8]) -> bool) -> bool {
    let Some(last_nl) = bytes.iter().rposition(|&b| b == b'\n') else { return false };
    bytes[..last_nl].split(|&b| b == b'\n').skip(1).any(is_valid)
}

/// Whether `rest`, the bytes from where the zeros that end the data start
/// ([`zeros_end_data`]), holds a complete valid line after those zeros.
/// Such lines were written out of order by a crash, or are damage: not
/// read, but a writing open keeps them aside and cuts them off before it
/// appends at the data's end, so that they never come back in line.
pub fn valid_line_after_zeros(rest: &[u8], is_valid: impl Fn(&[u8]) -> bool) -> bool {
    // A valid line ends in a newline; zeros hold none (the common case: a
    // fast search through megabytes of them).
    if memchr::memchr(b'\n', rest).is_none() {
        return false;
    }
    let from = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
    // The first line after the zeros may start mid-line: look from a newline
    // before it too, then at it as a whole line.
    any_valid_line(&rest[from.saturating_sub(1)..], &is_valid)
        || rest[from..].iter().position(|&b| b == b'\n').is_some_and(|nl| is_valid(&rest[from..from + nl]))
}

/// The bytes of a torn tail worth keeping aside: without the zeros that end
/// them (preallocated, or never written), which are no one's data.
pub fn without_zero_tail(rest: &[u8]) -> &[u8] {
    let kept = rest.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    &rest[..kept]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(line: &[u8]) -> bool {
        line.starts_with(b"ok")
    }

    #[test]
    fn zeros_then_nothing_hold_no_line_and_are_not_kept() {
        let rest = [0u8; 100];
        assert!(zeros_end_data(&rest));
        assert!(!valid_line_after_zeros(&rest, valid));
        assert!(without_zero_tail(&rest).is_empty());
        assert!(!zeros_end_data(b"ok 1\n"));
    }

    #[test]
    fn a_valid_line_after_the_zeros_is_found_whole_or_after_a_partial_one() {
        assert!(valid_line_after_zeros(b"\0\0ok 2\n", valid));
        assert!(valid_line_after_zeros(b"\0\0 2\nok 3\n", valid));
        assert!(!valid_line_after_zeros(b"\0\0bad\n\0\0", valid));
        assert!(!valid_line_after_zeros(b"\0\0ok 2", valid), "a line without its newline is incomplete");
    }

    #[test]
    fn a_torn_tail_keeps_its_bytes_without_the_zeros_after_them() {
        assert_eq!(without_zero_tail(b"ok 4 tor\0\0\0"), b"ok 4 tor");
        assert!(any_valid_line(b"bad\nok 5\n", valid));
        assert!(!any_valid_line(b"ok 5\n", valid), "the first line is the damaged one, not after it");
    }
}
