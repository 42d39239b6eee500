//! Helpers: a server on a temporary database, and a minimal RESP client
//! that sends raw bytes and reads whole replies (so tests can send what no
//! client library would).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use redru_server::{Config, Running};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A server on a fresh database, with the database's directory.
pub struct Server {
    pub running: Running,
    pub db: Arc<redru::Db>,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with `config` (its bind and port are replaced by 127.0.0.1:0).
    pub fn start_with(config: Config) -> Result<Server, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let db = Arc::new(redru::Options::new().durability(redru::Durability::Buffered).open(dir.path())?);
        let config = Config { bind: [127, 0, 0, 1].into(), port: 0, ..config };
        let running = Running::start(Arc::clone(&db), config)?;
        Ok(Server { running, db, dir })
    }

    pub fn start() -> Result<Server, Box<dyn std::error::Error>> {
        Server::start_with(Config::default())
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.addr()
    }

    pub fn client(&self) -> std::io::Result<Client> {
        Client::connect(self.addr())
    }
}

/// A raw connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client { reader: BufReader::new(stream.try_clone()?), stream })
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends one command as a RESP array.
    pub fn command(&mut self, args: &[&str]) -> std::io::Result<()> {
        self.send(&encode(args))
    }

    /// Sends a command and reads its reply, rendered as text (see [`read`]).
    pub fn call(&mut self, args: &[&str]) -> std::io::Result<String> {
        self.command(args)?;
        self.read()
    }

    /// Reads one reply, rendered on one line: `+OK`, `-ERR ...`, `:1`,
    /// `$hello` (bulk), `$nil`, `[a, b]`, `%{k: v}`, `_`, `#t`.
    pub fn read(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let line = line.trim_end_matches("\r\n").to_owned();
        let (kind, rest) = line.split_at(1);
        let count = || rest.parse::<i64>().map_err(|e| std::io::Error::other(format!("bad length {rest}: {e}")));
        Ok(match kind {
            "+" | "-" | ":" | "_" | "#" | "," => line,
            "$" => {
                let n = count()?;
                if n < 0 {
                    return Ok("$nil".into());
                }
                let mut data = vec![0; n as usize + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(n as usize);
                format!("${}", String::from_utf8_lossy(&data))
            }
            "*" | "%" => {
                let n = count()?;
                if n < 0 {
                    return Ok("*nil".into());
                }
                let items = if kind == "%" { n * 2 } else { n };
                let mut parts = Vec::new();
                for _ in 0..items {
                    parts.push(self.read()?);
                }
                if kind == "%" {
                    let pairs: Vec<String> = parts.chunks(2).map(|p| format!("{}: {}", p[0], p[1])).collect();
                    format!("%{{{}}}", pairs.join(", "))
                } else {
                    format!("[{}]", parts.join(", "))
                }
            }
            _ => return Err(std::io::Error::other(format!("unexpected reply line {line:?}"))),
        })
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    encode_bytes(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
}

/// The same, for arguments that need not be UTF-8.
pub fn encode_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}
