//! Packs: the only module that knows pack bytes.
//!
//! A pack is `bundle_0 || ... || bundle_n-1 || sealed_header || header_len (u32 LE)`. Each
//! bundle is sealed (`blob.rs`) and holds one or more blobs. The header, sealed with associated
//! data `"cairn pack header"`, lists every blob as a fixed-size entry: its bundle's place in
//! the pack and, from header version 2 on, its place in the bundle's plaintext, so a reader can
//! range-read any single bundle. [`PackWriter::finish`] decodes the header it just sealed and
//! compares it with what it meant to write before the pack may leave the process. The pack's
//! id is BLAKE3 of all its bytes.

use crate::blob::{BlobType, MAX_BLOB_LEN, Sealing};
use crate::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::error::FormatError;
use crate::id::{BlobId, Id, PackId};

/// The header version format 2 writes: entries place blobs inside bundles.
pub const PACK_HEADER_VERSION: u8 = 2;
/// The header version of format 1: one blob per bundle.
pub const PACK_HEADER_V1: u8 = 1;
pub const HEADER_AAD: &[u8] = b"cairn pack header";
/// Bytes of one version-2 header entry: type[1] id[32] offset[4] length[4] raw_offset[4]
/// raw_length[4].
pub const ENTRY_LEN: usize = 49;
/// Bytes of one version-1 header entry: type[1] id[32] offset[4] length[4] raw_length[4].
pub const ENTRY_LEN_V1: usize = 45;
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
    /// Offset of the sealed bundle holding the blob, from the start of the pack.
    pub offset: u32,
    /// Length of the sealed bundle.
    pub length: u32,
    /// Where the blob starts in its bundle's plaintext (0 in format 1).
    pub raw_offset: u32,
    /// Length of the blob's plaintext.
    pub raw_length: u32,
}

impl PackBlob {
    /// Where the sealed bundle lies in its pack.
    pub fn bundle_range(&self) -> std::ops::Range<u64> {
        u64::from(self.offset)..u64::from(self.offset) + u64::from(self.length)
    }
}

/// Builds one pack in memory. Packs are a few MiB, so the pipeline bounds memory by the number
/// of packs in flight.
pub struct PackWriter {
    data: Vec<u8>,
    blobs: Vec<PackBlob>,
    sealing: Sealing,
}

/// A finished pack: its id, its bytes and what it holds.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub blobs: Vec<PackBlob>,
}

impl PackWriter {
    /// A writer for a repository whose format seals blobs as `sealing` says.
    pub fn new(sealing: Sealing) -> Self {
        Self::with_buffer(sealing, Vec::new())
    }

    /// A writer that fills `buffer` (emptied first), keeping its capacity.
    pub fn with_buffer(sealing: Sealing, mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        PackWriter { data: buffer, blobs: Vec::new(), sealing }
    }

    /// Bytes of sealed bundles so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends a sealed bundle holding `blobs` (ids and plaintext lengths, in bundle order).
    /// The caller keeps packs well under [`MAX_PACK_LEN`]; in format 1 a bundle holds one blob.
    pub fn add_bundle(&mut self, kind: BlobType, blobs: &[(BlobId, u32)], sealed: &[u8]) -> Result<(), FormatError> {
        let offset = u32::try_from(self.data.len()).map_err(|_| too_large(self.data.len()))?;
        let length = u32::try_from(sealed.len()).map_err(|_| too_large(sealed.len()))?;
        if u64::from(offset) + u64::from(length) > MAX_PACK_LEN / 2
            || self.blobs.len() + blobs.len() > MAX_BLOBS_PER_PACK as usize
        {
            return Err(too_large(self.data.len() + sealed.len()));
        }
        if blobs.is_empty() || (self.sealing == Sealing::Single && blobs.len() != 1) {
            return Err(FormatError::invalid("pack", format!("a bundle of {} blobs in this format", blobs.len())));
        }
        let raw_total: u64 = blobs.iter().map(|&(_, len)| u64::from(len)).sum();
        if raw_total > MAX_BLOB_LEN {
            return Err(FormatError::TooLarge { what: "bundle", size: raw_total, limit: MAX_BLOB_LEN });
        }
        let mut raw_offset = 0u32;
        for &(id, raw_length) in blobs {
            self.blobs.push(PackBlob { kind, id, offset, length, raw_offset, raw_length });
            raw_offset += raw_length; // no overflow: the sum is at most MAX_BLOB_LEN
        }
        self.data.extend_from_slice(sealed);
        Ok(())
    }

    /// Appends a sealed bundle of one blob.
    pub fn add(&mut self, kind: BlobType, id: BlobId, sealed: &[u8], raw_length: u32) -> Result<(), FormatError> {
        self.add_bundle(kind, &[(id, raw_length)], sealed)
    }

    /// Seals the header, appends it and the trailer, and verifies the result decodes to the same
    /// list of blobs.
    pub fn finish(self, key: &MasterKey) -> Result<FinishedPack, FormatError> {
        let PackWriter { mut data, blobs, sealing } = self;
        let header = encode_header_plain(&blobs, sealing);
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

/// The header version a repository of this sealing writes, and its entry length: version 1 in
/// format 1, else 2.
fn header_layout(sealing: Sealing) -> (u8, usize) {
    match sealing {
        Sealing::Single => (PACK_HEADER_V1, ENTRY_LEN_V1),
        Sealing::Bundles => (PACK_HEADER_VERSION, ENTRY_LEN),
    }
}

/// Length of the sealed header listing `blobs` blobs, in a repository of this sealing.
pub fn sealed_header_len(sealing: Sealing, blobs: u64) -> u64 {
    let (_, entry) = header_layout(sealing);
    1 + 4 + blobs.saturating_mul(entry as u64) + SEAL_OVERHEAD as u64
}

fn too_large(size: usize) -> FormatError {
    FormatError::TooLarge { what: "pack", size: size as u64, limit: MAX_PACK_LEN }
}

/// The header plaintext: version 1 for format 1 (no `raw_offset`), else version 2.
fn encode_header_plain(blobs: &[PackBlob], sealing: Sealing) -> Vec<u8> {
    let (version, _) = header_layout(sealing);
    let mut out = Vec::with_capacity(sealed_header_len(sealing, blobs.len() as u64) as usize);
    out.push(version);
    out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
    for b in blobs {
        out.push(b.kind.to_byte());
        out.extend_from_slice(b.id.as_bytes());
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.length.to_le_bytes());
        if sealing == Sealing::Bundles {
            out.extend_from_slice(&b.raw_offset.to_le_bytes());
        }
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

/// Parses an opened header (version 1 or 2). Separate from [`decode_header`] so fuzzers reach
/// it directly. Every entry must lie inside the `data_len` bytes of bundles, and in version 2
/// the entries must describe whole bundles: blobs of one bundle share its offset, length and
/// type and follow each other in its plaintext from 0; each bundle starts where the last ended.
pub fn parse_header(plain: &[u8], data_len: u64) -> Result<Vec<PackBlob>, FormatError> {
    let (&version, rest) = plain.split_first().ok_or(FormatError::Truncated { needed: 1, available: 0 })?;
    let entry_len = match version {
        PACK_HEADER_V1 => ENTRY_LEN_V1,
        PACK_HEADER_VERSION => ENTRY_LEN,
        _ => {
            return Err(FormatError::UnsupportedVersion {
                what: "pack header",
                version,
                supported: PACK_HEADER_VERSION,
            });
        }
    };
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
    let expected = count as usize * entry_len;
    if entries.len() != expected {
        return Err(FormatError::invalid("pack header", format!("{} entry bytes for {count} entries", entries.len())));
    }
    let mut out: Vec<PackBlob> = Vec::with_capacity(count as usize);
    for e in entries.chunks_exact(entry_len) {
        let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[1..33]);
        let (raw_offset, raw_length) =
            if version == PACK_HEADER_V1 { (0, u32_at(41)) } else { (u32_at(41), u32_at(45)) };
        let blob = PackBlob {
            kind: BlobType::from_byte(e[0])?,
            id: BlobId(Id(id)),
            offset: u32_at(33),
            length: u32_at(37),
            raw_offset,
            raw_length,
        };
        let bad = |why: &str| FormatError::invalid("pack header", format!("blob {} {why}", blob.id.short()));
        if blob.bundle_range().end > data_len {
            return Err(bad("lies outside the pack"));
        }
        if (blob.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(bad("is shorter than a sealed bundle"));
        }
        if version == PACK_HEADER_VERSION {
            let follows = match out.last() {
                Some(prev) if prev.offset == blob.offset => {
                    prev.length == blob.length
                        && prev.kind == blob.kind
                        && u64::from(prev.raw_offset) + u64::from(prev.raw_length) == u64::from(raw_offset)
                }
                Some(prev) => prev.bundle_range().end == u64::from(blob.offset) && raw_offset == 0,
                None => blob.offset == 0 && raw_offset == 0,
            };
            if !follows {
                return Err(bad("does not follow the blob before it in its bundle or pack"));
            }
        }
        if u64::from(raw_offset) + u64::from(raw_length) > MAX_BLOB_LEN {
            return Err(bad("lies past the largest bundle"));
        }
        out.push(blob);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{open_blob, seal_blob, seal_bundle};
    use proptest::prelude::*;

    /// A pack of `items`, cut into bundles of `per_bundle` blobs (format 2) or one each (1).
    fn build(key: &MasterKey, sealing: Sealing, items: &[Vec<u8>], per_bundle: usize) -> FinishedPack {
        let mut w = PackWriter::new(sealing);
        for group in items.chunks(per_bundle.max(1)) {
            let ids: Vec<(BlobId, u32)> = group.iter().map(|d| (key.blob_id(d), d.len() as u32)).collect();
            let parts: Vec<&[u8]> = group.iter().map(|d| d.as_slice()).collect();
            let sealed = seal_bundle(key, &sealing.aad(BlobType::Data, &ids[0].0), &parts, 3);
            w.add_bundle(BlobType::Data, &ids, &sealed).unwrap();
        }
        w.finish(key).unwrap()
    }

    proptest! {
        #[test]
        fn pack_round_trip(
            items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20),
            per_bundle in 1usize..6,
            v1: bool,
        ) {
            let key = MasterKey::generate();
            let (sealing, per_bundle) = if v1 { (Sealing::Single, 1) } else { (Sealing::Bundles, per_bundle) };
            let pack = build(&key, sealing, &items, per_bundle);
            let header = read_header(&key, &pack.bytes).unwrap();
            prop_assert_eq!(&header, &pack.blobs);
            prop_assert_eq!(header.len(), items.len());
            for (entry, data) in header.iter().zip(&items) {
                let range = entry.offset as usize..(entry.offset + entry.length) as usize;
                let opened = open_blob(&key, sealing, BlobType::Data, &entry.id, entry.raw_offset, entry.raw_length, &pack.bytes[range]);
                prop_assert_eq!(&opened.unwrap(), data);
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
        let pack = build(&key, Sealing::Bundles, &[b"one".to_vec(), b"two".to_vec()], 1);
        for cut in [0, 1, 3, 10, pack.bytes.len() - 1] {
            assert!(read_header(&key, &pack.bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = pack.bytes.clone();
        let n = bad.len();
        bad[n - 10] ^= 0x40;
        assert!(read_header(&key, &bad).is_err());
    }

    /// A version-2 header whose entries do not describe whole bundles in order is refused, even
    /// though it is authentic (only a faulty writer could make one).
    #[test]
    fn entries_must_describe_whole_bundles() {
        let key = MasterKey::generate();
        let items: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 50]).collect();
        let good = build(&key, Sealing::Bundles, &items, 2).blobs;
        let data_len = good.iter().map(|b| b.bundle_range().end).max().unwrap();
        assert_eq!(parse_header(&encode_header_plain(&good, Sealing::Bundles), data_len).unwrap(), good);
        let faults: [fn(&mut Vec<PackBlob>); 5] = [
            |b| b[1].raw_offset += 1,       // a gap in a bundle
            |b| b[1].length += 1,           // one bundle, two lengths
            |b| b[1].kind = BlobType::Tree, // one bundle, two types
            |b| b[2].raw_offset = 3,        // a new bundle not starting at 0
            |b| b.swap(0, 2),               // bundles out of order
        ];
        for (i, fault) in faults.iter().enumerate() {
            let mut bad = good.clone();
            fault(&mut bad);
            assert!(parse_header(&encode_header_plain(&bad, Sealing::Bundles), data_len).is_err(), "fault {i}");
        }
    }

    /// No entry of either version may place a blob past the largest bundle (`MAX_BLOB_LEN`).
    #[test]
    fn entries_past_the_largest_bundle_are_refused() {
        let id = BlobId(Id([3; 32]));
        let over = (MAX_BLOB_LEN + 1) as u32;
        let blob = PackBlob { kind: BlobType::Data, id, offset: 0, length: 100, raw_offset: 0, raw_length: over };
        for sealing in [Sealing::Single, Sealing::Bundles] {
            let plain = encode_header_plain(&[blob], sealing);
            assert!(parse_header(&plain, 100).is_err(), "{sealing:?}");
            let fits = PackBlob { raw_length: over - 1, ..blob };
            assert_eq!(parse_header(&encode_header_plain(&[fits], sealing), 100).unwrap(), vec![fits]);
        }
    }

    /// Format 1 writes version-1 headers, one blob per bundle.
    #[test]
    fn format_one_writes_single_blob_bundles() {
        let key = MasterKey::generate();
        let pack = build(&key, Sealing::Single, &[b"one".to_vec(), b"two".to_vec()], 1);
        let range = header_range(pack.bytes.len() as u64, &pack.bytes[pack.bytes.len() - 4..]).unwrap();
        let plain = key.open(HEADER_AAD, &pack.bytes[range.start as usize..range.end as usize]).unwrap();
        assert_eq!((plain[0], plain.len()), (PACK_HEADER_V1, 5 + 2 * ENTRY_LEN_V1));
        let mut w = PackWriter::new(Sealing::Single);
        let id = key.blob_id(b"x");
        let sealed = seal_blob(&key, Sealing::Single, BlobType::Data, &id, b"x", 3);
        assert!(w.add_bundle(BlobType::Data, &[(id, 1), (id, 1)], &sealed).is_err());
    }
}
