//! Blob encoding: blobs are compressed and sealed in *bundles*, the unit a pack stores.
//!
//! A bundle holds the plaintexts of one or more blobs of one type, back to back; its sealed
//! plaintext is `compression[1] || payload`: 0 = stored raw, 1 = one zstd frame that records its
//! content size. Compression is kept only when it is smaller. How a bundle is sealed depends on
//! the repository format ([`Sealing`]): format 1 seals every blob alone with its type and id as
//! associated data; format 2 seals bundles of several small blobs with their type as
//! associated data, so that zstd and the AEAD pay their fixed costs per bundle rather than per
//! 4 KiB chunk. Opening authenticates the bundle, caps the decompressed size before
//! allocating, and a blob is taken out of it only after its bytes hash to its id.

use crate::crypto::MasterKey;
use crate::error::FormatError;
use crate::id::BlobId;
use serde::{Deserialize, Serialize};

/// No blob's plaintext, nor a bundle's, may exceed this (chunks are at most 16 MiB; trees are
/// capped here too).
pub const MAX_BLOB_LEN: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    pub fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    pub fn from_byte(b: u8) -> Result<Self, FormatError> {
        match b {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            _ => Err(FormatError::invalid("blob type", format!("unknown type byte {b}"))),
        }
    }
}

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// The first 12 bytes of a format-2 bundle's associated data; its type byte follows.
pub const BUNDLE_AAD_PREFIX: &[u8; 12] = b"cairn bundle";

/// How a repository's format seals blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// Format 1: each blob is a bundle of its own, sealed with `type || id` as associated data.
    Single,
    /// Format 2: a bundle holds one or more blobs of one type and is sealed with
    /// `"cairn bundle" || type` as associated data; each blob is verified by its id's hash.
    Bundles,
}

impl Sealing {
    /// The sealing of a repository format (1 or 2; anything later seals as 2 does).
    pub fn for_format(format_version: u32) -> Sealing {
        if format_version <= 1 { Sealing::Single } else { Sealing::Bundles }
    }

    /// The associated data of the bundle holding blob `id` of type `kind`.
    pub fn aad(self, kind: BlobType, id: &BlobId) -> Aad {
        let mut bytes = [0u8; 33];
        match self {
            Sealing::Single => {
                bytes[0] = kind.to_byte();
                bytes[1..].copy_from_slice(id.as_bytes());
                Aad { bytes, len: 33 }
            }
            Sealing::Bundles => {
                bytes[..12].copy_from_slice(BUNDLE_AAD_PREFIX);
                bytes[12] = kind.to_byte();
                Aad { bytes, len: 13 }
            }
        }
    }
}

/// A bundle's associated data (see [`Sealing::aad`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad {
    bytes: [u8; 33],
    len: usize,
}

impl Aad {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The associated data that binds a format-1 sealed blob to its type and id.
pub fn blob_aad(kind: BlobType, id: &BlobId) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad.copy_from_slice(Sealing::Single.aad(kind, id).as_bytes());
    aad
}

/// Compresses (when that pays) and seals a bundle of the blobs `parts` (their plaintexts, in
/// bundle order), with associated data `aad` (from [`Sealing::aad`]; in format 1 a bundle holds
/// one blob). The parts of a bundle of several are laid side by side in a per-thread buffer for
/// zstd; the frame goes into another and from there straight into the sealed message, which is
/// encrypted in place: one allocation per bundle.
pub fn seal_bundle(key: &MasterKey, aad: &Aad, parts: &[&[u8]], zstd_level: i32) -> Vec<u8> {
    let aad = aad.as_bytes();
    let raw_len: usize = parts.iter().map(|p| p.len()).sum();
    let raw = |key: &MasterKey| {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&[RAW]);
        all.extend_from_slice(parts);
        key.seal_parts(aad, &all)
    };
    let sealed = with_compressed(parts, zstd_level, |frame| match frame {
        Some(frame) if frame.len() < raw_len => key.seal_parts(aad, &[&[ZSTD], frame]),
        _ => raw(key),
    });
    match sealed {
        Some(sealed) => sealed,
        // The compressor could not be set up: store the bundle raw.
        None => raw(key),
    }
}

/// A bundle of one blob: [`seal_bundle`] with the blob's own associated data.
pub fn seal_blob(
    key: &MasterKey,
    sealing: Sealing,
    kind: BlobType,
    id: &BlobId,
    plaintext: &[u8],
    zstd_level: i32,
) -> Vec<u8> {
    seal_bundle(key, &sealing.aad(kind, id), &[plaintext], zstd_level)
}

/// A compressor at one level, and the buffers its input and frames go into; one per thread:
/// creating a context per bundle costs more than compressing a small one.
struct Compression {
    level: i32,
    compressor: zstd::bulk::Compressor<'static>,
    input: Vec<u8>,
    frame: Vec<u8>,
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<Compression>> = const { std::cell::RefCell::new(None) };
}

/// Calls `then` with the zstd frame of the concatenation of `parts` (`None` if compressing
/// failed). `None` if no compressor could be made for the level.
fn with_compressed<T>(parts: &[&[u8]], level: i32, then: impl FnOnce(Option<&[u8]>) -> T) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.level != level) {
            let compressor = zstd::bulk::Compressor::new(level).ok()?;
            *slot = Some(Compression { level, compressor, input: Vec::new(), frame: Vec::new() });
        }
        let c = slot.as_mut()?;
        // One part is compressed where it lies; several are laid side by side first.
        let input: &[u8] = match parts {
            [one] => one,
            _ => {
                c.input.clear();
                parts.iter().for_each(|p| c.input.extend_from_slice(p));
                &c.input
            }
        };
        c.frame.clear();
        c.frame.reserve(zstd::zstd_safe::compress_bound(input.len()));
        let done = c.compressor.compress_to_buffer(input, &mut c.frame);
        let out = then(done.ok().map(|_| c.frame.as_slice()));
        // A frame of the largest chunk is a few MiB: keep no more than that between bundles.
        if c.frame.capacity() > 8 << 20 {
            c.frame = Vec::new();
        }
        if c.input.capacity() > 8 << 20 {
            c.input = Vec::new();
        }
        Some(out)
    })
}

/// A reader's buffers are kept between bundles up to this size: bundles are 128 KiB, and
/// keeping one grown for a rare large blob (file chunks reach 4 MiB) costs more memory than
/// allocating it again.
const KEEP_BUFFER: usize = 1 << 20;

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    /// The decrypted body (tag byte and frame) of the last bundle opened.
    static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's decompressor, made on first use.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => f(d),
            None => f(&mut zstd::bulk::Decompressor::new()?),
        }
    })
}

/// The plaintext length a stored zstd frame declares (cairn always writes it).
fn frame_size(payload: &[u8]) -> Result<u64, FormatError> {
    match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(size)) => Ok(size),
        _ => Err(FormatError::invalid("bundle", "zstd frame without a content size")),
    }
}

/// Authenticates and decompresses a sealed bundle into `out` (emptied first; its allocation is
/// reused). The blobs in it are not verified yet: take each with [`blob_in`]. On error `out`
/// holds nothing usable.
pub fn open_bundle(key: &MasterKey, aad: &Aad, sealed: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    out.clear();
    BODY.with(|cell| {
        let mut body = cell.borrow_mut();
        let opened = key.open_to(aad.as_bytes(), sealed, &mut body).and_then(|()| decode_body(&body, out));
        if body.capacity() > KEEP_BUFFER {
            *body = Vec::new();
        }
        opened
    })
}

fn decode_body(body: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let Some((&tag, payload)) = body.split_first() else {
        return Err(FormatError::Truncated { needed: 1, available: 0 });
    };
    match tag {
        RAW if payload.len() as u64 > MAX_BLOB_LEN => {
            Err(FormatError::TooLarge { what: "bundle", size: payload.len() as u64, limit: MAX_BLOB_LEN })
        }
        RAW => {
            out.extend_from_slice(payload);
            Ok(())
        }
        ZSTD => {
            let size = frame_size(payload)?;
            if size > MAX_BLOB_LEN {
                return Err(FormatError::TooLarge { what: "bundle", size, limit: MAX_BLOB_LEN });
            }
            let cap = usize::try_from(size).map_err(|_| FormatError::invalid("bundle", "size"))?;
            out.reserve(cap);
            // Into the spare capacity, which zstd writes without it being zeroed first.
            match with_decompressor(|d| d.decompress_to_buffer(payload, out)) {
                Ok(n) if n == cap => Ok(()),
                Ok(_) => Err(FormatError::invalid("bundle", "zstd frame shorter than it claims")),
                Err(e) => Err(FormatError::invalid("bundle", format!("zstd: {e}"))),
            }
        }
        other => Err(FormatError::invalid("bundle", format!("unknown compression byte {other}"))),
    }
}

/// Blob `id`'s bytes in an opened bundle: `raw_length` bytes from `raw_offset`, returned only if
/// they hash to `id`. In format 1 the bundle must be exactly the blob.
pub fn blob_in<'b>(
    key: &MasterKey,
    sealing: Sealing,
    id: &BlobId,
    raw_offset: u32,
    raw_length: u32,
    bundle: &'b [u8],
) -> Result<&'b [u8], FormatError> {
    let (start, len) = (raw_offset as usize, raw_length as usize);
    let exact = sealing == Sealing::Bundles || (start == 0 && len == bundle.len());
    let plain = start.checked_add(len).and_then(|end| bundle.get(start..end)).filter(|_| exact);
    let Some(plain) = plain else {
        return Err(match sealing {
            Sealing::Single => {
                FormatError::invalid("blob", format!("has {} bytes, the index says {len}", bundle.len()))
            }
            Sealing::Bundles => FormatError::invalid(
                "blob",
                format!("bytes {start}..{} lie past its bundle's {} bytes", start as u64 + len as u64, bundle.len()),
            ),
        });
    };
    if key.blob_id(plain) != *id {
        return Err(FormatError::invalid("blob", "content does not hash to its id"));
    }
    Ok(plain)
}

/// The bundle a reader opened last, kept while the blobs it wants from it follow one another
/// (readers go through a pack by offset, so the blobs of one bundle come side by side): each
/// bundle is opened once. `K` says where a bundle is (its pack and offset, say).
pub struct LastBundle<K> {
    at: Option<K>,
    plain: Vec<u8>,
}

impl<K> Default for LastBundle<K> {
    fn default() -> Self {
        LastBundle { at: None, plain: Vec::new() }
    }
}

impl<K: PartialEq> LastBundle<K> {
    /// The plaintext of the bundle at `at`, opened with `open` (into the buffer it is given)
    /// unless it is the one open. A bundle that fails to open is not kept: its next blob tries
    /// again and fails with its own error, so every blob's error names that blob.
    pub fn get<E>(&mut self, at: K, open: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<&[u8], E> {
        if self.at.as_ref() != Some(&at) {
            self.at = None;
            // The buffer is reused for bundles of the usual size; one grown for a large blob is
            // let go, or every reader would keep its largest (check's 4 workers: +25 MB).
            if self.plain.capacity() > KEEP_BUFFER {
                self.plain = Vec::new();
            }
            open(&mut self.plain)?;
            self.at = Some(at);
        }
        Ok(&self.plain)
    }
}

/// Opens the sealed bundle holding blob `id` and returns the blob's verified plaintext: for
/// one-off reads (trees, tests); readers of many blobs keep the bundle ([`open_bundle`]).
pub fn open_blob(
    key: &MasterKey,
    sealing: Sealing,
    kind: BlobType,
    id: &BlobId,
    raw_offset: u32,
    raw_length: u32,
    sealed: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let mut bundle = Vec::new();
    open_bundle(key, &sealing.aad(kind, id), sealed, &mut bundle)?;
    let len = blob_in(key, sealing, id, raw_offset, raw_length, &bundle)?.len();
    if len == bundle.len() {
        return Ok(bundle); // the whole bundle: no copy
    }
    let start = raw_offset as usize;
    Ok(bundle[start..start + len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Plaintexts that compress (few symbols) or not (noise), as the flag says.
    fn shaped(data: Vec<u8>, noise: bool) -> Vec<u8> {
        if !noise {
            return data;
        }
        data.iter().enumerate().map(|(i, b)| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ b).collect()
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20_000), noise: bool) {
            let key = MasterKey::generate();
            let data = shaped(data, noise);
            let id = key.blob_id(&data);
            for sealing in [Sealing::Single, Sealing::Bundles] {
                let sealed = seal_blob(&key, sealing, BlobType::Data, &id, &data, 3);
                let len = data.len() as u32;
                prop_assert_eq!(&open_blob(&key, sealing, BlobType::Data, &id, 0, len, &sealed).unwrap(), &data);
            }
        }

        /// Every blob of a bundle comes back from its place; a wrong place, id, type, flipped
        /// byte or the other format's associated data is refused.
        #[test]
        fn bundles_hold_their_blobs(
            parts in proptest::collection::vec((proptest::collection::vec(0u8..4, 0..3000), any::<bool>()), 1..12),
            flip: usize,
        ) {
            let key = MasterKey::generate();
            let parts: Vec<Vec<u8>> = parts.into_iter().map(|(d, noise)| shaped(d, noise)).collect();
            let ids: Vec<BlobId> = parts.iter().map(|p| key.blob_id(p)).collect();
            let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
            let aad = Sealing::Bundles.aad(BlobType::Data, &ids[0]);
            let sealed = seal_bundle(&key, &aad, &slices, 1);
            let mut bundle = vec![0xAA; 7];
            open_bundle(&key, &aad, &sealed, &mut bundle).unwrap();
            prop_assert_eq!(bundle.len(), parts.iter().map(Vec::len).sum::<usize>());
            let mut at = 0u32;
            for (part, id) in parts.iter().zip(&ids) {
                let len = part.len() as u32;
                prop_assert_eq!(blob_in(&key, Sealing::Bundles, id, at, len, &bundle).unwrap(), part.as_slice());
                prop_assert!(blob_in(&key, Sealing::Bundles, id, at, len + 1, &bundle).is_err() || len == 0 && at as usize == bundle.len());
                prop_assert!(blob_in(&key, Sealing::Bundles, &key.blob_id(b"other"), at, len, &bundle).is_err());
                at += len;
            }
            prop_assert!(blob_in(&key, Sealing::Bundles, &ids[0], at, 1, &bundle).is_err());
            prop_assert!(blob_in(&key, Sealing::Bundles, &ids[0], u32::MAX, u32::MAX, &bundle).is_err());
            let mut bad = sealed.clone();
            let i = flip % bad.len();
            bad[i] ^= 1;
            prop_assert!(open_bundle(&key, &aad, &bad, &mut bundle).is_err());
            prop_assert!(open_bundle(&key, &Sealing::Bundles.aad(BlobType::Tree, &ids[0]), &sealed, &mut bundle).is_err());
            prop_assert!(open_bundle(&key, &Sealing::Single.aad(BlobType::Data, &ids[0]), &sealed, &mut bundle).is_err());
        }

        #[test]
        fn open_bundle_never_panics(sealed in proptest::collection::vec(any::<u8>(), 0..200)) {
            let key = MasterKey::generate();
            let _ = open_bundle(&key, &Sealing::Bundles.aad(BlobType::Data, &key.blob_id(b"")), &sealed, &mut Vec::new());
        }
    }

    #[test]
    fn compresses_when_smaller_and_binds_type_and_id() {
        let key = MasterKey::generate();
        let data = vec![7u8; 100_000];
        let id = key.blob_id(&data);
        let sealed = seal_blob(&key, Sealing::Single, BlobType::Data, &id, &data, 3);
        assert!(sealed.len() < 1000);
        let open = |kind, id: &BlobId| open_blob(&key, Sealing::Single, kind, id, 0, 100_000, &sealed);
        assert!(open(BlobType::Data, &id).is_ok());
        assert!(open(BlobType::Tree, &id).is_err());
        assert!(open(BlobType::Data, &key.blob_id(b"other")).is_err());
    }

    /// In format 1 a blob is its whole bundle: a shorter or shifted place is refused.
    #[test]
    fn single_blobs_fill_their_bundle() {
        let key = MasterKey::generate();
        let data = b"hello, bundle".to_vec();
        let id = key.blob_id(&data);
        let sealed = seal_blob(&key, Sealing::Single, BlobType::Data, &id, &data, 3);
        for (at, len) in [(0, 12), (0, 14), (1, 12)] {
            let e = open_blob(&key, Sealing::Single, BlobType::Data, &id, at, len, &sealed).unwrap_err();
            assert!(e.to_string().contains("the index says"), "{e}");
        }
    }

    /// A bundle stored raw is held to `MAX_BLOB_LEN` like a compressed one.
    #[test]
    fn a_raw_bundle_over_the_limit_is_refused() {
        let key = MasterKey::generate();
        let aad = Sealing::Bundles.aad(BlobType::Data, &key.blob_id(b""));
        let over = vec![0u8; MAX_BLOB_LEN as usize + 1];
        let sealed = key.seal_parts(aad.as_bytes(), &[&[RAW], &over]);
        let e = open_bundle(&key, &aad, &sealed, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, FormatError::TooLarge { .. }), "{e}");
        let at_limit = key.seal_parts(aad.as_bytes(), &[&[RAW], &over[1..]]);
        assert!(open_bundle(&key, &aad, &at_limit, &mut Vec::new()).is_ok());
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let key = MasterKey::generate();
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let id = key.blob_id(&data);
        let sealed = seal_blob(&key, Sealing::Bundles, BlobType::Data, &id, &data, 3);
        assert!(sealed.len() <= data.len() + 1 + crate::crypto::SEAL_OVERHEAD);
        assert_eq!(open_blob(&key, Sealing::Bundles, BlobType::Data, &id, 0, 5000, &sealed).unwrap(), data);
    }
}
