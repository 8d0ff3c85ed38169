//! The storage boundary: five synchronous methods over the `object_store` crate.
//!
//! Objects are immutable: `put_new` creates or fails with `AlreadyExists`, and on local disk it
//! writes a temporary file, fsyncs it, links it into place and fsyncs the directory, so an object
//! is there whole or not at all. The tokio runtime lives here and nowhere else; everything above
//! is plain synchronous Rust. Errors are classified so that wrappers know what to retry.
//!
//! Object paths: `config`, `keys/<id>`, `snapshots/<id>`, `index/<id>`, `packs/<id[0..2]>/<id>`,
//! `locks/<id>`, ids in lowercase hex.

use crate::error::{BackendError, ObjectKind};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::ops::Range;
use std::sync::Arc;

/// One listed object: its name (the last path component) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
}

pub trait Backend: Send + Sync {
    fn get(&self, path: &str) -> Result<Bytes, BackendError>;
    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BackendError>;
    /// Creates `path`; fails with `AlreadyExists` rather than replace anything.
    fn put_new(&self, path: &str, data: Bytes) -> Result<(), BackendError>;
    /// Objects under a folder (`"packs"` lists all packs, in every subfolder).
    fn list(&self, dir: &str) -> Result<Vec<Listed>, BackendError>;
    fn delete(&self, path: &str) -> Result<(), BackendError>;
}

/// The one mapping of object kinds to paths.
pub fn object_path(kind: ObjectKind, name: &str) -> String {
    match kind {
        ObjectKind::Config => "config".to_string(),
        ObjectKind::Pack => format!("packs/{}/{name}", name.get(..2).unwrap_or("00")),
        _ => format!("{}/{name}", kind_dir(kind)),
    }
}

/// The folder holding objects of a kind.
pub fn kind_dir(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Config => "",
        ObjectKind::Key => "keys",
        ObjectKind::Snapshot => "snapshots",
        ObjectKind::Index => "index",
        ObjectKind::Pack | ObjectKind::Blob | ObjectKind::Tree => "packs",
        ObjectKind::Lock => "locks",
    }
}

/// Any `ObjectStore` (local disk, memory, and later buckets) behind the five methods.
pub struct StoreBackend {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    /// For local disk: reads go straight to the file (`pread`) instead of a blocking task per
    /// read on the runtime, which cost more than the read itself for small blobs.
    local_root: Option<std::path::PathBuf>,
}

impl StoreBackend {
    pub fn new(store: Arc<dyn ObjectStore>) -> Result<Self, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Permanent(format!("starting the I/O runtime: {e}")))?;
        Ok(StoreBackend { store, runtime, local_root: None })
    }

    /// A repository folder on local disk, with durable (fsynced) writes. The folder is created
    /// by `init` only; opening a missing folder reports "no repository".
    pub fn local(dir: &std::path::Path) -> Result<Self, BackendError> {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| classify(e, &dir.display().to_string()))?
            .with_fsync(true);
        let mut backend = Self::new(Arc::new(fs))?;
        backend.local_root =
            Some(dir.canonicalize().map_err(|e| BackendError::Permanent(format!("{}: {e}", dir.display())))?);
        Ok(backend)
    }

    pub fn memory() -> Result<Self, BackendError> {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }
}

fn local_error(path: &str, e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::NotFound(path.to_string()),
        _ => BackendError::Permanent(format!("{path}: {e}")),
    }
}

/// A positional read of a local file; a file shorter than the range is a short read.
fn read_local_range(file: &std::path::Path, path: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(file).map_err(|e| local_error(path, e))?;
    let len = usize::try_from(range.end.saturating_sub(range.start))
        .map_err(|_| BackendError::Permanent(format!("{path}: range too large")))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, range.start).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackendError::Permanent(format!("{path}: short read (the object is truncated)"))
        }
        _ => BackendError::Permanent(format!("{path}: {e}")),
    })?;
    Ok(Bytes::from(buf))
}

fn classify(e: object_store::Error, path: &str) -> BackendError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => BackendError::NotFound(path.to_string()),
        E::AlreadyExists { .. } => BackendError::AlreadyExists(path.to_string()),
        E::Generic { .. } | E::JoinError { .. } => BackendError::Transient(format!("{path}: {e}")),
        other => BackendError::Permanent(format!("{path}: {other}")),
    }
}

impl Backend for StoreBackend {
    fn get(&self, path: &str) -> Result<Bytes, BackendError> {
        if let Some(root) = &self.local_root {
            return std::fs::read(root.join(path)).map(Bytes::from).map_err(|e| local_error(path, e));
        }
        let p = StorePath::from(path);
        self.runtime.block_on(async {
            let r = self.store.get(&p).await.map_err(|e| classify(e, path))?;
            r.bytes().await.map_err(|e| classify(e, path))
        })
    }

    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
        if let Some(root) = &self.local_root {
            return read_local_range(&root.join(path), path, range);
        }
        let p = StorePath::from(path);
        let want = range.end.saturating_sub(range.start);
        let got = self.runtime.block_on(self.store.get_range(&p, range)).map_err(|e| classify(e, path))?;
        if got.len() as u64 != want {
            return Err(BackendError::Permanent(format!("{path}: short read ({} of {want} bytes)", got.len())));
        }
        Ok(got)
    }

    fn put_new(&self, path: &str, data: Bytes) -> Result<(), BackendError> {
        let p = StorePath::from(path);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        self.runtime
            .block_on(self.store.put_opts(&p, PutPayload::from_bytes(data), opts))
            .map(|_| ())
            .map_err(|e| classify(e, path))
    }

    fn list(&self, dir: &str) -> Result<Vec<Listed>, BackendError> {
        let p = StorePath::from(dir);
        self.runtime.block_on(async {
            let metas: Vec<object_store::ObjectMeta> =
                self.store.list(Some(&p)).try_collect().await.map_err(|e| classify(e, dir))?;
            Ok(metas
                .into_iter()
                .filter_map(|m| {
                    let name = m.location.filename()?.to_string();
                    // Skip temporary files of interrupted local writes (`name#N`).
                    (!name.contains('#')).then_some(Listed { name, size: m.size })
                })
                .collect())
        })
    }

    fn delete(&self, path: &str) -> Result<(), BackendError> {
        let p = StorePath::from(path);
        self.runtime.block_on(self.store.delete(&p)).map_err(|e| classify(e, path))
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fault wrappers: each overrides one method of a real backend.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails the Nth `put_new` (0-based) and every later one, as a crash would.
    pub struct FailingPuts {
        pub inner: Arc<dyn Backend>,
        pub fail_from: usize,
        pub count: AtomicUsize,
    }

    impl Backend for FailingPuts {
        fn get(&self, path: &str) -> Result<Bytes, BackendError> {
            self.inner.get(path)
        }
        fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
            self.inner.get_range(path, range)
        }
        fn put_new(&self, path: &str, data: Bytes) -> Result<(), BackendError> {
            if self.count.fetch_add(1, Ordering::SeqCst) >= self.fail_from {
                return Err(BackendError::Permanent(format!("{path}: injected failure")));
            }
            self.inner.put_new(path, data)
        }
        fn list(&self, dir: &str) -> Result<Vec<Listed>, BackendError> {
            self.inner.list(dir)
        }
        fn delete(&self, path: &str) -> Result<(), BackendError> {
            self.inner.delete(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_basics() {
        let b = StoreBackend::memory().unwrap();
        b.put_new("packs/ab/abcd", Bytes::from_static(b"hello")).unwrap();
        assert!(matches!(b.put_new("packs/ab/abcd", Bytes::from_static(b"x")), Err(BackendError::AlreadyExists(_))));
        assert_eq!(&b.get("packs/ab/abcd").unwrap()[..], b"hello");
        assert_eq!(&b.get_range("packs/ab/abcd", 1..3).unwrap()[..], b"el");
        assert_eq!(b.list("packs").unwrap(), vec![Listed { name: "abcd".into(), size: 5 }]);
        assert!(matches!(b.get("nope"), Err(BackendError::NotFound(_))));
        b.delete("packs/ab/abcd").unwrap();
        assert!(b.list("packs").unwrap().is_empty());
    }

    #[test]
    fn local_backend_writes_whole_objects() {
        let dir = tempfile::tempdir().unwrap();
        let b = StoreBackend::local(dir.path()).unwrap();
        b.put_new("index/01", Bytes::from_static(b"abc")).unwrap();
        assert!(matches!(b.put_new("index/01", Bytes::from_static(b"x")), Err(BackendError::AlreadyExists(_))));
        assert_eq!(std::fs::read(dir.path().join("index/01")).unwrap(), b"abc");
        assert_eq!(&b.get_range("index/01", 1..3).unwrap()[..], b"bc");
        assert!(matches!(b.get_range("index/01", 1..9), Err(BackendError::Permanent(_))));
        assert!(matches!(b.get_range("index/02", 0..1), Err(BackendError::NotFound(_))));
        assert_eq!(object_path(ObjectKind::Pack, "abcdef"), "packs/ab/abcdef");
    }
}
