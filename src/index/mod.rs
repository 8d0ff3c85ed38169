//! The index: which pack holds which blob, at what offset and length.
//!
//! The truth is the sealed index objects in the repository (`file.rs`). Commands consult the
//! local RocksDB mirror (`cache.rs`), so none holds the whole index in memory.

pub mod cache;
pub mod file;

use crate::blob::BlobType;
use crate::error::Result;
use crate::id::{BlobId, IndexId, PackId};
use std::collections::HashMap;

/// Where one blob is stored: the sealed bundle that holds it (`offset`, `length` in `pack`) and
/// its place in the bundle's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_offset: u32,
    pub raw_length: u32,
}

impl IndexEntry {
    /// The entry a pack's (or an index object's) blob record gives.
    pub fn of(pack: PackId, b: &crate::pack::PackBlob) -> IndexEntry {
        IndexEntry { pack, offset: b.offset, length: b.length, raw_offset: b.raw_offset, raw_length: b.raw_length }
    }

    /// The sealed bundle's bytes within its pack.
    pub fn range(&self) -> std::ops::Range<u64> {
        u64::from(self.offset)..u64::from(self.offset) + u64::from(self.length)
    }
}

/// Looking up blobs: the narrow capability restore, check and backup ask for.
pub trait BlobIndex: Sync {
    fn lookup(&self, kind: BlobType, id: &BlobId) -> Result<Option<IndexEntry>>;

    /// Looks up many blobs of one kind at once; the answers come in the order of `ids`.
    /// Implementations may batch and sort the look-ups (the RocksDB cache does).
    fn lookup_many(&self, kind: BlobType, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        ids.iter().map(|id| self.lookup(kind, id)).collect()
    }
}

/// What one index object says about one pack: enough to check the pack's stored size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSummary {
    /// The first index object (in listing order) that names the pack.
    pub index: IndexId,
    pub blobs: u64,
    /// End of the last blob: the header starts here.
    pub end: u64,
}

/// What a full pass over the index objects learned, a few numbers per pack (never per blob),
/// so that `check` need not open every index object again.
#[derive(Debug, Clone, Default)]
pub struct IndexSummary {
    /// Index objects that opened, in listing order.
    pub good: Vec<IndexId>,
    /// Index objects that are damaged or vanished.
    pub damaged: Vec<IndexId>,
    pub packs: HashMap<PackId, PackSummary>,
    /// Packs named by more than one index object.
    pub listed_twice: usize,
}

impl IndexSummary {
    /// Records one index object that opened.
    pub fn note(&mut self, id: IndexId, file: &file::IndexFile) {
        self.good.push(id);
        for p in &file.packs {
            let end = p.blobs.iter().map(|b| b.bundle_range().end).max().unwrap_or(0);
            match self.packs.entry(p.id) {
                std::collections::hash_map::Entry::Occupied(_) => self.listed_twice += 1,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(PackSummary { index: id, blobs: p.blobs.len() as u64, end });
                }
            }
        }
    }
}
