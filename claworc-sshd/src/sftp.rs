//! The SFTP subsystem (version 3, as OpenSSH's `internal-sftp`): the container's
//! filesystem with the server process's own permissions, relative paths and
//! `.` starting in `$HOME`. No chroot: the session can already run commands
//! as the same user. Writes, removals, renames and directory changes are
//! audited with their paths; file contents never are. Names are UTF-8 (the
//! russh-sftp protocol types are `String`): other bytes are replaced.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use claworc_contract::sftp_batch::{self, Fetched, Outcome};
use russh::server::{Handle as SessionHandle, Msg};
use russh::{Channel, ChannelId, ChannelStream};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::audit::{self, Event};

/// Most bytes one READ returns (OpenSSH's sftp-server allows 256 KiB).
const MAX_READ: u32 = 256 * 1024;
/// Open handles per SFTP session.
const MAX_HANDLES: usize = 256;

/// Serves SFTP on a session channel (in a task of its own) until the client
/// sends EOF or closes it. `guard` is dropped when the session ends.
pub async fn serve(
    channel: Channel<Msg>,
    handle: SessionHandle,
    home: PathBuf,
    conn: audit::Conn,
    guard: impl Send + Unpin + 'static,
) {
    let id = channel.id();
    let stream = SftpStream { inner: channel.into_stream(), handle, id, ending: None, ended: false, _guard: guard };
    russh_sftp::server::run(stream, Sftp::new(home, conn)).await;
}

/// The channel as russh-sftp's stream. On the client's EOF it first queues
/// exit status 0 and EOF, as OpenSSH's sftp-server does (scp and sftp report a
/// missing exit status as failure), and only then reports EOF: the close sent
/// when russh-sftp drops the stream comes after them, on the same queue.
struct SftpStream<G> {
    inner: ChannelStream<Msg>,
    handle: SessionHandle,
    id: ChannelId,
    ending: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ended: bool,
    _guard: G,
}

impl<G: Unpin> AsyncRead for SftpStream<G> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            if let Some(ending) = this.ending.as_mut() {
                ready!(ending.as_mut().poll(cx));
                this.ending = None;
                this.ended = true;
                continue;
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            if buf.filled().len() > before || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let (handle, id) = (this.handle.clone(), this.id);
            this.ending = Some(Box::pin(async move {
                let _ = handle.exit_status_request(id, 0).await;
                let _ = handle.eof(id).await;
            }));
        }
    }
}

impl<G: Unpin> AsyncWrite for SftpStream<G> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

enum Open {
    File(Arc<std::fs::File>),
    /// Entries not yet returned by READDIR, last first.
    Dir(Vec<File>),
}

/// Entries in one READDIR answer, as OpenSSH's sftp-server sends them: a large
/// directory in one answer would pass the clients' message limit (256 KiB for
/// OpenSSH's sftp and scp).
const READDIR_ENTRIES: usize = 100;

/// One SFTP session.
pub struct Sftp {
    home: PathBuf,
    conn: audit::Conn,
    handles: HashMap<String, Open>,
    next: u64,
}

impl Sftp {
    pub fn new(home: PathBuf, conn: audit::Conn) -> Self {
        Sftp { home, conn, handles: HashMap::new(), next: 0 }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        if path.is_empty() { self.home.clone() } else { self.home.join(path) }
    }

    fn insert(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next += 1;
        let h = self.next.to_string();
        self.handles.insert(h.clone(), open);
        Ok(h)
    }

    fn file(&self, handle: &str) -> Result<Arc<std::fs::File>, StatusReply> {
        match self.handles.get(handle) {
            Some(Open::File(f)) => Ok(f.clone()),
            _ => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn io_error(e: std::io::Error) -> StatusReply {
    let (code, text) = io_status(&e);
    code.with_message(text)
}

/// An I/O error as SFTP says it: the status code and the system's words without
/// Rust's " (os error N)", as OpenSSH's sftp-server says them.
fn io_status(e: &std::io::Error) -> (StatusCode, String) {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
        std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        _ => StatusCode::Failure,
    };
    let text = e.to_string();
    (code, text.split(" (os error").next().unwrap_or(&text).to_string())
}

/// Every file system call, READ and WRITE included, on tokio's blocking pool:
/// a slow volume never stalls the other connections, and the pool's few idle
/// threads are reused (`block_in_place` per packet handed the worker to a new
/// thread each time: 30 threads after one transfer, each with its allocator
/// cache, 80 MiB of RSS).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StatusReply> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StatusReply::new(StatusCode::Failure))?.map_err(io_error)
}

fn attrs_of(m: &std::fs::Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(m.len()),
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        permissions: Some(m.mode()),
        atime: Some(m.atime().clamp(0, u32::MAX.into()) as u32),
        mtime: Some(m.mtime().clamp(0, u32::MAX.into()) as u32),
        ..FileAttributes::default()
    }
}

fn name(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `path` without `.` and `..` (for paths that do not exist yet).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn set_attrs(path: &Path, file: Option<&std::fs::File>, attrs: &FileAttributes) -> std::io::Result<()> {
    if let Some(size) = attrs.size {
        match file {
            Some(f) => f.set_len(size)?,
            None => std::fs::OpenOptions::new().write(true).open(path)?.set_len(size)?,
        }
    }
    if let Some(mode) = attrs.permissions {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let t = |s: u32| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.into());
        let times = std::fs::FileTimes::new().set_accessed(t(atime)).set_modified(t(mtime));
        match file {
            Some(f) => f.set_times(times)?,
            None => std::fs::File::open(path)?.set_times(times)?,
        }
    }
    Ok(())
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusReply::new(StatusCode::OpUnsupported)
    }

    async fn init(&mut self, _version: u32, _ext: HashMap<String, String>) -> Result<Version, Self::Error> {
        let mut version = Version::new();
        for name in [sftp_batch::PUT_FILES, sftp_batch::GET_FILES] {
            version.extensions.insert(name.into(), sftp_batch::VERSION.into());
        }
        Ok(version)
    }

    /// The batches of [`sftp_batch`]: each on the blocking pool in one go.
    async fn extended(&mut self, id: u32, request: String, data: Vec<u8>) -> Result<Packet, Self::Error> {
        let malformed = |e: sftp_batch::Malformed| StatusCode::BadMessage.with_message(e.to_string());
        let (home, conn) = (self.home.clone(), self.conn);
        let data = match request.as_str() {
            sftp_batch::PUT_FILES => {
                let files = sftp_batch::decode_put(&data).map_err(malformed)?;
                // One audit line per batch (or a few for long paths), not two per file:
                // a tree of small files would otherwise fill the container's log.
                let paths: Vec<String> = files.iter().map(|f| name(&home.join(&f.path))).collect();
                for paths in claworc_contract::audit::put_files_lines(&paths) {
                    conn.emit(Event::SftpPutFiles { paths: paths.to_vec() });
                }
                let outcomes =
                    blocking(move || Ok(files.into_iter().map(|f| put_file(&home, f)).collect::<Vec<_>>())).await?;
                sftp_batch::encode_put_reply(&outcomes)
            }
            sftp_batch::GET_FILES => {
                let paths = sftp_batch::decode_get(&data).map_err(malformed)?;
                blocking(move || Ok(sftp_batch::encode_get_reply(&get_files(&home, &paths)))).await?
            }
            _ => return Err(self.unimplemented()),
        };
        Ok(Packet::ExtendedReply(ExtendedReply { id, data }))
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let path = self.resolve(&filename);
        let writes = pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE);
        if writes {
            self.conn.emit(Event::SftpOpenWrite { path: name(&path) });
        }
        let mode = attrs.permissions.unwrap_or(0o666) & 0o7777;
        let file = blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let mut o = std::fs::OpenOptions::new();
            o.read(pflags.contains(OpenFlags::READ) || !writes)
                .write(pflags.contains(OpenFlags::WRITE))
                .append(pflags.contains(OpenFlags::APPEND))
                .mode(mode);
            if pflags.contains(OpenFlags::CREATE) {
                if pflags.contains(OpenFlags::EXCLUDE) {
                    o.create_new(true)
                } else {
                    o.create(true)
                };
            }
            if pflags.contains(OpenFlags::TRUNCATE) {
                o.truncate(true);
            }
            o.open(&path)
        })
        .await?;
        Ok(Handle { id, handle: self.insert(Open::File(Arc::new(file)))? })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.handles.remove(&handle).map(|_| ok(id)).ok_or_else(|| StatusCode::Failure.with_message("invalid handle"))
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let f = self.file(&handle)?;
        let data = blocking(move || {
            let mut buf = vec![0; len.min(MAX_READ) as usize];
            let n = f.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        })
        .await?;
        if data.is_empty() && len > 0 {
            return Err(StatusReply::new(StatusCode::Eof));
        }
        Ok(Data { id, data })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, Self::Error> {
        let f = self.file(&handle)?;
        blocking(move || f.write_all_at(&data, offset)).await?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let p = self.resolve(&path);
        let m = blocking(move || std::fs::symlink_metadata(p)).await?;
        Ok(Attrs { id, attrs: attrs_of(&m) })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let p = self.resolve(&path);
        let m = blocking(move || std::fs::metadata(p)).await?;
        Ok(Attrs { id, attrs: attrs_of(&m) })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let f = self.file(&handle)?;
        let m = blocking(move || f.metadata()).await?;
        Ok(Attrs { id, attrs: attrs_of(&m) })
    }

    async fn setstat(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let p = self.resolve(&path);
        blocking(move || set_attrs(&p, None, &attrs)).await?;
        Ok(ok(id))
    }

    async fn fsetstat(&mut self, id: u32, handle: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let f = self.file(&handle)?;
        // fchmod through /proc/self/fd would need /proc; set_attrs only uses the
        // path for permissions, so resolve it from the handle's file instead.
        blocking(move || {
            if let Some(size) = attrs.size {
                f.set_len(size)?;
            }
            if let Some(mode) = attrs.permissions {
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if let (Some(a), Some(m)) = (attrs.atime, attrs.mtime) {
                let t = |s: u32| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.into());
                f.set_times(std::fs::FileTimes::new().set_accessed(t(a)).set_modified(t(m)))?;
            }
            Ok(())
        })
        .await?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let p = self.resolve(&path);
        let entries = blocking(move || {
            let mut files = Vec::new();
            for name in [".", ".."] {
                if let Ok(m) = std::fs::metadata(p.join(name)) {
                    files.push(File::new(name, attrs_of(&m)));
                }
            }
            for e in std::fs::read_dir(&p)? {
                let e = e?;
                if let Ok(m) = e.path().symlink_metadata() {
                    files.push(File::new(e.file_name().to_string_lossy(), attrs_of(&m)));
                }
            }
            files.reverse();
            Ok(files)
        })
        .await?;
        Ok(Handle { id, handle: self.insert(Open::Dir(entries))? })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir(entries)) if !entries.is_empty() => {
                let rest = entries.len().saturating_sub(READDIR_ENTRIES);
                Ok(Name { id, files: entries.split_off(rest).into_iter().rev().collect() })
            }
            Some(Open::Dir(_)) => Err(StatusReply::new(StatusCode::Eof)),
            _ => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        let p = self.resolve(&filename);
        self.conn.emit(Event::SftpRemove { path: name(&p) });
        blocking(move || std::fs::remove_file(p)).await?;
        Ok(ok(id))
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let p = self.resolve(&path);
        self.conn.emit(Event::SftpMkdir { path: name(&p) });
        let mode = attrs.permissions.unwrap_or(0o777) & 0o7777;
        blocking(move || {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(mode).create(p)
        })
        .await?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        let p = self.resolve(&path);
        self.conn.emit(Event::SftpRmdir { path: name(&p) });
        blocking(move || std::fs::remove_dir(p)).await?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let p = self.resolve(&path);
        let real = blocking(move || Ok(std::fs::canonicalize(&p).unwrap_or_else(|_| lexical(&p)))).await?;
        Ok(Name { id, files: vec![File::dummy(name(&real))] })
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        let (from, to) = (self.resolve(&oldpath), self.resolve(&newpath));
        self.conn.emit(Event::SftpRename { from: name(&from), to: name(&to) });
        // SFTP v3 rename does not replace an existing target (OpenSSH's
        // sftp-server uses link+unlink for the same reason).
        blocking(move || {
            if std::fs::symlink_metadata(&to).is_ok() {
                return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "target exists"));
            }
            std::fs::rename(from, to)
        })
        .await?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let p = self.resolve(&path);
        let target = blocking(move || std::fs::read_link(p)).await?;
        Ok(Name { id, files: vec![File::dummy(name(&target))] })
    }

    async fn symlink(&mut self, id: u32, linkpath: String, targetpath: String) -> Result<Status, Self::Error> {
        let link = self.resolve(&linkpath);
        self.conn.emit(Event::SftpOpenWrite { path: name(&link) });
        blocking(move || std::os::unix::fs::symlink(targetpath, link)).await?;
        Ok(ok(id))
    }
}

/// Temporary names of [`put_file`] in this process.
static PUT_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One file of a [`sftp_batch::PUT_FILES`] batch: written under a temporary
/// name beside `path`, then renamed over it (audited with its batch).
fn put_file(home: &Path, file: sftp_batch::PutFile) -> Outcome {
    let path = home.join(&file.path);
    let Some(base) = path.file_name() else {
        return Outcome::Failed { code: StatusCode::Failure as u32, message: "not a file name".into() };
    };
    let n = PUT_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let part = path.with_file_name(format!(".{}.claworc-{}-{n}.part", base.to_string_lossy(), std::process::id()));
    let written = (|| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&part)?;
        f.write_all(&file.data)?;
        let attrs = FileAttributes {
            permissions: Some(file.mode),
            atime: Some(file.atime),
            mtime: Some(file.mtime),
            ..FileAttributes::empty()
        };
        set_attrs(&part, Some(&f), &attrs)?;
        drop(f);
        std::fs::rename(&part, &path)
    })();
    match written {
        Ok(()) => Outcome::Done,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            let (code, message) = io_status(&e);
            Outcome::Failed { code: code as u32, message }
        }
    }
}

/// A [`sftp_batch::GET_FILES`] batch: each regular file whole, while the reply's
/// contents stay under [`sftp_batch::MAX_BYTES`]; a file that no longer fits is skipped.
fn get_files(home: &Path, paths: &[String]) -> Vec<Fetched> {
    let mut left = sftp_batch::MAX_BYTES;
    paths
        .iter()
        .map(|p| {
            let none = |outcome| Fetched { outcome, mode: 0, atime: 0, mtime: 0, data: Vec::new() };
            let read = (|| {
                use std::io::Read;
                use std::os::unix::fs::OpenOptionsExt;
                // Non-blocking: opening a FIFO put where a file was would wait for a writer.
                let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
                let f = std::fs::OpenOptions::new().read(true).custom_flags(nonblock).open(home.join(p))?;
                let m = f.metadata()?;
                if !m.is_file() {
                    return Err(std::io::Error::other("not a regular file"));
                }
                let mut data = Vec::with_capacity((m.len() as usize).min(left));
                // One byte more than fits tells a file that grew past the reply.
                f.take(left as u64 + 1).read_to_end(&mut data)?;
                Ok((m, data))
            })();
            match read {
                Ok((_, data)) if data.len() > left => none(Outcome::Skipped),
                Ok((m, data)) => {
                    left -= data.len();
                    let a = attrs_of(&m);
                    Fetched {
                        outcome: Outcome::Done,
                        mode: m.mode() & 0o7777,
                        atime: a.atime.unwrap_or(0),
                        mtime: a.mtime.unwrap_or(0),
                        data,
                    }
                }
                Err(e) => {
                    let (code, message) = io_status(&e);
                    none(Outcome::Failed { code: code as u32, message })
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_paths_never_climb_above_root() {
        assert_eq!(lexical(Path::new("/home/w/../../../x/./y")), PathBuf::from("/x/y"));
    }
}
