//! The storage boundary: five synchronous methods over the `object_store` crate.
//!
//! Objects are immutable: `put_new` creates or fails with `AlreadyExists`, and on local disk it
//! writes a temporary file, fsyncs it, links it into place and fsyncs the directory, so an object
//! is there whole or not at all (see [`local`]: large objects skip the page cache, and ranged
//! reads keep the last pack files open). The tokio runtime lives here and nowhere else;
//! everything above is plain synchronous Rust. Errors are classified so that wrappers know what
//! to retry.
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

mod local;

/// One listed object: its name (the last path component) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
}

pub trait Backend: Send + Sync {
    fn get(&self, path: &str) -> Result<Bytes, BackendError>;
    fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BackendError>;
    /// [`get_range`](Self::get_range) into a reader's kept buffer. Local disk reads straight
    /// into it; other stores copy what they fetched (a copy is cheap beside a round trip).
    fn get_range_into(&self, path: &str, range: Range<u64>, buf: &mut ReadBuf) -> Result<(), BackendError> {
        buf.keep(self.get_range(path, range))
    }
    /// Creates `path`; fails with `AlreadyExists` rather than replace anything.
    fn put_new(&self, path: &str, data: Bytes) -> Result<(), BackendError>;
    /// Objects under a folder (`"packs"` lists all packs, in every subfolder).
    fn list(&self, dir: &str) -> Result<Vec<Listed>, BackendError>;
    fn delete(&self, path: &str) -> Result<(), BackendError>;
    /// [`put_new`](Self::put_new) of an object that will be read again soon (a pack of tree
    /// blobs, which the next backup loads): local disk writes it through the page cache.
    fn put_new_cached(&self, path: &str, data: Bytes) -> Result<(), BackendError> {
        self.put_new(path, data)
    }
    /// How many pack writes pay to run at once: a round trip to a bucket hides behind another
    /// one, a local write (direct, ~10 ms per pack) does not, and each one in flight holds a
    /// pack in memory.
    fn parallel_puts(&self) -> usize {
        2
    }
}

/// A reader's buffer for ranged reads, kept from one read to the next. A fresh `Vec` per read
/// was zero-filled by `calloc` and faulted in page by page (page faults were 4% of a restore's
/// cycles, and fresh pages are dear on these virtual machines). This one is zero-filled once, up
/// to the longest read so far; later reads overwrite it. A restore of the bench tree into memory
/// took 40k page faults instead of 67k, and 0.79 instead of 0.87 s of system time.
#[derive(Default)]
pub struct ReadBuf {
    buf: Vec<u8>,
    /// How many bytes of `buf` the last read filled.
    len: usize,
}

impl ReadBuf {
    /// The bytes of the last read (empty after a failed one).
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// `len` bytes to read into; what they hold is stale until the read overwrites it.
    pub(crate) fn fill(&mut self, len: usize) -> &mut [u8] {
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.len = len;
        &mut self.buf[..len]
    }

    /// Marks the buffer empty (a read into it failed).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Holds the bytes of a range fetched whole, or nothing if the fetch failed.
    fn keep<E>(&mut self, fetched: Result<Bytes, E>) -> Result<(), E> {
        match fetched {
            Ok(bytes) => {
                self.fill(bytes.len()).copy_from_slice(&bytes);
                Ok(())
            }
            Err(e) => {
                self.clear();
                Err(e)
            }
        }
    }

    /// Lets the memory go if one long read grew the buffer past `keep` bytes: a reader keeps a
    /// buffer of its usual read's size, not of its largest.
    pub fn release_over(&mut self, keep: usize) {
        if self.buf.len() > keep {
            *self = ReadBuf::default();
        }
    }
}

/// Offset, length and address alignment of `O_DIRECT` writes (packs here, `cairn dump`'s
/// output in `cli::direct_out`): a 4 KiB page, which covers devices with 512-byte and 4 KiB
/// logical blocks.
pub(crate) const DIRECT_ALIGN: usize = 4096;

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
    /// For local disk: whether large objects are still written with `O_DIRECT` (cleared the
    /// first time the filesystem refuses it).
    direct: std::sync::atomic::AtomicBool,
    /// For local disk: the packs read from last, kept open (see [`local::OpenPacks`]).
    open: local::OpenPacks,
}

impl StoreBackend {
    pub fn new(store: Arc<dyn ObjectStore>) -> Result<Self, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-io")
            .enable_all()
            .build()
            .map_err(|e| BackendError::Permanent(format!("starting the I/O runtime: {e}")))?;
        Ok(StoreBackend {
            store,
            runtime,
            local_root: None,
            direct: std::sync::atomic::AtomicBool::new(true),
            open: local::OpenPacks::default(),
        })
    }

    /// A repository folder on local disk, with durable (fsynced) writes of our own ([`local`]);
    /// object_store serves listings and deletes. The folder is created by `init` only; opening
    /// a missing folder reports "no repository".
    pub fn local(dir: &std::path::Path) -> Result<Self, BackendError> {
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| classify(e, &dir.display().to_string()))?;
        let mut backend = Self::new(Arc::new(fs))?;
        backend.local_root =
            Some(dir.canonicalize().map_err(|e| BackendError::Permanent(format!("{}: {e}", dir.display())))?);
        Ok(backend)
    }

    pub fn memory() -> Result<Self, BackendError> {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// A local pack file for ranged reads, kept open ([`local::OpenPacks`]).
    fn kept_file(&self, root: &std::path::Path, path: &str) -> Result<Arc<std::fs::File>, BackendError> {
        self.open.get(path, || std::fs::File::open(root.join(path)).map_err(|e| local_error(path, e)))
    }
}

fn local_error(path: &str, e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::NotFound(path.to_string()),
        _ => BackendError::Permanent(format!("{path}: {e}")),
    }
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
            return local::read_range(&*self.kept_file(root, path)?, path, range);
        }
        let p = StorePath::from(path);
        let want = range.end.saturating_sub(range.start);
        let got = self.runtime.block_on(self.store.get_range(&p, range)).map_err(|e| classify(e, path))?;
        if got.len() as u64 != want {
            return Err(BackendError::Permanent(format!("{path}: short read ({} of {want} bytes)", got.len())));
        }
        Ok(got)
    }

    fn get_range_into(&self, path: &str, range: Range<u64>, buf: &mut ReadBuf) -> Result<(), BackendError> {
        let Some(root) = &self.local_root else { return buf.keep(self.get_range(path, range)) };
        let read = self.kept_file(root, path).and_then(|file| local::read_range_into(&file, path, range, buf));
        if read.is_err() {
            buf.clear();
        }
        read
    }

    fn put_new(&self, path: &str, data: Bytes) -> Result<(), BackendError> {
        if let Some(root) = &self.local_root {
            return local::put_new(root, path, &data, Some(&self.direct));
        }
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

    fn put_new_cached(&self, path: &str, data: Bytes) -> Result<(), BackendError> {
        match &self.local_root {
            Some(root) => local::put_new(root, path, &data, None),
            None => self.put_new(path, data),
        }
    }

    fn parallel_puts(&self) -> usize {
        if self.local_root.is_some() { 1 } else { 2 }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_read_buffer_shows_only_its_last_read() {
        let mut buf = ReadBuf::default();
        buf.fill(5).copy_from_slice(b"hello");
        assert_eq!(buf.bytes(), b"hello");
        // A shorter read keeps the memory and shows only its own bytes.
        buf.fill(2).copy_from_slice(b"ok");
        assert_eq!(buf.bytes(), b"ok");
        buf.clear();
        assert_eq!(buf.bytes(), b"");
        buf.fill(3);
        buf.release_over(5);
        assert_eq!(buf.bytes().len(), 3, "a buffer within the limit is kept");
        buf.release_over(4);
        assert_eq!(buf.bytes(), b"", "one grown past the limit is let go");
    }

    #[test]
    fn ranged_reads_into_a_kept_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let b = StoreBackend::local(dir.path()).unwrap();
        b.put_new("packs/ab/abcd", Bytes::from_static(b"0123456789")).unwrap();
        let mut buf = ReadBuf::default();
        b.get_range_into("packs/ab/abcd", 2..8, &mut buf).unwrap();
        assert_eq!(buf.bytes(), b"234567");
        b.get_range_into("packs/ab/abcd", 8..10, &mut buf).unwrap();
        assert_eq!(buf.bytes(), b"89");
        assert!(b.get_range_into("packs/ab/abcd", 8..11, &mut buf).is_err(), "past the end");
        assert_eq!(buf.bytes(), b"", "a failed read leaves nothing to use");
        let m = StoreBackend::memory().unwrap();
        m.put_new("packs/ab/abcd", Bytes::from_static(b"0123456789")).unwrap();
        m.get_range_into("packs/ab/abcd", 1..4, &mut buf).unwrap();
        assert_eq!(buf.bytes(), b"123");
    }

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

    /// Ranged reads keep the files read from last open: one open per file while it stays among
    /// them, the one read from longest ago closed first, and a missing file not remembered.
    #[test]
    fn ranged_reads_keep_the_last_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let b = StoreBackend::local(dir.path()).unwrap();
        let opens = AtomicUsize::new(0);
        let open = |name: &str| {
            let path = dir.path().join(name);
            let opens = &opens;
            move || {
                opens.fetch_add(1, Ordering::SeqCst);
                std::fs::File::open(path).map_err(|e| local_error("x", e))
            }
        };
        for i in 0..=local::OpenPacks::KEEP {
            std::fs::write(dir.path().join(format!("p{i}")), [i as u8]).unwrap();
        }
        assert!(b.open.get("missing", open("missing")).is_err());
        assert!(b.open.get("p0", open("p0")).is_ok() && b.open.get("p0", open("p0")).is_ok());
        assert_eq!(opens.load(Ordering::SeqCst), 2);
        // KEEP - 1 more files fill the places; p0, read again, is then the newest, and the next
        // new file pushes p1 out instead.
        for i in 1..local::OpenPacks::KEEP {
            b.open.get(&format!("p{i}"), open(&format!("p{i}"))).unwrap();
        }
        b.open.get("p0", open("p0")).unwrap();
        let last = format!("p{}", local::OpenPacks::KEEP);
        b.open.get(&last, open(&last)).unwrap();
        let before = opens.load(Ordering::SeqCst);
        b.open.get("p0", open("p0")).unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), before, "p0 stayed open");
        b.open.get("p1", open("p1")).unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), before + 1, "p1 was closed");
        assert_eq!(&b.get_range("p3", 0..1).unwrap()[..], [3]);
    }

    /// Large objects (written with O_DIRECT where the filesystem allows it) come back byte for
    /// byte whatever their length, leave no staging file, and are never replaced. /dev/shm is
    /// tmpfs, which refuses O_DIRECT: the write falls back to the page cache.
    #[test]
    fn large_local_objects_are_written_whole_with_or_without_direct_io() {
        let shm = std::path::Path::new("/dev/shm");
        let dirs: Vec<tempfile::TempDir> = std::iter::once(tempfile::tempdir().unwrap())
            .chain(shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap()))
            .collect();
        for dir in &dirs {
            let b = StoreBackend::local(dir.path()).unwrap();
            for (i, len) in
                [local::DIRECT_MIN, 3 * local::DIRECT_MIN + 4096, 2 * local::DIRECT_MIN + 123].into_iter().enumerate()
            {
                let data: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
                let path = format!("packs/0{i}/0{i}ff");
                b.put_new(&path, Bytes::from(data.clone())).unwrap();
                assert_eq!(std::fs::read(dir.path().join(&path)).unwrap(), data, "{len} bytes");
                assert!(matches!(b.put_new(&path, Bytes::from(vec![1u8; len])), Err(BackendError::AlreadyExists(_))));
                assert_eq!(std::fs::read(dir.path().join(&path)).unwrap(), data);
                let names: Vec<_> = std::fs::read_dir(dir.path().join(format!("packs/0{i}")))
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names.len(), 1, "{names:?}");
            }
        }
    }
}
