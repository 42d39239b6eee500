//! Requests off a connection's bytes: RESP arrays of bulk strings (what every
//! client sends) and inline commands (`PING` typed into a plain TCP
//! connection), with the limits a server must enforce itself.
//!
//! Hand-written on purpose: redis-protocol's decoder parses any frame type,
//! recursively and without size caps (a request of nested `*1` headers
//! overflows its stack), and it has no inline commands. A request is a flat
//! array of bulk strings; anything else is a protocol error, after which the
//! connection is closed, as Redis does.

/// How large one request may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most arguments in one request (Redis: 1024*1024).
    pub max_args: usize,
    /// Most bytes in one argument, and in a whole request.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_args: 1024 * 1024, max_bytes: 64 * 1024 * 1024 }
    }
}

/// Longest inline command, and longest header line (Redis's `PROTO_INLINE_MAX_SIZE`).
const MAX_LINE: usize = 64 * 1024;

/// A request the server refuses; the message is sent as `-ERR Protocol error: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// One request: its arguments and how many bytes of the buffer it used.
/// An empty `args` is a blank line or `*0`, which is skipped.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// Parses the first request in `buf`: `Ok(None)` if it is not complete yet.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

fn err<T>(what: &str) -> Result<T, ProtocolError> {
    Err(ProtocolError(what.to_owned()))
}

/// The line starting at `at` (without `\r\n`) and the offset after it.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[at..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && rest[end - 1] == b'\r' => Ok(Some((&rest[..end - 1], at + end + 1))),
        Some(_) => err("expected \\r\\n after a header"),
        None if rest.len() > MAX_LINE => err("too big header line"),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    let Some((header, mut at)) = line(buf, 0)? else { return Ok(None) };
    let count = match number(&header[1..]) {
        Some(n) if n <= 0 => return Ok(Some((Vec::new(), at))),
        Some(n) if (n as u64) <= limits.max_args as u64 => n as usize,
        _ => return err("invalid multibulk length"),
    };
    // Capacity grows with what arrived, not with what the header claims.
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(at) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return err(&format!("expected '$', got '{}'", char::from(other).escape_default())),
        }
        let Some((header, start)) = line(buf, at)? else { return Ok(None) };
        let len = match number(&header[1..]) {
            Some(n) if n >= 0 && (n as u64) <= limits.max_bytes as u64 => n as usize,
            _ => return err("invalid bulk length"),
        };
        let end = start + len;
        // The whole request, headers included, is bounded too: refused as
        // soon as a header announces more, before its bytes are buffered.
        if end > limits.max_bytes.saturating_add(MAX_LINE) {
            return err("request too large");
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return err("expected \\r\\n after a bulk string");
        }
        args.push(buf[start..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE { err("too big inline request") } else { Ok(None) };
    };
    let text = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let args = split_args(text)?;
    if args.len() > limits.max_args {
        return err("too many arguments in an inline request");
    }
    Ok(Some((args, end + 1)))
}

/// Splits an inline command as redis-cli and Redis do: whitespace between
/// arguments, `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` with `\'`.
pub fn split_args(text: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let mut arg = Vec::new();
        match text[i] {
            b'"' => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => return err("unbalanced quotes in request"),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let (byte, used) = escape(&text[i + 1..]);
                            arg.push(byte);
                            i += 1 + used;
                        }
                        Some(&b) => {
                            arg.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            b'\'' => {
                i += 1;
                loop {
                    match text.get(i) {
                        None => return err("unbalanced quotes in request"),
                        Some(b'\'') => break,
                        Some(b'\\') if text.get(i + 1) == Some(&b'\'') => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        Some(&b) => {
                            arg.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            _ => {
                while i < text.len() && !text[i].is_ascii_whitespace() {
                    arg.push(text[i]);
                    i += 1;
                }
                args.push(arg);
                continue;
            }
        }
        // A closing quote must be followed by a space or the end.
        if i < text.len() && !text[i].is_ascii_whitespace() {
            return err("unbalanced quotes in request");
        }
        args.push(arg);
    }
    Ok(args)
}

/// The byte an escape after a backslash stands for, and how many bytes it used.
fn escape(rest: &[u8]) -> (u8, usize) {
    let hex = |b: u8| (b as char).to_digit(16);
    match rest {
        [b'x', h, l, ..] if hex(*h).is_some() && hex(*l).is_some() => {
            (((hex(*h).unwrap_or(0) << 4) | hex(*l).unwrap_or(0)) as u8, 3)
        }
        [b'n', ..] => (b'\n', 1),
        [b'r', ..] => (b'\r', 1),
        [b't', ..] => (b'\t', 1),
        [b'b', ..] => (8, 1),
        [b'a', ..] => (7, 1),
        [other, ..] => (*other, 1),
        [] => (b'\\', 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resp(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn all(buf: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((args, used)) = parse(&buf[at..], &Limits::default())? {
            at += used;
            if !args.is_empty() {
                out.push(args);
            }
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_inline() {
        let mut buf = resp(&[b"SET", b"k", b"a\r\nb"]);
        buf.extend_from_slice(b"PING\r\nset 'a b' \"c\\x41\\n\"\n\r\n*0\r\n");
        let got = all(&buf).map_err(|e| e.0);
        let want: Vec<Vec<Vec<u8>>> = vec![
            vec![b"SET".to_vec(), b"k".to_vec(), b"a\r\nb".to_vec()],
            vec![b"PING".to_vec()],
            vec![b"set".to_vec(), b"a b".to_vec(), b"cA\n".to_vec()],
        ];
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [
            &b"*x\r\n"[..],
            b"*2\r\n:1\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$3\r\nabcde\r\n",
            b"*1\n",
            b"*1\r\n*1\r\n*1\r\n",
            b"*99999999999\r\n",
            b"set \"a\n",
            b"set \"a\"b\n",
        ] {
            assert!(parse(bad, &Limits::default()).is_err(), "{:?} accepted", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn inline_commands_obey_the_argument_limit() {
        let limits = Limits { max_args: 4, max_bytes: 100 };
        assert!(parse(b"a b c d e\n", &limits).is_err());
        assert_eq!(parse(b"a b c d\n", &limits).map(|r| r.map(|(a, _)| a.len())), Ok(Some(4)));
    }

    #[test]
    fn limits_are_enforced_before_the_bytes_arrive() {
        let limits = Limits { max_args: 4, max_bytes: 100 };
        assert!(parse(b"*5\r\n", &limits).is_err());
        assert!(parse(b"*1\r\n$101\r\n", &limits).is_err());
        assert_eq!(parse(b"*1\r\n$100\r\n", &limits), Ok(None));
        assert!(parse(&vec![b'a'; MAX_LINE + 1], &limits).is_err());
    }

    proptest! {
        /// A pipeline split at any byte boundary parses to the same requests.
        #[test]
        fn pipelines_split_anywhere(
            reqs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..5), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            for r in &reqs {
                let parts: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
                buf.extend_from_slice(&resp(&parts));
            }
            let cut = cut.index(buf.len() + 1);
            // Feed the first part, take what parses, then the rest.
            let mut pending = buf[..cut].to_vec();
            let mut got = Vec::new();
            for chunk in [&buf[cut..], &[][..]] {
                let mut at = 0;
                while let Some((args, used)) = parse(&pending[at..], &Limits::default()).map_err(|e| TestCaseError::fail(e.0))? {
                    at += used;
                    got.push(args);
                }
                pending.drain(..at);
                pending.extend_from_slice(chunk);
            }
            prop_assert!(pending.is_empty());
            prop_assert_eq!(got, reqs);
        }
    }
}
