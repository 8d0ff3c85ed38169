//! The index: which pack holds which blob, at what offset and length.
//!
//! The truth is the sealed index objects in the repository (`file.rs`). Commands consult the
//! local RocksDB mirror (`cache.rs`), so none holds the whole index in memory.

pub mod cache;
pub mod file;

use crate::blob::BlobType;
use crate::error::Result;
use crate::id::{BlobId, PackId};

/// Where one blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub pack: PackId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
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
