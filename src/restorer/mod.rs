//! Restore: recreate a snapshot's tree in a target folder, and `dump` one file's content.
//!
//! Three stages per batch (restic's restorer): `plan.rs` walks the trees, creates directories
//! and groups every file's blobs by pack; here N workers each take a pack, read its coalesced
//! ranges, open (authenticate, decompress) each bundle once, re-hash every blob taken from it
//! and only then write its bytes at each place that needs them; `write.rs` removes files that
//! could not be completed and applies attributes, directories last and deepest first. A damaged
//! blob or unreadable pack fails only the files that need it: they are removed and listed in
//! [`RestoreSummary::failed`].

mod dump;
mod plan;
mod write;

use crate::backend::ReadBuf;
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::{BlobIndex, IndexEntry};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};
use plan::{Batch, Limits, PackPlan, ReadRange, TreeSource, Walker};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The folder to restore into; created if missing.
    pub target: PathBuf,
    /// Packs read and written in parallel.
    pub workers: usize,
    /// Restore owners (uid, gid); needs root to give files to other users.
    pub set_owner: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { target: PathBuf::from("."), workers: 4, set_owner: rustix::process::geteuid().is_root() }
    }
}

/// What a restore did. `failed` lists every entry that is missing from the target or whose
/// attributes could not be set, each with the reason (naming the blob or pack at fault); a
/// caller should treat a non-empty list as an incomplete restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Regular files, hard links included.
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, fifos, devices and (skipped) sockets.
    pub other: u64,
    /// Content bytes of the regular files restored, each inode once.
    pub bytes: u64,
    pub failed: Vec<(PathBuf, String)>,
}

/// What the workers read: ranges of packs, and data blobs opened from their bundles' sealed
/// bytes.
pub(crate) trait PackSource: Sync {
    /// Reads a range of a pack into `buf` (a worker's, kept from one read to the next).
    fn read_range(&self, pack: &PackId, range: Range<u64>, buf: &mut ReadBuf) -> Result<()>;
    /// Authenticates and decompresses the bundle holding data blob `id` (its sealed bytes are
    /// `sealed`) into `out`. Nothing in it is verified yet: take blobs with
    /// [`data_in`](Self::data_in).
    fn open_data_bundle(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8], out: &mut Vec<u8>) -> Result<()>;
    /// Data blob `id`'s bytes (exactly `entry.raw_length` of them) in its opened bundle, only if
    /// they hash to `id`.
    fn data_in<'b>(&self, id: &BlobId, entry: &IndexEntry, bundle: &'b [u8]) -> Result<&'b [u8]>;
}

/// The bundle a worker opened last (see [`crate::blob::LastBundle`]), by pack and offset.
pub(crate) type LastBundle = crate::blob::LastBundle<(PackId, u32)>;

/// Blob `id`'s verified bytes from `bundle`, which opens the blob's bundle from `sealed` unless
/// it is the one open.
fn take_blob<'b>(
    src: &dyn PackSource,
    bundle: &'b mut LastBundle,
    id: &BlobId,
    entry: &IndexEntry,
    sealed: &[u8],
) -> Result<&'b [u8]> {
    let plain = bundle.get((entry.pack, entry.offset), |out| src.open_data_bundle(id, entry, sealed, out))?;
    src.data_in(id, entry, plain)
}

impl TreeSource for Repository {
    fn tree(&self, id: &BlobId) -> Result<Tree> {
        self.load_tree(id)
    }
    fn locate_data(&self, id: &BlobId) -> Result<Option<IndexEntry>> {
        self.index()?.lookup(BlobType::Data, id)
    }
    fn locate_data_many(&self, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        self.index()?.lookup_many(BlobType::Data, ids)
    }
}

impl PackSource for Repository {
    fn read_range(&self, pack: &PackId, range: Range<u64>, buf: &mut ReadBuf) -> Result<()> {
        self.read_pack_range_into(pack, range, buf)
    }
    fn open_data_bundle(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.open_bundle(BlobType::Data, id, entry, sealed, out)
    }
    fn data_in<'b>(&self, id: &BlobId, entry: &IndexEntry, bundle: &'b [u8]) -> Result<&'b [u8]> {
        self.blob_in(BlobType::Data, id, entry, bundle)
    }
}

/// Restores the tree `root` (a snapshot's root tree id) into `opts.target`.
///
/// Errors only when the restore cannot proceed at all (target not creatable, root tree
/// unreadable, trees nested deeper than 1024, index unusable); damage confined to some files is
/// reported in the summary instead.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreSummary> {
    restore_from(repo, repo, root, opts, Limits::default())
}

fn restore_from(
    trees: &dyn TreeSource,
    packs: &dyn PackSource,
    root: &BlobId,
    opts: &RestoreOptions,
    limits: Limits,
) -> Result<RestoreSummary> {
    write::create_target(&opts.target)?;
    let root_tree = trees.tree(root)?;
    let mut summary = RestoreSummary::default();
    let mut walker = Walker::new(trees, limits, opts.target.clone(), root_tree);
    // Each batch is restored while the next one is planned (trees read, entries created).
    let mut next = walker.next_batch(&mut summary)?;
    while let Some(batch) = next {
        let progress = write::Progress::new(&batch, opts.set_owner);
        let (failures, planned) = std::thread::scope(|s| {
            let running = s.spawn(|| execute(packs, &batch, &progress, opts.workers));
            let planned = walker.next_batch(&mut summary);
            (running.join(), planned)
        });
        let failures =
            failures.map_err(|_| Error::io("restoring", std::io::Error::other("a restore worker panicked")))?;
        let settled = write::finish_batch(batch, failures, progress, &mut summary);
        walker.settle(settled, &mut summary);
        next = planned?;
    }
    // Directories last, deepest first: creating and touching children moves a parent's mtime,
    // and a read-only directory mode would stop us writing into it.
    let mut dirs = std::mem::take(&mut walker.dirs);
    dirs.sort_by_key(|(depth, _, _)| std::cmp::Reverse(*depth));
    for (_, path, node) in &dirs {
        write::apply_attributes(path, node, opts.set_owner, &mut summary);
    }
    // A restore is done when what it wrote is on disk: it is what one runs on the bad day, and
    // a crash or power cut just after it must not take the restored files with it.
    write::sync_target(&opts.target)?;
    Ok(summary)
}

/// Fills the files of a batch: `workers` threads take packs from a shared counter. Returns, per
/// file, the first reason it failed.
fn execute(src: &dyn PackSource, batch: &Batch, progress: &write::Progress, workers: usize) -> Vec<Option<String>> {
    let failures: Vec<OnceLock<String>> = batch.files.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let threads = workers.clamp(1, batch.packs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut writer = write::FileWriter::new(&batch.files, progress);
                let mut read = ReadBuf::default();
                while let Some(pack) = batch.packs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    restore_pack(src, pack, &mut read, &mut writer, &failures);
                    read.release_over(KEEP_READ);
                }
            });
        }
    });
    failures.into_iter().map(OnceLock::into_inner).collect()
}

fn fail(failures: &[OnceLock<String>], file: usize, reason: &str) {
    if let Some(slot) = failures.get(file) {
        // The first reason is the one reported; later ones follow from it.
        let _ = slot.set(reason.to_string());
    }
}

fn fail_all(failures: &[OnceLock<String>], range: &ReadRange, reason: &str) {
    for blob in &range.blobs {
        for (file, _) in &blob.targets {
            fail(failures, *file, reason);
        }
    }
}

/// A worker's read buffer is kept up to this size. A restore's reads are at most 4 MiB
/// ([`Limits::max_range`]) unless one blob is longer; a dump's are a run's blobs in one pack, at
/// most 4 MiB of sealed bytes and the gaps between them.
pub(crate) const KEEP_READ: usize = 8 << 20;

/// Reads one pack range by range into `read`; at most one range of sealed bytes and one opened
/// bundle are in memory at a time.
fn restore_pack(
    src: &dyn PackSource,
    pack: &PackPlan,
    read: &mut ReadBuf,
    writer: &mut write::FileWriter<'_>,
    failures: &[OnceLock<String>],
) {
    let mut bundle = LastBundle::default();
    for range in &pack.ranges {
        if let Err(e) = src.read_range(&pack.pack, range.start..range.end, read) {
            fail_all(failures, range, &e.to_string());
            continue;
        }
        let bytes = read.bytes();
        for blob in &range.blobs {
            let alive = || blob.targets.iter().any(|(file, _)| failures.get(*file).is_some_and(|f| f.get().is_none()));
            if !alive() {
                continue;
            }
            let plain = match open_in_range(src, &mut bundle, &pack.pack, range, bytes, blob) {
                Ok(plain) => plain,
                Err(reason) => {
                    blob.targets.iter().for_each(|(file, _)| fail(failures, *file, &reason));
                    continue;
                }
            };
            // An all-zero blob stays a hole (the writer skips it): the file gets its length last.
            for (file, offset) in &blob.targets {
                if failures.get(*file).is_some_and(|f| f.get().is_none())
                    && let Err(reason) = writer.write(*file, *offset, plain)
                {
                    fail(failures, *file, &reason);
                }
            }
        }
    }
}

/// Cuts one blob's bundle out of a read range and takes the blob from it (opening the bundle
/// unless it is the one open); the blob has the length the index promised, since the file
/// offsets of the blobs after it were computed from it.
fn open_in_range<'b>(
    src: &dyn PackSource,
    bundle: &'b mut LastBundle,
    pack: &PackId,
    range: &ReadRange,
    bytes: &[u8],
    blob: &plan::BlobUse,
) -> Result<&'b [u8], String> {
    let start = u64::from(blob.entry.offset) - range.start;
    let end = start + u64::from(blob.entry.length);
    let sealed =
        usize::try_from(start).ok().zip(usize::try_from(end).ok()).and_then(|(s, e)| bytes.get(s..e)).ok_or_else(
            || format!("pack {} is shorter than the index says (blob {})", pack.to_hex(), blob.id.to_hex()),
        )?;
    take_blob(src, bundle, &blob.id, &blob.entry, sealed).map_err(|e| e.to_string())
}

/// Finds the node at `path` ("db.sql", "/home/x/file", components separated by '/') below
/// `root`. Empty and `.` components are skipped; `..` is refused.
pub fn find_node(repo: &Repository, root: &BlobId, path: &[u8]) -> Result<Node> {
    find_node_in(repo, root, path)
}

fn find_node_in(trees: &dyn TreeSource, root: &BlobId, path: &[u8]) -> Result<Node> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    if parts.contains(&&b".."[..]) {
        return Err(Error::Usage(format!("path {} must not contain `..`", shown())));
    }
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Error::Usage(format!("path {:?} names the snapshot's root, not an entry in it", shown())));
    };
    let mut tree = trees.tree(root)?;
    for (i, part) in dirs.iter().enumerate() {
        let walked = || String::from_utf8_lossy(&parts[..=i].join(&b'/')).into_owned();
        match tree.find(part).map(|n| &n.kind) {
            Some(NodeKind::Dir { subtree }) => {
                let id = *subtree;
                tree = trees.tree(&id)?;
            }
            Some(_) => return Err(Error::Usage(format!("{} in the snapshot is not a directory", walked()))),
            None => return Err(Error::Usage(format!("{} not found in the snapshot", walked()))),
        }
    }
    let pos = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(last));
    match pos {
        Ok(i) => Ok(tree.nodes.swap_remove(i)),
        Err(_) => Err(Error::Usage(format!("{} not found in the snapshot", shown()))),
    }
}

/// Writes a file node's content to `out`, each blob verified before any of its bytes are
/// written (reading, verifying and writing overlap; see `dump.rs`). Errors if the node is not a
/// regular file or a blob is missing or damaged; `out` then holds a prefix of the content.
pub fn dump(repo: &Repository, node: &Node, out: &mut dyn std::io::Write) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    dump::dump_from(repo, repo, node, out, workers)
}

#[cfg(test)]
mod tests;
