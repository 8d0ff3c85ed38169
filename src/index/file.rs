//! Index objects in the repository: `version || postcard(IndexFile)`, sealed.
//! Each lists packs and, per pack, every blob in it with type, id, its bundle's offset and
//! sealed length, and its place and length in the bundle's plaintext (the same fields as the
//! pack's own header). Format 2 writes version 2; version 1 (format 1) has no `raw_offset`, and
//! is read as if it were 0. An index object is written only after every pack it names is
//! stored.

use crate::blob::{BlobType, Sealing};
use crate::codec;
use crate::error::FormatError;
use crate::id::{BlobId, PackId};
use crate::pack::PackBlob;
use serde::{Deserialize, Serialize};

/// The version format 2 writes.
pub const INDEX_VERSION: u8 = 2;
/// The version of format 1, without `raw_offset`.
pub const INDEX_V1: u8 = 1;
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

    /// The encoding a repository of this sealing reads: version 1 for format 1 (which has no
    /// `raw_offset`: every one must be 0), else version 2.
    pub fn encode(&self, sealing: Sealing) -> Result<Vec<u8>, FormatError> {
        // Upper bounds of postcard's sizes: a pack is its id and a length (varint), a blob its
        // type, id and four u32 varints.
        let bound = 1 + 5 + self.packs.len() * (32 + 5) + self.blob_count() * (2 + 32 + 4 * 5);
        if sealing == Sealing::Bundles {
            return Ok(codec::encode_sized(INDEX_VERSION, self, bound));
        }
        let mut packs = Vec::with_capacity(self.packs.len());
        for p in &self.packs {
            let mut blobs = Vec::with_capacity(p.blobs.len());
            for b in &p.blobs {
                if b.raw_offset != 0 {
                    return Err(FormatError::invalid("index", "a blob inside a bundle in format 1"));
                }
                blobs.push(PackBlobV1 {
                    kind: b.kind,
                    id: b.id,
                    offset: b.offset,
                    length: b.length,
                    raw_length: b.raw_length,
                });
            }
            packs.push(IndexPackV1 { id: p.id, blobs });
        }
        Ok(codec::encode_sized(INDEX_V1, &IndexFileV1 { packs }, bound))
    }

    /// Decodes either version.
    pub fn decode(bytes: &[u8]) -> Result<IndexFile, FormatError> {
        let file: IndexFile = match bytes.first() {
            Some(&INDEX_V1) => {
                let v1: IndexFileV1 = codec::decode("index", INDEX_V1, MAX_INDEX_LEN, bytes)?;
                let packs = v1.packs.into_iter().map(|p| IndexPack {
                    id: p.id,
                    blobs: p
                        .blobs
                        .into_iter()
                        .map(|b| PackBlob {
                            kind: b.kind,
                            id: b.id,
                            offset: b.offset,
                            length: b.length,
                            raw_offset: 0,
                            raw_length: b.raw_length,
                        })
                        .collect(),
                });
                IndexFile { packs: packs.collect() }
            }
            _ => codec::decode("index", INDEX_VERSION, MAX_INDEX_LEN, bytes)?,
        };
        for p in &file.packs {
            for b in &p.blobs {
                if b.bundle_range().end > crate::pack::MAX_PACK_LEN {
                    return Err(FormatError::invalid(
                        "index",
                        format!("blob {} lies past any pack's end", b.id.short()),
                    ));
                }
                if u64::from(b.raw_offset) + u64::from(b.raw_length) > crate::blob::MAX_BLOB_LEN {
                    return Err(FormatError::invalid(
                        "index",
                        format!("blob {} lies past the largest bundle's end", b.id.short()),
                    ));
                }
            }
        }
        Ok(file)
    }
}

/// Version 1's records: [`PackBlob`] without `raw_offset`.
#[derive(Serialize, Deserialize)]
struct PackBlobV1 {
    kind: BlobType,
    id: BlobId,
    offset: u32,
    length: u32,
    raw_length: u32,
}

#[derive(Serialize, Deserialize)]
struct IndexPackV1 {
    id: PackId,
    blobs: Vec<PackBlobV1>,
}

#[derive(Serialize, Deserialize)]
struct IndexFileV1 {
    packs: Vec<IndexPackV1>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use proptest::prelude::*;

    proptest! {
        /// Both versions round-trip within the bound `encode` reserves; version 1 only when no
        /// blob lies inside a bundle.
        #[test]
        fn round_trip(packs in proptest::collection::vec((any::<[u8; 32]>(), proptest::collection::vec((any::<bool>(), any::<[u8; 32]>(), 0u32..1 << 30, 0u32..1 << 30, 0u32..1 << 25, 0u32..1 << 25), 0..5)), 0..5)) {
            let file = IndexFile { packs: packs.into_iter().map(|(p, blobs)| IndexPack {
                id: PackId(Id(p)),
                blobs: blobs.into_iter().map(|(t, id, offset, length, raw_offset, raw_length)| PackBlob {
                    kind: if t { BlobType::Tree } else { BlobType::Data }, id: BlobId(Id(id)), offset, length, raw_offset, raw_length,
                }).collect(),
            }).collect() };
            let encoded = file.encode(Sealing::Bundles).unwrap();
            let bound = 1 + 5 + file.packs.len() * 37 + file.blob_count() * 54;
            prop_assert!(encoded.len() <= bound, "{} > {bound}", encoded.len());
            prop_assert_eq!(encoded[0], INDEX_VERSION);
            prop_assert_eq!(IndexFile::decode(&encoded).unwrap(), file.clone());
            let in_bundles = file.packs.iter().flat_map(|p| &p.blobs).any(|b| b.raw_offset != 0);
            match file.encode(Sealing::Single) {
                Ok(v1) => {
                    prop_assert!(!in_bundles);
                    prop_assert_eq!(v1[0], INDEX_V1);
                    prop_assert!(v1.len() <= encoded.len());
                    prop_assert_eq!(IndexFile::decode(&v1).unwrap(), file);
                }
                Err(_) => prop_assert!(in_bundles),
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&bytes);
        }
    }
}
