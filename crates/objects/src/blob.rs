//! Object bytes on disk.
//!
//! # Layout
//!
//! ```text
//! <root>/tmp/<id>          a body being written (never referenced by metadata)
//! <root>/blobs/<xx>/<id>   a finished body; xx = the first two hex digits of id
//! ```
//!
//! `id` is a random UUID in 32 lower-case hex digits. Object keys never become paths. A
//! blob file is the raw bytes, with no header: its size, MD5 and checksum live in the
//! metadata document that references it.
//!
//! Bodies of at most `Config::inline_max` bytes get no file at all: they are *inline*, the
//! raw bytes stored as the `s3_inline/<id>` row of the metadata store and written in the
//! same transaction as the document that references them (see [`crate::engine`]).
//!
//! # Write protocol
//!
//! 0. The body is read, hashed and buffered in memory ([`read_head`]) until it ends or
//!    exceeds the inline limit. If it ends within the limit, it is inline: none of the
//!    steps below happen, and the referencing transaction stores the bytes.
//! 1. An `s3_orphans/<id>` row is queued ("this blob is not referenced"); its group commit
//!    runs while the rest of the body streams.
//! 2. The buffered head and then the rest of the body stream into `tmp/<id>`, hashed on the
//!    way; then `fdatasync`.
//! 3. The orphan row's commit is awaited, `tmp/<id>` is renamed to `blobs/<xx>/<id>` and the
//!    `blobs/<xx>` directory is fsynced.
//! 4. One metadata transaction references the blob and deletes its orphan row (and, when it
//!    replaces or removes blobs, adds orphan rows for those, or deletes the inline rows of
//!    replaced inline bodies).
//! 5. After that commit, replaced blob files are deleted and then their orphan rows.
//!
//! # Recovery (on open)
//!
//! Everything in `tmp/` is deleted. For every `s3_orphans` row, the blob file (if present)
//! is deleted and then the row. A blob file is thus never left behind by a crash at any
//! step, and a referenced blob is never deleted: the orphan row of a blob is removed in the
//! same transaction that first references it, and added in the same transaction that drops
//! the last reference. Inline bodies need nothing: their rows are committed and deleted
//! atomically with the referencing documents.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::checksum::{BodyHasher, Digests};
use crate::error::{Error, Result};
use crate::types::BodyStream;

/// Size of the chunks of a [`BodyStream`] read from a blob.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// The blob directories of one engine.
#[derive(Debug)]
pub(crate) struct Blobs {
    tmp: PathBuf,
    blobs: PathBuf,
}

/// Where a body comes from: a read error of a client's body is `IncompleteBody`, of a
/// stored body (copies, CompleteMultipartUpload) an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Client,
    Stored,
}

/// The start of a body, read into memory by [`read_head`].
#[derive(Debug, Default)]
pub(crate) struct Head {
    pub chunks: Vec<Bytes>,
    /// Bytes in `chunks` (all hashed).
    pub size: u64,
    /// The body ended within the inline limit: `chunks` is all of it.
    pub complete: bool,
}

impl Head {
    /// The buffered bytes as one vector.
    pub fn concat(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        for c in self.chunks {
            out.extend_from_slice(&c);
        }
        out
    }
}

fn body_chunk(chunk: std::result::Result<Bytes, std::io::Error>, origin: Origin) -> Result<Bytes> {
    match chunk {
        Ok(c) => Ok(c),
        Err(e) if origin == Origin::Client => Err(Error::IncompleteBody(e.to_string())),
        Err(e) => Err(Error::io("read blob", e)),
    }
}

fn count(size: &mut u64, chunk: &Bytes, max_size: u64) -> Result<()> {
    *size = size.saturating_add(chunk.len() as u64);
    if *size > max_size {
        return Err(Error::EntityTooLarge { max_size });
    }
    Ok(())
}

/// Reads and hashes `body` until it ends or more than `inline_max` bytes were read (at
/// most `inline_max` plus one chunk are held). With `inline_max == 0` nothing is read and
/// the head is not complete, so even an empty body goes to a file.
pub(crate) async fn read_head<S>(
    body: &mut S,
    hasher: &mut BodyHasher,
    inline_max: u64,
    max_size: u64,
    origin: Origin,
) -> Result<Head>
where
    S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
{
    let mut head = Head::default();
    if inline_max == 0 {
        return Ok(head);
    }
    while let Some(chunk) = body.next().await {
        let chunk = body_chunk(chunk, origin)?;
        count(&mut head.size, &chunk, max_size)?;
        hasher.update(&chunk);
        if !chunk.is_empty() {
            head.chunks.push(chunk);
        }
        if head.size > inline_max {
            return Ok(head);
        }
    }
    head.complete = true;
    Ok(head)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn is_blob_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes every entry of `dir` (files and subdirectories).
fn empty_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))? {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
    }
    Ok(())
}

impl Blobs {
    /// Creates `tmp/` and `blobs/00..ff` under `root` and empties `tmp/`.
    pub fn open(root: &Path) -> Result<Blobs> {
        let tmp = root.join("tmp");
        let blobs = root.join("blobs");
        for dir in [&tmp, &blobs] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        empty_dir(&tmp)?;
        for i in 0..=255u8 {
            let dir = blobs.join(format!("{i:02x}"));
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        for dir in [&blobs, root] {
            sync_dir(dir).map_err(|e| Error::io(format!("sync {}", dir.display()), e))?;
        }
        Ok(Blobs { tmp, blobs })
    }

    /// A fresh random blob id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    fn checked(id: &str) -> Result<&str> {
        if is_blob_id(id) {
            Ok(id)
        } else {
            Err(Error::Internal(format!("malformed blob id {id:?}")))
        }
    }

    pub fn blob_path(&self, id: &str) -> Result<PathBuf> {
        let id = Self::checked(id)?;
        Ok(self.blobs.join(&id[..2]).join(id))
    }

    fn tmp_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.tmp.join(Self::checked(id)?))
    }

    /// Writes `head` (already hashed by `hasher`) and then the rest of `body` into
    /// `tmp/<id>`, hashing the rest, refusing more than `max_size` bytes in all; syncs the
    /// file. On error the temporary file is removed.
    pub async fn write_tmp<S>(
        &self,
        id: &str,
        head: Head,
        body: S,
        mut hasher: BodyHasher,
        max_size: u64,
        origin: Origin,
    ) -> Result<(u64, Digests)>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        let path = self.tmp_path(id)?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        let result = async {
            let mut size = head.size;
            for chunk in &head.chunks {
                file.write_all(chunk)
                    .await
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            }
            drop(head);
            write_stream(&mut file, &path, body, &mut hasher, &mut size, max_size, origin).await?;
            file.flush()
                .await
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            file.sync_data()
                .await
                .map_err(|e| Error::io(format!("sync {}", path.display()), e))?;
            Ok(size)
        }
        .await;
        drop(file);
        match result {
            Ok(size) => Ok((size, hasher.finish())),
            Err(e) => {
                self.remove_tmp(id).await;
                Err(e)
            }
        }
    }

    /// Renames `tmp/<id>` into `blobs/<xx>/<id>` and syncs the directory.
    pub async fn publish(&self, id: &str) -> Result<()> {
        let from = self.tmp_path(id)?;
        let to = self.blob_path(id)?;
        tokio::task::spawn_blocking(move || {
            std::fs::rename(&from, &to)
                .map_err(|e| Error::io(format!("rename {} to {}", from.display(), to.display()), e))?;
            let dir = to.parent().unwrap_or(Path::new("."));
            sync_dir(dir).map_err(|e| Error::io(format!("sync {}", dir.display()), e))
        })
        .await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
    }

    pub async fn remove_tmp(&self, id: &str) {
        if let Ok(p) = self.tmp_path(id) {
            let _ = tokio::fs::remove_file(p).await;
        }
    }

    /// Deletes a blob file; a missing file is fine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let path = self.blob_path(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    /// Synchronous [`Blobs::remove`] for recovery.
    pub fn remove_sync(&self, id: &str) -> Result<()> {
        let path = self.blob_path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    /// Opens blob `id`, `Ok(None)` if the file does not exist (replaced concurrently).
    pub async fn open_blob(&self, id: &str) -> Result<Option<tokio::fs::File>> {
        let path = self.blob_path(id)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("open {}", path.display()), e)),
        }
    }

    /// A stream of `len` bytes of blob `id` from `offset`.
    pub async fn read_segment(&self, id: &str, offset: u64, len: u64) -> Result<BodyStream> {
        let Some(file) = self.open_blob(id).await? else {
            return Err(Error::Internal(format!("blob {id} is missing")));
        };
        file_stream(file, offset, len).await
    }

    /// Removes every blob and temporary file (keeps the directories).
    pub fn clear(&self) -> Result<()> {
        empty_dir(&self.tmp)?;
        for i in 0..=255u8 {
            empty_dir(&self.blobs.join(format!("{i:02x}")))?;
        }
        Ok(())
    }
}

/// A stream of `len` bytes of `file` from `offset`, in chunks of at most [`READ_CHUNK`].
pub(crate) async fn file_stream(mut file: tokio::fs::File, offset: u64, len: u64) -> Result<BodyStream> {
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io("seek in blob", e))?;
    }
    let stream = futures_util::stream::unfold((file, len), |(mut file, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let n = usize::try_from(remaining).unwrap_or(READ_CHUNK).min(READ_CHUNK);
        let mut buf = vec![0u8; n];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                )),
                (file, 0),
            )),
            Ok(k) => {
                buf.truncate(k);
                Some((Ok(Bytes::from(buf)), (file, remaining - k as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Ok(Box::pin(stream))
}

/// A stream of `len` bytes of an inline body from `offset`, in chunks of at most
/// [`READ_CHUNK`]. The range must lie within `bytes`.
pub(crate) fn bytes_stream(bytes: Bytes, offset: u64, len: u64) -> Result<BodyStream> {
    let start = usize::try_from(offset).ok();
    let end = offset.checked_add(len).and_then(|e| usize::try_from(e).ok());
    let (Some(start), Some(end)) = (start, end) else {
        return Err(Error::Internal("inline range out of bounds".into()));
    };
    if end > bytes.len() {
        return Err(Error::Internal(format!(
            "inline body has {} bytes, {end} wanted",
            bytes.len()
        )));
    }
    let mut rest = bytes.slice(start..end);
    let mut chunks = Vec::with_capacity(rest.len().div_ceil(READ_CHUNK));
    while !rest.is_empty() {
        chunks.push(Ok(rest.split_to(rest.len().min(READ_CHUNK))));
    }
    Ok(Box::pin(futures_util::stream::iter(chunks)))
}

/// Bytes written between write-behind syncs of a large body.
const WRITE_BEHIND_BYTES: u64 = 64 * 1024 * 1024;

async fn write_stream<S>(
    file: &mut tokio::fs::File,
    path: &Path,
    mut body: S,
    hasher: &mut BodyHasher,
    size: &mut u64,
    max_size: u64,
    origin: Origin,
) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send + Unpin,
{
    // Write-behind: every 64 MiB, start an fdatasync of what is written so far on a second
    // handle while the body keeps streaming, so the final sync of a large object has little
    // left to flush. Durability still rests on the final sync in `write_tmp`.
    let mut since_sync = 0u64;
    let mut syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
    while let Some(chunk) = body.next().await {
        let chunk = body_chunk(chunk, origin)?;
        count(size, &chunk, max_size)?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        since_sync += chunk.len() as u64;
        if since_sync >= WRITE_BEHIND_BYTES && syncing.as_ref().is_none_or(|h| h.is_finished()) {
            since_sync = 0;
            if let Some(done) = syncing.take() {
                finish_sync(done, path).await?;
            }
            file.flush()
                .await
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            let handle = file
                .try_clone()
                .await
                .map_err(|e| Error::io(format!("clone {}", path.display()), e))?
                .into_std()
                .await;
            syncing = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
        }
    }
    if let Some(done) = syncing.take() {
        finish_sync(done, path).await?;
    }
    Ok(())
}

async fn finish_sync(done: tokio::task::JoinHandle<std::io::Result<()>>, path: &Path) -> Result<()> {
    done.await
        .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
        .map_err(|e| Error::io(format!("sync {}", path.display()), e))
}
