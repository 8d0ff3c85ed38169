//! Fuzzes opening blobs and bundles (`open_bundle`, `blob_in`, `open_blob`) with a fixed master
//! key, under both sealings (format 1 `Single`, format 2 `Bundles`), in three layouts (see
//! `cairn_fuzz::blob_mode`): arbitrary bytes opened as a bundle under both sealings; a sealed
//! bundle of fuzzed parts (format 2: the plaintext cut into 4 parts; format 1: one blob) with one
//! byte flipped; and an arbitrary body sealed correctly, which reaches the compression byte and
//! zstd decoding.
//!
//! Asserts no panic; that whatever `blob_in` or `open_blob` returns hashes to the id asked for
//! and has the length asked for, and that both agree; that an opened bundle is at most
//! `MAX_BLOB_LEN` bytes; that a sealed bundle opens to the concatenation of its parts and every
//! part comes back from its place (through `blob_in`, and one through `open_blob`); that it does
//! not open under the other sealing's or the other type's associated data; and that a flipped
//! byte is refused or yields the original.

#![no_main]

use cairn::blob::{self, BlobType, MAX_BLOB_LEN, Sealing};
use cairn::id::{BlobId, Id};
use cairn_fuzz::{blob_mode, blob_type, cut_parts, fixed_key, sealing_from_bit, split_two_u32};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [mode, flags, rest @ ..] = input else {
        return;
    };
    let kind = blob_type(*flags & blob_mode::TYPE_BIT);
    let sealing = sealing_from_bit(*flags & blob_mode::BUNDLES_BIT != 0);
    let key = fixed_key();
    match mode % 3 {
        blob_mode::RAW | blob_mode::BODY => {
            let Some((id, rest)) = rest.split_first_chunk::<32>() else {
                return;
            };
            let id = BlobId(Id(*id));
            let Some((raw_offset, raw_length, body)) = split_two_u32(rest) else {
                return;
            };
            if mode % 3 == blob_mode::RAW {
                for sealing in [Sealing::Single, Sealing::Bundles] {
                    check_open(sealing, kind, &id, raw_offset, raw_length, body);
                }
            } else {
                let sealed = key.seal(sealing.aad(kind, &id).as_bytes(), body);
                check_open(sealing, kind, &id, raw_offset, raw_length, &sealed);
            }
        }
        _ => flip(sealing, kind, rest),
    }
});

/// Opens `sealed` as the bundle holding blob `id` at (`raw_offset`, `raw_length`), both through
/// `open_bundle` + `blob_in` and through `open_blob`; they must agree, and what they return must
/// be the blob asked for.
fn check_open(sealing: Sealing, kind: BlobType, id: &BlobId, raw_offset: u32, raw_length: u32, sealed: &[u8]) {
    let key = fixed_key();
    let mut bundle = Vec::new();
    let taken = match blob::open_bundle(key, &sealing.aad(kind, id), sealed, &mut bundle) {
        Ok(()) => {
            assert!(bundle.len() as u64 <= MAX_BLOB_LEN, "a bundle of {} bytes opened", bundle.len());
            blob::blob_in(key, sealing, id, raw_offset, raw_length, &bundle).ok()
        }
        Err(_) => None,
    };
    if let Some(plain) = taken {
        assert_eq!(key.blob_id(plain), *id, "blob_in returned bytes that do not hash to the id");
        assert_eq!(plain.len(), raw_length as usize, "blob_in returned another length");
        if sealing == Sealing::Single {
            assert_eq!(plain.len(), bundle.len(), "a format-1 blob is not its whole bundle");
        }
    }
    let opened = blob::open_blob(key, sealing, kind, id, raw_offset, raw_length, sealed);
    if let Ok(plain) = &opened {
        assert_eq!(key.blob_id(plain), *id, "open_blob returned bytes that do not hash to the id");
    }
    assert_eq!(opened.ok().as_deref(), taken, "open_blob and open_bundle + blob_in disagree");
}

/// Seal the plaintext as a bundle of parts (format 2) or one blob (format 1), check every part
/// comes back, flip one byte, check the result.
fn flip(sealing: Sealing, kind: BlobType, rest: &[u8]) {
    let [level, c0, c1, c2, p0, p1, mask, plaintext @ ..] = rest else {
        return;
    };
    let key = fixed_key();
    let level = blob_mode::LEVELS[usize::from(level % 4)];
    let parts = match sealing {
        Sealing::Single => vec![plaintext],
        Sealing::Bundles => cut_parts(plaintext, &[*c0, *c1, *c2]),
    };
    let ids: Vec<BlobId> = parts.iter().map(|p| key.blob_id(p)).collect();
    let aad = sealing.aad(kind, &ids[0]);
    let mut sealed = match sealing {
        Sealing::Single => blob::seal_blob(key, sealing, kind, &ids[0], plaintext, level),
        Sealing::Bundles => blob::seal_bundle(key, &aad, &parts, level),
    };

    let mut bundle = vec![0xAA; 3]; // open_bundle must empty it first
    if let Err(e) = blob::open_bundle(key, &aad, &sealed, &mut bundle) {
        panic!("a freshly sealed bundle does not open: {e}");
    }
    assert_eq!(bundle, plaintext, "a sealed bundle opens to something else");
    let mut places = Vec::with_capacity(parts.len());
    let mut at = 0u32;
    for (part, id) in parts.iter().zip(&ids) {
        let len = part.len() as u32;
        match blob::blob_in(key, sealing, id, at, len, &bundle) {
            Ok(back) => assert_eq!(back, *part, "a part comes back different from its place"),
            Err(e) => panic!("a part is not at its place {at}+{len}: {e}"),
        }
        places.push((at, len));
        at += len;
    }
    // One part (picked by the flip position) through the one-off path too.
    let pick = usize::from(*p0) % parts.len();
    let (at, len) = places[pick];
    match blob::open_blob(key, sealing, kind, &ids[pick], at, len, &sealed) {
        Ok(back) => assert_eq!(back, parts[pick], "open_blob gives another part"),
        Err(e) => panic!("open_blob refuses a part of a fresh bundle: {e}"),
    }
    // The associated data binds the sealing and the type.
    let other_sealing = if sealing == Sealing::Single { Sealing::Bundles } else { Sealing::Single };
    let other_kind = if kind == BlobType::Data { BlobType::Tree } else { BlobType::Data };
    for wrong in [other_sealing.aad(kind, &ids[0]), sealing.aad(other_kind, &ids[0])] {
        assert!(blob::open_bundle(key, &wrong, &sealed, &mut bundle).is_err(), "opened under {wrong:?}");
    }

    let pos = usize::from(u16::from_le_bytes([*p0, *p1])) % sealed.len();
    sealed[pos] ^= if *mask == 0 { 0x80 } else { *mask };
    if blob::open_bundle(key, &aad, &sealed, &mut bundle).is_ok() {
        assert_eq!(bundle, plaintext, "a flipped byte opened to a different bundle");
    }
    if let Ok(back) = blob::open_blob(key, sealing, kind, &ids[pick], at, len, &sealed) {
        assert_eq!(back, parts[pick], "a flipped byte opened to a different blob");
    }
}
