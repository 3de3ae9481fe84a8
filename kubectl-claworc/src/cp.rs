//! `kubectl claworc cp SRC DST [-r]`: files and directory trees to and from an
//! instance over SFTP, on the connection `ssh` uses (the port-forward, the pinned
//! host key, the key store's client key).
//!
//! One side is `NAME:PATH` (see [`parse_endpoint`]); as with `cp`, a destination
//! that is an existing directory receives the source under its own name. The
//! transfer is planned first ([`Item`]s: directories before their contents, the
//! total size known for the progress line), then run:
//!
//! - each file is written to a temporary name beside its destination (`.NAME.claworc-PID.part`)
//!   and renamed when complete, so an interrupted or failed copy never leaves a partial
//!   file under the final name;
//! - directories are made first; then small files go in batches (many files in one
//!   SFTP request, [`claworc_contract::sftp_batch`], on a second SFTP session of the
//!   same connection) when the server answers them, as claworc-sshd does; the rest
//!   file by file, up to [`PARALLEL_FILES`] at once (a small file costs round trips,
//!   not bandwidth);
//! - modes (permission bits) and modification times are kept, on files and on
//!   directories (set after their contents);
//! - a progress line on stderr when stderr is a terminal, none otherwise (CI);
//! - SFTP errors are one line with the plugin's exit codes: no such file 3,
//!   permission denied 5, anything else 1. Symbolic links inside a tree are skipped
//!   (said on stderr).

use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use claworc_contract::sftp_batch::{self, Outcome, PutFile};
use futures::StreamExt;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::{RawSftpSession, SftpSession};
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::Ctx;
use crate::error::{Error, Kind, Result};
use crate::transport::{self, ConnectOptions};

/// What `kubectl claworc cp` was asked for.
#[derive(Debug, Clone)]
pub struct CpOptions {
    pub src: String,
    pub dst: String,
    /// Copy directories (recursively).
    pub recursive: bool,
    pub ssh: ConnectOptions,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Local(PathBuf),
    /// `NAME:PATH` (an empty PATH is the login's home directory).
    Remote {
        instance: String,
        path: String,
    },
}

/// `NAME:PATH` is remote when NAME is a valid instance name; a path that starts with
/// `/` or `.`, or has no `:`, is local (write `./a:b` for a local file named `a:b`).
pub fn parse_endpoint(arg: &str) -> Endpoint {
    if !arg.starts_with(['/', '.'])
        && let Some((name, path)) = arg.split_once(':')
        && crate::input::validate_name("instance name", name).is_ok()
    {
        let path = if path.is_empty() { ".".to_string() } else { path.to_string() };
        return Endpoint::Remote { instance: name.to_string(), path };
    }
    Endpoint::Local(PathBuf::from(arg))
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

/// One directory or file of the plan: where it is on each side and what to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub local: PathBuf,
    pub remote: String,
    pub dir: bool,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
}

/// `dir/name` for remote (POSIX) paths.
pub fn remote_join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

/// The last component of a remote path (`/a/b/` -> `b`).
pub fn remote_basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(trimmed)
}

/// The directory of a remote path (`/a/b` -> `/a`, `b` -> `.`).
pub fn remote_parent(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((dir, _)) => dir.into(),
        None => ".".into(),
    }
}

/// The temporary name beside `path` that a file is written under until complete.
pub fn part_name(base: &str) -> String {
    format!(".{base}.claworc-{}.part", std::process::id())
}

/// The temporary remote path beside `path` (a relative `path` gets a relative one:
/// no `./` for the audit trail to show).
pub fn remote_part(path: &str) -> String {
    let part = part_name(remote_basename(path));
    match remote_parent(path).as_str() {
        "." => part,
        dir => remote_join(dir, &part),
    }
}

/// An SFTP error as the plugin's error: the path, the server's words, the exit code.
pub fn sftp_error(e: SftpError, what: &str) -> Error {
    let kind = match &e {
        SftpError::Status(s) => status_kind(s.status_code as u32),
        _ => Kind::Other,
    };
    let message = match &e {
        SftpError::Status(s) if !s.error_message.is_empty() => s.error_message.to_lowercase(),
        SftpError::Status(s) => s.status_code.to_string().to_lowercase(),
        other => other.to_string(),
    };
    Error::new(kind, format!("cp: {what}: {message} (SFTP)")).with_source(e)
}

/// The exit code an SFTP status code deserves: no such file 3, permission denied 5.
fn status_kind(code: u32) -> Kind {
    match code {
        c if c == StatusCode::NoSuchFile as u32 => Kind::NotFound,
        c if c == StatusCode::PermissionDenied as u32 => Kind::Forbidden,
        _ => Kind::Other,
    }
}

/// A file of a batch that failed, as [`sftp_error`] words it.
fn batch_error(code: u32, message: &str, what: &str) -> Error {
    Error::new(status_kind(code), format!("cp: {what}: {} (SFTP)", message.to_lowercase()))
}

/// A local I/O error, with the exit code its kind deserves.
fn local_error(e: std::io::Error, path: &Path) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => Kind::NotFound,
        std::io::ErrorKind::PermissionDenied => Kind::Forbidden,
        _ => Kind::Other,
    };
    Error::new(kind, format!("cp: {}: {e}", path.display())).with_source(e)
}

/// An I/O error on an SFTP file (russh-sftp's file streams speak `std::io`).
fn remote_io_error(e: std::io::Error, instance: &str, path: &str) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => Kind::NotFound,
        std::io::ErrorKind::PermissionDenied => Kind::Forbidden,
        _ => Kind::Other,
    };
    Error::new(kind, format!("cp: {instance}:{path}: {e} (SFTP)")).with_source(e)
}

/// Files copied at the same time.
const PARALLEL_FILES: usize = 64;

/// `kubectl claworc cp`.
pub async fn cp(ctx: &Ctx, args: &CpOptions) -> Result<()> {
    let (direction, instance, local, remote) = match (parse_endpoint(&args.src), parse_endpoint(&args.dst)) {
        (Endpoint::Local(l), Endpoint::Remote { instance, path }) => (Direction::Upload, instance, l, path),
        (Endpoint::Remote { instance, path }, Endpoint::Local(l)) => (Direction::Download, instance, l, path),
        (Endpoint::Local(_), Endpoint::Local(_)) => {
            return Err(Error::invalid(
                "cp: neither SRC nor DST names an instance: write one of them as NAME:PATH (e.g. dev:/work)",
            ));
        }
        (Endpoint::Remote { .. }, Endpoint::Remote { .. }) => {
            return Err(Error::invalid("cp: SRC and DST both name an instance: one side must be a local path"));
        }
    };
    // Local problems first, before any connection.
    if direction == Direction::Upload {
        let meta = std::fs::metadata(&local).map_err(|e| local_error(e, &local))?;
        if meta.is_dir() && !args.recursive {
            return Err(Error::invalid(format!("cp: {} is a directory: pass -r to copy it", local.display())));
        }
    }
    let (_, conn) = transport::connect(ctx, &instance, &args.ssh).await?;
    let result = copy(&conn, &instance, direction, &local, &remote, args.recursive).await;
    conn.close().await;
    result
}

/// One copy over an open connection to `instance` (its name is for messages):
/// `local` to `remote` or back, as `cp` plans and runs it.
pub async fn copy(
    conn: &transport::Connection,
    instance: &str,
    direction: Direction,
    local: &Path,
    remote: &str,
    recursive: bool,
) -> Result<()> {
    let channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| Error::other(format!("cp: opening a session: {e}")).with_source(e))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| Error::other(format!("cp: starting the sftp subsystem: {e}")).with_source(e))?;
    let config = russh_sftp::client::Config {
        max_concurrent_reads: 64,
        max_concurrent_writes: 64,
        // Writes as large as OpenSSH's sftp-server takes (its limits@openssh.com
        // caps them; russh-sftp's default is 32 KiB, which bounds uploads).
        max_write_packet_len: 256 * 1024,
        request_timeout_secs: 60,
        ..Default::default()
    };
    let sftp = SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|e| sftp_error(e, &format!("{instance}: the sftp subsystem")))?;
    let mut job = Job { sftp: &sftp, batch: None, instance, recursive };
    let plan = match direction {
        Direction::Upload => job.plan_upload(local, remote).await?,
        Direction::Download => job.plan_download(remote, local).await?,
    };
    if plan.iter().filter(|i| !i.dir && i.size <= sftp_batch::MAX_FILE).nth(1).is_some() {
        job.batch = batch_session(conn).await;
    }
    let total: u64 = plan.iter().map(|i| i.size).sum();
    let progress = Mutex::new(Progress::new(total, std::io::stderr().is_terminal()));
    let result = job.run(direction, &plan, &progress).await;
    progress.lock().expect("progress").finish();
    let _ = sftp.close().await;
    result
}

struct Job<'a> {
    sftp: &'a SftpSession,
    /// The session batches go on, when the server answers them.
    batch: Option<RawSftpSession>,
    instance: &'a str,
    recursive: bool,
}

/// A second SFTP session on the connection, for batches, when the server answers
/// them (claworc-sshd does; with any other server, files are copied one by one).
async fn batch_session(conn: &transport::Connection) -> Option<RawSftpSession> {
    let channel = conn.handle.channel_open_session().await.ok()?;
    channel.request_subsystem(true, "sftp").await.ok()?;
    let raw = RawSftpSession::new(channel.into_stream());
    raw.set_timeout(60);
    let version = raw.init().await.ok()?;
    let has = |n: &str| version.extensions.get(n).is_some_and(|v| v == sftp_batch::VERSION);
    (has(sftp_batch::PUT_FILES) && has(sftp_batch::GET_FILES)).then_some(raw)
}

/// Batches in flight at once: the server answers them in turn, and the ones
/// waiting keep it busy while answers and requests travel.
const PARALLEL_BATCHES: usize = 4;

/// The files of a plan split into batches (each at most
/// [`sftp_batch::MAX_FILES`] files and [`sftp_batch::MAX_BYTES`] on the wire,
/// files of at most [`sftp_batch::MAX_FILE`]) and the files copied one by one.
pub fn plan_batches<'a>(files: impl IntoIterator<Item = &'a Item>) -> (Vec<Vec<&'a Item>>, Vec<&'a Item>) {
    let (mut batches, mut singles) = (Vec::<Vec<&Item>>::new(), Vec::new());
    let mut bytes = 0;
    for item in files {
        let len = PutFile::wire_len(&item.remote, item.size);
        if item.size > sftp_batch::MAX_FILE || len > sftp_batch::MAX_BYTES {
            singles.push(item);
            continue;
        }
        match batches.last_mut() {
            Some(b) if b.len() < sftp_batch::MAX_FILES && bytes + len <= sftp_batch::MAX_BYTES => b.push(item),
            _ => {
                batches.push(vec![item]);
                bytes = 0;
            }
        }
        bytes += len;
    }
    (batches, singles)
}

fn local_attrs(meta: &std::fs::Metadata) -> (u32, u32, u32) {
    (meta.mode() & 0o7777, meta.atime().clamp(0, u32::MAX as i64) as u32, meta.mtime().clamp(0, u32::MAX as i64) as u32)
}

impl Job<'_> {
    fn at(&self, path: &str) -> String {
        format!("{}:{path}", self.instance)
    }

    /// Remote metadata, `None` when there is no such file.
    async fn remote_stat(&self, path: &str) -> Result<Option<FileAttributes>> {
        match self.sftp.metadata(path).await {
            Ok(m) => Ok(Some(m)),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
            Err(e) => Err(sftp_error(e, &self.at(path))),
        }
    }

    async fn plan_upload(&self, src: &Path, dst: &str) -> Result<Vec<Item>> {
        let meta = std::fs::metadata(src).map_err(|e| local_error(e, src))?;
        let name = src
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "file".into());
        let target = match self.remote_stat(dst).await? {
            Some(a) if a.is_dir() => remote_join(dst, &name),
            Some(_) if meta.is_dir() => {
                return Err(Error::already_exists(format!(
                    "cp: {} exists and is not a directory: cannot copy the directory {} onto it",
                    self.at(dst),
                    src.display()
                )));
            }
            _ => dst.trim_end_matches('/').to_string(),
        };
        let mut plan = Vec::new();
        let mut stack = vec![(src.to_path_buf(), target, meta)];
        while let Some((local, remote, meta)) = stack.pop() {
            let (mode, atime, mtime) = local_attrs(&meta);
            if meta.is_dir() {
                plan.push(Item {
                    local: local.clone(),
                    remote: remote.clone(),
                    dir: true,
                    size: 0,
                    mode,
                    atime,
                    mtime,
                });
                let mut entries: Vec<_> = std::fs::read_dir(&local)
                    .map_err(|e| local_error(e, &local))?
                    .collect::<std::io::Result<_>>()
                    .map_err(|e| local_error(e, &local))?;
                entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
                for e in entries {
                    let path = e.path();
                    let m = std::fs::symlink_metadata(&path).map_err(|err| local_error(err, &path))?;
                    if m.is_dir() || m.is_file() {
                        stack.push((path, remote_join(&remote, &e.file_name().to_string_lossy()), m));
                    } else {
                        eprintln!("cp: skipped {} (not a file or directory)", path.display());
                    }
                }
            } else {
                plan.push(Item { local, remote, dir: false, size: meta.len(), mode, atime, mtime });
            }
        }
        Ok(plan)
    }

    async fn plan_download(&self, src: &str, dst: &Path) -> Result<Vec<Item>> {
        let attrs = self
            .remote_stat(src)
            .await?
            .ok_or_else(|| Error::not_found(format!("cp: {}: no such file or directory (SFTP)", self.at(src))))?;
        if attrs.is_dir() && !self.recursive {
            return Err(Error::invalid(format!("cp: {} is a directory: pass -r to copy it", self.at(src))));
        }
        let name = match remote_basename(src) {
            "." | ".." | "" => self.sftp.canonicalize(src).await.map_err(|e| sftp_error(e, &self.at(src)))?,
            n => n.to_string(),
        };
        let name = remote_basename(&name).to_string();
        let target = match std::fs::metadata(dst) {
            Ok(m) if m.is_dir() => dst.join(&name),
            Ok(_) if attrs.is_dir() => {
                return Err(Error::already_exists(format!(
                    "cp: {} exists and is not a directory: cannot copy the directory {} onto it",
                    dst.display(),
                    self.at(src)
                )));
            }
            _ => dst.to_path_buf(),
        };
        let mut plan = Vec::new();
        let mut stack = vec![(src.to_string(), target, attrs)];
        while let Some((remote, local, a)) = stack.pop() {
            let item = Item {
                local: local.clone(),
                remote: remote.clone(),
                dir: a.is_dir(),
                size: if a.is_dir() { 0 } else { a.size.unwrap_or(0) },
                mode: a.permissions.unwrap_or(0o644) & 0o7777,
                atime: a.atime.unwrap_or(0),
                mtime: a.mtime.unwrap_or(0),
            };
            plan.push(item);
            if a.is_dir() {
                let dir = self.sftp.read_dir(&remote).await.map_err(|e| sftp_error(e, &self.at(&remote)))?;
                let mut entries: Vec<_> = dir.filter(|e| e.file_name() != "." && e.file_name() != "..").collect();
                entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
                for e in entries {
                    let m = e.metadata();
                    let path = remote_join(&remote, &e.file_name());
                    if m.is_dir() || m.is_regular() {
                        stack.push((path, local.join(e.file_name()), m));
                    } else {
                        eprintln!("cp: skipped {} (not a file or directory)", self.at(&path));
                    }
                }
            }
        }
        Ok(plan)
    }

    async fn run(&self, direction: Direction, plan: &[Item], progress: &Mutex<Progress>) -> Result<()> {
        // Directories first (the plan has parents before children), then the files,
        // PARALLEL_FILES at a time: a small file costs round trips, not bandwidth.
        for item in plan.iter().filter(|i| i.dir) {
            match direction {
                Direction::Upload => self.remote_mkdir(&item.remote).await?,
                Direction::Download => local_mkdir(&item.local)?,
            }
        }
        let files = plan.iter().filter(|i| !i.dir);
        let (batches, mut singles) = match &self.batch {
            Some(_) => plan_batches(files),
            None => (Vec::new(), files.collect()),
        };
        // Copies under way finish (and clean up after themselves) even after an error.
        let mut first_error = None;
        let batches = batches.iter().map(|b| self.copy_batch(direction, b, progress));
        let mut batches = futures::stream::iter(batches).buffer_unordered(PARALLEL_BATCHES);
        while let Some(result) = batches.next().await {
            match result {
                Ok(skipped) => singles.extend(skipped),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let copies = singles.into_iter().map(|item| async move {
            match direction {
                Direction::Upload => self.upload_file(item, progress).await,
                Direction::Download => self.download_file(item, progress).await,
            }
        });
        let mut copies = futures::stream::iter(copies).buffer_unordered(PARALLEL_FILES);
        while let Some(result) = copies.next().await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        // Directories' modes and times last, deepest first: writing into them changes their mtime.
        for item in plan.iter().rev().filter(|i| i.dir) {
            match direction {
                Direction::Upload => self.remote_set_attrs(&item.remote, item).await?,
                Direction::Download => set_local_attrs(&item.local, item)?,
            }
        }
        Ok(())
    }

    /// One batch either way; what it did not take is returned, to be copied one by one.
    async fn copy_batch<'i>(
        &self,
        direction: Direction,
        items: &[&'i Item],
        progress: &Mutex<Progress>,
    ) -> Result<Vec<&'i Item>> {
        match direction {
            Direction::Upload => self.put_batch(items, progress).await,
            Direction::Download => self.get_batch(items, progress).await,
        }
    }

    async fn put_batch<'i>(&self, items: &[&'i Item], progress: &Mutex<Progress>) -> Result<Vec<&'i Item>> {
        // Read on the blocking pool; a file that grew past a batch since the plan
        // goes one by one.
        let paths: Vec<PathBuf> = items.iter().map(|i| i.local.clone()).collect();
        let read = tokio::task::spawn_blocking(move || {
            paths.iter().map(|p| std::fs::read(p).map_err(|e| local_error(e, p))).collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::other(format!("cp: reading files: {e}")))??;
        let (mut files, mut sent, mut later) = (Vec::new(), Vec::new(), Vec::new());
        let mut bytes = 0;
        for (item, data) in items.iter().zip(read) {
            let len = PutFile::wire_len(&item.remote, data.len() as u64);
            if data.len() as u64 > sftp_batch::MAX_FILE || bytes + len > sftp_batch::MAX_BYTES {
                later.push(*item);
                continue;
            }
            bytes += len;
            let (mode, atime, mtime) = (item.mode, item.atime, item.mtime);
            files.push(PutFile { path: item.remote.clone(), mode, atime, mtime, data });
            sent.push(*item);
        }
        if files.is_empty() {
            return Ok(later);
        }
        let reply = self.batch_request(sftp_batch::PUT_FILES, sftp_batch::encode_put(&files)).await?;
        let outcomes = self.reply(sftp_batch::decode_put_reply(&reply), sent.len())?;
        let mut first_error = None;
        for (item, outcome) in sent.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Done => progress.lock().expect("progress").add(item.size),
                Outcome::Skipped => later.push(item),
                Outcome::Failed { code, message } => {
                    first_error.get_or_insert(batch_error(code, &message, &self.at(&item.remote)));
                }
            }
        }
        first_error.map_or(Ok(later), Err)
    }

    async fn get_batch<'i>(&self, items: &[&'i Item], progress: &Mutex<Progress>) -> Result<Vec<&'i Item>> {
        let paths: Vec<&str> = items.iter().map(|i| i.remote.as_str()).collect();
        let reply = self.batch_request(sftp_batch::GET_FILES, sftp_batch::encode_get(&paths)).await?;
        let fetched = self.reply(sftp_batch::decode_get_reply(&reply), items.len())?;
        let (mut done, mut later, mut first_error) = (Vec::new(), Vec::new(), None);
        for (item, f) in items.iter().zip(fetched) {
            match f.outcome {
                Outcome::Done => {
                    // At most the size the plan saw, as a file copied by itself.
                    let mut data = f.data;
                    data.truncate(usize::try_from(item.size).unwrap_or(usize::MAX));
                    let size = data.len() as u64;
                    done.push((Item { mode: f.mode, atime: f.atime, mtime: f.mtime, size, ..(*item).clone() }, data));
                }
                Outcome::Skipped => later.push(*item),
                Outcome::Failed { code, message } => {
                    first_error.get_or_insert(batch_error(code, &message, &self.at(&item.remote)));
                }
            }
        }
        let bytes: u64 = done.iter().map(|(i, _)| i.size).sum();
        tokio::task::spawn_blocking(move || done.iter().try_for_each(|(item, data)| save_local(item, data)))
            .await
            .map_err(|e| Error::other(format!("cp: writing files: {e}")))??;
        progress.lock().expect("progress").add(bytes);
        first_error.map_or(Ok(later), Err)
    }

    /// One batch request on the batch session, and its reply's data.
    async fn batch_request(&self, name: &str, data: Vec<u8>) -> Result<Vec<u8>> {
        let batch = self.batch.as_ref().expect("batches only with a batch session");
        match batch.extended(name, data).await {
            Ok(Packet::ExtendedReply(reply)) => Ok(reply.data),
            Ok(Packet::Status(s)) => Err(sftp_error(SftpError::Status(s), self.instance)),
            Ok(_) => Err(Error::other(format!("cp: {}: an unexpected answer to a batch (SFTP)", self.instance))),
            Err(e) => Err(sftp_error(e, self.instance)),
        }
    }

    /// A decoded batch reply with one entry per file sent.
    fn reply<T>(&self, decoded: std::result::Result<Vec<T>, sftp_batch::Malformed>, sent: usize) -> Result<Vec<T>> {
        decoded
            .ok()
            .filter(|d| d.len() == sent)
            .ok_or_else(|| Error::other(format!("cp: {}: a malformed batch reply (SFTP)", self.instance)))
    }

    async fn remote_mkdir(&self, path: &str) -> Result<()> {
        match self.remote_stat(path).await? {
            Some(a) if a.is_dir() => Ok(()),
            Some(_) => Err(Error::already_exists(format!("cp: {} exists and is not a directory", self.at(path)))),
            None => self.sftp.create_dir(path).await.map_err(|e| sftp_error(e, &self.at(path))),
        }
    }

    async fn remote_set_attrs(&self, path: &str, item: &Item) -> Result<()> {
        let attrs = FileAttributes {
            permissions: Some(item.mode),
            atime: Some(item.atime),
            mtime: Some(item.mtime),
            ..FileAttributes::empty()
        };
        self.sftp.set_metadata(path, attrs).await.map_err(|e| sftp_error(e, &self.at(path)))
    }

    async fn upload_file(&self, item: &Item, progress: &Mutex<Progress>) -> Result<()> {
        let part = remote_part(&item.remote);
        let result = async {
            let mut local = tokio::fs::File::open(&item.local).await.map_err(|e| local_error(e, &item.local))?;
            let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
            let attrs = FileAttributes { permissions: Some(0o600), ..FileAttributes::empty() };
            let mut file = self
                .sftp
                .open_with_flags_and_attributes(&part, flags, attrs)
                .await
                .map_err(|e| sftp_error(e, &self.at(&item.remote)))?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = local.read(&mut buf).await.map_err(|e| local_error(e, &item.local))?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).await.map_err(|e| remote_io_error(e, self.instance, &item.remote))?;
                progress.lock().expect("progress").add(n as u64);
            }
            file.shutdown().await.map_err(|e| remote_io_error(e, self.instance, &item.remote))?;
            file.close().await.map_err(|e| remote_io_error(e, self.instance, &item.remote))?;
            self.remote_set_attrs(&part, item).await?;
            if let Err(e) = self.sftp.rename(&part, &item.remote).await {
                // SFTP v3 rename does not replace: remove the old file, then rename.
                match self.remote_stat(&item.remote).await? {
                    Some(a) if !a.is_dir() => {
                        self.sftp.remove_file(&item.remote).await.map_err(|e| sftp_error(e, &self.at(&item.remote)))?;
                        self.sftp
                            .rename(&part, &item.remote)
                            .await
                            .map_err(|e| sftp_error(e, &self.at(&item.remote)))?;
                    }
                    _ => return Err(sftp_error(e, &self.at(&item.remote))),
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self.sftp.remove_file(&part).await;
        }
        result
    }

    async fn download_file(&self, item: &Item, progress: &Mutex<Progress>) -> Result<()> {
        let part = local_part(item);
        let result = async {
            let mut file = self.sftp.open(&item.remote).await.map_err(|e| sftp_error(e, &self.at(&item.remote)))?;
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&part)
                .map_err(|e| local_error(e, &item.local))?;
            let mut out = tokio::fs::File::from_std(out);
            // The size the plan saw, as tar copies a file: reading on to EOF costs a
            // small file russh-sftp's whole read-ahead (64 requests answered EOF).
            let mut left = item.size;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n =
                    file.read(&mut buf[..want]).await.map_err(|e| remote_io_error(e, self.instance, &item.remote))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).await.map_err(|e| local_error(e, &item.local))?;
                progress.lock().expect("progress").add(n as u64);
                left -= n as u64;
            }
            out.flush().await.map_err(|e| local_error(e, &item.local))?;
            drop(out);
            let _ = file.close().await;
            finish_local(&part, item)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        result
    }
}

/// The temporary local path beside `item.local` a download is written under.
fn local_part(item: &Item) -> PathBuf {
    let dir = item.local.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = item.local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    dir.join(part_name(&base))
}

/// A complete download: its mode and times, then its final name.
fn finish_local(part: &Path, item: &Item) -> Result<()> {
    set_local_attrs(part, item)?;
    std::fs::rename(part, &item.local).map_err(|e| local_error(e, &item.local))
}

/// A file of a download batch, written as [`Job::download_file`] writes one.
fn save_local(item: &Item, data: &[u8]) -> Result<()> {
    let part = local_part(item);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&part)
        .and_then(|mut f| std::io::Write::write_all(&mut f, data))
        .map_err(|e| local_error(e, &item.local))
        .and_then(|()| finish_local(&part, item));
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written
}

fn local_mkdir(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::already_exists(format!("cp: {} exists and is not a directory", path.display()))),
        Err(_) => std::fs::DirBuilder::new().mode(0o700).create(path).map_err(|e| local_error(e, path)),
    }
}

fn set_local_attrs(path: &Path, item: &Item) -> Result<()> {
    let time = |secs: u32| UNIX_EPOCH + Duration::from_secs(u64::from(secs));
    let times = std::fs::FileTimes::new().set_accessed(time(item.atime)).set_modified(time(item.mtime));
    let file = std::fs::File::open(path).map_err(|e| local_error(e, path))?;
    file.set_times(times).map_err(|e| local_error(e, path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(item.mode)).map_err(|e| local_error(e, path))
}

/// The progress line on stderr (only on a terminal), redrawn at most 5 times a second.
struct Progress {
    total: u64,
    done: u64,
    enabled: bool,
    start: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    fn new(total: u64, enabled: bool) -> Self {
        Progress { total, done: 0, enabled, start: Instant::now(), drawn: None }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.enabled && self.drawn.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        eprint!("\r{}", progress_line(self.done, self.total, self.start.elapsed()));
    }

    fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            self.draw();
            eprintln!();
        }
    }
}

/// `  12.0 MiB / 100.0 MiB  12%  34.5 MiB/s`.
pub fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
    let rate = mib(done) / elapsed.as_secs_f64().max(0.001);
    format!("{:>8.1} MiB / {:.1} MiB {pct:>3}% {rate:>7.1} MiB/s", mib(done), mib(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let remote = |i: &str, p: &str| Endpoint::Remote { instance: i.into(), path: p.into() };
        assert_eq!(parse_endpoint("dev:/work/src"), remote("dev", "/work/src"));
        assert_eq!(parse_endpoint("dev:"), remote("dev", "."));
        assert_eq!(parse_endpoint("dev:out.tar"), remote("dev", "out.tar"));
        assert_eq!(parse_endpoint("./a:b"), Endpoint::Local("./a:b".into()));
        assert_eq!(parse_endpoint("/tmp/x:y"), Endpoint::Local("/tmp/x:y".into()));
        assert_eq!(parse_endpoint("Not_A_Name:x"), Endpoint::Local("Not_A_Name:x".into()));
        assert_eq!(parse_endpoint("src"), Endpoint::Local("src".into()));
    }

    #[test]
    fn remote_paths() {
        assert_eq!(remote_join("/a", "b"), "/a/b");
        assert_eq!(remote_join("/", "b"), "/b");
        assert_eq!(remote_basename("/a/b/"), "b");
        assert_eq!(remote_basename("b"), "b");
        assert_eq!(remote_parent("/a/b"), "/a");
        assert_eq!(remote_parent("/b"), "/");
        assert_eq!(remote_parent("b"), ".");
        assert!(part_name("x.tar").starts_with(".x.tar.claworc-") && part_name("x").ends_with(".part"));
        assert_eq!(remote_part("out.tar"), part_name("out.tar"));
        assert_eq!(remote_part("/work/out.tar"), format!("/work/{}", part_name("out.tar")));
    }

    #[test]
    fn small_files_go_in_batches_within_the_limits() {
        let item = |i: usize, size: u64| Item {
            local: PathBuf::from(format!("f{i}")),
            remote: format!("/work/f{i}"),
            dir: false,
            size,
            mode: 0o644,
            atime: 0,
            mtime: 0,
        };
        let max = sftp_batch::MAX_FILE;
        let items: Vec<Item> =
            (0..600).map(|i| item(i, 1024)).chain([item(600, max + 1), item(601, max), item(602, 0)]).collect();
        let (batches, singles) = plan_batches(&items);
        assert_eq!(singles.iter().map(|i| i.size).collect::<Vec<_>>(), [max + 1], "only the file over MAX_FILE");
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 602, "every other file in a batch");
        for b in &batches {
            let bytes: usize = b.iter().map(|i| PutFile::wire_len(&i.remote, i.size)).sum();
            assert!(b.len() <= sftp_batch::MAX_FILES && bytes <= sftp_batch::MAX_BYTES, "{} files, {bytes} B", b.len());
        }
        // Full: one more 1 KiB file would pass a limit.
        let first: usize = batches[0].iter().map(|i| PutFile::wire_len(&i.remote, i.size)).sum();
        let next = PutFile::wire_len(&items[batches[0].len()].remote, 1024);
        assert!(batches[0].len() == sftp_batch::MAX_FILES || first + next > sftp_batch::MAX_BYTES, "{first} B");
        // In plan order.
        let order: Vec<&str> = batches.iter().flatten().map(|i| i.remote.as_str()).collect();
        assert_eq!(order.first().copied(), Some("/work/f0"));
        assert_eq!(order.last().copied(), Some("/work/f602"));
    }

    #[test]
    fn sftp_statuses_map_to_exit_codes() {
        let status = |code: StatusCode| {
            SftpError::Status(russh_sftp::protocol::Status {
                id: 1,
                status_code: code,
                error_message: "Permission denied".into(),
                language_tag: "en".into(),
            })
        };
        let e = sftp_error(status(StatusCode::PermissionDenied), "dev:/etc/x");
        assert_eq!(e.exit_code(), 5);
        assert_eq!(e.one_line(), "cp: dev:/etc/x: permission denied (SFTP)");
        assert_eq!(sftp_error(status(StatusCode::NoSuchFile), "dev:/x").exit_code(), 3);
        assert_eq!(sftp_error(status(StatusCode::Failure), "dev:/x").exit_code(), 1);
    }

    #[test]
    fn progress_lines() {
        let line = progress_line(50 * 1024 * 1024, 100 * 1024 * 1024, Duration::from_secs(2));
        assert!(
            line.contains("50.0 MiB / 100.0 MiB") && line.contains(" 50%") && line.contains("25.0 MiB/s"),
            "{line}"
        );
        assert!(progress_line(0, 0, Duration::ZERO).contains("100%"));
    }
}
