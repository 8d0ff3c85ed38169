//! Fuzzes `IndexFile::decode` (the opened plaintext of an index object).
//!
//! Asserts no panic, and for accepted inputs: every blob lies below the largest pack length, and
//! the value survives encode -> decode.

#![no_main]

use cairn::index::file::IndexFile;
use cairn::pack::MAX_PACK_LEN;
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(file) = IndexFile::decode(input) else {
        return;
    };
    let mut blobs = 0;
    for p in &file.packs {
        for b in &p.blobs {
            assert!(u64::from(b.offset) + u64::from(b.length) <= MAX_PACK_LEN, "{b:?}");
        }
        blobs += p.blobs.len();
    }
    assert_eq!(file.blob_count(), blobs);
    assert_round_trip("index", &file, IndexFile::encode, IndexFile::decode);
});
