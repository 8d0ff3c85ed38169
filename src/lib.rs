//! cairn: content-addressed, deduplicating, encrypted backups of file trees and database dumps.
//!
//! Vocabulary: a *repository* is everything cairn stores behind one storage location. Inputs
//! are cut into content-defined chunks (*blobs*, named by keyed BLAKE3); each new blob is stored
//! once, compressed and sealed (XChaCha20-Poly1305) together with its new neighbours in a
//! *bundle* (format 2; alone in format 1), and bundles are stored inside *packs*. *Index* objects say which pack holds
//! which blob; a local RocksDB cache mirrors them. A *tree* blob lists one directory; a
//! *snapshot* names the root tree of one backup. *Keys* seal the master key under a password.
//!
//! Data flow: `archiver` (walk, chunk, hash, dedup, seal, pack, upload; then index objects,
//! then the snapshot) -> `repo` -> `backend`; `restorer` (plan by pack, read ranges, verify,
//! write, metadata last); `checker` (structure, then every byte with `--read-data`).
//!
//! Module map: `id`, `error`, `crypto` (key schedule), `blob` (bundles: sealing and opening), `codec`
//! (version byte + postcard), `pack`, `tree`, `snapshot`, `chunker`, `backend` (the storage
//! boundary), `repo` (objects, keys, config, locks), `index` (objects and cache), `archiver`,
//! `restorer`, `checker`, `cli`.

#![forbid(unsafe_code)]

pub mod archiver;
pub mod backend;
pub mod blob;
pub mod checker;
pub mod chunker;
pub mod cli;
pub mod codec;
pub mod crypto;
pub mod error;
#[cfg(test)]
mod format_example;
pub mod id;
pub mod index;
pub mod pack;
pub mod repo;
pub mod restorer;
pub mod snapshot;
pub mod tree;

pub use error::{Error, Result};
