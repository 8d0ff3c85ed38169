//! Scanning one directory on a reader thread: list it, stat every entry, read xattrs and
//! symlink targets, and decide which regular files are unchanged since the parent snapshot.
//!
//! The walker asks for the scans of a directory's subfolders ahead of descending into them, so
//! the stat-heavy part of a backup of a mostly unchanged tree runs on several threads while the
//! walker consumes the scans in tree order. A file is unchanged when its size, mtime, ctime and
//! inode equal those of the parent snapshot's node and all its blobs are still in the index
//! (asked per folder, or in large batches by [`StillIndexed`]); its xattrs are then the
//! parent's too (setting an xattr moves ctime), so they are not read. The small changed files a
//! scan reads are opened a few ahead of it (`scan/prefetch.rs`).

use super::read::{AheadSlot, FileOutcome, Pending};

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::BlobIndex;
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

mod prefetch;
pub(super) use prefetch::Prefetch;

pub(super) fn unreadable(path: &Path, source: std::io::Error) -> Error {
    Error::InputUnreadable { path: path.to_path_buf(), source }
}

/// `--exclude` patterns: with a `/` they match the whole path, else the entry's name.
pub(super) struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    pub(super) fn new(patterns: &[String]) -> Result<Excludes> {
        let (mut names, mut paths) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for pat in patterns {
            let glob = GlobBuilder::new(pat)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::Usage(format!("--exclude {pat}: {e}")))?;
            if pat.contains('/') {
                paths.add(glob)
            } else {
                names.add(glob)
            };
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| Error::Usage(format!("--exclude: {e}")));
        Ok(Excludes { names: build(names)?, paths: build(paths)? })
    }

    fn matches(&self, path: &Path) -> bool {
        self.paths.is_match(path) || path.file_name().is_some_and(|n| self.names.is_match(n))
    }
}

/// What the walker still has to do for a scanned entry.
pub(super) enum Todo {
    /// The node is complete (symlinks, devices, ...).
    Nothing,
    /// An unchanged regular file: the node carries the parent's content.
    Unchanged,
    /// A regular file to read; `known` if the parent snapshot had a node of that name.
    Read { known: bool },
    /// A small file already read and stored while scanning (`content` set in the node).
    Stored { known: bool },
    /// A folder to descend into, with the parent snapshot's tree for it, and its scan if a
    /// reader started it ahead of the walk.
    Dir { old: Option<BlobId>, ahead: Option<Pending<Result<Scan>>> },
}

pub(super) struct Scanned {
    pub node: Node,
    pub path: PathBuf,
    pub todo: Todo,
}

/// A scanned directory.
pub(super) struct Scan {
    /// Its entries (excluded ones left out), sorted by name. An entry that vanished since the
    /// listing comes back as `Err(path)` for the walker to warn about.
    pub entries: Vec<std::result::Result<Scanned, PathBuf>>,
    /// The parent snapshot's tree for it, if it had one and it could be loaded.
    pub parent: Option<(BlobId, Tree)>,
    /// Its place in the budget of scans done ahead of the walk, if it was one.
    pub slot: Option<AheadSlot>,
    /// Set by a scan ahead of the walk whose folder did not fit in the budget of entries held
    /// ahead (see `read::ahead::AHEAD_ENTRIES`): nothing was scanned, and the walker scans it
    /// when it gets there, with this parent snapshot's tree id for it.
    pub left: Option<Option<BlobId>>,
}

impl Scan {
    fn left_for_the_walker(old: Option<&BlobId>) -> Scan {
        Scan { entries: Vec::new(), parent: None, slot: None, left: Some(old.copied()) }
    }
}

/// Reads a changed file during the scan if it is small enough (`None` if not), from the file
/// already opened for it if there is one.
pub(super) type ReadSmall<'a> = dyn FnMut(&Path, u64, Option<std::fs::File>) -> Option<FileOutcome> + 'a;

/// How a scan makes sure an unchanged file's blobs are still in the index.
#[derive(Clone, Copy)]
pub(super) enum Indexed<'a> {
    /// Ask the index now, one query per folder; files whose blobs are gone are read again.
    Ask,
    /// Take them as indexed and have [`StillIndexed`] check them in large batches; if one is
    /// gone after all, the backup walks again with `Ask`.
    Later(&'a StillIndexed),
}

/// Lists and scans the directory at `path`; `old` is the parent snapshot's tree for it. The
/// entries of the listing and of the parent tree are reserved with `reserve` as they come (a
/// scan ahead of need has a budget; see `read::ahead::AHEAD_ENTRIES`); if it refuses, the
/// folder is left for the walker ([`Scan::left`]) before anything in it is stat'ed, read or
/// stored.
#[allow(clippy::too_many_arguments)]
pub(super) fn scan_dir(
    repo: &Repository,
    excludes: &Excludes,
    path: &Path,
    old: Option<&BlobId>,
    indexed: Indexed<'_>,
    mut prefetch: Prefetch,
    reserve: &mut dyn FnMut(usize) -> bool,
    small: &mut ReadSmall<'_>,
) -> Result<Scan> {
    // Reserved in steps of this many names, so that a huge folder is left early.
    const STEP: usize = 256;
    // The folder is opened once, listed, and its entries are stat'ed relative to it: one path
    // lookup instead of one per component of every entry's path.
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| unreadable(path, e.into()))?;
    let mut listing = rustix::fs::Dir::new(fd).map_err(|e| unreadable(path, e.into()))?;
    let mut names: Vec<Vec<u8>> = Vec::new();
    while let Some(entry) = listing.read() {
        let name = entry.map_err(|e| unreadable(path, e.into()))?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
            if names.len().is_multiple_of(STEP) && !reserve(STEP) {
                return Ok(Scan::left_for_the_walker(old));
            }
        }
    }
    if !reserve(names.len() % STEP) {
        return Ok(Scan::left_for_the_walker(old));
    }
    names.sort();
    let dir = listing.fd().map_err(|e| unreadable(path, e.into()))?;
    // Only an optimisation: a parent tree that cannot be loaded means every file is read again.
    let parent: Option<(BlobId, Tree)> = old.and_then(|id| repo.load_tree(id).ok().map(|t| (*id, t)));
    if parent.as_ref().is_some_and(|(_, t)| !reserve(t.nodes.len())) {
        return Ok(Scan::left_for_the_walker(old));
    }
    let gone = match (&parent, indexed) {
        (Some((_, tree)), Indexed::Ask) => unindexed(repo, tree)?,
        _ => HashSet::new(),
    };
    let mut kept: Vec<(Vec<u8>, PathBuf)> = names
        .into_iter()
        .map(|name| {
            let child = path.join(std::ffi::OsStr::from_bytes(&name));
            (name, child)
        })
        .filter(|(_, child)| !excludes.matches(child))
        .collect();
    let stats = stat_all(dir, &kept);
    let mut entries = Vec::with_capacity(kept.len());
    let mut reused = Vec::new();
    for (i, stat) in stats.iter().enumerate() {
        prefetch.fill(dir, &kept, &stats, parent.as_ref().map(|(_, t)| t), i + prefetch.window);
        let mut opened = prefetch.take(i);
        let mut read = |path: &Path, size: u64| small(path, size, opened.take());
        // The path moves out (the prefetch looks only at names, and only ahead of `i`).
        let child = std::mem::take(&mut kept[i].1);
        let name = &kept[i].0;
        let old = parent.as_ref().and_then(|(_, t)| t.find(name));
        let entry = scan_entry(repo, child, name, old, Some(&gone), &mut read, *stat)?;
        if let Ok(Scanned { todo: Todo::Unchanged, node, .. }) = &entry
            && let NodeKind::File { content } = &node.kind
            && content.len() <= FOLDER_BATCH
        {
            reused.extend_from_slice(content);
        }
        entries.push(entry);
    }
    if let Indexed::Later(still) = indexed {
        still.add(repo, reused)?;
    }
    Ok(Scan { entries, parent, slot: None, left: None })
}

/// Folders with at least this many entries are stat'ed on every core.
pub(super) const PARALLEL_STAT_MIN: usize = 2048;

/// `lstat` of each entry, relative to the open folder, in order. A large folder is cut into
/// stretches for rayon's threads: one folder can hold a third of a tree's files (18,000 of
/// 43,500 in the benchmark's /usr/share/man/man1), and stat'ing it on one thread was 100 ms
/// of an unchanged backup with the other core idle.
fn stat_all(dir: rustix::fd::BorrowedFd<'_>, kept: &[(Vec<u8>, PathBuf)]) -> Vec<rustix::io::Result<Stat>> {
    use rayon::prelude::*;
    let one = |(name, _): &(Vec<u8>, PathBuf)| {
        rustix::fs::statat(dir, std::ffi::OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
    };
    if kept.len() < PARALLEL_STAT_MIN {
        kept.iter().map(one).collect()
    } else {
        kept.par_iter().with_min_len(PARALLEL_STAT_MIN / 4).map(one).collect()
    }
}

/// Blobs of files taken as unchanged, checked against the index [`STILL_BATCH`] at a time (a
/// sorted scan of the index) instead of in one small query per folder, which was the largest
/// part of an unchanged backup after the stats. Almost always every blob is there; if one is
/// not (an index object lost or damaged since the parent snapshot), nothing may be saved
/// from this walk.
#[derive(Default)]
pub(super) struct StillIndexed {
    pending: Mutex<Vec<BlobId>>,
    lost: AtomicBool,
}

/// Blob ids [`StillIndexed`] gathers before it asks the index: 64k ids, 2 MiB.
const STILL_BATCH: usize = 64 * 1024;

impl StillIndexed {
    fn pending(&self) -> Result<std::sync::MutexGuard<'_, Vec<BlobId>>> {
        self.pending.lock().map_err(|_| super::pipeline::internal("a reader thread panicked"))
    }

    fn add(&self, repo: &Repository, ids: Vec<BlobId>) -> Result<()> {
        let full = {
            let mut pending = self.pending()?;
            pending.extend(ids);
            if pending.len() < STILL_BATCH {
                return Ok(());
            }
            std::mem::take(&mut *pending)
        };
        self.check(repo, full)
    }

    fn check(&self, repo: &Repository, mut ids: Vec<BlobId>) -> Result<()> {
        ids.sort_unstable();
        ids.dedup();
        if repo.index()?.lookup_many(BlobType::Data, &ids)?.iter().any(Option::is_none) {
            self.lost.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Checks what is left; true if every blob given was in the index.
    pub(super) fn all_there(&self, repo: &Repository) -> Result<bool> {
        let rest = std::mem::take(&mut *self.pending()?);
        self.check(repo, rest)?;
        Ok(!self.lost.load(Ordering::SeqCst))
    }
}

/// Stats one entry. `Err(path)` inside `Ok` if it vanished since its directory was listed.
/// `gone`, when given, holds the blobs of the parent tree's smaller files that the index no
/// longer has ([`unindexed`]).
pub(super) fn scan_entry(
    repo: &Repository,
    path: PathBuf,
    name: &[u8],
    old: Option<&Node>,
    gone: Option<&HashSet<BlobId>>,
    small: &mut dyn FnMut(&Path, u64) -> Option<FileOutcome>,
    stat: rustix::io::Result<Stat>,
) -> Result<std::result::Result<Scanned, PathBuf>> {
    let st = match stat {
        Ok(st) => st,
        Err(e) if e == Errno::NOENT => return Ok(Err(path)),
        Err(e) => return Err(unreadable(&path, e.into())),
    };
    let ft = FileType::from_raw_mode(st.st_mode);
    let mut node = node_from_stat(name, &st);
    let mut todo = Todo::Nothing;
    if ft == FileType::RegularFile {
        if let Some(old) = unchanged(repo, &node, old, gone)? {
            node.kind = old.kind.clone();
            node.xattrs = old.xattrs.clone();
            todo = Todo::Unchanged;
        } else {
            let known = old.is_some();
            todo = match small(&path, node.size) {
                None => Todo::Read { known },
                Some(FileOutcome::Stored { content, size }) => {
                    node.size = size;
                    node.kind = NodeKind::File { content };
                    Todo::Stored { known }
                }
                Some(FileOutcome::Vanished) => return Ok(Err(path)),
                Some(FileOutcome::Failed(e)) => return Err(e),
            };
        }
    } else if ft == FileType::Directory {
        let old = match old.map(|n| &n.kind) {
            Some(NodeKind::Dir { subtree }) => Some(*subtree),
            _ => None,
        };
        todo = Todo::Dir { old, ahead: None };
    } else if ft == FileType::Symlink {
        let target = std::fs::read_link(&path).map_err(|e| unreadable(&path, e))?;
        node.kind = NodeKind::Symlink { target: target.as_os_str().as_bytes().to_vec() };
    } else if ft == FileType::CharacterDevice {
        node.kind = NodeKind::CharDevice { rdev: u64_of(st.st_rdev) };
    } else if ft == FileType::BlockDevice {
        node.kind = NodeKind::BlockDevice { rdev: u64_of(st.st_rdev) };
    } else if ft == FileType::Socket {
        node.kind = NodeKind::Socket;
    }
    if ft != FileType::Symlink && !matches!(todo, Todo::Unchanged) {
        node.xattrs = read_xattrs(&path)?;
    }
    Ok(Ok(Scanned { node, path, todo }))
}

/// The fields of `lstat` a node keeps, with a placeholder kind and no xattrs.
pub(super) fn node_from_stat(name: &[u8], st: &Stat) -> Node {
    let is_file = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
    let key = ChangeKey::of_stat(st);
    Node {
        name: name.to_vec(),
        kind: NodeKind::Fifo,
        mode: st.st_mode,
        uid: st.st_uid,
        gid: st.st_gid,
        size: if is_file { key.size } else { 0 },
        mtime: key.mtime,
        ctime: key.ctime,
        inode: key.inode,
        device: u64_of(st.st_dev),
        links: u64_of(st.st_nlink),
        xattrs: Vec::new(),
    }
}

/// Size, mtime, ctime and inode: what says a regular file was not changed since a node of it
/// was taken.
#[derive(PartialEq, Eq)]
struct ChangeKey {
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
    inode: u64,
}

impl ChangeKey {
    fn of_node(n: &Node) -> ChangeKey {
        ChangeKey { size: n.size, mtime: n.mtime, ctime: n.ctime, inode: n.inode }
    }

    /// A regular file's, from its `lstat`: what [`node_from_stat`] keeps, without the node.
    fn of_stat(st: &Stat) -> ChangeKey {
        ChangeKey {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: stamp(i64_of(st.st_mtime), i64_of(st.st_mtime_nsec)),
            ctime: stamp(i64_of(st.st_ctime), i64_of(st.st_ctime_nsec)),
            inode: u64_of(st.st_ino),
        }
    }
}

fn stamp(secs: i64, nanos: i64) -> Timestamp {
    Timestamp { secs, nanos: nanos.clamp(0, 999_999_999) as u32 }
}

// `struct stat` field widths differ between architectures; these take any of them.
#[allow(clippy::unnecessary_cast)]
fn u64_of(v: impl Into<u64>) -> u64 {
    v.into()
}

#[allow(clippy::unnecessary_cast)]
fn i64_of<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// Files of at most this many blobs are checked against the index with their whole folder.
const FOLDER_BATCH: usize = 64 * 1024;

/// The blobs of a parent tree's files (those of at most [`FOLDER_BATCH`] blobs) that the index
/// no longer has: almost always none. One sorted batch per folder costs far less than a
/// look-up per blob, which was a third of an unchanged backup.
fn unindexed(repo: &Repository, tree: &Tree) -> Result<HashSet<BlobId>> {
    let ids = tree.file_blobs(FOLDER_BATCH);
    let found = repo.index()?.lookup_many(BlobType::Data, &ids)?;
    Ok(ids.into_iter().zip(found).filter(|(_, e)| e.is_none()).map(|(id, _)| id).collect())
}

/// The parent's node if the file is unchanged and all its blobs are still in the index.
fn unchanged<'a>(
    repo: &Repository,
    now: &Node,
    old: Option<&'a Node>,
    gone: Option<&HashSet<BlobId>>,
) -> Result<Option<&'a Node>> {
    let Some(old) = old else { return Ok(None) };
    let NodeKind::File { content } = &old.kind else { return Ok(None) };
    if ChangeKey::of_node(old) != ChangeKey::of_node(now) {
        return Ok(None);
    }
    let all_indexed = match gone {
        Some(gone) if content.len() <= FOLDER_BATCH => content.iter().all(|id| !gone.contains(id)),
        _ => {
            let index = repo.index()?;
            let mut all = true;
            for window in content.chunks(FOLDER_BATCH) {
                all &= index.lookup_many(BlobType::Data, window)?.iter().all(Option::is_some);
            }
            all
        }
    };
    Ok(all_indexed.then_some(old))
}

fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // Filesystems without xattr support have none to keep.
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push(Xattr { name: name.as_bytes().to_vec(), value }),
            Ok(None) => {}
            Err(e) => return Err(unreadable(path, e)),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
