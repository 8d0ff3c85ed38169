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
//! one group of loaded trees (eight per worker), and one batch of blob ids.

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
            for group in frontier.chunks(group_len) {
                let Some(trees) = self.load_group(group)? else { return Ok(false) };
                for tree in trees {
                    for node in tree.nodes {
                        match node.kind {
                            NodeKind::Dir { subtree } if seen.insert(subtree) => next.push(subtree),
                            NodeKind::File { content } => {
                                for piece in content.chunks(BATCH) {
                                    pending.extend_from_slice(piece);
                                    if pending.len() >= BATCH && !self.all_whole(&mut pending)? {
                                        return Ok(false);
                                    }
                                }
                            }
                            _ => {}
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

    /// Loads (and so verifies) a group of trees on the workers; `None` if any is not whole.
    fn load_group(&self, group: &[BlobId]) -> Result<Option<Vec<Tree>>> {
        let entries = self.index.lookup_many(BlobType::Tree, group)?;
        let known = self.known();
        let mut located = Vec::with_capacity(group.len());
        for (id, entry) in group.iter().zip(entries) {
            match entry {
                Some(e) if known.readable(BlobType::Tree, id, &e) => located.push((*id, e)),
                _ => return Ok(None),
            }
        }
        let repo = self.repo;
        let loaded: Vec<Option<Tree>> = self.pool.install(|| {
            located
                .par_iter()
                .map(|(id, e)| {
                    let range = u64::from(e.offset)..u64::from(e.offset) + u64::from(e.length);
                    let sealed = repo.read_pack_range(&e.pack, range).ok()?;
                    let bytes = repo.open_blob_at(BlobType::Tree, id, e, &sealed).ok()?;
                    Tree::decode(&bytes).ok()
                })
                .collect()
        });
        Ok(loaded.into_iter().collect())
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
