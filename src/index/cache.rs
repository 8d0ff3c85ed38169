//! The local index cache: a RocksDB mirror of the repository's index objects, one per
//! repository id, under the user's cache directory. It is never the truth.
//!
//! Keys: `b || type (1) || blob id (32)` -> `pack id (32) || offset u32 || length u32 ||
//! raw_offset u32 || raw_length u32` (LE); `i || index id (32)` -> empty, for each index object mirrored; and
//! `v` -> the cache layout version. Each index object goes in with its `i` key in one atomic
//! write batch. On open, [`IndexCache::sync`] lists the repository's index objects: new ones are
//! added; if the cache names one the repository no longer has, or the cache is unreadable, it
//! is deleted and rebuilt. Entries of this run's packs enter only after their index object is
//! stored, so the cache never claims a blob that no index object names.

use super::file::IndexFile;
use super::{BlobIndex, IndexEntry};
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{BlobId, Id, IndexId, PackId};
use crate::pack::PackBlob;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Layout 2 added `raw_offset`; a cache of another layout is rebuilt.
const LAYOUT_VERSION: &[u8] = b"2";

pub struct IndexCache {
    db: rocksdb::DB,
    block_cache: rocksdb::Cache,
    path: PathBuf,
    /// Set when the cache lives in a temporary folder (the real one was in use).
    _temp: Option<tempfile::TempDir>,
}

fn cache_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Cache { path: path.to_path_buf(), reason: e.to_string() }
}

/// Block cache for data, index and filter blocks: the bound on what lookups keep in memory. It
/// grows with the entries, [`CACHE_BYTES_PER_ENTRY`] each (partitioned filters take 1.25 B a
/// key; the rest keeps hot index and data blocks), from the least to the most: a small
/// repository's commands stay near the KDF's memory, a 20-million-blob one gets room for all
/// its filters.
const BLOCK_CACHE_MIN: usize = 8 << 20;
const BLOCK_CACHE_MAX: usize = 64 << 20;
const CACHE_BYTES_PER_ENTRY: usize = 3;
/// Memtable size: entries of new index objects wait here before they go to a table file.
const WRITE_BUFFER_BYTES: usize = 8 << 20;
/// A batched look-up steps an iterator forward this many keys before it seeks instead.
const STEPS_BEFORE_SEEK: usize = 8;
/// A batch walks an iterator when it asks for at least one key in this many stored keys;
/// sparser batches use batched point look-ups (which bloom filters make cheap across files).
const SCAN_DENSITY: u64 = 16;
/// Batches of at least this many keys are looked up on all cores.
const PARALLEL_MIN: usize = 16 * 1024;
/// Keys per batched point look-up call (bounds the pinned values held at once).
const MULTI_GET_CHUNK: usize = 4096;

/// Tuned for point look-ups of random keys: a bloom filter answers the misses of a backup
/// (almost every new chunk) without reading a data block; uncompressed blocks with a hash index
/// answer the hits with one short search. Index and filter blocks are partitioned and live in
/// the bounded block cache, so memory follows these settings, not the number of blobs.
fn options(block_cache: &rocksdb::Cache) -> rocksdb::Options {
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.set_max_open_files(256);
    o.set_keep_log_file_num(2);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    o.set_max_write_buffer_number(2);
    o.set_compression_type(rocksdb::DBCompressionType::None);
    let mut t = rocksdb::BlockBasedOptions::default();
    t.set_bloom_filter(10.0, false);
    t.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
    // Index and filter blocks partitioned into small blocks that share the block cache, with
    // only their top level pinned: a large repository's filters need not fit in memory at once.
    t.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    t.set_partition_filters(true);
    t.set_metadata_block_size(4096);
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_top_level_index_and_filter(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    t.set_format_version(5);
    t.set_block_cache(block_cache);
    o.set_block_based_table_factory(&t);
    o
}

/// Writes skip RocksDB's log: the cache is disposable, an index object's entries and its `i`
/// marker go in one batch (so one memtable), and memtables are flushed after a sync and on
/// close. A crash loses at most whole index objects, which the next sync adds again.
fn write_options() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.disable_wal(true);
    w
}

fn blob_key(kind: BlobType, id: &BlobId) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[0] = b'b';
    k[1] = kind.to_byte();
    k[2..].copy_from_slice(id.as_bytes());
    k
}

fn index_key(id: &IndexId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = b'i';
    k[1..].copy_from_slice(id.as_bytes());
    k
}

fn encode_entry(e: &IndexEntry) -> [u8; 48] {
    let mut v = [0u8; 48];
    v[..32].copy_from_slice(e.pack.as_bytes());
    v[32..36].copy_from_slice(&e.offset.to_le_bytes());
    v[36..40].copy_from_slice(&e.length.to_le_bytes());
    v[40..44].copy_from_slice(&e.raw_offset.to_le_bytes());
    v[44..48].copy_from_slice(&e.raw_length.to_le_bytes());
    v
}

fn decode_entry(v: &[u8]) -> Option<IndexEntry> {
    if v.len() != 48 {
        return None;
    }
    let mut pack = [0u8; 32];
    pack.copy_from_slice(&v[..32]);
    let u32_at = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    Some(IndexEntry {
        pack: PackId(Id(pack)),
        offset: u32_at(32),
        length: u32_at(36),
        raw_offset: u32_at(40),
        raw_length: u32_at(44),
    })
}

/// Deletes the empty write-ahead logs of earlier opens, all but the newest (this open's).
/// RocksDB before 8.3 creates one per open and, when nothing is written through it (our writes
/// skip the log), never deletes it (facebook/rocksdb#11313, fixed by #11409): one more file
/// per cairn command, forever. Its maintainers call deleting empty ones safe while
/// `track_and_verify_wals_in_manifest` is off (the default). We hold the cache's lock here, so
/// no other process uses them. Only a clean-up: failures are ignored.
fn remove_empty_wals(path: &Path) {
    let Ok(dir) = std::fs::read_dir(path) else { return };
    let mut logs: Vec<(u64, PathBuf, u64)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let number = name.strip_suffix(".log")?.parse::<u64>().ok()?;
            Some((number, e.path(), e.metadata().ok()?.len()))
        })
        .collect();
    logs.sort();
    logs.pop(); // the newest: this open's
    for (_, log, len) in logs {
        if len == 0 {
            let _ = std::fs::remove_file(log);
        }
    }
}

impl IndexCache {
    /// Opens the cache at `path`, or a new one if it is missing or damaged. If another cairn
    /// process holds it, works from a temporary cache instead (slower, still correct).
    pub fn open(path: &Path) -> Result<IndexCache> {
        std::fs::create_dir_all(path).map_err(|e| cache_err(path, e))?;
        match Self::open_at(path) {
            Ok(c) => Ok(c),
            Err(e) if e.to_string().contains("lock") => {
                eprintln!("note: index cache {} is in use by another cairn; using a temporary one", path.display());
                let temp = tempfile::tempdir().map_err(|e| cache_err(path, e))?;
                let mut c = Self::open_at(temp.path())?;
                c._temp = Some(temp);
                Ok(c)
            }
            Err(_) => {
                // Damaged or from an unknown layout: it is only a cache, so start over.
                let _ = rocksdb::DB::destroy(&rocksdb::Options::default(), path);
                let _ = std::fs::remove_dir_all(path);
                std::fs::create_dir_all(path).map_err(|e| cache_err(path, e))?;
                Self::open_at(path)
            }
        }
    }

    fn open_at(path: &Path) -> Result<IndexCache> {
        // Opened with its default column family named, which batched point look-ups need
        // (`open_cf` would give it default options instead of ours).
        let block_cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_MIN).map_err(|e| cache_err(path, e))?;
        let cf = rocksdb::ColumnFamilyDescriptor::new("default", options(&block_cache));
        let db =
            rocksdb::DB::open_cf_descriptors(&options(&block_cache), path, [cf]).map_err(|e| cache_err(path, e))?;
        match db.get(b"v").map_err(|e| cache_err(path, e))? {
            Some(v) if v == LAYOUT_VERSION => {}
            None if db.iterator(rocksdb::IteratorMode::Start).next().is_none() => {
                db.put(b"v", LAYOUT_VERSION).map_err(|e| cache_err(path, e))?;
            }
            _ => return Err(cache_err(path, "unknown cache layout")),
        }
        remove_empty_wals(path);
        let mut cache = IndexCache { db, block_cache, path: path.to_path_buf(), _temp: None };
        cache.size_block_cache();
        Ok(cache)
    }

    /// Sizes the block cache for the entries there are now (see [`BLOCK_CACHE_MIN`]).
    fn size_block_cache(&mut self) {
        let entries = self.db.property_int_value("rocksdb.estimate-num-keys").ok().flatten().unwrap_or(0);
        let want = usize::try_from(entries).unwrap_or(usize::MAX).saturating_mul(CACHE_BYTES_PER_ENTRY);
        self.block_cache.set_capacity(want.clamp(BLOCK_CACHE_MIN, BLOCK_CACHE_MAX));
    }

    /// Index objects mirrored here.
    pub fn mirrored(&self) -> Result<HashSet<IndexId>> {
        let mut out = HashSet::new();
        for item in self.db.iterator(rocksdb::IteratorMode::From(b"i", rocksdb::Direction::Forward)) {
            let (k, _) = item.map_err(|e| cache_err(&self.path, e))?;
            if k.first() != Some(&b'i') {
                break;
            }
            let id: [u8; 32] = k[1..].try_into().map_err(|_| cache_err(&self.path, "bad index key"))?;
            out.insert(IndexId(Id(id)));
        }
        Ok(out)
    }

    /// Adds one index object's entries and its marker in one atomic batch. The entries go in
    /// key order: the memtable's skip list then finds each insert's place next to the last one
    /// instead of searching from the top (100,000 random keys took ~0.2 s on one core, the
    /// tail of a stream backup).
    pub fn add(&self, id: &IndexId, file: &IndexFile) -> Result<()> {
        // References (16 bytes each) are sorted rather than encoded pairs (78), and (kind, id)
        // orders as `blob_key` does. Stable: of two copies of a blob, the later still wins.
        let mut entries: Vec<(&PackId, &PackBlob)> =
            file.packs.iter().flat_map(|pack| pack.blobs.iter().map(move |b| (&pack.id, b))).collect();
        entries.sort_by_key(|(_, b)| (b.kind.to_byte(), b.id));
        let mut batch = rocksdb::WriteBatch::default();
        for (pack, b) in entries {
            batch.put(blob_key(b.kind, &b.id), encode_entry(&IndexEntry::of(*pack, b)));
        }
        batch.put(index_key(id), b"");
        self.db.write_opt(batch, &write_options()).map_err(|e| cache_err(&self.path, e))
    }

    /// Brings the cache in line with the repository's index objects. `load` fetches and opens
    /// one index object. An index object that is damaged or vanished is left out (and tried
    /// again next time) and returned with its error; any other failure stops the sync.
    pub fn sync(
        &mut self,
        in_repo: &[IndexId],
        load: impl Fn(&IndexId) -> Result<IndexFile> + Sync,
    ) -> Result<Vec<(IndexId, Error)>> {
        let have = self.mirrored()?;
        let repo_set: HashSet<IndexId> = in_repo.iter().copied().collect();
        if !have.is_subset(&repo_set) {
            self.clear()?;
            return self.sync(in_repo, load);
        }
        let missing: Vec<IndexId> = in_repo.iter().filter(|id| !have.contains(id)).copied().collect();
        let mut skipped = Vec::new();
        use rayon::prelude::*;
        for batch in missing.chunks(8) {
            let files: Vec<(IndexId, Result<IndexFile>)> = batch.par_iter().map(|id| (*id, load(id))).collect();
            for (id, file) in files {
                match file {
                    Ok(file) => self.add(&id, &file)?,
                    Err(e @ (Error::Corrupt { .. } | Error::Missing { .. } | Error::Unsupported { .. })) => {
                        skipped.push((id, e))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if !missing.is_empty() {
            // To table files now, so that the next open reads them instead of replaying writes.
            self.flush()?;
        }
        Ok(skipped)
    }

    /// After entries were added or removed: writes what waits in memory to table files, so the
    /// next open need not replay it, and sizes the block cache for the entries there are now.
    pub fn flush(&mut self) -> Result<()> {
        self.db.flush().map_err(|e| cache_err(&self.path, e))?;
        self.size_block_cache();
        Ok(())
    }

    /// Empties the cache (it is rebuilt from the repository by the next `sync`).
    pub fn clear(&mut self) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for item in self.db.iterator(rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| cache_err(&self.path, e))?;
            if &*k != b"v" {
                batch.delete(k);
            }
        }
        self.db.write_opt(batch, &write_options()).map_err(|e| cache_err(&self.path, e))?;
        self.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl IndexCache {
    fn decode(&self, v: &[u8]) -> Result<IndexEntry> {
        decode_entry(v).ok_or_else(|| cache_err(&self.path, "damaged entry; delete the cache folder"))
    }

    /// Looks up sorted keys, with one iterator if they are dense among the `stored` keys of
    /// their stretch of the key space, else with batched point look-ups.
    fn lookup_stretch(&self, keys: &[[u8; 34]], stored: u64) -> Result<Vec<Option<IndexEntry>>> {
        if (keys.len() as u64).saturating_mul(SCAN_DENSITY) >= stored_between(stored, keys) {
            self.lookup_sorted(keys)
        } else {
            self.multi_get_sorted(keys)
        }
    }

    /// Batched point look-ups of keys in ascending order; RocksDB reads each block once per call.
    fn multi_get_sorted(&self, keys: &[[u8; 34]]) -> Result<Vec<Option<IndexEntry>>> {
        let cf = self.db.cf_handle("default").ok_or_else(|| cache_err(&self.path, "no default column family"))?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MULTI_GET_CHUNK) {
            for v in self.db.batched_multi_get_cf(cf, chunk, true) {
                match v.map_err(|e| cache_err(&self.path, e))? {
                    None => out.push(None),
                    Some(v) => out.push(Some(self.decode(&v)?)),
                }
            }
        }
        Ok(out)
    }

    /// Looks up keys given in ascending order with one iterator: it steps forward to a near key
    /// and seeks to a far one, so a dense batch costs a scan, a sparse one a seek per key.
    fn lookup_sorted(&self, keys: &[[u8; 34]]) -> Result<Vec<Option<IndexEntry>>> {
        // A scan reads each block once: caching them would only evict what point look-ups
        // reuse, and grow memory to the block cache's limit.
        let mut read = rocksdb::ReadOptions::default();
        read.fill_cache(false);
        let mut it = self.db.raw_iterator_opt(read);
        let mut out = Vec::with_capacity(keys.len());
        let mut positioned = false;
        for key in keys {
            let mut steps = 0;
            while positioned && steps < STEPS_BEFORE_SEEK && it.key().is_some_and(|k| k < &key[..]) {
                it.next();
                steps += 1;
            }
            if !positioned || it.key().is_some_and(|k| k < &key[..]) {
                it.seek(key);
                positioned = true;
            }
            match it.key() {
                Some(k) if k == &key[..] => out.push(Some(self.decode(it.value().unwrap_or_default())?)),
                _ => out.push(None),
            }
        }
        it.status().map_err(|e| cache_err(&self.path, e))?;
        Ok(out)
    }
}

/// About how many of `stored` keys lie between the first and the last of `sorted`. Blob ids are
/// keyed hashes, spread evenly, so that is `stored` times the share of the id space they span: a
/// window of a large sorted batch is dense within its own span even when it is a small part of
/// the whole index.
fn stored_between(stored: u64, sorted: &[[u8; 34]]) -> u64 {
    // The id's first 8 bytes as a number that orders like the keys (most significant first).
    let prefix = |k: &[u8; 34]| k[2..10].iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else { return stored };
    let share = prefix(last).saturating_sub(prefix(first)) as f64 / u64::MAX as f64;
    (stored as f64 * share).ceil() as u64
}

impl BlobIndex for IndexCache {
    fn lookup(&self, kind: BlobType, id: &BlobId) -> Result<Option<IndexEntry>> {
        match self.db.get_pinned(blob_key(kind, id)).map_err(|e| cache_err(&self.path, e))? {
            None => Ok(None),
            Some(v) => self.decode(&v).map(Some),
        }
    }

    /// Sorts the keys, then walks one iterator over them when they are dense among the stored
    /// keys (a scan), or asks for them in batched point look-ups when sparse.
    fn lookup_many(&self, kind: BlobType, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_unstable_by_key(|&i| ids[i]);
        let keys: Vec<[u8; 34]> = order.iter().map(|&i| blob_key(kind, &ids[i])).collect();
        let stored = self.db.property_int_value("rocksdb.estimate-num-keys").ok().flatten().unwrap_or(u64::MAX);
        // A large batch is cut into one stretch of the key space per core, each asked on its
        // own thread (rayon's: the checker's pool when it asks, else the global one).
        let parts = if keys.len() < PARALLEL_MIN { 1 } else { rayon::current_num_threads().max(1) };
        let stretches: Vec<Vec<Option<IndexEntry>>> = {
            use rayon::prelude::*;
            keys.par_chunks(keys.len().div_ceil(parts).max(1))
                .map(|part| self.lookup_stretch(part, stored))
                .collect::<Result<_>>()?
        };
        let mut out = vec![None; ids.len()];
        for (&i, entry) in order.iter().zip(stretches.into_iter().flatten()) {
            out[i] = entry;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
