//! Many small files in one SFTP request: the two `SSH_FXP_EXTENDED` requests
//! claworc-sshd answers and `kubectl claworc cp` sends, so a tree of small files
//! costs a round trip per batch rather than five per file (OPEN, WRITE, CLOSE,
//! SETSTAT, RENAME). The server advertises them in its VERSION packet; a client
//! that finds them missing copies file by file.
//!
//! - [`PUT_FILES`]: a list of files (path, mode, atime, mtime, contents). Each is
//!   written under a temporary name beside its path and renamed over it when
//!   complete, so no partial file is ever seen under the final name. The reply has
//!   one [`Outcome`] per file, in order.
//! - [`GET_FILES`]: a list of paths. The reply has one [`Fetched`] per path, in
//!   order: a regular file's mode, times and contents, or [`Outcome::Skipped`]
//!   when it no longer fits the reply (the client reads it the usual way).
//!
//! The data is SSH wire format (RFC 4251: `uint32` big-endian, `string` as a
//! `uint32` length and the bytes), as the rest of SFTP. Requests and replies stay
//! under the 256 KiB SFTP packet both sides take: at most [`MAX_FILES`] files
//! and [`MAX_BYTES`] of contents a batch, messages cut to [`MAX_MESSAGE`].

/// Upload a batch of files.
pub const PUT_FILES: &str = "put-files@claworc.io";
/// Download a batch of files.
pub const GET_FILES: &str = "get-files@claworc.io";
/// The version of both, as advertised.
pub const VERSION: &str = "1";
/// Largest file a client puts in a batch.
pub const MAX_FILE: u64 = 64 * 1024;
/// Most files in one batch.
pub const MAX_FILES: usize = 256;
/// Most bytes of a request (paths and contents), and of a reply's contents.
pub const MAX_BYTES: usize = 192 * 1024;
/// Longest error message in a reply.
pub const MAX_MESSAGE: usize = 128;

/// What became of one file. The codes are SFTP's status codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Not in this batch (it did not fit): copy it the usual way.
    Skipped,
    Failed {
        code: u32,
        message: String,
    },
}

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutFile {
    pub path: String,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

impl PutFile {
    /// Bytes this file takes in a request.
    pub fn wire_len(path: &str, size: u64) -> usize {
        4 + path.len() + 12 + 4 + usize::try_from(size).unwrap_or(usize::MAX)
    }
}

/// One downloaded file, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub outcome: Outcome,
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
    pub data: Vec<u8>,
}

/// A request or reply that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a malformed {0} batch")]
pub struct Malformed(pub &'static str);

const SKIPPED: u32 = u32::MAX;

/// `uint32` count, then for each file: `string` path, `uint32` mode, atime,
/// mtime, `string` contents.
pub fn encode_put(files: &[PutFile]) -> Vec<u8> {
    let mut w = Writer::list(
        4 + files.iter().map(|f| PutFile::wire_len(&f.path, f.data.len() as u64)).sum::<usize>(),
        files.len(),
    );
    for f in files {
        w.bytes(f.path.as_bytes());
        w.file(f.mode, f.atime, f.mtime, &f.data);
    }
    w.0
}

pub fn decode_put(data: &[u8]) -> Result<Vec<PutFile>, Malformed> {
    decode_list(data, PUT_FILES, |r| {
        let path = r.string()?;
        let (mode, atime, mtime, data) = r.file()?;
        Ok(PutFile { path, mode, atime, mtime, data })
    })
}

/// `uint32` count, then an outcome for each file.
pub fn encode_put_reply(outcomes: &[Outcome]) -> Vec<u8> {
    let mut w = Writer::list(4 + outcomes.len() * 8, outcomes.len());
    for o in outcomes {
        w.outcome(o);
    }
    w.0
}

pub fn decode_put_reply(data: &[u8]) -> Result<Vec<Outcome>, Malformed> {
    decode_list(data, PUT_FILES, Reader::outcome)
}

/// `uint32` count, then a `string` path for each file.
pub fn encode_get(paths: &[&str]) -> Vec<u8> {
    let mut w = Writer::list(4 + paths.iter().map(|p| 4 + p.len()).sum::<usize>(), paths.len());
    for p in paths {
        w.bytes(p.as_bytes());
    }
    w.0
}

pub fn decode_get(data: &[u8]) -> Result<Vec<String>, Malformed> {
    decode_list(data, GET_FILES, Reader::string)
}

/// `uint32` count, then for each file: its outcome, `uint32` mode, atime,
/// mtime and `string` contents (all zero and empty unless done).
pub fn encode_get_reply(files: &[Fetched]) -> Vec<u8> {
    let mut w = Writer::list(4 + files.iter().map(|f| 24 + f.data.len()).sum::<usize>(), files.len());
    for f in files {
        w.outcome(&f.outcome);
        w.file(f.mode, f.atime, f.mtime, &f.data);
    }
    w.0
}

pub fn decode_get_reply(data: &[u8]) -> Result<Vec<Fetched>, Malformed> {
    decode_list(data, GET_FILES, |r| {
        let outcome = r.outcome()?;
        let (mode, atime, mtime, data) = r.file()?;
        Ok(Fetched { outcome, mode, atime, mtime, data })
    })
}

/// A `uint32` count (at most [`MAX_FILES`]), that many entries, and nothing after.
fn decode_list<'a, T>(
    data: &'a [u8],
    what: &'static str,
    mut entry: impl FnMut(&mut Reader<'a>) -> Result<T, Malformed>,
) -> Result<Vec<T>, Malformed> {
    let mut r = Reader::new(data, what);
    let n = r.count()?;
    let entries = (0..n).map(|_| entry(&mut r)).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(entries)
}

struct Writer(Vec<u8>);

impl Writer {
    /// A list of `len` entries: its count first.
    fn list(capacity: usize, len: usize) -> Self {
        let mut w = Writer(Vec::with_capacity(capacity));
        w.u32(len as u32);
        w
    }

    /// A file's `uint32` mode, atime, mtime and `string` contents.
    fn file(&mut self, mode: u32, atime: u32, mtime: u32, data: &[u8]) {
        self.u32(mode);
        self.u32(atime);
        self.u32(mtime);
        self.bytes(data);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }

    /// `uint32` code (0 done, SFTP's status codes, `u32::MAX` skipped), `string` message.
    fn outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Done => self.u32(0),
            Outcome::Skipped => self.u32(SKIPPED),
            Outcome::Failed { code, message } => {
                self.u32(*code);
                let mut end = message.len().min(MAX_MESSAGE);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                self.bytes(&message.as_bytes()[..end]);
                return;
            }
        }
        self.bytes(b"");
    }
}

struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }

    fn malformed(&self) -> Malformed {
        Malformed(self.what)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let (head, rest) = self.data.split_first_chunk::<4>().ok_or(self.malformed())?;
        self.data = rest;
        Ok(u32::from_be_bytes(*head))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        if n > self.data.len() {
            return Err(self.malformed());
        }
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.malformed())
    }

    /// What [`Writer::file`] wrote.
    fn file(&mut self) -> Result<(u32, u32, u32, Vec<u8>), Malformed> {
        Ok((self.u32()?, self.u32()?, self.u32()?, self.bytes()?.to_vec()))
    }

    fn count(&mut self) -> Result<usize, Malformed> {
        match self.u32()? as usize {
            n if n <= MAX_FILES => Ok(n),
            _ => Err(self.malformed()),
        }
    }

    fn outcome(&mut self) -> Result<Outcome, Malformed> {
        let code = self.u32()?;
        let message = self.string()?;
        Ok(match code {
            0 => Outcome::Done,
            SKIPPED => Outcome::Skipped,
            code => Outcome::Failed { code, message },
        })
    }

    fn end(&self) -> Result<(), Malformed> {
        if self.data.is_empty() { Ok(()) } else { Err(self.malformed()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> PutFile {
        PutFile { path: path.into(), mode: 0o640, atime: 1, mtime: 1_600_000_000, data: data.to_vec() }
    }

    #[test]
    fn batches_read_back_as_written() {
        let files = vec![file("/work/a", b"hello\n"), file("b/c d", b""), file("\u{e9}", &[0, 255, 7])];
        assert_eq!(decode_put(&encode_put(&files)).unwrap(), files);
        let outcomes =
            vec![Outcome::Done, Outcome::Skipped, Outcome::Failed { code: 3, message: "permission denied".into() }];
        assert_eq!(decode_put_reply(&encode_put_reply(&outcomes)).unwrap(), outcomes);
        assert_eq!(decode_get(&encode_get(&["/a", "b"])).unwrap(), ["/a", "b"]);
        let fetched = vec![
            Fetched { outcome: Outcome::Done, mode: 0o600, atime: 2, mtime: 3, data: b"x".to_vec() },
            Fetched { outcome: Outcome::Skipped, mode: 0, atime: 0, mtime: 0, data: vec![] },
        ];
        assert_eq!(decode_get_reply(&encode_get_reply(&fetched)).unwrap(), fetched);
        // The request's size is what wire_len says.
        assert_eq!(
            encode_put(&files).len(),
            4 + files.iter().map(|f| PutFile::wire_len(&f.path, f.data.len() as u64)).sum::<usize>()
        );
    }

    #[test]
    fn the_wire_format_is_ssh_strings_and_integers() {
        let bytes = encode_put(&[file("a", b"hi")]);
        assert_eq!(
            bytes,
            [
                &[0, 0, 0, 1, 0, 0, 0, 1, b'a'][..],
                &[0, 0, 1, 0xa0],
                &[0, 0, 0, 1],
                &[0x5f, 0x5e, 0x10, 0],
                &[0, 0, 0, 2, b'h', b'i']
            ]
            .concat()
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let message = "\u{e9}".repeat(MAX_MESSAGE);
        let back = decode_put_reply(&encode_put_reply(&[Outcome::Failed { code: 4, message }])).unwrap();
        match &back[0] {
            Outcome::Failed { code: 4, message } => {
                assert!(message.len() <= MAX_MESSAGE && message.len() >= MAX_MESSAGE - 1)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let good = encode_put(&[file("a", b"hello")]);
        for cut in 0..good.len() {
            assert_eq!(decode_put(&good[..cut]), Err(Malformed(PUT_FILES)), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_put(&trailing).is_err());
        // A count beyond MAX_FILES, a length beyond the data, a path that is not UTF-8.
        assert!(decode_get(&(MAX_FILES as u32 + 1).to_be_bytes()).is_err());
        assert!(decode_get(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_get(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff]).is_err());
        // Any bytes: no panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8 % 4).collect();
            let _ = (decode_put(&bytes), decode_put_reply(&bytes), decode_get(&bytes), decode_get_reply(&bytes));
        }
    }
}
