//! The blob read path: a range of a pack, the bundle in it opened (authenticated,
//! decompressed), and a blob taken from the bundle only once it hashes to its id. Readers of
//! many blobs keep a bundle open for its neighbours (`blob::LastBundle`); one-off reads (trees)
//! open it for one blob. Every failure names the blob and its pack.

use super::{Repository, blob_damaged, blob_kind, missing_or};
use crate::backend::{ReadBuf, object_path};
use crate::blob::{self, BlobType};
use crate::error::{Error, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, PackId};
use crate::index::{BlobIndex, IndexEntry};
use crate::tree::Tree;
use bytes::Bytes;

impl Repository {
    /// Reads a byte range of a pack.
    pub fn read_pack_range(&self, pack: &PackId, range: std::ops::Range<u64>) -> Result<Bytes> {
        let name = pack.to_hex();
        self.backend
            .get_range(&object_path(ObjectKind::Pack, &name), range)
            .map_err(|e| missing_or(e, ObjectKind::Pack, &name))
    }

    /// [`read_pack_range`](Self::read_pack_range) into a reader's kept buffer.
    pub fn read_pack_range_into(&self, pack: &PackId, range: std::ops::Range<u64>, buf: &mut ReadBuf) -> Result<()> {
        let name = pack.to_hex();
        self.backend
            .get_range_into(&object_path(ObjectKind::Pack, &name), range, buf)
            .map_err(|e| missing_or(e, ObjectKind::Pack, &name))
    }

    /// Opens one stored blob, given where it is and its bundle's sealed bytes. Only verified
    /// plaintext comes back.
    pub fn open_blob_at(&self, kind: BlobType, id: &BlobId, entry: &IndexEntry, sealed: &[u8]) -> Result<Vec<u8>> {
        blob::open_blob(&self.key, self.sealing(), kind, id, entry.raw_offset, entry.raw_length, sealed)
            .map_err(|e| blob_damaged(kind, id, &entry.pack, e))
    }

    /// Authenticates and decompresses the bundle holding blob `id` (its sealed bytes are
    /// `sealed`) into `out`; take its blobs with [`blob_in`](Self::blob_in).
    pub fn open_bundle(
        &self,
        kind: BlobType,
        id: &BlobId,
        entry: &IndexEntry,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        blob::open_bundle(&self.key, &self.sealing().aad(kind, id), sealed, out)
            .map_err(|e| blob_damaged(kind, id, &entry.pack, e))
    }

    /// Blob `id`'s bytes in its opened bundle, verified against its id.
    pub fn blob_in<'b>(&self, kind: BlobType, id: &BlobId, entry: &IndexEntry, bundle: &'b [u8]) -> Result<&'b [u8]> {
        blob::blob_in(&self.key, self.sealing(), id, entry.raw_offset, entry.raw_length, bundle)
            .map_err(|e| blob_damaged(kind, id, &entry.pack, e))
    }

    /// Reads one blob through the index.
    pub fn read_blob(&self, kind: BlobType, id: &BlobId) -> Result<Vec<u8>> {
        let entry = self
            .index()?
            .lookup(kind, id)?
            .ok_or_else(|| Error::Missing { object: ObjectRef::new(blob_kind(kind), id.to_hex()) })?;
        self.read_blob_at(kind, id, &entry)
    }

    /// Reads one blob from where the index says it is.
    pub fn read_blob_at(&self, kind: BlobType, id: &BlobId, entry: &IndexEntry) -> Result<Vec<u8>> {
        let sealed = self.read_pack_range(&entry.pack, entry.range())?;
        self.open_blob_at(kind, id, entry, &sealed)
    }

    pub fn load_tree(&self, id: &BlobId) -> Result<Tree> {
        decode_tree(id, &self.read_blob(BlobType::Tree, id)?)
    }

    /// [`load_tree`](Self::load_tree) from where the index says the tree is.
    pub fn load_tree_at(&self, id: &BlobId, entry: &IndexEntry) -> Result<Tree> {
        decode_tree(id, &self.read_blob_at(BlobType::Tree, id, entry)?)
    }
}

fn decode_tree(id: &BlobId, bytes: &[u8]) -> Result<Tree> {
    Tree::decode(bytes).map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Tree, id.to_hex()), e))
}
