//! Index objects in the repository: `version (1) || postcard(IndexFile)`, sealed.
//! Each lists packs and, per pack, every blob in it with type, id, offset, sealed length and
//! plaintext length (the same fields as the pack's own header). An index object is written only
//! after every pack it names is stored.

use crate::codec;
use crate::error::FormatError;
use crate::id::PackId;
use crate::pack::PackBlob;
use serde::{Deserialize, Serialize};

pub const INDEX_VERSION: u8 = 1;
pub const MAX_INDEX_LEN: u64 = 256 * 1024 * 1024;
/// Writers start a new index object after this many blobs (about 2.3 MiB encoded). Saving one
/// holds it several times over for a moment (encoded, sealed, opened again to verify, sorted
/// for the cache), next to the packs in flight; restic's index objects hold 50,000 too.
pub const BLOBS_PER_INDEX: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    pub id: PackId,
    pub blobs: Vec<PackBlob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IndexFile {
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    pub fn encode(&self) -> Vec<u8> {
        // Upper bounds of postcard's sizes: a pack is its id and a length (varint), a blob its
        // type, id and three u32 varints.
        let bound = 1 + 5 + self.packs.len() * (32 + 5) + self.blob_count() * (2 + 32 + 3 * 5);
        codec::encode_sized(INDEX_VERSION, self, bound)
    }

    pub fn decode(bytes: &[u8]) -> Result<IndexFile, FormatError> {
        let file: IndexFile = codec::decode("index", INDEX_VERSION, MAX_INDEX_LEN, bytes)?;
        for p in &file.packs {
            for b in &p.blobs {
                if u64::from(b.offset) + u64::from(b.length) > crate::pack::MAX_PACK_LEN {
                    return Err(FormatError::invalid(
                        "index",
                        format!("blob {} lies past any pack's end", b.id.short()),
                    ));
                }
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::BlobType;
    use crate::id::{BlobId, Id};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec((any::<bool>(), any::<[u8; 32]>(), 0u32..1 << 30, 0u32..1 << 30, any::<u32>()), 0..5)), 0..5)) {
            let file = IndexFile { packs: packs.into_iter().map(|(p, blobs)| IndexPack {
                id: PackId(Id(p)),
                blobs: blobs.into_iter().map(|(t, id, offset, length, raw_length)| PackBlob {
                    kind: if t { BlobType::Tree } else { BlobType::Data }, id: BlobId(Id(id)), offset, length, raw_length,
                }).collect(),
            }).collect() };
            let encoded = file.encode();
            let bound = 1 + 5 + file.packs.len() * 37 + file.blob_count() * 49;
            prop_assert!(encoded.len() <= bound, "{} > {bound}", encoded.len());
            prop_assert_eq!(IndexFile::decode(&encoded).unwrap(), file);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&bytes);
        }
    }
}
