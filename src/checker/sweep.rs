//! The sweep: a fast proof that every snapshot's trees and blobs are whole, run before the walk.
//!
//! The walk (`walk.rs`) goes one tree at a time so that it can name, for each damaged object,
//! the snapshot paths that need it. When nothing is damaged there is nothing to name, and that
//! order only costs time: one small index query per folder, on one core. The sweep instead
//! visits each distinct tree once, breadth first across all snapshots: it loads a group of
//! trees on all workers, then looks their files' blobs up in large sorted, de-duplicated batches
//! (shared chunks of two dumps are looked up once per batch), split across the workers.
//!
//! It proves or gives up: if every tree and blob is indexed in a stored pack that no damage
//! found so far loses, and every tree opens, all trees are marked clean and the walk skips them.
//! At the first doubt it stops and marks nothing, and the walk checks everything as before,
//! finding and naming the damage. Memory: the ids of the trees seen (which the walk keeps too),
//! one group of loaded trees (at most eight per worker and [`GROUP_BYTES`] of plaintext, or one
//! larger tree), and one batch of blob ids.

use super::Checker;
use super::damage::{Damage, Target};
use crate::blob::BlobType;
use crate::error::Result;
use crate::id::{BlobId, PackId};
use crate::index::IndexEntry;
use crate::tree::{NodeKind, Tree};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Blob ids gathered before they are looked up: 256k ids, 8 MiB. Large enough that the two
/// dumps of the bench corpus (170k chunks each, three quarters shared) meet in one batch.
const BATCH: usize = 256 * 1024;
/// Ids in one worker's share of a batch.
const WINDOW: usize = 16 * 1024;

impl Checker<'_> {
    /// Sweeps the trees under `roots`; if all is whole, records every tree as clean and
    /// returns true. False means "not proven": the walk must look (nothing is recorded).
    pub(super) fn sweep(&mut self, roots: &[BlobId]) -> Result<bool> {
        let mut seen: HashSet<BlobId> = HashSet::new();
        let mut frontier: Vec<BlobId> = roots.iter().copied().filter(|r| seen.insert(*r)).collect();
        let mut pending: Vec<BlobId> = Vec::new();
        let group_len = self.workers * 8;
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for chunk in frontier.chunks(group_len) {
                let Some(located) = self.locate_trees(chunk)? else { return Ok(false) };
                for group in by_size(&located) {
                    let Some(trees) = self.load_trees(group) else { return Ok(false) };
                    for tree in trees {
                        if !self.take_tree(tree, &mut seen, &mut next, &mut pending)? {
                            return Ok(false);
                        }
                    }
                }
            }
            frontier = next;
        }
        if !self.all_whole(&mut pending)? {
            return Ok(false);
        }
        self.trees.extend(seen.into_iter().map(|t| (t, false)));
        Ok(true)
    }

    /// Queues a loaded tree's unseen subtrees in `next` and its files' blobs in `pending`,
    /// looking them up whenever a batch is full; false if one is not readable.
    fn take_tree(
        &self,
        tree: Tree,
        seen: &mut HashSet<BlobId>,
        next: &mut Vec<BlobId>,
        pending: &mut Vec<BlobId>,
    ) -> Result<bool> {
        for node in tree.nodes {
            match node.kind {
                NodeKind::Dir { subtree } if seen.insert(subtree) => next.push(subtree),
                NodeKind::File { content } => {
                    for piece in content.chunks(BATCH) {
                        pending.extend_from_slice(piece);
                        if pending.len() >= BATCH && !self.all_whole(pending)? {
                            return Ok(false);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// Where each tree of `chunk` is stored; `None` if one is not indexed in a readable pack.
    fn locate_trees(&self, chunk: &[BlobId]) -> Result<Option<Vec<(BlobId, IndexEntry)>>> {
        let entries = self.index.lookup_many(BlobType::Tree, chunk)?;
        let known = self.known();
        let mut located = Vec::with_capacity(chunk.len());
        for (id, entry) in chunk.iter().zip(entries) {
            match entry {
                Some(e) if known.readable(BlobType::Tree, id, &e) => located.push((*id, e)),
                _ => return Ok(None),
            }
        }
        Ok(Some(located))
    }

    /// Loads (and so verifies) a group of trees on the workers; `None` if any is not whole.
    fn load_trees(&self, group: &[(BlobId, IndexEntry)]) -> Option<Vec<Tree>> {
        let repo = self.repo;
        let loaded: Vec<Option<Tree>> =
            self.pool.install(|| group.par_iter().map(|(id, e)| repo.load_tree_at(id, e).ok()).collect());
        loaded.into_iter().collect()
    }

    /// Looks up `ids` (sorted and de-duplicated here, then cleared) across the workers: true if
    /// every one is readable.
    fn all_whole(&self, ids: &mut Vec<BlobId>) -> Result<bool> {
        ids.sort_unstable();
        ids.dedup();
        let (index, known) = (self.index, self.known());
        let answers: Vec<Result<bool>> = self.pool.install(|| {
            ids.par_chunks(WINDOW)
                .map(|window| {
                    let entries = index.lookup_many(BlobType::Data, window)?;
                    Ok(window
                        .iter()
                        .zip(entries)
                        .all(|(id, e)| e.is_some_and(|e| known.readable(BlobType::Data, id, &e))))
                })
                .collect()
        });
        ids.clear();
        for answer in answers {
            if !answer? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn known(&self) -> Known<'_> {
        Known { stored: &self.stored, damage: &self.damage }
    }
}

/// Trees loaded together hold about this much plaintext at most (a larger tree, such as a big
/// dump's chunk list, is loaded on its own): while one loads, its sealed, opened and decoded
/// forms are all in memory.
const GROUP_BYTES: u64 = 4 << 20;

/// `located` cut into groups of at most [`GROUP_BYTES`] of plaintext (or one larger tree).
fn by_size(located: &[(BlobId, IndexEntry)]) -> Vec<&[(BlobId, IndexEntry)]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, e)) in located.iter().enumerate() {
        let size = u64::from(e.raw_length);
        if i > start && bytes + size > GROUP_BYTES {
            groups.push(&located[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < located.len() {
        groups.push(&located[start..]);
    }
    groups
}

/// What the checks before the walk found: the packs in storage, and the damage.
#[derive(Clone, Copy)]
struct Known<'a> {
    stored: &'a HashMap<PackId, u64>,
    damage: &'a BTreeMap<Target, Damage>,
}

impl Known<'_> {
    /// Whether a blob at `entry` is in a stored pack that no damage found so far loses, and is
    /// not itself known to be damaged.
    fn readable(&self, kind: BlobType, id: &BlobId, entry: &IndexEntry) -> bool {
        self.stored.contains_key(&entry.pack)
            && !self.damage.contains_key(&Target::Blob(kind, *id))
            && self.damage.get(&Target::Pack(entry.pack)).is_none_or(|d| !d.loses(id, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    #[test]
    fn groups_hold_a_few_mib_and_a_large_tree_goes_alone() {
        let tree = |kib: u32| {
            let entry =
                IndexEntry { pack: PackId(Id([0; 32])), offset: 0, length: 0, raw_offset: 0, raw_length: kib << 10 };
            (BlobId(Id([0; 32])), entry)
        };
        let located = [tree(1), tree(2), tree(5 << 10), tree(3), tree(2 << 10), tree(2 << 10), tree(1)];
        let sizes: Vec<usize> = by_size(&located).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [2, 1, 2, 2]);
        assert!(by_size(&[]).is_empty());
    }
}
