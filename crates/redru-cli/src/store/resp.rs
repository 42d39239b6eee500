//! A small blocking RESP2 client over a `TcpStream`: requests as arrays of
//! bulk strings, replies parsed strictly into [`Reply`].
//!
//! Invariant: nothing a server sends can make it panic or allocate without
//! bound: header lines, bulk lengths, element counts and nesting are capped,
//! and anything unexpected is an error that names what was wrong.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, Result, bail};

/// The longest header line (`$123\r\n`, `-ERR ...\r\n`) read.
const MAX_LINE: u64 = 64 * 1024;
/// The largest bulk string accepted (the server's own request limit is 64 MiB by default).
const MAX_BULK: usize = 1 << 30;
/// The most elements one array may claim.
const MAX_ELEMENTS: usize = 1 << 26;
/// How deep arrays may nest (redru's replies nest two levels).
const MAX_DEPTH: usize = 8;
/// Commands written before their replies are read.
const PIPELINE_CHUNK: usize = 256;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`
    Int(i64),
    /// `$n` bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n` replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// A bulk or simple string as text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Bulk(b) => std::str::from_utf8(b).ok(),
            Reply::Simple(s) => Some(s),
            _ => None,
        }
    }
}

/// The bytes of one request: an array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Result<Connection> {
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let reader = BufReader::new(stream.try_clone().context("cloning the socket")?);
        Ok(Connection { reader, writer: stream })
    }

    /// Sends the commands and reads one reply for each (a pipeline), in
    /// chunks: a server that answers while we still write (QUEUED for each
    /// command of a large MULTI) must never wait on us while we wait on it.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>> {
        let mut replies = Vec::with_capacity(commands.len());
        for chunk in commands.chunks(PIPELINE_CHUNK) {
            let mut out = Vec::new();
            for args in chunk {
                encode(args, &mut out);
            }
            self.writer.write_all(&out).context("sending")?;
            self.writer.flush().context("sending")?;
            for _ in chunk {
                replies.push(read(&mut self.reader, 0)?);
            }
        }
        Ok(replies)
    }
}

/// Reads one reply from `input`.
pub fn read(input: &mut dyn BufRead, depth: usize) -> Result<Reply> {
    let line = header(input)?;
    let (kind, rest) = line.split_at(1);
    let length = |text: &str, max: usize| -> Result<Option<usize>> {
        match text.parse::<i64>() {
            Ok(-1) => Ok(None),
            Ok(n) if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
            _ => bail!("the server sent a bad length {text:?} (protocol error)"),
        }
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(rest.parse().map_err(|_| anyhow::anyhow!("the server sent a bad integer {rest:?}"))?),
        "$" => match length(rest, MAX_BULK)? {
            None => Reply::Nil,
            Some(n) => {
                let mut data = Vec::new();
                let got = input.take(n as u64 + 2).read_to_end(&mut data).context("reading a reply")?;
                if got < n + 2 {
                    bail!("the connection closed in the middle of a reply");
                }
                if !data.ends_with(b"\r\n") {
                    bail!("the server sent a bulk string without its CRLF (protocol error)");
                }
                data.truncate(n);
                Reply::Bulk(data)
            }
        },
        "*" => match length(rest, MAX_ELEMENTS)? {
            None => Reply::Nil,
            Some(_) if depth >= MAX_DEPTH => bail!("the server's reply nests too deeply (protocol error)"),
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(read(input, depth + 1)?);
                }
                Reply::Array(items)
            }
        },
        _ => bail!("the server sent an unexpected reply {:?} (is it a Redis server?)", abbreviated(&line)),
    })
}

/// One CRLF-terminated header line, without the CRLF.
fn header(input: &mut dyn BufRead) -> Result<String> {
    let mut line = Vec::new();
    let n = input.take(MAX_LINE).read_until(b'\n', &mut line).context("reading a reply")?;
    if n == 0 {
        bail!("the server closed the connection");
    }
    if !line.ends_with(b"\r\n") {
        if line.len() as u64 >= MAX_LINE {
            bail!("the server sent a reply line longer than {MAX_LINE} bytes (protocol error)");
        }
        bail!("the connection closed in the middle of a reply");
    }
    line.truncate(line.len() - 2);
    if line.is_empty() {
        bail!("the server sent an empty reply line (protocol error)");
    }
    String::from_utf8(line).map_err(|_| anyhow::anyhow!("the server sent a reply line that is not UTF-8"))
}

fn abbreviated(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply> {
        read(&mut &bytes[..], 0)
    }

    #[test]
    fn replies_parse() -> Result<()> {
        assert_eq!(parse(b"+OK\r\n")?, Reply::Simple("OK".into()));
        assert_eq!(parse(b"-ERR no\r\n")?, Reply::Error("ERR no".into()));
        assert_eq!(parse(b":-3\r\n")?, Reply::Int(-3));
        assert_eq!(parse(b"$5\r\na\r\nbc\r\n")?, Reply::Bulk(b"a\r\nbc".to_vec()));
        assert_eq!(parse(b"$-1\r\n")?, Reply::Nil);
        assert_eq!(parse(b"*-1\r\n")?, Reply::Nil);
        assert_eq!(
            parse(b"*2\r\n$1\r\nk\r\n*1\r\n:1\r\n")?,
            Reply::Array(vec![Reply::Bulk(b"k".to_vec()), Reply::Array(vec![Reply::Int(1)])])
        );
        Ok(())
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"+OK",
            b"\r\n",
            b"$3\r\nab",
            b"$3\r\nabcd\r\n",
            b"$-2\r\n",
            b"$99999999999999999999\r\n",
            b"*99999999999\r\n",
            b":x\r\n",
            b"%1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"\xff\xfe\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'+'; 100_000];
        assert!(parse(&long).is_err());
    }

    #[test]
    fn requests_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&["SET", "k", ""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }
}
