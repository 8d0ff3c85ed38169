//! Blob encoding: compress, then seal with the blob's type and id as associated data.
//!
//! Sealed plaintext is `compression[1] || payload`: 0 = stored raw, 1 = one zstd frame that
//! records its content size. Compression is kept only when it is smaller. Opening a blob
//! authenticates it (so it cannot be swapped for another blob, or a tree for data), caps the
//! decompressed size before allocating, and re-hashes the plaintext against the id.

use crate::crypto::MasterKey;
use crate::error::FormatError;
use crate::id::BlobId;
use serde::{Deserialize, Serialize};

/// No blob's plaintext may exceed this (chunks are at most 16 MiB; trees are capped here too).
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

/// The associated data that binds a sealed blob to its type and id.
pub fn blob_aad(kind: BlobType, id: &BlobId) -> [u8; 33] {
    let mut aad = [0u8; 33];
    aad[0] = kind.to_byte();
    aad[1..].copy_from_slice(id.as_bytes());
    aad
}

/// Compresses (when that pays) and seals a blob whose id the caller already computed. The
/// frame goes into a per-thread buffer and from there straight into the sealed message, which
/// is encrypted in place: one copy of the payload, one allocation per blob.
pub fn seal_blob(key: &MasterKey, kind: BlobType, id: &BlobId, plaintext: &[u8], zstd_level: i32) -> Vec<u8> {
    let aad = blob_aad(kind, id);
    let sealed = with_compressed(plaintext, zstd_level, |frame| match frame {
        Some(frame) if frame.len() < plaintext.len() => key.seal_parts(&aad, &[&[ZSTD], frame]),
        _ => key.seal_parts(&aad, &[&[RAW], plaintext]),
    });
    match sealed {
        Some(sealed) => sealed,
        // The compressor could not be set up: store the blob raw.
        None => key.seal_parts(&aad, &[&[RAW], plaintext]),
    }
}

/// A compressor at one level, and the buffer its frames go into; one per thread: creating a
/// context per blob costs more than compressing a small blob.
struct Compression {
    level: i32,
    compressor: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<Compression>> = const { std::cell::RefCell::new(None) };
}

/// Calls `then` with the zstd frame of `plaintext` (`None` if compressing failed). `None` if no
/// compressor could be made for the level.
fn with_compressed<T>(plaintext: &[u8], level: i32, then: impl FnOnce(Option<&[u8]>) -> T) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.level != level) {
            let compressor = zstd::bulk::Compressor::new(level).ok()?;
            *slot = Some(Compression { level, compressor, frame: Vec::new() });
        }
        let c = slot.as_mut()?;
        c.frame.clear();
        c.frame.reserve(zstd::zstd_safe::compress_bound(plaintext.len()));
        let done = c.compressor.compress_to_buffer(plaintext, &mut c.frame);
        let out = then(done.ok().map(|_| c.frame.as_slice()));
        // A frame of the largest chunk is a few MiB: keep no more than that between blobs.
        if c.frame.capacity() > 8 << 20 {
            c.frame = Vec::new();
        }
        Some(out)
    })
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
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
        _ => Err(FormatError::invalid("blob", "zstd frame without a content size")),
    }
}

/// Authenticates, decompresses and re-hashes a sealed blob. Only bytes that pass come back.
pub fn open_blob(key: &MasterKey, kind: BlobType, id: &BlobId, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let body = key.open(&blob_aad(kind, id), sealed)?;
    let plain = decode_body(body)?;
    if key.blob_id(&plain) != *id {
        return Err(FormatError::invalid("blob", "content does not hash to its id"));
    }
    Ok(plain)
}

thread_local! {
    /// The decrypted body (tag byte and frame) of the last blob opened into a caller's buffer.
    static BODY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`open_blob`] into `out`, whose length is the plaintext length the index promised: the
/// frame is decompressed straight into it and `out` is hashed there, so opening a blob
/// allocates nothing. Errors if the blob's length differs from `out`'s; on any error `out`'s
/// contents are unspecified and must not be used.
pub fn open_blob_into(
    key: &MasterKey,
    kind: BlobType,
    id: &BlobId,
    sealed: &[u8],
    out: &mut [u8],
) -> Result<(), FormatError> {
    BODY.with(|cell| {
        let mut body = cell.borrow_mut();
        let opened = key.open_to(&blob_aad(kind, id), sealed, &mut body).and_then(|()| decode_body_into(&body, out));
        if body.capacity() > 8 << 20 {
            *body = Vec::new();
        }
        opened
    })?;
    if key.blob_id(out) != *id {
        return Err(FormatError::invalid("blob", "content does not hash to its id"));
    }
    Ok(())
}

fn wrong_length(has: u64, promised: usize) -> FormatError {
    FormatError::invalid("blob", format!("has {has} bytes, the index says {promised}"))
}

fn decode_body_into(body: &[u8], out: &mut [u8]) -> Result<(), FormatError> {
    let Some((&tag, payload)) = body.split_first() else {
        return Err(FormatError::Truncated { needed: 1, available: 0 });
    };
    match tag {
        RAW if payload.len() == out.len() => {
            out.copy_from_slice(payload);
            Ok(())
        }
        RAW => Err(wrong_length(payload.len() as u64, out.len())),
        ZSTD => {
            let size = frame_size(payload)?;
            if size != out.len() as u64 {
                return Err(wrong_length(size, out.len()));
            }
            match with_decompressor(|d| d.decompress_to_buffer(payload, &mut *out)) {
                Ok(n) if n == out.len() => Ok(()),
                Ok(_) => Err(FormatError::invalid("blob", "zstd frame shorter than it claims")),
                Err(e) => Err(FormatError::invalid("blob", format!("zstd: {e}"))),
            }
        }
        other => Err(FormatError::invalid("blob", format!("unknown compression byte {other}"))),
    }
}

fn decode_body(mut body: Vec<u8>) -> Result<Vec<u8>, FormatError> {
    let Some((&tag, payload)) = body.split_first() else {
        return Err(FormatError::Truncated { needed: 1, available: 0 });
    };
    match tag {
        // The payload moves down over the compression byte: no second buffer of its size.
        RAW => {
            body.remove(0);
            Ok(body)
        }
        ZSTD => {
            let size = frame_size(payload)?;
            if size > MAX_BLOB_LEN {
                return Err(FormatError::TooLarge { what: "blob", size, limit: MAX_BLOB_LEN });
            }
            let cap = usize::try_from(size).map_err(|_| FormatError::invalid("blob", "size"))?;
            let out = with_decompressor(|d| d.decompress(payload, cap))
                .map_err(|e| FormatError::invalid("blob", format!("zstd: {e}")))?;
            if out.len() != cap {
                return Err(FormatError::invalid("blob", "zstd frame shorter than it claims"));
            }
            Ok(out)
        }
        other => Err(FormatError::invalid("blob", format!("unknown compression byte {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            let key = MasterKey::generate();
            let id = key.blob_id(&data);
            let sealed = seal_blob(&key, BlobType::Data, &id, &data, 3);
            prop_assert_eq!(open_blob(&key, BlobType::Data, &id, &sealed).unwrap(), data);
        }

        /// Opening into a buffer gives what opening into a new one does, raw or compressed; a
        /// buffer of any other length, a flipped byte or another id is refused.
        #[test]
        fn open_into_matches_open(data in proptest::collection::vec(0u8..4, 0..20_000), noise: bool, flip: usize) {
            let key = MasterKey::generate();
            let data: Vec<u8> = if noise { data.iter().enumerate().map(|(i, b)| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3] ^ b).collect() } else { data };
            let id = key.blob_id(&data);
            let sealed = seal_blob(&key, BlobType::Data, &id, &data, 1);
            let mut out = vec![0xAA; data.len()];
            open_blob_into(&key, BlobType::Data, &id, &sealed, &mut out).unwrap();
            prop_assert_eq!(&out, &data);
            for len in [data.len() + 1, data.len().saturating_sub(1)] {
                if len != data.len() {
                    let mut out = vec![0; len];
                    prop_assert!(open_blob_into(&key, BlobType::Data, &id, &sealed, &mut out).is_err());
                }
            }
            let mut bad = sealed.clone();
            let at = flip % bad.len();
            bad[at] ^= 1;
            prop_assert!(open_blob_into(&key, BlobType::Data, &id, &bad, &mut out).is_err());
            let other = key.blob_id(b"other");
            prop_assert!(open_blob_into(&key, BlobType::Data, &other, &sealed, &mut out).is_err());
        }
    }

    #[test]
    fn compresses_when_smaller_and_binds_type_and_id() {
        let key = MasterKey::generate();
        let data = vec![7u8; 100_000];
        let id = key.blob_id(&data);
        let sealed = seal_blob(&key, BlobType::Data, &id, &data, 3);
        assert!(sealed.len() < 1000);
        assert!(open_blob(&key, BlobType::Tree, &id, &sealed).is_err());
        let other = key.blob_id(b"other");
        assert!(open_blob(&key, BlobType::Data, &other, &sealed).is_err());
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let key = MasterKey::generate();
        let data: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let id = key.blob_id(&data);
        let sealed = seal_blob(&key, BlobType::Data, &id, &data, 3);
        assert!(sealed.len() <= data.len() + 1 + crate::crypto::SEAL_OVERHEAD);
        assert_eq!(open_blob(&key, BlobType::Data, &id, &sealed).unwrap(), data);
    }
}
