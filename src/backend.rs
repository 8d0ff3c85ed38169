//! The storage boundary: five synchronous methods over the `object_store` crate.
//!
//! Objects are immutable: `put_new` creates or fails with `AlreadyExists`, and on local disk it
//! writes a temporary file, fsyncs it, links it into place and fsyncs the directory, so an object
//! is there whole or not at all (see [`local`]: large objects skip the page cache). The tokio
//! runtime lives here and nowhere else; everything above is plain synchronous Rust. Errors are classified so that wrappers know what to retry.
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
    /// For local disk: the packs read from last, kept open (see [`OpenPacks`]).
    open: OpenPacks,
}

/// The local files read from last, kept open: an unchanged backup of the bench tree reads its
/// parent's 3,210 trees from one pack, and opened and closed that file for each of them. Only
/// ranged reads use it, and only packs are read by range: a pack's name is the hash of its
/// bytes and it is never rewritten, so a file kept open reads what a new open would.
#[derive(Default)]
struct OpenPacks(std::sync::Mutex<std::collections::VecDeque<(String, Arc<std::fs::File>)>>);

impl OpenPacks {
    /// Files kept open, at most; the one read from longest ago is closed first.
    const KEEP: usize = 8;

    fn get(
        &self,
        path: &str,
        open: impl FnOnce() -> Result<std::fs::File, BackendError>,
    ) -> Result<Arc<std::fs::File>, BackendError> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = |files: &mut std::collections::VecDeque<(String, Arc<std::fs::File>)>| {
            let at = files.iter().position(|(p, _)| p == path)?;
            let entry = files.remove(at)?;
            let file = entry.1.clone();
            files.push_back(entry);
            Some(file)
        };
        if let Some(file) = kept(&mut lock()) {
            return Ok(file);
        }
        // Opened outside the lock: readers of other packs do not wait for it.
        let file = Arc::new(open()?);
        let mut files = lock();
        // Another reader may have opened it meanwhile: keep one.
        if let Some(theirs) = kept(&mut files) {
            return Ok(theirs);
        }
        if files.len() >= Self::KEEP {
            files.pop_front();
        }
        files.push_back((path.to_string(), file.clone()));
        Ok(file)
    }
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
            open: OpenPacks::default(),
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
}

fn local_error(path: &str, e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::NotFound(path.to_string()),
        _ => BackendError::Permanent(format!("{path}: {e}")),
    }
}

/// A positional read of a local file; a file shorter than the range is a short read.
fn read_local_range(f: &std::fs::File, path: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
    use std::os::unix::fs::FileExt;
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
            let file =
                self.open.get(path, || std::fs::File::open(root.join(path)).map_err(|e| local_error(path, e)))?;
            return read_local_range(&file, path, range);
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

/// Durable creation of one object on local disk. The protocol is object_store's own (a staging
/// file `PATH#N` created new, written, fsynced, hard-linked to `PATH`, which fails if `PATH`
/// exists, the folder fsynced, the staging name removed), so a reader sees an object whole or
/// not at all and listings skip the staging names. What differs: objects of [`DIRECT_MIN`]
/// bytes or more are written with `O_DIRECT` where the filesystem allows it. A pack is written
/// once and not read again by the backup that made it; through the page cache, each pack's
/// bytes were copied into fresh page-cache pages (on these VMs ~13-17% of a first backup's CPU)
/// and evicted the user's own cached files, only to be flushed to disk by the fsync anyway.
mod local {
    use super::BackendError;
    use super::DIRECT_ALIGN as ALIGN;
    use std::fs::{File, OpenOptions};
    use std::io::ErrorKind;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Objects at least this large skip the page cache.
    pub const DIRECT_MIN: usize = 1 << 20;
    /// Bytes per direct write (the size of each writing thread's aligned buffer).
    const DIRECT_PIECE: usize = 1 << 20;

    fn failed(path: &str, what: &str, e: std::io::Error) -> BackendError {
        BackendError::Permanent(format!("{path}: {what}: {e}"))
    }

    /// `direct`: the backend's "direct writes still work" flag, or `None` to write through the
    /// page cache (an object read again soon).
    pub fn put_new(root: &Path, path: &str, data: &[u8], direct: Option<&AtomicBool>) -> Result<(), BackendError> {
        let dest = root.join(path);
        let (file, staging) = create_staging(&dest).map_err(|e| failed(path, "creating a temporary file", e))?;
        let written = write_all(&file, data, direct).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&staging);
            return Err(failed(path, "writing", e));
        }
        let linked = std::fs::hard_link(&staging, &dest);
        let _ = std::fs::remove_file(&staging);
        match linked {
            Ok(()) => match dest.parent() {
                Some(dir) => fsync_dir(dir).map_err(|e| failed(path, "flushing its folder", e)),
                None => Ok(()),
            },
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(BackendError::AlreadyExists(path.to_string())),
            Err(e) => Err(failed(path, "linking into place", e)),
        }
    }

    /// `DEST#N` for the first N that does not exist, created new. Missing folders are created
    /// and, with the first folder that existed, fsynced.
    fn create_staging(dest: &Path) -> std::io::Result<(File, PathBuf)> {
        let mut n = 1u32;
        for _ in 0..1000 {
            let mut name = dest.as_os_str().to_owned();
            name.push(format!("#{n}"));
            let staging = PathBuf::from(name);
            match OpenOptions::new().write(true).create_new(true).open(&staging) {
                Ok(f) => return Ok((f, staging)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => n += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => create_folders(dest)?,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("1000 temporary names taken or folders vanishing"))
    }

    fn create_folders(dest: &Path) -> std::io::Result<()> {
        let Some(parent) = dest.parent() else { return Err(ErrorKind::NotFound.into()) };
        let mut existing = parent;
        while !existing.exists() {
            existing = existing.parent().ok_or(ErrorKind::NotFound)?;
        }
        if existing == parent {
            return Err(ErrorKind::NotFound.into()); // the folder exists: something else is missing
        }
        std::fs::create_dir_all(parent)?;
        let mut dir = parent;
        loop {
            fsync_dir(dir)?;
            if dir == existing {
                return Ok(());
            }
            dir = dir.parent().ok_or(ErrorKind::NotFound)?;
        }
    }

    /// Makes a folder's entries durable.
    fn fsync_dir(dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Writes `data` at the start of the empty `file`: directly when it is large, `direct` is
    /// given and the filesystem takes it, else through the page cache.
    fn write_all(file: &File, data: &[u8], direct: Option<&AtomicBool>) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(direct) = direct
            && data.len() >= DIRECT_MIN
            && direct.load(Ordering::Relaxed)
        {
            match write_direct(file, data) {
                Ok(true) => return Ok(()),
                Ok(false) => direct.store(false, Ordering::Relaxed),
                Err(e) => return Err(e),
            }
            file.set_len(0)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = direct;
        file.write_all_at(data, 0)
    }

    thread_local! {
        static PIECE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// `Ok(false)` if the filesystem refuses direct writes (tmpfs, some FUSE and network
    /// filesystems, alignment rules stricter than [`ALIGN`]): the caller writes again through
    /// the page cache. Each piece is copied into an aligned buffer and the last one padded with
    /// zeros to [`ALIGN`]; the padding is cut off again with `ftruncate`.
    #[cfg(target_os = "linux")]
    fn write_direct(file: &File, data: &[u8]) -> std::io::Result<bool> {
        use rustix::fs::OFlags;
        use rustix::io::Errno;
        let flags = rustix::fs::fcntl_getfl(file)?;
        match rustix::fs::fcntl_setfl(file, flags | OFlags::DIRECT) {
            Ok(()) => {}
            Err(Errno::INVAL) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let wrote = PIECE.with_borrow_mut(|buf| -> std::io::Result<bool> {
            // Grown once per writing thread, then reused: its pages stay warm.
            if buf.len() < DIRECT_PIECE + ALIGN {
                *buf = vec![0u8; DIRECT_PIECE + ALIGN];
            }
            let start = buf.as_ptr().align_offset(ALIGN);
            let Some(aligned) = buf.get_mut(start..start + DIRECT_PIECE) else { return Ok(false) };
            for (i, piece) in data.chunks(DIRECT_PIECE).enumerate() {
                let padded = piece.len().next_multiple_of(ALIGN);
                aligned[..piece.len()].copy_from_slice(piece);
                aligned[piece.len()..padded].fill(0);
                match file.write_all_at(&aligned[..padded], (i * DIRECT_PIECE) as u64) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            Ok(true)
        });
        rustix::fs::fcntl_setfl(file, flags)?;
        let wrote = wrote?;
        if wrote && !data.len().is_multiple_of(ALIGN) {
            file.set_len(data.len() as u64)?;
        }
        Ok(wrote)
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
        for i in 0..=OpenPacks::KEEP {
            std::fs::write(dir.path().join(format!("p{i}")), [i as u8]).unwrap();
        }
        assert!(b.open.get("missing", open("missing")).is_err());
        assert!(b.open.get("p0", open("p0")).is_ok() && b.open.get("p0", open("p0")).is_ok());
        assert_eq!(opens.load(Ordering::SeqCst), 2);
        // KEEP - 1 more files fill the places; p0, read again, is then the newest, and the next
        // new file pushes p1 out instead.
        for i in 1..OpenPacks::KEEP {
            b.open.get(&format!("p{i}"), open(&format!("p{i}"))).unwrap();
        }
        b.open.get("p0", open("p0")).unwrap();
        let last = format!("p{}", OpenPacks::KEEP);
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
