//! Restore planning: walk the snapshot's trees from the root with an explicit stack (depth
//! limited), create directories and the entries that hold no data as we go, and turn each
//! regular file's blobs into reads grouped by pack, sorted by offset and coalesced.
//!
//! The walk hands out [`Batch`]es of bounded size, so memory follows the limits, not the size of
//! the snapshot. A file enters a batch only once every blob of it is known to the index; a file
//! that cannot be planned is listed as failed and never created. Hard links (same device and
//! inode, `links > 1`) are linked to the first path instead of receiving data again.

use super::RestoreSummary;
use super::write;
use crate::error::{Error, FormatError, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, PackId};
use crate::index::IndexEntry;
use crate::tree::{Node, NodeKind, Tree};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// What planning reads: trees, and where data blobs are stored.
pub(crate) trait TreeSource {
    fn tree(&self, id: &BlobId) -> Result<Tree>;
    fn locate_data(&self, id: &BlobId) -> Result<Option<IndexEntry>>;
    /// Where many data blobs are, in the order of `ids` (the index may batch the look-ups).
    fn locate_data_many(&self, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        ids.iter().map(|id| self.locate_data(id)).collect()
    }
}

/// Sizes that bound memory and shape reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deeper nesting than this is refused (a hostile or cyclic tree).
    pub max_depth: usize,
    /// Blobs closer than this in a pack are read with one request.
    pub max_gap: u64,
    /// A coalesced read grows no longer than this (one blob alone may be longer).
    pub max_range: u64,
    /// A batch ends once it holds this many blob uses...
    pub batch_blobs: usize,
    /// ...or this many files and other entries.
    pub batch_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: crate::tree::MAX_DEPTH,
            max_gap: 1 << 20,
            max_range: 4 << 20,
            batch_blobs: 1 << 16,
            batch_entries: 1 << 13,
        }
    }
}

/// One blob to read once and write at every place that needs it.
#[derive(Debug)]
pub(crate) struct BlobUse {
    pub id: BlobId,
    pub entry: IndexEntry,
    /// (index into [`Batch::files`], offset in that file).
    pub targets: Vec<(usize, u64)>,
}

/// One read request: bytes `start..end` of a pack, holding `blobs` in offset order.
#[derive(Debug)]
pub(crate) struct ReadRange {
    pub start: u64,
    pub end: u64,
    pub blobs: Vec<BlobUse>,
}

#[derive(Debug)]
pub(crate) struct PackPlan {
    pub pack: PackId,
    pub ranges: Vec<ReadRange>,
}

/// A regular file created (empty) during planning, waiting for its data.
#[derive(Debug)]
pub(crate) struct PlannedFile {
    pub path: PathBuf,
    /// Content length: the sum of its blobs' plaintext lengths.
    pub len: u64,
    /// Hard links made to it in this batch; removed with it if it fails.
    pub links: Vec<PathBuf>,
    pub link_key: Option<(u64, u64)>,
    /// Created during planning (a hard-link origin); other files are created when first written.
    pub created: bool,
    /// Its node, content taken out: the attributes to apply.
    pub node: Node,
}

/// Files to fill, the reads that fill them, and the other entries of the same stretch of the
/// walk whose attributes are applied when the batch is done.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub files: Vec<PlannedFile>,
    pub packs: Vec<PackPlan>,
    pub meta: Vec<(PathBuf, Node)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    InBatch(usize),
    /// In the batch handed out last, being restored while the next one is planned.
    Pending,
    Restored,
    Failed,
}

struct LinkOrigin {
    path: PathBuf,
    state: LinkState,
    /// Which content the first path had: a later path with other content is restored on its
    /// own rather than linked, so neither content is lost.
    content: blake3::Hash,
}

fn content_digest(content: &[BlobId]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    content.iter().for_each(|id| {
        h.update(id.as_bytes());
    });
    h.finalize()
}

struct Frame {
    nodes: std::vec::IntoIter<Node>,
    /// Index entries of the data blobs of this tree's files, looked up together on entry.
    found: HashMap<BlobId, Option<IndexEntry>>,
    path: PathBuf,
    depth: usize,
}

type Located = std::result::Result<Vec<(BlobId, IndexEntry)>, String>;

pub(crate) struct Walker<'a> {
    src: &'a dyn TreeSource,
    limits: Limits,
    stack: Vec<Frame>,
    links: HashMap<(u64, u64), LinkOrigin>,
    /// Origins in the batch being planned (their state is `InBatch`).
    origins_in_batch: Vec<(u64, u64)>,
    /// Links made to `Pending` origins, kept or removed when their batch settles.
    pending_links: Vec<((u64, u64), PathBuf)>,
    /// Every directory created, with its depth: attributes go on last, deepest first.
    pub dirs: Vec<(usize, PathBuf, Node)>,
    files: Vec<PlannedFile>,
    packs: BTreeMap<PackId, BTreeMap<(u32, BlobId), BlobUse>>,
    uses: usize,
    meta: Vec<(PathBuf, Node)>,
    may_create_devices: bool,
}

impl<'a> Walker<'a> {
    /// Starts a walk of `root` (already loaded) into `target` (already existing).
    pub fn new(src: &'a dyn TreeSource, limits: Limits, target: PathBuf, root: Tree) -> Self {
        Walker {
            src,
            limits,
            stack: vec![Frame { nodes: root.nodes.into_iter(), found: HashMap::new(), path: target, depth: 0 }],
            links: HashMap::new(),
            origins_in_batch: Vec::new(),
            pending_links: Vec::new(),
            dirs: Vec::new(),
            files: Vec::new(),
            packs: BTreeMap::new(),
            uses: 0,
            meta: Vec::new(),
            may_create_devices: rustix::process::geteuid().is_root(),
        }
    }

    /// Walks on until a batch is full or the walk is done; `None` once nothing is left. Only an
    /// error that makes the whole restore meaningless (a tree nested too deep, an unusable
    /// index) is returned; anything else is recorded in `summary.failed`.
    pub fn next_batch(&mut self, summary: &mut RestoreSummary) -> Result<Option<Batch>> {
        // The last batch handed out may still be running: its origins are no longer in this one.
        for key in std::mem::take(&mut self.origins_in_batch) {
            if let Some(origin) = self.links.get_mut(&key) {
                origin.state = LinkState::Pending;
            }
        }
        while self.uses < self.limits.batch_blobs && self.files.len() + self.meta.len() < self.limits.batch_entries {
            let Some(frame) = self.stack.last_mut() else { break };
            let Some(node) = frame.nodes.next() else {
                self.stack.pop();
                continue;
            };
            let depth = frame.depth + 1;
            match write::child_path(&frame.path, &node.name) {
                Ok(path) => self.visit(path, depth, node, summary)?,
                Err(reason) => summary.failed.push((frame.path.clone(), reason)),
            }
        }
        if self.files.is_empty() && self.meta.is_empty() && self.stack.is_empty() {
            return Ok(None);
        }
        self.uses = 0;
        let packs = std::mem::take(&mut self.packs)
            .into_iter()
            .map(|(pack, blobs)| PackPlan {
                pack,
                ranges: coalesce(blobs.into_values(), self.limits.max_gap, self.limits.max_range),
            })
            .collect();
        Ok(Some(Batch { files: std::mem::take(&mut self.files), packs, meta: std::mem::take(&mut self.meta) }))
    }

    /// Records how the files of a finished batch ended, for hard links still to come, and keeps
    /// or removes the links made to them while they were being restored.
    pub fn settle(&mut self, outcomes: Vec<((u64, u64), bool)>, summary: &mut RestoreSummary) {
        for (key, restored) in outcomes {
            if let Some(origin) = self.links.get_mut(&key) {
                origin.state = if restored { LinkState::Restored } else { LinkState::Failed };
            }
        }
        let links = std::mem::take(&mut self.pending_links);
        for (key, path) in links {
            match self.links.get(&key) {
                Some(LinkOrigin { state: LinkState::Pending, .. }) => self.pending_links.push((key, path)),
                Some(LinkOrigin { state: LinkState::Failed, path: origin, .. }) => {
                    let reason = format!("hard link to {}, which could not be restored", origin.display());
                    let _ = std::fs::remove_file(&path);
                    summary.failed.push((path, reason));
                }
                _ => summary.files += 1,
            }
        }
    }

    fn visit(&mut self, path: PathBuf, depth: usize, mut node: Node, summary: &mut RestoreSummary) -> Result<()> {
        match &mut node.kind {
            NodeKind::Dir { subtree } => {
                let id = *subtree;
                self.enter_dir(path, depth, id, node, summary)
            }
            NodeKind::File { content } => {
                let content = std::mem::take(content);
                self.plan_file(path, content, node, summary)
            }
            // A socket belongs to the server that made it; it recreates its own.
            NodeKind::Socket => {
                summary.other += 1;
                Ok(())
            }
            _ => {
                self.create_special(path, node, summary);
                Ok(())
            }
        }
    }

    fn enter_dir(
        &mut self,
        path: PathBuf,
        depth: usize,
        id: BlobId,
        node: Node,
        summary: &mut RestoreSummary,
    ) -> Result<()> {
        if depth > self.limits.max_depth {
            let problem = FormatError::TooLarge {
                what: "tree nesting depth",
                size: depth as u64,
                limit: self.limits.max_depth as u64,
            };
            return Err(Error::corrupt(ObjectRef::new(ObjectKind::Tree, id.to_hex()), problem));
        }
        // Load first: a directory whose listing is unreadable is reported, not left empty.
        let tree = match self.src.tree(&id) {
            Ok(tree) => tree,
            Err(e) => {
                summary.failed.push((path, e.to_string()));
                return Ok(());
            }
        };
        if let Err(reason) = write::create_dir(&path) {
            summary.failed.push((path, reason));
            return Ok(());
        }
        summary.dirs += 1;
        let found = look_up_files(self.src, &tree)?;
        self.stack.push(Frame { nodes: tree.nodes.into_iter(), found, path: path.clone(), depth });
        self.dirs.push((depth, path, node));
        Ok(())
    }

    fn create_special(&mut self, path: PathBuf, node: Node, summary: &mut RestoreSummary) {
        let created = match &node.kind {
            NodeKind::Symlink { target } => write::create_symlink(&path, target),
            NodeKind::Fifo => write::create_fifo(&path),
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } if self.may_create_devices => {
                write::create_device(&path, matches!(node.kind, NodeKind::BlockDevice { .. }), *rdev)
            }
            NodeKind::CharDevice { .. } | NodeKind::BlockDevice { .. } => {
                eprintln!(
                    "cairn: warning: {}: device nodes are restored only when running as root; skipped",
                    path.display()
                );
                return;
            }
            NodeKind::File { .. } | NodeKind::Dir { .. } | NodeKind::Socket => return,
        };
        match created {
            Ok(()) => {
                summary.other += 1;
                self.meta.push((path, node));
            }
            Err(reason) => summary.failed.push((path, reason)),
        }
    }

    fn plan_file(
        &mut self,
        path: PathBuf,
        content: Vec<BlobId>,
        node: Node,
        summary: &mut RestoreSummary,
    ) -> Result<()> {
        let key = (node.links > 1 && node.inode != 0).then_some((node.device, node.inode));
        let digest = content_digest(&content);
        if let Some(key) = key
            && self.links.get(&key).is_some_and(|origin| origin.content == digest)
        {
            self.link_to_origin(path, key, summary);
            return Ok(());
        }
        // Only the first path with this content becomes the origin of later links; it is created
        // now, for them to link to. Other files are created by the worker that first writes them
        // (or when the batch ends, if they hold no data), saving an open and close each.
        let origin = key.filter(|k| !self.links.contains_key(k));
        let located = self.locate(&content)?;
        let created = match origin {
            Some(_) => located.and_then(|blobs| write::create_file(&path).map(|()| blobs)),
            None => located,
        };
        let blobs = match created {
            Ok(blobs) => blobs,
            Err(reason) => {
                summary.failed.push((path.clone(), reason));
                if let Some(key) = key {
                    self.links.entry(key).or_insert(LinkOrigin { path, state: LinkState::Failed, content: digest });
                }
                return Ok(());
            }
        };
        let idx = self.files.len();
        let mut offset = 0u64;
        for (id, entry) in blobs {
            // Keyed by offset *and* id: two ids claiming one place are read and verified apart.
            let per_pack = self.packs.entry(entry.pack).or_default();
            let blob_use =
                per_pack.entry((entry.offset, id)).or_insert_with(|| BlobUse { id, entry, targets: Vec::new() });
            blob_use.targets.push((idx, offset));
            offset += u64::from(entry.raw_length);
            self.uses += 1;
        }
        if let Some(key) = origin {
            self.links.insert(key, LinkOrigin { path: path.clone(), state: LinkState::InBatch(idx), content: digest });
            self.origins_in_batch.push(key);
        }
        let created = origin.is_some();
        self.files.push(PlannedFile { path, len: offset, links: Vec::new(), link_key: origin, created, node });
        Ok(())
    }

    /// Index entries for every blob of a file, or why the file cannot be restored.
    fn locate(&self, content: &[BlobId]) -> Result<Located> {
        let mut out = Vec::with_capacity(content.len());
        let found = self.stack.last().map(|f| &f.found);
        for id in content {
            let entry = match found.and_then(|f| f.get(id)) {
                Some(entry) => *entry,
                None => self.src.locate_data(id)?,
            };
            match entry {
                Some(entry) => out.push((*id, entry)),
                None => return Ok(Err(format!("data blob {} is not in the index; run `cairn check`", id.to_hex()))),
            }
        }
        Ok(Ok(out))
    }

    fn link_to_origin(&mut self, path: PathBuf, key: (u64, u64), summary: &mut RestoreSummary) {
        let Some(origin) = self.links.get(&key) else { return };
        let state = origin.state;
        let linked = match state {
            LinkState::Failed => Err(format!("hard link to {}, which could not be restored", origin.path.display())),
            LinkState::InBatch(_) | LinkState::Pending | LinkState::Restored => write::hard_link(&origin.path, &path),
        };
        match (linked, state) {
            (Err(reason), _) => summary.failed.push((path, reason)),
            (Ok(()), LinkState::Pending) => self.pending_links.push((key, path)),
            (Ok(()), LinkState::InBatch(idx)) => {
                if let Some(file) = self.files.get_mut(idx) {
                    file.links.push(path);
                }
            }
            (Ok(()), _) => summary.files += 1,
        }
    }
}

/// Looks up the data blobs of every file in a tree in one sorted batch, which the index cache
/// answers much faster than one look-up at a time. Memory follows the tree's own size.
fn look_up_files(src: &dyn TreeSource, tree: &Tree) -> Result<HashMap<BlobId, Option<IndexEntry>>> {
    // Every file's blobs, large ones too: a file is planned from this map, blob by blob.
    let ids = tree.file_blobs(usize::MAX);
    let entries = src.locate_data_many(&ids)?;
    Ok(ids.into_iter().zip(entries).collect())
}

/// Merges blobs (sorted by offset) into reads: a blob joins the previous read when the gap is
/// below `max_gap` and the read stays within `max_range`.
pub(crate) fn coalesce(blobs: impl IntoIterator<Item = BlobUse>, max_gap: u64, max_range: u64) -> Vec<ReadRange> {
    let mut out: Vec<ReadRange> = Vec::new();
    for blob in blobs {
        let start = u64::from(blob.entry.offset);
        let end = start + u64::from(blob.entry.length);
        if let Some(last) = out.last_mut()
            && start <= last.end.saturating_add(max_gap)
            && end.max(last.end) - last.start <= max_range
        {
            last.end = last.end.max(end);
            last.blobs.push(blob);
            continue;
        }
        out.push(ReadRange { start, end, blobs: vec![blob] });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn blob(n: u8, offset: u32, length: u32) -> BlobUse {
        let entry = IndexEntry { pack: PackId(Id([1; 32])), offset, length, raw_offset: 0, raw_length: length };
        BlobUse { id: BlobId(Id([n; 32])), entry, targets: vec![(0, 0)] }
    }

    #[test]
    fn coalesces_near_blobs_and_splits_far_or_long_ones() {
        let blobs = vec![blob(1, 0, 100), blob(2, 100, 50), blob(3, 200, 10), blob(4, 5000, 10), blob(5, 5010, 900)];
        let ranges = coalesce(blobs, 100, 1000);
        let shape: Vec<(u64, u64, usize)> = ranges.iter().map(|r| (r.start, r.end, r.blobs.len())).collect();
        assert_eq!(shape, vec![(0, 210, 3), (5000, 5910, 2)]);
        // A cap on the read length splits even adjacent blobs; a single blob may exceed it.
        let ranges = coalesce(vec![blob(1, 0, 600), blob(2, 600, 600), blob(3, 1200, 5000)], 100, 1000);
        let shape: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(shape, vec![(0, 600), (600, 1200), (1200, 6200)]);
    }

    #[test]
    fn overlapping_claims_stay_in_one_read() {
        let ranges = coalesce(vec![blob(1, 0, 100), blob(2, 50, 100)], 0, 1000);
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].start, ranges[0].end), (0, 150));
    }
}
