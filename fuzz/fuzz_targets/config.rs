//! Fuzzes `RepoConfig::decode` (the opened plaintext of the `config` object).
//!
//! Asserts no panic, and for accepted inputs: every value passes validation (so the chunker and
//! packer can be built from it) and the config survives encode -> decode.

#![no_main]

use cairn::repo::config::RepoConfig;
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(config) = RepoConfig::decode(input) else {
        return;
    };
    assert!(config.validate().is_ok());
    assert!(config.chunker_files.validate().is_ok() && config.chunker_streams.validate().is_ok());
    assert!((RepoConfig::MIN_PACK_SIZE..=RepoConfig::MAX_PACK_SIZE).contains(&config.pack_size));
    assert_round_trip("config", &config, RepoConfig::encode, RepoConfig::decode);
});
