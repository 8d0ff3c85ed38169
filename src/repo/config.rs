//! RepoConfig: the format version, the repository id, chunker parameters for file trees and for
//! streamed inputs, the target pack size, the zstd level and (format 2) the target bundle size.
//! Sealed at `config`.
//!
//! Every value is checked on decode against the ranges cairn supports, so a damaged or hostile
//! config cannot make the chunker or packer misbehave. Config version 1 belongs to format 1
//! and has no bundle size; version 2 to format 2.

use crate::codec;
use crate::error::FormatError;
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// The config version format 2 writes.
pub const CONFIG_VERSION: u8 = 2;
/// The config version of format 1 (no bundle size).
pub const CONFIG_V1: u8 = 1;
/// The repository format `init` creates. This cairn reads and writes formats 1 and 2; it keeps
/// writing format 1 into a format-1 repository, so older cairns can still read it.
pub const FORMAT_VERSION: u32 = 2;
pub const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// FastCDC (2020, normalization level 1) sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkerParams {
    /// File trees: files are mostly unchanged or changed whole, so large chunks keep the index
    /// small without costing dedup. On the bench corpus's tree (43k files, 1.1 GB; format 2,
    /// 128 KiB bundles) a first backup took 4.5 s at 256 KiB, 3.0-3.1 s at 1 MiB, 3.05 s at 4 MiB,
    /// all storing 434-435 MB; the day-2 tree, re-read whole, added 22, 23-24 and 24 MB. Most
    /// files are smaller than one chunk, so the size only cuts large files.
    pub const FILES: ChunkerParams = ChunkerParams { min: 256 * 1024, avg: 1024 * 1024, max: 4 * 1024 * 1024 };
    /// Streamed inputs (database dumps): a day's changes touch rows all over the dump, so small
    /// chunks re-store only the neighbourhood of each change. Measured on the bench corpus's
    /// PostgreSQL dumps (730 MB; format 2, 128 KiB bundles; restic's 1 MiB chunks add 178 MB):
    ///
    /// | avg | day-2 adds | repository after day 2 | index | first backup | dump |
    /// |---|---|---|---|---|---|
    /// | 2 KiB | 31 MB | 239 MB | 12.4 MB | 2.3-3.2 s | 1.22 s |
    /// | 3 KiB | 37 MB | 232 MB | 7.5 MB | 1.7 s | 1.01 s |
    /// | 4 KiB | 38 MB | 232 MB | 6.5-6.9 MB | 1.8 s | 0.95-1.03 s |
    /// | 8 KiB | 55 MB | 242 MB | 3.5 MB | 1.5 s | 0.85 s |
    /// | 16 KiB | 80 MB | 265 MB | 1.9 MB | 1.3 s | 0.87 s |
    /// | 64 KiB | 127 MB | 315 MB | 0.5 MB | 1.4 s | 0.81 s |
    ///
    /// 4 KiB adds a fifth of what restic's chunks add; below it each halving of the size
    /// doubles the index and the per-blob costs of every backup and restore for a few MB a day.
    /// Bundles made small chunks cheap to store (one zstd frame and one seal per 128 KiB), so
    /// what is left per chunk is its hash, its index entry and its look-ups.
    pub const STREAMS: ChunkerParams = ChunkerParams { min: 1024, avg: 4 * 1024, max: 16 * 1024 };

    /// Sizes around an average: a quarter of it at least, four times it at most.
    pub fn around(avg: u32) -> ChunkerParams {
        ChunkerParams { min: (avg / 4) & !1, avg: avg & !1, max: avg.saturating_mul(4) & !1 }
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(FormatError::invalid("config", format!("chunker sizes {min}/{avg}/{max} out of range")))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format_version: u32,
    /// Random; names the local cache directory. Not secret.
    pub id: Id,
    pub chunker_files: ChunkerParams,
    pub chunker_streams: ChunkerParams,
    /// A pack is finished once its blobs reach this many bytes.
    pub pack_size: u32,
    pub zstd_level: i32,
    /// Format 2: data blobs are sealed together in bundles of about this many plaintext bytes
    /// (a blob as large or larger is a bundle of its own; 0: every blob alone). Always 0 in
    /// format 1. Readers never need it.
    pub bundle_size: u32,
}

/// The fields of a version-1 config: [`RepoConfig`] without `bundle_size`.
#[derive(Serialize, Deserialize)]
struct ConfigV1 {
    format_version: u32,
    id: Id,
    chunker_files: ChunkerParams,
    chunker_streams: ChunkerParams,
    pack_size: u32,
    zstd_level: i32,
}

impl RepoConfig {
    pub const MIN_PACK_SIZE: u32 = 64 * 1024;
    pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;
    pub const MAX_BUNDLE_SIZE: u32 = 16 * 1024 * 1024;
    /// Bundles of 128 KiB: on the bench corpus, sealing the 700 MB dump's 4 KiB chunks in
    /// bundles instead of one by one took 42% less time and stored 9% fewer bytes, and opening
    /// them took 38% less; the file tree's chunks compressed in 10% less time. Bundles of 16 to
    /// 256 chunks, or of 32 to 512 KiB of the tree, were within a few percent of each other
    /// (repo-format.md section 6).
    pub const BUNDLE_SIZE: u32 = 128 * 1024;

    pub fn new() -> RepoConfig {
        RepoConfig {
            format_version: FORMAT_VERSION,
            id: Id::random(),
            chunker_files: ChunkerParams::FILES,
            chunker_streams: ChunkerParams::STREAMS,
            pack_size: 16 * 1024 * 1024,
            // Level 1: the file tree backs up 25% faster than at 3 for 7% more bytes, and the
            // dumps' small chunks come out smaller than at 3 (repo-format.md section 9).
            zstd_level: 1,
            bundle_size: Self::BUNDLE_SIZE,
        }
    }

    /// A new config of format 1 (for tests of format-1 repositories).
    pub fn format_1() -> RepoConfig {
        RepoConfig { format_version: 1, bundle_size: 0, ..RepoConfig::new() }
    }

    /// How this repository's blobs are sealed.
    pub fn sealing(&self) -> crate::blob::Sealing {
        crate::blob::Sealing::for_format(self.format_version)
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        if !(1..=FORMAT_VERSION).contains(&self.format_version) {
            return Err(FormatError::invalid(
                "config",
                format!(
                    "repository format {} (this cairn reads 1 to {FORMAT_VERSION}); upgrade cairn",
                    self.format_version
                ),
            ));
        }
        if self.format_version == 1 && self.bundle_size != 0 {
            return Err(FormatError::invalid(
                "config",
                "a format-1 repository stores every blob alone: bundles need format 2",
            ));
        }
        if self.bundle_size > Self::MAX_BUNDLE_SIZE {
            return Err(FormatError::invalid("config", format!("bundle size {} out of range", self.bundle_size)));
        }
        self.chunker_files.validate()?;
        self.chunker_streams.validate()?;
        if !(Self::MIN_PACK_SIZE..=Self::MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(FormatError::invalid("config", format!("pack size {} out of range", self.pack_size)));
        }
        if !(1..=19).contains(&self.zstd_level) {
            return Err(FormatError::invalid("config", format!("zstd level {} out of range 1..=19", self.zstd_level)));
        }
        Ok(())
    }

    /// Version 1 for format 1, else version 2.
    pub fn encode(&self) -> Vec<u8> {
        if self.format_version != 1 {
            return codec::encode(CONFIG_VERSION, self);
        }
        let v1 = ConfigV1 {
            format_version: self.format_version,
            id: self.id,
            chunker_files: self.chunker_files,
            chunker_streams: self.chunker_streams,
            pack_size: self.pack_size,
            zstd_level: self.zstd_level,
        };
        codec::encode(CONFIG_V1, &v1)
    }

    /// Decodes either version; a version-1 config must say format 1, a version-2 one format 2.
    pub fn decode(bytes: &[u8]) -> Result<RepoConfig, FormatError> {
        let (config, format) = if bytes.first() == Some(&CONFIG_V1) {
            let v1: ConfigV1 = codec::decode("config", CONFIG_V1, MAX_CONFIG_LEN, bytes)?;
            let config = RepoConfig {
                format_version: v1.format_version,
                id: v1.id,
                chunker_files: v1.chunker_files,
                chunker_streams: v1.chunker_streams,
                pack_size: v1.pack_size,
                zstd_level: v1.zstd_level,
                bundle_size: 0,
            };
            (config, 1)
        } else {
            (codec::decode::<RepoConfig>("config", CONFIG_VERSION, MAX_CONFIG_LEN, bytes)?, 2)
        };
        config.validate()?;
        if config.format_version != format {
            return Err(FormatError::invalid(
                "config",
                format!("config version {format} for repository format {}", config.format_version),
            ));
        }
        Ok(config)
    }
}

impl Default for RepoConfig {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RepoConfig::decode(&bytes);
        }
        #[test]
        fn round_trip(level in 1i32..=19, pack in RepoConfig::MIN_PACK_SIZE..RepoConfig::MAX_PACK_SIZE, bundle in 0..=RepoConfig::MAX_BUNDLE_SIZE) {
            let c = RepoConfig { zstd_level: level, pack_size: pack, bundle_size: bundle, ..RepoConfig::new() };
            prop_assert_eq!(RepoConfig::decode(&c.encode()).unwrap(), c);
            let c = RepoConfig { zstd_level: level, pack_size: pack, ..RepoConfig::format_1() };
            let encoded = c.encode();
            prop_assert_eq!(encoded[0], CONFIG_V1);
            prop_assert_eq!(RepoConfig::decode(&encoded).unwrap(), c);
        }
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut c = RepoConfig::new();
        c.chunker_files.avg = 3;
        assert!(RepoConfig::decode(&c.encode()).is_err());
        let c = RepoConfig { format_version: 3, ..RepoConfig::new() };
        assert!(RepoConfig::decode(&c.encode()).unwrap_err().to_string().contains("upgrade cairn"));
        let c = RepoConfig { bundle_size: RepoConfig::MAX_BUNDLE_SIZE + 1, ..RepoConfig::new() };
        assert!(RepoConfig::decode(&c.encode()).is_err());
        let c = RepoConfig { bundle_size: 4096, ..RepoConfig::format_1() };
        assert!(c.validate().is_err());
        // A version-2 config claiming format 1 (or the reverse) is refused.
        let v2_saying_1 = codec::encode(CONFIG_VERSION, &RepoConfig { bundle_size: 0, ..RepoConfig::format_1() });
        assert!(RepoConfig::decode(&v2_saying_1).is_err());
    }
}
