//! The tree walk: every snapshot's trees depth first, with an explicit stack (no recursion).
//! Each tree blob must be in the index and load (which verifies it); each file's data blobs must
//! be in the index, in a pack that is stored and not lost. The walk records, for every damaged
//! object, the snapshot paths that need it. A tree is remembered with whether anything below it
//! is damaged: clean ones are never walked twice, tainted ones once more per snapshot.

use super::damage::{BLOB_UNINDEXED, Damage, PACK_MISSING, TREE_DAMAGED, Target};
use super::{Checker, damage_text};
use crate::blob::BlobType;
use crate::error::{ObjectKind, ObjectRef, Result};
use crate::id::BlobId;
use crate::index::IndexEntry;
use crate::repo::blob_kind;
use crate::tree::{Node, NodeKind, Tree};
use std::collections::{HashMap, HashSet};

/// Blobs of one file looked up together, at most: a window of a large file's chunk list.
const FILE_BATCH: usize = 64 * 1024;

/// Index entries of the data blobs of one tree's files, looked up together.
type Found = HashMap<BlobId, Option<IndexEntry>>;

/// Where the walk found a blob: readable at an index entry, or lost with a damaged object.
enum Located {
    At(IndexEntry),
    Lost(Target),
}

/// One tree being walked: its remaining nodes, and whether anything below it is damaged.
struct Frame {
    tree: BlobId,
    path: String,
    nodes: std::vec::IntoIter<Node>,
    tainted: bool,
    found: Found,
}

enum Enter {
    Skip { tainted: bool },
    Walk(Frame),
}

impl Checker<'_> {
    /// Walks one snapshot's trees depth first, without recursion. A tree already walked is
    /// skipped unless something below it is damaged; then it is walked again, once per
    /// snapshot, to name this snapshot's paths.
    pub(super) fn walk_snapshot(&mut self, snap: usize, root: BlobId) -> Result<()> {
        let mut walked_here: HashSet<BlobId> = HashSet::new();
        let mut stack = Vec::new();
        if let Enter::Walk(frame) = self.enter(snap, root, "/".into(), &walked_here)? {
            stack.push(frame);
        }
        while let Some(top) = stack.last_mut() {
            let Some(node) = top.nodes.next() else {
                let (tree, tainted) = (top.tree, top.tainted);
                stack.pop();
                self.trees.insert(tree, tainted);
                if tainted {
                    walked_here.insert(tree);
                    if let Some(parent) = stack.last_mut() {
                        parent.tainted = true;
                    }
                }
                continue;
            };
            let path = child_path(&top.path, &node.name);
            match node.kind {
                NodeKind::Dir { subtree } => match self.enter(snap, subtree, path, &walked_here)? {
                    Enter::Skip { tainted } => top.tainted |= tainted,
                    Enter::Walk(frame) => stack.push(frame),
                },
                NodeKind::File { content } => top.tainted |= self.check_file(snap, &path, &content, &top.found)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Decides whether to walk a tree, loading (and so verifying) it if so.
    fn enter(&mut self, snap: usize, tree: BlobId, path: String, walked_here: &HashSet<BlobId>) -> Result<Enter> {
        match self.trees.get(&tree) {
            Some(false) => return Ok(Enter::Skip { tainted: false }),
            Some(true) if walked_here.contains(&tree) => return Ok(Enter::Skip { tainted: true }),
            _ => {}
        }
        let whole =
            if path == "/" { "/ (the whole snapshot)".to_string() } else { format!("{path}/ (the whole directory)") };
        let entry = match self.locate(BlobType::Tree, tree)? {
            Located::At(entry) => entry,
            Located::Lost(target) => return Ok(self.lost_tree(target, tree, snap, &whole)),
        };
        match self.repo.load_tree(&tree) {
            Ok(t) => {
                let found = self.look_up_files(&t)?;
                Ok(Enter::Walk(Frame { tree, path, nodes: t.nodes.into_iter(), tainted: false, found }))
            }
            Err(e) => {
                let problem = format!("cannot be read from pack {}: {}", entry.pack.short(), damage_text(e)?);
                let target = Target::Blob(BlobType::Tree, tree);
                let object = ObjectRef::new(ObjectKind::Tree, tree.to_hex());
                self.damage.insert(target, Damage::new(object, TREE_DAMAGED).with(problem, true));
                Ok(self.lost_tree(target, tree, snap, &whole))
            }
        }
    }

    fn lost_tree(&mut self, target: Target, tree: BlobId, snap: usize, whole: &str) -> Enter {
        self.need(target, snap, whole);
        self.trees.insert(tree, true);
        Enter::Skip { tainted: true }
    }

    /// Looks up the data blobs of a tree's smaller files in one sorted batch: the cache answers
    /// that much faster than one look-up at a time. Files of more than [`FILE_BATCH`] blobs
    /// (a large dump) are looked up a window at a time by `check_file` instead, so memory stays
    /// at a window, not at the largest file's chunk list.
    fn look_up_files(&self, tree: &Tree) -> Result<Found> {
        let ids = tree.file_blobs(FILE_BATCH);
        let entries = self.index.lookup_many(BlobType::Data, &ids)?;
        Ok(ids.into_iter().zip(entries).collect())
    }

    /// Whether any of a file's blobs is lost; each damaged object it needs learns its path once.
    fn check_file(&mut self, snap: usize, path: &str, content: &[BlobId], found: &Found) -> Result<bool> {
        let mut hit: Vec<Target> = Vec::new();
        for window in content.chunks(FILE_BATCH) {
            let looked_up = if content.len() > FILE_BATCH {
                self.index.lookup_many(BlobType::Data, window)?.into_iter().map(Some).collect()
            } else {
                window.iter().map(|id| found.get(id).copied()).collect::<Vec<_>>()
            };
            for (id, entry) in window.iter().zip(looked_up) {
                if let Located::Lost(target) = self.locate_found(BlobType::Data, *id, entry)?
                    && !hit.contains(&target)
                {
                    self.need(target, snap, path);
                    hit.push(target);
                }
            }
        }
        Ok(!hit.is_empty())
    }

    /// Finds a blob through the index cache and decides whether damage already found loses it.
    fn locate(&mut self, kind: BlobType, id: BlobId) -> Result<Located> {
        self.locate_found(kind, id, None)
    }

    /// [`locate`](Self::locate), with the blob's index entry if it was already looked up.
    fn locate_found(&mut self, kind: BlobType, id: BlobId, found: Option<Option<IndexEntry>>) -> Result<Located> {
        let own = Target::Blob(kind, id);
        if self.damage.contains_key(&own) {
            return Ok(Located::Lost(own));
        }
        let looked_up = match found {
            Some(entry) => entry,
            None => self.index.lookup(kind, &id)?,
        };
        let Some(entry) = looked_up else {
            let object = ObjectRef::new(blob_kind(kind), id.to_hex());
            let problem = "is not in the index: no index object says which pack holds it".to_string();
            self.damage.insert(own, Damage::new(object, BLOB_UNINDEXED).with(problem, true));
            return Ok(Located::Lost(own));
        };
        let pack = Target::Pack(entry.pack);
        if !self.stored.contains_key(&entry.pack) && !self.damage.contains_key(&pack) {
            // Only a cache out of step with the index objects gets here; the pack is gone all the same.
            let problem = "is missing from the storage".to_string();
            self.damage.insert(pack, Damage::pack(entry.pack, PACK_MISSING).with(problem, true));
        }
        match self.damage.get(&pack) {
            Some(d) if d.loses(&id, &entry) => Ok(Located::Lost(pack)),
            _ => Ok(Located::At(entry)),
        }
    }

    fn need(&mut self, target: Target, snap: usize, path: &str) {
        if let Some(d) = self.damage.get_mut(&target) {
            d.needed.add(snap, path);
        }
    }
}

fn child_path(parent: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if parent.ends_with('/') { format!("{parent}{name}") } else { format!("{parent}/{name}") }
}
