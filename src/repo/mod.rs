//! Repository: open or create one, load and save sealed objects, read blobs (`read.rs`), and
//! the write order that makes every crash safe: packs, then the index objects naming them, then
//! the snapshot that needs them (the snapshot last).
//!
//! Sealed objects (config, snapshots, index objects, locks) are stored as
//! `envelope version (1) = 1 || nonce (24) || ciphertext || tag (16)`, with associated data
//! `[1, kind byte]` so that no object can pass for one of another kind. Snapshots and index
//! objects are named by the BLAKE3 of their stored bytes, checked on every load.

pub mod config;
pub mod keys;
pub mod lock;
mod read;
#[cfg(test)]
pub mod testing;

use crate::backend::{Backend, object_path};
use crate::blob::{self, BlobType};
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{BackendError, Error, FormatError, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, Id, IndexId, KeyId, PackId, SnapshotId};
use crate::index::IndexSummary;
use crate::index::cache::IndexCache;
use crate::index::file::IndexFile;
use crate::pack::FinishedPack;
use crate::snapshot::Snapshot;
use crate::tree::Timestamp;
use bytes::Bytes;
use config::RepoConfig;
use keys::KeyFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ENVELOPE_VERSION: u8 = 1;

fn kind_byte(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Config => 1,
        ObjectKind::Snapshot => 2,
        ObjectKind::Index => 3,
        ObjectKind::Lock => 4,
        _ => 0,
    }
}

/// `ENVELOPE_VERSION || seal(aad = [ENVELOPE_VERSION, kind byte], plain)`.
pub(crate) fn seal_envelope(key: &MasterKey, kind: ObjectKind, plain: &[u8]) -> Vec<u8> {
    key.seal_after(&[ENVELOPE_VERSION, kind_byte(kind)], &[ENVELOPE_VERSION], plain)
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp { secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() }
}

pub fn now_secs() -> i64 {
    now().secs
}

pub fn hostname() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

pub fn username() -> String {
    std::env::var("USER").unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string())
}

pub struct Repository {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: RepoConfig,
    location: String,
    index: Option<LoadedIndex>,
}

/// The index cache, and what the last full pass over the index objects learned (`check`).
struct LoadedIndex {
    cache: IndexCache,
    summary: Option<IndexSummary>,
}

impl Repository {
    /// Creates a repository: a key object first, then the config (whose presence is what makes
    /// a repository), so a crash in between leaves no half-made repository.
    pub fn init(
        backend: Arc<dyn Backend>,
        location: &str,
        password: &[u8],
        kdf: KdfParams,
        config: RepoConfig,
    ) -> Result<Repository> {
        config.validate().map_err(|e| Error::Usage(e.to_string()))?;
        match backend.get(&object_path(ObjectKind::Config, "")) {
            Ok(_) => return Err(Error::RepositoryExists { location: location.into() }),
            Err(BackendError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let key = MasterKey::generate();
        let kf = KeyFile::create(&key, password, kdf).map_err(|e| Error::Usage(e.to_string()))?;
        let kbytes = kf.encode();
        let key_id = KeyId(Id::of_stored(&kbytes));
        backend.put_new(&object_path(ObjectKind::Key, &key_id.to_hex()), kbytes.into())?;
        let repo = Repository { backend, key, config, location: location.into(), index: None };
        let sealed = repo.seal_object(ObjectKind::Config, &repo.config.encode());
        match repo.backend.put_new(&object_path(ObjectKind::Config, ""), sealed.into()) {
            Ok(()) => Ok(repo),
            Err(BackendError::AlreadyExists(_)) => {
                let _ = repo.backend.delete(&object_path(ObjectKind::Key, &key_id.to_hex()));
                Err(Error::RepositoryExists { location: location.into() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a repository with the first key object that `password` opens.
    pub fn open(mut backend: Arc<dyn Backend>, location: &str, password: &[u8]) -> Result<Repository> {
        let config_bytes = match backend.get(&object_path(ObjectKind::Config, "")) {
            Ok(b) => b,
            Err(BackendError::NotFound(_)) => return Err(Error::NoRepository { location: location.into() }),
            Err(e) => return Err(e.into()),
        };
        let mut damaged = None;
        for listed in backend.list("keys")? {
            let bytes = backend.get(&object_path(ObjectKind::Key, &listed.name))?;
            let kf = match KeyFile::decode(&bytes) {
                Ok(kf) => kf,
                Err(e) => {
                    damaged = Some(Error::corrupt(ObjectRef::new(ObjectKind::Key, listed.name), e));
                    continue;
                }
            };
            let key = match kf.open(password) {
                Ok(k) => k,
                Err(FormatError::Authentication) => continue,
                Err(e) => {
                    damaged = Some(Error::corrupt(ObjectRef::new(ObjectKind::Key, listed.name), e));
                    continue;
                }
            };
            let mut repo =
                Repository { backend, key, config: RepoConfig::new(), location: location.into(), index: None };
            let plain = match repo.open_object(ObjectKind::Config, "", &config_bytes) {
                Ok(p) => p,
                // Either a key left by an interrupted `init` of another repository (try the
                // next key) or a damaged config (said if no other key opens it).
                Err(e @ Error::Corrupt { problem: FormatError::Authentication, .. }) => {
                    damaged = Some(e);
                    backend = repo.backend;
                    continue;
                }
                Err(e) => return Err(e),
            };
            repo.config =
                RepoConfig::decode(&plain).map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Config, ""), e))?;
            return Ok(repo);
        }
        Err(damaged.unwrap_or(Error::WrongPassword))
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Writes this process's new data with `settings`' chunk sizes, pack size and zstd level
    /// instead of the stored ones (the stored config is untouched). Readers never need these.
    pub fn override_write_settings(&mut self, settings: &RepoConfig) {
        self.config.chunker_files = settings.chunker_files;
        self.config.chunker_streams = settings.chunker_streams;
        self.config.pack_size = settings.pack_size;
        self.config.zstd_level = settings.zstd_level;
        self.config.bundle_size = settings.bundle_size;
    }

    /// How this repository's blobs are sealed (its format's rule).
    pub fn sealing(&self) -> blob::Sealing {
        self.config.sealing()
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn seal_object(&self, kind: ObjectKind, plain: &[u8]) -> Vec<u8> {
        seal_envelope(&self.key, kind, plain)
    }

    fn open_object(&self, kind: ObjectKind, name: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let object = || ObjectRef::new(kind, name);
        let (&version, sealed) = stored
            .split_first()
            .ok_or_else(|| Error::corrupt(object(), FormatError::Truncated { needed: 1, available: 0 }))?;
        if version != ENVELOPE_VERSION {
            return Err(Error::corrupt(
                object(),
                FormatError::UnsupportedVersion { what: "envelope", version, supported: ENVELOPE_VERSION },
            ));
        }
        self.key.open(&[ENVELOPE_VERSION, kind_byte(kind)], sealed).map_err(|e| Error::corrupt(object(), e))
    }

    /// Seals and stores an object named by the hash of its stored bytes.
    fn save_named(&self, kind: ObjectKind, plain: &[u8]) -> Result<Id> {
        let sealed = self.seal_object(kind, plain);
        let id = Id::of_stored(&sealed);
        // Verify what leaves the process: it must open to what we meant to store.
        if self.open_object(kind, &id.to_hex(), &sealed)? != plain {
            return Err(Error::corrupt(
                ObjectRef::new(kind, id.to_hex()),
                FormatError::invalid("object", "did not verify before upload"),
            ));
        }
        match self.backend.put_new(&object_path(kind, &id.to_hex()), sealed.into()) {
            Ok(()) | Err(BackendError::AlreadyExists(_)) => Ok(id),
            Err(e) => Err(e.into()),
        }
    }

    /// Loads, checks the name against the content hash, and opens a hash-named object.
    fn load_named(&self, kind: ObjectKind, id: &Id) -> Result<Vec<u8>> {
        let name = id.to_hex();
        let bytes = self.backend.get(&object_path(kind, &name)).map_err(|e| missing_or(e, kind, &name))?;
        if Id::of_stored(&bytes) != *id {
            return Err(Error::corrupt(
                ObjectRef::new(kind, name),
                FormatError::invalid("object", "content does not match its name"),
            ));
        }
        self.open_object(kind, &name, &bytes)
    }

    /// Ids of the hash-named objects of a kind; names that are not ids are ignored.
    pub fn list_ids(&self, kind: ObjectKind) -> Result<Vec<Id>> {
        let mut ids: Vec<Id> =
            self.backend.list(crate::backend::kind_dir(kind))?.iter().filter_map(|l| Id::from_hex(&l.name)).collect();
        ids.sort();
        Ok(ids)
    }

    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<SnapshotId> {
        self.save_named(ObjectKind::Snapshot, &snap.encode()).map(SnapshotId)
    }

    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let plain = self.load_named(ObjectKind::Snapshot, &id.0)?;
        Snapshot::decode(&plain).map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Snapshot, id.to_hex()), e))
    }

    /// All snapshots, oldest first. Any unreadable snapshot is an error naming it.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        use rayon::prelude::*;
        let ids = self.list_ids(ObjectKind::Snapshot)?;
        let mut out: Vec<(SnapshotId, Snapshot)> = ids
            .par_iter()
            .map(|id| self.load_snapshot(&SnapshotId(*id)).map(|s| (SnapshotId(*id), s)))
            .collect::<Result<_>>()?;
        out.sort_by_key(|(id, s)| (s.time.secs, s.time.nanos, *id));
        Ok(out)
    }

    /// Stores an index object and mirrors it into the cache. Every pack it names must already
    /// be stored.
    pub fn save_index(&self, file: &IndexFile) -> Result<IndexId> {
        let plain = file
            .encode(self.sealing())
            .map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Index, "being written"), e))?;
        let id = IndexId(self.save_named(ObjectKind::Index, &plain)?);
        if let Some(loaded) = &self.index {
            loaded.cache.add(&id, file)?;
        }
        Ok(id)
    }

    pub fn load_index_file(&self, id: &IndexId) -> Result<IndexFile> {
        let plain = self.load_named(ObjectKind::Index, &id.0)?;
        IndexFile::decode(&plain).map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Index, id.to_hex()), e))
    }

    /// Opens the local index cache for this repository under `cache_root` and brings it up to
    /// date with the repository's index objects. Index objects that are damaged or vanished
    /// are left out and returned, so the caller can warn: blobs only they name read as absent
    /// (backup stores them again; restore names the files it cannot restore).
    pub fn load_index(&mut self, cache_root: &Path) -> Result<Vec<(IndexId, Error)>> {
        let dir = cache_dir(cache_root, &self.config.id);
        self.index = None; // RocksDB allows one opener per folder: close ours first
        let mut cache = IndexCache::open(&dir)?;
        let ids: Vec<IndexId> = self.list_ids(ObjectKind::Index)?.into_iter().map(IndexId).collect();
        let skipped = cache.sync(&ids, |id| self.load_index_file(id))?;
        self.index = Some(LoadedIndex { cache, summary: None });
        Ok(skipped)
    }

    /// Like [`load_index`](Self::load_index), but for `check`: opens every index object once,
    /// mirrors the new ones, leaves damaged or vanished ones out of the cache instead of failing,
    /// and returns them with what is wrong. A cache that mirrored one before it was damaged (or
    /// one the repository no longer has) is rebuilt without it, so what check sees does not
    /// depend on the cache's history. What the pass learned about packs is kept (see
    /// [`index_summary`](Self::index_summary)). Storage and cache failures are errors.
    pub fn load_index_skipping_damaged(&mut self, cache_root: &Path) -> Result<Vec<(IndexId, Error)>> {
        use rayon::prelude::*;
        let dir = cache_dir(cache_root, &self.config.id);
        self.index = None; // RocksDB allows one opener per folder: close ours first
        let mut cache = IndexCache::open(&dir)?;
        let ids: Vec<IndexId> = self.list_ids(ObjectKind::Index)?.into_iter().map(IndexId).collect();
        let mirrored = cache.mirrored()?;
        let mut summary = IndexSummary::default();
        let mut damaged = Vec::new();
        let mut added = false;
        for batch in ids.chunks(8) {
            let loaded: Vec<(IndexId, Result<IndexFile>)> =
                batch.par_iter().map(|id| (*id, self.load_index_file(id))).collect();
            for (id, result) in loaded {
                match result {
                    Ok(file) => {
                        if !mirrored.contains(&id) {
                            cache.add(&id, &file)?;
                            added = true;
                        }
                        summary.note(id, &file);
                    }
                    Err(e @ (Error::Corrupt { .. } | Error::Missing { .. })) => damaged.push((id, e)),
                    Err(e) => return Err(e),
                }
            }
        }
        summary.damaged = damaged.iter().map(|(id, _)| *id).collect();
        let good: std::collections::HashSet<IndexId> = summary.good.iter().copied().collect();
        if !mirrored.is_subset(&good) {
            // Rare: rebuilt from the good ones (opened once more).
            cache.clear()?;
            damaged.extend(cache.sync(&summary.good, |id| self.load_index_file(id))?);
        } else if added {
            cache.flush()?;
        }
        self.index = Some(LoadedIndex { cache, summary: Some(summary) });
        Ok(damaged)
    }

    pub fn index(&self) -> Result<&IndexCache> {
        self.index
            .as_ref()
            .map(|loaded| &loaded.cache)
            .ok_or_else(|| Error::Usage("internal: index used before load_index".into()))
    }

    /// What [`load_index_skipping_damaged`](Self::load_index_skipping_damaged) learned about
    /// the index objects and the packs they name; `None` after a plain `load_index`.
    pub fn index_summary(&self) -> Option<&IndexSummary> {
        self.index.as_ref().and_then(|loaded| loaded.summary.as_ref())
    }

    pub fn put_pack(&self, pack: &FinishedPack) -> Result<()> {
        self.put_pack_bytes(&pack.id, Bytes::copy_from_slice(&pack.bytes), false)
    }

    /// Stores a finished pack's bytes under its id; taking them as `Bytes` spares backup a copy
    /// of every pack. `reread`: the pack will be read again soon (trees), so storage that can
    /// should keep it at hand ([`Backend::put_new_cached`]).
    pub fn put_pack_bytes(&self, id: &PackId, bytes: Bytes, reread: bool) -> Result<()> {
        let path = object_path(ObjectKind::Pack, &id.to_hex());
        let put = if reread { self.backend.put_new_cached(&path, bytes) } else { self.backend.put_new(&path, bytes) };
        match put {
            Ok(()) | Err(BackendError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a lock; fails with `Locked` if a conflicting live lock exists.
    pub fn lock(&self, exclusive: bool) -> Result<lock::LockGuard> {
        lock::LockGuard::acquire(self, exclusive)
    }

    pub(crate) fn save_lock(&self, l: &lock::Lock) -> Result<String> {
        let name = Id::random().to_hex();
        let sealed = self.seal_object(ObjectKind::Lock, &l.encode());
        self.backend.put_new(&object_path(ObjectKind::Lock, &name), sealed.into())?;
        Ok(name)
    }

    /// All lock objects with their names; unreadable ones are returned as errors per lock.
    pub(crate) fn locks(&self) -> Result<Vec<(String, Result<lock::Lock>)>> {
        let mut out = Vec::new();
        for listed in self.backend.list("locks")? {
            let path = object_path(ObjectKind::Lock, &listed.name);
            let l = match self.backend.get(&path) {
                Ok(bytes) => self.open_object(ObjectKind::Lock, &listed.name, &bytes).and_then(|p| {
                    lock::Lock::decode(&p)
                        .map_err(|e| Error::corrupt(ObjectRef::new(ObjectKind::Lock, listed.name.clone()), e))
                }),
                Err(BackendError::NotFound(_)) => continue,
                Err(e) => Err(e.into()),
            };
            out.push((listed.name, l));
        }
        Ok(out)
    }

    /// Removes stale locks (or all, with `all`). Returns how many were removed.
    pub fn unlock(&self, all: bool) -> Result<usize> {
        let now = now_secs();
        let host = hostname();
        let mut removed = 0;
        for (name, l) in self.locks()? {
            let stale = match &l {
                Ok(l) => l.is_stale(now, &host),
                Err(_) => true,
            };
            if all || stale {
                self.backend.delete(&object_path(ObjectKind::Lock, &name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

pub(crate) fn blob_kind(kind: BlobType) -> ObjectKind {
    match kind {
        BlobType::Data => ObjectKind::Blob,
        BlobType::Tree => ObjectKind::Tree,
    }
}

pub(crate) fn blob_damaged(kind: BlobType, id: &BlobId, pack: &PackId, e: FormatError) -> Error {
    Error::corrupt(ObjectRef::new(blob_kind(kind), format!("{} in pack {}", id.to_hex(), pack.to_hex())), e)
}

fn missing_or(e: BackendError, kind: ObjectKind, name: &str) -> Error {
    match e {
        BackendError::NotFound(_) => Error::Missing { object: ObjectRef::new(kind, name) },
        other => other.into(),
    }
}

/// The cache folder of one repository.
pub fn cache_dir(cache_root: &Path, repo_id: &Id) -> PathBuf {
    cache_root.join(repo_id.to_hex()).join("index")
}

/// The user's default cache root: `$CAIRN_CACHE_DIR`, else `$XDG_CACHE_HOME/cairn`, else
/// `~/.cache/cairn`.
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("cairn")
}
