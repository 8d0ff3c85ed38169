//! Fuzzes pack header decoding: `parse_header`, `header_range` and `read_header`.
//!
//! Input: `data_len (u64 LE) || opened header bytes`. Asserts no panic; that an accepted header
//! keeps every blob inside `data_len` and re-encodes to exactly the input (the format is
//! fixed-width); that the same bytes sealed into a pack with the fixed key decode through
//! `read_header` exactly as `parse_header` says; and that `PackWriter` output reads back.

#![no_main]

use cairn::blob::BlobType;
use cairn::crypto::SEAL_OVERHEAD;
use cairn::id::{BlobId, Id};
use cairn::pack::{self, HEADER_AAD, MAX_HEADER_LEN, PackWriter};
use cairn_fuzz::{encode_header_plain, fixed_key, split_u64};
use libfuzzer_sys::fuzz_target;

/// Blob bytes placed before a sealed header; bounds memory per run.
const MAX_FILLER: u64 = 1 << 16;

fuzz_target!(|input: &[u8]| {
    let key = fixed_key();
    // Arbitrary bytes as a whole pack: must be refused or decoded, never panic.
    let _ = pack::read_header(key, input);
    let Some((data_len, plain)) = split_u64(input) else {
        return;
    };

    if let Ok(blobs) = pack::parse_header(plain, data_len) {
        for b in &blobs {
            assert!(u64::from(b.offset) + u64::from(b.length) <= data_len, "blob outside the pack: {b:?}");
            assert!(b.length as usize > SEAL_OVERHEAD, "blob shorter than a sealed blob: {b:?}");
        }
        assert_eq!(encode_header_plain(&blobs), plain, "accepted header is not canonical");
    }

    check_header_range(data_len, plain);
    check_sealed_header(data_len % MAX_FILLER, plain);
    check_writer(input[0], plain);
});

fn check_header_range(pack_len: u64, bytes: &[u8]) {
    let trailer = bytes.get(..4).unwrap_or(bytes);
    if let Ok(range) = pack::header_range(pack_len, trailer) {
        assert!(range.start <= range.end && range.end.checked_add(4) == Some(pack_len), "{range:?} in {pack_len}");
        assert!(range.end - range.start <= u64::from(MAX_HEADER_LEN));
    }
}

/// `filler || seal(plain) || len`: `read_header` must agree with `parse_header`.
fn check_sealed_header(filler: u64, plain: &[u8]) {
    let key = fixed_key();
    let mut packed = vec![0u8; filler as usize];
    let sealed = key.seal(HEADER_AAD, plain);
    let Ok(sealed_len) = u32::try_from(sealed.len()) else {
        return;
    };
    packed.extend_from_slice(&sealed);
    packed.extend_from_slice(&sealed_len.to_le_bytes());
    let direct = pack::parse_header(plain, filler);
    let through = pack::read_header(key, &packed);
    match (&direct, &through) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("parse_header {direct:?} but read_header {through:?}"),
    }
    // The sealed header must not open once any byte of it changes.
    if let Some(last) = packed.len().checked_sub(5) {
        packed[last] ^= 0x01;
        assert!(pack::read_header(key, &packed).is_err(), "flipped header tag still opened");
    }
}

/// Cut `bytes` into fake sealed blobs, pack them, and read the header back.
fn check_writer(step_byte: u8, bytes: &[u8]) {
    let key = fixed_key();
    let step = SEAL_OVERHEAD + 1 + usize::from(step_byte % 64);
    let mut writer = PackWriter::new();
    let mut added = Vec::new();
    for (i, chunk) in bytes.chunks(step).enumerate() {
        let kind = if chunk[0] & 1 == 0 { BlobType::Data } else { BlobType::Tree };
        let id = BlobId(Id([i as u8; 32]));
        if chunk.len() <= SEAL_OVERHEAD {
            break; // a real pack never holds a blob shorter than a sealed one
        }
        if let Err(e) = writer.add(kind, id, chunk, chunk.len() as u32) {
            panic!("add refused a small blob: {e}");
        }
        added.push(chunk);
    }
    let finished = match writer.finish(key) {
        Ok(f) => f,
        Err(e) => panic!("finish failed to verify its own header: {e}"),
    };
    let header = match pack::read_header(key, &finished.bytes) {
        Ok(h) => h,
        Err(e) => panic!("finished pack does not read back: {e}"),
    };
    assert_eq!(header, finished.blobs);
    assert_eq!(header.len(), added.len());
    for (entry, chunk) in header.iter().zip(added) {
        let start = entry.offset as usize;
        assert_eq!(finished.bytes.get(start..start + entry.length as usize), Some(chunk));
    }
}
