//! Writing the restore target: safe paths, entries created without following symlinks,
//! positional writes that leave holes for all-zero blobs, and attributes applied after the data.
//!
//! Every target path is the target folder joined with single names that pass
//! [`valid_name`](crate::tree::valid_name). Where an entry goes, an existing non-directory is
//! removed first and an existing directory only if it is empty; files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` and reopened with `O_NOFOLLOW`. Attributes go on in the
//! order owner, xattrs, mode, times: chown clears setuid bits, a read-only mode would refuse
//! xattr writes, and only times are disturbed by what comes after them.

use super::RestoreSummary;
use super::plan::{Batch, PlannedFile};
use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind, valid_name};
use rustix::fs::{FileType, Mode, OFlags};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Never let the last component of a path be a symlink we write through.
const NO_FOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;

/// Creates the target folder (and its parents) if missing.
pub(crate) fn create_target(target: &Path) -> Result<()> {
    fs::create_dir_all(target).map_err(|e| Error::io(format!("creating restore target {}", target.display()), e))
}

/// Flushes the filesystem that holds the target to disk (`syncfs`: one call for the whole
/// restore instead of an `fsync` per file, each of which would wait for its own journal commit).
pub(crate) fn sync_target(target: &Path) -> Result<()> {
    let flushing = || format!("flushing the restored files in {} to disk", target.display());
    let fd = rustix::fs::open(target, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io(flushing(), e.into()))?;
    rustix::fs::syncfs(&fd).map_err(|e| Error::io(flushing(), e.into()))
}

/// `dir/name`, for a name that is one safe component, else why not.
pub(crate) fn child_path(dir: &Path, name: &[u8]) -> Result<PathBuf, String> {
    if !valid_name(name) {
        return Err(format!("refused unsafe entry name {:?}", String::from_utf8_lossy(name)));
    }
    Ok(dir.join(OsStr::from_bytes(name)))
}

fn failed(what: &str, e: io::Error) -> String {
    format!("{what}: {e}")
}

/// Makes room for a new non-directory entry at `path`.
fn clear_slot(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        // Only an empty directory gives way: restore never deletes trees it did not write.
        Ok(m) if m.is_dir() => fs::remove_dir(path),
        Ok(_) => fs::remove_file(path),
    }
}

/// Creates a directory with mode 0o700 (the real mode comes last), or reuses an existing one;
/// a symlink or file in its place is removed, never followed.
pub(crate) fn create_dir(path: &Path) -> Result<(), String> {
    // Into an empty target the first try succeeds; otherwise look at what is there.
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => return other.map_err(|e| failed("creating directory", e)),
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| failed("making existing directory writable", e))?;
            }
            return Ok(());
        }
        Ok(_) => fs::remove_file(path).map_err(|e| failed("removing what was in the way", e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("inspecting the target", e)),
    }
    fs::DirBuilder::new().mode(0o700).create(path).map_err(|e| failed("creating directory", e))
}

/// Creates an empty regular file, owner-only until its attributes are applied.
pub(crate) fn create_file(path: &Path) -> Result<(), String> {
    create_file_handle(path).map(drop)
}

/// [`create_file`], keeping the file open for writing.
fn create_file_handle(path: &Path) -> Result<File, String> {
    create_in_slot(path, "creating file", || {
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(NO_FOLLOW).open(path)
    })
}

/// Runs `create` for a new non-directory entry at `path`. Into an empty target the first try
/// succeeds; if something is in the way, it is removed ([`clear_slot`]) and `create` retried.
fn create_in_slot<T>(path: &Path, what: &str, create: impl Fn() -> io::Result<T>) -> Result<T, String> {
    match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_slot(path).map_err(|e| failed("removing what was in the way", e))?;
            create().map_err(|e| failed(what, e))
        }
        other => other.map_err(|e| failed(what, e)),
    }
}

pub(crate) fn create_symlink(path: &Path, target: &[u8]) -> Result<(), String> {
    create_in_slot(path, "creating symlink", || std::os::unix::fs::symlink(OsStr::from_bytes(target), path))
}

pub(crate) fn create_fifo(path: &Path) -> Result<(), String> {
    create_in_slot(path, "creating fifo", || {
        Ok(rustix::fs::mknodat(rustix::fs::CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)?)
    })
}

pub(crate) fn create_device(path: &Path, block: bool, rdev: u64) -> Result<(), String> {
    let kind = if block { FileType::BlockDevice } else { FileType::CharacterDevice };
    create_in_slot(path, "creating device node", || {
        Ok(rustix::fs::mknodat(rustix::fs::CWD, path, kind, Mode::from_raw_mode(0o600), rdev)?)
    })
}

/// Links `path` to the already restored (or being restored) file `origin`.
pub(crate) fn hard_link(origin: &Path, path: &Path) -> Result<(), String> {
    // linkat without AT_SYMLINK_FOLLOW: a symlink at `origin` would be linked, not followed.
    create_in_slot(path, &format!("hard linking to {}", origin.display()), || fs::hard_link(origin, path))
}

fn open_for_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).custom_flags(NO_FOLLOW).open(path)
}

/// Whether a blob can be left as a hole instead of written.
pub(crate) fn is_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

/// Where each file of a batch stands while workers fill it: created yet (and whether that
/// worked), pieces still to write, where its furthest written byte ends, and, once the last
/// piece is written, the outcome of finishing it (`Some(reason)`: attributes not set).
pub(crate) struct Progress {
    created: Vec<OnceLock<Result<(), String>>>,
    remaining: Vec<AtomicUsize>,
    written_end: Vec<AtomicU64>,
    finished: Vec<OnceLock<Option<String>>>,
    set_owner: bool,
}

impl Progress {
    pub fn new(batch: &Batch, set_owner: bool) -> Self {
        let created = batch.files.iter().map(|f| if f.created { OnceLock::from(Ok(())) } else { OnceLock::new() });
        let remaining: Vec<AtomicUsize> = batch.files.iter().map(|_| AtomicUsize::new(0)).collect();
        for blob in batch.packs.iter().flat_map(|p| &p.ranges).flat_map(|r| &r.blobs) {
            for (file, _) in &blob.targets {
                if let Some(n) = remaining.get(*file) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Progress {
            created: created.collect(),
            remaining,
            written_end: batch.files.iter().map(|_| AtomicU64::new(0)).collect(),
            finished: batch.files.iter().map(|_| OnceLock::new()).collect(),
            set_owner,
        }
    }
}

/// Positional writes into the files of one batch, keeping the last file open because blobs of
/// one file tend to follow each other in a pack. The worker that writes a file's last piece
/// finishes it (length, attributes) through the same descriptor.
pub(crate) struct FileWriter<'a> {
    files: &'a [PlannedFile],
    progress: &'a Progress,
    open: Option<(usize, File)>,
}

impl<'a> FileWriter<'a> {
    pub fn new(files: &'a [PlannedFile], progress: &'a Progress) -> Self {
        FileWriter { files, progress, open: None }
    }

    /// The open descriptor of file `idx`; the first worker to need it creates the file.
    fn handle(&mut self, idx: usize) -> Result<&File, String> {
        if self.open.as_ref().is_none_or(|(open, _)| *open != idx) {
            self.open = None;
            let file = self.files.get(idx).ok_or_else(|| "internal: no such planned file".to_string())?;
            let slot = self.progress.created.get(idx).ok_or_else(|| "internal: no such planned file".to_string())?;
            let mut made = None;
            slot.get_or_init(|| create_file_handle(&file.path).map(|f| made = Some(f))).clone()?;
            let handle = match made {
                Some(f) => f,
                None => open_for_write(&file.path).map_err(|e| failed("opening file for writing", e))?,
            };
            self.open = Some((idx, handle));
        }
        match &self.open {
            Some((_, handle)) => Ok(handle),
            None => Err("internal: file not open".into()),
        }
    }

    /// Writes `data` at `offset` of file `idx` (nothing for all-zero data: that stays a hole),
    /// and finishes the file if this was its last piece.
    pub fn write(&mut self, idx: usize, offset: u64, data: &[u8]) -> Result<(), String> {
        let handle = self.handle(idx)?;
        if !is_zero(data) {
            handle.write_all_at(data, offset).map_err(|e| failed(&format!("writing at offset {offset}"), e))?;
            if let Some(end) = self.progress.written_end.get(idx) {
                end.fetch_max(offset.saturating_add(data.len() as u64), Ordering::AcqRel);
            }
        }
        let last = self.progress.remaining.get(idx).is_some_and(|n| n.fetch_sub(1, Ordering::AcqRel) == 1);
        if last {
            self.finish(idx)?;
        }
        Ok(())
    }

    fn finish(&mut self, idx: usize) -> Result<(), String> {
        let set_owner = self.progress.set_owner;
        let file = self.files.get(idx).ok_or_else(|| "internal: no such planned file".to_string())?;
        // Every file is created empty (`O_EXCL`), so one whose furthest write ends at its length
        // has that length already; only a trailing hole needs `set_len`.
        let sized = self.progress.written_end.get(idx).is_some_and(|end| end.load(Ordering::Acquire) == file.len);
        let handle = self.handle(idx)?;
        let outcome = finish_open_file(handle, file, sized, set_owner)?;
        if let Some(slot) = self.progress.finished.get(idx) {
            let _ = slot.set(outcome);
        }
        // Finished files are not written again; let the descriptor go.
        self.open = None;
        Ok(())
    }
}

/// Ends a batch: removes and reports failed files (with their hard links), finishes the files
/// no worker finished (those without data), applies attributes to the other entries of the
/// batch. Returns, per hard-link origin, whether it was restored.
pub(crate) fn finish_batch(
    batch: Batch,
    failures: Vec<Option<String>>,
    progress: Progress,
    summary: &mut RestoreSummary,
) -> Vec<((u64, u64), bool)> {
    let mut settled = Vec::new();
    let set_owner = progress.set_owner;
    let done = progress.finished.into_iter().zip(progress.created);
    for ((file, failure), (finished, created)) in batch.files.into_iter().zip(failures).zip(done) {
        let outcome = match (failure, finished.into_inner()) {
            (Some(reason), _) => Err(reason),
            (None, Some(attrs)) => Ok(attrs),
            (None, None) => finish_file(&file, created.get().is_some(), set_owner),
        };
        let restored = match outcome {
            Ok(attrs) => {
                if let Some(reason) = attrs {
                    summary.failed.push((file.path.clone(), format!("attributes not restored: {reason}")));
                }
                summary.files += 1 + file.links.len() as u64;
                summary.bytes += file.len;
                true
            }
            Err(reason) => {
                discard(&file, reason, summary);
                false
            }
        };
        if let Some(key) = file.link_key {
            settled.push((key, restored));
        }
    }
    for (path, node) in &batch.meta {
        apply_attributes(path, node, set_owner, summary);
    }
    settled
}

/// Finishes a file no worker wrote: creates it unless planning did, then as [`finish_open_file`].
fn finish_file(file: &PlannedFile, created: bool, set_owner: bool) -> Result<Option<String>, String> {
    let f = if created {
        open_for_write(&file.path).map_err(|e| failed("opening the file to finish it", e))?
    } else {
        create_file_handle(&file.path)?
    };
    finish_open_file(&f, file, false, set_owner)
}

/// Sets a restored file's length (which makes trailing holes) unless it is `sized` already,
/// and then its attributes, through its open descriptor. A length that cannot be set fails the
/// file (`Err`); attributes that cannot be set are returned as `Ok(Some(reason))` and the file
/// stays.
fn finish_open_file(f: &File, file: &PlannedFile, sized: bool, set_owner: bool) -> Result<Option<String>, String> {
    if !sized {
        f.set_len(file.len).map_err(|e| failed("setting the file length", e))?;
    }
    Ok(file_attributes(f, &file.path, &file.node, set_owner).err())
}

/// [`attributes`] for an open regular file: the same order, by descriptor.
fn file_attributes(f: &File, path: &Path, node: &Node, set_owner: bool) -> Result<(), String> {
    use xattr::FileExt as _;
    if set_owner {
        let (uid, gid) = (rustix::fs::Uid::from_raw(node.uid), rustix::fs::Gid::from_raw(node.gid));
        rustix::fs::fchown(f, Some(uid), Some(gid)).map_err(|e| failed("setting owner", e.into()))?;
    }
    for x in &node.xattrs {
        if let Err(e) = f.set_xattr(OsStr::from_bytes(&x.name), &x.value) {
            eprintln!(
                "cairn: warning: {}: extended attribute {} not set: {e}",
                path.display(),
                String::from_utf8_lossy(&x.name)
            );
        }
    }
    rustix::fs::fchmod(f, Mode::from_raw_mode(node.mode & 0o7777)).map_err(|e| failed("setting mode", e.into()))?;
    let t = rustix::fs::Timespec { tv_sec: node.mtime.secs, tv_nsec: i64::from(node.mtime.nanos) };
    let times = rustix::fs::Timestamps { last_access: t, last_modification: t };
    rustix::fs::futimens(f, &times).map_err(|e| failed("setting times", e.into()))
}

/// Removes a failed file and its hard links, so no partial content is left behind.
fn discard(file: &PlannedFile, reason: String, summary: &mut RestoreSummary) {
    for link in &file.links {
        let note = removal_note(link);
        summary
            .failed
            .push((link.clone(), format!("hard link to {}, which could not be restored{note}", file.path.display())));
    }
    let note = removal_note(&file.path);
    summary.failed.push((file.path.clone(), format!("{reason}{note}")));
}

fn removal_note(path: &Path) -> String {
    match fs::remove_file(path) {
        Ok(()) => String::new(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => format!(" (and its partial content could not be removed: {e})"),
    }
}

/// Applies a node's attributes; a failure is listed in `summary.failed`, the entry stays.
pub(crate) fn apply_attributes(path: &Path, node: &Node, set_owner: bool, summary: &mut RestoreSummary) {
    if let Err(reason) = attributes(path, node, set_owner) {
        summary.failed.push((path.to_path_buf(), format!("attributes not restored: {reason}")));
    }
}

fn attributes(path: &Path, node: &Node, set_owner: bool) -> Result<(), String> {
    if set_owner {
        std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)).map_err(|e| failed("setting owner", e))?;
    }
    for x in &node.xattrs {
        // Filesystems differ in which namespaces they take; a missing xattr is not lost data.
        if let Err(e) = xattr::set(path, OsStr::from_bytes(&x.name), &x.value) {
            eprintln!(
                "cairn: warning: {}: extended attribute {} not set: {e}",
                path.display(),
                String::from_utf8_lossy(&x.name)
            );
        }
    }
    set_mode(path, &node.kind, node.mode & 0o7777)?;
    let mtime = filetime::FileTime::from_unix_time(node.mtime.secs, node.mtime.nanos);
    filetime::set_symlink_file_times(path, mtime, mtime).map_err(|e| failed("setting times", e))
}

/// chmod without following a symlink: Linux has no lchmod, so files, directories and fifos are
/// opened with O_NOFOLLOW (O_NONBLOCK: a fifo must not wait for a writer) and changed through
/// the descriptor. Device nodes are not opened (opening one can act on the device). Symlinks
/// have no mode of their own.
fn set_mode(path: &Path, kind: &NodeKind, mode: u32) -> Result<(), String> {
    let mode = Mode::from_raw_mode(mode);
    match kind {
        NodeKind::Symlink { .. } | NodeKind::Socket => Ok(()),
        NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
            rustix::fs::chmodat(rustix::fs::CWD, path, mode, rustix::fs::AtFlags::empty())
                .map_err(|e| failed("setting mode", e.into()))
        }
        NodeKind::File { .. } | NodeKind::Dir { .. } | NodeKind::Fifo => {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let fd =
                rustix::fs::open(path, flags, Mode::empty()).map_err(|e| failed("opening to set mode", e.into()))?;
            rustix::fs::fchmod(&fd, mode).map_err(|e| failed("setting mode", e.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused_where_paths_are_built() {
        let dir = Path::new("/target");
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc", b"x\0"] {
            assert!(child_path(dir, bad).is_err(), "{bad:?}");
        }
        assert_eq!(child_path(dir, b"\xffok").unwrap(), dir.join(OsStr::from_bytes(b"\xffok")));
    }

    #[test]
    fn entries_replace_symlinks_without_following_them() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"keep").unwrap();
        let target = tmp.path().join("target");
        fs::create_dir(&target).unwrap();
        // A file where a symlink to an outside file was.
        std::os::unix::fs::symlink(outside.join("victim"), target.join("f")).unwrap();
        create_file(&target.join("f")).unwrap();
        assert!(fs::symlink_metadata(target.join("f")).unwrap().is_file());
        // A directory where a symlink to an outside directory was.
        std::os::unix::fs::symlink(&outside, target.join("d")).unwrap();
        create_dir(&target.join("d")).unwrap();
        assert!(fs::symlink_metadata(target.join("d")).unwrap().is_dir());
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    }

    #[test]
    fn a_non_empty_directory_is_never_removed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("d")).unwrap();
        fs::write(tmp.path().join("d/keep"), b"x").unwrap();
        assert!(create_file(&tmp.path().join("d")).is_err());
        assert!(create_symlink(&tmp.path().join("d"), b"x").is_err());
        assert_eq!(fs::read(tmp.path().join("d/keep")).unwrap(), b"x");
        fs::create_dir(tmp.path().join("empty")).unwrap();
        create_file(&tmp.path().join("empty")).unwrap();
        assert!(tmp.path().join("empty").is_file());
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4096]));
        let mut v = vec![0u8; 4096];
        v[4095] = 1;
        assert!(!is_zero(&v));
    }
}
