//! Fuzzes `IndexFile::decode` (the opened plaintext of an index object), both versions
//! (1: format 1, no `raw_offset`; 2: format 2).
//!
//! Asserts no panic, and for accepted inputs: every bundle lies below the largest pack length and
//! every blob inside the largest bundle; a version-1 input places every blob at `raw_offset` 0;
//! the value survives encode -> decode with the sealing its version belongs to (version 1 with
//! `Sealing::Single`, version 2 with `Sealing::Bundles`), and the encoding starts with that
//! version byte; any accepted value also round-trips as version 2, and encoding it as version 1
//! succeeds exactly when no blob has a `raw_offset`.

#![no_main]

use cairn::blob::{MAX_BLOB_LEN, Sealing};
use cairn::index::file::{INDEX_V1, INDEX_VERSION, IndexFile};
use cairn::pack::MAX_PACK_LEN;
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(file) = IndexFile::decode(input) else {
        return;
    };
    let version = input[0];
    assert!(version == INDEX_V1 || version == INDEX_VERSION, "version {version} accepted");
    let sealing = if version == INDEX_V1 { Sealing::Single } else { Sealing::Bundles };
    let mut blobs = 0;
    let mut in_bundles = false;
    for p in &file.packs {
        for b in &p.blobs {
            assert!(u64::from(b.offset) + u64::from(b.length) <= MAX_PACK_LEN, "{b:?}");
            assert!(u64::from(b.raw_offset) + u64::from(b.raw_length) <= MAX_BLOB_LEN, "{b:?}");
            if version == INDEX_V1 {
                assert_eq!(b.raw_offset, 0, "a version-1 entry inside a bundle: {b:?}");
            }
            in_bundles |= b.raw_offset != 0;
        }
        blobs += p.blobs.len();
    }
    assert_eq!(file.blob_count(), blobs);
    let encode = |sealing: Sealing| {
        move |f: &IndexFile| match f.encode(sealing) {
            Ok(bytes) => bytes,
            Err(e) => panic!("an accepted index does not encode with {sealing:?}: {e}"),
        }
    };
    assert_eq!(encode(sealing)(&file).first(), Some(&version), "re-encoded as another version");
    assert_round_trip("index", &file, encode(sealing), IndexFile::decode);
    assert_round_trip("index as version 2", &file, encode(Sealing::Bundles), IndexFile::decode);
    assert_eq!(file.encode(Sealing::Single).is_ok(), !in_bundles, "version 1 refusal disagrees with raw_offsets");
});
