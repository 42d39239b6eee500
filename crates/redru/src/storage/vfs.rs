//! The narrow file-system interface every byte of disk I/O goes through.
//!
//! Like SQLite's VFS: the engine only creates, appends, writes in place,
//! syncs, truncates, reads, renames, removes, lists and locks through [`Vfs`]
//! and [`VFile`], so a
//! test can put a simulated file system behind it that drops unsynced data on
//! a simulated power loss. [`StdFs`] is the real one (std::fs and memmap2).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

/// Bytes of a whole file, read at once (memory-mapped by [`StdFs`]).
pub type FileBytes = Box<dyn Deref<Target = [u8]> + Send + Sync>;

/// Holds an exclusive lock until dropped.
pub trait LockGuard: Send + Sync {}

/// The outcome of [`Vfs::try_lock`].
pub enum LockOutcome {
    /// The lock is ours until the guard is dropped.
    Acquired(Box<dyn LockGuard>),
    /// Someone else holds it; the pid they wrote, when readable.
    Held(Option<u32>),
}

/// A file open for appending (and, for the log's preallocated segments,
/// writing in place).
///
/// `append`, `write_at` and `sync` may be called from different threads at
/// once: one thread's fsync covers whatever other threads wrote before it
/// started (group commit depends on this).
#[allow(clippy::len_without_is_empty)]
pub trait VFile: Send + Sync {
    /// Appends all of `buf` at the end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Writes all of `buf` at byte `offset` (over what is there, growing the
    /// file if it reaches past the end; a gap before `offset` reads as zeros).
    /// The default supports only `offset` at the end (an append).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset == self.len()? {
            self.append(buf)
        } else {
            Err(io::Error::new(io::ErrorKind::Unsupported, "this file can only be appended to"))
        }
    }
    /// Writes `len` zero bytes at `offset`: the log's preallocation, ahead
    /// of its appends (a failure here is never a lost write: the engine
    /// stops preallocating and grows the file by appending).
    ///
    /// In pieces of 64 KiB: a `write(2)` holds the file's inode lock while it
    /// copies, and the log's writer appends to the same file meanwhile; with
    /// 1 MiB pieces it waited up to 16-20 ms for that lock on a loaded
    /// machine (the zeros' thread preempted while holding it, issue 17).
    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        const PIECE: u64 = 64 << 10;
        let zeros = vec![0u8; len.min(PIECE) as usize];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(PIECE);
            self.write_at(at, &zeros[..n as usize])?;
            at += n;
        }
        Ok(())
    }
    /// Cuts the log's preallocated zeros back to `len` bytes when it closes
    /// (best effort, like [`VFile::zero`]: zeros past the data are harmless).
    fn trim(&self, len: u64) -> io::Result<()> {
        self.truncate(len)
    }
    /// Asks the OS to start writing bytes `offset..offset + len` to the
    /// disk, without waiting for them (a relaxed log's background
    /// writeback): a hint, durable only after [`VFile::sync`]. The default
    /// does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
}

/// A file system, as the engine sees it.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents (the last one with mode 0700).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (not recursive, no `.`/`..`).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Opens `path` for appending, creating it (mode 0600) if it is missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>>;
    /// Creates `path` empty (mode 0600), failing if it already exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VFile>>;
    /// Reads a whole file (`ErrorKind::IsADirectory` if `path` is a directory).
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Reads a whole file into memory, never mapping it: for a reader beside
    /// a writer in another process, which may cut the file meanwhile (a
    /// mapped page cut away faults the reader).
    fn read_copy(&self, path: &Path) -> io::Result<FileBytes> {
        self.read(path)
    }
    /// Opens a file to read it from its start, a piece at a time, never
    /// mapped: a restore's snapshot, which may lie outside any directory
    /// redru locks and is read once (`ErrorKind::IsADirectory` for a
    /// directory); with it, the file's size when opened (for progress
    /// reports: the reader may reach past it if the file grows). The default
    /// reads the whole file with [`Vfs::read`].
    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let bytes = self.read(path)?;
        let len = bytes.len() as u64;
        Ok((Box::new(io::Cursor::new(Whole(bytes))), len))
    }
    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock `path` stands for, writing our pid into it.
    fn try_lock(&self, path: &Path) -> io::Result<LockOutcome>;
    /// How the log's open segment is preallocated here (none by default).
    fn preallocation(&self) -> Preallocation {
        Preallocation::NONE
    }
    /// Every how many appended bytes a relaxed log without preallocated
    /// zeros asks [`VFile::start_writeback`] for the pages behind it, from
    /// a thread of its own; 0 (the default): never, and no thread.
    fn writeback_every(&self) -> u64 {
        0
    }
}

/// A whole file's bytes as a reader's buffer ([`Vfs::open_read`]'s default).
struct Whole(FileBytes);

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The block [`StdFs::read_copy`] stops at when it holds only zeros.
const ZERO_BLOCK: usize = 64 * 1024;

/// How the log keeps zeros written ahead of its appends in the open segment,
/// so that an fdatasync after an append changes neither the file's size nor
/// its extents (docs/design.md, "Preallocated segments").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preallocation {
    /// Bytes of zeros written (and synced) at each extension; 0: none, every
    /// append grows the file.
    pub chunk: u64,
    /// Whether the extensions run on a thread of their own (off the
    /// writer's path). False for a file system whose crash points are
    /// counted in one deterministic order (the simulated one): the writer
    /// then extends inline.
    pub background: bool,
}

impl Preallocation {
    /// No preallocation: appends grow the file, as before.
    pub const NONE: Preallocation = Preallocation { chunk: 0, background: false };
}

/// The chunk [`StdFs`] preallocates (measured in docs/benchmarks.md,
/// "Preallocated segments").
pub const STD_PREALLOCATION: u64 = 8 << 20;

/// How often [`StdFs`]'s relaxed logs start writeback (measured in
/// docs/benchmarks.md, "Writeback instead of zeros in the relaxed modes").
pub const STD_WRITEBACK: u64 = 1 << 20;

/// How long [`lock`] keeps trying a lock that another holder has.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the lock at `path`, trying again for a moment when it is held.
///
/// Why not give up at once: a lock (`flock`) belongs to the open file, and a
/// process that forks copies its open files into the child until the child
/// execs. A program that closes its `Db` while another of its threads is
/// starting a process can leave the lock held for that instant by the child
/// (the redru CLI's tests hit it: "locked by pid" naming the test). A real holder
/// is still refused, 200 ms later.
pub fn lock(vfs: &dyn Vfs, path: &Path) -> io::Result<LockOutcome> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match vfs.try_lock(path)? {
            LockOutcome::Held(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            outcome => return Ok(outcome),
        }
    }
}

/// A file system that only reads: what a read-only handle opens its
/// directory through. Every change fails (and a read-only handle makes none:
/// this is the second line of defence); a file opened for appending takes no
/// bytes.
#[derive(Debug)]
pub(crate) struct ReadOnlyFs(pub Arc<dyn Vfs>);

fn read_only_error() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the database is open read-only")
}

struct NoWrites;

impl VFile for NoWrites {
    fn append(&self, _: &[u8]) -> io::Result<()> {
        Err(read_only_error())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn write_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(read_only_error())
    }
    fn zero(&self, _: u64, _: u64) -> io::Result<()> {
        Err(read_only_error())
    }
    fn truncate(&self, _: u64) -> io::Result<()> {
        Err(read_only_error())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(0)
    }
}

struct NoLock;
impl LockGuard for NoLock {}

impl ReadOnlyFs {
    /// The guard a read-only handle holds instead of the directory lock.
    pub fn no_lock() -> Box<dyn LockGuard> {
        Box::new(NoLock)
    }
}

impl Vfs for ReadOnlyFs {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only_error())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.0.exists(path)
    }
    fn open_append(&self, _: &Path) -> io::Result<Box<dyn VFile>> {
        Ok(Box::new(NoWrites))
    }
    fn create_new(&self, _: &Path) -> io::Result<Box<dyn VFile>> {
        Err(read_only_error())
    }
    /// Segments are copied, not mapped: the writer (in another process)
    /// cuts the open segment's preallocated zeros when it closes, and after
    /// a crash its open cuts what follows the data.
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let segment = path.file_name().and_then(|n| n.to_str()).and_then(crate::storage::files::parse_segment_name);
        if segment.is_some() { self.0.read_copy(path) } else { self.0.read(path) }
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only_error())
    }
    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(read_only_error())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn try_lock(&self, _: &Path) -> io::Result<LockOutcome> {
        Ok(LockOutcome::Acquired(Box::new(NoLock)))
    }
}

/// The real file system: std::fs, with whole-file reads memory-mapped.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

/// A file opened for writing without `O_APPEND` (Linux ignores the offset
/// of a positional write on an `O_APPEND` file): an append writes at the
/// length the file has. Appends to one file come from one thread at a time
/// (the writer lock, or a tool's own handle).
struct StdFile(File);

impl VFile for StdFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let end = self.0.metadata()?.len();
        self.write_at(end, buf)
    }
    #[cfg(unix)]
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.0.write_all_at(buf, offset)
    }
    #[cfg(not(unix))]
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (&self.0).seek(SeekFrom::Start(offset))?;
        (&self.0).write_all(buf)
    }
    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // SAFETY: `sync_file_range` takes an open descriptor (ours, alive for
        // the call) and plain numbers; it touches no memory of ours.
        #[allow(unsafe_code)]
        let rc = unsafe { sync_file_range(self.0.as_raw_fd(), offset, len, SYNC_FILE_RANGE_WRITE) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// `<fcntl.h>`: start writeback of the range's dirty pages, wait for none.
#[cfg(target_os = "linux")]
const SYNC_FILE_RANGE_WRITE: std::ffi::c_uint = 2;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe extern "C" {
    /// glibc and musl: `int sync_file_range(int fd, off64_t offset, off64_t
    /// nbytes, unsigned int flags)` (Linux 2.6.17). No crate the engine
    /// depends on wraps it (rustix does not); declared as `malloc_trim` is.
    fn sync_file_range(fd: std::ffi::c_int, offset: i64, nbytes: i64, flags: std::ffi::c_uint) -> std::ffi::c_int;
}

struct StdLock(#[allow(dead_code)] File);
impl LockGuard for StdLock {}

#[cfg(unix)]
fn private_file(opts: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o600)
}
#[cfg(not(unix))]
fn private_file(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts
}

/// The pid on the first line of a held lock file. A lock file created a
/// moment ago may not hold it yet: look again for up to ~50 ms.
fn read_pid(file: &mut File) -> Option<u32> {
    for _ in 0..50 {
        let mut text = String::new();
        let read = file.seek(SeekFrom::Start(0)).and_then(|_| file.read_to_string(&mut text));
        if let Some(pid) = read.ok().and_then(|_| text.lines().next().and_then(|l| l.trim().parse().ok())) {
            return Some(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

impl Vfs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let file = private_file(OpenOptions::new().write(true).create(true)).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let file = private_file(OpenOptions::new().write(true).create_new(true)).open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            // Say so: mmap would fail with ENODEV ("No such device").
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        if meta.len() == 0 {
            return Ok(Box::new(Vec::new()));
        }
        // SAFETY: the map is read-only and the file lives in a directory this
        // process holds the redru lock on; redru itself never modifies a file
        // it has mapped (snapshots are replaced by rename, WAL segments are
        // only read before they are opened for append, except by the change
        // feed's follower: the writer changes only preallocated zeros past
        // the durable point, and the follower reads only synced records and
        // at most the first byte after a segment's data, never past the
        // points a failed fsync or a close cuts back to, so no page it
        // touches goes away; a read-only handle, which a writer in another
        // process may cut under, copies segments: `read_copy`). Another program
        // writing the file meanwhile is outside the contract, as for any
        // database file.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Box::new(map))
    }

    fn open_read(&self, path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        Ok((Box::new(file), meta.len()))
    }

    /// Stops at the first block of 64 KiB of zeros (at a multiple of
    /// its size): what follows is the open segment's preallocated tail (up
    /// to 16 MiB), which a reader would copy at every open for nothing. The
    /// data ends at the first zero where a line would start, so the bytes
    /// kept still show where it ends; a view ignores what lies after it.
    fn read_copy(&self, path: &Path) -> io::Result<FileBytes> {
        let mut file = File::open(path)?;
        if file.metadata()?.is_dir() {
            return Err(io::Error::from(io::ErrorKind::IsADirectory));
        }
        let mut bytes = Vec::new();
        loop {
            let start = bytes.len();
            let read = (&mut file).take(ZERO_BLOCK as u64).read_to_end(&mut bytes)?;
            if read == 0 || bytes[start..].iter().all(|&b| b == 0) {
                bytes.truncate(start);
                return Ok(Box::new(bytes));
            }
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockOutcome> {
        let mut file = private_file(OpenOptions::new().read(true).write(true).create(true)).open(path)?;
        match file.try_lock() {
            Ok(()) => {
                // Overwrite in place, then cut what a longer old pid left:
                // emptying the file first let a refused opener read nothing.
                // Readers take the first line, so the moment between the two
                // calls reads as the new pid.
                let line = format!("{}\n", std::process::id());
                file.seek(SeekFrom::Start(0))?;
                file.write_all(line.as_bytes())?;
                file.set_len(line.len() as u64)?;
                Ok(LockOutcome::Acquired(Box::new(StdLock(file))))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(LockOutcome::Held(read_pid(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn preallocation(&self) -> Preallocation {
        Preallocation { chunk: STD_PREALLOCATION, background: true }
    }

    fn writeback_every(&self) -> u64 {
        // Only Linux has `sync_file_range` (`StdFile::start_writeback`):
        // elsewhere no thread is started to do nothing.
        if cfg!(target_os = "linux") { STD_WRITEBACK } else { 0 }
    }
}
