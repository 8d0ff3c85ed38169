//! The one structured encoding: a version byte, then postcard 1 (a published, frozen serde wire
//! format). bincode was the first choice; its 1.x/2.x lines are unmaintained (RUSTSEC-2025-0141)
//! and 3.0 is an empty tombstone, and our format must outlive its libraries.
//!
//! Decoding refuses unknown versions, trailing bytes and inputs over the caller's size limit.

use crate::error::FormatError;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    encode_sized(version, value, 64)
}

/// [`encode`] into a buffer reserved for `capacity` bytes: a large object that would otherwise
/// grow by doubling (briefly holding one and a half copies) is written in place.
pub fn encode_sized<T: Serialize>(version: u8, value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(1));
    out.push(version);
    // Serializing plain structs into a Vec cannot fail; keep the error path total anyway.
    match postcard::to_extend(value, out) {
        Ok(v) => v,
        Err(_) => vec![version],
    }
}

pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    supported: u8,
    limit: u64,
    bytes: &[u8],
) -> Result<T, FormatError> {
    if bytes.len() as u64 > limit {
        return Err(FormatError::TooLarge { what, size: bytes.len() as u64, limit });
    }
    let (&version, body) = bytes.split_first().ok_or(FormatError::Truncated { needed: 1, available: 0 })?;
    if version != supported {
        return Err(FormatError::UnsupportedVersion { what, version, supported });
    }
    let (value, rest) = postcard::take_from_bytes(body).map_err(|e| FormatError::invalid(what, e.to_string()))?;
    if !rest.is_empty() {
        return Err(FormatError::invalid(what, format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}
