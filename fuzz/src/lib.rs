//! Shared pieces of cairn's fuzz targets: the fixed master key, the round-trip assertion every
//! target makes, and the byte layouts of the structured targets (so `make-seeds` writes inputs
//! that the targets read the same way).
//!
//! Every assertion here is a fuzzing oracle: a panic means the library broke a promise (a decoder
//! panicked, or a value did not survive encode -> decode). Nothing here is used by cairn itself.

use cairn::blob::BlobType;
use cairn::crypto::MasterKey;
use cairn::error::FormatError;
use cairn::pack::{ENTRY_LEN, PACK_HEADER_VERSION, PackBlob};
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
/// `src/pack.rs` (`version || count u32 || count * (type id offset length raw_length)`). The
/// header format is fixed-width, so parsing must be exactly inverted by this.
pub fn encode_header_plain(blobs: &[PackBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + blobs.len() * ENTRY_LEN);
    out.push(PACK_HEADER_VERSION);
    let count = u32::try_from(blobs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for b in blobs {
        out.push(b.kind.to_byte());
        out.extend_from_slice(b.id.as_bytes());
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.length.to_le_bytes());
        out.extend_from_slice(&b.raw_length.to_le_bytes());
    }
    out
}

/// `blob_open` input layouts, chosen by the first byte modulo 3. The second byte is the blob
/// type (low bit).
pub mod blob_mode {
    /// `0 || type || id (32) || sealed blob`: open arbitrary bytes as a blob.
    pub const RAW: u8 = 0;
    /// `1 || type || zstd level selector || flip position (u16 LE) || xor mask || plaintext`:
    /// seal the plaintext, flip one byte, open.
    pub const FLIP: u8 = 1;
    /// `2 || type || id (32) || body`: seal `body` correctly under the blob's associated data,
    /// so the compression byte and zstd frame decoding are reached with arbitrary bytes.
    pub const BODY: u8 = 2;
    /// zstd levels the FLIP layout picks from (level 19 is slow per run; kept rare).
    pub const LEVELS: [i32; 4] = [1, 3, 9, 19];
}
