//! Fuzzes `RepoConfig::decode` (the opened plaintext of the `config` object), both versions
//! (1: format 1, no `bundle_size`; 2: format 2).
//!
//! Asserts no panic, and for accepted inputs: every value passes validation (so the chunker and
//! packer can be built from it); the config version and the repository format agree (version 1
//! says format 1 and has `bundle_size` 0, version 2 says format 2), and so does `sealing()`; the
//! bundle size is within range; and the config survives encode -> decode, re-encoding with its
//! own version byte.

#![no_main]

use cairn::blob::Sealing;
use cairn::repo::config::{CONFIG_V1, CONFIG_VERSION, RepoConfig};
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(config) = RepoConfig::decode(input) else {
        return;
    };
    assert!(config.validate().is_ok());
    assert!(config.chunker_files.validate().is_ok() && config.chunker_streams.validate().is_ok());
    assert!((RepoConfig::MIN_PACK_SIZE..=RepoConfig::MAX_PACK_SIZE).contains(&config.pack_size));
    assert!(config.bundle_size <= RepoConfig::MAX_BUNDLE_SIZE, "{config:?}");
    let version = input[0];
    match version {
        CONFIG_V1 => {
            assert_eq!((config.format_version, config.bundle_size), (1, 0), "{config:?}");
            assert_eq!(config.sealing(), Sealing::Single);
        }
        CONFIG_VERSION => {
            assert_eq!(config.format_version, 2, "{config:?}");
            assert_eq!(config.sealing(), Sealing::Bundles);
        }
        _ => panic!("config version {version} accepted"),
    }
    assert_eq!(config.encode().first(), Some(&version), "re-encoded as another version");
    assert_round_trip("config", &config, RepoConfig::encode, RepoConfig::decode);
});
