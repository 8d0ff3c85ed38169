//! Fuzzes `KeyFile::decode` (a key object as stored; not sealed).
//!
//! Asserts no panic, and for accepted inputs: the Argon2id parameters are within cairn's limits
//! and the object re-encodes to exactly the input (fixed layout). `open` is not called: real
//! Argon2id parameters cost far too much per run.

#![no_main]

use cairn::crypto::{MASTER_KEY_LEN, SEAL_OVERHEAD};
use cairn::repo::keys::KeyFile;
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(key) = KeyFile::decode(input) else {
        return;
    };
    assert!(key.params.validate().is_ok(), "accepted parameters fail validation: {:?}", key.params);
    assert_eq!(key.sealed.len(), MASTER_KEY_LEN + SEAL_OVERHEAD);
    assert_eq!(key.encode(), input, "key object is not re-encoded byte for byte");
    assert_round_trip("key", &key, KeyFile::encode, KeyFile::decode);
});
