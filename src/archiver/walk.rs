//! The sorted walk of a source beside the parent snapshot's tree.
//!
//! Folders are scanned by the readers (`scan.rs`), a few subfolders ahead of the walk; entries
//! of each are taken in byte order of their names (the tree's canonical order), whichever
//! reader finished first. A regular file whose size, mtime, ctime and inode equal those of the
//! same path in the parent snapshot, and whose blobs are all still in the index, reuses the
//! parent's chunk list without being read (the index is asked in batches, see
//! `scan::StillIndexed`). An entry that vanishes between listing and reading is left out (that
//! is a consistent state of a live tree); any other read error aborts the backup.

use super::Archiver;
use super::pipeline::internal;
use super::read::{FileOutcome, Pending, Readers};
use super::scan::{Scan, Scanned, Todo, scan_entry};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::tree::{Node, NodeKind, Tree};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::tree::MAX_DEPTH;

/// A directory entry: its node, a node that waits for a reader to store the file's content, or
/// a folder's node that waits for the folder's tree (an [`OpenDirs`] key).
pub(super) enum Slot {
    Ready(Node),
    Reading { node: Node, pending: Pending<FileOutcome>, path: PathBuf, changed: bool },
    Dir { node: Node, key: u64 },
}

/// Folders whose entries were all handed out, while some of their files are still being read.
/// The walk goes on past them instead of waiting: a large file no longer holds the whole walk
/// (and every other reader) until it is stored. They are finished oldest first, which is post
/// order (a folder's subfolders were opened and closed before it), so a folder's subtrees are
/// known when it is finished. Bounded: see [`OPEN_FILES`] and [`OPEN_NODES`].
#[derive(Default)]
pub(super) struct OpenDirs {
    queue: VecDeque<OpenDir>,
    /// Tree ids of finished folders whose parents are not finished yet.
    done: HashMap<u64, BlobId>,
    next_key: u64,
    /// File reads still pending in the queued folders, and entries they hold.
    files: usize,
    nodes: usize,
}

struct OpenDir {
    key: u64,
    slots: Vec<Slot>,
    /// Slots before this one are known to be ready (so a large folder is not scanned again
    /// from its start each time the walk looks).
    ready_upto: usize,
    /// The same folder's tree in the parent snapshot, reused if nothing changed.
    parent: Option<(BlobId, Tree)>,
}

/// The walk finishes folders once this many file reads are pending in open folders (a few in
/// unit tests, so that they take this path)...
const OPEN_FILES: usize = if cfg!(test) { 3 } else { 1024 };
/// ... or once open folders hold this many entries (a node is a few hundred bytes).
const OPEN_NODES: usize = 64 * 1024;

/// File reads among a folder's slots.
fn reading(slots: &[Slot]) -> usize {
    slots.iter().filter(|s| matches!(s, Slot::Reading { .. })).count()
}

impl OpenDirs {
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.done.is_empty()
    }
}

impl OpenDir {
    /// True if every file read of the folder has its outcome (its subfolders are done: they
    /// were ahead of it in the queue).
    fn ready(&mut self) -> bool {
        while let Some(slot) = self.slots.get(self.ready_upto) {
            if let Slot::Reading { pending, .. } = slot
                && !pending.is_ready()
            {
                return false;
            }
            self.ready_upto += 1;
        }
        true
    }
}

impl Archiver<'_, '_> {
    /// Backs up the directory at `path`, scanned by `scan`; returns the [`OpenDirs`] key that
    /// its tree's id will be found under.
    pub(super) fn save_dir(&mut self, path: &Path, scan: Pending<Result<Scan>>, depth: usize) -> Result<u64> {
        if depth > MAX_DEPTH {
            return Err(Error::Usage(format!("{}: directories nested deeper than {MAX_DEPTH}", path.display())));
        }
        // Taking the scan gives its share of the budget of scans ahead back (`slot`). A folder
        // that a scan ahead left (its entries did not fit in that budget) is scanned now.
        let mut scan = scan.wait()?;
        if let Some(old) = scan.left {
            scan = self.readers.scan(path.to_path_buf(), old, false)?.wait()?;
        }
        let Scan { mut entries, parent, slot, left: _ } = scan;
        drop(slot);
        self.summary.dirs += 1;
        // Subfolders are scanned ahead while this one's entries are taken; each is consumed in
        // order when the walk descends into it. Those the readers queued (see
        // `read::ahead::AheadQueue`) are not asked for again; the rest a few at a time, in name
        // order.
        let subdirs: Vec<Subdir> = entries
            .iter_mut()
            .filter_map(|e| match e {
                Ok(Scanned { path, todo: Todo::Dir { old, ahead }, .. }) => Some((path.clone(), *old, ahead.take())),
                _ => None,
            })
            .collect();
        let mut ahead =
            Ahead { todo: subdirs.into_iter(), pending: VecDeque::new(), limit: self.budget.readers.max(1) * 2 };
        ahead.fill(self.readers)?;
        let mut slots = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                Ok(s) => slots.extend(self.take_scanned(s, depth, Some(&mut ahead))?),
                Err(path) => self.warn(format!("{} vanished during the backup; left out", path.display())),
            }
        }
        // Files are read while the walk goes on (into subfolders and past this folder too);
        // their outcomes are taken in name order when the folder is finished, the first
        // failure failing the backup.
        let open = &mut self.open;
        let key = open.next_key;
        open.next_key += 1;
        open.files += reading(&slots);
        open.nodes += slots.len();
        open.queue.push_back(OpenDir { key, slots, ready_upto: 0, parent });
        while let Some(front) = self.open.queue.front_mut()
            && (front.ready() || self.open.files > OPEN_FILES || self.open.nodes > OPEN_NODES)
        {
            self.finish_open_dir()?;
        }
        Ok(key)
    }

    /// Finishes the oldest open folder: takes its files' outcomes and stores its tree.
    fn finish_open_dir(&mut self) -> Result<()> {
        let Some(dir) = self.open.queue.pop_front() else { return Err(internal("no open folder to finish")) };
        self.open.files -= reading(&dir.slots);
        self.open.nodes -= dir.slots.len();
        let mut nodes = Vec::with_capacity(dir.slots.len());
        for slot in dir.slots {
            nodes.extend(self.finish_slot(slot)?);
        }
        let id = match dir.parent {
            // Unchanged: the parent's tree blob, which the index has (it was just loaded).
            Some((id, tree)) if tree.nodes == nodes => id,
            _ => self.save_tree(nodes)?,
        };
        self.open.done.insert(dir.key, id);
        Ok(())
    }

    /// The tree id of the folder opened under `key`, finishing open folders up to it.
    fn dir_tree(&mut self, key: u64) -> Result<BlobId> {
        loop {
            if let Some(id) = self.open.done.remove(&key) {
                return Ok(id);
            }
            self.finish_open_dir()?;
        }
    }

    /// What is left to do for a scanned entry: count it, hand a changed file to the readers,
    /// or descend into a folder (its scan taken from `ahead` if that has it).
    fn take_scanned(&mut self, s: Scanned, depth: usize, ahead: Option<&mut Ahead>) -> Result<Option<Slot>> {
        let Scanned { node, path, todo } = s;
        match todo {
            Todo::Nothing => {}
            Todo::Unchanged => {
                self.summary.files_unchanged += 1;
                self.summary.bytes_total += node.size;
            }
            Todo::Stored { known } => self.count_stored(known, node.size),
            Todo::Read { known } => {
                let pending = self.readers.read_file(path.clone(), node.size)?;
                return Ok(Some(Slot::Reading { node, pending, path, changed: known }));
            }
            Todo::Dir { old, .. } => {
                let scan = match ahead {
                    Some(ahead) => ahead.next(self.readers)?,
                    None => None,
                };
                let scan = match scan {
                    Some((scan, queued)) => {
                        // A scan still queued ahead is asked for now rather than waited for.
                        if queued && !scan.is_ready() {
                            self.readers.claim(&path)?;
                        }
                        scan
                    }
                    None => self.readers.scan(path.clone(), old, false)?,
                };
                let key = self.save_dir(&path, scan, depth + 1)?;
                return Ok(Some(Slot::Dir { node, key }));
            }
        }
        Ok(Some(Slot::Ready(node)))
    }

    /// The node of an entry once its file (if any) is stored; `None` if the file vanished.
    pub(super) fn finish_slot(&mut self, slot: Slot) -> Result<Option<Node>> {
        let (mut node, pending, path, changed) = match slot {
            Slot::Ready(node) => return Ok(Some(node)),
            Slot::Dir { mut node, key } => {
                node.kind = NodeKind::Dir { subtree: self.dir_tree(key)? };
                return Ok(Some(node));
            }
            Slot::Reading { node, pending, path, changed } => (node, pending, path, changed),
        };
        match pending.wait() {
            FileOutcome::Stored { content, size } => {
                node.size = size;
                node.kind = NodeKind::File { content };
                self.count_stored(changed, size);
                Ok(Some(node))
            }
            FileOutcome::Vanished => {
                self.warn(format!("{} vanished during the backup; left out", path.display()));
                Ok(None)
            }
            FileOutcome::Failed(e) => Err(e),
        }
    }

    fn count_stored(&mut self, known: bool, size: u64) {
        if known {
            self.summary.files_changed += 1
        } else {
            self.summary.files_new += 1
        }
        self.summary.bytes_total += size;
        self.summary.bytes_read += size;
    }

    /// Encodes a directory's nodes as a tree blob and queues it if new.
    pub(super) fn save_tree(&mut self, nodes: Vec<Node>) -> Result<BlobId> {
        let tree = Tree::canonical(nodes).map_err(|e| internal(&e.to_string()))?;
        let bytes = tree.encode();
        if bytes.len() as u64 > crate::tree::MAX_TREE_LEN {
            return Err(tree_too_large());
        }
        let id = self.repo.key().blob_id(&bytes);
        self.store_tree(id, bytes)?;
        Ok(id)
    }

    /// A source given on the command line: `None` if it vanished.
    pub(super) fn save_entry(&mut self, path: PathBuf, name: &[u8], old: Option<&Node>) -> Result<Option<Slot>> {
        let stat = rustix::fs::lstat(&path);
        match scan_entry(self.repo, path, name, old, None, &mut |_, _| None, stat)? {
            Ok(s) => self.take_scanned(s, 0, None),
            Err(path) => {
                self.warn(format!("{} vanished during the backup; left out", path.display()));
                Ok(None)
            }
        }
    }
}

/// A subfolder to descend into: its path, its tree in the parent snapshot, and its scan if the
/// readers queued it.
type Subdir = (PathBuf, Option<BlobId>, Option<Pending<Result<Scan>>>);

/// Scans of a folder's subfolders asked for ahead of the walk, at most `limit` at a time (those
/// not queued by the readers, see `read::ahead::AheadQueue`); each with whether the readers
/// queued it.
struct Ahead {
    todo: std::vec::IntoIter<Subdir>,
    pending: VecDeque<(Pending<Result<Scan>>, bool)>,
    limit: usize,
}

impl Ahead {
    fn fill(&mut self, readers: &Readers<'_>) -> Result<()> {
        while self.pending.len() < self.limit
            && let Some((path, old, started)) = self.todo.next()
        {
            let scan = match started {
                Some(scan) => (scan, true),
                None => (readers.scan(path, old, true)?, false),
            };
            self.pending.push_back(scan);
        }
        Ok(())
    }

    /// The scan of the next subfolder in name order.
    fn next(&mut self, readers: &Readers<'_>) -> Result<Option<(Pending<Result<Scan>>, bool)>> {
        let next = self.pending.pop_front();
        self.fill(readers)?;
        Ok(next)
    }
}

/// Chunks one file may have: its chunk list (32 bytes a chunk) must fit in its folder's tree
/// blob, with room left for the folder's other entries. Streams stop at this many chunks
/// instead of reading on to a failure at the end.
pub(super) const MAX_FILE_CHUNKS: usize = (crate::tree::MAX_TREE_LEN / 32) as usize - 64 * 1024;

/// A folder's tree blob would exceed `MAX_TREE_LEN`: too many entries, or a file of too many
/// chunks (8 GiB of one stream at the default 4 KiB chunks).
pub(super) fn tree_too_large() -> Error {
    Error::Usage(format!(
        "a folder's entries and chunk lists exceed one tree blob ({} MiB): for a stream over a few \
         GiB use larger chunks (--stream-chunk-size 64K), for a folder of hundreds of thousands of \
         files back up its subfolders",
        crate::tree::MAX_TREE_LEN >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BlobId, Id};
    use crate::tree::{Node, NodeKind, Tree};

    #[test]
    fn a_file_of_the_most_chunks_fits_its_tree_with_room_to_spare() {
        let mut node = Node::bare(b"db.sql", NodeKind::File { content: vec![BlobId(Id([7; 32])); MAX_FILE_CHUNKS] });
        node.size = u64::MAX;
        let mut nodes = vec![node];
        // Room for a few thousand ordinary neighbours.
        nodes.extend((0..4000u32).map(|i| Node::bare(format!("f{i}").as_bytes(), NodeKind::File { content: vec![] })));
        let bytes = Tree::canonical(nodes).unwrap().encode();
        assert!((bytes.len() as u64) < crate::tree::MAX_TREE_LEN, "{} bytes", bytes.len());
    }
}
