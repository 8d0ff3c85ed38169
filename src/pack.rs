//! Packs: the only module that knows pack bytes.
//!
//! A pack is `blob_0 || ... || blob_n-1 || sealed_header || header_len (u32 LE)`. Each blob is a
//! sealed blob (`blob.rs`). The header, sealed with associated data `"cairn pack header"`,
//! lists every blob as a fixed 45-byte entry, so a reader can range-read any single blob.
//! [`PackWriter::finish`] decodes the header it just sealed and compares it with what it meant
//! to write before the pack may leave the process. The pack's id is BLAKE3 of all its bytes.

use crate::blob::BlobType;
use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::FormatError;
use crate::id::{BlobId, Id, PackId};

pub const PACK_HEADER_VERSION: u8 = 1;
pub const HEADER_AAD: &[u8] = b"cairn pack header";
/// Bytes of one header entry: type[1] id[32] offset[4] length[4] raw_length[4].
pub const ENTRY_LEN: usize = 45;
/// A header may list at most this many blobs.
pub const MAX_BLOBS_PER_PACK: u32 = 1 << 20;
/// Largest sealed header a reader accepts.
pub const MAX_HEADER_LEN: u32 = 1 + 4 + MAX_BLOBS_PER_PACK * ENTRY_LEN as u32 + SEAL_OVERHEAD as u32;
/// Packs are at most 4 GiB - 1: offsets are u32.
pub const MAX_PACK_LEN: u64 = u32::MAX as u64;

/// One blob's place in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackBlob {
    pub kind: BlobType,
    pub id: BlobId,
    /// Offset of the sealed blob from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the blob's plaintext.
    pub raw_length: u32,
}

/// Builds one pack in memory. Packs are a few MiB, so the pipeline bounds memory by the number
/// of packs in flight.
#[derive(Default)]
pub struct PackWriter {
    data: Vec<u8>,
    blobs: Vec<PackBlob>,
}

/// A finished pack: its id, its bytes and what it holds.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub blobs: Vec<PackBlob>,
}

impl PackWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that fills `buffer` (emptied first), keeping its capacity.
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        PackWriter { data: buffer, blobs: Vec::new() }
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends a sealed blob. The caller keeps packs well under [`MAX_PACK_LEN`].
    pub fn add(&mut self, kind: BlobType, id: BlobId, sealed: &[u8], raw_length: u32) -> Result<(), FormatError> {
        let offset = u32::try_from(self.data.len()).map_err(|_| too_large(self.data.len()))?;
        let length = u32::try_from(sealed.len()).map_err(|_| too_large(sealed.len()))?;
        if u64::from(offset) + u64::from(length) > MAX_PACK_LEN / 2 || self.blobs.len() >= MAX_BLOBS_PER_PACK as usize {
            return Err(too_large(self.data.len() + sealed.len()));
        }
        self.data.extend_from_slice(sealed);
        self.blobs.push(PackBlob { kind, id, offset, length, raw_length });
        Ok(())
    }

    /// Seals the header, appends it and the trailer, and verifies the result decodes to the same
    /// list of blobs.
    pub fn finish(self, key: &MasterKey) -> Result<FinishedPack, FormatError> {
        let PackWriter { mut data, blobs } = self;
        let header = encode_header_plain(&blobs);
        let sealed = key.seal(HEADER_AAD, &header);
        let header_len = u32::try_from(sealed.len()).map_err(|_| too_large(sealed.len()))?;
        data.extend_from_slice(&sealed);
        data.extend_from_slice(&header_len.to_le_bytes());
        let decoded = read_header(key, &data)?;
        if decoded != blobs {
            return Err(FormatError::invalid("pack header", "does not decode to what was written"));
        }
        Ok(FinishedPack { id: PackId(Id::of_stored(&data)), bytes: data, blobs })
    }
}

fn too_large(size: usize) -> FormatError {
    FormatError::TooLarge { what: "pack", size: size as u64, limit: MAX_PACK_LEN }
}

fn encode_header_plain(blobs: &[PackBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + blobs.len() * ENTRY_LEN);
    out.push(PACK_HEADER_VERSION);
    out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    for b in blobs {
        out.push(b.kind.to_byte());
        out.extend_from_slice(b.id.as_bytes());
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.length.to_le_bytes());
        out.extend_from_slice(&b.raw_length.to_le_bytes());
    }
    out
}

/// Where the sealed header sits, from a pack's length and its last four bytes.
pub fn header_range(pack_len: u64, trailer: &[u8]) -> Result<std::ops::Range<u64>, FormatError> {
    let trailer: [u8; 4] =
        trailer.try_into().map_err(|_| FormatError::Truncated { needed: 4, available: trailer.len() as u64 })?;
    let header_len = u32::from_le_bytes(trailer);
    if header_len > MAX_HEADER_LEN {
        return Err(FormatError::TooLarge {
            what: "pack header",
            size: header_len.into(),
            limit: MAX_HEADER_LEN.into(),
        });
    }
    let needed = u64::from(header_len) + 4;
    if needed > pack_len {
        return Err(FormatError::Truncated { needed, available: pack_len });
    }
    Ok(pack_len - needed..pack_len - 4)
}

/// Decodes the header of a whole pack held in memory.
pub fn read_header(key: &MasterKey, pack: &[u8]) -> Result<Vec<PackBlob>, FormatError> {
    let len = pack.len() as u64;
    let tail = pack.get(pack.len().saturating_sub(4)..).unwrap_or_default();
    let range = header_range(len, tail)?;
    let start = range.start as usize;
    let sealed = &pack[start..range.end as usize];
    decode_header(key, sealed, range.start)
}

/// Opens and parses a sealed header. `data_len` is the number of blob bytes before the header;
/// every entry must lie inside them.
pub fn decode_header(key: &MasterKey, sealed: &[u8], data_len: u64) -> Result<Vec<PackBlob>, FormatError> {
    let plain = key.open(HEADER_AAD, sealed)?;
    parse_header(&plain, data_len)
}

/// Parses an opened header. Separate from [`decode_header`] so fuzzers reach it directly.
pub fn parse_header(plain: &[u8], data_len: u64) -> Result<Vec<PackBlob>, FormatError> {
    let (&version, rest) = plain.split_first().ok_or(FormatError::Truncated { needed: 1, available: 0 })?;
    if version != PACK_HEADER_VERSION {
        return Err(FormatError::UnsupportedVersion { what: "pack header", version, supported: PACK_HEADER_VERSION });
    }
    let count_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(FormatError::Truncated { needed: 5, available: plain.len() as u64 })?;
    let count = u32::from_le_bytes(count_bytes);
    if count > MAX_BLOBS_PER_PACK {
        return Err(FormatError::TooLarge {
            what: "pack header blob count",
            size: count.into(),
            limit: MAX_BLOBS_PER_PACK.into(),
        });
    }
    let entries = &rest[4..];
    let expected = count as usize * ENTRY_LEN;
    if entries.len() != expected {
        return Err(FormatError::invalid("pack header", format!("{} entry bytes for {count} entries", entries.len())));
    }
    let mut out = Vec::with_capacity(count as usize);
    for e in entries.chunks_exact(ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[1..33]);
        let blob = PackBlob {
            kind: BlobType::from_byte(e[0])?,
            id: BlobId(Id(id)),
            offset: u32_at(33),
            length: u32_at(37),
            raw_length: u32_at(41),
        };
        if u64::from(blob.offset) + u64::from(blob.length) > data_len {
            return Err(FormatError::invalid("pack header", format!("blob {} lies outside the pack", blob.id.short())));
        }
        if (blob.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(FormatError::invalid(
                "pack header",
                format!("blob {} is shorter than a sealed blob", blob.id.short()),
            ));
        }
        out.push(blob);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{open_blob, seal_blob};
    use proptest::prelude::*;

    fn build(key: &MasterKey, items: &[Vec<u8>]) -> FinishedPack {
        let mut w = PackWriter::new();
        for data in items {
            let id = key.blob_id(data);
            let sealed = seal_blob(key, BlobType::Data, &id, data, 3);
            w.add(BlobType::Data, id, &sealed, data.len() as u32).unwrap();
        }
        w.finish(key).unwrap()
    }

    proptest! {
        #[test]
        fn pack_round_trip(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20)) {
            let key = MasterKey::generate();
            let pack = build(&key, &items);
            let header = read_header(&key, &pack.bytes).unwrap();
            prop_assert_eq!(header.len(), items.len());
            for (entry, data) in header.iter().zip(&items) {
                let range = entry.offset as usize..(entry.offset + entry.length) as usize;
                prop_assert_eq!(&open_blob(&key, BlobType::Data, &entry.id, &pack.bytes[range]).unwrap(), data);
            }
            prop_assert_eq!(pack.id, PackId(Id::of_stored(&pack.bytes)));
        }

        #[test]
        fn parse_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), len in any::<u64>()) {
            let _ = parse_header(&bytes, len);
        }
    }

    #[test]
    fn truncated_or_flipped_packs_are_refused() {
        let key = MasterKey::generate();
        let pack = build(&key, &[b"one".to_vec(), b"two".to_vec()]);
        for cut in [0, 1, 3, 10, pack.bytes.len() - 1] {
            assert!(read_header(&key, &pack.bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x40;
        assert!(read_header(&key, &bad).is_err());
    }
}
