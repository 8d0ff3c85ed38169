//! Local disk. Reads: ranged reads of packs, with the pack files read from last kept open
//! ([`OpenPacks`]). Writes: durable creation of one object. The protocol is object_store's own (a
//! staging file `PATH#N` created new, written, fsynced, hard-linked to `PATH`, which fails if
//! `PATH` exists, the folder fsynced, the staging name removed), so a reader sees an object whole
//! or not at all and listings skip the staging names. What differs: objects of [`DIRECT_MIN`] bytes
//! or more are written with `O_DIRECT` where the filesystem allows it. A pack is written once and
//! not read again by the backup that made it; through the page cache, each pack's bytes were copied
//! into fresh page-cache pages (on these VMs ~13-17% of a first backup's CPU) and evicted the
//! user's own cached files, only to be flushed to disk by the fsync anyway.

use super::DIRECT_ALIGN as ALIGN;
use super::{BackendError, ReadBuf};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The local files read from last, kept open: an unchanged backup of the bench tree reads its
/// parent's 3,210 trees from one pack, and opened and closed that file for each of them. Only
/// ranged reads use it, and only packs are read by range: a pack's name is the hash of its
/// bytes and it is never rewritten, so a file kept open reads what a new open would.
#[derive(Default)]
pub(super) struct OpenPacks(Mutex<VecDeque<(String, Arc<File>)>>);

impl OpenPacks {
    /// Files kept open, at most; the one read from longest ago is closed first.
    pub(super) const KEEP: usize = 8;

    pub(super) fn get(
        &self,
        path: &str,
        open: impl FnOnce() -> Result<File, BackendError>,
    ) -> Result<Arc<File>, BackendError> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = |files: &mut VecDeque<(String, Arc<File>)>| {
            let at = files.iter().position(|(p, _)| p == path)?;
            let entry = files.remove(at)?;
            let file = entry.1.clone();
            files.push_back(entry);
            Some(file)
        };
        if let Some(file) = kept(&mut lock()) {
            return Ok(file);
        }
        // Opened outside the lock: readers of other packs do not wait for it.
        let file = Arc::new(open()?);
        let mut files = lock();
        // Another reader may have opened it meanwhile: keep one.
        if let Some(theirs) = kept(&mut files) {
            return Ok(theirs);
        }
        if files.len() >= Self::KEEP {
            files.pop_front();
        }
        files.push_back((path.to_string(), file.clone()));
        Ok(file)
    }
}

/// A positional read of a local file; a file shorter than the range is a short read.
pub(super) fn read_range(f: &File, path: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
    let mut buf = vec![0u8; range_len(path, &range)?];
    read_exact_at(f, path, &mut buf, range.start)?;
    Ok(Bytes::from(buf))
}

/// [`read_range`] into a reader's kept buffer.
pub(super) fn read_range_into(f: &File, path: &str, range: Range<u64>, buf: &mut ReadBuf) -> Result<(), BackendError> {
    let len = range_len(path, &range)?;
    read_exact_at(f, path, buf.fill(len), range.start)
}

fn range_len(path: &str, range: &Range<u64>) -> Result<usize, BackendError> {
    usize::try_from(range.end.saturating_sub(range.start))
        .map_err(|_| BackendError::Permanent(format!("{path}: range too large")))
}

fn read_exact_at(f: &File, path: &str, buf: &mut [u8], offset: u64) -> Result<(), BackendError> {
    f.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => BackendError::Permanent(format!("{path}: short read (the object is truncated)")),
        _ => BackendError::Permanent(format!("{path}: {e}")),
    })
}

/// Objects at least this large skip the page cache.
pub const DIRECT_MIN: usize = 1 << 20;
/// Bytes per direct write (the size of each writing thread's aligned buffer).
const DIRECT_PIECE: usize = 1 << 20;

fn failed(path: &str, what: &str, e: std::io::Error) -> BackendError {
    BackendError::Permanent(format!("{path}: {what}: {e}"))
}

/// `direct`: the backend's "direct writes still work" flag, or `None` to write through the
/// page cache (an object read again soon).
pub fn put_new(root: &Path, path: &str, data: &[u8], direct: Option<&AtomicBool>) -> Result<(), BackendError> {
    let dest = root.join(path);
    let (file, staging) = create_staging(&dest).map_err(|e| failed(path, "creating a temporary file", e))?;
    let written = write_all(&file, data, direct).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(failed(path, "writing", e));
    }
    let linked = std::fs::hard_link(&staging, &dest);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => match dest.parent() {
            Some(dir) => fsync_dir(dir).map_err(|e| failed(path, "flushing its folder", e)),
            None => Ok(()),
        },
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(BackendError::AlreadyExists(path.to_string())),
        Err(e) => Err(failed(path, "linking into place", e)),
    }
}

/// `DEST#N` for the first N that does not exist, created new. Missing folders are created
/// and, with the first folder that existed, fsynced.
fn create_staging(dest: &Path) -> std::io::Result<(File, PathBuf)> {
    let mut n = 1u32;
    for _ in 0..1000 {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let staging = PathBuf::from(name);
        match OpenOptions::new().write(true).create_new(true).open(&staging) {
            Ok(f) => return Ok((f, staging)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => create_folders(dest)?,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("1000 temporary names taken or folders vanishing"))
}

fn create_folders(dest: &Path) -> std::io::Result<()> {
    let Some(parent) = dest.parent() else { return Err(ErrorKind::NotFound.into()) };
    let mut existing = parent;
    while !existing.exists() {
        existing = existing.parent().ok_or(ErrorKind::NotFound)?;
    }
    if existing == parent {
        return Err(ErrorKind::NotFound.into()); // the folder exists: something else is missing
    }
    std::fs::create_dir_all(parent)?;
    let mut dir = parent;
    loop {
        fsync_dir(dir)?;
        if dir == existing {
            return Ok(());
        }
        dir = dir.parent().ok_or(ErrorKind::NotFound)?;
    }
}

/// Makes a folder's entries durable.
fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` at the start of the empty `file`: directly when it is large, `direct` is
/// given and the filesystem takes it, else through the page cache.
fn write_all(file: &File, data: &[u8], direct: Option<&AtomicBool>) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if let Some(direct) = direct
        && data.len() >= DIRECT_MIN
        && direct.load(Ordering::Relaxed)
    {
        match write_direct(file, data) {
            Ok(true) => return Ok(()),
            Ok(false) => direct.store(false, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
        file.set_len(0)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = direct;
    file.write_all_at(data, 0)
}

thread_local! {
    static PIECE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `Ok(false)` if the filesystem refuses direct writes (tmpfs, some FUSE and network
/// filesystems, alignment rules stricter than [`ALIGN`]): the caller writes again through
/// the page cache. Each piece is copied into an aligned buffer and the last one padded with
/// zeros to [`ALIGN`]; the padding is cut off again with `ftruncate`.
#[cfg(target_os = "linux")]
fn write_direct(file: &File, data: &[u8]) -> std::io::Result<bool> {
    use rustix::fs::OFlags;
    use rustix::io::Errno;
    let flags = rustix::fs::fcntl_getfl(file)?;
    match rustix::fs::fcntl_setfl(file, flags | OFlags::DIRECT) {
        Ok(()) => {}
        Err(Errno::INVAL) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let wrote = PIECE.with_borrow_mut(|buf| -> std::io::Result<bool> {
        // Grown once per writing thread, then reused: its pages stay warm.
        if buf.len() < DIRECT_PIECE + ALIGN {
            *buf = vec![0u8; DIRECT_PIECE + ALIGN];
        }
        let start = buf.as_ptr().align_offset(ALIGN);
        let Some(aligned) = buf.get_mut(start..start + DIRECT_PIECE) else { return Ok(false) };
        for (i, piece) in data.chunks(DIRECT_PIECE).enumerate() {
            let padded = piece.len().next_multiple_of(ALIGN);
            aligned[..piece.len()].copy_from_slice(piece);
            aligned[piece.len()..padded].fill(0);
            match file.write_all_at(&aligned[..padded], (i * DIRECT_PIECE) as u64) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    });
    rustix::fs::fcntl_setfl(file, flags)?;
    let wrote = wrote?;
    if wrote && !data.len().is_multiple_of(ALIGN) {
        file.set_len(data.len() as u64)?;
    }
    Ok(wrote)
}
