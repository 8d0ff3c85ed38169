//! Fuzzes `Lock::decode` (the opened plaintext of a lock object).
//!
//! Asserts no panic, also in what every locking command does next with a decoded lock (decide
//! whether it is stale, describe its holder), and that it survives encode -> decode.

#![no_main]

use cairn::repo::lock::Lock;
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(lock) = Lock::decode(input) else {
        return;
    };
    let now = cairn::repo::now_secs();
    // A host name the decoded lock cannot claim unless it says so: then the pid is checked too.
    let _ = lock.is_stale(now, "fuzz-host.invalid");
    let _ = lock.is_stale(now, &lock.host);
    let _ = lock.describe();
    assert_round_trip("lock", &lock, Lock::encode, Lock::decode);
});
