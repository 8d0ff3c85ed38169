//! Shared pieces of cairn's fuzz targets: the fixed master key, the round-trip assertion every
//! target makes, and the byte layouts of the structured targets (so `make-seeds` writes inputs
//! that the targets read the same way).
//!
//! Every assertion here is a fuzzing oracle: a panic means the library broke a promise (a decoder
//! panicked, or a value did not survive encode -> decode). Nothing here is used by cairn itself.

use cairn::blob::{BlobType, Sealing};
use cairn::crypto::MasterKey;
use cairn::error::FormatError;
use cairn::pack::{ENTRY_LEN, ENTRY_LEN_V1, PACK_HEADER_V1, PACK_HEADER_VERSION, PackBlob};
use std::fmt::Debug;
use std::sync::OnceLock;

/// The fixed key every target and seed uses, so sealed seeds open in the targets.
pub fn fixed_key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| match MasterKey::from_bytes(&[7u8; cairn::crypto::MASTER_KEY_LEN]) {
        Ok(k) => k,
        Err(e) => panic!("a 72-byte master key must be accepted: {e}"),
    })
}

/// The value survives encode -> decode, and encoding is deterministic (encoding the decoded
/// value again gives the same bytes). Byte equality with the *input* is not asserted for
/// postcard objects: postcard accepts over-long varints, so several inputs decode alike.
pub fn assert_round_trip<T: PartialEq + Debug>(
    what: &str,
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Result<T, FormatError>,
) {
    let bytes = encode(value);
    let back = match decode(&bytes) {
        Ok(v) => v,
        Err(e) => panic!("{what}: re-encoded value does not decode: {e}\nvalue: {value:?}"),
    };
    assert_eq!(&back, value, "{what}: value changed in encode -> decode");
    assert_eq!(encode(&back), bytes, "{what}: encoding is not deterministic");
}

/// Splits `u64 LE (8 bytes) || rest`; `None` if the input is shorter than 8 bytes.
pub fn split_u64(input: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = input.split_at_checked(8)?;
    let head: [u8; 8] = head.try_into().ok()?;
    Some((u64::from_le_bytes(head), rest))
}

pub fn blob_type(byte: u8) -> BlobType {
    if byte & 1 == 0 { BlobType::Data } else { BlobType::Tree }
}

/// A second, independent writer of opened pack headers, from the layout documented in
/// `repo-format.md` section 7: `version || count u32 || count * entry`, where an entry is
/// `type id offset length raw_offset raw_length` (version 2, [`ENTRY_LEN`] bytes) or the same
/// without `raw_offset` (version 1, [`ENTRY_LEN_V1`] bytes). `version` is written as given and
/// picks the layout: [`PACK_HEADER_V1`] the version-1 entries, anything else the version-2
/// ones. The header format is fixed-width, so parsing must be exactly inverted by this.
pub fn encode_header_plain(version: u8, blobs: &[PackBlob]) -> Vec<u8> {
    let v1 = version == PACK_HEADER_V1;
    let entry = if v1 { ENTRY_LEN_V1 } else { ENTRY_LEN };
    let mut out = Vec::with_capacity(5 + blobs.len() * entry);
    out.push(version);
    let count = u32::try_from(blobs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for b in blobs {
        out.push(b.kind.to_byte());
        out.extend_from_slice(b.id.as_bytes());
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.length.to_le_bytes());
        if !v1 {
            out.extend_from_slice(&b.raw_offset.to_le_bytes());
        }
        out.extend_from_slice(&b.raw_length.to_le_bytes());
    }
    out
}

/// The pack header version a repository of this sealing writes.
pub fn header_version(sealing: Sealing) -> u8 {
    match sealing {
        Sealing::Single => PACK_HEADER_V1,
        Sealing::Bundles => PACK_HEADER_VERSION,
    }
}

/// Whether `blobs` describe whole bundles back to back, as `repo-format.md` section 7 tells
/// writers of version-2 headers (written here independently of `pack::parse_header`): the first
/// bundle at 0, each next bundle where the previous one ended; the blobs of one bundle share its
/// offset, length and type, and their `raw_offset`s run from 0 without gaps.
pub fn whole_bundles_back_to_back(blobs: &[PackBlob]) -> bool {
    let mut bundle_end = 0u64; // where the next bundle must start
    let mut raw_end = 0u64; // where the next blob of the current bundle must start
    let mut current: Option<&PackBlob> = None;
    for b in blobs {
        let same_bundle =
            current.is_some_and(|c| c.offset == b.offset && c.length == b.length && c.kind == b.kind);
        if same_bundle {
            if u64::from(b.raw_offset) != raw_end {
                return false;
            }
        } else {
            if u64::from(b.offset) != bundle_end || b.raw_offset != 0 {
                return false;
            }
            bundle_end = u64::from(b.offset) + u64::from(b.length);
            current = Some(b);
        }
        raw_end = u64::from(b.raw_offset) + u64::from(b.raw_length);
    }
    true
}

/// `Sealing` from a flag bit: 0 format 1 ([`Sealing::Single`]), 1 format 2 ([`Sealing::Bundles`]).
pub fn sealing_from_bit(set: bool) -> Sealing {
    if set { Sealing::Bundles } else { Sealing::Single }
}

/// `blob_open` input layouts, chosen by the first byte modulo 3. The second byte holds flags:
/// bit 0 the blob type (0 data, 1 tree), bit 1 the sealing (0 format 1 `Single`, 1 format 2
/// `Bundles`). Integers are little-endian.
pub mod blob_mode {
    /// `0 || flags || id (32) || raw_offset (u32) || raw_length (u32) || sealed bundle`: open
    /// arbitrary bytes as a bundle under *both* sealings (the flag's sealing bit is not used),
    /// and take the blob at the given place.
    pub const RAW: u8 = 0;
    /// `1 || flags || zstd level selector || cuts (3 bytes) || flip position (u16) || xor mask ||
    /// plaintext`: in format 2 cut the plaintext into 4 parts (at `cut * len / 255` for each
    /// cut byte, sorted; parts may be empty), seal them as one bundle, open it, take every part
    /// back from its place; in format 1 seal the whole plaintext as one blob. Then flip one
    /// byte of the sealed bundle and open again.
    pub const FLIP: u8 = 1;
    /// `2 || flags || id (32) || raw_offset (u32) || raw_length (u32) || body`: seal `body`
    /// correctly under the associated data of the flag's sealing, so the compression byte and
    /// zstd frame decoding are reached with arbitrary bytes.
    pub const BODY: u8 = 2;
    /// zstd levels the FLIP layout picks from (level 19 is slow per run; kept rare).
    pub const LEVELS: [i32; 4] = [1, 3, 9, 19];
    /// Flag bit 0: the blob type.
    pub const TYPE_BIT: u8 = 1;
    /// Flag bit 1: the sealing (set: format 2 bundles).
    pub const BUNDLES_BIT: u8 = 2;
    /// Number of cut bytes in the FLIP layout (so format 2 bundles hold `CUTS + 1` parts).
    pub const CUTS: usize = 3;
}

/// The FLIP layout's parts: `plaintext` cut at `cut * len / 255` for each cut byte, sorted.
pub fn cut_parts<'a>(plaintext: &'a [u8], cuts: &[u8]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * plaintext.len() / 255).collect();
    at.sort_unstable();
    let mut parts = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for end in at {
        parts.push(&plaintext[start..end]);
        start = end;
    }
    parts.push(&plaintext[start..]);
    parts
}

/// Splits `u32 LE || u32 LE || rest`.
pub fn split_two_u32(input: &[u8]) -> Option<(u32, u32, &[u8])> {
    let (a, rest) = input.split_first_chunk::<4>()?;
    let (b, rest) = rest.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*a), u32::from_le_bytes(*b), rest))
}
