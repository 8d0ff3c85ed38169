//! Fuzzes `open_blob` with a fixed master key, in three layouts (see `cairn_fuzz::blob_mode`):
//! arbitrary sealed bytes; a sealed fuzzed plaintext with one byte flipped; and an arbitrary
//! body sealed correctly, which reaches the compression byte and zstd decoding.
//!
//! Asserts no panic; that anything `open_blob` returns hashes to the id asked for; that a sealed
//! plaintext opens to itself; and that a flipped byte is refused or yields the original.

#![no_main]

use cairn::blob::{blob_aad, open_blob, seal_blob};
use cairn::id::{BlobId, Id};
use cairn_fuzz::{blob_mode, blob_type, fixed_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [mode, kind, rest @ ..] = input else {
        return;
    };
    let kind = blob_type(*kind);
    let key = fixed_key();
    match mode % 3 {
        blob_mode::RAW | blob_mode::BODY => {
            let Some((id, rest)) = rest.split_first_chunk::<32>() else {
                return;
            };
            let id = BlobId(Id(*id));
            let sealed = if mode % 3 == blob_mode::RAW { rest.to_vec() } else { key.seal(&blob_aad(kind, &id), rest) };
            if let Ok(plain) = open_blob(key, kind, &id, &sealed) {
                assert_eq!(key.blob_id(&plain), id, "opened blob does not hash to its id");
            }
        }
        _ => flip(kind, rest),
    }
});

/// Seal `plaintext`, check it opens, flip one byte, check the result.
fn flip(kind: cairn::blob::BlobType, rest: &[u8]) {
    let [level, p0, p1, mask, plaintext @ ..] = rest else {
        return;
    };
    let key = fixed_key();
    let level = blob_mode::LEVELS[usize::from(level % 4)];
    let id = key.blob_id(plaintext);
    let mut sealed = seal_blob(key, kind, &id, plaintext, level);
    match open_blob(key, kind, &id, &sealed) {
        Ok(back) => assert_eq!(back, plaintext, "sealed blob opens to something else"),
        Err(e) => panic!("a freshly sealed blob does not open: {e}"),
    }
    let pos = usize::from(u16::from_le_bytes([*p0, *p1])) % sealed.len();
    sealed[pos] ^= if *mask == 0 { 0x80 } else { *mask };
    if let Ok(back) = open_blob(key, kind, &id, &sealed) {
        assert_eq!(back, plaintext, "a flipped byte opened to different plaintext");
    }
}
