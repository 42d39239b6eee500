//! Helpers for the command-line tests: the real binary with a clean
//! environment, line matching with `*` wildcards, and for the server tests
//! `redru serve` and `redis-server` as child processes, the Redis tools'
//! presence, and a tiny RESP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The built `redru` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_redru");

/// `redru --dir DIR` with no inherited REDRU_*/NO_COLOR variables and no history file.
pub fn redru(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("REDRU_DIR").env_remove("NO_COLOR").env("REDRU_HISTORY", "").arg("--dir").arg(dir);
    cmd
}

/// Whether `line` matches `pattern`, where `*` stands for any run of characters.
pub fn wildcard(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) || line.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Asserts that `text`'s lines match `expected` one by one (`*` wildcards), naming the first difference.
pub fn assert_lines(what: &str, text: &str, expected: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, (got, want)) in lines.iter().zip(expected).enumerate() {
        assert!(wildcard(want, got), "{what} line {}: expected {want:?}, got {got:?}\nwhole output:\n{text}", i + 1);
    }
    assert_eq!(lines.len(), expected.len(), "{what}: number of lines\nwhole output:\n{text}");
}

#[test]
fn a_missing_tool_fails_naming_its_package_unless_skipping_is_asked() {
    let found = tool("redru-test-no-such-program", &[], "the-package (apt-get install the-package)");
    if std::env::var("REDRU_SKIP_REDIS_TOOLS").as_deref() == Ok("1") {
        assert_eq!(found, Ok(false));
    } else {
        let message = found.err().unwrap_or_default();
        assert!(message.contains("install the-package (apt-get install the-package)"), "{message}");
        assert!(message.contains("REDRU_SKIP_REDIS_TOOLS=1"), "{message}");
    }
}

#[test]
fn wildcard_matches() {
    assert!(wildcard("abc", "abc"));
    assert!(!wildcard("abc", "abcd"));
    assert!(wildcard("a*c", "abbbc"));
    assert!(wildcard("*", ""));
    assert!(wildcard("wrote * (up to *)", "wrote /x/y (up to record 3)"));
    assert!(!wildcard("a*b*c", "acb"));
    assert!(!wildcard("ab*ba", "aba"));
}

// ---------------------------------------------------------------------------
// Servers as child processes, the Redis tools, and a tiny RESP client: what
// the `serve` tests drive. Every wait is bounded; every process is stopped by
// its pid, and killed when a failing test drops it, so none outlives a test.

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Upper bound on any single wait (a start, a stop, a reply): generous for a
/// slow, shared CI machine; nothing is asserted about how long things take.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Whether `program args` runs successfully; if not, an error naming the
/// package to install, unless REDRU_SKIP_REDIS_TOOLS=1 (then a notice and false).
pub fn tool(program: &str, args: &[&str], package: &str) -> Result<bool, String> {
    let runs = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return Ok(true);
    }
    if std::env::var("REDRU_SKIP_REDIS_TOOLS").as_deref() == Ok("1") {
        eprintln!("notice: `{program}` is not available, test skipped (REDRU_SKIP_REDIS_TOOLS=1); install {package}");
        return Ok(false);
    }
    Err(format!(
        "`{program} {}` failed: install {package} (.ci/run does), or set REDRU_SKIP_REDIS_TOOLS=1 to skip this test",
        args.join(" ")
    ))
}

/// redis-cli is installed (Debian's redis-tools).
pub fn have_redis_cli() -> Result<bool, String> {
    tool("redis-cli", &["--version"], "Debian's redis-tools (apt-get install redis-tools)")
}

/// redis-benchmark is installed (Debian's redis-tools).
pub fn have_redis_benchmark() -> Result<bool, String> {
    tool("redis-benchmark", &["--version"], "Debian's redis-tools (apt-get install redis-tools)")
}

/// redis-server is installed (Debian's redis-server).
pub fn have_redis_server() -> Result<bool, String> {
    tool("redis-server", &["--version"], "Debian's redis-server (apt-get install redis-server)")
}

/// Python 3 with redis-py is installed.
pub fn have_redis_py() -> Result<bool, String> {
    tool("python3", &["-c", "import redis"], "PyPI's redis (pip install redis) for python3")
}

/// A child process: stopped by pid, and killed (SIGKILL) and reaped if
/// dropped while running, so a failing test leaves nothing behind.
pub struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    pub fn new(child: Child, name: &str) -> Proc {
        Proc { child, name: name.to_owned() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, BoxError> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `limit` for it to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Result<Option<ExitStatus>, BoxError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM by pid, then waits for it to exit (SIGKILL and an error if it does not within [`PATIENCE`]).
    pub fn terminate(mut self) -> Result<ExitStatus, BoxError> {
        // The shell's builtin kill: no dependency on procps or on unsafe code.
        let sent = Command::new("sh").args(["-c", "kill -TERM \"$1\"", "sh", &self.pid().to_string()]).status()?;
        if !sent.success() {
            return Err(format!("could not send SIGTERM to {} (pid {})", self.name, self.pid()).into());
        }
        match self.wait_for(PATIENCE)? {
            Some(status) => Ok(status),
            None => {
                Err(format!("{} (pid {}) did not stop within {PATIENCE:?} of SIGTERM", self.name, self.pid()).into())
            }
        }
    }

    /// SIGKILL (std's `Child::kill`), then reaps it.
    pub fn kill9(mut self) -> Result<(), BoxError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `redru serve` on a free loopback port (`--port 0`), its address read from
/// the one line it prints on stderr once it listens.
pub struct Serve {
    proc: Proc,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `redru --dir DIR serve --bind 127.0.0.1 --port 0 EXTRA...`.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Serve, BoxError> {
        Serve::start_with_env(dir, extra, &[])
    }

    /// [`Serve::start`] with extra environment variables.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Serve, BoxError> {
        let mut child = Command::new(BIN)
            .envs(env.iter().copied())
            .env_remove("REDRU_DIR")
            .env_remove("NO_COLOR")
            .env("REDRU_HISTORY", "")
            .arg("--dir")
            .arg(dir)
            .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("redru serve has no stderr pipe")?;
        let mut proc = Proc::new(child, "redru serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (first_line, lines) = mpsc::channel();
        let collected = Arc::clone(&log);
        // Reads stderr to its end, so that the server never blocks writing to it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = first_line.send(line.clone());
                let mut log = collected.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let line = match lines.recv_timeout(PATIENCE) {
            Ok(line) => line,
            Err(_) => {
                let status = proc.exited()?;
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err(format!("redru serve reported no address (exit status {status:?}); stderr:\n{log}").into());
            }
        };
        // "redru X serving DIR (N keys) on ADDR; Ctrl-C or SHUTDOWN stops it"
        let addr = line
            .rsplit_once(" on ")
            .and_then(|(_, rest)| rest.split_once(';'))
            .and_then(|(addr, _)| addr.parse::<SocketAddr>().ok())
            .ok_or_else(|| format!("no address in redru serve's first line: {line:?}"))?;
        assert!(line.starts_with("redru ") && line.contains(" serving "), "unexpected first line {line:?}");
        assert!(addr.ip().is_loopback() && addr.port() != 0, "address {addr}");
        Ok(Serve { proc, addr, stderr: log })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A RESP connection to it.
    pub fn connect(&self) -> Result<Resp, BoxError> {
        Resp::connect(self.addr)
    }

    /// SIGTERM, then asserts it stopped cleanly (exit status 0).
    pub fn stop(self) -> Result<(), BoxError> {
        let stderr = Arc::clone(&self.stderr);
        let status = self.proc.terminate()?;
        let log = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(status.success(), "redru serve stopped by SIGTERM exited with {status}; stderr:\n{log}");
        Ok(())
    }

    /// SIGKILL: a crash.
    pub fn kill9(self) -> Result<(), BoxError> {
        self.proc.kill9()
    }

    /// Sends a signal (`STOP`, `CONT`) by pid.
    pub fn signal(&self, name: &str) -> Result<(), BoxError> {
        let script = format!("kill -{name} \"$1\"");
        let sent = Command::new("sh").args(["-c", &script, "sh", &self.pid().to_string()]).status()?;
        if !sent.success() {
            return Err(format!("could not send SIG{name} to pid {}", self.pid()).into());
        }
        Ok(())
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16, BoxError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A real `redis-server` in a temporary directory, without persistence.
pub struct RedisServer {
    proc: Proc,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it answers PING.
    pub fn start() -> Result<RedisServer, BoxError> {
        RedisServer::start_with(None)
    }

    /// As [`RedisServer::start`], with `requirepass` if given.
    pub fn start_with(requirepass: Option<&str>) -> Result<RedisServer, BoxError> {
        let dir = tempfile::tempdir()?;
        // A port found free may be taken before redis-server binds it: a few tries.
        for _ in 0..5 {
            let port = free_port()?;
            let log = std::fs::File::create(dir.path().join("redis.log"))?;
            let child = Command::new("redis-server")
                .current_dir(dir.path())
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--protected-mode", "yes"])
                .args(requirepass.map(|password| ["--requirepass", password]).iter().flatten())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            let mut proc = Proc::new(child, "redis-server");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + PATIENCE;
            while proc.exited()?.is_none() && Instant::now() < deadline {
                if let Ok(mut client) = Resp::connect(addr)
                    && requirepass.is_none_or(|password| client.call(&["AUTH", password]).is_ok())
                    && client.call(&["PING"]).ok() == Some(Frame::Simple("PONG".into()))
                {
                    // Ours, not another process that took the port meanwhile.
                    let info = client.call(&["INFO", "server"])?;
                    let ours = format!("process_id:{}\r\n", proc.pid());
                    if !info.text().is_some_and(|text| text.contains(&ours)) {
                        return Err(format!("another server answers on port {port}: {info:?}").into());
                    }
                    return Ok(RedisServer { proc, addr, _dir: dir });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let log = std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
        Err(format!("redis-server did not start; its log:\n{log}").into())
    }

    pub fn connect(&self) -> Result<Resp, BoxError> {
        Resp::connect(self.addr)
    }

    /// SIGTERM, then waits for it to exit.
    pub fn stop(self) -> Result<(), BoxError> {
        let status = self.proc.terminate()?;
        assert!(status.success(), "redis-server stopped by SIGTERM exited with {status}");
        Ok(())
    }
}

/// A reply, RESP2 or RESP3.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// RESP2's null bulk string (`$-1`).
    Nil,
    /// RESP2's null array (`*-1`).
    NilArray,
    /// RESP3's null (`_`).
    Null,
    Array(Vec<Frame>),
    /// RESP3: map, set, boolean, double, big number, verbatim string.
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Bool(bool),
    Double(String),
    BigNumber(String),
    Verbatim(String, Vec<u8>),
}

impl Frame {
    /// The bulk string's text, if this is one.
    pub fn text(&self) -> Option<&str> {
        match self {
            Frame::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// A tiny RESP client: commands as arrays of bulk strings, replies parsed
/// strictly (anything unexpected is an error, not a guess).
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Most elements a reply may claim, so a garbled length cannot allocate wildly.
const MAX_ELEMENTS: i64 = 16 * 1024 * 1024;

impl Resp {
    /// Connects, with every read and write bounded by [`PATIENCE`].
    pub fn connect(addr: SocketAddr) -> Result<Resp, BoxError> {
        Resp::connect_within(addr, PATIENCE)
    }

    /// Connects, with every read and write bounded by `limit`.
    pub fn connect_within(addr: SocketAddr, limit: Duration) -> Result<Resp, BoxError> {
        let stream = TcpStream::connect_timeout(&addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        stream.set_nodelay(true)?;
        Ok(Resp { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// The bytes of one request.
    pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            let arg = arg.as_ref();
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), BoxError> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// One command, one reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame, BoxError> {
        let mut out = Vec::new();
        Resp::encode(args, &mut out);
        self.send_raw(&out)?;
        self.read()
    }

    /// Every command written at once, then every reply read.
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, commands: &[Vec<A>]) -> Result<Vec<Frame>, BoxError> {
        let mut out = Vec::new();
        for args in commands {
            Resp::encode(args, &mut out);
        }
        self.send_raw(&out)?;
        commands.iter().map(|_| self.read()).collect()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> Result<Frame, BoxError> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        let int = |s: &str| s.parse::<i64>().map_err(|_| format!("bad length or integer in reply line {line:?}"));
        Ok(match kind {
            "+" => Frame::Simple(rest.to_owned()),
            "-" => Frame::Error(rest.to_owned()),
            ":" => Frame::Int(int(rest)?),
            "_" => Frame::Null,
            "#" => Frame::Bool(rest == "t"),
            "," => Frame::Double(rest.to_owned()),
            "(" => Frame::BigNumber(rest.to_owned()),
            "$" | "!" | "=" => match int(rest)? {
                -1 => Frame::Nil,
                n if (0..=MAX_ELEMENTS * 64).contains(&n) => {
                    let mut data = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut data)?;
                    if !data.ends_with(b"\r\n") {
                        return Err(format!("bulk string not followed by CRLF after {line:?}").into());
                    }
                    data.truncate(n as usize);
                    match kind {
                        "!" => Frame::Error(String::from_utf8(data)?),
                        "=" if data.len() >= 4 => {
                            Frame::Verbatim(String::from_utf8(data[..3].to_vec())?, data[4..].to_vec())
                        }
                        _ => Frame::Bulk(data),
                    }
                }
                _ => return Err(format!("bad bulk length in {line:?}").into()),
            },
            "*" | "~" | ">" | "%" => match int(rest)? {
                -1 => Frame::NilArray,
                n if (0..=MAX_ELEMENTS).contains(&n) => {
                    if kind == "%" {
                        let mut pairs = Vec::new();
                        for _ in 0..n {
                            pairs.push((self.read()?, self.read()?));
                        }
                        Frame::Map(pairs)
                    } else {
                        let items = (0..n).map(|_| self.read()).collect::<Result<Vec<_>, _>>()?;
                        if kind == "~" { Frame::Set(items) } else { Frame::Array(items) }
                    }
                }
                _ => return Err(format!("bad aggregate length in {line:?}").into()),
            },
            _ => return Err(format!("unexpected reply line {line:?}").into()),
        })
    }

    /// One CRLF-terminated header line, without the CRLF.
    fn line(&mut self) -> Result<String, BoxError> {
        let mut line = Vec::new();
        let n = (&mut self.reader).take(64 * 1024).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if !line.ends_with(b"\r\n") || line.len() < 3 {
            return Err(format!("malformed reply line {:?}", String::from_utf8_lossy(&line)).into());
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8(line)?)
    }
}

/// What a bounded run of a program produced.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin` as its input, killing it if it has not finished
/// within [`PATIENCE`] (an error then, with what it printed).
pub fn run_bounded(cmd: &mut Command, stdin: &[u8]) -> Result<Ran, BoxError> {
    let what = format!("{cmd:?}");
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let (mut input, stdout, stderr) = (
        child.stdin.take().ok_or("no stdin pipe")?,
        child.stdout.take().ok_or("no stdout pipe")?,
        child.stderr.take().ok_or("no stderr pipe")?,
    );
    let mut proc = Proc::new(child, &what);
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let read_all = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = from.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let (out, err) = (read_all(Box::new(stdout)), read_all(Box::new(stderr)));
    let status = proc.wait_for(PATIENCE)?;
    let Some(status) = status else {
        drop(proc); // kills it, which closes its pipes and ends the readers
        let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
        return Err(format!("{what} did not finish within {PATIENCE:?}; stdout:\n{out}\nstderr:\n{err}").into());
    };
    let _ = writer.join();
    Ok(Ran { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Every file in `dir` with its bytes, sorted by name: to show a command changed nothing.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            out.push((entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path())?));
        }
    }
    out.sort();
    Ok(out)
}
