//! Fuzzes pack header decoding: `parse_header`, `header_range` and `read_header`, for both
//! header versions (1: format 1, 45-byte entries; 2: format 2, 49-byte entries with
//! `raw_offset`), and `PackWriter` in both formats.
//!
//! Input: `data_len (u64 LE) || opened header bytes`. Asserts no panic; that an accepted header
//! keeps every bundle inside `data_len` and re-encodes to exactly the input in the layout its
//! version byte names (the format is fixed-width); that a version-1 header places every blob at
//! `raw_offset` 0 and a version-2 one describes whole bundles back to back (checked by an
//! independent oracle); that the same bytes sealed into a pack with the fixed key decode through
//! `read_header` exactly as `parse_header` says, and not once a tag byte is flipped; and that a
//! pack `PackWriter` builds from the input bytes (format 2: real sealed bundles of several blobs;
//! format 1: one blob each; the version byte picks) reads back: header, header length, and every
//! blob from its place in its opened bundle.

#![no_main]

use cairn::blob::{self, BlobType, Sealing};
use cairn::crypto::SEAL_OVERHEAD;
use cairn::id::BlobId;
use cairn::pack::{self, HEADER_AAD, MAX_HEADER_LEN, PACK_HEADER_V1, PACK_HEADER_VERSION, PackWriter};
use cairn_fuzz::{encode_header_plain, fixed_key, header_version, split_u64, whole_bundles_back_to_back};
use libfuzzer_sys::fuzz_target;

/// Blob bytes placed before a sealed header; bounds memory per run.
const MAX_FILLER: u64 = 1 << 16;
/// Blobs the writer check packs; each bundle is sealed for real, so this bounds time per run.
const MAX_WRITER_BLOBS: usize = 48;

fuzz_target!(|input: &[u8]| {
    let key = fixed_key();
    // Arbitrary bytes as a whole pack: must be refused or decoded, never panic.
    let _ = pack::read_header(key, input);
    let Some((data_len, plain)) = split_u64(input) else {
        return;
    };

    if let Ok(blobs) = pack::parse_header(plain, data_len) {
        let version = plain[0];
        assert!(version == PACK_HEADER_V1 || version == PACK_HEADER_VERSION, "version {version} accepted");
        for b in &blobs {
            assert!(b.bundle_range().end <= data_len, "bundle outside the pack: {b:?}");
            assert!(b.length as usize > SEAL_OVERHEAD, "bundle shorter than a sealed one: {b:?}");
            if version == PACK_HEADER_V1 {
                assert_eq!(b.raw_offset, 0, "a version-1 entry inside a bundle: {b:?}");
            } else {
                assert!(u64::from(b.raw_offset) + u64::from(b.raw_length) <= blob::MAX_BLOB_LEN, "{b:?}");
            }
        }
        if version == PACK_HEADER_VERSION {
            assert!(whole_bundles_back_to_back(&blobs), "accepted version-2 entries are not whole bundles: {blobs:?}");
        }
        assert_eq!(encode_header_plain(version, &blobs), plain, "accepted header is not canonical");
    }

    check_header_range(data_len, plain);
    check_sealed_header(data_len % MAX_FILLER, plain);
    let sealing = if plain.first() == Some(&PACK_HEADER_V1) { Sealing::Single } else { Sealing::Bundles };
    check_writer(sealing, input[0], input[1], plain);
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

/// Cut `bytes` into blobs of `1 + step % 64` bytes (at most [`MAX_WRITER_BLOBS`]), group them into bundles of `1 + per % 8`
/// blobs (format 2; one each in format 1), seal each bundle for real, pack them, and read
/// everything back.
fn check_writer(sealing: Sealing, step: u8, per: u8, bytes: &[u8]) {
    let key = fixed_key();
    let step = 1 + usize::from(step % 64);
    let per_bundle = if sealing == Sealing::Bundles { 1 + usize::from(per % 8) } else { 1 };
    let blobs: Vec<&[u8]> = bytes.chunks(step).take(MAX_WRITER_BLOBS).collect();
    let mut writer = PackWriter::new(sealing);
    for group in blobs.chunks(per_bundle) {
        let kind = if group[0][0] & 1 == 0 { BlobType::Data } else { BlobType::Tree };
        let ids: Vec<(BlobId, u32)> = group.iter().map(|b| (key.blob_id(b), b.len() as u32)).collect();
        let sealed = blob::seal_bundle(key, &sealing.aad(kind, &ids[0].0), group, 1);
        if let Err(e) = writer.add_bundle(kind, &ids, &sealed) {
            panic!("add_bundle refused a small bundle of {} blobs: {e}", ids.len());
        }
    }
    if sealing == Sealing::Single {
        let id = key.blob_id(b"");
        let sealed = blob::seal_blob(key, sealing, BlobType::Data, &id, b"", 1);
        assert!(
            PackWriter::new(sealing).add_bundle(BlobType::Data, &[(id, 0), (id, 0)], &sealed).is_err(),
            "format 1 took a bundle of two blobs"
        );
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
    assert_eq!(header.len(), blobs.len());

    // The header is the version this sealing writes, laid out as the oracle lays it out.
    let n = finished.bytes.len();
    let range = match pack::header_range(n as u64, &finished.bytes[n - 4..]) {
        Ok(r) => r,
        Err(e) => panic!("finished pack has no header range: {e}"),
    };
    let sealed_header = &finished.bytes[range.start as usize..range.end as usize];
    assert_eq!(sealed_header.len() as u64, pack::sealed_header_len(sealing, header.len() as u64));
    match key.open(HEADER_AAD, sealed_header) {
        Ok(plain) => assert_eq!(plain, encode_header_plain(header_version(sealing), &header), "writer vs oracle"),
        Err(e) => panic!("the header of a finished pack does not open: {e}"),
    }

    // Every blob comes back from its place in its bundle; each bundle is opened once.
    let mut bundle = Vec::new();
    let mut opened_at = None;
    for (entry, data) in header.iter().zip(&blobs) {
        assert_eq!(entry.raw_length as usize, data.len());
        if opened_at != Some(entry.offset) {
            let sealed = &finished.bytes[entry.bundle_range().start as usize..entry.bundle_range().end as usize];
            if let Err(e) = blob::open_bundle(key, &sealing.aad(entry.kind, &entry.id), sealed, &mut bundle) {
                panic!("a bundle of a finished pack does not open: {e}");
            }
            opened_at = Some(entry.offset);
        }
        match blob::blob_in(key, sealing, &entry.id, entry.raw_offset, entry.raw_length, &bundle) {
            Ok(back) => assert_eq!(back, *data, "a blob read back from its place differs"),
            Err(e) => panic!("a blob of a finished pack is not at its place: {e} ({entry:?})"),
        }
    }
}
